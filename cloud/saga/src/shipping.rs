//! The shipping service: books a shipment for a `ship_to_home` order once
//! its stock is confirmed (`ShipmentScheduled`) and notifies the customer;
//! `carry_out` orders need none. A cancellation after booking cancels the
//! shipment and sends a cancellation notice: the first notice is never
//! taken back, it is followed by another.

use o2c_protocol::event::ShipmentScheduled;
use o2c_protocol::{Envelope, Event, EventType, Fulfillment, KafkaTopics};
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

/// Where one order's shipment stands.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShipPhase {
    /// Waiting for the order or its stock.
    #[default]
    Pending,
    /// Carry-out: nothing to ship.
    NotNeeded,
    /// Booked.
    Scheduled,
    /// Cancelled (before or after booking).
    Cancelled,
}

/// The shipping state of one order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ShippingState {
    /// From `OrderCreated`: `Some(true)` for ship-to-home.
    pub ship_to_home: Option<bool>,
    /// `InventoryConfirmed` seen.
    pub confirmed: bool,
    /// Where it stands.
    pub phase: ShipPhase,
    /// The booked shipment.
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

impl ShippingState {
    /// Records `event`; returns the event to emit and the notice to send.
    pub fn apply(
        &mut self,
        event: &Event,
        new_id: impl FnOnce() -> String,
    ) -> (Vec<Event>, Option<Notice>) {
        match event {
            Event::OrderCreated(o) => {
                self.ship_to_home = Some(matches!(o.fulfillment, Fulfillment::ShipToHome { .. }))
            }
            // Only a pending order needs it; recording it anyway would
            // rewrite the state of every carry-out order for nothing.
            Event::InventoryConfirmed(_) if self.phase == ShipPhase::Pending => {
                self.confirmed = true;
            }
            Event::OrderCancelled(_) => {
                let was = std::mem::replace(&mut self.phase, ShipPhase::Cancelled);
                return match was {
                    ShipPhase::Scheduled => (Vec::new(), Some(Notice::Cancelled)),
                    ShipPhase::NotNeeded => {
                        self.phase = ShipPhase::NotNeeded;
                        (Vec::new(), None)
                    }
                    _ => (Vec::new(), None),
                };
            }
            _ => {}
        }
        if self.phase != ShipPhase::Pending {
            return (Vec::new(), None);
        }
        match self.ship_to_home {
            Some(false) => {
                self.phase = ShipPhase::NotNeeded;
                (Vec::new(), None)
            }
            Some(true) if self.confirmed => {
                let shipment_id = new_id();
                self.phase = ShipPhase::Scheduled;
                self.shipment_id = Some(shipment_id.clone());
                let e = Event::ShipmentScheduled(ShipmentScheduled {
                    order_id: event.order_id(),
                    shipment_id,
                });
                (vec![e], Some(Notice::Scheduled))
            }
            _ => (Vec::new(), None),
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
        for env in batch.fresh() {
            let order = env.payload.order_id();
            let (emit, notice) = batch.state_mut(order).apply(&env.payload, || {
                format!("shp_{}", outbox::new_event_id().as_uuid().simple())
            });
            if let Some(n) = notice {
                notice_orders.push(order.to_string());
                notice_kinds.push(n.kind());
            }
            for e in emit {
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
        batch.close(tx, &self.topics).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use o2c_protocol::OrderId;
    use o2c_protocol::event::{InventoryConfirmed, OrderCancelled};

    #[test]
    fn schedules_once_and_a_void_sends_a_cancellation_notice() {
        let order_id = OrderId::from_parts(1, [2; 10]);
        let mut s = ShippingState {
            ship_to_home: Some(true),
            ..Default::default()
        };
        let confirmed = Event::InventoryConfirmed(InventoryConfirmed {
            order_id,
            reservations: vec![],
        });
        let (e, n) = s.apply(&confirmed, || "shp_1".into());
        assert!(matches!(e.as_slice(), [Event::ShipmentScheduled(_)]));
        assert_eq!(n, Some(Notice::Scheduled));
        assert_eq!(s.apply(&confirmed, || "shp_2".into()), (vec![], None));
        let void = Event::OrderCancelled(OrderCancelled {
            order_id,
            reason: "store_void".into(),
        });
        assert_eq!(
            s.apply(&void, || unreachable!()),
            (vec![], Some(Notice::Cancelled))
        );
        assert_eq!(s.apply(&void, || unreachable!()), (vec![], None));
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
        assert_eq!(s.apply(&confirmed, || unreachable!()), (vec![], None));
        // Unchanged, so the batch writes no state row for it.
        assert_eq!(s, before);
    }
}
