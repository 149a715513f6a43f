//! The Kafka topology as code (`deploy/cloud/topics.toml`) against a real
//! broker (Tansu): `o2c-cloud topics plan|apply`, and a service in
//! production mode refusing a cluster that differs from the file, with an
//! error naming the topic and the setting.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use o2c_tests::bins::bin_path;
use o2c_tests::kafka::{produce_raw, raw_producer};
use o2c_tests::tansu::PrivateTansu;
use o2c_tests::wait::wait_until_named;
use o2c_tests::{TestEnv, create_topics};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

/// A cloud.toml for this test's topics: dev mode (`create_topics`, two
/// partitions, one replica) or production mode (the file as written).
fn config(env: &TestEnv, brokers: &str, dev: bool) -> PathBuf {
    let path = env.path().join(if dev { "dev.toml" } else { "prod.toml" });
    let text = format!(
        "[mqtt]\nurl = \"mqtt://127.0.0.1:1\"\n\
         [kafka]\nbrokers = \"{brokers}\"\ntopic_prefix = \"{}.\"\ncreate_topics = {dev}\npartitions = 2\n\
         [postgres]\nurl = \"host=127.0.0.1 user=postgres\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n",
        env.prefix()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn topics(config: &Path, action: &str) -> (i32, String) {
    let out: Output = Command::new(bin_path("o2c-cloud"))
        .args(["topics", "--config"])
        .arg(config)
        .arg(action)
        .output()
        .expect("run o2c-cloud topics");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn apply_creates_what_the_file_lists_and_production_mode_refuses_a_differing_cluster() {
    let env = TestEnv::new();
    let brokers = env.require_kafka().await.to_owned();
    let dev = config(&env, &brokers, true);
    let p = env.prefix();

    let (code, text) = topics(&dev, "plan");
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains(&format!(
            "+ {p}.orders.created: create, 2 partitions, replication 1, cleanup.policy=delete \
             min.insync.replicas=1 retention.ms=604800000"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("+ {p}.o2c.dlq: create"))
            && text.contains("retention.ms=2592000000"),
        "{text}"
    );
    let (code, text) = topics(&dev, "apply");
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("the cluster matches the topology file"),
        "{text}"
    );
    let (code, text) = topics(&dev, "plan");
    assert_eq!(
        (code, text.trim()),
        (0, "the cluster matches the topology file")
    );

    // The same topics against the file as written (24 partitions, three
    // replicas, min.insync.replicas 2): each difference is named.
    let prod = config(&env, &brokers, false);
    let (code, text) = topics(&prod, "plan");
    assert_eq!(code, 2, "{text}");
    for line in [
        format!("~ {p}.orders.created: partitions 2 -> 24"),
        format!("~ {p}.orders.created: min.insync.replicas 1 -> 2"),
        format!(
            "! {p}.orders.created: replication factor 1 live, 3 in the file: reassign its partitions"
        ),
    ] {
        assert!(text.contains(&line), "{line:?} missing:\n{text}");
    }

    // A service in production mode stops at once, naming topic and setting.
    let out = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::process::Command::new(bin_path("o2c-cloud"))
            .arg("ingest")
            .arg("--config")
            .arg(&prod)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await
            .expect("run o2c-cloud ingest")
    })
    .await
    .expect("the ingest did not stop on a differing cluster");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("do not match the topology file")
            && text.contains(&format!("{p}.orders.created: partitions 2 -> 24")),
        "{text}"
    );
}

#[tokio::test]
async fn a_topic_made_outside_the_file_shows_each_setting_it_lacks() {
    let env = TestEnv::new();
    let brokers = env.require_kafka().await.to_owned();
    let dev = config(&env, &brokers, true);
    let name = env.topic("orders.created");
    create_topics(&brokers, &[name.as_str()])
        .await
        .expect("create a bare topic");
    let (code, text) = topics(&dev, "plan");
    assert_eq!(code, 2, "{text}");
    for line in [
        format!("~ {name}: partitions 1 -> 2"),
        format!("~ {name}: cleanup.policy (unset) -> delete"),
        format!("~ {name}: retention.ms (unset) -> 604800000"),
    ] {
        assert!(text.contains(&line), "{line:?} missing:\n{text}");
    }
    assert!(
        !text.contains(&format!("+ {name}:")),
        "an existing topic is not created again:\n{text}"
    );
}

/// The order history is kept forever. Tansu 0.6's SQLite storage deletes
/// every record of a `retention.ms = -1` topic at each maintenance pass, so
/// the topology gives "forever" as 100 years; this runs a broker whose
/// maintenance comes every second and checks that a pass which provably
/// ran (it deleted a record of a 1 ms topic, produced after the history's)
/// left the history whole.
#[tokio::test]
async fn the_order_history_keeps_its_records_through_the_brokers_retention_pass() {
    let env = TestEnv::new();
    let tansu = PrivateTansu::start_with_maintenance(Duration::from_secs(1))
        .await
        .expect("a Tansu of this test's own");
    let brokers = tansu.brokers();
    let dev = config(&env, &brokers, true);
    let (code, text) = topics(&dev, "apply");
    assert_eq!(code, 0, "{text}");
    let history = env.topic("orders.events");
    let short = env.topic("retention.probe");
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("admin client");
    let probe = NewTopic::new(&short, 1, TopicReplication::Fixed(1))
        .set("cleanup.policy", "delete")
        .set("retention.ms", "1");
    for r in admin
        .create_topics([&probe], &AdminOptions::new())
        .await
        .expect("create the probe topic")
    {
        r.expect("the probe topic");
    }
    let producer = raw_producer(&brokers).expect("producer");
    for p in 0..2 {
        produce_raw(&producer, &history, Some(p), b"order", &[], b"event")
            .await
            .expect("produce to the history");
    }
    // Produced after the history's records: the pass that deletes it
    // looked at them too.
    produce_raw(&producer, &short, None, b"k", &[], b"gone soon")
        .await
        .expect("produce to the probe");
    assert_eq!(tansu.stored_records(&short).expect("count"), 1);
    wait_until_named(
        "a maintenance pass deleting the 1 ms topic's record",
        || async { tansu.stored_records(&short).expect("count") == 0 },
        Duration::from_secs(60),
    )
    .await
    .expect("Tansu's maintenance ran");
    assert_eq!(
        tansu.stored_records(&history).expect("count"),
        2,
        "the history lost records to the retention pass"
    );
}
