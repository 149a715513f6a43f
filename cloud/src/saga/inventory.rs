//! The inventory service: stock per SKU and warehouse.
//!
//! Placement in the saga (the design decision): inventory **reserves** when
//! it sees `OrderCreated` (a local hold, no event), **confirms** the
//! reservation when it sees `PaymentCaptured` (stock leaves `on_hand`,
//! `InventoryConfirmed`), and **releases** it when it sees `OrderCancelled`
//! (`InventoryReleased`, reason `order_cancelled`). So the nominal flow
//! reads orders.created → payments.captured → inventory.confirmed, and a
//! declined payment (order cancels) releases the hold.
//!
//! Insufficient stock: the hold fails at `OrderCreated`; when the payment
//! is captured, inventory emits `InventoryReleased` with reason
//! `insufficient_stock`, the order service cancels the order with that
//! reason, and the payment service refunds. Stock never goes negative (the
//! table's CHECKs back this up).
//!
//! Exactly-once compensation: the per-order state records what was done to
//! stock and whether a release was emitted; every transition happens once,
//! under the order's row lock, in the transaction that marks the event
//! processed. A void after confirmation puts the units back (`restock`).
//! Events may arrive in any order: a capture or a cancellation seen before
//! the order is remembered and acted on when the order arrives.

use std::collections::BTreeMap;

use o2c_protocol::event::{InventoryConfirmed, InventoryReleased, Reservation};
use o2c_protocol::{Envelope, Event, EventType, Fulfillment, KafkaTopics, Order};
use serde::{Deserialize, Serialize};

use super::consumer::{Step, StepError};
use super::db::Tx;
use super::order::INSUFFICIENT_STOCK;
use super::{Pg, db, outbox};

pub(crate) const SCHEMA: &str = "o2c_inventory";

/// Topics the inventory service consumes.
pub const SUBSCRIBES: &[EventType] = &[
    EventType::OrderCreated,
    EventType::PaymentCaptured,
    EventType::OrderCancelled,
];

/// The release reason after a cancellation.
pub const ORDER_CANCELLED: &str = "order_cancelled";

/// What has been done to stock for one order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Hold {
    /// Nothing yet.
    #[default]
    None,
    /// Units held (`reserved`).
    Reserved {
        /// Where.
        lines: Vec<Reservation>,
    },
    /// Not enough stock to hold.
    Insufficient,
    /// Units taken out of `on_hand`.
    Confirmed {
        /// Where.
        lines: Vec<Reservation>,
    },
    /// Released or given back; nothing held.
    Released,
}

/// The inventory state of one order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InventoryState {
    /// `OrderCreated` seen.
    pub created: bool,
    /// `PaymentCaptured` seen.
    pub paid: bool,
    /// `OrderCancelled` seen.
    pub cancelled: bool,
    /// What stock holds.
    pub hold: Hold,
    /// `InventoryReleased` already emitted.
    pub release_emitted: bool,
}

/// Units wanted per SKU (merged, sorted: rows are locked in SKU order).
pub fn wanted(order: &Order) -> Vec<(String, i64)> {
    let mut m: BTreeMap<String, i64> = BTreeMap::new();
    for l in &order.lines {
        *m.entry(l.sku.clone()).or_default() += l.quantity;
    }
    m.into_iter().collect()
}

/// The inventory service's step.
#[derive(Debug)]
pub(crate) struct InventoryStep {
    pub(crate) pg: Pg,
    pub(crate) topics: KafkaTopics,
    /// Units provisioned for a SKU with no stock row at all (0: none).
    pub(crate) auto_stock: i64,
    /// Warehouse for ship-to-home orders (carry-out uses the store).
    pub(crate) central_warehouse: String,
}

impl Step for InventoryStep {
    fn pg(&self) -> &Pg {
        &self.pg
    }

    /// Orders share stock rows, but every stock change is one `UPDATE` by
    /// a delta and the table's CHECKs refuse any that would oversell; a
    /// reservation that loses a race within a batch fails the batch, which
    /// is then handled again one event at a time.
    fn orders_independent(&self) -> bool {
        true
    }

