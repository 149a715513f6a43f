//! Saga faults (issue #5 tests 4 and 6): poison events land in the DLQ
//! while other orders complete, `tok_flaky` succeeds after retries without
//! a double capture, and the processor's circuit breaker opens under a dead
//! simulator and closes again; card orders that arrive meanwhile are held
//! and captured by the reconciler once it is back (issue 21: they used to
//! wait in the DLQ for a manual replay).
//!
//! Retries run at a 100 ms base here (100, 200, 400 ms) instead of 1 s, and
//! the breaker stays open 4 s instead of 30 s, to keep the suite short.

use std::time::Duration;

use o2c_tests::kafka::{produce_raw, raw_producer};
use o2c_tests::saga::{
    SagaWorld, Tender, capture, cloud_status, dlq_command, order_body, wait_status,
};

const SAGA: Duration = Duration::from_secs(90);
const BREAKER: &str = "o2c_saga_psp_breaker_state";

async fn wait_metric(w: &SagaWorld, name: &str, pred: impl Fn(f64) -> bool) {
    let what = format!("metric {name}");
    if let Err(e) =
        o2c_tests::wait_until_named(&what, || async { pred(w.metric(name).await) }, SAGA).await
    {
        panic!("{e}: now {}\n{}", w.metric(name).await, w.logs());
    }
}

async fn wait_final(w: &SagaWorld, id: &str, status: &str) {
    if let Err(e) = wait_status(&w.agent, id, status, SAGA).await {
        panic!(
            "{e}: now {:?}\n{}",
            cloud_status(&w.agent, id).await,
            w.logs()
        );
    }
}

fn dlq_lines(w: &SagaWorld) -> Vec<serde_json::Value> {
    dlq_command(w.sagas[0].config_path(), &["list"])
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_dead_letters_and_card_orders_held_by_the_breaker_complete_after_it() {
    let w = SagaWorld::start(
        &["all"],
        "retry_base_ms = 100\ncapture_reconcile_secs = 1\ncapture_stuck_secs = 3",
        "breaker_open_ms = 4000",
    )
    .await
    .expect("world");
    let mut w = w;
    // tok_flaky: two 503s, then approved; retried, captured once.
    let flaky = capture(
        &w.agent,
        "flaky",
        &order_body("SKU-F", 1, &Tender::Card("tok_flaky_1".into()), false),
    )
    .await
    .unwrap();
    wait_final(&w, &flaky, "completed").await;
    assert_eq!(w.psp.captures_of(&flaky).await.unwrap(), 1);
    // Three tries: in its lane's batch, then on its own at once, then
    // after the first backoff (the one counted as a retry).
    assert!(
        w.metric("o2c_saga_retries_total{service=\"payment\"}")
            .await
            >= 1.0
    );

    // A poison record: dead-lettered at once by every service reading it.
    let producer = raw_producer(&w.brokers).unwrap();
    produce_raw(
        &producer,
        &w.env.topic("orders.created"),
        None,
        b"poison",
        &[],
        b"{not json",
    )
    .await
    .unwrap();

    // The processor dies: card orders open the breaker and are held
    // (Capturing, left to the capture reconciler); cash orders keep
    // completing.
    w.psp.kill().unwrap();
    let card1 = capture(
        &w.agent,
        "c1",
        &order_body("SKU-D", 1, &Tender::Card("tok_visa_d1".into()), false),
    )
    .await
    .unwrap();
    let card2 = capture(
        &w.agent,
        "c2",
        &order_body("SKU-D", 1, &Tender::Card("tok_visa_d2".into()), true),
    )
    .await
    .unwrap();
    let mut cash = Vec::new();
    for i in 0..3 {
        let body = order_body("SKU-D", 1, &Tender::Cash, false);
        cash.push(capture(&w.agent, &format!("cash{i}"), &body).await.unwrap());
    }
    for id in &cash {
        wait_final(&w, id, "completed").await;
    }
    // Open (1), or already half-open (2) after its open period.
    wait_metric(&w, BREAKER, |v| v >= 1.0).await;
    for id in [&card1, &card2] {
        assert_eq!(
            cloud_status(&w.agent, id).await.unwrap().0.as_deref(),
            Some("accepted")
        );
    }
    let dead = dlq_lines(&w);
    let poison: Vec<&serde_json::Value> = dead
        .iter()
        .filter(|d| d["reason"] == "malformed" && d["key"] == "poison")
        .collect();
    assert!(!poison.is_empty(), "poison listed: {dead:?}");
    // `dlq replay` puts a letter back on its source topic: the poison goes
    // round once more and is dead-lettered again.
    let id = format!("{}:{}", poison[0]["partition"], poison[0]["offset"]);
    let out = dlq_command(w.sagas[0].config_path(), &["replay", "--id", &id]).unwrap();
    assert!(out.contains("orders.created"), "{out}");
    let before = poison.len();
    o2c_tests::wait_until_named(
        "the replayed poison dead-lettered again",
        || async {
            dlq_lines(&w)
                .iter()
                .filter(|d| d["reason"] == "malformed" && d["key"] == "poison")
                .count()
                > before
        },
        SAGA,
    )
    .await
    .unwrap();

    // The processor is back: the reconciler captures the held orders with
    // their original keys. No DLQ replay is needed.
    w.psp.restart().await.unwrap();
    wait_final(&w, &card1, "completed").await;
    wait_final(&w, &card2, "completed").await;
    wait_metric(&w, BREAKER, |v| v == 0.0).await;
    for id in [&card1, &card2] {
        assert_eq!(w.psp.captures_of(id).await.unwrap(), 1, "{id}");
    }
}
