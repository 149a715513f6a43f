//! Issue 15: the ship-to-home stock check at capture, against the real
//! catalog service (store reservations in the inventory schema of a real
//! PostgreSQL), Mosquitto over mutual TLS and `o2c-agent`:
//!
//! - zero stock online: 422 `out_of_stock` naming the line;
//! - stock online: 201, the units held in the cloud (`verified`);
//! - a void releases the hold; so does the TTL of one never claimed; a
//!   repeat of a reservation is idempotent;
//! - the catalog service stopped: 5 failures open the breaker, sales are
//!   accepted `unverified`, and once the open time has passed a half-open
//!   trial closes it again.

use std::time::Duration;

use o2c_tests::catalog::{CatalogWorld, StoreClient};
use o2c_tests::pipeline::AgentProc;
use o2c_tests::saga::{Tender, order_body};
use o2c_tests::wait_until_named;
use serde_json::{Value, json};

async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
}

async fn reserved(pg: &tokio_postgres::Client, sku: &str) -> i64 {
    pg.query_one(
        "SELECT reserved FROM o2c_inventory.stock WHERE sku = $1 AND warehouse = 'central'",
        &[&sku],
    )
    .await
    .expect("stock row")
    .get(0)
}

async fn reservation_state(pg: &tokio_postgres::Client, order_id: &str) -> Option<String> {
    pg.query_opt(
        "SELECT state FROM o2c_inventory.store_reservations WHERE order_id = $1",
        &[&order_id],
    )
    .await
    .expect("reservation")
    .map(|r| r.get(0))
}

/// The `stock_check` of the order's `OrderCreated` in the agent's outbox.
fn stock_check_of(agent: &AgentProc, order_id: &str) -> Value {
    payload_of(agent, order_id)["stock_check"].clone()
}

