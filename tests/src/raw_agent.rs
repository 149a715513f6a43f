//! A raw MQTT "agent" for tests whose frames can be anything: it publishes
//! bytes on its events topic and hands back what the cloud sends on its
//! acks and status topics, undecoded.

use std::time::Duration;

use o2c_protocol::frame::encode_raw_batch;
use o2c_protocol::topic::{Channel, agent_topic};
use o2c_protocol::{Ack, AgentId, StoreId};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event as MqttEvent, EventLoop, MqttOptions};
use tokio::sync::mpsc;

/// A message the cloud sent the agent: its channel and bytes.
#[derive(Debug, Clone)]
pub struct Received {
    /// `Acks` or `Status`.
    pub channel: Channel,
    /// The payload.
    pub payload: Vec<u8>,
}

/// A raw MQTT client on one agent's topics.
#[derive(Debug)]
pub struct RawAgent {
    client: AsyncClient,
    received: mpsc::UnboundedReceiver<Received>,
    store: StoreId,
    agent: AgentId,
}

impl RawAgent {
    /// Connects to the broker on `port` and subscribes (QoS 1) to the
    /// agent's acks and status topics; returns once both are granted.
    pub async fn connect(port: u16, store: &str, agent: &str) -> RawAgent {
        let mut o = MqttOptions::new(format!("raw-{store}-{agent}"), "127.0.0.1", port);
        o.set_max_packet_size(Some(4 << 20));
        let (client, eventloop) = AsyncClient::new(o, 64);
        let store = StoreId::new(store).expect("store id");
        let agent = AgentId::new(agent).expect("agent id");
        let (tx, rx) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed_rx) = mpsc::unbounded_channel();
        let (acks, status) = (
            agent_topic(&store, &agent, Channel::Acks),
            agent_topic(&store, &agent, Channel::Status),
        );
        tokio::spawn(pump(eventloop, acks.clone(), tx, subscribed_tx));
        for t in [acks, status] {
            client
                .subscribe(t, QoS::AtLeastOnce)
                .await
                .expect("subscribe");
        }
        for _ in 0..2 {
            tokio::time::timeout(Duration::from_secs(10), subscribed_rx.recv())
                .await
                .expect("suback in time")
                .expect("suback");
        }
        RawAgent {
            client,
            received: rx,
            store,
            agent,
        }
    }

    /// The agent's topic of `channel`.
    pub fn topic(&self, channel: Channel) -> String {
        agent_topic(&self.store, &self.agent, channel)
    }

    /// Publishes `bytes` on the agent's events topic.
    pub async fn publish(&self, bytes: Vec<u8>) {
        let t = self.topic(Channel::Events);
        self.client
            .publish(t, QoS::AtLeastOnce, false, bytes)
            .await
            .expect("publish");
    }

    /// The next message from the cloud, within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Received> {
        tokio::time::timeout(wait, self.received.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next ack (status messages meanwhile are dropped), within 30 s.
    pub async fn next_ack(&mut self) -> Ack {
        loop {
            let r = self
                .next(Duration::from_secs(30))
                .await
                .expect("an ack in time");
            if r.channel == Channel::Acks
                && let Ok(a) = Ack::decode(&r.payload)
            {
                return a;
            }
        }
    }
}

async fn pump(
    mut el: EventLoop,
    acks: String,
    tx: mpsc::UnboundedSender<Received>,
    subscribed: mpsc::UnboundedSender<()>,
) {
    loop {
        match el.poll().await {
            Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                let _ = subscribed.send(());
            }
            Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                let channel = if p.topic.as_ref() == acks.as_bytes() {
                    Channel::Acks
                } else {
                    Channel::Status
                };
                let _ = tx.send(Received {
                    channel,
                    payload: p.payload.to_vec(),
                });
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// A batch frame of `agent` holding `events` (encoded envelopes).
pub fn frame(agent: &str, events: &[Vec<u8>]) -> Vec<u8> {
    encode_raw_batch(
        &AgentId::new(agent).expect("agent id"),
        events.iter().map(Vec::as_slice),
    )
    .expect("frame")
}
