//! Tests of the harness itself, against the real services: the shared ones
//! (`deploy/dev/services.sh up`) and private brokers started per test.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use o2c_tests::mqtt::mqtt_answers;
use o2c_tests::{
    PrivateMosquitto, PrivateTansu, TansuStorage, TestEnv, bin_path, consume_all, create_topics,
    topic_record_count,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const WAIT: Duration = Duration::from_secs(30);
const PROBE: Duration = Duration::from_secs(2);

/// Sends `(key, payload)` records with a `traceparent` header, awaiting each delivery.
async fn produce(brokers: &str, topic: &str, records: &[(&str, &str)]) -> Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "30000")
        .create()?;
    for (key, payload) in records {
        let headers = OwnedHeaders::new().insert(Header {
            key: "traceparent",
            value: Some(format!("00-{key}-01").as_bytes()),
        });
        producer
            .send(
                FutureRecord::to(topic)
                    .key(*key)
                    .payload(*payload)
                    .headers(headers),
                WAIT,
            )
            .await
            .map_err(|(e, _)| e)
            .with_context(|| format!("producing {key} to {topic}"))?;
    }
    Ok(())
}

#[tokio::test]
async fn shared_kafka_roundtrip_with_keys_and_headers() -> Result<()> {
    let env = TestEnv::new();
    let brokers = env.require_kafka().await.to_owned();
    let topic = env.topic("roundtrip");
    create_topics(&brokers, &[&topic]).await?;
    // A second create of the same topic is not an error.
    create_topics(&brokers, &[&topic]).await?;

    let sent = [("k1", "one"), ("k2", "two"), ("k3", "three")];
    produce(&brokers, &topic, &sent).await?;

    let records = consume_all(&brokers, &topic, sent.len(), WAIT).await?;
    assert_eq!(records.len(), sent.len());
    let by_key: BTreeMap<&str, &o2c_tests::ConsumedRecord> = records
        .iter()
        .map(|r| (r.key_str().unwrap_or_default(), r))
        .collect();
    for (key, payload) in sent {
        let record = by_key
            .get(key)
            .with_context(|| format!("no record {key}"))?;
        assert_eq!(record.payload, payload.as_bytes());
        assert_eq!(
            record.header_str("traceparent"),
            Some(format!("00-{key}-01").as_str())
        );
        assert_eq!(record.partition, 0);
    }
    assert_eq!(topic_record_count(&brokers, &topic).await?, 3);
    Ok(())
}

#[tokio::test]
async fn consume_all_reports_a_short_topic() -> Result<()> {
    let env = TestEnv::new();
    let brokers = env.require_kafka().await.to_owned();
    let topic = env.topic("short");
    create_topics(&brokers, &[&topic]).await?;
    produce(&brokers, &topic, &[("only", "1")]).await?;
    let err = consume_all(&brokers, &topic, 2, Duration::from_secs(3))
        .await
        .expect_err("only one record exists");
    assert!(err.to_string().contains("consumed 1 of 2"), "{err}");
    Ok(())
}

/// A consumer's `fetch.wait.max.ms` far above any delivery time.
const LONG_FETCH_WAIT: Duration = Duration::from_secs(10);

/// How long a record takes from its produce's ack to a consumer that waits up
/// to [`LONG_FETCH_WAIT`] per fetch and is already fetching the topic's tail.
///
/// A broker that answers a fetch when records land delivers it in
/// milliseconds. Tansu 0.6.0 as published sleeps after every read, so it
/// takes at least half of the wait (`deploy/dev/tansu/fetch.patch`).
async fn delivery_under_a_long_fetch_wait(brokers: &str, topic: &str) -> Result<Duration> {
    create_topics(brokers, &[topic]).await?;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", topic)
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", LONG_FETCH_WAIT.as_millis().to_string())
        .create()?;
    let mut partitions = TopicPartitionList::new();
    partitions.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&partitions)?;

    // The first record brings the consumer up; its next fetch then waits on
    // the empty tail of the topic.
    produce(brokers, topic, &[("first", "1")]).await?;
    let first = tokio::time::timeout(WAIT, consumer.recv())
        .await
        .context("the first record never arrived")??;
    ensure!(first.key() == Some(&b"first"[..]), "{:?}", first.key());

    produce(brokers, topic, &[("second", "2")]).await?;
    let acked = Instant::now();
    let second = tokio::time::timeout(WAIT, consumer.recv())
        .await
        .context("the second record never arrived")??;
    ensure!(second.key() == Some(&b"second"[..]), "{:?}", second.key());
    Ok(acked.elapsed())
}

fn assert_answered_on_produce(broker: &str, delivery: Duration) {
    assert!(
        delivery < LONG_FETCH_WAIT / 4,
        "{broker} delivered a record {delivery:?} after its produce to a consumer waiting up \
         to {LONG_FETCH_WAIT:?} per fetch: it sleeps out the fetch wait. It must be Tansu \
         built with deploy/dev/tansu/fetch.patch (deploy/dev/services.sh up)"
    );
}

