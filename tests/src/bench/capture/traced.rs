//! `capture-traced`: what trace export costs capture (issue 17). Two
//! agents, set up alike (the `capture` scenario's 64 tills and 50,000-SKU
//! catalog, offline), one without `[telemetry]` (the baseline) and one that
//! traces every order (`sampling_ratio = 1.0`) to a collector that is down
//! (an endpoint where nothing listens), take turns: three rounds, each a
//! closed loop of `--n` orders (default 20,000) on each agent. Reported
//! per agent: throughput (the median round) and send-to-answer latency
//! over all rounds; then the traced agent's over the baseline's.

use std::path::Path;

use hdrhistogram::Histogram;

use super::agent::BenchAgent;
use super::{TERMINALS, WARMUP_EACH, http, load, ms};
use crate::bench::{BenchArgs, BenchError, Measurement, Scenario};

/// The registry entry.
pub const SCENARIO: Scenario = Scenario {
    name: "capture-traced",
    about: "capture with every order traced to a collector that is down, against \
            capture without traces, in turns (--n orders a round, default 20000)",
    run,
};

const DEFAULT_N: u64 = 20_000;
const ROUNDS: usize = 3;

fn run(args: &BenchArgs) -> Result<Measurement, BenchError> {
    let n = args.n.unwrap_or(DEFAULT_N);
    if n == 0 {
        return Err(BenchError::Invalid("--n must be positive".into()));
    }
    let (base, tmp) = args.scratch("o2c-bench-capture-traced-")?;
    let mut m = super::super::block_on(measure(tmp.path(), n))?;
    m.param("dir", base.display().to_string());
    Ok(m)
}

struct Side {
    agent: BenchAgent,
    rates: Vec<f64>,
    latency: Histogram<u64>,
}

async fn measure(dir: &Path, n: u64) -> Result<Measurement, BenchError> {
    let down = crate::free_port().map_err(|e| BenchError::Invalid(format!("free port: {e}")))?;
    let traced_toml = format!(
        "[telemetry]\nendpoint = \"http://127.0.0.1:{down}/v1/traces\"\nsampling_ratio = 1.0\n"
    );
    let mut sides = Vec::new();
    for (name, extra) in [("off", String::new()), ("traced", traced_toml)] {
        let home = dir.join(name);
        std::fs::create_dir_all(&home)
            .map_err(|e| BenchError::io(format!("creating {}", home.display()), e))?;
        let agent =
            BenchAgent::start_with(&home, TERMINALS, http::CATALOG_SKUS, None, &extra).await?;
        sides.push(Side {
            agent,
            rates: Vec::new(),
            latency: Histogram::new(3).map_err(|e| BenchError::Invalid(e.to_string()))?,
        });
    }
    for round in 0..ROUNDS {
        // Alternate who goes first, so drift on the machine hits both.
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let side = &mut sides[i];
            let warmup = if round == 0 { WARMUP_EACH } else { 0 };
            let first = n * round as u64;
            let (closed, ()) = load::closed_loop(
                side.agent.addr(),
                &side.agent.terminals,
                (n, first),
                warmup,
                || (),
            )
            .await?;
            if closed.failures.count > 0 {
                return Err(BenchError::Invalid(format!(
                    "{} answers were not 201; first: {}; agent log:\n{}",
                    closed.failures.count,
                    closed.failures.first.as_deref().unwrap_or("?"),
                    side.agent.log_tail()
                )));
            }
            side.rates
                .push(closed.created as f64 / closed.elapsed.as_secs_f64().max(f64::MIN_POSITIVE));
            side.latency
                .add(&closed.latency)
                .map_err(|e| BenchError::Invalid(e.to_string()))?;
        }
    }
    let mut m = Measurement::default();
    m.param("n_per_round", n);
    m.param("rounds", ROUNDS as u64);
    m.param("terminals", TERMINALS as u64);
    m.param("collector", "down: nothing listens on the endpoint's port");
    m.param("sampling_ratio", 1.0);
    let median = |r: &[f64]| {
        let mut v = r.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let stats = |s: &Side| {
        (
            median(&s.rates),
            ms(s.latency.value_at_quantile(0.5)),
            ms(s.latency.value_at_quantile(0.99)),
        )
    };
    let (off, traced) = (stats(&sides[0]), stats(&sides[1]));
    m.metric("traced_orders_per_s", traced.0);
    m.metric("traced_p50_ms", traced.1);
    m.metric("traced_p99_ms", traced.2);
    m.metric("traced_over_off_throughput", traced.0 / off.0);
    m.metric("traced_over_off_p99", traced.2 / off.2);
    m.baseline("off_orders_per_s", off.0);
    m.baseline("off_p50_ms", off.1);
    m.baseline("off_p99_ms", off.2);
    Ok(m)
}
