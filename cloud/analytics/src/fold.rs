//! What one event does to the analytics, decided without I/O: which change
//! it makes to its order's record (applied by the counters' Lua script,
//! [`crate::counters`]), and the facts built back from that record
//! ([`crate::facts`]).
//!
//! Every sale is booked by **event time**: the hour (UTC) and the business
//! date (at the configured offset) of the order's `captured_at`, whenever
//! it arrives. A void or a refund changes the figures of the hour and day
//! the order was captured in, so a day's figures are its orders' net
//! figures. Arrival time only decides whether an order counts as captured
//! offline and arriving late.

use std::collections::BTreeMap;

use o2c_protocol::{Envelope, Event, Order};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{OffsetDateTime, UtcOffset};

/// The category name of a line without one.
pub const UNCATEGORIZED: &str = "uncategorized";
/// The channel of orders captured at a store's till.
pub const POS: &str = "pos";

/// Why an event cannot be folded (it is dead-lettered with this reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FoldError {
    /// An order whose amounts do not add up (overflow, mixed currencies).
    #[error("invalid order {order}: {detail}")]
    InvalidOrder {
        /// The order.
        order: String,
        /// What was wrong.
        detail: String,
    },
    /// A time outside what the fact tables can hold.
    #[error("{field} out of range: {detail}")]
    TimeOutOfRange {
        /// Which time.
        field: &'static str,
        /// The value.
        detail: String,
    },
}

impl FoldError {
    /// Stable dead-letter reason.
    pub fn code(&self) -> &'static str {
        match self {
            FoldError::InvalidOrder { .. } => "invalid_payload",
            FoldError::TimeOutOfRange { .. } => "time_out_of_range",
        }
    }
}

/// What an order was at capture: stored once in its record, and what
/// every later event's figures and facts are computed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    /// The order.
    pub order_id: String,
    /// The selling store.
    pub store_id: String,
    /// `pos`, `web`, `mobile`.
    pub channel: String,
    /// SHA-256 of the customer's normalised e-mail (else phone), hex; empty
    /// when the order names no customer. No contact detail is stored.
    pub customer_key: String,
    /// Capture time, Unix seconds.
    pub captured_s: i64,
    /// The capture hour (UTC), `YYYYMMDDHH`: the hourly counters' key.
    pub h: String,
    /// The business date, `YYYYMMDD`: the daily counters' key.
    pub d: String,
    /// The business date as days since 1970-01-01 (ClickHouse `Date`).
    pub day_number: u16,
    /// ISO 4217 code of every amount.
    pub cur: String,
    /// The order's total, minor units.
    pub total: i64,
    /// Counter scopes: `""` (fleet), `s:{store}|`, `c:{channel}|`.
    pub scopes: Vec<String>,
    /// `[category, minor]`, by category.
    pub cats: Vec<(String, i64)>,
    /// `[method, minor]`, by tender method (split tenders add up).
    pub tenders: Vec<(String, i64)>,
    /// Reached Kafka more than the configured delay after capture.
    pub late: bool,
    /// The tender methods, sorted, joined by `+` (`card+cash`).
    pub payment_method: String,
    /// Units sold.
    pub items: u32,
    /// The lines, for `fact_order_items`.
    pub lines: Vec<Line>,
}

/// One line of [`Base`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// SKU.
    pub sku: String,
    /// Category (or [`UNCATEGORIZED`]).
    pub category: String,
    /// Units.
    pub quantity: i64,
    /// Unit price, minor units.
    pub unit_minor: i64,
}

/// The change an event makes to its order's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The sale: its base.
    Created(Box<Base>),
    /// Voided at the store or cancelled by the saga.
    Cancelled,
    /// Money given back (minor units of the order's currency).
    Refunded(i64),
    /// Payment captured.
    Paid,
    /// Payment failed.
    PaymentFailed,
    /// Completed at this time (Unix milliseconds).
    Completed(i64),
}

impl Change {
    /// The Lua script's op name.
    pub fn op(&self) -> &'static str {
        match self {
            Change::Created(_) => "created",
            Change::Cancelled => "cancelled",
            Change::Refunded(_) => "refunded",
            Change::Paid => "paid",
            Change::PaymentFailed => "payment_failed",
            Change::Completed(_) => "completed",
        }
    }
}

/// A shipment fact, straight from its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipment {
    /// The shipment.
    pub shipment_id: String,
    /// Its order.
    pub order_id: String,
    /// The order's store.
    pub store_id: String,
    /// When it was scheduled, Unix seconds.
    pub scheduled_s: i64,
}

/// What to do with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Folded {
    /// Change the order's record (and its counters and facts).
    Order {
        /// The order.
        order_id: String,
        /// The change.
        change: Change,
    },
    /// Record a shipment.
    Shipment(Shipment),
    /// Nothing for analytics (stock events).
    Ignore,
}

/// The fold's settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The business day's offset from UTC.
    pub offset: UtcOffset,
    /// An order arriving later than this after capture is late.
    pub late_after_secs: i64,
}

