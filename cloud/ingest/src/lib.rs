//! # o2c-ingest: store events from MQTT into Kafka, then the ack
//!
//! MQTT frames in, Kafka records out, acks back only after Kafka has every
//! record of a batch. It builds without PostgreSQL or the saga.
//!
//! - [`core`]: the pure planner (validation, identity, dedup ledger).
//! - [`quota`]: the per-agent token buckets (withheld acks, never drops).
//! - [`http`]: what `/healthz`, `/readyz` and `/metrics` (the runtime's
//!   router) look at.
//! - [`metrics`]: the ingest's Prometheus registry.
//! - `spans`: the per-event trace spans of a frame (issue 17).
//! - this module: the I/O shell. One MQTT event loop; each frame is handled
//!   by its own task, serialised per agent by the agent's ledger lock, so a
//!   resend waits for the first copy and is then acked without producing.
//!   A frame refused whole is dead-lettered once and nacked (see
//!   [`core::plan_refusal`]).

#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod core;
pub mod http;
pub mod metrics;
pub mod quota;
mod spans;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use o2c_protocol::topic::{Channel, agent_topic, shared_events_filter};
use o2c_protocol::{AgentId, KafkaTopics, StoreId};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use self::core::{DeadLetter, Ledger, Plan, Refusal, Verdict};
use crate::http::Health;
use crate::metrics::{AgentLabel, ReasonLabel};
use o2c_cloud_common::config::Config;
use o2c_cloud_common::mqtt;
use o2c_runtime::kafka::{self, KafkaOpError, Producer_};
use o2c_runtime::mqtt::MqttError;
use o2c_topology::registry::SchemaIds;

