//! The order-state read model: one record per order on the compacted
//! `orders.state` topic (`KafkaTopics::state`), keyed by order id.
//!
//! Each record is the order's whole current state, never a delta, so the
//! compacted topic alone answers "where is order X" and a reader can start
//! anywhere. The cloud's state projector writes a record only when an
//! order's status moves on: its `status_seq` (the status's rank in the
//! saga, then the event's time; the same sequence the status messages
//! carry) is greater than the last record's.
//!
//! Readers must ignore fields they do not know: new fields are added
//! without a new `version` (see `docs/schemas.md`).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::envelope::EncodeError;
use crate::event::EventType;
use crate::ids::{AgentId, EventId, OrderId, StoreId};
use crate::status::CloudStatus;

/// The `version` this crate writes.
pub const ORDER_STATE_VERSION: u16 = 1;

/// The `event_type` header and outbox type of an order-state record.
pub const ORDER_STATE_TYPE: &str = "OrderState";

/// One order's latest state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OrderStateRecord {
    /// Major version of this record's shape.
    pub version: u16,
    /// The order.
    pub order_id: OrderId,
    /// Its store.
    pub store_id: StoreId,
    /// The agent that captured it.
    pub agent_id: AgentId,
    /// Where it stands.
    pub status: CloudStatus,
    /// Why, for `cancelled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The status's place in the order's history (greater is newer).
    pub status_seq: u64,
    /// The event that set this status.
    pub event_id: EventId,
    /// Its type.
    pub event_type: EventType,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub occurred_at: OffsetDateTime,
}

/// Bytes that are not an order-state record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed order-state record: {0}")]
pub struct OrderStateError(pub String);

impl OrderStateRecord {
    /// Encodes to JSON bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        Ok(serde_json::to_vec(self)?)
    }

    /// Decodes JSON bytes (unknown fields are ignored).
    pub fn decode(bytes: &[u8]) -> Result<Self, OrderStateError> {
        serde_json::from_slice(bytes).map_err(|e| OrderStateError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> OrderStateRecord {
        OrderStateRecord {
            version: ORDER_STATE_VERSION,
            order_id: OrderId::from_parts(1_764_000_000_000, [1; 10]),
            store_id: StoreId::new("S001").unwrap(),
            agent_id: AgentId::new("A1").unwrap(),
            status: CloudStatus::Cancelled,
            reason: Some("payment_declined".into()),
            status_seq: 42,
            event_id: EventId::from_parts(1_764_000_000_001, [2; 10]),
            event_type: EventType::OrderCancelled,
            occurred_at: OffsetDateTime::from_unix_timestamp(1_764_000_000).unwrap(),
        }
    }

    #[test]
    fn round_trips_and_ignores_fields_it_does_not_know() {
        let r = record();
        let bytes = r.encode().unwrap();
        assert_eq!(OrderStateRecord::decode(&bytes).unwrap(), r);
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["channel"] = "web".into();
        let newer = serde_json::to_vec(&v).unwrap();
        assert_eq!(OrderStateRecord::decode(&newer).unwrap(), r);
        assert!(OrderStateRecord::decode(b"{}").is_err());
    }
}
