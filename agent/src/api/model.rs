//! The HTTP API's JSON bodies. Request types are strict
//! (`deny_unknown_fields`) and name fields exactly as the request does, so
//! error paths such as `lines[0].unit_price_minor` point into the body.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::store::{LocalStatus, OrderSyncState};
pub use crate::store::{RefundBody, ReturnLineBody, ReturnState, ReturnView};

// The order's parts both order APIs share.
pub use o2c_order_http::{
    AddressBody, CardAuthorizationBody, CurrencyCode, CustomerBody, ErrorBody, ErrorDetail,
    FulfillmentBody, LineView, PaymentBody, PaymentMethod, PaymentView,
};

/// `POST /v1/orders` body. Unknown fields are refused (400
/// `unknown_field`). The payments must sum to the order total, the sum of
/// `quantity × unit_price_minor` over the lines (422 `invalid_order`, rule
/// `payment_total_mismatch`); no free-text field may hold a card number
/// (422 `card_data_rejected`).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "terminal_id": "T1",
    "currency": "CAD",
    "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1499}],
    "payments": [{"method": "cash", "amount_minor": 2998}],
    "fulfillment": {"type": "carry_out"}
}))]
pub struct CaptureRequest {
    /// The terminal the bearer token belongs to (403 `forbidden` otherwise).
    #[schema(
        example = "T1",
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9_-]{1,64}$"
    )]
    pub terminal_id: String,
    /// The order's currency; every amount is in its minor units.
    #[schema(value_type = CurrencyCode)]
    pub currency: String,
    /// 1–500 lines.
    #[schema(min_items = 1, max_items = 500)]
    pub lines: Vec<LineRequest>,
    /// 1–16 payments summing to the order total.
    #[schema(min_items = 1, max_items = 16)]
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
    /// SKU, 1–64 characters. Without `unit_price_minor` it must be an
    /// active product of the catalog priced in the order's currency (422
    /// `unknown_sku` or `invalid_order`, rule `currency_mismatch`). Refused
    /// (422 `card_data_rejected`) when it holds what looks like a card
    /// number.
    #[schema(example = "SKU-1", min_length = 1, max_length = 64)]
    pub sku: String,
    /// Units, 1–1,000,000.
    #[schema(minimum = 1, maximum = 1_000_000, example = 2)]
    #[serde(deserialize_with = "o2c_order_http::integer::integral")]
    pub quantity: i64,
    /// Price of one unit in minor units, 0 or more; the catalog price when
    /// absent. A line or order total beyond 64 bits is refused (422
    /// `invalid_order`, rule `overflow`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "o2c_order_http::integer::integral_opt"
    )]
    #[schema(minimum = 0, example = 1499)]
    pub unit_price_minor: Option<i64>,
}

/// `POST /v1/orders/{order_id}/returns` body. Unknown fields are refused
/// (400 `unknown_field`); no field may hold a card number (422
/// `card_data_rejected`).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "terminal_id": "T1",
    "lines": [{"sku": "SKU-1", "quantity": 1}],
    "refund": {"method": "cash"},
    "reason": "damaged"
}))]
pub struct ReturnRequest {
    /// The terminal the bearer token belongs to (403 `forbidden` otherwise).
    #[schema(
        example = "T1",
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9_-]{1,64}$"
    )]
    pub terminal_id: String,
    /// 1–500 lines, one per SKU.
    #[schema(min_items = 1, max_items = 500)]
    pub lines: Vec<ReturnLineBody>,
    /// How the money goes back.
    pub refund: RefundBody,
    /// Why, 1–128 characters, e.g. `damaged` or `changed_mind`.
    #[schema(min_length = 1, max_length = 128, example = "damaged")]
    pub reason: String,
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
    #[schema(
        pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$",
        example = "0196f3a2-7c1e-7b3a-9f00-5a2b3c4d5e6f"
    )]
    pub order_id: String,
    /// Selling terminal.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "T1")]
    pub terminal_id: String,
    /// The order's currency.
    #[schema(value_type = CurrencyCode)]
    pub currency: String,
    /// Total, minor units.
    #[schema(minimum = 0)]
    pub total_minor: i64,
    /// Commit time, RFC 3339.
    #[schema(format = DateTime)]
    pub captured_at: String,
    /// Lines.
    #[schema(min_items = 1, max_items = 500)]
    pub lines: Vec<LineView>,
    /// Payments.
    #[schema(min_items = 1, max_items = 16)]
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
    #[schema(
        pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$",
        example = "0196f3a2-7c1e-7b3a-9f00-5a2b3c4d5e6f"
    )]
    pub order_id: String,
    /// Selling terminal.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "T1")]
    pub terminal_id: String,
    /// The order's currency.
    #[schema(value_type = CurrencyCode)]
    pub currency: String,
    /// Total, minor units.
    #[schema(minimum = 0)]
    pub total_minor: i64,
    /// RFC 3339.
    #[schema(format = DateTime)]
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
    #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub next_after: Option<String>,
}

/// `GET /v1/orders` query.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Return orders after this order id (a UUIDv7, as `next_after` gives
    /// it).
    #[param(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        example = "0196f3a2-7c1e-7b3a-9f00-5a2b3c4d5e6f"
    )]
    pub after: Option<String>,
    /// Page size, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000, default = 100, example = 100)]
    pub limit: Option<usize>,
    /// Only orders captured at or after this moment (RFC 3339, e.g.
    /// `2026-12-03T02:00:00Z`); a day's listing stays fast on a large
    /// database.
    #[param(format = DateTime, example = "2026-12-03T02:00:00Z")]
    pub captured_from: Option<String>,
    /// Only orders captured before this moment (RFC 3339, excluded); it
    /// must be after `captured_from`.
    #[param(format = DateTime, example = "2026-12-04T02:00:00Z")]
    pub captured_to: Option<String>,
}

/// `GET /v1/reports/z` query.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ZReportQuery {
    /// The store's business date, `YYYY-MM-DD` (required): the orders
    /// captured from its `[business_day] closes_at` in `[store] timezone`
    /// to the next day's, in years 1970–9998 (400 `invalid_query`
    /// otherwise).
    #[param(example = "2026-12-03", required = true, format = Date,
        pattern = "^(19[7-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]
    pub date: Option<String>,
}

/// `POST /v1/orders/{order_id}/cancel` body (optional).
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "customer_changed_mind"}))]
pub struct CancelRequest {
    /// Why, 1–128 characters (default `store_void`). Refused (422
    /// `card_data_rejected`) when it holds what looks like a card number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128, example = "customer_changed_mind")]
    pub reason: Option<String>,
}

/// `POST /v1/orders/{order_id}/cancel` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CancelResponse {
    /// The order.
    #[schema(
        pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$",
        example = "0196f3a2-7c1e-7b3a-9f00-5a2b3c4d5e6f"
    )]
    pub order_id: String,
    /// Always `cancelled`.
    pub status: LocalStatus,
    /// When it was first cancelled, RFC 3339.
    #[schema(format = DateTime)]
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

/// `GET /healthz` and `GET /readyz`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthBody {
    /// `ok` or `unavailable`.
    pub status: String,
}
