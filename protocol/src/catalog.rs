//! The catalog down-sync contract (issue 15): the product and price records
//! the cloud is master of, the pages its catalog service serves to agents
//! (`GET /v1/stores/{store}/catalog` and `.../stock`), the retained change
//! hint on MQTT, and the pure checks both sides run: the cloud on an import
//! line, an agent on every page before it applies anything.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::card::contains_card_number;
use crate::ids::StoreId;
use crate::money::Currency;

/// Longest SKU.
pub const MAX_SKU: usize = crate::validate::MAX_SKU_LEN;
/// Longest product name.
pub const MAX_NAME: usize = 128;
/// Longest category.
pub const MAX_CATEGORY: usize = 64;

/// A catalog (or stock) version: each change the cloud makes takes the next
/// one, so "since V" is every change after V.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct CatalogVersion(pub u64);

impl std::fmt::Display for CatalogVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One price of a product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// ISO 4217 code.
    pub currency: Currency,
    /// Minor units, at least 0.
    pub minor: i64,
    /// From when it applies; always when absent.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub effective_from: Option<OffsetDateTime>,
}

/// One product: what an import line holds and what a page carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// Stock-keeping unit.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Category, for reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Sellable; `false` deactivates the SKU.
    #[serde(default = "yes")]
    pub active: bool,
    /// Prices, in canonical order (currency, then time) once checked.
    #[serde(default)]
    pub prices: Vec<Price>,
}

fn yes() -> bool {
    true
}

/// One thing wrong with a product: the field and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldProblem {
    /// The field, e.g. `prices[0].minor`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn problem(field: impl Into<String>, message: impl Into<String>) -> FieldProblem {
    FieldProblem {
        field: field.into(),
        message: message.into(),
    }
}

impl Product {
    /// Puts the prices in canonical order and lists what is wrong (empty
    /// when the product is fine).
    pub fn normalize(&mut self) -> Vec<FieldProblem> {
        let mut out = Vec::new();
        let mut text = |field: &str, v: &str, max: usize| {
            let n = v.chars().count();
            if n == 0 || n > max {
                out.push(problem(field, format!("must be 1 to {max} characters")));
            }
            if contains_card_number(v) {
                out.push(problem(field, "looks like a card number"));
            }
        };
        text("sku", &self.sku, MAX_SKU);
        text("name", &self.name, MAX_NAME);
        if let Some(c) = &self.category {
            text("category", c, MAX_CATEGORY);
        }
        if self.sku.len() > MAX_SKU {
            out.push(problem("sku", format!("must be at most {MAX_SKU} bytes")));
        }
        if self.sku.chars().any(char::is_whitespace) {
            out.push(problem("sku", "must not contain whitespace"));
        }
        for (i, price) in self.prices.iter().enumerate() {
            if price.minor < 0 {
                out.push(problem(
                    format!("prices[{i}].minor"),
                    "must not be negative",
                ));
            }
        }
        self.prices
            .sort_by_key(|x| (x.currency.code(), x.effective_from));
        if self
            .prices
            .windows(2)
            .any(|w| w[0].currency == w[1].currency && w[0].effective_from == w[1].effective_from)
        {
            out.push(problem(
                "prices",
                "two prices in one currency from the same time",
            ));
        }
        if self.active && self.prices.is_empty() {
            out.push(problem("prices", "an active product needs a price"));
        }
        out
    }

    /// The price in `currency` in force at `at`: the latest whose
    /// `effective_from` is not after `at` (one without is in force always).
    pub fn price_at(&self, currency: Currency, at: OffsetDateTime) -> Option<i64> {
        self.prices
            .iter()
            .filter(|p| p.currency == currency && p.effective_from.is_none_or(|f| f <= at))
            .max_by_key(|p| p.effective_from)
            .map(|p| p.minor)
    }
}

