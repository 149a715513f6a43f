//! The status publisher: consumes the saga topics and sends each store
//! order's status changes to its agent on
//! `o2c/v1/stores/{store}/agents/{agent}/status`, at QoS 1.
//!
//! [`status_for`] is the pure mapping and [`messages`] the pure grouping:
//! the records already fetched are taken together, and each agent gets its
//! updates from them as one message (a JSON array, in arrival order; see
//! `StatusUpdate::encode_many`), so a busy store gets one message, one
//! PUBACK and one commit for many updates instead of one each. Idle, a
//! message holds a single update and leaves at once.
//!
//! Each update carries a per-order sequence ([`status_seq`]: the status's
//! rank in the saga, then the event's time), sent beside the JSON in the
//! message's `o2c-status-seq` user property
//! (`o2c_protocol::frame::STATUS_SEQ_PROPERTY`); the agent keeps the
//! update with the greatest one, so two updates of one order in the same
//! millisecond, or arriving out of order, cannot apply out of rank.
//!
//! A PUBACK is not enough: the broker answers "no matching subscribers"
//! (reason 0x10) when the agent's session is gone (a broker crash, or a
//! store away past the session expiry), and drops the message. The pure
//! [`super::delivery`] tracker maps each PUBACK to its message, has such a
//! message published again with a backoff per agent topic, gives it up
//! (logged, `o2c_saga_status_undeliverable_total`) after
//! `saga.status_redeliver_for_secs`, and releases a record's offset for
//! commit only once its updates were delivered or given up. After a crash,
//! updates are sent again and the agent drops them by `event_id`.
//!
//! Even a matched PUBACK only means the broker holds the update in memory:
//! a broker crash loses what it held for agents that were away. So each
//! update is recorded before it is published ([`super::resync`]), and an
//! agent's resync request on `.../resync` (shared subscription
//! [`RESYNC_GROUP`]) is answered with the latest update of each order it
//! names, marked with `o2c_protocol::resync::RESYNC_PROPERTY`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use o2c_protocol::frame::STATUS_SEQ_PROPERTY;
use o2c_protocol::resync::RESYNC_PROPERTY;
use o2c_protocol::topic::{Channel, FLEET_RESYNC_TOPIC, agent_topic, shared_filter};
use o2c_protocol::{EventType, StatusUpdate};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use rumqttc::Outgoing as MqttOutgoing;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, PublishProperties};
use rumqttc::v5::{AsyncClient, Event as MqttEvent, EventLoop, Request};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::consumer::{self, COMMIT_INTERVAL, LoopConfig};
use super::delivery::{Delivery, DeliveryConfig, GaveUp, Outgoing as DeliveryOutgoing, RecordPos};
use super::member::Member;
use super::resync::{Answer, Latest, Sent, on_request, record_until_stored, sweep};
use super::watch::Tp;
use crate::metrics::SagaMetrics;
use o2c_cloud_common::config::MqttConfig;
use o2c_cloud_common::mqtt;
use o2c_runtime::kafka::TracingContext;

