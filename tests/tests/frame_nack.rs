//! Frame-level nack, end to end: real `o2c-agent`, real `o2c-cloud ingest`,
//! a private Mosquitto, Kafka (Tansu).
//!
//! Fault injected: one outbox row's envelope is overwritten with bytes that
//! are not JSON (as a corrupted disk or a buggy writer would leave it), so
//! every frame holding it is unreadable and the ingest refuses it whole.
//! Before frame nacks, the agent resent that frame forever and every later
//! order waited behind it. Now: the good orders all reach Kafka, the bad
//! event is rejected at the agent with a reason code, and the dead-letter
//! topic holds one record per refused frame, however often it was resent.

use std::collections::BTreeSet;
use std::time::Duration;

use o2c_protocol::frame::FRAME_PROPERTY;
use o2c_protocol::topic::{Channel, agent_topic};
use o2c_protocol::{Ack, AckMessage, AgentId, FrameNack, StoreId};
use o2c_tests::pipeline::{AgentProc, Ingest, KafkaView};
use o2c_tests::{PrivateMosquitto, TestEnv, consume_all, topic_record_count, wait_until_named};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event as MqttEvent, MqttOptions};

const DRAIN: Duration = Duration::from_secs(120);

/// What one run left behind.
struct Outcome {
    env: TestEnv,
    brokers: String,
    agent: AgentProc,
    _ingest: Ingest,
    _mosq: PrivateMosquitto,
}

/// Captures `n` orders while the broker is down, corrupts the envelope of
/// `bad_seq`, then lets the agent drain with `max_batch_events`.
async fn run(n: usize, bad_seq: u64, max_batch_events: usize) -> Outcome {
    let env = TestEnv::new();
    let brokers = env.require_kafka().await.to_owned();
    let mut mosq = PrivateMosquitto::start().await.expect("mosquitto");
    let ingest = Ingest::start(env.path(), env.prefix(), &mosq.url(), &brokers)
        .await
        .expect("ingest");
    mosq.stop().await.expect("stop broker");
    let store = env.store_id("S1");
    let mut agent = AgentProc::start(
        env.path(),
        &store,
        &format!("{store}-A1"),
        &mosq.url(),
        // A short ack timeout: a frame resent after a lost or missing nack
        // would show up within the test as a second dead letter.
        &format!("[sync]\nack_timeout_ms = 1000\nmax_batch_events = {max_batch_events}"),
    )
    .await
    .expect("agent");
    for i in 0..n {
        agent.post_order(&format!("k-{i}")).await.expect("capture");
    }
    agent.stop().await.expect("stop agent");
    {
        let db = rusqlite::Connection::open(agent.db_path()).expect("open agent db");
        let changed = db
            .execute(
                "UPDATE outbox SET envelope = ?1 WHERE seq = ?2",
                rusqlite::params![b"{\"event_id\": not json".to_vec(), bad_seq as i64],
            )
            .expect("corrupt a row");
        assert_eq!(changed, 1);
    }
    agent.restart().await.expect("restart agent");
    mosq.restart().await.expect("restart broker");
    agent.wait_drained(DRAIN).await.unwrap_or_else(|e| {
        panic!(
            "{e}: the outbox never drained past the unreadable frame; agent log:\n{}",
            log_tail(agent.log_path())
        )
    });
    Outcome {
        env,
        brokers,
        agent,
        _ingest: ingest,
        _mosq: mosq,
    }
}

