//! Applying one fault to the [`World`], and healing it. Each fault heals
//! itself after its duration (a restart, a link restored), so the run's
//! end only has to wait for the fault tasks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ChaosError;
use super::checker::FaultSpan;
use super::history::History;
use super::schedule::{Fault, LinkFault, Process};
use super::world::World;
use crate::HarnessError;
use crate::proxy::LinkMode;

/// How often a restart that failed is tried again before the run fails.
const RESTART_TRIES: usize = 3;

/// Applies `fault` now and heals it; records its start and end in the
/// history. A component that cannot be brought back is an error (the run
/// fails naming it), never ignored.
pub async fn apply(
    world: Arc<World>,
    fault: Fault,
    t0: Instant,
    history: Arc<History>,
) -> (FaultSpan, Result<(), ChaosError>) {
    let start_ms = t0.elapsed().as_millis() as u64;
    let label = fault.to_string();
    let started = history.record(
        "fault",
        serde_json::json!({"t_ms": start_ms, "phase": "start", "fault": fault, "label": label}),
    );
    let result = run(&world, fault).await;
    let end_ms = t0.elapsed().as_millis() as u64;
    let error = result.as_ref().err().map(ToString::to_string);
    let healed = history.record(
        "fault",
        serde_json::json!({"t_ms": end_ms, "phase": "healed", "fault": fault, "label": label, "error": error}),
    );
    // Even a fault that did not heal is named near the orders it hit.
    let span = FaultSpan {
        start_ms,
        end_ms,
        label,
    };
    (span, result.and(started).and(healed))
}

