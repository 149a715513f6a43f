//! Values going into and out of the store.

use o2c_protocol::{CloudStatus, EventId, Order, OrderId, Seq, TerminalId, Traceparent};
use serde::{Deserialize, Serialize};

/// A validated order to commit. The writer sets `order.captured_at` to the
/// commit time.
#[derive(Debug, Clone)]
pub struct NewCapture {
    /// The order (validated by the caller).
    pub order: Order,
    /// The request's `Idempotency-Key`, scoped to `order.terminal_id`.
    pub idempotency_key: String,
    /// SHA-256 of the request body; the same key with another hash is a
    /// conflict.
    pub request_sha256: [u8; 32],
    /// Trace context for the envelope.
    pub traceparent: Option<Traceparent>,
}

/// The body of a `201 Created` capture response; stored with the
/// idempotency record and replayed byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CaptureReceipt {
    /// The new order's id (UUIDv7).
    #[schema(value_type = String, example = "0196f3a2-7c1e-7b3a-9f00-5a2b3c4d5e6f")]
    pub order_id: OrderId,
    /// Always `captured`.
    pub status: String,
    /// Always `pending` at capture.
    pub sync: String,
    /// Order total, minor units.
    pub total_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Commit time, RFC 3339.
    pub captured_at: String,
}

/// What [`Store::capture`](super::Store::capture) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureOutcome {
    /// The order (the original one on a replay).
    pub order_id: OrderId,
    /// The `OrderCreated` seq; `None` on a replay.
    pub seq: Option<Seq>,
    /// Whether this was a replay of an earlier request.
    pub replayed: bool,
    /// The response body (JSON of a [`CaptureReceipt`]).
    pub response_json: String,
}

/// One business day closed by [`Store::close_days`](super::Store::close_days).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedDay {
    /// The business date.
    pub business_date: time::Date,
    /// The manifest's own seq.
    pub manifest_seq: o2c_protocol::Seq,
    /// The day's events, if it had any.
    pub range: Option<o2c_protocol::day::SeqRange>,
    /// How many.
    pub events: u64,
}

/// What [`Store::close_days`](super::Store::close_days) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayCloses {
    /// The days closed, oldest first.
    pub closed: Vec<ClosedDay>,
    /// Milliseconds (by the store's clock) until the next day is due; 0
    /// when more overdue days remain than one call closes.
    pub wait_ms: u64,
}

/// What [`Store::cancel`](super::Store::cancel) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelOutcome {
    /// The order.
    pub order_id: OrderId,
    /// When it was (first) cancelled.
    pub cancelled_at_ms: i64,
    /// The `OrderCancelled` seq; `None` when it was already cancelled.
    pub seq: Option<Seq>,
    /// Whether an earlier call had already cancelled it.
    pub already_cancelled: bool,
}

/// One outbox event ready to ship: the exact committed envelope bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Gap-free per-agent sequence number.
    pub seq: Seq,
    /// The event's id.
    pub event_id: EventId,
    /// `Envelope::encode()` output, as committed at capture.
    pub envelope: Vec<u8>,
}

/// What [`Store::apply_ack`](super::Store::apply_ack) changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AckOutcome {
    /// Rows newly marked acked.
    pub acked: u64,
    /// Rows newly marked rejected.
    pub rejected: u64,
    /// `sync_state.last_acked_seq` afterwards.
    pub last_acked_seq: u64,
    /// Offline card money released (minor units).
    pub released_offline_minor: i64,
}

/// What [`Store::apply_statuses`](super::Store::apply_statuses) did with
/// one update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusOutcome {
    /// The order's (or, for a `return_*` status, the return's) cloud
    /// status changed.
    Applied,
    /// This `event_id` was applied before.
    Duplicate,
    /// A newer status was already applied; recorded, not applied.
    Stale,
    /// No such order here; recorded, not applied.
    UnknownOrder,
    /// A return's status (`return_*`) naming no return of this store (or
    /// not naming its return); recorded, not applied, and never applied
    /// to the order.
    UnknownReturn,
}

