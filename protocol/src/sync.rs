//! The agent's sync window as a sans-IO state machine.
//!
//! It never touches a socket, a database or a clock: the shell (the agent's
//! sync task) feeds it events and the current time in milliseconds, and
//! polls it for what to do next. Methods, as in quinn-proto:
//! - getters: [`SyncState::acked_through`], [`SyncState::in_flight`], …
//! - `handle_*`: something happened (connected, events captured, ack, …);
//! - `poll_*`: what the shell must do now ([`SyncState::poll_transmit`]) and
//!   when to wake it next ([`SyncState::poll_deadline`]).
//!
//! Ordering: at most one batch is unacknowledged at a time, and every batch
//! (first send or resend) starts right after the highest acknowledged seq.
//! The cloud therefore sees each agent's events in seq order, whichever
//! ingest replica takes the frame, and a cumulative ack is always exact.
//!
//! A frame the cloud refuses whole ([`FrameNack`]) is never resent as it
//! was: a frame of one event has that event rejected; a frame of several is
//! sent again one event per frame, so only the event that cannot be read is
//! rejected and its neighbours still reach the cloud.
//!
//! Liveness: a silent partition (packets dropped, no RST) leaves TCP and the
//! MQTT keep-alive waiting for tens of seconds. The state declares the
//! connection dead ([`SyncState::poll_drop_connection`]) when a request
//! (a publish or a ping) has gone out and nothing at all has come back from
//! the broker for [`SyncConfig::liveness_timeout_ms`], or when a connection
//! attempt has not completed within [`SyncConfig::connect_timeout_ms`]; while
//! events are pending, reconnect delays stay under
//! [`SyncConfig::backoff_pending_max_ms`].

use crate::frame::{Ack, FrameNack, Rejection};
use crate::ids::Seq;

/// Tunables of the sync window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncConfig {
    /// Resend an unacknowledged batch after this long.
    pub ack_timeout_ms: u64,
    /// Most events per batch.
    pub max_batch_events: usize,
    /// Most payload bytes per batch.
    pub max_batch_bytes: usize,
    /// First reconnect delay.
    pub backoff_initial_ms: u64,
    /// Largest reconnect delay.
    pub backoff_max_ms: u64,
    /// Largest reconnect delay while events wait to be sent: a store with
    /// orders to deliver retries briskly (with jitter), never gives up.
    pub backoff_pending_max_ms: u64,
    /// A connection with a request out (a publish or a ping, counted from
    /// when it was written) and nothing at all heard from the broker for
    /// this long is dead: drop it and reconnect.
    pub liveness_timeout_ms: u64,
    /// A connection attempt (TCP, TLS, CONNECT, SUBSCRIBE) not complete
    /// after this long is abandoned.
    pub connect_timeout_ms: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            ack_timeout_ms: 10_000,
            max_batch_events: 2_000,
            max_batch_bytes: 900 * 1024,
            backoff_initial_ms: 200,
            backoff_max_ms: 30_000,
            backoff_pending_max_ms: 1_000,
            liveness_timeout_ms: 5_000,
            connect_timeout_ms: 3_000,
        }
    }
}

/// The batch the cloud has not acknowledged yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// First seq of the batch.
    pub first: Seq,
    /// Last seq of the batch.
    pub last: Seq,
    /// When it was (re)sent.
    pub sent_at_ms: u64,
    /// How many times it was sent.
    pub attempts: u32,
}

/// What the shell must publish now: read pending outbox events with
/// `after_seq < seq <= up_to` (from the first seq when `after_seq` is
/// `None`, no upper bound when `up_to` is `None`), at most
/// `max_events` and `max_bytes`, encode them as one `Batch`, publish it,
/// then call [`SyncState::handle_sent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Exclusive lower bound: the highest acknowledged seq, `None` before
    /// the first ack.
    pub after_seq: Option<Seq>,
    /// Inclusive upper bound, set on a resend so it keeps the same range.
    pub up_to: Option<Seq>,
    /// Event cap.
    pub max_events: usize,
    /// Byte cap.
    pub max_bytes: usize,
    /// Whether this is a resend.
    pub resend: bool,
}

