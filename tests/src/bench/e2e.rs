//! `e2e`: latency from a till's HTTP 201 to the moment the agent holds the
//! cloud's ack for that order, at a steady offered rate, against the Kafka
//! produce latency of the same broker alone.
//!
//! Setup ([`super::sync_world`]): a private Tansu with **memory storage**
//! (its SQLite storage alone costs about 1.5 ms p50 / 5 ms p99 per record
//! here, which would measure Tansu's SQLite rather than o2c), every o2c
//! topic created up front with 3 partitions, a private Mosquitto, one real
//! `o2c-cloud ingest` and one real `o2c-agent` connected straight to
//! Mosquitto. The link is up and the backlog empty: 500 warm-up orders are
//! captured and drained before anything is timed.
//!
//! Load: `--n` orders (default 20,000) offered open loop at `--batch`
//! orders per second (default 1,000, so about 20 s): a
//! `tokio::time::interval` ticks at the rate (missed ticks burst, so slow
//! answers never lower the offered rate) and each order is posted from its
//! own task.
//!
//! Latency per order: the 201's arrival at the bench (wall clock, µs) to
//! the outbox row's `acked_at_ms`, read after the run from the agent's
//! SQLite file (read-only). The agent stamps `acked_at_ms` when the ack
//! arrives, just before it commits it, in whole milliseconds (truncated),
//! so each latency reads up to 1 ms low; orders whose ack stamp precedes
//! the bench's 201 timestamp (the 201 was slower to reach the bench than
//! the ack to the agent) count as `ack_before_201` and as 1 µs.
//! `http_201_*` is the POST round trip alone.
//!
//! Checks: every outbox row is acked and `orders.created` holds exactly
//! the outbox's event ids, or the run fails. CPU seconds per process
//! (agent, ingest, Mosquitto, Tansu, bench) cover the timed run.
//!
//! Baseline: 2,000 sequential single-record sends (a real envelope with
//! its headers, as the ingest wrote it) to a fresh topic on the same Tansu
//! with the ingest's producer settings (idempotent, `acks=all`,
//! `linger.ms=1`), each awaited: `produce_*`.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use rdkafka::util::Timeout;

use super::cpu::CpuSnapshot;
use super::sync_world::{
    IngestCounters, PRODUCER_LINGER_MS, RAW_TOPICS, SyncWorld, WorldOptions, histogram, producer,
    push_latencies, record_like, unix_us, warm,
};
use super::{BenchArgs, BenchError, Measurement, Scenario};
use crate::bench::harness;

/// The registry entry.
pub const SCENARIO: Scenario = Scenario {
    name: "e2e",
    about: "HTTP 201 -> ack at the agent at a steady rate (--batch orders/s), vs Kafka produce alone",
    run,
};

const DEFAULT_N: u64 = 20_000;
const DEFAULT_RATE: u64 = 1_000;
const WARMUP: u64 = 500;
const BASELINE_SENDS: usize = 2_000;
const POLL: Duration = Duration::from_millis(5);
const TIMEOUT: Duration = Duration::from_secs(120);
/// The agent's defaults (`agent/src/config.rs`), written out explicitly.
const BATCH_EVENTS: u64 = 500;
const BATCH_BYTES: u64 = 256 * 1024;
const ACK_TIMEOUT_MS: u64 = 5_000;

fn run(args: &BenchArgs) -> Result<Measurement, BenchError> {
    let n = args.n.unwrap_or(DEFAULT_N);
    let rate = args.batch.unwrap_or(DEFAULT_RATE);
    if n == 0 || rate == 0 {
        return Err(BenchError::Invalid(
            "--n and --batch (rate) must be positive".into(),
        ));
    }
    super::block_on(measure(n, rate))
}

/// One timed order.
pub(super) struct Sample {
    order_id: String,
    sent: SystemTime,
    answered: SystemTime,
}

/// The latencies of a set of timed orders, once all are acked.
pub(super) struct Latencies {
    /// 201 at the bench to the ack at the agent, µs.
    pub(super) e2e: Histogram<u64>,
    /// The POST's round trip, µs.
    pub(super) http: Histogram<u64>,
    /// Orders whose ack stamp precedes their 201 (counted as 1 µs).
    pub(super) ack_before_201: u64,
}

impl Latencies {
    /// Reads each order's `acked_at_ms` from the agent's outbox.
    pub(super) fn of(w: &SyncWorld, samples: &[Sample]) -> Result<Self, BenchError> {
        let acked: HashMap<String, Option<i64>> = w
            .outbox_rows()?
            .into_iter()
            .map(|r| (r.order_id, r.acked_at_ms))
            .collect();
        let mut e2e = histogram()?;
        let mut http = histogram()?;
        let mut early = 0u64;
        for s in samples {
            let ack_ms = acked.get(&s.order_id).copied().flatten().ok_or_else(|| {
                BenchError::Invalid(format!("order {} has no ack time", s.order_id))
            })?;
            let lat = ack_ms * 1000 - unix_us(s.answered);
            if lat < 0 {
                early += 1;
            }
            e2e.saturating_record(u64::try_from(lat).unwrap_or(0).max(1));
            let rtt = unix_us(s.answered) - unix_us(s.sent);
            http.saturating_record(u64::try_from(rtt).unwrap_or(0).max(1));
        }
        Ok(Self {
            e2e,
            http,
            ack_before_201: early,
        })
    }
}

