//! Benchmark scenarios run by `o2c-bench <scenario> [--json FILE]`.
//!
//! Each scenario is one module exposing `pub const SCENARIO: Scenario`, and is
//! registered once in [`SCENARIOS`]. A scenario gets the common [`BenchArgs`],
//! measures, and returns a [`Measurement`]: its metrics, plus a baseline
//! measured in the same run for comparison (for `fsync`, raw file fdatasync).
//! Async scenarios build their own tokio runtime inside `run`.
//!
//! - [`fsync`]: SQLite WAL commit cost on this disk (the outbox's floor).
//! - [`capture`]: durable order capture over HTTP at the agent.
//! - [`drain`]: an offline backlog drained through MQTT, ingest and Kafka.
//! - [`e2e`]: latency from HTTP 201 to the cloud's ack at a steady rate.
//! - [`ingest`]: the ingest's events/s and CPU under many simulated agents.
//! - [`ingest::herd`]: 1,000 agents with backlogs reconnecting at once:
//!   drain time, fairness, no broker drops ([`ingest::flood`] is the quota
//!   world `tests/tests/ingest_quota.rs` runs).
//! - [`saga`]: capture → `completed` at the agent through the whole saga.
//! - [`capture::catalog`]: the catalog down-sync: a full sync's time and
//!   RSS, capture during it, 304s under 1,000 pollers, delta latency.
//! - [`analytics`]: the analytics service: a backfill's time and CPU
//!   against a bare consumer, event → Redis and → ClickHouse latency.
//! - [`reconcile`]: `reconcile --all` over 1,000 stores × 2,000 orders
//!   against a bare read of the same history.
//! - [`api`]: the cloud order API's 201 and 201 → `orders.created` at an
//!   open-loop rate, against `GET /openapi.json` at the same rate.
//! - [`notify`]: customer notifications: e-mails/s and per CPU s against a
//!   bare SMTP client, event → mail accepted at an open-loop rate.
//! - [`machine`]: the machine description stored with every result.
//! - [`report`]: the JSON document and the printed table.

pub mod analytics;
pub mod api;
pub mod capture;
mod cpu;
pub mod drain;
pub mod e2e;
pub mod fleet;
pub mod fsync;
pub mod ingest;
pub mod lossy;
pub mod machine;
pub mod notify;
pub mod reconcile;
pub mod report;
pub mod saga;
mod sync_world;

use std::path::PathBuf;

/// Every scenario `o2c-bench` knows, in `--help` order. Add new ones here.
pub const SCENARIOS: &[Scenario] = &[
    fsync::SCENARIO,
    capture::SCENARIO,
    drain::SCENARIO,
    e2e::SCENARIO,
    lossy::SCENARIO,
    ingest::SCENARIO,
    ingest::herd::SCENARIO,
    saga::SCENARIO,
    capture::catalog::SCENARIO,
    capture::traced::SCENARIO,
    analytics::SCENARIO,
    fleet::SCENARIO,
    reconcile::SCENARIO,
    api::SCENARIO,
    notify::SCENARIO,
];

/// Looks a scenario up by name.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

/// One registered benchmark.
#[derive(Debug)]
pub struct Scenario {
    /// The command-line name.
    pub name: &'static str,
    /// One line for `--help`.
    pub about: &'static str,
    /// Runs the benchmark.
    pub run: fn(&BenchArgs) -> Result<Measurement, BenchError>,
}

/// Options every scenario may read; each documents its own defaults.
#[derive(Debug, Clone, Default)]
pub struct BenchArgs {
    /// Number of operations to time (`--n`).
    pub n: Option<u64>,
    /// Items per batch where a scenario batches (`--batch`).
    pub batch: Option<u64>,
    /// Working directory for files (`--dir`); defaults to the current one.
    pub dir: Option<PathBuf>,
}

impl BenchArgs {
    /// `--dir`, or the current directory; and a fresh temp dir in it
    /// named `.{prefix}*`, removed when dropped.
    pub fn scratch(&self, prefix: &str) -> Result<(PathBuf, tempfile::TempDir), BenchError> {
        let base = match &self.dir {
            Some(dir) => dir.clone(),
            None => std::env::current_dir().map_err(|e| BenchError::io("reading the cwd", e))?,
        };
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{prefix}"))
            .tempdir_in(&base)
            .map_err(|e| BenchError::io(format!("creating a temp dir in {}", base.display()), e))?;
        Ok((base, tmp))
    }
}

/// What a scenario measured, in display order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measurement {
    /// The parameters actually used (n, batch size, directory, ...).
    pub params: Vec<(String, serde_json::Value)>,
    /// The scenario's results; names carry their unit (`_per_s`, `_ms`).
    pub metrics: Vec<(String, f64)>,
    /// A reference measured in the same run on the same machine.
    pub baseline: Vec<(String, f64)>,
}

impl Measurement {
    /// Records a parameter.
    pub fn param(&mut self, name: &str, value: impl Into<serde_json::Value>) {
        self.params.push((name.to_owned(), value.into()));
    }

    /// Records a metric.
    pub fn metric(&mut self, name: &str, value: f64) {
        self.metrics.push((name.to_owned(), value));
    }

    /// Records a baseline value.
    pub fn baseline(&mut self, name: &str, value: f64) {
        self.baseline.push((name.to_owned(), value));
    }
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the benchmark was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// SQLite failed.
    #[error("sqlite: {what}: {source}")]
    Sqlite {
        /// What the benchmark was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// The latency histogram could not be built or fed.
    #[error("histogram: {0}")]
    Histogram(String),
    /// A bad argument.
    #[error("invalid argument: {0}")]
    Invalid(String),
}

impl BenchError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn sqlite(what: impl Into<String>, source: rusqlite::Error) -> Self {
        Self::Sqlite {
            what: what.into(),
            source,
        }
    }
}

/// Wraps a harness, broker or client failure as the bench's one error type.
pub(crate) fn harness(what: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::io(what, std::io::Error::other(e.to_string()))
}

/// Runs an async scenario on a multi-threaded tokio runtime of its own.
pub(crate) fn block_on<T>(
    scenario: impl std::future::Future<Output = Result<T, BenchError>>,
) -> Result<T, BenchError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::io("building a runtime", e))?
        .block_on(scenario)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_are_unique_and_findable() {
        for scenario in SCENARIOS {
            assert_eq!(find(scenario.name).map(|s| s.name), Some(scenario.name));
        }
        let mut names: Vec<_> = SCENARIOS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SCENARIOS.len());
        assert!(find("no-such-scenario").is_none());
    }
}
