//! The quota world (issue 21, "Floods"): well-behaved simulated agents at a
//! steady rate, measured alone, then again while one misbehaving agent
//! offers `flood_factor` times its quota, all in one run against a private
//! Mosquitto, a private Tansu (memory storage) and a real `o2c-cloud
//! ingest` started with `[ingest] agent_quota_*` set.
//!
//! Every agent is a [`paced`](super::paced) agent with its own connection
//! and identity. A frame's latency is its first publish → the cloud's ack
//! (MQTT, ingest, Kafka and back). The flooder has a backlog sized to last
//! about the second phase at its quota; it is done when its last frame is
//! acked. Then Kafka's order topic is read whole and compared with every
//! event sent, by `event_id`. `tests/tests/ingest_quota.rs` asserts on the
//! [`FloodReport`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use o2c_protocol::EventType;

use super::World;
use super::kafka_side;
use super::paced::{AgentRun, Pace, run_agent};
use super::workload::{AgentLoad, agent_load, template, unix_ms};
use crate::TansuStorage;
use crate::bench::{BenchError, harness};
use crate::pipeline::Ingest;

/// Every phase must end within this.
const PHASE_DEADLINE: Duration = Duration::from_secs(120);
/// The simulated agents' resend timeout (the real agent's default).
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// The shape of a flood run.
#[derive(Debug, Clone)]
pub struct FloodParams {
    /// Well-behaved agents.
    pub good_agents: usize,
    /// Events per frame of a well-behaved agent.
    pub good_batch: u64,
    /// One frame per this, per well-behaved agent.
    pub good_interval: Duration,
    /// Frames per well-behaved agent in each phase.
    pub phase_frames: usize,
    /// `[ingest] agent_quota_events_per_sec` (0: no quota).
    pub quota_per_sec: u32,
    /// `[ingest] agent_quota_burst`.
    pub quota_burst: u32,
    /// Events per frame of the flooder.
    pub flooder_batch: u64,
    /// The flooder offers this many times its quota.
    pub flood_factor: u32,
}

impl Default for FloodParams {
    /// 20 agents at 50 events/s each (1,000/s), 6 s per phase; a quota of
    /// 200 events/s (burst 200) that they stay well under; a flooder that
    /// offers 2,000 events/s.
    fn default() -> Self {
        Self {
            good_agents: 20,
            good_batch: 5,
            good_interval: Duration::from_millis(100),
            phase_frames: 60,
            quota_per_sec: 200,
            quota_burst: 200,
            flooder_batch: 50,
            flood_factor: 10,
        }
    }
}

/// Frame latency of the well-behaved agents in one phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Frames acked.
    pub frames: u64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Worst, ms.
    pub max_ms: f64,
}

/// What a flood run measured.
#[derive(Debug, Clone)]
pub struct FloodReport {
    /// Well-behaved agents alone.
    pub alone: Latency,
    /// Well-behaved agents beside the flooder.
    pub flooded: Latency,
    /// Events the flooder sent (all acked).
    pub flooder_events: u64,
    /// From its first publish to its last ack.
    pub flooder_secs: f64,
    /// What it would have sent per second unslowed.
    pub flooder_offered_per_s: f64,
    /// Its resends after the ack timeout.
    pub flooder_resends: u64,
    /// Its agent id.
    pub flooder_agent: String,
    /// Events sent by everyone.
    pub sent: u64,
    /// Distinct sent event ids found in Kafka.
    pub kafka_distinct: u64,
    /// Sent event ids not in Kafka.
    pub kafka_missing: u64,
    /// Records beyond the first copy of an id.
    pub kafka_raw_duplicates: u64,
    /// Records no agent sent.
    pub kafka_unknown: u64,
    /// Dead letters.
    pub kafka_dead_letters: u64,
    /// `o2c_ingest_quota_delayed_total` by agent id.
    pub quota_delayed: BTreeMap<String, f64>,
    /// `o2c_ingest_frames_shed_total`.
    pub frames_shed: f64,
}

