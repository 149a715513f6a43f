//! The envelope around every event, its JSON encoding and typed decoding.
//!
//! Decoding happens in two steps so that a frame from a newer schema is
//! reported as `unsupported_schema_version`, not as malformed: first the
//! version and type are read, then the full envelope.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use time::OffsetDateTime;

use crate::event::{Event, EventType};
use crate::ids::{AgentId, EventId, Seq, StoreId};
use crate::validate::{ValidationError, ValidationErrors};

/// The schema version this crate writes.
pub const SCHEMA_VERSION: u16 = 1;
/// The schema versions this crate reads.
pub const SUPPORTED_SCHEMA_VERSIONS: std::ops::RangeInclusive<u16> = 1..=1;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or not the expected shape.
    #[error("malformed: {0}")]
    Malformed(String),
    /// A schema version this build does not read.
    #[error("unsupported schema_version {0}")]
    UnsupportedSchemaVersion(u64),
    /// An `event_type` that names no known event.
    #[error("unknown event_type {0:?}")]
    UnknownEventType(String),
    /// The payload does not match its event type.
    #[error("invalid {event_type} payload: {message}")]
    InvalidPayload {
        /// The declared type.
        event_type: EventType,
        /// What was wrong.
        message: String,
    },
}

impl DecodeError {
    /// Stable machine code, used as the dead-letter reason.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Malformed(_) => "malformed",
            DecodeError::UnsupportedSchemaVersion(_) => "unsupported_schema_version",
            DecodeError::UnknownEventType(_) => "unknown_event_type",
            DecodeError::InvalidPayload { .. } => "invalid_payload",
        }
    }
}

/// Why bytes could not be produced (only on a serializer bug).
#[derive(Debug, thiserror::Error)]
#[error("encode: {0}")]
pub struct EncodeError(#[from] pub serde_json::Error);

/// A W3C trace context `traceparent` header value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Traceparent(String);

/// A `traceparent` that does not follow the W3C format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("traceparent must be 00-<32 hex>-<16 hex>-<2 hex>")]
pub struct TraceparentError;

impl Traceparent {
    /// Validates a `traceparent` value (version 00, lower-case hex,
    /// non-zero trace and span ids).
    pub fn new(s: impl Into<String>) -> Result<Self, TraceparentError> {
        let s = s.into();
        let parts: Vec<&str> = s.split('-').collect();
        let hex = |p: &str, n: usize| {
            p.len() == n
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let ok = parts.len() == 4
            && parts[0] == "00"
            && hex(parts[1], 32)
            && hex(parts[2], 16)
            && hex(parts[3], 2)
            && parts[1].bytes().any(|b| b != b'0')
            && parts[2].bytes().any(|b| b != b'0');
        if ok {
            Ok(Self(s))
        } else {
            Err(TraceparentError)
        }
    }

    /// Builds one from a trace id and a span id (sampled).
    pub fn from_ids(trace_id: u128, span_id: u64) -> Result<Self, TraceparentError> {
        Self::new(format!("00-{trace_id:032x}-{span_id:016x}-01"))
    }

    /// The header value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Traceparent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Traceparent {
    type Err = TraceparentError;
    fn from_str(s: &str) -> Result<Self, TraceparentError> {
        Self::new(s)
    }
}

impl Serialize for Traceparent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Traceparent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// One event with its identity and provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Minted once, when the event is created; the dedup key everywhere.
    pub event_id: EventId,
    /// Schema version of this envelope and payload.
    pub schema_version: u16,
    /// The store the order belongs to.
    pub store_id: StoreId,
    /// The agent that captured the order.
    pub agent_id: AgentId,
    /// Per-agent sequence number: present on store events, absent on
    /// events minted by the cloud.
    pub seq: Option<Seq>,
    /// When the event happened.
    pub occurred_at: OffsetDateTime,
    /// W3C trace context.
    pub traceparent: Option<Traceparent>,
    /// The event itself.
    pub payload: Event,
}

#[derive(Serialize)]
struct WireOut<'a> {
    event_id: EventId,
    event_type: EventType,
    schema_version: u16,
    store_id: &'a StoreId,
    agent_id: &'a AgentId,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<Seq>,
    #[serde(with = "time::serde::rfc3339")]
    occurred_at: OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<&'a Traceparent>,
    payload: Box<RawValue>,
}

#[derive(Deserialize)]
struct WireHead<'a> {
    schema_version: u64,
    #[serde(borrow)]
    event_type: std::borrow::Cow<'a, str>,
}

#[derive(Deserialize)]
struct WireIn<'a> {
    event_id: EventId,
    #[allow(dead_code)]
    event_type: &'a str,
    schema_version: u16,
    store_id: StoreId,
    agent_id: AgentId,
    #[serde(default)]
    seq: Option<Seq>,
    #[serde(with = "time::serde::rfc3339")]
    occurred_at: OffsetDateTime,
    #[serde(default)]
    traceparent: Option<Traceparent>,
    #[serde(borrow)]
    payload: &'a RawValue,
}

impl Envelope {
    /// The payload's event type.
    pub fn event_type(&self) -> EventType {
        self.payload.event_type()
    }