/// One page of `GET /v1/stores/{store}/catalog`.
///
/// A snapshot (`full`) lists every product, active or not; a delta lists
/// the products changed or deactivated after `since`. Pages are in SKU
/// order; `next_after` is the SKU to ask the next page after (absent on the
/// last). `version` is the catalog version when the first page was read
/// (the request's `upto`): a client that applies every page is at least at
/// that version; a product changed while it paged comes again next time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogPage {
    /// The catalog version this walk brings the client to.
    pub version: CatalogVersion,
    /// The version the delta starts after; absent for a snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<CatalogVersion>,
    /// A snapshot: the client replaces its catalog with the walk's pages.
    pub full: bool,
    /// The products of this page.
    pub products: Vec<Product>,
    /// Ask for the next page with `after=` this SKU; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

/// Why a page is refused whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    /// The body is not a page.
    #[error("not a catalog page: {0}")]
    Malformed(String),
    /// The version would take the client backwards.
    #[error("catalog version {got} is older than the {have} already applied")]
    Backwards {
        /// The page's version.
        got: CatalogVersion,
        /// The client's version.
        have: CatalogVersion,
    },
    /// A delta that does not start where the client is.
    #[error("delta since {since} does not fit the {have} applied")]
    Gap {
        /// The delta's start.
        since: CatalogVersion,
        /// The client's version.
        have: CatalogVersion,
    },
    /// A product is inconsistent.
    #[error("product {sku:?}: {problem}")]
    Product {
        /// Its SKU.
        sku: String,
        /// The first thing wrong.
        problem: FieldProblem,
    },
    /// A SKU twice in one page, or pages out of SKU order.
    #[error("SKU {0:?} out of order or repeated")]
    Order(String),
}

impl CatalogPage {
    /// Parses and checks a page for a client at `have` (`None`: empty)
    /// whose walk is after `after`: every product must be valid, in SKU
    /// order after `after`, the version must not go backwards and a delta
    /// must start at or before `have`. Puts prices in canonical order.
    pub fn parse(
        body: &[u8],
        have: Option<CatalogVersion>,
        after: Option<&str>,
    ) -> Result<CatalogPage, PageError> {
        let mut page: CatalogPage =
            serde_json::from_slice(body).map_err(|e| PageError::Malformed(e.to_string()))?;
        if let Some(have) = have.filter(|h| page.version < *h) {
            return Err(PageError::Backwards {
                got: page.version,
                have,
            });
        }
        match (page.full, page.since, have) {
            (false, None, _) => {
                return Err(PageError::Malformed("a delta without `since`".into()));
            }
            (false, Some(since), Some(have)) if since > have => {
                return Err(PageError::Gap { since, have });
            }
            (false, Some(since), None) => {
                return Err(PageError::Gap {
                    since,
                    have: CatalogVersion(0),
                });
            }
            _ => {}
        }
        let mut prev: Option<String> = after.map(str::to_owned);
        let mut seen = HashSet::with_capacity(page.products.len());
        for p in &mut page.products {
            if let Some(problem) = p.normalize().into_iter().next() {
                return Err(PageError::Product {
                    sku: p.sku.clone(),
                    problem,
                });
            }
            if prev.as_deref().is_some_and(|prev| prev >= p.sku.as_str())
                || !seen.insert(p.sku.clone())
            {
                return Err(PageError::Order(p.sku.clone()));
            }
            prev = Some(p.sku.clone());
        }
        Ok(page)
    }
}

/// One SKU's stock at the store's warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockLevel {
    /// The SKU.
    pub sku: String,
    /// Units on hand in the cloud's books.
    pub on_hand: i64,
    /// Units held for orders not yet shipped or paid.
    pub reserved: i64,
}

/// One page of `GET /v1/stores/{store}/stock`: the SKUs whose stock moved
/// after `since` (all when absent), paged like [`CatalogPage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockPage {
    /// The stock version this walk brings the client to.
    pub version: CatalogVersion,
    /// The version the delta starts after; absent for a snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<CatalogVersion>,
    /// The levels of this page.
    pub levels: Vec<StockLevel>,
    /// Ask for the next page with `after=` this SKU; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

