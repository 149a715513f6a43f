use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use tower::ServiceExt as _;

use super::*;

#[test]
fn a_void_without_options_is_the_default_request() {
    for body in [&b""[..], b"  \n", b"null", b" null ", b"{}"] {
        let req = cancel_request(body).unwrap_or_else(|e| panic!("{body:?}: {e}"));
        assert_eq!(req.reason, None, "{body:?}");
    }
    let req = cancel_request(br#"{"reason": "customer_changed_mind"}"#).unwrap();
    assert_eq!(req.reason.as_deref(), Some("customer_changed_mind"));
    assert_eq!(cancel_request(b"[").unwrap_err().code, "malformed_json");
    assert_eq!(cancel_request(b"7").unwrap_err().code, "malformed_json");
    let e = cancel_request(br#"{"reason": "x", "why": 1}"#).unwrap_err();
    assert_eq!(e.code, "unknown_field");
}

#[tokio::test]
async fn a_path_that_is_not_utf8_is_a_json_404() {
    let app = Router::new().route(
        "/v1/orders/{order_id}",
        get(|path: Result<Path<String>, PathRejection>| async move {
            path_order_id(path).map(|id| id.to_string())
        }),
    );
    for uri in [
        "/v1/orders/%FF",
        "/v1/orders/not-an-id",
        "/v1/orders/550e8400-e29b-41d4-a716-446655440000",
    ] {
        let resp = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "application/json",
            "{uri}"
        );
    }
    let id = "0196f3a2-7c1e-7b3a-9f00-5a2b3c4d5e6f";
    let resp = app
        .oneshot(
            Request::get(format!("/v1/orders/{id}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}
