//! `o2c-chaos`: the whole pipeline under a random, seeded fault schedule,
//! then a checker that proves nothing was lost (issue 21).
//!
//! # Layout
//! - [`schedule`]: pure and seeded: the fault schedule (same seed, same
//!   schedule) and issue 21's `saga-kill` reproduction. Start here.
//! - [`tills`]: the simulated tills' seeded order plan (with its returns)
//!   and the till loop.
//! - [`world`]: every component as a real process on loopback (private
//!   PostgreSQL, Tansu, Mosquitto; two ingest replicas; the saga; the
//!   processor simulator; agents behind cuttable links).
//! - [`faults`]: applying and healing one fault.
//! - [`collect`]: quiescence, then the facts the checker needs (the
//!   returns' in `collect_returns.rs`).
//! - [`checker`]: pure: facts in, [`checker::Verdict`] out (the returns'
//!   checks in `checker_returns.rs`).
//! - [`history`]: the JSON-lines history file.
//!
//! [`run`] is the library entry point (`src/bin/o2c-chaos.rs` and
//! `tests/chaos.rs` call it).

pub mod checker;
pub mod collect;
pub mod faults;
pub mod history;
pub mod schedule;
pub mod tills;
pub mod world;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use checker::{Failure, Verdict};
use collect::Quiet;
use history::History;
use schedule::{Schedule, Shape};
use tills::{Ledger, OrderPlan};
use world::{SagaLayout, World, WorldShape};

use crate::HarnessError;

