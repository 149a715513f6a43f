//! One store may not act on another store's order. A void sent by another
//! store is valid in itself (its topic, payload and certificate agree, so
//! the ingest passes it), but the order was created by the first store:
//! every saga service refuses it as `identity_mismatch`, and the order
//! stays completed, captured once, never refunded or restocked.

use std::time::Duration;

use o2c_protocol::event::OrderCancelled;
use o2c_protocol::{AgentId, Envelope, Event, EventId, OrderId, SCHEMA_VERSION, Seq, StoreId};
use o2c_tests::saga::{
    SagaWorld, Tender, capture, cloud_status, dlq_command, order_body, produce_raw, raw_producer,
    wait_status,
};
use time::OffsetDateTime;

const SAGA: Duration = Duration::from_secs(90);

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
    let w = SagaWorld::start(&["all"], "", "").await.expect("world");
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
    let other = StoreId::new(w.env.store_id("s2")).unwrap();
    let now = OffsetDateTime::now_utc();
    let void = Envelope {
        event_id: EventId::from_parts(u64::try_from(now.unix_timestamp() * 1000).unwrap(), [7; 10]),
        schema_version: SCHEMA_VERSION,
        store_id: other.clone(),
        agent_id: AgentId::new(format!("{other}-A1")).unwrap(),
        seq: Some(Seq::new(1).unwrap()),
        occurred_at: now,
        traceparent: None,
        payload: Event::OrderCancelled(OrderCancelled {
            order_id: id.parse::<OrderId>().unwrap(),
            reason: "store_void".into(),
        }),
    };
    void.validate_store_event()
        .expect("a valid event in itself");
    let producer = raw_producer(&w.brokers).unwrap();
    produce_raw(
        &producer,
        &w.env.topic("orders.cancelled"),
        None,
        id.as_bytes(),
        // The headers the ingest writes.
        &[
            ("event_id".into(), void.event_id.to_string().into_bytes()),
            ("event_type".into(), b"OrderCancelled".to_vec()),
            (
                "schema_version".into(),
                SCHEMA_VERSION.to_string().into_bytes(),
            ),
            ("store_id".into(), other.to_string().into_bytes()),
            ("agent_id".into(), void.agent_id.to_string().into_bytes()),
            ("seq".into(), b"1".to_vec()),
        ],
        &void.encode().unwrap(),
    )
    .await
    .unwrap();

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
