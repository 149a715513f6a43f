//! The order API's JSON bodies. The parts an order shares with the
//! agent's API (tenders, fulfillment, contact, the error body) are
//! `o2c_order_http`'s, so both documents state them alike.

use o2c_order_http::{
    CurrencyCode, CustomerBody, FulfillmentBody, LineView, PaymentBody, PaymentView, RemotePayment,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Where a customer ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelBody {
    /// The web shop.
    Web,
    /// The mobile app.
    Mobile,
}

/// `POST /v1/orders` body. Unknown fields are refused (400
/// `unknown_field`). Each line is priced from the catalog; the payments
/// must sum to the order total (422 `invalid_order`, rule
/// `payment_total_mismatch`), by a card authorised online or a gift card.
/// No field may hold a card number (422 `card_data_rejected`).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "channel": "web",
    "currency": "CAD",
    "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1499}],
    "payments": [{"method": "card", "amount_minor": 2998, "token": "tok_visa_4242",
                  "brand": "visa", "last4": "4242", "authorization": "online"}],
    "fulfillment": {"type": "ship_to_home", "address": {"name": "Ada Tremblay",
        "line1": "123 Rue Sainte-Catherine", "city": "Montréal", "postal_code": "H2X 1Y4",
        "country": "CA"}},
    "customer": {"email": "ada@example.com"}
}))]
pub struct CreateOrderRequest {
    /// `web` or `mobile`.
    pub channel: ChannelBody,
    /// The order's currency; every amount is in its minor units.
    #[schema(value_type = CurrencyCode)]
    pub currency: String,
    /// 1–500 lines.
    #[schema(min_items = 1, max_items = 500)]
    pub lines: Vec<WebLine>,
    /// 1–16 payments summing to the order total: `card` (authorised
    /// online) or `gift_card`.
    #[schema(min_items = 1, max_items = 16, value_type = Vec<RemotePayment>)]
    pub payments: Vec<PaymentBody>,
    /// Carry out (collect in store) or ship to home.
    pub fulfillment: FulfillmentBody,
    /// Contact for notices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<CustomerBody>,
}

/// One line of a web or mobile order.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebLine {
    /// An active product of the catalog priced in the order's currency
    /// (422 `unknown_sku`, or `invalid_order` rule `currency_mismatch`).
    #[schema(example = "SKU-1", min_length = 1, max_length = 64)]
    pub sku: String,
    /// Units, 1–1,000,000.
    #[schema(minimum = 1, maximum = 1_000_000, example = 2)]
    #[serde(deserialize_with = "o2c_order_http::integer::integral")]
    pub quantity: i64,
    /// The unit price the customer was shown, in minor units. Optional; if
    /// given it must be the catalog's price in force (422 `price_changed`),
    /// so a customer never pays a price they did not see.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "o2c_order_http::integer::integral_opt"
    )]
    #[schema(minimum = 0, example = 1499)]
    pub unit_price_minor: Option<i64>,
}

/// An order's status: `received` until the saga has its `OrderCreated`,
/// then the saga's (`accepted`, `paid`, `inventory_confirmed`,
/// `shipment_scheduled`, `dispatched`, `delivered`, `completed`,
/// `cancelled`, `refunded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusBody {
    /// Written by the API, on its way to the saga.
    Received,
    /// In the saga.
    Accepted,
    /// Payment captured.
    Paid,
    /// Stock confirmed.
    InventoryConfirmed,
    /// Shipment booked.
    ShipmentScheduled,
    /// With the carrier: see the history for its tracking number.
    Dispatched,
    /// Delivered by the carrier.
    Delivered,
    /// Done.
    Completed,
    /// Cancelled (by the customer or a failed step).
    Cancelled,
    /// Refunded after a cancellation.
    Refunded,
}

/// How a ship-to-home order's stock was checked at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StockCheckBody {
    /// Reserved before the order was confirmed.
    Verified,
    /// Not reserved (the stock check was unavailable); the saga's
    /// inventory step confirms it or cancels the order.
    Unverified,
}

