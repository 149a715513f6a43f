//! Saga faults (issue #5 tests 4 and 6): poison events and transient
//! failures land in the DLQ while other orders complete, `dlq replay` of a
//! repaired event completes it, `tok_flaky` succeeds after retries without
//! a double capture, and the processor's circuit breaker opens under a dead
//! simulator and closes again.
//!
//! Retries run at a 100 ms base here (100, 200, 400 ms) instead of 1 s, and
//! the breaker stays open 4 s instead of 30 s, to keep the suite short.

use std::time::Duration;

use o2c_tests::saga::{
    SagaWorld, Tender, capture, cloud_status, dlq_command, order_body, produce_raw, raw_producer,
    wait_status,
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
async fn poison_and_exhausted_retries_dead_letter_then_replay_completes() {
    let w = SagaWorld::start(&["all"], "retry_base_ms = 100", "breaker_open_ms = 4000")
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

    // The processor dies: card orders exhaust their retries and open the
    // breaker; cash orders keep completing.
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
    // poison + card1 + card2 at the payment service.
    wait_metric(
        &w,
        "o2c_saga_dead_letters_total{service=\"payment\"}",
        |v| v >= 3.0,
    )
    .await;
    // Open (1), or already half-open (2) after its open period.
    wait_metric(&w, BREAKER, |v| v >= 1.0).await;
    for id in [&card1, &card2] {
        assert_eq!(
            cloud_status(&w.agent, id).await.unwrap().0.as_deref(),
            Some("accepted")
        );
    }

    let dead = dlq_lines(&w);
    assert!(
        dead.iter()
            .any(|d| d["reason"] == "malformed" && d["key"] == "poison"),
        "poison listed: {dead:?}"
    );
    let event_of = |order: &str| {
        dead.iter()
            .find(|d| d["key"] == order && d["reason"] == "retries_exhausted")
            .and_then(|d| d["event_id"].as_str())
            .unwrap_or_else(|| panic!("{order} not in the DLQ: {dead:?}"))
            .to_owned()
    };
    let (e1, e2) = (event_of(&card1), event_of(&card2));

    // Repair: the processor is back; once the breaker half-opens, replay.
    w.psp.restart().await.unwrap();
    wait_metric(&w, BREAKER, |v| v == 2.0).await;
    let out = dlq_command(w.sagas[0].config_path(), &["replay", "--id", &e1]).unwrap();
    assert!(out.contains("orders.created"), "{out}");
    wait_final(&w, &card1, "completed").await;
    wait_metric(&w, BREAKER, |v| v == 0.0).await;
    dlq_command(w.sagas[0].config_path(), &["replay", "--id", &e2]).unwrap();
    wait_final(&w, &card2, "completed").await;
    for id in [&card1, &card2] {
        assert_eq!(w.psp.captures_of(id).await.unwrap(), 1, "{id}");
    }
}
