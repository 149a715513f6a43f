//! WAL checkpoints. The writer runs with `wal_autocheckpoint=0`, so no
//! checkpoint ever runs inside a group commit. Instead:
//!
//! - the writer itself runs a `PASSIVE` checkpoint between groups, when
//!   nothing is queued and 50 ms have passed since its last one
//!   (`Writer::checkpoint`);
//! - this thread, on its own connection, runs one every [`INTERVAL`] as a
//!   backstop (a writer that is never idle never checkpoints), and the
//!   `RESTART` described below.
//!
//! With `synchronous=FULL` the database file is synced before the WAL is
//! reused, so durability is unchanged.
//!
//! Why the writer, and why so often: a checkpoint ends with an fsync of the
//! database file, and a group commit whose WAL fsync lands behind it waits
//! for the disk to write the whole checkpoint, and every till in that group
//! waits too. Small checkpoints keep that wait short, and running them on
//! the writer between groups means none overlaps a commit's fsync. Measured
//! with `o2c-bench capture` (2,000 orders/s offered, open-loop p99): this
//! thread alone every 500 ms, 47 ms with 6 slow (over 16 ms) fsyncs in 10 s;
//! every 100 ms, 16 ms; every 50 ms, 9.8 to 20 ms with 3 to 4 slow fsyncs;
//! the writer's own every 50 ms, 17 to 24 ms with 1 to 2 (the disk was
//! noisier during those paired runs); no checkpoint at all, 9.3 ms with none.
//!
//! Passive checkpoints alone never let the WAL start over while captures
//! keep coming (the writer appends after the last frame as long as any
//! frame is not yet copied back), and the file grew past 1 GB in a sustained
//! load test. So once the WAL is over [`RESTART_AT_BYTES`], the thread runs
//! a `RESTART` checkpoint: it briefly holds off the writer (whose busy
//! timeout is 5 s) while it copies the last frames, and the next commit then
//! writes from the start of the WAL again. `journal_size_limit` then trims
//! the file back to that size.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::StoreError;

/// How often this thread checkpoints (the writer's own, when it is idle,
/// are more frequent; see the module docs).
const INTERVAL: Duration = Duration::from_secs(1);

/// WAL size above which the checkpoint restarts the log.
pub(crate) const RESTART_AT_BYTES: u64 = 64 * 1024 * 1024;

fn wal_path(db: &Path) -> PathBuf {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// One checkpoint: `RESTART` once the WAL file is over `restart_at` bytes,
/// `PASSIVE` otherwise. Returns the mode it ran and whether it completed.
fn checkpoint(conn: &rusqlite::Connection, wal: &Path, restart_at: u64) -> (&'static str, bool) {
    let big = std::fs::metadata(wal).is_ok_and(|m| m.len() > restart_at);
    let mode = if big {
        // RESTART holds the writer off while it copies what is left and
        // syncs the database: copy the bulk first without blocking anyone,
        // so that pause stays short.
        run_checkpoint(conn, "PASSIVE");
        "RESTART"
    } else {
        "PASSIVE"
    };
    (mode, run_checkpoint(conn, mode))
}

/// Runs one `wal_checkpoint(mode)`; true if it completed.
fn run_checkpoint(conn: &rusqlite::Connection, mode: &'static str) -> bool {
    // One row: (busy, WAL frames, frames checkpointed); busy means a reader
    // or the writer held it off: the next tick tries again.
    match conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(0) => true,
        Ok(_) => {
            tracing::debug!(mode, "checkpoint held off; retrying later");
            false
        }
        Err(e) => {
            tracing::debug!(mode, error = %e, "checkpoint failed; retrying later");
            false
        }
    }
}

/// The running checkpointer; stop it with [`Checkpointer::stop`].
#[derive(Debug)]
pub(crate) struct Checkpointer {
    stop: mpsc::Sender<()>,
    handle: JoinHandle<()>,
}

impl Checkpointer {
    pub(crate) fn start(path: &Path) -> Result<Self, StoreError> {
        let wal = wal_path(path);
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(Duration::from_millis(100))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "cache_size", -256)?;
        conn.pragma_update(None, "journal_size_limit", RESTART_AT_BYTES as i64)?;
        let (stop, rx) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("o2c-store-checkpoint".into())
            .spawn(move || {
                // Runs until `stop` is sent or dropped.
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(INTERVAL) {
                    checkpoint(&conn, &wal, RESTART_AT_BYTES);
                }
            })
            .map_err(|e| StoreError::Setup(format!("spawn checkpointer: {e}")))?;
        Ok(Self { stop, handle })
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        if self.handle.join().is_err() {
            tracing::error!("checkpoint thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal_len(wal: &Path) -> u64 {
        std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
    }

    /// A WAL grown past the limit is restarted, and the next commit trims
    /// the file back to `journal_size_limit`.
    #[test]
    fn a_big_wal_is_restarted_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let writer = rusqlite::Connection::open(&db).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
                 PRAGMA journal_size_limit=1048576;
                 CREATE TABLE t(x BLOB);",
            )
            .unwrap();
        let blob = vec![7u8; 64 * 1024];
        for _ in 0..64 {
            writer
                .execute("INSERT INTO t VALUES (?1)", [&blob])
                .unwrap();
        }
        let wal = wal_path(&db);
        assert!(wal_len(&wal) > 4 << 20, "the WAL holds the 4 MiB written");
        let reader = rusqlite::Connection::open(&db).unwrap();
        assert_eq!(checkpoint(&reader, &wal, 1 << 20), ("RESTART", true));
        writer.execute("INSERT INTO t VALUES (x'00')", []).unwrap();
        assert!(
            wal_len(&wal) <= 1 << 20,
            "WAL not trimmed: {} bytes",
            wal_len(&wal)
        );
        let rows: i64 = reader
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 65, "nothing lost across the restart");
        // Below the limit, the checkpoint stays passive.
        assert_eq!(checkpoint(&reader, &wal, 1 << 20).0, "PASSIVE");
    }
}
