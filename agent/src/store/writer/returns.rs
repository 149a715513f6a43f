//! Returns in the writer (table `returns`, migration 0012).
//!
//! - [`Writer::request_return`]: a return taken at a till, in the group's
//!   transaction like a capture: the idempotency record first (the same
//!   key and request replay the first answer), the backlog, then, for an
//!   order this agent captured, the check against it (`order_cancelled`,
//!   or `o2c_protocol::returns::assess` against the order's earlier
//!   returns here); then the row, its `ReturnRequested` event and the
//!   idempotency record. An order not known here (another store's, a web
//!   order) is taken unverified: the cloud checks it.
//! - [`Writer::reject_return`], [`Writer::sync_returns`]: an ack's part
//!   about returns (matched on `returns.seq`).
//! - [`Writer::return_status`]: a cloud status about a return, applied to
//!   the return, never to its order's status.

use o2c_protocol::returns::{Assessed, Refusal, ReturnLedger, ReturnLine, assess};
use o2c_protocol::{
    CloudStatus, Currency, Event, Money, Order, ReturnId, StatusUpdate, Traceparent,
};
use rusqlite::{OptionalExtension, params};
use serde::Deserialize;
use time::OffsetDateTime;

use super::{State, Writer};
use crate::store::StoreError;
use crate::store::returns::{NewReturn, ReturnOutcome, StoredReturn};
use crate::store::types::{OrderSyncState, StatusOutcome};

/// What a replay needs of a stored answer.
#[derive(Deserialize)]
struct Answered {
    return_id: ReturnId,
}

/// An order this agent captured, as a return sees it.
struct LocalOrder {
    order: Order,
    /// Voided here, or cancelled by the cloud.
    cancelled: bool,
    traceparent: Option<Traceparent>,
}

