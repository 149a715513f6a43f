//! The OpenAPI links between operations: the 2xx responses that carry an
//! order id, and the operations that take it (`getOrder`, `cancelOrder`);
//! and links that fill a request body from a response ([`body_link`]).
//!
//! Written out because utoipa 5.5 serialises a link's operation id and
//! request body as `operation_id` and `request_body`, which no OpenAPI
//! reader knows: the keys are set as `operationId` and `requestBody` here
//! instead.

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

/// A link to `operation_id` whose request body is `body`: a literal with
/// runtime expressions (`$response.body#/...`) inside. The body is the
/// whole request, as OpenAPI has it; `x-schemathesis: {merge_body: false}`
/// says so to Schemathesis, which would otherwise merge it field by field
/// into a body of its own, leaving lines and payments that no longer add
/// up.
pub fn body_link(operation_id: &str, body: serde_json::Value, description: &str) -> Link {
    let mut link = LinkBuilder::new().description(description).build();
    let ext = link.extensions.get_or_insert_with(Default::default);
    ext.insert("operationId".to_owned(), json!(operation_id));
    ext.insert("requestBody".to_owned(), body);
    ext.insert("x-schemathesis".to_owned(), json!({"merge_body": false}));
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
