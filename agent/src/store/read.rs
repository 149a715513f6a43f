//! Read-only queries, run on a small pool of read-only connections. WAL
//! gives each query a consistent snapshot without blocking the writer.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use o2c_protocol::{EventId, Order, OrderId, ReturnId, Seq};
use rusqlite::{Connection, OptionalExtension, params};

use super::types::{
    LocalStatus, OrderSummary, OrderSyncState, OutboxEvent, StoredOrder, SyncCounts,
};
use super::writer::to_i64;
use super::{StoreError, schema};

/// A few read-only connections, handed out round robin.
#[derive(Debug)]
pub(crate) struct ReadPool {
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl ReadPool {
    pub(crate) fn open(path: &Path, n: usize) -> Result<Self, StoreError> {
        let conns = (0..n)
            .map(|_| schema::open_reader(path).map(Mutex::new))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            conns,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `f` on one connection (blocking; call from a blocking task).
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len().max(1);
        let slot = self
            .conns
            .get(i)
            .ok_or_else(|| StoreError::Setup("empty read pool".into()))?;
        // A panic while holding the lock cannot leave a connection in a
        // half-written state (it only reads), so a poisoned lock is usable.
        let conn = slot.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }
}

pub(super) fn corrupt(what: &str, v: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} {v:?}"))
}

pub(crate) fn pending_batch(
    c: &Connection,
    after_seq: u64,
    max_events: usize,
    max_bytes: usize,
) -> Result<Vec<OutboxEvent>, StoreError> {
    // One range on the rowid: past both the caller's cursor and the last
    // acked seq (every pending row is past it).
    let mut stmt = c.prepare_cached(concat!(
        "SELECT seq, event_id, envelope FROM outbox WHERE state = 'pending' \
         AND seq > max(?1, ",
        schema::last_acked_seq!(),
        ") ORDER BY seq LIMIT ?2"
    ))?;
    let limit = to_i64(max_events.max(1) as u64);
    let mut rows = stmt.query(params![to_i64(after_seq), limit])?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        let event_id: String = row.get(1)?;
        let envelope: Vec<u8> = row.get(2)?;
        if !out.is_empty() && bytes + envelope.len() > max_bytes {
            break;
        }
        bytes += envelope.len();
        out.push(OutboxEvent {
            seq: Seq::new(u64::try_from(seq).unwrap_or(0))
                .map_err(|_| corrupt("seq", &seq.to_string()))?,
            event_id: event_id
                .parse::<EventId>()
                .map_err(|_| corrupt("event_id", &event_id))?,
            envelope,
        });
    }
    Ok(out)
}

pub(crate) fn unreflected_units(c: &Connection, sku: &str) -> Result<i64, StoreError> {
    // Open orders only: once a status at or past `inventory_confirmed`
    // arrives, the cloud's on-hand holds the sale (and a cancelled order's
    // units went back).
    Ok(c.query_row(
        "SELECT COALESCE(SUM(json_extract(l.value, '$.quantity')), 0) \
         FROM orders o, json_each(o.order_json, '$.lines') l \
         WHERE o.status = 'captured' \
           AND (o.cloud_status IS NULL OR o.cloud_status IN ('accepted', 'paid')) \
           AND json_extract(o.order_json, '$.fulfillment.type') = 'carry_out' \
           AND json_extract(l.value, '$.sku') = ?1",
        params![sku],
        |r| r.get(0),
    )?)
}

pub(crate) fn sync_counts(
    c: &Connection,
    pending: u64,
    now_ms: i64,
) -> Result<SyncCounts, StoreError> {
    let oldest: Option<i64> = c
        .prepare_cached(&format!(
            "SELECT created_at_ms FROM outbox WHERE {} ORDER BY seq LIMIT 1",
            schema::PENDING
        ))?
        .query_row([], |r| r.get(0))
        .optional()?;
    let (last_acked, last_ack_at): (i64, Option<i64>) = c
        .prepare_cached("SELECT last_acked_seq, last_ack_at_ms FROM sync_state WHERE id = 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let rejected: i64 = c
        .prepare_cached("SELECT COUNT(*) FROM outbox WHERE state = 'rejected'")?
        .query_row([], |r| r.get(0))?;
    Ok(SyncCounts {
        pending_events: pending,
        oldest_pending_age_ms: oldest.map(|t| u64::try_from(now_ms - t).unwrap_or(0)),
        last_acked_seq: u64::try_from(last_acked).unwrap_or(0),
        last_ack_at_ms: last_ack_at,
        rejected_events: u64::try_from(rejected).unwrap_or(0),
    })
}

/// The stored request hash and response of a capture by `terminal` under
/// `key`, if there is one.
pub(crate) fn idempotent(
    c: &Connection,
    terminal: &str,
    key: &str,
) -> Result<Option<(Vec<u8>, String)>, StoreError> {
    Ok(c.prepare_cached(
        "SELECT request_sha256, response FROM idempotency WHERE terminal_id = ?1 AND idem_key = ?2",
    )?
    .query_row([terminal, key], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()?)
}

pub(crate) fn order(c: &Connection, order_id: OrderId) -> Result<Option<StoredOrder>, StoreError> {
    let row = c
        .prepare_cached(
            "SELECT order_json, status, cancelled_at_ms, cancel_reason, sync_state, reject_code, \
             reject_reason, cloud_status, cloud_reason, cloud_status_received_at_ms, traceparent \
             FROM orders WHERE order_id = ?1",
        )?
        .query_row([order_id.to_string()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, Option<String>>(8)?,
                r.get::<_, Option<i64>>(9)?,
                r.get::<_, Option<String>>(10)?,
            ))
        })
        .optional()?;
    let Some((
        json,
        status,
        cancelled_at,
        cancel_reason,
        sync,
        rcode,
        rreason,
        cloud,
        creason,
        received_at,
        traceparent,
    )) = row
    else {
        return Ok(None);
    };
    let order: Order = serde_json::from_str(&json)
        .map_err(|e| StoreError::Corrupt(format!("order_json of {order_id}: {e}")))?;
    Ok(Some(StoredOrder {
        order,
        status: LocalStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        cancelled_at_ms: cancelled_at,
        cancel_reason,
        sync: OrderSyncState::parse(&sync).ok_or_else(|| corrupt("sync_state", &sync))?,
        reject_code: rcode,
        reject_reason: rreason,
        cloud_status: cloud.as_deref().and_then(|c| c.parse().ok()),
        cloud_reason: creason,
        cloud_status_received_at_ms: received_at,
        traceparent,
    }))
}

