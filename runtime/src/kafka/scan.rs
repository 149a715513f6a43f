//! Reading a topic back, for the tools (`dlq list`, `order history`): a
//! consumer with manual assignment and no group commits reads partitions
//! from a start offset up to the high watermarks seen when it began.
//!
//! [`partition_for_key`] is the partition librdkafka's default
//! partitioner (`consistent_random`: CRC-32 of the key, modulo the
//! partition count) gives a keyed record, so a reader can go straight to
//! the one partition that holds a key.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::{TracingContext, header_pairs, key_text};

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedRecord {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The record's timestamp (unix ms), when it has one.
    pub timestamp_ms: Option<i64>,
    /// Its key, as text.
    pub key: String,
    /// Its headers, as text pairs.
    pub headers: Vec<(String, String)>,
    /// Its value.
    pub value: Vec<u8>,
}

impl ScannedRecord {
    /// The last header named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Where a scan starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanFrom {
    /// The oldest record kept.
    Beginning,
    /// The first record whose timestamp is at or after this unix ms (the
    /// beginning when the broker cannot say).
    Time(i64),
}

/// The partition librdkafka's default partitioner gives a record with
/// `key` on a topic of `count` partitions.
pub fn partition_for_key(key: &[u8], count: i32) -> i32 {
    let count = u32::try_from(count.max(1)).unwrap_or(1);
    // The remainder is below `count`, itself an i32.
    i32::try_from(crc32fast::hash(key) % count).unwrap_or(0)
}

/// Reads `topic`'s partitions (all, or the one of `key`) from `from` up to
/// their high watermarks as they were at the start, in partition then
/// offset order. Blocking: run it on a blocking thread. `wait` bounds the
/// whole read.
pub fn scan(
    brokers: &str,
    topic: &str,
    key: Option<&str>,
    from: ScanFrom,
    wait: Duration,
) -> Result<Vec<ScannedRecord>, KafkaError> {
    let mut out = Vec::new();
    scan_each(brokers, topic, key, from, wait, |r| out.push(r))?;
    out.sort_by_key(|r| (r.partition, r.offset));
    Ok(out)
}

/// [`scan`] without keeping the records: each goes to `each` as it is
/// read, in offset order within a partition (partitions interleave).
pub fn scan_each(
    brokers: &str,
    topic: &str,
    key: Option<&str>,
    from: ScanFrom,
    wait: Duration,
    mut each: impl FnMut(ScannedRecord),
) -> Result<(), KafkaError> {
    let c: BaseConsumer<TracingContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("o2c-scan-{:08x}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create_with_context(TracingContext)?;
    let timeout = Duration::from_secs(10);
    let md = c.fetch_metadata(Some(topic), timeout)?;
    let mut partitions: Vec<i32> = md
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(KafkaError::MetadataFetch(
            rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
        ));
    }
    if let Some(key) = key {
        let count = i32::try_from(partitions.len()).unwrap_or(i32::MAX);
        partitions = vec![partition_for_key(key.as_bytes(), count)];
    }
    let starts: HashMap<i32, i64> = match from {
        ScanFrom::Beginning => HashMap::new(),
        ScanFrom::Time(ms) => {
            let mut q = TopicPartitionList::new();
            for p in &partitions {
                q.add_partition_offset(topic, *p, Offset::Offset(ms))?;
            }
            match c.offsets_for_times(q, timeout) {
                Ok(found) => found
                    .elements()
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(o) => Some((e.partition(), o)),
                        // No record that late: nothing to read there
                        // (clamped to the high watermark below).
                        Offset::End => Some((e.partition(), i64::MAX)),
                        _ => None,
                    })
                    .collect(),
                Err(e) => {
                    tracing::debug!(error = %e, "offsets by time unavailable; reading from the beginning");
                    HashMap::new()
                }
            }
        }
    };
    let mut tpl = TopicPartitionList::new();
    let mut highs = HashMap::new();
    for p in &partitions {
        let (low, high) = c.fetch_watermarks(topic, *p, timeout)?;
        let start = starts.get(p).copied().unwrap_or(low).clamp(low, high);
        if high > start {
            tpl.add_partition_offset(topic, *p, Offset::Offset(start))?;
            highs.insert(*p, high);
        }
    }
    if highs.is_empty() {
        return Ok(());
    }
    c.assign(&tpl)?;
    let deadline = crate::clock::now() + wait;
    while !highs.is_empty() {
        if crate::clock::now() >= deadline {
            return Err(KafkaError::MessageConsumption(
                rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
            ));
        }
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m?;
        let Some(&high) = highs.get(&m.partition()) else {
            continue;
        };
        if m.offset() < high {
            each(ScannedRecord {
                partition: m.partition(),
                offset: m.offset(),
                timestamp_ms: m.timestamp().to_millis(),
                key: key_text(&m),
                headers: header_pairs(&m),
                value: m.payload().unwrap_or_default().to_vec(),
            });
        }
        if m.offset() + 1 >= high {
            highs.remove(&m.partition());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
    use rdkafka::util::Timeout;

    use super::*;

    /// The partition computed here is where librdkafka's default
    /// partitioner put each keyed record, and a keyed scan finds them all.
    #[tokio::test]
    async fn keyed_records_are_found_in_the_partition_computed_for_their_key() {
        let mock = MockCluster::new(1).expect("mock cluster");
        mock.create_topic("t", 6, 1).expect("topic");
        let p: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", mock.bootstrap_servers())
            .create()
            .expect("producer");
        let keys: Vec<String> = (0..40).map(|i| format!("0193-order-{i}")).collect();
        for k in &keys {
            let delivery = p
                .send(FutureRecord::to("t").key(k).payload(k), Timeout::Never)
                .await
                .expect("delivered");
            assert_eq!(
                delivery.partition,
                partition_for_key(k.as_bytes(), 6),
                "{k}"
            );
        }
        p.flush(Timeout::Never).expect("flush");
        let brokers = mock.bootstrap_servers();
        let k = keys[7].clone();
        let got = tokio::task::spawn_blocking(move || {
            scan(
                &brokers,
                "t",
                Some(&k),
                ScanFrom::Beginning,
                Duration::from_secs(20),
            )
        })
        .await
        .expect("join")
        .expect("scan");
        assert!(got.iter().any(|r| r.key == keys[7]));
        let partition = partition_for_key(keys[7].as_bytes(), 6);
        assert!(got.iter().all(|r| r.partition == partition));
        let expected = keys
            .iter()
            .filter(|k| partition_for_key(k.as_bytes(), 6) == partition)
            .count();
        assert_eq!(got.len(), expected);
        // From a time after every record: nothing, without reading the
        // partition from its start.
        let brokers = mock.bootstrap_servers();
        let k = keys[7].clone();
        let later = tokio::task::spawn_blocking(move || {
            let future = i64::MAX / 2;
            scan(
                &brokers,
                "t",
                Some(&k),
                ScanFrom::Time(future),
                Duration::from_secs(20),
            )
        })
        .await
        .expect("join")
        .expect("scan");
        assert!(later.is_empty(), "{later:?}");
    }
}
