//! The Kafka side: checking what the ingest wrote, and the baseline, a bare
//! rdkafka producer with the ingest's settings sending the same records.

use crate::bench::harness;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use o2c_protocol::{EventId, RawBatch};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use super::super::BenchError;
use super::workload::AgentLoad;
use crate::{consume_all, topic_record_count};

/// How long the order topic's size must stay unchanged to count as final.
const STABLE: Duration = Duration::from_secs(5);

/// What the order topic holds, compared with what the agents sent.
#[derive(Debug)]
pub(super) struct Check {
    /// Records in the topic (watermarks).
    pub(super) records: u64,
    /// Distinct `event_id` headers among them.
    pub(super) distinct: u64,
    /// Records beyond the first copy of an id.
    pub(super) raw_duplicates: u64,
    /// Sent ids missing from the topic.
    pub(super) missing: u64,
    /// Ids in the topic that no agent sent.
    pub(super) unknown: u64,
    /// Records in the dead-letter topic.
    pub(super) dead_letters: u64,
}

/// Reads the whole order topic and the DLQ count.
pub(super) async fn check(
    brokers: &str,
    orders_topic: &str,
    dlq_topic: &str,
    loads: &[AgentLoad],
) -> Result<Check, BenchError> {
    let count = |t: &str| {
        let (b, t) = (brokers.to_owned(), t.to_owned());
        async move {
            topic_record_count(&b, &t)
                .await
                .map(|c| u64::try_from(c).unwrap_or(0))
                .map_err(|e| harness(&format!("counting {t}"), e))
        }
    };
    // Poll the watermarks until they reach what was sent or stop moving
    // for STABLE (the broker may expose acked records a little later).
    let sent: u64 = loads.iter().map(|a| a.events.len() as u64).sum();
    let mut records = count(orders_topic).await?;
    let mut since = Instant::now();
    while records < sent && since.elapsed() < STABLE {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = count(orders_topic).await?;
        if now != records {
            eprintln!("ingest bench: {orders_topic} holds {now} records");
            records = now;
            since = Instant::now();
        }
    }
    let dead_letters = count(dlq_topic).await?;
    // Tansu's watermarks can under-count (seen on memory storage): read at
    // least one record per acked event; a short read fails the run.
    let consumed = consume_all(
        brokers,
        orders_topic,
        usize::try_from(records.max(sent)).unwrap_or(usize::MAX),
        Duration::from_secs(300),
    )
    .await
    .map_err(|e| harness(&format!("reading {orders_topic}"), e))?;
    let expected: HashSet<EventId> = loads
        .iter()
        .flat_map(|a| a.events.iter().map(|e| e.event_id))
        .collect();
    let mut seen: HashSet<EventId> = HashSet::with_capacity(expected.len());
    let (mut raw_duplicates, mut unknown) = (0, 0);
    for r in &consumed {
        match r.header_str("event_id").and_then(|s| s.parse().ok()) {
            Some(id) if expected.contains(&id) => {
                if !seen.insert(id) {
                    raw_duplicates += 1;
                }
            }
            _ => unknown += 1,
        }
    }
    Ok(Check {
        records,
        distinct: seen.len() as u64,
        raw_duplicates,
        missing: (expected.len() - seen.len()) as u64,
        unknown,
        dead_letters,
    })
}

/// The ingest's producer (runtime/src/kafka.rs `producer`), same settings.
fn producer(brokers: &str, linger_ms: u32) -> Result<FutureProducer, BenchError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        .set("message.timeout.ms", "0")
        .set("message.max.bytes", "4000000")
        .set("client.id", "o2c-bench-baseline")
        .create()
        .map_err(|e| harness("creating the baseline producer", e))
}

fn record_headers(headers: &[(&str, String)]) -> OwnedHeaders {
    let mut h = OwnedHeaders::new_with_capacity(headers.len());
    for (k, v) in headers {
        h = h.insert(Header {
            key: k,
            value: Some(v.as_str()),
        });
    }
    h
}

