//! The HTTP API's JSON bodies. Request types are strict
//! (`deny_unknown_fields`) and name fields exactly as the request does, so
//! error paths such as `lines[0].unit_price_minor` point into the body.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::store::{LocalStatus, OrderSyncState};

/// `POST /v1/orders` body.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureRequest {
    /// Must be the terminal the bearer token belongs to.
    #[schema(example = "T1")]
    pub terminal_id: String,
    /// ISO 4217 code of the order.
    #[schema(example = "CAD")]
    pub currency: String,
    /// 1–500 lines.
    pub lines: Vec<LineRequest>,
    /// 1–16 payments summing to the order total.
    pub payments: Vec<PaymentBody>,
    /// Carry out or ship to home.
    pub fulfillment: FulfillmentBody,
    /// Optional contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<CustomerBody>,
}

/// One order line.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineRequest {
    /// Catalog SKU.
    #[schema(example = "SKU-1")]
    pub sku: String,
    /// Units, 1–1,000,000.
    pub quantity: i64,
    /// Price of one unit in minor units; the catalog price when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price_minor: Option<i64>,
}

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
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum PaymentBody {
    /// A tokenised card.
    Card {
        /// Amount, minor units.
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
        amount_minor: i64,
    },
    /// A tokenised gift card.
    GiftCard {
        /// Amount, minor units.
        amount_minor: i64,
        /// Gift card token.
        token: String,
    },
}

/// How the goods reach the customer.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
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

/// A postal address.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressBody {
    /// Recipient.
    pub name: String,
    /// Street line.
    pub line1: String,
    /// Second line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    /// City.
    pub city: String,
    /// Province or state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}

/// Customer contact.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerBody {
    /// E-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// A payment as shown back (the token is not echoed).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PaymentView {
    /// `card`, `cash` or `gift_card`.
    pub method: String,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// Card brand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    /// Card last four.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last4: Option<String>,
    /// Card authorisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<CardAuthorizationBody>,
}

/// A line as shown back.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LineView {
    /// SKU.
    pub sku: String,
    /// Units.
    pub quantity: i64,
    /// Unit price actually charged (from the request or the catalog).
    pub unit_price_minor: i64,
}

/// Sync failure details.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SyncError {
    /// Machine code from the cloud.
    pub code: String,
    /// Human reason.
    pub reason: String,
}

/// `GET /v1/orders/{order_id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    /// UUIDv7.
    pub order_id: String,
    /// Selling terminal.
    pub terminal_id: String,
    /// ISO 4217.
    pub currency: String,
    /// Total, minor units.
    pub total_minor: i64,
    /// Commit time, RFC 3339.
    pub captured_at: String,
    /// Lines.
    pub lines: Vec<LineView>,
    /// Payments.
    pub payments: Vec<PaymentView>,
    /// Fulfillment.
    pub fulfillment: FulfillmentBody,
    /// Contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<CustomerBody>,
    /// `captured` or `cancelled`.
    pub status: LocalStatus,
    /// Why it was voided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    /// `pending`, `synced` or `rejected`.
    pub sync: OrderSyncState,
    /// Present when `sync` is `rejected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_error: Option<SyncError>,
    /// The cloud saga's status, once known (`accepted`, `paid`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_status: Option<String>,
    /// Reason given with the cloud status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_reason: Option<String>,
    /// RFC 3339: when this agent received the current cloud status (its
    /// own clock, like `captured_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_status_received_at: Option<String>,
    /// The order's W3C trace id (32 hex digits): every span of its way,
    /// from this capture to its completion, when traces are exported
    /// (`[telemetry]`). Open it in the trace UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// One row of `GET /v1/orders`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderListItem {
    /// UUIDv7.
    pub order_id: String,
    /// Selling terminal.
    pub terminal_id: String,
    /// ISO 4217.
    pub currency: String,
    /// Total, minor units.
    pub total_minor: i64,
    /// RFC 3339.
    pub captured_at: String,
    /// Local status.
    pub status: LocalStatus,
    /// Sync state.
    pub sync: OrderSyncState,
    /// Cloud status, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_status: Option<String>,
    /// RFC 3339: when this agent received the current cloud status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_status_received_at: Option<String>,
}

/// `GET /v1/orders` page.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderPage {
    /// Orders in id (capture time) order.
    pub orders: Vec<OrderListItem>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

/// `GET /v1/orders` query.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Return orders after this order id.
    pub after: Option<String>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<usize>,
    /// Only orders captured at or after this moment (RFC 3339, e.g.
    /// `2026-12-03T02:00:00Z`); a day's listing stays fast on a large
    /// database.
    pub captured_from: Option<String>,
    /// Only orders captured before this moment (RFC 3339, excluded).
    pub captured_to: Option<String>,
}

/// `GET /v1/reports/z` query.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ZReportQuery {
    /// The store's business date, `YYYY-MM-DD` (required): the orders
    /// captured from its `[business_day] closes_at` in `[store] timezone`
    /// to the next day's.
    #[param(example = "2026-12-03", required = true)]
    pub date: Option<String>,
}

/// `POST /v1/orders/{order_id}/cancel` body (optional).
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Why (default `store_void`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /v1/orders/{order_id}/cancel` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CancelResponse {
    /// The order.
    pub order_id: String,
    /// Always `cancelled`.
    pub status: LocalStatus,
    /// When it was first cancelled, RFC 3339.
    pub cancelled_at: String,
    /// Whether an earlier call had already cancelled it.
    pub already_cancelled: bool,
}

/// `GET /v1/sync`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SyncResponse {
    /// Whether the sync task is connected to the cloud.
    pub connected: bool,
    /// Events not yet acked or rejected.
    pub pending_events: u64,
    /// Age of the oldest pending event, ms.
    pub oldest_pending_age_ms: Option<u64>,
    /// Highest seq acked by the cloud (0 before any).
    pub last_acked_seq: u64,
    /// When the last ack arrived, RFC 3339.
    pub last_ack_at: Option<String>,
    /// Events the cloud refused for good.
    pub rejected_events: u64,
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

/// `GET /healthz` and `GET /readyz`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthBody {
    /// `ok` or `unavailable`.
    pub status: String,
}
