//! One store may not act on another store's order. A void sent by another
//! store is valid in itself (its topic, payload and certificate agree, so
//! the ingest passes it), but the order was created by the first store:
//! every saga service refuses it as `identity_mismatch`, and the order
//! stays completed, captured once, never refunded or restocked.

use std::time::Duration;

use o2c_protocol::event::{OrderCancelled, PaymentCaptured};
use o2c_protocol::{
    AgentId, Currency, Envelope, Event, EventId, Fulfillment, Money, Order, OrderId, OrderLine,
    Payment, SCHEMA_VERSION, Seq, StoreId, TerminalId,
};
use o2c_tests::kafka::{produce_raw, raw_producer};
use o2c_tests::saga::{
    SagaWorld, Tender, capture, cloud_status, dlq_command, order_body, wait_status,
};
use time::OffsetDateTime;

const SAGA: Duration = Duration::from_secs(90);

/// The creator inventory recorded for `order_id`: `None` without a row.
async fn owner(db: &tokio_postgres::Client, order_id: &str) -> Option<Option<String>> {
    db.query_opt(
        "SELECT store_id FROM o2c_inventory.orders WHERE order_id = $1",
        &[&order_id],
    )
    .await
    .unwrap()
    .map(|r| r.get(0))
}

fn now_ms() -> u64 {
    u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap()
}

/// An envelope from `store`'s agent A1 (`seq`: a store event) or minted by
/// the cloud for it (no seq).
fn envelope(store: &str, seq: Option<u64>, tag: u8, payload: Event) -> Envelope {
    Envelope {
        event_id: EventId::from_parts(now_ms(), [tag; 10]),
        schema_version: SCHEMA_VERSION,
        store_id: StoreId::new(store).unwrap(),
        agent_id: AgentId::new(format!("{store}-A1")).unwrap(),
        seq: seq.map(|s| Seq::new(s).unwrap()),
        occurred_at: OffsetDateTime::now_utc(),
        traceparent: None,
        payload,
    }
}

/// Produces `env` to `topic` as the ingest (or a relay) would.
async fn produce(w: &SagaWorld, topic: &str, env: &Envelope) {
    let producer = raw_producer(&w.brokers).unwrap();
    let mut headers = vec![
        ("event_id".to_owned(), env.event_id.to_string().into_bytes()),
        (
            "event_type".to_owned(),
            env.event_type().as_str().as_bytes().to_vec(),
        ),
        (
            "schema_version".to_owned(),
            SCHEMA_VERSION.to_string().into_bytes(),
        ),
        ("store_id".to_owned(), env.store_id.to_string().into_bytes()),
        ("agent_id".to_owned(), env.agent_id.to_string().into_bytes()),
    ];
    if let Some(seq) = env.seq {
        headers.push(("seq".to_owned(), seq.to_string().into_bytes()));
    }
    let key = env.payload.order_id().to_string();
    produce_raw(
        &producer,
        &w.env.topic(topic),
        None,
        key.as_bytes(),
        &headers,
        &env.encode().unwrap(),
    )
    .await
    .unwrap();
}

