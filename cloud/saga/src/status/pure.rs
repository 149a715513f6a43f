//! The status publisher's pure parts: which status a saga event gives its
//! order ([`status_for`]), the per-order sequence ([`status_seq`]) and the
//! grouping of updates into one message per agent ([`messages`]).

use std::collections::HashMap;

use o2c_protocol::event::RefundIssued;
use o2c_protocol::{CloudStatus, Envelope, Event, ReturnStatus, StatusUpdate};

/// Where a status stands in an order's saga: every event that moves an
/// order on has a higher rank than those before it (created, paid, stock
/// confirmed, shipment booked, completed), and a cancellation or refund
/// outranks them all (a payment captured after a cancellation is refunded;
/// the order stays cancelled). Never reorder: stored sequences compare.
pub fn status_rank(status: CloudStatus) -> u64 {
    match status {
        CloudStatus::Accepted => 1,
        CloudStatus::Paid => 2,
        CloudStatus::InventoryConfirmed => 3,
        // The carrier's steps share the shipment's rank: within it, the
        // later event wins by time (dispatched after booked, delivered
        // after dispatched), and completion still outranks them all.
        CloudStatus::ShipmentScheduled | CloudStatus::Dispatched | CloudStatus::Delivered => 4,
        CloudStatus::Completed => 5,
        CloudStatus::Cancelled => 6,
        CloudStatus::Refunded => 7,
        // A return's statuses go to the return, never to its order (the
        // agent keeps them apart): above the order's, the refund last.
        CloudStatus::ReturnAccepted => 8,
        CloudStatus::ReturnRefused => 9,
        CloudStatus::ReturnRefunded => 10,
    }
}

/// Bits of a sequence below the rank: the event's unix milliseconds (up
/// to the year 2527).
const SEQ_TIME_BITS: u32 = 44;

