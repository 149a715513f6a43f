//! `catalog`: the catalog down-sync (issue 15), against the release
//! `o2c-cloud catalog` and `o2c-agent`, a Mosquitto over mutual TLS and
//! PostgreSQL, in this order:
//!
//! 1. the cloud's catalog: `--n` products (default 1,000,000), the first
//!    50,000 the capture scenario's SKUs at its prices, imported with
//!    `o2c-cloud catalog import` (`import_s`).
//! 2. `full_sync_*`: an agent with an empty catalog pulls it all (pages of
//!    5,000, gzip); seconds from its start to the version applied, and its
//!    peak RSS (`VmHWM`). Targets: under 30 s, at most 64 MiB. A 50 ms
//!    sampler adds when the sampled peak came and how much was heap.
//! 3. `during_sync_*` and `alone_*`: a second agent, bootstrapped with the
//!    capture scenario's 50,000-SKU local catalog, starts its own full
//!    sync; 16 tills post orders closed loop while it runs, then again once
//!    it has finished (the baseline, same agent, same run).
//!    `during_over_alone_ratio` targets at least 0.8; `during_sync_cpu_*`
//!    splits the phase's CPU by process;
//!    `sync_still_running_at_end` says whether the sync outlasted the load.
//! 4. `not_modified_*`: 1,000 simulated agents (each its own TLS
//!    connection) poll `GET .../catalog` with `If-None-Match` for 10 s;
//!    304s per second, and per second of the service's CPU (the target:
//!    20,000 per core). The clients share the two cores with the service.
//! 5. `delta_*`: 20 imports of 1,000 changed products each; milliseconds
//!    from the import command's start to the first agent reporting the new
//!    version (hint over MQTT, then the pull). Target: p99 under 2 s.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::agent::{BenchAgent, memory_of};
use super::{http, load};
use crate::bench::cpu::CpuSnapshot;
use crate::bench::{BenchArgs, BenchError, Measurement, Scenario, block_on, harness};
use crate::catalog::{CatalogProc, CatalogWorld};

/// The registry entry.
pub const SCENARIO: Scenario = Scenario {
    name: "catalog",
    about: "catalog down-sync: full sync of --n SKUs (default 1,000,000) with RSS, capture \
            during it vs alone, 1,000 agents' 304s, 1,000-change delta latency",
    run,
};

const DEFAULT_SKUS: u64 = 1_000_000;
const TILLS: usize = 16;
const ORDERS: u64 = 20_000;
const POLLERS: usize = 1_000;
const POLL_SECONDS: u64 = 10;
const DELTAS: u32 = 20;
const DELTA_SIZE: u32 = 1_000;
/// How long the empty agent's memory is traced after its sync.
const AFTER_SYNC: Duration = Duration::from_secs(3);

fn run(args: &BenchArgs) -> Result<Measurement, BenchError> {
    let skus = args.n.unwrap_or(DEFAULT_SKUS);
    let skus = u32::try_from(skus)
        .ok()
        .filter(|n| *n >= http::CATALOG_SKUS)
        .ok_or_else(|| BenchError::Invalid(format!("--n must be {} to 4e9", http::CATALOG_SKUS)))?;
    let (_, tmp) = args.scratch("o2c-bench-catalog-")?;
    block_on(measure(tmp.path(), skus))
}

/// The cloud's import file: product `i` at `price_minor(i) + bump`.
fn cloud_catalog(path: &Path, from: u32, to: u32, bump: i64) -> Result<(), BenchError> {
    use std::io::Write as _;
    let file = std::fs::File::create(path).map_err(|e| BenchError::io("creating import", e))?;
    let mut w = std::io::BufWriter::new(file);
    for i in from..to {
        writeln!(
            w,
            "{{\"sku\":\"{}\",\"name\":\"Bench product {i}\",\"category\":\"cat-{}\",\
             \"prices\":[{{\"currency\":\"CAD\",\"minor\":{}}}]}}",
            http::sku(i),
            i % 40,
            http::price_minor(i) + bump
        )
        .map_err(|e| BenchError::io("writing import", e))?;
    }
    w.flush().map_err(|e| BenchError::io("writing import", e))
}

fn import(cat: &CatalogProc, file: &Path) -> Result<(), BenchError> {
    let (code, out) = crate::saga::cloud_command(
        cat.config_path(),
        &["catalog", "import", &file.to_string_lossy()],
    )
    .map_err(|e| harness("catalog import", e))?;
    if code != 0 {
        return Err(BenchError::Invalid(format!(
            "catalog import exited {code}: {out}"
        )));
    }
    Ok(())
}

async fn version_of(agent: &BenchAgent) -> Option<u64> {
    agent
        .get_json("/v1/catalog/status")
        .await
        .ok()
        .and_then(|s| s["version"].as_u64())
}

