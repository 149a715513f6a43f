//! Turning a capture request into a validated `Order` (pure: no I/O; the
//! catalog is passed in as a lookup function).
//!
//! Order of checks: card data anywhere in the raw body, then the JSON shape,
//! then ids and currency, catalog prices, `Order::validate()` (its field
//! paths mapped back onto the request's names), and the offline card rules
//! ([`OfflineLimits`]: the store's currency, then the floor limit).

use o2c_protocol::validate::{CARD_DATA, contains_card_number};
use o2c_protocol::{
    Address, CardAuthorization, Currency, Customer, Fulfillment, Money, Order, OrderId, OrderLine,
    Payment, StoreId, TerminalId,
};
use time::OffsetDateTime;

use super::model::{
    AddressBody, CaptureRequest, CardAuthorizationBody, CustomerBody, FulfillmentBody, PaymentBody,
};

/// Why a capture request was refused before reaching the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    /// The body is not JSON.
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// A field the API does not know.
    #[error("unknown field {field}")]
    UnknownField {
        /// Its path.
        field: String,
    },
    /// A field of the wrong type, or missing.
    #[error("{field}: {message}")]
    Shape {
        /// Its path.
        field: String,
        /// What was wrong.
        message: String,
    },
    /// The order breaks a rule.
    #[error("{field}: {message}")]
    Invalid {
        /// Request path of the field.
        field: String,
        /// The rule's machine code (e.g. `out_of_range`).
        rule: String,
        /// What was wrong.
        message: String,
    },
    /// A line without a price whose SKU is not in the catalog.
    #[error("unknown SKU on {field}")]
    UnknownSku {
        /// `lines[i].sku`.
        field: String,
    },
    /// Something that looks like a card number. The value is never kept.
    #[error("card data in {}", field.as_deref().unwrap_or("the request"))]
    CardData {
        /// Where, when it could be located.
        field: Option<String>,
    },
    /// An offline card payment above the floor limit.
    #[error("{field}: offline card payment of {amount} exceeds the floor limit {limit}")]
    OfflineFloor {
        /// `payments[i].amount_minor`.
        field: String,
        /// The amount.
        amount: i64,
        /// The limit.
        limit: i64,
    },
    /// An offline card payment, but the store has no `[store] currency`,
    /// so its offline limits mean nothing.
    #[error("{field}: this store takes no offline card payment (no store currency configured)")]
    OfflineUnavailable {
        /// `payments[i].authorization`.
        field: String,
    },
    /// An offline card payment in another currency than the store's: its
    /// offline limits are in the store's currency and are never compared
    /// across currencies.
    #[error("currency: offline card payments are limited in {store}, the order is in {order}")]
    OfflineCurrency {
        /// The order's currency.
        order: Currency,
        /// The store's.
        store: Currency,
    },
    /// The catalog could not be read.
    #[error("catalog: {0}")]
    Catalog(String),
}

/// What an offline card payment must respect: the store's currency (from
/// `[store] currency`; `None` refuses every offline card payment) and the
/// floor limit, in that currency's minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OfflineLimits {
    pub(crate) currency: Option<Currency>,
    pub(crate) floor_minor: i64,
}

/// A catalog price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Price {
    pub(crate) minor: i64,
    pub(crate) currency: Currency,
    /// The product's category, copied onto the order line.
    pub(crate) category: Option<String>,
}

/// Refuses a body holding anything shaped like a card number, naming the
/// JSON path where it can be found (the value itself is never returned).
///
/// The raw text is scanned first; a body with JSON `\u` escapes, which can
/// hide digits from that scan, is also decoded and its strings scanned.
pub(crate) fn scan_card_data(body: &[u8]) -> Result<(), CaptureError> {
    let text = String::from_utf8_lossy(body);
    let in_raw = contains_card_number(&text);
    if !in_raw && !body.windows(2).any(|w| w == b"\\u") {
        return Ok(());
    }
    let field = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| locate(&v, String::new()));
    if in_raw || field.is_some() {
        Err(CaptureError::CardData { field })
    } else {
        Ok(())
    }
}

