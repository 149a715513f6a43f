//! `herd`: many agents with a backlog reconnect within one second (issue 21,
//! "Herds"). Does everything drain, without a Mosquitto queue overflow and
//! with no agent starved?
//!
//! Setup, private to the run as in the `ingest` scenario: a Mosquitto (with
//! the production `max_queued_messages` and `max_packet_size`, and
//! `sys_interval 1`), a Tansu with memory storage, topics under a unique
//! prefix, one real `o2c-cloud ingest` with its default config (no quota,
//! `max_inflight_frames` 512).
//!
//! Load: `--n` agents (default 1,000), each with a backlog of
//! `O2C_BENCH_HERD_BACKLOG` events (default 1,000) in frames of `--batch`
//! (default 100), built before the clock starts. Agent `i` connects at
//! `t0 + i/n s`, so the whole herd connects within one second; each is a
//! [`paced`](super::paced) agent with its own connection, one frame in
//! flight, the next frame at once on its ack, and a resend after 10 s
//! without one (the real agent's default `ack_timeout_ms`).
//!
//! Measured: each agent's finish time (its last ack, from `t0`), the drain
//! time (the last agent's), the median, and `slowest_over_median` (target:
//! <= 3); resends and the ingest's shed and coalesced frames; Mosquitto's
//! dropped messages (`$SYS/broker/publish/messages/dropped` and "dropped"
//! lines in its log); then Kafka's order topic read whole: every event id
//! exactly once after dedup (the run fails otherwise).

use std::sync::Arc;
use std::time::{Duration, Instant};

use o2c_protocol::EventType;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

use super::World;
use super::flood::labelled;
use super::paced::{Pace, run_agent};
use super::{kafka_side, workload};
use crate::TansuStorage;
use crate::bench::{BenchArgs, BenchError, Measurement, Scenario, harness};
use crate::pipeline::Ingest;

/// The registry entry.
pub const SCENARIO: Scenario = Scenario {
    name: "herd",
    about: "1,000 agents with 1,000-event backlogs reconnect within 1 s: drain time, fairness, no broker drops",
    run,
};

const DEFAULT_AGENTS: u64 = 1_000;
const DEFAULT_BACKLOG: u64 = 1_000;
const DEFAULT_BATCH: u64 = 100;
/// The herd connects within this.
const RECONNECT_WINDOW: Duration = Duration::from_secs(1);
/// The real agent's default resend timeout.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// The production broker's queue and packet limits
/// (`deploy/mosquitto/o2c.conf`), and `$SYS` every second.
const MOSQUITTO_CONFIG: [&str; 3] = [
    "max_queued_messages 100000",
    "max_packet_size 4194304",
    "sys_interval 1",
];
/// The whole drain must end within this.
const RUN_DEADLINE: Duration = Duration::from_secs(900);

fn run(args: &BenchArgs) -> Result<Measurement, BenchError> {
    let agents = args.n.unwrap_or(DEFAULT_AGENTS);
    let batch = args.batch.unwrap_or(DEFAULT_BATCH);
    let backlog = match std::env::var("O2C_BENCH_HERD_BACKLOG") {
        Ok(v) => v
            .parse::<u64>()
            .map_err(|e| BenchError::Invalid(format!("O2C_BENCH_HERD_BACKLOG={v}: {e}")))?,
        Err(_) => DEFAULT_BACKLOG,
    };
    if agents == 0 || batch == 0 || backlog == 0 {
        return Err(BenchError::Invalid(
            "--n (agents), --batch and O2C_BENCH_HERD_BACKLOG must be positive".into(),
        ));
    }
    super::super::block_on(measure(agents as usize, backlog, batch))
}

