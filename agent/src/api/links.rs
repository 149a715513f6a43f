//! The OpenAPI links between operations: the 2xx responses that carry an
//! order id, and the operations that take it (`getOrder`, `cancelOrder`);
//! the responses of a return, which carry its id for `getReturn`.
//! Each response here is used in a
//! handler's `#[utoipa::path]` as `response = inline(...)`.
//!
//! The links are built by `o2c_order_http::links`.

use o2c_order_http::links::{BODY_ORDER_ID, json_response, link, order_links};
use utoipa::ToResponse;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::Response;
use utoipa::openapi::{ObjectBuilder, RefOr, Type};

/// `$response.body#/return_id`: the return id of the response.
const BODY_RETURN_ID: &str = "$response.body#/return_id";

/// `201` of `captureOrder`.
#[derive(Debug)]
pub(crate) struct Captured;

impl<'r> ToResponse<'r> for Captured {
    fn response() -> (&'r str, RefOr<Response>) {
        let links = order_links("the order just captured", "Void");
        let r = json_response("Captured and durable", "CaptureReceipt", links);
        ("Captured", r)
    }
}

/// `200` of `captureOrder`: a replay.
#[derive(Debug)]
pub(crate) struct Replayed;

impl<'r> ToResponse<'r> for Replayed {
    fn response() -> (&'r str, RefOr<Response>) {
        let links = order_links("the order the first request captured", "Void");
        let r = json_response(
            "Replay of an earlier request with the same key and body: the first answer, byte \
             for byte",
            "CaptureReceipt",
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
        let cancel = link("cancelOrder", "order_id", BODY_ORDER_ID, "Void this order");
        let r = json_response("The order", "OrderView", vec![("cancelOrder", cancel)]);
        ("OrderRead", r)
    }
}

/// `200` of `cancelOrder`.
#[derive(Debug)]
pub(crate) struct Cancelled;

impl<'r> ToResponse<'r> for Cancelled {
    fn response() -> (&'r str, RefOr<Response>) {
        let get = link(
            "getOrder",
            "order_id",
            BODY_ORDER_ID,
            "Read the voided order",
        );
        let r = json_response(
            "Cancelled (now or by an earlier call)",
            "CancelResponse",
            vec![("getOrder", get)],
        );
        ("Cancelled", r)
    }
}

/// A `ReturnView` response with a link to `getReturn` and, for `created`
/// answers, the `Location` of the return.
fn return_response(description: &str, whose: &str) -> RefOr<Response> {
    let get = link(
        "getReturn",
        "return_id",
        BODY_RETURN_ID,
        &format!("Read {whose}"),
    );
    let mut r = json_response(description, "ReturnView", vec![("getReturn", get)]);
    if let RefOr::T(resp) = &mut r {
        let location = HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some("`/v1/returns/{return_id}`"))
            .build();
        resp.headers.insert("Location".to_owned(), location);
    }
    r
}

/// `201` of `requestReturn`.
#[derive(Debug)]
pub(crate) struct ReturnCreated;

impl<'r> ToResponse<'r> for ReturnCreated {
    fn response() -> (&'r str, RefOr<Response>) {
        let r = return_response(
            "Taken and durable; the cloud checks it later (`status: requested`)",
            "the return just taken",
        );
        ("ReturnCreated", r)
    }
}

/// `200` of `requestReturn`: a replay.
#[derive(Debug)]
pub(crate) struct ReturnReplayed;

impl<'r> ToResponse<'r> for ReturnReplayed {
    fn response() -> (&'r str, RefOr<Response>) {
        let r = return_response(
            "Replay of an earlier request with the same key, order and body: the first \
             answer, byte for byte",
            "the return the first request took",
        );
        ("ReturnReplayed", r)
    }
}
