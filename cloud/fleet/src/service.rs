//! The shell: one MQTT subscription to every agent's health topic feeding
//! the [`crate::core::FleetTable`], and the HTTP side ([`crate::http`]).
//!
//! The subscription is plain, not shared: every replica of the fleet view
//! needs every agent, and MQTT v5 hands no retained message to a shared
//! subscription. On each (re)connect the broker sends every agent's
//! retained latest message, so a restarted view is complete at once.
//! Clean start: nothing queues at the broker while the view is away.
//!
//! The subscription is QoS 0 (agents publish at QoS 1, so the broker holds
//! each message safely): health is state, the latest message wins, and a
//! message lost with a dropped connection comes back retained on the
//! resubscription. At QoS 1 Mosquitto would deliver at most 20 in flight and
//! queue `max_queued_messages` (1,000 by default) more, dropping the rest of
//! a large fleet's retained messages at subscription.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use o2c_cloud_common::config::Config;
use o2c_protocol::topic::health_filter;
use o2c_runtime::http::{Probes, Readiness};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, Event};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::core::{FleetTable, Summary};
use crate::hours::{HoursError, StoreHours};
use crate::metrics::Metrics;
use crate::view::{AgentView, FleetView};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// `[fleet]` hours that cannot work (an unknown time zone).
    #[error("config: {0}")]
    Hours(#[from] HoursError),
    /// The MQTT options (URL, TLS files).
    #[error(transparent)]
    Mqtt(#[from] o2c_runtime::mqtt::MqttError),
    /// The HTTP listener failed.
    #[error("http: {0}")]
    Http(#[from] std::io::Error),
}

/// The wall clock in Unix ms.
pub fn now_ms() -> i64 {
    o2c_runtime::clock::wall()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The table with what the HTTP side and the metrics read.
#[derive(Debug)]
pub struct Fleet {
    table: Mutex<FleetTable>,
    hours: StoreHours,
    metrics: Metrics,
    connected: AtomicBool,
    started_ms: i64,
}

impl Fleet {
    /// An empty view started at `started_ms`.
    pub fn new(stale_after: u32, hours: StoreHours, started_ms: i64) -> Self {
        Self {
            table: Mutex::new(FleetTable::new(stale_after, started_ms)),
            hours,
            metrics: Metrics::new(),
            connected: AtomicBool::new(false),
            started_ms,
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, FleetTable> {
        // The table is only changed by whole calls into the pure core; a
        // panic inside one cannot leave it half-changed in a way reads trip on.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One health message, arrived at `now_ms`.
    pub fn handle_message(&self, topic: &str, payload: &[u8], retained: bool, now_ms: i64) {
        let outcome = self
            .table()
            .handle_message(topic, payload, retained, now_ms);
        match outcome {
            Ok(applied) => self.metrics.message(applied.outcome()),
            Err(e) => {
                self.metrics.message(e.outcome());
                tracing::warn!(%topic, error = %e, "health message refused");
            }
        }
    }

    /// Whether the subscription is up.
    pub fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Release);
    }

    /// The view at `now_ms`.
    pub fn view(&self, now_ms: i64) -> FleetView {
        self.view_of(now_ms, None)
    }

    /// The view at `now_ms` of one store, or of all.
    pub fn view_of(&self, now_ms: i64, store: Option<&str>) -> FleetView {
        let rows = self
            .table()
            .rows_of(now_ms, |s| store.is_none_or(|want| s.as_str() == want));
        FleetView {
            generated_at_ms: now_ms,
            view_started_at_ms: self.started_ms,
            broker_connected: self.connected.load(Ordering::Acquire),
            summary: Summary::of(&rows),
            agents: rows
                .into_iter()
                .map(|row| AgentView {
                    down_ms: row.down_ms(now_ms),
                    store_open: self.hours.is_open(&row.store_id, now_ms),
                    row,
                })
                .collect(),
        }
    }
}

impl Probes for Fleet {
    fn readiness(&self) -> Readiness {
        Readiness::from_bool(self.connected.load(Ordering::Acquire))
    }

    fn metrics_text(&self) -> String {
        self.metrics.render(&self.view(now_ms()))
    }
}

/// Checks what `run` needs before anything binds (the time zones).
pub fn check(cfg: &Config) -> Result<(), ServiceError> {
    StoreHours::from_config(&cfg.fleet)?;
    o2c_runtime::mqtt::check(&cfg.mqtt.url, cfg.mqtt.tls.as_ref())?;
    Ok(())
}

/// Runs the service until `cancel`, serving HTTP on `http`.
pub async fn run(
    cfg: Config,
    http: TcpListener,
    cancel: CancellationToken,
) -> Result<(), ServiceError> {
    let hours = StoreHours::from_config(&cfg.fleet)?;
    let fleet = Arc::new(Fleet::new(
        cfg.fleet.stale_after_heartbeats,
        hours,
        now_ms(),
    ));
    let router = crate::http::router(Arc::clone(&fleet));
    let http_cancel = cancel.clone();
    let http_task = tokio::spawn(async move {
        axum::serve(http, router)
            .with_graceful_shutdown(async move { http_cancel.cancelled().await })
            .await
    });
    let client_id = format!("{}-{:08x}", cfg.fleet.client_id, rand::random::<u32>());
    let opts = o2c_cloud_common::mqtt::options(&cfg.mqtt, &client_id)?;
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let filter = health_filter();
    tracing::info!(url = %cfg.mqtt.url, %filter, "fleet view subscribing");
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            ev = eventloop.poll() => match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtMostOnce) {
                        tracing::warn!(error = %e, "cannot queue subscribe");
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let ok = ack
                        .return_codes
                        .iter()
                        .all(|c| matches!(c, SubscribeReasonCode::Success(_)));
                    fleet.set_connected(ok);
                    if ok {
                        tracing::info!("fleet view subscribed");
                    } else {
                        tracing::error!(codes = ?ack.return_codes, "health subscription refused");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let topic = String::from_utf8_lossy(&p.topic);
                    fleet.handle_message(&topic, &p.payload, p.retain, now_ms());
                }
                Ok(_) => {}
                Err(e) => {
                    fleet.set_connected(false);
                    tracing::warn!(error = %e, "broker connection lost; reconnecting");
                    // A backoff between attempts, not a synchronisation.
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            },
        }
    }
    let _ = client.try_disconnect();
    match http_task.await {
        Ok(r) => r?,
        Err(e) => tracing::error!(error = %e, "http task failed"),
    }
    Ok(())
}