/// Figures for `GET /v1/sync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncCounts {
    /// Events not yet acked or rejected.
    pub pending_events: u64,
    /// Age of the oldest pending event, if any.
    pub oldest_pending_age_ms: Option<u64>,
    /// Highest seq the cloud acked (0 before the first ack).
    pub last_acked_seq: u64,
    /// When the last ack was applied.
    pub last_ack_at_ms: Option<i64>,
    /// Events the cloud refused for good.
    pub rejected_events: u64,
}

/// An order's local status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LocalStatus {
    /// Captured (the normal state).
    Captured,
    /// Voided at the store.
    Cancelled,
}

impl LocalStatus {
    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            LocalStatus::Captured => "captured",
            LocalStatus::Cancelled => "cancelled",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "captured" => Some(LocalStatus::Captured),
            "cancelled" => Some(LocalStatus::Cancelled),
            _ => None,
        }
    }
}

// Whether the cloud has an order's `OrderCreated`; not the sync window
// (`o2c_protocol::sync::SyncState`). The OpenAPI schema keeps its published
// name, `SyncState`, and the doc line below is its published description.
/// Sync state of an order's `OrderCreated` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = SyncState)]
#[serde(rename_all = "snake_case")]
pub enum OrderSyncState {
    /// Not yet acked by the cloud.
    Pending,
    /// Durable in the cloud.
    Synced,
    /// Refused by the cloud for good (see the reason).
    Rejected,
}

impl OrderSyncState {
    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderSyncState::Pending => "pending",
            OrderSyncState::Synced => "synced",
            OrderSyncState::Rejected => "rejected",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(OrderSyncState::Pending),
            "synced" => Some(OrderSyncState::Synced),
            "rejected" => Some(OrderSyncState::Rejected),
            _ => None,
        }
    }
}

/// One stored order with everything known about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOrder {
    /// The order as captured.
    pub order: Order,
    /// Local status.
    pub status: LocalStatus,
    /// When it was voided.
    pub cancelled_at_ms: Option<i64>,
    /// Why it was voided.
    pub cancel_reason: Option<String>,
    /// Sync state of its `OrderCreated`.
    pub sync: OrderSyncState,
    /// The cloud's rejection code, when rejected.
    pub reject_code: Option<String>,
    /// The cloud's rejection reason, when rejected.
    pub reject_reason: Option<String>,
    /// Latest saga status, once the cloud sent one.
    pub cloud_status: Option<CloudStatus>,
    /// Reason given with it.
    pub cloud_reason: Option<String>,
    /// When this agent stored that status (unix ms, its own clock).
    pub cloud_status_received_at_ms: Option<i64>,
    /// The W3C trace context of its capture (none for orders captured
    /// before it was kept).
    pub traceparent: Option<String>,
}

/// One row of the order list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSummary {
    /// The order.
    pub order_id: OrderId,
    /// Its terminal.
    pub terminal_id: TerminalId,
    /// ISO 4217 code.
    pub currency: String,
    /// Total, minor units.
    pub total_minor: i64,
    /// RFC 3339.
    pub captured_at: String,
    /// Local status.
    pub status: LocalStatus,
    /// Sync state.
    pub sync: OrderSyncState,
    /// Latest cloud status.
    pub cloud_status: Option<CloudStatus>,
    /// When this agent stored it (unix ms, its own clock).
    pub cloud_status_received_at_ms: Option<i64>,
}

/// An outbox row's state (the `state` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxState {
    /// Waiting for the cloud's ack.
    Pending,
    /// Acked: durable in the cloud.
    Acked,
    /// Refused by the cloud for good.
    Rejected,
}

impl OutboxState {
    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Acked => "acked",
            OutboxState::Rejected => "rejected",
        }
    }
}

/// One outbox row as the operator sees it (`o2c-agent outbox list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Gap-free sequence number.
    pub seq: u64,
    /// The event's id.
    pub event_id: String,
    /// `OrderCreated`, `OrderCancelled`, ...
    pub event_type: String,
    /// The order it is about.
    pub order_id: String,
    /// When it was committed (Unix ms).
    pub created_at_ms: i64,
    /// When the cloud acked it (Unix ms).
    pub acked_at_ms: Option<i64>,
    /// The cloud's rejection code.
    pub reject_code: Option<String>,
    /// The cloud's rejection reason.
    pub reject_reason: Option<String>,
}