/// `201` of `POST /v1/orders` (and, with `200`, a retry's stored answer).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct CreatedOrder {
    /// The new order's id (UUIDv7): `GET /v1/orders/{order_id}`.
    #[schema(
        pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$",
        example = "0196f3a2-7c1e-7b3a-9f00-5a2b3c4d5e6f"
    )]
    pub order_id: String,
    /// `received`.
    pub status: StatusBody,
    /// Where it was ordered.
    pub channel: ChannelBody,
    /// The order's currency.
    #[schema(value_type = CurrencyCode)]
    pub currency: String,
    /// Total, minor units.
    #[schema(minimum = 0)]
    pub total_minor: i64,
    /// For ship-to-home: whether its stock was reserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock_check: Option<StockCheckBody>,
    /// When the API wrote it, RFC 3339.
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// One step of an order's history.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct HistoryEntry {
    /// The saga event.
    #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub event_id: String,
    /// Its type, e.g. `PaymentCaptured`.
    pub event_type: String,
    /// The status it set, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusBody>,
    /// What happened.
    pub detail: String,
    /// When, RFC 3339.
    #[schema(format = DateTime)]
    pub occurred_at: String,
}

/// `GET /v1/orders/{order_id}`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct OrderDetail {
    /// UUIDv7.
    #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub order_id: String,
    /// Where it was ordered.
    pub channel: ChannelBody,
    /// The order's currency.
    #[schema(value_type = CurrencyCode)]
    pub currency: String,
    /// Total, minor units.
    #[schema(minimum = 0)]
    pub total_minor: i64,
    /// When the API wrote it, RFC 3339.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Its lines, as priced.
    pub lines: Vec<LineView>,
    /// Its payments (tokens are not echoed).
    pub payments: Vec<PaymentView>,
    /// Fulfillment.
    pub fulfillment: FulfillmentBody,
    /// Contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<CustomerBody>,
    /// Where it stands.
    pub status: StatusBody,
    /// Why, when cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether the customer asked to cancel it.
    pub cancel_requested: bool,
    /// Its saga history, oldest first.
    pub history: Vec<HistoryEntry>,
}

/// One row of `GET /v1/customers/me/orders`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct OrderSummary {
    /// UUIDv7.
    #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub order_id: String,
    /// Where it was ordered.
    pub channel: ChannelBody,
    /// The order's currency.
    #[schema(value_type = CurrencyCode)]
    pub currency: String,
    /// Total, minor units.
    #[schema(minimum = 0)]
    pub total_minor: i64,
    /// When the API wrote it, RFC 3339.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Where it stands.
    pub status: StatusBody,
}

/// `GET /v1/customers/me/orders`: newest first.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct OrderList {
    /// This page.
    pub orders: Vec<OrderSummary>,
    /// Pass as `before` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub next_before: Option<String>,
}

/// `GET /v1/customers/me/orders` query.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<i64>,
    /// Orders created before this one (`next_before` of the previous page).
    #[param(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub before: Option<String>,
}

/// `202` of `POST /v1/orders/{order_id}/cancel`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct CancelAccepted {
    /// The order.
    #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub order_id: String,
    /// Whether this request was a repeat (the cancellation was asked
    /// before; nothing more was done).
    pub repeat: bool,
}

/// `GET /v1/products` query.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProductParams {
    /// The currency to price in: one the API sells in.
    #[param(value_type = CurrencyCode)]
    pub currency: String,
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<i64>,
    /// Products after this SKU (`next_after` of the previous page).
    #[param(min_length = 1, max_length = 64)]
    pub after: Option<String>,
}

/// One product of `GET /v1/products`, priced in the page's currency.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct ProductView {
    /// What an order line names.
    #[schema(example = "SKU-1", min_length = 1, max_length = 64)]
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The unit price in force, in the page currency's minor units: what an
    /// order line's `unit_price_minor` must state, if it states one.
    #[schema(minimum = 0, example = 1499)]
    pub unit_price_minor: i64,
}

/// `GET /v1/products`: the active products priced in `currency`, in SKU
/// order.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct ProductPage {
    /// The currency of every price on the page.
    #[schema(value_type = CurrencyCode)]
    pub currency: String,
    /// This page. It may hold fewer than `limit` products while more
    /// follow.
    pub products: Vec<ProductView>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}
