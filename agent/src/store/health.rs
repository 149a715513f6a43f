//! The figures of the agent's health heartbeat (`crate::sync::health`):
//! the sync counts, the capture-to-ack lag of the last acked event, and
//! the free space of the database's filesystem. Reads only, on the read
//! pool; every query is a point or index read, so a heartbeat costs the
//! same with a million events pending.

use std::path::PathBuf;

use rusqlite::{Connection, OptionalExtension};

use super::types::SyncCounts;
use super::{Store, StoreError, read};

/// What a heartbeat reports about the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthFigures {
    /// Pending, oldest pending age, last acked seq and time, rejected.
    pub counts: SyncCounts,
    /// For the last acked event (the one at `last_acked_seq`, if it was
    /// acked rather than rejected and not pruned): its ack time minus its
    /// capture time, in milliseconds.
    pub ingest_lag_ms: Option<u64>,
    /// Free bytes (for an unprivileged process) on the filesystem of the
    /// database; `None` when it cannot be read.
    pub disk_free_bytes: Option<u64>,
}

impl Store {
    /// The figures of one heartbeat at `now_ms`.
    pub async fn health_figures(&self, now_ms: i64) -> Result<HealthFigures, StoreError> {
        let pending = self.pending_events();
        self.read(move |c| {
            let counts = read::sync_counts(c, pending, now_ms)?;
            let ingest_lag_ms = last_ack_lag(c, counts.last_acked_seq)?;
            let disk_free_bytes = database_dir(c)?.and_then(|d| disk_free(&d));
            Ok(HealthFigures {
                counts,
                ingest_lag_ms,
                disk_free_bytes,
            })
        })
        .await
    }
}

/// `acked_at_ms - created_at_ms` of the event at `last_acked_seq`.
fn last_ack_lag(c: &Connection, last_acked_seq: u64) -> Result<Option<u64>, StoreError> {
    let Ok(seq) = i64::try_from(last_acked_seq) else {
        return Ok(None);
    };
    if seq == 0 {
        return Ok(None);
    }
    let lag: Option<Option<i64>> = c
        .prepare_cached(
            "SELECT acked_at_ms - created_at_ms FROM outbox WHERE seq = ?1 AND state = 'acked'",
        )?
        .query_row([seq], |r| r.get(0))
        .optional()?;
    Ok(lag.flatten().map(|ms| u64::try_from(ms).unwrap_or(0)))
}

/// The directory of the main database file.
fn database_dir(c: &Connection) -> Result<Option<PathBuf>, StoreError> {
    let file: Option<String> = c
        .prepare_cached("SELECT file FROM pragma_database_list WHERE name = 'main'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(file
        .filter(|f| !f.is_empty())
        .and_then(|f| PathBuf::from(f).parent().map(PathBuf::from)))
}

/// Free bytes available to an unprivileged process on `dir`'s filesystem.
fn disk_free(dir: &std::path::Path) -> Option<u64> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

#[cfg(test)]
mod tests {
    use o2c_protocol::{AgentId, StoreId};

    use super::*;
    use crate::metrics::StoreMetrics;
    use crate::store::StoreOptions;

    #[tokio::test]
    async fn figures_of_a_fresh_store() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions::new(
            dir.path().join("agent.db"),
            StoreId::new("S1").unwrap(),
            AgentId::new("A1").unwrap(),
        );
        let store = Store::open(opts, StoreMetrics::default()).unwrap();
        let f = store.health_figures(1_000).await.unwrap();
        assert_eq!(f.counts.pending_events, 0);
        assert_eq!(f.counts.last_acked_seq, 0);
        assert_eq!(f.ingest_lag_ms, None);
        assert!(f.disk_free_bytes.is_some_and(|b| b > 0), "{f:?}");
        store.close().await.unwrap();
    }
}
