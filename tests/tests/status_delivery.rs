//! Status updates reach an agent that was away when the cloud sent them,
//! one update per message or several in one (the cloud's status publisher
//! sends a store's updates together under load).
//!
//! The agent keeps an MQTT session at the broker (clean start off, a week's
//! expiry) and acks a status update only once it is stored, so an update
//! published while the agent is stopped waits at the broker and is applied
//! when the agent comes back. A real `o2c-agent` and a private Mosquitto;
//! the test plays the cloud's status publisher with a plain MQTT client.

use std::time::Duration;

use o2c_protocol::topic::{Channel, agent_topic};
use o2c_protocol::{AgentId, CloudStatus, EventId, OrderId, StatusUpdate, StoreId};
use o2c_tests::TestEnv;
use o2c_tests::mosquitto::PrivateMosquitto;
use o2c_tests::pipeline::AgentProc;
use o2c_tests::saga::{cloud_status, wait_status};
use o2c_tests::wait::wait_until_named;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use time::OffsetDateTime;

const WAIT: Duration = Duration::from_secs(20);

/// Publishes `updates` as one message at QoS 1 on the agent's status topic
/// (a single update as an object, several as an array) and waits for the
/// broker's PubAck.
async fn publish_status(port: u16, client_id: &str, topic: &str, updates: &[StatusUpdate]) {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    let payload = match updates {
        [one] => one.encode(),
        many => StatusUpdate::encode_many(many),
    }
    .expect("encode status");
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
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
    .expect("no PubAck for the status update");
    let _ = client.disconnect().await;
}

fn update(order_id: &str, status: CloudStatus, at_ms: u64) -> StatusUpdate {
    StatusUpdate {
        order_id: order_id.parse::<OrderId>().expect("order id"),
        status,
        reason: None,
        event_id: EventId::from_parts(at_ms, rand_bytes()),
        occurred_at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000)
            .expect("time"),
    }
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