impl StockPage {
    /// Parses and checks a stock page for a client at `have` whose walk is
    /// after `after`: SKUs valid and in order, levels not negative, the
    /// version not going backwards.
    pub fn parse(
        body: &[u8],
        have: Option<CatalogVersion>,
        after: Option<&str>,
    ) -> Result<StockPage, PageError> {
        let page: StockPage =
            serde_json::from_slice(body).map_err(|e| PageError::Malformed(e.to_string()))?;
        if let Some(have) = have.filter(|h| page.version < *h) {
            return Err(PageError::Backwards {
                got: page.version,
                have,
            });
        }
        let mut prev: Option<&str> = after;
        for l in &page.levels {
            let bad = |message: &str| PageError::Product {
                sku: l.sku.clone(),
                problem: problem("stock", message),
            };
            if l.sku.is_empty() || l.sku.len() > MAX_SKU {
                return Err(bad("sku must be 1 to 64 bytes"));
            }
            if l.on_hand < 0 || l.reserved < 0 {
                return Err(bad("on_hand and reserved must not be negative"));
            }
            if prev.is_some_and(|p| p >= l.sku.as_str()) {
                return Err(PageError::Order(l.sku.clone()));
            }
            prev = Some(&l.sku);
        }
        Ok(page)
    }
}

/// One line of a store reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReservationLine {
    /// The SKU.
    pub sku: String,
    /// Units, at least 1.
    pub quantity: i64,
}

/// `POST /v1/stores/{store}/reservations`: hold a ship-to-home order's
/// units before the till is answered; idempotent by `order_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReservationRequest {
    /// The order being captured.
    pub order_id: crate::ids::OrderId,
    /// What it sells.
    pub lines: Vec<ReservationLine>,
    /// How long to hold the units if the order never reaches the cloud
    /// (default 1800, at most 86400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
}

/// Longest hold a store may ask for.
pub const MAX_RESERVATION_TTL_SECS: u64 = 86_400;

impl ReservationRequest {
    /// What is wrong with the request, if anything.
    pub fn problem(&self) -> Option<String> {
        if self.lines.is_empty() || self.lines.len() > 256 {
            return Some("lines: 1 to 256 lines".into());
        }
        for (i, l) in self.lines.iter().enumerate() {
            if l.sku.is_empty() || l.sku.len() > MAX_SKU {
                return Some(format!("lines[{i}].sku: 1 to {MAX_SKU} bytes"));
            }
            if !(1..=1_000_000).contains(&l.quantity) {
                return Some(format!("lines[{i}].quantity: 1 to 1000000"));
            }
        }
        match self.ttl_secs {
            Some(t) if t == 0 || t > MAX_RESERVATION_TTL_SECS => {
                Some(format!("ttl_secs: 1 to {MAX_RESERVATION_TTL_SECS}"))
            }
            _ => None,
        }
    }
}

/// The answer to a reservation (201 new, 200 a repeat).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationAnswer {
    /// The order.
    pub order_id: crate::ids::OrderId,
    /// `held`, `consumed` (the order took it over) or `released`.
    pub state: String,
    /// What is held, where.
    pub reservations: Vec<crate::event::Reservation>,
    /// When an unclaimed hold lapses (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// The body of a 422 `out_of_stock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutOfStock {
    /// Always `out_of_stock`.
    pub error: String,
    /// What is short.
    pub message: String,
    /// The SKU short.
    pub sku: String,
}

/// The retained change hint, on [`hint_topic`]: the latest versions, so an
/// agent pulls at once instead of at its next poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogHint {
    /// The catalog version.
    pub catalog_version: CatalogVersion,
    /// The store's stock version.
    pub stock_version: CatalogVersion,
}

/// The store's retained hint topic, `o2c/v1/stores/{store}/catalog`; the
/// broker ACL lets a store read only its own.
pub fn hint_topic(store: &StoreId) -> String {
    format!("o2c/v1/stores/{store}/catalog")
}

#[cfg(test)]
mod tests;
