//! End-to-end sync: real `o2c-agent`, real `o2c-cloud ingest`, a private
//! Mosquitto per test, Kafka (Tansu). Every test compares the exact set of
//! `event_id`s in Kafka with the agent's outbox and reports raw duplicates.
//!
//! Faults injected, one per test: broker unreachable while capturing,
//! agent SIGKILL during a drain, ingest SIGKILL between produce and ack,
//! Kafka stopped, broker restarted mid-drain.

use std::collections::BTreeSet;
use std::time::Duration;

use o2c_tests::pipeline::{AgentProc, Ingest, KafkaView};
use o2c_tests::{PrivateMosquitto, PrivateTansu, TestEnv, consume_all};
use rand::Rng;

const DRAIN: Duration = Duration::from_secs(180);

/// Captures `n` orders, 16 at a time; returns their order ids.
async fn capture(agent: &AgentProc, tag: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    let keys: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
    for chunk in keys.chunks(16) {
        let results = futures::future::join_all(chunk.iter().map(|k| agent.post_order(k))).await;
        ids.extend(results.into_iter().map(|r| r.expect("capture").order_id));
    }
    ids
}

/// Reads `orders.created` until it holds every event id of the agent's
/// outbox, then asserts the sets are equal and returns the view.
async fn assert_kafka_matches_outbox(env: &TestEnv, brokers: &str, agent: &AgentProc) -> KafkaView {
    let outbox = agent.outbox().expect("outbox");
    assert!(
        outbox.iter().all(|(_, _, state)| state == "acked"),
        "every event acked"
    );
    let seqs: Vec<u64> = outbox.iter().map(|(s, _, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=outbox.len() as u64).collect::<Vec<_>>(),
        "outbox gap-free"
    );
    let expected: BTreeSet<String> = outbox.into_iter().map(|(_, id, _)| id).collect();
    let topic = env.topic("orders.created");
    // At least one record per event; raw duplicates may add more.
    let count = o2c_tests::topic_record_count(brokers, &topic)
        .await
        .expect("count") as usize;
    assert!(
        count >= expected.len(),
        "kafka has {count} records for {} events",
        expected.len()
    );
    let view = KafkaView::new(
        consume_all(brokers, &topic, count, Duration::from_secs(60))
            .await
            .expect("consume"),
    );
    let got = view.event_ids();
    let missing: Vec<_> = expected.difference(&got).collect();
    let extra: Vec<_> = got.difference(&expected).collect();
    assert!(
        missing.is_empty(),
        "{} events missing from Kafka, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert!(extra.is_empty(), "{} unknown events in Kafka", extra.len());
    eprintln!(
        "kafka: {} events, {} raw duplicates (removed by event_id dedup)",
        got.len(),
        view.raw_duplicates()
    );
    view
}

struct Setup {
    env: TestEnv,
    mosq: PrivateMosquitto,
    brokers: String,
    ingest: Ingest,
    agent: AgentProc,
}

/// Small batches (50 events) make a drain take many round trips, so the
/// faults below land in the middle of one.
async fn setup(ack_timeout_ms: u64) -> Setup {
    let env = TestEnv::new();
    let brokers = env.require_kafka().await.to_owned();
    let mosq = PrivateMosquitto::start().await.expect("mosquitto");
    let ingest = Ingest::start(env.path(), env.prefix(), &mosq.url(), &brokers)
        .await
        .expect("ingest");
    let store = env.store_id("S1");
    let agent = AgentProc::start(
        env.path(),
        &store,
        &format!("{store}-A1"),
        &mosq.url(),
        &format!("[sync]\nack_timeout_ms = {ack_timeout_ms}\nmax_batch_events = 50"),
    )
    .await
    .expect("agent");
    Setup {
        env,
        mosq,
        brokers,
        ingest,
        agent,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_orders_and_void_arrive_in_order_with_headers() {
    let s = setup(2_000).await;
    let ids = capture(&s.agent, "k", 3).await;
    s.agent.cancel(&ids[1]).await.expect("cancel");
    s.agent.wait_drained(DRAIN).await.expect("drained");

    let view = assert_kafka_matches_outbox_types(&s).await;
    let order = s
        .agent
        .get(&format!("/v1/orders/{}", ids[0]))
        .await
        .unwrap();
    assert_eq!(order["sync"], "synced", "{order}");
    drop(view);
}

/// Happy-path variant of the check: created and cancelled topics together.
async fn assert_kafka_matches_outbox_types(s: &Setup) -> KafkaView {
    let created = consume_all(
        &s.brokers,
        &s.env.topic("orders.created"),
        3,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let cancelled = consume_all(
        &s.brokers,
        &s.env.topic("orders.cancelled"),
        1,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let outbox = s.agent.outbox().unwrap();
    assert_eq!(outbox.len(), 4);
    let c = &cancelled[0];
    for name in [
        "event_id",
        "event_type",
        "schema_version",
        "store_id",
        "agent_id",
        "seq",
        "traceparent",
    ] {
        assert!(c.header_str(name).is_some(), "header {name} missing");
    }
    assert_eq!(c.header_str("event_type"), Some("OrderCancelled"));
    assert_eq!(c.header_str("seq"), Some("4"));
    assert_eq!(c.header_str("store_id"), Some(s.agent.store_id.as_str()));
    // The void follows its order: same key, later seq.
    let created_same = created
        .iter()
        .find(|r| r.key == c.key)
        .expect("created record of the voided order");
    let seq = |r: &o2c_tests::ConsumedRecord| r.header_str("seq").unwrap().parse::<u64>().unwrap();
    assert!(seq(created_same) < seq(c));
    // Values are the envelopes exactly as committed in the outbox.
    let env = o2c_protocol::Envelope::decode(&c.payload).expect("decodes");
    assert_eq!(env.event_id.to_string(), c.header_str("event_id").unwrap());
    let mut all = created;
    all.extend(cancelled);
    let view = KafkaView::new(all);
    let expected: BTreeSet<String> = outbox.into_iter().map(|(_, id, _)| id).collect();
    assert_eq!(view.event_ids(), expected);
    view
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_store_captures_5000_then_drains_in_order() {
    let mut s = setup(5_000).await;
    s.mosq.stop().await.expect("stop broker");
    let ids = capture(&s.agent, "off", 5_000).await;
    assert_eq!(ids.len(), 5_000);
    let st = s.agent.sync_status().await.unwrap();
    assert_eq!(st["connected"], false, "{st}");
    assert_eq!(st["pending_events"], 5_000, "{st}");
    s.mosq.restart().await.expect("restart broker");
    s.agent.wait_drained(DRAIN).await.expect("drained");
    let view = assert_kafka_matches_outbox(&s.env, &s.brokers, &s.agent).await;
    assert_eq!(view.event_ids().len(), 5_000);
    view.seqs_increase_per_partition(&s.agent.agent_id)
        .expect("seq order per partition");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_ten_times_during_drain_loses_nothing() {
    let mut s = setup(2_000).await;
    s.mosq.stop().await.unwrap();
    capture(&s.agent, "kill", 2_000).await;
    s.mosq.restart().await.unwrap();
    let mut kills = 0;
    let mut topups = 0;
    while kills < 10 {
        let pending = s.agent.sync_status().await.unwrap()["pending_events"]
            .as_u64()
            .unwrap();
        if pending == 0 {
            // Drained before the next kill: add backlog so it lands mid-drain.
            topups += 1;
            capture(&s.agent, &format!("top{topups}"), 500).await;
            continue;
        }
        let ms = rand::rng().random_range(10..120);
        tokio::time::sleep(Duration::from_millis(ms)).await; // fault timing, not synchronisation
        s.agent.kill().expect("kill -9 agent");
        kills += 1;
        s.agent
            .restart()
            .await
            .unwrap_or_else(|e| panic!("restart {kills}: {e}"));
    }
    s.agent.wait_drained(DRAIN).await.expect("drained");
    assert_kafka_matches_outbox(&s.env, &s.brokers, &s.agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_killed_between_produce_and_ack_loses_nothing() {
    let mut s = setup(1_000).await;
    s.mosq.stop().await.unwrap();
    capture(&s.agent, "ik", 2_000).await;
    s.mosq.restart().await.unwrap();
    let mut kills = 0;
    let mut topups = 0;
    while kills < 5 {
        let pending = s.agent.sync_status().await.unwrap()["pending_events"]
            .as_u64()
            .unwrap();
        if pending == 0 {
            topups += 1;
            capture(&s.agent, &format!("top{topups}"), 500).await;
            continue;
        }
        let ms = rand::rng().random_range(5..60);
        tokio::time::sleep(Duration::from_millis(ms)).await; // fault timing
        s.ingest.kill().expect("kill -9 ingest");
        kills += 1;
        s.ingest.restart().await.expect("restart ingest");
    }
    s.agent.wait_drained(DRAIN).await.expect("drained");
    assert_kafka_matches_outbox(&s.env, &s.brokers, &s.agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_crash_right_after_produce_duplicates_but_loses_nothing() {
    // Fault: the ingest aborts after Kafka acked its 3rd batch, before the
    // ack is published. The agent resends; the new ingest has no ledger and
    // writes the batch again. Kafka holds raw duplicates, dedup removes them.
    let env = TestEnv::new();
    let brokers = env.require_kafka().await.to_owned();
    let mosq = PrivateMosquitto::start().await.unwrap();
    let mut ingest = Ingest::start_with_env(
        env.path(),
        env.prefix(),
        &mosq.url(),
        &brokers,
        &[("O2C_INGEST_FAULT_CRASH_AFTER_PRODUCE", "3")],
    )
    .await
    .unwrap();
    let store = env.store_id("S1");
    let agent = AgentProc::start(
        env.path(),
        &store,
        &format!("{store}-A1"),
        &mosq.url(),
        "ack_timeout_ms = 1000\nmax_batch_events = 50",
    )
    .await
    .unwrap();
    capture(&agent, "crash", 400).await;
    ingest
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("injected crash");
    ingest.restart().await.expect("restart ingest");
    agent.wait_drained(DRAIN).await.expect("drained");
    let view = assert_kafka_matches_outbox(&env, &brokers, &agent).await;
    assert!(
        view.raw_duplicates() >= 1,
        "the crashed batch was written twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_drain_loses_nothing() {
    let mut s = setup(2_000).await;
    s.mosq.stop().await.unwrap();
    capture(&s.agent, "br", 3_000).await;
    s.mosq.restart().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await; // let the drain start
    s.mosq.restart().await.expect("broker restart mid-drain");
    s.agent.wait_drained(DRAIN).await.expect("drained");
    assert_kafka_matches_outbox(&s.env, &s.brokers, &s.agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_outage_keeps_backlog_until_tansu_returns() {
    let env = TestEnv::new();
    let mut tansu = PrivateTansu::start().await.expect("tansu");
    let brokers = tansu.brokers();
    let mosq = PrivateMosquitto::start().await.unwrap();
    let _ingest = Ingest::start(env.path(), env.prefix(), &mosq.url(), &brokers)
        .await
        .unwrap();
    let store = env.store_id("S1");
    let agent = AgentProc::start(
        env.path(),
        &store,
        &format!("{store}-A1"),
        &mosq.url(),
        "ack_timeout_ms = 1000",
    )
    .await
    .unwrap();
    capture(&agent, "before", 20).await;
    agent.wait_drained(DRAIN).await.expect("first drain");
    let acked_before = agent.sync_status().await.unwrap()["last_acked_seq"].clone();

    tansu.stop().await.expect("stop tansu");
    capture(&agent, "during", 200).await;
    // Several ack timeouts pass: batches are resent, none is acked.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < deadline {
        let st = agent.sync_status().await.unwrap();
        assert_eq!(
            st["last_acked_seq"], acked_before,
            "acked while Kafka was down: {st}"
        );
        assert_eq!(st["pending_events"], 200, "{st}");
        tokio::time::sleep(Duration::from_millis(200)).await; // observation period
    }
    tansu.restart().await.expect("restart tansu");
    agent
        .wait_drained(DRAIN)
        .await
        .expect("drained after Kafka returned");
    assert_kafka_matches_outbox(&env, &brokers, &agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingest_replicas_share_the_work_and_survive_losing_one() {
    // Two replicas in one shared-subscription group. Mosquitto hands frames
    // out round robin; one replica is killed mid-drain, losing the frames it
    // held. The agent's resend recovers them through the survivor, and one
    // batch in flight per agent keeps each agent's events in order.
    let mut s = setup(1_000).await;
    let replica_dir = s.env.path().join("replica2");
    std::fs::create_dir_all(&replica_dir).unwrap();
    let mut second = Ingest::start(&replica_dir, s.env.prefix(), &s.mosq.url(), &s.brokers)
        .await
        .expect("second replica");
    s.mosq.stop().await.unwrap();
    capture(&s.agent, "rep", 2_000).await;
    s.mosq.restart().await.unwrap();
    // Wait until the drain is under way, then kill one replica.
    o2c_tests::wait_until_named(
        "drain under way",
        || async {
            let p = s.agent.sync_status().await.unwrap()["pending_events"]
                .as_u64()
                .unwrap();
            p < 1_900
        },
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let second_frames = metric(
        &second.metrics().await.unwrap(),
        "o2c_ingest_frames_in_total",
    );
    second.kill().expect("kill -9 one replica");
    s.agent.wait_drained(DRAIN).await.expect("drained");
    let view = assert_kafka_matches_outbox(&s.env, &s.brokers, &s.agent).await;
    view.seqs_increase_per_partition(&s.agent.agent_id)
        .expect("order per partition");
    // Both replicas took frames.
    let first_frames = metric(
        &s.ingest.metrics().await.unwrap(),
        "o2c_ingest_frames_in_total",
    );
    assert!(
        first_frames > 0.0 && second_frames > 0.0,
        "{first_frames} / {second_frames}"
    );
}

/// A sample's value from Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in metrics:\n{text}"))
}
