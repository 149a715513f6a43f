//! The fleet table, pure: health messages in, rows out, worst first. No
//! I/O and no clock: the shell passes the time (Unix ms) of each message's
//! arrival and of each read.
//!
//! - An agent is **online** while its latest message is a heartbeat heard
//!   within `stale_after` heartbeat intervals (the interval is the one its
//!   message announces); **stale** when it is online by its last word but
//!   silent for longer (a hung agent, a half-open link the broker has not
//!   noticed yet); **offline** when its latest message is its last will
//!   (`connection_lost`) or its goodbye (`shutdown`).
//! - "Since": online since its connection started (agent clock); stale
//!   since it was last heard; offline since the offline message arrived. An
//!   offline message delivered as retained when the view (re)subscribed is
//!   older than the view: its time is unknown, and the row says "before"
//!   the view started (`since_exact: false`). A retained message is dated
//!   by the agent's clock (`sent_at_ms`, at most now): an old retained
//!   heartbeat (its agent gone without a will, a broker restored from
//!   disk) is stale at once, and ages count from when they were measured.
//! - An offline agent keeps the figures of its last heartbeat, and the age
//!   of its oldest pending event keeps growing with the time since.
//! - Worst first: offline, then stale, then online; among equals the
//!   oldest pending event first, then the bigger backlog, then the longer
//!   silence; then by store and agent.
//! - A message whose store or agent is not its topic's is refused and
//!   counted (the broker's ACL should make it impossible); so is one that
//!   does not decode. An empty message removes the agent (decommissioned).

use std::cmp::Reverse;
use std::collections::HashMap;

use o2c_protocol::health::{AgentState, Health, HealthError, OfflineReason};
use o2c_protocol::topic::{Channel, parse_agent_topic};
use o2c_protocol::{AgentId, StoreId};
use serde::{Deserialize, Serialize};

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    /// Not an agent's health topic.
    #[error("not a health topic: {0}")]
    Topic(String),
    /// The payload is not a valid health message.
    #[error(transparent)]
    Health(#[from] HealthError),
}

impl FleetError {
    /// The metric label of the refusal.
    pub fn outcome(&self) -> &'static str {
        match self {
            FleetError::Topic(_) => "bad_topic",
            FleetError::Health(HealthError::IdentityMismatch { .. }) => "identity_mismatch",
            FleetError::Health(_) => "malformed",
        }
    }
}

/// What a message did to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A heartbeat.
    Online,
    /// An offline mark.
    Offline,
    /// An empty message removed the agent.
    Removed,
}

impl Applied {
    /// The metric label.
    pub fn outcome(self) -> &'static str {
        match self {
            Applied::Online => "online",
            Applied::Offline => "offline",
            Applied::Removed => "removed",
        }
    }
}

/// An agent's status in the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Gone (last will or goodbye).
    Offline,
    /// Online by its last word, but silent too long.
    Stale,
    /// Heard recently.
    Online,
}

impl Status {
    /// The wire and label name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Offline => "offline",
            Status::Stale => "stale",
            Status::Online => "online",
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    /// The latest heartbeat's figures (or the first offline message's when
    /// no heartbeat was ever seen).
    figures: Health,
    /// The latest message's state and reason.
    state: AgentState,
    reason: Option<OfflineReason>,
    /// When the latest message arrived (view clock).
    heard_ms: i64,
    /// When the figures arrived (view clock).
    figures_ms: i64,
    /// When it went offline (view clock), if known, and whether exactly.
    offline_since_ms: Option<i64>,
    offline_exact: bool,
}

/// The fleet table.
#[derive(Debug, Clone)]
pub struct FleetTable {
    agents: HashMap<(StoreId, AgentId), Entry>,
    stale_after: u32,
    started_ms: i64,
}

