//! Reads by capture time, for end-of-day reporting: the rows of a
//! Z-report (`crate::report` turns them into the report) and the order
//! list filtered by `captured_at`. Both are ranges of the index
//! `orders_captured_at` (migration 0011), so a day costs its own orders,
//! not the whole table.
//!
//! The Z-report's events are the outbox rows of the day's orders: one scan
//! of the outbox (it holds `[outbox] retention_days` of acked rows plus
//! the pending ones; there is no index on `order_id`, which would cost an
//! insert per capture) probing the day's order ids; their
//! `ReturnRequested` rows are left to the returns. The day's returns (by
//! `created_at_ms`, whatever order they are of) are one scan of `returns`
//! (a table far smaller than `orders`, without an index on the time),
//! each probing the outbox for its event by `seq`.

use std::path::Path;

use o2c_protocol::{OrderId, Payment};
use rusqlite::{Connection, params};

use super::read::{SUMMARY_COLUMNS, corrupt, summary_row};
use super::types::{LocalStatus, OrderSummary, OrderSyncState};
use super::writer::to_i64;
use super::{Store, StoreError, schema};
use crate::report::{
    Amount, DayRows, EventCount, EventKind, EventState, OrderRow, RefundMethod, ReturnRow, Tender,
};

impl Store {
    /// The rows of the Z-report of `[start_ms, end_ms)`, from one snapshot.
    pub async fn z_report_rows(&self, start_ms: i64, end_ms: i64) -> Result<DayRows, StoreError> {
        self.read(move |c| day_rows(c, start_ms, end_ms)).await
    }

    /// Orders captured in `[from_ms, to_ms)` (either bound optional), by
    /// id (capture time) after `after`, at most `limit`.
    pub async fn list_orders_captured(
        &self,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
        after: Option<OrderId>,
        limit: usize,
    ) -> Result<Vec<OrderSummary>, StoreError> {
        self.read(move |c| list_captured(c, from_ms, to_ms, after, limit))
            .await
    }
}

/// The rows of the Z-report of `[start_ms, end_ms)` read from the database
/// at `path`, opened read-only (for `o2c-agent report z`, safe while the
/// agent runs: WAL gives this reader a snapshot without blocking the
/// writer).
pub fn read_z_report_rows(path: &Path, start_ms: i64, end_ms: i64) -> Result<DayRows, StoreError> {
    if !path.exists() {
        return Err(StoreError::Setup(format!(
            "no database at {} (has the agent run with this data_dir?)",
            path.display()
        )));
    }
    let conn = schema::open_reader(path)?;
    day_rows(&conn, start_ms, end_ms)
}

fn day_rows(c: &Connection, start_ms: i64, end_ms: i64) -> Result<DayRows, StoreError> {
    // One read transaction: the orders and their events from one snapshot.
    let tx = c.unchecked_transaction()?;
    let mut out = DayRows::default();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT order_id, terminal_id, currency, total_minor, status, sync_state, \
             reject_code, reject_reason, \
             CASE WHEN offline_released = 0 THEN offline_card_minor ELSE 0 END, \
             json_extract(order_json, '$.payments') \
             FROM orders WHERE captured_at_ms >= ?1 AND captured_at_ms < ?2 \
             ORDER BY order_id",
        )?;
        let mut rows = stmt.query(params![start_ms, end_ms])?;
        while let Some(r) = rows.next()? {
            let order_id: String = r.get(0)?;
            let status: String = r.get(4)?;
            let sync: String = r.get(5)?;
            let payments: Option<String> = r.get(9)?;
            let payments: Vec<Payment> = serde_json::from_str(payments.as_deref().unwrap_or(""))
                .map_err(|e| StoreError::Corrupt(format!("payments of {order_id}: {e}")))?;
            let voided = match LocalStatus::parse(&status) {
                Some(s) => s == LocalStatus::Cancelled,
                None => return Err(corrupt("status", &status)),
            };
            let rejected = match OrderSyncState::parse(&sync) {
                Some(OrderSyncState::Rejected) => Some((
                    r.get::<_, Option<String>>(6)?.unwrap_or_default(),
                    r.get::<_, Option<String>>(7)?.unwrap_or_default(),
                )),
                Some(_) => None,
                None => return Err(corrupt("sync_state", &sync)),
            };
            out.orders.push(OrderRow {
                order_id,
                terminal_id: r.get(1)?,
                currency: r.get(2)?,
                total_minor: r.get(3)?,
                voided,
                rejected,
                offline_unconfirmed_minor: r.get(8)?,
                tenders: payments.iter().map(tender).collect(),
            });
        }
    }
    {
        // Outbox first (one scan), each row probing the day's ids; then
        // the order's terminal by primary key.
        let mut stmt = tx.prepare_cached(
            "SELECT o.terminal_id, x.event_type, x.state, COUNT(*) \
             FROM outbox x CROSS JOIN orders o ON o.order_id = x.order_id \
             WHERE x.order_id IN (SELECT order_id FROM orders \
                 WHERE captured_at_ms >= ?1 AND captured_at_ms < ?2) \
             AND x.event_type <> 'ReturnRequested' \
             GROUP BY 1, 2, 3",
        )?;
        let mut rows = stmt.query(params![start_ms, end_ms])?;
        while let Some(r) = rows.next()? {
            let kind: String = r.get(1)?;
            let state: String = r.get(2)?;
            out.events.push(EventCount {
                terminal_id: r.get(0)?,
                kind: match kind.as_str() {
                    "OrderCreated" => EventKind::Created,
                    "OrderCancelled" => EventKind::Cancelled,
                    _ => EventKind::Other,
                },
                state: event_state(&state)?,
                count: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
            });
        }
    }
    {
        let mut stmt = tx.prepare_cached(
            "SELECT terminal_id, refund_method, local_amount_minor, currency, \
             cloud_amount_minor, cloud_currency, cloud_status \
             FROM returns WHERE created_at_ms >= ?1 AND created_at_ms < ?2 \
             ORDER BY return_id",
        )?;
        let mut rows = stmt.query(params![start_ms, end_ms])?;
        while let Some(r) = rows.next()? {
            let method: String = r.get(1)?;
            let cloud_status: Option<String> = r.get(6)?;
            out.returns.push(ReturnRow {
                terminal_id: r.get(0)?,
                refund: RefundMethod::parse(&method)
                    .ok_or_else(|| corrupt("refund_method", &method))?,
                local: amount(r.get(2)?, r.get(3)?),
                cloud: amount(r.get(4)?, r.get(5)?),
                cloud_status: cloud_status
                    .map(|c| c.parse().map_err(|_| corrupt("return cloud_status", &c)))
                    .transpose()?,
            });
        }
    }
    {
        // The returns' own events, by the outbox's primary key.
        let mut stmt = tx.prepare_cached(
            "SELECT r.terminal_id, x.state, COUNT(*) \
             FROM returns r CROSS JOIN outbox x ON x.seq = r.seq \
             WHERE r.created_at_ms >= ?1 AND r.created_at_ms < ?2 \
             GROUP BY 1, 2",
        )?;
        let mut rows = stmt.query(params![start_ms, end_ms])?;
        while let Some(r) = rows.next()? {
            let state: String = r.get(1)?;
            out.events.push(EventCount {
                terminal_id: r.get(0)?,
                kind: EventKind::ReturnRequested,
                state: event_state(&state)?,
                count: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
            });
        }
    }
    tx.finish()?;
    Ok(out)
}

