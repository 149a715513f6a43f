//! Status updates reach an agent that was away when the cloud sent them,
//! one update per message or several in one (the cloud's status publisher
//! sends a store's updates together under load); one received just before
//! the agent crashed is delivered again and applied after its restart; and
//! the cloud's per-order sequence keeps two updates of one millisecond in
//! rank.
//!
//! The agent keeps an MQTT session at the broker (clean start off, a week's
//! expiry) and acks a status update only once it is stored, so an update
//! published while the agent is stopped waits at the broker and is applied
//! when the agent comes back. A real `o2c-agent` and a private Mosquitto;
//! the test plays the cloud's status publisher with a plain MQTT client.

use std::time::Duration;

use o2c_protocol::frame::STATUS_SEQ_PROPERTY;
use o2c_protocol::topic::{Channel, agent_topic};
use o2c_protocol::{AgentId, CloudStatus, EventId, OrderId, StatusUpdate, StoreId};
use o2c_saga::status::status_seq;
use o2c_tests::TestEnv;
use o2c_tests::mosquitto::PrivateMosquitto;
use o2c_tests::pipeline::AgentProc;
use o2c_tests::saga::{SagaProc, SagaWorld, cloud_status, wait_status};
use o2c_tests::wait::wait_until_named;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use time::OffsetDateTime;

const WAIT: Duration = Duration::from_secs(20);

/// Publishes `updates` as one message at QoS 1 on the agent's status topic
/// (a single update as an object, several as an array, their seqs in the
/// message's user property as the cloud sends them) and waits for the
/// broker's PubAck.
async fn publish_status(port: u16, client_id: &str, topic: &str, updates: &[StatusUpdate]) {
    let payload = match updates {
        [one] => one.encode(),
        many => StatusUpdate::encode_many(many),
    }
    .expect("encode status");
    let props = PublishProperties {
        user_properties: StatusUpdate::seqs_property(updates)
            .map(|v| (STATUS_SEQ_PROPERTY.to_owned(), v))
            .into_iter()
            .collect(),
        ..PublishProperties::default()
    };
    publish_raw(port, client_id, topic, payload, props).await;
}

/// Publishes `payload` at QoS 1 and waits for the broker's PubAck.
async fn publish_raw(
    port: u16,
    client_id: &str,
    topic: &str,
    payload: Vec<u8>,
    props: PublishProperties,
) {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    client
        .publish_with_properties(topic, QoS::AtLeastOnce, false, payload, props)
        .await
        .expect("queue publish");
    tokio::time::timeout(WAIT, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return,
                Ok(_) => {}
                Err(e) => panic!("status publisher: {e}"),
            }
        }
    })
    .await
    .expect("no PubAck for the status message");
    let _ = client.disconnect().await;
}

fn update(order_id: &str, status: CloudStatus, at_ms: u64) -> StatusUpdate {
    StatusUpdate {
        ret: None,
        order_id: order_id.parse::<OrderId>().expect("order id"),
        status,
        reason: None,
        event_id: EventId::from_parts(at_ms, rand_bytes()),
        occurred_at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000)
            .expect("time"),
        seq: None,
    }
}

/// [`update`] with the sequence the cloud's status publisher gives it.
fn sequenced(order_id: &str, status: CloudStatus, at_ms: u64) -> StatusUpdate {
    let u = update(order_id, status, at_ms);
    StatusUpdate {
        ret: None,
        seq: Some(status_seq(status, u.occurred_at)),
        ..u
    }
}

/// The agent's status topic.
fn status_topic(agent: &AgentProc) -> String {
    agent_topic(
        &StoreId::new(agent.store_id.as_str()).expect("store id"),
        &AgentId::new(agent.agent_id.as_str()).expect("agent id"),
        Channel::Status,
    )
}

