//! The cluster side: reads the live topics ([`live`]) and applies a plan
//! ([`apply`]) with the Kafka admin API; [`ensure`] is what a service runs
//! at start.
//!
//! Configs are altered with AlterConfigs, which replaces a topic's dynamic
//! configs with the set given: `apply` sends every config the file sets for
//! that topic, so one set by hand outside the file is dropped. Tansu 0.6
//! answers AlterConfigs and CreatePartitions with an error (it implements
//! only IncrementalAlterConfigs); that error names the topic and the call.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use o2c_runtime::kafka::TracingContext;
use rdkafka::ClientConfig;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, OwnedResourceSpecifier,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::plan::{Change, LiveTopic, Plan, plan};
use crate::spec::{SpecError, TopicSpec, desired};
use o2c_cloud_common::config::KafkaConfig;

/// Longest wait of one admin request.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why the cluster could not be read or changed, or does not match.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The topology file.
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    /// The client or a request failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// A whole admin call failed (a broker without that API answers
    /// `UnsupportedFeature`).
    #[error("{call}: {error}")]
    Call {
        /// `create topics`, `create partitions`, `alter configs`,
        /// `describe configs`.
        call: &'static str,
        /// The client's error.
        error: KafkaError,
    },
    /// The broker refused a call for one topic.
    #[error("{call} {topic}: {code}")]
    Refused {
        /// `create`, `create partitions`, `alter configs`, `describe configs`.
        call: &'static str,
        /// The topic.
        topic: String,
        /// The broker's error.
        code: RDKafkaErrorCode,
    },
    /// The live topics differ from the file (each line names the topic and
    /// the setting).
    #[error(
        "the Kafka topics do not match the topology file (run `o2c-cloud topics plan`, then `apply`):\n{0}"
    )]
    Drift(String),
}

fn client(brokers: &str) -> Result<AdminClient<TracingContext>, AdminError> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create_with_context(TracingContext)?)
}

fn opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(TIMEOUT))
}

/// The live state of `names` (those that exist).
pub async fn live(
    brokers: &str,
    names: &[String],
) -> Result<BTreeMap<String, LiveTopic>, AdminError> {
    let admin = std::sync::Arc::new(client(brokers)?);
    let wanted: BTreeSet<String> = names.iter().cloned().collect();
    let blocking = admin.clone();
    let shape = tokio::task::spawn_blocking(move || {
        let md = blocking.inner().fetch_metadata(None, TIMEOUT)?;
        let mut out = BTreeMap::new();
        for t in md.topics() {
            if !wanted.contains(t.name()) || t.error().is_some() {
                continue;
            }
            let partitions = i32::try_from(t.partitions().len()).unwrap_or(i32::MAX);
            let rf = t
                .partitions()
                .iter()
                .map(|p| i32::try_from(p.replicas().len()).unwrap_or(i32::MAX))
                .min()
                .unwrap_or(0);
            out.insert(t.name().to_owned(), (partitions, rf));
        }
        Ok::<_, KafkaError>(out)
    })
    .await
    .map_err(|_| KafkaError::Canceled)??;
    let mut out = BTreeMap::new();
    if shape.is_empty() {
        return Ok(out);
    }
    let specs: Vec<ResourceSpecifier<'_>> =
        shape.keys().map(|n| ResourceSpecifier::Topic(n)).collect();
    let results = admin
        .describe_configs(&specs, &opts())
        .await
        .map_err(|error| AdminError::Call {
            call: "describe configs",
            error,
        })?;
    // A refusal carries no name: it is the topic asked for in its place.
    // A result carries its topic, which decides whose configs they are.
    for (asked, r) in shape.keys().zip(results) {
        let resource = r.map_err(|code| AdminError::Refused {
            call: "describe configs",
            topic: asked.clone(),
            code,
        })?;
        let name = match resource.specifier {
            OwnedResourceSpecifier::Topic(t) => t,
            _ => asked.clone(),
        };
        let Some(&(partitions, replication_factor)) = shape.get(&name) else {
            continue;
        };
        let configs = resource
            .entries
            .into_iter()
            .filter_map(|e| e.value.map(|v| (e.name, v)))
            .collect();
        out.insert(
            name,
            LiveTopic {
                partitions,
                replication_factor,
                configs,
            },
        );
    }
    Ok(out)
}

/// The plan for `desired` against the cluster at `brokers`.
pub async fn plan_live(brokers: &str, desired: &[TopicSpec]) -> Result<Plan, AdminError> {
    let names: Vec<String> = desired.iter().map(|t| t.name.clone()).collect();
    Ok(plan(desired, &live(brokers, &names).await?))
}

