//! The shipping service: ships a `ship_to_home` order once its stock is
//! confirmed, follows the parcel to the customer's door, and cancels it if
//! the order is cancelled first. `carry_out` orders need none.
//!
//! - The step ([`ShippingStep`], this file) decides: on the stock
//!   confirmation it mints a shipment id, emits `ShipmentScheduled` and
//!   records the shipment to book (`o2c_shipping.shipments`), in one
//!   transaction; on a cancellation it flags that row. Its state type
//!   ([`ShippingState`]) is pure, with unit tests.
//! - The tracker ([`worker`], deciding with the pure [`tracker`]) acts: it books each recorded shipment at
//!   the carrier ([`carrier`], idempotent by shipment id), asks the carrier
//!   where each booked parcel is, and emits `ShipmentDispatched` (with the
//!   tracking number), `ShipmentDelivered` or `ShipmentCancelled`, each in
//!   the transaction that records the new state.
//!
//! A customer notice is never taken back: a cancellation after booking
//! records a cancellation notice after the scheduling one.

pub mod carrier;
pub mod tracker;
pub(crate) mod worker;

use o2c_protocol::event::ShipmentScheduled;
use o2c_protocol::{Address, Envelope, Event, EventType, Fulfillment, KafkaTopics};
use serde::{Deserialize, Serialize};

use super::batch::Batch;
use super::consumer::{Step, StepError};
use super::db::Tx;
use super::outbox;
use crate::pool::Pg;

pub(crate) const SCHEMA: &str = "o2c_shipping";

/// Topics the shipping service consumes.
pub const SUBSCRIBES: &[EventType] = &[
    EventType::OrderCreated,
    EventType::InventoryConfirmed,
    EventType::OrderCancelled,
];

/// Where one order's shipment stands for the step (the carrier side is
/// the tracker's, in `o2c_shipping.shipments`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShipPhase {
    /// Waiting for the order or its stock.
    #[default]
    Pending,
    /// Carry-out: nothing to ship.
    NotNeeded,
    /// Scheduled: handed to the tracker.
    Scheduled,
    /// Cancelled (before or after scheduling).
    Cancelled,
}

/// What goes in the parcel, and where: from `OrderCreated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parcel {
    /// The delivery address.
    pub address: Address,
    /// Units of all lines.
    pub units: i64,
}

/// The shipping state of one order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ShippingState {
    /// From `OrderCreated`: `Some(true)` for ship-to-home.
    pub ship_to_home: Option<bool>,
    /// A ship-to-home order's parcel, until it is scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parcel: Option<Parcel>,
    /// `InventoryConfirmed` seen.
    pub confirmed: bool,
    /// Where it stands.
    pub phase: ShipPhase,
    /// The scheduled shipment.
    pub shipment_id: Option<String>,
}

/// A customer notice to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// "Your order ships."
    Scheduled,
    /// "Your shipment is cancelled."
    Cancelled,
}

impl Notice {
    fn kind(self) -> &'static str {
        match self {
            Notice::Scheduled => "shipment_scheduled",
            Notice::Cancelled => "shipment_cancelled",
        }
    }
}

/// What one event calls for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Events to emit.
    pub emit: Vec<Event>,
    /// A notice to record.
    pub notice: Option<Notice>,
    /// A shipment to hand to the tracker: its id and parcel.
    pub book: Option<(String, Parcel)>,
    /// The scheduled shipment is to be cancelled.
    pub cancel: bool,
}

impl ShippingState {
    /// Records `event`; returns what it calls for.
    pub fn apply(&mut self, event: &Event, new_id: impl FnOnce() -> String) -> Outcome {
        match event {
            Event::OrderCreated(o) => {
                if let Fulfillment::ShipToHome { address } = &o.fulfillment {
                    self.ship_to_home = Some(true);
                    self.parcel = Some(Parcel {
                        address: address.clone(),
                        units: o
                            .lines
                            .iter()
                            .fold(0i64, |a, l| a.saturating_add(l.quantity)),
                    });
                } else {
                    self.ship_to_home = Some(false);
                }
            }
            // Only a pending order needs it; recording it anyway would
            // rewrite the state of every carry-out order for nothing.
            Event::InventoryConfirmed(_) if self.phase == ShipPhase::Pending => {
                self.confirmed = true;
            }
            Event::OrderCancelled(_) => {
                return match self.phase {
                    ShipPhase::Scheduled => {
                        self.phase = ShipPhase::Cancelled;
                        Outcome {
                            notice: Some(Notice::Cancelled),
                            cancel: true,
                            ..Outcome::default()
                        }
                    }
                    ShipPhase::Pending => {
                        self.phase = ShipPhase::Cancelled;
                        self.parcel = None;
                        Outcome::default()
                    }
                    ShipPhase::NotNeeded | ShipPhase::Cancelled => Outcome::default(),
                };
            }
            _ => {}
        }
        if self.phase != ShipPhase::Pending {
            return Outcome::default();
        }
        match self.ship_to_home {
            Some(false) => {
                self.phase = ShipPhase::NotNeeded;
                Outcome::default()
            }
            Some(true) if self.confirmed => {
                let Some(parcel) = self.parcel.take() else {
                    return Outcome::default();
                };
                let shipment_id = new_id();
                self.phase = ShipPhase::Scheduled;
                self.shipment_id = Some(shipment_id.clone());
                let e = Event::ShipmentScheduled(ShipmentScheduled {
                    order_id: event.order_id(),
                    shipment_id: shipment_id.clone(),
                });
                Outcome {
                    emit: vec![e],
                    notice: Some(Notice::Scheduled),
                    book: Some((shipment_id, parcel)),
                    cancel: false,
                }
            }
            _ => Outcome::default(),
        }
    }
}

