//! `/healthz` (alive), `/readyz` (MQTT connected and Kafka answering) and
//! `/metrics` (Prometheus text).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::IngestMetrics;

/// What the health endpoints look at.
#[derive(Debug, Default)]
pub struct Health {
    /// Connected to the MQTT broker and subscribed.
    pub mqtt: AtomicBool,
    /// Kafka answered the last probe or produce.
    pub kafka: AtomicBool,
    /// Prometheus metrics.
    pub metrics: IngestMetrics,
}

impl Health {
    /// Sets the MQTT flag and its gauge.
    pub fn set_mqtt(&self, up: bool) {
        self.mqtt.store(up, Ordering::Relaxed);
        self.metrics.mqtt_connected.set(i64::from(up));
    }

    /// Sets the Kafka flag and its gauge.
    pub fn set_kafka(&self, up: bool) {
        self.kafka.store(up, Ordering::Relaxed);
        self.metrics.kafka_up.set(i64::from(up));
    }
}

/// The router.
pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

async fn readyz(State(h): State<Arc<Health>>) -> impl IntoResponse {
    let mqtt = h.mqtt.load(Ordering::Relaxed);
    let kafka = h.kafka.load(Ordering::Relaxed);
    let body = format!("mqtt={mqtt} kafka={kafka}\n");
    if mqtt && kafka {
        (StatusCode::OK, body)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

async fn metrics(State(h): State<Arc<Health>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        h.metrics.encode(),
    )
}
