//! The service: a Kafka consumer group over the order topics that applies
//! each event to the live counters at once and batches its fact rows into
//! ClickHouse; and its HTTP side ([`crate::http`]).
//!
//! Commits are manual, and an offset is committed only after the fact rows
//! of every event before it are in ClickHouse (and its counters in Redis).
//! A crash before that replays those events: the counters' script has
//! their ids and changes nothing, and hands back each order's record, whose
//! rows are written again with the same version. Redis or ClickHouse being
//! down stops the stream (nothing is skipped) until it is back.

use std::collections::{HashMap, HashSet};

use futures::FutureExt as _;
use std::sync::Arc;
use std::time::Duration;

use o2c_cloud_common::config::Config;
use o2c_protocol::{Envelope, EventType, KafkaTopics};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use time::{OffsetDateTime, UtcOffset};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::assign::{self, Tp};
use crate::counters::Counters;
use crate::facts::{Facts, Pending};
use crate::fold::{self, Folded, Settings};
use crate::metrics::Metrics;
use o2c_runtime::kafka::{self, Producer_, RetryBackoff, TracingContext};

/// The event types the service reads.
pub const EVENT_TYPES: [EventType; 7] = [
    EventType::OrderCreated,
    EventType::OrderCancelled,
    EventType::PaymentCaptured,
    EventType::PaymentFailed,
    EventType::RefundIssued,
    EventType::OrderCompleted,
    EventType::ShipmentScheduled,
];

/// Why the service stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The configuration cannot work.
    #[error("config: {0}")]
    Config(String),
    /// Kafka client creation or subscription failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The HTTP listener failed.
    #[error("http: {0}")]
    Http(#[from] std::io::Error),
}

/// Runs the service until `cancel`, serving HTTP on `http`.
pub async fn run(
    cfg: Config,
    http: TcpListener,
    cancel: CancellationToken,
) -> Result<(), ServiceError> {
    let a = &cfg.analytics;
    let offset = UtcOffset::from_whole_seconds(a.utc_offset_minutes * 60)
        .map_err(|e| ServiceError::Config(format!("analytics.utc_offset_minutes: {e}")))?;
    let settings = Settings {
        offset,
        late_after_secs: i64::try_from(a.late_after_secs).unwrap_or(i64::MAX),
    };
    let topics = KafkaTopics::new(&cfg.kafka.topic_prefix)
        .map_err(|e| ServiceError::Config(format!("kafka.topic_prefix: {e}")))?;
    let metrics = Arc::new(Metrics::new());
    let facts = Facts::new(&a.clickhouse);
    let reads = crate::http::Reads::new(facts.clone(), settings, a.redis.clone());
    let router = crate::http::router(reads, metrics.clone());
    let http_cancel = cancel.clone();
    let http_task = tokio::spawn(async move {
        axum::serve(http, router)
            .with_graceful_shutdown(async move { http_cancel.cancelled().await })
            .await
    });

    let Some(counters) = until_ok(&cancel, "redis connect", || Counters::connect(&a.redis)).await
    else {
        return Ok(());
    };
    if until_ok(&cancel, "clickhouse migrate", || facts.migrate())
        .await
        .is_none()
    {
        return Ok(());
    }
    let producer =
        kafka::producer(&cfg.kafka.brokers, 5).map_err(|kafka::KafkaOpError::Kafka(e)| e)?;
    let topic_names: Vec<String> = EVENT_TYPES.iter().map(|t| topics.for_event(*t)).collect();
    let consumer = Arc::new(consumer(&cfg.kafka.brokers, &a.group)?);
    tracing::info!(group = %a.group, db = facts.database(), prefix = counters.prefix(), "analytics consuming");
    let mut stream = Stream {
        consumer,
        topics: topic_names,
        instance: a.instance,
        instances: a.instances,
        assigned: HashSet::new(),
        counters,
        facts,
        producer,
        settings,
        dlq: topics.dlq(),
        group: a.group.clone(),
        metrics,
        pending: Pending::default(),
        handled: HashMap::new(),
        batch_rows: a.clickhouse.batch_rows,
        flush_every: Duration::from_millis(a.clickhouse.flush_ms),
    };
    let out = stream.run(&cancel).await;
    http_task.abort();
    out
}