fn dead_letters_of(w: &SagaWorld, event_id: &str) -> Vec<serde_json::Value> {
    dlq_command(w.sagas[0].config_path(), &["list"])
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|d| d["event_id"] == event_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_stores_void_is_refused_by_every_service() {
    // The status publisher sends the forged void's status to store s2,
    // which has no agent session: the broker answers "no matching
    // subscribers", and the publisher retries it until it gives it up
    // (then its group commits).
    let w = SagaWorld::start(&["all"], "status_redeliver_for_secs = 1", "")
        .await
        .expect("world");
    let body = order_body("SKU-OWN", 1, &Tender::Card("tok_visa_own".into()), false);
    let id = capture(&w.agent, "own", &body).await.unwrap();
    if let Err(e) = wait_status(&w.agent, &id, "completed", SAGA).await {
        panic!(
            "{e}: now {:?}\n{}",
            cloud_status(&w.agent, &id).await,
            w.logs()
        );
    }

    // Store s2's agent voids s1's order.
    let other = w.env.store_id("s2");
    let void = envelope(
        &other,
        Some(1),
        7,
        Event::OrderCancelled(OrderCancelled {
            order_id: id.parse::<OrderId>().unwrap(),
            reason: "store_void".into(),
        }),
    );
    void.validate_store_event()
        .expect("a valid event in itself");
    produce(&w, "orders.cancelled", &void).await;

    let event_id = void.event_id.to_string();
    o2c_tests::wait_until_named(
        "identity_mismatch dead letters",
        || async { dead_letters_of(&w, &event_id).len() >= 4 },
        SAGA,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", dead_letters_of(&w, &event_id), w.logs()));
    for d in dead_letters_of(&w, &event_id) {
        assert_eq!(d["reason"], "identity_mismatch", "{d}");
    }
    w.wait_groups_caught_up(SAGA).await.unwrap();

    assert_eq!(
        cloud_status(&w.agent, &id).await.unwrap().0.as_deref(),
        Some("completed")
    );
    assert_eq!(w.psp.captures_of(&id).await.unwrap(), 1);
    assert_eq!(w.psp.refunds_of(&id).await.unwrap(), 0);
    let db = w.db().await.unwrap();
    let kinds: Vec<String> = db
        .query(
            "SELECT kind FROM o2c_inventory.movements WHERE order_id = $1 ORDER BY id",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kinds, ["reserve", "confirm"], "no release, no restock");
    let owner: Option<String> = db
        .query_one(
            "SELECT store_id FROM o2c_order.orders WHERE order_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, Some(w.env.store_id("s1")));
}

/// Events of one order come on several topics, in any order: a service may
/// make an order's row before its `OrderCreated` arrives. The creator is
/// then recorded on the existing row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_creator_is_recorded_when_its_order_comes_after_another_event() {
    let w = SagaWorld::start(&["all"], "", "").await.expect("world");
    let store = w.env.store_id("s1");
    let cad = Currency::from_code("CAD").unwrap();
    let order_id = OrderId::from_parts(now_ms(), [9; 10]);
    let captured = envelope(
        &store,
        None,
        1,
        Event::PaymentCaptured(PaymentCaptured {
            order_id,
            amount: Money::new(500, cad),
            psp_reference: "in_store".into(),
        }),
    );
    produce(&w, "payments.captured", &captured).await;
    let db = w.db().await.unwrap();
    let id = order_id.to_string();
    o2c_tests::wait_until_named(
        "inventory row made by PaymentCaptured",
        || async { owner(&db, &id).await.is_some() },
        SAGA,
    )
    .await
    .unwrap();
    assert_eq!(owner(&db, &id).await, Some(None), "no creator known yet");

    let order = Order {
        order_id,
        store_id: StoreId::new(&store).unwrap(),
        terminal_id: TerminalId::new("T1").unwrap(),
        currency: cad,
        lines: vec![OrderLine {
            sku: "SKU-LATE".into(),
            quantity: 1,
            unit_price: Money::new(500, cad),
            category: None,
        }],
        payments: vec![Payment::Cash {
            amount: Money::new(500, cad),
        }],
        fulfillment: Fulfillment::CarryOut {},
        customer: None,
        captured_at: OffsetDateTime::now_utc(),
        catalog_version: None,
        stock_check: None,
        channel: None,
        customer_id: None,
    };
    let created = envelope(&store, Some(1), 2, Event::OrderCreated(Box::new(order)));
    created.validate_store_event().expect("valid");
    produce(&w, "orders.created", &created).await;
    o2c_tests::wait_until_named(
        "creator recorded on the existing row",
        || async { owner(&db, &id).await == Some(Some(store.clone())) },
        SAGA,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
}
