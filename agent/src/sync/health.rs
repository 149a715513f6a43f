//! The agent's health heartbeat for the fleet view (the message is
//! `o2c_protocol::health`): [`Heartbeat`] is the pure timer (time passed
//! in, in the sync loop's milliseconds), [`Reporter`] builds the messages
//! and does the I/O.
//!
//! While connected, a retained QoS 1 [`Health`] goes out on the agent's
//! `.../health` topic every `[telemetry] heartbeat_secs`, and sooner on a
//! change: on connect, when the backlog empties or starts, and when the
//! cloud rejects an event (changes are sent at most once per
//! [`MIN_CHANGE_GAP_MS`], so a till selling every second does not make a
//! message per sale). The MQTT last will, set before each connect, is the
//! latest heartbeat marked offline (`connection_lost`); a graceful stop
//! publishes it marked `shutdown` before disconnecting ([`Reporter::goodbye`]).

use std::sync::Arc;

use o2c_protocol::health::{AgentState, HEALTH_SCHEMA_VERSION, Health, OfflineReason};
use o2c_protocol::topic::{Channel, agent_topic};
use o2c_protocol::{AgentId, StoreId};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::LastWill;
use rumqttc::v5::{AsyncClient, Event};

use crate::catalog::Catalog;
use crate::store::{Store, StoreError, now_ms};

/// Least time between two change-driven heartbeats, ms (the interval still
/// applies when it is shorter).
pub(crate) const MIN_CHANGE_GAP_MS: u64 = 5_000;

/// What the heartbeat needs from the agent's config and state.
#[derive(Debug, Clone)]
pub struct HealthSettings {
    /// `[telemetry] heartbeat_secs`.
    pub heartbeat_secs: u32,
    /// The catalog, for its version (`None`: the agent has none).
    pub catalog: Option<Catalog>,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            heartbeat_secs: 30,
            catalog: None,
        }
    }
}

/// When the next heartbeat is due.
#[derive(Debug, Clone)]
pub(crate) struct Heartbeat {
    every_ms: u64,
    gap_ms: u64,
    due: Option<u64>,
    last_sent: Option<u64>,
    backlog_empty: Option<bool>,
}

impl Heartbeat {
    /// Every `every_secs` (at least 1) while connected.
    pub(crate) fn new(every_secs: u32) -> Self {
        let every_ms = u64::from(every_secs.max(1)) * 1000;
        Self {
            every_ms,
            gap_ms: MIN_CHANGE_GAP_MS.min(every_ms),
            due: None,
            last_sent: None,
            backlog_empty: None,
        }
    }

    /// Connected: one is due now.
    pub(crate) fn handle_connected(&mut self, now: u64) {
        self.due = Some(now);
    }

    /// Disconnected: nothing is due until the next connect.
    pub(crate) fn handle_disconnected(&mut self) {
        self.due = None;
    }

    /// Something worth showing changed: one is due as soon as the gap
    /// since the last allows.
    pub(crate) fn handle_changed(&mut self, now: u64) {
        let Some(due) = self.due else { return };
        let earliest = self
            .last_sent
            .map_or(now, |l| l.saturating_add(self.gap_ms));
        self.due = Some(due.min(now.max(earliest)));
    }

    /// The backlog as it is now (an atomic read each tick): a change when
    /// it empties or starts.
    pub(crate) fn handle_backlog(&mut self, pending: u64, now: u64) {
        let empty = pending == 0;
        if self.backlog_empty.is_some_and(|was| was != empty) {
            self.handle_changed(now);
        }
        self.backlog_empty = Some(empty);
    }

    /// When one is next due.
    pub(crate) fn poll_deadline(&self) -> Option<u64> {
        self.due
    }

    /// Whether one is due at `now`; if so the next is scheduled.
    pub(crate) fn poll_due(&mut self, now: u64) -> bool {
        match self.due {
            Some(d) if d <= now => {
                self.last_sent = Some(now);
                self.due = Some(now.saturating_add(self.every_ms));
                true
            }
            _ => false,
        }
    }
}

/// Builds and sends the health messages of one agent.
#[derive(Debug)]
pub(crate) struct Reporter {
    store: Store,
    settings: HealthSettings,
    store_id: StoreId,
    agent_id: AgentId,
    topic: String,
    connected_since_ms: Option<i64>,
    /// The last message built (the will and the goodbye repeat its figures).
    last: Option<Arc<Health>>,
}

impl Reporter {
    pub(crate) fn new(
        store: Store,
        settings: HealthSettings,
        store_id: StoreId,
        agent_id: AgentId,
    ) -> Self {
        let topic = agent_topic(&store_id, &agent_id, Channel::Health);
        Self {
            store,
            settings,
            store_id,
            agent_id,
            topic,
            connected_since_ms: None,
            last: None,
        }
    }

    /// The configured interval.
    pub(crate) fn heartbeat_secs(&self) -> u32 {
        self.settings.heartbeat_secs
    }

    /// Connected now (wall clock).
    pub(crate) fn handle_connected(&mut self) {
        self.connected_since_ms = Some(now_ms());
    }

    /// The connection dropped.
    pub(crate) fn handle_disconnected(&mut self) {
        self.connected_since_ms = None;
    }

