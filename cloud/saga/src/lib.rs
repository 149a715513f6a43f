//! # o2c-saga: the Order-to-Cash saga services
//!
//! The Order-to-Cash saga, choreographed: each service consumes the
//! previous event, does its local transaction and publishes the next
//! through its outbox. No coordinator.
//!
//! ```text
//! orders.created ─► payment ─► payments.captured ─► inventory ─► inventory.confirmed
//!       │  (inventory holds stock here)                              │
//!       │                     ship_to_home: shipping ─► shipments.scheduled
//!       │                                                            ▼
//!       │                                         order ─► orders.completed
//! payments.failed ─► order ─► orders.cancelled ─► inventory ─► inventory.released
//!                                              └► payment (refund if captured) ─► refunds.issued
//!                                              └► shipping (cancel + notice)
//! ```
//!
//! Layout:
//! - [`consumer`]: the shared consumer loop (group, manual commits,
//!   retries 1/2/4 s, dead letters).
//! - [`member`] and [`watch`]: each loop's group consumer and its
//!   watchdog (the pure verdict in `watch`): lag, partitions no member
//!   owns, stalled or falling-behind partitions; `/readyz` and metrics;
//!   a rejoin that closes an ownership gap.
//! - [`db`]: connections, numbered migrations (`cloud/saga/migrations/`), the
//!   `processed_events` ledger, per-order state rows.
//! - [`batch`]: a lane's events in one transaction with a few set-based
//!   statements (ledger, state rows, outbox). Each state row records the
//!   store whose `OrderCreated` made it; a store event about another
//!   store's order is dead-lettered as `identity_mismatch`.
//! - [`outbox`]: the transactional outbox and its relay (LISTEN/NOTIFY,
//!   `FOR UPDATE SKIP LOCKED`).
//! - [`order`], [`payment`], [`inventory`], [`shipping`]: the services;
//!   each has a pure state type with unit tests and a thin step. The
//!   inventory placement (hold at creation, confirm after payment) is
//!   documented in [`inventory`]; [`stock`] holds a batch's stock rows.
//! - [`reconcile`]: finishes payments a processor outage left `Capturing`
//!   (and those cancelled meanwhile); its decision is pure, in
//!   [`reconcile::core`].
//! - [`status`]: status updates back to the stores over MQTT; its pure
//!   delivery tracker (re-publish what reached no agent session, commit
//!   only what was delivered) is [`delivery`].
//! - [`retention`]: deletes published outbox rows (and, if configured,
//!   ledger rows) past their age.
//! - [`dlq`]: `dlq list` and `dlq replay`.
//! - [`runner`]: wiring: which services run, HTTP health and metrics.
//! - [`psp`]: the payment processor client (idempotency keys, timeout,
//!   circuit breaker in [`psp::breaker`]) and its wire types.
//!
//! Each service has its own PostgreSQL schema (`o2c_order`, `o2c_payment`,
//! `o2c_inventory`, `o2c_shipping`) and consumer group
//! (`{saga.group_prefix}-{service}`).

pub mod batch;
pub mod consumer;
pub mod db;
pub mod delivery;
pub mod dlq;
pub mod inventory;
pub mod member;
pub mod order;
pub mod outbox;
pub mod payment;
pub mod psp;
pub mod reconcile;
pub mod retention;
pub mod runner;
pub mod shipping;
pub mod status;
pub mod stock;
pub mod watch;

use std::fmt;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

pub use runner::run;