/// Produces one record and waits for Kafka's ack, as the ingest's
/// `kafka::send` does.
async fn send(
    p: &FutureProducer,
    topic: &str,
    key: &str,
    headers: &[(&str, String)],
    value: &[u8],
) -> Result<(), BenchError> {
    let record = FutureRecord::to(topic)
        .key(key)
        .payload(value)
        .headers(record_headers(headers));
    p.send(record, Timeout::Never)
        .await
        .map(|_| ())
        .map_err(|(e, _)| harness(&format!("baseline produce to {topic}"), e))
}

/// Where each event sits inside its frame: `(start, end)` byte offsets.
fn event_spans(payload: &[u8]) -> Result<Vec<(usize, usize)>, BenchError> {
    let raw = RawBatch::decode(payload).map_err(|e| harness("re-reading a frame", e))?;
    let base = payload.as_ptr() as usize;
    Ok(raw
        .events
        .iter()
        .map(|e| {
            let s = e.get().as_ptr() as usize - base;
            (s, s + e.get().len())
        })
        .collect())
}

/// A warmed-up baseline producer (metadata and producer id set up by one
/// record, as the ingest warms its own before the first frame).
pub(super) async fn warm_producer(
    brokers: &str,
    topic: &str,
    linger_ms: u32,
) -> Result<FutureProducer, BenchError> {
    let p = producer(brokers, linger_ms)?;
    send(&p, topic, "warm-up", &[], b"{}").await?;
    Ok(p)
}

/// Sends every event of every agent to `topic` with the ingest's record
/// shape, one task per agent and one frame's records in flight per task
/// (the ingest's concurrency: all of a frame's sends joined, per agent).
/// Returns the time from the first send to the last delivery report.
pub(super) async fn produce_all(
    p: &FutureProducer,
    topic: &str,
    loads: &Arc<Vec<AgentLoad>>,
) -> Result<Duration, BenchError> {
    // Offsets are found before the clock starts: the baseline does no JSON.
    let mut spans = Vec::with_capacity(loads.len());
    for a in loads.iter() {
        let mut per_frame = Vec::with_capacity(a.frames.len());
        for f in &a.frames {
            per_frame.push(event_spans(&f.payload)?);
        }
        spans.push(per_frame);
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, agent_spans) in spans.into_iter().enumerate() {
        let (p, topic, loads) = (p.clone(), topic.to_owned(), loads.clone());
        tasks.spawn(async move {
            let a = &loads[i];
            for (f, frame_spans) in a.frames.iter().zip(agent_spans) {
                // Enqueue the frame's records, then wait for every delivery
                // report: all of them are in flight together.
                let mut pending = Vec::with_capacity(frame_spans.len());
                for (k, &(s, e)) in frame_spans.iter().enumerate() {
                    let seq = f.first_seq + k as u64;
                    let idx = usize::try_from(seq - 1).unwrap_or(usize::MAX);
                    let meta = a.events[idx];
                    let headers = [
                        ("event_id", meta.event_id.to_string()),
                        ("event_type", "OrderCreated".to_owned()),
                        ("schema_version", "1".to_owned()),
                        ("store_id", a.store.to_string()),
                        ("agent_id", a.agent.to_string()),
                        ("seq", seq.to_string()),
                        ("traceparent", a.traceparents[idx].clone()),
                    ];
                    let key = meta.order_id.to_string();
                    let record = FutureRecord::to(&topic)
                        .key(&key)
                        .payload(&f.payload[s..e])
                        .headers(record_headers(&headers));
                    match p.send_result(record) {
                        Ok(delivery) => pending.push(delivery),
                        // Queue full: wait for room, as `send` does.
                        Err((_, record)) => p
                            .send(record, Timeout::Never)
                            .await
                            .map(|_| ())
                            .map_err(|(e, _)| harness("baseline produce", e))?,
                    }
                }
                for delivery in pending {
                    match delivery.await {
                        Ok(Ok(_)) => {}
                        Ok(Err((e, _))) => return Err(harness("baseline delivery", e)),
                        Err(e) => return Err(harness("baseline delivery", e)),
                    }
                }
            }
            Ok::<(), BenchError>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| harness("joining a baseline task", e))??;
    }
    Ok(started.elapsed())
}
