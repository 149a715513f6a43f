//! The transactional outbox: the next event is written in the same
//! transaction as the state change ([`insert_many`]); the [`relay`] publishes it
//! to Kafka with the idempotent producer and marks it published.
//!
//! The relay wakes when a transaction of this process that wrote to its
//! outbox commits ([`crate::wake`]), polls as a backstop (and for rows
//! other processes write), and claims rows with `FOR UPDATE SKIP LOCKED`,
//! so several relays (one per process) can run side by side. A row keeps its
//! `event_id`, the order id as key and the upstream trace.
//!
//! Each event goes to its own topic and to the order history,
//! `orders.events`, with the same key, headers and bytes, plus a `source`
//! header naming the service; a row is marked published only when Kafka
//! has both. The state projector's relay writes only `orders.state`, and
//! runs alone ([`Relay::exclusive`]).

use std::sync::Arc;
use std::time::Duration;

use o2c_protocol::{Envelope, Event, EventId, KafkaTopics, SCHEMA_VERSION, Traceparent};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::db::Tx;
use crate::db::DbError;
use crate::metrics::SagaMetrics;
use crate::service::Service;
use crate::wake::RelayWake;
use o2c_runtime::kafka::{self, Producer_};
use o2c_topology::registry::SchemaIds;

/// A fresh UUIDv7 event id.
pub fn new_event_id() -> EventId {
    let now = OffsetDateTime::now_utc();
    let ms = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    EventId::from_parts(ms, rand::random())
}

/// The envelope of a cloud event caused by `cause`: same store, agent and
/// trace, no seq, a fresh event id. Its context is `span`'s (the span
/// that wrote it, with traces on), else the cause's trace with a new span
/// id.
pub(crate) fn mint(cause: &Envelope, payload: Event, span: Option<&str>) -> Envelope {
    let traceparent = span.and_then(|tp| Traceparent::new(tp).ok()).or_else(|| {
        let tp = cause.traceparent.as_ref()?;
        let trace = tp.as_str().split('-').nth(1)?;
        let trace = u128::from_str_radix(trace, 16).ok()?;
        Traceparent::from_ids(trace, rand::random::<u64>() | 1).ok()
    });
    Envelope {
        event_id: new_event_id(),
        schema_version: SCHEMA_VERSION,
        store_id: cause.store_id.clone(),
        agent_id: cause.agent_id.clone(),
        seq: None,
        occurred_at: OffsetDateTime::now_utc(),
        traceparent,
        payload,
    }
}

/// Why relaying the outbox failed (writing it is a [`DbError`]).
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// PostgreSQL.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// Kafka refused a record.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Connecting to PostgreSQL failed.
    #[error("connect: {0}")]
    Connect(#[from] DbError),
}

/// Inserts each `(cause, payload)` as an event caused by `cause` into the
/// outbox of `schema`, inside the caller's transaction (one statement for
/// all of them), and wakes the relay at commit.
pub(crate) async fn insert_many(
    tx: &Tx<'_>,
    schema: &str,
    topics: &KafkaTopics,
    events: Vec<(&Envelope, Event)>,
) -> Result<(), DbError> {
    if events.is_empty() {
        return Ok(());
    }
    // One `{service}.outbox` span per row, open until the rows are written
    // (the schema names the service: `o2c_payment` is `payment`'s).
    let service = schema.strip_prefix("o2c_").unwrap_or(schema);
    let mut spans = Vec::with_capacity(events.len());
    let mut envs = Vec::with_capacity(events.len());
    for (cause, payload) in events {
        let (span, own) = crate::spans::child(
            service,
            "outbox",
            cause.traceparent.as_ref().map(Traceparent::as_str),
        );
        spans.push(span);
        envs.push(mint(cause, payload, own.as_deref()));
    }
    insert_envelopes(tx, schema, topics, &envs).await?;
    drop(spans);
    Ok(())
}

/// Inserts `envs`, as they are, into the outbox of `schema` inside the
/// caller's transaction (one statement for all of them), each for its
/// event type's topic keyed by its order, and wakes the relay at
/// commit. An event already there (same `event_id`) is an error: the
/// caller's transaction decides each event once.
pub async fn insert_envelopes(
    tx: &Tx<'_>,
    schema: &str,
    topics: &KafkaTopics,
    envs: &[Envelope],
) -> Result<(), DbError> {
    if envs.is_empty() {
        return Ok(());
    }
    let n = envs.len();
    let (mut ids, mut topic, mut key, mut types) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut stores, mut agents, mut traces, mut payloads) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for env in envs {
        payloads.push(env.encode().map_err(|e| DbError::Encode(e.to_string()))?);
        let event_type = env.event_type();
        ids.push(env.event_id.to_string());
        topic.push(topics.for_event(event_type));
        key.push(env.payload.order_id().to_string());
        types.push(event_type.as_str());
        stores.push(env.store_id.as_str().to_owned());
        agents.push(env.agent_id.as_str().to_owned());
        traces.push(env.traceparent.as_ref().map(|t| t.as_str().to_owned()));
    }
    tx.execute(
        &format!(
            "INSERT INTO {schema}.outbox \
             (event_id, topic, key, event_type, store_id, agent_id, traceparent, payload) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
             $5::text[], $6::text[], $7::text[], $8::bytea[])"
        ),
        &[
            &ids, &topic, &key, &types, &stores, &agents, &traces, &payloads,
        ],
    )
    .await?;
    tx.wake_relay_at_commit(schema);
    Ok(())
}

