//! The state projector: folds the order history (`orders.events`) into
//! each order's latest state, kept in `o2c_state.orders` and published to
//! the compacted `orders.state` topic (`o2c_protocol::order_state`).
//!
//! It consumes the one history topic, keyed by order id, so all of an
//! order's events reach one member, in the order they were written. An
//! order's state is the status with the greatest `status_seq` seen
//! ([`super::status::status_for`]: the rank in the saga, then the event's
//! time), so the fold is idempotent and commutative: a replay, or events
//! that reach the history out of order, leave the same state.
//!
//! Only a change of state writes a record, in the same transaction as the
//! row, through this schema's outbox; its relay runs alone
//! ([`super::outbox::Relay::exclusive`]), so the records of one order
//! reach the compacted topic in the order they were decided, and the
//! topic's last record per key is the order's state.

use std::collections::HashMap;

use o2c_protocol::order_state::{ORDER_STATE_TYPE, ORDER_STATE_VERSION, OrderStateRecord};
use o2c_protocol::{Envelope, KafkaTopics};

use super::consumer::{Step, StepError};
use super::db::Tx;
use super::status::status_for;
use crate::pool::Pg;

pub(crate) const SCHEMA: &str = "o2c_state";

/// The state `env` gives its order, if it sets a status (a return's
/// status is the return's, not the order's state).
pub fn record_for(env: &Envelope) -> Option<OrderStateRecord> {
    let u = status_for(env).filter(|u| !u.status.is_return())?;
    Some(OrderStateRecord {
        version: ORDER_STATE_VERSION,
        order_id: u.order_id,
        store_id: env.store_id.clone(),
        agent_id: env.agent_id.clone(),
        status: u.status,
        reason: u.reason,
        status_seq: u.seq.unwrap_or(0),
        event_id: u.event_id,
        event_type: env.event_type(),
        occurred_at: u.occurred_at,
    })
}

/// Folds `events` (any order, repeats allowed) into each order's latest
/// state: the record with the greatest `status_seq` (ties keep the first).
pub fn fold<'a>(
    events: impl IntoIterator<Item = &'a Envelope>,
) -> HashMap<o2c_protocol::OrderId, OrderStateRecord> {
    let mut latest: HashMap<_, OrderStateRecord> = HashMap::new();
    for r in events.into_iter().filter_map(record_for) {
        match latest.get(&r.order_id) {
            Some(cur) if cur.status_seq >= r.status_seq => {}
            _ => {
                latest.insert(r.order_id, r);
            }
        }
    }
    latest
}

/// The projector's step.
#[derive(Debug)]
pub(crate) struct StateStep {
    pub(crate) pg: Pg,
    pub(crate) topics: KafkaTopics,
}

impl Step for StateStep {
    fn pg(&self) -> &Pg {
        &self.pg
    }

    async fn handle_in(&self, tx: &Tx<'_>, events: &[&Envelope]) -> Result<(), StepError> {
        let latest = fold(events.iter().copied());
        if latest.is_empty() {
            return Ok(());
        }
        let mut records: Vec<OrderStateRecord> = latest.into_values().collect();
        records.sort_by_key(|r| r.order_id);
        let mut ids = Vec::with_capacity(records.len());
        let mut states = Vec::with_capacity(records.len());
        let mut seqs = Vec::with_capacity(records.len());
        for r in &records {
            ids.push(r.order_id.to_string());
            let json = r.encode().map_err(|e| StepError::Poison {
                code: "encode",
                detail: e.to_string(),
            })?;
            states.push(String::from_utf8_lossy(&json).into_owned());
            // At most 7 · 2^44 (`status_seq`): always fits.
            seqs.push(i64::try_from(r.status_seq).unwrap_or(i64::MAX));
        }
        // Only a greater sequence replaces a row; the rows returned are
        // the orders whose state moved on.
        let changed = tx
            .query(
                &format!(
                    "INSERT INTO {SCHEMA}.orders (order_id, state, status_seq) \
                     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) \
                     ON CONFLICT (order_id) DO UPDATE \
                     SET state = excluded.state, status_seq = excluded.status_seq, \
                         updated_at = now() \
                     WHERE {SCHEMA}.orders.status_seq < excluded.status_seq \
                     RETURNING order_id"
                ),
                &[&ids, &states, &seqs],
            )
            .await?;
        if changed.is_empty() {
            return Ok(());
        }
        let changed: std::collections::HashSet<String> =
            changed.iter().map(|r| r.get::<_, String>(0)).collect();
        let topic = self.topics.state();
        let (mut ev, mut tp, mut key, mut ty, mut st, mut ag, mut pl) =
            (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        for (r, state) in records.iter().zip(states) {
            let id = r.order_id.to_string();
            if !changed.contains(&id) {
                continue;
            }
            ev.push(r.event_id.to_string());
            tp.push(topic.clone());
            key.push(id);
            ty.push(ORDER_STATE_TYPE);
            st.push(r.store_id.as_str().to_owned());
            ag.push(r.agent_id.as_str().to_owned());
            pl.push(state.into_bytes());
        }
        tx.execute(
            &format!(
                "INSERT INTO {SCHEMA}.outbox \
                 (event_id, topic, key, event_type, store_id, agent_id, payload) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
                 $5::text[], $6::text[], $7::bytea[]) \
                 ON CONFLICT (event_id) DO NOTHING"
            ),
            &[&ev, &tp, &key, &ty, &st, &ag, &pl],
        )
        .await?;
        tx.wake_relay_at_commit(SCHEMA);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::envelope as env;
    use o2c_protocol::event::{OrderCancelled, OrderCompleted, PaymentFailed};
    use o2c_protocol::{CloudStatus, Event, OrderId};

    #[test]
    fn the_latest_state_is_the_same_in_any_order_and_on_replay() {
        let order = OrderId::from_parts(7, [7; 10]);
        let completed = env(
            1,
            10,
            Event::OrderCompleted(OrderCompleted { order_id: order }),
        );
        // A void that reaches the history before the completion it
        // follows in the saga still outranks it.
        let void = env(
            2,
            20,
            Event::OrderCancelled(OrderCancelled {
                order_id: order,
                reason: "store_void".into(),
            }),
        );
        let failed = env(
            3,
            5,
            Event::PaymentFailed(PaymentFailed {
                order_id: order,
                reason: "declined".into(),
            }),
        );
        let a = fold([&completed, &void, &failed]);
        let b = fold([&void, &failed, &completed, &void]);
        assert_eq!(a, b);
        let r = &a[&order];
        assert_eq!(r.status, CloudStatus::Cancelled);
        assert_eq!(r.reason.as_deref(), Some("store_void"));
        assert_eq!(r.event_id, void.event_id);
        // An event that sets no status gives no state.
        assert!(fold([&failed]).is_empty());
    }
}
