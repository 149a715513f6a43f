//! `capture`: durable order capture at the agent, over real HTTP on loopback.
//!
//! Runs the release `o2c-agent` binary (found next to `o2c-bench`) in a temp
//! dir inside `--dir` (default: the current directory), after importing a
//! generated 50,000-SKU catalog with `o2c-agent catalog import`. The agent has
//! 64 terminals (one token each) and an MQTT url where nothing listens: the
//! store is offline for the whole run, because capture must not depend on
//! sync, and an unreachable cloud is the case capture exists for. Orders carry
//! 1-3 random catalog SKUs priced by the catalog, so every capture also does
//! catalog lookups. Then, in this order:
//!
//! 1. baseline, before the agent starts: the `fsync` scenario on the same
//!    disk (`single_tx_per_s`: one-row `synchronous=FULL` transactions).
//! 2. `closed_*`: 64 tills, each on its own keep-alive connection, post 50
//!    warm-up orders each, wait at a barrier, then `--n` (default 50,000)
//!    timed orders between them, each sent as soon as the previous one is
//!    answered. Throughput is timed orders over first send to last answer;
//!    latency is send to answer.
//! 3. `open_*`: `--batch` orders per second (default 2,000) for 10 s, each
//!    sent from its own task at its scheduled time; latency runs from the
//!    scheduled time (no coordinated omission; see `load`).
//! 4. `rss_*`: `VmRSS` after start-up (catalog imported, no order yet), the
//!    highest `VmRSS` sampled every 100 ms under load, `VmRSS` after the
//!    closed loop and after both phases, and `VmHWM` (the peak). In MiB.
//! 5. the check: `GET /v1/sync` must report every `201` as pending, then the
//!    agent is killed with SIGKILL and its database, opened read-only, must
//!    hold exactly that many orders, pending outbox events and idempotency
//!    records. Any answer other than `201` fails the run.
//!
//! Group commits are read from the agent's `/metrics` around each phase:
//! `*_commits_over_16ms` counts commits that took over 16 ms in all, and
//! `*_syncs_over_16ms` those whose `COMMIT` alone (WAL write and fsync) did,
//! so a latency tail can be put on the disk or on the agent.
//!
//! CPU is read from `/proc` (per agent thread, and for the bench itself)
//! around the closed loop: the simulated tills share the two cores with the
//! agent, so `closed_client_cpu_cores` says how much of the machine the load
//! generator took.
//!
//! Layout: [`agent`](self) starts the agent and reads `/proc`; [`http`](self)
//! is the till's HTTP/1.1 client and the order generator; [`load`](self) runs
//! the closed and open loops.

mod agent;
pub mod catalog;
mod http;
mod load;
pub mod traced;

use crate::bench::harness;
use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::oneshot;

use super::{BenchArgs, BenchError, Measurement, Scenario};
use agent::{BenchAgent, Cpu, Memory};

/// The registry entry.
pub const SCENARIO: Scenario = Scenario {
    name: "capture",
    about: "durable capture at the agent: 64 HTTP tills closed loop, then a steady \
            offered rate (--batch, default 2000/s); RSS; fsync baseline",
    run,
};

const DEFAULT_N: u64 = 50_000;
const DEFAULT_RATE: u64 = 2_000;
const TERMINALS: usize = 64;
const WARMUP_EACH: u64 = 50;
const OPEN_SECONDS: u64 = 10;
const BASELINE_N: u64 = 2_000;
const RSS_EVERY: Duration = Duration::from_millis(100);

