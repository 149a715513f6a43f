//! The order model carried by `OrderCreated`: lines, payments, fulfillment
//! and an optional customer contact. Validation lives in [`crate::validate`].

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{AgentId, CustomerId, OrderId, StoreId, TerminalId};
use crate::money::{Currency, Money, MoneyError};

/// A captured store order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Order {
    /// Minted by the agent at capture.
    pub order_id: OrderId,
    /// The selling store.
    pub store_id: StoreId,
    /// The terminal that rang the sale.
    pub terminal_id: TerminalId,
    /// The order's currency; every line and payment must use it.
    pub currency: Currency,
    /// What was sold.
    pub lines: Vec<OrderLine>,
    /// How it was paid; must sum to the total.
    pub payments: Vec<Payment>,
    /// Carry out or ship to home.
    pub fulfillment: Fulfillment,
    /// Optional contact, for receipts and shipping notices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<Customer>,
    /// When the agent committed the order.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub captured_at: OffsetDateTime,
    /// The catalog version the agent priced the order with; absent when it
    /// had none (never pulled) and from agents before contract 1.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_version: Option<u64>,
    /// For a ship-to-home order: whether the cloud reserved its stock at
    /// capture (`verified`) or the store sold it unchecked (`unverified`:
    /// offline or the check's breaker open) and the saga's inventory step
    /// confirms or compensates (contract 1.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock_check: Option<StockCheck>,
    /// Where the order was sold (contract 1.5); absent means `pos`, a
    /// store's till, as every order before 1.5 was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<SalesChannel>,
    /// The authenticated customer who placed a web or mobile order
    /// (contract 1.5); a store order may carry a loyalty customer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<CustomerId>,
}

/// The channel an order was sold through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SalesChannel {
    /// A store's till, through its agent.
    Pos,
    /// The web shop, through the cloud order API.
    Web,
    /// The mobile app, through the cloud order API.
    Mobile,
}

impl SalesChannel {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SalesChannel::Pos => "pos",
            SalesChannel::Web => "web",
            SalesChannel::Mobile => "mobile",
        }
    }

    /// The agent id the cloud order API writes on a web or mobile order's
    /// events (`channel-web`, `channel-mobile`): no store agent has it (the
    /// ingest refuses it, [`SalesChannel::of_cloud_agent`]), and the status
    /// publisher sends nothing over MQTT for it. `None` for `pos`.
    pub fn cloud_agent(self) -> Option<AgentId> {
        let id = match self {
            SalesChannel::Pos => return None,
            SalesChannel::Web => "channel-web",
            SalesChannel::Mobile => "channel-mobile",
        };
        AgentId::new(id).ok()
    }

    /// The channel whose cloud agent id `agent` is, if it is one.
    pub fn of_cloud_agent(agent: &AgentId) -> Option<SalesChannel> {
        [SalesChannel::Web, SalesChannel::Mobile]
            .into_iter()
            .find(|c| c.cloud_agent().as_ref() == Some(agent))
    }
}

impl std::fmt::Display for SalesChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SalesChannel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [SalesChannel::Pos, SalesChannel::Web, SalesChannel::Mobile]
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown sales channel {s:?} (pos, web or mobile)"))
    }
}

/// How a ship-to-home order's stock was checked at capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StockCheck {
    /// The cloud reserved the units before the sale was confirmed.
    Verified,
    /// Sold without a reservation; the saga checks later.
    Unverified,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OrderLine {
    /// Catalog stock-keeping unit.
    pub sku: String,
    /// Units sold; must be at least 1.
    pub quantity: i64,
    /// Price of one unit.
    pub unit_price: Money,
    /// The product's category in the store's catalog at capture, for
    /// sales analytics by category; absent when the catalog did not know
    /// the SKU or gave it none, and from agents before contract 1.3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

impl OrderLine {
    /// `unit_price * quantity`, checked.
    pub fn line_total(&self) -> Result<Money, MoneyError> {
        self.unit_price.checked_mul(self.quantity)
    }
}

/// How a card payment was authorised at the till.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CardAuthorization {
    /// Authorised online by the processor before the sale completed.
    Online,
    /// Accepted offline under the store's floor limit; captured later.
    Offline,
}

/// One tender of an order. Card data is never carried: only a processor
/// token, the brand and the last four digits.
///
/// Unlike the rest of the contract, a tender refuses fields it does not
/// know: next to a card token, a stray field can only be card data (a
/// `pan`, a `cvv`, track data), so it is refused, never carried on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Payment {
    /// A card, tokenised by the terminal's payment device.
    Card {
        /// Amount tendered.
        amount: Money,
        /// Processor token (never a card number).
        token: String,
        /// Card brand, e.g. `visa`.
        brand: String,
        /// Last four digits of the card number.
        last4: String,
        /// Online or offline authorisation.
        authorization: CardAuthorization,
    },
    /// Cash.
    Cash {
        /// Amount tendered (after change).
        amount: Money,
    },
    /// A gift card, tokenised.
    GiftCard {
        /// Amount tendered.
        amount: Money,
        /// Gift card token.
        token: String,
    },
}

impl Payment {
    /// The tendered amount.
    pub fn amount(&self) -> Money {
        match self {
            Payment::Card { amount, .. }
            | Payment::Cash { amount }
            | Payment::GiftCard { amount, .. } => *amount,
        }
    }

    /// The wire name of the method.
    pub fn method(&self) -> &'static str {
        match self {
            Payment::Card { .. } => "card",
            Payment::Cash { .. } => "cash",
            Payment::GiftCard { .. } => "gift_card",
        }
    }
}

/// How the customer receives the goods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Fulfillment {
    /// Taken away at the till. A struct variant (`{"type":"carry_out"}`),
    /// as contract 1.0 wrote it.
    CarryOut {},
    /// Shipped from a warehouse.
    ShipToHome {
        /// Delivery address.
        address: Address,
    },
}

/// A postal address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Address {
    /// Recipient.
    pub name: String,
    /// Street line.
    pub line1: String,
    /// Second line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    /// City.
    pub city: String,
    /// Province, state or region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
}

/// Optional customer contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Customer {
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

impl Order {
    /// Sum of the line totals; errors on overflow or mixed currencies.
    pub fn total(&self) -> Result<Money, MoneyError> {
        let mut total = Money::zero(self.currency);
        for line in &self.lines {
            total = total.checked_add(line.line_total()?)?;
        }
        Ok(total)
    }

    /// Sum of the payments; errors on overflow or mixed currencies.
    pub fn paid(&self) -> Result<Money, MoneyError> {
        Money::checked_sum(self.currency, self.payments.iter().map(Payment::amount))
    }

    /// Sum of card payments authorised offline, in the order's currency.
    pub fn offline_card_total(&self) -> Result<Money, MoneyError> {
        Money::checked_sum(
            self.currency,
            self.payments.iter().filter_map(|p| match p {
                Payment::Card {
                    amount,
                    authorization: CardAuthorization::Offline,
                    ..
                } => Some(*amount),
                _ => None,
            }),
        )
    }
}
