//! The order service: follows each order through the saga and decides its
//! end: `OrderCompleted`, or `OrderCancelled` after a declined payment or
//! insufficient stock.
//!
//! Events may arrive in any order across topics (and again on replay), so
//! the state records what has been seen and [`OrderState::apply`] decides
//! only from that: it completes once the order and the stock confirmation
//! are known and, for `ship_to_home`, once the carrier has delivered
//! (`ShipmentDelivered`). A shipment cancelled while the order is open (the
//! carrier refused it) cancels the order, whose compensations follow.
//!
//! Returns (contract 1.7) are decided here, once each, in the order's
//! state: a `ReturnRequested` is held until the order has settled, then
//! checked against the sale and the returns accepted before
//! ([`o2c_protocol::returns::assess_sale`]) and answered with
//! `ReturnAccepted` or `ReturnRefused`, on behalf of the store that took
//! the goods back (its store, agent and trace). A cancelled order refuses
//! every return. The order's own phase never changes with a return.

use o2c_protocol::event::{OrderCancelled, OrderCompleted};
use o2c_protocol::returns::{ReturnLedger, Sale};
use o2c_protocol::{Envelope, Event, EventType, Fulfillment, KafkaTopics, ReturnId};
use serde::{Deserialize, Serialize};

use super::batch::Batch;
use super::consumer::{Step, StepError};
use super::db::Tx;
use crate::pool::Pg;

/// Where an order stands for the order service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// In progress.
    #[default]
    Open,
    /// `OrderCompleted` was emitted.
    Completed,
    /// Cancelled (by the store, or by this service).
    Cancelled,
}

/// What the order service knows about one order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OrderState {
    /// `OrderCreated` seen; `Some(true)` for ship-to-home.
    pub ship_to_home: Option<bool>,
    /// `PaymentCaptured` seen.
    pub paid: bool,
    /// `PaymentFailed` reason.
    pub payment_failed: Option<String>,
    /// `InventoryConfirmed` seen.
    pub inventory_confirmed: bool,
    /// `InventoryReleased` reason.
    pub released: Option<String>,
    /// `ShipmentDelivered` seen.
    #[serde(default)]
    pub delivered: bool,
    /// `ShipmentCancelled` reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment_cancelled: Option<String>,
    /// Where it stands.
    pub phase: Phase,
    /// Why it was cancelled.
    pub cancel_reason: Option<String>,
    /// What was sold and paid, for returns (`OrderCreated` seen; orders
    /// created before contract 1.7 have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sale: Option<Sale>,
    /// What the accepted returns gave back.
    #[serde(default, skip_serializing_if = "ReturnLedger::is_empty")]
    pub returned: ReturnLedger,
    /// Returns answered (accepted or refused): each is decided once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decided: Vec<ReturnId>,
    /// Returns waiting for the order to settle, with the envelope each
    /// came in (JSON).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<HeldReturn>,
}

/// A return waiting for its order to settle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldReturn {
    /// The return.
    pub return_id: ReturnId,
    /// Its `ReturnRequested` envelope as received (JSON): the answer goes
    /// to its store and agent, under its trace.
    pub cause: String,
}

impl OrderState {
    /// Records `event` and returns the events to emit (at most one).
    pub fn apply(&mut self, event: &Event) -> Vec<Event> {
        match event {
            Event::OrderCreated(o) => {
                self.ship_to_home = Some(matches!(o.fulfillment, Fulfillment::ShipToHome { .. }));
                self.sale = Some(Sale::of(o));
            }
            Event::PaymentCaptured(_) => self.paid = true,
            Event::PaymentFailed(f) => self.payment_failed = Some(f.reason.clone()),
            Event::InventoryConfirmed(_) => self.inventory_confirmed = true,
            Event::InventoryReleased(r) => self.released = Some(r.reason.clone()),
            Event::ShipmentDelivered(_) => self.delivered = true,
            Event::ShipmentCancelled(c) => self.shipment_cancelled = Some(c.reason.clone()),
            Event::OrderCancelled(c) => {
                if self.phase != Phase::Cancelled {
                    self.phase = Phase::Cancelled;
                    self.cancel_reason = Some(c.reason.clone());
                }
            }
            Event::OrderCompleted(_)
            | Event::RefundIssued(_)
            | Event::ReturnRequested(_)
            | Event::ReturnAccepted(_)
            | Event::ReturnRefused(_)
            | Event::InventoryReserved(_)
            | Event::ShipmentScheduled(_)
            | Event::ShipmentDispatched(_) => {}
        }
        if self.phase != Phase::Open {
            return Vec::new();
        }
        let order_id = event.order_id();
        let cancel = |s: &mut Self, reason: String| {
            s.phase = Phase::Cancelled;
            s.cancel_reason = Some(reason.clone());
            vec![Event::OrderCancelled(OrderCancelled { order_id, reason })]
        };
        if let Some(reason) = self.payment_failed.clone() {
            return cancel(self, reason);
        }
        if self.released.as_deref() == Some(INSUFFICIENT_STOCK) {
            return cancel(self, INSUFFICIENT_STOCK.to_owned());
        }
        if let Some(reason) = &self.shipment_cancelled {
            return cancel(self, format!("shipment_{reason}"));
        }
        let shipped_if_needed = match self.ship_to_home {
            Some(true) => self.delivered,
            Some(false) => true,
            None => false,
        };
        if self.inventory_confirmed && shipped_if_needed {
            self.phase = Phase::Completed;
            return vec![Event::OrderCompleted(OrderCompleted { order_id })];
        }
        Vec::new()
    }
}

