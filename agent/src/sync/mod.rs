//! The sync task: ships the outbox to the cloud over MQTT v5 and applies
//! the cloud's acks and order status.
//!
//! A thin I/O shell around [`o2c_protocol::sync::SyncState`], which decides
//! what to send and when to resend. This module owns the MQTT event loop,
//! reads pending events from the [`Store`], and persists acks through the
//! store's single writer before telling the state machine about them.
//!
//! An event leaves the pending set only when the cloud's `Ack` says Kafka
//! has it; an MQTT PUBACK only means the broker has the frame.

mod mqtt;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use o2c_protocol::frame::encode_raw_batch;
use o2c_protocol::sync::{AckVerdict, SyncConfig, SyncState, Transmit};
use o2c_protocol::topic::{Channel, agent_topic};
use o2c_protocol::{Ack, AgentId, StoreId};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish, PublishProperties};
use rumqttc::v5::{AsyncClient, Event};
use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::MqttConfig;
use crate::store::{Store, StoreError, now_ms};

pub use mqtt::{MqttSetupError, check_files, tls_client_config};

/// Why the sync task stopped for good (transient failures are retried).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The MQTT options could not be built (bad URL or TLS files).
    #[error(transparent)]
    Setup(#[from] MqttSetupError),
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
    /// This store.
    pub store_id: StoreId,
    /// This agent (also the MQTT client id and, with TLS, the certificate CN).
    pub agent_id: AgentId,
    /// What `GET /v1/sync` reports as `connected`.
    pub connected: Arc<AtomicBool>,
    /// Stops the task.
    pub cancel: CancellationToken,
}

/// How often the idle loop looks for newly captured events and timeouts.
const TICK: Duration = Duration::from_millis(2);

impl SyncTask {
    fn sync_config(&self) -> SyncConfig {
        SyncConfig {
            ack_timeout_ms: self.mqtt.ack_timeout_ms,
            max_batch_events: self.mqtt.max_batch_events,
            max_batch_bytes: self.mqtt.max_batch_bytes,
            ..SyncConfig::default()
        }
    }

