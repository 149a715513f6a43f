//! The single writer: owns the only write connection and commits queued
//! commands in groups.
//!
//! Loop: block for one command, take every other command already queued
//! (up to `max_commit_batch`), run them in one `BEGIN IMMEDIATE`
//! transaction, `COMMIT` (one fsync for the whole group), then answer every
//! caller. No savepoints in the common case: a command refused before it
//! wrote anything (SQLite's change counter did not move) needs no undo; one
//! that failed after writing rolls the group back, and the group runs again
//! with each command in its own savepoint, so only that one is refused.
//! When nothing is queued, the writer also runs a small `PASSIVE`
//! checkpoint between groups (see `checkpoint` for why there).
//!
//! The operations themselves: `ops` (capture, cancel, and the sync task's
//! ack, status and prune), `returns` (a return taken at a till, and the
//! acks and cloud statuses of returns) and `day` (closing business days).
//!
//! In-memory counters (next seq, pending events, offline exposure) are
//! staged per command and published only after the commit succeeds, so a
//! failed commit leaves them untouched and the seq stays gap-free.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use o2c_protocol::{Ack, AgentId, OrderId, StatusUpdate, StoreId, Traceparent};
use rusqlite::Connection;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

mod day;
mod ops;
mod returns;

use super::returns::{NewReturn, ReturnOutcome};
use super::types::{
    AckOutcome, CancelOutcome, CaptureOutcome, DayCloses, NewCapture, StatusOutcome,
};
use super::{Shared, StoreError, StoreOptions};
use crate::business_day::BusinessDay;
use crate::metrics::StoreMetrics;

/// A group commit this slow is logged (with how much of it was the fsync).
const SLOW_COMMIT: Duration = Duration::from_millis(50);

/// How often the writer checkpoints between groups when it is idle.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

/// A request to the writer.
pub(crate) enum Command {
    /// A write, answered after its group commits.
    Op(Op, Reply),
    /// Finish everything queued before this, then stop.
    Shutdown,
}

/// The writes the writer performs.
pub(crate) enum Op {
    Capture(Box<NewCapture>),
    Cancel {
        order_id: OrderId,
        reason: String,
        traceparent: Option<Traceparent>,
    },
    /// A return taken at a till (`returns`).
    Return(Box<NewReturn>),
    Ack(Ack, i64),
    /// One status message's updates, applied in order.
    Status(Vec<StatusUpdate>, i64),
    Prune(i64),
    /// Close every business day due (`day`).
    CloseDays(Box<BusinessDay>),
    /// Test hook: `PRAGMA max_page_count` (answered through `Reply::Prune`).
    MaxPageCount(u64),
}

type Tx<T> = oneshot::Sender<Result<T, StoreError>>;

/// Where the answer goes.
pub(crate) enum Reply {
    Capture(Tx<CaptureOutcome>),
    Cancel(Tx<CancelOutcome>),
    Return(Tx<ReturnOutcome>),
    Ack(Tx<AckOutcome>),
    Status(Tx<Vec<StatusOutcome>>),
    Prune(Tx<u64>),
    CloseDays(Tx<DayCloses>),
}

/// A committed [`Writer::attempt`].
struct Committed {
    /// The counters as they stand after it.
    staged: State,
    /// One per op, in order.
    answers: Vec<Result<Done, StoreError>>,
    /// How long the `COMMIT` (WAL write and fsync) took.
    sync: Duration,
}

/// Why an [`Writer::attempt`] did not commit.
enum Attempt {
    /// A command failed after writing: run the group again with savepoints.
    Careful,
    /// Nothing of the group was kept.
    Failed(StoreError),
}

enum Done {
    Capture(CaptureOutcome),
    Cancel(CancelOutcome),
    Return(ReturnOutcome),
    Ack(AckOutcome),
    Status(Vec<StatusOutcome>),
    Prune(u64),
    CloseDays(DayCloses),
}

fn mismatch() -> StoreError {
    StoreError::Database("internal: reply kind mismatch".into())
}