/// One row of the view (`GET /v1/fleet`, `o2c-cloud fleet`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// The store.
    pub store_id: StoreId,
    /// The agent.
    pub agent_id: AgentId,
    /// Online, stale or offline.
    pub status: Status,
    /// Since when (Unix ms): connected since (agent clock) when online,
    /// last heard when stale, offline since otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
    /// False when the real time is earlier than `since_ms` (an offline
    /// mark that was already retained when the view started).
    pub since_exact: bool,
    /// Why it is offline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<OfflineReason>,
    /// Milliseconds since its last message.
    pub last_heard_age_ms: u64,
    /// Its heartbeat interval.
    pub heartbeat_secs: u32,
    /// Its software version.
    pub agent_version: String,
    /// Events not yet acked by the cloud (as last reported).
    pub pending_events: u64,
    /// Age of the oldest of them now (reported age plus time since).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_pending_age_ms: Option<u64>,
    /// Capture to Kafka of the last acked event, as last reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingest_lag_ms: Option<u64>,
    /// Events the cloud rejected.
    pub rejected_events: u64,
    /// The highest seq acked.
    pub last_acked_seq: u64,
    /// The catalog version applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog_version: Option<u64>,
    /// Free disk of its data directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_free_bytes: Option<u64>,
}

impl Row {
    /// Seconds it has been offline or silent (0 when online): what the
    /// offline alert watches.
    pub fn down_ms(&self, now_ms: i64) -> u64 {
        match (self.status, self.since_ms) {
            (Status::Online, _) => 0,
            (_, Some(since)) => u64::try_from(now_ms.saturating_sub(since)).unwrap_or(0),
            (_, None) => 0,
        }
    }
}

/// Counts of a view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Agents in the view.
    pub agents: usize,
    /// Online.
    pub online: usize,
    /// Stale.
    pub stale: usize,
    /// Offline.
    pub offline: usize,
    /// Events pending across the fleet.
    pub pending_events: u64,
}

impl Summary {
    /// Counts `rows`.
    pub fn of(rows: &[Row]) -> Self {
        let mut s = Summary {
            agents: rows.len(),
            ..Summary::default()
        };
        for r in rows {
            match r.status {
                Status::Online => s.online += 1,
                Status::Stale => s.stale += 1,
                Status::Offline => s.offline += 1,
            }
            s.pending_events = s.pending_events.saturating_add(r.pending_events);
        }
        s
    }
}

fn age(now_ms: i64, then_ms: i64) -> u64 {
    u64::try_from(now_ms.saturating_sub(then_ms)).unwrap_or(0)
}

impl FleetTable {
    /// An empty table for a view started at `started_ms`; an agent silent
    /// for more than `stale_after` heartbeat intervals is stale.
    pub fn new(stale_after: u32, started_ms: i64) -> Self {
        Self {
            agents: HashMap::new(),
            stale_after: stale_after.max(1),
            started_ms,
        }
    }

