//! Saga idempotence and crash recovery (issue #5 tests 3 and 5).
//!
//! - Replay: every saga topic is produced again, twice, interleaved at
//!   random across topics and partitions (order kept within a partition).
//!   Nothing may change: one capture per order at the simulator, stock
//!   moved once, each compensation once, each return decided, restocked
//!   and refunded once, no new outbox row.
//! - Crash: with each service in its own process, payment and inventory
//!   are killed with SIGKILL while orders flow, then restarted; every order
//!   completes, captured exactly once.

use std::collections::BTreeMap;
use std::time::Duration;

use o2c_tests::kafka::{produce_raw, raw_producer};
use o2c_tests::saga::returns::{card_refund, request_return, return_body, wait_return};
use o2c_tests::saga::{SagaWorld, Tender, capture, cloud_status, order_body, wait_status};
use rand::Rng;
use serde_json::json;

const SAGA: Duration = Duration::from_secs(120);

const TOPICS: [&str; 15] = [
    "orders.created",
    "orders.cancelled",
    "payments.captured",
    "payments.failed",
    "inventory.confirmed",
    "inventory.released",
    "shipments.scheduled",
    "shipments.dispatched",
    "shipments.delivered",
    "shipments.cancelled",
    "orders.completed",
    "refunds.issued",
    "returns.requested",
    "returns.accepted",
    "returns.refused",
];