    /// Encodes to JSON bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        Ok(serde_json::to_vec(self)?)
    }

    /// Decodes JSON bytes: version first, then type, then the rest.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
        let head: WireHead<'_> =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        let supported = u16::try_from(head.schema_version)
            .is_ok_and(|v| SUPPORTED_SCHEMA_VERSIONS.contains(&v));
        if !supported {
            return Err(DecodeError::UnsupportedSchemaVersion(head.schema_version));
        }
        let event_type: EventType = head
            .event_type
            .parse()
            .map_err(|e: crate::event::UnknownEventType| DecodeError::UnknownEventType(e.0))?;
        let wire: WireIn<'_> =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        let payload = Event::from_payload(event_type, wire.payload.get()).map_err(|e| {
            DecodeError::InvalidPayload {
                event_type,
                message: e.to_string(),
            }
        })?;
        Ok(Envelope {
            event_id: wire.event_id,
            schema_version: wire.schema_version,
            store_id: wire.store_id,
            agent_id: wire.agent_id,
            seq: wire.seq,
            occurred_at: wire.occurred_at,
            traceparent: wire.traceparent,
            payload,
        })
    }

    /// Checks what a store event must satisfy beyond decoding: a store
    /// event type, a seq, a store agent (not the cloud order API's ids), a
    /// `pos` channel, a valid order whose store matches the envelope,
    /// a cancellation reason of at most 128 characters and no card number.
    pub fn validate_store_event(&self) -> Result<(), ValidationErrors> {
        let mut errs = Vec::new();
        let mut push = |field: &str, code: &str, message: String| {
            errs.push(ValidationError {
                field: field.to_owned(),
                code: code.to_owned(),
                message,
            })
        };
        if !self.event_type().is_store_event() {
            push(
                "event_type",
                "not_a_store_event",
                format!("a store may not send {}", self.event_type()),
            );
        }
        if self.seq.is_none() {
            push("seq", "required", "store events need a seq".to_owned());
        }
        if crate::order::SalesChannel::of_cloud_agent(&self.agent_id).is_some() {
            push(
                "agent_id",
                "identity_mismatch",
                format!(
                    "{} is the cloud order API's, not a store agent's",
                    self.agent_id
                ),
            );
        }
        if let Event::OrderCreated(order) = &self.payload
            && order
                .channel
                .is_some_and(|c| c != crate::order::SalesChannel::Pos)
        {
            push(
                "payload.channel",
                "not_a_store_channel",
                "a store sells through pos only".to_owned(),
            );
        }
        errs.extend(self.payload_problems());
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(errs))
        }
    }
}

impl Envelope {
    /// What an order event's payload must satisfy, from a store or the
    /// cloud order API: an order of the envelope's store that validates, a
    /// cancellation reason of 1 to 128 characters.
    fn payload_problems(&self) -> Vec<ValidationError> {
        match &self.payload {
            Event::OrderCreated(order) => {
                let mut errs = Vec::new();
                if order.store_id != self.store_id {
                    errs.push(ValidationError {
                        field: "payload.store_id".to_owned(),
                        code: "identity_mismatch".to_owned(),
                        message: "the order's store_id differs from the envelope's".to_owned(),
                    });
                }
                if let Err(ValidationErrors(v)) = order.validate() {
                    errs.extend(v.into_iter().map(|mut e| {
                        e.field = format!("payload.{}", e.field);
                        e
                    }));
                }
                errs
            }
            Event::OrderCancelled(c) => crate::validate::check_text(
                "payload.reason",
                &c.reason,
                1,
                crate::validate::MAX_REASON_LEN,
            ),
            Event::ReturnRequested(r) => r.problems(),
            _ => Vec::new(),
        }
    }

    /// Checks what an event of the cloud order API (a web or mobile order,
    /// or its cancellation) must satisfy: a channel's agent id
    /// ([`crate::order::SalesChannel::cloud_agent`]), no seq, and for an
    /// order, a valid one of that channel, of the envelope's store.
    pub fn validate_channel_event(&self) -> Result<(), ValidationErrors> {
        let mut errs = Vec::new();
        let mut push = |field: &str, code: &str, message: String| {
            errs.push(ValidationError {
                field: field.to_owned(),
                code: code.to_owned(),
                message,
            })
        };
        let channel = crate::order::SalesChannel::of_cloud_agent(&self.agent_id);
        if channel.is_none() {
            push(
                "agent_id",
                "identity_mismatch",
                format!("{} is not a channel of the cloud order API", self.agent_id),
            );
        }
        if self.seq.is_some() {
            push(
                "seq",
                "not_allowed",
                "only store events have a seq".to_owned(),
            );
        }
        match &self.payload {
            Event::OrderCreated(order) if order.channel != channel => push(
                "payload.channel",
                "identity_mismatch",
                "the order's channel differs from the envelope's agent".to_owned(),
            ),
            Event::OrderCreated(_) | Event::OrderCancelled(_) => {}
            other => push(
                "event_type",
                "not_a_channel_event",
                format!("the order API may not send {}", other.event_type()),
            ),
        }
        errs.extend(self.payload_problems());
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(errs))
        }
    }
}

impl Serialize for Envelope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let payload = self
            .payload
            .payload_json()
            .map_err(serde::ser::Error::custom)?;
        WireOut {
            event_id: self.event_id,
            event_type: self.event_type(),
            schema_version: self.schema_version,
            store_id: &self.store_id,
            agent_id: &self.agent_id,
            seq: self.seq,
            occurred_at: self.occurred_at,
            traceparent: self.traceparent.as_ref(),
            payload,
        }
        .serialize(s)
    }
}