/// Rows claimed per round.
const BATCH: i64 = 500;

/// What one service's relay publishes, and how.
#[derive(Debug, Clone)]
pub(crate) struct Relay {
    /// The service's schema (its outbox).
    pub(crate) schema: &'static str,
    /// Its name, in each record's `source` header.
    pub(crate) source: &'static str,
    /// The order history topic each event also goes to; `None` for rows
    /// that are not events (the state projector's).
    pub(crate) history: Option<String>,
    /// Only one relay of this schema publishes at a time (a transaction
    /// advisory lock), so rows reach Kafka in the order they were
    /// written, across processes too: the compacted `orders.state` keeps
    /// the last record per key, which must be the newest.
    pub(crate) exclusive: bool,
    /// Backstop poll interval.
    pub(crate) poll: Duration,
    /// The value schema ids stamped on records, by event type.
    pub(crate) schema_ids: SchemaIds,
}

impl Relay {
    /// The relay of `service`.
    pub(crate) fn for_service(
        service: Service,
        topics: &KafkaTopics,
        poll: Duration,
        schema_ids: SchemaIds,
    ) -> Self {
        let state = service == Service::State;
        Self {
            schema: service.schema(),
            source: service.name(),
            history: (!state).then(|| topics.history()),
            exclusive: state,
            poll,
            schema_ids,
        }
    }
}

/// Publishes the outbox of `relay.schema` until `cancel`. Reconnects after
/// errors.
pub(crate) async fn relay(
    pg_url: String,
    relay: Relay,
    producer: Producer_,
    metrics: Arc<SagaMetrics>,
    cancel: CancellationToken,
) {
    let schema = relay.schema;
    let mut backoff = Duration::from_millis(200);
    while !cancel.is_cancelled() {
        match relay_once(&pg_url, &relay, &producer, &metrics, &cancel).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(schema, error = %e, retry_in = ?backoff, "outbox relay failed");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn relay_once(
    pg_url: &str,
    relay: &Relay,
    producer: &Producer_,
    metrics: &SagaMetrics,
    cancel: &CancellationToken,
) -> Result<(), OutboxError> {
    let poll = relay.poll;
    // Registered before the first drain: a commit from now on leaves a
    // permit, whatever the relay is doing when it lands.
    let wake = RelayWake::register(relay.schema);
    let mut client = crate::db::connect(pg_url).await?;
    loop {
        // Drain everything pending, then wait for a wake-up or the poll.
        while publish_batch(&mut client, relay, producer, metrics).await? == BATCH as usize {}
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            () = wake.woken() => {}
            () = tokio::time::sleep(poll) => {}
        }
    }
}

/// Claims, publishes and marks one batch; returns how many rows it had.
async fn publish_batch(
    client: &mut tokio_postgres::Client,
    relay: &Relay,
    producer: &Producer_,
    metrics: &SagaMetrics,
) -> Result<usize, OutboxError> {
    let schema = relay.schema;
    let tx = client.transaction().await?;
    if relay.exclusive {
        let lock = format!("o2c-relay-{schema}");
        let row = tx
            .query_one("SELECT pg_try_advisory_xact_lock(hashtext($1))", &[&lock])
            .await?;
        if !row.get::<_, bool>(0) {
            // Another process's relay is publishing; the poll retries.
            return Ok(0);
        }
    }
    let rows = tx
        .query(
            &format!(
                "SELECT id, event_id, topic, key, event_type, store_id, agent_id, traceparent, payload \
                 FROM {schema}.outbox WHERE published_at IS NULL ORDER BY id \
                 LIMIT $1 FOR UPDATE SKIP LOCKED"
            ),
            &[&BATCH],
        )
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let history = relay.history.as_deref();
    // One `{service}.relay` span per row, under the span that wrote it; its
    // context is the records' `traceparent` header.
    let relayed: Vec<(tracing::Span, Option<String>)> = rows
        .iter()
        .map(|r| crate::spans::child(relay.source, "relay", r.get::<_, Option<&str>>(7)))
        .collect();
    let sends = rows.iter().zip(&relayed).flat_map(|(r, (_, span_tp))| {
        let own: &str = r.get(2);
        [Some(own), history]
            .into_iter()
            .flatten()
            .map(move |topic| async move {
                let key: &str = r.get(3);
                let mut headers = vec![
                    ("event_id", r.get::<_, String>(1)),
                    ("event_type", r.get::<_, String>(4)),
                    ("schema_version", SCHEMA_VERSION.to_string()),
                    ("store_id", r.get::<_, String>(5)),
                    ("agent_id", r.get::<_, String>(6)),
                    ("source", relay.source.to_owned()),
                ];
                if let Some(tp) = span_tp.clone().or_else(|| r.get::<_, Option<String>>(7)) {
                    headers.push(("traceparent", tp));
                }
                headers.extend(relay.schema_ids.header(r.get::<_, &str>(4)));
                let payload: &[u8] = r.get(8);
                kafka::send(producer, topic, key, &headers, payload).await
            })
    });
    for res in futures::future::join_all(sends).await {
        // The producer never times out (message.timeout.ms = 0); an error
        // here is fatal for this round and the rows are claimed again.
        res?;
    }
    drop(relayed);
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    tx.execute(
        &format!("UPDATE {schema}.outbox SET published_at = clock_timestamp() WHERE id = ANY($1)"),
        &[&ids],
    )
    .await?;
    tx.commit().await?;
    metrics.outbox_published.inc_by(ids.len() as u64);
    Ok(ids.len())
}
