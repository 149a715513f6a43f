//! The topology file (`deploy/cloud/topics.toml`): parsed, checked, and
//! resolved into the exact topics a cluster must have ([`TopicSpec`]).
//! Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

/// The repository's `deploy/cloud/topics.toml`, built in: used when
/// `[kafka] topics_file` is not set.
pub const BUILT_IN: &str = include_str!("../../../deploy/cloud/topics.toml");

/// The topic configs o2c sets (and compares).
pub const CLEANUP_POLICY: &str = "cleanup.policy";
/// See [`CLEANUP_POLICY`].
pub const RETENTION_MS: &str = "retention.ms";
/// See [`CLEANUP_POLICY`].
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

/// The `retention.ms` a topic kept forever (`retention_ms = -1` in the
/// file) is given on the broker: 100 years. Kafka reads `-1` as "no
/// limit", but Tansu 0.6's SQLite storage deletes, at each maintenance
/// pass (every 10 minutes), every record of a `delete` topic for which
/// `now - timestamp > retention.ms`: with `-1`, all of them
/// (`tansu-storage` 0.6.0, `lite/policy_delete.sql`). A hundred years is
/// forever on both brokers.
pub const FOREVER_MS: i64 = 100 * 365 * 86_400_000;

/// Why a topology file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("topics file {path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        message: String,
    },
    /// Not TOML, or not the file's shape.
    #[error("topics file: {0}")]
    Parse(String),
    /// A value that cannot be right, named by topic (or section) and key.
    #[error("topics file: {at}: {what}")]
    Invalid {
        /// The topic name or section.
        at: String,
        /// What is wrong.
        what: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    defaults: Defaults,
    policies: BTreeMap<String, Policy>,
    topics: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    partitions: i32,
    replication_factor: i32,
    min_insync_replicas: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Cleanup {
    Delete,
    Compact,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Policy {
    cleanup_policy: Cleanup,
    /// `-1`: forever (sent as [`FOREVER_MS`]). Absent: the broker's
    /// default (compacted topics).
    retention_ms: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    policy: String,
    partitions: Option<i32>,
    replication_factor: Option<i32>,
    min_insync_replicas: Option<i32>,
    retention_ms: Option<i64>,
}

/// One topic as the cluster must have it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Its full name (with the prefix).
    pub name: String,
    /// Partition count (can only grow on a live topic).
    pub partitions: i32,
    /// Replicas per partition.
    pub replication_factor: i32,
    /// Topic configs: [`CLEANUP_POLICY`], [`MIN_INSYNC_REPLICAS`] and, where
    /// the policy sets one, [`RETENTION_MS`].
    pub configs: BTreeMap<String, String>,
}

/// What dev and tests change: fewer partitions, one replica.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Every topic's partition count.
    pub partitions: Option<i32>,
    /// Every topic's replication factor (`min.insync.replicas` is capped
    /// at it).
    pub replication_factor: Option<i32>,
}

/// A checked topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    topics: Vec<TopicSpec>,
}

