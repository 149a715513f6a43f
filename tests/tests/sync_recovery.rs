//! Recovery from a silent partition, end to end: real `o2c-agent` behind a
//! [`LinkProxy`], real `o2c-cloud ingest`, a private Mosquitto, Kafka.
//!
//! Fault injected: a 20 s blackhole in the middle of a drain (every packet
//! dropped both ways, no RST, sockets left open; the connections it caught
//! stay silent after the heal, as TCP stuck in its retransmit backoff
//! does). Before the fix the agent sat on its dead connection until the
//! MQTT keep-alive gave up (measured: the drain resumed 42 s after the
//! heal). Now it judges the connection dead when the broker stops
//! answering, reconnects with a short backoff, and its drain resumes
//! within 5 s of the heal, with nothing lost and the order kept.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use o2c_tests::pipeline::{AgentProc, Ingest, KafkaView};
use o2c_tests::proxy::{LinkMode, LinkProxy};
use o2c_tests::{PrivateMosquitto, TestEnv, wait_until_named};

const ORDERS: usize = 3_000;
const PARTITION: Duration = Duration::from_secs(20);
const RECOVERY_BUDGET: Duration = Duration::from_secs(5);

async fn pending(agent: &AgentProc) -> Option<u64> {
    agent.sync_status().await.ok()?["pending_events"].as_u64()
}

async fn connected(agent: &AgentProc) -> Option<bool> {
    agent.sync_status().await.ok()?["connected"].as_bool()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_resumes_within_5s_of_a_silent_partition_healing() {
    let env = TestEnv::new();
    let brokers = env.require_kafka().await.to_owned();
    let mosq = PrivateMosquitto::start().await.expect("mosquitto");
    let _ingest = Ingest::start(env.path(), env.prefix(), &mosq.url(), &brokers)
        .await
        .expect("ingest");
    let upstream = format!("127.0.0.1:{}", mosq.port()).parse().unwrap();
    let proxy = LinkProxy::start(upstream).await.expect("proxy");
    proxy.set_mode(LinkMode::Cut);
    let store = env.store_id("S1");
    let agent = AgentProc::start(
        env.path(),
        &store,
        &format!("{store}-A1"),
        &format!("mqtt://{}", proxy.addr()),
        // Small batches: the drain takes hundreds of round trips, so the
        // partition lands in the middle of it.
        "[sync]\nmax_batch_events = 5",
    )
    .await
    .expect("agent");

    // A backlog captured offline.
    let keys: Vec<String> = (0..ORDERS).map(|i| format!("p-{i}")).collect();
    for chunk in keys.chunks(16) {
        for r in futures::future::join_all(chunk.iter().map(|k| agent.post_order(k))).await {
            r.expect("capture");
        }
    }
    assert_eq!(pending(&agent).await, Some(ORDERS as u64));

    // Link up: the drain starts; partition it once it is under way.
    proxy.set_mode(LinkMode::Up);
    wait_until_named(
        "drain under way",
        || async {
            pending(&agent)
                .await
                .is_some_and(|p| p < ORDERS as u64 - 100)
        },
        Duration::from_secs(60),
    )
    .await
    .expect("drain starts");
    proxy.set_mode(LinkMode::Blackhole);
    let cut_at = Instant::now();
    let stuck = pending(&agent).await.expect("status");
    assert!(stuck > 0, "the partition must land mid-drain");
    eprintln!("blackhole with {stuck} events pending");

    // The agent notices on its own that the broker went silent.
    let noticed = wait_until_named(
        "agent notices the silent link",
        || async { connected(&agent).await == Some(false) },
        PARTITION,
    )
    .await
    .map(|()| cut_at.elapsed());
    eprintln!("agent dropped the silent connection: {noticed:?}");
    // The partition lasts its full length (this is the fault, not a wait
    // for some condition).
    tokio::time::sleep(PARTITION.saturating_sub(cut_at.elapsed())).await;
    let before_heal = pending(&agent).await.expect("status");
    assert!(before_heal > 0);
    proxy.set_mode(LinkMode::Up);
    let healed_at = Instant::now();

    wait_until_named(
        "first ack after the heal",
        || async { pending(&agent).await.is_some_and(|p| p < before_heal) },
        Duration::from_secs(90),
    )
    .await
    .expect("drain resumes");
    let recovery = healed_at.elapsed();
    eprintln!("first new ack {recovery:?} after the heal");
    assert!(
        recovery <= RECOVERY_BUDGET,
        "drain resumed {recovery:?} after the heal (budget {RECOVERY_BUDGET:?})"
    );
    noticed.expect("the dead connection is detected during the partition");

    agent
        .wait_drained(Duration::from_secs(180))
        .await
        .expect("drained");
    // Zero loss, order kept: Kafka holds exactly the outbox, by event id.
    let outbox = agent.outbox().expect("outbox");
    assert_eq!(outbox.len(), ORDERS);
    assert!(outbox.iter().all(|(_, _, s)| s == "acked"), "all acked");
    let expected: BTreeSet<String> = outbox.into_iter().map(|(_, id, _)| id).collect();
    let topic = env.topic("orders.created");
    let view = KafkaView::read(&brokers, &topic, Duration::from_secs(60))
        .await
        .expect("read Kafka");
    assert_eq!(
        view.event_ids(),
        expected,
        "exactly the outbox, nothing lost"
    );
    view.seqs_increase_per_partition(&agent.agent_id)
        .expect("seq order per partition");
    eprintln!(
        "kafka: {} events, {} raw duplicates (removed by event_id dedup)",
        expected.len(),
        view.raw_duplicates()
    );
}
