//! Order validation: every problem, each with a field path such as
//! `lines[0].quantity`. The card-number detector lives in [`crate::card`]
//! (re-exported here, where callers have always found it).

use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::card::{contains_card_number, gtin_valid, luhn_valid, redact_card_numbers};
use crate::money::Money;
use crate::order::{
    Address, CardAuthorization, Customer, Fulfillment, Order, Payment, SalesChannel,
};

/// Most lines one order may have.
pub const MAX_LINES: usize = 500;
/// Most payments one order may have.
pub const MAX_PAYMENTS: usize = 16;
/// Largest quantity on one line.
pub const MAX_QUANTITY: i64 = 1_000_000;
/// Longest SKU.
pub const MAX_SKU_LEN: usize = 64;
/// Longest payment or gift-card token.
pub const MAX_TOKEN_LEN: usize = 128;
/// Longest cancellation reason.
pub const MAX_REASON_LEN: usize = 128;

/// One problem found in an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationError {
    /// Path of the offending field, e.g. `payments[1].last4`.
    pub field: String,
    /// Stable machine code, e.g. `out_of_range`, `card_data_rejected`.
    pub code: String,
    /// Human-readable explanation. Never contains the offending value when
    /// that value may be card data.
    pub message: String,
}

/// Every problem found in an order (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

impl ValidationErrors {
    /// The first problem (the list is never empty).
    pub fn first(&self) -> Option<&ValidationError> {
        self.0.first()
    }

    /// Whether any problem is card data.
    pub fn has_card_data(&self) -> bool {
        self.0.iter().any(|e| e.code == CARD_DATA)
    }
}

/// Code for a value that looks like a card number.
pub const CARD_DATA: &str = "card_data_rejected";

/// The problems of free-text field `field`: its length and the card-number
/// check.
pub(crate) fn check_text(field: &str, value: &str, min: usize, max: usize) -> Vec<ValidationError> {
    let mut c = Collector::default();
    c.text(field, value, min, max);
    c.0
}

#[derive(Default)]
struct Collector(Vec<ValidationError>);

impl Collector {
    fn push(&mut self, field: impl Into<String>, code: &str, message: impl Into<String>) {
        self.0.push(ValidationError {
            field: field.into(),
            code: code.to_owned(),
            message: message.into(),
        });
    }

    /// A free-text field: length limits and the card-number check.
    fn text(&mut self, field: &str, value: &str, min: usize, max: usize) {
        let len = value.chars().count();
        if len < min {
            self.push(field, "required", format!("{field} must not be empty"));
        } else if len > max {
            self.push(
                field,
                "too_long",
                format!("{field} must be at most {max} characters"),
            );
        }
        if contains_card_number(value) {
            self.push(
                field,
                CARD_DATA,
                format!("{field} looks like a card number; send a payment token instead"),
            );
        }
    }

    fn opt_text(&mut self, field: &str, value: Option<&str>, max: usize) {
        if let Some(v) = value {
            self.text(field, v, 1, max);
        }
    }

    fn amount(&mut self, field: &str, amount: &Money, order: &Order, positive: bool) {
        if amount.currency != order.currency {
            self.push(
                format!("{field}.currency"),
                "currency_mismatch",
                format!(
                    "{field} is in {} but the order is in {}",
                    amount.currency, order.currency
                ),
            );
        }
        let bad = if positive {
            amount.minor <= 0
        } else {
            amount.minor < 0
        };
        if bad {
            let need = if positive { "> 0" } else { ">= 0" };
            self.push(
                format!("{field}.minor"),
                "out_of_range",
                format!("{field} must be {need}"),
            );
        }
    }
}

