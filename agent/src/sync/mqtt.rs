//! MQTT v5 session options for the agent (on top of
//! [`o2c_runtime::mqtt::options`]: address, TLS, packet size), and the
//! decoding and storing of a status message with its per-update sequences
//! ([`decode_status`], [`apply_status`]).
//!
//! The `[mqtt.tls]` files are loaded and checked by
//! [`o2c_runtime::mqtt::check`], which `run` and `check-config` call before
//! anything starts.

use std::time::Duration;

use o2c_protocol::StatusUpdate;
use o2c_protocol::frame::{FrameError, STATUS_SEQ_PROPERTY};
use o2c_protocol::resync::RESYNC_PROPERTY;
use o2c_runtime::mqtt::{Connection, MqttError};
use rumqttc::v5::MqttOptions;
use rumqttc::v5::mqttbytes::v5::Publish;

use crate::config::MqttConfig;
use crate::store::{StatusOutcome, Store, now_ms};

/// Largest MQTT packet the agent sends or accepts.
const MAX_PACKET_BYTES: u32 = 4 * 1024 * 1024;

/// Most outgoing QoS 1 publishes rumqttc keeps track of at once.
const MAX_INFLIGHT: u16 = 64;

/// How long the broker keeps the agent's session (its subscriptions and the
/// QoS 1 status updates and acks queued for it) while it is away: a week.
pub(crate) const SESSION_EXPIRY_SECS: u32 = 7 * 24 * 3600;

/// Session options. The session persists ([`SESSION_EXPIRY_SECS`]), so
/// status updates the cloud sends while the store is offline or the agent
/// is restarting wait at the broker instead of being dropped; and acks are
/// manual, sent only once an update is committed (see the sync task), so
/// one received just before a crash is delivered again. A lost ack for an
/// event batch is recovered by resending the batch, which the cloud
/// acknowledges again without writing it twice.
pub(crate) fn options(cfg: &MqttConfig, client_id: &str) -> Result<MqttOptions, MqttError> {
    let mut o = o2c_runtime::mqtt::options(Connection {
        url: &cfg.url,
        tls: cfg.tls.as_ref(),
        client_id,
        keep_alive: Duration::from_secs(cfg.keep_alive_secs),
        max_packet_bytes: MAX_PACKET_BYTES,
    })?;
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(SESSION_EXPIRY_SECS));
    o.set_manual_acks(true);
    // Without a limit rumqttc sizes its in-flight table for 65,536 QoS 1
    // publishes (13.5 MiB resident from the start). The agent has one batch
    // in flight, and Mosquitto allows 20.
    o.set_outgoing_inflight_upper_limit(MAX_INFLIGHT);
    Ok(o)
}

/// The [`STATUS_SEQ_PROPERTY`] of a status message, if the cloud sent one.
pub(crate) fn status_seqs(p: &Publish) -> Option<String> {
    p.properties
        .as_ref()?
        .user_properties
        .iter()
        .find(|(k, _)| k == STATUS_SEQ_PROPERTY)
        .map(|(_, v)| v.clone())
}

/// The [`o2c_protocol::frame::STATUS_TRACE_PROPERTY`] of a status message,
/// if the cloud sent one.
pub(crate) fn status_traces(p: &Publish) -> Option<String> {
    p.properties
        .as_ref()?
        .user_properties
        .iter()
        .find(|(k, _)| k == o2c_protocol::frame::STATUS_TRACE_PROPERTY)
        .map(|(_, v)| v.clone())
}

/// Whether a status message answers a resync request (it carries
/// [`RESYNC_PROPERTY`]).
pub(crate) fn is_resync_answer(p: &Publish) -> bool {
    p.properties.as_ref().is_some_and(|props| {
        props
            .user_properties
            .iter()
            .any(|(k, _)| k == RESYNC_PROPERTY)
    })
}

