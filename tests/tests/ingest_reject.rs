//! The ingest refuses what it must: a spoofed identity, garbage bytes, a
//! wrong schema version and an invalid order. Each goes to the dead-letter
//! topic with its reason, the sender sees the rejection in its ack where a
//! seq is known, and later valid events still flow. The "agent" here is a
//! raw MQTT client, so the frames can be anything.

use std::time::Duration;

use o2c_protocol::*;
use o2c_tests::pipeline::Ingest;
use o2c_tests::raw_agent::{RawAgent, frame};
use o2c_tests::{PrivateMosquitto, TestEnv, consume_all, topic_record_count};

fn envelope(store: &str, agent: &str, seq: u64) -> Envelope {
    let cad = Currency::from_code("CAD").unwrap();
    let now = time::OffsetDateTime::now_utc();
    let order = Order {
        order_id: OrderId::from_uuid(uuid::Uuid::now_v7()).unwrap(),
        store_id: StoreId::new(store).unwrap(),
        terminal_id: TerminalId::new("T1").unwrap(),
        currency: cad,
        lines: vec![OrderLine {
            sku: "SKU-1".into(),
            quantity: 1,
            unit_price: Money::new(700, cad),
            category: None,
        }],
        payments: vec![Payment::Cash {
            amount: Money::new(700, cad),
        }],
        fulfillment: Fulfillment::CarryOut {},
        customer: None,
        captured_at: now,
        catalog_version: None,
        stock_check: None,
        channel: None,
        customer_id: None,
    };
    Envelope {
        event_id: EventId::from_uuid(uuid::Uuid::now_v7()).unwrap(),
        schema_version: SCHEMA_VERSION,
        store_id: StoreId::new(store).unwrap(),
        agent_id: AgentId::new(agent).unwrap(),
        seq: Some(Seq::new(seq).unwrap()),
        occurred_at: now,
        traceparent: Traceparent::from_ids(7, 9).ok(),
        payload: Event::OrderCreated(Box::new(order)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_store_is_refused_and_nothing_reaches_order_topics() {
    let env = TestEnv::new();
    let brokers = env.require_kafka().await.to_owned();
    let mosq = PrivateMosquitto::start().await.unwrap();
    let _ingest = Ingest::start(env.path(), env.prefix(), &mosq.url(), &brokers)
        .await
        .unwrap();
    let (a, b) = (env.store_id("A"), env.store_id("B"));
    let agent_a = format!("{a}-1");
    let fake = RawAgent::connect(mosq.port(), &a, &agent_a).await;
    // On store A's topic, a frame whose envelope claims store B.
    let spoof = envelope(&b, &agent_a, 1).encode().unwrap();
    fake.publish(frame(&agent_a, &[spoof])).await;
    let dlq = consume_all(&brokers, &env.topic("o2c.dlq"), 1, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(dlq[0].header_str("reason"), Some("identity_mismatch"));
    assert_eq!(
        dlq[0].header_str("source_topic"),
        Some(fake.topic(o2c_protocol::topic::Channel::Events).as_str())
    );
    assert_eq!(
        topic_record_count(&brokers, &env.topic("orders.created"))
            .await
            .unwrap(),
        0,
        "a spoofed order reached the order topic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bad_version_and_invalid_order_go_to_dlq_and_valid_events_flow() {
    let env = TestEnv::new();
    let brokers = env.require_kafka().await.to_owned();
    let mosq = PrivateMosquitto::start().await.unwrap();
    let _ingest = Ingest::start(env.path(), env.prefix(), &mosq.url(), &brokers)
        .await
        .unwrap();
    let store = env.store_id("S");
    let agent = format!("{store}-1");
    let mut fake = RawAgent::connect(mosq.port(), &store, &agent).await;

    // 1. Garbage: no frame at all. Dead-lettered with its raw bytes.
    fake.publish(b"\x00\x01garbage{".to_vec()).await;

    // 2. A batch: valid, wrong schema version, invalid order, valid.
    let mut v: serde_json::Value =
        serde_json::from_slice(&envelope(&store, &agent, 2).encode().unwrap()).unwrap();
    v["schema_version"] = 99.into();
    let wrong_version = serde_json::to_vec(&v).unwrap();
    let mut invalid = envelope(&store, &agent, 3);
    if let Event::OrderCreated(o) = &mut invalid.payload {
        o.lines[0].quantity = 0;
    }
    let ok1 = envelope(&store, &agent, 1).encode().unwrap();
    let ok4 = envelope(&store, &agent, 4).encode().unwrap();
    fake.publish(frame(
        &agent,
        &[ok1, wrong_version, invalid.encode().unwrap(), ok4],
    ))
    .await;
    let ack = fake.next_ack().await;
    assert_eq!(ack.through_seq.get(), 4);
    let rejected: Vec<(u64, &str)> = ack
        .rejected
        .iter()
        .map(|r| (r.seq.get(), r.code.as_str()))
        .collect();
    assert_eq!(
        rejected,
        [(2, "unsupported_schema_version"), (3, "invalid_event")]
    );

    // 3. Later valid events still flow.
    fake.publish(frame(
        &agent,
        &[envelope(&store, &agent, 5).encode().unwrap()],
    ))
    .await;
    let ack = fake.next_ack().await;
    assert_eq!(ack.through_seq.get(), 5);
    assert!(ack.rejected.is_empty());

    let created = consume_all(
        &brokers,
        &env.topic("orders.created"),
        3,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let mut seqs: Vec<&str> = created.iter().filter_map(|r| r.header_str("seq")).collect();
    seqs.sort();
    assert_eq!(seqs, ["1", "4", "5"]);
    let dlq = consume_all(&brokers, &env.topic("o2c.dlq"), 3, Duration::from_secs(30))
        .await
        .unwrap();
    let mut reasons: Vec<&str> = dlq.iter().filter_map(|r| r.header_str("reason")).collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "invalid_event",
            "malformed_frame",
            "unsupported_schema_version"
        ]
    );
    let garbage = dlq
        .iter()
        .find(|r| r.header_str("reason") == Some("malformed_frame"))
        .unwrap();
    assert_eq!(garbage.payload, b"\x00\x01garbage{");
    let invalid_dl = dlq
        .iter()
        .find(|r| r.header_str("reason") == Some("invalid_event"))
        .unwrap();
    assert!(
        invalid_dl
            .header_str("reason_detail")
            .unwrap()
            .contains("payload.lines[0].quantity")
    );
    assert_eq!(invalid_dl.header_str("seq"), Some("3"));
}
