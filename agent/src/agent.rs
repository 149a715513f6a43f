//! The running agent: opens the store and the catalog, serves the API on
//! an injected listener until an injected shutdown future resolves, then
//! drains in-flight requests, stops background tasks and closes the
//! database cleanly.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, AppState};
use crate::catalog::check::StockChecker;
use crate::catalog::pull::Puller;
use crate::catalog::worker::{NICENESS_STEP, Worker, WorkerError};
use crate::catalog::{Catalog, CatalogError};
use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, StoreOptions};

/// How soon a failed business-day close is tried again.
const DAY_CLOSE_RETRY: Duration = Duration::from_secs(60);

/// Why the agent could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store failed to open or close.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The catalog failed to open.
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    /// The catalog pull's client could not be built.
    #[error("catalog pull: {0}")]
    Pull(#[from] crate::catalog::pull::PullError),
    /// The catalog thread could not be started.
    #[error("catalog: {0}")]
    Worker(#[from] WorkerError),
    /// A fault-injection variable with a bad value.
    #[error("{var} {problem}")]
    Fault {
        /// The variable.
        var: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// An I/O error (data dir, listener).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// The agent: everything the API and the background tasks share.
#[derive(Debug)]
pub struct Agent {
    config: Arc<Config>,
    store: Store,
    catalog: Catalog,
    metrics: Arc<Metrics>,
    connected: Arc<AtomicBool>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    /// The catalog pull, until [`Agent::spawn_background_tasks`] starts it.
    puller: std::sync::Mutex<Option<Puller>>,
    /// The ship-to-home stock check, when a catalog service is configured.
    checker: Option<Arc<StockChecker>>,
}

impl Agent {
    /// Creates the data dir and opens the store and the catalog.
    pub fn open(config: Config) -> Result<Agent, AgentError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| AgentError::Io {
            what: format!("create data_dir {}", config.data_dir.display()),
            source,
        })?;
        let metrics = Arc::new(Metrics::new());
        let mut opts = StoreOptions::new(
            config.db_path(),
            config.store_id.clone(),
            config.agent_id.clone(),
        );
        opts.max_pending_events = config.outbox.max_pending_events;
        opts.offline_total_cap_minor = config.payments.offline_total_cap_minor;
        opts.offline_currency = config.store.currency;
        opts.fault_abort_before_status_store =
            std::env::var(crate::store::FAULT_ABORT_BEFORE_STATUS_STORE).is_ok_and(|v| v == "1");
        if opts.fault_abort_before_status_store {
            tracing::warn!("fault injection: will abort before storing a status message");
        }
        opts.max_commit_batch = config.outbox.max_commit_batch;
        if let Ok(v) = std::env::var(crate::store::FAULT_CLOCK_SKEW_SECS) {
            opts.clock_skew_secs = v.trim().parse().map_err(|_| AgentError::Fault {
                var: crate::store::FAULT_CLOCK_SKEW_SECS,
                problem: format!("must be a whole number of seconds, got {v:?}"),
            })?;
            tracing::warn!(
                skew_secs = opts.clock_skew_secs,
                "fault injection: captured_at is shifted from the wall clock"
            );
        }
        let store = Store::open(opts, metrics.store.clone())?;
        // The catalog opens on its own thread, below capture's priority,
        // where sled's background threads are born and the pull works.
        let worker = Worker::start(NICENESS_STEP)?;
        let mut catalog = {
            let (path, cache, prices) = (
                config.catalog_path(),
                config.catalog.cache_bytes,
                config.catalog.price_cache_skus,
            );
            worker.call(move || Catalog::open_sized(&path, cache, prices))??
        };
        if std::env::var(crate::catalog::FAULT_ABORT_MID_APPLY).is_ok_and(|v| v == "1") {
            tracing::warn!("fault injection: will abort part-way through a catalog apply");
            catalog.inject_abort_mid_apply();
        }
        let connected = Arc::new(AtomicBool::new(false));
        let http = crate::catalog::pull::http_client(&config)?;
        let puller = http.as_ref().map(|(client, base)| {
            Puller::new(
                catalog.clone(),
                worker,
                client.clone(),
                base,
                &config,
                metrics.catalog.clone(),
            )
        });
        let checker = http.map(|(client, base)| {
            Arc::new(StockChecker::new(
                client,
                &base,
                config.store_id.clone(),
                &config.fulfillment,
                Arc::clone(&connected),
                metrics.catalog.clone(),
            ))
        });
        Ok(Agent {
            puller: std::sync::Mutex::new(puller),
            checker,
            config: Arc::new(config),
            store,
            catalog,
            metrics,
            connected,
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The store handle (the sync task's way in).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The flag `GET /v1/sync` reports as `connected`; the sync task sets it.
    pub fn connected_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.connected)
    }

    /// Cancelled when the agent shuts down; background tasks watch it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// The HTTP router over this agent's state.
    pub fn router(&self) -> axum::Router {
        api::router(AppState::new(
            &self.config,
            self.store.clone(),
            self.catalog.clone(),
            Arc::clone(&self.metrics),
            Arc::clone(&self.connected),
            self.checker.clone(),
        ))
    }

    /// Starts the background tasks. **Hook for the sync task**: spawn it
    /// here with `self.tasks.spawn(...)`, giving it `self.store.clone()`,
    /// `self.config.mqtt`, `self.connected_flag()` and
    /// `self.shutdown_token()`; it must return once the token is cancelled.
    /// [`Agent::serve`] waits for every task spawned here before closing the
    /// store.
    pub fn spawn_background_tasks(&self) {
        // The catalog pull, when a catalog service is configured. Its
        // client was built (and its TLS files checked) at open.
        let catalog_trigger = self
            .puller
            .lock()
            .ok()
            .and_then(|mut p| p.take())
            .map(|puller| {
                let trigger = puller.trigger();
                let cancel = self.cancel.clone();
                self.tasks.spawn(puller.run(cancel));
                trigger
            });
        // The sync task: ships the outbox, applies acks and status.
        let sync = crate::sync::SyncTask {
            catalog_trigger,
            store: self.store.clone(),
            mqtt: self.config.mqtt.clone(),
            sync: self.config.sync.clone(),
            store_id: self.config.store_id.clone(),
            agent_id: self.config.agent_id.clone(),
            connected: self.connected_flag(),
            metrics: self.metrics.sync.clone(),
            cancel: self.cancel.clone(),
            traces: Default::default(),
            health: crate::sync::HealthSettings {
                heartbeat_secs: self.config.telemetry.heartbeat_secs,
                catalog: Some(self.catalog.clone()),
            },
        };
        self.tasks.spawn(async move {
            if let Err(e) = sync.run().await {
                tracing::error!(error = %e, "sync task stopped");
            }
        });
        // The business day: each day's manifest, written when it closes
        // (and at start for days that closed while the agent was off).
        let store = self.store.clone();
        let cancel = self.cancel.clone();
        let day = self.config.business_day();
        self.tasks.spawn(async move {
            loop {
                let wait = match store.close_days(day.clone()).await {
                    Ok(c) => Duration::from_millis(c.wait_ms),
                    Err(e) => {
                        tracing::warn!(error = %e, "closing the business day failed; retrying");
                        DAY_CLOSE_RETRY
                    }
                };
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        });
        // Retention of acked outbox rows; the sync task acks them.
        let store = self.store.clone();
        let cancel = self.cancel.clone();
        let retention_ms = i64::from(self.config.outbox.retention_days) * 86_400_000;
        self.tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = tick.tick() => {
                        let cutoff = crate::store::now_ms() - retention_ms;
                        match store.prune_acked(cutoff).await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(rows = n, "pruned acked outbox rows"),
                            Err(e) => tracing::warn!(error = %e, "outbox prune failed"),
                        }
                    }
                }
            }
        });
    }

    /// Serves the API on `listener` until `shutdown` resolves, then drains
    /// in-flight requests (up to `http.shutdown_grace_ms`), stops the
    /// background tasks and closes the store and catalog.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AgentError> {
        self.spawn_background_tasks();
        let cancel = self.cancel.clone();
        let grace = Duration::from_millis(self.config.http.shutdown_grace_ms);
        let trigger = cancel.clone();
        tokio::spawn(async move {
            shutdown.await;
            trigger.cancel();
        });
        let server = axum::serve(listener, self.router())
            .with_graceful_shutdown(cancel.clone().cancelled_owned());
        let drained = async {
            cancel.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            r = server => r.map_err(|source| AgentError::Io { what: "serve".into(), source })?,
            () = drained => tracing::warn!(?grace, "in-flight requests did not finish within the grace period"),
        }
        tracing::info!("http server stopped; closing the store");
        self.shutdown().await
    }

    /// Stops the background tasks, then closes the store (after its queued
    /// commands) and flushes the catalog. [`Agent::serve`] ends with this;
    /// tests that only use [`Agent::router`] call it themselves.
    pub async fn shutdown(self) -> Result<(), AgentError> {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.store.close().await?;
        // The catalog is a rebuildable cache: a failed flush (for example
        // on a full disk) is worth a warning, not a failed shutdown.
        if let Err(e) = self.catalog.flush() {
            tracing::warn!(error = %e, "catalog flush at shutdown failed");
        }
        Ok(())
    }
}

/// Opens the agent and serves until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    Agent::open(config)?.serve(listener, shutdown).await
}
