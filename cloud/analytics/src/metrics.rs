//! The analytics service's Prometheus metrics and probes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use o2c_runtime::http::{Probes, Readiness};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use time::OffsetDateTime;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    events: Family<OutcomeLabels, Counter>,
    fact_rows: Counter,
    flush_failures: Counter,
    flush_seconds: Histogram,
    lag_seconds: Histogram,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let events = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "o2c_analytics_events",
            "Events by outcome: applied (to the counters), duplicate (a replay), shipment (a fact row only), ignored, dead_lettered",
            events.clone(),
        );
        let fact_rows = Counter::default();
        registry.register(
            "o2c_analytics_fact_rows",
            "Rows inserted into the ClickHouse fact tables",
            fact_rows.clone(),
        );
        let flush_failures = Counter::default();
        registry.register(
            "o2c_analytics_flush_failures",
            "Failed fact inserts (retried; the stream waits)",
            flush_failures.clone(),
        );
        let buckets = [
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let flush_seconds = Histogram::new(buckets);
        registry.register(
            "o2c_analytics_flush_seconds",
            "Time of one fact insert (every table)",
            flush_seconds.clone(),
        );
        let lag_seconds = Histogram::new(buckets);
        registry.register(
            "o2c_analytics_event_to_counter_seconds",
            "From an event's Kafka timestamp to its counters applied",
            lag_seconds.clone(),
        );
        Self {
            registry,
            events,
            fact_rows,
            flush_failures,
            flush_seconds,
            lag_seconds,
            ready: AtomicBool::new(false),
        }
    }

    pub(crate) fn event(&self, outcome: &'static str) {
        self.events.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub(crate) fn observe_lag(&self, arrived: OffsetDateTime) {
        let lag = OffsetDateTime::from(o2c_runtime::clock::wall()) - arrived;
        self.lag_seconds.observe(lag.as_seconds_f64().max(0.0));
    }

    pub(crate) fn flushed(&self, rows: usize, took: Duration) {
        self.fact_rows
            .inc_by(u64::try_from(rows).unwrap_or(u64::MAX));
        self.flush_seconds.observe(took.as_secs_f64());
    }

    pub(crate) fn flush_failed(&self) {
        self.flush_failures.inc();
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}

impl Probes for Metrics {
    fn readiness(&self) -> Readiness {
        Readiness::from_bool(self.ready.load(Ordering::Acquire))
    }

    fn metrics_text(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