impl Order {
    /// Checks every rule and returns all problems, each naming its field.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut c = Collector::default();
        if self.lines.is_empty() {
            c.push("lines", "required", "an order needs at least one line");
        } else if self.lines.len() > MAX_LINES {
            c.push("lines", "too_many", format!("at most {MAX_LINES} lines"));
        }
        for (i, line) in self.lines.iter().enumerate() {
            let p = format!("lines[{i}]");
            c.text(&format!("{p}.sku"), &line.sku, 1, MAX_SKU_LEN);
            if let Some(category) = &line.category {
                c.text(
                    &format!("{p}.category"),
                    category,
                    1,
                    crate::catalog::MAX_CATEGORY,
                );
            }
            if line.quantity <= 0 || line.quantity > MAX_QUANTITY {
                c.push(
                    format!("{p}.quantity"),
                    "out_of_range",
                    format!("quantity must be between 1 and {MAX_QUANTITY}"),
                );
            }
            c.amount(&format!("{p}.unit_price"), &line.unit_price, self, false);
        }
        if self.payments.is_empty() {
            c.push(
                "payments",
                "required",
                "an order needs at least one payment",
            );
        } else if self.payments.len() > MAX_PAYMENTS {
            c.push(
                "payments",
                "too_many",
                format!("at most {MAX_PAYMENTS} payments"),
            );
        }
        for (i, pay) in self.payments.iter().enumerate() {
            let p = format!("payments[{i}]");
            c.amount(&format!("{p}.amount"), &pay.amount(), self, true);
            match pay {
                Payment::Card {
                    token,
                    brand,
                    last4,
                    ..
                } => {
                    c.text(&format!("{p}.token"), token, 1, MAX_TOKEN_LEN);
                    c.text(&format!("{p}.brand"), brand, 1, 32);
                    if last4.len() != 4 || !last4.bytes().all(|b| b.is_ascii_digit()) {
                        c.push(
                            format!("{p}.last4"),
                            "invalid_format",
                            "last4 must be exactly 4 digits",
                        );
                    }
                }
                Payment::GiftCard { token, .. } => {
                    c.text(&format!("{p}.token"), token, 1, MAX_TOKEN_LEN);
                }
                Payment::Cash { .. } => {}
            }
        }
        if let Fulfillment::ShipToHome { address } = &self.fulfillment {
            check_address(&mut c, address);
        }
        if let Some(customer) = &self.customer {
            check_customer(&mut c, customer);
        }
        check_remote_sale(&mut c, self);
        // Totals only make sense once every amount is in the order currency.
        if c.0.iter().all(|e| e.code != "currency_mismatch") {
            match (self.total(), self.paid()) {
                (Ok(total), Ok(paid)) if total != paid => c.push(
                    "payments",
                    "payment_total_mismatch",
                    format!(
                        "payments sum to {} but the order total is {}",
                        paid.minor, total.minor
                    ),
                ),
                (Err(_), _) => c.push("lines", "overflow", "order total overflows"),
                (_, Err(_)) => c.push("payments", "overflow", "payment sum overflows"),
                _ => {}
            }
        }
        if c.0.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(c.0))
        }
    }
}

fn check_address(c: &mut Collector, a: &Address) {
    let p = "fulfillment.address";
    c.text(&format!("{p}.name"), &a.name, 1, 128);
    c.text(&format!("{p}.line1"), &a.line1, 1, 128);
    c.opt_text(&format!("{p}.line2"), a.line2.as_deref(), 128);
    c.text(&format!("{p}.city"), &a.city, 1, 64);
    c.opt_text(&format!("{p}.region"), a.region.as_deref(), 64);
    c.text(&format!("{p}.postal_code"), &a.postal_code, 1, 16);
    if a.country.len() != 2 || !a.country.bytes().all(|b| b.is_ascii_uppercase()) {
        c.push(
            format!("{p}.country"),
            "invalid_format",
            "country must be an ISO 3166-1 alpha-2 code such as CA",
        );
    }
}