    /// Runs until cancelled. Store errors on the hot path are logged and
    /// retried on the next tick; only setup errors end the task.
    pub async fn run(self) -> Result<(), SyncError> {
        let opts = mqtt::options(&self.mqtt, self.agent_id.as_str())?;
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        // Incoming publishes are acked by this task, in the order they
        // arrived (as MQTT requires), each once it has been handled.
        let (handled, to_ack) = tokio::sync::mpsc::unbounded_channel();
        let acker = tokio::spawn(ack_in_order(client.clone(), to_ack));
        let counts = self.store.sync_counts(now_ms()).await?;
        let mut state = SyncState::new(
            self.sync_config(),
            counts.last_acked_seq,
            self.store.last_seq(),
            rand::random(),
        );
        let acks = agent_topic(&self.store_id, &self.agent_id, Channel::Acks);
        let status = agent_topic(&self.store_id, &self.agent_id, Channel::Status);
        let events = agent_topic(&self.store_id, &self.agent_id, Channel::Events);
        let epoch = Instant::now();
        let now = || u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(url = %self.mqtt.url, backlog = state.backlog(), "sync starting");

        loop {
            tokio::select! {
                () = self.cancel.cancelled() => break,
                ev = eventloop.poll() => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for t in [&acks, &status] {
                            if let Err(e) = client.try_subscribe(t.clone(), QoS::AtLeastOnce) {
                                tracing::warn!(error = %e, "cannot queue subscribe");
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if !state.is_connected() {
                            // Subscribed to acks: safe to send (an ack for
                            // what we send now cannot be missed).
                            state.handle_connected();
                            self.connected.store(true, Ordering::Relaxed);
                            tracing::info!(backlog = state.backlog(), "sync connected");
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let done = if p.topic == status.as_bytes() {
                            // Off the MQTT loop: updates commute (the highest
                            // seq, or without one the newest `occurred_at`,
                            // wins; a repeat is ignored by its event id),
                            // so concurrent ones share the
                            // writer's group commits instead of one commit
                            // (and fsync) each; applied one at a time, a
                            // busy store fell behind its status stream.
                            Handled::Applying(tokio::spawn(apply_status(
                                self.store.clone(),
                                p.payload.clone(),
                                mqtt::status_seqs(&p),
                            )))
                        } else {
                            if p.topic == acks.as_bytes() {
                                // An ack that is not stored is not lost: its
                                // batch times out, is resent and acked again.
                                self.on_ack(&mut state, &p.payload).await;
                            }
                            Handled::Done
                        };
                        let _ = handled.send((done, p));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        self.connected.store(false, Ordering::Relaxed);
                        let delay = state.handle_disconnected();
                        tracing::warn!(error = %e, retry_in_ms = delay, "sync disconnected");
                        tokio::select! {
                            () = self.cancel.cancelled() => break,
                            () = tokio::time::sleep(Duration::from_millis(delay)) => {}
                        }
                    }
                },
                _ = tick.tick() => {
                    state.handle_captured(self.store.last_seq());
                    state.handle_timeout(now());
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
        let _ = client.try_disconnect();
        tracing::info!("sync stopped");
        Ok(())
    }

    /// Reads the batch `t` asks for and queues it. Returns its seq range.
    async fn publish(
        &self,
        client: &AsyncClient,
        topic: &str,
        t: Transmit,
    ) -> Result<Option<(u64, u64)>, PublishError> {
        let mut batch = self
            .store
            .pending_batch(t.after_seq, t.max_events, t.max_bytes)
            .await?;
        if let Some(up_to) = t.up_to {
            batch.retain(|e| e.seq.get() <= up_to);
        }
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return Ok(None);
        };
        let range = (first.seq.get(), last.seq.get());
        let frame = encode_raw_batch(&self.agent_id, batch.iter().map(|e| e.envelope.as_slice()))
            .map_err(|e| PublishError::Encode(e.to_string()))?;
        let props = PublishProperties {
            content_type: Some("application/json".into()),
            user_properties: batch
                .iter()
                .filter_map(|e| traceparent_of(&e.envelope))
                .map(|tp| ("traceparent".to_owned(), tp))
                .collect(),
            ..PublishProperties::default()
        };
        client
            .try_publish_with_properties(topic, QoS::AtLeastOnce, false, frame, props)
            .map_err(|e| PublishError::Queue(e.to_string()))?;
        if t.resend {
            tracing::info!(
                first = range.0,
                last = range.1,
                "resending unacknowledged batch"
            );
        }
        Ok(Some(range))
    }

    async fn on_ack(&self, state: &mut SyncState, payload: &[u8]) {
        let ack = match Ack::decode(payload) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable ack ignored");
                return;
            }
        };
        match state.check_ack(&ack) {
            Ok(AckVerdict::Apply { through }) => match self.store.apply_ack(&ack, now_ms()).await {
                Ok(outcome) => {
                    if outcome.rejected > 0 {
                        tracing::warn!(rejected = outcome.rejected, "cloud rejected events");
                    }
                    state.handle_ack_applied(through);
                }
                // Not applied: the batch times out and is resent, and the
                // cloud acks it again.
                Err(e) => tracing::error!(error = %e, "cannot persist ack"),
            },
            Ok(AckVerdict::Stale) => {}
            Err(e) => tracing::error!(error = %e, "invalid ack ignored"),
        }
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

/// Decodes and stores one cloud status message (one update or several,
/// stored together; an update that does not decode is logged and skipped,
/// the others are stored). True once it needs no redelivery: stored (or a
/// repeat), or never decodable.
///
/// A store failure (a full disk, say) is retried, with a backoff up to
/// [`STATUS_RETRY_MAX`], until the update is stored: the message's PUBACK,
/// and those queued behind it, wait meanwhile, so the broker holds back
/// further deliveries instead of losing any.
async fn apply_status(store: Store, payload: bytes::Bytes, seqs: Option<String>) -> bool {
    let updates = match mqtt::decode_status(&payload, seqs.as_deref()) {
        Ok(each) => each
            .into_iter()
            .enumerate()
            .filter_map(|(i, u)| {
                u.inspect_err(|e| {
                    tracing::warn!(index = i, error = %e, "undecodable status update ignored");
                })
                .ok()
            })
            .collect::<Vec<_>>(),
        Err(e) => {
            tracing::warn!(error = %e, "undecodable status message ignored");
            return true;
        }
    };
    if updates.is_empty() {
        return true;
    }
    let mut backoff = std::time::Duration::from_millis(100);
    loop {
        match store.apply_statuses(updates.clone(), now_ms()).await {
            Ok(_) => return true,
            Err(e) => {
                tracing::error!(error = %e, retry_in = ?backoff, "cannot persist status update; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(STATUS_RETRY_MAX);
            }
        }
    }
}

/// Longest wait between two tries to store a status update.
const STATUS_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(5);

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
