//! Turning a capture request into a validated `Order` (pure: no I/O; the
//! catalog is passed in as a lookup function).
//!
//! Order of checks: card data anywhere in the raw body, then the JSON shape,
//! then ids and currency, catalog prices, `Order::validate()` (its field
//! paths mapped back onto the request's names), and the offline card rules
//! ([`OfflineLimits`]: the store's currency, then the floor limit).

use o2c_order_http::{BodyError, customer, fulfillment, parse_body, payment, request_path};
use o2c_protocol::validate::CARD_DATA;
use o2c_protocol::{
    CardAuthorization, Currency, Money, Order, OrderId, OrderLine, Payment, StoreId, TerminalId,
};
use time::OffsetDateTime;

use super::model::CaptureRequest;

/// Why a capture request was refused before reaching the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    /// The body itself: not JSON, an unknown field, a field of the wrong
    /// shape, card data.
    #[error(transparent)]
    Body(#[from] BodyError),
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

/// Parses the body strictly, naming the field of any shape error.
pub(crate) fn parse_request(body: &[u8]) -> Result<CaptureRequest, CaptureError> {
    Ok(parse_body(body)?)
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
        channel: None,
        customer_id: None,
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
                return Err(BodyError::CardData { field: Some(field) }.into());
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

#[cfg(test)]
mod tests;
