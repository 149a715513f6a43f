//! Order-to-Cash events: their types and payloads.
//!
//! `OrderCreated`, `OrderCancelled` and `ReturnRequested` come from
//! stores (the return's payloads are in [`crate::returns`]); the rest come from
//! the cloud saga. The cloud's order service may also emit `OrderCancelled`
//! (for example after a declined payment).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::{OrderId, ReturnId};
use crate::money::Money;
use crate::order::Order;
use crate::returns::{ReturnAccepted, ReturnRefused, ReturnRequested};

/// The type of an event, as written in the envelope's `event_type`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub enum EventType {
    /// A store captured an order.
    OrderCreated,
    /// The order was voided by the store or cancelled by the saga.
    OrderCancelled,
    /// The payment processor captured the money.
    PaymentCaptured,
    /// The payment processor declined.
    PaymentFailed,
    /// Stock was held at capture, for a ship-to-home order the store
    /// checked online (a store reservation the inventory service honoured;
    /// contract 1.2).
    InventoryReserved,
    /// Stock was reserved.
    InventoryConfirmed,
    /// A reservation was released (compensation).
    InventoryReleased,
    /// A shipment was booked for a ship-to-home order.
    ShipmentScheduled,
    /// The carrier picked the parcel up: its tracking number (contract 1.6).
    ShipmentDispatched,
    /// The carrier delivered the parcel (contract 1.6).
    ShipmentDelivered,
    /// A shipment was cancelled before dispatch, at the carrier if it was
    /// booked there (contract 1.6).
    ShipmentCancelled,
    /// The saga finished the order.
    OrderCompleted,
    /// Money was returned: after a void (compensation), or for a return
    /// (with its `return_id`, contract 1.7).
    RefundIssued,
    /// A store took goods back (a store event, contract 1.7).
    ReturnRequested,
    /// The cloud checked a return against its order (contract 1.7).
    ReturnAccepted,
    /// The cloud refused a return (contract 1.7).
    ReturnRefused,
}

impl EventType {
    /// Every event type.
    pub const ALL: [EventType; 16] = [
        EventType::OrderCreated,
        EventType::OrderCancelled,
        EventType::PaymentCaptured,
        EventType::PaymentFailed,
        EventType::InventoryReserved,
        EventType::InventoryConfirmed,
        EventType::InventoryReleased,
        EventType::ShipmentScheduled,
        EventType::ShipmentDispatched,
        EventType::ShipmentDelivered,
        EventType::ShipmentCancelled,
        EventType::OrderCompleted,
        EventType::RefundIssued,
        EventType::ReturnRequested,
        EventType::ReturnAccepted,
        EventType::ReturnRefused,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::OrderCreated => "OrderCreated",
            EventType::OrderCancelled => "OrderCancelled",
            EventType::PaymentCaptured => "PaymentCaptured",
            EventType::PaymentFailed => "PaymentFailed",
            EventType::InventoryReserved => "InventoryReserved",
            EventType::InventoryConfirmed => "InventoryConfirmed",
            EventType::InventoryReleased => "InventoryReleased",
            EventType::ShipmentScheduled => "ShipmentScheduled",
            EventType::ShipmentDispatched => "ShipmentDispatched",
            EventType::ShipmentDelivered => "ShipmentDelivered",
            EventType::ShipmentCancelled => "ShipmentCancelled",
            EventType::OrderCompleted => "OrderCompleted",
            EventType::RefundIssued => "RefundIssued",
            EventType::ReturnRequested => "ReturnRequested",
            EventType::ReturnAccepted => "ReturnAccepted",
            EventType::ReturnRefused => "ReturnRefused",
        }
    }

    /// The Kafka topic (without prefix) that carries this type.
    pub fn kafka_topic(self) -> &'static str {
        match self {
            EventType::OrderCreated => "orders.created",
            EventType::OrderCancelled => "orders.cancelled",
            EventType::PaymentCaptured => "payments.captured",
            EventType::PaymentFailed => "payments.failed",
            EventType::InventoryReserved => "inventory.reserved",
            EventType::InventoryConfirmed => "inventory.confirmed",
            EventType::InventoryReleased => "inventory.released",
            EventType::ShipmentScheduled => "shipments.scheduled",
            EventType::ShipmentDispatched => "shipments.dispatched",
            EventType::ShipmentDelivered => "shipments.delivered",
            EventType::ShipmentCancelled => "shipments.cancelled",
            EventType::OrderCompleted => "orders.completed",
            EventType::RefundIssued => "refunds.issued",
            EventType::ReturnRequested => "returns.requested",
            EventType::ReturnAccepted => "returns.accepted",
            EventType::ReturnRefused => "returns.refused",
        }
    }

    /// Whether a store agent may send this type.
    pub fn is_store_event(self) -> bool {
        matches!(
            self,
            EventType::OrderCreated | EventType::OrderCancelled | EventType::ReturnRequested
        )
    }

    /// Whether a store may send this type only about its own orders. A
    /// return may name any order (a web order returned in a store); the
    /// cloud checks it against that order instead.
    pub fn needs_order_owner(self) -> bool {
        self.is_store_event() && self != EventType::ReturnRequested
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `event_type` string that names no known event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type {0:?}")]
pub struct UnknownEventType(pub String);

impl FromStr for EventType {
    type Err = UnknownEventType;
    fn from_str(s: &str) -> Result<Self, UnknownEventType> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownEventType(s.chars().take(64).collect()))
    }
}