/// Decodes a status message (see `StatusUpdate::decode_each`) and gives
/// its updates their sequences from `seqs`, the message's
/// [`STATUS_SEQ_PROPERTY`]. A property that does not fit the message is
/// logged and ignored: the updates are still stored, ordered by time.
pub(crate) fn decode_status(
    payload: &[u8],
    seqs: Option<&str>,
) -> Result<Vec<Result<StatusUpdate, FrameError>>, FrameError> {
    let mut each = StatusUpdate::decode_each(payload)?;
    if let Some(v) = seqs
        && let Err(e) = StatusUpdate::set_seqs(&mut each, v)
    {
        tracing::warn!(error = %e, "status sequences ignored; the newest occurred_at decides");
    }
    Ok(each)
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
///
/// `resynced` (for a message answering a resync) counts the updates that
/// changed an order's status: ones this store had missed.
pub(crate) async fn apply_status(
    store: Store,
    payload: bytes::Bytes,
    seqs: Option<String>,
    traces: Option<String>,
    resynced: Option<prometheus_client::metrics::counter::Counter>,
) -> bool {
    // One `agent.status.apply` span per update that came with a context,
    // open until the updates are stored.
    let _spans: Vec<tracing::Span> = match (&traces, o2c_runtime::trace::enabled()) {
        (Some(t), true) => o2c_protocol::frame::parse_status_trace_property(t)
            .into_iter()
            .flatten()
            .map(|tp| {
                let span = tracing::info_span!(target: o2c_runtime::trace::TARGET,
                    "agent.status.apply", otel.kind = "consumer");
                o2c_runtime::trace::set_parent(&span, tp);
                span
            })
            .collect(),
        _ => Vec::new(),
    };
    let updates = match decode_status(&payload, seqs.as_deref()) {
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
            Ok(outcomes) => {
                if let Some(counter) = resynced {
                    let missed = outcomes
                        .iter()
                        .filter(|o| matches!(o, StatusOutcome::Applied))
                        .count();
                    if missed > 0 {
                        counter.inc_by(missed as u64);
                        tracing::info!(
                            updates = missed,
                            "status resync applied updates this store had missed"
                        );
                    }
                }
                return true;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::PublishProperties;

    const TWO: &str = r#"[{"order_id":"01890a5d-ac96-774b-bcce-b302099a8057","status":"paid","event_id":"01890a5d-ac96-774b-bcce-b302099a8059","occurred_at":"2026-11-24T10:00:00Z"},{"order_id":"01890a5d-ac96-774b-bcce-b302099a8057","status":"teleported","event_id":"01890a5d-ac96-774b-bcce-b302099a8058","occurred_at":"2026-11-24T10:00:00Z"}]"#;

    fn publish(props: Vec<(String, String)>) -> Publish {
        let mut p = Publish::new("t", QoS::AtLeastOnce, TWO, None);
        p.properties = Some(PublishProperties {
            user_properties: props,
            ..PublishProperties::default()
        });
        p
    }

    #[test]
    fn sequences_come_from_the_user_property_by_position() {
        let p = publish(vec![
            ("traceparent".into(), "x".into()),
            (STATUS_SEQ_PROPERTY.into(), "7,9".into()),
        ]);
        let seqs = status_seqs(&p);
        assert_eq!(seqs.as_deref(), Some("7,9"));
        let each = decode_status(&p.payload, seqs.as_deref()).unwrap();
        // The first update gets 7; the second (an unknown status) stays an
        // error in its slot.
        assert_eq!(each[0].as_ref().unwrap().seq, Some(7));
        assert!(each[1].is_err());
    }

    #[test]
    fn a_missing_or_bad_property_leaves_updates_without_sequences() {
        let none = Publish::new("t", QoS::AtLeastOnce, TWO, None);
        assert_eq!(status_seqs(&none), None);
        assert_eq!(status_seqs(&publish(vec![])), None);
        for bad in [None, Some("7"), Some("7,x")] {
            let each = decode_status(TWO.as_bytes(), bad).unwrap();
            assert_eq!(each[0].as_ref().unwrap().seq, None, "{bad:?}");
        }
    }
}
