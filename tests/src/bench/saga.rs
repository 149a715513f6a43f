//! `saga`: time from capture at the agent to `completed` seen at the agent,
//! through ingest, Kafka, the whole saga and the status path.
//!
//! Starts a [`SagaWorld`] (private Mosquitto, ingest, `o2c-cloud saga` with
//! every service in one process, `o2c-psp-sim`, one agent, a fresh database)
//! against the shared PostgreSQL and a private Tansu with memory storage
//! (`O2C_BENCH_KAFKA=shared` uses the dev services' Tansu, SQLite storage,
//! instead). One warm-up order is captured
//! and followed to `completed` first, so consumer-group joins and producer
//! setup (several seconds against Tansu) are not counted. Then it captures
//! `--n` (default 10,000) carry-out card orders at a steady `--batch` orders
//! per second (default 2,000). Each latency is read from the agent's own
//! clock: from the order's `captured_at` (set in the transaction that
//! commits it, just before the 201) to its `cloud_status_received_at` (when
//! the agent stored `completed`). Completions are found by polling
//! `GET /v1/orders` every 250 ms, during and after the capture; the poll
//! only decides when the run ends, it adds nothing to a latency. Each poll
//! lists from the first order not yet completed (orders are listed by id,
//! that is capture time), not the whole table. (Until 2026-12-02 the
//! latency ran from the 201 to the poll that saw `completed`, every
//! 100 ms, so it was rounded up by up to one poll.)
//!
//! The private broker runs with `max_queued_messages 1000000`: with
//! Mosquitto's default (1000) the broker drops QoS 1 status updates for an
//! agent that applies them more slowly than the saga publishes them
//! ("Outgoing messages are being dropped for client A1"), and those orders
//! never show `completed`.
//!
//! With `O2C_BENCH_TRACES=phoenix` every process also traces every order
//! to the dev services' Phoenix (a project of the run's own), and the run
//! ends by reading the spans back: `hop_{from}__{to}_p50_ms` / `_p99_ms`
//! for each hop (from the producing span's start to the start of the span
//! that took the record or message: `ingest.produce -> payment.consume`,
//! `payment.relay -> inventory.consume`, `status.publish ->
//! agent.status.apply`, ...). Tracing costs CPU: compare latencies with a
//! run without it.
//!
//! Metrics: `throughput_per_s` (orders completed per second, first capture
//! to last completion, by the agent's clock), `latency_p50_ms`, `p99`,
//! `max`, and the capture
//! rate achieved. Baseline: the capture rate alone (the offered load).

use crate::bench::harness;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::mpsc::error::TryRecvError;

use super::{BenchArgs, BenchError, Measurement, Scenario};
use crate::pipeline::TERMINAL_TOKEN;
use crate::saga::{SagaWorld, Tender, agent_base, order_body};
use crate::tansu::{PrivateTansu, TansuStorage};

/// The registry entry.
pub const SCENARIO: Scenario = Scenario {
    name: "saga",
    about: "capture → completed at the agent through ingest, Kafka and the saga (needs the dev services)",
    run,
};

const DEFAULT_N: u64 = 10_000;
const DEFAULT_RATE: u64 = 2_000;
/// How often completions are looked for. Each latency comes from the
/// agent's own timestamps, so this only bounds how soon the run ends.
const POLL: Duration = Duration::from_millis(250);
const DEADLINE: Duration = Duration::from_secs(900);
const WARMUP_DEADLINE: Duration = Duration::from_secs(120);
const MOSQUITTO_QUEUE: &str = "max_queued_messages 1000000";
/// `memory` (default): a private Tansu with memory storage, as the project
/// benchmarks Kafka; `shared`: the dev services' Tansu (SQLite storage).
const KAFKA_ENV: &str = "O2C_BENCH_KAFKA";
/// `phoenix`: trace every order to the dev services' Phoenix and report
/// per-hop latencies from the spans.
const TRACES_ENV: &str = "O2C_BENCH_TRACES";

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

