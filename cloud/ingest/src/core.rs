//! The ingest's pure core: from one MQTT frame to a plan of Kafka records,
//! dead letters and the ack to send once Kafka has them all.
//!
//! No I/O here. The shell produces the plan's records, waits for Kafka to
//! acknowledge every one, publishes the ack, and only then commits the plan
//! to the agent's [`Ledger`].
//!
//! A frame refused whole is dead-lettered once ([`plan_refusal`] sees a
//! resend of it in the ledger) and, when the frame names itself with the
//! [`FRAME_PROPERTY`] user property, answered with a [`FrameNack`] so the
//! agent moves past it instead of resending it forever.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::hash::{DefaultHasher, Hash, Hasher};

use o2c_protocol::day::{DAY_CLOSED, DayClosed};
use o2c_protocol::frame::{FRAME_PROPERTY, FrameId};
use o2c_protocol::topic::{Channel, agent_topic, parse_agent_topic};
use o2c_protocol::validate::redact_card_numbers;
use o2c_protocol::{
    Ack, AgentId, Envelope, EventId, FrameNack, KafkaTopics, RawBatch, Rejection, Seq, StoreId,
};
use serde::Deserialize;

/// Event ids remembered per agent to detect seq conflicts on resends.
pub const LEDGER_WINDOW: usize = 4096;

/// Refused frames remembered per agent, so a resend is not dead-lettered
/// again.
pub const REFUSED_WINDOW: usize = 64;

/// The `source` header of the ingest's records: who wrote it to Kafka.
pub const SOURCE: &str = "ingest";

/// A record for an o2c event topic, and (for an order event) the same
/// record for the order history ([`Plan::history_topic`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    /// Kafka topic (the event type's).
    pub topic: String,
    /// Key: the order id (the store id for a day manifest).
    pub key: String,
    /// Headers, in order.
    pub headers: Vec<(&'static str, String)>,
    /// The envelope exactly as the agent sent it.
    pub value: Vec<u8>,
    /// The event's seq.
    pub seq: u64,
    /// The event's id.
    pub event_id: EventId,
    /// The event's type name (`OrderCreated`, ..., `DayClosed`).
    pub event_type: &'static str,
    /// Whether it also goes to the order history: every order event does;
    /// a day manifest (`DayClosed`) does not.
    pub history: bool,
}

/// A record for the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Machine reason, e.g. `identity_mismatch`.
    pub reason: &'static str,
    /// Human detail.
    pub detail: String,
    /// MQTT topic the bytes came from.
    pub source_topic: String,
    /// Agent named by the topic, when it parsed.
    pub agent_id: Option<String>,
    /// Seq, when known.
    pub seq: Option<u64>,
    /// Event id, when known.
    pub event_id: Option<String>,
    /// For a refused frame, the seq range it named (`FIRST-LAST`).
    pub frame: Option<String>,
    /// The raw bytes (the event, or the whole frame).
    pub value: Vec<u8>,
}

/// What to do with one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The whole frame is refused; nothing is acked (the agent on that topic
    /// cannot be trusted with, or matched to, these seqs).
    Refuse(DeadLetter),
    /// A batch to produce, then ack.
    Batch(Plan),
}

/// A batch's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The store, from the topic.
    pub store_id: StoreId,
    /// The agent, from the topic.
    pub agent_id: AgentId,
    /// Records to produce (only seqs above the ledger's high-water mark),
    /// each to its own topic and to [`Plan::history_topic`].
    pub produce: Vec<OutRecord>,
    /// The order history topic (`orders.events`): every record of
    /// `produce` goes there too, with the same key, headers and bytes.
    pub history_topic: String,
    /// Dead letters for rejected events.
    pub dead: Vec<DeadLetter>,
    /// Events already in Kafka (resends), skipped.
    pub duplicates: usize,
    /// The ack to publish once every record above is durable.
    pub ack: Ack,
    /// Unix ms of the newest event's `occurred_at`, for lag metrics.
    pub newest_occurred_ms: Option<i64>,
}

/// What the ingest remembers about one agent: the highest seq durable in
/// Kafka, and the event ids of recent seqs.
#[derive(Debug, Default)]
pub struct Ledger {
    hwm: u64,
    recent: VecDeque<(u64, EventId)>,
    /// Fingerprints of frames refused and dead-lettered.
    refused: VecDeque<u64>,
}

