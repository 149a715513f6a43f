//! The OpenAPI links between operations: the 2xx responses that carry an
//! order id, and the operations that take it (`getOrder`, `cancelOrder`).
//! Each response here is used in a
//! handler's `#[utoipa::path]` as `response = inline(...)`.
//!
//! The links are built by `o2c_order_http::links`.

use o2c_order_http::links::{BODY_ORDER_ID, json_response, link, order_links};
use utoipa::ToResponse;
use utoipa::openapi::RefOr;
use utoipa::openapi::response::Response;

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