/// `OrderCancelled`: a store void, or a saga cancellation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OrderCancelled {
    /// The order.
    pub order_id: OrderId,
    /// Why, e.g. `store_void` or `payment_declined`.
    pub reason: String,
}

/// `PaymentCaptured`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PaymentCaptured {
    /// The order.
    pub order_id: OrderId,
    /// Amount captured.
    pub amount: Money,
    /// The processor's reference for the capture.
    pub psp_reference: String,
}

/// `PaymentFailed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PaymentFailed {
    /// The order.
    pub order_id: OrderId,
    /// Machine reason, e.g. `payment_declined`.
    pub reason: String,
}

/// One reserved SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Reservation {
    /// SKU.
    pub sku: String,
    /// Units reserved.
    pub quantity: i64,
    /// Warehouse or store the stock comes from.
    pub warehouse: String,
}

/// `InventoryReserved`: the units a store reservation holds for the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InventoryReserved {
    /// The order.
    pub order_id: OrderId,
    /// What is held, where.
    pub reservations: Vec<Reservation>,
}

/// `InventoryConfirmed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InventoryConfirmed {
    /// The order.
    pub order_id: OrderId,
    /// What was reserved, where.
    pub reservations: Vec<Reservation>,
}

/// `InventoryReleased`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InventoryReleased {
    /// The order.
    pub order_id: OrderId,
    /// Why, e.g. `order_cancelled` or `insufficient_stock`.
    pub reason: String,
}

/// `ShipmentScheduled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ShipmentScheduled {
    /// The order.
    pub order_id: OrderId,
    /// The shipment's id.
    pub shipment_id: String,
}

/// `ShipmentDispatched`: the carrier has the parcel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ShipmentDispatched {
    /// The order.
    pub order_id: OrderId,
    /// The shipment's id (from `ShipmentScheduled`).
    pub shipment_id: String,
    /// The carrier's name.
    pub carrier: String,
    /// The carrier's tracking number.
    pub tracking_number: String,
}

/// `ShipmentDelivered`: the carrier reports the parcel delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ShipmentDelivered {
    /// The order.
    pub order_id: OrderId,
    /// The shipment's id.
    pub shipment_id: String,
    /// The carrier's name.
    pub carrier: String,
    /// The carrier's tracking number.
    pub tracking_number: String,
}

