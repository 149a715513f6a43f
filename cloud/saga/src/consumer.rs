//! The consumer loop every saga service shares: a Kafka consumer group with
//! manual commits, decoding, retries with backoff and dead letters.
//!
//! - An undecodable event, or one failing validation, goes to the DLQ at
//!   once ([`StepError::Poison`]).
//! - A transient failure is retried after 1 s, 2 s and 4 s (7 s in all,
//!   within the 10 s budget), then dead-lettered with the reason.
//! - A database that is down or restarting ([`StepError::Unavailable`]) is
//!   waited for, with a capped backoff, however long it takes: every event
//!   would fail alike, so none is dead-lettered for it. An event
//!   whose batch failed is first tried once more on its own, at once.
//! - Either way the offset advances, so later events keep flowing.
//! - Records are taken in batches (whatever is queued, up to [`MAX_BATCH`]);
//!   a batch's events of one lane are handled together (one transaction,
//!   a few set-based statements, one commit and one outbox wake-up: see
//!   [`super::batch`]) and fall back to one event at a time if that fails.
//! - Offsets are stored only after the handler's transaction committed and
//!   committed in batches (every [`COMMIT_EVERY`] messages or
//!   [`COMMIT_INTERVAL`]): a commit per message starves heartbeats.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use o2c_protocol::{Envelope, EventType, KafkaTopics};
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use tokio_util::sync::CancellationToken;

use super::db::Tx;
use super::member::Member;
use crate::db::DbError;
use crate::error::SagaError;
use crate::metrics::{SagaMetrics, ServiceLabel};
use crate::pool::Pg;
use crate::spans::{Handling, handling};
use o2c_runtime::kafka::{self, Producer_, TracingContext};

/// Messages between two offset commits.
pub(crate) const COMMIT_EVERY: u32 = 500;
/// Longest time between two offset commits.
pub(crate) const COMMIT_INTERVAL: Duration = Duration::from_millis(500);
/// Backoff before each retry of a transient failure (in units of the
/// configured base, 1 s by default).
const RETRY_FACTORS: [u32; 3] = [1, 2, 4];
/// Longest wait between two tries while the database is unavailable.
const UNAVAILABLE_BACKOFF_MAX: Duration = Duration::from_secs(10);

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
    /// Not for this reader: an event type the order history carries that
    /// this build does not know (a newer writer's: a minor contract bump).
    /// Skipped and counted, never dead-lettered: a newer reader uses it.
    #[error("skipped ({code}): {detail}")]
    Skip {
        /// Stable reason code.
        code: &'static str,
        /// What it was.
        detail: String,
    },
    /// Retry later (processor or broker trouble, a conflict).
    #[error("transient: {0}")]
    Transient(String),
    /// The service's database is unreachable, restarting or shutting down:
    /// every event would fail alike, so the event is retried until the
    /// database is back, never dead-lettered.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Whether a PostgreSQL error means the server cannot be used right now
/// (no connection, a closed one, a server starting up or shutting down)
/// rather than something about the statement or its data.
pub(crate) fn pg_unavailable(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // No SQLSTATE: an I/O or connection-level error.
        None => e.as_db_error().is_none(),
        Some(code) => {
            code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                ]
                .contains(code)
        }
    }
}

impl From<tokio_postgres::Error> for StepError {
    fn from(e: tokio_postgres::Error) -> Self {
        if pg_unavailable(&e) {
            StepError::Unavailable(format!("postgres: {e}"))
        } else {
            StepError::Transient(format!("postgres: {e}"))
        }
    }
}

impl From<DbError> for StepError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::State(e) => StepError::Poison {
                code: "bad_state",
                detail: e.to_string(),
            },
            e @ DbError::NotOwner { .. } => StepError::Poison {
                code: "identity_mismatch",
                detail: e.to_string(),
            },
            DbError::Postgres(e) => e.into(),
            other => StepError::Transient(other.to_string()),
        }
    }
}

