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
//! A ship-to-home order the store reserved for at capture (issue 15, see
//! [`super::store_reservation`]) takes those units over as its hold at
//! `OrderCreated`, and `InventoryReserved` says so.
//!
//! Exactly-once compensation: the per-order state records what was done to
//! stock and whether a release was emitted; every transition happens once,
//! under the order's row lock, in the transaction that marks the event
//! processed. A batch's stock rows are locked and changed in memory
//! ([`super::stock`]) and written once at the end. A void after confirmation puts the units back (`restock`).
//! Events may arrive in any order: a capture or a cancellation seen before
//! the order is remembered and acted on when the order arrives.
//!
//! A `ReturnAccepted` (contract 1.7) puts its units back on hand at the
//! store that took them back (movement kind `return`), once per return.

use std::collections::{BTreeMap, BTreeSet};

use o2c_protocol::event::{InventoryConfirmed, InventoryReleased, InventoryReserved, Reservation};
use o2c_protocol::{Envelope, Event, EventType, Fulfillment, KafkaTopics, Order, OrderId};
use serde::{Deserialize, Serialize};

use super::batch::Batch;
use super::consumer::{Step, StepError};
use super::db::Tx;
use super::order::INSUFFICIENT_STOCK;
use super::stock::{StockBook, StockError};
use super::store_reservation::take_over;
use crate::pool::Pg;

pub(crate) const SCHEMA: &str = "o2c_inventory";

/// Topics the inventory service consumes.
pub const SUBSCRIBES: &[EventType] = &[
    EventType::OrderCreated,
    EventType::PaymentCaptured,
    EventType::OrderCancelled,
    EventType::ReturnAccepted,
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
    /// Returns whose units were put back on hand (contract 1.7): each once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restocked: Vec<o2c_protocol::ReturnId>,
}

/// Units wanted per SKU (merged, in SKU order).
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

    async fn handle_in(&self, tx: &Tx<'_>, events: &[&Envelope]) -> Result<(), StepError> {
        let mut batch = Batch::<InventoryState>::open(tx, SCHEMA, events).await?;
        let fresh = batch.fresh();
        // Store reservations first (their rows before any stock row, as
        // store_reservation locks them): an order a store reserved for at
        // capture takes those units over as its hold.
        let reserved_at_store: Vec<String> = fresh
            .iter()
            .filter(|env| matches!(&env.payload, Event::OrderCreated(o) if matches!(o.fulfillment, Fulfillment::ShipToHome { .. })))
            .map(|env| env.payload.order_id().to_string())
            .collect();
        let taken = take_over(tx, &reserved_at_store)
            .await
            .map_err(|e| StepError::Poison {
                code: "bad_state",
                detail: e.to_string(),
            })?;
        for env in &fresh {
            let oid = env.payload.order_id();
            if let Some(lines) = taken.get(&oid.to_string()) {
                let st = batch.state_mut(oid);
                if st.hold == Hold::None {
                    st.hold = Hold::Reserved {
                        lines: lines.clone(),
                    };
                    batch.emit(
                        env,
                        Event::InventoryReserved(InventoryReserved {
                            order_id: oid,
                            reservations: lines.clone(),
                        }),
                    );
                }
            }
        }
        // Every SKU this batch may touch: new orders' lines and the holds
        // already recorded.
        let mut skus = BTreeSet::new();
        let mut provision = Vec::new();
        for env in &fresh {
            if let Event::OrderCreated(order) = &env.payload {
                let preferred = self.preferred(order);
                for (sku, _) in wanted(order) {
                    if skus.insert(sku.clone()) {
                        provision.push((sku, preferred.clone()));
                    }
                }
            }
        }
        for st in batch.states() {
            if let Hold::Reserved { lines } | Hold::Confirmed { lines } = &st.hold {
                skus.extend(lines.iter().map(|l| l.sku.clone()));
            }
        }
        // Returned units go back at the store that took them: its rows
        // are made (empty) if it never stocked the SKU.
        let mut receive = Vec::new();
        for env in &fresh {
            if let Event::ReturnAccepted(a) = &env.payload {
                for l in &a.lines {
                    skus.insert(l.sku.clone());
                    receive.push((l.sku.clone(), a.store_id.to_string()));
                }
            }
        }
        let skus: Vec<String> = skus.into_iter().collect();
        let mut book = StockBook::load(tx, &skus, &provision, self.auto_stock, &receive).await?;
        for env in fresh {
            let preferred = match &env.payload {
                Event::OrderCreated(order) => self.preferred(order),
                _ => String::new(),
            };
            let st = batch.state_mut(env.payload.order_id());
            let emit = apply(st, env, &mut book, &preferred).map_err(|e| StepError::Poison {
                code: "bad_state",
                detail: e.to_string(),
            })?;
            for e in emit {
                batch.emit(env, e);
            }
        }
        book.flush(tx).await?;
        batch.close(tx, &self.topics).await?;
        Ok(())
    }
}

