//! `fleet`: the fleet view (issue 18) with `--n` simulated agents (default
//! 5,000) on a private Mosquitto.
//!
//! 1. Each simulated agent's retained health message is published (QoS 1,
//!    1,000 stores of 5 agents; a fifth with a backlog, one in 50 offline),
//!    then `o2c-cloud fleet serve` starts: the time until its view holds
//!    every agent (`startup_full_view_ms`: the broker's retained messages
//!    delivered and handled).
//! 2. `GET /v1/fleet` (the whole fleet, body read) and `o2c-cloud fleet`
//!    (the process: config, HTTP, table printed), `--batch` runs each
//!    (default 50): p50, p99, max, and the response size.
//! 3. CPU per heartbeat: 5 rounds of a heartbeat from every agent (retained,
//!    QoS 1, as agents send them), then a sentinel; the service's CPU time
//!    (utime + stime from /proc) from before the first to the sentinel seen,
//!    divided by the heartbeats. The sentinel is polled through
//!    `/v1/fleet?store=` (one store's rows only), so polling costs little.
//!
//! Metrics: `startup_full_view_ms`, `get_p50_ms`/`p99`/`max`,
//! `get_body_bytes`, `cli_p50_ms`/`p99`/`max`, `heartbeats`,
//! `cpu_us_per_heartbeat`, `heartbeats_per_cpu_s`, `cpu_share_at_30s_pct`
//! (one core's share for `--n` agents beating every 30 s), `rss_mib`.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use o2c_protocol::health::{AgentState, HEALTH_SCHEMA_VERSION, Health, OfflineReason};
use o2c_protocol::{AgentId, StoreId};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};

use super::cpu::cpu_seconds_of;
use super::{BenchArgs, BenchError, Measurement, Scenario, block_on, harness};
use crate::PrivateMosquitto;
use crate::fleet_view::{FleetProc, cli};

/// The registry entry.
pub const SCENARIO: Scenario = Scenario {
    name: "fleet",
    about: "fleet view: --n agents' retained health (default 5000); GET /v1/fleet and o2c-cloud fleet --batch times each; CPU per heartbeat",
    run,
};

const DEFAULT_N: u64 = 5_000;
const DEFAULT_RUNS: u64 = 50;
const AGENTS_PER_STORE: u64 = 5;
const ROUNDS: u64 = 5;
const DEADLINE: Duration = Duration::from_secs(300);

fn run(args: &BenchArgs) -> Result<Measurement, BenchError> {
    let n = args.n.unwrap_or(DEFAULT_N);
    let runs = args.batch.unwrap_or(DEFAULT_RUNS);
    if n == 0 || runs == 0 {
        return Err(BenchError::Invalid(
            "--n and --batch must be positive".into(),
        ));
    }
    let (_base, scratch) = args.scratch("bench-fleet")?;
    block_on(scenario(n, runs, scratch.path()))
}

fn ids(i: u64) -> (StoreId, AgentId) {
    let store = format!("B{:05}", i / AGENTS_PER_STORE);
    let agent = format!("{store}-A{}", i % AGENTS_PER_STORE);
    (
        StoreId::new(store).unwrap_or_else(|e| unreachable!("{e}")),
        AgentId::new(agent).unwrap_or_else(|e| unreachable!("{e}")),
    )
}

/// Agent `i`'s health at `now_ms`, round `round`.
fn health(i: u64, round: u64, now_ms: i64) -> Health {
    let (store_id, agent_id) = ids(i);
    let backlog = if i.is_multiple_of(5) {
        10 + i % 300 + round
    } else {
        0
    };
    let h = Health {
        schema_version: HEALTH_SCHEMA_VERSION,
        store_id,
        agent_id,
        state: AgentState::Online,
        reason: None,
        sent_at_ms: now_ms,
        agent_version: "0.1.0".into(),
        heartbeat_secs: 30,
        connected_since_ms: Some(now_ms - 3_600_000),
        pending_events: backlog,
        oldest_pending_age_ms: (backlog > 0).then_some(1_000 * (i % 900)),
        last_acked_seq: 10_000 + i + round,
        rejected_events: u64::from(i.is_multiple_of(97)),
        catalog_version: Some(42),
        disk_free_bytes: Some(20 << 30),
        ingest_lag_ms: Some(20 + i % 50),
        last_ack_at_ms: Some(now_ms - 1_000),
    };
    if i % 50 == 7 {
        h.offline(OfflineReason::ConnectionLost, now_ms)
    } else {
        h
    }
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
    )
    .unwrap_or(i64::MAX)
}

/// A publisher on the broker; publishes retained QoS 1 and waits for
/// every PUBACK.
struct Publisher {
    client: AsyncClient,
    eventloop: EventLoop,
}

impl Publisher {
    async fn connect(port: u16) -> Result<Self, BenchError> {
        let mut o = MqttOptions::new("bench-fleet-agents", "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_clean_start(true);
        o.set_outgoing_inflight_upper_limit(100);
        let (client, mut eventloop) = AsyncClient::new(o, 1024);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => break,
                Ok(_) => {}
                Err(e) => return Err(harness("publisher connect", e)),
            }
        }
        Ok(Self { client, eventloop })
    }

    async fn publish_all(&mut self, msgs: Vec<(String, Vec<u8>)>) -> Result<(), BenchError> {
        let total = msgs.len();
        let client = self.client.clone();
        let sender = tokio::spawn(async move {
            for (topic, payload) in msgs {
                client
                    .publish(topic, QoS::AtLeastOnce, true, payload)
                    .await
                    .map_err(|e| harness("publish", e))?;
            }
            Ok::<(), BenchError>(())
        });
        let mut acked = 0;
        while acked < total {
            match self.eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => return Err(harness("publisher", e)),
            }
        }
        sender.await.map_err(|e| harness("publisher task", e))??;
        Ok(())
    }
}

