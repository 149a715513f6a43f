//! Kafka helpers for assertions: health probe, topic creation, read-everything,
//! test producers, and consumer-group offsets.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::HarnessError;

/// One record read back by [`consume_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// The record key, if any.
    pub key: Option<Vec<u8>>,
    /// Headers by name (a null header value becomes empty; a repeated name keeps the last).
    pub headers: BTreeMap<String, Vec<u8>>,
    /// The payload (empty for a null payload).
    pub payload: Vec<u8>,
    /// The partition it was read from.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
}

impl ConsumedRecord {
    /// A header as UTF-8, if present and valid.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The key as UTF-8, if present and valid.
    pub fn key_str(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
    }
}

fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    config
}

/// Succeeds when the broker answers a metadata request listing at least one broker.
pub async fn kafka_answers(brokers: &str, timeout: Duration) -> Result<(), HarnessError> {
    let brokers = brokers.to_owned();
    spawn_blocking_kafka(move || {
        let consumer: BaseConsumer = client_config(&brokers)
            .create()
            .map_err(|e| HarnessError::kafka("creating a metadata client", e))?;
        let metadata = consumer
            .fetch_metadata(None, timeout)
            .map_err(|e| HarnessError::kafka(format!("metadata from {brokers}"), e))?;
        if metadata.brokers().is_empty() {
            return Err(HarnessError::Timeout {
                what: format!("a broker list in metadata from {brokers}"),
                timeout,
            });
        }
        Ok(())
    })
    .await
}

/// Creates single-partition topics; an existing topic counts as created.
pub async fn create_topics(brokers: &str, names: &[&str]) -> Result<(), HarnessError> {
    create_topics_with_partitions(brokers, names, 1).await
}

/// Creates topics with `partitions` partitions each (replication 1);
/// `TopicAlreadyExists` counts as success.
pub async fn create_topics_with_partitions(
    brokers: &str,
    names: &[&str],
    partitions: i32,
) -> Result<(), HarnessError> {
    // The admin API refuses an empty request.
    if names.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = client_config(brokers)
        .create()
        .map_err(|e| HarnessError::kafka("creating an admin client", e))?;
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&topics, &options)
        .await
        .map_err(|e| HarnessError::kafka(format!("creating topics {names:?}"), e))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(HarnessError::CreateTopic { topic, code }),
        }
    }
    Ok(())
}

/// The partition ids of `topic`, waiting until the broker lists some.
pub async fn topic_partitions(
    brokers: &str,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, HarnessError> {
    let brokers = brokers.to_owned();
    let topic = topic.to_owned();
    spawn_blocking_kafka(move || {
        let consumer: BaseConsumer = client_config(&brokers)
            .create()
            .map_err(|e| HarnessError::kafka("creating a metadata client", e))?;
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let metadata = consumer
                .fetch_metadata(Some(&topic), remaining.max(Duration::from_millis(100)))
                .map_err(|e| HarnessError::kafka(format!("metadata for {topic}"), e))?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            if !partitions.is_empty() {
                return Ok(partitions);
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!("partitions of topic {topic}"),
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
}

/// Number of records in `topic` by its watermarks (sum of high minus low).
pub async fn topic_record_count(brokers: &str, topic: &str) -> Result<i64, HarnessError> {
    let partitions = topic_partitions(brokers, topic, Duration::from_secs(10)).await?;
    let brokers = brokers.to_owned();
    let topic = topic.to_owned();
    spawn_blocking_kafka(move || {
        let consumer: BaseConsumer = client_config(&brokers)
            .create()
            .map_err(|e| HarnessError::kafka("creating a watermark client", e))?;
        let mut total = 0;
        for partition in partitions {
            let (low, high) = consumer
                .fetch_watermarks(&topic, partition, Duration::from_secs(10))
                .map_err(|e| {
                    HarnessError::kafka(format!("watermarks of {topic}/{partition}"), e)
                })?;
            total += high - low;
        }
        Ok(total)
    })
    .await
}

/// Reads `topic` from the beginning of every partition until `expected_count`
/// records arrived, or fails with [`HarnessError::ConsumeShort`] at `timeout`.
///
/// Uses a fresh, unique group id and manual assignment (no group rebalance),
/// and commits nothing, so it never disturbs the system under test.
pub async fn consume_all(
    brokers: &str,
    topic: &str,
    expected_count: usize,
    timeout: Duration,
) -> Result<Vec<ConsumedRecord>, HarnessError> {
    let deadline = Instant::now() + timeout;
    let partitions = topic_partitions(brokers, topic, timeout).await?;
    let group = format!("o2c-test-{}", uuid_like());
    let consumer: StreamConsumer = client_config(brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|e| HarnessError::kafka("creating a consumer", e))?;
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .map_err(|e| HarnessError::kafka(format!("assigning {topic}/{partition}"), e))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| HarnessError::kafka(format!("assigning {topic}"), e))?;

    let mut records = Vec::with_capacity(expected_count);
    while records.len() < expected_count {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let message = match tokio::time::timeout(remaining, consumer.recv()).await {
            Err(_) => {
                return Err(HarnessError::ConsumeShort {
                    topic: topic.to_owned(),
                    expected: expected_count,
                    got: records.len(),
                    timeout,
                });
            }
            Ok(result) => {
                result.map_err(|e| HarnessError::kafka(format!("consuming {topic}"), e))?
            }
        };
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        records.push(ConsumedRecord {
            key: message.key().map(<[u8]>::to_vec),
            headers,
            payload: message.payload().unwrap_or_default().to_vec(),
            partition: message.partition(),
            offset: message.offset(),
        });
    }
    Ok(records)
}

/// 16 random lowercase hex characters.
fn uuid_like() -> String {
    format!("{:016x}", rand::random::<u64>())
}

async fn spawn_blocking_kafka<T, F>(f: F) -> Result<T, HarnessError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, HarnessError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HarnessError::io("joining a Kafka metadata task", std::io::Error::other(e)))?
}

/// Creates every o2c topic under `prefix` (with its trailing dot) as the
/// services do in dev mode: from the topology file, with `partitions` each,
/// one replica and the file's configs.
pub async fn create_o2c_topics(
    brokers: &str,
    prefix: &str,
    partitions: i32,
) -> Result<(), HarnessError> {
    let desired = o2c_topology::desired(None, prefix, true, partitions)
        .map_err(|e| HarnessError::Pipeline(e.to_string()))?;
    o2c_topology::ensure(brokers, &desired, true)
        .await
        .map_err(|e| HarnessError::Pipeline(format!("creating the o2c topics: {e}")))
}

/// A producer for tests that inject records (replays, poison).
pub fn raw_producer(brokers: &str) -> Result<rdkafka::producer::FutureProducer, HarnessError> {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "0")
        .create()
        .map_err(|e| HarnessError::kafka("creating a test producer", e))
}

