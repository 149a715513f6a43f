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
//! Offsets are committed only once the broker has acknowledged (PubAck)
//! every publish made before them; after a crash, updates are sent again
//! and the agent drops them by `event_id`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use o2c_protocol::topic::{Channel, agent_topic};
use o2c_protocol::{CloudStatus, Envelope, Event, EventType, StatusUpdate};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event as MqttEvent};
use tokio_util::sync::CancellationToken;

use super::consumer::{self, COMMIT_EVERY, COMMIT_INTERVAL, LoopConfig};
use super::member::Member;
use super::{SagaError, SagaMetrics};
use crate::config::MqttConfig;
use crate::mqtt;

/// Topics the status publisher consumes.
pub const SUBSCRIBES: &[EventType] = &[
    EventType::OrderCreated,
    EventType::PaymentCaptured,
    EventType::InventoryConfirmed,
    EventType::ShipmentScheduled,
    EventType::OrderCompleted,
    EventType::OrderCancelled,
    EventType::RefundIssued,
];

/// The status a saga event gives its order, if any.
pub fn status_for(env: &Envelope) -> Option<StatusUpdate> {
    let (status, reason) = match &env.payload {
        Event::OrderCreated(_) => (CloudStatus::Accepted, None),
        Event::PaymentCaptured(_) => (CloudStatus::Paid, None),
        Event::InventoryConfirmed(_) => (CloudStatus::InventoryConfirmed, None),
        Event::ShipmentScheduled(_) => (CloudStatus::ShipmentScheduled, None),
        Event::OrderCompleted(_) => (CloudStatus::Completed, None),
        Event::OrderCancelled(c) => (CloudStatus::Cancelled, Some(c.reason.clone())),
        Event::RefundIssued(_) => (CloudStatus::Refunded, None),
        Event::PaymentFailed(_) | Event::InventoryReleased(_) => return None,
    };
    Some(StatusUpdate {
        order_id: env.payload.order_id(),
        status,
        reason,
        event_id: env.event_id,
        occurred_at: env.occurred_at,
    })
}

/// Records taken from the consumer at once: whatever is already fetched,
/// up to this many.
const MAX_RECORDS: usize = 1024;
/// Most updates in one message (about 150 bytes each, far below the
/// protocol's frame limit).
pub const MAX_UPDATES_PER_MESSAGE: usize = 256;

/// Groups `(topic, update)` pairs into messages: per topic, in arrival
/// order, at most `max` updates each; topics in order of first appearance.
pub fn messages(
    updates: impl IntoIterator<Item = (String, StatusUpdate)>,
    max: usize,
) -> Vec<(String, Vec<StatusUpdate>)> {
    let max = max.max(1);
    let mut out: Vec<(String, Vec<StatusUpdate>)> = Vec::new();
    // Per topic, the index in `out` of its message being filled.
    let mut open: HashMap<String, usize> = HashMap::new();
    for (topic, update) in updates {
        match open.get(&topic) {
            Some(&i) if out[i].1.len() < max => out[i].1.push(update),
            _ => {
                open.insert(topic.clone(), out.len());
                out.push((topic, vec![update]));
            }
        }
    }
    out
}

