//! Prometheus metrics (`GET /metrics`, OpenMetrics text format).
//!
//! - `o2c_agent_captures_total{result}`: `created`, `replayed`, `refused`.
//! - `o2c_agent_capture_seconds`: capture latency, request in to answer out.
//! - `o2c_agent_returns_total{result}`: returns taken at a till, `created`,
//!   `replayed`, `refused` (by any error; `errors_total` has the code).
//! - `o2c_agent_errors_total{code}`: API errors by their `error.code`.
//! - `o2c_agent_outbox_pending`: events waiting for the cloud.
//! - `o2c_agent_offline_exposure_minor`: unconfirmed offline card money.
//! - `o2c_agent_sync_connected`: 1 while the sync task is connected.
//! - `o2c_agent_store_commits_total`, `o2c_agent_store_commit_errors_total`,
//!   `o2c_agent_store_commit_seconds`, `o2c_agent_store_commit_batch_commands`:
//!   the writer's group commits; `o2c_agent_store_careful_retries_total`:
//!   groups run again with a savepoint per command after one failed midway.
//! - `o2c_agent_status_resyncs_total`: status resyncs sent (requests
//!   naming the open orders); `o2c_agent_status_resynced_total`: updates of
//!   a resync answer that changed an order's status (ones the broker lost).
//! - `o2c_agent_store_sync_seconds`: the `COMMIT` alone (the WAL write and
//!   its fsync): when it tracks `commit_seconds`, the disk is the bottleneck.
//! - `o2c_agent_catalog_version`, `o2c_agent_catalog_stock_version`: what
//!   the catalog cache holds; `o2c_agent_catalog_last_success_seconds`:
//!   Unix time of the last pull that succeeded;
//!   `o2c_agent_catalog_pull_errors_total`: pulls that failed or were
//!   refused (the previous catalog kept serving).
//! - `o2c_agent_stock_checks_total{result}`: ship-to-home stock checks
//!   (`verified`, `out_of_stock`, `offline`, `breaker_open`, `unavailable`,
//!   ...); `o2c_agent_stock_check_breaker_state`: 0 closed, 1 open, 2
//!   half-open.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The writer's metrics (handed to [`crate::store::Store::open`]).
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    pub(crate) commits: Counter,
    pub(crate) commit_errors: Counter,
    pub(crate) careful_retries: Counter,
    pub(crate) commit_seconds: Histogram,
    pub(crate) sync_seconds: Histogram,
    pub(crate) batch_commands: Histogram,
    pub(crate) pending: Gauge,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            commits: Counter::default(),
            commit_errors: Counter::default(),
            careful_retries: Counter::default(),
            commit_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 14)),
            sync_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 14)),
            batch_commands: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            pending: Gauge::default(),
        }
    }
}

/// The catalog pull's metrics (handed to [`crate::catalog::pull::Puller`]).
#[derive(Debug, Clone, Default)]
pub struct CatalogMetrics {
    pub(crate) version: Gauge,
    pub(crate) stock_version: Gauge,
    pub(crate) last_success: Gauge,
    pub(crate) errors: Counter,
    pub(crate) stock_checks: Family<ResultLabel, Counter>,
    pub(crate) breaker_state: Gauge,
}

impl CatalogMetrics {
    /// Counts a ship-to-home stock check by result.
    pub(crate) fn stock_check(&self, result: &'static str) {
        self.stock_checks
            .get_or_create(&ResultLabel { result })
            .inc();
    }
}

