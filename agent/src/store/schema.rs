//! Opening connections: pragmas and the numbered migrations in
//! `agent/migrations/`, tracked with `PRAGMA user_version`.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;

/// The migrations, in order; migration `i` brings `user_version` to `i + 1`.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_init.sql",
        include_str!("../../migrations/0001_init.sql"),
    ),
    (
        "0002_terminals.sql",
        include_str!("../../migrations/0002_terminals.sql"),
    ),
    (
        "0003_drop_line_tables.sql",
        include_str!("../../migrations/0003_drop_line_tables.sql"),
    ),
    (
        "0004_drop_outbox_pending_index.sql",
        include_str!("../../migrations/0004_drop_outbox_pending_index.sql"),
    ),
    (
        "0005_cloud_status_received_at.sql",
        include_str!("../../migrations/0005_cloud_status_received_at.sql"),
    ),
    (
        "0006_release_rejected_offline.sql",
        include_str!("../../migrations/0006_release_rejected_offline.sql"),
    ),
    (
        "0007_cloud_status_seq.sql",
        include_str!("../../migrations/0007_cloud_status_seq.sql"),
    ),
    (
        "0008_resync_open_orders.sql",
        include_str!("../../migrations/0008_resync_open_orders.sql"),
    ),
    (
        "0009_order_traceparent.sql",
        include_str!("../../migrations/0009_order_traceparent.sql"),
    ),
    (
        "0010_business_days.sql",
        include_str!("../../migrations/0010_business_days.sql"),
    ),
    (
        "0011_orders_captured_index.sql",
        include_str!("../../migrations/0011_orders_captured_index.sql"),
    ),
    (
        "0012_returns.sql",
        include_str!("../../migrations/0012_returns.sql"),
    ),
];

/// The last seq the cloud acked, as an SQL scalar subquery (a literal, for
/// `concat!`). Acks are cumulative, so every pending outbox row lies past
/// it: bounding a search by it makes it a range of the rowid (there is no
/// index on `state`; see migration 0004).
macro_rules! last_acked_seq {
    () => {
        "(SELECT last_acked_seq FROM sync_state WHERE id = 1)"
    };
}
pub(crate) use last_acked_seq;

/// The outbox rows still waiting for the cloud, as a `WHERE` condition.
pub(crate) const PENDING: &str = concat!("state = 'pending' AND seq > ", last_acked_seq!());

/// Opens the write connection: WAL, `synchronous=FULL` (a commit is on disk
/// before it returns), then any pending migrations.
pub(crate) fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Setup(format!(
            "journal_mode is {mode}, WAL is required"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Checkpoints run on their own thread (see `checkpoint`), never inside
    // a group commit.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // When a commit starts the WAL over, it trims a file grown by a burst.
    conn.pragma_update(
        None,
        "journal_size_limit",
        super::checkpoint::RESTART_AT_BYTES as i64,
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    migrate(&mut conn)?;
    Ok(conn)
}

/// Opens a connection for an operator command's small write while the
/// agent may be running: WAL (already set by the agent), `synchronous=FULL`,
/// a busy timeout long enough to wait out a group commit, migrations if the
/// database is new. Keeps SQLite's default auto-checkpoint.
pub(crate) fn open_admin(path: &Path) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Setup(format!("create {}: {e}", dir.display())))?;
    }
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Setup(format!(
            "journal_mode is {mode}, WAL is required"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -256)?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// Opens a read-only connection for queries off the write path.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // Small page cache: reads are point lookups and short scans, and the
    // agent's RSS budget is 32 MB.
    conn.pragma_update(None, "cache_size", -512)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if current > known {
        return Err(StoreError::Setup(format!(
            "database schema version {current} is newer than this build ({known})"
        )));
    }
    for (i, (name, sql)) in MIGRATIONS.iter().enumerate() {
        let version = i64::try_from(i).unwrap_or(i64::MAX) + 1;
        if version <= current {
            continue;
        }
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Setup(format!("migration {name}: {e}")))?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(migration = name, version, "applied migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        drop(open_writer(&path).unwrap());
        let conn = open_writer(&path).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
        let reader = open_reader(&path).unwrap();
        let n: i64 = reader
            .query_row("SELECT COUNT(*) FROM sync_state", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }
}