/// Produces one record (to `partition` if given) and waits for Kafka's ack.
pub async fn produce_raw(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    partition: Option<i32>,
    key: &[u8],
    headers: &[(String, Vec<u8>)],
    payload: &[u8],
) -> Result<(), HarnessError> {
    use rdkafka::message::{Header, OwnedHeaders};
    let mut h = OwnedHeaders::new_with_capacity(headers.len());
    for (k, v) in headers {
        h = h.insert(Header {
            key: k,
            value: Some(v.as_slice()),
        });
    }
    let mut record = rdkafka::producer::FutureRecord::to(topic)
        .key(key)
        .payload(payload)
        .headers(h);
    if let Some(p) = partition {
        record = record.partition(p);
    }
    producer
        .send(record, rdkafka::util::Timeout::Never)
        .await
        .map(|_| ())
        .map_err(|(e, _)| HarnessError::kafka(format!("producing to {topic}"), e))
}

/// One partition of a consumer group: `(topic, partition, committed, end)`,
/// `committed` is `None` when the group committed nothing there.
pub type PartitionOffsets = (String, i32, Option<i64>, i64);

/// Consumer group `group`'s committed offset and the end offset (high
/// watermark) of every partition of `topics` (the per-partition view behind
/// [`group_caught_up`], for diagnosing a stall).
pub async fn group_offsets(
    brokers: &str,
    group: &str,
    topics: &[String],
) -> Result<Vec<PartitionOffsets>, HarnessError> {
    let brokers = brokers.to_owned();
    let group = group.to_owned();
    let topics = topics.to_vec();
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| HarnessError::kafka("creating an offsets client", e))?;
        let t = Duration::from_secs(10);
        let mut tpl = rdkafka::TopicPartitionList::new();
        let mut highs = Vec::new();
        for topic in &topics {
            let md = c
                .fetch_metadata(Some(topic), t)
                .map_err(|e| HarnessError::kafka("metadata", e))?;
            for p in md.topics().iter().flat_map(|t| t.partitions()) {
                let (_, high) = c
                    .fetch_watermarks(topic, p.id(), t)
                    .map_err(|e| HarnessError::kafka("watermarks", e))?;
                tpl.add_partition(topic, p.id());
                highs.push((topic.clone(), p.id(), high));
            }
        }
        let committed = c
            .committed_offsets(tpl, t)
            .map_err(|e| HarnessError::kafka("committed offsets", e))?;
        Ok(highs
            .into_iter()
            .map(|(topic, p, high)| {
                let c = committed
                    .find_partition(&topic, p)
                    .and_then(|e| e.offset().to_raw())
                    .filter(|o| *o >= 0);
                (topic, p, c, high)
            })
            .collect())
    })
    .await
    .map_err(|e| HarnessError::io("joining an offsets task", std::io::Error::other(e)))?
}

/// Whether consumer group `group` has committed the high watermark of
/// every partition of `topics`.
pub async fn group_caught_up(
    brokers: &str,
    group: &str,
    topics: &[String],
) -> Result<bool, HarnessError> {
    Ok(group_offsets(brokers, group, topics)
        .await?
        .iter()
        .all(|(_, _, committed, end)| *end == 0 || committed.is_some_and(|c| c >= *end)))
}
