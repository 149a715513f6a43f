//! The difference between the topology and a live cluster ([`plan`]):
//! what to create, grow or reconfigure, and what no admin call can fix.
//! Pure: the live view is passed in.

use std::collections::BTreeMap;
use std::fmt;

use crate::spec::TopicSpec;

/// One topic as the cluster has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveTopic {
    /// Partition count.
    pub partitions: i32,
    /// Replicas of its least-replicated partition.
    pub replication_factor: i32,
    /// Its configs (at least the ones o2c sets, where the broker has them).
    pub configs: BTreeMap<String, String>,
}

/// A change `apply` makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The topic is missing.
    Create(TopicSpec),
    /// The topic has fewer partitions than the file says.
    AddPartitions {
        /// Topic.
        topic: String,
        /// Now.
        from: i32,
        /// Wanted.
        to: i32,
    },
    /// A config differs (or is unset).
    SetConfig {
        /// Topic.
        topic: String,
        /// The config key.
        key: String,
        /// Now (`None`: unset).
        from: Option<String>,
        /// Wanted.
        to: String,
    },
}

/// A difference no admin call fixes: an operator's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// More partitions live than in the file: partitions cannot shrink.
    CannotShrink {
        /// Topic.
        topic: String,
        /// Live count.
        live: i32,
        /// The file's count.
        wanted: i32,
    },
    /// A different replication factor (a partition reassignment, outside
    /// o2c).
    Replication {
        /// Topic.
        topic: String,
        /// Live factor.
        live: i32,
        /// The file's factor.
        wanted: i32,
    },
}

/// What the cluster lacks ([`Change`]) and what cannot be changed
/// ([`Problem`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Changes, per topic in the file's order.
    pub changes: Vec<Change>,
    /// Problems.
    pub problems: Vec<Problem>,
}

impl Plan {
    /// Whether the cluster matches the file.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.problems.is_empty()
    }
}

/// Compares `desired` with `live` (by topic name).
pub fn plan(desired: &[TopicSpec], live: &BTreeMap<String, LiveTopic>) -> Plan {
    let mut out = Plan::default();
    for t in desired {
        let Some(l) = live.get(&t.name) else {
            out.changes.push(Change::Create(t.clone()));
            continue;
        };
        if l.partitions < t.partitions {
            out.changes.push(Change::AddPartitions {
                topic: t.name.clone(),
                from: l.partitions,
                to: t.partitions,
            });
        } else if l.partitions > t.partitions {
            out.problems.push(Problem::CannotShrink {
                topic: t.name.clone(),
                live: l.partitions,
                wanted: t.partitions,
            });
        }
        if l.replication_factor != t.replication_factor {
            out.problems.push(Problem::Replication {
                topic: t.name.clone(),
                live: l.replication_factor,
                wanted: t.replication_factor,
            });
        }
        for (key, want) in &t.configs {
            let have = l.configs.get(key);
            if have != Some(want) {
                out.changes.push(Change::SetConfig {
                    topic: t.name.clone(),
                    key: key.clone(),
                    from: have.cloned(),
                    to: want.clone(),
                });
            }
        }
    }
    out
}

fn configs_text(c: &BTreeMap<String, String>) -> String {
    c.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Create(t) => write!(
                f,
                "+ {}: create, {} partitions, replication {}, {}",
                t.name,
                t.partitions,
                t.replication_factor,
                configs_text(&t.configs)
            ),
            Change::AddPartitions { topic, from, to } => {
                write!(f, "~ {topic}: partitions {from} -> {to}")
            }
            Change::SetConfig {
                topic,
                key,
                from,
                to,
            } => write!(
                f,
                "~ {topic}: {key} {} -> {to}",
                from.as_deref().unwrap_or("(unset)")
            ),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::CannotShrink {
                topic,
                live,
                wanted,
            } => write!(
                f,
                "! {topic}: partitions {live} live, {wanted} in the file: a partition count can only grow"
            ),
            Problem::Replication {
                topic,
                live,
                wanted,
            } => write!(
                f,
                "! {topic}: replication factor {live} live, {wanted} in the file: reassign its partitions"
            ),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "the cluster matches the topology file");
        }
        for c in &self.changes {
            writeln!(f, "{c}")?;
        }
        for p in &self.problems {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, partitions: i32, rf: i32, retention: &str) -> TopicSpec {
        TopicSpec {
            name: name.into(),
            partitions,
            replication_factor: rf,
            configs: [
                ("cleanup.policy".to_owned(), "delete".to_owned()),
                ("retention.ms".to_owned(), retention.to_owned()),
            ]
            .into(),
        }
    }

    fn live(partitions: i32, rf: i32, configs: &[(&str, &str)]) -> LiveTopic {
        LiveTopic {
            partitions,
            replication_factor: rf,
            configs: configs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn a_matching_cluster_has_an_empty_plan() {
        let want = [spec("a", 3, 1, "100")];
        let have = [(
            "a".to_owned(),
            live(
                3,
                1,
                &[("cleanup.policy", "delete"), ("retention.ms", "100")],
            ),
        )]
        .into();
        let p = plan(&want, &have);
        assert!(p.is_empty(), "{p}");
        assert_eq!(p.to_string(), "the cluster matches the topology file\n");
    }

    #[test]
    fn missing_topics_grown_partitions_and_changed_configs_are_changes() {
        let want = [spec("a", 6, 1, "100"), spec("b", 3, 1, "100")];
        let have = [(
            "a".to_owned(),
            live(3, 1, &[("cleanup.policy", "delete"), ("retention.ms", "5")]),
        )]
        .into();
        let p = plan(&want, &have);
        assert!(p.problems.is_empty());
        let lines: Vec<String> = p.changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "~ a: partitions 3 -> 6",
                "~ a: retention.ms 5 -> 100",
                "+ b: create, 3 partitions, replication 1, cleanup.policy=delete retention.ms=100",
            ]
        );
        // An unset config shows as such.
        let have = [("b".to_owned(), live(3, 1, &[("retention.ms", "100")]))].into();
        let p = plan(&want[1..], &have);
        assert_eq!(
            p.changes[0].to_string(),
            "~ b: cleanup.policy (unset) -> delete"
        );
    }

    #[test]
    fn shrinking_and_replication_are_problems_not_changes() {
        let want = [spec("a", 3, 3, "100")];
        let have = [(
            "a".to_owned(),
            live(
                6,
                1,
                &[("cleanup.policy", "delete"), ("retention.ms", "100")],
            ),
        )]
        .into();
        let p = plan(&want, &have);
        assert!(p.changes.is_empty());
        assert_eq!(p.problems.len(), 2);
        let text = p.to_string();
        assert!(text.contains("can only grow"), "{text}");
        assert!(
            text.contains("replication factor 1 live, 3 in the file"),
            "{text}"
        );
    }
}