/// Retries `f` with backoff until it succeeds or `cancel` (then `None`).
async fn until_ok<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    cancel: &CancellationToken,
    what: &str,
    mut f: impl FnMut() -> F,
) -> Option<T> {
    let mut backoff = RetryBackoff::default();
    loop {
        match f().await {
            Ok(v) => return Some(v),
            Err(e) => {
                tracing::warn!(error = %e, "{what} failed; retrying");
                tokio::select! {
                    () = cancel.cancelled() => return None,
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
}

/// The consumer: group id for its commits, partitions by assignment
/// ([`crate::assign`]).
fn consumer(
    brokers: &str,
    group: &str,
) -> Result<StreamConsumer<TracingContext>, rdkafka::error::KafkaError> {
    let c: StreamConsumer<TracingContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // How long the broker holds a fetch that finds nothing; records
        // that land answer it at once (Kafka, and the project's Tansu).
        .set("fetch.wait.max.ms", "20")
        .set("client.id", format!("o2c-analytics-{group}"))
        .create_with_context(TracingContext)?;
    Ok(c)
}

/// Most records handled as one batch.
const MAX_BATCH: usize = 512;

/// How often the topics are checked for partitions added since.
const PARTITION_CHECK: Duration = Duration::from_secs(10);

struct Stream {
    consumer: Arc<StreamConsumer<TracingContext>>,
    topics: Vec<String>,
    instance: u32,
    instances: u32,
    /// The partitions this instance reads.
    assigned: HashSet<Tp>,
    counters: Counters,
    facts: Facts,
    producer: Producer_,
    settings: Settings,
    dlq: String,
    group: String,
    metrics: Arc<Metrics>,
    pending: Pending,
    /// Next offset to commit per partition, for the events handled since
    /// the last flush.
    handled: HashMap<(String, i32), i64>,
    batch_rows: usize,
    flush_every: Duration,
}

impl Stream {
    async fn run(&mut self, cancel: &CancellationToken) -> Result<(), ServiceError> {
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut check = tokio::time::interval(PARTITION_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refreshing: Option<
            tokio::task::JoinHandle<Result<Vec<Tp>, rdkafka::error::KafkaError>>,
        > = None;
        loop {
            let flush_at =
                deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            let consumer = self.consumer.clone();
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep_until(flush_at), if deadline.is_some() => {}
                _ = check.tick(), if refreshing.is_none() => {
                    let (c, topics, assigned) = (self.consumer.clone(), self.topics.clone(), self.assigned.clone());
                    let (i, n) = (self.instance, self.instances);
                    refreshing = Some(tokio::task::spawn_blocking(move || {
                        assign::refresh(&c, &topics, i, n, &assigned)
                    }));
                }
                done = async { refreshing.as_mut().expect("guarded").await }, if refreshing.is_some() => {
                    refreshing = None;
                    match done {
                        Ok(Ok(added)) if !added.is_empty() => {
                            tracing::info!(partitions = ?added, "reading partitions");
                            self.assigned.extend(added);
                            self.metrics.set_ready(true);
                        }
                        Ok(Ok(_)) => self.metrics.set_ready(true),
                        Ok(Err(e)) => tracing::warn!(error = %e, "partition check failed"),
                        Err(e) => tracing::warn!(error = %e, "partition check panicked"),
                    }
                }
                m = consumer.recv() => match m {
                    Ok(m) => {
                        // Whatever else is queued joins this batch.
                        let mut batch = vec![m.detach()];
                        while batch.len() < MAX_BATCH {
                            match consumer.recv().now_or_never() {
                                Some(Ok(m)) => batch.push(m.detach()),
                                _ => break,
                            }
                        }
                        if !self.handle(&batch, cancel).await {
                            break;
                        }
                        for m in &batch {
                            self.handled.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
                        }
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.flush_every);
                    }
                    Err(e) => tracing::warn!(error = %e, "consume failed"),
                },
            }
            let due = deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
            if due || self.pending.len() >= self.batch_rows {
                if !self.flush(cancel).await {
                    break;
                }
                deadline = None;
            }
        }
        // Whatever was handled is flushed and committed before leaving; if
        // ClickHouse is down the events are simply replayed next time.
        if !self.handled.is_empty() {
            let quick = CancellationToken::new();
            let stop = quick.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                stop.cancel();
            });
            self.flush(&quick).await;
        }
        Ok(())
    }

    /// Applies a batch of records; false only when cancelled mid-retry.
    /// Their scripts go to Redis together (one connection, pipelined):
    /// each is atomic and the counters do not depend on the order events
    /// are applied in, so a batch needs no ordering among its events.
    async fn handle(&mut self, batch: &[OwnedMessage], cancel: &CancellationToken) -> bool {
        struct Apply {
            event_id: String,
            order_id: String,
            change: fold::Change,
            arrival_hour: String,
            arrived: OffsetDateTime,
        }
        let mut applies = Vec::with_capacity(batch.len());
        for m in batch {
            let env = match Envelope::decode(m.payload().unwrap_or_default()) {
                Ok(env) => env,
                Err(e) => {
                    self.dead_letter(m, e.code(), &e.to_string()).await;
                    continue;
                }
            };
            let arrived = m
                .timestamp()
                .to_millis()
                .and_then(|ms| {
                    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
                })
                .unwrap_or_else(|| OffsetDateTime::from(o2c_runtime::clock::wall()));
            match fold::fold(&env, arrived, self.settings) {
                Err(e) => self.dead_letter(m, e.code(), &e.to_string()).await,
                Ok(Folded::Ignore) => self.metrics.event("ignored"),
                Ok(Folded::Shipment(s)) => {
                    // No counter: its fact row alone, idempotent by itself.
                    self.pending.add_shipment(&s);
                    self.metrics.event("shipment");
                }
                Ok(Folded::Order { order_id, change }) => applies.push(Apply {
                    event_id: env.event_id.to_string(),
                    order_id,
                    change,
                    arrival_hour: fold::hour_key(arrived),
                    arrived,
                }),
            }
        }
        // All again after a failure: an applied event answers as a
        // duplicate, with its order's record.
        let counters = &self.counters;
        let applied = until_ok(cancel, "redis apply", || async {
            futures::future::try_join_all(
                applies
                    .iter()
                    .map(|a| counters.apply(&a.event_id, &a.order_id, &a.change, &a.arrival_hour)),
            )
            .await
        })
        .await;
        let Some(results) = applied else {
            return false;
        };
        for (a, (fresh, record)) in applies.iter().zip(results) {
            self.metrics
                .event(if fresh { "applied" } else { "duplicate" });
            self.metrics.observe_lag(a.arrived);
            self.pending.add_order(&record);
        }
        true
    }

    async fn dead_letter(&self, m: &OwnedMessage, code: &str, detail: &str) {
        tracing::warn!(
            topic = m.topic(),
            offset = m.offset(),
            code,
            detail,
            "dead-lettering an event"
        );
        kafka::dead_letter(&self.producer, &self.dlq, &self.group, m, code, detail).await;
        self.metrics.event("dead_lettered");
    }

    /// Inserts the pending rows, then commits what was handled; false
    /// only when cancelled while ClickHouse was failing.
    async fn flush(&mut self, cancel: &CancellationToken) -> bool {
        let rows = self.pending.len();
        let started = tokio::time::Instant::now();
        let mut backoff = RetryBackoff::default();
        loop {
            match self.facts.insert(&mut self.pending).await {
                Ok(()) => break,
                Err(e) => {
                    self.metrics.flush_failed();
                    tracing::warn!(error = %e, rows, "fact insert failed; retrying");
                    tokio::select! {
                        () = cancel.cancelled() => return false,
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
        self.metrics.flushed(rows, started.elapsed());
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in self.handled.drain() {
            if let Err(e) = tpl.add_partition_offset(&topic, partition, Offset::Offset(next)) {
                tracing::warn!(error = %e, "offset not recorded");
            }
        }
        if tpl.count() > 0
            && let Err(e) = self.consumer.commit(&tpl, CommitMode::Async)
        {
            tracing::warn!(error = %e, "offset commit failed; the events will be replayed");
        }
        true
    }
}
