//! The saga end to end: a real `o2c-agent` captures, `o2c-cloud ingest`
//! writes to Kafka (Tansu), `o2c-cloud saga` carries each order to cash
//! against PostgreSQL and `o2c-psp-sim`, and the status comes back to
//! the agent over a private Mosquitto.
//!
//! Issue #5 tests 1 and 2, plus the insufficient-stock outcome and a store
//! void after completion (refund, restock, cancellation notice).

use std::time::Duration;

use o2c_tests::saga::{SagaWorld, Tender, capture, cloud_status, order_body, wait_status};

const SAGA: Duration = Duration::from_secs(90);

async fn state(db: &tokio_postgres::Client, schema: &str, order_id: &str) -> serde_json::Value {
    let row = db
        .query_one(
            &format!("SELECT state FROM {schema}.orders WHERE order_id = $1"),
            &[&order_id],
        )
        .await
        .expect("state row");
    serde_json::from_str(row.get::<_, &str>(0)).expect("state json")
}

/// The processor calls the payment service recorded for `order_id`:
/// `(idempotency key, kind, outcome)`, oldest first.
async fn psp_calls(db: &tokio_postgres::Client, order_id: &str) -> Vec<(String, String, String)> {
    db.query(
        "SELECT idempotency_key, kind, outcome FROM o2c_payment.psp_calls \
         WHERE order_id = $1 ORDER BY id",
        &[&order_id],
    )
    .await
    .expect("psp_calls")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

async fn movements(db: &tokio_postgres::Client, order_id: &str) -> Vec<(String, i64, i64)> {
    db.query(
        "SELECT kind, delta_on_hand, delta_reserved FROM o2c_inventory.movements \
         WHERE order_id = $1 ORDER BY id",
        &[&order_id],
    )
    .await
    .expect("movements")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// Test 1: carry-out orders (cash, online card, offline card) reach
/// `completed` at the agent; a ship-to-home order passes through
/// `shipment_scheduled` on its way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_reach_completed_at_the_agent() {
    let w = SagaWorld::start(&["all"], "", "").await.expect("world");
    let a = &w.agent;
    let cash = capture(a, "cash", &order_body("SKU-1", 2, &Tender::Cash, false))
        .await
        .unwrap();
    let card = capture(
        a,
        "card",
        &order_body("SKU-1", 1, &Tender::Card("tok_visa_1".into()), false),
    )
    .await
    .unwrap();
    let offline = capture(
        a,
        "offline",
        &order_body(
            "SKU-2",
            1,
            &Tender::OfflineCard("tok_offline_1".into()),
            false,
        ),
    )
    .await
    .unwrap();
    let ship = capture(
        a,
        "ship",
        &order_body("SKU-3", 1, &Tender::Card("tok_visa_2".into()), true),
    )
    .await
    .unwrap();
    for id in [&cash, &card, &offline, &ship] {
        if let Err(e) = wait_status(a, id, "completed", SAGA).await {
            panic!("{e}: now {:?}\n{}", cloud_status(a, id).await, w.logs());
        }
    }
    // One capture per card order, none for cash.
    assert_eq!(w.psp.captures_of(&card).await.unwrap(), 1);
    assert_eq!(w.psp.captures_of(&offline).await.unwrap(), 1);
    assert_eq!(w.psp.captures_of(&ship).await.unwrap(), 1);
    assert_eq!(w.psp.captures_of(&cash).await.unwrap(), 0);

    let db = w.db().await.unwrap();
    // The ship-to-home order went through shipment_scheduled.
    let s = state(&db, "o2c_shipping", &ship).await;
    assert_eq!(s["phase"], "scheduled", "{s}");
    let n: i64 = db
        .query_one(
            "SELECT count(*) FROM o2c_shipping.notifications WHERE order_id = $1 AND kind = 'shipment_scheduled'",
            &[&ship],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let sched = o2c_tests::consume_all(
        &w.brokers,
        &w.env.topic("shipments.scheduled"),
        1,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert_eq!(sched[0].key_str(), Some(ship.as_str()));
    assert_eq!(
        state(&db, "o2c_shipping", &cash).await["phase"],
        "not_needed"
    );
    // Stock left on_hand exactly once per order.
    assert_eq!(
        movements(&db, &cash).await,
        vec![("reserve".into(), 0, 2), ("confirm".into(), -2, -2)]
    );
}

/// Test 2: a `tok_decline` card ends `cancelled` / `payment_declined` at
/// the agent, its reservation is released, and the simulator captured it
/// zero times. The same holds for an offline-authorised card.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_card_cancels_and_releases_stock() {
    let w = SagaWorld::start(&["all"], "", "").await.expect("world");
    let a = &w.agent;
    let online = capture(
        a,
        "d1",
        &order_body("SKU-9", 3, &Tender::Card("tok_decline_1".into()), false),
    )
    .await
    .unwrap();
    let offline = capture(
        a,
        "d2",
        &order_body(
            "SKU-9",
            1,
            &Tender::OfflineCard("tok_decline_2".into()),
            true,
        ),
    )
    .await
    .unwrap();
    for id in [&online, &offline] {
        if let Err(e) = wait_status(a, id, "cancelled", SAGA).await {
            panic!("{e}: now {:?}\n{}", cloud_status(a, id).await, w.logs());
        }
        assert_eq!(
            cloud_status(a, id).await.unwrap().1.as_deref(),
            Some("payment_declined")
        );
        assert_eq!(w.psp.captures_of(id).await.unwrap(), 0);
    }
    let db = w.db().await.unwrap();
    let released = |id: String| {
        let db = &db;
        async move {
            o2c_tests::wait_until(
                || async {
                    db.query_one(
                        "SELECT state FROM o2c_inventory.orders WHERE order_id = $1",
                        &[&id],
                    )
                    .await
                    .is_ok_and(|r| r.get::<_, &str>(0).contains("\"released\""))
                },
                SAGA,
            )
            .await
            .expect("reservation released");
        }
    };
    released(online.clone()).await;
    released(offline.clone()).await;
    assert_eq!(
        psp_calls(&db, &online).await,
        [(
            format!("{online}:capture:0"),
            "capture".into(),
            "declined:card_declined".into()
        )],
        "recorded under the key the call was made with"
    );
    assert_eq!(
        movements(&db, &online).await,
        vec![("reserve".into(), 0, 3), ("release".into(), 0, -3)]
    );
    let reserved: i64 = db
        .query_one(
            "SELECT coalesce(sum(reserved), 0)::bigint FROM o2c_inventory.stock WHERE sku = 'SKU-9'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(reserved, 0, "nothing stays held");
    assert_eq!(
        state(&db, "o2c_inventory", &online).await["release_emitted"],
        true
    );
    // Shipping consumes on its own: wait for it rather than assume it
    // has caught up with inventory.
    let shipping_cancelled = o2c_tests::wait_until(
        || async {
            db.query_opt(
                "SELECT state FROM o2c_shipping.orders WHERE order_id = $1",
                &[&offline],
            )
            .await
            .ok()
            .flatten()
            .is_some_and(|r| r.get::<_, &str>(0).contains("\"cancelled\""))
        },
        SAGA,
    )
    .await;
    assert!(
        shipping_cancelled.is_ok(),
        "shipping state of {offline}: {:?}",
        db.query_opt(
            "SELECT state FROM o2c_shipping.orders WHERE order_id = $1",
            &[&offline]
        )
        .await
        .map(|r| r.map(|r| r.get::<_, String>(0)))
    );
    assert_eq!(
        state(&db, "o2c_shipping", &offline).await["phase"],
        "cancelled"
    );
}

/// Insufficient stock: the hold fails, the captured payment is refunded and
/// the order ends `refunded` after `cancelled` / `insufficient_stock`;
/// stock never goes negative. A store void after completion refunds once,
/// restocks and sends a shipment cancellation notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_stock_and_a_void_after_completion_compensate() {
    let w = SagaWorld::start(&["all"], "", "").await.expect("world");
    let a = &w.agent;
    let db = w.db().await.unwrap();
    // Once inventory's migrations ran, stock one scarce unit.
    w.set_stock("SKU-SCARCE", 1).await.unwrap();
    let short = capture(
        a,
        "short",
        &order_body("SKU-SCARCE", 2, &Tender::Card("tok_visa_s".into()), false),
    )
    .await
    .unwrap();
    if let Err(e) = wait_status(a, &short, "refunded", SAGA).await {
        panic!("{e}: now {:?}\n{}", cloud_status(a, &short).await, w.logs());
    }
    assert_eq!(
        state(&db, "o2c_order", &short).await["cancel_reason"],
        "insufficient_stock"
    );
    assert_eq!(w.psp.captures_of(&short).await.unwrap(), 1);
    assert_eq!(w.psp.refunds_of(&short).await.unwrap(), 1);
    assert!(movements(&db, &short).await.is_empty(), "no stock moved");
    let on_hand: i64 = db
        .query_one(
            "SELECT on_hand FROM o2c_inventory.stock WHERE sku = 'SKU-SCARCE'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(on_hand, 1);

    // A void after completion: refund, restock, cancellation notice.
    let ship = capture(
        a,
        "void",
        &order_body("SKU-4", 1, &Tender::Card("tok_visa_v".into()), true),
    )
    .await
    .unwrap();
    wait_status(a, &ship, "completed", SAGA).await.unwrap();
    a.cancel(&ship).await.unwrap();
    if let Err(e) = wait_status(a, &ship, "refunded", SAGA).await {
        panic!("{e}: now {:?}\n{}", cloud_status(a, &ship).await, w.logs());
    }
    assert_eq!(w.psp.refunds_of(&ship).await.unwrap(), 1);
    let calls = psp_calls(&db, &ship).await;
    let keys: Vec<(&str, &str)> = calls
        .iter()
        .map(|(key, kind, _)| (key.as_str(), kind.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            (format!("{ship}:capture:0").as_str(), "capture"),
            (format!("{ship}:refund:0").as_str(), "refund")
        ]
    );
    o2c_tests::wait_until(
        || async {
            db.query_one(
                "SELECT count(*) FROM o2c_shipping.notifications WHERE order_id = $1",
                &[&ship],
            )
            .await
            .is_ok_and(|r| r.get::<_, i64>(0) == 2)
        },
        SAGA,
    )
    .await
    .expect("scheduled notice then cancellation notice");
    o2c_tests::wait_until(|| async { movements(&db, &ship).await.len() == 3 }, SAGA)
        .await
        .expect("restocked");
    assert_eq!(movements(&db, &ship).await[2], ("restock".into(), 1, 0));
}
