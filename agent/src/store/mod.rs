//! The durable store: SQLite (WAL, `synchronous=FULL`) behind one writer.
//!
//! - [`Store`] is a cheap clonable handle. Every write (capture, cancel, ack,
//!   status, prune) is a command to the single writer thread
//!   ([`writer`](self)), which commits many commands in one transaction
//!   (group commit) and answers each caller only after that commit. A
//!   refused command leaves nothing behind and does not sink its
//!   neighbours: refusals are decided before a command writes, and a
//!   command that fails after writing sends its group round again with a
//!   savepoint per command (the common case pays for no savepoint).
//! - Reads use a small pool of read-only connections on the blocking pool,
//!   so they never wait for, nor delay, the writer.
//! - The writer keeps the pending-event count, the next `seq` and the
//!   unconfirmed offline-card total in memory (loaded at open), so refusals
//!   such as `backlog_full` cost no query.
//!
//! - [`AdminDb`] is the operator commands' own connection (a second
//!   process, safe while the agent runs); CLI-managed terminals live in
//!   the `terminals` table (`terminals` module).
//!
//! - Returns taken at a till live in the `returns` table: their values
//!   and the one read in [`returns`](self) (the `returns` module), the
//!   writer's op in `writer::returns`.
//!
//! - [`StoreError`] (`error` module) is every operation's error.
//!
//! The sync task uses [`Store::pending_batch`], [`Store::apply_ack`],
//! [`Store::apply_statuses`], [`Store::sync_counts`] and
//! [`Store::prune_acked`].

mod admin;
mod checkpoint;
mod error;
mod health;
mod read;
pub mod report;
mod returns;
mod schema;
mod terminals;
mod types;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use o2c_protocol::{Ack, AgentId, OrderId, ReturnId, StatusUpdate, StoreId, Traceparent};
use tokio::sync::{mpsc, oneshot};

pub use admin::AdminDb;
pub use error::StoreError;
pub use health::HealthFigures;
pub use returns::{
    NewReturn, RefundBody, ReturnLineBody, ReturnOutcome, ReturnState, ReturnView, StoredReturn,
};
pub use terminals::{AddTerminalOutcome, RevokeTerminalOutcome, TerminalRecord, fingerprint};
pub use types::{
    AckOutcome, CancelOutcome, CaptureOutcome, CaptureReceipt, ClosedDay, DayCloses, LocalStatus,
    NewCapture, OrderSummary, OrderSyncState, OutboxEvent, OutboxRow, OutboxState, StatusOutcome,
    StoredOrder, SyncCounts,
};

use crate::business_day::BusinessDay;
use crate::metrics::StoreMetrics;
use read::ReadPool;
use writer::{Command, Op, Reply};

/// How to open a [`Store`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The SQLite file.
    pub path: PathBuf,
    /// Written into every envelope.
    pub store_id: StoreId,
    /// Written into every envelope.
    pub agent_id: AgentId,
    /// Captures and cancels are refused once this many events are pending.
    pub max_pending_events: u64,
    /// Most unconfirmed offline card money (minor units of
    /// `offline_currency`).
    pub offline_total_cap_minor: i64,
    /// The store's currency: the only one an offline card sale may be in,
    /// and the one the cap counts (`None`: no offline card sale at all).
    pub offline_currency: Option<o2c_protocol::Currency>,
    /// Most commands per group commit.
    pub max_commit_batch: usize,
    /// Test-only fault injection ([`FAULT_ABORT_BEFORE_STATUS_STORE`]):
    /// abort the process when a status message reaches the store, before
    /// anything of it is written. Always false in production.
    pub fault_abort_before_status_store: bool,
    /// Depth of the writer's command queue.
    pub queue_depth: usize,
    /// Read-only connections in the read pool.
    pub readers: usize,
    /// Test-only injected clock ([`FAULT_CLOCK_SKEW_SECS`]): added to the
    /// wall clock for every `captured_at` the writer stamps. Always 0 in
    /// production.
    pub clock_skew_secs: i64,
}

impl StoreOptions {
    /// Defaults for everything but the identity and path.
    pub fn new(path: PathBuf, store_id: StoreId, agent_id: AgentId) -> Self {
        Self {
            path,
            store_id,
            agent_id,
            max_pending_events: 1_000_000,
            offline_total_cap_minor: 500_000,
            offline_currency: None,
            max_commit_batch: 2048,
            fault_abort_before_status_store: false,
            queue_depth: 8192,
            readers: 2,
            clock_skew_secs: 0,
        }
    }
}

