//! `ingest`: the cloud ingest's events/s and CPU under many simulated agents.
//!
//! Setup, all private to the run: a Mosquitto ([`crate::PrivateMosquitto`]),
//! a Tansu with memory storage ([`crate::PrivateTansu`]; its SQLite storage
//! caps an idempotent producer near 18-20k records/s, see
//! `shared/DEPENDENCY-NOTES.md`, which would measure Tansu, not the ingest),
//! the o2c topics (plus a baseline topic) created up front under a unique
//! prefix with 3 partitions (the ingest's default), and one real release
//! `o2c-cloud ingest` spawned by this module so that its pid is known.
//!
//! Load: 500 simulated agents, each with its own (store, agent) identity and
//! its own rumqttc MQTT v5 connection ([`agents`]). `--n` events (default 1,000,000, about 25 s) are split evenly among them and
//! sent in `Batch` frames of `--batch` events (default 100), built with
//! `o2c-protocol` and encoded before the clock starts ([`workload`]). Each
//! agent keeps one frame in flight at QoS 1 and sends the next only after
//! the cloud's `Ack` for the previous one, as the real agent's sync window
//! does; an ack listing a rejection fails the run.
//!
//! Measured, from the first publish to the last ack:
//! - `events_per_s`: events acked per second;
//! - `ingest_cpu_s`, `ingest_cpu_cores`, `ingest_events_per_cpu_s`: the
//!   ingest's `utime + stime` from `/proc/<pid>/stat` (the target is on
//!   `ingest_events_per_cpu_s`: >= 25,000 events per ingest core-second),
//!   split by thread kind (`rdkafka` threads `rdk:*`, `tokio` workers,
//!   `other`) from `/proc/<pid>/task/*/stat`;
//! - the CPU seconds of Mosquitto, Tansu and this bench process;
//! - per-frame publish → ack latency (p50, p99, max).
//!
//! Then it checks that the order topic holds every sent event id exactly
//! once after dedup, and that the dead-letter topic is empty; it fails the
//! run otherwise.
//!
//! Baseline, same run, same Tansu: a bare rdkafka producer with the ingest's
//! settings (`runtime/src/kafka.rs`: idempotent, `acks=all`, `linger.ms` 1, no
//! message timeout) sends the same `--n` event payloads with the same key and
//! headers, one task per agent with one frame's records in flight, and its
//! own CPU (this process) per event is reported: the difference to the
//! ingest is the cost of MQTT, decoding, validation and acking.

mod agents;
pub mod flood;
pub mod herd;
mod kafka_side;
mod paced;
mod procs;
mod workload;

use crate::bench::harness;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use o2c_protocol::{EventType, KafkaTopics};
use tokio::sync::{mpsc, watch};

use self::procs::{IngestProc, child_pid_with_arg, process_ticks, thread_delta, thread_ticks};
use super::{BenchArgs, BenchError, Measurement, Scenario};
use crate::kafka::create_o2c_topics;
use crate::{PrivateMosquitto, PrivateTansu, TansuStorage, create_topics_with_partitions};

/// The registry entry.
pub const SCENARIO: Scenario = Scenario {
    name: "ingest",
    about: "ingest events/s and CPU per event under 500 simulated agents (private Mosquitto, Tansu in memory)",
    run,
};

const DEFAULT_N: u64 = 1_000_000;
const DEFAULT_BATCH: u64 = 100;
/// Simulated agents, each with its own identity.
const AGENTS: usize = 500;
/// Agents multiplexed on one MQTT connection (1: a connection per agent).
const AGENTS_PER_CONNECTION: usize = 1;
/// Partitions per topic, as the ingest creates them by default.
const PARTITIONS: i32 = 3;
/// The ingest's default `kafka.linger_ms`, used by the baseline too.
const LINGER_MS: u32 = 1;
/// The whole measured phase must end within this.
const RUN_DEADLINE: Duration = Duration::from_secs(600);
/// Every connection must be subscribed within this.
const READY_DEADLINE: Duration = Duration::from_secs(60);

fn run(args: &BenchArgs) -> Result<Measurement, BenchError> {
    let n = args.n.unwrap_or(DEFAULT_N);
    let batch = args.batch.unwrap_or(DEFAULT_BATCH);
    if n < AGENTS as u64 || batch == 0 {
        return Err(BenchError::Invalid(format!(
            "--n must be at least {AGENTS} (one event per agent) and --batch positive"
        )));
    }
    super::block_on(measure(n, batch))
}