/// An update's per-order sequence: [`status_rank`] above the event's
/// `occurred_at` in unix milliseconds. It is a function of the saga event
/// alone, so a publisher that restarts, or reads a topic again, sends the
/// same sequence for the same event; and it grows along an order's saga:
/// by rank first (two updates in one millisecond, or a late one, cannot
/// pass a later stage), then by time between updates of the same status.
/// At most 7 · 2^44, below 2^53: exact as a JSON or SQLite number.
pub fn status_seq(status: CloudStatus, occurred_at: time::OffsetDateTime) -> u64 {
    let max_ms = (1u64 << SEQ_TIME_BITS) - 1;
    let ms = u64::try_from(occurred_at.unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(0)
        .min(max_ms);
    (status_rank(status) << SEQ_TIME_BITS) | ms
}

/// The status a saga event gives its order, or one of its returns, if any.
pub fn status_for(env: &Envelope) -> Option<StatusUpdate> {
    let returned = |return_id, amount, sku: Option<&String>| {
        Some(ReturnStatus {
            return_id,
            amount,
            sku: sku.cloned(),
        })
    };
    let (status, reason, ret) = match &env.payload {
        Event::ReturnAccepted(a) => (
            CloudStatus::ReturnAccepted,
            None,
            returned(a.return_id, Some(a.amount), None),
        ),
        Event::ReturnRefused(r) => (
            CloudStatus::ReturnRefused,
            Some(r.reason.clone()),
            returned(r.return_id, None, r.sku.as_ref()),
        ),
        Event::RefundIssued(RefundIssued {
            return_id: Some(id),
            amount,
            ..
        }) => (
            CloudStatus::ReturnRefunded,
            None,
            returned(*id, Some(*amount), None),
        ),
        other => {
            let (status, reason) = order_status(other)?;
            (status, reason, None)
        }
    };
    Some(StatusUpdate {
        order_id: env.payload.order_id(),
        status,
        reason,
        ret,
        event_id: env.event_id,
        occurred_at: env.occurred_at,
        seq: Some(status_seq(status, env.occurred_at)),
    })
}

/// The status an order event gives its order, and why.
fn order_status(event: &Event) -> Option<(CloudStatus, Option<String>)> {
    Some(match event {
        Event::OrderCreated(_) => (CloudStatus::Accepted, None),
        Event::PaymentCaptured(_) => (CloudStatus::Paid, None),
        Event::InventoryConfirmed(_) => (CloudStatus::InventoryConfirmed, None),
        Event::ShipmentScheduled(_) => (CloudStatus::ShipmentScheduled, None),
        Event::ShipmentDispatched(_) => (CloudStatus::Dispatched, None),
        Event::ShipmentDelivered(_) => (CloudStatus::Delivered, None),
        Event::OrderCompleted(_) => (CloudStatus::Completed, None),
        Event::OrderCancelled(c) => (CloudStatus::Cancelled, Some(c.reason.clone())),
        Event::RefundIssued(_) => (CloudStatus::Refunded, None),
        Event::PaymentFailed(_)
        | Event::InventoryReleased(_)
        | Event::InventoryReserved(_)
        | Event::ShipmentCancelled(_)
        | Event::ReturnRequested(_)
        | Event::ReturnAccepted(_)
        | Event::ReturnRefused(_) => {
            return None;
        }
    })
}

/// Groups `(topic, item)` pairs into messages: per topic, in arrival
/// order, at most `max` items each; topics in order of first appearance.
pub fn messages<T>(
    updates: impl IntoIterator<Item = (String, T)>,
    max: usize,
) -> Vec<(String, Vec<T>)> {
    let max = max.max(1);
    let mut out: Vec<(String, Vec<T>)> = Vec::new();
    // Per topic, the index in `out` of its message being filled.
    let mut open: HashMap<String, usize> = HashMap::new();
    for (topic, update) in updates {
        match open.get(&topic) {
            Some(&i) if out[i].1.len() < max => out[i].1.push(update),
            _ => {
                open.insert(topic.clone(), out.len());
                out.push((topic, vec![update]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use o2c_protocol::{EventId, OrderId};
    use time::OffsetDateTime;

    fn update(n: u8) -> StatusUpdate {
        StatusUpdate {
            ret: None,
            order_id: OrderId::from_parts(1, [n; 10]),
            status: CloudStatus::Paid,
            reason: None,
            event_id: EventId::from_parts(2, [n; 10]),
            occurred_at: OffsetDateTime::UNIX_EPOCH,
            seq: Some(u64::from(n)),
        }
    }

    #[test]
    fn seqs_grow_along_the_saga_then_with_time() {
        let t = OffsetDateTime::from_unix_timestamp(1_764_000_000).unwrap();
        // In one millisecond, each later stage has a greater seq, except
        // the carrier's steps, which share the shipment's rank and follow
        // each other by time.
        let shipment = [
            CloudStatus::ShipmentScheduled,
            CloudStatus::Dispatched,
            CloudStatus::Delivered,
        ];
        for w in CloudStatus::ALL.windows(2) {
            if shipment.contains(&w[0]) && shipment.contains(&w[1]) {
                assert_eq!(status_rank(w[0]), status_rank(w[1]), "{w:?}");
                let next = t + time::Duration::milliseconds(1);
                assert!(status_seq(w[0], t) < status_seq(w[1], next), "{w:?}");
                continue;
            }
            assert!(status_seq(w[0], t) < status_seq(w[1], t), "{w:?}");
            // Even a much later earlier stage stays below (a year on).
            let later = t + time::Duration::days(365);
            assert!(status_seq(w[0], later) < status_seq(w[1], t), "{w:?}");
        }
        // Within one status, the later event is greater; the same event
        // always gets the same seq (a replay or restart sends it again).
        let next = t + time::Duration::milliseconds(1);
        assert!(status_seq(CloudStatus::Refunded, t) < status_seq(CloudStatus::Refunded, next));
        assert_eq!(
            status_seq(CloudStatus::Paid, t),
            status_seq(CloudStatus::Paid, t)
        );
        // Times out of range are clamped, and every seq is exact in JSON.
        let before_1970 = OffsetDateTime::from_unix_timestamp(-5).unwrap();
        assert_eq!(status_seq(CloudStatus::Accepted, before_1970), 1 << 44);
        let far = OffsetDateTime::from_unix_timestamp(253_402_300_799).unwrap();
        assert!(status_seq(CloudStatus::Refunded, far) < 1 << 53);
        assert!(status_seq(CloudStatus::Accepted, far) < status_seq(CloudStatus::Paid, t));
    }

    #[test]
    fn the_publisher_reads_every_topic_that_gives_a_status() {
        // One sample of every event type the contract has.
        for (name, bytes) in o2c_protocol::schema::samples() {
            let Ok(env) = Envelope::decode(&bytes) else {
                continue;
            };
            if status_for(&env).is_some() {
                assert!(
                    super::super::SUBSCRIBES.contains(&env.event_type()),
                    "{name} gives a status but its topic is not read"
                );
            }
        }
    }

    #[test]
    fn one_message_per_agent_in_arrival_order_split_at_the_limit() {
        let input = [("a", 1), ("b", 2), ("a", 3), ("a", 4), ("b", 5), ("a", 6)]
            .map(|(t, n)| (t.to_owned(), update(n)));
        let out = messages(input, 3);
        let topics: Vec<&str> = out.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(topics, ["a", "b", "a"]);
        assert_eq!(out[0].1, vec![update(1), update(3), update(4)]);
        assert_eq!(out[1].1, vec![update(2), update(5)]);
        assert_eq!(out[2].1, vec![update(6)]);
        // Nothing in, nothing out; a zero limit still sends every update.
        assert!(messages(Vec::<(String, StatusUpdate)>::new(), 3).is_empty());
        assert_eq!(messages([("a".to_owned(), update(1))], 0).len(), 1);
    }
}
