//! API tests: the real router, store and catalog in a temp dir, called
//! in-process with `oneshot` (no socket). Every status code the issue lists
//! is exercised here, except 507 (see `disk_full.rs`).

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::harness::{Harness, assert_nothing_written, code, field};
use common::{TOKEN_T1, TOKEN_T2, order_body};
use serde_json::json;
use tower::ServiceExt;

#[tokio::test]
async fn capture_returns_201_then_replays_200_and_conflicts_409() {
    let h = Harness::new("");
    let body = order_body();
    let (s, _, first) = h.post_order("key-1", &body).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    assert_eq!(first["status"], "captured");
    assert_eq!(first["sync"], "pending");
    assert_eq!(first["total_minor"], 2998);
    assert_eq!(first["currency"], "CAD");
    assert!(first["captured_at"].as_str().unwrap().ends_with('Z'));
    let id = first["order_id"].as_str().unwrap().to_owned();

    let (s, _, again) = h.post_order("key-1", &body).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again, first, "a replay returns the same response");

    let mut other = body.clone();
    other["lines"][0]["quantity"] = json!(3);
    other["payments"][0]["amount_minor"] = json!(4497);
    let (s, _, conflict) = h.post_order("key-1", &other).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(code(&conflict), "idempotency_conflict");
    assert_eq!(h.agent.store().last_seq(), 1);

    let (s, _, order) = h.get(&format!("/v1/orders/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(order["order_id"], id.as_str());
    assert_eq!(order["status"], "captured");
    assert_eq!(order["sync"], "pending");
    assert_eq!(order["lines"][0]["unit_price_minor"], 1499);
    assert_eq!(order["payments"][0]["last4"], "4242");
    assert!(
        order["payments"][0].get("token").is_none(),
        "token not echoed"
    );
    assert_eq!(order["customer"]["email"], "a@example.com");
    h.close().await;
}

#[tokio::test]
async fn bad_requests_get_400() {
    let h = Harness::new("");
    let auth = format!("Bearer {TOKEN_T1}");
    let (s, _, v) = h
        .send(
            "POST",
            "/v1/orders",
            &[("authorization", &auth), ("idempotency-key", "k")],
            b"{\"terminal_id\": ".to_vec(),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "malformed_json"));

    let (s, _, v) = h
        .send(
            "POST",
            "/v1/orders",
            &[("authorization", &auth)],
            serde_json::to_vec(&order_body()).unwrap(),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::BAD_REQUEST, "missing_idempotency_key")
    );

    let long = "k".repeat(129);
    let (s, _, v) = h.post_order(&long, &order_body()).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::BAD_REQUEST, "invalid_idempotency_key")
    );

    let mut unknown = order_body();
    unknown["lines"][0]["colour"] = json!("red");
    let (s, _, v) = h.post_order("k", &unknown).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "unknown_field"));
    assert_eq!(field(&v), "lines[0].colour");
    assert_nothing_written(&h).await;
    h.close().await;
}

#[tokio::test]
async fn auth_failures_get_401_and_403() {
    let h = Harness::new("");
    let body = serde_json::to_vec(&order_body()).unwrap();
    let (s, _, v) = h
        .send(
            "POST",
            "/v1/orders",
            &[("idempotency-key", "k")],
            body.clone(),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let (s, _, _) = h
        .send(
            "POST",
            "/v1/orders",
            &[("authorization", "Bearer nope"), ("idempotency-key", "k")],
            body.clone(),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let t2 = format!("Bearer {TOKEN_T2}");
    let (s, _, v) = h
        .send(
            "POST",
            "/v1/orders",
            &[("authorization", &t2), ("idempotency-key", "k")],
            body,
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    assert_eq!(field(&v), "terminal_id");
    let (s, _, _) = h.send("GET", "/v1/products/SKU-1", &[], Vec::new()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_nothing_written(&h).await;
    h.close().await;
}

#[tokio::test]
async fn oversized_body_gets_413() {
    let h = Harness::new("");
    let mut body = order_body();
    body["customer"]["phone"] = json!("x".repeat(70 * 1024));
    let (s, _, v) = h.post_order("k", &body).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    assert_nothing_written(&h).await;
    h.close().await;
}

#[tokio::test]
async fn invalid_orders_get_422_naming_the_field() {
    let h = Harness::new("");
    let mut zero = order_body();
    zero["lines"][0]["quantity"] = json!(0);
    let (s, _, v) = h.post_order("k1", &zero).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_order")
    );
    assert_eq!(field(&v), "lines[0].quantity");

    let mut neg = order_body();
    neg["lines"][0]["unit_price_minor"] = json!(-1);
    let (s, _, v) = h.post_order("k2", &neg).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field(&v), "lines[0].unit_price_minor");

    let mut short = order_body();
    short["payments"][0]["amount_minor"] = json!(100);
    let (s, _, v) = h.post_order("k3", &short).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field(&v), "payments");

    let mut no_price = order_body();
    no_price["lines"][0]
        .as_object_mut()
        .unwrap()
        .remove("unit_price_minor");
    let (s, _, v) = h.post_order("k4", &no_price).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "unknown_sku")
    );
    assert_eq!(field(&v), "lines[0].sku");

    let mut wrong_type = order_body();
    wrong_type["lines"][0]["quantity"] = json!("two");
    let (s, _, v) = h.post_order("k5", &wrong_type).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field")
    );
    assert_eq!(field(&v), "lines[0].quantity");
    assert_nothing_written(&h).await;
    h.close().await;
}