fn run(args: &BenchArgs) -> Result<Measurement, BenchError> {
    let n = args.n.unwrap_or(DEFAULT_N);
    let rate = args.batch.unwrap_or(DEFAULT_RATE);
    if n == 0 || rate == 0 {
        return Err(BenchError::Invalid(
            "--n and --batch (the open-loop rate) must be positive".into(),
        ));
    }
    let base = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().map_err(|e| BenchError::io("reading the cwd", e))?,
    };
    // The baseline first, while nothing else of ours uses the disk.
    let fsync = (super::fsync::SCENARIO.run)(&BenchArgs {
        n: Some(BASELINE_N),
        batch: None,
        dir: Some(base.clone()),
    })?;
    let tmp = tempfile::Builder::new()
        .prefix(".o2c-bench-capture-")
        .tempdir_in(&base)
        .map_err(|e| BenchError::io(format!("creating a temp dir in {}", base.display()), e))?;
    let mut m = super::block_on(measure(tmp.path(), n, rate))?;
    m.param("dir", base.display().to_string());
    m.param("baseline_n", BASELINE_N);

    let single = pick(&fsync.metrics, "single_tx_per_s")?;
    let closed = pick(&m.metrics, "closed_orders_per_s")?;
    m.metric("closed_over_single_tx_ratio", closed / single);
    m.baseline("single_tx_per_s", single);
    for name in ["single_p50_ms", "single_p99_ms", "batched_rows_per_s"] {
        m.baseline(name, pick(&fsync.metrics, name)?);
    }
    m.baseline(
        "raw_fdatasync_per_s",
        pick(&fsync.baseline, "raw_fdatasync_per_s")?,
    );
    Ok(m)
}

fn pick(rows: &[(String, f64)], name: &str) -> Result<f64, BenchError> {
    rows.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| BenchError::Invalid(format!("fsync baseline has no {name}")))
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn push_latencies(m: &mut Measurement, prefix: &str, h: &Histogram<u64>) {
    for (suffix, q) in [("p50", 0.5), ("p99", 0.99), ("p999", 0.999)] {
        m.metric(&format!("{prefix}_{suffix}_ms"), ms(h.value_at_quantile(q)));
    }
    m.metric(&format!("{prefix}_max_ms"), ms(h.max()));
}

fn failed(phase: &str, f: &load::Failures, agent: &BenchAgent) -> BenchError {
    BenchError::Invalid(format!(
        "{phase}: {} answers were not 201; first: {}; agent log:\n{}",
        f.count,
        f.first.as_deref().unwrap_or("?"),
        agent.log_tail()
    ))
}

/// Samples `VmRSS` until stopped; yields the highest value seen, in KiB.
fn sample_rss(pid: u32) -> (oneshot::Sender<()>, tokio::task::JoinHandle<u64>) {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let mut high = 0;
        let mut tick = tokio::time::interval(RSS_EVERY);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = tick.tick() => {
                    if let Ok(Memory { rss_kib, .. }) = agent::memory_of(pid) {
                        high = high.max(rss_kib);
                    }
                }
            }
        }
        high
    });
    (stop, handle)
}