async fn wait_version(agent: &BenchAgent, want: u64, every: Duration) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while version_of(agent).await != Some(want) {
        if Instant::now() > deadline {
            return Err(BenchError::Invalid(format!(
                "the agent never reached catalog version {want}; log:\n{}",
                agent.log_tail()
            )));
        }
        tokio::time::sleep(every).await;
    }
    Ok(())
}

async fn measure(dir: &Path, skus: u32) -> Result<Measurement, BenchError> {
    // The fleet, its broker, the database and the service (panics, naming
    // what to start, if PostgreSQL is not running).
    let w = CatalogWorld::start(
        &[("S-BENCH", "S-BENCH-A1")],
        "bench_catalog",
        "page_size = 5000",
        "",
    )
    .await;
    let cat = &w.cat;
    let agent_tls = w.fleet.pki.agent("S-BENCH-A1");
    let mut m = Measurement::default();
    m.param("skus", u64::from(skus));
    m.param("page_size", 5000);

    // 1. The cloud's catalog.
    let file = dir.join("cloud.jsonl");
    cloud_catalog(&file, 0, skus, 0)?;
    let t = Instant::now();
    import(cat, &file)?;
    m.metric("import_s", t.elapsed().as_secs_f64());
    let _ = std::fs::remove_file(&file);

    let extra = format!(
        "{}\n[catalog]\nurl = \"{}\"\npoll_interval_secs = 3600\n",
        agent_tls.toml_table(),
        cat.url()
    );
    let mqtt = w.fleet.broker.url();

    // 2. A full sync into an empty agent.
    let t = Instant::now();
    let empty = BenchAgent::start_with(&dir.join("empty"), 1, 0, Some(&mqtt), &extra).await?;
    let trace = RssTrace::start(empty.pid());
    wait_version(&empty, 1, Duration::from_millis(20)).await?;
    let sync_s = t.elapsed().as_secs_f64();
    m.metric("full_sync_s", sync_s);
    m.metric(
        "full_sync_peak_rss_mib",
        empty.memory()?.hwm_kib as f64 / 1024.0,
    );
    trace.finish(sync_s, &mut m).await;

    // 3. Capture during a full sync, then alone.
    // Twice the tills: the first half posts during the sync, the second
    // after it (each till's idempotency keys are its own).
    let busy = BenchAgent::start_with(
        &dir.join("busy"),
        2 * TILLS,
        http::CATALOG_SKUS,
        Some(&mqtt),
        &extra,
    )
    .await?;
    let cpu0 = CpuSnapshot::take()?;
    let (during, ()) = load::closed_loop(
        busy.addr(),
        &busy.terminals[..TILLS],
        (ORDERS, 0),
        10,
        || (),
    )
    .await?;
    // Where the CPU went while both ran: the agent, the catalog service
    // and PostgreSQL (the cloud's, here on the store's two cores) and the
    // tills (`bench`).
    cpu0.record_delta(&CpuSnapshot::take()?, &mut m, "during_sync_");
    let still_running = version_of(&busy).await != Some(1);
    wait_version(&busy, 1, Duration::from_millis(50)).await?;
    let (alone, ()) = load::closed_loop(
        busy.addr(),
        &busy.terminals[TILLS..],
        (ORDERS, 0),
        10,
        || (),
    )
    .await?;
    for (phase, r) in [("during", &during), ("alone", &alone)] {
        if r.failures.count > 0 {
            return Err(BenchError::Invalid(format!(
                "{phase}: {} answers were not 201; first: {}",
                r.failures.count,
                r.failures.first.as_deref().unwrap_or("?")
            )));
        }
    }
    let rate = |r: &load::ClosedLoop| r.created as f64 / r.elapsed.as_secs_f64().max(1e-9);
    m.metric("during_sync_orders_per_s", rate(&during));
    m.metric(
        "during_sync_p99_ms",
        during.latency.value_at_quantile(0.99) as f64 / 1000.0,
    );
    m.baseline("alone_orders_per_s", rate(&alone));
    m.baseline(
        "alone_p99_ms",
        alone.latency.value_at_quantile(0.99) as f64 / 1000.0,
    );
    m.metric("during_over_alone_ratio", rate(&during) / rate(&alone));
    m.metric(
        "sync_still_running_at_end",
        f64::from(u8::from(still_running)),
    );
    drop(busy);

    // 4. 1,000 agents polling with If-None-Match.
    let (ok, per_core, cpu) = not_modified(cat, &agent_tls).await?;
    m.metric("not_modified_per_s", ok);
    m.metric("not_modified_per_service_cpu_s", per_core);
    m.metric("not_modified_service_cpu_cores", cpu);

    // 5. 1,000-change deltas, import to applied.
    let mut h = load::histogram()?;
    for round in 0..DELTAS {
        let file = dir.join(format!("delta-{round}.jsonl"));
        let from = round * DELTA_SIZE;
        cloud_catalog(&file, from, from + DELTA_SIZE, i64::from(round) + 1)?;
        let t = Instant::now();
        import(cat, &file)?;
        wait_version(&empty, 2 + u64::from(round), Duration::from_millis(2)).await?;
        let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
        h.record(us.max(1))
            .map_err(|e| BenchError::Histogram(e.to_string()))?;
    }
    // Where a delta's time goes, at the agent (its log's pull lines).
    for line in empty
        .log_tail()
        .lines()
        .filter(|l| l.contains("catalog pull applied"))
        .rev()
        .take(4)
    {
        eprintln!("agent: {line}");
    }
    for (name, q) in [("delta_p50_ms", 0.5), ("delta_p99_ms", 0.99)] {
        m.metric(name, h.value_at_quantile(q) as f64 / 1000.0);
    }
    m.metric("delta_max_ms", h.max() as f64 / 1000.0);
    m.param("delta_rounds", u64::from(DELTAS));
    m.param("delta_size", u64::from(DELTA_SIZE));
    m.param("tills", TILLS as u64);
    m.param("orders_per_phase", ORDERS);
    m.param("pollers", POLLERS as u64);
    drop(w);
    Ok(m)
}

