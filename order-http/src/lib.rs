//! # o2c-order-http: what an order looks like over HTTP, in both order APIs
//!
//! The store agent's API (for tills) and the cloud order API (for the web
//! shop and the app) take and show orders alike; this crate is that shared
//! part, written once:
//! - [`body`]: the JSON bodies of tenders, fulfillment, address, contact,
//!   lines and payments as shown back, and the error body.
//! - [`schema`]: their hand-written OpenAPI schemas where the derive
//!   cannot state what the code enforces (tagged unions closed to unknown
//!   fields, the ISO 4217 codes the protocol accepts, tenders a remote
//!   channel may take).
//! - [`parse`]: the card-data scan of a raw body, the strict parse naming
//!   the field at fault, the `Idempotency-Key` header.
//! - [`integer`]: integers as JSON writes them (`2998` or `2998.0`, never
//!   a fraction).
//! - [`convert`]: bodies to `o2c_protocol` types and back, and
//!   validation paths onto request names.
//! - [`error`]: [`ApiError`], the status and `{"error": {"code",
//!   "message", "field"}}` body of every failure.
//! - [`links`]: OpenAPI links from a response's order id to the
//!   operations that take it.

pub mod body;
pub mod convert;
pub mod error;
pub mod integer;
pub mod links;
pub mod parse;
pub mod schema;

pub use body::{
    AddressBody, CardAuthorizationBody, CustomerBody, ErrorBody, ErrorDetail, FulfillmentBody,
    LineView, PaymentBody, PaymentView,
};
pub use convert::{
    customer, customer_body, fulfillment, fulfillment_body, line_view, payment, payment_view,
    request_path,
};
pub use error::{ApiError, ErrorCode};
pub use parse::{BodyError, MAX_KEY_LEN, idempotency_key, parse_body, scan_card_data};
pub use schema::{CURRENCY_CODES, CurrencyCode, PaymentMethod, RemotePayment};