/// The runner's errors (a failed verdict is not one: see [`Outcome`]).
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// A harness call failed.
    #[error(transparent)]
    Harness(#[from] HarnessError),
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the runner was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// JSON encoding of the history failed.
    #[error("history json: {0}")]
    Json(#[source] serde_json::Error),
    /// A process killed by the schedule could not be started again.
    #[error("could not restart {what}: {source}")]
    Restart {
        /// Which component.
        what: String,
        /// Why.
        #[source]
        source: Box<HarnessError>,
    },
    /// The run could not be set up.
    #[error("setup: {0}")]
    Setup(String),
    /// A network namespace could not be created or changed.
    #[error("network namespace: {0}")]
    Netns(#[from] crate::netns::NetnsError),
}

impl ChaosError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

/// Which run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// The general seeded schedule over every component.
    General,
    /// Issue 21: 300 card orders, the one-process saga killed six times.
    SagaKill,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Which run.
    pub scenario: Scenario,
    /// Length of the fault phase (general schedule).
    pub duration: Duration,
    /// The seed of the schedule and of the orders.
    pub seed: u64,
    /// Two busy-loop threads for the whole run.
    pub cpu_load: bool,
    /// Where the history goes.
    pub history: PathBuf,
    /// Agents (stores).
    pub agents: usize,
    /// Orders a minute at each till (general schedule).
    pub orders_per_min: u64,
    /// No status change for this long ends the wait for quiescence.
    pub quiet: Duration,
    /// The longest wait for quiescence.
    pub quiesce_deadline: Duration,
    /// Keep the run's directory (every process's log) when the verdict fails.
    pub keep_logs_on_failure: bool,
    /// Agents in network namespaces (needs root, iproute2, nftables); the
    /// link faults are then loss, silent partitions and rate limits too,
    /// besides the proxy's cuts, delay and reordering.
    pub netns: bool,
}

impl Options {
    /// Defaults for `scenario` with `seed`, writing `history`.
    pub fn new(scenario: Scenario, seed: u64, history: PathBuf) -> Self {
        Self {
            scenario,
            duration: Duration::from_secs(120),
            seed,
            cpu_load: false,
            history,
            agents: 3,
            orders_per_min: 40,
            // Well past the saga consumers' 10 s session timeout, so a
            // rebalance that is merely slow is not called a stall (longer
            // for saga-kill, whose verdict is the stall's proof).
            quiet: Duration::from_secs(match scenario {
                Scenario::General => 30,
                Scenario::SagaKill => 60,
            }),
            quiesce_deadline: Duration::from_secs(240),
            keep_logs_on_failure: true,
            netns: true,
        }
    }
}

/// The result of a run.
#[derive(Debug)]
pub struct Outcome {
    /// The checker's verdict (plus runner-level failures: faults that did
    /// not heal, orders no till could place).
    pub verdict: Verdict,
    /// How quiescence ended.
    pub quiet: Quiet,
    /// The run's directory when kept (logs), else None.
    pub kept_dir: Option<PathBuf>,
}

fn say(msg: &str) {
    eprintln!("[o2c-chaos] {msg}");
}

/// Two threads spinning until dropped (`--cpu-load`).
#[derive(Debug)]
struct CpuLoad {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CpuLoad {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..2)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The fault schedule `opts` gives (pure: `o2c-chaos --dry-run` prints it).
pub fn schedule(opts: &Options) -> Schedule {
    match opts.scenario {
        Scenario::General => Schedule::generate(
            opts.seed,
            Shape {
                duration_ms: opts.duration.as_millis() as u64,
                agents: opts.agents,
                ingests: 2,
                netns: opts.netns,
            },
        ),
        Scenario::SagaKill => Schedule::saga_kill(opts.seed, 1_500),
    }
}

/// Runs one chaos run end to end and returns its verdict.
pub async fn run(opts: &Options) -> Result<Outcome, ChaosError> {
    let duration_ms = opts.duration.as_millis() as u64;
    let schedule = schedule(opts);
    let (plans, layout, name) = match opts.scenario {
        Scenario::General => (
            tills::plan_orders(opts.seed, opts.agents, duration_ms, opts.orders_per_min),
            SagaLayout::PerService,
            "general",
        ),
        Scenario::SagaKill => (
            tills::plan_card_orders(300, opts.agents),
            SagaLayout::All,
            "saga-kill",
        ),
    };
    // Printed before anything starts: the seed reproduces it.
    println!("{}", schedule.render());
    println!(
        "{} orders planned over {} agents ({} with a return); cpu load: {}; history: {}",
        plans.len(),
        opts.agents,
        plans.iter().filter(|p| p.ret.is_some()).count(),
        opts.cpu_load,
        opts.history.display()
    );
    let history = Arc::new(History::create(&opts.history)?);
    history.schedule(name, &schedule)?;
    let _load = opts.cpu_load.then(CpuLoad::start);

    let world = Arc::new(
        World::start(
            WorldShape {
                agents: opts.agents,
                ingests: 2,
                sagas: layout,
                netns: opts.netns && opts.scenario == Scenario::General,
            },
            say,
        )
        .await?,
    );
    say(&format!("world up in {}; running", world.dir().display()));
    let t0 = Instant::now();
    history.record(
        "start",
        serde_json::json!({"prefix": world.prefix, "dir": world.dir()}),
    )?;

    let ledger: Ledger = Arc::new(Mutex::new(Vec::new()));
    let mut till_tasks = Vec::new();
    for agent in 0..opts.agents {
        let mine: Vec<OrderPlan> = plans.iter().filter(|p| p.agent == agent).cloned().collect();
        let dir = world.agent_dirs[agent].clone();
        till_tasks.push(tokio::spawn(tills::run_till(
            mine,
            dir,
            t0,
            Arc::clone(&ledger),
        )));
    }
    let mut fault_tasks = Vec::new();
    for p in schedule.faults.clone() {
        let (w, h) = (Arc::clone(&world), Arc::clone(&history));
        fault_tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(
                t0 + Duration::from_millis(p.at_ms),
            ))
            .await;
            say(&format!(
                "t+{:.1}s fault: {}",
                t0.elapsed().as_secs_f64(),
                p.fault
            ));
            faults::apply(w, p.fault, t0, h).await
        }));
    }
    let mut runner_failures = Vec::new();
    let mut spans = Vec::new();
    for t in fault_tasks {
        match t.await {
            Ok((span, Ok(()))) => spans.push(span),
            Ok((span, Err(e))) => {
                runner_failures.push(format!("fault `{}` did not heal: {e}", span.label));
                spans.push(span);
            }
            Err(e) => runner_failures.push(format!("fault task panicked: {e}")),
        }
    }
    for t in till_tasks {
        if let Err(e) = t.await {
            runner_failures.push(format!("till task panicked: {e}"));
        }
    }
    say(&format!(
        "t+{:.1}s faults done; healing everything",
        t0.elapsed().as_secs_f64()
    ));
    heal(&world, &mut runner_failures).await;

    let records = ledger.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for r in records.iter().filter(|r| r.error.is_some()) {
        runner_failures.push(format!(
            "till {} key {}: {}",
            r.plan.agent + 1,
            r.plan.key,
            r.error.as_deref().unwrap_or_default()
        ));
    }
    let confirmed: Vec<_> = records
        .iter()
        .filter(|r| r.order_id.is_some())
        .cloned()
        .collect();
    let returns = confirmed
        .iter()
        .filter(|r| r.ret.as_ref().is_some_and(|x| x.return_id.is_some()))
        .count();
    say(&format!(
        "{} orders confirmed, {returns} returns taken; waiting for quiescence",
        confirmed.len()
    ));
    let quiet =
        collect::wait_quiescence(&world, &confirmed, opts.quiet, opts.quiesce_deadline, say).await;
    let mut facts = collect::collect(&world, &records).await?;
    facts.faults = spans;
    let mut verdict = checker::check(&facts);
    verdict
        .failures
        .extend(runner_failures.into_iter().map(|what| Failure {
            order_id: None,
            what,
            faults_near: Vec::new(),
        }));
    history.finish(&facts, &verdict)?;
    println!("{verdict}");
    // Not a verdict: updates lost on the way that the agents' status
    // resyncs repaired (a broker crash loses what it had queued).
    let resynced: Vec<String> = collect::resynced(&world)
        .await
        .iter()
        .enumerate()
        .map(|(i, n)| {
            format!(
                "agent-{} {}",
                i + 1,
                n.map_or("?".into(), |n| n.to_string())
            )
        })
        .collect();
    println!(
        "status updates recovered by resync: {}",
        resynced.join(", ")
    );
    if !verdict.passed() {
        println!("consumer groups (committed / end offset per partition):");
        for g in &facts.groups {
            let c = g
                .committed
                .map_or_else(|| "none".to_owned(), |c| c.to_string());
            let mark = if g.caught_up() { "" } else { "   <-- behind" };
            println!(
                "  {:<24} {:<40} [{}] {c:>6} / {:<6}{mark}",
                g.group, g.topic, g.partition, g.end
            );
        }
    }
    let kept_dir = if !verdict.passed() && opts.keep_logs_on_failure {
        match Arc::try_unwrap(world) {
            Ok(w) => Some(w.keep_dir()),
            Err(_) => None,
        }
    } else {
        None
    };
    if let Some(d) = &kept_dir {
        println!("logs kept in {}", d.display());
    }
    Ok(Outcome {
        verdict,
        quiet,
        kept_dir,
    })
}

/// Restores every link and waits until every saga process is ready.
async fn heal(world: &World, failures: &mut Vec<String>) {
    for l in &world.links {
        l.set_up(true);
    }
    for (i, n) in world.nets.iter().enumerate() {
        let (net, port) = &*n.lock().await;
        if let Err(e) = net.heal(*port) {
            failures.push(format!("agent-{}'s link could not be healed: {e}", i + 1));
        }
    }
    world.psp_link.set_up(true);
    for (name, s) in &world.sagas {
        if let Err(e) = s.lock().await.wait_until_ready().await {
            failures.push(format!("saga {name} not ready after healing: {e}"));
        }
    }
}
