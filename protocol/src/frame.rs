//! Sync frames exchanged over MQTT: `Batch` (agent → cloud, its seq range
//! in the [`FRAME_PROPERTY`] user property), `Ack` or `FrameNack` (cloud →
//! agent, see [`AckMessage`]) and status messages (cloud → agent), each
//! carrying one `StatusUpdate` object or a JSON array of them, oldest first
//! ([`StatusUpdate::encode_many`], [`StatusUpdate::decode_many`]), and the
//! updates' per-order sequences in the MQTT v5 user property
//! [`STATUS_SEQ_PROPERTY`].

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;

use crate::envelope::{DecodeError, EncodeError, Envelope};
use crate::ids::{AgentId, EventId, OrderId, Seq};
pub use crate::status::CloudStatus;

/// Largest frame either side accepts, in bytes. MQTT brokers and rumqttc
/// must be configured to allow at least this packet size.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Bigger than [`MAX_FRAME_BYTES`].
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// Not JSON, or not the frame's shape.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

impl FrameError {
    /// Stable machine code, used as the dead-letter reason.
    pub fn code(&self) -> &'static str {
        match self {
            FrameError::TooLarge(_) => "frame_too_large",
            FrameError::Malformed(_) => "malformed_frame",
        }
    }
}

fn check_size(bytes: &[u8]) -> Result<(), FrameError> {
    if bytes.len() > MAX_FRAME_BYTES {
        Err(FrameError::TooLarge(bytes.len()))
    } else {
        Ok(())
    }
}

fn malformed(e: serde_json::Error) -> FrameError {
    FrameError::Malformed(e.to_string())
}

/// Events from one agent, in seq order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Batch {
    /// The sending agent.
    pub agent_id: AgentId,
    /// Envelopes, in increasing seq order.
    pub events: Vec<Envelope>,
}

impl Batch {
    /// Encodes to JSON bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        Ok(serde_json::to_vec(self)?)
    }

    /// Strictly decodes a batch: the frame and every envelope.
    pub fn decode(bytes: &[u8]) -> Result<Batch, BatchDecodeError> {
        let raw = RawBatch::decode(bytes)?;
        let events = raw
            .events
            .iter()
            .enumerate()
            .map(|(index, e)| {
                Envelope::decode(e.get().as_bytes())
                    .map_err(|error| BatchDecodeError::Event { index, error })
            })
            .collect::<Result<_, _>>()?;
        Ok(Batch {
            agent_id: raw.agent_id,
            events,
        })
    }
}

/// Why a batch could not be strictly decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchDecodeError {
    /// The frame itself is bad.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// One envelope is bad.
    #[error("event {index}: {error}")]
    Event {
        /// Position in the batch.
        index: usize,
        /// What was wrong.
        error: DecodeError,
    },
}

/// A batch whose envelopes are kept as the exact bytes the agent sent, so
/// the ingest forwards them unchanged and decodes each one separately (a
/// bad event must not sink its neighbours).
#[derive(Debug, Deserialize)]
pub struct RawBatch<'a> {
    /// The sending agent.
    pub agent_id: AgentId,
    /// Envelopes as raw JSON.
    #[serde(borrow)]
    pub events: Vec<&'a RawValue>,
}

impl<'a> RawBatch<'a> {
    /// Decodes the frame, leaving envelopes undecoded.
    pub fn decode(bytes: &'a [u8]) -> Result<RawBatch<'a>, FrameError> {
        check_size(bytes)?;
        serde_json::from_slice(bytes).map_err(malformed)
    }
}

/// Builds a batch frame from envelopes already encoded by
/// [`Envelope::encode`] (the agent stores them encoded at capture, so the
/// bytes that reach Kafka are the bytes that were committed).
pub fn encode_raw_batch<'e>(
    agent_id: &AgentId,
    events: impl IntoIterator<Item = &'e [u8]>,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(b"{\"agent_id\":");
    serde_json::to_writer(&mut out, agent_id)?;
    out.extend_from_slice(b",\"events\":[");
    for (i, e) in events.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(e);
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

/// One event the cloud refused for good; the agent must not resend it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Rejection {
    /// Its seq.
    pub seq: Seq,
    /// Its event id, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<EventId>,
    /// Machine reason, e.g. `identity_mismatch`.
    pub code: String,
    /// Human-readable reason.
    pub reason: String,
}