async fn measure(n: u64, rate: u64) -> Result<Measurement, BenchError> {
    let opts = WorldOptions {
        offline: false,
        netns: false,
        agent_mqtt: format!(
            "[sync]\nmax_batch_events = {BATCH_EVENTS}\nmax_batch_bytes = {BATCH_BYTES}\n\
             ack_timeout_ms = {ACK_TIMEOUT_MS}"
        ),
    };
    let w = SyncWorld::start(&opts).await?;
    let mut m = Measurement::default();
    m.param("n", n);
    m.param("offered_rate_per_s", rate);
    m.param("warmup_orders", WARMUP);
    m.param("agent_max_batch_events", BATCH_EVENTS);
    m.param("agent_max_batch_bytes", BATCH_BYTES);
    m.param("agent_ack_timeout_ms", ACK_TIMEOUT_MS);
    m.param("tansu_storage", "memory");
    m.param("partitions", super::sync_world::PARTITIONS);
    m.param("producer_linger_ms", PRODUCER_LINGER_MS);
    m.param("ack_time_source", "outbox.acked_at_ms (1 ms, truncated)");

    w.wait_connected(POLL, TIMEOUT).await?;
    offer(&w, "warm", WARMUP, rate).await?;
    w.wait_drained(POLL, TIMEOUT).await?;

    let cpu0 = CpuSnapshot::take()?;
    let ingest0 = IngestCounters::read(&w.ingest).await?;
    let samples = offer(&w, "e2e", n, rate).await?;
    w.wait_drained(POLL, TIMEOUT).await?;
    let cpu1 = CpuSnapshot::take()?;
    let ingest1 = IngestCounters::read(&w.ingest).await?;

    let first = samples.iter().map(|s| s.sent).min();
    let last = samples.iter().map(|s| s.sent).max();
    if let (Some(first), Some(last)) = (first, last) {
        let span = (unix_us(last) - unix_us(first)) as f64 / 1e6;
        m.metric("achieved_offered_per_s", (n - 1) as f64 / span.max(1e-9));
    }

    let lat = Latencies::of(&w, &samples)?;
    push_latencies(&mut m, "e2e", &lat.e2e, Measurement::metric);
    m.metric("e2e_mean_ms", lat.e2e.mean() / 1000.0);
    m.metric("ack_before_201", lat.ack_before_201 as f64);
    push_latencies(&mut m, "http_201", &lat.http, Measurement::metric);
    ingest0.record_delta(&ingest1, &mut m);
    cpu0.record_delta(&cpu1, &mut m, "");

    let check = w.verify_kafka().await?;
    if check.events as u64 != n + WARMUP {
        return Err(BenchError::Invalid(format!(
            "Kafka holds {} distinct events, {} were captured",
            check.events,
            n + WARMUP
        )));
    }
    m.metric("kafka_events", check.events as f64);
    m.metric("kafka_raw_duplicates", check.raw_duplicates as f64);

    // Baseline: the produce alone, one record at a time.
    let sample = check
        .firsts()
        .first()
        .copied()
        .ok_or_else(|| BenchError::Invalid("no record to replay".into()))?;
    let topic = w.topic(RAW_TOPICS[0]);
    let p = producer(&w.brokers)?;
    warm(&p, &topic).await?;
    let mut produce = histogram()?;
    for _ in 0..BASELINE_SENDS {
        let t0 = Instant::now();
        p.send(record_like(sample, &topic), Timeout::Never)
            .await
            .map_err(|(e, _)| harness("baseline produce", e))?;
        produce.saturating_record(
            u64::try_from(t0.elapsed().as_micros())
                .unwrap_or(u64::MAX)
                .max(1),
        );
    }
    m.param("baseline_sends", BASELINE_SENDS as u64);
    push_latencies(&mut m, "produce", &produce, Measurement::baseline);
    Ok(m)
}

/// Offers `n` orders at `rate` per second, open loop; returns every sample
/// or the first failure.
pub(super) async fn offer(
    w: &SyncWorld,
    tag: &str,
    n: u64,
    rate: u64,
) -> Result<Vec<Sample>, BenchError> {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        tick.tick().await;
        let poster = w.poster();
        let key = format!("{tag}-{i}");
        tasks.spawn(async move {
            let sent = SystemTime::now();
            let (order_id, answered) = poster.post_order(&key).await?;
            Ok::<Sample, BenchError>(Sample {
                order_id,
                sent,
                answered,
            })
        });
    }
    let mut samples = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    while let Some(done) = tasks.join_next().await {
        samples.push(done.map_err(|e| harness("joining a capture task", e))??);
    }
    Ok(samples)
}