/// One saga step: handles decoded, validated events, a lane's worth at a
/// time.
pub(crate) trait Step: Send + Sync + 'static {
    /// The service's connections.
    fn pg(&self) -> &Pg;

    /// Handles `events` (one lane's, in arrival order) inside `tx`, which
    /// the caller commits; must be idempotent (see [`super::batch`]).
    fn handle_in(
        &self,
        tx: &Tx<'_>,
        events: &[&Envelope],
    ) -> impl Future<Output = Result<(), StepError>> + Send;

    /// Handles `events` of lane `lane`: by default in one transaction of
    /// their own. On an error the events are handled again one at a time,
    /// so whatever an implementation committed before failing must be
    /// skipped then (marked processed) or safe to repeat (the payment
    /// service's processor calls, by their idempotency keys).
    fn handle(
        &self,
        lane: usize,
        events: &[&Envelope],
    ) -> impl Future<Output = Result<(), StepError>> + Send {
        async move {
            let mut lane = self.pg().lane(lane).await?;
            let tx = lane.begin().await?;
            self.handle_in(&tx, events).await?;
            tx.commit().await?;
            Ok(())
        }
    }
}

/// What the loop needs besides the step.
#[derive(Debug, Clone)]
pub(crate) struct LoopConfig {
    pub(crate) brokers: String,
    /// `fetch.wait.max.ms` (`[kafka] fetch_wait_ms`).
    pub(crate) fetch_wait_ms: u32,
    pub(crate) group: String,
    pub(crate) topics: KafkaTopics,
    pub(crate) subscribe: Vec<EventType>,
    /// Also (or only) the order history topic, which carries every type.
    pub(crate) history: bool,
    pub(crate) retry_base: Duration,
    pub(crate) label: ServiceLabel,
    /// This replica's id (`saga.instance_id`), in its client id.
    pub(crate) instance: String,
    /// How the group's watchdog checks it ([`super::member`]).
    pub(crate) check: super::member::GroupCheck,
}

impl LoopConfig {
    /// The topics the loop subscribes to.
    pub(crate) fn topic_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .subscribe
            .iter()
            .map(|t| self.topics.for_event(*t))
            .collect();
        if self.history {
            names.push(self.topics.history());
        }
        names
    }
}

