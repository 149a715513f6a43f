//! `saga`: time from capture at the agent to `completed` seen at the agent,
//! through ingest, Kafka, the whole saga and the status path.
//!
//! Starts a [`SagaWorld`] (private Mosquitto, ingest, `o2c-cloud saga` with
//! every service in one process, `psp-sim`, one agent, a fresh database)
//! against the shared Kafka and PostgreSQL, then captures `--n` (default
//! 10,000) carry-out card orders at a steady `--batch` orders per second
//! (default 2,000). Capture time is the moment the agent answered 201;
//! completion is observed by polling `GET /v1/orders` every 100 ms, so each
//! latency is rounded up by at most one poll.
//!
//! Metrics: `throughput_per_s` (orders completed per second, first capture
//! to last completion), `latency_p50_ms`, `p99`, `max`, and the capture
//! rate achieved. Baseline: the capture rate alone (the offered load).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::{BenchArgs, BenchError, Measurement, Scenario};
use crate::pipeline::TERMINAL_TOKEN;
use crate::saga::{SagaWorld, Tender, agent_base, order_body};

/// The registry entry.
pub const SCENARIO: Scenario = Scenario {
    name: "saga",
    about: "capture → completed at the agent through ingest, Kafka and the saga (needs the dev services)",
    run,
};

const DEFAULT_N: u64 = 10_000;
const DEFAULT_RATE: u64 = 2_000;
const POLL: Duration = Duration::from_millis(100);
const DEADLINE: Duration = Duration::from_secs(900);

fn harness(what: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::io(what, std::io::Error::other(e.to_string()))
}

fn run(args: &BenchArgs) -> Result<Measurement, BenchError> {
    let n = args.n.unwrap_or(DEFAULT_N);
    let rate = args.batch.unwrap_or(DEFAULT_RATE);
    if n == 0 || rate == 0 {
        return Err(BenchError::Invalid(
            "--n and --batch (rate) must be positive".into(),
        ));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::io("building a runtime", e))?;
    rt.block_on(measure(n, rate))
}

async fn measure(n: u64, rate: u64) -> Result<Measurement, BenchError> {
    let w = SagaWorld::start(&["all"], "", "")
        .await
        .map_err(|e| harness("starting the pipeline", e))?;
    let base = agent_base(&w.agent).map_err(|e| harness("agent address", e))?;
    let client = reqwest::Client::new();

    // Capture at a steady rate; each request runs on its own task.
    let started = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut senders = Vec::with_capacity(n as usize);
    for i in 0..n {
        tick.tick().await;
        let (client, base, tx) = (client.clone(), base.clone(), tx.clone());
        senders.push(tokio::spawn(async move {
            let body = order_body("SKU-B", 1, &Tender::Card(format!("tok_bench_{i}")), false);
            let r = client
                .post(format!("{base}/v1/orders"))
                .bearer_auth(TERMINAL_TOKEN)
                .header("Idempotency-Key", format!("bench-{i}"))
                .json(&body)
                .send()
                .await;
            let at = Instant::now();
            if let Ok(r) = r
                && let Ok(v) = r.json::<serde_json::Value>().await
                && let Some(id) = v["order_id"].as_str()
            {
                let _ = tx.send((id.to_owned(), at));
            }
        }));
    }
    drop(tx);
    for s in senders {
        let _ = s.await;
    }
    let capture_secs = started.elapsed().as_secs_f64();
    let mut captured: HashMap<String, Instant> = HashMap::new();
    while let Ok((id, at)) = rx.try_recv() {
        captured.insert(id, at);
    }
    if captured.len() as u64 != n {
        return Err(BenchError::Invalid(format!(
            "only {} of {n} captures succeeded",
            captured.len()
        )));
    }

    // Watch completions.
    let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000, 3)
        .map_err(|e| BenchError::Histogram(e.to_string()))?;
    let mut last_done = started;
    let deadline = Instant::now() + DEADLINE;
    while !captured.is_empty() && Instant::now() < deadline {
        let now = Instant::now();
        let mut after: Option<String> = None;
        loop {
            let mut url = format!("{base}/v1/orders?limit=1000");
            if let Some(a) = &after {
                url.push_str(&format!("&after={a}"));
            }
            let page: serde_json::Value = client
                .get(url)
                .bearer_auth(TERMINAL_TOKEN)
                .send()
                .await
                .map_err(|e| harness("listing orders", e))?
                .json()
                .await
                .map_err(|e| harness("listing orders", e))?;
            for o in page["orders"].as_array().into_iter().flatten() {
                if o["cloud_status"] == "completed"
                    && let Some(at) = o["order_id"].as_str().and_then(|id| captured.remove(id))
                {
                    let ms = now.saturating_duration_since(at).as_millis() as u64;
                    hist.record(ms.max(1))
                        .map_err(|e| BenchError::Histogram(e.to_string()))?;
                    last_done = now;
                }
            }
            match page["next_after"].as_str() {
                Some(a) => after = Some(a.to_owned()),
                None => break,
            }
        }
        tokio::time::sleep(POLL).await;
    }
    if !captured.is_empty() {
        return Err(BenchError::Invalid(format!(
            "{} orders not completed within {DEADLINE:?}",
            captured.len()
        )));
    }
    let total = last_done.duration_since(started).as_secs_f64();
    let mut m = Measurement::default();
    m.param("n", n);
    m.param("offered_rate_per_s", rate);
    m.param("poll_ms", POLL.as_millis() as u64);
    m.param("saga_processes", "1 (all services)");
    m.metric("throughput_per_s", n as f64 / total);
    m.metric("latency_p50_ms", hist.value_at_quantile(0.50) as f64);
    m.metric("latency_p99_ms", hist.value_at_quantile(0.99) as f64);
    m.metric("latency_max_ms", hist.max() as f64);
    m.baseline("capture_rate_per_s", n as f64 / capture_secs);
    Ok(m)
}