fn locate(v: &serde_json::Value, path: String) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::String(s) if contains_card_number(s) => Some(path),
        Value::Number(n) if contains_card_number(&n.to_string()) => Some(path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, x)| locate(x, format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, x)| {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if contains_card_number(k) {
                Some(p)
            } else {
                locate(x, p)
            }
        }),
        _ => None,
    }
}

/// Parses the body strictly, naming the field of any shape error.
pub(crate) fn parse_request(body: &[u8]) -> Result<CaptureRequest, CaptureError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        match inner.classify() {
            serde_json::error::Category::Data => {
                if let Some(rest) = message.strip_prefix("unknown field `") {
                    let name = rest.split('`').next().unwrap_or_default();
                    let field = if path == "." || path.is_empty() {
                        name.to_owned()
                    } else if path.ends_with(name) {
                        path
                    } else {
                        format!("{path}.{name}")
                    };
                    CaptureError::UnknownField { field }
                } else {
                    CaptureError::Shape {
                        field: if path == "." { String::new() } else { path },
                        message,
                    }
                }
            }
            _ => CaptureError::Malformed(message),
        }
    })
}

/// Builds and validates the order. `price` looks a SKU up in the catalog:
/// its price in force now, in the order's currency if it has one.
pub(crate) fn build_order(
    req: CaptureRequest,
    store_id: &StoreId,
    order_id: OrderId,
    offline: OfflineLimits,
    mut price: impl FnMut(&str, Currency) -> Result<Option<Price>, String>,
) -> Result<Order, CaptureError> {
    let terminal_id = TerminalId::new(req.terminal_id)
        .map_err(|e| invalid("terminal_id", "invalid_format", e))?;
    let currency = Currency::from_code(&req.currency)
        .map_err(|e| invalid("currency", "invalid_currency", e))?;
    let mut lines = Vec::with_capacity(req.lines.len());
    for (i, l) in req.lines.into_iter().enumerate() {
        let (unit, category) = match l.unit_price_minor {
            // A price the till set: the catalog still names the category.
            Some(p) => {
                let known = if l.sku.is_empty() || l.sku.len() > o2c_protocol::validate::MAX_SKU_LEN
                {
                    None
                } else {
                    price(&l.sku, currency).map_err(CaptureError::Catalog)?
                };
                (p, known.and_then(|k| k.category))
            }
            None => {
                let field = format!("lines[{i}].sku");
                let found = if l.sku.is_empty() || l.sku.len() > o2c_protocol::validate::MAX_SKU_LEN
                {
                    None
                } else {
                    price(&l.sku, currency).map_err(CaptureError::Catalog)?
                };
                let p = found.ok_or_else(|| CaptureError::UnknownSku {
                    field: field.clone(),
                })?;
                if p.currency != currency {
                    return Err(invalid(
                        &field,
                        "currency_mismatch",
                        format!(
                            "the catalog prices this SKU in {}, the order is in {}",
                            p.currency, currency
                        ),
                    ));
                }
                (p.minor, p.category)
            }
        };
        lines.push(OrderLine {
            sku: l.sku,
            quantity: l.quantity,
            unit_price: Money::new(unit, currency),
            category,
        });
    }
    let payments = req
        .payments
        .into_iter()
        .map(|p| payment(p, currency))
        .collect();
    let order = Order {
        order_id,
        store_id: store_id.clone(),
        terminal_id,
        currency,
        lines,
        payments,
        fulfillment: fulfillment(req.fulfillment),
        customer: req.customer.map(customer),
        // Set to the commit time by the store writer.
        captured_at: OffsetDateTime::UNIX_EPOCH,
        // Set by the capture handler (the catalog it priced with, the
        // ship-to-home stock check).
        catalog_version: None,
        stock_check: None,
    };
    if let Err(errs) = order.validate() {
        let first = errs
            .0
            .iter()
            .find(|e| e.code == CARD_DATA)
            .or_else(|| errs.first());
        if let Some(e) = first {
            let field = request_path(&e.field);
            if e.code == CARD_DATA {
                return Err(CaptureError::CardData { field: Some(field) });
            }
            return Err(CaptureError::Invalid {
                field,
                rule: e.code.clone(),
                message: e.message.clone(),
            });
        }
    }
    check_offline(&order, offline)?;
    Ok(order)
}

