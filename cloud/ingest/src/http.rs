//! What the ingest's `/healthz`, `/readyz` (MQTT connected and Kafka
//! answering) and `/metrics` look at; the routes are
//! [`o2c_runtime::http::router`]'s.

use std::sync::atomic::{AtomicBool, Ordering};

use o2c_runtime::http::{Probes, Readiness};

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

impl Probes for Health {
    fn readiness(&self) -> Readiness {
        let mqtt = self.mqtt.load(Ordering::Relaxed);
        let kafka = self.kafka.load(Ordering::Relaxed);
        Readiness {
            ready: mqtt && kafka,
            detail: Some(format!("mqtt={mqtt} kafka={kafka}")),
        }
    }

    fn metrics_text(&self) -> String {
        self.metrics.encode()
    }
}
