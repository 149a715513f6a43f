//! Payment recovery (issue 21, saga side), against real PostgreSQL, Tansu,
//! Mosquitto and `o2c-psp-sim`:
//!
//! 1. A store void that arrives while the order's capture is failing is
//!    recorded and acked (not retried into the DLQ). Once the capture
//!    settles, a capture the processor made is refunded exactly once, and
//!    one it never made is never made.
//! 2. Orders a processor outage left `Capturing` are finished by the
//!    reconciler, with no DLQ replay, each captured exactly once, across a
//!    kill -9 of the saga.
//!    With two payment replicas, each stuck order is settled by one of
//!    them, once.
//! 3. A void of a captured order while the processor hangs (calls time
//!    out, then its breaker opens) is acked with the refund recorded as owed, never dead-lettered;
//!    the reconciler refunds it exactly once when the processor is back,
//!    across a kill -9 of the saga (RELIABILITY.md, bug 7).
//! 4. `dlq replay` refuses an ingest dead letter (an MQTT frame) and says
//!    what to do instead.
//!
//! The processor fault is either `tok_slow…` (psp-sim captures, then
//! answers after 3 s, past the saga's 500 ms timeout: the capture happened
//! but the saga never heard) or a killed psp-sim (it never got the call).
//! The reconciler sweeps every second and takes rows whose last capture call
//! is 2 s old (5 s in test 1, so that the void lands first).

use std::time::Duration;

use o2c_protocol::topic::{Channel, agent_topic};
use o2c_protocol::{AgentId, StoreId};
use o2c_tests::pipeline::Ingest;
use o2c_tests::saga::{
    SagaProc, SagaWorld, Tender, capture, cloud_status, dlq_command, order_body, wait_status,
};
use o2c_tests::{PrivateMosquitto, TestEnv, consume_all, topic_record_count, wait_until_named};

const SAGA: Duration = Duration::from_secs(90);
const RECONCILE: &str = "capture_reconcile_secs = 1\ncapture_stuck_secs = 2";
/// Test 1 waits longer, so the void lands before the reconciler looks.
const RECONCILE_LATER: &str = "capture_reconcile_secs = 1\ncapture_stuck_secs = 5";
const PSP: &str = "timeout_ms = 500\nbreaker_open_ms = 1000";

/// The payment service's `(phase, cancel_requested)` of an order.
async fn payment(w: &SagaWorld, order: &str) -> Option<(String, bool)> {
    let db = w.db().await.ok()?;
    let row = db
        .query_opt(
            "SELECT state FROM o2c_payment.orders WHERE order_id = $1",
            &[&order],
        )
        .await
        .ok()??;
    let v: serde_json::Value = serde_json::from_str(row.get::<_, &str>(0)).ok()?;
    let cancel = v["cancel_requested"].as_bool().unwrap_or(false);
    Some((v["phase"].as_str()?.to_owned(), cancel))
}