/// Why the saga (or a DLQ command) failed.
#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    /// PostgreSQL.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// A migration failed.
    #[error("migration {schema}/{version}: {message}")]
    Migration {
        /// Schema.
        schema: &'static str,
        /// Version.
        version: i32,
        /// Error.
        message: String,
    },
    /// A stored state row does not decode.
    #[error("state: {0}")]
    State(serde_json::Error),
    /// A store event about an order another store created.
    #[error("store {store} may not act on order {order}, created by store {owner}")]
    NotOwner {
        /// The order.
        order: String,
        /// The store that sent the event.
        store: String,
        /// The store that created the order.
        owner: String,
    },
    /// A changed state had no locked row to go to (a bug).
    #[error("{schema}: {updated} of {expected} changed order states written")]
    StateRowMissing {
        /// Schema.
        schema: &'static str,
        /// States that changed.
        expected: usize,
        /// Rows updated.
        updated: u64,
    },
    /// Kafka.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Kafka setup.
    #[error(transparent)]
    KafkaOp(#[from] o2c_cloud_common::kafka::KafkaOpError),
    /// MQTT setup.
    #[error(transparent)]
    MqttSetup(#[from] o2c_runtime::mqtt::MqttError),
    /// MQTT client.
    #[error("mqtt: {0}")]
    Mqtt(String),
    /// Payment processor client setup.
    #[error(transparent)]
    Psp(#[from] crate::psp::PspError),
    /// Encoding an event (a bug).
    #[error("encode: {0}")]
    Encode(String),
    /// A connection or task ended.
    #[error("{0} closed")]
    Closed(&'static str),
    /// HTTP listener.
    #[error("http: {0}")]
    Http(#[from] std::io::Error),
    /// No such dead letter.
    #[error("no dead letter {0}")]
    NotFound(String),
    /// A service name that does not exist.
    #[error("unknown service {0:?}: use order, payment, inventory, shipping or status")]
    UnknownService(String),
}

/// One saga service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// Decides completion and cancellation.
    Order,
    /// Captures and refunds.
    Payment,
    /// Holds, confirms and releases stock.
    Inventory,
    /// Books and cancels shipments.
    Shipping,
}

impl Service {
    /// Every database-backed service.
    pub const ALL: [Service; 4] = [
        Service::Order,
        Service::Payment,
        Service::Inventory,
        Service::Shipping,
    ];

    /// Its name (CLI, consumer group, metrics).
    pub fn name(self) -> &'static str {
        match self {
            Service::Order => "order",
            Service::Payment => "payment",
            Service::Inventory => "inventory",
            Service::Shipping => "shipping",
        }
    }

    /// Its PostgreSQL schema.
    pub fn schema(self) -> &'static str {
        match self {
            Service::Order => order::SCHEMA,
            Service::Payment => payment::SCHEMA,
            Service::Inventory => inventory::SCHEMA,
            Service::Shipping => shipping::SCHEMA,
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Metric label: a service.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    /// Service name.
    pub service: &'static str,
}

/// Metric label: a service's subscribed topic.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    /// Service name.
    pub service: &'static str,
    /// Topic.
    pub topic: String,
}

/// Whether each consumer group consumes its whole subscription, as its
/// watchdog last saw it ([`member`]); `/readyz` reports it.
#[derive(Debug, Default)]
pub struct GroupHealth(std::sync::Mutex<std::collections::BTreeMap<&'static str, bool>>);

impl GroupHealth {
    /// Records `service`'s health; returns what it was before (true if
    /// unknown).
    pub fn set(&self, service: &'static str, healthy: bool) -> bool {
        let mut m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.insert(service, healthy).unwrap_or(true)
    }

    /// The services whose group is not healthy.
    pub fn unhealthy(&self) -> Vec<&'static str> {
        let m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.iter().filter(|(_, ok)| !**ok).map(|(s, _)| *s).collect()
    }
}

/// Metric label: a service's table.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabel {
    /// Service name.
    pub service: &'static str,
    /// `outbox` or `processed_events`.
    pub table: &'static str,
}

/// Metric label: how a stuck payment was settled.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `captured`, `declined`, `refunded`, `cancelled` or `expired`.
    pub outcome: &'static str,
}

/// The saga's Prometheus metrics.
#[derive(Debug)]
pub struct SagaMetrics {
    registry: Registry,
    /// Events handled, per service.
    pub processed: Family<ServiceLabel, Counter>,
    /// Transient failures retried, per service.
    pub retries: Family<ServiceLabel, Counter>,
    /// Events dead-lettered, per service.
    pub dead_letters: Family<ServiceLabel, Counter>,
    /// Outbox rows published.
    pub outbox_published: Counter,
    /// Status updates published to stores.
    pub status_published: Counter,
    /// Status updates given up: no agent session matched within
    /// `saga.status_redeliver_for_secs`.
    pub status_undeliverable: Counter,
    /// Payment processor breaker: 0 closed, 1 open, 2 half-open.
    pub psp_breaker_state: Gauge,
    /// Rows deleted by retention sweeps, per service and table.
    pub retention_deleted: Family<TableLabel, Counter>,
    /// Records not yet committed by the service's group, per topic.
    pub consumer_lag: Family<TopicLabel, Gauge>,
    /// Subscribed partitions that no member of the group owns.
    pub consumer_unowned: Family<ServiceLabel, Gauge>,
    /// Subscribed partitions with a backlog and no commit for a while.
    pub consumer_stalled: Family<ServiceLabel, Gauge>,
    /// Times a member left and rejoined its group to close a gap.
    pub consumer_rejoins: Family<ServiceLabel, Counter>,
    /// Each group's health (not a metric: `/readyz` reads it).
    pub group_health: GroupHealth,
    /// Payments the reconciler settled, per outcome.
    pub payment_reconciled: Family<OutcomeLabel, Counter>,
}