fn topic(i: u64) -> String {
    let (s, a) = ids(i);
    o2c_protocol::topic::agent_topic(&s, &a, o2c_protocol::topic::Channel::Health)
}

fn round(n: u64, round: u64) -> Result<Vec<(String, Vec<u8>)>, BenchError> {
    let now = now_ms();
    (0..n)
        .map(|i| {
            health(i, round, now)
                .encode()
                .map(|b| (topic(i), b))
                .map_err(|e| harness("encode health", e))
        })
        .collect()
}

fn histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, 600_000_000, 3).map_err(|e| BenchError::Histogram(e.to_string()))
}

fn record(m: &mut Measurement, prefix: &str, h: &Histogram<u64>) {
    let ms = |us: u64| us as f64 / 1000.0;
    m.metric(&format!("{prefix}_p50_ms"), ms(h.value_at_quantile(0.5)));
    m.metric(&format!("{prefix}_p99_ms"), ms(h.value_at_quantile(0.99)));
    m.metric(&format!("{prefix}_max_ms"), ms(h.max()));
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

async fn scenario(n: u64, runs: u64, dir: &std::path::Path) -> Result<Measurement, BenchError> {
    let mut m = Measurement::default();
    m.param("agents", n);
    m.param("runs", runs);
    m.param("heartbeat_rounds", ROUNDS);
    let mosq = PrivateMosquitto::start()
        .await
        .map_err(|e| harness("mosquitto", e))?;
    let mut publisher = Publisher::connect(mosq.port()).await?;
    publisher.publish_all(round(n, 0)?).await?;

    // 1. A fresh view of the retained fleet.
    let started = Instant::now();
    let fleet = FleetProc::start(dir, &mosq.url(), "")
        .await
        .map_err(|e| harness("fleet serve", e))?;
    let agents = usize::try_from(n).unwrap_or(usize::MAX);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let v = fleet.view().await.map_err(|e| harness("view", e))?;
        if v.agents.len() >= agents {
            break;
        }
        if Instant::now() > deadline {
            return Err(harness(
                "full view",
                format!("{} of {n} agents", v.agents.len()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    m.metric(
        "startup_full_view_ms",
        started.elapsed().as_secs_f64() * 1000.0,
    );

    // 2. The whole view over HTTP, and the CLI.
    let http = reqwest::Client::new();
    let url = format!("{}/v1/fleet", fleet.base());
    let mut get = histogram()?;
    let mut body_bytes = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let body = http
            .get(&url)
            .send()
            .await
            .map_err(|e| harness("GET /v1/fleet", e))?
            .bytes()
            .await
            .map_err(|e| harness("GET /v1/fleet body", e))?;
        get.record(
            u64::try_from(t.elapsed().as_micros())
                .unwrap_or(u64::MAX)
                .max(1),
        )
        .map_err(|e| BenchError::Histogram(e.to_string()))?;
        body_bytes = body.len();
    }
    record(&mut m, "get", &get);
    m.metric("get_body_bytes", body_bytes as f64);
    let mut cli_h = histogram()?;
    let config = fleet.config_path().to_owned();
    for _ in 0..runs {
        let t = Instant::now();
        let out = tokio::task::spawn_blocking({
            let config = config.clone();
            move || cli(&config, false)
        })
        .await
        .map_err(|e| harness("cli task", e))?
        .map_err(|e| harness("o2c-cloud fleet", e))?;
        cli_h
            .record(
                u64::try_from(t.elapsed().as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1),
            )
            .map_err(|e| BenchError::Histogram(e.to_string()))?;
        if out.lines().count() < agents {
            return Err(harness("o2c-cloud fleet", "fewer lines than agents"));
        }
    }
    record(&mut m, "cli", &cli_h);

    // 3. CPU per heartbeat.
    let pid = fleet.pid();
    let msgs: Vec<Vec<(String, Vec<u8>)>> = (1..=ROUNDS)
        .map(|r| round(n, r))
        .collect::<Result<_, _>>()?;
    let sentinel_agent = ids(0).1;
    let sentinel_store = ids(0).0;
    let mut sentinel = health(0, 0, now_ms());
    sentinel.pending_events = 424_242;
    let cpu_before = cpu_seconds_of(pid)?;
    for batch in msgs {
        publisher.publish_all(batch).await?;
    }
    publisher
        .publish_all(vec![(
            topic(0),
            sentinel.encode().map_err(|e| harness("encode", e))?,
        )])
        .await?;
    let probe = format!("{}/v1/fleet?store={sentinel_store}", fleet.base());
    let deadline = Instant::now() + DEADLINE;
    loop {
        let v: o2c_fleet::view::FleetView = http
            .get(&probe)
            .send()
            .await
            .map_err(|e| harness("probe", e))?
            .json()
            .await
            .map_err(|e| harness("probe body", e))?;
        if v.agents
            .iter()
            .any(|a| a.row.agent_id == sentinel_agent && a.row.pending_events == 424_242)
        {
            break;
        }
        if Instant::now() > deadline {
            return Err(harness("sentinel", "not seen"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu = cpu_seconds_of(pid)? - cpu_before;
    let beats = n * ROUNDS + 1;
    m.metric("heartbeats", beats as f64);
    m.metric("service_cpu_s", cpu);
    let us = cpu * 1e6 / beats as f64;
    m.metric("cpu_us_per_heartbeat", us);
    if cpu > 0.0 {
        m.metric("heartbeats_per_cpu_s", beats as f64 / cpu);
    }
    m.metric("cpu_share_at_30s_pct", us * n as f64 / 30.0 / 1e6 * 100.0);
    m.metric("rss_mib", rss_mib(pid));
    Ok(m)
}