/// Decodes a record and checks it belongs on its topic and is valid.
pub(crate) fn decode(
    topics: &KafkaTopics,
    topic: &str,
    value: &[u8],
) -> Result<Envelope, StepError> {
    let env = Envelope::decode(value).map_err(|e| match e {
        // The history carries every type: one this build does not know is
        // a newer writer's, not poison (docs/schemas.md).
        o2c_protocol::DecodeError::UnknownEventType(_) if topics.is_history(topic) => {
            StepError::Skip {
                code: e.code(),
                detail: e.to_string(),
            }
        }
        e => StepError::Poison {
            code: e.code(),
            detail: e.to_string(),
        },
    })?;
    if !topics.is_history(topic) && topics.event_type_of(topic) != Some(env.event_type()) {
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
pub(crate) fn consumer(
    cfg: &LoopConfig,
) -> Result<StreamConsumer<TracingContext>, rdkafka::error::KafkaError> {
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
        // librdkafka's default (500 ms) is how long a fetch may wait for
        // data; Tansu holds an empty fetch that long, and records produced
        // meanwhile wait for the next one, so each saga hop could cost up
        // to that much.
        .set("fetch.wait.max.ms", cfg.fetch_wait_ms.to_string())
        // Dynamic membership, on purpose. With static membership
        // (`group.instance.id`), Tansu 0.6 hands a restarted member the
        // assignment stored for its instance id and ignores the one the
        // leader computes anew; after kill -9 restarts under load that
        // stored assignment could leave out a subscribed topic, and the
        // group then never consumed it (issue 21). A dynamic member that
        // leaves or dies makes the group rebalance from scratch.
        .set(
            "client.id",
            format!("o2c-{}-{}", cfg.label.service, cfg.instance),
        )
        .create_with_context(TracingContext)?;
    let names = cfg.topic_names();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    c.subscribe(&refs)?;
    Ok(c)
}

/// Records taken from the consumer at once: whatever is queued, up to
/// this many. A batch's events of one lane share one transaction.
pub(crate) const MAX_BATCH: usize = 256;
/// Batches handled at once. While they run, records queue up, so the
/// next batch is larger under load and a single record when idle.
const BATCHES_IN_FLIGHT: usize = 2;

/// Runs `step` over the subscribed topics until `cancel`.
///
/// Records are handled in batches ([`process_batch`]) whose results are
/// taken in arrival order, so an offset is stored only when its batch and
/// every batch before it are done (commit only after the local
/// transactions).
pub(crate) async fn run<S: Step>(
    cfg: LoopConfig,
    step: Arc<S>,
    producer: Producer_,
    metrics: Arc<SagaMetrics>,
    cancel: CancellationToken,
) -> Result<(), SagaError> {
    let cfg = Arc::new(cfg);
    let mut member = Member::join(cfg.clone(), metrics.clone())?;
    let mut uncommitted = 0u32;
    let mut last_commit = o2c_runtime::clock::now();
    let mut inflight = futures::stream::FuturesOrdered::new();
    // Set when the watchdog asks for a rejoin: no new batches are taken
    // until the ones in flight are done and their offsets stored.
    let mut rejoin = false;
    loop {
        let room = inflight.len() < BATCHES_IN_FLIGHT && !rejoin;
        if rejoin && inflight.is_empty() {
            member.rejoin().await?;
            rejoin = false;
            uncommitted = 0;
            continue;
        }
        let consumer = member.consumer();
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(COMMIT_INTERVAL) => {}
            verdict = member.checked() => rejoin = verdict.rejoin,
            m = consumer.recv(), if room => match m {
                Err(e) => {
                    tracing::warn!(service = cfg.label.service, error = %e, "consume error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(m) => {
                    let mut batch = vec![m.detach()];
                    // Take what is already queued, without waiting.
                    while batch.len() < MAX_BATCH {
                        match consumer.recv().now_or_never() {
                            Some(Ok(m)) => batch.push(m.detach()),
                            Some(Err(e)) => {
                                tracing::warn!(service = cfg.label.service, error = %e, "consume error");
                                break;
                            }
                            None => break,
                        }
                    }
                    let (cfg, step, producer, metrics, cancel) =
                        (cfg.clone(), step.clone(), producer.clone(), metrics.clone(), cancel.clone());
                    inflight.push_back(async move {
                        process_batch(&cfg, &*step, &producer, &metrics, &batch, &cancel).await;
                        batch
                    });
                }
            },
            Some(done) = futures::StreamExt::next(&mut inflight) => {
                if cancel.is_cancelled() {
                    break;
                }
                for m in &done {
                    if let Err(e) = consumer.store_offset(m.topic(), m.partition(), m.offset()) {
                        tracing::warn!(error = %e, "cannot store offset");
                    }
                }
                uncommitted += done.len() as u32;
            }
        }
        if uncommitted > 0
            && (uncommitted >= COMMIT_EVERY || last_commit.elapsed() >= COMMIT_INTERVAL)
        {
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
                tracing::warn!(error = %e, "offset commit failed");
            }
            uncommitted = 0;
            last_commit = o2c_runtime::clock::now();
        }
    }
    if uncommitted > 0 {
        let _ = member.consumer().commit_consumer_state(CommitMode::Sync);
    }
    Ok(())
}

/// Handles a batch. The decodable events are grouped by lane (arrival
/// order kept) and each group is handled at once ([`Step::handle`]: one
/// transaction for a group's ledger rows, state changes and outbox rows).
/// If a group fails, its events are handled again one by one ([`process`]:
/// each on its own, with retries and dead letters), so one bad event costs
/// only its own delivery. Undecodable records go through [`process`]
/// directly, to the DLQ.
async fn process_batch<S: Step>(
    cfg: &LoopConfig,
    step: &S,
    producer: &Producer_,
    metrics: &SagaMetrics,
    batch: &[OwnedMessage],
    cancel: &CancellationToken,
) {
    let one = |m| process(cfg, step, producer, metrics, m, cancel);
    let pg = step.pg();
    let mut lanes: Vec<Vec<(&OwnedMessage, Envelope, Option<Handling>)>> =
        (0..pg.lanes()).map(|_| Vec::new()).collect();
    let mut singles = Vec::new();
    for m in batch {
        match decode(&cfg.topics, m.topic(), m.payload().unwrap_or_default()) {
            Ok(mut env) => {
                // Open until the group is handled (or handed on one by one).
                let spans = handling(cfg.label.service, kafka::header(m, "traceparent"), &mut env);
                lanes[pg.lane_of(&env.payload.order_id().to_string())].push((m, env, spans));
            }
            Err(_) => singles.push(m),
        }
    }
    let groups = lanes
        .into_iter()
        .enumerate()
        .filter(|(_, g)| !g.is_empty())
        .map(|(i, group)| async move {
            let events: Vec<&Envelope> = group.iter().map(|(_, e, _)| e).collect();
            match step.handle(i, &events).await {
                Ok(()) => {
                    metrics
                        .processed
                        .get_or_create(&cfg.label)
                        .inc_by(group.len() as u64);
                }
                Err(e) => {
                    tracing::debug!(service = cfg.label.service, error = %e, events = group.len(),
                        "batch failed; handling its events one by one");
                    for (m, _, spans) in group {
                        drop(spans);
                        one(m).await;
                    }
                }
            }
        });
    let singles = async {
        for m in singles {
            one(m).await;
        }
    };
    futures::future::join(futures::future::join_all(groups), singles).await;
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
        Ok(mut env) => {
            let _spans = handling(cfg.label.service, kafka::header(m, "traceparent"), &mut env);
            let mut attempt = 0usize;
            let mut outage = 0u32;
            loop {
                let lane = step.pg().lane_of(&env.payload.order_id().to_string());
                match step.handle(lane, &[&env]).await {
                    Ok(()) => break Ok(()),
                    Err(StepError::Unavailable(why)) => {
                        // Until the database is back: capped backoff, no
                        // dead letter, the offset stays where it is.
                        let delay = (cfg.retry_base * 2u32.saturating_pow(outage.min(4)))
                            .min(UNAVAILABLE_BACKOFF_MAX);
                        outage += 1;
                        metrics.retries.get_or_create(&cfg.label).inc();
                        tracing::warn!(service = cfg.label.service, event_id = %env.event_id,
                            retry_in = ?delay, %why, "database unavailable; waiting for it");
                        tokio::select! {
                            () = cancel.cancelled() => break Err(StepError::Unavailable(why)),
                            () = tokio::time::sleep(delay) => {}
                        }
                    }
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
        Err(StepError::Skip { code, detail }) => {
            tracing::info!(service = cfg.label.service, topic, code, %detail,
                "skipping a history event this build does not know");
            metrics.skipped.get_or_create(&cfg.label).inc();
        }
        Err(e) => {
            let (code, detail) = match &e {
                StepError::Poison { code, detail } | StepError::Skip { code, detail } => {
                    (*code, detail.clone())
                }
                StepError::Transient(why) | StepError::Unavailable(why) => {
                    ("retries_exhausted", why.clone())
                }
            };
            tracing::error!(service = cfg.label.service, topic, code, %detail, "dead-lettering event");
            dead_letter(cfg, producer, m, code, &detail).await;
            metrics.dead_letters.get_or_create(&cfg.label).inc();
        }
    }
}

/// Produces the record to the DLQ ([`kafka::dead_letter`]).
async fn dead_letter(
    cfg: &LoopConfig,
    producer: &Producer_,
    m: &OwnedMessage,
    code: &str,
    detail: &str,
) {
    kafka::dead_letter(producer, &cfg.topics.dlq(), &cfg.group, m, code, detail).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_database_that_refuses_connections_is_unavailable_not_a_failed_event() {
        // A port nothing listens on: the error a restarting server gives.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={port} user=x connect_timeout=2"),
            tokio_postgres::NoTls,
        )
        .await
        .err()
        .expect("nothing listens there");
        assert!(pg_unavailable(&e), "{e}");
        assert!(matches!(StepError::from(e), StepError::Unavailable(_)));
    }

    /// The history carries every type: one this build does not know is a
    /// newer writer's and is skipped there; on a type's own topic it is
    /// poison. A newer major is refused everywhere.
    #[test]
    fn an_unknown_event_type_is_skipped_on_the_history_and_poison_elsewhere() {
        let topics = KafkaTopics::new("t.").unwrap();
        let env = crate::test_support::envelope(
            1,
            0,
            o2c_protocol::Event::OrderCompleted(o2c_protocol::event::OrderCompleted {
                order_id: o2c_protocol::OrderId::from_parts(1, [1; 10]),
            }),
        );
        let mut v: serde_json::Value = serde_json::from_slice(&env.encode().unwrap()).unwrap();
        v["event_type"] = "ParcelLost".into();
        let newer = serde_json::to_vec(&v).unwrap();
        assert!(matches!(
            decode(&topics, "t.orders.events", &newer),
            Err(StepError::Skip {
                code: "unknown_event_type",
                ..
            })
        ));
        assert!(matches!(
            decode(&topics, "t.orders.completed", &newer),
            Err(StepError::Poison { .. })
        ));
        v["event_type"] = "OrderCompleted".into();
        v["schema_version"] = 2.into();
        let major = serde_json::to_vec(&v).unwrap();
        assert!(matches!(
            decode(&topics, "t.orders.events", &major),
            Err(StepError::Poison {
                code: "unsupported_schema_version",
                ..
            })
        ));
        assert!(decode(&topics, "t.orders.events", &env.encode().unwrap()).is_ok());
    }
}