/// Collects log output so the test can prove a card number never reaches it.
#[derive(Clone, Default)]
struct LogBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn card_numbers_get_422_and_are_never_logged() {
    let logs = LogBuf::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let h = Harness::new("");
    let pan = "4111111111111111";
    let mut in_token = order_body();
    in_token["payments"][0]["token"] = json!(pan);
    let (s, _, v) = h.post_order("k1", &in_token).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "card_data_rejected")
    );
    assert_eq!(field(&v), "payments[0].token");
    assert!(!v.to_string().contains(pan), "the value is not echoed");
    let mut in_email = order_body();
    in_email["customer"]["email"] = json!("4111-1111-1111-1111@example.com");
    let (s, _, v) = h.post_order("k2", &in_email).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "card_data_rejected")
    );
    assert_eq!(field(&v), "customer.email");
    assert_nothing_written(&h).await;
    h.close().await;
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(!text.contains(pan) && !text.contains("4111-1111"), "{text}");
}

#[tokio::test]
async fn backlog_full_gets_503_with_retry_after() {
    let h = Harness::new("[outbox]\nmax_pending_events = 2\n");
    for k in ["k1", "k2"] {
        assert_eq!(h.post_order(k, &order_body()).await.0, StatusCode::CREATED);
    }
    let (s, headers, v) = h.post_order("k3", &order_body()).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::SERVICE_UNAVAILABLE, "backlog_full")
    );
    assert!(headers.get("retry-after").is_some());
    assert_eq!(h.agent.store().last_seq(), 2, "orders are never evicted");
    h.close().await;
}

#[tokio::test]
async fn cancel_is_idempotent_and_404s_unknown_orders() {
    let h = Harness::new("");
    let (_, _, created) = h.post_order("k", &order_body()).await;
    let id = created["order_id"].as_str().unwrap();
    let auth = format!("Bearer {TOKEN_T1}");
    let uri = format!("/v1/orders/{id}/cancel");
    let (s, _, first) = h
        .send("POST", &uri, &[("authorization", &auth)], Vec::new())
        .await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(first["status"], "cancelled");
    assert_eq!(first["already_cancelled"], false);
    let (s, _, second) = h
        .send(
            "POST",
            &uri,
            &[("authorization", &auth)],
            br#"{"reason":"customer_changed_mind"}"#.to_vec(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(second["already_cancelled"], true);
    assert_eq!(second["cancelled_at"], first["cancelled_at"]);
    assert_eq!(h.agent.store().last_seq(), 2, "one OrderCancelled appended");
    // A card number in the reason, raw or hidden behind JSON escapes, is
    // refused and never stored.
    for reason in [
        r#"{"reason":"card 4111 1111 1111 1111"}"#,
        r#"{"reason":"\u0034\u0031\u0031\u0031111111111111"}"#,
    ] {
        let (_, _, other) = h
            .post_order(&format!("k-{}", reason.len()), &order_body())
            .await;
        let other_uri = format!("/v1/orders/{}/cancel", other["order_id"].as_str().unwrap());
        let (s, _, v) = h
            .send(
                "POST",
                &other_uri,
                &[("authorization", &auth)],
                reason.as_bytes().to_vec(),
            )
            .await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::UNPROCESSABLE_ENTITY, "card_data_rejected"),
            "{v}"
        );
        assert_eq!(v["error"]["field"], "reason", "{v}");
        assert!(!v.to_string().contains("4111"), "{v}");
    }
    assert_eq!(
        h.agent.store().last_seq(),
        4,
        "two orders more, no cancellation"
    );
    let (_, _, order) = h.get(&format!("/v1/orders/{id}")).await;
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["cancel_reason"], "store_void");

    let missing = "01900000-0000-7000-8000-000000000000";
    let (s, _, v) = h
        .send(
            "POST",
            &format!("/v1/orders/{missing}/cancel"),
            &[("authorization", &auth)],
            Vec::new(),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "order_not_found"));
    let (s, _, v) = h.get("/v1/orders/not-an-id").await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "order_not_found"));
    h.close().await;
}

