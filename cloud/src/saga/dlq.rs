//! `o2c-cloud dlq list` and `o2c-cloud dlq replay --id <event_id>`.
//!
//! `list` reads the whole dead-letter topic (manual assignment, no group
//! commits) up to its high watermarks. `replay` re-injects the newest dead
//! letter with that `event_id` into its `source_topic`, with its original
//! key and identity headers; the saga's idempotent consumers ignore it
//! wherever it was already processed.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;

use super::SagaError;
use crate::config::Config;
use crate::kafka::{self, TracingContext};

/// One dead letter.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// Partition of the DLQ.
    pub partition: i32,
    /// Offset in it.
    pub offset: i64,
    /// Record key.
    pub key: String,
    /// Headers (the original ones plus `reason`, `reason_detail`,
    /// `source_topic`, `source_group`).
    pub headers: Vec<(String, String)>,
    /// The original value.
    #[serde(skip)]
    pub value: Vec<u8>,
}

impl DeadLetter {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads every record of the DLQ.
pub async fn list(cfg: &Config) -> Result<Vec<DeadLetter>, SagaError> {
    let brokers = cfg.kafka.brokers.clone();
    let topic = cfg.topics().dlq();
    tokio::task::spawn_blocking(move || read_all(&brokers, &topic))
        .await
        .map_err(|e| {
            SagaError::Closed(if e.is_panic() {
                "dlq reader panicked"
            } else {
                "dlq reader"
            })
        })?
}

fn read_all(brokers: &str, topic: &str) -> Result<Vec<DeadLetter>, SagaError> {
    let c: BaseConsumer<TracingContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("o2c-dlq-list-{:08x}", rand::random::<u32>()),
        )
        .set("enable.auto.commit", "false")
        .create_with_context(TracingContext)?;
    let timeout = Duration::from_secs(10);
    let md = c.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0i64;
    let mut highs = std::collections::HashMap::new();
    for p in &partitions {
        let (low, high) = c.fetch_watermarks(topic, *p, timeout)?;
        if high > low {
            tpl.add_partition_offset(topic, *p, Offset::Offset(low))?;
            remaining += high - low;
            highs.insert(*p, high);
        }
    }
    let mut out = Vec::new();
    if remaining == 0 {
        return Ok(out);
    }
    c.assign(&tpl)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !highs.is_empty() && std::time::Instant::now() < deadline {
        let Some(m) = c.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = m?;
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(DeadLetter {
            partition: m.partition(),
            offset: m.offset(),
            key: m
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default(),
            headers,
            value: m.payload().unwrap_or_default().to_vec(),
        });
        if highs
            .get(&m.partition())
            .is_some_and(|h| m.offset() + 1 >= *h)
        {
            highs.remove(&m.partition());
        }
    }
    out.sort_by_key(|d| (d.partition, d.offset));
    Ok(out)
}

/// Re-injects the newest dead letter whose `event_id` is `id` (or whose
/// `partition:offset` is `id`) into its source topic. Returns that topic.
pub async fn replay(cfg: &Config, id: &str) -> Result<String, SagaError> {
    let all = list(cfg).await?;
    let d = all
        .iter()
        .rev()
        .find(|d| d.header("event_id") == Some(id) || format!("{}:{}", d.partition, d.offset) == id)
        .ok_or_else(|| SagaError::NotFound(id.to_owned()))?;
    let topic = d
        .header("source_topic")
        .ok_or_else(|| SagaError::NotFound(format!("{id}: no source_topic header")))?
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