impl Spec {
    /// Parses and checks a topology file.
    pub fn parse(text: &str) -> Result<Spec, SpecError> {
        let file: File = toml::from_str(text).map_err(|e| SpecError::Parse(e.to_string()))?;
        let invalid = |at: &str, what: String| SpecError::Invalid {
            at: at.to_owned(),
            what,
        };
        let d = &file.defaults;
        check_counts(
            "defaults",
            d.partitions,
            d.replication_factor,
            d.min_insync_replicas,
        )?;
        for (name, p) in &file.policies {
            if let Some(r) = p.retention_ms
                && r < -1
            {
                return Err(invalid(
                    &format!("policies.{name}"),
                    format!("retention_ms {r}: use -1 (forever) or a positive number"),
                ));
            }
        }
        let mut seen = BTreeSet::new();
        let mut topics = Vec::with_capacity(file.topics.len());
        for e in &file.topics {
            if o2c_protocol::KafkaTopics::new(e.name.as_str()).is_err() || e.name.is_empty() {
                return Err(invalid(&e.name, "not a valid topic name".into()));
            }
            if !seen.insert(e.name.as_str()) {
                return Err(invalid(&e.name, "listed twice".into()));
            }
            let policy = file.policies.get(&e.policy).ok_or_else(|| {
                invalid(&e.name, format!("no policy {:?} in [policies]", e.policy))
            })?;
            let partitions = e.partitions.unwrap_or(d.partitions);
            let rf = e.replication_factor.unwrap_or(d.replication_factor);
            let isr = e.min_insync_replicas.unwrap_or(d.min_insync_replicas);
            check_counts(&e.name, partitions, rf, isr)?;
            let retention = e.retention_ms.or(policy.retention_ms);
            if let Some(r) = retention
                && r < -1
            {
                return Err(invalid(&e.name, format!("retention_ms {r}")));
            }
            let mut configs = BTreeMap::new();
            let cleanup = match policy.cleanup_policy {
                Cleanup::Delete => "delete",
                Cleanup::Compact => "compact",
            };
            configs.insert(CLEANUP_POLICY.to_owned(), cleanup.to_owned());
            configs.insert(MIN_INSYNC_REPLICAS.to_owned(), isr.to_string());
            if let Some(r) = retention {
                let r = if r == -1 { FOREVER_MS } else { r };
                configs.insert(RETENTION_MS.to_owned(), r.to_string());
            }
            topics.push(TopicSpec {
                name: e.name.clone(),
                partitions,
                replication_factor: rf,
                configs,
            });
        }
        Ok(Spec { topics })
    }

    /// The topics' names, as in the file (without prefix).
    pub fn names(&self) -> Vec<&str> {
        self.topics.iter().map(|t| t.name.as_str()).collect()
    }

    /// The topics as the cluster must have them: names with `prefix`, and
    /// `overrides` applied.
    pub fn resolve(&self, prefix: &str, overrides: Overrides) -> Vec<TopicSpec> {
        self.topics
            .iter()
            .map(|t| {
                let mut t = t.clone();
                t.name = format!("{prefix}{}", t.name);
                if let Some(p) = overrides.partitions {
                    t.partitions = p;
                }
                if let Some(rf) = overrides.replication_factor {
                    t.replication_factor = rf;
                    if let Some(isr) = t.configs.get_mut(MIN_INSYNC_REPLICAS) {
                        let capped = isr.parse::<i32>().unwrap_or(1).min(rf).max(1);
                        *isr = capped.to_string();
                    }
                }
                t
            })
            .collect()
    }
}

/// The topics a cluster must have: the file at `file` (or [`BUILT_IN`]),
/// names with `prefix`; with `create` (dev and tests, where services
/// apply the file themselves), `partitions` each and one replica.
pub fn desired(
    file: Option<&Path>,
    prefix: &str,
    create: bool,
    partitions: i32,
) -> Result<Vec<TopicSpec>, SpecError> {
    let text = match file {
        Some(p) => std::fs::read_to_string(p).map_err(|e| SpecError::Io {
            path: p.display().to_string(),
            message: e.to_string(),
        })?,
        None => BUILT_IN.to_owned(),
    };
    let overrides = if create {
        Overrides {
            partitions: Some(partitions),
            replication_factor: Some(1),
        }
    } else {
        Overrides::default()
    };
    Ok(Spec::parse(&text)?.resolve(prefix, overrides))
}