/// CPU ticks of everything that matters, taken at one moment.
struct Snapshot {
    at: Instant,
    ingest: u64,
    ingest_threads: BTreeMap<u32, (String, u64)>,
    mosquitto: u64,
    tansu: u64,
    bench: u64,
    bench_threads: BTreeMap<u32, (String, u64)>,
}

struct Pids {
    ingest: u32,
    mosquitto: u32,
    tansu: u32,
}

impl Pids {
    fn snapshot(&self) -> Result<Snapshot, BenchError> {
        let me = std::process::id();
        Ok(Snapshot {
            at: Instant::now(),
            ingest: process_ticks(self.ingest)?,
            ingest_threads: thread_ticks(self.ingest),
            mosquitto: process_ticks(self.mosquitto)?,
            tansu: process_ticks(self.tansu)?,
            bench: process_ticks(me)?,
            bench_threads: thread_ticks(me),
        })
    }
}

async fn measure(n: u64, batch: u64) -> Result<Measurement, BenchError> {
    let ticks = procs::clock_ticks();
    let secs = |t: u64| t as f64 / ticks;

    let built = Instant::now();
    let loads = Arc::new(workload::build(AGENTS, n, batch)?);
    let frames: usize = loads.iter().map(|a| a.frames.len()).sum();
    let frame_bytes: usize = loads
        .iter()
        .flat_map(|a| a.frames.iter().map(|f| f.payload.len()))
        .sum();
    eprintln!(
        "ingest bench: {n} events in {frames} frames built in {:.1} s",
        built.elapsed().as_secs_f64()
    );

    let storage = match std::env::var("O2C_BENCH_TANSU_STORAGE").as_deref() {
        Ok("sqlite") => TansuStorage::Sqlite,
        Ok("memory") | Err(_) => TansuStorage::Memory,
        Ok(other) => {
            return Err(BenchError::Invalid(format!(
                "O2C_BENCH_TANSU_STORAGE={other}: use memory or sqlite"
            )));
        }
    };
    let World {
        mosq,
        tansu,
        brokers,
        prefix,
        topics,
        dir,
    } = World::start("bench", &[], storage, PARTITIONS, &["baseline"]).await?;
    let orders_topic = topics.for_event(EventType::OrderCreated);
    let dlq_topic = topics.dlq();
    let baseline_topic = format!("{prefix}.baseline");

    let ingest = IngestProc::start(dir.path(), &prefix, &mosq.url(), &brokers, PARTITIONS).await?;
    let conf = mosq.dir().join("mosquitto.conf");
    let pids = Pids {
        ingest: ingest.pid(),
        mosquitto: child_pid_with_arg(&conf.display().to_string())
            .ok_or_else(|| BenchError::Invalid("cannot find the Mosquitto pid".into()))?,
        tansu: child_pid_with_arg(&format!("tcp://127.0.0.1:{}", tansu.port()))
            .ok_or_else(|| BenchError::Invalid("cannot find the Tansu pid".into()))?,
    };

    eprintln!(
        "ingest bench: pids ingest {}, mosquitto {}, tansu {}",
        pids.ingest, pids.mosquitto, pids.tansu
    );

    // Connect and subscribe every simulated agent, then start them together.
    let addr = ("127.0.0.1".to_owned(), mosq.port());
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(AGENTS);
    let (go_tx, go_rx) = watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    let connections = AGENTS.div_ceil(AGENTS_PER_CONNECTION);
    for c in 0..connections {
        let range = c * AGENTS_PER_CONNECTION..((c + 1) * AGENTS_PER_CONNECTION).min(AGENTS);
        conns.spawn(agents::run_connection(
            addr.clone(),
            format!("{prefix}-agent-{c}"),
            loads.clone(),
            range,
            ready_tx.clone(),
            go_rx.clone(),
        ));
    }
    drop(ready_tx);
    let ready_by = Instant::now() + READY_DEADLINE;
    for ready in 0..connections {
        let left = ready_by.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ready_rx.recv()).await {
            Ok(Some(())) => {}
            _ => {
                // A connection failed or is stuck: report its error if any.
                conns.abort_all();
                while let Some(r) = conns.join_next().await {
                    if let Ok(Err(e)) = r {
                        return Err(harness("connecting the simulated agents", e));
                    }
                }
                return Err(BenchError::Invalid(format!(
                    "only {ready} of {connections} agent connections subscribed within {READY_DEADLINE:?}"
                )));
            }
        }
    }

    let before = pids.snapshot()?;
    let _ = go_tx.send(true);
    let mut reports = Vec::with_capacity(connections);
    let joined = tokio::time::timeout(RUN_DEADLINE, async {
        while let Some(r) = conns.join_next().await {
            let report = r
                .map_err(|e| harness("joining an agent connection", e))?
                .map_err(|e| harness("simulated agent", e))?;
            reports.push(report);
        }
        Ok::<(), BenchError>(())
    })
    .await;
    let after = pids.snapshot()?;
    match joined {
        Ok(r) => r?,
        Err(_) => {
            return Err(BenchError::Invalid(format!(
                "not every frame was acked within {RUN_DEADLINE:?}; ingest log:\n{}",
                ingest.log_tail()
            )));
        }
    }
    let metrics = ingest.metrics().await?;

    let acked: u64 = reports.iter().map(|r| r.events_acked).sum();
    let frames_acked: u64 = reports.iter().map(|r| r.frames_acked).sum();
    let stale: u64 = reports.iter().map(|r| r.stale_acks).sum();
    let no_subscriber: u64 = reports.iter().map(|r| r.no_subscriber).sum();
    let last_ack = reports
        .iter()
        .filter_map(|r| r.last_ack)
        .max()
        .unwrap_or(after.at);
    let wall = last_ack.duration_since(before.at).as_secs_f64();
    if acked != n {
        return Err(BenchError::Invalid(format!("{acked} of {n} events acked")));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)
        .map_err(|e| BenchError::Histogram(e.to_string()))?;
    for r in &reports {
        for &us in &r.ack_micros {
            hist.saturating_record(us.max(1));
        }
    }

    // What Kafka holds.
    let check = kafka_side::check(&brokers, &orders_topic, &dlq_topic, &loads).await?;

    // Baseline: the bare producer, same payloads, same Tansu.
    let producer = kafka_side::warm_producer(&brokers, &baseline_topic, LINGER_MS).await?;
    let base_before = pids.snapshot()?;
    let base_wall = kafka_side::produce_all(&producer, &baseline_topic, &loads).await?;
    let base_after = pids.snapshot()?;
    drop(producer);
    if check.unknown > 0 || check.dead_letters > 0 || check.missing > 0 {
        return Err(BenchError::Invalid(format!(
            "Kafka check failed: {check:?} for {n} events sent and acked"
        )));
    }

    // Where the ingest's CPU went.
    let (kinds, threads) = thread_delta(&before.ingest_threads, &after.ingest_threads);
    eprintln!("ingest threads (CPU s during the run):");
    for (name, t) in threads.iter().filter(|(_, t)| *t > 0) {
        eprintln!("  {name:<24} {:>8.2}", secs(*t));
    }
    let (bench_kinds, _) = thread_delta(&before.bench_threads, &after.bench_threads);
    let (base_kinds, _) = thread_delta(&base_before.bench_threads, &base_after.bench_threads);

    let ingest_cpu = secs(after.ingest - before.ingest);
    let base_cpu = secs(base_after.bench - base_before.bench);
    let base_secs = base_wall.as_secs_f64();
    let kind = |k: &BTreeMap<&str, u64>, name: &str| secs(k.get(name).copied().unwrap_or(0));
    let metric = |name: &str| metrics.get(name).copied().unwrap_or(f64::NAN);

    let mut m = Measurement::default();
    m.param("n", n);
    m.param("batch_events", batch);
    m.param("agents", AGENTS as u64);
    m.param("agents_per_connection", AGENTS_PER_CONNECTION as u64);
    m.param("frames", frames as u64);
    m.param(
        "frame_bytes_mean",
        (frame_bytes as f64 / frames.max(1) as f64).round(),
    );
    m.param("partitions", PARTITIONS);
    m.param("linger_ms", LINGER_MS);
    m.param("tansu_storage", format!("{storage:?}").to_lowercase());
    m.param("clk_tck", ticks);

    m.metric("events_per_s", n as f64 / wall);
    m.metric("wall_s", wall);
    m.metric("ingest_cpu_s", ingest_cpu);
    m.metric("ingest_cpu_cores", ingest_cpu / wall);
    m.metric("ingest_events_per_cpu_s", n as f64 / ingest_cpu);
    m.metric("ingest_cpu_rdkafka_s", kind(&kinds, "rdkafka"));
    m.metric("ingest_cpu_tokio_s", kind(&kinds, "tokio"));
    m.metric("ingest_cpu_other_s", kind(&kinds, "other"));
    m.metric("mosquitto_cpu_s", secs(after.mosquitto - before.mosquitto));
    m.metric("tansu_cpu_s", secs(after.tansu - before.tansu));
    m.metric("bench_client_cpu_s", secs(after.bench - before.bench));
    m.metric("bench_client_cpu_tokio_s", kind(&bench_kinds, "tokio"));
    m.metric(
        "frame_ack_p50_ms",
        hist.value_at_quantile(0.5) as f64 / 1000.0,
    );
    m.metric(
        "frame_ack_p99_ms",
        hist.value_at_quantile(0.99) as f64 / 1000.0,
    );
    m.metric("frame_ack_max_ms", hist.max() as f64 / 1000.0);
    m.metric(
        "ingest_produce_mean_ms",
        1000.0 * metric("o2c_ingest_produce_seconds_sum")
            / metric("o2c_ingest_produce_seconds_count"),
    );
    m.metric("frames_acked", frames_acked as f64);
    m.metric("stale_acks", stale as f64);
    m.metric("pubacks_no_subscriber", no_subscriber as f64);
    m.metric("ingest_frames_shed", metric("o2c_ingest_frames_shed_total"));
    m.metric(
        "ingest_frames_coalesced",
        metric("o2c_ingest_frames_coalesced_total"),
    );
    m.metric(
        "ingest_produce_errors",
        metric("o2c_ingest_produce_errors_total"),
    );
    m.metric("kafka_records", check.records as f64);
    m.metric("kafka_distinct_event_ids", check.distinct as f64);
    m.metric("kafka_raw_duplicates", check.raw_duplicates as f64);
    m.metric("kafka_missing_event_ids", check.missing as f64);
    m.metric("kafka_dead_letters", check.dead_letters as f64);

    m.baseline("raw_produce_events_per_s", n as f64 / base_secs);
    m.baseline("raw_produce_wall_s", base_secs);
    m.baseline("raw_producer_cpu_s", base_cpu);
    m.baseline("raw_producer_cpu_rdkafka_s", kind(&base_kinds, "rdkafka"));
    m.baseline("raw_producer_cpu_tokio_s", kind(&base_kinds, "tokio"));
    m.baseline("raw_producer_events_per_cpu_s", n as f64 / base_cpu);
    m.baseline(
        "raw_tansu_cpu_s",
        secs(base_after.tansu - base_before.tansu),
    );
    drop(ingest);
    Ok(m)
}

