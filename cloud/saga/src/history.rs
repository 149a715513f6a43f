//! `o2c-cloud order history ORDER_ID`: an order's timeline, read back from
//! the order history topic (`orders.events`) alone.
//!
//! The history is keyed by order id, so the reader goes to the one
//! partition that holds the order (`o2c_runtime::kafka::scan`), and starts
//! at the records written since the order was captured (its id is a
//! UUIDv7, whose time is the capture's), less a slack for a till's clock.
//! [`timeline`] is pure: each event once (by `event_id`: a relay that
//! retried may have written one twice), in the order the history has them,
//! with the service that wrote it (`source` header), what it decided and
//! its trace id.

use std::time::Duration;

use o2c_protocol::{Envelope, Event, EventId, OrderId};
use serde::Serialize;
use time::OffsetDateTime;

use o2c_cloud_common::config::Config;
use o2c_runtime::kafka::scan::{self, ScanFrom, ScannedRecord};

/// Why the history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Reading the topic failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The reader task ended without an answer.
    #[error("history reader: {0}")]
    Reader(String),
}

/// One step of an order's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The history's partition and offset of its first copy.
    pub partition: i32,
    /// See `partition`.
    pub offset: i64,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// `OrderCreated`, `PaymentCaptured`, ...
    pub event_type: String,
    /// Who wrote it: `ingest` for store events, else the saga service.
    pub source: String,
    /// What it decided, in words.
    pub outcome: String,
    /// The W3C trace id, where the event carries a trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The event's id.
    pub event_id: String,
}

/// What an event decided, in a few words.
pub fn outcome(event: &Event) -> String {
    match event {
        Event::OrderCreated(o) => {
            let total = o
                .total()
                .map_or_else(|e| format!("total unknown ({e})"), |m| format!("total {m}"));
            let fulfillment = match o.fulfillment {
                o2c_protocol::Fulfillment::CarryOut { .. } => "carry-out",
                o2c_protocol::Fulfillment::ShipToHome { .. } => "ship-to-home",
            };
            format!("captured: {} lines, {total}, {fulfillment}", o.lines.len())
        }
        Event::OrderCancelled(e) => format!("cancelled: {}", e.reason),
        Event::PaymentCaptured(e) => format!("paid {} ({})", e.amount, e.psp_reference),
        Event::PaymentFailed(e) => format!("payment failed: {}", e.reason),
        Event::InventoryReserved(e) => {
            let units: i64 = e.reservations.iter().map(|r| r.quantity).sum();
            format!("stock held at capture: {units} units")
        }
        Event::InventoryConfirmed(e) => {
            let units: i64 = e.reservations.iter().map(|r| r.quantity).sum();
            format!("stock reserved: {units} units")
        }
        Event::InventoryReleased(e) => format!("stock released: {}", e.reason),
        Event::ShipmentScheduled(e) => format!("shipment scheduled: {}", e.shipment_id),
        Event::ShipmentDispatched(e) => {
            format!("dispatched: {} {}", e.carrier, e.tracking_number)
        }
        Event::ShipmentDelivered(e) => format!("delivered: {} {}", e.carrier, e.tracking_number),
        Event::ShipmentCancelled(e) => format!("shipment cancelled: {}", e.reason),
        Event::OrderCompleted(_) => "completed".to_owned(),
        Event::RefundIssued(e) => match e.return_id {
            Some(r) => format!("refunded {} for return {r} ({})", e.amount, e.psp_reference),
            None => format!("refunded {} ({})", e.amount, e.psp_reference),
        },
        Event::ReturnRequested(e) => {
            let units: i64 = e.lines.iter().map(|l| l.quantity).sum();
            format!(
                "return {} requested: {units} units, refund by {}",
                e.return_id,
                e.refund.method()
            )
        }
        Event::ReturnAccepted(e) => format!(
            "return {} accepted: {} back by {}, restocked at {}",
            e.return_id,
            e.amount,
            e.refund.method(),
            e.store_id
        ),
        Event::ReturnRefused(e) => format!("return {} refused: {}", e.return_id, e.reason),
    }
}

/// The trace id of a `traceparent` (`00-<trace>-<span>-<flags>`).
fn trace_id(traceparent: &str) -> Option<String> {
    traceparent.split('-').nth(1).map(str::to_owned)
}

/// The timeline of `order` from history records: its records only, each
/// event once, in history order. A record of the order that does not
/// decode is kept, as a step that says so: nothing is skipped silently.
pub fn timeline(records: &[ScannedRecord], order: OrderId) -> Vec<Entry> {
    let key = order.to_string();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for r in records.iter().filter(|r| r.key == key) {
        let source = r.header("source").unwrap_or("unknown").to_owned();
        let entry = match Envelope::decode(&r.value) {
            Ok(env) => {
                if !seen.insert(env.event_id) {
                    continue;
                }
                Entry {
                    partition: r.partition,
                    offset: r.offset,
                    occurred_at: env.occurred_at,
                    event_type: env.event_type().as_str().to_owned(),
                    source,
                    outcome: outcome(&env.payload),
                    trace_id: env.traceparent.as_ref().and_then(|t| trace_id(t.as_str())),
                    event_id: env.event_id.to_string(),
                }
            }
            Err(e) => Entry {
                partition: r.partition,
                offset: r.offset,
                occurred_at: r
                    .timestamp_ms
                    .and_then(|ms| {
                        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
                    })
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                event_type: r.header("event_type").unwrap_or("?").to_owned(),
                source,
                outcome: format!("undecodable: {e}"),
                trace_id: r.header("traceparent").and_then(trace_id),
                event_id: r.header("event_id").unwrap_or("?").to_owned(),
            },
        };
        out.push(entry);
    }
    out
}