/// Counters the writer publishes after each commit (no query needed).
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pending: AtomicU64,
    last_seq: AtomicU64,
    offline_exposure: AtomicI64,
    alive: AtomicBool,
}

/// Fault injection for the end-to-end suite: with this variable set to
/// `1` when the agent starts (read once, by `Agent::open`), the process
/// aborts (as abruptly as `kill -9`) when a received status message is
/// about to be stored, so a test can check that the broker delivers it
/// again after a restart. Unset in production.
pub const FAULT_ABORT_BEFORE_STATUS_STORE: &str = "O2C_AGENT_FAULT_ABORT_BEFORE_STATUS_STORE";

/// An injected clock for the end-to-end suite: seconds (may be negative)
/// added to the wall clock when the writer stamps `captured_at`, read once
/// by `Agent::open`. A test sets `-259200` to capture orders "three days
/// ago" and check that the cloud books them on that day. Unset in
/// production.
pub const FAULT_CLOCK_SKEW_SECS: &str = "O2C_AGENT_FAULT_CLOCK_SKEW_SECS";

#[derive(Debug)]
struct Inner {
    tx: mpsc::Sender<Command>,
    fault_abort_before_status_store: bool,
    reads: Arc<ReadPool>,
    shared: Arc<Shared>,
    writer: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: std::sync::Mutex<Option<checkpoint::Checkpointer>>,
}