/// Cumulative acknowledgement: every seq ≤ `through_seq` is durable in
/// Kafka or listed in `rejected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Ack {
    /// Highest seq covered.
    pub through_seq: Seq,
    /// Events refused for good.
    #[serde(default)]
    pub rejected: Vec<Rejection>,
}

impl Ack {
    /// Encodes to JSON bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        Ok(serde_json::to_vec(self)?)
    }

    /// Decodes JSON bytes.
    pub fn decode(bytes: &[u8]) -> Result<Ack, FrameError> {
        check_size(bytes)?;
        serde_json::from_slice(bytes).map_err(malformed)
    }
}

/// MQTT v5 user property on every batch publish naming its frame: the seq
/// range `"{first}-{last}"` ([`FrameId::to_property`]). The ingest cannot read
/// seqs from a frame it refuses whole, so it echoes this in its
/// [`FrameNack`]. An ingest that predates it ignores the property; a frame
/// without it (from an older agent) is refused as before, without a nack.
pub const FRAME_PROPERTY: &str = "o2c-frame";

/// One batch frame, named by the seq range the agent put in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameId {
    /// First seq of the frame.
    pub first: Seq,
    /// Last seq of the frame (at least `first`).
    pub last: Seq,
}

impl FrameId {
    /// The range `first..=last`; refused if it runs backwards.
    pub fn new(first: Seq, last: Seq) -> Result<FrameId, FrameError> {
        if last < first {
            return Err(FrameError::Malformed(format!(
                "frame range {first}-{last} runs backwards"
            )));
        }
        Ok(FrameId { first, last })
    }

    /// The value of [`FRAME_PROPERTY`].
    pub fn to_property(&self) -> String {
        format!("{}-{}", self.first, self.last)
    }

    /// Parses a [`FRAME_PROPERTY`] value.
    pub fn parse_property(value: &str) -> Result<FrameId, FrameError> {
        let bad = || FrameError::Malformed(format!("frame property {value:?} is not FIRST-LAST"));
        let (a, b) = value.split_once('-').ok_or_else(bad)?;
        let seq = |t: &str| {
            if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            t.parse::<u64>()
                .ok()
                .and_then(|n| Seq::new(n).ok())
                .ok_or_else(bad)
        };
        FrameId::new(seq(a)?, seq(b)?)
    }
}

/// The cloud refused a whole frame (unreadable, oversized, lying about its
/// identity): it took none of its events. Sent on the agent's acks topic as
/// `{"frame_nack": {...}}`, which an agent that predates it ignores as an
/// undecodable ack (and goes on resending, as it always did).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FrameNack {
    /// First seq of the refused frame, from its [`FRAME_PROPERTY`].
    pub first_seq: Seq,
    /// Last seq of the refused frame.
    pub last_seq: Seq,
    /// Machine reason, e.g. `malformed_frame`.
    pub code: String,
    /// Human-readable reason.
    pub reason: String,
}

#[derive(Serialize, Deserialize)]
struct NackMessage {
    frame_nack: FrameNack,
}

impl FrameNack {
    /// The refused frame.
    pub fn frame(&self) -> Result<FrameId, FrameError> {
        FrameId::new(self.first_seq, self.last_seq)
    }

    /// Encodes to JSON bytes: `{"frame_nack": {...}}`.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        Ok(serde_json::to_vec(&NackMessage {
            frame_nack: self.clone(),
        })?)
    }
}

/// What the cloud sends on an agent's acks topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckMessage {
    /// A cumulative ack (the only message an older ingest sends).
    Ack(Ack),
    /// A whole frame refused.
    FrameNack(FrameNack),
}

