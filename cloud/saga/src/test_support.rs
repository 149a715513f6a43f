//! Fixtures the unit tests share.

use o2c_protocol::{AgentId, Envelope, Event, EventId, StoreId};
use time::OffsetDateTime;

/// A cloud event (no seq, no trace) of store `S1`, agent `A1`: event id
/// `n`, `at_s` seconds after a fixed instant.
pub(crate) fn envelope(n: u8, at_s: i64, payload: Event) -> Envelope {
    Envelope {
        event_id: EventId::from_parts(1, [n; 10]),
        schema_version: 1,
        store_id: StoreId::new("S1").expect("valid"),
        agent_id: AgentId::new("A1").expect("valid"),
        seq: None,
        occurred_at: OffsetDateTime::from_unix_timestamp(1_764_000_000 + at_s).expect("valid"),
        traceparent: None,
        payload,
    }
}
