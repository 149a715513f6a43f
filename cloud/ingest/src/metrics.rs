//! Prometheus metrics of the ingest.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label: a dead-letter reason.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The reason code.
    pub reason: String,
}

/// Label: one agent.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentLabel {
    /// Store id.
    pub store: String,
    /// Agent id.
    pub agent: String,
}

/// Every ingest metric.
#[derive(Debug)]
pub struct IngestMetrics {
    registry: Registry,
    /// Frames received.
    pub frames_in: Counter,
    /// Frames shed under overload (not acked; agents resend).
    pub frames_shed: Counter,
    /// Resent frames dropped because the same agent's frame was in progress.
    pub frames_coalesced: Counter,
    /// Events received.
    pub events_in: Counter,
    /// Events written to their topic.
    pub events_produced: Counter,
    /// Resent events skipped because they were already durable.
    pub events_duplicate: Counter,
    /// Dead letters by reason.
    pub dlq: Family<ReasonLabel, Counter>,
    /// Acks published.
    pub acks_sent: Counter,
    /// Seconds from first produce to Kafka's ack for a whole batch.
    pub produce_seconds: Histogram,
    /// Produce errors (each is retried).
    pub produce_errors: Counter,
    /// Milliseconds between an agent's newest event and its ingestion.
    pub agent_lag_ms: Family<AgentLabel, Gauge>,
    /// Highest durable seq per agent.
    pub agent_hwm: Family<AgentLabel, Gauge>,
    /// Frames whose produce and ack waited for the agent's quota, by agent
    /// (a series appears only for an agent that went over its quota).
    pub quota_delayed: Family<AgentLabel, Counter>,
    /// Seconds a frame waited for its agent's quota.
    pub quota_delay_seconds: Histogram,
    /// 1 while connected to the MQTT broker.
    pub mqtt_connected: Gauge,
    /// 1 while Kafka answers.
    pub kafka_up: Gauge,
}

impl Default for IngestMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("o2c_ingest");
        let m = IngestMetrics {
            frames_in: Counter::default(),
            frames_shed: Counter::default(),
            frames_coalesced: Counter::default(),
            events_in: Counter::default(),
            events_produced: Counter::default(),
            events_duplicate: Counter::default(),
            dlq: Family::default(),
            acks_sent: Counter::default(),
            produce_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            produce_errors: Counter::default(),
            agent_lag_ms: Family::default(),
            agent_hwm: Family::default(),
            quota_delayed: Family::default(),
            quota_delay_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            mqtt_connected: Gauge::default(),
            kafka_up: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("frames_in", "Frames received", m.frames_in.clone());
        registry.register(
            "frames_shed",
            "Frames shed under overload",
            m.frames_shed.clone(),
        );
        registry.register(
            "frames_coalesced",
            "Resends dropped while the agent's previous frame was in progress",
            m.frames_coalesced.clone(),
        );
        registry.register("events_in", "Events received", m.events_in.clone());
        registry.register(
            "events_produced",
            "Events written to Kafka",
            m.events_produced.clone(),
        );
        registry.register(
            "events_duplicate",
            "Resent events already durable",
            m.events_duplicate.clone(),
        );
        registry.register("dlq", "Dead letters by reason", m.dlq.clone());
        registry.register("acks_sent", "Acks published", m.acks_sent.clone());
        registry.register(
            "produce_seconds",
            "Batch produce latency",
            m.produce_seconds.clone(),
        );
        registry.register(
            "produce_errors",
            "Kafka produce errors",
            m.produce_errors.clone(),
        );
        registry.register(
            "agent_lag_ms",
            "Age of an agent's newest event at ingest",
            m.agent_lag_ms.clone(),
        );
        registry.register(
            "agent_hwm",
            "Highest durable seq per agent",
            m.agent_hwm.clone(),
        );
        registry.register(
            "quota_delayed",
            "Frames held (not produced, not acked) until the agent's quota allowed them",
            m.quota_delayed.clone(),
        );
        registry.register(
            "quota_delay_seconds",
            "Time a frame waited for its agent's quota",
            m.quota_delay_seconds.clone(),
        );
        registry.register(
            "mqtt_connected",
            "1 while connected to MQTT",
            m.mqtt_connected.clone(),
        );
        registry.register("kafka_up", "1 while Kafka answers", m.kafka_up.clone());
        IngestMetrics { registry, ..m }
    }
}

impl IngestMetrics {
    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