impl Reply {
    fn send(self, r: Result<Done, StoreError>) {
        // A caller that went away (client disconnected) is not an error: the
        // command still committed, and a retry replays it.
        match self {
            Reply::Capture(tx) => drop(tx.send(r.and_then(|d| match d {
                Done::Capture(x) => Ok(x),
                _ => Err(mismatch()),
            }))),
            Reply::Cancel(tx) => drop(tx.send(r.and_then(|d| match d {
                Done::Cancel(x) => Ok(x),
                _ => Err(mismatch()),
            }))),
            Reply::Return(tx) => drop(tx.send(r.and_then(|d| match d {
                Done::Return(x) => Ok(x),
                _ => Err(mismatch()),
            }))),
            Reply::Ack(tx) => drop(tx.send(r.and_then(|d| match d {
                Done::Ack(x) => Ok(x),
                _ => Err(mismatch()),
            }))),
            Reply::Status(tx) => drop(tx.send(r.and_then(|d| match d {
                Done::Status(x) => Ok(x),
                _ => Err(mismatch()),
            }))),
            Reply::Prune(tx) => drop(tx.send(r.and_then(|d| match d {
                Done::Prune(x) => Ok(x),
                _ => Err(mismatch()),
            }))),
            Reply::CloseDays(tx) => drop(tx.send(r.and_then(|d| match d {
                Done::CloseDays(x) => Ok(x),
                _ => Err(mismatch()),
            }))),
        }
    }
}

/// Counters kept in memory; staged per batch, published after commit.
#[derive(Debug, Clone, Copy)]
struct State {
    next_seq: u64,
    pending: u64,
    exposure: i64,
    last_acked_seq: u64,
}