/// Now, in unix milliseconds.
fn now_ms() -> u64 {
    u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// Reads the agent's database directly: the order's stored cloud status
/// (NULL: none) and whether the status event `event_id` was handled.
fn stored(agent: &AgentProc, order_id: &str, event_id: &str) -> (Option<String>, bool) {
    let conn = rusqlite::Connection::open_with_flags(
        agent.db_path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open agent db");
    let status = conn
        .query_row(
            "SELECT cloud_status FROM orders WHERE order_id = ?1",
            [order_id],
            |r| r.get(0),
        )
        .expect("order row");
    let seen = conn
        .query_row(
            "SELECT COUNT(*) FROM applied_status_events WHERE event_id = ?1",
            [event_id],
            |r| r.get::<_, i64>(0),
        )
        .expect("applied_status_events")
        > 0;
    (status, seen)
}

/// Starts an agent on `broker` and waits until it is subscribed (its
/// session then exists at the broker).
async fn connected_agent(env: &TestEnv, broker: &PrivateMosquitto) -> AgentProc {
    let store = env.store_id("s1");
    let agent = AgentProc::start(env.path(), &store, "A1", &broker.url(), "")
        .await
        .expect("agent");
    wait_connected(&agent).await;
    agent
}

async fn wait_connected(agent: &AgentProc) {
    wait_until_named(
        "agent connected",
        || async {
            agent
                .sync_status()
                .await
                .is_ok_and(|s| s["connected"] == true)
        },
        WAIT,
    )
    .await
    .expect("agent never connected");
}

fn rand_bytes() -> [u8; 10] {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut b = [7u8; 10];
    b[..4].copy_from_slice(&n.to_le_bytes());
    b
}

#[tokio::test]
async fn a_status_sent_while_the_agent_is_stopped_is_applied_when_it_returns() {
    let env = TestEnv::new();
    let broker = PrivateMosquitto::start().await.expect("mosquitto");
    let store = env.store_id("s1");
    let mut agent = AgentProc::start(env.path(), &store, "A1", &broker.url(), "")
        .await
        .expect("agent");
    // Connected means subscribed: the broker now holds the agent's session.
    wait_until_named(
        "agent connected",
        || async {
            agent
                .sync_status()
                .await
                .is_ok_and(|s| s["connected"] == true)
        },
        WAIT,
    )
    .await
    .expect("agent never connected");
    let order = agent.post_order("away-1").await.expect("capture").order_id;
    let other = agent.post_order("away-2").await.expect("capture").order_id;

    // Online: delivered and applied at once.
    let topic = agent_topic(
        &StoreId::new(store.as_str()).expect("store id"),
        &AgentId::new("A1").expect("agent id"),
        Channel::Status,
    );
    let t0 = u64::try_from(OffsetDateTime::now_utc().unix_timestamp() * 1000).unwrap_or(0);
    publish_status(
        broker.port(),
        &env.store_id("cloud-1"),
        &topic,
        &[update(&order, CloudStatus::Accepted, t0)],
    )
    .await;
    wait_status(&agent, &order, "accepted", WAIT)
        .await
        .expect("accepted while online");

    // Stopped: the message waits at the broker, in the agent's session.
    // It carries updates of two orders, each applied in turn.
    agent.stop().await.expect("stop agent");
    publish_status(
        broker.port(),
        &env.store_id("cloud-2"),
        &topic,
        &[
            update(&other, CloudStatus::Accepted, t0),
            update(&order, CloudStatus::Paid, t0 + 1),
            update(&other, CloudStatus::Paid, t0 + 1),
        ],
    )
    .await;
    agent.restart().await.expect("restart agent");
    for id in [&order, &other] {
        if let Err(e) = wait_status(&agent, id, "paid", WAIT).await {
            panic!("{e}; the agent shows {:?}", cloud_status(&agent, id).await);
        }
    }

    // Killed with SIGKILL and back: the update still applies exactly once
    // (a repeat would be ignored by its event id; the newest status stays).
    agent.kill().expect("kill agent");
    publish_status(
        broker.port(),
        &env.store_id("cloud-3"),
        &topic,
        &[update(&order, CloudStatus::Completed, t0 + 2)],
    )
    .await;
    agent.restart().await.expect("restart agent");
    wait_status(&agent, &order, "completed", WAIT)
        .await
        .expect("completed after kill -9");
}

/// Fault: the agent aborts (`O2C_AGENT_FAULT_ABORT_BEFORE_STATUS_STORE`,
/// as abruptly as kill -9) right after a status message arrives and before
/// it is stored. Its PUBACK must not have gone out (rumqttc acks a QoS 1
/// publish itself unless acks are manual), so the broker delivers the
/// message again to the restarted agent, which applies it.
#[tokio::test]
async fn a_status_received_just_before_a_crash_is_applied_after_the_restart() {
    let env = TestEnv::new();
    let broker = PrivateMosquitto::start().await.expect("mosquitto");
    let mut agent = connected_agent(&env, &broker).await;
    let order = agent.post_order("crash-1").await.expect("capture").order_id;
    agent
        .restart_with_env(&[("O2C_AGENT_FAULT_ABORT_BEFORE_STATUS_STORE", "1")])
        .await
        .expect("restart agent with the fault");
    wait_connected(&agent).await;
    let paid = update(&order, CloudStatus::Paid, now_ms());
    publish_status(
        broker.port(),
        &env.store_id("cloud-1"),
        &status_topic(&agent),
        std::slice::from_ref(&paid),
    )
    .await;
    agent
        .wait_exit(WAIT)
        .await
        .expect("the fault did not abort the agent");
    assert_eq!(
        stored(&agent, &order, &paid.event_id.to_string()),
        (None, false),
        "the update was stored before the abort"
    );
    agent.restart().await.expect("restart agent");
    if let Err(e) = wait_status(&agent, &order, "paid", WAIT).await {
        panic!(
            "{e}: the broker did not deliver the unstored update again; the agent shows {:?}",
            cloud_status(&agent, &order).await
        );
    }
}

/// Two updates of one order in the same millisecond, the later stage
/// first: `completed` stays, whether `paid` comes in the same message or
/// in the next one. Ordered by time alone, `paid` replaced it.
#[tokio::test]
async fn updates_of_one_millisecond_arriving_out_of_rank_keep_the_higher_rank() {
    let env = TestEnv::new();
    let broker = PrivateMosquitto::start().await.expect("mosquitto");
    let agent = connected_agent(&env, &broker).await;
    let topic = status_topic(&agent);
    let ms = now_ms();
    for (n, together) in [(1, true), (2, false)] {
        let order = agent
            .post_order(&format!("rank-{n}"))
            .await
            .expect("capture")
            .order_id;
        let completed = sequenced(&order, CloudStatus::Completed, ms);
        let paid = sequenced(&order, CloudStatus::Paid, ms);
        let cloud = env.store_id(&format!("cloud-{n}"));
        if together {
            publish_status(broker.port(), &cloud, &topic, &[completed, paid.clone()]).await;
        } else {
            publish_status(broker.port(), &cloud, &topic, &[completed]).await;
            wait_status(&agent, &order, "completed", WAIT)
                .await
                .expect("completed applied");
            publish_status(broker.port(), &cloud, &topic, std::slice::from_ref(&paid)).await;
        }
        let paid_id = paid.event_id.to_string();
        wait_until_named(
            "the paid update handled",
            || async { stored(&agent, &order, &paid_id).1 },
            WAIT,
        )
        .await
        .expect("paid never handled");
        assert_eq!(
            stored(&agent, &order, &paid_id).0.as_deref(),
            Some("completed"),
            "message {n}: a lower-ranked update of the same millisecond replaced completed"
        );
    }
}

/// An undecodable status message is logged and acked once: the broker does
/// not deliver it again after a restart, and the updates behind it apply.
/// (Left unacked, it would come back at every reconnect.)
#[tokio::test]
async fn an_undecodable_status_message_is_acked_once_and_not_delivered_again() {
    let env = TestEnv::new();
    let broker = PrivateMosquitto::start().await.expect("mosquitto");
    let mut agent = connected_agent(&env, &broker).await;
    let order = agent.post_order("bad-1").await.expect("capture").order_id;
    let topic = status_topic(&agent);
    publish_raw(
        broker.port(),
        &env.store_id("cloud-1"),
        &topic,
        b"\x00\x01not a status{".to_vec(),
        PublishProperties::default(),
    )
    .await;
    let t0 = now_ms();
    publish_status(
        broker.port(),
        &env.store_id("cloud-2"),
        &topic,
        &[update(&order, CloudStatus::Paid, t0)],
    )
    .await;
    wait_status(&agent, &order, "paid", WAIT)
        .await
        .expect("the update behind the bad message");
    agent.stop().await.expect("stop agent");
    agent.restart().await.expect("restart agent");
    wait_connected(&agent).await;
    // Anything redelivered at the reconnect comes before this update.
    publish_status(
        broker.port(),
        &env.store_id("cloud-3"),
        &topic,
        &[update(&order, CloudStatus::Completed, t0 + 1)],
    )
    .await;
    wait_status(&agent, &order, "completed", WAIT)
        .await
        .expect("completed after the restart");
    let log = std::fs::read_to_string(agent.log_path()).expect("agent log");
    assert_eq!(
        log.matches("undecodable status").count(),
        1,
        "the bad message was handled more than once:\n{log}"
    );
}

/// Captures an order at the world's agent, waits until the cloud has it
/// (in Kafka), then stops the agent; returns the order id.
async fn order_in_kafka_agent_stopped(w: &mut SagaWorld, key: &str) -> String {
    wait_connected(&w.agent).await;
    let order = w.agent.post_order(key).await.expect("capture").order_id;
    wait_until_named(
        "the order acked by the cloud",
        || async {
            w.agent
                .sync_status()
                .await
                .is_ok_and(|s| s["pending_events"] == 0)
        },
        WAIT,
    )
    .await
    .expect("the order never reached the cloud");
    w.agent.stop().await.expect("stop agent");
    order
}

/// Waits until the saga processes published `n` status updates.
async fn wait_published(w: &SagaWorld, n: f64) {
    if let Err(e) = wait_until_named(
        "status updates published",
        || async { w.metric("o2c_saga_status_published_total").await >= n },
        WAIT,
    )
    .await
    {
        panic!("{e}\n{}", w.logs());
    }
}

/// Restarts the agent and waits until the order shows `completed`, then
/// until every group committed everything.
async fn agent_back_sees_completed(w: &mut SagaWorld, order: &str) {
    w.agent.restart().await.expect("restart agent");
    wait_connected(&w.agent).await;
    if let Err(e) = wait_status(&w.agent, order, "completed", WAIT).await {
        panic!(
            "{e}: the updates sent while the agent had no session were lost; the agent \
             shows {:?}\n{}",
            cloud_status(&w.agent, order).await,
            w.logs()
        );
    }
    // Delivered, so the status group may now commit every record.
    w.wait_groups_caught_up(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    assert_eq!(w.metric("o2c_saga_status_undeliverable_total").await, 0.0);
}

/// Whether a saga log says a status message reached no session.
fn refusal_logged(w: &SagaWorld) -> bool {
    w.sagas.iter().any(|s| {
        std::fs::read_to_string(s.log_path())
            .is_ok_and(|l| l.contains("status message not delivered"))
    })
}

/// Fault (issue 21, chaos seed 2126): the broker is killed with SIGKILL and
/// comes back without the agent's session (no persistence), while the
/// agent is still away. The saga then completes the agent's order and the
/// status publisher sends its updates: no session matches, so Mosquitto
/// answers PUBACK 0x10 "no matching subscribers" and drops them. The
/// publisher must publish them again until the agent has subscribed: the
/// order reaches `completed` at the store, and only then does the status
/// group commit. Before the fix they were counted as delivered, committed
/// and lost; the store never saw any status.
#[tokio::test]
async fn a_status_published_while_the_broker_lost_the_agents_session_is_delivered_once_it_subscribes()
 {
    // No saga yet: the order's events wait in Kafka.
    let mut w = SagaWorld::start(&[], "", "").await.expect("world");
    let order = order_in_kafka_agent_stopped(&mut w, "lost-1").await;
    // The broker dies and loses every session.
    w.mosq.kill().expect("kill -9 mosquitto");
    w.mosq.restart().await.expect("restart mosquitto");
    // The saga runs the order; its status updates find no session.
    let saga = SagaProc::start(w.env.path(), &w.settings, "all")
        .await
        .expect("saga");
    w.sagas.push(saga);
    wait_published(&w, 4.0).await;
    // The agent returns and subscribes (a new session).
    agent_back_sees_completed(&mut w, &order).await;
    assert!(
        refusal_logged(&w),
        "the broker never answered 'no matching subscribers': the fault was not exercised\n{}",
        w.logs()
    );
}

/// The chaos runner's sequence: the status publisher is connected when the
/// broker is killed, reconnects at once and publishes the order's updates
/// while the agent is still away (its session gone with the broker).
#[tokio::test]
async fn a_publisher_that_reconnects_before_the_agent_delivers_once_the_agent_subscribes() {
    // Only the status publisher runs: the order waits for the services.
    let mut w = SagaWorld::start(&["status"], "", "").await.expect("world");
    let order = order_in_kafka_agent_stopped(&mut w, "lost-2").await;
    w.mosq.kill().expect("kill -9 mosquitto");
    w.mosq.restart().await.expect("restart mosquitto");
    for service in ["order", "payment", "inventory", "shipping"] {
        let saga = SagaProc::start(w.env.path(), &w.settings, service)
            .await
            .expect("saga");
        w.sagas.push(saga);
    }
    wait_published(&w, 4.0).await;
    agent_back_sees_completed(&mut w, &order).await;
    assert!(
        refusal_logged(&w),
        "the fault was not exercised\n{}",
        w.logs()
    );
}

/// The same fault, but the agent never comes back: past
/// `saga.status_redeliver_for_secs` (1 s here) the publisher gives the
/// updates up, logs an error naming the store, agent and orders, counts
/// them in `o2c_saga_status_undeliverable_total`, and commits, so the
/// group is not held back for ever.
#[tokio::test]
async fn updates_for_an_agent_whose_session_stays_gone_are_given_up_logged_and_committed() {
    let mut w = SagaWorld::start(&[], "status_redeliver_for_secs = 1", "")
        .await
        .expect("world");
    let order = order_in_kafka_agent_stopped(&mut w, "gone-1").await;
    w.mosq.kill().expect("kill -9 mosquitto");
    w.mosq.restart().await.expect("restart mosquitto");
    let saga = SagaProc::start(w.env.path(), &w.settings, "all")
        .await
        .expect("saga");
    w.sagas.push(saga);
    if let Err(e) = wait_until_named(
        "four updates undeliverable",
        || async { w.metric("o2c_saga_status_undeliverable_total").await >= 4.0 },
        WAIT,
    )
    .await
    {
        panic!("{e}\n{}", w.logs());
    }
    w.wait_groups_caught_up(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    assert_eq!(w.metric("o2c_saga_status_undeliverable_total").await, 4.0);
    let log = std::fs::read_to_string(w.sagas[0].log_path()).expect("saga log");
    let line = log
        .lines()
        .find(|l| l.contains("status update undeliverable"))
        .unwrap_or_else(|| panic!("no give-up logged:\n{log}"));
    for part in ["ERROR", &w.agent.store_id, "A1", &order] {
        assert!(line.contains(part), "{part:?} missing in {line}");
    }
}

/// Fault (bug 8, chaos seed 3001): updates the broker had acknowledged and
/// queued for an agent that was away are lost when the broker is killed
/// with SIGKILL (Mosquitto keeps them in memory until its next save). No
/// PUBACK or session flag tells anyone. The agent's resync after its
/// reconnect asks for its open orders, and the status publisher answers
/// from what it recorded before publishing: the order reaches `completed`.
/// Before the fix it stayed at whatever the agent had seen before it left.
#[tokio::test]
async fn updates_a_crashed_broker_lost_are_recovered_by_the_agents_resync() {
    let mut w = SagaWorld::start(&["all"], "", "").await.expect("world");
    let order = order_in_kafka_agent_stopped(&mut w, "resync-1").await;
    // The saga completes the order; its updates wait at the broker for the
    // agent's session: every one acknowledged, so the group commits.
    wait_published(&w, 4.0).await;
    w.wait_groups_caught_up(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", w.logs()));
    let (before, _) = stored(&w.agent, &order, "");
    assert_ne!(before.as_deref(), Some("completed"), "the agent was away");
    w.mosq.kill().expect("kill -9 mosquitto");
    w.mosq.restart().await.expect("restart mosquitto");
    w.agent.restart().await.expect("restart agent");
    wait_connected(&w.agent).await;
    // The agent asks at once; if the publisher had not subscribed again
    // yet, it asks again when the publisher announces itself (within the
    // 10 s gap plus up to 10 s of jitter).
    if let Err(e) = wait_status(&w.agent, &order, "completed", 3 * WAIT).await {
        panic!(
            "{e}: the updates the broker lost were never recovered; the agent shows {:?}\n{}",
            cloud_status(&w.agent, &order).await,
            w.logs()
        );
    }
    assert!(w.metric("o2c_saga_status_resync_requests_total").await >= 1.0);
    assert!(w.metric("o2c_saga_status_resync_updates_total").await >= 1.0);
    let agent_metrics = w.agent.metrics().await.expect("agent metrics");
    let resynced: f64 = agent_metrics
        .lines()
        .find_map(|l| l.strip_prefix("o2c_agent_status_resynced_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(
        resynced >= 1.0,
        "no update counted as resynced:\n{agent_metrics}"
    );
}