async fn measure(dir: &Path, n: u64, rate: u64) -> Result<Measurement, BenchError> {
    let mut agent = BenchAgent::start(dir, TERMINALS, http::CATALOG_SKUS).await?;
    let addr = agent.addr();
    let idle = agent.memory()?;
    let (stop_rss, rss_high) = sample_rss(agent.pid());

    // Phase A: closed loop.
    let commits_before = agent.commits().await?;
    let (closed, cpu_start) =
        load::closed_loop(addr, &agent.terminals, (n, 0), WARMUP_EACH, || agent.cpu()).await?;
    let cpu_closed = cpu_start?.until(agent.cpu()?);
    let commits = commits_before.until(agent.commits().await?);
    if closed.failures.count > 0 {
        return Err(failed("closed loop", &closed.failures, &agent));
    }
    let after_closed = agent.memory()?;

    // Phase B: open loop at the offered rate.
    let cpu_before_open = agent.cpu()?;
    let commits_before_open = agent.commits().await?;
    let open = load::open_loop(addr, &agent.terminals, rate, OPEN_SECONDS).await?;
    let cpu_open = cpu_before_open.until(agent.cpu()?);
    let open_commits = commits_before_open.until(agent.commits().await?);
    if open.failures.count > 0 {
        return Err(failed("open loop", &open.failures, &agent));
    }

    let after = agent.memory()?;
    let _ = stop_rss.send(());
    let rss_high = rss_high
        .await
        .map_err(|e| BenchError::Invalid(format!("RSS sampler failed: {e}")))?;

    // Every 201 is a committed order: the agent counts it pending, and after
    // SIGKILL its database holds exactly that many.
    let captured = closed.warm_created + closed.created + open.created;
    let sync = agent.get_json("/v1/sync").await?;
    if sync["pending_events"].as_u64() != Some(captured) {
        return Err(BenchError::Invalid(format!(
            "{captured} orders answered 201, but GET /v1/sync says {sync}"
        )));
    }
    let rows = agent.kill_and_count()?;
    if [rows.orders, rows.pending_outbox, rows.idempotency] != [captured; 3] {
        return Err(BenchError::Invalid(format!(
            "{captured} orders answered 201, but after kill -9 agent.db holds {rows:?}"
        )));
    }

    let mut m = Measurement::default();
    m.param("n", n);
    m.param("warmup_orders", closed.warm_created);
    m.param("terminals", TERMINALS as u64);
    m.param("open_rate_per_s", rate);
    m.param("open_seconds", OPEN_SECONDS);
    m.param("catalog_skus", u64::from(http::CATALOG_SKUS));
    m.param("orders_verified_after_kill", captured);
    m.param("mqtt", "offline: nothing listens on the configured port");
    m.param("client", "hyper HTTP/1.1 keep-alive, one tokio runtime");

    m.metric(
        "closed_orders_per_s",
        closed.created as f64 / closed.elapsed.as_secs_f64().max(f64::MIN_POSITIVE),
    );
    push_latencies(&mut m, "closed", &closed.latency);
    m.metric(
        "closed_orders_per_commit",
        (closed.warm_created + closed.created) as f64 / commits.total.max(1) as f64,
    );
    m.metric("closed_commits_over_16ms", commits.slow as f64);
    m.metric("closed_syncs_over_16ms", commits.slow_sync as f64);
    let secs = closed.elapsed;
    m.metric(
        "closed_agent_cpu_cores",
        Cpu::as_cores(cpu_closed.agent, secs),
    );
    m.metric(
        "closed_writer_cpu_cores",
        Cpu::as_cores(cpu_closed.writer, secs),
    );
    m.metric(
        "closed_runtime_cpu_cores",
        Cpu::as_cores(cpu_closed.runtime, secs),
    );
    m.metric(
        "closed_client_cpu_cores",
        Cpu::as_cores(cpu_closed.client, secs),
    );
    m.metric(
        "closed_agent_cpu_us_per_order",
        Cpu::as_micros(cpu_closed.agent) / closed.created.max(1) as f64,
    );

    m.metric(
        "open_offered_per_s",
        open.offered as f64 / open.send_span.as_secs_f64().max(f64::MIN_POSITIVE),
    );
    push_latencies(&mut m, "open", &open.latency);
    m.metric(
        "open_service_p99_ms",
        ms(open.service.value_at_quantile(0.99)),
    );
    m.metric(
        "open_send_lag_p99_ms",
        ms(open.send_lag.value_at_quantile(0.99)),
    );
    m.metric("open_connections", open.connections as f64);
    m.metric("open_commits", open_commits.total as f64);
    m.metric("open_commits_over_16ms", open_commits.slow as f64);
    m.metric("open_syncs_over_16ms", open_commits.slow_sync as f64);
    m.metric(
        "open_agent_cpu_cores",
        Cpu::as_cores(cpu_open.agent, open.elapsed),
    );

    m.metric("rss_idle_mb", mib(idle.rss_kib));
    m.metric("rss_load_max_mb", mib(rss_high.max(after.rss_kib)));
    m.metric("rss_after_closed_mb", mib(after_closed.rss_kib));
    m.metric("rss_after_load_mb", mib(after.rss_kib));
    m.metric("rss_peak_mb", mib(after.hwm_kib));
    m.metric("catalog_import_s", agent.import_time.as_secs_f64());
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_n_or_rate_is_refused() {
        for (n, batch) in [(Some(0), None), (None, Some(0))] {
            let args = BenchArgs {
                n,
                batch,
                ..BenchArgs::default()
            };
            assert!(matches!(run(&args), Err(BenchError::Invalid(_))));
        }
    }

    #[test]
    fn pick_names_what_is_missing() {
        let rows = vec![("a_per_s".to_owned(), 2.0)];
        assert_eq!(pick(&rows, "a_per_s").unwrap(), 2.0);
        assert!(matches!(pick(&rows, "b"), Err(BenchError::Invalid(_))));
    }
}
