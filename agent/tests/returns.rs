//! In-store returns through the API: the real router, store and catalog
//! in a temp dir, called in-process with `oneshot` (no socket).

mod common;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use common::harness::{Harness, code, field};
use common::{TOKEN_T1, TOKEN_T2, order_body};
use o2c_protocol::{
    Ack, CloudStatus, Currency, EventId, Money, OrderId, ReturnId, ReturnStatus, Seq, StatusUpdate,
};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tower::ServiceExt;

/// A 2 × SKU-1 at 1499 sale on card `tok_abc`; its order id.
async fn sale(h: &Harness) -> String {
    let (s, _, v) = h.post_order("sale", &order_body()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["order_id"].as_str().unwrap().to_owned()
}

fn body(qty: i64, refund: Value) -> Value {
    json!({
        "terminal_id": "T1",
        "lines": [{"sku": "SKU-1", "quantity": qty}],
        "refund": refund,
        "reason": "damaged"
    })
}

fn card(token: &str) -> Value {
    json!({"method": "card", "token": token, "brand": "visa", "last4": "4242"})
}

async fn post_return(
    h: &Harness,
    order_id: &str,
    key: &str,
    body: &Value,
) -> (StatusCode, HeaderMap, Value) {
    let auth = format!("Bearer {TOKEN_T1}");
    h.send(
        "POST",
        &format!("/v1/orders/{order_id}/returns"),
        &[("authorization", &auth), ("idempotency-key", key)],
        serde_json::to_vec(body).unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_partial_return_then_an_over_return_of_the_same_line() {
    let h = Harness::new("");
    let order = sale(&h).await;
    let (s, headers, first) = post_return(&h, &order, "r1", &body(1, card("tok_abc"))).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let rid = first["return_id"].as_str().unwrap();
    assert_eq!(headers["location"], format!("/v1/returns/{rid}").as_str());
    assert_eq!(first["order_id"], order.as_str());
    assert_eq!(first["status"], "requested");
    assert_eq!(first["verified_locally"], true);
    assert_eq!(first["amount_minor"], 1499);
    assert_eq!(first["currency"], "CAD");
    assert_eq!(first["sync"], "pending");
    assert_eq!(first["cloud_status"], Value::Null);
    assert_eq!(first["refund"], card("tok_abc"));
    assert_eq!(first["lines"], json!([{"sku": "SKU-1", "quantity": 1}]));
    assert!(first["requested_at"].as_str().unwrap().ends_with('Z'));
    let (s, _, read) = h.get(&format!("/v1/returns/{rid}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(read, first);

    let (s, _, e) = post_return(&h, &order, "r2", &body(2, card("tok_abc"))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!((code(&e), field(&e)), ("over_return", "lines[0].quantity"));
    assert_eq!(h.agent.store().last_seq(), 2, "nothing written");
    h.close().await;
}

#[tokio::test]
async fn cash_for_a_card_sale_and_a_card_the_order_was_not_paid_with() {
    let h = Harness::new("");
    let order = sale(&h).await;
    let (s, _, v) = post_return(&h, &order, "cash", &body(2, json!({"method": "cash"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        (v["amount_minor"].as_i64(), v["refund"].clone()),
        (Some(2998), json!({"method": "cash"}))
    );

    let order = {
        let (s, _, v) = h.post_order("sale-2", &order_body()).await;
        assert_eq!(s, StatusCode::CREATED);
        v["order_id"].as_str().unwrap().to_owned()
    };
    let (s, _, e) = post_return(&h, &order, "card", &body(1, card("tok_someone_else"))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!((code(&e), field(&e)), ("refund_tender_mismatch", "refund"));
    let (s, _, e) = post_return(
        &h,
        &order,
        "sku",
        &json!({"terminal_id": "T1", "lines": [{"sku": "SKU-9", "quantity": 1}],
                "refund": {"method": "cash"}, "reason": "damaged"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!((code(&e), field(&e)), ("not_on_order", "lines[0].sku"));
    h.close().await;
}

#[tokio::test]
async fn a_return_of_an_order_not_known_here_is_taken_unverified() {
    let h = Harness::new("");
    let web_order = OrderId::from_uuid(uuid::Uuid::now_v7())
        .unwrap()
        .to_string();
    let (s, _, v) = post_return(&h, &web_order, "r", &body(3, card("tok_web"))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["verified_locally"], false);
    assert_eq!(v["amount_minor"], Value::Null);
    assert_eq!(v["currency"], Value::Null);
    assert_eq!(h.agent.store().last_seq(), 1);
    // An order id that is not one is still 404.
    let (s, _, e) = post_return(&h, "not-an-order", "r2", &body(1, card("t"))).await;
    assert_eq!((s, code(&e)), (StatusCode::NOT_FOUND, "order_not_found"));
    h.close().await;
}

#[tokio::test]
async fn the_same_key_replays_200_and_another_body_conflicts_409() {
    let h = Harness::new("");
    let order = sale(&h).await;
    let b = body(1, json!({"method": "cash"}));
    let (s, _, first) = post_return(&h, &order, "k", &b).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, headers, again) = post_return(&h, &order, "k", &b).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again, first);
    let rid = first["return_id"].as_str().unwrap();
    assert_eq!(headers["location"], format!("/v1/returns/{rid}").as_str());
    let (s, _, e) = post_return(&h, &order, "k", &body(2, json!({"method": "cash"}))).await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::CONFLICT, "idempotency_conflict")
    );
    // The same key and body for another order is another request.
    let other = OrderId::from_uuid(uuid::Uuid::now_v7())
        .unwrap()
        .to_string();
    let (s, _, e) = post_return(&h, &other, "k", &b).await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::CONFLICT, "idempotency_conflict")
    );
    assert_eq!(h.agent.store().last_seq(), 2);
    h.close().await;
}

#[tokio::test]
async fn a_return_of_a_voided_order_is_refused() {
    let h = Harness::new("");
    let order = sale(&h).await;
    let auth = format!("Bearer {TOKEN_T1}");
    let (s, _, _) = h
        .send(
            "POST",
            &format!("/v1/orders/{order}/cancel"),
            &[("authorization", &auth)],
            Vec::new(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, e) = post_return(&h, &order, "r", &body(1, json!({"method": "cash"}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!((code(&e), field(&e)), ("order_cancelled", "order_id"));
    h.close().await;
}

#[tokio::test]
async fn bad_requests_write_nothing() {
    let h = Harness::new("");
    let order = OrderId::from_uuid(uuid::Uuid::now_v7())
        .unwrap()
        .to_string();
    let uri = format!("/v1/orders/{order}/returns");
    let auth = format!("Bearer {TOKEN_T1}");
    let with_key = [("authorization", auth.as_str()), ("idempotency-key", "k")];
    // A card number anywhere: refused before parsing, never stored.
    let mut b = body(1, json!({"method": "cash"}));
    b["reason"] = json!("4111 1111 1111 1111");
    let (s, _, e) = h
        .send("POST", &uri, &with_key, serde_json::to_vec(&b).unwrap())
        .await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::UNPROCESSABLE_ENTITY, "card_data_rejected")
    );
    assert_eq!(field(&e), "reason");
    let b = body(
        1,
        json!({"method": "card", "token": "4111111111111111", "brand": "visa",
        "last4": "1111"}),
    );
    let (s, _, e) = h
        .send("POST", &uri, &with_key, serde_json::to_vec(&b).unwrap())
        .await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::UNPROCESSABLE_ENTITY, "card_data_rejected")
    );
    assert!(!e.to_string().contains("4111111111111111"));
    // Shape, rules, terminal, key, auth.
    let mut b = body(1, json!({"method": "cash"}));
    b["note"] = json!("x");
    let (s, _, e) = h
        .send("POST", &uri, &with_key, serde_json::to_vec(&b).unwrap())
        .await;
    assert_eq!((s, code(&e)), (StatusCode::BAD_REQUEST, "unknown_field"));
    let (s, _, e) = h.send("POST", &uri, &with_key, b"{".to_vec()).await;
    assert_eq!((s, code(&e)), (StatusCode::BAD_REQUEST, "malformed_json"));
    let b = body(0, json!({"method": "cash"}));
    let (s, _, e) = h
        .send("POST", &uri, &with_key, serde_json::to_vec(&b).unwrap())
        .await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field")
    );
    assert_eq!(field(&e), "lines[0].quantity");
    let t2 = format!("Bearer {TOKEN_T2}");
    let b = serde_json::to_vec(&body(1, json!({"method": "cash"}))).unwrap();
    let (s, _, e) = h
        .send(
            "POST",
            &uri,
            &[("authorization", &t2), ("idempotency-key", "k")],
            b.clone(),
        )
        .await;
    assert_eq!(
        (s, code(&e), field(&e)),
        (StatusCode::FORBIDDEN, "forbidden", "terminal_id")
    );
    let (s, _, e) = h
        .send("POST", &uri, &[("authorization", &auth)], b.clone())
        .await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::BAD_REQUEST, "missing_idempotency_key")
    );
    let (s, _, _) = h.send("POST", &uri, &[("idempotency-key", "k")], b).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(h.agent.store().last_seq(), 0, "an outbox row was written");
    for id in [
        "nope".to_owned(),
        OrderId::from_uuid(uuid::Uuid::now_v7())
            .unwrap()
            .to_string(),
    ] {
        let (s, _, e) = h.get(&format!("/v1/returns/{id}")).await;
        assert_eq!(
            (s, code(&e)),
            (StatusCode::NOT_FOUND, "return_not_found"),
            "{id}"
        );
    }
    let resp = h
        .router
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let metrics = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("o2c_agent_returns_total{result=\"refused\"} 8"),
        "{metrics}"
    );
    h.close().await;
}

fn cad() -> Currency {
    Currency::from_code("CAD").unwrap()
}

fn update(order_id: OrderId, rid: ReturnId, status: CloudStatus, secs: i64) -> StatusUpdate {
    StatusUpdate {
        order_id,
        status,
        reason: None,
        ret: Some(ReturnStatus {
            return_id: rid,
            amount: Some(Money::new(1499, cad())),
            sku: None,
        }),
        event_id: EventId::from_uuid(uuid::Uuid::now_v7()).unwrap(),
        occurred_at: OffsetDateTime::from_unix_timestamp(1_700_000_000 + secs).unwrap(),
        seq: None,
    }
}

#[tokio::test]
async fn the_cloud_answers_the_return_not_the_order() {
    let h = Harness::new("");
    let order = sale(&h).await;
    let (_, _, v) = post_return(&h, &order, "r", &body(1, card("tok_abc"))).await;
    let rid: ReturnId = v["return_id"].as_str().unwrap().parse().unwrap();
    let oid: OrderId = order.parse().unwrap();
    let store = h.agent.store();
    store
        .apply_ack(
            &Ack {
                through_seq: Seq::new(2).unwrap(),
                rejected: Vec::new(),
            },
            1,
        )
        .await
        .unwrap();
    assert_eq!(read(&h, rid).await["sync"], "synced");
    store
        .apply_statuses(vec![update(oid, rid, CloudStatus::ReturnAccepted, 1)], 2)
        .await
        .unwrap();
    assert_eq!(read(&h, rid).await["status"], "accepted");
    store
        .apply_statuses(vec![update(oid, rid, CloudStatus::ReturnRefunded, 2)], 3)
        .await
        .unwrap();
    // A late accepted does not take it back.
    store
        .apply_statuses(vec![update(oid, rid, CloudStatus::ReturnAccepted, 3)], 4)
        .await
        .unwrap();
    let v = read(&h, rid).await;
    assert_eq!(v["status"], "refunded");
    assert_eq!(v["cloud_status"], "return_refunded");
    assert_eq!(v["amount_minor"], 1499);
    assert!(v["cloud_status_received_at"].as_str().is_some());
    let (_, _, o) = h.get(&format!("/v1/orders/{order}")).await;
    assert_eq!(
        o.get("cloud_status"),
        None,
        "the order's status is untouched: {o}"
    );
    assert_eq!(o["sync"], "synced");
    h.close().await;
}

async fn read(h: &Harness, rid: ReturnId) -> Value {
    let (s, _, v) = h.get(&format!("/v1/returns/{rid}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}
