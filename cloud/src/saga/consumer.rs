//! The consumer loop every saga service shares: a Kafka consumer group with
//! manual commits, decoding, retries with backoff and dead letters.
//!
//! - An undecodable event, or one failing validation, goes to the DLQ at
//!   once ([`StepError::Poison`]).
//! - A transient failure is retried after 1 s, 2 s and 4 s (7 s in all,
//!   within the 10 s budget), then dead-lettered with the reason.
//! - Either way the offset advances, so later events keep flowing.
//! - Offsets are stored only after the handler's transaction committed and
//!   committed in batches (every [`COMMIT_EVERY`] messages or
//!   [`COMMIT_INTERVAL`]): a commit per message starves heartbeats.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use o2c_protocol::{Envelope, EventType, KafkaTopics};
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use tokio_util::sync::CancellationToken;

use super::{SagaError, SagaMetrics, ServiceLabel};
use crate::kafka::{self, Producer_, TracingContext};

impl ConsumerContext for TracingContext {}

/// Messages between two offset commits.
pub(crate) const COMMIT_EVERY: u32 = 500;
/// Longest time between two offset commits.
pub(crate) const COMMIT_INTERVAL: Duration = Duration::from_millis(500);
/// Backoff before each retry of a transient failure (in units of the
/// configured base, 1 s by default).
const RETRY_FACTORS: [u32; 3] = [1, 2, 4];

/// How handling one event failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The event can never be processed: dead-letter it now.
    #[error("poison ({code}): {detail}")]
    Poison {
        /// Stable reason code.
        code: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// Retry later (database, processor or broker trouble).
    #[error("transient: {0}")]
    Transient(String),
}

impl From<tokio_postgres::Error> for StepError {
    fn from(e: tokio_postgres::Error) -> Self {
        StepError::Transient(format!("postgres: {e}"))
    }
}

impl From<SagaError> for StepError {
    fn from(e: SagaError) -> Self {
        match e {
            SagaError::State(e) => StepError::Poison {
                code: "bad_state",
                detail: e.to_string(),
            },
            other => StepError::Transient(other.to_string()),
        }
    }
}

/// One saga step: handles one decoded, validated event.
pub(crate) trait Step: Send + Sync + 'static {
    /// Handles `env`; must be idempotent (see [`super::db::mark_processed`]).
    fn handle(&self, env: &Envelope) -> impl Future<Output = Result<(), StepError>> + Send;
}

/// What the loop needs besides the step.
#[derive(Debug, Clone)]
pub(crate) struct LoopConfig {
    pub(crate) brokers: String,
    pub(crate) group: String,
    pub(crate) topics: KafkaTopics,
    pub(crate) subscribe: Vec<EventType>,
    pub(crate) retry_base: Duration,
    pub(crate) label: ServiceLabel,
    /// This replica's stable id within the group (`saga.instance_id`).
    pub(crate) instance: String,
}

/// Decodes a record and checks it belongs on its topic and is valid.
pub(crate) fn decode(
    topics: &KafkaTopics,
    topic: &str,
    value: &[u8],
) -> Result<Envelope, StepError> {
    let env = Envelope::decode(value).map_err(|e| StepError::Poison {
        code: e.code(),
        detail: e.to_string(),
    })?;
    if topics.event_type_of(topic) != Some(env.event_type()) {
        return Err(StepError::Poison {
            code: "wrong_topic",
            detail: format!("{} on topic {topic}", env.event_type()),
        });
    }
    if let o2c_protocol::Event::OrderCreated(order) = &env.payload
        && let Err(errs) = order.validate()
    {
        return Err(StepError::Poison {
            code: "validation_failed",
            detail: errs.to_string(),
        });
    }
    Ok(env)
}

/// Creates the group consumer, subscribed to `cfg.subscribe`.
pub(crate) fn consumer(cfg: &LoopConfig) -> Result<StreamConsumer<TracingContext>, SagaError> {
    let mut cc = ClientConfig::new();
    // librdkafka debug contexts for operators, e.g. `cgrp,fetch`.
    if let Ok(debug) = std::env::var("O2C_KAFKA_DEBUG") {
        cc.set("debug", debug);
    }
    let c: StreamConsumer<TracingContext> = cc
        .set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        // Static membership: a replica restarted after a crash takes its
        // old place at once instead of waiting on a dead member.
        .set(
            "group.instance.id",
            format!("{}-{}", cfg.group, cfg.instance),
        )
        .set("client.id", format!("o2c-{}", cfg.label.service))
        .create_with_context(TracingContext)?;
    let names: Vec<String> = cfg
        .subscribe
        .iter()
        .map(|t| cfg.topics.for_event(*t))
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    c.subscribe(&refs)?;
    Ok(c)
}

/// Events handled concurrently by one service (different orders run in
/// parallel; one order's steps serialise on its database lane and row lock).
pub(crate) const IN_FLIGHT: usize = 64;

