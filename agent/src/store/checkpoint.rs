//! WAL checkpoints off the write path. The writer runs with
//! `wal_autocheckpoint=0`, so a checkpoint (copying the WAL into the
//! database file and fsyncing it) never stalls a group commit; this thread
//! runs a `PASSIVE` checkpoint on its own connection twice a second
//! instead. With `synchronous=FULL` the database file is synced before the
//! WAL is reused, so durability is unchanged.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::StoreError;

const INTERVAL: Duration = Duration::from_millis(500);

/// The running checkpointer; stop it with [`Checkpointer::stop`].
#[derive(Debug)]
pub(crate) struct Checkpointer {
    stop: mpsc::Sender<()>,
    handle: JoinHandle<()>,
}

impl Checkpointer {
    pub(crate) fn start(path: &Path) -> Result<Self, StoreError> {
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(Duration::from_millis(100))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "cache_size", -256)?;
        let (stop, rx) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("o2c-store-checkpoint".into())
            .spawn(move || {
                // Runs until `stop` is sent or dropped.
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(INTERVAL) {
                    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
                        tracing::debug!(error = %e, "passive checkpoint failed; retrying later");
                    }
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