async fn movement_count(w: &SagaWorld) -> BTreeMap<String, i64> {
    let db = w.db().await.unwrap();
    db.query(
        "SELECT order_id, count(*) FROM o2c_inventory.movements GROUP BY order_id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

async fn wait_final(w: &SagaWorld, id: &str, status: &str) {
    if let Err(e) = wait_status(&w.agent, id, status, SAGA).await {
        let _ = std::process::Command::new("cp")
            .arg("-r")
            .arg(w.env.path())
            .arg("/tmp/saga-fail")
            .status();
        panic!(
            "{e}: now {:?}\n{}",
            cloud_status(&w.agent, id).await,
            w.logs()
        );
    }
}

/// Test 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_every_topic_twice_changes_nothing() {
    let w = SagaWorld::start(&["all"], "", "").await.expect("world");
    let a = &w.agent;
    let mut finals = Vec::new();
    for i in 0..4 {
        let body = order_body("SKU-R", 1, &Tender::Card(format!("tok_ok_{i}")), i % 2 == 1);
        finals.push((
            capture(a, &format!("ok{i}"), &body).await.unwrap(),
            "completed",
        ));
    }
    let body = order_body("SKU-R", 2, &Tender::Card("tok_decline_r".into()), false);
    finals.push((capture(a, "dec", &body).await.unwrap(), "cancelled"));
    let body = order_body("SKU-R", 1, &Tender::Cash, false);
    finals.push((capture(a, "cash", &body).await.unwrap(), "completed"));
    for (id, st) in &finals {
        wait_final(&w, id, st).await;
    }
    // A void after completion: refund + restock.
    let voided = finals[0].0.clone();
    a.cancel(&voided).await.unwrap();
    wait_final(&w, &voided, "refunded").await;
    finals[0].1 = "refunded";
    // Returns: a card sale's unit back on its card (refunded at the
    // processor), the cash sale's back in cash; each restocked.
    let returns = [
        (&finals[2].0, card_refund("tok_ok_2"), "return_refunded"),
        (&finals[5].0, json!({"method": "cash"}), "return_accepted"),
    ];
    let mut returned = Vec::new();
    for (i, (order, refund, end)) in returns.iter().enumerate() {
        let body = return_body(&[("SKU-R", 1)], refund.clone());
        let (code, v) = request_return(a, order, &format!("ret{i}"), &body)
            .await
            .unwrap();
        assert_eq!(code, 201, "{v}");
        let id = v["return_id"].as_str().unwrap().to_owned();
        wait_return(a, &id, end, SAGA)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
        returned.push((id, *end));
    }
    w.wait_groups_caught_up(SAGA).await.unwrap();

    let outbox = w.outbox_counts().await.unwrap();
    let stats = w.psp.stats().await.unwrap();
    let moves = movement_count(&w).await;
    assert_eq!(stats["captures"].as_array().unwrap().len(), 4);
    assert_eq!(stats["refunds"].as_array().unwrap().len(), 2);

    // Replay every topic twice, interleaved at random.
    let mut queues = Vec::new();
    for t in TOPICS {
        let topic = w.env.topic(t);
        let n = o2c_tests::topic_record_count(&w.brokers, &topic)
            .await
            .unwrap() as usize;
        if n == 0 {
            continue;
        }
        let recs = o2c_tests::consume_all(&w.brokers, &topic, n, Duration::from_secs(60))
            .await
            .unwrap();
        let mut by_part: BTreeMap<i32, Vec<_>> = BTreeMap::new();
        for r in recs {
            by_part.entry(r.partition).or_default().push(r);
        }
        for (p, mut rs) in by_part {
            rs.sort_by_key(|r| r.offset);
            let twice: Vec<_> = rs.iter().chain(rs.iter()).cloned().collect();
            queues.push((topic.clone(), p, twice));
        }
    }
    let producer = raw_producer(&w.brokers).unwrap();
    let mut rng = rand::rng();
    let mut replayed = 0;
    while !queues.is_empty() {
        let i = rng.random_range(0..queues.len());
        let (topic, p, q) = &mut queues[i];
        let r = q.remove(0);
        let headers: Vec<(String, Vec<u8>)> = r.headers.clone().into_iter().collect();
        produce_raw(
            &producer,
            topic,
            Some(*p),
            r.key.as_deref().unwrap_or_default(),
            &headers,
            &r.payload,
        )
        .await
        .unwrap();
        replayed += 1;
        if q.is_empty() {
            queues.swap_remove(i);
        }
    }
    eprintln!("replayed {replayed} records");
    w.wait_groups_caught_up(SAGA).await.unwrap();

    assert_eq!(
        w.outbox_counts().await.unwrap(),
        outbox,
        "no new outbox row"
    );
    let after = w.psp.stats().await.unwrap();
    assert_eq!(
        after["captures"], stats["captures"],
        "one capture per order"
    );
    assert_eq!(after["refunds"], stats["refunds"], "one refund");
    assert_eq!(movement_count(&w).await, moves, "stock moved once");
    for (id, st) in &finals {
        assert_eq!(
            cloud_status(a, id).await.unwrap().0.as_deref(),
            Some(*st),
            "{id}"
        );
    }
    for (id, st) in &returned {
        let v = a.get(&format!("/v1/returns/{id}")).await.unwrap();
        assert_eq!(v["cloud_status"], *st, "{v}");
    }
}

/// Test 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_killed_mid_saga_finish_every_order() {
    let services = ["order", "payment", "inventory", "shipping", "status"];
    let mut w = SagaWorld::start(&services, "", "").await.expect("world");
    let mut ids: Vec<String> = Vec::new();
    for i in 0..24 {
        if i == 8 {
            // The groups are running: wait for the first orders, then kill
            // payment and inventory with the next orders in flight.
            for id in &ids {
                wait_final(&w, id, "completed").await;
            }
        }
        let body = order_body("SKU-K", 1, &Tender::Card(format!("tok_k_{i}")), i % 4 == 3);
        ids.push(capture(&w.agent, &format!("k{i}"), &body).await.unwrap());
        if i == 10 {
            w.sagas[1].kill().unwrap();
            w.sagas[2].kill().unwrap();
        }
        if i == 16 {
            w.sagas[0].kill().unwrap();
            w.sagas[1].restart().await.unwrap();
            w.sagas[2].restart().await.unwrap();
        }
    }
    w.sagas[0].restart().await.unwrap();
    for id in &ids {
        wait_final(&w, id, "completed").await;
    }
    let stats = w.psp.stats().await.unwrap();
    for id in &ids {
        let n = stats["captures"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["order_id"] == id.as_str())
            .count();
        assert_eq!(n, 1, "captures of {id}");
    }
    assert_eq!(stats["captures"].as_array().unwrap().len(), ids.len());
    let moves = movement_count(&w).await;
    assert_eq!(moves.len(), ids.len());
    assert!(
        moves.values().all(|n| *n == 2),
        "reserve + confirm once each: {moves:?}"
    );
    let outbox = w.outbox_counts().await.unwrap();
    assert_eq!(
        outbox[0],
        ("o2c_order".into(), ids.len() as i64),
        "one completion each"
    );
    assert_eq!(
        outbox[1],
        ("o2c_payment".into(), ids.len() as i64),
        "one capture event each"
    );
}
