//! The simulated agents' workload: valid `OrderCreated` envelopes built with
//! `o2c-protocol`, encoded once before the clock starts and grouped into
//! `Batch` frames per agent (seq gap-free from 1), as the real agent stores
//! them encoded at capture and ships them in batches.

use std::time::{SystemTime, UNIX_EPOCH};

use o2c_protocol::frame::encode_raw_batch;
use o2c_protocol::topic::{Channel, agent_topic};
use o2c_protocol::{AgentId, Envelope, Event, EventId, OrderId, Seq, StoreId, Traceparent};

use super::super::BenchError;

/// One batch frame, ready to publish.
#[derive(Debug)]
pub(super) struct Frame {
    /// The `Batch` JSON (the MQTT payload; cheap to clone into a publish).
    pub(super) payload: bytes::Bytes,
    /// The seq of its last event: the ack must cover exactly this.
    pub(super) through_seq: u64,
    /// The seq of its first event.
    pub(super) first_seq: u64,
}

/// What the Kafka side needs to know about one event.
#[derive(Debug, Clone, Copy)]
pub(super) struct EventMeta {
    /// The dedup key.
    pub(super) event_id: EventId,
    /// The record key.
    pub(super) order_id: OrderId,
}

/// One simulated agent.
#[derive(Debug)]
pub(super) struct AgentLoad {
    /// Its store.
    pub(super) store: StoreId,
    /// Its id.
    pub(super) agent: AgentId,
    /// `o2c/v1/stores/{store}/agents/{agent}/events`.
    pub(super) events_topic: String,
    /// `o2c/v1/stores/{store}/agents/{agent}/acks`.
    pub(super) acks_topic: String,
    /// Frames in seq order.
    pub(super) frames: Vec<Frame>,
    /// Every event, in seq order (index `seq - 1`).
    pub(super) events: Vec<EventMeta>,
    /// The traceparent each event carries, in seq order.
    pub(super) traceparents: Vec<String>,
}

/// `agents` agents sharing `total` events as evenly as possible, each in
/// frames of at most `batch` events.
pub(super) fn build(agents: usize, total: u64, batch: u64) -> Result<Vec<AgentLoad>, BenchError> {
    let template = template()?;
    let now_ms = unix_ms();
    let per = total / agents as u64;
    let extra = total % agents as u64;
    let mut out = Vec::with_capacity(agents);
    for i in 0..agents {
        let count = per + u64::from((i as u64) < extra);
        out.push(agent_load(&template, i, count, batch, now_ms)?);
    }
    Ok(out)
}

fn invalid(what: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Invalid(format!("{what}: {e}"))
}

pub(super) fn agent_load(
    template: &Envelope,
    index: usize,
    count: u64,
    batch: u64,
    now_ms: u64,
) -> Result<AgentLoad, BenchError> {
    let store = StoreId::new(format!("BENCH-S{index:04}")).map_err(|e| invalid("store id", e))?;
    let agent =
        AgentId::new(format!("BENCH-S{index:04}-A1")).map_err(|e| invalid("agent id", e))?;
    let mut events = Vec::with_capacity(count as usize);
    let mut traceparents = Vec::with_capacity(count as usize);
    let mut frames = Vec::new();
    let mut encoded: Vec<Vec<u8>> = Vec::with_capacity(batch as usize);
    let mut first_seq = 1;
    for s in 1..=count {
        let event_id = EventId::from_parts(now_ms, rand::random());
        let order_id = OrderId::from_parts(now_ms, rand::random());
        let tp = Traceparent::from_ids(rand::random::<u128>() | 1, rand::random::<u64>() | 1)
            .map_err(|e| invalid("traceparent", e))?;
        let mut env = template.clone();
        env.event_id = event_id;
        env.store_id = store.clone();
        env.agent_id = agent.clone();
        env.seq = Some(Seq::new(s).map_err(|e| invalid("seq", e))?);
        traceparents.push(tp.to_string());
        env.traceparent = Some(tp);
        if let Event::OrderCreated(order) = &mut env.payload {
            order.order_id = order_id;
            order.store_id = store.clone();
        }
        encoded.push(
            env.encode()
                .map_err(|e| invalid("encoding an envelope", e))?,
        );
        events.push(EventMeta { event_id, order_id });
        if encoded.len() as u64 == batch || s == count {
            let payload = encode_raw_batch(&agent, encoded.iter().map(Vec::as_slice))
                .map_err(|e| invalid("encoding a batch", e))?;
            frames.push(Frame {
                payload: payload.into(),
                through_seq: s,
                first_seq,
            });
            encoded.clear();
            first_seq = s + 1;
        }
    }
    Ok(AgentLoad {
        events_topic: agent_topic(&store, &agent, Channel::Events),
        acks_topic: agent_topic(&store, &agent, Channel::Acks),
        store,
        agent,
        frames,
        events,
        traceparents,
    })
}

/// A valid carry-out order paid in cash (two lines), decoded through the
/// protocol's own decoder and checked with its store-event validation, so
/// every clone is an event the ingest accepts.
pub(super) fn template() -> Result<Envelope, BenchError> {
    let now = rfc3339(unix_ms() / 1000);
    let id = |ms| EventId::from_parts(ms, [1; 10]).to_string();
    let json = serde_json::json!({
        "event_id": id(unix_ms()),
        "event_type": "OrderCreated",
        "schema_version": 1,
        "store_id": "BENCH-S0000",
        "agent_id": "BENCH-S0000-A1",
        "seq": 1,
        "occurred_at": now,
        "payload": {
            "order_id": OrderId::from_parts(unix_ms(), [2; 10]).to_string(),
            "store_id": "BENCH-S0000",
            "terminal_id": "T1",
            "currency": "CAD",
            "lines": [
                {"sku": "SKU-1", "quantity": 2, "unit_price": {"minor": 1499, "currency": "CAD"}},
                {"sku": "SKU-2", "quantity": 1, "unit_price": {"minor": 350, "currency": "CAD"}}
            ],
            "payments": [{"method": "cash", "amount": {"minor": 3348, "currency": "CAD"}}],
            "fulfillment": {"type": "carry_out"},
            "captured_at": now
        }
    });
    let bytes = serde_json::to_vec(&json).map_err(|e| invalid("template JSON", e))?;
    let env = Envelope::decode(&bytes).map_err(|e| invalid("template envelope", e))?;
    env.validate_store_event()
        .map_err(|e| invalid("template envelope", e))?;
    Ok(env)
}

pub(super) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds (civil-from-days, proleptic
/// Gregorian; `time` is not a dependency of the harness library).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use o2c_protocol::Batch;

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_764_621_296), "2025-12-01T20:34:56Z");
    }

    #[test]
    fn frames_are_valid_gap_free_batches() {
        let loads = build(3, 10, 2).unwrap();
        let counts: Vec<usize> = loads.iter().map(|a| a.events.len()).collect();
        assert_eq!(counts, [4, 3, 3]);
        for a in &loads {
            let mut next = 1;
            for f in &a.frames {
                let b = Batch::decode(&f.payload).unwrap();
                assert_eq!(b.agent_id, a.agent);
                assert_eq!(f.first_seq, next);
                for e in &b.events {
                    assert_eq!(e.seq.map(Seq::get), Some(next));
                    assert_eq!(e.store_id, a.store);
                    e.validate_store_event().unwrap();
                    next += 1;
                }
                assert_eq!(f.through_seq, next - 1);
            }
            assert_eq!(next - 1, a.events.len() as u64);
        }
    }
}
