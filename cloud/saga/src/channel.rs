//! The cloud order API's side of the saga ([`crate::Service::Api`]).
//!
//! The API (`o2c-api`) writes a web or mobile order, or its cancellation,
//! into the `o2c_api` outbox in the same transaction as the order's row and
//! its idempotency record; this service's relay publishes those events to
//! their topics and to the order history like any saga service's.
//!
//! Its step projects the order history (`orders.events`) into
//! `o2c_api.history`, for the orders the API created: what
//! `GET /v1/orders/{id}` answers with (status and timeline). It keeps every
//! event once, by `event_id`; an order's status is its entry with the
//! greatest `status_seq`, so a replay, or events that reach the history out
//! of order, answer the same.

use o2c_protocol::Envelope;

use super::consumer::{Step, StepError};
use super::db::Tx;
use super::status::status_for;
use crate::pool::Pg;

/// The API's schema.
pub const SCHEMA: &str = "o2c_api";

/// One history entry, as the API stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The event.
    pub event_id: String,
    /// Its order.
    pub order_id: String,
    /// Its type.
    pub event_type: &'static str,
    /// The status it gives the order, if any, and its sequence.
    pub status: Option<(String, i64)>,
    /// Why, for a cancellation.
    pub reason: Option<String>,
    /// What happened, in words ([`crate::history::outcome`]).
    pub detail: String,
    /// When, in unix milliseconds.
    pub occurred_ms: i64,
}

/// The entry `env` makes in its order's history.
pub fn entry(env: &Envelope) -> Entry {
    let update = status_for(env);
    Entry {
        event_id: env.event_id.to_string(),
        order_id: env.payload.order_id().to_string(),
        event_type: env.event_type().as_str(),
        status: update.as_ref().map(|u| {
            (
                u.status.as_str().to_owned(),
                // At most 7 · 2^44 (`status_seq`): always fits.
                i64::try_from(u.seq.unwrap_or(0)).unwrap_or(i64::MAX),
            )
        }),
        reason: update.and_then(|u| u.reason),
        detail: crate::history::outcome(&env.payload),
        occurred_ms: i64::try_from(env.occurred_at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0),
    }
}

/// The projector's step.
#[derive(Debug)]
pub(crate) struct HistoryStep {
    pub(crate) pg: Pg,
}

impl Step for HistoryStep {
    fn pg(&self) -> &Pg {
        &self.pg
    }

    async fn handle_in(&self, tx: &Tx<'_>, events: &[&Envelope]) -> Result<(), StepError> {
        let n = events.len();
        let (mut ids, mut orders, mut types, mut statuses) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut seqs, mut reasons, mut details, mut times) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for e in events.iter().map(|e| entry(e)) {
            ids.push(e.event_id);
            orders.push(e.order_id);
            types.push(e.event_type);
            let (status, seq) = e.status.unzip();
            statuses.push(status);
            seqs.push(seq);
            reasons.push(e.reason);
            details.push(e.detail);
            times.push(e.occurred_ms);
        }
        // Only the API's own orders; every other order's event is skipped.
        tx.execute(
            &format!(
                "INSERT INTO {SCHEMA}.history \
                 (event_id, order_id, event_type, status, status_seq, reason, detail, occurred_ms) \
                 SELECT e.* FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
                 $5::bigint[], $6::text[], $7::text[], $8::bigint[]) \
                 AS e(event_id, order_id, event_type, status, status_seq, reason, detail, occurred_ms) \
                 WHERE EXISTS (SELECT 1 FROM {SCHEMA}.channel_orders o WHERE o.order_id = e.order_id) \
                 ON CONFLICT (event_id) DO NOTHING"
            ),
            &[
                &ids, &orders, &types, &statuses, &seqs, &reasons, &details, &times,
            ],
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::envelope as env;
    use o2c_protocol::event::{OrderCancelled, PaymentFailed};
    use o2c_protocol::{Event, OrderId};

    #[test]
    fn an_entry_carries_the_status_its_event_gives() {
        let order = OrderId::from_parts(7, [7; 10]);
        let void = env(
            2,
            20,
            Event::OrderCancelled(OrderCancelled {
                order_id: order,
                reason: "customer_cancel".into(),
            }),
        );
        let e = entry(&void);
        assert_eq!(e.order_id, order.to_string());
        assert_eq!(e.event_type, "OrderCancelled");
        let (status, seq) = e.status.expect("a status");
        assert_eq!(status, "cancelled");
        assert!(seq > 0);
        assert_eq!(e.reason.as_deref(), Some("customer_cancel"));
        let failed = env(
            3,
            5,
            Event::PaymentFailed(PaymentFailed {
                order_id: order,
                reason: "declined".into(),
            }),
        );
        // A failed payment sets no status, but is in the timeline.
        let e = entry(&failed);
        assert_eq!(e.status, None);
        assert!(e.detail.contains("declined"), "{}", e.detail);
    }
}