/// Folds one event. `arrived` is when it reached Kafka (the record's
/// timestamp).
pub fn fold(env: &Envelope, arrived: OffsetDateTime, s: Settings) -> Result<Folded, FoldError> {
    Ok(match &env.payload {
        Event::OrderCreated(order) => Folded::Order {
            order_id: order.order_id.to_string(),
            change: Change::Created(Box::new(base(order, arrived, s)?)),
        },
        Event::OrderCancelled(e) => order_change(&e.order_id, Change::Cancelled),
        // A return's money counts when the return is accepted, whatever
        // its tender (cash and gift cards have no RefundIssued): its card
        // refund must not count it twice.
        Event::RefundIssued(e) if e.return_id.is_some() => Folded::Ignore,
        Event::RefundIssued(e) => order_change(&e.order_id, Change::Refunded(e.amount.minor)),
        Event::ReturnAccepted(e) => order_change(&e.order_id, Change::Refunded(e.amount.minor)),
        Event::PaymentCaptured(e) => order_change(&e.order_id, Change::Paid),
        Event::PaymentFailed(e) => order_change(&e.order_id, Change::PaymentFailed),
        Event::OrderCompleted(e) => {
            order_change(&e.order_id, Change::Completed(unix_ms(env.occurred_at)))
        }
        Event::ShipmentScheduled(e) => Folded::Shipment(Shipment {
            shipment_id: e.shipment_id.clone(),
            order_id: e.order_id.to_string(),
            store_id: env.store_id.to_string(),
            scheduled_s: env.occurred_at.unix_timestamp(),
        }),
        Event::InventoryReserved(_)
        | Event::InventoryConfirmed(_)
        | Event::InventoryReleased(_)
        | Event::ShipmentDispatched(_)
        | Event::ShipmentDelivered(_)
        | Event::ShipmentCancelled(_)
        | Event::ReturnRequested(_)
        | Event::ReturnRefused(_) => Folded::Ignore,
    })
}

fn order_change(id: &o2c_protocol::OrderId, change: Change) -> Folded {
    Folded::Order {
        order_id: id.to_string(),
        change,
    }
}

/// The base of a captured order.
pub fn base(order: &Order, arrived: OffsetDateTime, s: Settings) -> Result<Base, FoldError> {
    let invalid = |detail: String| FoldError::InvalidOrder {
        order: order.order_id.to_string(),
        detail,
    };
    let total = order.total().map_err(|e| invalid(e.to_string()))?;
    let captured = order.captured_at.to_offset(UtcOffset::UTC);
    let local = order.captured_at.to_offset(s.offset);
    let day_number = day_number(local.date()).ok_or_else(|| FoldError::TimeOutOfRange {
        field: "captured_at",
        detail: order.captured_at.to_string(),
    })?;
    let channel = POS.to_owned();
    let store = order.store_id.to_string();
    let mut cats: BTreeMap<String, i64> = BTreeMap::new();
    let mut lines = Vec::with_capacity(order.lines.len());
    let mut items: i64 = 0;
    for l in &order.lines {
        let category = l
            .category
            .clone()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| UNCATEGORIZED.to_owned());
        let line_total = l.line_total().map_err(|e| invalid(e.to_string()))?;
        let entry = cats.entry(category.clone()).or_default();
        *entry = entry
            .checked_add(line_total.minor)
            .ok_or_else(|| invalid("category total overflows".into()))?;
        items = items.saturating_add(l.quantity);
        lines.push(Line {
            sku: l.sku.clone(),
            category,
            quantity: l.quantity,
            unit_minor: l.unit_price.minor,
        });
    }
    let mut tenders: BTreeMap<String, i64> = BTreeMap::new();
    for p in &order.payments {
        let e = tenders.entry(p.method().to_owned()).or_default();
        *e = e.saturating_add(p.amount().minor);
    }
    let payment_method = tenders.keys().cloned().collect::<Vec<_>>().join("+");
    let late = (arrived - order.captured_at).whole_seconds() > s.late_after_secs;
    Ok(Base {
        order_id: order.order_id.to_string(),
        scopes: vec![
            String::new(),
            format!("s:{store}|"),
            format!("c:{channel}|"),
        ],
        store_id: store,
        channel,
        customer_key: order
            .customer
            .as_ref()
            .map(customer_key)
            .unwrap_or_default(),
        captured_s: captured.unix_timestamp(),
        h: hour_key(captured),
        d: day_key(local.date()),
        day_number,
        cur: total.currency.code().to_owned(),
        total: total.minor,
        cats: cats.into_iter().collect(),
        tenders: tenders.into_iter().collect(),
        late,
        payment_method,
        items: u32::try_from(items).unwrap_or(u32::MAX),
        lines,
    })
}

/// `YYYYMMDD`.
pub fn day_key(d: time::Date) -> String {
    format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day())
}

/// `YYYYMMDDHH` of `t` in UTC.
pub fn hour_key(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!("{}{:02}", day_key(t.date()), t.hour())
}

/// Julian day number of 1970-01-01.
const EPOCH_JULIAN_DAY: i32 = 2_440_588;

/// A ClickHouse `Date` (days since 1970-01-01) back to a date.
pub fn date_of_day_number(n: u16) -> Option<time::Date> {
    time::Date::from_julian_day(EPOCH_JULIAN_DAY + i32::from(n)).ok()
}

/// Days since 1970-01-01 of `d` (`None` outside ClickHouse's `Date`).
pub fn day_number(d: time::Date) -> Option<u16> {
    u16::try_from(d.to_julian_day() - EPOCH_JULIAN_DAY).ok()
}

fn customer_key(c: &o2c_protocol::Customer) -> String {
    let id = match (&c.email, &c.phone) {
        (Some(e), _) => format!("email:{}", e.trim().to_lowercase()),
        (None, Some(p)) => format!(
            "phone:{}",
            p.chars()
                .filter(|c| c.is_ascii_digit() || *c == '+')
                .collect::<String>()
        ),
        (None, None) => return String::new(),
    };
    hex::encode(Sha256::digest(id.as_bytes()))
}

fn unix_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[path = "fold_tests.rs"]
mod tests;
