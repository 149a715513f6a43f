//! The simulated agents: each behaves like the real agent's sync window
//! with a window of one batch. It publishes a frame at QoS 1 on its events
//! topic, waits for the cloud's `Ack` on its acks topic, checks that the ack
//! covers exactly that frame with no rejection, and only then publishes the
//! next frame.
//!
//! One rumqttc v5 connection carries the agents of one group (one agent per
//! connection by default, as in real stores). Every connection subscribes
//! first, then reports ready and waits for the common start signal.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use o2c_protocol::Ack;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::{mpsc, watch};

use super::workload::AgentLoad;

/// Largest MQTT packet either way (frames are about 70 KB).
const MAX_PACKET_BYTES: u32 = 4 * 1024 * 1024;

/// What one connection saw.
#[derive(Debug, Default)]
pub(super) struct ConnReport {
    /// Events covered by acks.
    pub(super) events_acked: u64,
    /// Frames acked.
    pub(super) frames_acked: u64,
    /// Acks for a frame already acked (ignored, as the agent does).
    pub(super) stale_acks: u64,
    /// Broker PUBACKs saying no subscriber matched (0x10).
    pub(super) no_subscriber: u64,
    /// When the last ack arrived.
    pub(super) last_ack: Option<Instant>,
    /// Publish → ack time per frame, in microseconds.
    pub(super) ack_micros: Vec<u64>,
}

/// Why a simulated agent gave up.
#[derive(Debug, thiserror::Error)]
pub(super) enum AgentError {
    /// The MQTT connection failed.
    #[error("mqtt: {0}")]
    Connection(#[from] rumqttc::v5::ConnectionError),
    /// A request could not be queued to the MQTT client.
    #[error("mqtt client: {0}")]
    Client(String),
    /// The broker refused a publish.
    #[error("broker refused a PUBLISH: {0:?}")]
    Refused(PubAckReason),
    /// The cloud's answer is not what a correct ingest sends.
    #[error("agent {agent}: {what}")]
    BadAck {
        /// Which agent.
        agent: String,
        /// What was wrong.
        what: String,
    },
    /// The start signal never came (the run was abandoned).
    #[error("the start signal was dropped")]
    NoStart,
}

/// Connects, subscribes the group's ack topics, signals `ready`, waits for
/// `go`, then drives the group's agents until every frame is acked.
pub(super) async fn run_connection(
    addr: (String, u16),
    client_id: String,
    loads: Arc<Vec<AgentLoad>>,
    range: Range<usize>,
    ready: mpsc::Sender<()>,
    mut go: watch::Receiver<bool>,
) -> Result<ConnReport, AgentError> {
    let group = &loads[range];
    let mut opts = MqttOptions::new(client_id, addr.0, addr.1);
    opts.set_keep_alive(Duration::from_secs(60));
    opts.set_clean_start(true);
    opts.set_max_packet_size(Some(MAX_PACKET_BYTES));
    opts.set_outgoing_inflight_upper_limit(64);
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    opts.set_network_options(net);
    // Room for one frame per agent plus the subscriptions: never full.
    let (client, mut events) = AsyncClient::new(opts, 2 * group.len() + 8);
    for a in group {
        client
            .try_subscribe(a.acks_topic.clone(), QoS::AtLeastOnce)
            .map_err(|e| AgentError::Client(e.to_string()))?;
    }
    let mut subscribed = 0;
    while subscribed < group.len() {
        if let Event::Incoming(Packet::SubAck(_)) = events.poll().await? {
            subscribed += 1;
        }
    }
    let _ = ready.send(()).await;
    drop(ready);
    go.wait_for(|&started| started)
        .await
        .map_err(|_| AgentError::NoStart)?;

    let by_topic: HashMap<&[u8], usize> = group
        .iter()
        .enumerate()
        .map(|(i, a)| (a.acks_topic.as_bytes(), i))
        .collect();
    // Per agent: index of the frame in flight, and when it was published.
    let mut in_flight: Vec<usize> = vec![0; group.len()];
    let mut sent_at: Vec<Instant> = vec![Instant::now(); group.len()];
    let mut report = ConnReport::default();
    let mut left = 0;
    let publish = |i: usize, frame: usize| {
        client
            .try_publish(
                group[i].events_topic.clone(),
                QoS::AtLeastOnce,
                false,
                group[i].frames[frame].payload.clone(),
            )
            .map_err(|e| AgentError::Client(e.to_string()))
    };
    for (i, a) in group.iter().enumerate() {
        if !a.frames.is_empty() {
            publish(i, 0)?;
            sent_at[i] = Instant::now();
            left += 1;
        }
    }

    while left > 0 {
        let p = match events.poll().await? {
            Event::Incoming(Packet::Publish(p)) => p,
            Event::Incoming(Packet::PubAck(a)) => {
                match a.reason {
                    PubAckReason::Success => {}
                    PubAckReason::NoMatchingSubscribers => report.no_subscriber += 1,
                    other => return Err(AgentError::Refused(other)),
                }
                continue;
            }
            _ => continue,
        };
        let Some(&i) = by_topic.get(p.topic.as_ref()) else {
            return Err(AgentError::BadAck {
                agent: String::from_utf8_lossy(&p.topic).into_owned(),
                what: "a message on a topic this connection did not subscribe".into(),
            });
        };
        let a = &group[i];
        let bad = |what: String| AgentError::BadAck {
            agent: a.agent.to_string(),
            what,
        };
        let ack = Ack::decode(&p.payload).map_err(|e| bad(format!("undecodable ack: {e}")))?;
        if let Some(r) = ack.rejected.first() {
            return Err(bad(format!(
                "{} events rejected, first seq {}: {} ({})",
                ack.rejected.len(),
                r.seq,
                r.code,
                r.reason
            )));
        }
        let Some(frame) = a.frames.get(in_flight[i]) else {
            report.stale_acks += 1;
            continue;
        };
        let through = ack.through_seq.get();
        if through < frame.through_seq {
            report.stale_acks += 1;
            continue;
        }
        if through > frame.through_seq {
            return Err(bad(format!(
                "ack through seq {through}, but only {} was sent",
                frame.through_seq
            )));
        }
        let now = Instant::now();
        report.events_acked += frame.through_seq - frame.first_seq + 1;
        report.frames_acked += 1;
        report.last_ack = Some(now);
        report
            .ack_micros
            .push(u64::try_from(now.duration_since(sent_at[i]).as_micros()).unwrap_or(u64::MAX));
        in_flight[i] += 1;
        if in_flight[i] < a.frames.len() {
            publish(i, in_flight[i])?;
            sent_at[i] = now;
        } else {
            left -= 1;
        }
    }
    let _ = client.try_disconnect();
    Ok(report)
}