/// What to do with an ack, decided before anything is persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckVerdict {
    /// New progress: persist it, then call [`SyncState::handle_ack_applied`].
    Apply {
        /// The ack's `through_seq`.
        through: Seq,
    },
    /// Already applied (a duplicate or late ack); nothing to do.
    Stale,
}

/// What to do with a [`FrameNack`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NackVerdict {
    /// The refused frame held several events: they are now sent one per
    /// frame (nothing to persist), so only the bad one gets refused.
    Isolate,
    /// The refused frame held one event: persist this ack, which rejects
    /// it with the nack's code and reason, then call
    /// [`SyncState::handle_ack_applied`] with `through`.
    Reject {
        /// The ack to persist.
        ack: Ack,
        /// Its `through_seq`.
        through: Seq,
    },
    /// Not the frame in flight (a late or repeated nack): nothing to do.
    Stale,
}

/// An ack that cannot be right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// The ack covers seqs that were never captured.
    #[error(
        "ack through {through} is beyond the last captured seq {}",
        .tail.map_or(0, Seq::get)
    )]
    AckBeyondTail {
        /// The ack's `through_seq`.
        through: Seq,
        /// Highest captured seq (`None`: nothing captured).
        tail: Option<Seq>,
    },
    /// A rejection outside the acknowledged range.
    #[error("rejection of seq {seq} outside the acked range ..={through}")]
    RejectionOutOfRange {
        /// The rejected seq.
        seq: Seq,
        /// The ack's `through_seq`.
        through: Seq,
    },
}

/// The sync window of one agent.
#[derive(Debug, Clone)]
pub struct SyncState {
    cfg: SyncConfig,
    connected: bool,
    acked_through: Option<Seq>,
    tail: Option<Seq>,
    in_flight: Option<InFlight>,
    resend_due: bool,
    failures: u32,
    rng: u64,
    /// Seqs up to this are sent one per frame (after a frame nack).
    isolate_through: Option<Seq>,
    /// When the current connection attempt started.
    connecting_since: Option<u64>,
    /// When the oldest request still unanswered by the broker was written.
    awaiting_since: Option<u64>,
    /// The connection is judged dead; the shell must drop it.
    dead: bool,
}

impl SyncState {
    /// Starts from what the outbox holds: every seq ≤ `acked_through` is
    /// acknowledged, events up to `tail` exist (`None`: no ack yet, no
    /// event yet). `seed` drives the jitter.
    pub fn new(cfg: SyncConfig, acked_through: Option<Seq>, tail: Option<Seq>, seed: u64) -> Self {
        Self {
            cfg,
            connected: false,
            acked_through,
            tail: tail.max(acked_through),
            in_flight: None,
            resend_due: false,
            failures: 0,
            rng: seed | 1,
            isolate_through: None,
            connecting_since: None,
            awaiting_since: None,
            dead: false,
        }
    }

    // ---- getters ----

    /// Highest seq the cloud has acknowledged (`None` before the first ack).
    pub fn acked_through(&self) -> Option<Seq> {
        self.acked_through
    }

    /// Highest seq known to exist in the outbox (`None`: none yet).
    pub fn tail(&self) -> Option<Seq> {
        self.tail
    }

    /// The unacknowledged batch, if any.
    pub fn in_flight(&self) -> Option<InFlight> {
        self.in_flight
    }

    /// Whether the transport is up.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Events captured but not yet acknowledged.
    pub fn backlog(&self) -> u64 {
        number(self.tail) - number(self.acked_through)
    }

    /// Whether events are being sent one per frame after a frame nack.
    pub fn is_isolating(&self) -> bool {
        self.isolate_through
            .is_some_and(|t| Some(t) > self.acked_through)
    }