/// `ShipmentCancelled`: the shipment will not go out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ShipmentCancelled {
    /// The order.
    pub order_id: OrderId,
    /// The shipment's id.
    pub shipment_id: String,
    /// Why: `order_cancelled` (a void before dispatch) or
    /// `carrier_rejected` (the carrier refused the booking for good).
    pub reason: String,
}

/// `OrderCompleted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OrderCompleted {
    /// The order.
    pub order_id: OrderId,
}

/// `RefundIssued`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RefundIssued {
    /// The order.
    pub order_id: OrderId,
    /// Amount refunded.
    pub amount: Money,
    /// The processor's refund reference.
    pub psp_reference: String,
    /// The return refunded; absent for the refund of a cancelled order
    /// (contract 1.7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_id: Option<ReturnId>,
}

/// An event payload; its variant determines the envelope's `event_type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// See [`EventType::OrderCreated`].
    OrderCreated(Box<Order>),
    /// See [`EventType::OrderCancelled`].
    OrderCancelled(OrderCancelled),
    /// See [`EventType::PaymentCaptured`].
    PaymentCaptured(PaymentCaptured),
    /// See [`EventType::PaymentFailed`].
    PaymentFailed(PaymentFailed),
    /// See [`EventType::InventoryReserved`].
    InventoryReserved(InventoryReserved),
    /// See [`EventType::InventoryConfirmed`].
    InventoryConfirmed(InventoryConfirmed),
    /// See [`EventType::InventoryReleased`].
    InventoryReleased(InventoryReleased),
    /// See [`EventType::ShipmentScheduled`].
    ShipmentScheduled(ShipmentScheduled),
    /// See [`EventType::ShipmentDispatched`].
    ShipmentDispatched(ShipmentDispatched),
    /// See [`EventType::ShipmentDelivered`].
    ShipmentDelivered(ShipmentDelivered),
    /// See [`EventType::ShipmentCancelled`].
    ShipmentCancelled(ShipmentCancelled),
    /// See [`EventType::OrderCompleted`].
    OrderCompleted(OrderCompleted),
    /// See [`EventType::RefundIssued`].
    RefundIssued(RefundIssued),
    /// See [`EventType::ReturnRequested`].
    ReturnRequested(ReturnRequested),
    /// See [`EventType::ReturnAccepted`].
    ReturnAccepted(ReturnAccepted),
    /// See [`EventType::ReturnRefused`].
    ReturnRefused(ReturnRefused),
}

impl Event {
    /// The event's type.
    pub fn event_type(&self) -> EventType {
        match self {
            Event::OrderCreated(_) => EventType::OrderCreated,
            Event::OrderCancelled(_) => EventType::OrderCancelled,
            Event::PaymentCaptured(_) => EventType::PaymentCaptured,
            Event::PaymentFailed(_) => EventType::PaymentFailed,
            Event::InventoryReserved(_) => EventType::InventoryReserved,
            Event::InventoryConfirmed(_) => EventType::InventoryConfirmed,
            Event::InventoryReleased(_) => EventType::InventoryReleased,
            Event::ShipmentScheduled(_) => EventType::ShipmentScheduled,
            Event::ShipmentDispatched(_) => EventType::ShipmentDispatched,
            Event::ShipmentDelivered(_) => EventType::ShipmentDelivered,
            Event::ShipmentCancelled(_) => EventType::ShipmentCancelled,
            Event::OrderCompleted(_) => EventType::OrderCompleted,
            Event::RefundIssued(_) => EventType::RefundIssued,
            Event::ReturnRequested(_) => EventType::ReturnRequested,
            Event::ReturnAccepted(_) => EventType::ReturnAccepted,
            Event::ReturnRefused(_) => EventType::ReturnRefused,
        }
    }

