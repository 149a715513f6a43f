//! The sync task: ships the outbox to the cloud over MQTT v5 and applies
//! the cloud's acks and order status.
//!
//! A thin I/O shell around [`o2c_protocol::sync::SyncState`], which decides
//! what to send and when to resend. This module owns the MQTT event loop,
//! reads pending events from the [`Store`], and persists acks through the
//! store's single writer before telling the state machine about them.
//!
//! An event leaves the pending set only when the cloud's `Ack` says Kafka
//! has it; an MQTT PUBACK only means the broker has the frame. A
//! `FrameNack` (the cloud refused a whole frame) makes the state machine
//! split the frame, then reject the one event that cannot be read.
//!
//! The MQTT event loop runs in its own task ([`driver`]), so the sync loop's
//! timers never cancel a connection attempt half-way; the sync loop tells it
//! to drop a connection the state machine judges dead (a silent partition)
//! and when to reconnect.
//!
//! After each connect, and every `sync.status_resync_secs`, it asks the
//! cloud again for the status of the orders not yet final ([`resync`]): a
//! broker crash loses the status updates it held for this store.
//!
//! It also publishes the agent's retained health heartbeat for the fleet
//! view, sets the matching MQTT last will, and says goodbye on a graceful
//! stop ([`health`]).

mod driver;
mod health;
mod mqtt;
mod resync;
pub mod trace;

pub use health::HealthSettings;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use o2c_protocol::frame::{FRAME_PROPERTY, FrameId, encode_raw_batch};
use o2c_protocol::sync::{AckVerdict, NackVerdict, SyncConfig, SyncState, Transmit};
use o2c_protocol::topic::{Channel, FLEET_RESYNC_TOPIC, agent_topic};
use o2c_protocol::{Ack, AckMessage, AgentId, Seq, StoreId};
use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish, PublishProperties};
use rumqttc::v5::{AsyncClient, Event};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{MqttConfig, SyncSettings};
use crate::metrics::SyncMetrics;
use crate::store::{Store, StoreError, now_ms};
use driver::{Command, Link, drive};