#[tokio::test]
async fn list_pages_through_orders() {
    let h = Harness::new("");
    let mut ids = Vec::new();
    for i in 0..5 {
        let (_, _, v) = h.post_order(&format!("k{i}"), &order_body()).await;
        ids.push(v["order_id"].as_str().unwrap().to_owned());
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut uri = "/v1/orders?limit=2".to_owned();
    loop {
        let (s, _, page) = h.get(&uri).await;
        assert_eq!(s, StatusCode::OK);
        for o in page["orders"].as_array().unwrap() {
            seen.push(o["order_id"].as_str().unwrap().to_owned());
        }
        match page["next_after"].as_str() {
            Some(after) => uri = format!("/v1/orders?limit=2&after={after}"),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let (s, _, v) = h.get("/v1/orders?limit=0").await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_query"));
    h.close().await;
}

#[tokio::test]
async fn products_sync_health_metrics_and_openapi() {
    let h = Harness::new("");
    let line = r#"{"sku":"SKU-CAT","name":"Mug","price_minor":1250,"currency":"CAD","category":"home","stock_on_hand":4}"#;
    h.agent.catalog().import_jsonl(line.as_bytes()).unwrap();
    let (s, _, p) = h.get("/v1/products/SKU-CAT").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p["price_minor"], 1250);
    assert_eq!(
        (&p["on_hand"], &p["available"], &p["active"]),
        (&json!(4), &json!(4), &json!(true))
    );
    let (s, _, st) = h.get("/v1/catalog/status").await;
    assert_eq!(s, StatusCode::OK);
    // No catalog service configured, never pulled: no version.
    assert_eq!(
        (&st["configured"], &st["version"]),
        (&json!(false), &json!(null))
    );
    let (s, _, v) = h.get("/v1/products/NOPE").await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "unknown_sku"));

    // The catalog price is used when the line has none.
    let mut body = order_body();
    body["lines"] = json!([{"sku": "SKU-CAT", "quantity": 2}]);
    body["payments"] = json!([{"method": "cash", "amount_minor": 2500}]);
    let (s, _, v) = h.post_order("cat", &body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["total_minor"], 2500);
    // Sold here, not yet confirmed by the cloud: no longer available.
    let (_, _, p) = h.get("/v1/products/SKU-CAT").await;
    assert_eq!(
        (&p["on_hand"], &p["available"]),
        (&json!(4), &json!(2)),
        "{p}"
    );
    // The catalog changes (another currency); the till retries the same
    // sale, whose 201 it never saw: it gets that sale back, not a 422.
    let usd = r#"{"sku":"SKU-CAT","name":"Mug","price_minor":990,"currency":"USD","category":"home","stock_on_hand":4}"#;
    h.agent.catalog().import_jsonl(usd.as_bytes()).unwrap();
    let (s, _, again) = h.post_order("cat", &body).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["order_id"], v["order_id"]);
    // A new sale of it is refused, naming the field.
    let (s, _, refused) = h.post_order("cat-2", &body).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");

    let (s, _, sync) = h.get("/v1/sync").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(sync["connected"], false);
    assert_eq!(sync["pending_events"], 1);
    assert_eq!(sync["last_acked_seq"], 0);
    assert_eq!(sync["rejected_events"], 0);
    assert!(sync["oldest_pending_age_ms"].is_u64());
    assert!(sync["last_ack_at"].is_null());

    assert_eq!(h.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(h.get("/readyz").await.0, StatusCode::OK);
    let resp = h
        .router
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains("o2c_agent_captures_total{result=\"created\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("o2c_agent_errors_total{code=\"unknown_sku\"} 1"),
        "{text}"
    );
    assert!(text.contains("o2c_agent_outbox_pending 1"), "{text}");
    assert!(text.contains("o2c_agent_capture_seconds_bucket"), "{text}");

    let (s, _, doc) = h.get("/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["paths"]["/v1/orders"]["post"].is_object());
    let (s, _, v) = h.get("/nope").await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"));
    h.close().await;
}
