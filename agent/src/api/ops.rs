//! The operations routes, `/healthz`, `/readyz` and `/metrics`, are
//! [`o2c_runtime::http`]'s; this is what they ask the agent
//! ([`AgentProbes`]) and their entries in the OpenAPI document.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use o2c_runtime::http::{Probes, Readiness};

use super::model::HealthBody;
use crate::metrics::Metrics;
use crate::store::Store;

/// Readiness is the store writer running; metrics sample the offline
/// exposure and the sync link before rendering.
#[derive(Debug)]
pub(crate) struct AgentProbes {
    pub(crate) store: Store,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) connected: Arc<AtomicBool>,
}

impl Probes for AgentProbes {
    fn readiness(&self) -> Readiness {
        Readiness::from_bool(self.store.is_alive())
    }

    fn metrics_text(&self) -> String {
        let m = &self.metrics;
        m.offline_exposure.set(self.store.offline_exposure_minor());
        m.sync_connected
            .set(i64::from(self.connected.load(Ordering::Acquire)));
        m.encode()
    }
}

// OpenAPI entries only: `o2c_runtime::http::router` serves these routes.

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = HealthBody)))]
#[expect(dead_code, reason = "documents a route served by o2c_runtime::http")]
pub(crate) fn healthz() {}

/// Readiness: the store writer is running.
#[utoipa::path(
    get, path = "/readyz", tag = "ops",
    responses((status = 200, body = HealthBody), (status = 503, body = HealthBody))
)]
#[expect(dead_code, reason = "documents a route served by o2c_runtime::http")]
pub(crate) fn readyz() {}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(
    get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text"))
)]
#[expect(dead_code, reason = "documents a route served by o2c_runtime::http")]
pub(crate) fn metrics() {}
