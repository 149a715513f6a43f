//! `o2c-cloud dlq list` and `o2c-cloud dlq replay --id <event_id>`.
//!
//! `list` reads the whole dead-letter topic (manual assignment, no group
//! commits) up to its high watermarks. `replay` re-injects the newest dead
//! letter with that `event_id` into its `source_topic`, with its original
//! key and identity headers; the saga's idempotent consumers ignore it
//! wherever it was already processed.
//!
//! Only a saga dead letter can be replayed: its `source_topic` is one of the
//! saga's Kafka topics. The ingest's dead letters come from MQTT (their
//! `source_topic` is a store topic such as `o2c/v1/{store}/{agent}/events`)
//! and never reached Kafka; [`replay_target`] refuses them, and anything
//! else that is not a saga topic, before anything is produced.

use std::time::Duration;

use o2c_protocol::KafkaTopics;

use o2c_cloud_common::config::Config;
use o2c_runtime::kafka;
use o2c_runtime::kafka::scan::{self, ScanFrom, ScannedRecord};

/// Longest a `dlq list` may take to read the topic.
const READ_WAIT: Duration = Duration::from_secs(60);

/// Why `dlq list` or `dlq replay` failed.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// Reading the DLQ or producing failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The producer could not be set up.
    #[error(transparent)]
    KafkaOp(#[from] o2c_runtime::kafka::KafkaOpError),
    /// The reader task ended without an answer.
    #[error("{0}")]
    Reader(&'static str),
    /// No dead letter has that id.
    #[error("no dead letter {0}")]
    NotFound(String),
    /// The letter exists but must not be replayed; nothing was produced.
    #[error("dead letter {id} cannot be replayed: {why}")]
    NotReplayable {
        /// The id asked for.
        id: String,
        /// Why, and what to do instead.
        why: NotReplayable,
    },
}

/// Why a dead letter cannot be replayed ([`replay_target`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReplayable {
    /// It has no `source_topic` header.
    #[error("it has no source_topic header, so where it came from is unknown")]
    NoSourceTopic,
    /// The ingest refused it: a store frame or event that came over MQTT
    /// and never reached Kafka.
    #[error(
        "it is an ingest dead letter (source_topic {topic:?} is the store's MQTT topic, reason \
         {reason:?}): the ingest refused this frame from the store and it never reached a Kafka \
         topic, so there is nothing to replay it into. The event stays `rejected` in that \
         store's agent outbox (`o2c-agent outbox list --state rejected`); fix the cause, then \
         have the store enter the sale again. See docs/operations.md, \"Ingest dead letters\""
    )]
    FromIngest {
        /// The MQTT topic.
        topic: String,
        /// The ingest's reason code.
        reason: String,
    },
    /// `source_topic` is not one of the saga's topics under this config's
    /// prefix.
    #[error(
        "its source_topic {0:?} is not a saga event topic of this config (topic_prefix): \
         check that --config is the one of the deployment that wrote it"
    )]
    NotASagaTopic(String),
}

/// Where a dead letter may be replayed: its `source_topic` if that is one
/// of the saga's event topics under `topics`' prefix.
pub fn replay_target<'d>(
    topics: &KafkaTopics,
    source_topic: Option<&'d str>,
    reason: Option<&str>,
) -> Result<&'d str, NotReplayable> {
    let topic = source_topic.ok_or(NotReplayable::NoSourceTopic)?;
    // Kafka topic names never contain '/'; MQTT topics always do here.
    if topic.contains('/') || o2c_protocol::topic::parse_agent_topic(topic).is_ok() {
        return Err(NotReplayable::FromIngest {
            topic: topic.to_owned(),
            reason: reason.unwrap_or("-").to_owned(),
        });
    }
    if topics.event_type_of(topic).is_none() {
        return Err(NotReplayable::NotASagaTopic(topic.to_owned()));
    }
    Ok(topic)
}

/// One dead letter: a record of the DLQ; its headers are the original
/// ones plus `reason`, `reason_detail`, `source_topic`, `source_group`.
pub type DeadLetter = ScannedRecord;

/// Reads every record of the DLQ.
pub async fn list(cfg: &Config) -> Result<Vec<DeadLetter>, DlqError> {
    let brokers = cfg.kafka.brokers.clone();
    let topic = cfg.topics().dlq();
    tokio::task::spawn_blocking(move || read_all(&brokers, &topic))
        .await
        .map_err(|e| {
            DlqError::Reader(if e.is_panic() {
                "dlq reader panicked"
            } else {
                "dlq reader"
            })
        })?
}

fn read_all(brokers: &str, topic: &str) -> Result<Vec<DeadLetter>, DlqError> {
    Ok(scan::scan(
        brokers,
        topic,
        None,
        ScanFrom::Beginning,
        READ_WAIT,
    )?)
}

/// Re-injects the newest dead letter whose `event_id` is `id` (or whose
/// `partition:offset` is `id`) into its source topic. Returns that topic.
/// A letter [`replay_target`] refuses is not replayed.
pub async fn replay(cfg: &Config, id: &str) -> Result<String, DlqError> {
    let all = list(cfg).await?;
    let d = all
        .iter()
        .rev()
        .find(|d| d.header("event_id") == Some(id) || format!("{}:{}", d.partition, d.offset) == id)
        .ok_or_else(|| DlqError::NotFound(id.to_owned()))?;
    let topic = replay_target(&cfg.topics(), d.header("source_topic"), d.header("reason"))
        .map_err(|why| DlqError::NotReplayable {
            id: id.to_owned(),
            why,
        })?
        .to_owned();
    let headers: Vec<(&str, String)> = d
        .headers
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "reason" | "reason_detail" | "source_topic" | "source_group"
            )
        })
        .map(|(k, v)| (k.as_str(), v.clone()))
        .chain(std::iter::once((
            "replayed_from_dlq",
            format!("{}:{}", d.partition, d.offset),
        )))
        .collect();
    let producer = kafka::producer(&cfg.kafka.brokers, cfg.kafka.linger_ms)?;
    kafka::send(&producer, &topic, &d.key, &headers, &d.value).await?;
    Ok(topic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_saga_topics_are_replay_targets() {
        let topics = KafkaTopics::new("p.").unwrap();
        assert_eq!(
            replay_target(&topics, Some("p.orders.created"), Some("retries_exhausted")),
            Ok("p.orders.created")
        );
        let ingest = replay_target(
            &topics,
            Some("o2c/v1/store-1/A1/events"),
            Some("identity_mismatch"),
        )
        .unwrap_err();
        assert!(
            matches!(ingest, NotReplayable::FromIngest { .. }),
            "{ingest}"
        );
        let text = ingest.to_string();
        for needle in [
            "ingest dead letter",
            "o2c/v1/store-1/A1/events",
            "identity_mismatch",
            "rejected",
            "docs/operations.md",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        // Any MQTT-looking topic, even one that does not parse as a store topic.
        assert!(matches!(
            replay_target(&topics, Some("o2c/v9/x"), None),
            Err(NotReplayable::FromIngest { .. })
        ));
        assert_eq!(
            replay_target(&topics, Some("p.o2c.dlq"), None),
            Err(NotReplayable::NotASagaTopic("p.o2c.dlq".into()))
        );
        assert_eq!(
            replay_target(&topics, Some("q.orders.created"), None),
            Err(NotReplayable::NotASagaTopic("q.orders.created".into()))
        );
        assert_eq!(
            replay_target(&topics, None, None),
            Err(NotReplayable::NoSourceTopic)
        );
    }
}