pub(crate) struct Writer {
    conn: Connection,
    store_id: StoreId,
    agent_id: AgentId,
    max_pending: u64,
    offline_cap: i64,
    offline_currency: Option<o2c_protocol::Currency>,
    max_batch: usize,
    state: State,
    shared: Arc<Shared>,
    metrics: StoreMetrics,
    /// True while the connection runs at `synchronous=NORMAL` (ack-only
    /// groups, see [`Writer::set_durability`]).
    relaxed: bool,
    /// When [`Writer::checkpoint`] last ran.
    checkpointed: Instant,
    /// The injected clock's offset (`StoreOptions::clock_skew_secs`).
    clock_skew: time::Duration,
}

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        opts: &StoreOptions,
        shared: Arc<Shared>,
        metrics: StoreMetrics,
    ) -> Result<Self, StoreError> {
        let max_seq: i64 =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM outbox", [], |r| r.get(0))?;
        let last_acked: i64 = conn.query_row(
            "SELECT last_acked_seq FROM sync_state WHERE id = 1",
            [],
            |r| r.get(0),
        )?;
        let pending: i64 = conn.query_row(
            &format!(
                "SELECT COUNT(*) FROM outbox WHERE {}",
                super::schema::PENDING
            ),
            [],
            |r| r.get(0),
        )?;
        // Only sales in the store's currency count against its cap (an
        // agent configured before `store.currency` may hold others: they
        // are still released by their ack, but never summed with these).
        let exposure: i64 = conn.query_row(
            "SELECT COALESCE(SUM(offline_card_minor), 0) FROM orders \
             WHERE offline_card_minor > 0 AND offline_released = 0 AND currency = ?1",
            [opts.offline_currency.map(|c| c.code())],
            |r| r.get(0),
        )?;
        let state = State {
            next_seq: to_u64(max_seq.max(last_acked)) + 1,
            pending: to_u64(pending),
            exposure,
            last_acked_seq: to_u64(last_acked),
        };
        let w = Writer {
            conn,
            store_id: opts.store_id.clone(),
            agent_id: opts.agent_id.clone(),
            max_pending: opts.max_pending_events,
            offline_cap: opts.offline_total_cap_minor,
            offline_currency: opts.offline_currency,
            max_batch: opts.max_commit_batch.max(1),
            state,
            shared,
            metrics,
            relaxed: false,
            checkpointed: o2c_runtime::clock::now(),
            clock_skew: time::Duration::seconds(opts.clock_skew_secs),
        };
        w.publish();
        w.shared.alive.store(true, Ordering::Release);
        tracing::info!(
            next_seq = state.next_seq,
            pending = state.pending,
            offline_exposure = state.exposure,
            "store opened"
        );
        Ok(w)
    }

    fn publish(&self) {
        let s = &self.shared;
        s.pending.store(self.state.pending, Ordering::Release);
        s.last_seq
            .store(self.state.next_seq.saturating_sub(1), Ordering::Release);
        s.offline_exposure
            .store(self.state.exposure, Ordering::Release);
        self.metrics.pending.set(to_i64(self.state.pending));
    }

    /// Runs until `Shutdown` or until every sender is gone.
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut batch: Vec<(Op, Reply)> = Vec::with_capacity(self.max_batch);
        let mut stop = false;
        while !stop {
            let Some(first) = rx.blocking_recv() else {
                break;
            };
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Op(op, reply) => batch.push((op, reply)),
                    Command::Shutdown => {
                        stop = true;
                        break;
                    }
                }
                if batch.len() < self.max_batch {
                    next = rx.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                self.run_batch(&mut batch);
            }
            if rx.is_empty() && self.checkpointed.elapsed() >= CHECKPOINT_EVERY {
                self.checkpoint();
            }
        }
        rx.close();
        // Commands queued after Shutdown are dropped: their callers see
        // `WriterGone` and nothing of them was written.
        self.shared.alive.store(false, Ordering::Release);
        if let Err(e) = self
            .conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA optimize;")
        {
            tracing::warn!(error = %e, "final checkpoint failed");
        }
        match self.conn.close() {
            Ok(()) => tracing::info!("store closed"),
            Err((_, e)) => tracing::warn!(error = %e, "closing the database failed"),
        }
    }

    fn run_batch(&mut self, batch: &mut Vec<(Op, Reply)>) {
        let started = o2c_runtime::clock::now();
        let size = batch.len();
        let (ops, replies): (Vec<Op>, Vec<Reply>) = batch.drain(..).unzip();
        let ack_only = ops.iter().all(|op| matches!(op, Op::Ack(..)));
        // Fast path: no savepoints. A command refused before it wrote
        // anything needs no undo; one that fails after writing sends the
        // whole group round again, each command in its own savepoint.
        let outcome = match self.attempt(&ops, ack_only, false) {
            Err(Attempt::Careful) => {
                self.metrics.careful_retries.inc();
                self.attempt(&ops, ack_only, true)
            }
            other => other,
        };
        match outcome {
            Ok(Committed {
                staged,
                answers,
                sync,
            }) => {
                self.state = staged;
                self.publish();
                let total = started.elapsed();
                self.metrics.commits.inc();
                self.metrics.commit_seconds.observe(total.as_secs_f64());
                self.metrics.sync_seconds.observe(sync.as_secs_f64());
                self.metrics.batch_commands.observe(size as f64);
                if total >= SLOW_COMMIT {
                    tracing::warn!(
                        commands = size,
                        total_ms = total.as_millis() as u64,
                        sync_ms = sync.as_millis() as u64,
                        "slow group commit: every caller in it waited this long"
                    );
                }
                for (reply, r) in replies.into_iter().zip(answers) {
                    reply.send(r);
                }
            }
            // A careful attempt never asks for another; were it to, the
            // group is refused like any failed one.
            Err(Attempt::Careful) => self.refuse(
                replies,
                size,
                StoreError::Database("internal: a careful attempt asked to run again".into()),
            ),
            Err(Attempt::Failed(e)) => self.refuse(replies, size, e),
        }
    }

    /// Answers every caller of a group that kept nothing with its error.
    fn refuse(&self, replies: Vec<Reply>, size: usize, e: StoreError) {
        self.metrics.commit_errors.inc();
        tracing::warn!(error = %e, commands = size, "group commit failed; nothing kept");
        // Every answer was decided against state that is now gone (even a
        // refusal may have seen a neighbour's uncommitted row), so every
        // caller gets the group's error and retries.
        for reply in replies {
            reply.send(Err(e.clone()));
        }
    }

    /// Runs `ops` in one transaction and commits it. Returns the staged
    /// counters, one answer per op, and how long the `COMMIT` took. With
    /// `careful`, each op runs in its own savepoint, so one that fails after
    /// writing is undone alone; without, such a failure rolls everything
    /// back and asks for a careful attempt.
    fn attempt(&mut self, ops: &[Op], ack_only: bool, careful: bool) -> Result<Committed, Attempt> {
        let now = now_utc_ms() + self.clock_skew;
        let now_ms = unix_ms(now);
        let mut staged = self.state;
        let mut answers = Vec::with_capacity(ops.len());
        if !self.conn.is_autocommit() {
            // Left open by an earlier failure; never build on it.
            if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                tracing::error!(error = %e, "rollback of a stale transaction failed");
            }
        }
        self.set_durability(ack_only)
            .and_then(|()| Ok(self.conn.execute_batch("BEGIN IMMEDIATE")?))
            .map_err(Attempt::Failed)?;
        for op in ops {
            let before = staged;
            let written = self.conn.total_changes();
            let result = if careful {
                match self.in_savepoint(|w| w.apply(&mut staged, op, now, now_ms)) {
                    Ok(r) => r,
                    Err(e) => {
                        self.rollback();
                        return Err(Attempt::Failed(e));
                    }
                }
            } else {
                self.apply(&mut staged, op, now, now_ms)
            };
            match result {
                Ok(done) => answers.push(Ok(done)),
                Err(e) => {
                    staged = before;
                    if self.conn.is_autocommit() {
                        // SQLite rolled the whole transaction back (for
                        // example on SQLITE_FULL): nothing in it survives.
                        return Err(Attempt::Failed(e));
                    }
                    if !careful && self.conn.total_changes() != written {
                        self.rollback();
                        return Err(Attempt::Careful);
                    }
                    answers.push(Err(e));
                }
            }
        }
        let syncing = o2c_runtime::clock::now();
        match self.conn.execute_batch("COMMIT") {
            Ok(()) => Ok(Committed {
                staged,
                answers,
                sync: syncing.elapsed(),
            }),
            Err(e) => {
                self.rollback();
                Err(Attempt::Failed(e.into()))
            }
        }
    }

    /// Runs `f` inside a savepoint, rolled back if `f` fails. The outer
    /// error is the savepoint's own: it leaves the transaction unusable.
    fn in_savepoint<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<Result<T, StoreError>, StoreError> {
        self.savepoint("SAVEPOINT cmd")?;
        let result = f(self);
        if self.conn.is_autocommit() {
            // The transaction, savepoint and all, is gone.
            return Ok(result);
        }
        match &result {
            Ok(_) => self.savepoint("RELEASE cmd")?,
            Err(_) => {
                self.savepoint("ROLLBACK TO cmd")?;
                self.savepoint("RELEASE cmd")?;
            }
        }
        Ok(result)
    }

    fn rollback(&self) {
        if !self.conn.is_autocommit()
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::error!(error = %e, "rollback failed");
        }
    }

    /// A `PASSIVE` checkpoint on the writer's own connection, run between
    /// groups when nothing is queued, so its database fsync never lands in
    /// the middle of a group commit's WAL fsync.
    fn checkpoint(&mut self) {
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0))
        {
            tracing::debug!(error = %e, "inline checkpoint failed; the checkpointer retries");
        }
        self.checkpointed = o2c_runtime::clock::now();
    }

    /// A group of acks alone commits without its own fsync
    /// (`synchronous=NORMAL`: still atomic and in order, and the next `FULL`
    /// commit syncs it along). Losing one to a power cut only means the
    /// batch is resent, and the cloud acks it again without producing it
    /// twice. Every group with anything else in it (a capture, a cancel, a
    /// status update) commits at `FULL`; if `FULL` cannot be restored, the
    /// group is refused.
    fn set_durability(&mut self, ack_only: bool) -> Result<(), StoreError> {
        if ack_only == self.relaxed {
            return Ok(());
        }
        let mode = if ack_only { "NORMAL" } else { "FULL" };
        match self.conn.pragma_update(None, "synchronous", mode) {
            Ok(()) => self.relaxed = ack_only,
            // Staying at FULL is always safe.
            Err(e) if ack_only => tracing::debug!(error = %e, "staying at synchronous=FULL"),
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    fn savepoint(&self, sql: &str) -> Result<(), StoreError> {
        self.conn.prepare_cached(sql)?.execute([])?;
        Ok(())
    }

    fn apply(
        &self,
        st: &mut State,
        op: &Op,
        now: OffsetDateTime,
        now_ms: i64,
    ) -> Result<Done, StoreError> {
        match op {
            Op::Capture(c) => self.capture(st, c, now, now_ms).map(Done::Capture),
            Op::Cancel {
                order_id,
                reason,
                traceparent,
            } => self
                .cancel(st, *order_id, reason, traceparent.as_ref(), now, now_ms)
                .map(Done::Cancel),
            Op::Return(r) => self.request_return(st, r, now, now_ms).map(Done::Return),
            Op::Ack(ack, at) => self.ack(st, ack, *at).map(Done::Ack),
            Op::Status(updates, at) => updates
                .iter()
                .map(|u| self.status(u, *at))
                .collect::<Result<_, _>>()
                .map(Done::Status),
            Op::Prune(older) => self.prune(*older).map(Done::Prune),
            Op::CloseDays(day) => self.close_days(st, day, now, now_ms).map(Done::CloseDays),
            Op::MaxPageCount(pages) => {
                let pages = i64::try_from(*pages).unwrap_or(i64::MAX);
                let now: i64 =
                    self.conn
                        .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                            r.get(0)
                        })?;
                Ok(Done::Prune(u64::try_from(now).unwrap_or(0)))
            }
        }
    }
}

/// A fresh random W3C trace context for events that arrived without one.
pub(crate) fn fresh_traceparent() -> Traceparent {
    let trace: u128 = rand::random::<u128>() | 1;
    let span: u64 = rand::random::<u64>() | 1;
    match Traceparent::from_ids(trace, span) {
        Ok(t) => t,
        // Both ids are non-zero and formatted as lower-case hex of the
        // right width, which is all `new` checks.
        Err(_) => unreachable!("a formatted non-zero traceparent is valid"),
    }
}

/// Now, truncated to milliseconds (what is stored and shown).
pub(crate) fn now_utc_ms() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(now)
}

/// Unix milliseconds of `t`.
pub(crate) fn unix_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