/// Every good event is acked at the agent and in Kafka exactly by id; the
/// bad one is rejected with the frame's reason code.
async fn assert_good_events_delivered(o: &Outcome, n: usize, bad_seq: u64) {
    let outbox = o.agent.outbox().expect("outbox");
    assert_eq!(outbox.len(), n);
    for (seq, _, state) in &outbox {
        let want = if *seq == bad_seq { "rejected" } else { "acked" };
        assert_eq!(state, want, "seq {seq}");
    }
    let db = rusqlite::Connection::open_with_flags(
        o.agent.db_path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let code: String = db
        .query_row(
            "SELECT reject_code FROM outbox WHERE seq = ?1",
            [bad_seq as i64],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(code, "malformed_frame");
    let st = o.agent.sync_status().await.unwrap();
    assert_eq!(st["rejected_events"], 1, "{st}");

    let good: BTreeSet<String> = outbox
        .into_iter()
        .filter(|(s, _, _)| *s != bad_seq)
        .map(|(_, id, _)| id)
        .collect();
    let topic = o.env.topic("orders.created");
    let view = KafkaView::read(&o.brokers, &topic, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(view.event_ids(), good, "exactly the good events, by id");
    view.seqs_increase_per_partition(&o.agent.agent_id)
        .expect("seq order per partition");
}

/// The dead-letter records, as (reason, frame header).
async fn dead_letters(o: &Outcome, expected: usize) -> Vec<(String, String)> {
    let topic = o.env.topic("o2c.dlq");
    let dlq = consume_all(&o.brokers, &topic, expected, Duration::from_secs(30))
        .await
        .unwrap();
    // Nothing more arrives: the agent has moved on and resends nothing.
    let total = topic_record_count(&o.brokers, &topic).await.unwrap();
    assert_eq!(total as usize, expected, "dead letters: {dlq:?}");
    let mut out: Vec<(String, String)> = dlq
        .iter()
        .map(|r| {
            (
                r.header_str("reason").unwrap_or_default().to_owned(),
                r.header_str("frame").unwrap_or_default().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// One event per frame: the unreadable frame is that event alone. It is
/// rejected at once, dead-lettered exactly once, and the orders after it
/// flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_lone_event_is_rejected_and_dead_lettered_once() {
    let o = run(12, 5, 1).await;
    assert_good_events_delivered(&o, 12, 5).await;
    assert_eq!(
        dead_letters(&o, 1).await,
        vec![("malformed_frame".to_owned(), "5-5".to_owned())]
    );
}

/// Frames of 50: the unreadable event sinks its whole frame. The agent
/// sends that frame's events again one per frame, so its 49 good orders
/// still reach Kafka and only the bad event is rejected. One dead letter
/// for the refused frame, one for the lone bad event, none for resends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_event_sinks_only_itself_not_its_frame_or_those_after() {
    let o = run(120, 60, 50).await;
    assert_good_events_delivered(&o, 120, 60).await;
    assert_eq!(
        dead_letters(&o, 2).await,
        vec![
            ("malformed_frame".to_owned(), "51-100".to_owned()),
            ("malformed_frame".to_owned(), "60-60".to_owned()),
        ]
    );
}

/// On the wire, with a raw MQTT client standing in for agents old and new:
/// an unreadable frame that names itself (`o2c-frame`) is nacked by that
/// range, every time it is resent, and dead-lettered once; one that does
/// not (an agent that predates nacks, resending forever) gets no nack,
/// which that agent could not read, and is dead-lettered once too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resent_refused_frames_are_nacked_each_time_but_dead_lettered_once() {
    let env = TestEnv::new();
    let brokers = env.require_kafka().await.to_owned();
    let mosq = PrivateMosquitto::start().await.expect("mosquitto");
    let ingest = Ingest::start(env.path(), env.prefix(), &mosq.url(), &brokers)
        .await
        .expect("ingest");
    let store = StoreId::new(env.store_id("S1")).unwrap();
    let agent = AgentId::new(format!("{store}-A1")).unwrap();
    let mut o = MqttOptions::new(format!("raw-{agent}"), "127.0.0.1", mosq.port());
    o.set_max_packet_size(Some(4 << 20));
    let (client, mut eventloop) = AsyncClient::new(o, 64);
    let (tx, mut acks) = tokio::sync::mpsc::unbounded_channel();
    let (sub_tx, sub_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut sub_tx = Some(sub_tx);
        while let Ok(ev) = eventloop.poll().await {
            match ev {
                MqttEvent::Incoming(Packet::SubAck(_)) => {
                    if let Some(s) = sub_tx.take() {
                        let _ = s.send(());
                    }
                }
                MqttEvent::Incoming(Packet::Publish(p)) => {
                    let _ = tx.send(p.payload.to_vec());
                }
                _ => {}
            }
        }
    });
    client
        .subscribe(agent_topic(&store, &agent, Channel::Acks), QoS::AtLeastOnce)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), sub_rx)
        .await
        .expect("suback")
        .unwrap();
    let events = agent_topic(&store, &agent, Channel::Events);
    let publish = |bytes: &'static [u8], frame: Option<&str>| {
        let props = PublishProperties {
            user_properties: frame
                .map(|f| vec![(FRAME_PROPERTY.to_owned(), f.to_owned())])
                .unwrap_or_default(),
            ..PublishProperties::default()
        };
        let (client, events) = (client.clone(), events.clone());
        async move {
            client
                .publish_with_properties(events, QoS::AtLeastOnce, false, bytes, props)
                .await
                .unwrap();
        }
    };
    let frames_in = || async {
        let text = ingest.metrics().await.unwrap_or_default();
        text.lines()
            .find(|l| l.starts_with("o2c_ingest_frames_in") || l.contains("frames_in_total"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };

    // An old agent: no frame property, resent three times.
    for i in 1..=3u32 {
        publish(b"{\"agent_id\": old and broken", None).await;
        wait_until_named(
            "ingest took the frame",
            || async { frames_in().await >= f64::from(i) },
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    }
    // A new agent: named frame 4-6, resent three times, each nacked. Like
    // an agent, it sends the frame again when no answer came within its
    // ack timeout: a copy that arrives while the ingest is still busy with
    // this agent's earlier frames and one more waits is dropped
    // (`frames_coalesced`), as the agent resends it anyway.
    for _ in 0..3 {
        let mut bytes = None;
        for _ in 0..6 {
            publish(b"{\"agent_id\": new and broken", Some("4-6")).await;
            match tokio::time::timeout(Duration::from_secs(5), acks.recv()).await {
                Ok(Some(b)) => {
                    bytes = Some(b);
                    break;
                }
                Ok(None) => panic!("the test client's connection ended"),
                Err(_) => {}
            }
        }
        let Some(bytes) = bytes else {
            panic!("no nack in 30 s; ingest log:\n{}", ingest.log_tail());
        };
        // An old agent would not read it as an ack, and not act on it.
        assert!(Ack::decode(&bytes).is_err());
        let AckMessage::FrameNack(FrameNack {
            first_seq,
            last_seq,
            code,
            ..
        }) = AckMessage::decode(&bytes).expect("decodes")
        else {
            panic!("expected a frame nack");
        };
        assert_eq!((first_seq.get(), last_seq.get()), (4, 6));
        assert_eq!(code, "malformed_frame");
    }
    let dlq = consume_all(&brokers, &env.topic("o2c.dlq"), 2, Duration::from_secs(30))
        .await
        .unwrap();
    let total = topic_record_count(&brokers, &env.topic("o2c.dlq"))
        .await
        .unwrap();
    assert_eq!(total, 2, "one dead letter per frame, not per copy: {dlq:?}");
    let mut frames: Vec<Option<&str>> = dlq.iter().map(|r| r.header_str("frame")).collect();
    frames.sort();
    assert_eq!(frames, vec![None, Some("4-6")]);
    // Anything else that came is a nack of 4-6 (a resent copy): nothing
    // answers the unnamed frame.
    while let Ok(bytes) = acks.try_recv() {
        assert!(
            matches!(AckMessage::decode(&bytes), Ok(AckMessage::FrameNack(n)) if n.first_seq.get() == 4),
            "an answer other than a nack of 4-6: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let start = text.len().saturating_sub(3000);
    text.get(start..).unwrap_or(&text).to_owned()
}