pub(crate) fn list_orders(
    c: &Connection,
    after: Option<OrderId>,
    limit: usize,
) -> Result<Vec<OrderSummary>, StoreError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM orders WHERE order_id > ?1 ORDER BY order_id LIMIT ?2"
    ))?;
    let after = after.map(|a| a.to_string()).unwrap_or_default();
    let mut rows = stmt.query(params![after, to_i64(limit as u64)])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(summary_row(r)?);
    }
    Ok(out)
}

/// The columns of an [`OrderSummary`], in the order [`summary_row`] reads
/// them (after `SELECT`, before `FROM`).
pub(super) const SUMMARY_COLUMNS: &str = "order_id, terminal_id, currency, total_minor, \
    captured_at, status, sync_state, cloud_status, cloud_status_received_at_ms";

/// One row of [`SUMMARY_COLUMNS`].
pub(super) fn summary_row(r: &rusqlite::Row<'_>) -> Result<OrderSummary, StoreError> {
    let id: String = r.get(0)?;
    let terminal: String = r.get(1)?;
    let status: String = r.get(5)?;
    let sync: String = r.get(6)?;
    let cloud: Option<String> = r.get(7)?;
    Ok(OrderSummary {
        order_id: id.parse().map_err(|_| corrupt("order_id", &id))?,
        terminal_id: terminal
            .parse()
            .map_err(|_| corrupt("terminal_id", &terminal))?,
        currency: r.get(2)?,
        total_minor: r.get(3)?,
        captured_at: r.get(4)?,
        status: LocalStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        sync: OrderSyncState::parse(&sync).ok_or_else(|| corrupt("sync_state", &sync))?,
        cloud_status: cloud.as_deref().and_then(|c| c.parse().ok()),
        cloud_status_received_at_ms: r.get(8)?,
    })
}

/// Up to `limit` orders after `after` (by id, so capture time) that a
/// status resync asks about: known to the cloud (their `OrderCreated` was
/// acked), captured at or after `from`, and with no final status yet. A
/// `cancelled` one counts only if captured at or after `cancelled_from`,
/// as its refund may still come.
pub(crate) fn resync_candidates(
    c: &Connection,
    after: OrderId,
    from: OrderId,
    cancelled_from: OrderId,
    limit: usize,
) -> Result<Vec<OrderId>, StoreError> {
    // The conditions repeat the partial index `orders_cloud_open` (0008).
    let mut stmt = c.prepare_cached(
        "SELECT order_id FROM orders WHERE order_id > ?1 AND order_id >= ?2 \
         AND sync_state = 'synced' \
         AND (cloud_status IS NULL OR cloud_status NOT IN ('completed', 'refunded')) \
         AND (cloud_status IS NOT 'cancelled' OR order_id >= ?3) \
         ORDER BY order_id LIMIT ?4",
    )?;
    let rows = stmt.query(params![
        after.to_string(),
        from.to_string(),
        cancelled_from.to_string(),
        to_i64(limit as u64)
    ])?;
    ids(rows, "order_id")
}

/// The ids in the first column of `rows` (`column` names it in errors).
fn ids<T: std::str::FromStr>(
    mut rows: rusqlite::Rows<'_>,
    column: &str,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        out.push(id.parse().map_err(|_| corrupt(column, &id))?);
    }
    Ok(out)
}

/// Up to `limit` returns after `after` (by id, so by the time they were
/// taken) that a status resync asks about: known to the cloud (their
/// `ReturnRequested` was acked), taken at or after `from_ms`, and whose
/// status is not final: no answer yet, or accepted to a card whose refund
/// has not been reported.
pub(crate) fn resync_returns(
    c: &Connection,
    after: ReturnId,
    from_ms: i64,
    limit: usize,
) -> Result<Vec<ReturnId>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT return_id FROM returns WHERE return_id > ?1 AND created_at_ms >= ?2 \
         AND sync_state = 'synced' \
         AND (cloud_status IS NULL \
              OR (cloud_status = 'return_accepted' AND refund_method = 'card')) \
         ORDER BY return_id LIMIT ?3",
    )?;
    let rows = stmt.query(params![after.to_string(), from_ms, to_i64(limit as u64)])?;
    ids(rows, "return_id")
}