fn check_counts(at: &str, partitions: i32, rf: i32, isr: i32) -> Result<(), SpecError> {
    let what = if partitions < 1 {
        format!("partitions {partitions}: at least 1")
    } else if rf < 1 {
        format!("replication_factor {rf}: at least 1")
    } else if isr < 1 || isr > rf {
        format!("min_insync_replicas {isr}: between 1 and the replication factor ({rf})")
    } else {
        return Ok(());
    };
    Err(SpecError::Invalid {
        at: at.to_owned(),
        what,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use o2c_protocol::KafkaTopics;

    #[test]
    fn the_built_in_file_lists_exactly_the_topics_the_code_uses_with_the_policy() {
        let spec = Spec::parse(BUILT_IN).unwrap();
        let mut names: Vec<&str> = spec.names();
        names.sort_unstable();
        let mut used = KafkaTopics::default().all();
        used.sort();
        assert_eq!(
            names, used,
            "deploy/cloud/topics.toml and the code disagree"
        );
        let t = spec.resolve("", Overrides::default());
        let get = |n: &str| t.iter().find(|t| t.name == n).unwrap();
        let created = get("orders.created");
        assert_eq!((created.partitions, created.replication_factor), (24, 3));
        assert_eq!(created.configs[RETENTION_MS], "604800000");
        assert_eq!(created.configs[MIN_INSYNC_REPLICAS], "2");
        assert_eq!(created.configs[CLEANUP_POLICY], "delete");
        assert_eq!(get("o2c.dlq").configs[RETENTION_MS], "2592000000");
        let history = get("orders.events");
        assert_eq!(
            history.configs[RETENTION_MS],
            FOREVER_MS.to_string(),
            "kept forever, never -1 (Tansu deletes every record at -1)"
        );
        assert_eq!(history.configs[CLEANUP_POLICY], "delete");
        assert_eq!(get("orders.state").configs[CLEANUP_POLICY], "compact");
    }

    #[test]
    fn dev_overrides_set_partitions_and_cap_min_insync_at_the_replication() {
        let spec = Spec::parse(BUILT_IN).unwrap();
        let t = spec.resolve(
            "test.",
            Overrides {
                partitions: Some(3),
                replication_factor: Some(1),
            },
        );
        assert!(t.iter().all(|t| t.name.starts_with("test.")));
        assert!(
            t.iter()
                .all(|t| t.partitions == 3 && t.replication_factor == 1)
        );
        assert!(t.iter().all(|t| t.configs[MIN_INSYNC_REPLICAS] == "1"));
    }

    #[test]
    fn bad_files_name_the_topic_and_the_setting() {
        let base = "[defaults]\npartitions = 3\nreplication_factor = 3\nmin_insync_replicas = 2\n\
                    [policies.op]\ncleanup_policy = \"delete\"\nretention_ms = 1000\n";
        let with = |topics: &str| Spec::parse(&format!("{base}{topics}"));
        assert!(with("[[topics]]\nname = \"a\"\npolicy = \"op\"\n").is_ok());
        for (topics, at, needle) in [
            (
                "[[topics]]\nname = \"a\"\npolicy = \"nope\"\n",
                "a",
                "no policy",
            ),
            (
                "[[topics]]\nname = \"a\"\npolicy = \"op\"\npartitions = 0\n",
                "a",
                "partitions 0",
            ),
            (
                "[[topics]]\nname = \"a\"\npolicy = \"op\"\nmin_insync_replicas = 4\n",
                "a",
                "min_insync_replicas 4",
            ),
            (
                "[[topics]]\nname = \"a\"\npolicy = \"op\"\n[[topics]]\nname = \"a\"\npolicy = \"op\"\n",
                "a",
                "twice",
            ),
            (
                "[[topics]]\nname = \"a/b\"\npolicy = \"op\"\n",
                "a/b",
                "name",
            ),
            (
                "[[topics]]\nname = \"a\"\npolicy = \"op\"\nretention_ms = -7\n",
                "a",
                "retention_ms -7",
            ),
        ] {
            match with(topics) {
                Err(SpecError::Invalid { at: got, what }) => {
                    assert_eq!(got, at, "{topics}");
                    assert!(what.contains(needle), "{what} lacks {needle}");
                }
                other => panic!("{topics}: {other:?}"),
            }
        }
        assert!(matches!(
            Spec::parse("[defaults]\npartitions = 1\n"),
            Err(SpecError::Parse(_))
        ));
        assert!(matches!(
            with("[[topics]]\nname = \"a\"\npolicy = \"op\"\nretention = 5\n"),
            Err(SpecError::Parse(_))
        ));
    }
}