/// The empty agent's resident memory every 50 ms of its full sync and of
/// the [`AFTER_SYNC`] that follow (sled's background work goes on): when
/// the sync's peak came (as a fraction of the sync), how much of it was
/// heap (`RssAnon`) rather than the binary's pages, and the peak after.
struct RssTrace {
    task: tokio::task::JoinHandle<Vec<(f64, u64, u64)>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl RssTrace {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = Arc::clone(&stop);
            async move {
                let t0 = Instant::now();
                let mut samples = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(mem) = memory_of(pid) {
                        samples.push((t0.elapsed().as_secs_f64(), mem.rss_kib, mem.anon_kib));
                    }
                    // A sampling period, not synchronisation.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                samples
            }
        });
        Self { task, stop }
    }

    async fn finish(self, sync_s: f64, m: &mut Measurement) {
        // The trace's own span: AFTER_SYNC more of samples.
        tokio::time::sleep(AFTER_SYNC).await;
        self.stop.store(true, Ordering::Relaxed);
        let Ok(samples) = self.task.await else {
            return;
        };
        let (during, after): (Vec<_>, Vec<_>) =
            samples.iter().partition(|(at, _, _)| *at <= sync_s);
        if let Some((at, rss, anon)) = during.iter().max_by_key(|(_, rss, _)| *rss) {
            m.metric("full_sync_sampled_peak_at_fraction", at / sync_s.max(1e-9));
            m.metric("full_sync_sampled_peak_rss_mib", *rss as f64 / 1024.0);
            m.metric("full_sync_sampled_peak_anon_mib", *anon as f64 / 1024.0);
        }
        if let Some((_, rss, _)) = after.iter().max_by_key(|(_, rss, _)| *rss) {
            m.metric("after_sync_sampled_peak_rss_mib", *rss as f64 / 1024.0);
        }
    }
}

/// 304s per second over [`POLL_SECONDS`], per second of the service's
/// CPU, and the service's CPU in cores.
async fn not_modified(
    cat: &CatalogProc,
    tls: &crate::tls::TlsFiles,
) -> Result<(f64, f64, f64), BenchError> {
    let url = format!("{}/v1/stores/S-BENCH/catalog", cat.url());
    let probe = crate::catalog::StoreClient::new(tls).map_err(|e| harness("client", e))?;
    let (_, tag, _) = probe.get(&url, None).await.map_err(|e| harness("GET", e))?;
    let tag = tag.ok_or_else(|| BenchError::Invalid("no ETag".into()))?;
    let mut clients = Vec::with_capacity(POLLERS);
    for _ in 0..POLLERS {
        clients.push(crate::catalog::StoreClient::new(tls).map_err(|e| harness("client", e))?);
    }
    // Warm: every client has its TLS connection.
    for c in &clients {
        c.get(&url, Some(&tag))
            .await
            .map_err(|e| harness("GET", e))?;
    }
    let count = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let cpu0 = crate::bench::cpu::cpu_seconds_of(cat.pid())?;
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(POLL_SECONDS);
    let mut tasks = tokio::task::JoinSet::new();
    for c in clients {
        let (url, tag, count, bad) = (url.clone(), tag.clone(), count.clone(), bad.clone());
        tasks.spawn(async move {
            while Instant::now() < end {
                match c.get(&url, Some(&tag)).await {
                    Ok((304, _, _)) => count.fetch_add(1, Ordering::Relaxed),
                    _ => bad.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let secs = t0.elapsed().as_secs_f64();
    let cpu = crate::bench::cpu::cpu_seconds_of(cat.pid())? - cpu0;
    if bad.load(Ordering::Relaxed) > 0 {
        return Err(BenchError::Invalid(format!(
            "{} polls were not answered 304",
            bad.load(Ordering::Relaxed)
        )));
    }
    let n = count.load(Ordering::Relaxed) as f64;
    Ok((n / secs, n / cpu.max(1e-9), cpu / secs))
}
