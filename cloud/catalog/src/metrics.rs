//! The catalog service's Prometheus metrics, and its probes for
//! `/healthz`, `/readyz` and `/metrics`.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::StatusCode;
use o2c_protocol::catalog::CatalogVersion;
use o2c_runtime::http::{Probes, Readiness};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
    code: u16,
}

/// The metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    version: Gauge,
    hints: Counter,
    reservations: Family<OutcomeLabels, Counter>,
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
        let requests = Family::<RouteLabels, Counter>::default();
        registry.register(
            "o2c_catalog_requests",
            "Store API requests by route and HTTP status (304: unchanged)",
            requests.clone(),
        );
        let version = Gauge::default();
        registry.register(
            "o2c_catalog_version",
            "The catalog version being served",
            version.clone(),
        );
        let hints = Counter::default();
        registry.register(
            "o2c_catalog_hints_sent",
            "Retained change hints published to stores",
            hints.clone(),
        );
        let reservations = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "o2c_catalog_reservations",
            "Store reservations by outcome (held, repeat, out_of_stock, released, expired)",
            reservations.clone(),
        );
        Self {
            registry,
            requests,
            version,
            hints,
            reservations,
            ready: AtomicBool::new(false),
        }
    }

    pub(crate) fn request(&self, route: &'static str, status: StatusCode) {
        self.requests
            .get_or_create(&RouteLabels {
                route,
                code: status.as_u16(),
            })
            .inc();
    }

    pub(crate) fn set_version(&self, v: CatalogVersion) {
        self.version.set(i64::try_from(v.0).unwrap_or(i64::MAX));
        self.ready.store(true, Ordering::Release);
    }

    pub(crate) fn reservation(&self, outcome: &'static str) {
        self.reservations
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub(crate) fn expired(&self, n: u64) {
        self.reservations
            .get_or_create(&OutcomeLabels { outcome: "expired" })
            .inc_by(n);
    }

    pub(crate) fn hint_sent(&self) {
        self.hints.inc();
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
