//! What the store reads for one window (`store::report`): the rows the
//! Z-report is folded from.

use o2c_protocol::CloudStatus;

/// A tender of the Z-report: the day manifest's.
pub use o2c_protocol::day::Tender;

/// One order captured in the window, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    /// UUIDv7.
    pub order_id: String,
    /// Selling terminal.
    pub terminal_id: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Order total, minor units.
    pub total_minor: i64,
    /// Voided (`status = cancelled`).
    pub voided: bool,
    /// `Some((code, reason))` when the cloud rejected it.
    pub rejected: Option<(String, String)>,
    /// Offline card money not yet released by the cloud's ack.
    pub offline_unconfirmed_minor: i64,
    /// Its payments: tender and amount (minor units, order currency).
    pub tenders: Vec<(Tender, i64)>,
}

/// How a return's money goes back (`returns.refund_method`, the wire
/// name of `RefundTender::method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundMethod {
    /// To the card the order was paid with.
    Card,
    /// Cash from the till.
    Cash,
    /// Store credit on a gift card.
    GiftCard,
}

impl RefundMethod {
    /// `card`, `cash` or `gift_card`.
    pub fn parse(s: &str) -> Option<RefundMethod> {
        match s {
            "card" => Some(RefundMethod::Card),
            "cash" => Some(RefundMethod::Cash),
            "gift_card" => Some(RefundMethod::GiftCard),
            _ => None,
        }
    }
}

/// An amount in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amount {
    /// ISO 4217 code.
    pub currency: String,
    /// Minor units.
    pub minor: i64,
}

/// One return taken in the window (by its `created_at_ms`), as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnRow {
    /// The till that took the goods back.
    pub terminal_id: String,
    /// How the money goes back.
    pub refund: RefundMethod,
    /// The amount this agent computed from its own copy of the order;
    /// `None` for an order not known here.
    pub local: Option<Amount>,
    /// The cloud's amount, once one of its statuses gave one.
    pub cloud: Option<Amount>,
    /// The cloud's last status of the return.
    pub cloud_status: Option<CloudStatus>,
}

impl ReturnRow {
    /// The money known to go back: the cloud's figure once it gave one,
    /// else this agent's; `None` until then for an order not known here.
    pub fn amount(&self) -> Option<&Amount> {
        self.cloud.as_ref().or(self.local.as_ref())
    }

    /// Whether the cloud refused it (`return_refused`).
    pub fn refused(&self) -> bool {
        self.cloud_status == Some(CloudStatus::ReturnRefused)
    }
}

/// What an outbox event is, for the completeness check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `OrderCreated`: one per order.
    Created,
    /// `OrderCancelled`: one per void.
    Cancelled,
    /// `ReturnRequested`: one per return.
    ReturnRequested,
    /// Any other type.
    Other,
}

/// An outbox event's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventState {
    /// Acked by the cloud.
    Synced,
    /// Not yet acked.
    Pending,
    /// Refused by the cloud.
    Rejected,
}

/// Outbox rows of the day's orders and returns, counted by terminal, kind
/// and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCount {
    /// The order's terminal (the return's, for a `ReturnRequested`).
    pub terminal_id: String,
    /// Event kind.
    pub kind: EventKind,
    /// Its state.
    pub state: EventState,
    /// How many.
    pub count: u64,
}

/// Everything the store read for one window, from one snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayRows {
    /// The orders captured in the window.
    pub orders: Vec<OrderRow>,
    /// The returns taken in the window.
    pub returns: Vec<ReturnRow>,
    /// Their outbox events still in the outbox.
    pub events: Vec<EventCount>,
}
