//! Wiring of `o2c-cloud saga`: migrations, one consumer loop and one outbox
//! relay per service, the status publisher, and `/healthz`, `/readyz`,
//! `/metrics`.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use o2c_runtime::http::{Probes, Readiness};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::consumer::{self, LoopConfig};
use super::inventory::InventoryStep;
use super::member::GroupCheck;
use super::order::OrderStep;
use super::payment::PaymentStep;
use super::reconcile::Reconciler;
use super::shipping::ShippingStep;
use super::state::StateStep;
use super::{db, outbox, status};
use crate::error::SagaError;
use crate::metrics::{SagaMetrics, ServiceLabel};
use crate::pool::Pg;
use crate::psp::{BreakerConfig, PspClient};
use crate::service::Service;
use crate::shipping::carrier::CarrierClient;
use crate::shipping::worker::Tracker;
use futures::TryFutureExt;
use o2c_cloud_common::config::Config;
use o2c_protocol::retry::RetryPolicy;
use o2c_runtime::kafka;

/// What one process runs: database-backed services and/or the status
/// publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Saga services.
    pub services: Vec<Service>,
    /// The status publisher.
    pub status: bool,
}

impl Selection {
    /// Everything (the default of `o2c-cloud saga`).
    pub fn all() -> Self {
        Self {
            services: Service::ALL.to_vec(),
            status: true,
        }
    }
}

impl FromStr for Selection {
    type Err = SagaError;
    /// `order`, `payment`, `inventory`, `shipping`, `status` or `all`.
    fn from_str(s: &str) -> Result<Self, SagaError> {
        if s == "all" {
            return Ok(Self::all());
        }
        if s == "status" {
            return Ok(Self {
                services: Vec::new(),
                status: true,
            });
        }
        Service::ALL
            .into_iter()
            .find(|svc| svc.name() == s)
            .map(|svc| Self {
                services: vec![svc],
                status: false,
            })
            .ok_or_else(|| SagaError::UnknownService(s.to_owned()))
    }
}

#[derive(Debug)]
struct Health {
    metrics: Arc<SagaMetrics>,
    ready: AtomicBool,
    needs_mqtt: bool,
    mqtt: Arc<AtomicBool>,
}