/// Handle to the store; clone it freely.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    /// Opens (creating and migrating) the database and starts the writer.
    pub fn open(opts: StoreOptions, metrics: StoreMetrics) -> Result<Store, StoreError> {
        let conn = schema::open_writer(&opts.path)?;
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel(opts.queue_depth.max(1));
        let w = writer::Writer::new(conn, &opts, Arc::clone(&shared), metrics)?;
        let reads = Arc::new(ReadPool::open(&opts.path, opts.readers.max(1))?);
        let checkpointer = checkpoint::Checkpointer::start(&opts.path)?;
        let handle = std::thread::Builder::new()
            .name("o2c-store-writer".into())
            .spawn(move || w.run(rx))
            .map_err(|e| StoreError::Setup(format!("spawn writer: {e}")))?;
        Ok(Store {
            inner: Arc::new(Inner {
                tx,
                fault_abort_before_status_store: opts.fault_abort_before_status_store,
                reads,
                shared,
                writer: std::sync::Mutex::new(Some(handle)),
                checkpointer: std::sync::Mutex::new(Some(checkpointer)),
            }),
        })
    }

    async fn call<T>(
        &self,
        op: Op,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Reply,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Command::Op(op, make(tx)))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Commits a new order: the order, its lines and payments, its
    /// `OrderCreated` envelope (next `seq`, fresh UUIDv7 `event_id`) and the
    /// idempotency record, in one transaction. Sets `captured_at` to the
    /// commit time. A repeated `(terminal, key)` with the same request hash
    /// returns the stored response with `replayed: true`.
    pub async fn capture(&self, c: NewCapture) -> Result<CaptureOutcome, StoreError> {
        self.call(Op::Capture(Box::new(c)), Reply::Capture).await
    }

    /// Voids an order: appends `OrderCancelled` to the outbox. Idempotent:
    /// a second call returns the first cancellation.
    pub async fn cancel(
        &self,
        order_id: OrderId,
        reason: String,
        traceparent: Option<Traceparent>,
    ) -> Result<CancelOutcome, StoreError> {
        self.call(
            Op::Cancel {
                order_id,
                reason,
                traceparent,
            },
            Reply::Cancel,
        )
        .await
    }

    /// Commits a return taken at a till: the `returns` row, its
    /// `ReturnRequested` envelope (next `seq`) and the idempotency record,
    /// in one transaction. A return of an order this agent captured is
    /// checked against it and its earlier returns first
    /// ([`StoreError::ReturnRefused`]); one of an order not known here is
    /// taken unverified. A repeated `(terminal, key)` with the same request
    /// hash returns the stored response with `replayed: true`.
    pub async fn request_return(&self, r: NewReturn) -> Result<ReturnOutcome, StoreError> {
        self.call(Op::Return(Box::new(r)), Reply::Return).await
    }

    /// Applies a cumulative ack in one transaction: pending rows with
    /// `seq <= through_seq` become `acked`, those listed in `rejected`
    /// become `rejected` with their code and reason; the offline-card
    /// exposure of acked orders is released and `sync_state` advances.
    /// Applying the same ack twice changes nothing the second time.
    pub async fn apply_ack(&self, ack: &Ack, now_ms: i64) -> Result<AckOutcome, StoreError> {
        self.call(Op::Ack(ack.clone(), now_ms), Reply::Ack).await
    }

    /// Records the cloud statuses of one status message, in order, as one
    /// command (all of them are stored, or none): each once per
    /// `event_id`; an update is ignored (`Stale`) unless its `seq` is
    /// greater than that of the status its order shows (when both have
    /// one) or, otherwise, it is not older than that status. A return's
    /// status (`return_*`, with its `return`) goes to that return, never to
    /// the order (`return_refunded` outranking the others when there is no
    /// `seq` to decide).
    pub async fn apply_statuses(
        &self,
        updates: Vec<StatusUpdate>,
        now_ms: i64,
    ) -> Result<Vec<StatusOutcome>, StoreError> {
        if self.inner.fault_abort_before_status_store {
            tracing::error!("fault injection: aborting before a status message is stored");
            std::process::abort();
        }
        self.call(Op::Status(updates, now_ms), Reply::Status).await
    }

    /// Deletes acked outbox rows acked before `older_than_ms` (and status
    /// dedup records as old). Returns the outbox rows deleted. Never changes
    /// seq assignment: the next seq also follows `sync_state.last_acked_seq`.
    pub async fn prune_acked(&self, older_than_ms: i64) -> Result<u64, StoreError> {
        self.call(Op::Prune(older_than_ms), Reply::Prune).await
    }

    /// Closes every business day of `day` that has ended by the writer's
    /// clock: appends each one's manifest to the outbox (see
    /// `writer::day`). Returns the days closed, oldest first; none when no
    /// day is due.
    pub async fn close_days(&self, day: BusinessDay) -> Result<DayCloses, StoreError> {
        self.call(Op::CloseDays(Box::new(day)), Reply::CloseDays)
            .await
    }

    /// Fault injection for tests on machines that cannot mount a small
    /// filesystem: caps the database at `pages` pages (`PRAGMA
    /// max_page_count`), so growing it fails with `SQLITE_FULL` exactly as
    /// a full disk does. A large value lifts the cap. Returns the new cap.
    #[doc(hidden)]
    pub async fn inject_max_page_count(&self, pages: u64) -> Result<u64, StoreError> {
        self.call(Op::MaxPageCount(pages), Reply::Prune).await
    }

    /// Pending events with `seq > after_seq`, in seq order: at most
    /// `max_events`, stopping before the envelopes would exceed `max_bytes`,
    /// but always at least one when any is pending.
    pub async fn pending_batch(
        &self,
        after_seq: u64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        self.read(move |c| read::pending_batch(c, after_seq, max_events, max_bytes))
            .await
    }

    /// Counts for `GET /v1/sync`. `now_ms` dates the oldest pending event.
    pub async fn sync_counts(&self, now_ms: i64) -> Result<SyncCounts, StoreError> {
        let pending = self.pending_events();
        self.read(move |c| read::sync_counts(c, pending, now_ms))
            .await
    }

    /// Units of `sku` this store sold for carry-out whose stock movement the
    /// cloud has not confirmed yet (no `inventory_confirmed` or later
    /// status): what `GET /v1/products/{sku}` takes off the cloud's
    /// on-hand to say what is available.
    pub async fn unreflected_units(&self, sku: &str) -> Result<i64, StoreError> {
        let sku = sku.to_owned();
        self.read(move |c| read::unreflected_units(c, &sku)).await
    }

    /// The stored answer to a capture `terminal` already made under `key`
    /// with the same request (`None` if it made none; a different request
    /// under that key is [`StoreError::IdempotencyConflict`]). A read, for
    /// requests refused before they reach the writer.
    pub async fn idempotent_replay(
        &self,
        terminal: &str,
        key: &str,
        request_sha256: [u8; 32],
    ) -> Result<Option<String>, StoreError> {
        let (terminal, key) = (terminal.to_owned(), key.to_owned());
        match self
            .read(move |c| read::idempotent(c, &terminal, &key))
            .await?
        {
            Some((hash, response)) if hash.as_slice() == request_sha256.as_slice() => {
                Ok(Some(response))
            }
            Some(_) => Err(StoreError::IdempotencyConflict),
            None => Ok(None),
        }
    }

    /// One order with its local, sync and cloud status.
    pub async fn order(&self, order_id: OrderId) -> Result<Option<StoredOrder>, StoreError> {
        self.read(move |c| read::order(c, order_id)).await
    }

    /// One return with its sync and cloud status.
    pub async fn stored_return(
        &self,
        return_id: ReturnId,
    ) -> Result<Option<StoredReturn>, StoreError> {
        self.read(move |c| returns::read_return(c, return_id)).await
    }

    /// Orders by id (capture time) after `after`, at most `limit`.
    pub async fn list_orders(
        &self,
        after: Option<OrderId>,
        limit: usize,
    ) -> Result<Vec<OrderSummary>, StoreError> {
        self.read(move |c| read::list_orders(c, after, limit)).await
    }

    /// Orders a status resync asks about (see `read::resync_candidates`).
    pub async fn resync_candidates(
        &self,
        after: OrderId,
        from: OrderId,
        cancelled_from: OrderId,
        limit: usize,
    ) -> Result<Vec<OrderId>, StoreError> {
        self.read(move |c| read::resync_candidates(c, after, from, cancelled_from, limit))
            .await
    }

    /// Returns a status resync asks about (see `read::resync_returns`).
    pub async fn resync_returns(
        &self,
        after: ReturnId,
        from_ms: i64,
        limit: usize,
    ) -> Result<Vec<ReturnId>, StoreError> {
        self.read(move |c| read::resync_returns(c, after, from_ms, limit))
            .await
    }

    /// The change counter of the CLI-managed `terminals` table (one point
    /// read): the auth cache reloads the list only when it moved.
    pub async fn terminals_generation(&self) -> Result<i64, StoreError> {
        self.read(terminals::generation).await
    }

    /// The CLI-managed terminals not revoked, with the generation they were
    /// read at.
    pub async fn active_terminals(&self) -> Result<(i64, Vec<TerminalRecord>), StoreError> {
        self.read(terminals::active).await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let pool = Arc::clone(&self.inner.reads);
        tokio::task::spawn_blocking(move || pool.with(f))
            .await
            .map_err(|e| StoreError::Database(format!("read task: {e}")))?
    }

    /// Events not yet acked or rejected (in memory, no query).
    pub fn pending_events(&self) -> u64 {
        self.inner.shared.pending.load(Ordering::Acquire)
    }

    /// The last seq assigned (0 before the first event).
    pub fn last_seq(&self) -> u64 {
        self.inner.shared.last_seq.load(Ordering::Acquire)
    }

    /// Offline card money not yet confirmed by the cloud (minor units).
    pub fn offline_exposure_minor(&self) -> i64 {
        self.inner.shared.offline_exposure.load(Ordering::Acquire)
    }

    /// Whether the writer thread is running.
    pub fn is_alive(&self) -> bool {
        self.inner.shared.alive.load(Ordering::Acquire)
    }

    /// Lets the writer finish every queued command, then closes the
    /// database and joins the thread. Later calls get `WriterGone`.
    pub async fn close(&self) -> Result<(), StoreError> {
        let checkpointer = self
            .inner
            .checkpointer
            .lock()
            .map_err(|_| StoreError::WriterGone)?
            .take();
        if let Some(c) = checkpointer {
            tokio::task::spawn_blocking(move || c.stop())
                .await
                .map_err(|e| StoreError::Database(format!("stop checkpointer: {e}")))?;
        }
        // A full queue only delays this; the writer drains it.
        let _ = self.inner.tx.send(Command::Shutdown).await;
        let handle = self
            .inner
            .writer
            .lock()
            .map_err(|_| StoreError::WriterGone)?
            .take();
        if let Some(h) = handle {
            tokio::task::spawn_blocking(move || h.join())
                .await
                .map_err(|e| StoreError::Database(format!("join writer: {e}")))?
                .map_err(|_| StoreError::Database("writer thread panicked".into()))?;
        }
        Ok(())
    }
}

/// The wall clock in Unix milliseconds (what the store records).
pub fn now_ms() -> i64 {
    writer::unix_ms(time::OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests;