async fn measure(agents: usize, backlog: u64, batch: u64) -> Result<Measurement, BenchError> {
    let built = Instant::now();
    let loads = Arc::new(workload::build(agents, agents as u64 * backlog, batch)?);
    let total = agents as u64 * backlog;
    eprintln!(
        "herd: {agents} agents x {backlog} events built in {:.1} s",
        built.elapsed().as_secs_f64()
    );
    let World {
        mosq,
        tansu: _tansu,
        brokers,
        prefix,
        topics,
        dir,
    } = World::start("herd", &MOSQUITTO_CONFIG, TansuStorage::Memory, 3, &[]).await?;
    let ingest = Ingest::start(dir.path(), &prefix, &mosq.url(), &brokers)
        .await
        .map_err(|e| harness("starting the ingest", e))?;

    let addr = ("127.0.0.1".to_owned(), mosq.port());
    let pace = Pace {
        interval: Duration::ZERO,
        ack_timeout: ACK_TIMEOUT,
    };
    let t0 = Instant::now();
    let step = RECONNECT_WINDOW.div_f64(agents as f64);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..agents {
        let (addr, loads, id) = (addr.clone(), loads.clone(), format!("{prefix}-a{i}"));
        let at = t0 + step.mul_f64(i as f64);
        set.spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let frames = loads[i].frames.len();
            run_agent(addr, id, loads, i, 0..frames, pace).await
        });
    }
    let mut runs = Vec::with_capacity(agents);
    let joined = tokio::time::timeout(RUN_DEADLINE, async {
        while let Some(r) = set.join_next().await {
            runs.push(
                r.map_err(|e| harness("joining an agent", e))?
                    .map_err(|e| harness("simulated agent", e))?,
            );
        }
        Ok::<(), BenchError>(())
    })
    .await;
    match joined {
        Ok(r) => r?,
        Err(_) => {
            return Err(BenchError::Invalid(format!(
                "{} of {agents} agents drained within {RUN_DEADLINE:?}",
                runs.len()
            )));
        }
    }
    let acked: u64 = runs.iter().map(|r| r.events_acked).sum();
    if acked != total {
        return Err(BenchError::Invalid(format!(
            "{acked} of {total} events acked"
        )));
    }
    let mut finish: Vec<f64> = runs
        .iter()
        .map(|r| r.finished.duration_since(t0).as_secs_f64())
        .collect();
    finish.sort_by(f64::total_cmp);
    let connect_spread = runs
        .iter()
        .map(|r| r.started.duration_since(t0).as_secs_f64())
        .fold(0.0, f64::max);
    let pct = |q: f64| finish[((finish.len() - 1) as f64 * q).round() as usize];
    let (median, slowest) = (pct(0.5), pct(1.0));

    let sys_dropped = sys_dropped(&addr).await;
    let log = std::fs::read_to_string(mosq.log_path()).unwrap_or_default();
    let log_drops = log.lines().filter(|l| l.contains("dropped")).count();
    let metrics = ingest
        .metrics()
        .await
        .map_err(|e| harness("GET /metrics", e))?;
    let counter = |name: &str| labelled(&metrics, name, "").values().sum::<f64>();
    let check = kafka_side::check(
        &brokers,
        &topics.for_event(EventType::OrderCreated),
        &topics.dlq(),
        &loads,
    )
    .await?;
    if check.unknown > 0 || check.dead_letters > 0 || check.missing > 0 {
        return Err(BenchError::Invalid(format!(
            "Kafka check failed: {check:?} for {total} events sent and acked"
        )));
    }

    let mut m = Measurement::default();
    m.param("agents", agents as u64);
    m.param("backlog_events_per_agent", backlog);
    m.param("batch_events", batch);
    m.param("reconnect_window_s", RECONNECT_WINDOW.as_secs_f64());
    m.param("ack_timeout_s", ACK_TIMEOUT.as_secs_f64());
    m.param("tansu_storage", "memory");
    m.param("mosquitto_config", MOSQUITTO_CONFIG.join("; "));
    m.metric("drain_s", slowest);
    m.metric("events_per_s", total as f64 / slowest);
    m.metric("connect_spread_s", connect_spread);
    m.metric("finish_min_s", pct(0.0));
    m.metric("finish_p50_s", median);
    m.metric("finish_p90_s", pct(0.9));
    m.metric("finish_max_s", slowest);
    m.metric("slowest_over_median", slowest / median);
    m.metric(
        "resends",
        runs.iter().map(|r| r.resends).sum::<u64>() as f64,
    );
    m.metric(
        "agents_that_resent",
        runs.iter().filter(|r| r.resends > 0).count() as f64,
    );
    m.metric(
        "connect_retries",
        runs.iter().map(|r| r.connect_retries).sum::<u64>() as f64,
    );
    m.metric(
        "agents_that_retried_connect",
        runs.iter().filter(|r| r.connect_retries > 0).count() as f64,
    );
    m.metric(
        "reconnects",
        runs.iter().map(|r| r.reconnects).sum::<u64>() as f64,
    );
    m.metric(
        "stale_acks",
        runs.iter().map(|r| r.stale_acks).sum::<u64>() as f64,
    );
    m.metric(
        "ingest_frames_shed",
        counter("o2c_ingest_frames_shed_total"),
    );
    m.metric(
        "ingest_frames_coalesced",
        counter("o2c_ingest_frames_coalesced_total"),
    );
    m.metric(
        "ingest_events_duplicate",
        counter("o2c_ingest_events_duplicate_total"),
    );
    m.metric("mosquitto_sys_dropped", sys_dropped.unwrap_or(f64::NAN));
    m.metric("mosquitto_log_drop_lines", log_drops as f64);
    m.metric("kafka_distinct_event_ids", check.distinct as f64);
    m.metric("kafka_raw_duplicates", check.raw_duplicates as f64);
    m.metric("kafka_missing_event_ids", check.missing as f64);
    drop(ingest);
    Ok(m)
}

/// Mosquitto's `$SYS/broker/publish/messages/dropped` (retained, refreshed
/// every `sys_interval`), or `None` if it does not answer within 5 s.
async fn sys_dropped(addr: &(String, u16)) -> Option<f64> {
    const TOPIC: &str = "$SYS/broker/publish/messages/dropped";
    let mut opts = MqttOptions::new(
        format!("herd-sys-{:08x}", rand::random::<u32>()),
        addr.0.clone(),
        addr.1,
    );
    opts.set_clean_start(true);
    let (client, mut events) = AsyncClient::new(opts, 8);
    client.try_subscribe(TOPIC, QoS::AtMostOnce).ok()?;
    let read = async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic.as_ref() == TOPIC.as_bytes() => {
                    return String::from_utf8_lossy(&p.payload)
                        .trim()
                        .parse::<f64>()
                        .ok();
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    };
    let got = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .ok()
        .flatten();
    let _ = client.try_disconnect();
    got
}