/// Runs the selected services until `shutdown` resolves.
pub async fn run(
    cfg: Config,
    selection: Selection,
    http: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SagaError> {
    run_with(cfg, selection, http, Arc::default(), shutdown).await
}

/// As [`run`], serving `metrics` on `/metrics`: for a process that counts
/// its own work in them too (`o2c-cloud notify`'s sender).
pub async fn run_with(
    cfg: Config,
    selection: Selection,
    http: TcpListener,
    metrics: Arc<SagaMetrics>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SagaError> {
    let topics = cfg.topics();
    let health = Arc::new(Health {
        metrics: metrics.clone(),
        ready: AtomicBool::new(false),
        needs_mqtt: selection.status,
        mqtt: Arc::new(AtomicBool::new(false)),
    });
    let cancel = CancellationToken::new();
    let mut tasks: JoinSet<Result<(), SagaError>> = JoinSet::new();
    tasks.spawn({
        let app: axum::Router = o2c_runtime::http::router(health.clone());
        let cancel = cancel.clone();
        async move {
            axum::serve(http, app)
                .with_graceful_shutdown(cancel.cancelled_owned())
                .await?;
            Ok(())
        }
    });

    // Dev: apply the topology file; production: check the topics match it.
    o2c_topology::ensure_for(&cfg.kafka).await?;
    let schema_ids = o2c_topology::registry::schema_ids_for(&cfg.kafka).await?;
    let producer = kafka::producer(&cfg.kafka.brokers, cfg.kafka.linger_ms)?;
    // Warm the idempotent producer before the first event.
    kafka::probe(&producer, Duration::from_secs(10)).await?;

    let loop_cfg = |service: &'static str, subscribe: &[o2c_protocol::EventType]| LoopConfig {
        brokers: cfg.kafka.brokers.clone(),
        fetch_wait_ms: cfg.kafka.fetch_wait_ms,
        group: format!("{}-{service}", cfg.saga.group_prefix),
        topics: topics.clone(),
        subscribe: subscribe.to_vec(),
        history: false,
        retry_base: Duration::from_millis(cfg.saga.retry_base_ms),
        label: ServiceLabel { service },
        instance: cfg.saga.instance_id.clone(),
        check: GroupCheck::from_config(&cfg.saga),
    };
    let url = &cfg.postgres.url;
    for &service in &selection.services {
        let mut client = db::connect(url).await?;
        db::migrate(&mut client, service).await?;
        drop(client);
        let pg = || Pg::new(url, cfg.saga.pg_lanes);
        let (p, m, c) = (producer.clone(), metrics.clone(), cancel.clone());
        match service {
            Service::Order => {
                let step = Arc::new(OrderStep {
                    pg: pg(),
                    topics: topics.clone(),
                });
                let lc = loop_cfg("order", super::order::SUBSCRIBES);
                tasks.spawn(consumer::run(lc, step, p, m, c));
            }
            Service::Payment => {
                let psp = PspClient::new(
                    &cfg.psp.url,
                    BreakerConfig {
                        failures: cfg.psp.breaker_failures,
                        open_for: Duration::from_millis(cfg.psp.breaker_open_ms),
                        timeout: Duration::from_millis(cfg.psp.timeout_ms),
                    },
                    metrics.psp_breaker_state.clone(),
                )?;
                // Keep the breaker gauge current between calls too.
                tasks.spawn({
                    let (psp, cancel) = (psp.clone(), cancel.clone());
                    let gauge = metrics.psp_breaker_state.clone();
                    async move {
                        loop {
                            gauge.set(psp.breaker_state().code());
                            tokio::select! {
                                () = cancel.cancelled() => return Ok(()),
                                () = tokio::time::sleep(Duration::from_millis(250)) => {}
                            }
                        }
                    }
                });
                let reconciler = Arc::new(Reconciler {
                    url: url.clone(),
                    psp: psp.clone(),
                    topics: topics.clone(),
                    metrics: metrics.clone(),
                    every: Duration::from_secs(cfg.saga.capture_reconcile_secs),
                    stuck_after: Duration::from_secs(cfg.saga.capture_stuck_secs),
                    key_lifetime: Duration::from_secs(cfg.psp.key_lifetime_hours * 3600),
                });
                tasks.spawn(reconciler.clone().run(cancel.clone()).err_into());
                let step = Arc::new(PaymentStep {
                    // Twice the lanes: each capture is two short
                    // transactions around a processor call.
                    pg: Pg::new(url, cfg.saga.pg_lanes * 2),
                    topics: topics.clone(),
                    psp,
                    reconciler,
                });
                let lc = loop_cfg("payment", super::payment::SUBSCRIBES);
                tasks.spawn(consumer::run(lc, step, p, m, c));
            }
            Service::Inventory => {
                let step = Arc::new(InventoryStep {
                    // One lane: batches share stock rows (a popular SKU is
                    // in most of them), so parallel lanes would only queue
                    // on those row locks, each holding them through its
                    // own commit. One lane puts a whole batch in one
                    // transaction instead.
                    pg: Pg::new(url, 1),
                    topics: topics.clone(),
                    auto_stock: cfg.saga.auto_stock,
                    central_warehouse: cfg.saga.central_warehouse.clone(),
                });
                let lc = loop_cfg("inventory", super::inventory::SUBSCRIBES);
                tasks.spawn(consumer::run(lc, step, p, m, c));
            }
            Service::Shipping => {
                let cc = &cfg.carrier;
                let carrier = CarrierClient::new(
                    &cc.url,
                    BreakerConfig {
                        failures: cc.breaker_failures,
                        open_for: Duration::from_millis(cc.breaker_open_ms),
                        timeout: Duration::from_millis(cc.timeout_ms),
                    },
                    metrics.carrier_breaker_state.clone(),
                )?;
                let tracker = Arc::new(Tracker {
                    // One lane per call in flight, at most four.
                    pg: Pg::new(url, cc.concurrency.clamp(1, 4)),
                    carrier,
                    topics: topics.clone(),
                    metrics: metrics.clone(),
                    policy: RetryPolicy {
                        max_attempts: u32::MAX,
                        base: Duration::from_millis(cc.retry_base_ms),
                        max: Duration::from_secs(cc.retry_max_secs),
                    },
                    track_every: Duration::from_millis(cc.track_every_ms),
                    claim_every: Duration::from_millis(cc.claim_every_ms),
                    lease: Duration::from_secs(cc.lease_secs),
                    concurrency: cc.concurrency,
                });
                tasks.spawn({
                    let cancel = cancel.clone();
                    async move {
                        tracker.run(cancel).await;
                        Ok(())
                    }
                });
                let step = Arc::new(ShippingStep {
                    pg: pg(),
                    topics: topics.clone(),
                });
                let lc = loop_cfg("shipping", super::shipping::SUBSCRIBES);
                tasks.spawn(consumer::run(lc, step, p, m, c));
            }
            Service::Api => {
                let step = Arc::new(super::channel::HistoryStep { pg: pg() });
                let lc = LoopConfig {
                    history: true,
                    ..loop_cfg("api", &[])
                };
                tasks.spawn(consumer::run(lc, step, p, m, c));
            }
            Service::Notify => {
                let step = Arc::new(super::notice::NoticeStep {
                    pg: pg(),
                    webhook: cfg.notify.webhook_url.is_some(),
                    max_age: (cfg.notify.max_event_age_secs > 0)
                        .then(|| Duration::from_secs(cfg.notify.max_event_age_secs)),
                });
                let lc = LoopConfig {
                    history: true,
                    ..loop_cfg("notify", &[])
                };
                tasks.spawn(consumer::run(lc, step, p, m, c));
            }
            Service::State => {
                let step = Arc::new(StateStep {
                    pg: pg(),
                    topics: topics.clone(),
                });
                let lc = LoopConfig {
                    history: true,
                    ..loop_cfg("state", &[])
                };
                tasks.spawn(consumer::run(lc, step, p, m, c));
            }
        }
        let (p, m, c) = (producer.clone(), metrics.clone(), cancel.clone());
        let poll = Duration::from_millis(cfg.saga.outbox_poll_ms.max(10));
        let relay = outbox::Relay::for_service(service, &topics, poll, schema_ids.clone());
        tasks.spawn({
            let url = url.clone();
            async move {
                outbox::relay(url, relay, p, m, c).await;
                Ok(())
            }
        });
        let retention = super::retention::Retention::from_hours(
            cfg.saga.outbox_retention_hours,
            cfg.saga.ledger_retention_hours,
        );
        if retention.is_enabled() {
            let (url, m, c) = (url.clone(), metrics.clone(), cancel.clone());
            // Returns only when cancelled (a task that ends stops the saga).
            tasks.spawn(async move {
                super::retention::run(url, service, retention, m, c).await;
                Ok(())
            });
        }
        tracing::info!(%service, "saga service started");
    }
    if selection.status {
        let mut client = db::connect(url).await?;
        db::migrate_status(&mut client).await?;
        drop(client);
        let latest = Arc::new(super::resync::Latest::new(url));
        let lc = loop_cfg("status", status::SUBSCRIBES);
        let delivery = super::delivery::DeliveryConfig {
            give_up_after: Duration::from_secs(cfg.saga.status_redeliver_for_secs),
            ..super::delivery::DeliveryConfig::default()
        };
        tasks.spawn(
            status::run(
                lc,
                cfg.mqtt.clone(),
                delivery,
                latest,
                metrics.clone(),
                health.mqtt.clone(),
                cancel.clone(),
            )
            .err_into(),
        );
        tracing::info!("status publisher started");
    }
    health.ready.store(true, Ordering::Relaxed);

    tokio::pin!(shutdown);
    let result = tokio::select! {
        () = &mut shutdown => Ok(()),
        Some(r) = tasks.join_next() => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SagaError::Closed("saga task")),
        },
    };
    tracing::info!("saga stopping");
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    result
}

impl Probes for Health {
    fn readiness(&self) -> Readiness {
        let ready = self.ready.load(Ordering::Relaxed);
        let mqtt = !self.needs_mqtt || self.mqtt.load(Ordering::Relaxed);
        // A group that does not consume its whole subscription (a partition
        // no member owns, a stalled or ever-growing backlog) is not ready.
        let gaps = self.metrics.group_health.unhealthy();
        let groups = if gaps.is_empty() {
            "ok".to_owned()
        } else {
            gaps.join(",")
        };
        Readiness {
            ready: ready && mqtt && gaps.is_empty(),
            detail: Some(format!("services={ready} mqtt={mqtt} groups={groups}")),
        }
    }

    fn metrics_text(&self) -> String {
        self.metrics.encode()
    }
}