async fn wait_payment(w: &SagaWorld, order: &str, phase: &str, cancel: bool) {
    let what = format!("payment of {order} {phase} (cancel_requested {cancel})");
    let want = Some((phase.to_owned(), cancel));
    if let Err(e) =
        wait_until_named(&what, || async { payment(w, order).await == want }, SAGA).await
    {
        panic!("{e}: now {:?}\n{}", payment(w, order).await, w.logs());
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

async fn wait_captures(w: &SagaWorld, id: &str, n: usize) {
    let what = format!("{n} capture(s) of {id} at the processor");
    let got = || async { w.psp.captures_of(id).await.is_ok_and(|c| c == n) };
    if let Err(e) = wait_until_named(&what, got, SAGA).await {
        panic!("{e}\n{}", w.logs());
    }
}

fn dlq_lines(w: &SagaWorld) -> Vec<serde_json::Value> {
    dlq_command(w.sagas[0].config_path(), &["list"])
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn card(token: &str) -> serde_json::Value {
    order_body("SKU-P", 1, &Tender::Card(token.into()), false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_void_during_a_failing_capture_refunds_once_or_never_captures() {
    // Retries at 3, 6 and 12 s: the void lands well within them.
    let saga = format!("retry_base_ms = 3000\n{RECONCILE_LATER}");
    let mut w = SagaWorld::start(&["all"], &saga, PSP).await.expect("world");

    // The processor captures, but its answer comes too late: the saga's
    // capture keeps failing, and the store voids the order meanwhile.
    let slow = capture(&w.agent, "slow", &card("tok_slow_1"))
        .await
        .unwrap();
    wait_payment(&w, &slow, "capturing", false).await;
    wait_captures(&w, &slow, 1).await;
    w.agent.cancel(&slow).await.unwrap();
    // Refunded exactly once, by its stable key, with one RefundIssued.
    wait_payment(&w, &slow, "refunded", true).await;
    wait_final(&w, &slow, "refunded").await;
    assert_eq!(w.psp.captures_of(&slow).await.unwrap(), 1);
    assert_eq!(w.psp.refunds_of(&slow).await.unwrap(), 1);

    // The processor is down: the capture never reaches it. The store
    // voids; then the processor comes back. Nothing is ever captured.
    w.psp.kill().unwrap();
    let down = capture(&w.agent, "down", &card("tok_visa_down"))
        .await
        .unwrap();
    wait_payment(&w, &down, "capturing", false).await;
    w.agent.cancel(&down).await.unwrap();
    wait_payment(&w, &down, "capturing", true).await;
    w.psp.restart().await.unwrap();
    wait_payment(&w, &down, "cancelled", true).await;
    wait_final(&w, &down, "cancelled").await;
    assert_eq!(w.psp.captures_of(&down).await.unwrap(), 0);
    assert_eq!(w.psp.refunds_of(&down).await.unwrap(), 0);

    // Exactly one RefundIssued in all, and nothing dead-lettered.
    w.wait_groups_caught_up(SAGA).await.unwrap();
    let db = w.db().await.unwrap();
    let refunds: i64 = db
        .query_one(
            "SELECT count(*) FROM o2c_payment.outbox WHERE event_type = 'RefundIssued'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(refunds, 1);
    let dead = dlq_lines(&w);
    assert!(dead.is_empty(), "dead letters: {dead:?}");
    let reconciled = |o: &str| format!("o2c_saga_payment_reconciled_total{{outcome=\"{o}\"}}");
    assert_eq!(w.metric(&reconciled("refunded")).await, 1.0);
    assert_eq!(w.metric(&reconciled("cancelled")).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_captures_complete_without_a_dlq_replay() {
    // Retries at 100, 200 and 400 ms: both orders are dead-lettered
    // quickly, and nobody replays them.
    let saga = format!("retry_base_ms = 100\n{RECONCILE}");
    let mut w = SagaWorld::start(&["all"], &saga, PSP).await.expect("world");

    // Captured by the processor, answer lost: the reconciler learns it by
    // the capture's key and completes the order.
    let slow = capture(&w.agent, "slow", &card("tok_slow_2"))
        .await
        .unwrap();
    wait_final(&w, &slow, "completed").await;
    assert_eq!(w.psp.captures_of(&slow).await.unwrap(), 1);

    // Never received: the processor is down, the saga is killed -9 with
    // the order `Capturing`, the processor comes back, then the saga.
    w.psp.kill().unwrap();
    let down = capture(&w.agent, "down", &card("tok_visa_down2"))
        .await
        .unwrap();
    wait_payment(&w, &down, "capturing", false).await;
    let dead = "o2c_saga_dead_letters_total{service=\"payment\"}";
    let what = "both OrderCreated dead-lettered by the payment service";
    wait_until_named(what, || async { w.metric(dead).await >= 2.0 }, SAGA)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    // Offsets committed: the kill loses no commit, so no redelivery
    // captures the order instead of the reconciler.
    w.wait_groups_caught_up(SAGA).await.unwrap();
    w.sagas[0].kill().unwrap();
    w.psp.restart().await.unwrap();
    w.sagas[0].restart().await.unwrap();
    // Sent again with the same key, within its lifetime: captured once.
    wait_final(&w, &down, "completed").await;
    assert_eq!(w.psp.captures_of(&down).await.unwrap(), 1);
    let captured = "o2c_saga_payment_reconciled_total{outcome=\"captured\"}";
    assert_eq!(w.metric(captured).await, 1.0, "after the restart");

    // The two letters are still there, never replayed; each order emitted
    // exactly one PaymentCaptured.
    let letters: Vec<_> = dlq_lines(&w)
        .into_iter()
        .filter(|d| d["reason"] == "retries_exhausted")
        .map(|d| d["key"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(letters.len(), 2, "{letters:?}");
    for id in [&slow, &down] {
        assert!(letters.contains(id), "{id} in {letters:?}");
        let n: i64 = w
            .db()
            .await
            .unwrap()
            .query_one(
                "SELECT count(*) FROM o2c_payment.outbox \
                 WHERE event_type = 'PaymentCaptured' AND key = $1",
                &[id],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_payment_replicas_settle_each_stuck_capture_once() {
    let saga = format!("retry_base_ms = 100\n{RECONCILE}");
    let mut w = SagaWorld::start(&["order", "inventory", "shipping", "status"], &saga, PSP)
        .await
        .expect("world");
    for replica in ["p1", "p2"] {
        let mut s = w.settings.clone();
        s.extra_saga = format!("{saga}\ninstance_id = \"{replica}\"");
        let proc = SagaProc::start(w.env.path(), &s, "payment").await.unwrap();
        w.sagas.push(proc);
    }
    // Every capture's answer is lost: all of them are left to the two
    // reconcilers, which sweep the same rows every second.
    let mut ids = Vec::new();
    for i in 0..6 {
        let token = format!("tok_slow_r{i}");
        ids.push(
            capture(&w.agent, &format!("r{i}"), &card(&token))
                .await
                .unwrap(),
        );
    }
    for id in &ids {
        wait_final(&w, id, "completed").await;
    }
    let db = w.db().await.unwrap();
    for id in &ids {
        assert_eq!(w.psp.captures_of(id).await.unwrap(), 1, "{id}");
        let n: i64 = db
            .query_one(
                "SELECT count(*) FROM o2c_payment.outbox \
                 WHERE event_type = 'PaymentCaptured' AND key = $1",
                &[id],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "{id}");
    }
    // Summed over both replicas: one settlement per order.
    let captured = "o2c_saga_payment_reconciled_total{outcome=\"captured\"}";
    assert_eq!(w.metric(captured).await, 6.0, "{}", w.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_void_while_the_processor_hangs_is_refunded_once_it_is_back() {
    // Retries at 100, 200 and 400 ms: without the owed refund, the void
    // would be dead-lettered within a second and never refunded.
    let saga = format!("retry_base_ms = 100\n{RECONCILE}");
    let mut w = SagaWorld::start(&["all"], &saga, PSP).await.expect("world");
    let id = capture(&w.agent, "owed", &card("tok_visa_owed"))
        .await
        .unwrap();
    wait_payment(&w, &id, "captured", false).await;
    wait_captures(&w, &id, 1).await;

    // The processor hangs (its ledger kept, as a real processor's is); the
    // store voids. The refund call times out, and the cancellation is acked
    // with the refund owed (still `Captured`, `cancel_requested`).
    w.psp.freeze().unwrap();
    w.agent.cancel(&id).await.unwrap();
    wait_payment(&w, &id, "captured", true).await;
    w.wait_groups_caught_up(SAGA).await.unwrap();
    let dead = dlq_lines(&w);
    assert!(dead.is_empty(), "dead letters: {dead:?}");

    // The saga dies too; the processor comes back, then the saga. The
    // reconciler refunds under the refund key, once.
    w.sagas[0].kill().unwrap();
    w.psp.thaw().unwrap();
    w.sagas[0].restart().await.unwrap();
    wait_payment(&w, &id, "refunded", true).await;
    wait_final(&w, &id, "refunded").await;
    assert_eq!(w.psp.captures_of(&id).await.unwrap(), 1);
    assert_eq!(w.psp.refunds_of(&id).await.unwrap(), 1);
    let n: i64 = w
        .db()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM o2c_payment.outbox \
             WHERE event_type = 'RefundIssued' AND key = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let refunded = "o2c_saga_payment_reconciled_total{outcome=\"refunded\"}";
    assert_eq!(w.metric(refunded).await, 1.0, "after the restart");
    let dead = dlq_lines(&w);
    assert!(dead.is_empty(), "dead letters: {dead:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_dead_letter_is_refused_by_dlq_replay() {
    let env = TestEnv::new();
    let brokers = env.require_kafka().await.to_owned();
    let mosq = PrivateMosquitto::start().await.unwrap();
    let _ingest = Ingest::start(env.path(), env.prefix(), &mosq.url(), &brokers)
        .await
        .unwrap();
    // Garbage on a store's events topic: the ingest dead-letters it.
    let store = StoreId::new(env.store_id("s1")).unwrap();
    let agent = AgentId::new("A1").unwrap();
    let topic = agent_topic(&store, &agent, Channel::Events);
    publish_once(mosq.port(), &topic, b"not a frame").await;
    let dlq = env.topic("o2c.dlq");
    consume_all(&brokers, &dlq, 1, Duration::from_secs(30))
        .await
        .unwrap();

    let config = env.path().join("ingest.toml");
    let listed = dlq_command(&config, &["list"]).unwrap();
    let letter: serde_json::Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    assert_eq!(letter["source_topic"], topic.as_str());
    let id = format!("{}:{}", letter["partition"], letter["offset"]);
    let err = dlq_command(&config, &["replay", "--id", &id])
        .unwrap_err()
        .to_string();
    for needle in [
        "cannot be replayed",
        "ingest dead letter",
        topic.as_str(),
        "docs/operations.md",
    ] {
        assert!(err.contains(needle), "{needle:?} in {err}");
    }
    // Nothing was produced anywhere.
    assert_eq!(topic_record_count(&brokers, &dlq).await.unwrap(), 1);
    let orders = env.topic("orders.created");
    assert_eq!(topic_record_count(&brokers, &orders).await.unwrap(), 0);
}

/// Publishes `payload` on `topic` at QoS 1 and waits for the broker's ack.
async fn publish_once(port: u16, topic: &str, payload: &[u8]) {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let (client, mut eventloop) =
        AsyncClient::new(MqttOptions::new("o2c-test-raw", "127.0.0.1", port), 8);
    client
        .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
        .await
        .unwrap();
    let acked = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return,
                Ok(_) => {}
                Err(e) => panic!("mqtt: {e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), acked)
        .await
        .expect("puback in time");
}