/// Why the ingest stopped.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Kafka setup failed.
    #[error(transparent)]
    Kafka(#[from] KafkaOpError),
    /// The Kafka topics are missing or differ from the topology file.
    #[error(transparent)]
    Topology(#[from] o2c_topology::AdminError),
    /// The schema registry has not every subject (or did not answer).
    #[error(transparent)]
    Registry(#[from] o2c_topology::registry::RegistryError),
    /// MQTT setup failed.
    #[error(transparent)]
    Mqtt(#[from] MqttError),
    /// The HTTP listener failed.
    #[error("http: {0}")]
    Http(#[from] std::io::Error),
    /// A configuration value was refused.
    #[error("config: {0}")]
    Config(String),
    /// The idempotent producer hit a fatal error: no produce can succeed
    /// any more, so the process stops (its supervisor starts a fresh one).
    #[error("kafka producer fatal error: {0}")]
    KafkaFatal(String),
}

/// One agent's ledger, and whether a frame is already queued behind the
/// one in progress.
#[derive(Debug, Default)]
struct AgentSlot {
    ledger: tokio::sync::Mutex<Ledger>,
    waiting: std::sync::atomic::AtomicBool,
}

type Ledgers = Mutex<HashMap<(StoreId, AgentId), Arc<AgentSlot>>>;

struct Shared {
    producer: Producer_,
    client: AsyncClient,
    topics: KafkaTopics,
    health: Arc<Health>,
    ledgers: Ledgers,
    cancel: CancellationToken,
    crash: CrashAfterProduce,
    quota: quota::AgentQuota,
    /// The value schema ids stamped on records (`[kafka]
    /// schema_registry_url`; none without a registry).
    schema_ids: SchemaIds,
}

/// Fault injection for the end-to-end suite: with
/// `O2C_INGEST_FAULT_CRASH_AFTER_PRODUCE=N` set, the process aborts (as
/// abruptly as `kill -9`) right after Kafka acknowledged its Nth batch and
/// before the ack is published. Unset in production.
#[derive(Debug, Default)]
struct CrashAfterProduce(Option<std::sync::atomic::AtomicU64>);

impl CrashAfterProduce {
    const ENV: &'static str = "O2C_INGEST_FAULT_CRASH_AFTER_PRODUCE";

    fn from_env() -> Self {
        let n = std::env::var(Self::ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(n) = n {
            tracing::warn!(batches = n, "fault injection: will abort after producing");
        }
        Self(n.map(std::sync::atomic::AtomicU64::new))
    }

    fn after_produce(&self) {
        if let Some(left) = &self.0
            && left.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1
        {
            tracing::error!("fault injection: aborting between produce and ack");
            std::process::abort();
        }
    }
}

/// Runs the ingest until `shutdown` resolves. `http` serves the health and
/// metrics endpoints.
pub async fn run(
    cfg: Config,
    http: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), IngestError> {
    let topics = cfg.topics();
    let filter = shared_events_filter(&cfg.ingest.shared_group)
        .map_err(|e| IngestError::Config(e.to_string()))?;
    let producer = kafka::producer(&cfg.kafka.brokers, cfg.kafka.linger_ms)?;
    let health = Arc::new(Health::default());
    // Dev: apply the topology file; production: check the topics match it.
    o2c_topology::ensure_for(&cfg.kafka).await?;
    let schema_ids = o2c_topology::registry::schema_ids_for(&cfg.kafka).await?;
    // Warm the idempotent producer (PID set-up) before the first frame.
    kafka::probe(&producer, Duration::from_secs(10)).await?;
    health.set_kafka(true);

    let client_id = format!("{}-{:08x}", cfg.mqtt.client_id, rand::random::<u32>());
    let (client, mut eventloop) = AsyncClient::new(mqtt::options(&cfg.mqtt, &client_id)?, 1024);
    let cancel = CancellationToken::new();
    let shared = Arc::new(Shared {
        producer,
        client: client.clone(),
        topics,
        health: health.clone(),
        ledgers: Mutex::new(HashMap::new()),
        cancel: cancel.clone(),
        crash: CrashAfterProduce::from_env(),
        quota: quota::AgentQuota::from_config(&cfg.ingest),
        schema_ids,
    });

    let http_task = tokio::spawn({
        let cancel = cancel.clone();
        let app: axum::Router = o2c_runtime::http::router(health.clone());
        async move {
            axum::serve(http, app)
                .with_graceful_shutdown(cancel.cancelled_owned())
                .await
        }
    });
    let mut probe_task = tokio::spawn(probe_kafka(shared.clone()));
    let mut fatal = None;
    let permits = Arc::new(Semaphore::new(cfg.ingest.max_inflight_frames));
    let mut backoff = Duration::from_millis(100);
    tracing::info!(%client_id, %filter, "ingest starting");

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            r = &mut probe_task => {
                fatal = r.ok().flatten();
                if let Some(reason) = &fatal {
                    tracing::error!(%reason, "kafka producer failed for good; stopping");
                }
                break;
            }
            ev = eventloop.poll() => match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = Duration::from_millis(100);
                    // Clean start: subscribe again on every connection.
                    if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                        tracing::error!(error = %e, "cannot queue subscribe");
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    health.set_mqtt(true);
                    tracing::info!("subscribed");
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let m = &health.metrics;
                    m.frames_in.inc();
                    match permits.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let shared = shared.clone();
                            let frame = p
                                .properties
                                .as_ref()
                                .and_then(|pr| core::frame_property(&pr.user_properties))
                                .map(str::to_owned);
                            let spans = spans::FrameSpans::open(
                                p.properties.as_ref().map_or(&[][..], |pr| &pr.user_properties),
                            );
                            tokio::spawn(async move {
                                handle_frame(&shared, p.topic, p.payload, frame, spans).await;
                                drop(permit);
                            });
                        }
                        Err(_) => {
                            // Not acked: the agent resends after its timeout.
                            m.frames_shed.inc();
                            tracing::warn!("overloaded: frame shed");
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    health.set_mqtt(false);
                    tracing::warn!(error = %e, retry_in = ?backoff, "mqtt connection lost");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
    tracing::info!("ingest stopping");
    cancel.cancel();
    let _ = client.try_disconnect();
    probe_task.abort();
    // Frames in progress finish their produce (no ack is sent for a frame
    // whose produce did not finish: the agent resends it).
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        permits.acquire_many(u32::try_from(cfg.ingest.max_inflight_frames).unwrap_or(u32::MAX)),
    )
    .await;
    let http = match http_task.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(IngestError::Http(e)),
        Err(_) => Ok(()),
    };
    match fatal {
        Some(reason) => Err(IngestError::KafkaFatal(reason)),
        None => http,
    }
}

/// Keeps the `kafka` readiness flag honest while nothing is produced.
/// Returns the reason if the producer has hit a fatal error (then every
/// produce fails for good), or `None` once cancelled.
async fn probe_kafka(shared: Arc<Shared>) -> Option<String> {
    loop {
        if let Some(reason) = kafka::fatal_error(&shared.producer) {
            shared.health.set_kafka(false);
            return Some(reason);
        }
        let ok = kafka::probe(&shared.producer, Duration::from_secs(3))
            .await
            .is_ok();
        shared.health.set_kafka(ok);
        tokio::select! {
            () = shared.cancel.cancelled() => return None,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

fn slot_for(shared: &Shared, store: &StoreId, agent: &AgentId) -> Arc<AgentSlot> {
    let mut map = shared.ledgers.lock().unwrap_or_else(|p| p.into_inner());
    map.entry((store.clone(), agent.clone()))
        .or_default()
        .clone()
}

/// `frame` is the publish's `o2c-frame` user property, if any.
async fn handle_frame(
    shared: &Shared,
    topic: Bytes,
    payload: Bytes,
    frame: Option<String>,
    mut spans: spans::FrameSpans,
) {
    let topic = String::from_utf8_lossy(&topic).into_owned();
    // Identity comes from the topic; the lock keeps one frame per agent in
    // progress. A frame whose topic does not parse uses a throwaway ledger.
    let key = o2c_protocol::topic::parse_agent_topic(&topic).ok();
    let slot = key.as_ref().map(|(s, a, _)| slot_for(shared, s, a));
    let mut scratch = Ledger::default();
    let mut guard = match &slot {
        Some(slot) => match slot.ledger.try_lock() {
            Ok(g) => Some(g),
            // The agent keeps one batch in flight, so frames that pile up
            // behind the one in progress are resends of the same batch:
            // one may wait, later copies are dropped (the waiting one will
            // be acked). A Kafka outage thus holds at most two frames per
            // agent.
            Err(_) if slot.waiting.swap(true, std::sync::atomic::Ordering::AcqRel) => {
                shared.health.metrics.frames_coalesced.inc();
                return;
            }
            Err(_) => {
                let g = slot.ledger.lock().await;
                slot.waiting
                    .store(false, std::sync::atomic::Ordering::Release);
                Some(g)
            }
        },
        None => None,
    };
    let ledger: &mut Ledger = guard.as_deref_mut().unwrap_or(&mut scratch);
    let validating = spans.validating();
    let verdict = core::plan(ledger, &shared.topics, &topic, &payload);
    drop(validating);
    match verdict {
        Verdict::Refuse(dead) => {
            let refusal = core::plan_refusal(ledger, &topic, frame.as_deref(), &payload, dead);
            refuse_frame(shared, ledger, &refusal, &topic).await;
        }
        Verdict::Batch(mut plan) => {
            let m = &shared.health.metrics;
            // Over its quota, the agent waits here, holding only its own
            // ledger (see `quota`): new events are charged, resends are free.
            let key = (plan.store_id.clone(), plan.agent_id.clone());
            shared
                .quota
                .admit(&key, plan.produce.len() + plan.dead.len(), m)
                .await;
            m.events_in
                .inc_by((plan.produce.len() + plan.dead.len() + plan.duplicates) as u64);
            let producing = spans.producing(&mut plan);
            let started = o2c_runtime::clock::now();
            produce_plan(shared, &plan).await;
            m.produce_seconds.observe(started.elapsed().as_secs_f64());
            drop(producing);
            if !plan.produce.is_empty() {
                shared.crash.after_produce();
            }
            // Kafka has every record: remember that, free the agent's slot,
            // then ack (so the agent's next batch never finds it busy).
            ledger.commit(&plan);
            record_agent(shared, &plan, ledger.hwm());
            drop(guard);
            let acking = spans.acking();
            send_ack(shared, &plan).await;
            drop(acking);
        }
    }
}

/// Dead-letters a refused frame (unless this is a resend of one already
/// dead-lettered), remembers that, then nacks it. The agent's slot stays
/// locked until the nack is queued, so a resend waiting behind this copy
/// finds the frame in the ledger.
async fn refuse_frame(shared: &Shared, ledger: &mut Ledger, r: &Refusal, topic: &str) {
    match &r.dead {
        Some(dead) => {
            tracing::warn!(reason = dead.reason, detail = %dead.detail, %topic, frame = ?dead.frame, "frame refused");
            produce_dead(shared, std::slice::from_ref(dead)).await;
            ledger.commit_refusal(r);
        }
        None => {
            tracing::debug!(%topic, "resend of a refused frame: nacked again, not dead-lettered");
        }
    }
    let Some((acks, nack)) = &r.nack else {
        return;
    };
    let bytes = match nack.encode() {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode frame nack");
            return;
        }
    };
    // If it is lost, the agent resends the frame after its ack timeout and
    // gets the nack again (without a second dead letter).
    match shared
        .client
        .publish(acks.clone(), QoS::AtLeastOnce, false, bytes)
        .await
    {
        Ok(()) => {
            shared.health.metrics.acks_sent.inc();
        }
        Err(e) => tracing::warn!(error = %e, "cannot queue frame nack"),
    }
}

/// Produces every record of the plan to its own topic and to the order
/// history, retrying failures with backoff until Kafka has them all.
/// Returns only when all are durable.
async fn produce_plan(shared: &Shared, plan: &Plan) {
    let m = &shared.health.metrics;
    let mut backoff = kafka::RetryBackoff::default();
    // (record, to the history?) pairs not yet durable.
    let mut pending: Vec<(usize, bool)> = plan
        .produce
        .iter()
        .enumerate()
        .flat_map(|(i, r)| [Some((i, false)), r.history.then_some((i, true))])
        .flatten()
        .collect();
    while !pending.is_empty() {
        let results = futures::future::join_all(pending.iter().map(|&(i, history)| {
            let r = &plan.produce[i];
            let topic = if history {
                &plan.history_topic
            } else {
                &r.topic
            };
            let stamp = shared.schema_ids.header(r.event_type);
            async move {
                let stamped: Vec<(&str, String)>;
                let headers = match stamp {
                    Some(h) => {
                        stamped = r.headers.iter().cloned().chain([h]).collect();
                        &stamped[..]
                    }
                    None => &r.headers[..],
                };
                kafka::send(&shared.producer, topic, &r.key, headers, &r.value).await
            }
        }))
        .await;
        let mut failed = Vec::new();
        for (&(i, history), res) in pending.iter().zip(results) {
            match res {
                Ok(()) => {
                    if !history {
                        m.events_produced.inc();
                    }
                }
                Err(e) => {
                    m.produce_errors.inc();
                    shared.health.set_kafka(false);
                    let topic = if history {
                        &plan.history_topic
                    } else {
                        &plan.produce[i].topic
                    };
                    tracing::warn!(error = %e, %topic, "produce failed; retrying");
                    failed.push((i, history));
                }
            }
        }
        pending = failed;
        if !pending.is_empty() {
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }
    produce_dead(shared, &plan.dead).await;
}

async fn produce_dead(shared: &Shared, dead: &[DeadLetter]) {
    let dlq = shared.topics.dlq();
    let m = &shared.health.metrics;
    for d in dead {
        let mut headers = vec![
            ("reason", d.reason.to_owned()),
            ("reason_detail", d.detail.clone()),
            ("source_topic", d.source_topic.clone()),
        ];
        if let Some(a) = &d.agent_id {
            headers.push(("agent_id", a.clone()));
        }
        if let Some(s) = d.seq {
            headers.push(("seq", s.to_string()));
        }
        if let Some(e) = &d.event_id {
            headers.push(("event_id", e.clone()));
        }
        if let Some(f) = &d.frame {
            headers.push(("frame", f.clone()));
        }
        let key = d
            .event_id
            .clone()
            .or_else(|| d.agent_id.clone())
            .unwrap_or_default();
        kafka::send_until_stored(&shared.producer, &dlq, &key, &headers, &d.value, |e| {
            m.produce_errors.inc();
            tracing::warn!(error = %e, "dead-letter produce failed; retrying");
        })
        .await;
        m.dlq
            .get_or_create(&ReasonLabel {
                reason: d.reason.to_owned(),
            })
            .inc();
    }
}

async fn send_ack(shared: &Shared, plan: &Plan) {
    let topic = agent_topic(&plan.store_id, &plan.agent_id, Channel::Acks);
    let bytes = match plan.ack.encode() {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode ack");
            return;
        }
    };
    // Queued for the event loop; if it is lost the agent resends and the
    // ledger answers with the same ack without producing again.
    match shared
        .client
        .publish(topic, QoS::AtLeastOnce, false, bytes)
        .await
    {
        Ok(()) => {
            shared.health.metrics.acks_sent.inc();
        }
        Err(e) => tracing::warn!(error = %e, "cannot queue ack"),
    }
}

fn record_agent(shared: &Shared, plan: &Plan, hwm: u64) {
    let m = &shared.health.metrics;
    m.events_duplicate.inc_by(plan.duplicates as u64);
    let label = AgentLabel {
        store: plan.store_id.to_string(),
        agent: plan.agent_id.to_string(),
    };
    m.agent_hwm
        .get_or_create(&label)
        .set(i64::try_from(hwm).unwrap_or(i64::MAX));
    if let Some(t) = plan.newest_occurred_ms {
        let now = time::OffsetDateTime::now_utc();
        let now_ms = now.unix_timestamp() * 1000 + i64::from(now.millisecond());
        m.agent_lag_ms
            .get_or_create(&label)
            .set((now_ms - t).max(0));
    }
}