/// The payload of the order's `OrderCreated` in the agent's outbox.
fn payload_of(agent: &AgentProc, order_id: &str) -> Value {
    let db = rusqlite::Connection::open_with_flags(
        agent.db_path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open agent db");
    let envelope: Vec<u8> = db
        .query_row(
            "SELECT envelope FROM outbox WHERE order_id = ?1 AND event_type = 'OrderCreated'",
            [order_id],
            |r| r.get(0),
        )
        .expect("outbox row");
    let v: Value = serde_json::from_slice(&envelope).expect("envelope");
    v["payload"].clone()
}

async fn ship(agent: &AgentProc, key: &str, sku: &str, qty: i64) -> (u16, Value) {
    agent
        .post_json(
            "/v1/orders",
            Some(key),
            &order_body(sku, qty, &Tender::Cash, true),
        )
        .await
        .expect("POST order")
}

async fn breaker(agent: &AgentProc) -> Value {
    agent.get("/v1/catalog/status").await.expect("status")["stock_check_breaker"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ship_to_home_sales_reserve_stock_and_degrade_behind_a_breaker() {
    let mut w = CatalogWorld::start(
        &[("S001", "S001-A1")],
        "stock_check",
        "",
        "[saga]\ncentral_warehouse = \"central\"\nauto_stock = 0\n",
    )
    .await;
    let pg_url = w.pg.clone();
    let pg = pg_client(&pg_url).await;
    pg.batch_execute(
        "INSERT INTO o2c_inventory.stock (sku, warehouse, on_hand) VALUES \
         ('SKU-NONE', 'central', 0), ('SKU-2', 'central', 5)",
    )
    .await
    .expect("stock");
    let agent = w
        .agent("S001", "S001-A1", "[fulfillment]\nbreaker_open_secs = 3\n")
        .await;
    wait_until_named(
        "the agent connected",
        || async {
            agent
                .get("/v1/sync")
                .await
                .is_ok_and(|s| s["connected"] == json!(true))
        },
        Duration::from_secs(20),
    )
    .await
    .expect("connected");

    // Zero stock: refused, naming the line; nothing held.
    let (status, body) = ship(&agent, "none", "SKU-NONE", 1).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        (&body["error"]["code"], &body["error"]["field"]),
        (&json!("out_of_stock"), &json!("lines[0].sku")),
        "{body}"
    );
    assert_eq!(reserved(&pg, "SKU-NONE").await, 0);

    // In stock: held in the cloud before the 201.
    let (status, body) = ship(&agent, "two", "SKU-2", 2).await;
    assert_eq!(status, 201, "{body}");
    let order = body["order_id"].as_str().expect("order id").to_owned();
    assert_eq!(
        reservation_state(&pg, &order).await.as_deref(),
        Some("held")
    );
    assert_eq!(reserved(&pg, "SKU-2").await, 2);
    assert_eq!(stock_check_of(&agent, &order), json!("verified"));
    // Priced with the catalog it had pulled (the service's empty catalog,
    // version 0).
    assert_eq!(payload_of(&agent, &order)["catalog_version"], json!(0));
    // The retry of that sale: the same answer, no second hold.
    let (status, _) = ship(&agent, "two", "SKU-2", 2).await;
    assert_eq!(status, 200);
    assert_eq!(reserved(&pg, "SKU-2").await, 2);

    // A void gives the units back.
    let (status, body) = agent
        .post_json(&format!("/v1/orders/{order}/cancel"), None, &json!({}))
        .await
        .expect("void");
    assert_eq!(status, 200, "{body}");
    wait_until_named(
        "the void's release",
        || async { reservation_state(&pg, &order).await.as_deref() == Some("released") },
        Duration::from_secs(10),
    )
    .await
    .expect("released by the void");
    assert_eq!(reserved(&pg, "SKU-2").await, 0);

    // A hold never claimed lapses at its TTL; a repeat is idempotent.
    let store = StoreClient::new(&w.fleet.pki.agent("S001-A1")).expect("client");
    let lapsing = uuid::Uuid::now_v7().to_string();
    let req =
        json!({"order_id": lapsing, "lines": [{"sku": "SKU-2", "quantity": 1}], "ttl_secs": 1});
    let url = format!("{}/v1/stores/S001/reservations", w.cat.url());
    let (status, body) = store.post_json(&url, &req).await.expect("reserve");
    assert_eq!(status, 201, "{body}");
    let (status, _) = store.post_json(&url, &req).await.expect("repeat");
    assert!(status == 200 || status == 409, "a repeat: {status}");
    assert!(reserved(&pg, "SKU-2").await <= 1);
    wait_until_named(
        "the TTL's release",
        || async { reservation_state(&pg, &lapsing).await.as_deref() == Some("released") },
        Duration::from_secs(15),
    )
    .await
    .expect("released by the TTL");
    assert_eq!(reserved(&pg, "SKU-2").await, 0);
    // Another store's reservations are not this store's to make.
    let other = format!("{}/v1/stores/S002/reservations", w.cat.url());
    let (status, _) = store.post_json(&other, &req).await.expect("reserve");
    assert_eq!(status, 403);

    // The service stopped: five failures open the breaker; sales go on,
    // unverified.
    w.cat.kill().expect("kill catalog");
    assert_eq!(breaker(&agent).await, json!("closed"));
    let mut unverified = Vec::new();
    for i in 0..6 {
        let (status, body) = ship(&agent, &format!("down-{i}"), "SKU-2", 1).await;
        assert_eq!(status, 201, "{body}");
        unverified.push(body["order_id"].as_str().expect("id").to_owned());
    }
    for id in &unverified {
        assert_eq!(stock_check_of(&agent, id), json!("unverified"), "{id}");
    }
    assert_eq!(breaker(&agent).await, json!("open"));
    let metrics = agent.metrics().await.expect("metrics");
    for want in [
        r#"o2c_agent_stock_checks_total{result="unavailable"} 5"#,
        r#"o2c_agent_stock_checks_total{result="breaker_open"} 1"#,
    ] {
        assert!(metrics.contains(want), "{want}\n{metrics}");
    }

    // Back, and the open time over: one trial closes it.
    w.cat.restart().await.expect("restart catalog");
    wait_until_named(
        "the breaker half-open",
        || async { breaker(&agent).await == json!("half_open") },
        Duration::from_secs(10),
    )
    .await
    .expect("half-open");
    let (status, body) = ship(&agent, "back", "SKU-2", 1).await;
    assert_eq!(status, 201, "{body}");
    let id = body["order_id"].as_str().expect("id");
    assert_eq!(stock_check_of(&agent, id), json!("verified"));
    assert_eq!(breaker(&agent).await, json!("closed"));
    assert_eq!(reserved(&pg, "SKU-2").await, 1);
}
