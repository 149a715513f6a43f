//! Agent health: what each agent says about itself on its retained
//! `o2c/v1/stores/{store}/agents/{agent}/health` topic, for the fleet view
//! (`o2c-cloud fleet`).
//!
//! The agent publishes a [`Health`] with `state: online` (QoS 1, retained)
//! every `[telemetry] heartbeat_secs` and whenever something worth seeing
//! changes (it connects, its backlog empties or starts, an event is
//! rejected). Its MQTT last will, set when it connects, is the same message
//! with `state: offline` and `reason: connection_lost`, so the broker marks
//! it offline when the agent dies or its link drops; a graceful stop
//! publishes `state: offline`, `reason: shutdown` itself. Being retained, the
//! latest message of every agent is what a fleet view that (re)starts
//! receives first. An empty retained message removes an agent from the view
//! (a decommissioned store box).
//!
//! `store_id` and `agent_id` repeat the topic's: a reader refuses a
//! message whose ids differ from its topic's (the broker's ACL already
//! pins each agent to its own topic; this catches a misconfigured agent).
//!
//! Versioned like the other wire types: readers ignore fields they do not
//! know, and refuse a `schema_version` they do not support.

use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, StoreId};

/// The health schema version this crate writes.
pub const HEALTH_SCHEMA_VERSION: u16 = 1;

/// The health schema versions this crate reads.
pub const SUPPORTED_HEALTH_VERSIONS: std::ops::RangeInclusive<u16> = 1..=1;

/// Largest health message accepted (a real one is about 500 bytes).
pub const MAX_HEALTH_BYTES: usize = 8 * 1024;

/// Longest heartbeat interval a message may announce (a day).
pub const MAX_HEARTBEAT_SECS: u32 = 86_400;

/// Why a health message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthError {
    /// Larger than [`MAX_HEALTH_BYTES`].
    #[error("health message of {0} bytes is too large")]
    TooLarge(usize),
    /// Not JSON, or not a health message.
    #[error("malformed health message: {0}")]
    Malformed(String),
    /// A `schema_version` this reader does not know.
    #[error("unsupported health schema_version {0}")]
    UnsupportedVersion(u16),
    /// A value out of range, by field.
    #[error("health.{field}: {message}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The ids in the message are not the topic's.
    #[error(
        "health of {payload_store}/{payload_agent} published on the topic of {topic_store}/{topic_agent}"
    )]
    IdentityMismatch {
        /// The topic's store.
        topic_store: StoreId,
        /// The topic's agent.
        topic_agent: AgentId,
        /// The message's store.
        payload_store: StoreId,
        /// The message's agent.
        payload_agent: AgentId,
    },
}

/// Whether the agent is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Connected: a heartbeat.
    Online,
    /// Gone: its last will, or its own goodbye.
    Offline,
}

/// Why an agent is offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OfflineReason {
    /// It stopped on purpose (SIGTERM) and said so.
    Shutdown,
    /// Its MQTT last will: the broker lost the connection (crash, power,
    /// link) without a goodbye.
    ConnectionLost,
}

/// One agent's health message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Health {
    /// [`HEALTH_SCHEMA_VERSION`].
    pub schema_version: u16,
    /// The store (must equal the topic's).
    pub store_id: StoreId,
    /// The agent (must equal the topic's).
    pub agent_id: AgentId,
    /// Online (a heartbeat) or offline (last will or goodbye).
    pub state: AgentState,
    /// Why it is offline; absent when online.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<OfflineReason>,
    /// The agent's clock when it wrote this (Unix ms). For a last will,
    /// when its connection started (a will is written at connect).
    pub sent_at_ms: i64,
    /// The agent's software version.
    pub agent_version: String,
    /// How often it sends a heartbeat while online; a reader calls an
    /// online agent stale when it has heard nothing for a few of these.
    pub heartbeat_secs: u32,
    /// When its current MQTT connection started (Unix ms, agent clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_since_ms: Option<i64>,
    /// Events captured and not yet acked by the cloud.
    pub pending_events: u64,
    /// Age of the oldest pending event, milliseconds; absent with none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_pending_age_ms: Option<u64>,
    /// The highest seq the cloud acked.
    pub last_acked_seq: u64,
    /// Events the cloud refused (dead-lettered); they stay in the outbox.
    pub rejected_events: u64,
    /// The catalog version applied; absent without a catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_version: Option<u64>,
    /// Free bytes on the filesystem of the agent's data directory (for an
    /// unprivileged process); absent if unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_free_bytes: Option<u64>,
    /// For the last acked event: its ack time minus its capture time,
    /// milliseconds (capture to Kafka, as the store saw it); absent before
    /// the first ack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest_lag_ms: Option<u64>,
    /// When the cloud last acked (Unix ms, agent clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ack_at_ms: Option<i64>,
}

