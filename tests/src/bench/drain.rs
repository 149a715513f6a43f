//! `drain`: how fast a store's offline backlog reaches Kafka once its link
//! comes back, against the raw ceiling of the same brokers.
//!
//! Setup ([`super::sync_world`]): a private Tansu with **memory storage**
//! (its SQLite storage caps an idempotent producer near 18k records/s here,
//! below the target, so it would measure Tansu rather than o2c), every o2c
//! topic created up front with 3 partitions, a private Mosquitto, one real
//! `o2c-cloud ingest` and one real `o2c-agent` whose MQTT link runs through
//! a [`crate::proxy::LinkProxy`] that starts cut.
//!
//! 1. Capture: `--n` (default 100,000) cash orders posted by 64 concurrent
//!    HTTP clients while the link is cut (`capture_per_s` is reported, not
//!    the point). `GET /v1/sync` must then show `n` pending.
//! 2. Drain: the link is restored. `GET /v1/sync` is polled every 5 ms.
//!    `reconnect_ms` is link-up to `connected: true`, which is mostly the
//!    agent's reconnect backoff (exponential, jittered, up to 30 s) and is
//!    not o2c's throughput; `drain_s` is from `connected` to the agent's
//!    own stamp of the final ack (`sync_state.last_ack_at_ms` in its
//!    SQLite file, whole ms), and
//!    `drain_orders_per_s` = n / `drain_s`. `drain_total_s` includes the
//!    reconnect wait.
//! 3. Check: every outbox row is acked, and `orders.created` holds exactly
//!    the outbox's event ids (the run fails otherwise); raw duplicates
//!    are reported.
//! 4. Baselines on the same Tansu, with a bare rdkafka producer using the
//!    ingest's settings (idempotent, `acks=all`, `linger.ms=1`), writing the
//!    first copy of every record the ingest wrote (same key, headers and
//!    envelope bytes) to fresh 3-partition topics:
//!    - `raw_produce_per_s`: everything pipelined, as fast as librdkafka goes;
//!    - `raw_batched_produce_per_s`: in batches of the ingest's observed
//!      events per frame, each awaited before the next (the ingest's
//!      stop-and-wait pattern without MQTT or the agent).
//!
//! CPU seconds per process (agent, ingest, Mosquitto, Tansu, the bench
//! itself) come from `/proc/<pid>/stat` at `connected` and at the end of
//! the drain (within one 5 ms poll of each). `--batch` sets the agent's `mqtt.max_batch_events` (and then
//! `max_batch_bytes` to the frame limit); without it the agent's defaults
//! (500 events, 256 KiB) are used.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::DeliveryFuture;

use super::cpu::CpuSnapshot;
use super::sync_world::{
    IngestCounters, KafkaCheck, PRODUCER_LINGER_MS, RAW_TOPICS, SyncWorld, WorldOptions, producer,
    record_like, unix_us, warm,
};
use super::{BenchArgs, BenchError, Measurement, Scenario};
use crate::bench::harness;

/// The registry entry.
pub const SCENARIO: Scenario = Scenario {
    name: "drain",
    about: "offline backlog (--n orders) drained through MQTT, ingest and Kafka, vs a raw producer",
    run,
};

const DEFAULT_N: u64 = 100_000;
const CAPTURE_CLIENTS: u64 = 64;
const POLL: Duration = Duration::from_millis(5);
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(90);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(900);
/// The agent's defaults (`agent/src/config.rs`), written out explicitly.
const DEFAULT_BATCH_EVENTS: u64 = 500;
const DEFAULT_BATCH_BYTES: u64 = 256 * 1024;
/// `o2c_protocol::frame::MAX_FRAME_BYTES` minus the agent's framing room.
const MAX_BATCH_BYTES: u64 = 1024 * 1024 - 4096;
const ACK_TIMEOUT_MS: u64 = 5_000;

fn run(args: &BenchArgs) -> Result<Measurement, BenchError> {
    let n = args.n.unwrap_or(DEFAULT_N);
    if n == 0 || args.batch == Some(0) {
        return Err(BenchError::Invalid(
            "--n and --batch must be positive".into(),
        ));
    }
    let (events, bytes) = match args.batch {
        Some(b) => (b, MAX_BATCH_BYTES),
        None => (DEFAULT_BATCH_EVENTS, DEFAULT_BATCH_BYTES),
    };
    super::block_on(measure(n, events, bytes))
}

