//! The JSON bodies an order has in both HTTP APIs: its tenders,
//! fulfillment, address and contact as requested, its lines and payments
//! as shown back, and the error body. Request types are strict
//! (`deny_unknown_fields`) and name fields as the request does, so error
//! paths such as `payments[0].amount_minor` point into the body.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::schema::PaymentMethod;

/// How a card payment was authorised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CardAuthorizationBody {
    /// Authorised online.
    Online,
    /// Accepted offline, within the floor limit and the store cap.
    Offline,
}

/// One tender. Never a card number: only a token, brand and last four.
/// Its schema is written out in [`crate::schema`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum PaymentBody {
    /// A tokenised card.
    Card {
        /// Amount, minor units.
        #[serde(deserialize_with = "crate::integer::integral")]
        amount_minor: i64,
        /// Processor token.
        token: String,
        /// Brand, e.g. `visa`.
        brand: String,
        /// Last four digits.
        last4: String,
        /// `online` or `offline`.
        authorization: CardAuthorizationBody,
    },
    /// Cash.
    Cash {
        /// Amount, minor units.
        #[serde(deserialize_with = "crate::integer::integral")]
        amount_minor: i64,
    },
    /// A tokenised gift card.
    GiftCard {
        /// Amount, minor units.
        #[serde(deserialize_with = "crate::integer::integral")]
        amount_minor: i64,
        /// Gift card token.
        token: String,
    },
}

/// How the goods reach the customer. Its schema is written out in
/// [`crate::schema`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FulfillmentBody {
    // A struct variant, so that extra keys are refused: serde ignores them
    // on a unit variant of a tagged enum.
    /// Taken away at the till.
    CarryOut {},
    /// Shipped.
    ShipToHome {
        /// Where to.
        address: AddressBody,
    },
}

/// A postal address. Its free-text fields are refused (422
/// `card_data_rejected`) when they hold what looks like a card number.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressBody {
    /// Recipient, 1–128 characters.
    #[schema(min_length = 1, max_length = 128, example = "Ada Tremblay")]
    pub name: String,
    /// Street line, 1–128 characters.
    #[schema(min_length = 1, max_length = 128, example = "123 Rue Sainte-Catherine")]
    pub line1: String,
    /// Second line, 1–128 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128, example = "Apt 4")]
    pub line2: Option<String>,
    /// City, 1–64 characters.
    #[schema(min_length = 1, max_length = 64, example = "Montréal")]
    pub city: String,
    /// Province or state, 1–64 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 64, example = "QC")]
    pub region: Option<String>,
    /// Postal code, 1–16 characters.
    #[schema(min_length = 1, max_length = 16, example = "H2X 1Y4")]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 code, upper case.
    #[schema(pattern = "^[A-Z]{2}$", example = "CA")]
    pub country: String,
}

/// Customer contact. Refused (422 `card_data_rejected`) when a field holds
/// what looks like a card number.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerBody {
    /// E-mail: 3–254 characters, with an `@`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 3,
        max_length = 254,
        pattern = "@",
        example = "ada@example.com"
    )]
    pub email: Option<String>,
    /// Phone, 1–32 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 32, example = "+1 514 555 0100")]
    pub phone: Option<String>,
}

/// A payment as shown back (the token is not echoed).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PaymentView {
    /// The tender.
    #[schema(value_type = PaymentMethod)]
    pub method: String,
    /// Amount, minor units.
    #[schema(minimum = 1)]
    pub amount_minor: i64,
    /// Card brand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    /// Card last four.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[0-9]{4}$")]
    pub last4: Option<String>,
    /// Card authorisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<CardAuthorizationBody>,
}

/// A line as shown back.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LineView {
    /// SKU.
    #[schema(min_length = 1, max_length = 64)]
    pub sku: String,
    /// Units.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub quantity: i64,
    /// Unit price actually charged (from the request or the catalog).
    #[schema(minimum = 0)]
    pub unit_price_minor: i64,
}

/// The error body of every non-2xx answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine code, e.g. `idempotency_conflict`.
    pub code: String,
    /// Human explanation (never contains card data).
    pub message: String,
    /// The request field at fault, e.g. `lines[0].quantity`, when there is one.
    pub field: Option<String>,
}