impl AckMessage {
    /// Decodes either shape: an object with a `frame_nack` key is a nack,
    /// anything else must be an [`Ack`].
    pub fn decode(bytes: &[u8]) -> Result<AckMessage, FrameError> {
        #[derive(Deserialize)]
        struct Probe<'a> {
            #[serde(borrow, default)]
            frame_nack: Option<&'a RawValue>,
        }
        check_size(bytes)?;
        let is_nack = serde_json::from_slice::<Probe<'_>>(bytes)
            .map(|p| p.frame_nack.is_some())
            .unwrap_or(false);
        if !is_nack {
            return Ack::decode(bytes).map(AckMessage::Ack);
        }
        let m: NackMessage = serde_json::from_slice(bytes).map_err(malformed)?;
        m.frame_nack.frame()?;
        Ok(AckMessage::FrameNack(m.frame_nack))
    }

    /// Encodes to JSON bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        match self {
            AckMessage::Ack(a) => a.encode(),
            AckMessage::FrameNack(n) => n.encode(),
        }
    }
}

/// The MQTT v5 user property of a status message that carries its
/// updates' [`StatusUpdate::seq`]s: decimal numbers separated by commas,
/// one per update, in the message's order (`"8796093022208,8796093022301"`).
///
/// The sequences travel beside the JSON, not in it: agents built before
/// them (contract 1.0) decode status updates with `deny_unknown_fields`
/// and would drop an update carrying a new key, while they ignore a user
/// property. A message
/// without the property (an older cloud), or with one that does not parse
/// or does not count one number per update, leaves every `seq` unset, and
/// the agent falls back to the newest `occurred_at`.
pub const STATUS_SEQ_PROPERTY: &str = "o2c-status-seq";

/// The MQTT v5 user property of a status message that carries each
/// update's W3C trace context, by position, comma-separated, empty where
/// an update has none: the agent's span of applying an update continues
/// its order's trace. Like [`STATUS_SEQ_PROPERTY`], a property an older
/// agent ignores.
pub const STATUS_TRACE_PROPERTY: &str = "o2c-status-traceparent";