    async fn handle_in(&self, tx: &Tx<'_>, env: &Envelope) -> Result<(), StepError> {
        let order_id = env.payload.order_id().to_string();
        let et = env.event_type().as_str();
        if !db::mark_processed(tx, SCHEMA, &env.event_id.to_string(), et, &order_id).await? {
            return Ok(());
        }
        let mut st: InventoryState = db::lock_state(tx, SCHEMA, &order_id).await?;
        let mut emit = Vec::new();
        match &env.payload {
            Event::OrderCreated(order) => {
                st.created = true;
                if !st.cancelled && st.hold == Hold::None {
                    st.hold = self.reserve(tx, &order_id, order).await?;
                }
            }
            Event::PaymentCaptured(_) => st.paid = true,
            Event::OrderCancelled(_) => st.cancelled = true,
            _ => {}
        }
        let oid = env.payload.order_id();
        if st.cancelled {
            match std::mem::take(&mut st.hold) {
                Hold::Reserved { lines } => {
                    move_stock(tx, &order_id, &lines, "release", 0, -1).await?
                }
                Hold::Confirmed { lines } => {
                    move_stock(tx, &order_id, &lines, "restock", 1, 0).await?
                }
                _ => {}
            }
            st.hold = Hold::Released;
            if !st.release_emitted {
                st.release_emitted = true;
                emit.push(Event::InventoryReleased(InventoryReleased {
                    order_id: oid,
                    reason: ORDER_CANCELLED.to_owned(),
                }));
            }
        } else if st.paid {
            match std::mem::take(&mut st.hold) {
                Hold::Reserved { lines } => {
                    move_stock(tx, &order_id, &lines, "confirm", -1, -1).await?;
                    emit.push(Event::InventoryConfirmed(InventoryConfirmed {
                        order_id: oid,
                        reservations: lines.clone(),
                    }));
                    st.hold = Hold::Confirmed { lines };
                }
                Hold::Insufficient => {
                    st.hold = Hold::Released;
                    if !st.release_emitted {
                        st.release_emitted = true;
                        emit.push(Event::InventoryReleased(InventoryReleased {
                            order_id: oid,
                            reason: INSUFFICIENT_STOCK.to_owned(),
                        }));
                    }
                }
                other => st.hold = other,
            }
        }
        db::save_state(tx, SCHEMA, &order_id, &st).await?;
        for e in emit {
            outbox::insert(tx, SCHEMA, &self.topics, env, e).await?;
        }
        Ok(())
    }
}

impl InventoryStep {
    /// Holds every wanted unit, or nothing (`Insufficient`).
    async fn reserve(&self, tx: &Tx<'_>, order_id: &str, order: &Order) -> Result<Hold, StepError> {
        let preferred = match order.fulfillment {
            Fulfillment::CarryOut => order.store_id.to_string(),
            Fulfillment::ShipToHome { .. } => self.central_warehouse.clone(),
        };
        let mut lines = Vec::new();
        for (sku, qty) in wanted(order) {
            let mut found = pick(tx, &sku, qty, &preferred).await?;
            if found.is_none() && self.auto_stock > 0 {
                tx.execute(
                    &format!(
                        "INSERT INTO {SCHEMA}.stock (sku, warehouse, on_hand) \
                             SELECT $1, $2, $3 WHERE NOT EXISTS \
                             (SELECT 1 FROM {SCHEMA}.stock WHERE sku = $1)"
                    ),
                    &[&sku, &preferred, &self.auto_stock],
                )
                .await?;
                // Pick again, whoever inserted the row (this order, or an
                // earlier one of this transaction or of another).
                found = pick(tx, &sku, qty, &preferred).await?;
            }
            match found {
                Some(warehouse) => lines.push(Reservation {
                    sku,
                    quantity: qty,
                    warehouse,
                }),
                None => return Ok(Hold::Insufficient),
            }
        }
        move_stock(tx, order_id, &lines, "reserve", 0, 1).await?;
        Ok(Hold::Reserved { lines })
    }
}

/// A warehouse with `qty` units available, preferring `preferred`; locks
/// its row.
async fn pick(
    tx: &Tx<'_>,
    sku: &str,
    qty: i64,
    preferred: &str,
) -> Result<Option<String>, StepError> {
    let row = tx
        .query_opt(
            &format!(
                "SELECT warehouse FROM {SCHEMA}.stock WHERE sku = $1 AND on_hand - reserved >= $2 \
                 ORDER BY (warehouse = $3) DESC, warehouse LIMIT 1 FOR UPDATE"
            ),
            &[&sku, &qty, &preferred],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Applies `sign_on_hand * qty` and `sign_reserved * qty` to each line's
/// row and records the movement.
async fn move_stock(
    tx: &Tx<'_>,
    order_id: &str,
    lines: &[Reservation],
    kind: &str,
    sign_on_hand: i64,
    sign_reserved: i64,
) -> Result<(), StepError> {
    for l in lines {
        let (d_on_hand, d_reserved) = (sign_on_hand * l.quantity, sign_reserved * l.quantity);
        tx.execute(
            &format!(
                "UPDATE {SCHEMA}.stock SET on_hand = on_hand + $3, reserved = reserved + $4 \
                 WHERE sku = $1 AND warehouse = $2"
            ),
            &[&l.sku, &l.warehouse, &d_on_hand, &d_reserved],
        )
        .await?;
        tx.execute(
            &format!(
                "INSERT INTO {SCHEMA}.movements \
                 (order_id, sku, warehouse, kind, delta_on_hand, delta_reserved) \
                 VALUES ($1, $2, $3, $4, $5, $6)"
            ),
            &[
                &order_id,
                &l.sku,
                &l.warehouse,
                &kind,
                &d_on_hand,
                &d_reserved,
            ],
        )
        .await?;
    }
    Ok(())
}