/// The sync task's metrics (handed to [`crate::sync::SyncTask`]).
#[derive(Debug, Clone, Default)]
pub struct SyncMetrics {
    pub(crate) resyncs: Counter,
    pub(crate) resynced: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabel {
    pub(crate) result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CodeLabel {
    pub(crate) code: &'static str,
}

/// Every metric of the agent and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub(crate) store: StoreMetrics,
    pub(crate) sync: SyncMetrics,
    pub(crate) catalog: CatalogMetrics,
    pub(crate) captures: Family<ResultLabel, Counter>,
    pub(crate) capture_seconds: Histogram,
    pub(crate) returns: Family<ResultLabel, Counter>,
    pub(crate) errors: Family<CodeLabel, Counter>,
    pub(crate) offline_exposure: Gauge,
    pub(crate) sync_connected: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Builds and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("o2c_agent");
        let store = StoreMetrics::default();
        let sync = SyncMetrics::default();
        let catalog = CatalogMetrics::default();
        registry.register(
            "catalog_version",
            "The catalog version the cache holds",
            catalog.version.clone(),
        );
        registry.register(
            "catalog_stock_version",
            "The stock version the cache holds",
            catalog.stock_version.clone(),
        );
        registry.register(
            "catalog_last_success_seconds",
            "Unix time of the last catalog pull that succeeded",
            catalog.last_success.clone(),
        );
        registry.register(
            "stock_checks",
            "Ship-to-home stock checks by result (verified, out_of_stock, offline, breaker_open, unavailable, ...)",
            catalog.stock_checks.clone(),
        );
        registry.register(
            "stock_check_breaker_state",
            "The stock check's circuit breaker: 0 closed, 1 open, 2 half-open",
            catalog.breaker_state.clone(),
        );
        registry.register(
            "catalog_pull_errors",
            "Catalog pulls that failed or were refused (the previous catalog kept serving)",
            catalog.errors.clone(),
        );
        let captures = Family::<ResultLabel, Counter>::default();
        let capture_seconds = Histogram::new(exponential_buckets(0.000_25, 2.0, 14));
        let errors = Family::<CodeLabel, Counter>::default();
        let offline_exposure = Gauge::default();
        let sync_connected = Gauge::default();
        registry.register("captures", "Order captures by result", captures.clone());
        let returns = Family::<ResultLabel, Counter>::default();
        registry.register(
            "returns",
            "Returns taken at a till by result",
            returns.clone(),
        );
        registry.register(
            "capture_seconds",
            "Capture latency, request received to answer sent",
            capture_seconds.clone(),
        );
        registry.register("errors", "API errors by error code", errors.clone());
        registry.register(
            "outbox_pending",
            "Events waiting for the cloud",
            store.pending.clone(),
        );
        registry.register(
            "offline_exposure_minor",
            "Offline-authorised card money not yet confirmed by the cloud",
            offline_exposure.clone(),
        );
        registry.register(
            "sync_connected",
            "1 while the sync task is connected to the cloud",
            sync_connected.clone(),
        );
        registry.register(
            "status_resyncs",
            "Status resyncs sent: requests naming the orders not yet final",
            sync.resyncs.clone(),
        );
        registry.register(
            "status_resynced",
            "Updates of a resync answer that changed an order's status (lost on the way)",
            sync.resynced.clone(),
        );
        registry.register(
            "store_commits",
            "Group commits of the store writer",
            store.commits.clone(),
        );
        registry.register(
            "store_commit_errors",
            "Group commits that failed (nothing of them was kept)",
            store.commit_errors.clone(),
        );
        registry.register(
            "store_careful_retries",
            "Groups run again with a savepoint per command, after one failed midway",
            store.careful_retries.clone(),
        );
        registry.register(
            "store_commit_seconds",
            "Duration of one group commit, including its fsync",
            store.commit_seconds.clone(),
        );
        registry.register(
            "store_sync_seconds",
            "Duration of a group commit's COMMIT alone: the WAL write and its fsync",
            store.sync_seconds.clone(),
        );
        registry.register(
            "store_commit_batch_commands",
            "Commands per group commit",
            store.batch_commands.clone(),
        );
        Self {
            registry,
            store,
            sync,
            catalog,
            captures,
            capture_seconds,
            returns,
            errors,
            offline_exposure,
            sync_connected,
        }
    }

    /// Counts an API error by code.
    pub(crate) fn error(&self, code: &'static str) {
        self.errors.get_or_create(&CodeLabel { code }).inc();
    }

    /// Counts a capture by result.
    pub(crate) fn capture(&self, result: &'static str) {
        self.captures.get_or_create(&ResultLabel { result }).inc();
    }

    /// Counts a return request by result.
    pub(crate) fn return_outcome(&self, result: &'static str) {
        self.returns.get_or_create(&ResultLabel { result }).inc();
    }

    /// Renders the registry.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            out = format!("# encoding failed: {e}\n");
        }
        out
    }
}