impl Ledger {
    /// Highest seq known durable.
    pub fn hwm(&self) -> u64 {
        self.hwm
    }

    fn known(&self, seq: u64) -> Option<EventId> {
        let i = self.recent.binary_search_by_key(&seq, |(s, _)| *s).ok()?;
        self.recent.get(i).map(|(_, e)| *e)
    }

    /// Records that the plan's events are durable (call once Kafka acked
    /// every record of the plan).
    pub fn commit(&mut self, plan: &Plan) {
        // Keep `recent` sorted by seq (re-produced old seqs are not added).
        for r in &plan.produce {
            if self.recent.back().is_none_or(|&(last, _)| r.seq > last) {
                self.recent.push_back((r.seq, r.event_id));
                if self.recent.len() > LEDGER_WINDOW {
                    self.recent.pop_front();
                }
            }
        }
        // Rejected seqs are settled too.
        self.hwm = self.hwm.max(plan.ack.through_seq.get());
    }

    /// Records that a refused frame's dead letter is durable (call once
    /// Kafka acked it): a resend of the frame is only nacked again.
    pub fn commit_refusal(&mut self, r: &Refusal) {
        if r.dead.is_some() && !self.refused.contains(&r.fingerprint) {
            self.refused.push_back(r.fingerprint);
            if self.refused.len() > REFUSED_WINDOW {
                self.refused.pop_front();
            }
        }
    }
}

/// What to do about a frame refused whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The dead letter to produce; `None` for a resend of a frame already
    /// dead-lettered by this ingest. Copies that still reach the topic
    /// (another replica, a restart) carry the same `agent_id` and `frame`
    /// headers, by which a reader tells them apart.
    pub dead: Option<DeadLetter>,
    /// The agent's acks topic and the nack to publish there, when the frame
    /// named itself and its topic names an agent.
    pub nack: Option<(String, FrameNack)>,
    /// Identifies the frame (its bytes and frame property) in the ledger.
    pub fingerprint: u64,
}

/// Plans the answer to a refused frame: `dead` is what [`plan`] refused it
/// with, `frame` the publish's [`FRAME_PROPERTY`] value, if any.
pub fn plan_refusal(
    ledger: &Ledger,
    topic: &str,
    frame: Option<&str>,
    bytes: &[u8],
    mut dead: DeadLetter,
) -> Refusal {
    let mut h = DefaultHasher::new();
    frame.hash(&mut h);
    bytes.hash(&mut h);
    let fingerprint = h.finish();
    let id = frame.and_then(|f| FrameId::parse_property(f).ok());
    dead.frame = id.map(|id| id.to_property());
    let nack = match (parse_agent_topic(topic), id) {
        (Ok((store, agent, Channel::Events)), Some(id)) => Some((
            agent_topic(&store, &agent, Channel::Acks),
            FrameNack {
                first_seq: id.first,
                last_seq: id.last,
                code: dead.reason.to_owned(),
                reason: dead.detail.clone(),
            },
        )),
        _ => None,
    };
    let repeat = ledger.refused.contains(&fingerprint);
    Refusal {
        dead: (!repeat).then_some(dead),
        nack,
        fingerprint,
    }
}

/// The [`FRAME_PROPERTY`] value among a publish's user properties.
pub fn frame_property(user_properties: &[(String, String)]) -> Option<&str> {
    user_properties
        .iter()
        .find(|(k, _)| k == FRAME_PROPERTY)
        .map(|(_, v)| v.as_str())
}

#[derive(Deserialize)]
struct Head {
    seq: Option<Seq>,
    event_id: Option<EventId>,
}

/// `bytes` for a dead letter: as they came, unless they hold something
/// shaped like a card number, which is masked (see
/// [`redact_card_numbers`]). Such a letter cannot be replayed as it is;
/// nothing with a card number in it may be.
fn redact_bytes(bytes: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    match redact_card_numbers(&text) {
        Cow::Borrowed(_) => bytes.to_vec(),
        Cow::Owned(redacted) => redacted.into_bytes(),
    }
}

/// Most bytes of a refused frame kept in its dead letter: an oversized
/// frame kept whole would exceed Kafka's message limit, and the dead letter
/// would be retried forever.
pub const DEAD_FRAME_MAX_BYTES: usize = 256 * 1024;