/// Makes `plan`'s changes (not its problems); returns them as applied.
/// A topic that another process created meanwhile counts as created.
pub async fn apply(
    brokers: &str,
    plan: &Plan,
    desired: &[TopicSpec],
) -> Result<Vec<String>, AdminError> {
    let admin = client(brokers)?;
    let mut done = Vec::new();
    let creates: Vec<&TopicSpec> = plan
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::Create(t) => Some(t),
            _ => None,
        })
        .collect();
    if !creates.is_empty() {
        let new: Vec<NewTopic<'_>> = creates
            .iter()
            .map(|t| {
                t.configs.iter().fold(
                    NewTopic::new(
                        &t.name,
                        t.partitions,
                        TopicReplication::Fixed(t.replication_factor),
                    ),
                    |n, (k, v)| n.set(k, v),
                )
            })
            .collect();
        for r in admin
            .create_topics(&new, &opts())
            .await
            .map_err(|error| AdminError::Call {
                call: "create topics",
                error,
            })?
        {
            match r {
                Ok(topic) | Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    done.push(format!("created {topic}"));
                }
                Err((topic, code)) => {
                    return Err(AdminError::Refused {
                        call: "create",
                        topic,
                        code,
                    });
                }
            }
        }
    }
    let grows: Vec<NewPartitions<'_>> = plan
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::AddPartitions { topic, to, .. } => {
                Some(NewPartitions::new(topic, usize::try_from(*to).unwrap_or(0)))
            }
            _ => None,
        })
        .collect();
    if !grows.is_empty() {
        for r in admin
            .create_partitions(&grows, &opts())
            .await
            .map_err(|error| AdminError::Call {
                call: "create partitions",
                error,
            })?
        {
            match r {
                Ok(topic) => done.push(format!("grew {topic}")),
                Err((topic, code)) => {
                    return Err(AdminError::Refused {
                        call: "create partitions",
                        topic,
                        code,
                    });
                }
            }
        }
    }
    // Every config of each topic with a differing one (AlterConfigs
    // replaces the whole set).
    let altered: BTreeSet<&str> = plan
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::SetConfig { topic, .. } => Some(topic.as_str()),
            _ => None,
        })
        .collect();
    let alters: Vec<AlterConfig<'_>> = desired
        .iter()
        .filter(|t| altered.contains(t.name.as_str()))
        .map(|t| {
            t.configs.iter().fold(
                AlterConfig::new(ResourceSpecifier::Topic(&t.name)),
                |a, (k, v)| a.set(k, v),
            )
        })
        .collect();
    if !alters.is_empty() {
        for r in admin
            .alter_configs(&alters, &opts())
            .await
            .map_err(|error| AdminError::Call {
                call: "alter configs",
                error,
            })?
        {
            match r {
                Ok(spec) => done.push(format!("reconfigured {spec:?}")),
                Err((spec, code)) => {
                    return Err(AdminError::Refused {
                        call: "alter configs",
                        topic: format!("{spec:?}"),
                        code,
                    });
                }
            }
        }
    }
    Ok(done)
}

/// What a service runs at start: with `create` (dev and tests), applies
/// the plan; otherwise, or if problems remain, a cluster that differs from
/// `desired` is [`AdminError::Drift`], naming each topic and setting.
pub async fn ensure(brokers: &str, desired: &[TopicSpec], create: bool) -> Result<(), AdminError> {
    let mut p = plan_live(brokers, desired).await?;
    if create && !p.changes.is_empty() {
        for line in apply(brokers, &p, desired).await? {
            tracing::info!(%line, "kafka topology applied");
        }
        p = plan_live(brokers, desired).await?;
    }
    if p.is_empty() {
        Ok(())
    } else {
        Err(AdminError::Drift(p.to_string()))
    }
}

/// The topics `[kafka]` asks for (see [`desired`]).
pub fn desired_for(k: &KafkaConfig) -> Result<Vec<TopicSpec>, SpecError> {
    desired(
        k.topics_file.as_deref(),
        &k.topic_prefix,
        k.create_topics,
        k.partitions,
    )
}

/// [`ensure`] for `[kafka]`: what the ingest and the saga run at start.
pub async fn ensure_for(k: &KafkaConfig) -> Result<(), AdminError> {
    ensure(&k.brokers, &desired_for(k)?, k.create_topics).await
}