/// Refuses an offline card payment the store cannot take: no store
/// currency, another currency than the store's, or above the floor limit.
fn check_offline(order: &Order, limits: OfflineLimits) -> Result<(), CaptureError> {
    for (i, p) in order.payments.iter().enumerate() {
        let Payment::Card {
            amount,
            authorization: CardAuthorization::Offline,
            ..
        } = p
        else {
            continue;
        };
        let Some(store) = limits.currency else {
            return Err(CaptureError::OfflineUnavailable {
                field: format!("payments[{i}].authorization"),
            });
        };
        if amount.currency != store {
            return Err(CaptureError::OfflineCurrency {
                order: amount.currency,
                store,
            });
        }
        if amount.minor > limits.floor_minor {
            return Err(CaptureError::OfflineFloor {
                field: format!("payments[{i}].amount_minor"),
                amount: amount.minor,
                limit: limits.floor_minor,
            });
        }
    }
    Ok(())
}

fn invalid(field: &str, rule: &str, e: impl std::fmt::Display) -> CaptureError {
    CaptureError::Invalid {
        field: field.to_owned(),
        rule: rule.to_owned(),
        message: e.to_string(),
    }
}

/// Maps an `Order::validate()` path onto the request's field names.
pub(crate) fn request_path(path: &str) -> String {
    for (model, request) in [
        (".unit_price.minor", ".unit_price_minor"),
        (".unit_price.currency", ".unit_price_minor"),
        (".amount.minor", ".amount_minor"),
        (".amount.currency", ".amount_minor"),
    ] {
        if let Some(stem) = path.strip_suffix(model) {
            return format!("{stem}{request}");
        }
    }
    path.to_owned()
}

fn payment(p: PaymentBody, currency: Currency) -> Payment {
    let m = |minor| Money::new(minor, currency);
    match p {
        PaymentBody::Card {
            amount_minor,
            token,
            brand,
            last4,
            authorization,
        } => Payment::Card {
            amount: m(amount_minor),
            token,
            brand,
            last4,
            authorization: match authorization {
                CardAuthorizationBody::Online => CardAuthorization::Online,
                CardAuthorizationBody::Offline => CardAuthorization::Offline,
            },
        },
        PaymentBody::Cash { amount_minor } => Payment::Cash {
            amount: m(amount_minor),
        },
        PaymentBody::GiftCard {
            amount_minor,
            token,
        } => Payment::GiftCard {
            amount: m(amount_minor),
            token,
        },
    }
}

fn fulfillment(f: FulfillmentBody) -> Fulfillment {
    match f {
        FulfillmentBody::CarryOut {} => Fulfillment::CarryOut {},
        FulfillmentBody::ShipToHome { address: a } => Fulfillment::ShipToHome {
            address: Address {
                name: a.name,
                line1: a.line1,
                line2: a.line2,
                city: a.city,
                region: a.region,
                postal_code: a.postal_code,
                country: a.country,
            },
        },
    }
}

fn customer(c: CustomerBody) -> Customer {
    Customer {
        email: c.email,
        phone: c.phone,
    }
}

/// The request-shaped view of a stored fulfillment.
pub(crate) fn fulfillment_body(f: &Fulfillment) -> FulfillmentBody {
    match f {
        Fulfillment::CarryOut {} => FulfillmentBody::CarryOut {},
        Fulfillment::ShipToHome { address: a } => FulfillmentBody::ShipToHome {
            address: AddressBody {
                name: a.name.clone(),
                line1: a.line1.clone(),
                line2: a.line2.clone(),
                city: a.city.clone(),
                region: a.region.clone(),
                postal_code: a.postal_code.clone(),
                country: a.country.clone(),
            },
        },
    }
}

#[cfg(test)]
mod tests;
