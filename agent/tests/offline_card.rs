//! Offline card limits through the API: the floor and the cap apply in
//! the store's currency (`[store] currency`); an offline card sale in
//! another currency, or with no store currency, is refused with a 422
//! naming the field. Online sales are unchanged.

mod common;

use axum::http::StatusCode;
use common::harness::{Harness, assert_nothing_written, code, field};
use common::order_body;
use serde_json::json;

#[tokio::test]
async fn offline_card_limits_get_422() {
    let h = Harness::new(
        "[store]\ncurrency = \"CAD\"\n\
         [payments]\noffline_floor_limit_minor = 3000\noffline_total_cap_minor = 5000\n",
    );
    let mut offline = order_body();
    offline["payments"][0]["authorization"] = json!("offline");
    let (s, _, _) = h.post_order("k1", &offline).await;
    assert_eq!(s, StatusCode::CREATED);
    // The second one fits the floor limit but not the store cap.
    let (s, _, v) = h.post_order("k2", &offline).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "offline_limit_exceeded")
    );
    let mut big = order_body();
    big["lines"][0]["unit_price_minor"] = json!(2000);
    big["payments"][0]["amount_minor"] = json!(4000);
    big["payments"][0]["authorization"] = json!("offline");
    let (s, _, v) = h.post_order("k3", &big).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "offline_limit_exceeded")
    );
    assert_eq!(field(&v), "payments[0].amount_minor");
    // Split tender: card within the floor plus cash.
    let mut split = big.clone();
    split["payments"] = json!([
        {"method": "card", "amount_minor": 1000, "token": "t", "brand": "visa", "last4": "4242", "authorization": "offline"},
        {"method": "cash", "amount_minor": 3000}
    ]);
    let (s, _, v) = h.post_order("k4", &split).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(h.agent.store().last_seq(), 2);
    h.close().await;
}

#[tokio::test]
async fn offline_card_sales_are_limited_in_the_store_currency_only() {
    let h = Harness::new(
        "[store]\ncurrency = \"EUR\"\n\
         [payments]\noffline_floor_limit_minor = 3000\noffline_total_cap_minor = 5000\n",
    );
    // 2,998 CAD cents: under the floor's number, but the floor is in EUR.
    let mut offline = order_body();
    offline["payments"][0]["authorization"] = json!("offline");
    let (s, _, v) = h.post_order("cad", &offline).await;
    assert_eq!(
        (s, code(&v)),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "offline_currency_mismatch"
        )
    );
    assert_eq!(field(&v), "currency");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("EUR"),
        "{v}"
    );
    // Online, the same CAD sale is taken as before.
    let (s, _, v) = h.post_order("online", &order_body()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // In EUR, the offline limits apply.
    let mut eur = offline.clone();
    eur["currency"] = json!("EUR");
    let (s, _, v) = h.post_order("eur", &eur).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(h.agent.store().offline_exposure_minor(), 2998);
    assert_eq!(h.agent.store().last_seq(), 2);
    h.close().await;
}

#[tokio::test]
async fn without_a_store_currency_offline_card_sales_are_refused() {
    let h = Harness::new("");
    let mut offline = order_body();
    offline["payments"][0]["authorization"] = json!("offline");
    let (s, _, v) = h.post_order("k1", &offline).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "offline_card_unavailable")
    );
    assert_eq!(field(&v), "payments[0].authorization");
    assert_nothing_written(&h).await;
    let (s, _, v) = h.post_order("k2", &order_body()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    h.close().await;
}