async fn pause(ms: u64) {
    // The fault's own duration, from the schedule (not a synchronisation).
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

async fn run(world: &World, fault: Fault) -> Result<(), ChaosError> {
    match fault {
        Fault::Kill { target, down_ms } => kill_restart(world, target, down_ms).await,
        Fault::PostgresRestart => {
            let pg = Arc::clone(&world.pg);
            tokio::task::spawn_blocking(move || pg.restart_immediate())
                .await
                .map_err(|e| ChaosError::Setup(format!("postgres restart task: {e}")))?
                .map_err(|e| restart_failed("postgres", e))
        }
        Fault::LinkCut { agent, ms } => link_mode(world, agent, LinkMode::Cut, ms).await,
        Fault::Delay { agent, ms } => link_mode(world, agent, LinkMode::DELAY, ms).await,
        Fault::Reorder { agent, ms } => link_mode(world, agent, LinkMode::REORDER, ms).await,
        Fault::KafkaLink { how, ms } => {
            let loss = world.kafka_loss.lock().await;
            let mode = match how {
                LinkFault::Cut => LinkMode::Cut,
                LinkFault::Partition => LinkMode::Blackhole,
                LinkFault::Delay => LinkMode::DELAY,
                LinkFault::Loss(p) => {
                    let loss = loss.as_ref().ok_or_else(|| {
                        ChaosError::Setup("no loss rules on the Kafka port".into())
                    })?;
                    loss.set_loss(p)?;
                    pause(ms).await;
                    return Ok(loss.set_loss(0)?);
                }
            };
            world.kafka_link.set_mode(mode);
            pause(ms).await;
            world.kafka_link.set_mode(LinkMode::Up);
            Ok(())
        }
        Fault::Loss { agent, percent, ms } => {
            let guard = net_of(world, agent)?.lock().await;
            let (net, port) = &*guard;
            net.set_loss(*port, percent)?;
            pause(ms).await;
            Ok(net.set_loss(*port, 0)?)
        }
        Fault::Partition { agent, ms } => {
            let guard = net_of(world, agent)?.lock().await;
            let (net, port) = &*guard;
            net.partition(*port, true)?;
            pause(ms).await;
            Ok(net.partition(*port, false)?)
        }
        Fault::Rate { agent, kbit, ms } => {
            let guard = net_of(world, agent)?.lock().await;
            let (net, _) = &*guard;
            net.set_rate(Some(kbit))?;
            pause(ms).await;
            Ok(net.set_rate(None)?)
        }
        Fault::PspOutage { ms } => {
            world.psp_link.set_up(false);
            pause(ms).await;
            world.psp_link.set_up(true);
            Ok(())
        }
    }
}

/// Puts agent `agent`'s proxied link in `mode` for `ms`, holding its
/// namespace's turn (if it has one) so link faults on it do not overlap.
async fn link_mode(world: &World, agent: usize, mode: LinkMode, ms: u64) -> Result<(), ChaosError> {
    let link = world
        .links
        .get(agent)
        .ok_or_else(|| ChaosError::Setup(format!("no agent {agent}")))?;
    let _turn = match world.nets.get(agent) {
        Some(net) => Some(net.lock().await),
        None => None,
    };
    link.set_mode(mode);
    pause(ms).await;
    link.set_mode(LinkMode::Up);
    Ok(())
}

fn net_of(
    world: &World,
    agent: usize,
) -> Result<&tokio::sync::Mutex<(crate::netns::AgentNet, u16)>, ChaosError> {
    world
        .nets
        .get(agent)
        .ok_or_else(|| ChaosError::Setup(format!("agent {agent} has no namespace")))
}

fn restart_failed(what: &str, e: HarnessError) -> ChaosError {
    ChaosError::Restart {
        what: what.to_owned(),
        source: Box::new(e),
    }
}

/// Tries `restart` up to [`RESTART_TRIES`] times.
macro_rules! restart_with_retries {
    ($name:expr, $proc:expr) => {{
        let mut last = None;
        for _ in 0..RESTART_TRIES {
            match $proc.restart().await {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        match last {
            None => Ok(()),
            Some(e) => Err(restart_failed(&$name, e)),
        }
    }};
}

async fn kill_restart(world: &World, target: Process, down_ms: u64) -> Result<(), ChaosError> {
    let name = target.to_string();
    let missing = || ChaosError::Setup(format!("no process {name}"));
    match target {
        Process::Agent(i) => {
            let mut p = world.agents.get(i).ok_or_else(missing)?.lock().await;
            p.kill().map_err(|e| restart_failed(&name, e))?;
            pause(down_ms).await;
            restart_with_retries!(name, p)
        }
        Process::Ingest(i) => {
            let mut p = world.ingests.get(i).ok_or_else(missing)?.lock().await;
            p.kill().map_err(|e| restart_failed(&name, e))?;
            pause(down_ms).await;
            restart_with_retries!(name, p)
        }
        Process::Saga(i) => {
            let svc = super::schedule::SAGA_SERVICES.get(i).ok_or_else(missing)?;
            let (_, lock) = world
                .sagas
                .iter()
                .find(|(s, _)| s == svc)
                .ok_or_else(missing)?;
            let mut p = lock.lock().await;
            p.kill().map_err(|e| restart_failed(&name, e))?;
            pause(down_ms).await;
            restart_with_retries!(name, p)
        }
        Process::SagaAll => {
            let (_, lock) = world
                .sagas
                .iter()
                .find(|(s, _)| s == "all")
                .ok_or_else(missing)?;
            // Restarted at once, not waiting for readiness: the next kill
            // may land before it is ready, as in issue 21.
            let mut p = lock.lock().await;
            p.kill().map_err(|e| restart_failed(&name, e))?;
            pause(down_ms).await;
            p.respawn().map_err(|e| restart_failed(&name, e))
        }
        Process::Tansu => {
            let mut p = world.tansu.lock().await;
            p.kill().map_err(|e| restart_failed(&name, e))?;
            pause(down_ms).await;
            restart_with_retries!(name, p)
        }
        Process::Mosquitto => {
            let mut p = world.mosq.lock().await;
            p.kill().map_err(|e| restart_failed(&name, e))?;
            pause(down_ms).await;
            restart_with_retries!(name, p)
        }
    }
}