fn refuse(
    reason: &'static str,
    detail: String,
    topic: &str,
    agent: Option<&str>,
    bytes: &[u8],
) -> Verdict {
    let mut value = redact_bytes(bytes);
    let mut detail = redact_card_numbers(&detail).into_owned();
    if value.len() > DEAD_FRAME_MAX_BYTES {
        detail = format!(
            "{detail} (the first {DEAD_FRAME_MAX_BYTES} of {} bytes are kept)",
            value.len()
        );
        value.truncate(DEAD_FRAME_MAX_BYTES);
    }
    Verdict::Refuse(DeadLetter {
        reason,
        detail,
        source_topic: topic.to_owned(),
        agent_id: agent.map(str::to_owned),
        seq: None,
        event_id: None,
        frame: None,
        value,
    })
}

/// Plans one frame received on `topic`.
pub fn plan(ledger: &Ledger, topics: &KafkaTopics, topic: &str, bytes: &[u8]) -> Verdict {
    let (store, agent) = match parse_agent_topic(topic) {
        Ok((s, a, Channel::Events)) => (s, a),
        Ok(_) => {
            return refuse(
                "bad_topic",
                "not an events topic".into(),
                topic,
                None,
                bytes,
            );
        }
        Err(e) => return refuse("bad_topic", e.to_string(), topic, None, bytes),
    };
    let a = Some(agent.as_str());
    let raw = match RawBatch::decode(bytes) {
        Ok(raw) => raw,
        Err(e) => return refuse(e.code(), e.to_string(), topic, a, bytes),
    };
    if raw.agent_id != agent {
        let detail = format!("frame agent_id {} on the topic of {agent}", raw.agent_id);
        return refuse("identity_mismatch", detail, topic, a, bytes);
    }
    if raw.events.is_empty() {
        return refuse(
            "empty_batch",
            "a batch needs events".into(),
            topic,
            a,
            bytes,
        );
    }
    // Every event's identity and seq must be readable and in order before
    // anything is produced: a frame that lies about either is refused whole.
    let mut heads = Vec::with_capacity(raw.events.len());
    let mut expect: Option<u64> = None;
    for ev in &raw.events {
        let head: Option<Head> = serde_json::from_str(ev.get()).ok();
        let Some(Head {
            seq: Some(seq),
            event_id,
        }) = head
        else {
            return refuse(
                "malformed_frame",
                "an event has no readable seq".into(),
                topic,
                a,
                bytes,
            );
        };
        if expect.is_some_and(|e| e != seq.get()) {
            let detail = format!("seqs not contiguous at {seq}");
            return refuse("malformed_frame", detail, topic, a, bytes);
        }
        let Some(next) = seq.get().checked_add(1) else {
            let detail = format!("seq {seq} leaves no room for the next");
            return refuse("malformed_frame", detail, topic, a, bytes);
        };
        expect = Some(next);
        heads.push((seq, event_id));
        // Identity fields are compared before full decoding: any event that
        // names another store or agent sinks the whole frame.
        if let Ok(v) = serde_json::from_str::<IdentityProbe>(ev.get())
            && (v.store_id.as_deref().is_some_and(|s| s != store.as_str())
                || v.agent_id.as_deref().is_some_and(|s| s != agent.as_str()))
        {
            let detail =
                format!("event seq {seq} claims another store or agent than {store}/{agent}");
            return refuse("identity_mismatch", detail, topic, a, bytes);
        }
    }
    let mut produce = Vec::new();
    let mut dead = Vec::new();
    let mut rejected = Vec::new();
    let mut duplicates = 0;
    let mut newest = None;
    for (ev, (seq, event_id)) in raw.events.iter().zip(heads) {
        let s = seq.get();
        let mut reject = |code: &'static str, reason: String| {
            // Parser errors quote the input: no card number goes back to
            // the agent or into the dead letter.
            let reason = redact_card_numbers(&reason).into_owned();
            rejected.push(Rejection {
                seq,
                event_id,
                code: code.to_owned(),
                reason: reason.clone(),
            });
            dead.push(DeadLetter {
                reason: code,
                detail: reason,
                source_topic: topic.to_owned(),
                agent_id: Some(agent.to_string()),
                seq: Some(s),
                event_id: event_id.map(|e| e.to_string()),
                frame: None,
                value: redact_bytes(ev.get().as_bytes()),
            });
        };
        if s <= ledger.hwm() {
            // Skip only what is known to be durable: the same seq with the
            // same id. Older seqs, outside the ledger's window, are produced
            // again (consumers dedup by event_id): a resend must never be
            // acked on a guess.
            match (ledger.known(s), event_id) {
                (Some(known), Some(id)) if known != id => {
                    reject("seq_conflict", format!("seq {s} was {known}, now {id}"));
                    continue;
                }
                (Some(_), _) => {
                    duplicates += 1;
                    continue;
                }
                (None, _) => {}
            }
        }
        if DayClosed::is_day_closed(ev.get()) {
            match plan_manifest(topics, ev.get(), s) {
                Ok(r) => produce.push(r),
                Err((code, reason)) => reject(code, reason),
            }
            continue;
        }
        let env = match Envelope::decode(ev.get().as_bytes()) {
            Ok(env) => env,
            Err(e) => {
                reject(e.code(), e.to_string());
                continue;
            }
        };
        if let Err(errs) = env.validate_store_event() {
            let code = if errs.has_card_data() {
                "card_data_rejected"
            } else {
                "invalid_event"
            };
            reject(code, errs.to_string());
            continue;
        }
        // Readers ignore fields they do not know (a newer agent's), and the
        // bytes go on unchanged: none of those may hold a card number.
        if let Err(errs) = o2c_protocol::validate::check_unknown_fields(ev.get(), &env) {
            reject("card_data_rejected", errs.to_string());
            continue;
        }
        newest = Some(
            env.occurred_at.unix_timestamp() * 1000 + i64::from(env.occurred_at.millisecond()),
        );
        let mut headers = vec![
            ("event_id", env.event_id.to_string()),
            ("event_type", env.event_type().as_str().to_owned()),
            ("schema_version", env.schema_version.to_string()),
            ("store_id", env.store_id.to_string()),
            ("agent_id", env.agent_id.to_string()),
            ("seq", s.to_string()),
            ("source", SOURCE.to_owned()),
        ];
        if let Some(tp) = &env.traceparent {
            headers.push(("traceparent", tp.to_string()));
        }
        produce.push(OutRecord {
            topic: topics.for_event(env.event_type()),
            key: env.payload.order_id().to_string(),
            headers,
            value: ev.get().as_bytes().to_vec(),
            seq: s,
            event_id: env.event_id,
            event_type: env.event_type().as_str(),
            history: true,
        });
    }
    let through_seq = expect
        .and_then(|e| Seq::new(e - 1).ok())
        .unwrap_or(Seq::FIRST);
    Verdict::Batch(Plan {
        store_id: store,
        agent_id: agent,
        produce,
        history_topic: topics.history(),
        dead,
        duplicates,
        ack: Ack {
            through_seq,
            rejected,
        },
        newest_occurred_ms: newest,
    })
}

