//! `o2c-chaos`: runs the whole pipeline under a seeded fault schedule and
//! checks that nothing was lost (see `o2c_tests::chaos` and RELIABILITY.md).
//!
//! ```text
//! cargo run --release -p o2c-tests --bin o2c-chaos -- --minutes 2 --seed 1 --history /tmp/h.jsonl
//! cargo run --release -p o2c-tests --bin o2c-chaos -- --scenario saga-kill --seed 1 --cpu-load --history /tmp/h.jsonl
//! ```
//!
//! Exit code: 0 when the verdict passes, 1 when it fails, 2 when the run
//! could not be carried out.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use o2c_tests::chaos::{Options, Scenario, run};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ScenarioArg {
    /// The seeded schedule over every component.
    General,
    /// Issue 21: 300 card orders, the one-process saga killed six times.
    SagaKill,
}

#[derive(Debug, Parser)]
#[command(about = "Chaos runner: the o2c pipeline under a seeded fault schedule, then a checker")]
struct Args {
    /// Which run.
    #[arg(long, value_enum, default_value = "general")]
    scenario: ScenarioArg,
    /// Length of the fault phase, minutes (general schedule; fractions allowed).
    #[arg(long, default_value_t = 2.0)]
    minutes: f64,
    /// Seed of the schedule and of the orders (printed, recorded).
    #[arg(long)]
    seed: u64,
    /// Two busy-loop threads for the whole run.
    #[arg(long)]
    cpu_load: bool,
    /// The JSON-lines history file.
    #[arg(long)]
    history: PathBuf,
    /// Agents (stores).
    #[arg(long, default_value_t = 3)]
    agents: usize,
    /// Orders a minute at each till (general schedule).
    #[arg(long, default_value_t = 40)]
    orders_per_min: u64,
    /// Agents behind loopback proxies alone (cuts, delay, reordering)
    /// instead of network namespaces too (adds loss, silent partitions and
    /// rate limits; needs root).
    #[arg(long)]
    no_netns: bool,
    /// No status change for this long ends the wait for quiescence
    /// (default: 30 s, 60 s for saga-kill).
    #[arg(long)]
    quiet_secs: Option<u64>,
    /// Print the fault schedule and exit (nothing is started).
    #[arg(long)]
    dry_run: bool,
    /// Longest wait for quiescence, seconds.
    #[arg(long, default_value_t = 240)]
    quiesce_secs: u64,
}

fn main() -> ExitCode {
    let a = Args::parse();
    if !(a.minutes > 0.0 && a.minutes <= 24.0 * 60.0) || a.agents == 0 || a.orders_per_min == 0 {
        eprintln!(
            "o2c-chaos: --minutes must be in (0, 1440], --agents and --orders-per-min positive"
        );
        return ExitCode::from(64);
    }
    let scenario = match a.scenario {
        ScenarioArg::General => Scenario::General,
        ScenarioArg::SagaKill => Scenario::SagaKill,
    };
    let mut opts = Options::new(scenario, a.seed, a.history);
    opts.duration = Duration::from_secs_f64(a.minutes * 60.0);
    opts.cpu_load = a.cpu_load;
    opts.netns = !a.no_netns;
    opts.agents = a.agents;
    opts.orders_per_min = a.orders_per_min;
    opts.quiesce_deadline = Duration::from_secs(a.quiesce_secs);
    if let Some(q) = a.quiet_secs {
        opts.quiet = Duration::from_secs(q);
    }
    if a.dry_run {
        print!("{}", o2c_tests::chaos::schedule(&opts).render());
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("o2c-chaos: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(&opts)) {
        Ok(outcome) if outcome.verdict.passed() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("o2c-chaos: the run could not be carried out: {e}");
            ExitCode::from(2)
        }
    }
}