/// Runs `step` over the subscribed topics until `cancel`.
///
/// Up to [`IN_FLIGHT`] records are handled at once, but their results are
/// taken in arrival order, so an offset is stored only when it and every
/// record before it are done (commit only after the local transaction).
pub(crate) async fn run<S: Step>(
    cfg: LoopConfig,
    step: Arc<S>,
    producer: Producer_,
    metrics: Arc<SagaMetrics>,
    cancel: CancellationToken,
) -> Result<(), SagaError> {
    let consumer = consumer(&cfg)?;
    let cfg = Arc::new(cfg);
    let mut uncommitted = 0u32;
    let mut last_commit = Instant::now();
    let mut inflight = futures::stream::FuturesOrdered::new();
    loop {
        let room = inflight.len() < IN_FLIGHT;
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(COMMIT_INTERVAL) => {}
            m = consumer.recv(), if room => match m {
                Err(e) => {
                    tracing::warn!(service = cfg.label.service, error = %e, "consume error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(m) => {
                    let m = m.detach();
                    let (cfg, step, producer, metrics, cancel) =
                        (cfg.clone(), step.clone(), producer.clone(), metrics.clone(), cancel.clone());
                    inflight.push_back(async move {
                        process(&cfg, &*step, &producer, &metrics, &m, &cancel).await;
                        m
                    });
                }
            },
            Some(done) = futures::StreamExt::next(&mut inflight) => {
                if cancel.is_cancelled() {
                    break;
                }
                if let Err(e) = consumer.store_offset(done.topic(), done.partition(), done.offset()) {
                    tracing::warn!(error = %e, "cannot store offset");
                }
                uncommitted += 1;
            }
        }
        if uncommitted > 0
            && (uncommitted >= COMMIT_EVERY || last_commit.elapsed() >= COMMIT_INTERVAL)
        {
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
                tracing::warn!(error = %e, "offset commit failed");
            }
            uncommitted = 0;
            last_commit = Instant::now();
        }
    }
    if uncommitted > 0 {
        let _ = consumer.commit_consumer_state(CommitMode::Sync);
    }
    Ok(())
}

/// Handles one record: decode, step with retries, dead-letter on failure.
async fn process<S: Step>(
    cfg: &LoopConfig,
    step: &S,
    producer: &Producer_,
    metrics: &SagaMetrics,
    m: &OwnedMessage,
    cancel: &CancellationToken,
) {
    let value = m.payload().unwrap_or_default();
    let topic = m.topic();
    let outcome = match decode(&cfg.topics, topic, value) {
        Err(e) => Err(e),
        Ok(env) => {
            let mut attempt = 0usize;
            loop {
                match step.handle(&env).await {
                    Ok(()) => break Ok(()),
                    Err(StepError::Transient(why)) if attempt < RETRY_FACTORS.len() => {
                        let delay = cfg.retry_base * RETRY_FACTORS[attempt];
                        attempt += 1;
                        metrics.retries.get_or_create(&cfg.label).inc();
                        tracing::warn!(service = cfg.label.service, event_id = %env.event_id,
                            attempt, retry_in = ?delay, %why, "transient failure");
                        tokio::select! {
                            () = cancel.cancelled() => break Err(StepError::Transient(why)),
                            () = tokio::time::sleep(delay) => {}
                        }
                    }
                    Err(e) => break Err(e),
                }
            }
        }
    };
    match outcome {
        Ok(()) => {
            metrics.processed.get_or_create(&cfg.label).inc();
        }
        Err(_) if cancel.is_cancelled() => {}
        Err(e) => {
            let (code, detail) = match &e {
                StepError::Poison { code, detail } => (*code, detail.clone()),
                StepError::Transient(why) => ("retries_exhausted", why.clone()),
            };
            tracing::error!(service = cfg.label.service, topic, code, %detail, "dead-lettering event");
            dead_letter(cfg, producer, m, code, &detail).await;
            metrics.dead_letters.get_or_create(&cfg.label).inc();
        }
    }
}

/// Produces the record to the DLQ with its original headers, the reason
/// and where it came from; retries until Kafka has it.
async fn dead_letter(
    cfg: &LoopConfig,
    producer: &Producer_,
    m: &OwnedMessage,
    code: &str,
    detail: &str,
) {
    let mut headers: Vec<(&str, String)> = Vec::new();
    let original: Vec<(String, String)> = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    for (k, v) in &original {
        if !matches!(
            k.as_str(),
            "reason" | "reason_detail" | "source_topic" | "source_group"
        ) {
            headers.push((k.as_str(), v.clone()));
        }
    }
    headers.push(("reason", code.to_owned()));
    headers.push(("reason_detail", detail.chars().take(500).collect()));
    headers.push(("source_topic", m.topic().to_owned()));
    headers.push(("source_group", cfg.group.clone()));
    let key = m
        .key()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default();
    let value = m.payload().unwrap_or_default();
    let dlq = cfg.topics.dlq();
    let mut backoff = Duration::from_millis(200);
    while let Err(e) = kafka::send(producer, &dlq, &key, &headers, value).await {
        tracing::warn!(error = %e, "dead-letter produce failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}