    /// Reads the figures and builds an online message.
    async fn build(&mut self) -> Result<Arc<Health>, StoreError> {
        let now = now_ms();
        let f = self.store.health_figures(now).await?;
        let health = Arc::new(Health {
            schema_version: HEALTH_SCHEMA_VERSION,
            store_id: self.store_id.clone(),
            agent_id: self.agent_id.clone(),
            state: AgentState::Online,
            reason: None,
            sent_at_ms: now,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            heartbeat_secs: self.settings.heartbeat_secs,
            connected_since_ms: self.connected_since_ms,
            pending_events: f.counts.pending_events,
            oldest_pending_age_ms: f
                .counts
                .oldest_pending_age_ms
                .filter(|_| f.counts.pending_events > 0),
            last_acked_seq: f.counts.last_acked_seq,
            rejected_events: f.counts.rejected_events,
            catalog_version: self
                .settings
                .catalog
                .as_ref()
                .and_then(Catalog::catalog_version),
            disk_free_bytes: f.disk_free_bytes,
            ingest_lag_ms: f.ingest_lag_ms,
            last_ack_at_ms: f.counts.last_ack_at_ms,
        });
        self.last = Some(Arc::clone(&health));
        Ok(health)
    }

    /// Queues one heartbeat (retained, QoS 1). Errors are logged: the next
    /// heartbeat retries.
    pub(crate) async fn publish(&mut self, client: &AsyncClient) {
        let health = match self.build().await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "health figures unreadable; heartbeat skipped");
                return;
            }
        };
        match health.encode() {
            Ok(bytes) => {
                if let Err(e) = client.try_publish(&self.topic, QoS::AtLeastOnce, true, bytes) {
                    tracing::debug!(error = %e, "cannot queue a heartbeat; the next one retries");
                }
            }
            Err(e) => tracing::error!(error = %e, "health message refused by its own checks"),
        }
    }

    /// The last will for the next connect: the latest figures (read now
    /// when none were sent yet), marked offline by a lost connection.
    pub(crate) async fn will(&mut self) -> Option<LastWill> {
        let base = match &self.last {
            Some(h) => Arc::clone(h),
            None => self.build().await.ok()?,
        };
        let mut offline = base.offline(OfflineReason::ConnectionLost, now_ms());
        offline.connected_since_ms = None;
        let bytes = offline.encode().ok()?;
        Some(LastWill::new(
            self.topic.clone(),
            bytes,
            QoS::AtLeastOnce,
            true,
            None,
        ))
    }

    /// A graceful stop: queues the latest figures marked offline
    /// (`shutdown`), retained, to go out before the DISCONNECT (which
    /// discards the will). False if nothing could be queued.
    pub(crate) fn goodbye(&self, client: &AsyncClient) -> bool {
        let Some(last) = &self.last else { return false };
        let mut offline = last.offline(OfflineReason::Shutdown, now_ms());
        offline.connected_since_ms = None;
        match offline.encode() {
            Ok(bytes) => client
                .try_publish(&self.topic, QoS::AtLeastOnce, true, bytes)
                .is_ok(),
            Err(_) => false,
        }
    }
}

/// Longest a graceful stop waits for its goodbye and DISCONNECT to be
/// written.
const GOODBYE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// After [`Reporter::goodbye`]: queues the DISCONNECT and waits (at most
/// [`GOODBYE_WAIT`]) until the driver has written it, the goodbye before it.
pub(super) async fn wait_disconnected(
    client: &AsyncClient,
    link: &mut tokio::sync::mpsc::Receiver<super::driver::Link>,
) {
    if client.try_disconnect().is_err() {
        return;
    }
    let written = async {
        while let Some(msg) = link.recv().await {
            match msg {
                super::driver::Link::Event(ev)
                    if matches!(*ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) =>
                {
                    return;
                }
                super::driver::Link::Down(_) => return,
                super::driver::Link::Event(_) => {}
            }
        }
    };
    if tokio::time::timeout(GOODBYE_WAIT, written).await.is_err() {
        tracing::warn!("goodbye not written in time; the broker's will marks this agent offline");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_every_interval_while_connected_only() {
        let mut h = Heartbeat::new(30);
        assert_eq!(h.poll_deadline(), None);
        assert!(!h.poll_due(0));
        h.handle_connected(1_000);
        assert!(h.poll_due(1_000));
        assert!(!h.poll_due(1_001));
        assert_eq!(h.poll_deadline(), Some(31_000));
        assert!(!h.poll_due(30_999));
        assert!(h.poll_due(31_000));
        h.handle_disconnected();
        assert_eq!(h.poll_deadline(), None);
        assert!(!h.poll_due(100_000));
    }

    #[test]
    fn changes_come_sooner_but_not_more_than_once_per_gap() {
        let mut h = Heartbeat::new(30);
        h.handle_backlog(0, 0);
        h.handle_connected(0);
        assert!(h.poll_due(0));
        // The backlog starts 1 s later: due at the end of the gap.
        h.handle_backlog(3, 1_000);
        assert_eq!(h.poll_deadline(), Some(MIN_CHANGE_GAP_MS));
        // More changes in the gap change nothing.
        h.handle_backlog(0, 2_000);
        h.handle_changed(3_000);
        assert_eq!(h.poll_deadline(), Some(MIN_CHANGE_GAP_MS));
        assert!(h.poll_due(MIN_CHANGE_GAP_MS));
        // Long after the last one, a change is due at once.
        h.handle_backlog(5, 20_000);
        assert_eq!(h.poll_deadline(), Some(20_000));
        // The same backlog state is no change.
        assert!(h.poll_due(20_000));
        h.handle_backlog(7, 26_000);
        assert_eq!(h.poll_deadline(), Some(50_000));
    }

    #[test]
    fn a_short_interval_bounds_the_gap() {
        let mut h = Heartbeat::new(1);
        h.handle_connected(0);
        assert!(h.poll_due(0));
        h.handle_changed(10);
        assert_eq!(h.poll_deadline(), Some(1_000));
    }
}