/// Why the status publisher stopped.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// MQTT client options.
    #[error(transparent)]
    MqttSetup(#[from] o2c_runtime::mqtt::MqttError),
    /// The MQTT client.
    #[error("mqtt: {0}")]
    Mqtt(String),
    /// Encoding a status message (a bug).
    #[error("encode: {0}")]
    Encode(String),
    /// Its consumer group.
    #[error(transparent)]
    Member(#[from] super::member::MemberError),
}

mod pure;

pub use pure::{messages, status_for, status_rank, status_seq};

/// Topics the status publisher consumes.
pub const SUBSCRIBES: &[EventType] = &[
    EventType::OrderCreated,
    EventType::PaymentCaptured,
    EventType::InventoryConfirmed,
    EventType::ShipmentScheduled,
    EventType::ShipmentDispatched,
    EventType::ShipmentDelivered,
    EventType::OrderCompleted,
    EventType::OrderCancelled,
    EventType::RefundIssued,
    EventType::ReturnAccepted,
    EventType::ReturnRefused,
];

/// The shared subscription group of the status publishers' resync
/// requests (one publisher answers each).
pub const RESYNC_GROUP: &str = "o2c-status";

/// Records taken from the consumer at once: whatever is already fetched,
/// up to this many.
const MAX_RECORDS: usize = 1024;
/// Most updates in one message (about 150 bytes each, far below the
/// protocol's frame limit).
pub const MAX_UPDATES_PER_MESSAGE: usize = 256;
/// Messages tracked (not yet delivered or given up) above which no more
/// records are consumed: the backpressure while the broker is away.
const MAX_BACKLOG: usize = 4096;

/// A status message as the shell publishes it, with what its give-up log
/// names.
#[derive(Debug, Clone)]
struct Body {
    bytes: Bytes,
    props: PublishProperties,
    store: String,
    agent: String,
    orders: Vec<String>,
}

/// What the MQTT event loop reports to the publisher, in order.
#[derive(Debug)]
enum Net {
    /// CONNACK.
    Connected,
    /// A publish was written with this packet id.
    Written(u16),
    /// Its PUBACK: `matched` unless the reason says otherwise.
    Acked { pkid: u16, reason: PubAckReason },
    /// The connection was lost; this many publishes not yet written were
    /// dropped from the client's queue.
    Down { lost_unwritten: usize },
    /// A publish from an agent (a resync request).
    Request { topic: Bytes, payload: Bytes },
    /// SUBACK: the resync subscription is in place.
    Subscribed,
}

/// Polls the event loop until `cancel`, reporting to `tx` (see [`Net`]).
async fn drive(
    mut eventloop: EventLoop,
    tx: mpsc::UnboundedSender<Net>,
    up: Arc<AtomicBool>,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let ev = tokio::select! {
            () = cancel.cancelled() => return,
            ev = eventloop.poll() => ev,
        };
        match ev {
            Ok(ev) => {
                if let Some(net) = net_event(ev) {
                    if matches!(net, Net::Connected) {
                        up.store(true, Ordering::Relaxed);
                        backoff = Duration::from_millis(100);
                    }
                    let _ = tx.send(net);
                }
            }
            Err(e) => {
                up.store(false, Ordering::Relaxed);
                tracing::warn!(error = %e, "status mqtt connection lost");
                // Events rumqttc queued before the error (a publish whose
                // write failed is reported written, then lost).
                for ev in eventloop.state.events.drain(..) {
                    if let Some(net) = net_event(ev) {
                        let _ = tx.send(net);
                    }
                }
                // (A publish held back by a packet id collision is not
                // reported; Mosquitto acks in order, so none happens.)
                // With clean start, rumqttc drops what it moved aside here
                // at the next CONNACK: in-flight publishes (with a packet
                // id) and the queued ones it drained (without). The
                // publisher sends them again; taking them now keeps them
                // from going twice.
                let lost_unwritten = eventloop
                    .pending
                    .drain(..)
                    .filter(|r| matches!(r, Request::Publish(p) if p.pkid == 0))
                    .count();
                let _ = tx.send(Net::Down { lost_unwritten });
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn net_event(ev: MqttEvent) -> Option<Net> {
    match ev {
        MqttEvent::Incoming(Packet::ConnAck(_)) => Some(Net::Connected),
        MqttEvent::Incoming(Packet::PubAck(a)) => Some(Net::Acked {
            pkid: a.pkid,
            reason: a.reason,
        }),
        MqttEvent::Outgoing(MqttOutgoing::Publish(pkid)) => Some(Net::Written(pkid)),
        MqttEvent::Incoming(Packet::SubAck(_)) => Some(Net::Subscribed),
        MqttEvent::Incoming(Packet::Publish(p)) => Some(Net::Request {
            topic: p.topic,
            payload: p.payload,
        }),
        _ => None,
    }
}

/// Runs the publisher until `cancel`; `latest` records what it sends
/// (migrated by `db::migrate_status`).
pub(crate) async fn run(
    cfg: LoopConfig,
    mqtt_cfg: MqttConfig,
    delivery_cfg: DeliveryConfig,
    latest: Arc<Latest>,
    metrics: Arc<SagaMetrics>,
    mqtt_up: Arc<AtomicBool>,
    cancel: CancellationToken,
) -> Result<(), StatusError> {
    let resync_filter = shared_filter(RESYNC_GROUP, Channel::Resync)
        .map_err(|e| StatusError::Mqtt(e.to_string()))?;
    let (answer_tx, mut answer_rx) = mpsc::unbounded_channel::<Answer>();
    let sweeper = tokio::spawn(sweep(latest.clone(), cancel.clone()));
    let client_id = format!("o2c-status-{:08x}", rand::random::<u32>());
    let opts = mqtt::options(&mqtt_cfg, &client_id)?;
    let (client, eventloop) = AsyncClient::new(opts, 1024);
    let (net_tx, mut net_rx) = mpsc::unbounded_channel();
    let loop_task = tokio::spawn(drive(eventloop, net_tx, mqtt_up, cancel.clone()));
    let cfg = Arc::new(cfg);
    let mut member = Member::join(cfg.clone(), metrics.clone())?;
    let mut delivery: Delivery<Body> = Delivery::new(delivery_cfg);
    let mut last_commit = o2c_runtime::clock::now();
    loop {
        for (_, topic, body) in delivery.poll_transmit() {
            // Waits only while rumqttc's request queue is full.
            client
                .publish_with_properties(topic, QoS::AtLeastOnce, false, body.bytes, body.props)
                .await
                .map_err(|e| StatusError::Mqtt(e.to_string()))?;
        }
        let consumer = member.consumer();
        if last_commit.elapsed() >= COMMIT_INTERVAL {
            commit(&consumer, delivery.poll_commits());
            last_commit = o2c_runtime::clock::now();
        }
        let retry = delivery.poll_timeout().map(tokio::time::Instant::from_std);
        let mut rejoin = false;
        let mut gave_up = Vec::new();
        let msg = tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(COMMIT_INTERVAL) => None,
            verdict = member.checked() => {
                rejoin = verdict.rejoin;
                None
            }
            Some(net) = net_rx.recv() => {
                let mut next = Some(net);
                while let Some(net) = next.take() {
                    match net {
                        Net::Request { topic, payload } => {
                            on_request(&latest, &metrics, &topic, payload, &answer_tx);
                        }
                        Net::Subscribed => {
                            // Agents that asked while no publisher listened
                            // ask again.
                            if let Err(e) = client.try_publish(
                                FLEET_RESYNC_TOPIC,
                                QoS::AtMostOnce,
                                false,
                                Bytes::new(),
                            ) {
                                tracing::warn!(error = %e, "cannot announce the resync subscription");
                            }
                        }
                        net => {
                            if matches!(net, Net::Connected) {
                                // Clean start: subscribe on every connect.
                                if let Err(e) =
                                    client.try_subscribe(resync_filter.clone(), QoS::AtLeastOnce)
                                {
                                    tracing::warn!(error = %e, "cannot subscribe to resync requests");
                                }
                            }
                            gave_up.extend(on_net(&mut delivery, net));
                        }
                    }
                    next = net_rx.try_recv().ok();
                }
                None
            }
            Some(a) = answer_rx.recv() => {
                metrics.status_resync_updates.inc_by(a.updates.len() as u64);
                let topic = agent_topic(&a.store, &a.agent, Channel::Status);
                let (store, agent) = (a.store.to_string(), a.agent.to_string());
                let mut outgoing = Vec::new();
                for group in a.updates.chunks(MAX_UPDATES_PER_MESSAGE) {
                    outgoing.push(DeliveryOutgoing {
                        topic: topic.clone(),
                        body: body(group, store.clone(), agent.clone(), true)?,
                        records: Vec::new(),
                    });
                }
                delivery.push(&[], outgoing);
                None
            }
            () = sleep_until_opt(retry), if retry.is_some() => {
                gave_up = delivery.handle_timeout(std_now());
                None
            }
            m = consumer.recv(), if delivery.backlog() < MAX_BACKLOG => Some(m),
        };
        for g in gave_up {
            metrics
                .status_undeliverable
                .inc_by(g.body.orders.len() as u64);
            tracing::error!(
                store = %g.body.store,
                agent = %g.body.agent,
                orders = ?g.body.orders,
                failed_for_secs = g.failed_for.as_secs(),
                "status update undeliverable: no session of this agent at the broker (or \
                 the broker refused it); the store shows a stale status for these orders \
                 (see docs/operations.md)"
            );
        }
        if rejoin {
            // Offsets not yet committed are dropped: their updates are sent
            // again after the rebalance, and agents drop them by event_id.
            drop(consumer);
            member.rejoin().await?;
            delivery.reset();
            continue;
        }
        if let Some(first) = msg {
            let mut records = Vec::new();
            let mut next = Some(first);
            // The first record, then whatever is already fetched.
            while let Some(m) = next.take() {
                match m {
                    Ok(m) => records.push(m),
                    Err(e) => tracing::warn!(error = %e, "status consume error"),
                }
                if records.len() < MAX_RECORDS {
                    next = consumer.recv().now_or_never();
                }
            }
            let (positions, outgoing, sent) = build(&cfg, &records)?;
            // Recorded before it is published: a resync can then answer
            // with anything the broker may have lost.
            if !record_until_stored(&latest, sent, &cancel).await {
                break;
            }
            for o in &outgoing {
                metrics.status_published.inc_by(o.body.orders.len() as u64);
            }
            delivery.push(&positions, outgoing);
        }
    }
    loop_task.abort();
    sweeper.abort();
    let _ = client.try_disconnect();
    Ok(())
}

/// The tracker's view of what happened on the connection; returns the
/// messages given up.
fn on_net(delivery: &mut Delivery<Body>, net: Net) -> Vec<GaveUp<Body>> {
    match net {
        Net::Connected => delivery.handle_connected(),
        Net::Written(pkid) => delivery.handle_written(pkid),
        Net::Down { lost_unwritten } => delivery.handle_disconnected(std_now(), lost_unwritten),
        // Not the tracker's: the loop takes them.
        Net::Request { .. } | Net::Subscribed => {}
        Net::Acked { pkid, reason } => {
            let matched = reason == PubAckReason::Success;
            if !matched {
                let topic = delivery.inflight_topic(pkid).unwrap_or_default().to_owned();
                if !delivery.backing_off(&topic) {
                    // Once per episode: the retries that follow are quiet.
                    tracing::info!(
                        %topic,
                        ?reason,
                        "status message not delivered (no session of the agent at the \
                         broker?): publishing it again with backoff"
                    );
                }
            }
            return delivery
                .handle_ack(std_now(), pkid, matched)
                .into_iter()
                .collect();
        }
    }
    Vec::new()
}

/// The records' positions, the messages made from their updates, and
/// those updates to record.
type Built = (Vec<RecordPos>, Vec<DeliveryOutgoing<Body>>, Vec<Sent>);

fn build(cfg: &LoopConfig, records: &[BorrowedMessage<'_>]) -> Result<Built, StatusError> {
    let mut positions = Vec::with_capacity(records.len());
    let mut spans = Vec::new();
    let mut updates = Vec::new();
    let mut sent = Vec::new();
    for m in records {
        let pos: RecordPos = ((m.topic().to_owned(), m.partition()), m.offset());
        positions.push(pos.clone());
        let value = m.payload().unwrap_or_default();
        match consumer::decode(&cfg.topics, m.topic(), value) {
            Ok(env) => {
                // A web or mobile order has no store agent to tell: its
                // customer reads its status from the order API.
                let remote = o2c_protocol::SalesChannel::of_cloud_agent(&env.agent_id).is_some();
                if let Some(update) = status_for(&env).filter(|_| !remote) {
                    // `status.publish`, under the hop that produced the
                    // record; the agent's apply span goes under it.
                    let parent = o2c_runtime::kafka::header(m, "traceparent").or(env
                        .traceparent
                        .as_ref()
                        .map(o2c_protocol::Traceparent::as_str));
                    let (span, tp) = crate::spans::child("status", "publish", parent);
                    spans.push(span);
                    let topic = agent_topic(&env.store_id, &env.agent_id, Channel::Status);
                    let who = (env.store_id.to_string(), env.agent_id.to_string());
                    let json = update
                        .encode()
                        .map_err(|e| StatusError::Encode(e.to_string()))?;
                    // What a resync answers: the latest update per order,
                    // and per return under the return's id (a return's
                    // status is not its order's).
                    let key = match &update.ret {
                        Some(r) => r.return_id.to_string(),
                        None => update.order_id.to_string(),
                    };
                    sent.push(Sent {
                        order_id: key,
                        store: who.0.clone(),
                        agent: who.1.clone(),
                        seq: update.seq.unwrap_or(0),
                        body: String::from_utf8_lossy(&json).into_owned(),
                    });
                    updates.push((topic, (update, pos, who, tp)));
                }
            }
            // The saga services dead-letter poison; here it is skipped.
            Err(e) => tracing::warn!(error = %e, "status: undecodable event skipped"),
        }
    }
    let mut outgoing = Vec::new();
    for (topic, group) in messages(updates, MAX_UPDATES_PER_MESSAGE) {
        let (store, agent) = group[0].2.clone();
        let mut recs: Vec<RecordPos> = group.iter().map(|(_, p, _, _)| p.clone()).collect();
        recs.dedup();
        let traces: Vec<Option<String>> = group.iter().map(|(_, _, _, t)| t.clone()).collect();
        let group: Vec<StatusUpdate> = group.into_iter().map(|(u, _, _, _)| u).collect();
        let mut body = body(&group, store, agent, false)?;
        if let Some(v) = o2c_protocol::frame::status_trace_property(&traces) {
            body.props
                .user_properties
                .push((o2c_protocol::frame::STATUS_TRACE_PROPERTY.to_owned(), v));
        }
        outgoing.push(DeliveryOutgoing {
            topic,
            body,
            records: recs,
        });
    }
    Ok((positions, outgoing, sent))
}

/// A status message of `group`, with their sequences (and the resync mark
/// when it answers a resync request).
fn body(
    group: &[StatusUpdate],
    store: String,
    agent: String,
    resync: bool,
) -> Result<Body, StatusError> {
    let bytes = StatusUpdate::encode_many(group).map_err(|e| StatusError::Encode(e.to_string()))?;
    let mut user_properties: Vec<(String, String)> = StatusUpdate::seqs_property(group)
        .map(|v| (STATUS_SEQ_PROPERTY.to_owned(), v))
        .into_iter()
        .collect();
    if resync {
        user_properties.push((RESYNC_PROPERTY.to_owned(), "1".to_owned()));
    }
    Ok(Body {
        bytes: Bytes::from(bytes),
        props: PublishProperties {
            content_type: Some("application/json".into()),
            user_properties,
            ..PublishProperties::default()
        },
        store,
        agent,
        orders: group.iter().map(|u| u.order_id.to_string()).collect(),
    })
}

/// Stores and commits the offsets the tracker released.
fn commit(consumer: &StreamConsumer<TracingContext>, commits: Vec<(Tp, i64)>) {
    if commits.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in commits {
        if let Err(e) = tpl.add_partition_offset(&topic, partition, Offset::Offset(offset)) {
            tracing::warn!(error = %e, %topic, partition, "cannot list offset");
        }
    }
    if let Err(e) = consumer.store_offsets(&tpl) {
        tracing::warn!(error = %e, "cannot store offsets");
    }
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
        tracing::warn!(error = %e, "offset commit failed");
    }
}

fn std_now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