    /// The order this event is about (the Kafka key).
    pub fn order_id(&self) -> OrderId {
        match self {
            Event::OrderCreated(o) => o.order_id,
            Event::OrderCancelled(e) => e.order_id,
            Event::PaymentCaptured(e) => e.order_id,
            Event::PaymentFailed(e) => e.order_id,
            Event::InventoryReserved(e) => e.order_id,
            Event::InventoryConfirmed(e) => e.order_id,
            Event::InventoryReleased(e) => e.order_id,
            Event::ShipmentScheduled(e) => e.order_id,
            Event::ShipmentDispatched(e) => e.order_id,
            Event::ShipmentDelivered(e) => e.order_id,
            Event::ShipmentCancelled(e) => e.order_id,
            Event::OrderCompleted(e) => e.order_id,
            Event::RefundIssued(e) => e.order_id,
            Event::ReturnRequested(e) => e.order_id,
            Event::ReturnAccepted(e) => e.order_id,
            Event::ReturnRefused(e) => e.order_id,
        }
    }

    /// Serializes the payload alone.
    pub(crate) fn payload_json(
        &self,
    ) -> Result<Box<serde_json::value::RawValue>, serde_json::Error> {
        match self {
            Event::OrderCreated(e) => serde_json::value::to_raw_value(e),
            Event::OrderCancelled(e) => serde_json::value::to_raw_value(e),
            Event::PaymentCaptured(e) => serde_json::value::to_raw_value(e),
            Event::PaymentFailed(e) => serde_json::value::to_raw_value(e),
            Event::InventoryReserved(e) => serde_json::value::to_raw_value(e),
            Event::InventoryConfirmed(e) => serde_json::value::to_raw_value(e),
            Event::InventoryReleased(e) => serde_json::value::to_raw_value(e),
            Event::ShipmentScheduled(e) => serde_json::value::to_raw_value(e),
            Event::ShipmentDispatched(e) => serde_json::value::to_raw_value(e),
            Event::ShipmentDelivered(e) => serde_json::value::to_raw_value(e),
            Event::ShipmentCancelled(e) => serde_json::value::to_raw_value(e),
            Event::OrderCompleted(e) => serde_json::value::to_raw_value(e),
            Event::RefundIssued(e) => serde_json::value::to_raw_value(e),
            Event::ReturnRequested(e) => serde_json::value::to_raw_value(e),
            Event::ReturnAccepted(e) => serde_json::value::to_raw_value(e),
            Event::ReturnRefused(e) => serde_json::value::to_raw_value(e),
        }
    }

    /// Decodes a payload of a known type.
    pub(crate) fn from_payload(t: EventType, json: &str) -> Result<Event, serde_json::Error> {
        Ok(match t {
            EventType::OrderCreated => Event::OrderCreated(serde_json::from_str(json)?),
            EventType::OrderCancelled => Event::OrderCancelled(serde_json::from_str(json)?),
            EventType::PaymentCaptured => Event::PaymentCaptured(serde_json::from_str(json)?),
            EventType::PaymentFailed => Event::PaymentFailed(serde_json::from_str(json)?),
            EventType::InventoryReserved => Event::InventoryReserved(serde_json::from_str(json)?),
            EventType::InventoryConfirmed => Event::InventoryConfirmed(serde_json::from_str(json)?),
            EventType::InventoryReleased => Event::InventoryReleased(serde_json::from_str(json)?),
            EventType::ShipmentScheduled => Event::ShipmentScheduled(serde_json::from_str(json)?),
            EventType::ShipmentDispatched => Event::ShipmentDispatched(serde_json::from_str(json)?),
            EventType::ShipmentDelivered => Event::ShipmentDelivered(serde_json::from_str(json)?),
            EventType::ShipmentCancelled => Event::ShipmentCancelled(serde_json::from_str(json)?),
            EventType::OrderCompleted => Event::OrderCompleted(serde_json::from_str(json)?),
            EventType::RefundIssued => Event::RefundIssued(serde_json::from_str(json)?),
            EventType::ReturnRequested => Event::ReturnRequested(serde_json::from_str(json)?),
            EventType::ReturnAccepted => Event::ReturnAccepted(serde_json::from_str(json)?),
            EventType::ReturnRefused => Event::ReturnRefused(serde_json::from_str(json)?),
        })
    }
}