/// Runs both phases; see the module doc.
pub async fn run(p: &FloodParams) -> Result<FloodReport, BenchError> {
    if p.good_agents == 0 || p.phase_frames == 0 || p.good_batch == 0 || p.flooder_batch == 0 {
        return Err(BenchError::Invalid(
            "agents, frames and batches must be positive".into(),
        ));
    }
    let phase_secs = p.good_interval.as_secs_f64() * p.phase_frames as f64;
    let offered = f64::from(p.quota_per_sec.max(1)) * f64::from(p.flood_factor.max(1));
    // Enough to last the second phase at the quota, in whole frames.
    let want = f64::from(p.quota_burst) + f64::from(p.quota_per_sec) * phase_secs;
    let flooder_events = (want / p.flooder_batch as f64).ceil().max(1.0) as u64 * p.flooder_batch;

    let template = template()?;
    let now_ms = unix_ms();
    let per_good = 2 * p.phase_frames as u64 * p.good_batch;
    let mut loads: Vec<AgentLoad> = (0..p.good_agents)
        .map(|i| agent_load(&template, i, per_good, p.good_batch, now_ms))
        .collect::<Result<_, _>>()?;
    let flooder = p.good_agents;
    loads.push(agent_load(
        &template,
        flooder,
        flooder_events,
        p.flooder_batch,
        now_ms,
    )?);
    let loads = Arc::new(loads);
    let flooder_agent = loads[flooder].agent.to_string();

    let World {
        mosq,
        tansu: _tansu,
        brokers,
        prefix,
        topics,
        dir,
    } = World::start("flood", &[], TansuStorage::Memory, 3, &[]).await?;
    let (rate, burst) = (p.quota_per_sec.to_string(), p.quota_burst.to_string());
    let env = [
        (
            "O2C_CLOUD__INGEST__AGENT_QUOTA_EVENTS_PER_SEC",
            rate.as_str(),
        ),
        ("O2C_CLOUD__INGEST__AGENT_QUOTA_BURST", burst.as_str()),
    ];
    let ingest = Ingest::start_with_env(dir.path(), &prefix, &mosq.url(), &brokers, &env)
        .await
        .map_err(|e| harness("starting the ingest", e))?;

    let addr = ("127.0.0.1".to_owned(), mosq.port());
    let good_pace = Pace {
        interval: p.good_interval,
        ack_timeout: ACK_TIMEOUT,
    };
    let spawn_goods = |set: &mut tokio::task::JoinSet<_>, phase: usize| {
        for i in 0..p.good_agents {
            let frames = phase * p.phase_frames..(phase + 1) * p.phase_frames;
            set.spawn(run_agent(
                addr.clone(),
                format!("{prefix}-a{i}-p{phase}"),
                loads.clone(),
                i,
                frames,
                good_pace,
            ));
        }
    };

    // Phase 1: the well-behaved agents alone.
    let mut goods = tokio::task::JoinSet::new();
    spawn_goods(&mut goods, 0);
    let alone = join_all(&mut goods).await?;

    // Phase 2: the same agents, next frames, beside the flooder.
    let flood_pace = Pace {
        interval: Duration::from_secs_f64(p.flooder_batch as f64 / offered),
        ack_timeout: ACK_TIMEOUT,
    };
    let frames = loads[flooder].frames.len();
    let flood_task = tokio::spawn(run_agent(
        addr.clone(),
        format!("{prefix}-flooder"),
        loads.clone(),
        flooder,
        0..frames,
        flood_pace,
    ));
    spawn_goods(&mut goods, 1);
    let flooded = join_all(&mut goods).await?;
    let flood = tokio::time::timeout(PHASE_DEADLINE, flood_task)
        .await
        .map_err(|_| {
            BenchError::Invalid(format!("the flooder was not done in {PHASE_DEADLINE:?}"))
        })?
        .map_err(|e| harness("joining the flooder", e))?
        .map_err(|e| harness("the flooder", e))?;

    let metrics = ingest
        .metrics()
        .await
        .map_err(|e| harness("GET /metrics", e))?;
    let check = kafka_side::check(
        &brokers,
        &topics.for_event(EventType::OrderCreated),
        &topics.dlq(),
        &loads,
    )
    .await?;
    Ok(FloodReport {
        alone: latency(&alone)?,
        flooded: latency(&flooded)?,
        flooder_events: flood.events_acked,
        flooder_secs: flood.finished.duration_since(flood.started).as_secs_f64(),
        flooder_offered_per_s: offered,
        flooder_resends: flood.resends,
        flooder_agent,
        sent: loads.iter().map(|a| a.events.len() as u64).sum(),
        kafka_distinct: check.distinct,
        kafka_missing: check.missing,
        kafka_raw_duplicates: check.raw_duplicates,
        kafka_unknown: check.unknown,
        kafka_dead_letters: check.dead_letters,
        quota_delayed: labelled(&metrics, "o2c_ingest_quota_delayed_total", "agent"),
        frames_shed: labelled(&metrics, "o2c_ingest_frames_shed_total", "")
            .values()
            .sum(),
    })
}

async fn join_all(
    set: &mut tokio::task::JoinSet<Result<AgentRun, super::agents::AgentError>>,
) -> Result<Vec<AgentRun>, BenchError> {
    let mut runs = Vec::new();
    let joined = tokio::time::timeout(PHASE_DEADLINE, async {
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
        Ok(r) => r.map(|()| runs),
        Err(_) => {
            set.abort_all();
            Err(BenchError::Invalid(format!(
                "a phase was not done in {PHASE_DEADLINE:?}"
            )))
        }
    }
}

fn latency(runs: &[AgentRun]) -> Result<Latency, BenchError> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)
        .map_err(|e| BenchError::Histogram(e.to_string()))?;
    for us in runs.iter().flat_map(|r| r.ack_micros.iter()) {
        hist.saturating_record((*us).max(1));
    }
    let ms = |v: u64| v as f64 / 1000.0;
    Ok(Latency {
        frames: hist.len(),
        p50_ms: ms(hist.value_at_quantile(0.5)),
        p99_ms: ms(hist.value_at_quantile(0.99)),
        max_ms: ms(hist.max()),
    })
}

/// Samples of `name` in Prometheus text, keyed by the value of `label`
/// (the empty key for an unlabelled sample or an empty `label`).
pub(super) fn labelled(text: &str, name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
        if metric != name {
            continue;
        }
        let needle = format!("{label}=\"");
        let key = labels
            .split(',')
            .find_map(|kv| kv.strip_prefix(needle.as_str()))
            .filter(|_| !label.is_empty())
            .map(|v| v.trim_end_matches('}').trim_end_matches('"').to_owned())
            .unwrap_or_default();
        *out.entry(key).or_insert(0.0) += value;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labelled_samples_parse() {
        let text = "# HELP x\n\
            o2c_ingest_quota_delayed_total{store=\"S1\",agent=\"S1-A1\"} 3\n\
            o2c_ingest_quota_delayed_total{store=\"S2\",agent=\"S2-A1\"} 1\n\
            o2c_ingest_frames_shed_total 7\n";
        let m = labelled(text, "o2c_ingest_quota_delayed_total", "agent");
        assert_eq!(m.get("S1-A1"), Some(&3.0));
        assert_eq!(m.get("S2-A1"), Some(&1.0));
        let shed = labelled(text, "o2c_ingest_frames_shed_total", "");
        assert_eq!(shed.get(""), Some(&7.0));
        assert!(labelled(text, "nope", "").is_empty());
    }
}