    /// Agents known.
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    /// Whether no agent is known.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// One message on `topic`, arrived at `now_ms`; `retained` when the
    /// broker delivered it as retained (it predates the subscription).
    pub fn handle_message(
        &mut self,
        topic: &str,
        payload: &[u8],
        retained: bool,
        now_ms: i64,
    ) -> Result<Applied, FleetError> {
        let bad_topic = || FleetError::Topic(topic.chars().take(200).collect());
        let (store, agent, channel) = parse_agent_topic(topic).map_err(|_| bad_topic())?;
        if channel != Channel::Health {
            return Err(bad_topic());
        }
        if payload.is_empty() {
            self.agents.remove(&(store, agent));
            return Ok(Applied::Removed);
        }
        let h = Health::decode_for(payload, &store, &agent)?;
        // A retained message predates the subscription: date it by the
        // agent's clock (never later than now).
        let observed = if retained {
            h.sent_at_ms.min(now_ms)
        } else {
            now_ms
        };
        let key = (store, agent);
        let applied = match h.state {
            AgentState::Online => Applied::Online,
            AgentState::Offline => Applied::Offline,
        };
        match (self.agents.get_mut(&key), h.state) {
            (Some(e), AgentState::Online) => {
                e.state = AgentState::Online;
                e.reason = None;
                e.heard_ms = observed;
                e.figures_ms = observed;
                e.offline_since_ms = None;
                e.offline_exact = false;
                e.figures = h;
            }
            (Some(e), AgentState::Offline) => {
                if e.state == AgentState::Online {
                    // Retained: it went while the view was away, some time
                    // after it was last heard.
                    e.offline_since_ms = Some(if retained { e.heard_ms } else { now_ms });
                    e.offline_exact = !retained;
                }
                e.state = AgentState::Offline;
                e.reason = h.reason;
                e.heard_ms = observed;
            }
            (None, state) => {
                let offline_since_ms =
                    (state == AgentState::Offline && !retained).then_some(now_ms);
                self.agents.insert(
                    key,
                    Entry {
                        state,
                        reason: h.reason,
                        heard_ms: observed,
                        figures_ms: observed,
                        offline_since_ms,
                        offline_exact: offline_since_ms.is_some(),
                        figures: h,
                    },
                );
            }
        }
        Ok(applied)
    }

    /// The rows at `now_ms`, worst first.
    pub fn rows(&self, now_ms: i64) -> Vec<Row> {
        self.rows_of(now_ms, |_| true)
    }

    /// The rows of the stores `keep` keeps, at `now_ms`, worst first.
    pub fn rows_of(&self, now_ms: i64, keep: impl Fn(&StoreId) -> bool) -> Vec<Row> {
        let mut rows: Vec<Row> = self
            .agents
            .iter()
            .filter(|((store, _), _)| keep(store))
            .map(|((store, agent), e)| self.row(store, agent, e, now_ms))
            .collect();
        rows.sort_by(|a, b| {
            let key = |r: &Row| {
                (
                    r.status,
                    Reverse(r.oldest_pending_age_ms.unwrap_or(0)),
                    Reverse(r.pending_events),
                    Reverse(r.last_heard_age_ms),
                )
            };
            key(a)
                .cmp(&key(b))
                .then_with(|| a.store_id.as_str().cmp(b.store_id.as_str()))
                .then_with(|| a.agent_id.as_str().cmp(b.agent_id.as_str()))
        });
        rows
    }

    fn row(&self, store: &StoreId, agent: &AgentId, e: &Entry, now_ms: i64) -> Row {
        let f = &e.figures;
        let silent_ms = age(now_ms, e.heard_ms);
        let stale_ms = u64::from(f.heartbeat_secs) * 1000 * u64::from(self.stale_after);
        let (status, since_ms, since_exact) = match e.state {
            AgentState::Offline => match e.offline_since_ms {
                Some(t) => (Status::Offline, Some(t), e.offline_exact),
                None => (Status::Offline, Some(self.started_ms), false),
            },
            AgentState::Online if silent_ms > stale_ms => (Status::Stale, Some(e.heard_ms), true),
            AgentState::Online => (Status::Online, f.connected_since_ms, true),
        };
        let oldest_pending_age_ms = f
            .oldest_pending_age_ms
            .filter(|_| f.pending_events > 0)
            .map(|a| a.saturating_add(age(now_ms, e.figures_ms)));
        Row {
            store_id: store.clone(),
            agent_id: agent.clone(),
            status,
            since_ms,
            since_exact,
            reason: e.reason,
            last_heard_age_ms: silent_ms,
            heartbeat_secs: f.heartbeat_secs,
            agent_version: f.agent_version.clone(),
            pending_events: f.pending_events,
            oldest_pending_age_ms,
            ingest_lag_ms: f.ingest_lag_ms,
            rejected_events: f.rejected_events,
            last_acked_seq: f.last_acked_seq,
            catalog_version: f.catalog_version,
            disk_free_bytes: f.disk_free_bytes,
        }
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