/// The release reason that cancels an order.
pub const INSUFFICIENT_STOCK: &str = "insufficient_stock";

/// Topics the order service consumes.
pub const SUBSCRIBES: &[EventType] = &[
    EventType::OrderCreated,
    EventType::ReturnRequested,
    EventType::OrderCancelled,
    EventType::PaymentCaptured,
    EventType::PaymentFailed,
    EventType::InventoryConfirmed,
    EventType::InventoryReleased,
    EventType::ShipmentDelivered,
    EventType::ShipmentCancelled,
];

/// The order service's step.
#[derive(Debug)]
pub(crate) struct OrderStep {
    pub(crate) pg: Pg,
    pub(crate) topics: KafkaTopics,
}

pub(crate) const SCHEMA: &str = "o2c_order";

impl Step for OrderStep {
    fn pg(&self) -> &Pg {
        &self.pg
    }

    async fn handle_in(&self, tx: &Tx<'_>, events: &[&Envelope]) -> Result<(), StepError> {
        let mut batch = Batch::<OrderState>::open(tx, SCHEMA, events).await?;
        for env in batch.fresh() {
            let st = batch.state_mut(env.payload.order_id());
            if matches!(env.payload, Event::ReturnRequested(_)) {
                st.hold_return(env).map_err(bad_state)?;
            }
            let emit = st.apply(&env.payload);
            let answers = st.settle_returns().map_err(bad_state)?;
            for e in emit {
                batch.emit(env, e);
            }
            for (cause, e) in answers {
                batch.emit_as(cause, e);
            }
        }
        batch.close(tx, &self.topics).await?;
        Ok(())
    }
}

fn bad_state(e: returns::ReturnStateError) -> StepError {
    StepError::Poison {
        code: "bad_state",
        detail: e.to_string(),
    }
}

mod returns;

#[cfg(test)]
mod tests {
    use super::*;
    use o2c_protocol::OrderId;
    use o2c_protocol::event::{
        InventoryConfirmed, PaymentFailed, ShipmentCancelled, ShipmentDelivered,
    };

    fn oid() -> OrderId {
        OrderId::from_parts(1, [1; 10])
    }

    #[test]
    fn completes_once_all_facts_are_in_whatever_their_order() {
        let confirmed = Event::InventoryConfirmed(InventoryConfirmed {
            order_id: oid(),
            reservations: vec![],
        });
        let shipped = Event::ShipmentDelivered(ShipmentDelivered {
            order_id: oid(),
            shipment_id: "s".into(),
            carrier: "c".into(),
            tracking_number: "t".into(),
        });
        let mut s = OrderState {
            ship_to_home: Some(true),
            ..Default::default()
        };
        assert!(s.apply(&shipped).is_empty());
        let out = s.apply(&confirmed);
        assert!(matches!(out.as_slice(), [Event::OrderCompleted(_)]));
        // A replay emits nothing more.
        assert!(s.apply(&confirmed).is_empty());
        assert_eq!(s.phase, Phase::Completed);
    }

    #[test]
    fn a_ship_to_home_order_waits_for_delivery_and_a_refused_shipment_cancels_it() {
        let confirmed = Event::InventoryConfirmed(InventoryConfirmed {
            order_id: oid(),
            reservations: vec![],
        });
        let mut s = OrderState {
            ship_to_home: Some(true),
            ..Default::default()
        };
        assert!(s.apply(&confirmed).is_empty(), "not delivered yet");
        let refused = Event::ShipmentCancelled(ShipmentCancelled {
            order_id: oid(),
            shipment_id: "s".into(),
            reason: "carrier_rejected".into(),
        });
        let out = s.apply(&refused);
        assert!(
            matches!(out.as_slice(), [Event::OrderCancelled(c)] if c.reason == "shipment_carrier_rejected"),
            "{out:?}"
        );
        assert!(s.apply(&refused).is_empty());
    }

    #[test]
    fn a_decline_cancels_once() {
        let mut s = OrderState::default();
        let failed = Event::PaymentFailed(PaymentFailed {
            order_id: oid(),
            reason: "payment_declined".into(),
        });
        let out = s.apply(&failed);
        assert!(
            matches!(out.as_slice(), [Event::OrderCancelled(c)] if c.reason == "payment_declined")
        );
        assert!(s.apply(&failed).is_empty());
        // Our own cancellation coming back changes nothing.
        assert!(
            s.apply(&Event::OrderCancelled(OrderCancelled {
                order_id: oid(),
                reason: "payment_declined".into()
            }))
            .is_empty()
        );
    }
}
