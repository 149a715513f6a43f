//! The order history (`orders.events`) is a full record of every order:
//! after a saga run with every compensation, each order's final state is
//! rebuilt from that topic alone and compared with what the services keep
//! in their own tables, with the compacted `orders.state` topic, and with
//! what `o2c-cloud order history` prints (issue 14).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use o2c_protocol::order_state::OrderStateRecord;
use o2c_protocol::{Envelope, Event, EventType, OrderId};
use o2c_runtime::kafka::scan::{ScanFrom, ScannedRecord, scan};
use o2c_saga::order::OrderState;
use o2c_tests::saga::{
    SagaWorld, Tender, capture, cloud_command, cloud_status, order_body, wait_status,
};

const SAGA: Duration = Duration::from_secs(120);

async fn read_topic(brokers: &str, topic: String) -> Vec<ScannedRecord> {
    let brokers = brokers.to_owned();
    tokio::task::spawn_blocking(move || scan(&brokers, &topic, None, ScanFrom::Beginning, SAGA))
        .await
        .expect("join")
        .expect("scan")
}

async fn state_json(db: &tokio_postgres::Client, schema: &str, id: &str) -> serde_json::Value {
    let row = db
        .query_one(
            &format!("SELECT state FROM {schema}.orders WHERE order_id = $1"),
            &[&id],
        )
        .await
        .unwrap_or_else(|e| panic!("{schema}.orders row of {id}: {e}"));
    serde_json::from_str(row.get::<_, &str>(0)).expect("state json")
}