impl InventoryStep {
    /// Where an order's units are taken from first.
    fn preferred(&self, order: &Order) -> String {
        match order.fulfillment {
            Fulfillment::CarryOut {} => order.store_id.to_string(),
            Fulfillment::ShipToHome { .. } => self.central_warehouse.clone(),
        }
    }
}

/// Applies one fresh event to its order's state and the batch's stock;
/// returns the events to emit. `preferred` is the order's warehouse (for
/// `OrderCreated`).
pub(crate) fn apply(
    st: &mut InventoryState,
    env: &Envelope,
    book: &mut StockBook,
    preferred: &str,
) -> Result<Vec<Event>, StockError> {
    let order_id = env.payload.order_id().to_string();
    let mut emit = Vec::new();
    match &env.payload {
        Event::OrderCreated(order) => {
            st.created = true;
            if !st.cancelled && st.hold == Hold::None {
                st.hold = reserve(book, &order_id, order, preferred)?;
            }
        }
        Event::PaymentCaptured(_) => st.paid = true,
        Event::OrderCancelled(_) => st.cancelled = true,
        Event::ReturnAccepted(a) => {
            if !st.restocked.contains(&a.return_id) {
                let lines: Vec<Reservation> = a
                    .lines
                    .iter()
                    .map(|l| Reservation {
                        sku: l.sku.clone(),
                        quantity: l.quantity,
                        warehouse: a.store_id.to_string(),
                    })
                    .collect();
                book.apply(&order_id, &lines, "return", 1, 0)?;
                st.restocked.push(a.return_id);
            }
            return Ok(emit);
        }
        _ => {}
    }
    let oid = env.payload.order_id();
    if st.cancelled {
        match std::mem::take(&mut st.hold) {
            Hold::Reserved { lines } => book.apply(&order_id, &lines, "release", 0, -1)?,
            Hold::Confirmed { lines } => book.apply(&order_id, &lines, "restock", 1, 0)?,
            _ => {}
        }
        st.hold = Hold::Released;
        release_once(st, oid, ORDER_CANCELLED, &mut emit);
    } else if st.paid {
        match std::mem::take(&mut st.hold) {
            Hold::Reserved { lines } => {
                book.apply(&order_id, &lines, "confirm", -1, -1)?;
                emit.push(Event::InventoryConfirmed(InventoryConfirmed {
                    order_id: oid,
                    reservations: lines.clone(),
                }));
                st.hold = Hold::Confirmed { lines };
            }
            Hold::Insufficient => {
                st.hold = Hold::Released;
                release_once(st, oid, INSUFFICIENT_STOCK, &mut emit);
            }
            other => st.hold = other,
        }
    }
    Ok(emit)
}

/// Queues `InventoryReleased` with `reason`, unless one was emitted for
/// this order already (a compensation fires once).
fn release_once(st: &mut InventoryState, order_id: OrderId, reason: &str, emit: &mut Vec<Event>) {
    if !st.release_emitted {
        st.release_emitted = true;
        emit.push(Event::InventoryReleased(InventoryReleased {
            order_id,
            reason: reason.to_owned(),
        }));
    }
}

/// Holds every wanted unit of `order`, or nothing (`Insufficient`).
fn reserve(
    book: &mut StockBook,
    order_id: &str,
    order: &Order,
    preferred: &str,
) -> Result<Hold, StockError> {
    let mut lines = Vec::new();
    for (sku, qty) in wanted(order) {
        match book.pick(&sku, qty, preferred) {
            Some(warehouse) => lines.push(Reservation {
                sku,
                quantity: qty,
                warehouse,
            }),
            None => return Ok(Hold::Insufficient),
        }
    }
    book.apply(order_id, &lines, "reserve", 0, 1)?;
    Ok(Hold::Reserved { lines })
}

#[cfg(test)]
mod tests;
