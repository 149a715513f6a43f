//! The OpenAPI 3 document of the order API, generated from the handlers'
//! annotations. It is checked in as `cloud/api/openapi.json`; the test
//! `tests/openapi.rs` fails when the two drift. Regenerate with
//! `O2C_UPDATE_OPENAPI=1 cargo test -p o2c-api --test openapi`.

use o2c_order_http::links::{BODY_ORDER_ID, body_link, json_response, link, order_links};
use serde_json::json;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::Link;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{Modify, OpenApi, ToResponse};

use crate::model;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "o2c order API",
        description = "Web and mobile orders into the Order-to-Cash saga. Customers \
                       authenticate with a bearer JWT; 1,000 requests a minute per customer \
                       and 100 per anonymous IP. Every error is \
                       {\"error\": {\"code\", \"message\", \"field\"}}, as the store agent's.",
        version = "1"
    ),
    paths(
        crate::orders::create,
        crate::orders::get_order,
        crate::orders::cancel,
        crate::orders::my_orders,
        crate::products::list,
        crate::http::openapi,
    ),
    components(schemas(
        model::CreateOrderRequest, model::WebLine, model::ChannelBody, model::StatusBody,
        model::StockCheckBody, model::CreatedOrder, model::HistoryEntry, model::OrderDetail,
        model::OrderSummary, model::OrderList, model::CancelAccepted,
        model::ProductPage, model::ProductView,
        o2c_order_http::RemotePayment, o2c_order_http::CardAuthorizationBody,
        o2c_order_http::FulfillmentBody, o2c_order_http::AddressBody,
        o2c_order_http::CustomerBody, o2c_order_http::LineView, o2c_order_http::PaymentView,
        o2c_order_http::ErrorBody, o2c_order_http::ErrorDetail, o2c_order_http::CurrencyCode,
    )),
    modifiers(&Bearer)
)]
struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The document, pretty-printed with a trailing newline: the one checked
/// in, for an API that sells in any currency.
pub fn openapi_json() -> String {
    served_json(&[])
}

/// The document an API selling in `currencies` (`[api] currencies`; empty:
/// any) serves: its `CurrencyCode` lists those only.
pub fn served_json(currencies: &[o2c_protocol::Currency]) -> String {
    let mut doc = ApiDoc::openapi();
    if !currencies.is_empty()
        && let Some(RefOr::T(utoipa::openapi::schema::Schema::Object(code))) = doc
            .components
            .as_mut()
            .and_then(|c| c.schemas.get_mut("CurrencyCode"))
    {
        code.enum_values = Some(currencies.iter().map(|c| c.to_string().into()).collect());
        code.description = Some("ISO 4217 alphabetic code: a currency this API sells in.".into());
    }
    // Through a `serde_json::Value`, whose objects keep their keys sorted:
    // utoipa keeps a link's extensions (`operationId`, `requestBody`,
    // `x-schemathesis`) in a `HashMap`, whose order changes from run to run.
    let mut s = serde_json::to_value(&doc)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

/// An error response with `header` described.
fn error_with_header(description: &str, header: &str, header_description: &str) -> RefOr<Response> {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorBody")))
        .build();
    ResponseBuilder::new()
        .description(description)
        .content("application/json", content)
        .header(
            header,
            HeaderBuilder::new()
                .schema(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::Type::String),
                )
                .description(Some(header_description))
                .build(),
        )
        .build()
        .into()
}

/// `201` of `createOrder`.
#[derive(Debug)]
pub(crate) struct Created;

impl<'r> ToResponse<'r> for Created {
    fn response() -> (&'r str, RefOr<Response>) {
        let links = order_links("the order just created", "Cancel");
        (
            "Created",
            json_response("Created: on its way to the saga", "CreatedOrder", links),
        )
    }
}

/// `200` of `createOrder`: a retry.
#[derive(Debug)]
pub(crate) struct Replayed;

impl<'r> ToResponse<'r> for Replayed {
    fn response() -> (&'r str, RefOr<Response>) {
        let links = order_links("the order the first request created", "Cancel");
        let r = json_response(
            "A retry with the same key and body: the first answer, byte for byte \
             (`Idempotent-Replayed: true`)",
            "CreatedOrder",
            links,
        );
        ("Replayed", r)
    }
}

/// `200` of `getOrder`.
#[derive(Debug)]
pub(crate) struct OrderRead;

impl<'r> ToResponse<'r> for OrderRead {
    fn response() -> (&'r str, RefOr<Response>) {
        let cancel = link(
            "cancelOrder",
            "order_id",
            BODY_ORDER_ID,
            "Cancel this order",
        );
        let again = one_unit_link(
            "$response.body#/currency",
            "$response.body#/lines/0/sku",
            "$response.body#/lines/0/unit_price_minor",
            "Order one more unit of this order's first line, at the price it was sold at \
             (refused `price_changed` if the catalog's price has changed since)",
        );
        let r = json_response(
            "The order",
            "OrderDetail",
            vec![("cancelOrder", cancel), ("orderAgain", again)],
        );
        ("OrderRead", r)
    }
}

/// `200` of `listProducts`, with a link to order the page's first product.
#[derive(Debug)]
pub(crate) struct ProductsRead;

impl<'r> ToResponse<'r> for ProductsRead {
    fn response() -> (&'r str, RefOr<Response>) {
        let order = one_unit_link(
            "$response.body#/currency",
            "$response.body#/products/0/sku",
            "$response.body#/products/0/unit_price_minor",
            "Order one unit of the page's first product at its listed price",
        );
        let r = json_response(
            "A page of products",
            "ProductPage",
            vec![("orderFirstProduct", order)],
        );
        ("ProductsRead", r)
    }
}

/// A link to `createOrder` for one unit of a SKU at a price, each a
/// runtime expression into the response: paid by card, collected in store.
fn one_unit_link(currency: &str, sku: &str, price: &str, description: &str) -> Link {
    body_link(
        "createOrder",
        json!({
            "channel": "web",
            "currency": currency,
            "lines": [{"sku": sku, "quantity": 1, "unit_price_minor": price}],
            "payments": [{
                "method": "card", "amount_minor": price, "token": "tok_visa_4f9a2c",
                "brand": "visa", "last4": "4242", "authorization": "online",
            }],
            "fulfillment": {"type": "carry_out"},
        }),
        &format!("{description}, paid by card and collected in store"),
    )
}

/// `401`.
#[derive(Debug)]
pub(crate) struct Unauthorized;

impl<'r> ToResponse<'r> for Unauthorized {
    fn response() -> (&'r str, RefOr<Response>) {
        let r = error_with_header(
            "unauthorized: no token, an expired one, one of another key, or a subject that is \
             not a customer id",
            "WWW-Authenticate",
            "The bearer challenge (RFC 6750)",
        );
        ("Unauthorized", r)
    }
}

/// `429`.
#[derive(Debug)]
pub(crate) struct TooMany;

impl<'r> ToResponse<'r> for TooMany {
    fn response() -> (&'r str, RefOr<Response>) {
        let r = error_with_header(
            "rate_limited: over the customer's or the IP's quota",
            "Retry-After",
            "Seconds to wait",
        );
        ("TooMany", r)
    }
}

/// `503`.
#[derive(Debug)]
pub(crate) struct Unavailable;

impl<'r> ToResponse<'r> for Unavailable {
    fn response() -> (&'r str, RefOr<Response>) {
        let r = error_with_header(
            "unavailable: the order store or the catalog cannot be reached; nothing was written",
            "Retry-After",
            "Seconds to wait",
        );
        ("Unavailable", r)
    }
}