#[tokio::test]
async fn shared_kafka_answers_a_waiting_fetch_when_a_record_lands() -> Result<()> {
    let env = TestEnv::new();
    let brokers = env.require_kafka().await.to_owned();
    let delivery = delivery_under_a_long_fetch_wait(&brokers, &env.topic("wake")).await?;
    assert_answered_on_produce("the shared Kafka", delivery);
    Ok(())
}

#[tokio::test]
async fn private_tansu_answers_a_waiting_fetch_when_a_record_lands() -> Result<()> {
    let env = TestEnv::new();
    let tansu = PrivateTansu::start_with(TansuStorage::Memory).await?;
    let delivery = delivery_under_a_long_fetch_wait(&tansu.brokers(), &env.topic("wake")).await?;
    assert_answered_on_produce("the private Tansu (memory storage)", delivery);
    Ok(())
}

#[tokio::test]
async fn shared_mqtt_and_postgres_answer() -> Result<()> {
    let env = TestEnv::new();
    env.require_mqtt().await;
    env.require_postgres().await;
    let conn = env.create_database("harness").await?;
    ensure!(conn.contains(&env.db_name("harness")), "{conn}");
    let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await?;
    let task = tokio::spawn(connection);
    client
        .batch_execute("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1);")
        .await?;
    let row = client.query_one("SELECT count(*) FROM t", &[]).await?;
    assert_eq!(row.get::<_, i64>(0), 1);
    drop(client);
    task.await??;
    Ok(())
}

#[tokio::test]
async fn private_mosquitto_stops_kills_and_restarts_on_its_port() -> Result<()> {
    let mut broker = PrivateMosquitto::start_with(&["max_packet_size 1048576"]).await?;
    let url = broker.url();
    let port = broker.port();
    mqtt_answers(&url, PROBE).await?;
    let conf = std::fs::read_to_string(broker.dir().join("mosquitto.conf"))?;
    assert!(conf.contains("max_packet_size 1048576"));

    broker.stop().await?;
    assert!(!broker.is_running());
    assert!(
        mqtt_answers(&url, PROBE).await.is_err(),
        "stopped broker answered"
    );

    broker.restart().await?;
    assert_eq!(broker.port(), port);
    mqtt_answers(&url, PROBE).await?;

    broker.kill()?;
    assert!(!broker.is_running());
    assert!(
        mqtt_answers(&url, PROBE).await.is_err(),
        "killed broker answered"
    );
    broker.restart().await?;
    mqtt_answers(&url, PROBE).await?;
    Ok(())
}

#[tokio::test]
async fn private_mosquitto_carries_mqtt_v5_publishes() -> Result<()> {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};

    let env = TestEnv::new();
    let broker = PrivateMosquitto::start().await?;
    let mut options = MqttOptions::new(env.store_id("sub"), "127.0.0.1", broker.port());
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    let topic = format!("o2c/{}/test", env.prefix());
    client.subscribe(&topic, QoS::AtLeastOnce).await?;

    let received = tokio::time::timeout(WAIT, async {
        let mut published = false;
        loop {
            match eventloop.poll().await? {
                Event::Incoming(Packet::SubAck(_)) if !published => {
                    client
                        .publish(&topic, QoS::AtLeastOnce, false, b"hello".to_vec())
                        .await?;
                    published = true;
                }
                Event::Incoming(Packet::Publish(p)) => return Ok::<_, anyhow::Error>(p.payload),
                _ => {}
            }
        }
    })
    .await
    .context("no publish came back")??;
    assert_eq!(&received[..], b"hello");
    Ok(())
}

#[tokio::test]
async fn private_tansu_keeps_its_data_across_stop_kill_and_restart() -> Result<()> {
    let env = TestEnv::new();
    let mut tansu = PrivateTansu::start().await?;
    let brokers = tansu.brokers();
    let topic = env.topic("durable");
    create_topics(&brokers, &[&topic]).await?;
    produce(&brokers, &topic, &[("a", "1"), ("b", "2")]).await?;
    assert_eq!(consume_all(&brokers, &topic, 2, WAIT).await?.len(), 2);

    tansu.stop().await?;
    assert!(!tansu.is_running());
    tansu.restart().await?;
    assert_eq!(tansu.brokers(), brokers);
    assert_eq!(consume_all(&brokers, &topic, 2, WAIT).await?.len(), 2);

    // restart() added the index Tansu's SQLite schema lacks.
    let db = rusqlite::Connection::open(tansu.dir().join("tansu.db"))?;
    let indexes: i64 = db.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type='index' AND name='header_topition_offset_id'",
        [],
        |row| row.get(0),
    )?;
    assert_eq!(indexes, 1);
    drop(db);

    tansu.kill()?;
    tansu.restart().await?;
    produce(&brokers, &topic, &[("c", "3")]).await?;
    let records = consume_all(&brokers, &topic, 3, WAIT).await?;
    let mut keys: Vec<_> = records.iter().filter_map(|r| r.key_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["a", "b", "c"]);
    Ok(())
}

#[test]
fn bin_path_finds_workspace_binaries() {
    let path = bin_path("o2c-bench");
    assert!(path.is_file(), "{}", path.display());
}

#[test]
#[should_panic(expected = "cargo build --workspace --bins")]
fn bin_path_explains_a_missing_binary() {
    bin_path("o2c-no-such-binary");
}