async fn measure(n: u64, rate: u64) -> Result<Measurement, BenchError> {
    // Kept alive for the whole run when used.
    let tansu = match std::env::var(KAFKA_ENV).as_deref() {
        Ok("shared") => None,
        Ok("memory") | Err(_) => Some(
            PrivateTansu::start_with(TansuStorage::Memory)
                .await
                .map_err(|e| harness("starting Tansu (memory storage)", e))?,
        ),
        Ok(other) => {
            return Err(BenchError::Invalid(format!(
                "{KAFKA_ENV}={other:?}: expected memory or shared"
            )));
        }
    };
    let kafka = tansu.as_ref().map(PrivateTansu::brokers);
    let traces = match std::env::var(TRACES_ENV).as_deref() {
        Ok("phoenix") => {
            let phoenix = crate::traces::require_phoenix().await;
            let project = format!("o2c-bench-{}", uuid::Uuid::now_v7().simple());
            Some((phoenix, project))
        }
        Ok(other) => {
            return Err(BenchError::Invalid(format!(
                "{TRACES_ENV}={other:?}: expected phoenix"
            )));
        }
        Err(_) => None,
    };
    let tables = traces
        .as_ref()
        .map(|(phoenix, project)| crate::traces::telemetry_table(phoenix, project))
        .unwrap_or_default();
    let opts = crate::saga::WorldOptions {
        kafka: kafka.as_deref(),
        mosquitto_extra: &[MOSQUITTO_QUEUE],
        tables: &tables,
        ..crate::saga::WorldOptions::default()
    };
    let w = SagaWorld::start_with(&["all"], &opts)
        .await
        .map_err(|e| harness("starting the pipeline", e))?;
    let base = agent_base(&w.agent).map_err(|e| harness("agent address", e))?;
    let client = reqwest::Client::new();
    let warmup = Instant::now();
    warm_up(&client, &base).await?;
    let warmup_ms = warmup.elapsed().as_millis() as u64;

    // Capture at a steady rate (each request on its own task) while the
    // loop below watches completions, so an order's completion is seen
    // within one poll even while later orders are still being captured.
    let cpu_before = super::cpu::CpuSnapshot::take()?;
    let started = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let capture = tokio::spawn({
        let (client, base) = (client.clone(), base.clone());
        async move {
            let interval = Duration::from_secs_f64(1.0 / rate as f64);
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut senders = Vec::with_capacity(n as usize);
            for i in 0..n {
                tick.tick().await;
                let (client, base, tx) = (client.clone(), base.clone(), tx.clone());
                senders.push(tokio::spawn(async move {
                    let body =
                        order_body("SKU-B", 1, &Tender::Card(format!("tok_bench_{i}")), false);
                    let r = client
                        .post(format!("{base}/v1/orders"))
                        .bearer_auth(TERMINAL_TOKEN)
                        .header("Idempotency-Key", format!("bench-{i}"))
                        .json(&body)
                        .send()
                        .await;
                    if let Ok(r) = r
                        && let Ok(v) = r.json::<serde_json::Value>().await
                        && let Some(id) = v["order_id"].as_str()
                    {
                        let _ = tx.send(id.to_owned());
                    }
                }));
            }
            drop(tx);
            for s in senders {
                let _ = s.await;
            }
            started.elapsed().as_secs_f64()
        }
    });

    let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000, 3)
        .map_err(|e| BenchError::Histogram(e.to_string()))?;
    let mut record = |ms: u64| {
        hist.record(ms.max(1))
            .map_err(|e| BenchError::Histogram(e.to_string()))
    };
    // Captured (answer received), not yet seen completed.
    let mut captured: HashSet<String> = HashSet::new();
    // Seen completed before its capture answer was taken from the channel,
    // with its capture-to-completed time.
    let mut early: HashMap<String, Span> = HashMap::new();
    let mut recorded: HashSet<String> = HashSet::new();
    let mut answered = 0u64;
    let mut capturing = true;
    // First capture and last completion of the recorded orders, by the
    // agent's clock.
    let mut window: Option<Span> = None;
    let deadline = Instant::now() + DEADLINE;
    // Every order up to this id is completed: the next poll starts there.
    let mut done_through: Option<String> = None;
    while (capturing || !captured.is_empty()) && Instant::now() < deadline {
        loop {
            match rx.try_recv() {
                Ok(id) => {
                    answered += 1;
                    match early.remove(&id) {
                        Some(span) => {
                            record(span.millis())?;
                            recorded.insert(id);
                            window = Some(span.widen(window));
                        }
                        None => {
                            captured.insert(id);
                        }
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    capturing = false;
                    break;
                }
            }
        }
        let mut after = done_through.clone();
        let mut prefix_done = true;
        loop {
            let mut url = format!("{base}/v1/orders?limit=1000");
            if let Some(a) = &after {
                url.push_str(&format!("&after={a}"));
            }
            let page: Page = client
                .get(url)
                .bearer_auth(TERMINAL_TOKEN)
                .send()
                .await
                .map_err(|e| harness("listing orders", e))?
                .json()
                .await
                .map_err(|e| harness("listing orders", e))?;
            for o in &page.orders {
                let id = o.order_id.as_str();
                let completed = o.cloud_status.as_deref() == Some("completed");
                if completed && !recorded.contains(id) {
                    let span = Span::of(o)?;
                    if captured.remove(id) {
                        record(span.millis())?;
                        recorded.insert(id.to_owned());
                        window = Some(span.widen(window));
                    } else {
                        early.entry(id.to_owned()).or_insert(span);
                    }
                }
                prefix_done &= completed;
                if prefix_done {
                    done_through = Some(id.to_owned());
                }
            }
            match page.next_after {
                Some(a) => after = Some(a),
                None => break,
            }
        }
        tokio::time::sleep(POLL).await;
    }
    let capture_secs = capture.await.map_err(|e| harness("capture task", e))?;
    let cpu_after = super::cpu::CpuSnapshot::take()?;
    if answered != n {
        return Err(BenchError::Invalid(format!(
            "only {answered} of {n} captures succeeded"
        )));
    }
    if !captured.is_empty() {
        return Err(BenchError::Invalid(format!(
            "{} orders not completed within {DEADLINE:?}",
            captured.len()
        )));
    }
    let total = window
        .map_or(0.0, |w| w.millis() as f64 / 1000.0)
        .max(0.001);
    let mut m = Measurement::default();
    m.param("n", n);
    m.param("offered_rate_per_s", rate);
    m.param("poll_ms", POLL.as_millis() as u64);
    m.param("saga_processes", "1 (all services)");
    m.param(
        "kafka",
        if kafka.is_some() {
            "private Tansu, memory storage"
        } else {
            "shared Tansu, SQLite storage"
        },
    );
    if kafka.is_some() {
        let program = crate::tansu::tansu_program().map_err(|e| harness("finding Tansu", e))?;
        m.param("tansu_bin", program.display().to_string());
    }
    if let Ok(wait) = std::env::var("O2C_CLOUD__KAFKA__FETCH_WAIT_MS") {
        m.param("fetch_wait_ms_override", wait);
    }
    m.param("mosquitto", MOSQUITTO_QUEUE);
    m.param("warmup_ms", warmup_ms);
    m.metric("throughput_per_s", n as f64 / total);
    m.metric("latency_p50_ms", hist.value_at_quantile(0.50) as f64);
    m.metric("latency_p99_ms", hist.value_at_quantile(0.99) as f64);
    m.metric("latency_max_ms", hist.max() as f64);
    m.baseline("capture_rate_per_s", n as f64 / capture_secs);
    // From the first capture to the last completion, every process of the
    // stack (PostgreSQL's backends included), not the bench's own load.
    let stack_s = cpu_before.record_delta(&cpu_after, &mut m, "");
    m.metric("cpu_stack_ms_per_order", stack_s * 1000.0 / n as f64);
    if let Some((phoenix, project)) = &traces {
        m.param(
            "traces",
            format!("every order, to Phoenix project {project}"),
        );
        for (hop, mut us) in crate::traces::hop_latencies(&settled_spans(phoenix, project).await?) {
            us.sort_unstable();
            let at = |q: f64| us[((us.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
            let name = hop.replace(" -> ", "__").replace('.', "_");
            m.metric(&format!("hop_{name}_p50_ms"), at(0.5));
            m.metric(&format!("hop_{name}_p99_ms"), at(0.99));
        }
    }
    Ok(m)
}

/// The run's spans once they stopped arriving (each process exports every
/// 0.5 s, and Phoenix, one Python process, stores a few hundred a second):
/// read until two reads 3 s apart hold as many, for at most 5 minutes.
async fn settled_spans(
    phoenix: &str,
    project: &str,
) -> Result<Vec<crate::traces::StoredSpan>, BenchError> {
    let mut last = 0;
    for _ in 0..100 {
        let spans = crate::traces::spans(phoenix, project, None)
            .await
            .map_err(|e| harness("reading spans from Phoenix", e))?;
        if spans.len() == last && last > 0 {
            return Ok(spans);
        }
        last = spans.len();
        // Pacing the reads, not waiting for anything in particular.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    Err(BenchError::Invalid(
        "spans kept arriving for 5 minutes".into(),
    ))
}

/// A page of `GET /v1/orders`, only what the poll reads (the rest of each
/// order is skipped unparsed: with a backlog, each poll lists thousands).
#[derive(Debug, serde::Deserialize)]
struct Page {
    orders: Vec<Listed>,
    next_after: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct Listed {
    order_id: String,
    captured_at: String,
    cloud_status: Option<String>,
    cloud_status_received_at: Option<String>,
}

/// From a capture to a completion, both by the agent's clock: the order's
/// `captured_at` (its commit) and when the agent stored `completed`
/// (`cloud_status_received_at`). Exact, whatever the poll interval.
#[derive(Debug, Clone, Copy)]
struct Span {
    from: time::OffsetDateTime,
    to: time::OffsetDateTime,
}

impl Span {
    fn of(o: &Listed) -> Result<Span, BenchError> {
        let parse = |what: &str, s: Option<&str>| {
            let s = s.ok_or_else(|| {
                BenchError::Invalid(format!("order {} has no {what}", o.order_id))
            })?;
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).map_err(
                |e| BenchError::Invalid(format!("order {}: {what} {s:?}: {e}", o.order_id)),
            )
        };
        Ok(Span {
            from: parse("captured_at", Some(&o.captured_at))?,
            to: parse(
                "cloud_status_received_at",
                o.cloud_status_received_at.as_deref(),
            )?,
        })
    }

    fn millis(self) -> u64 {
        u64::try_from((self.to - self.from).whole_milliseconds()).unwrap_or(0)
    }

    /// The smallest span covering `self` and `other`.
    fn widen(self, other: Option<Span>) -> Span {
        match other {
            None => self,
            Some(o) => Span {
                from: self.from.min(o.from),
                to: self.to.max(o.to),
            },
        }
    }
}

/// Captures one order and waits until the agent shows it `completed`.
async fn warm_up(client: &reqwest::Client, base: &str) -> Result<(), BenchError> {
    let body = order_body("SKU-B", 1, &Tender::Card("tok_bench_warmup".into()), false);
    let v: serde_json::Value = client
        .post(format!("{base}/v1/orders"))
        .bearer_auth(TERMINAL_TOKEN)
        .header("Idempotency-Key", "bench-warmup")
        .json(&body)
        .send()
        .await
        .map_err(|e| harness("warm-up capture", e))?
        .json()
        .await
        .map_err(|e| harness("warm-up capture", e))?;
    let id = v["order_id"]
        .as_str()
        .ok_or_else(|| BenchError::Invalid(format!("warm-up capture answered {v}")))?;
    let deadline = Instant::now() + WARMUP_DEADLINE;
    while Instant::now() < deadline {
        let o: serde_json::Value = client
            .get(format!("{base}/v1/orders/{id}"))
            .bearer_auth(TERMINAL_TOKEN)
            .send()
            .await
            .map_err(|e| harness("warm-up status", e))?
            .json()
            .await
            .map_err(|e| harness("warm-up status", e))?;
        if o["cloud_status"] == "completed" {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
    Err(BenchError::Invalid(format!(
        "warm-up order not completed within {WARMUP_DEADLINE:?}"
    )))
}
