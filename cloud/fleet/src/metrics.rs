//! The fleet service's Prometheus metrics, what the alert rules in
//! `deploy/monitoring/o2c-fleet.rules.yml` watch. The per-agent gauges are
//! set from the table at each scrape (agents that left the table leave the
//! scrape too); the message counters count as messages arrive.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::view::FleetView;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabels {
    store: String,
    agent: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    store: String,
}

type FGauge = Gauge<f64, AtomicU64>;

/// The metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    messages: Family<OutcomeLabels, Counter>,
    agents: Family<StatusLabels, Gauge>,
    up: Family<AgentLabels, Gauge>,
    down_seconds: Family<AgentLabels, FGauge>,
    pending: Family<AgentLabels, Gauge>,
    oldest_pending: Family<AgentLabels, FGauge>,
    ingest_lag: Family<AgentLabels, FGauge>,
    rejected: Family<AgentLabels, Gauge>,
    disk_free: Family<AgentLabels, Gauge>,
    store_open: Family<StoreLabels, Gauge>,
    broker_connected: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut r = Registry::default();
        let m = Self {
            messages: Family::default(),
            agents: Family::default(),
            up: Family::default(),
            down_seconds: Family::default(),
            pending: Family::default(),
            oldest_pending: Family::default(),
            ingest_lag: Family::default(),
            rejected: Family::default(),
            disk_free: Family::default(),
            store_open: Family::default(),
            broker_connected: Gauge::default(),
            registry: Registry::default(),
        };
        r.register(
            "o2c_fleet_messages",
            "Health messages by outcome: online, offline, removed; refused: identity_mismatch, malformed, bad_topic",
            m.messages.clone(),
        );
        r.register(
            "o2c_fleet_agents",
            "Agents in the view by status (online, stale, offline)",
            m.agents.clone(),
        );
        r.register(
            "o2c_fleet_agent_up",
            "1 when the agent is online, 0 when stale or offline",
            m.up.clone(),
        );
        r.register(
            "o2c_fleet_agent_down_seconds",
            "Seconds the agent has been offline or silent (0 online; a lower bound for an offline mark older than the service)",
            m.down_seconds.clone(),
        );
        r.register(
            "o2c_fleet_agent_pending_events",
            "Events captured and not yet acked by the cloud, as last reported",
            m.pending.clone(),
        );
        r.register(
            "o2c_fleet_agent_oldest_pending_seconds",
            "Age of the agent's oldest pending event (0 with none), growing while it is offline",
            m.oldest_pending.clone(),
        );
        r.register(
            "o2c_fleet_agent_ingest_lag_seconds",
            "Capture to Kafka of the agent's last acked event",
            m.ingest_lag.clone(),
        );
        r.register(
            "o2c_fleet_agent_rejected_events",
            "Events the cloud rejected (dead-lettered), as last reported",
            m.rejected.clone(),
        );
        r.register(
            "o2c_fleet_agent_disk_free_bytes",
            "Free bytes on the agent's data directory",
            m.disk_free.clone(),
        );
        r.register(
            "o2c_fleet_store_open",
            "1 while the store is open by [fleet.hours] / [fleet.stores]",
            m.store_open.clone(),
        );
        r.register(
            "o2c_fleet_broker_connected",
            "1 while the fleet service is subscribed to the health topics",
            m.broker_connected.clone(),
        );
        Self { registry: r, ..m }
    }

    /// Counts one message.
    pub fn message(&self, outcome: &'static str) {
        self.messages
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Sets the gauges from `view` and renders the registry.
    pub fn render(&self, view: &FleetView) -> String {
        for f in [&self.up, &self.pending, &self.rejected, &self.disk_free] {
            f.clear();
        }
        for f in [&self.down_seconds, &self.oldest_pending, &self.ingest_lag] {
            f.clear();
        }
        self.store_open.clear();
        let s = &view.summary;
        for (status, n) in [
            ("online", s.online),
            ("stale", s.stale),
            ("offline", s.offline),
        ] {
            self.agents
                .get_or_create(&StatusLabels { status })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let secs = |ms: u64| ms as f64 / 1000.0;
        for a in &view.agents {
            let r = &a.row;
            let l = AgentLabels {
                store: r.store_id.to_string(),
                agent: r.agent_id.to_string(),
            };
            self.up
                .get_or_create(&l)
                .set(i64::from(r.status == crate::core::Status::Online));
            self.down_seconds.get_or_create(&l).set(secs(a.down_ms));
            self.pending.get_or_create(&l).set(int(r.pending_events));
            self.oldest_pending
                .get_or_create(&l)
                .set(secs(r.oldest_pending_age_ms.unwrap_or(0)));
            if let Some(lag) = r.ingest_lag_ms {
                self.ingest_lag.get_or_create(&l).set(secs(lag));
            }
            self.rejected.get_or_create(&l).set(int(r.rejected_events));
            if let Some(b) = r.disk_free_bytes {
                self.disk_free.get_or_create(&l).set(int(b));
            }
            self.store_open
                .get_or_create(&StoreLabels {
                    store: r.store_id.to_string(),
                })
                .set(i64::from(a.store_open));
        }
        self.broker_connected.set(i64::from(view.broker_connected));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