impl Health {
    /// Encodes to JSON bytes; refuses an invalid message.
    pub fn encode(&self) -> Result<Vec<u8>, HealthError> {
        self.check()?;
        serde_json::to_vec(self).map_err(|e| HealthError::Malformed(e.to_string()))
    }

    /// Decodes JSON bytes and checks the values (not the topic: see
    /// [`Health::decode_for`]).
    pub fn decode(bytes: &[u8]) -> Result<Health, HealthError> {
        if bytes.len() > MAX_HEALTH_BYTES {
            return Err(HealthError::TooLarge(bytes.len()));
        }
        #[derive(Deserialize)]
        struct Head {
            schema_version: u16,
        }
        let head: Head =
            serde_json::from_slice(bytes).map_err(|e| HealthError::Malformed(e.to_string()))?;
        if !SUPPORTED_HEALTH_VERSIONS.contains(&head.schema_version) {
            return Err(HealthError::UnsupportedVersion(head.schema_version));
        }
        let h: Health =
            serde_json::from_slice(bytes).map_err(|e| HealthError::Malformed(e.to_string()))?;
        h.check()?;
        Ok(h)
    }

    /// [`Health::decode`], then checks that the ids are the topic's.
    pub fn decode_for(
        bytes: &[u8],
        topic_store: &StoreId,
        topic_agent: &AgentId,
    ) -> Result<Health, HealthError> {
        let h = Self::decode(bytes)?;
        if &h.store_id != topic_store || &h.agent_id != topic_agent {
            return Err(HealthError::IdentityMismatch {
                topic_store: topic_store.clone(),
                topic_agent: topic_agent.clone(),
                payload_store: h.store_id,
                payload_agent: h.agent_id,
            });
        }
        Ok(h)
    }

    /// The checks serde cannot make.
    pub fn check(&self) -> Result<(), HealthError> {
        let invalid = |field, message: &str| HealthError::Invalid {
            field,
            message: message.to_owned(),
        };
        if !SUPPORTED_HEALTH_VERSIONS.contains(&self.schema_version) {
            return Err(HealthError::UnsupportedVersion(self.schema_version));
        }
        if self.heartbeat_secs == 0 || self.heartbeat_secs > MAX_HEARTBEAT_SECS {
            return Err(invalid("heartbeat_secs", "must be 1 to 86400"));
        }
        if self.agent_version.is_empty() || self.agent_version.len() > 64 {
            return Err(invalid("agent_version", "must be 1 to 64 characters"));
        }
        match (self.state, self.reason) {
            (AgentState::Online, Some(_)) => {
                return Err(invalid("reason", "only an offline message has a reason"));
            }
            (AgentState::Offline, None) => {
                return Err(invalid("reason", "an offline message says why"));
            }
            _ => {}
        }
        if self.pending_events == 0 && self.oldest_pending_age_ms.is_some() {
            return Err(invalid(
                "oldest_pending_age_ms",
                "set while nothing is pending",
            ));
        }
        Ok(())
    }