/// The history's events of one order, of the given types, in history order.
fn of_types<'a>(events: &'a [Envelope], types: &[EventType]) -> Vec<&'a Envelope> {
    events
        .iter()
        .filter(|e| types.contains(&e.event_type()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_orders_final_state_is_rebuilt_from_the_history_alone() {
    let w = SagaWorld::start(&["all"], "", "").await.expect("world");
    let a = &w.agent;
    let db = w.db().await.unwrap();
    w.set_stock("SKU-SCARCE", 1).await.unwrap();

    // Every ending: completed (carry-out and ship-to-home), a declined
    // card, insufficient stock after capture, a void after completion.
    let mut expected: Vec<(String, &str)> = Vec::new();
    let cash = capture(a, "cash", &order_body("SKU-1", 2, &Tender::Cash, false))
        .await
        .unwrap();
    expected.push((cash.clone(), "completed"));
    let ship = capture(
        a,
        "ship",
        &order_body("SKU-2", 1, &Tender::Card("tok_visa_h1".into()), true),
    )
    .await
    .unwrap();
    expected.push((ship, "completed"));
    let declined = capture(
        a,
        "declined",
        &order_body("SKU-3", 1, &Tender::Card("tok_decline_h".into()), false),
    )
    .await
    .unwrap();
    expected.push((declined, "cancelled"));
    let short = capture(
        a,
        "short",
        &order_body("SKU-SCARCE", 2, &Tender::Card("tok_visa_h2".into()), false),
    )
    .await
    .unwrap();
    expected.push((short, "refunded"));
    let voided = capture(
        a,
        "void",
        &order_body("SKU-4", 1, &Tender::Card("tok_visa_h3".into()), true),
    )
    .await
    .unwrap();
    wait_status(a, &voided, "completed", SAGA).await.unwrap();
    a.cancel(&voided).await.unwrap();
    expected.push((voided.clone(), "refunded"));
    for (id, status) in &expected {
        if let Err(e) = wait_status(a, id, status, SAGA).await {
            panic!("{e}: now {:?}\n{}", cloud_status(a, id).await, w.logs());
        }
    }
    w.wait_groups_caught_up(SAGA).await.unwrap();
    // Every outbox row is published (to its topic and to the history).
    w.wait_outboxes_published(SAGA).await.unwrap();

    // The history alone.
    let records = read_topic(&w.brokers, w.env.topic("orders.events")).await;
    let (events, bad) = o2c_saga::history::events(&records);
    assert!(bad.is_empty(), "undecodable history records: {bad:?}");
    let mut by_order: HashMap<OrderId, Vec<Envelope>> = HashMap::new();
    for e in events {
        by_order.entry(e.payload.order_id()).or_default().push(e);
    }
    // Each record is keyed by its order, and every record of an order is
    // in one partition.
    for r in &records {
        let env = Envelope::decode(&r.value).unwrap();
        assert_eq!(r.key, env.payload.order_id().to_string());
    }
    let mut partitions: BTreeMap<&str, std::collections::BTreeSet<i32>> = BTreeMap::new();
    for r in &records {
        partitions.entry(&r.key).or_default().insert(r.partition);
    }
    assert!(partitions.values().all(|p| p.len() == 1), "{partitions:?}");

    // The compacted state topic: the last record per key.
    let state_records = read_topic(&w.brokers, w.env.topic("orders.state")).await;
    let mut last_state: HashMap<String, OrderStateRecord> = HashMap::new();
    for r in &state_records {
        let rec = OrderStateRecord::decode(&r.value).expect("order-state record");
        assert_eq!(r.key, rec.order_id.to_string());
        last_state.insert(r.key.clone(), rec);
    }

    for (id, status) in &expected {
        let order: OrderId = id.parse().unwrap();
        let events = by_order
            .get(&order)
            .unwrap_or_else(|| panic!("no history for {id}"));
        let types: Vec<EventType> = events.iter().map(Envelope::event_type).collect();
        // The status, from the history alone, is the one the store got,
        // the projector's row and the state topic's last record.
        let rebuilt = o2c_saga::state::fold(events.iter())
            .remove(&order)
            .expect("a status");
        assert_eq!(rebuilt.status.as_str(), *status, "{id}: {types:?}");
        assert_eq!(last_state[id.as_str()].status, rebuilt.status, "{id}");
        assert_eq!(last_state[id.as_str()].event_id, rebuilt.event_id, "{id}");
        let row = state_json(&db, "o2c_state", id).await;
        assert_eq!(row["status"], *status, "{id}: {row}");

        // The order service's own state, rebuilt by folding the events it
        // consumes, in history order.
        let mut st = OrderState::default();
        for e in of_types(events, o2c_saga::order::SUBSCRIBES) {
            st.apply(&e.payload);
        }
        let stored: OrderState =
            serde_json::from_value(state_json(&db, "o2c_order", id).await).unwrap();
        assert_eq!(
            st, stored,
            "{id}: order state from history vs o2c_order: {types:?}"
        );

        // Payment: one capture and refund event per processor capture
        // and refund (cash is taken at the till: one capture event, no
        // processor call).
        let count = |t: EventType| types.iter().filter(|x| **x == t).count();
        let by_card = *id != cash;
        assert_eq!(
            count(EventType::PaymentCaptured),
            w.psp.captures_of(id).await.unwrap() + usize::from(!by_card),
            "{id}: {types:?}"
        );
        assert_eq!(
            count(EventType::RefundIssued),
            w.psp.refunds_of(id).await.unwrap(),
            "{id}: {types:?}"
        );
        // Inventory: a confirmation iff stock moved out, a release iff the
        // service released its hold.
        let moved: i64 = db
            .query_one(
                "SELECT count(*) FROM o2c_inventory.movements WHERE order_id = $1 AND kind = 'confirm'",
                &[id],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(count(EventType::InventoryConfirmed) as i64, moved, "{id}");
        let inv = state_json(&db, "o2c_inventory", id).await;
        assert_eq!(
            count(EventType::InventoryReleased) > 0,
            inv["release_emitted"] == true,
            "{id}: {inv}"
        );
        // Shipping: the booked shipment is the one the history names.
        let booked: Vec<&str> = events
            .iter()
            .filter_map(|e| match &e.payload {
                Event::ShipmentScheduled(s) => Some(s.shipment_id.as_str()),
                _ => None,
            })
            .collect();
        let ship_state = state_json(&db, "o2c_shipping", id).await;
        assert_eq!(
            booked.first().copied(),
            ship_state["shipment_id"].as_str(),
            "{id}: {ship_state}"
        );
    }

    // `o2c-cloud order history`: the voided order's whole path, each step
    // by the service that took it.
    let config = w.sagas[0].config_path();
    let (code, out) = cloud_command(config, &["order", "history", &voided]).unwrap();
    assert_eq!(code, 0, "{out}");
    let steps: Vec<(String, String)> = out
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[1].to_owned(), f[2].to_owned())
        })
        .collect();
    for step in [
        ("OrderCreated", "ingest"),
        ("PaymentCaptured", "payment"),
        ("InventoryConfirmed", "inventory"),
        ("ShipmentScheduled", "shipping"),
        ("ShipmentDispatched", "shipping"),
        ("ShipmentDelivered", "shipping"),
        ("OrderCompleted", "order"),
        ("OrderCancelled", "ingest"),
        ("RefundIssued", "payment"),
    ] {
        assert!(
            steps.iter().any(|(t, s)| t == step.0 && s == step.1),
            "{step:?} missing from:\n{out}"
        );
    }
    assert!(out.contains("trace="), "{out}");
    let (code, json) = cloud_command(config, &["order", "history", &voided, "--json"]).unwrap();
    assert_eq!(code, 0);
    assert_eq!(json.lines().count(), steps.len());
    // An order the history does not have: exit 3, nothing printed as steps.
    let unknown = OrderId::from_parts(1_764_000_000_000, [9; 10]).to_string();
    let (code, out) = cloud_command(config, &["order", "history", &unknown]).unwrap();
    assert_eq!(code, 3, "{out}");
}