    // ---- handle_* ----

    /// The shell started a connection attempt at `now_ms`.
    pub fn handle_connecting(&mut self, now_ms: u64) {
        self.connected = false;
        self.dead = false;
        self.awaiting_since = None;
        self.connecting_since = Some(now_ms);
    }

    /// The transport came up. An unacknowledged batch is sent again: the
    /// frame may have been lost with the old connection.
    pub fn handle_connected(&mut self) {
        self.connected = true;
        self.dead = false;
        self.connecting_since = None;
        self.awaiting_since = None;
        self.failures = 0;
        if self.in_flight.is_some() {
            self.resend_due = true;
        }
    }

    /// A request that the broker answers (a publish, a ping) was written to
    /// the connection at `now_ms`.
    pub fn handle_request_written(&mut self, now_ms: u64) {
        if self.connected {
            self.awaiting_since.get_or_insert(now_ms);
        }
    }

    /// Something (any packet) arrived from the broker: the connection lives.
    pub fn handle_heard(&mut self) {
        self.awaiting_since = None;
    }

    /// The transport went down (or the shell dropped it). Returns how long
    /// to wait before the next connection attempt: exponential backoff with
    /// full jitter, capped lower while events are pending.
    pub fn handle_disconnected(&mut self) -> u64 {
        self.connected = false;
        self.dead = false;
        self.connecting_since = None;
        self.awaiting_since = None;
        let exp = self
            .cfg
            .backoff_initial_ms
            .saturating_mul(1u64 << self.failures.min(20));
        self.failures = self.failures.saturating_add(1);
        let max = if self.backlog() > 0 {
            self.cfg.backoff_pending_max_ms.min(self.cfg.backoff_max_ms)
        } else {
            self.cfg.backoff_max_ms
        };
        let cap = exp.min(max).max(1);
        // Full jitter in [cap/2, cap].
        cap / 2 + self.next_rand() % (cap - cap / 2 + 1)
    }

    /// Events up to `seq` are now in the outbox.
    pub fn handle_captured(&mut self, seq: Seq) {
        self.tail = self.tail.max(Some(seq));
    }

    /// The batch of `first..=last` was handed to the transport at `now_ms`.
    /// The shell read those events from the outbox, so they are captured
    /// even if [`SyncState::handle_captured`] has not said so yet (a commit
    /// can land between the shell's last look at the store's head and its
    /// read of the batch); without this, the ack for them would look like an
    /// ack beyond the tail, be ignored, and the batch wait for its timeout.
    pub fn handle_sent(&mut self, first: Seq, last: Seq, now_ms: u64) {
        self.tail = self.tail.max(Some(last));
        let attempts = match self.in_flight {
            Some(f) if f.first == first => f.attempts + 1,
            _ => 1,
        };
        self.in_flight = Some(InFlight {
            first,
            last,
            sent_at_ms: now_ms,
            attempts,
        });
        self.resend_due = false;
    }

    /// The outbox held nothing pending after `after_seq` (for example the
    /// tail was over-estimated): forget the phantom backlog.
    pub fn handle_nothing_pending(&mut self, after_seq: Option<Seq>) {
        if after_seq == self.acked_through && self.in_flight.is_none() {
            self.tail = self.acked_through;
        }
    }

    /// Decides what an incoming ack means, without changing state.
    pub fn check_ack(&self, ack: &Ack) -> Result<AckVerdict, SyncError> {
        let through = ack.through_seq;
        if let Some(r) = ack.rejected.iter().find(|r| r.seq > through) {
            return Err(SyncError::RejectionOutOfRange {
                seq: r.seq,
                through,
            });
        }
        if Some(through) <= self.acked_through {
            return Ok(AckVerdict::Stale);
        }
        if Some(through) > self.tail {
            return Err(SyncError::AckBeyondTail {
                through,
                tail: self.tail,
            });
        }
        Ok(AckVerdict::Apply { through })
    }