impl Default for SagaMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("o2c_saga");
        let m = SagaMetrics {
            registry: Registry::default(),
            processed: Family::default(),
            retries: Family::default(),
            dead_letters: Family::default(),
            outbox_published: Counter::default(),
            status_published: Counter::default(),
            status_undeliverable: Counter::default(),
            psp_breaker_state: Gauge::default(),
            retention_deleted: Family::default(),
            consumer_lag: Family::default(),
            consumer_unowned: Family::default(),
            consumer_stalled: Family::default(),
            consumer_rejoins: Family::default(),
            group_health: GroupHealth::default(),
            payment_reconciled: Family::default(),
        };
        registry.register("processed", "Events handled", m.processed.clone());
        registry.register("retries", "Transient failures retried", m.retries.clone());
        registry.register(
            "dead_letters",
            "Events dead-lettered",
            m.dead_letters.clone(),
        );
        registry.register(
            "outbox_published",
            "Outbox rows published to Kafka",
            m.outbox_published.clone(),
        );
        registry.register(
            "status_published",
            "Status updates published to stores",
            m.status_published.clone(),
        );
        registry.register(
            "status_undeliverable",
            "Status updates given up: no agent session matched within the redelivery time",
            m.status_undeliverable.clone(),
        );
        registry.register(
            "psp_breaker_state",
            "Payment processor breaker (0 closed, 1 open, 2 half-open)",
            m.psp_breaker_state.clone(),
        );
        registry.register(
            "retention_deleted",
            "Rows deleted by retention sweeps",
            m.retention_deleted.clone(),
        );
        registry.register(
            "consumer_lag",
            "Records not yet committed by the service's consumer group",
            m.consumer_lag.clone(),
        );
        registry.register(
            "consumer_unowned_partitions",
            "Subscribed partitions no member of the group owns",
            m.consumer_unowned.clone(),
        );
        registry.register(
            "consumer_stalled_partitions",
            "Subscribed partitions with a backlog and no commit for a while",
            m.consumer_stalled.clone(),
        );
        registry.register(
            "consumer_rejoins",
            "Times a member rejoined its group to close a gap",
            m.consumer_rejoins.clone(),
        );
        registry.register(
            "payment_reconciled",
            "Stuck payments the reconciler settled, by outcome",
            m.payment_reconciled.clone(),
        );
        SagaMetrics { registry, ..m }
    }
}

impl SagaMetrics {
    /// Counts what a retention sweep of `service` deleted.
    pub(crate) fn record_retention(&self, service: Service, swept: retention::Swept) {
        for (table, n) in [("outbox", swept.outbox), ("processed_events", swept.ledger)] {
            self.retention_deleted
                .get_or_create(&TableLabel {
                    service: service.name(),
                    table,
                })
                .inc_by(n);
        }
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A few PostgreSQL connections ("lanes"), picked by order id so one
/// order's steps use one connection; a broken connection is replaced on
/// the next use.
#[derive(Debug)]
pub(crate) struct Pg {
    url: String,
    lanes: Vec<Mutex<Option<db::Lane>>>,
}

impl Pg {
    pub(crate) fn new(url: &str, lanes: usize) -> Self {
        Self {
            url: url.to_owned(),
            lanes: (0..lanes.max(1)).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// How many lanes.
    pub(crate) fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// The lane index of `key` (an order id).
    pub(crate) fn lane_of(&self, key: &str) -> usize {
        let h = key.bytes().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        h % self.lanes.len()
    }

    /// The connection of `key`'s lane.
    pub(crate) async fn get(&self, key: &str) -> Result<MappedMutexGuard<'_, db::Lane>, SagaError> {
        self.lane(self.lane_of(key)).await
    }

    /// Lane `i` (from [`Pg::lane_of`]).
    pub(crate) async fn lane(&self, i: usize) -> Result<MappedMutexGuard<'_, db::Lane>, SagaError> {
        let lane = &self.lanes[i % self.lanes.len()];
        let mut guard = lane.lock().await;
        if guard.as_ref().is_none_or(db::Lane::is_closed) {
            *guard = Some(db::Lane::connect(&self.url).await?);
        }
        MutexGuard::try_map(guard, Option::as_mut).map_err(|_| SagaError::Closed("postgres lane"))
    }
}