/// Runs the publisher until `cancel`.
pub(crate) async fn run(
    cfg: LoopConfig,
    mqtt_cfg: MqttConfig,
    metrics: Arc<SagaMetrics>,
    mqtt_up: Arc<AtomicBool>,
    cancel: CancellationToken,
) -> Result<(), SagaError> {
    let client_id = format!("o2c-status-{:08x}", rand::random::<u32>());
    let opts = mqtt::options(&mqtt_cfg, &client_id)?;
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    let acked = Arc::new(AtomicU64::new(0));
    let loop_task = tokio::spawn({
        let acked = acked.clone();
        let cancel = cancel.clone();
        let up = mqtt_up.clone();
        async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    ev = eventloop.poll() => match ev {
                        Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                            up.store(true, Ordering::Relaxed);
                            backoff = Duration::from_millis(100);
                        }
                        Ok(MqttEvent::Incoming(Packet::PubAck(_))) => {
                            acked.fetch_add(1, Ordering::Release);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            up.store(false, Ordering::Relaxed);
                            tracing::warn!(error = %e, "status mqtt connection lost");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                }
            }
        }
    });
    let cfg = Arc::new(cfg);
    let mut member = Member::join(cfg.clone(), metrics.clone())?;
    let mut published = 0u64;
    let mut uncommitted = 0u32;
    let mut last_commit = Instant::now();
    loop {
        let consumer = member.consumer();
        let mut rejoin = false;
        let msg = tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(COMMIT_INTERVAL) => None,
            verdict = member.checked() => {
                rejoin = verdict.rejoin;
                None
            }
            m = consumer.recv() => Some(m),
        };
        if rejoin {
            // Offsets not yet committed are dropped: their updates are sent
            // again after the rebalance, and agents drop them by event_id.
            drop(consumer);
            member.rejoin().await?;
            uncommitted = 0;
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
            let mut updates = Vec::new();
            for m in &records {
                let value = m.payload().unwrap_or_default();
                match consumer::decode(&cfg.topics, m.topic(), value) {
                    Ok(env) => {
                        if let Some(update) = status_for(&env) {
                            let topic = agent_topic(&env.store_id, &env.agent_id, Channel::Status);
                            updates.push((topic, update));
                        }
                    }
                    // The saga services dead-letter poison; here it is skipped.
                    Err(e) => tracing::warn!(error = %e, "status: undecodable event skipped"),
                }
            }
            for (topic, group) in messages(updates, MAX_UPDATES_PER_MESSAGE) {
                let bytes = StatusUpdate::encode_many(&group)
                    .map_err(|e| SagaError::Encode(e.to_string()))?;
                // Waits only while rumqttc's request queue is full.
                client
                    .publish(topic, QoS::AtLeastOnce, false, bytes)
                    .await
                    .map_err(|e| SagaError::Mqtt(e.to_string()))?;
                published += 1;
                metrics.status_published.inc_by(group.len() as u64);
            }
            for m in &records {
                if let Err(e) = consumer.store_offset_from_message(m) {
                    tracing::warn!(error = %e, "cannot store offset");
                }
            }
            uncommitted += records.len() as u32;
        }
        let due = uncommitted >= COMMIT_EVERY || last_commit.elapsed() >= COMMIT_INTERVAL;
        // Commit only what the broker has acknowledged.
        if uncommitted > 0 && due && acked.load(Ordering::Acquire) >= published {
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Async) {
                tracing::warn!(error = %e, "offset commit failed");
            }
            uncommitted = 0;
            last_commit = Instant::now();
        }
    }
    loop_task.abort();
    let _ = client.try_disconnect();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use o2c_protocol::{EventId, OrderId};
    use time::OffsetDateTime;

    fn update(n: u8) -> StatusUpdate {
        StatusUpdate {
            order_id: OrderId::from_parts(1, [n; 10]),
            status: CloudStatus::Paid,
            reason: None,
            event_id: EventId::from_parts(2, [n; 10]),
            occurred_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn one_message_per_agent_in_arrival_order_split_at_the_limit() {
        let input = [("a", 1), ("b", 2), ("a", 3), ("a", 4), ("b", 5), ("a", 6)]
            .map(|(t, n)| (t.to_owned(), update(n)));
        let out = messages(input, 3);
        let topics: Vec<&str> = out.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(topics, ["a", "b", "a"]);
        assert_eq!(out[0].1, vec![update(1), update(3), update(4)]);
        assert_eq!(out[1].1, vec![update(2), update(5)]);
        assert_eq!(out[2].1, vec![update(6)]);
        // Nothing in, nothing out; a zero limit still sends every update.
        assert!(messages(Vec::new(), 3).is_empty());
        assert_eq!(messages([("a".to_owned(), update(1))], 0).len(), 1);
    }
}