    /// The same figures as an offline message (`reason`), e.g. the last
    /// will built from the heartbeat at connect.
    pub fn offline(&self, reason: OfflineReason, sent_at_ms: i64) -> Health {
        Health {
            state: AgentState::Offline,
            reason: Some(reason),
            sent_at_ms,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Health {
        Health {
            schema_version: HEALTH_SCHEMA_VERSION,
            store_id: StoreId::new("S001").unwrap(),
            agent_id: AgentId::new("S001-A1").unwrap(),
            state: AgentState::Online,
            reason: None,
            sent_at_ms: 1_764_000_000_000,
            agent_version: "0.1.0".into(),
            heartbeat_secs: 30,
            connected_since_ms: Some(1_763_999_000_000),
            pending_events: 3,
            oldest_pending_age_ms: Some(12_000),
            last_acked_seq: 41,
            rejected_events: 1,
            catalog_version: Some(7),
            disk_free_bytes: Some(10 << 30),
            ingest_lag_ms: Some(35),
            last_ack_at_ms: Some(1_763_999_990_000),
        }
    }

    #[test]
    fn round_trips_and_tolerates_unknown_fields() {
        let h = sample();
        assert_eq!(Health::decode(&h.encode().unwrap()).unwrap(), h);
        let off = h.offline(OfflineReason::ConnectionLost, 5);
        let back = Health::decode(&off.encode().unwrap()).unwrap();
        assert_eq!(back.state, AgentState::Offline);
        assert_eq!(back.reason, Some(OfflineReason::ConnectionLost));
        let mut v = serde_json::to_value(&h).unwrap();
        v["added_later"] = serde_json::json!({"x": 1});
        assert_eq!(Health::decode(&serde_json::to_vec(&v).unwrap()).unwrap(), h);
        // Optional figures may be absent.
        let text = r#"{"schema_version":1,"store_id":"S1","agent_id":"A1","state":"online",
            "sent_at_ms":1,"agent_version":"0.1.0","heartbeat_secs":30,"pending_events":0,
            "last_acked_seq":0,"rejected_events":0}"#;
        let min = Health::decode(text.as_bytes()).unwrap();
        assert_eq!(min.catalog_version, None);
    }

    #[test]
    fn refuses_bad_messages() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["schema_version"] = 2.into();
        assert_eq!(
            Health::decode(&serde_json::to_vec(&v).unwrap()),
            Err(HealthError::UnsupportedVersion(2))
        );
        for (field, value) in [
            ("heartbeat_secs", serde_json::json!(0)),
            ("reason", serde_json::json!("shutdown")),
            ("store_id", serde_json::json!("S 1")),
            ("state", serde_json::json!("dead")),
            ("pending_events", serde_json::json!(-1)),
        ] {
            let mut v = serde_json::to_value(sample()).unwrap();
            v[field] = value;
            assert!(
                Health::decode(&serde_json::to_vec(&v).unwrap()).is_err(),
                "{field}"
            );
        }
        let mut idle = sample();
        idle.pending_events = 0;
        assert!(idle.encode().is_err(), "an age with nothing pending");
        assert!(matches!(
            Health::decode(&vec![b' '; MAX_HEALTH_BYTES + 1]),
            Err(HealthError::TooLarge(_))
        ));
        assert!(Health::decode(b"").is_err());
    }

    #[test]
    fn the_topic_names_the_agent() {
        let h = sample().encode().unwrap();
        let s1 = StoreId::new("S001").unwrap();
        let a1 = AgentId::new("S001-A1").unwrap();
        assert!(Health::decode_for(&h, &s1, &a1).is_ok());
        let other = AgentId::new("S001-A2").unwrap();
        assert!(matches!(
            Health::decode_for(&h, &s1, &other),
            Err(HealthError::IdentityMismatch { .. })
        ));
        let s2 = StoreId::new("S002").unwrap();
        assert!(matches!(
            Health::decode_for(&h, &s2, &a1),
            Err(HealthError::IdentityMismatch { .. })
        ));
    }
}
