//! The saga's Prometheus metrics ([`SagaMetrics`], registered under
//! `o2c_saga_`), their labels, and [`GroupHealth`], what the consumer-group
//! watchdogs last saw (read by `/readyz`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::retention;
use crate::service::Service;

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

/// Metric label: what became of a customer message's send
/// (`o2c-cloud notify`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotifyLabel {
    /// `email` or `webhook`.
    pub channel: &'static str,
    /// `sent`, `retried` or `dead`.
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
    /// Events skipped as not for this reader: a type the order history
    /// carries that this build does not know (a newer writer's), per
    /// service.
    pub skipped: Family<ServiceLabel, Counter>,
    /// Outbox rows published.
    pub outbox_published: Counter,
    /// Status updates published to stores.
    pub status_published: Counter,
    /// Status updates given up: no agent session matched within
    /// `saga.status_redeliver_for_secs`.
    pub status_undeliverable: Counter,
    /// Status resync requests answered (see `o2c_protocol::resync`).
    pub status_resync_requests: Counter,
    /// Updates sent in answer to resync requests.
    pub status_resync_updates: Counter,
    /// Resync requests refused (bad topic or body).
    pub status_resync_refused: Counter,
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
    /// Customer message sends, by channel and outcome (`o2c-cloud notify`).
    pub notify_sends: Family<NotifyLabel, Counter>,
    /// Carrier breaker: 0 closed, 1 open, 2 half-open.
    pub carrier_breaker_state: Gauge,
    /// Carrier calls of the shipping tracker, by outcome.
    pub carrier_calls: Family<CarrierLabel, Counter>,
}

/// Metric label: a carrier call and what came of it.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CarrierLabel {
    /// `book`, `track` or `cancel`.
    pub call: &'static str,
    /// `ok`, `retry` (transient failure), `rejected` (permanent) or
    /// `too_late` (a cancellation after pick-up).
    pub outcome: &'static str,
}

impl Default for SagaMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("o2c_saga");
        let m = SagaMetrics {
            registry: Registry::default(),
            processed: Family::default(),
            retries: Family::default(),
            dead_letters: Family::default(),
            skipped: Family::default(),
            outbox_published: Counter::default(),
            status_published: Counter::default(),
            status_undeliverable: Counter::default(),
            status_resync_requests: Counter::default(),
            status_resync_updates: Counter::default(),
            status_resync_refused: Counter::default(),
            psp_breaker_state: Gauge::default(),
            retention_deleted: Family::default(),
            consumer_lag: Family::default(),
            consumer_unowned: Family::default(),
            consumer_stalled: Family::default(),
            consumer_rejoins: Family::default(),
            group_health: GroupHealth::default(),
            payment_reconciled: Family::default(),
            notify_sends: Family::default(),
            carrier_breaker_state: Gauge::default(),
            carrier_calls: Family::default(),
        };
        registry.register("processed", "Events handled", m.processed.clone());
        registry.register("retries", "Transient failures retried", m.retries.clone());
        registry.register(
            "dead_letters",
            "Events dead-lettered",
            m.dead_letters.clone(),
        );
        registry.register(
            "skipped",
            "History events of a type this build does not know, skipped",
            m.skipped.clone(),
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
            "status_resync_requests",
            "Status resync requests answered",
            m.status_resync_requests.clone(),
        );
        registry.register(
            "status_resync_updates",
            "Status updates sent in answer to resync requests",
            m.status_resync_updates.clone(),
        );
        registry.register(
            "status_resync_refused",
            "Status resync requests refused (bad topic or body)",
            m.status_resync_refused.clone(),
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
        registry.register(
            "carrier_breaker_state",
            "Carrier breaker (0 closed, 1 open, 2 half-open)",
            m.carrier_breaker_state.clone(),
        );
        registry.register(
            "carrier_calls",
            "Carrier calls of the shipping tracker, by call and outcome",
            m.carrier_calls.clone(),
        );
        registry.register(
            "notify_sends",
            "Customer message sends, by channel and outcome (sent, retried, dead)",
            m.notify_sends.clone(),
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