/// Why the sync task stopped for good (transient failures are retried).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The MQTT options could not be built (bad URL or TLS files).
    #[error(transparent)]
    Setup(#[from] o2c_runtime::mqtt::MqttError),
    /// The store refused a read or write.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything the sync task needs.
#[derive(Debug, Clone)]
pub struct SyncTask {
    /// The outbox.
    pub store: Store,
    /// `[mqtt]`.
    pub mqtt: MqttConfig,
    /// `[sync]`.
    pub sync: SyncSettings,
    /// This store.
    pub store_id: StoreId,
    /// This agent (also the MQTT client id and, with TLS, the certificate CN).
    pub agent_id: AgentId,
    /// What `GET /v1/sync` reports as `connected`.
    pub connected: Arc<AtomicBool>,
    /// Resync counters.
    pub metrics: SyncMetrics,
    /// Stops the task.
    pub cancel: CancellationToken,
    /// Wakes the catalog pull: on each connect and each change hint.
    pub catalog_trigger: Option<Arc<tokio::sync::Notify>>,
    /// The spans of events in flight ([`trace::SyncTraces`]).
    pub traces: trace::SyncTraces,
    /// The health heartbeat (`[telemetry] heartbeat_secs`, the catalog).
    pub health: HealthSettings,
}

/// How often the idle loop looks for newly captured events and timeouts.
const TICK: Duration = Duration::from_millis(2);

impl SyncTask {
    fn sync_config(&self) -> SyncConfig {
        SyncConfig {
            ack_timeout_ms: self.sync.ack_timeout_ms,
            max_batch_events: self.sync.max_batch_events,
            max_batch_bytes: self.sync.max_batch_bytes,
            liveness_timeout_ms: self.mqtt.liveness_timeout_ms,
            connect_timeout_ms: self.mqtt.connect_timeout_ms,
            ..SyncConfig::default()
        }
    }

    /// Runs until cancelled. Store errors on the hot path are logged and
    /// retried on the next tick; only setup errors end the task.
    pub async fn run(self) -> Result<(), SyncError> {
        let cfg = self.sync_config();
        let mut opts = mqtt::options(&self.mqtt, self.agent_id.as_str())?;
        // A backstop only: the state machine's own connect timeout is shorter.
        opts.set_connection_timeout(cfg.connect_timeout_ms.div_ceil(1000) + 1);
        let mut reporter = health::Reporter::new(
            self.store.clone(),
            self.health.clone(),
            self.store_id.clone(),
            self.agent_id.clone(),
        );
        let mut heartbeat = health::Heartbeat::new(reporter.heartbeat_secs());
        if let Some(will) = reporter.will().await {
            opts.set_last_will(will);
        }
        let (client, eventloop) = AsyncClient::new(opts, 64);
        // Incoming publishes are acked by this task, in the order they
        // arrived (as MQTT requires), each once it has been handled.
        let (handled, to_ack) = tokio::sync::mpsc::unbounded_channel();
        let acker = tokio::spawn(ack_in_order(client.clone(), to_ack));
        let (link_tx, mut link) = mpsc::channel(256);
        let (commands, command_rx) = mpsc::unbounded_channel();
        let driver = tokio::spawn(drive(eventloop, link_tx, command_rx));
        let counts = self.store.sync_counts(now_ms()).await?;
        // The store counts from 0 (nothing yet); the state machine says None.
        let mut state = SyncState::new(
            cfg,
            Seq::new(counts.last_acked_seq).ok(),
            Seq::new(self.store.last_seq()).ok(),
            rand::random(),
        );
        let acks = agent_topic(&self.store_id, &self.agent_id, Channel::Acks);
        let status = agent_topic(&self.store_id, &self.agent_id, Channel::Status);
        let events = agent_topic(&self.store_id, &self.agent_id, Channel::Events);
        let resync_topic = agent_topic(&self.store_id, &self.agent_id, Channel::Resync);
        let mut resync = resync::Schedule::new(self.sync.status_resync_secs);
        let mut resync_task: Option<tokio::task::JoinHandle<()>> = None;
        let epoch = Instant::now();
        let now = || u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(url = %self.mqtt.url, backlog = state.backlog(), "sync starting");
        state.handle_connecting(now());
        // A drop was asked for and its `Link::Down` has not come yet.
        let mut dropping = false;

        loop {
            let deadline = [
                state.poll_deadline(),
                resync.poll_deadline(),
                heartbeat.poll_deadline(),
            ]
            .into_iter()
            .flatten()
            .min()
            .map(|ms| epoch + Duration::from_millis(ms));
            tokio::select! {
                () = self.cancel.cancelled() => break,
                msg = link.recv() => match msg {
                    Some(Link::Event(ev)) => {
                        let was_connected = state.is_connected();
                        let (announced, rejected) = self
                            .on_event(&mut state, &client, *ev, &handled, [&acks, &status], now())
                            .await;
                        if !was_connected && state.is_connected() {
                            resync.handle_connected(now());
                            reporter.handle_connected();
                            heartbeat.handle_connected(now());
                        }
                        if rejected {
                            heartbeat.handle_changed(now());
                        }
                        if announced {
                            let jitter = rand::random::<u64>() % resync::MIN_GAP_MS;
                            resync.handle_announced(now(), jitter);
                        }
                    }
                    Some(Link::Down(reason)) => {
                        dropping = false;
                        resync.handle_disconnected();
                        heartbeat.handle_disconnected();
                        reporter.handle_disconnected();
                        self.connected.store(false, Ordering::Relaxed);
                        let delay = state.handle_disconnected();
                        tracing::warn!(%reason, retry_in_ms = delay, backlog = state.backlog(), "sync disconnected");
                        tokio::select! {
                            () = self.cancel.cancelled() => break,
                            () = tokio::time::sleep(Duration::from_millis(delay)) => {}
                        }
                        state.handle_connecting(now());
                        // The next connection's will carries the latest figures.
                        if let Some(will) = reporter.will().await {
                            let _ = commands.send(Command::Will(Box::new(will)));
                        }
                        if commands.send(Command::Reconnect).is_err() {
                            break;
                        }
                    }
                    None => {
                        tracing::error!("mqtt driver stopped");
                        break;
                    }
                },
                _ = tick.tick() => {
                    if let Ok(tail) = Seq::new(self.store.last_seq()) {
                        state.handle_captured(tail);
                    }
                    heartbeat.handle_backlog(self.store.pending_events(), now());
                }
                () = sleep_until(deadline) => {}
            }
            state.handle_timeout(now());
            if resync.poll_due(now()) {
                if resync_task
                    .as_ref()
                    .is_none_or(tokio::task::JoinHandle::is_finished)
                {
                    let (store, client, topic) =
                        (self.store.clone(), client.clone(), resync_topic.clone());
                    let counter = self.metrics.resyncs.clone();
                    resync_task = Some(tokio::spawn(async move {
                        match resync::send(&store, &client, &topic).await {
                            Ok(0) => {}
                            Ok(n) => {
                                counter.inc();
                                tracing::debug!(orders = n, "status resync sent");
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "status resync not sent; the next one retries")
                            }
                        }
                    }));
                } else {
                    tracing::debug!("status resync still running; this one skipped");
                }
            }
            if heartbeat.poll_due(now()) {
                reporter.publish(&client).await;
            }
            if state.poll_drop_connection() && !dropping {
                dropping = true;
                self.connected.store(false, Ordering::Relaxed);
                tracing::warn!(
                    backlog = state.backlog(),
                    "no answer from the broker in time; dropping the connection"
                );
                if commands.send(Command::Drop).is_err() {
                    break;
                }
            }
            while let Some(t) = state.poll_transmit() {
                match self.publish(&client, &events, t).await {
                    Ok(Some((first, last))) => state.handle_sent(first, last, now()),
                    Ok(None) => {
                        state.handle_nothing_pending(t.after_seq);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot publish batch; retrying");
                        break;
                    }
                }
            }
        }
        self.connected.store(false, Ordering::Relaxed);
        // Updates still being applied are not acked: the broker delivers
        // them again on the next start, and repeats are ignored.
        drop(handled);
        acker.abort();
        if let Some(t) = resync_task {
            t.abort();
        }
        if state.is_connected() && reporter.goodbye(&client) {
            // Offline before the DISCONNECT (which discards the will).
            health::wait_disconnected(&client, &mut link).await;
        } else {
            let _ = client.try_disconnect();
        }
        drop(commands);
        driver.abort();
        tracing::info!("sync stopped");
        Ok(())
    }

    /// One event from the MQTT connection: whether it was a status
    /// publisher's resync announcement, and whether it rejected events.
    async fn on_event(
        &self,
        state: &mut SyncState,
        client: &AsyncClient,
        ev: Event,
        handled: &mpsc::UnboundedSender<(Handled, Publish)>,
        [acks, status]: [&String; 2],
        now: u64,
    ) -> (bool, bool) {
        match ev {
            Event::Incoming(packet) => {
                // Anything from the broker shows the connection lives.
                state.handle_heard();
                match packet {
                    Packet::ConnAck(_) => {
                        if let Some(trigger) = &self.catalog_trigger {
                            // Back online: the catalog may have moved.
                            trigger.notify_one();
                            let hint = o2c_protocol::catalog::hint_topic(&self.store_id);
                            if let Err(e) = client.try_subscribe(hint, QoS::AtMostOnce) {
                                tracing::warn!(error = %e, "cannot queue subscribe");
                            }
                        }
                        for t in [acks, status] {
                            if let Err(e) = client.try_subscribe(t.clone(), QoS::AtLeastOnce) {
                                tracing::warn!(error = %e, "cannot queue subscribe");
                            }
                        }
                        // At most once: a missed announcement is covered by
                        // the resync after each connect and the periodic one.
                        if let Err(e) = client.try_subscribe(FLEET_RESYNC_TOPIC, QoS::AtMostOnce) {
                            tracing::warn!(error = %e, "cannot queue subscribe");
                        }
                    }
                    // Subscribed to acks: safe to send (an ack for what we
                    // send now cannot be missed).
                    Packet::SubAck(_) if !state.is_connected() => {
                        state.handle_connected();
                        self.connected.store(true, Ordering::Relaxed);
                        tracing::info!(backlog = state.backlog(), "sync connected");
                    }
                    Packet::Publish(p)
                        if self.catalog_trigger.is_some()
                            && p.topic.ends_with(b"/catalog")
                            && p.topic
                                == o2c_protocol::catalog::hint_topic(&self.store_id).as_bytes() =>
                    {
                        tracing::debug!("catalog change hint");
                        if let Some(trigger) = &self.catalog_trigger {
                            trigger.notify_one();
                        }
                    }
                    Packet::Publish(p) if p.topic == FLEET_RESYNC_TOPIC.as_bytes() => {
                        tracing::debug!("a status publisher announced itself");
                        return (true, false);
                    }
                    Packet::Publish(p) => {
                        let mut rejected = false;
                        let done = if p.topic == status.as_bytes() {
                            // Off the MQTT loop: updates commute (the highest
                            // seq, or without one the newest `occurred_at`,
                            // wins; a repeat is ignored by its event id),
                            // so concurrent ones share the
                            // writer's group commits instead of one commit
                            // (and fsync) each; applied one at a time, a
                            // busy store fell behind its status stream.
                            Handled::Applying(tokio::spawn(mqtt::apply_status(
                                self.store.clone(),
                                p.payload.clone(),
                                mqtt::status_seqs(&p),
                                mqtt::status_traces(&p),
                                mqtt::is_resync_answer(&p).then(|| self.metrics.resynced.clone()),
                            )))
                        } else {
                            if p.topic == acks.as_bytes() {
                                // An ack that is not stored is not lost: its
                                // batch times out, is resent and acked again.
                                rejected = self.on_ack(state, &p.payload).await;
                            }
                            Handled::Done
                        };
                        let _ = handled.send((done, p));
                        return (false, rejected);
                    }
                    _ => {}
                }
            }
            // Written to the socket: the broker owes an answer (PUBACK or
            // PINGRESP), which the liveness rule waits for.
            Event::Outgoing(Outgoing::Publish(_) | Outgoing::PingReq) => {
                state.handle_request_written(now);
            }
            Event::Outgoing(_) => {}
        }
        (false, false)
    }

    /// Reads the batch `t` asks for and queues it. Returns its seq range.
    async fn publish(
        &self,
        client: &AsyncClient,
        topic: &str,
        t: Transmit,
    ) -> Result<Option<(Seq, Seq)>, PublishError> {
        let after = t.after_seq.map_or(0, Seq::get);
        let mut batch = self
            .store
            .pending_batch(after, t.max_events, t.max_bytes)
            .await?;
        if let Some(up_to) = t.up_to {
            batch.retain(|e| e.seq <= up_to);
        }
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return Ok(None);
        };
        let range = (first.seq, last.seq);
        let frame = encode_raw_batch(&self.agent_id, batch.iter().map(|e| e.envelope.as_slice()))
            .map_err(|e| PublishError::Encode(e.to_string()))?;
        // Names the frame, so a nack for a frame the cloud cannot read
        // still says which one it was.
        let frame_id =
            FrameId::new(first.seq, last.seq).map_err(|e| PublishError::Encode(e.to_string()))?;
        let mut user_properties = vec![(FRAME_PROPERTY.to_owned(), frame_id.to_property())];
        user_properties.extend(
            batch
                .iter()
                .filter_map(|e| self.traces.publish(e.seq, traceparent_of(&e.envelope)))
                .map(|tp| ("traceparent".to_owned(), tp)),
        );
        let props = PublishProperties {
            content_type: Some("application/json".into()),
            user_properties,
            ..PublishProperties::default()
        };
        client
            .try_publish_with_properties(topic, QoS::AtLeastOnce, false, frame, props)
            .map_err(|e| PublishError::Queue(e.to_string()))?;
        if t.resend {
            tracing::info!(
                first = range.0.get(),
                last = range.1.get(),
                "resending unacknowledged batch"
            );
        }
        Ok(Some(range))
    }

    /// True if events were rejected.
    async fn on_ack(&self, state: &mut SyncState, payload: &[u8]) -> bool {
        let ack = match AckMessage::decode(payload) {
            Ok(AckMessage::Ack(a)) => a,
            Ok(AckMessage::FrameNack(nack)) => {
                match state.handle_frame_nack(&nack) {
                    NackVerdict::Isolate => tracing::warn!(
                        first = %nack.first_seq, last = %nack.last_seq, code = %nack.code,
                        "cloud refused a frame; sending its events one by one"
                    ),
                    NackVerdict::Reject { ack, through } => {
                        tracing::warn!(
                            seq = %nack.first_seq, code = %nack.code, reason = %nack.reason,
                            "cloud refused an event's frame; event rejected"
                        );
                        return self.persist_ack(state, &ack, through).await;
                    }
                    NackVerdict::Stale => {
                        tracing::debug!(first = %nack.first_seq, "stale frame nack ignored");
                    }
                }
                return false;
            }
            Err(e) => {
                tracing::warn!(error = %e, "undecodable ack ignored");
                return false;
            }
        };
        match state.check_ack(&ack) {
            Ok(AckVerdict::Apply { through }) => self.persist_ack(state, &ack, through).await,
            Ok(AckVerdict::Stale) => false,
            Err(e) => {
                tracing::error!(error = %e, "invalid ack ignored");
                false
            }
        }
    }

    /// True if the ack rejected events.
    async fn persist_ack(&self, state: &mut SyncState, ack: &Ack, through: Seq) -> bool {
        match self.store.apply_ack(ack, now_ms()).await {
            Ok(outcome) => {
                if outcome.rejected > 0 {
                    tracing::warn!(rejected = outcome.rejected, "cloud rejected events");
                }
                state.handle_ack_applied(through);
                self.traces.acked(through);
                outcome.rejected > 0
            }
            // Not applied: the batch times out and is resent, and the
            // cloud acks (or nacks) it again.
            Err(e) => {
                tracing::error!(error = %e, "cannot persist ack");
                false
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Where an incoming publish stands.
enum Handled {
    /// Handled already: ack it.
    Done,
    /// A status update being stored: ack it once that returns true.
    Applying(tokio::task::JoinHandle<bool>),
}

/// Acks incoming publishes in arrival order, each once it is handled. A
/// status update that could not be stored is not acked: the broker sends it
/// again when the agent next connects.
async fn ack_in_order(
    client: AsyncClient,
    mut handled: tokio::sync::mpsc::UnboundedReceiver<(Handled, Publish)>,
) {
    while let Some((done, publish)) = handled.recv().await {
        let ack = match done {
            Handled::Done => true,
            Handled::Applying(task) => task.await.unwrap_or(false),
        };
        if ack && let Err(e) = client.ack(&publish).await {
            tracing::debug!(error = %e, "cannot queue a PUBACK; the broker will resend");
            return;
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("encode: {0}")]
    Encode(String),
    #[error("mqtt queue: {0}")]
    Queue(String),
}

/// The envelope's `traceparent`, read without decoding the payload.
fn traceparent_of(envelope: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Tp {
        traceparent: Option<String>,
    }
    serde_json::from_slice::<Tp>(envelope).ok()?.traceparent
}
