//! End-of-day reconciliation against the real pipeline: an agent closes
//! its business day into a manifest (`DayClosed`), the ingest routes it to
//! `stores.days`, and `o2c-cloud reconcile` proves the day against Kafka.
//!
//! One store's day, in order: sold while the cloud was away (pending),
//! synced a day late (complete, with the figures), then a copy of the
//! topics with one seq deliberately removed (incomplete, naming the seq).

use std::path::Path;
use std::time::Duration;

use o2c_tests::pipeline::{AgentProc, Ingest};
use o2c_tests::saga::cloud_command;
use o2c_tests::{ConsumedRecord, PrivateMosquitto, TestEnv, consume_all, topic_record_count};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde_json::Value;
use time::OffsetDateTime;

const DRAIN: Duration = Duration::from_secs(120);

fn cloud_toml(
    dir: &Path,
    name: &str,
    mqtt: &str,
    brokers: &str,
    prefix: &str,
) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "[mqtt]\nurl = \"{mqtt}\"\n[kafka]\nbrokers = \"{brokers}\"\n\
             topic_prefix = \"{prefix}.\"\ncreate_topics = true\n"
        ),
    )
    .expect("write cloud.toml");
    path
}

fn reconcile(config: &Path, store: &str, date: &str, json: bool) -> (i32, String) {
    let mut args = vec!["reconcile", "--store", store, "--date", date];
    if json {
        args.push("--json");
    }
    cloud_command(config, &args).expect("o2c-cloud reconcile")
}

/// Copies every record of `from` to `to` except those `drop` picks.
async fn copy_topic(brokers: &str, from: &str, to: &str, drop: impl Fn(&ConsumedRecord) -> bool) {
    let n = topic_record_count(brokers, from).await.expect("count") as usize;
    let records = consume_all(brokers, from, n, Duration::from_secs(60))
        .await
        .expect("read back");
    let producer = o2c_tests::kafka::raw_producer(brokers).expect("producer");
    for r in records.iter().filter(|r| !drop(r)) {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let mut rec = FutureRecord::to(to).payload(&r.payload).headers(headers);
        if let Some(k) = &r.key {
            rec = rec.key(k);
        }
        producer
            .send(rec, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("produce copy");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_day_is_pending_offline_complete_once_synced_and_a_removed_seq_is_named() {
    let env = TestEnv::new();
    let brokers = env.require_kafka().await.to_owned();
    let mosq = PrivateMosquitto::start().await.expect("mosquitto");
    o2c_tests::kafka::create_o2c_topics(&brokers, &format!("{}.", env.prefix()), 3)
        .await
        .expect("topics");
    let config = cloud_toml(
        env.path(),
        "cloud.toml",
        &mosq.url(),
        &brokers,
        env.prefix(),
    );
    let store = env.store_id("S1");
    let agent_id = format!("{store}-A1");
    // The day closes at midnight UTC (the harness's default is 12 hours
    // away, so other tests never cross a close).
    let mut agent = AgentProc::start(
        env.path(),
        &store,
        &agent_id,
        &mosq.url(),
        "[business_day]\ncloses_at = \"00:00\"",
    )
    .await
    .expect("agent");

    // Yesterday (the agent's clock a day back), with no ingest running:
    // three sales and a void stay in the outbox.
    agent
        .restart_with_env(&[("O2C_AGENT_FAULT_CLOCK_SKEW_SECS", "-86400")])
        .await
        .expect("restart with yesterday's clock");
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            agent
                .post_order(&format!("r{i}"))
                .await
                .expect("sale")
                .order_id,
        );
    }
    agent.cancel(&ids[1]).await.expect("void");
    // Back to today: yesterday has closed, so the agent writes its manifest
    // at start (seq 5, after the four events).
    agent.restart_with_env(&[]).await.expect("restart today");
    let yesterday = (OffsetDateTime::now_utc() - time::Duration::days(1))
        .date()
        .to_string();
    let agent_ref = &agent;
    o2c_tests::wait_until_named(
        "the manifest in the outbox",
        || async move { agent_ref.outbox().is_ok_and(|o| o.len() == 5) },
        DRAIN,
    )
    .await
    .expect("manifest written");

    let (code, out) = reconcile(&config, &store, &yesterday, false);
    assert_eq!(code, 3, "pending exits 3: {out}");
    assert!(out.contains("pending"), "{out}");

    // The cloud comes back: the day syncs late and reconciles.
    let _ingest = Ingest::start(env.path(), env.prefix(), &mosq.url(), &brokers)
        .await
        .expect("ingest");
    agent.wait_drained(DRAIN).await.expect("drained");
    let (code, out) = reconcile(&config, &store, &yesterday, false);
    assert_eq!(code, 0, "complete exits 0: {out}");
    assert!(out.contains("complete") && out.contains(&agent_id), "{out}");
    let (code, out) = reconcile(&config, &store, &yesterday, true);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("json");
    let a = &v["stores"][0]["agents"][0];
    assert_eq!(v["stores"][0]["status"], "complete", "{v}");
    assert_eq!(a["manifest_seq"], 5, "{a}");
    assert_eq!(
        (a["range"]["first"].as_u64(), a["range"]["last"].as_u64()),
        (Some(1), Some(4))
    );
    assert_eq!(a["stated"], a["found"], "{a}");
    assert_eq!(
        (
            a["stated"]["orders"].as_u64(),
            a["stated"]["voids"].as_u64()
        ),
        (Some(3), Some(1))
    );
    assert_eq!(a["stated"]["totals"][0]["gross"]["minor"], 3 * 2998, "{a}");
    assert_eq!(a["stated"]["totals"][0]["voided"]["minor"], 2998, "{a}");
    assert_eq!(a["stated"]["tenders"][0]["tender"], "cash", "{a}");
    // Today is not closed yet: pending, not missing.
    let today = OffsetDateTime::now_utc().date().to_string();
    assert_eq!(reconcile(&config, &store, &today, false).0, 3);

    // A test copy of the topics with seq 2 removed from the history.
    let copy = format!("{}c", env.prefix());
    o2c_tests::kafka::create_o2c_topics(&brokers, &format!("{copy}."), 3)
        .await
        .expect("copy topics");
    for t in ["orders.events", "stores.days"] {
        copy_topic(&brokers, &env.topic(t), &format!("{copy}.{t}"), |r| {
            t == "orders.events"
                && r.header_str("source") == Some("ingest")
                && r.header_str("agent_id") == Some(agent_id.as_str())
                && r.header_str("seq") == Some("2")
        })
        .await;
    }
    let copied = cloud_toml(env.path(), "copy.toml", &mosq.url(), &brokers, &copy);
    let (code, out) = reconcile(&copied, &store, &yesterday, false);
    assert_eq!(code, 2, "incomplete exits 2: {out}");
    assert!(
        out.contains("incomplete") && out.contains("missing seqs 2"),
        "{out}"
    );
    let (_, out) = reconcile(&copied, &store, &yesterday, true);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        v["stores"][0]["agents"][0]["missing_seqs"],
        serde_json::json!([[2, 2]])
    );
}