/// The decoded events of `records` (any key), each once by `event_id`,
/// in history order; the records that do not decode are returned apart.
pub fn events(records: &[ScannedRecord]) -> (Vec<Envelope>, Vec<&ScannedRecord>) {
    let mut seen: std::collections::HashSet<EventId> = std::collections::HashSet::new();
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    for r in records {
        match Envelope::decode(&r.value) {
            Ok(env) => {
                if seen.insert(env.event_id) {
                    ok.push(env);
                }
            }
            Err(_) => bad.push(r),
        }
    }
    (ok, bad)
}

/// The timeline as a table, one step per line.
pub fn render(order: OrderId, entries: &[Entry]) -> String {
    let mut s = format!("order {order}: {} events\n", entries.len());
    for e in entries {
        let at = e
            .occurred_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| "?".to_owned());
        s.push_str(&format!(
            "{at}  {:<18} {:<9} {}  trace={}\n",
            e.event_type,
            e.source,
            e.outcome,
            e.trace_id.as_deref().unwrap_or("-"),
        ));
    }
    s
}

/// Where the reader starts: `slack` before the order's capture time (from
/// its UUIDv7), or the beginning of the partition.
pub fn start_for(order: OrderId, slack: Option<Duration>) -> ScanFrom {
    let Some(slack) = slack else {
        return ScanFrom::Beginning;
    };
    let captured_ms = order
        .as_uuid()
        .get_timestamp()
        .map(|t| {
            let (s, ns) = t.to_unix();
            i64::try_from(s).unwrap_or(0) * 1000 + i64::from(ns / 1_000_000)
        })
        .unwrap_or(0);
    let slack_ms = i64::try_from(slack.as_millis()).unwrap_or(i64::MAX);
    ScanFrom::Time(captured_ms.saturating_sub(slack_ms).max(0))
}

/// Reads `order`'s timeline from the history topic of `cfg`.
pub async fn read(
    cfg: &Config,
    order: OrderId,
    slack: Option<Duration>,
) -> Result<Vec<Entry>, HistoryError> {
    let brokers = cfg.kafka.brokers.clone();
    let topic = cfg.topics().history();
    let key = order.to_string();
    let from = start_for(order, slack);
    let records = tokio::task::spawn_blocking(move || {
        scan::scan(&brokers, &topic, Some(&key), from, Duration::from_secs(120))
    })
    .await
    .map_err(|e| HistoryError::Reader(e.to_string()))??;
    Ok(timeline(&records, order))
}

#[cfg(test)]
mod tests {
    use super::*;
    use o2c_protocol::Traceparent;
    use o2c_protocol::event::{OrderCancelled, OrderCompleted};

    fn record(offset: i64, env: &Envelope, source: &str) -> ScannedRecord {
        ScannedRecord {
            partition: 2,
            offset,
            timestamp_ms: Some(1),
            key: env.payload.order_id().to_string(),
            headers: vec![("source".into(), source.into())],
            value: env.encode().unwrap(),
        }
    }

    fn env(n: u8, payload: Event) -> Envelope {
        let mut e = crate::test_support::envelope(n, i64::from(n), payload);
        e.traceparent = Some(Traceparent::from_ids(0xabc, 1).unwrap());
        e
    }

    #[test]
    fn a_timeline_has_each_event_of_its_order_once_and_keeps_bad_records() {
        let order = OrderId::from_parts(1_764_000_000_000, [1; 10]);
        let other = OrderId::from_parts(1_764_000_000_000, [2; 10]);
        let done = env(1, Event::OrderCompleted(OrderCompleted { order_id: order }));
        let void = env(
            2,
            Event::OrderCancelled(OrderCancelled {
                order_id: order,
                reason: "store_void".into(),
            }),
        );
        let elsewhere = env(3, Event::OrderCompleted(OrderCompleted { order_id: other }));
        let mut bad = record(9, &void, "payment");
        bad.value = b"{not json".to_vec();
        let records = [
            record(1, &done, "order"),
            record(2, &elsewhere, "order"),
            record(3, &done, "order"),
            record(4, &void, "ingest"),
            bad,
        ];
        let t = timeline(&records, order);
        let steps: Vec<(&str, &str, &str)> = t
            .iter()
            .map(|e| (e.event_type.as_str(), e.source.as_str(), e.outcome.as_str()))
            .collect();
        assert_eq!(steps[0], ("OrderCompleted", "order", "completed"));
        assert_eq!(
            steps[1],
            ("OrderCancelled", "ingest", "cancelled: store_void")
        );
        assert_eq!(steps[2].1, "payment");
        assert!(steps[2].2.starts_with("undecodable"), "{steps:?}");
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].trace_id.as_deref(), Some(&*format!("{:032x}", 0xabc)));
        assert!(render(order, &t).contains("OrderCancelled"));
        let (ok, bad) = events(&records);
        assert_eq!((ok.len(), bad.len()), (3, 1));
    }

    #[test]
    fn the_reader_starts_a_slack_before_the_capture() {
        let order = OrderId::from_parts(1_764_000_000_000, [1; 10]);
        assert_eq!(
            start_for(order, Some(Duration::from_secs(3600))),
            ScanFrom::Time(1_764_000_000_000 - 3_600_000)
        );
        assert_eq!(start_for(order, None), ScanFrom::Beginning);
    }
}