    /// The ack through `through` is persisted: those rows have left the
    /// outbox's pending set.
    pub fn handle_ack_applied(&mut self, through: Seq) {
        if Some(through) <= self.acked_through {
            return;
        }
        self.acked_through = Some(through);
        self.tail = self.tail.max(Some(through));
        if self.isolate_through.is_some_and(|t| t <= through) {
            self.isolate_through = None;
        }
        if let Some(f) = self.in_flight {
            if through >= f.last {
                self.in_flight = None;
                self.resend_due = false;
            } else if through >= f.first {
                // Partial ack: the rest goes again, from through + 1.
                self.in_flight = None;
            }
        }
    }

    /// The cloud refused a whole frame. Decides, and for a frame of
    /// several events switches to one event per frame at once.
    pub fn handle_frame_nack(&mut self, nack: &FrameNack) -> NackVerdict {
        let (first, last) = (nack.first_seq, nack.last_seq);
        match self.in_flight {
            Some(f) if f.first == first && f.last == last && Some(first) > self.acked_through => {
                if first < last {
                    self.isolate_through = Some(last);
                    self.in_flight = None;
                    self.resend_due = false;
                    NackVerdict::Isolate
                } else {
                    NackVerdict::Reject {
                        ack: Ack {
                            through_seq: nack.last_seq,
                            rejected: vec![Rejection {
                                seq: nack.first_seq,
                                event_id: None,
                                code: nack.code.clone(),
                                reason: nack.reason.clone(),
                            }],
                        },
                        through: last,
                    }
                }
            }
            _ => NackVerdict::Stale,
        }
    }

    /// Time passed: an overdue batch becomes due for resending; a silent
    /// connection, or an attempt that does not complete, is judged dead.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if let Some(f) = self.in_flight
            && now_ms >= f.sent_at_ms.saturating_add(self.cfg.ack_timeout_ms)
        {
            self.resend_due = true;
        }
        if let Some(t) = self.liveness_deadline()
            && now_ms >= t
        {
            self.dead = true;
        }
    }

    // ---- poll_* ----

    /// What to publish now, if anything.
    pub fn poll_transmit(&self) -> Option<Transmit> {
        if !self.connected || self.dead {
            return None;
        }
        let max_events = if self.is_isolating() {
            1
        } else {
            self.cfg.max_batch_events
        };
        match self.in_flight {
            Some(f) if self.resend_due => Some(Transmit {
                after_seq: self.acked_through,
                up_to: Some(f.last),
                max_events,
                max_bytes: self.cfg.max_batch_bytes,
                resend: true,
            }),
            Some(_) => None,
            None if self.tail > self.acked_through => Some(Transmit {
                after_seq: self.acked_through,
                up_to: None,
                max_events,
                max_bytes: self.cfg.max_batch_bytes,
                resend: false,
            }),
            None => None,
        }
    }

    /// Whether the shell must drop the connection (or the attempt) now,
    /// then report [`SyncState::handle_disconnected`].
    pub fn poll_drop_connection(&self) -> bool {
        self.dead
    }

    /// When to call [`SyncState::handle_timeout`] next.
    pub fn poll_deadline(&self) -> Option<u64> {
        let resend = self
            .in_flight
            .filter(|_| !self.resend_due)
            .map(|f| f.sent_at_ms.saturating_add(self.cfg.ack_timeout_ms));
        match (resend, self.liveness_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn liveness_deadline(&self) -> Option<u64> {
        if self.dead {
            return None;
        }
        if self.connected {
            self.awaiting_since
                .map(|t| t.saturating_add(self.cfg.liveness_timeout_ms))
        } else {
            self.connecting_since
                .map(|t| t.saturating_add(self.cfg.connect_timeout_ms))
        }
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*: jitter only, not security.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// The number of a seq bound, 0 for `None` (before the first seq).
fn number(seq: Option<Seq>) -> u64 {
    seq.map_or(0, Seq::get)
}