async fn measure(n: u64, batch_events: u64, batch_bytes: u64) -> Result<Measurement, BenchError> {
    let opts = WorldOptions {
        offline: true,
        netns: false,
        agent_mqtt: format!(
            "[sync]\nmax_batch_events = {batch_events}\nmax_batch_bytes = {batch_bytes}\n\
             ack_timeout_ms = {ACK_TIMEOUT_MS}"
        ),
    };
    let w = SyncWorld::start(&opts).await?;
    let mut m = Measurement::default();
    m.param("n", n);
    m.param("capture_clients", CAPTURE_CLIENTS);
    m.param("agent_max_batch_events", batch_events);
    m.param("agent_max_batch_bytes", batch_bytes);
    m.param("agent_ack_timeout_ms", ACK_TIMEOUT_MS);
    m.param("tansu_storage", "memory");
    m.param("partitions", super::sync_world::PARTITIONS);
    m.param("producer_linger_ms", PRODUCER_LINGER_MS);
    m.param("poll_ms", POLL.as_millis() as u64);

    // 1. Capture while the link is cut.
    let capture_s = capture(&w, n).await?;
    let st = w.sync_status().await?;
    if st["connected"] != false || st["pending_events"] != n {
        return Err(BenchError::Invalid(format!(
            "after the offline capture /v1/sync shows {st}, expected {n} pending and not connected"
        )));
    }
    m.metric("capture_per_s", n as f64 / capture_s);

    // 2. Link up, time the drain.
    let proxy = w
        .proxy
        .as_ref()
        .ok_or_else(|| BenchError::Invalid("the drain world has no link proxy".into()))?;
    let ingest0 = IngestCounters::read(&w.ingest).await?;
    let link_up = SystemTime::now();
    proxy.set_up(true);
    let connected = w.wait_connected(POLL, RECONNECT_TIMEOUT).await?;
    // CPU from the connect on: the reconnect wait is idle backoff.
    let cpu0 = CpuSnapshot::take()?;
    let done = w.wait_drained(POLL, DRAIN_TIMEOUT).await?;
    let cpu1 = CpuSnapshot::take()?;
    let ingest1 = IngestCounters::read(&w.ingest).await?;
    let last_ack_ms = w.last_ack_at_ms()?;
    let last_ack_us = last_ack_ms * 1000;
    let reconnect_s = (unix_us(connected) - unix_us(link_up)) as f64 / 1e6;
    let drain_s = (last_ack_us - unix_us(connected)) as f64 / 1e6;
    let total_s = (last_ack_us - unix_us(link_up)) as f64 / 1e6;
    if drain_s <= 0.0 {
        return Err(BenchError::Invalid(format!(
            "last ack at {last_ack_ms} ms is not after the connect: {done}"
        )));
    }
    m.metric("drain_orders_per_s", n as f64 / drain_s);
    m.metric("drain_s", drain_s);
    m.metric("reconnect_ms", reconnect_s * 1000.0);
    m.metric("drain_total_s", total_s);
    m.metric("drain_total_orders_per_s", n as f64 / total_s);
    ingest0.record_delta(&ingest1, &mut m);
    m.metric(
        "round_trip_per_frame_ms",
        drain_s * 1000.0 / m_value(&m, "ingest_frames").max(1.0),
    );
    cpu0.record_delta(&cpu1, &mut m, "");

    // 3. Kafka holds exactly the captured events.
    let check = w.verify_kafka().await?;
    if check.events as u64 != n {
        return Err(BenchError::Invalid(format!(
            "Kafka holds {} distinct events, {n} were captured",
            check.events
        )));
    }
    m.metric("kafka_events", check.events as f64);
    m.metric("kafka_raw_duplicates", check.raw_duplicates as f64);

    // 4. The raw ceiling of the same broker pair.
    let per_frame = m_value(&m, "ingest_events_per_frame").round().max(1.0) as usize;
    m.param("raw_batched_events", per_frame as u64);
    let cpu2 = CpuSnapshot::take()?;
    let raw_s = raw_produce(&w, &check, &w.topic(RAW_TOPICS[0]), None).await?;
    let cpu3 = CpuSnapshot::take()?;
    let batched_s = raw_produce(&w, &check, &w.topic(RAW_TOPICS[1]), Some(per_frame)).await?;
    let raw_per_s = n as f64 / raw_s;
    m.baseline("raw_produce_per_s", raw_per_s);
    m.baseline("raw_produce_s", raw_s);
    let mut raw_cpu = Measurement::default();
    cpu2.record_delta(&cpu3, &mut raw_cpu, "raw_");
    for (name, v) in raw_cpu.metrics {
        if name == "raw_cpu_tansu_s" || name == "raw_cpu_bench_s" {
            m.baseline(&name, v);
        }
    }
    m.baseline("raw_batched_produce_per_s", n as f64 / batched_s);
    m.metric("drain_vs_raw_ratio", (n as f64 / drain_s) / raw_per_s);
    Ok(m)
}

fn m_value(m: &Measurement, name: &str) -> f64 {
    m.metrics
        .iter()
        .find(|(k, _)| k == name)
        .map_or(0.0, |(_, v)| *v)
}

/// Posts `n` orders from [`CAPTURE_CLIENTS`] concurrent clients; returns
/// the seconds it took.
async fn capture(w: &SyncWorld, n: u64) -> Result<f64, BenchError> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CAPTURE_CLIENTS.min(n) {
        let (poster, next) = (w.poster(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), BenchError>(());
                }
                poster.post_order(&format!("drain-{i}")).await?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| harness("joining a capture client", e))??;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Writes the first copy of every record of `check` to `topic` with a
/// fresh producer (warmed first); all at once, or in awaited batches of
/// `batch`. Returns the seconds from the first send to the last delivery.
async fn raw_produce(
    w: &SyncWorld,
    check: &KafkaCheck,
    topic: &str,
    batch: Option<usize>,
) -> Result<f64, BenchError> {
    let p = producer(&w.brokers)?;
    warm(&p, topic).await?;
    let records = check.firsts();
    let chunk = batch.unwrap_or(records.len()).max(1);
    let started = Instant::now();
    for group in records.chunks(chunk) {
        let mut inflight: VecDeque<DeliveryFuture> = VecDeque::with_capacity(group.len());
        for r in group {
            let mut rec = record_like(r, topic);
            loop {
                match p.send_result(rec) {
                    Ok(f) => {
                        inflight.push_back(f);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        rec = back;
                        // The local queue is full: wait for the oldest.
                        match inflight.pop_front() {
                            Some(f) => delivered(f).await?,
                            None => {
                                return Err(harness("producing", "queue full, nothing in flight"));
                            }
                        }
                    }
                    Err((e, _)) => return Err(harness("producing a baseline record", e)),
                }
            }
        }
        for f in inflight {
            delivered(f).await?;
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

async fn delivered(f: DeliveryFuture) -> Result<(), BenchError> {
    match f.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(harness("baseline delivery", e)),
        Err(_) => Err(harness("baseline delivery", "cancelled")),
    }
}