fn event_state(state: &str) -> Result<EventState, StoreError> {
    match state {
        "acked" => Ok(EventState::Synced),
        "pending" => Ok(EventState::Pending),
        "rejected" => Ok(EventState::Rejected),
        _ => Err(corrupt("outbox state", state)),
    }
}

/// An amount column pair (`None` unless both are set).
fn amount(minor: Option<i64>, currency: Option<String>) -> Option<Amount> {
    Some(Amount {
        minor: minor?,
        currency: currency?,
    })
}

fn tender(p: &Payment) -> (Tender, i64) {
    (Tender::of(p), p.amount().minor)
}

fn list_captured(
    c: &Connection,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    after: Option<OrderId>,
    limit: usize,
) -> Result<Vec<OrderSummary>, StoreError> {
    let columns = format!("SELECT {SUMMARY_COLUMNS} FROM orders");
    // With a lower bound, the range of the capture-time index, sorted by
    // id (a day is a few thousand rows). With only an upper bound, the id
    // order itself (oldest first, so the first page comes at once): the
    // `+` keeps the planner off the capture-time index, whose open range
    // could be every order.
    let sql = if from_ms.is_some() {
        format!(
            "{columns} INDEXED BY orders_captured_at WHERE captured_at_ms >= ?1 \
             AND captured_at_ms < ?2 AND order_id > ?3 ORDER BY order_id LIMIT ?4"
        )
    } else {
        format!("{columns} WHERE +captured_at_ms < ?2 AND order_id > ?3 ORDER BY order_id LIMIT ?4")
    };
    let mut stmt = c.prepare_cached(&sql)?;
    let after = after.map(|a| a.to_string()).unwrap_or_default();
    let mut rows = stmt.query(params![
        from_ms.unwrap_or(i64::MIN),
        to_ms.unwrap_or(i64::MAX),
        after,
        to_i64(limit as u64)
    ])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(summary_row(r)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_queries_use_the_capture_time_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        drop(schema::open_writer(&path).unwrap());
        let c = schema::open_reader(&path).unwrap();
        let plan = |sql: &str| -> String {
            let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = stmt
                .query_map(params![0i64, 1i64, "", 10i64], |r| r.get::<_, String>(3))
                .unwrap();
            rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
        };
        let day = plan(
            "SELECT order_id FROM orders WHERE captured_at_ms >= ?1 AND captured_at_ms < ?2 \
             AND ?3 = ?3 AND ?4 = ?4",
        );
        assert!(day.contains("USING INDEX orders_captured_at"), "{day}");
        // Works with the index named by the list query (it would fail to
        // prepare if the migration renamed it).
        assert!(
            list_captured(&c, Some(0), Some(1), None, 10)
                .unwrap()
                .is_empty()
        );
        assert!(
            list_captured(&c, None, Some(1), None, 10)
                .unwrap()
                .is_empty()
        );
        assert_eq!(day_rows(&c, 0, 1).unwrap(), DayRows::default());
    }
}