/// What every ingest scenario starts from: a private Mosquitto (with
/// `mosquitto_extra` config lines) and Tansu, the o2c topics (plus
/// `extra_topics`, under the prefix) created with `partitions` each under a
/// fresh `{label}{random}` prefix, and a temp dir.
pub(super) struct World {
    pub(super) mosq: PrivateMosquitto,
    pub(super) tansu: PrivateTansu,
    pub(super) brokers: String,
    pub(super) prefix: String,
    pub(super) topics: KafkaTopics,
    pub(super) dir: tempfile::TempDir,
}

impl World {
    pub(super) async fn start(
        label: &str,
        mosquitto_extra: &[&str],
        storage: TansuStorage,
        partitions: i32,
        extra_topics: &[&str],
    ) -> Result<Self, BenchError> {
        let mosq = PrivateMosquitto::start_with(mosquitto_extra)
            .await
            .map_err(|e| harness("starting Mosquitto", e))?;
        let tansu = PrivateTansu::start_with(storage)
            .await
            .map_err(|e| harness("starting Tansu", e))?;
        let brokers = tansu.brokers();
        let prefix = format!("{label}{:08x}", rand::random::<u32>());
        let topics = KafkaTopics::new(format!("{prefix}."))
            .map_err(|e| BenchError::Invalid(e.to_string()))?;
        create_o2c_topics(&brokers, &format!("{prefix}."), partitions)
            .await
            .map_err(|e| harness("creating the o2c topics", e))?;
        let names: Vec<String> = extra_topics
            .iter()
            .map(|t| format!("{prefix}.{t}"))
            .collect();
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        create_topics_with_partitions(&brokers, &name_refs, partitions)
            .await
            .map_err(|e| harness("creating topics", e))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("o2c-bench-{label}-"))
            .tempdir()
            .map_err(|e| BenchError::io("creating a temp dir", e))?;
        Ok(World {
            mosq,
            tansu,
            brokers,
            prefix,
            topics,
            dir,
        })
    }
}