impl Writer {
    pub(super) fn request_return(
        &self,
        st: &mut State,
        r: &NewReturn,
        now: OffsetDateTime,
        now_ms: i64,
    ) -> Result<ReturnOutcome, StoreError> {
        let NewReturn {
            request,
            idempotency_key,
            request_sha256,
            traceparent,
        } = r;
        let terminal = request.terminal_id.as_str();
        if let Some((_, response)) =
            self.previous_answer(terminal, idempotency_key, request_sha256)?
        {
            let Answered { return_id } = serde_json::from_str(&response).map_err(|e| {
                StoreError::Corrupt(format!("the stored answer of key {idempotency_key:?}: {e}"))
            })?;
            return Ok(ReturnOutcome {
                return_id,
                seq: None,
                replayed: true,
                response_json: response,
            });
        }
        self.check_backlog(st)?;
        let oid = request.order_id.to_string();
        // Decided before anything is written: a refusal needs no undo.
        let (assessed, order_trace) = match self.local_order(&oid)? {
            Some(local) => {
                if local.cancelled {
                    return Err(StoreError::ReturnRefused(Refusal::OrderCancelled));
                }
                let ledger = self.ledger(&oid, local.order.currency)?;
                let a = assess(&local.order, &ledger, &request.lines, &request.refund)
                    .map_err(StoreError::ReturnRefused)?;
                (Some(a), local.traceparent)
            }
            None => (None, None),
        };
        let traceparent = traceparent.clone().or(order_trace);
        let seq = self.append(
            st,
            Event::ReturnRequested(request.clone()),
            request.order_id,
            traceparent.as_ref(),
            now,
            now_ms,
        )?;
        let encode = |e: serde_json::Error| StoreError::Encode(e.to_string());
        let lines_json = serde_json::to_string(&request.lines).map_err(encode)?;
        let refund_json = serde_json::to_string(&request.refund).map_err(encode)?;
        let amount = assessed.map(|a| a.amount);
        let tender = assessed.and_then(|a| a.tender);
        self.conn
            .prepare_cached(
                "INSERT INTO returns (return_id, order_id, terminal_id, lines_json, \
                 refund_method, refund_json, reason, local_amount_minor, currency, tender_index, \
                 verified_locally, seq, created_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?
            .execute(params![
                request.return_id.to_string(),
                oid,
                terminal,
                lines_json,
                request.refund.method(),
                refund_json,
                request.reason,
                amount.map(|m| m.minor),
                amount.map(|m| m.currency.code()),
                tender,
                assessed.is_some(),
                super::to_i64(seq.get()),
                now_ms
            ])?;
        let stored = StoredReturn {
            request: request.clone(),
            local_amount: amount,
            tender,
            verified_locally: assessed.is_some(),
            sync: OrderSyncState::Pending,
            reject_code: None,
            reject_reason: None,
            cloud_status: None,
            cloud_reason: None,
            cloud_sku: None,
            cloud_amount: None,
            cloud_status_received_at_ms: None,
            created_at_ms: now_ms,
        };
        let response_json = serde_json::to_string(&stored.view()).map_err(encode)?;
        self.record_answer(
            terminal,
            idempotency_key,
            request_sha256,
            &oid,
            &response_json,
            now_ms,
        )?;
        Ok(ReturnOutcome {
            return_id: request.return_id,
            seq: Some(seq),
            replayed: false,
            response_json,
        })
    }

    /// The order `oid`, if this agent captured it.
    fn local_order(&self, oid: &str) -> Result<Option<LocalOrder>, StoreError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT order_json, status, cloud_status, traceparent FROM orders \
                 WHERE order_id = ?1",
            )?
            .query_row([oid], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })
            .optional()?;
        let Some((json, status, cloud, tp)) = row else {
            return Ok(None);
        };
        let order: Order = serde_json::from_str(&json)
            .map_err(|e| StoreError::Corrupt(format!("order_json of {oid}: {e}")))?;
        let cloud = cloud.as_deref().and_then(|c| c.parse::<CloudStatus>().ok());
        Ok(Some(LocalOrder {
            order,
            cancelled: status == "cancelled"
                || matches!(cloud, Some(CloudStatus::Cancelled | CloudStatus::Refunded)),
            traceparent: tp.and_then(|t| Traceparent::new(&t).ok()),
        }))
    }

    /// What was returned here from order `oid` so far: every earlier
    /// return but those the cloud refused or whose event it rejected.
    fn ledger(&self, oid: &str, currency: Currency) -> Result<ReturnLedger, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT return_id, lines_json, local_amount_minor, tender_index FROM returns \
             WHERE order_id = ?1 AND sync_state <> 'rejected' \
             AND (cloud_status IS NULL OR cloud_status <> 'return_refused')",
        )?;
        let mut rows = stmt.query([oid])?;
        let mut ledger = ReturnLedger::default();
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            let json: String = r.get(1)?;
            let lines: Vec<ReturnLine> = serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("lines_json of return {id}: {e}")))?;
            let amount: Option<i64> = r.get(2)?;
            let tender: Option<i64> = r.get(3)?;
            let assessed = Assessed {
                amount: Money::new(amount.unwrap_or(0), currency),
                tender: tender.and_then(|t| u32::try_from(t).ok()),
            };
            ledger.record(&lines, &assessed);
        }
        Ok(ledger)
    }

    /// An ack rejected the event at `seq`: if it was a return's, so is the
    /// return.
    pub(super) fn reject_return(
        &self,
        seq: i64,
        code: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE returns SET sync_state = 'rejected', reject_code = ?2, \
                 reject_reason = ?3 WHERE seq = ?1",
            )?
            .execute(params![seq, code, reason])?;
        Ok(())
    }

    /// An ack settled the seqs `(from, through]`: the returns among them
    /// not rejected are synced.
    pub(super) fn sync_returns(&self, through: i64, from: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE returns SET sync_state = 'synced' \
                 WHERE seq > ?2 AND seq <= ?1 AND sync_state = 'pending'",
            )?
            .execute([through, from])?;
        Ok(())
    }

    /// A cloud status about a return (its `event_id` already recorded),
    /// `at` its `occurred_at` in unix ms. Of two statuses of one return,
    /// the greater `seq` wins when both have one; else `return_refunded`
    /// outranks `return_accepted` and `return_refused`, and between those
    /// the newer wins. The order's own status is left as it was.
    pub(super) fn return_status(
        &self,
        u: &StatusUpdate,
        at: i64,
        now_ms: i64,
    ) -> Result<StatusOutcome, StoreError> {
        let Some(ret) = u.ret.as_ref().filter(|_| u.status.is_return()) else {
            tracing::warn!(order_id = %u.order_id, status = %u.status,
                "a return status without its return (or the reverse) ignored");
            return Ok(StatusOutcome::UnknownReturn);
        };
        let rid = ret.return_id.to_string();
        let seq = u.seq.map(|s| i64::try_from(s).unwrap_or(i64::MAX));
        let rank = i64::from(u.status == CloudStatus::ReturnRefunded) + 1;
        let n = self
            .conn
            .prepare_cached(
                "UPDATE returns SET cloud_status = ?3, cloud_reason = ?4, cloud_sku = ?5, \
                 cloud_currency = CASE WHEN ?6 IS NULL THEN cloud_currency ELSE ?7 END, \
                 cloud_amount_minor = COALESCE(?6, cloud_amount_minor), \
                 cloud_status_at_ms = ?8, cloud_status_received_at_ms = ?9, \
                 cloud_status_seq = ?10 \
                 WHERE return_id = ?1 AND order_id = ?2 AND CASE \
                 WHEN ?10 IS NOT NULL AND cloud_status_seq IS NOT NULL \
                   THEN ?10 > cloud_status_seq \
                 WHEN cloud_status IS NULL THEN 1 \
                 ELSE ?11 > (CASE cloud_status WHEN 'return_refunded' THEN 2 ELSE 1 END) \
                   OR (?11 = (CASE cloud_status WHEN 'return_refunded' THEN 2 ELSE 1 END) \
                       AND cloud_status_at_ms <= ?8) END",
            )?
            .execute(params![
                rid,
                u.order_id.to_string(),
                u.status.as_str(),
                u.reason,
                ret.sku,
                ret.amount.map(|m| m.minor),
                ret.amount.map(|m| m.currency.code()),
                at,
                now_ms,
                seq,
                rank
            ])?;
        if n == 1 {
            return Ok(StatusOutcome::Applied);
        }
        let exists = self
            .conn
            .prepare_cached("SELECT 1 FROM returns WHERE return_id = ?1 AND order_id = ?2")?
            .query_row(params![rid, u.order_id.to_string()], |_| Ok(()))
            .optional()?
            .is_some();
        Ok(if exists {
            StatusOutcome::Stale
        } else {
            StatusOutcome::UnknownReturn
        })
    }
}
