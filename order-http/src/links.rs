//! The OpenAPI links between operations: the 2xx responses that carry an
//! order id, and the operations that take it (`getOrder`, `cancelOrder`).
//!
//! Written out because utoipa 5.5 serialises a link's operation id as
//! `operation_id`, which no OpenAPI reader knows: the key is set as
//! `operationId` here instead.

use serde_json::json;
use utoipa::openapi::link::{Link, LinkBuilder};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};

/// `$response.body#/order_id`: the order id of the response.
pub const BODY_ORDER_ID: &str = "$response.body#/order_id";

/// A link to `operation_id`, with `parameter` set from `expression`.
pub fn link(operation_id: &str, parameter: &str, expression: &str, description: &str) -> Link {
    let mut link = LinkBuilder::new()
        .parameter(parameter, expression)
        .description(description)
        .build();
    link.extensions
        .get_or_insert_with(Default::default)
        .insert("operationId".to_owned(), json!(operation_id));
    link
}

/// A JSON response of component `schema`, with `links`.
pub fn json_response(description: &str, schema: &str, links: Vec<(&str, Link)>) -> RefOr<Response> {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(schema)))
        .build();
    let mut response = ResponseBuilder::new()
        .description(description)
        .content("application/json", content);
    for (name, l) in links {
        response = response.link(name, l);
    }
    response.build().into()
}

/// Links from a response carrying `whose` order id to `getOrder` and
/// `cancelOrder` (described as `cancel_verb`, e.g. `Void` at a till).
pub fn order_links(whose: &str, cancel_verb: &str) -> Vec<(&'static str, Link)> {
    vec![
        (
            "getOrder",
            link(
                "getOrder",
                "order_id",
                BODY_ORDER_ID,
                &format!("Read {whose}"),
            ),
        ),
        (
            "cancelOrder",
            link(
                "cancelOrder",
                "order_id",
                BODY_ORDER_ID,
                &format!("{cancel_verb} {whose}"),
            ),
        ),
    ]
}
