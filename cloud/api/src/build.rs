//! A creation request to a validated web or mobile `Order` (pure: the
//! catalog and the clock are passed in). Each line is priced from the
//! catalog, never from the request: a price the request states must be the
//! catalog's in force. Then `Order::validate()` (a web or mobile order names
//! its customer and is paid online), its field paths mapped back onto the
//! request's names.

use std::collections::HashMap;

use o2c_order_http::{customer, fulfillment, payment, request_path};
use o2c_protocol::catalog::Product;
use o2c_protocol::validate::CARD_DATA;
use o2c_protocol::{
    Currency, CustomerId, Money, Order, OrderId, OrderLine, SalesChannel, StoreId, TerminalId,
};
use time::OffsetDateTime;

use crate::model::{ChannelBody, CreateOrderRequest};

/// Why a request does not make an order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The order breaks a rule.
    #[error("{field}: {message} ({rule})")]
    Invalid {
        /// Request path of the field.
        field: String,
        /// The rule's machine code.
        rule: String,
        /// What was wrong.
        message: String,
    },
    /// A SKU the catalog does not sell.
    #[error("{field}: not an active product of the catalog")]
    UnknownSku {
        /// `lines[i].sku`.
        field: String,
    },
    /// The stated unit price is not the catalog's.
    #[error("{field}: the price is now {catalog}")]
    PriceChanged {
        /// `lines[i].unit_price_minor`.
        field: String,
        /// The catalog's price in force.
        catalog: i64,
    },
    /// Something shaped like a card number.
    #[error("card data in {field}")]
    CardData {
        /// Where.
        field: String,
    },
}

impl From<ChannelBody> for SalesChannel {
    fn from(c: ChannelBody) -> Self {
        match c {
            ChannelBody::Web => SalesChannel::Web,
            ChannelBody::Mobile => SalesChannel::Mobile,
        }
    }
}

/// What an order is built with besides its request.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The store that sells it (`[api] store`).
    pub store: &'a StoreId,
    /// The authenticated customer.
    pub customer: &'a CustomerId,
    /// Its new id.
    pub order_id: OrderId,
    /// Now: which prices are in force, and its capture time.
    pub now: OffsetDateTime,
    /// The currencies sold in (`[api] currencies`); empty: any.
    pub currencies: &'a [Currency],
}

/// `code` as a currency the API sells in (`currencies`; empty: any), or
/// why not (`invalid_currency`, `currency_not_sold`, on field `currency`).
pub fn sold_currency(code: &str, currencies: &[Currency]) -> Result<Currency, BuildError> {
    let invalid = |rule: &str, message: String| BuildError::Invalid {
        field: "currency".to_owned(),
        rule: rule.to_owned(),
        message,
    };
    let currency =
        Currency::from_code(code).map_err(|e| invalid("invalid_currency", e.to_string()))?;
    if !currencies.is_empty() && !currencies.contains(&currency) {
        let sold: Vec<String> = currencies.iter().map(ToString::to_string).collect();
        return Err(invalid(
            "currency_not_sold",
            format!("orders are taken in {} only", sold.join(", ")),
        ));
    }
    Ok(currency)
}

/// Builds and validates the order; `catalog` holds (at least) the
/// products of the request's SKUs.
pub fn build(
    req: CreateOrderRequest,
    cx: Context<'_>,
    catalog: &HashMap<String, Product>,
) -> Result<Order, BuildError> {
    let invalid = |field: &str, rule: &str, message: String| BuildError::Invalid {
        field: field.to_owned(),
        rule: rule.to_owned(),
        message,
    };
    let currency = sold_currency(&req.currency, cx.currencies)?;
    let channel = SalesChannel::from(req.channel);
    let mut lines = Vec::with_capacity(req.lines.len());
    for (i, l) in req.lines.into_iter().enumerate() {
        let field = format!("lines[{i}].sku");
        let product =
            catalog
                .get(&l.sku)
                .filter(|p| p.active)
                .ok_or_else(|| BuildError::UnknownSku {
                    field: field.clone(),
                })?;
        let price = product.price_at(currency, cx.now).ok_or_else(|| {
            invalid(
                &field,
                "currency_mismatch",
                format!("the catalog has no price in {currency} for this SKU"),
            )
        })?;
        if let Some(stated) = l.unit_price_minor
            && stated != price
        {
            return Err(BuildError::PriceChanged {
                field: format!("lines[{i}].unit_price_minor"),
                catalog: price,
            });
        }
        lines.push(OrderLine {
            sku: l.sku,
            quantity: l.quantity,
            unit_price: Money::new(price, currency),
            category: product.category.clone(),
        });
    }
    let order = Order {
        order_id: cx.order_id,
        store_id: cx.store.clone(),
        terminal_id: TerminalId::new(channel.as_str())
            .map_err(|e| invalid("channel", "invalid_format", e.to_string()))?,
        currency,
        lines,
        payments: req
            .payments
            .into_iter()
            .map(|p| payment(p, currency))
            .collect(),
        fulfillment: fulfillment(req.fulfillment),
        customer: req.customer.map(customer),
        captured_at: cx.now,
        catalog_version: None,
        stock_check: None,
        channel: Some(channel),
        customer_id: Some(cx.customer.clone()),
    };
    if let Err(errs) = order.validate() {
        let first = errs
            .0
            .iter()
            .find(|e| e.code == CARD_DATA)
            .or_else(|| errs.first());
        if let Some(e) = first {
            let field = request_path(&e.field);
            return Err(if e.code == CARD_DATA {
                BuildError::CardData { field }
            } else {
                invalid(&field, &e.code, e.message.clone())
            });
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests;