/// A web or mobile order (contract 1.5) names its customer and is paid
/// before it is confirmed: by a card authorised online or a gift card,
/// never cash or an offline card.
fn check_remote_sale(c: &mut Collector, o: &Order) {
    let Some(channel) = o.channel.filter(|ch| *ch != SalesChannel::Pos) else {
        return;
    };
    if o.customer_id.is_none() {
        c.push(
            "customer_id",
            "required",
            format!("a {channel} order names its customer"),
        );
    }
    for (i, pay) in o.payments.iter().enumerate() {
        match pay {
            Payment::Cash { .. } => c.push(
                format!("payments[{i}].method"),
                "not_allowed",
                format!("a {channel} order cannot be paid in cash"),
            ),
            Payment::Card {
                authorization: CardAuthorization::Offline,
                ..
            } => c.push(
                format!("payments[{i}].authorization"),
                "not_allowed",
                format!("a {channel} order's card is authorised online"),
            ),
            _ => {}
        }
    }
}

fn check_customer(c: &mut Collector, cu: &Customer) {
    if let Some(email) = &cu.email {
        c.text("customer.email", email, 3, 254);
        if !email.contains('@') {
            c.push("customer.email", "invalid_format", "email must contain '@'");
        }
    }
    c.opt_text("customer.phone", cu.phone.as_deref(), 32);
}

/// The fields of `raw` (a message as received) that `known` (the same
/// message as this build encodes it after decoding) does not have: what a
/// newer writer added, by JSON path (`payload.lines[0].discount`). An
/// absent optional field written as `null` is not one.
pub fn unknown_fields<'a>(
    raw: &'a serde_json::Value,
    known: &serde_json::Value,
) -> Vec<(String, &'a serde_json::Value)> {
    fn walk<'a>(
        raw: &'a serde_json::Value,
        known: &serde_json::Value,
        path: &str,
        out: &mut Vec<(String, &'a serde_json::Value)>,
    ) {
        use serde_json::Value;
        match (raw, known) {
            (Value::Object(r), Value::Object(k)) => {
                for (key, v) in r {
                    let p = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    match k.get(key) {
                        Some(kv) => walk(v, kv, &p, out),
                        None if v.is_null() => {}
                        None => out.push((p, v)),
                    }
                }
            }
            (Value::Array(r), Value::Array(k)) => {
                for (i, v) in r.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    match k.get(i) {
                        Some(kv) => walk(v, kv, &p, out),
                        None => out.push((p, v)),
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(raw, known, "", &mut out);
    out
}

/// Whether a JSON value holds a card number anywhere: in a string, a
/// number's digits or a key.
pub fn value_has_card_number(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::String(s) => contains_card_number(s),
        Value::Number(n) => contains_card_number(&n.to_string()),
        Value::Array(a) => a.iter().any(value_has_card_number),
        Value::Object(o) => o
            .iter()
            .any(|(k, v)| contains_card_number(k) || value_has_card_number(v)),
        Value::Bool(_) | Value::Null => false,
    }
}

/// Checks the fields of a store event this build does not know (a newer
/// agent's additions, which a tolerant reader would otherwise carry on
/// unread) for card data. `raw` is the event as received, `decoded` the
/// same event decoded (an `Envelope` or a `day::DayClosed`). A
/// [`CARD_DATA`] error names the field.
///
/// Cheap for the usual event: the full comparison runs only when the raw
/// text holds a card-number-shaped run, or a `\u` escape that could hide
/// one.
pub fn check_unknown_fields<T: serde::Serialize>(
    raw: &str,
    decoded: &T,
) -> Result<(), ValidationErrors> {
    if !contains_card_number(raw) && !raw.contains("\\u") {
        return Ok(());
    }
    let (Ok(raw_v), Ok(known)) = (
        serde_json::from_str::<serde_json::Value>(raw),
        serde_json::to_value(decoded),
    ) else {
        return Ok(());
    };
    let unknown = unknown_fields(&raw_v, &known);
    match unknown.iter().find(|(_, v)| value_has_card_number(v)) {
        Some((path, _)) => Err(ValidationErrors(vec![ValidationError {
            field: path.clone(),
            code: CARD_DATA.to_owned(),
            message: format!(
                "{path} is a field this cloud does not know, and it holds a card number; \
                 send a payment token instead"
            ),
        }])),
        None => Ok(()),
    }
}