/// The shipping service's step.
#[derive(Debug)]
pub(crate) struct ShippingStep {
    pub(crate) pg: Pg,
    pub(crate) topics: KafkaTopics,
}

impl Step for ShippingStep {
    fn pg(&self) -> &Pg {
        &self.pg
    }

    async fn handle_in(&self, tx: &Tx<'_>, events: &[&Envelope]) -> Result<(), StepError> {
        let mut batch = Batch::<ShippingState>::open(tx, SCHEMA, events).await?;
        let (mut notice_orders, mut notice_kinds) = (Vec::new(), Vec::new());
        let mut books = worker::NewShipments::default();
        let mut cancels = Vec::new();
        for env in batch.fresh() {
            let order = env.payload.order_id();
            let out = batch.state_mut(order).apply(&env.payload, || {
                format!("shp_{}", outbox::new_event_id().as_uuid().simple())
            });
            if let Some(n) = out.notice {
                notice_orders.push(order.to_string());
                notice_kinds.push(n.kind());
            }
            if let Some((shipment_id, parcel)) = out.book {
                books.push(env, shipment_id, &parcel)?;
            }
            if out.cancel {
                cancels.push(order.to_string());
            }
            for e in out.emit {
                batch.emit(env, e);
            }
        }
        if !notice_orders.is_empty() {
            tx.execute(
                &format!(
                    "INSERT INTO {SCHEMA}.notifications (order_id, kind) \
                     SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING"
                ),
                &[&notice_orders, &notice_kinds],
            )
            .await?;
        }
        books.insert(tx).await?;
        worker::request_cancel(tx, &cancels).await?;
        batch.close(tx, &self.topics).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use o2c_protocol::OrderId;
    use o2c_protocol::event::{InventoryConfirmed, OrderCancelled};

    fn parcel() -> Parcel {
        Parcel {
            address: Address {
                name: "A. Customer".into(),
                line1: "1 Main St".into(),
                line2: None,
                city: "Montreal".into(),
                region: None,
                postal_code: "H2X 1Y4".into(),
                country: "CA".into(),
            },
            units: 3,
        }
    }

    #[test]
    fn schedules_once_and_a_void_cancels_the_shipment_with_a_notice() {
        let order_id = OrderId::from_parts(1, [2; 10]);
        let mut s = ShippingState {
            ship_to_home: Some(true),
            parcel: Some(parcel()),
            ..Default::default()
        };
        let confirmed = Event::InventoryConfirmed(InventoryConfirmed {
            order_id,
            reservations: vec![],
        });
        let out = s.apply(&confirmed, || "shp_1".into());
        assert!(matches!(out.emit.as_slice(), [Event::ShipmentScheduled(_)]));
        assert_eq!(out.notice, Some(Notice::Scheduled));
        assert_eq!(out.book, Some(("shp_1".into(), parcel())));
        assert_eq!(s.parcel, None, "the parcel is the tracker's now");
        assert_eq!(s.apply(&confirmed, || "shp_2".into()), Outcome::default());
        let void = Event::OrderCancelled(OrderCancelled {
            order_id,
            reason: "store_void".into(),
        });
        let out = s.apply(&void, || unreachable!());
        assert_eq!(out.notice, Some(Notice::Cancelled));
        assert!(out.cancel && out.emit.is_empty());
        assert_eq!(s.apply(&void, || unreachable!()), Outcome::default());
    }

    #[test]
    fn a_void_before_the_stock_confirmation_ships_nothing() {
        let order_id = OrderId::from_parts(1, [4; 10]);
        let mut s = ShippingState {
            ship_to_home: Some(true),
            parcel: Some(parcel()),
            ..Default::default()
        };
        let void = Event::OrderCancelled(OrderCancelled {
            order_id,
            reason: "store_void".into(),
        });
        assert_eq!(s.apply(&void, || unreachable!()), Outcome::default());
        let confirmed = Event::InventoryConfirmed(InventoryConfirmed {
            order_id,
            reservations: vec![],
        });
        assert_eq!(s.apply(&confirmed, || unreachable!()), Outcome::default());
        assert_eq!(s.phase, ShipPhase::Cancelled);
    }

    #[test]
    fn a_carry_out_order_is_left_unchanged_by_its_stock_confirmation() {
        let order_id = OrderId::from_parts(1, [3; 10]);
        let mut s = ShippingState {
            ship_to_home: Some(false),
            phase: ShipPhase::NotNeeded,
            ..Default::default()
        };
        let before = s.clone();
        let confirmed = Event::InventoryConfirmed(InventoryConfirmed {
            order_id,
            reservations: vec![],
        });
        assert_eq!(s.apply(&confirmed, || unreachable!()), Outcome::default());
        // Unchanged, so the batch writes no state row for it.
        assert_eq!(s, before);
    }
}
