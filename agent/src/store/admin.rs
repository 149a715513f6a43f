//! [`AdminDb`]: the operator commands' own connection to the agent's
//! database, opened by a second process (`o2c-agent terminal …`,
//! `status --offline`, `outbox list`, `backup`) and safe while the agent
//! runs: WAL lets readers see a consistent snapshot without blocking the
//! agent's writer, and the rare CLI write (`terminal add|revoke`) waits for
//! the write lock with a busy timeout instead of failing.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

use super::terminals::{self, AddTerminalOutcome, RevokeTerminalOutcome, TerminalRecord};
use super::types::{OutboxRow, OutboxState, SyncCounts};
use super::writer::to_i64;
use super::{StoreError, read, schema};

/// A direct connection to `agent.db` for the operator commands.
#[derive(Debug)]
pub struct AdminDb {
    conn: Connection,
}

impl AdminDb {
    /// Opens an existing database read-only. Fails with
    /// [`StoreError::Setup`] naming the path when there is none.
    pub fn open_read_only(path: &Path) -> Result<AdminDb, StoreError> {
        if !path.exists() {
            return Err(no_database(path));
        }
        let conn = schema::open_reader(path)?;
        Ok(AdminDb { conn })
    }

    /// Opens the database for a small write, creating and migrating it if
    /// needed. Waits up to the busy timeout for the agent's writer.
    pub fn open_read_write(path: &Path) -> Result<AdminDb, StoreError> {
        let conn = schema::open_admin(path)?;
        Ok(AdminDb { conn })
    }

    /// CLI-managed terminals, revoked ones included, oldest first.
    pub fn terminals(&self) -> Result<Vec<TerminalRecord>, StoreError> {
        terminals::list(&self.conn)
    }

    /// Adds a terminal with the SHA-256 of its token; an id revoked before
    /// may be added again (with a new token).
    pub fn add_terminal(
        &mut self,
        id: &str,
        token_sha256: &[u8; 32],
        now_ms: i64,
    ) -> Result<AddTerminalOutcome, StoreError> {
        terminals::add(&mut self.conn, id, token_sha256, now_ms)
    }

    /// Revokes a CLI-managed terminal.
    pub fn revoke_terminal(
        &mut self,
        id: &str,
        now_ms: i64,
    ) -> Result<RevokeTerminalOutcome, StoreError> {
        terminals::revoke(&mut self.conn, id, now_ms)
    }

    /// The figures of `GET /v1/sync`, counted from the database.
    pub fn sync_counts(&self, now_ms: i64) -> Result<SyncCounts, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let pending: i64 = tx.query_row(
            &format!("SELECT COUNT(*) FROM outbox WHERE {}", schema::PENDING),
            [],
            |r| r.get(0),
        )?;
        let counts = read::sync_counts(&tx, u64::try_from(pending).unwrap_or(0), now_ms)?;
        tx.finish()?;
        Ok(counts)
    }

    /// Outbox rows in `state`: pending and rejected oldest first, acked
    /// newest first; at most `limit`.
    pub fn outbox(&self, state: OutboxState, limit: u64) -> Result<Vec<OutboxRow>, StoreError> {
        let order = match state {
            OutboxState::Acked => "DESC",
            OutboxState::Pending | OutboxState::Rejected => "ASC",
        };
        // Pending rows all lie past the last ack (see `schema::PENDING`).
        let bound = match state {
            OutboxState::Pending => {
                concat!(" AND seq > ", schema::last_acked_seq!())
            }
            OutboxState::Acked | OutboxState::Rejected => "",
        };
        let mut stmt = self.conn.prepare(&format!(
            "SELECT seq, event_id, event_type, order_id, created_at_ms, acked_at_ms, \
             reject_code, reject_reason FROM outbox WHERE state = ?1{bound} \
             ORDER BY seq {order} LIMIT ?2"
        ))?;
        let mut rows = stmt.query(params![state.as_str(), to_i64(limit)])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let seq: i64 = r.get(0)?;
            out.push(OutboxRow {
                seq: u64::try_from(seq)
                    .map_err(|_| StoreError::Corrupt(format!("outbox seq {seq}")))?,
                event_id: r.get(1)?,
                event_type: r.get(2)?,
                order_id: r.get(3)?,
                created_at_ms: r.get(4)?,
                acked_at_ms: r.get(5)?,
                reject_code: r.get(6)?,
                reject_reason: r.get(7)?,
            });
        }
        Ok(out)
    }

    /// Copies the database to `dest` with SQLite's online backup API, in one
    /// step, so the copy is one consistent snapshot even while the agent
    /// commits (WAL: the snapshot does not block the writer). The copy is
    /// written to `dest` + `.tmp`, checked with `PRAGMA integrity_check`,
    /// synced and then renamed into place. Refuses to overwrite `dest`.
    /// Returns the copy's page count.
    pub fn backup_to(&self, dest: &Path) -> Result<u64, StoreError> {
        use rusqlite::backup::{Backup, StepResult};
        if dest.exists() {
            return Err(StoreError::Setup(format!(
                "{} already exists; choose a new file",
                dest.display()
            )));
        }
        let tmp = tmp_path(dest);
        let _ = std::fs::remove_file(&tmp);
        let result = (|| {
            let mut out = Connection::open(&tmp)?;
            out.pragma_update(None, "synchronous", "FULL")?;
            {
                let backup = Backup::new(&self.conn, &mut out)?;
                // A single step (-1 = every page) reads one snapshot; a
                // stepwise copy would restart whenever the agent commits.
                let mut tries = 0;
                loop {
                    match backup.step(-1)? {
                        StepResult::Done => break,
                        StepResult::More => {}
                        StepResult::Busy | StepResult::Locked if tries < 50 => {
                            tries += 1;
                            std::thread::sleep(std::time::Duration::from_millis(100));
                        }
                        other => {
                            return Err(StoreError::Database(format!("backup step: {other:?}")));
                        }
                    }
                }
            }
            let check: String = out.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
            if check != "ok" {
                return Err(StoreError::Corrupt(format!(
                    "the copy failed integrity_check: {check}"
                )));
            }
            let pages: i64 = out.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            out.close().map_err(|(_, e)| StoreError::from(e))?;
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| io("sync the copy", &tmp, e))?;
            Ok(u64::try_from(pages).unwrap_or(0))
        })();
        let pages = match result {
            Ok(p) => p,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        std::fs::rename(&tmp, dest).map_err(|e| io("rename the copy to", dest, e))?;
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io("sync directory", dir, e))?;
        }
        Ok(pages)
    }
}

fn tmp_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::StorageIo(format!("{what} {}: {e}", path.display()))
}

fn no_database(path: &Path) -> StoreError {
    StoreError::Setup(format!(
        "no database at {} (has the agent run with this data_dir?)",
        path.display()
    ))
}