/// The [`STATUS_TRACE_PROPERTY`] value of `traceparents`, one per update.
pub fn status_trace_property(traceparents: &[Option<String>]) -> Option<String> {
    traceparents.iter().any(Option::is_some).then(|| {
        traceparents
            .iter()
            .map(|t| t.as_deref().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// The contexts of a [`STATUS_TRACE_PROPERTY`] value, by position (`None`
/// for an empty entry).
pub fn parse_status_trace_property(value: &str) -> Vec<Option<&str>> {
    value
        .split(',')
        .map(|t| (!t.is_empty()).then_some(t))
        .collect()
}

/// What a return's status update says about the return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReturnStatus {
    /// The return.
    pub return_id: crate::ids::ReturnId,
    /// The money given back (accepted) or refunded (refunded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<crate::money::Money>,
    /// For a refusal, the SKU at fault when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
}

/// A status change for one order, sent down to its store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StatusUpdate {
    /// The order.
    pub order_id: OrderId,
    /// Its new status.
    pub status: CloudStatus,
    /// Why, for `cancelled`, e.g. `payment_declined`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a return's status (`return_*`): which return, and its figures
    /// (contract 1.7). The order's own status is then left as it was.
    #[serde(rename = "return", default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<ReturnStatus>,
    /// The saga event that caused it (dedup key at the agent).
    pub event_id: EventId,
    /// When that event happened.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub occurred_at: OffsetDateTime,
    /// The update's place in its order's status history, set by the
    /// cloud's status publisher: of two updates of one order, the one with
    /// the greater `seq` is the current status, whatever their arrival
    /// order or `occurred_at` (two can share a millisecond). Not part of the
    /// JSON: it travels in [`STATUS_SEQ_PROPERTY`]. `None` for an update
    /// from a cloud that sends none.
    #[serde(skip)]
    pub seq: Option<u64>,
}

impl StatusUpdate {
    /// Encodes to JSON bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        Ok(serde_json::to_vec(self)?)
    }

    /// Decodes JSON bytes.
    pub fn decode(bytes: &[u8]) -> Result<StatusUpdate, FrameError> {
        check_size(bytes)?;
        serde_json::from_slice(bytes).map_err(malformed)
    }

    /// Encodes several updates as one status message: a JSON array, oldest
    /// first. The cloud sends a store's updates this way, so a busy store
    /// gets one message (and one PUBACK, one commit) for many updates.
    pub fn encode_many(updates: &[StatusUpdate]) -> Result<Vec<u8>, EncodeError> {
        Ok(serde_json::to_vec(updates)?)
    }

    /// Decodes a status message: one update object, or a non-empty array
    /// of them (see [`StatusUpdate::encode_many`]), in the order sent.
    pub fn decode_many(bytes: &[u8]) -> Result<Vec<StatusUpdate>, FrameError> {
        Self::decode_each(bytes)?.into_iter().collect()
    }

    /// The [`STATUS_SEQ_PROPERTY`] value for a message of `updates`: `None`
    /// unless every update has a `seq` (then the message is sent without
    /// the property, and the agent uses `occurred_at` for all of them).
    pub fn seqs_property(updates: &[StatusUpdate]) -> Option<String> {
        let seqs = updates
            .iter()
            .map(|u| u.seq.map(|s| s.to_string()))
            .collect::<Option<Vec<_>>>()?;
        (!seqs.is_empty()).then(|| seqs.join(","))
    }

    /// Sets each decoded update's `seq` from a [`STATUS_SEQ_PROPERTY`]
    /// value, by position in the message (an update that did not decode
    /// keeps its slot). A value that does not parse, or does not hold
    /// exactly one number per update, is an error and sets nothing.
    pub fn set_seqs(
        updates: &mut [Result<StatusUpdate, FrameError>],
        property: &str,
    ) -> Result<(), FrameError> {
        let seqs = property
            .split(',')
            .map(|s| s.trim().parse::<u64>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| FrameError::Malformed(format!("{STATUS_SEQ_PROPERTY}: {e}")))?;
        if seqs.len() != updates.len() {
            return Err(FrameError::Malformed(format!(
                "{STATUS_SEQ_PROPERTY}: {} sequences for {} updates",
                seqs.len(),
                updates.len()
            )));
        }
        for (u, seq) in updates.iter_mut().zip(seqs) {
            if let Ok(u) = u {
                u.seq = Some(seq);
            }
        }
        Ok(())
    }

    /// Like [`StatusUpdate::decode_many`], but each update of an array
    /// decodes on its own: one that does not (say, a status a newer cloud
    /// added) does not take the others with it. The outer error is for a
    /// message that is not one update or a non-empty JSON array.
    #[allow(clippy::type_complexity)]
    pub fn decode_each(bytes: &[u8]) -> Result<Vec<Result<StatusUpdate, FrameError>>, FrameError> {
        check_size(bytes)?;
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'[') {
            return Ok(vec![serde_json::from_slice(bytes).map_err(malformed)]);
        }
        let items: Vec<&serde_json::value::RawValue> =
            serde_json::from_slice(bytes).map_err(malformed)?;
        if items.is_empty() {
            return Err(FrameError::Malformed(
                "empty array of status updates".into(),
            ));
        }
        Ok(items
            .into_iter()
            .map(|raw| serde_json::from_str(raw.get()).map_err(malformed))
            .collect())
    }
}

#[cfg(test)]
mod trace_property_tests {
    use super::*;

    #[test]
    fn status_traceparents_travel_by_position_and_none_gives_no_property() {
        let a = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned();
        let v = status_trace_property(&[Some(a.clone()), None, Some(a.clone())]).unwrap();
        assert_eq!(
            parse_status_trace_property(&v),
            [Some(a.as_str()), None, Some(a.as_str())]
        );
        assert_eq!(status_trace_property(&[None, None]), None);
    }
}