/// The record of a day manifest (`DayClosed`), or why it is rejected. Its
/// identity was checked against the topic with the frame's.
fn plan_manifest(
    topics: &KafkaTopics,
    raw: &str,
    seq: u64,
) -> Result<OutRecord, (&'static str, String)> {
    let d = DayClosed::decode(raw.as_bytes()).map_err(|e| (e.code(), e.to_string()))?;
    let checked = d
        .validate()
        .and_then(|()| o2c_protocol::validate::check_unknown_fields(raw, &d));
    if let Err(errs) = checked {
        let code = if errs.has_card_data() {
            "card_data_rejected"
        } else {
            "invalid_event"
        };
        return Err((code, errs.to_string()));
    }
    let headers = vec![
        ("event_id", d.event_id.to_string()),
        ("event_type", DAY_CLOSED.to_owned()),
        ("schema_version", d.schema_version.to_string()),
        ("store_id", d.store_id.to_string()),
        ("agent_id", d.agent_id.to_string()),
        ("seq", seq.to_string()),
        ("source", SOURCE.to_owned()),
        ("business_date", d.payload.business_date.to_string()),
    ];
    Ok(OutRecord {
        topic: topics.days(),
        key: d.store_id.to_string(),
        headers,
        value: raw.as_bytes().to_vec(),
        seq,
        event_id: d.event_id,
        event_type: DAY_CLOSED,
        history: false,
    })
}

#[derive(Deserialize)]
struct IdentityProbe {
    store_id: Option<String>,
    agent_id: Option<String>,
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
