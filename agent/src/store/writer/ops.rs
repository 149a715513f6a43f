//! The writer's operations (run by `Writer::attempt`, with or without a
//! savepoint each): capture,
//! cancel (both append to the outbox), and the sync task's ack, status and
//! prune. Closing a business day is `day`; a return, and the part of an
//! ack or a status that is about returns, is `returns`.

use o2c_protocol::event::OrderCancelled;
use o2c_protocol::{
    Ack, Envelope, Event, EventId, OrderId, SCHEMA_VERSION, Seq, StatusUpdate, Traceparent,
};
use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{State, Writer, fresh_traceparent, to_i64, unix_ms};
use crate::store::StoreError;
use crate::store::types::{
    AckOutcome, CancelOutcome, CaptureOutcome, CaptureReceipt, NewCapture, StatusOutcome,
};

impl Writer {
    pub(super) fn capture(
        &self,
        st: &mut State,
        c: &NewCapture,
        now: OffsetDateTime,
        now_ms: i64,
    ) -> Result<CaptureOutcome, StoreError> {
        let NewCapture {
            order,
            idempotency_key,
            request_sha256,
            traceparent,
        } = c;
        if order.store_id != self.store_id {
            return Err(StoreError::WrongStore(order.store_id.to_string()));
        }
        let terminal = order.terminal_id.as_str().to_owned();
        if let Some((order_id, response)) =
            self.previous_answer(&terminal, idempotency_key, request_sha256)?
        {
            let order_id = order_id
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("idempotency order_id {order_id:?}")))?;
            return Ok(CaptureOutcome {
                order_id,
                seq: None,
                replayed: true,
                response_json: response,
            });
        }
        self.check_backlog(st)?;
        let offline = order.offline_card_total()?.minor;
        if offline > 0 {
            if self.offline_currency != Some(order.currency) {
                return Err(StoreError::OfflineCurrency {
                    order: order.currency,
                    store: self.offline_currency,
                });
            }
            let would_be = st.exposure.saturating_add(offline);
            if would_be > self.offline_cap {
                return Err(StoreError::OfflineCapExceeded {
                    would_be,
                    cap: self.offline_cap,
                });
            }
        }
        let total = order.total()?;
        // The op stays whole in case the group has to run again.
        let mut order = order.clone();
        order.captured_at = now;
        let captured_at = now
            .format(&Rfc3339)
            .map_err(|e| StoreError::Encode(e.to_string()))?;
        let order_id = order.order_id;
        let oid = order_id.to_string();
        let currency = order.currency.code();
        let order_json =
            serde_json::to_string(&order).map_err(|e| StoreError::Encode(e.to_string()))?;
        // The order's trace: the capture span's (or the till's), else a
        // fresh one; kept with the order.
        let traceparent = traceparent.clone().unwrap_or_else(fresh_traceparent);
        self.conn
            .prepare_cached(
                "INSERT INTO orders (order_id, terminal_id, currency, total_minor, captured_at, \
                 captured_at_ms, offline_card_minor, order_json, traceparent) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                oid,
                terminal,
                currency,
                total.minor,
                captured_at,
                now_ms,
                offline,
                order_json,
                traceparent.as_str()
            ])?;
        let seq = self.append(
            st,
            Event::OrderCreated(Box::new(order)),
            order_id,
            Some(&traceparent),
            now,
            now_ms,
        )?;
        let receipt = CaptureReceipt {
            order_id,
            status: "captured".into(),
            sync: "pending".into(),
            total_minor: total.minor,
            currency: currency.to_owned(),
            captured_at,
        };
        let response_json =
            serde_json::to_string(&receipt).map_err(|e| StoreError::Encode(e.to_string()))?;
        self.record_answer(
            &terminal,
            idempotency_key,
            request_sha256,
            &oid,
            &response_json,
            now_ms,
        )?;
        st.exposure = st.exposure.saturating_add(offline);
        Ok(CaptureOutcome {
            order_id,
            seq: Some(seq),
            replayed: false,
            response_json,
        })
    }

    /// The order id and response stored for `(terminal, key)`, if a request
    /// was answered under it; a different request (hash) under that key is
    /// [`StoreError::IdempotencyConflict`].
    pub(super) fn previous_answer(
        &self,
        terminal: &str,
        key: &str,
        request_sha256: &[u8; 32],
    ) -> Result<Option<(String, String)>, StoreError> {
        let previous = self
            .conn
            .prepare_cached(
                "SELECT request_sha256, order_id, response FROM idempotency \
                 WHERE terminal_id = ?1 AND idem_key = ?2",
            )?
            .query_row(params![terminal, key], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .optional()?;
        match previous {
            Some((hash, _, _)) if hash.as_slice() != request_sha256.as_slice() => {
                Err(StoreError::IdempotencyConflict)
            }
            Some((_, order_id, response)) => Ok(Some((order_id, response))),
            None => Ok(None),
        }
    }

    /// Records the answer given under `(terminal, key)` to the request
    /// hashed `request_sha256` about `order_id`, for its replays.
    pub(super) fn record_answer(
        &self,
        terminal: &str,
        key: &str,
        request_sha256: &[u8; 32],
        order_id: &str,
        response: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO idempotency (terminal_id, idem_key, request_sha256, order_id, \
                 response, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                terminal,
                key,
                request_sha256.as_slice(),
                order_id,
                response,
                now_ms
            ])?;
        Ok(())
    }

    pub(super) fn check_backlog(&self, st: &State) -> Result<(), StoreError> {
        if st.pending >= self.max_pending {
            Err(StoreError::BacklogFull {
                pending: st.pending,
                limit: self.max_pending,
            })
        } else {
            Ok(())
        }
    }

    /// Appends one event to the outbox with the next seq.
    pub(super) fn append(
        &self,
        st: &mut State,
        payload: Event,
        order_id: OrderId,
        traceparent: Option<&Traceparent>,
        now: OffsetDateTime,
        now_ms: i64,
    ) -> Result<Seq, StoreError> {
        let seq = Seq::new(st.next_seq).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let event_id = EventId::from_uuid(uuid::Uuid::now_v7())
            .map_err(|e| StoreError::Encode(e.to_string()))?;
        let event_type = payload.event_type();
        let envelope = Envelope {
            event_id,
            schema_version: SCHEMA_VERSION,
            store_id: self.store_id.clone(),
            agent_id: self.agent_id.clone(),
            seq: Some(seq),
            occurred_at: now,
            traceparent: Some(traceparent.cloned().unwrap_or_else(fresh_traceparent)),
            payload,
        };
        let bytes = envelope
            .encode()
            .map_err(|e| StoreError::Encode(e.to_string()))?;
        self.insert_outbox(
            st,
            seq,
            event_id,
            event_type.as_str(),
            &order_id.to_string(),
            &bytes,
            now_ms,
        )?;
        Ok(seq)
    }

    /// Writes one outbox row at `seq` (the next one) and counts it pending.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn insert_outbox(
        &self,
        st: &mut State,
        seq: Seq,
        event_id: EventId,
        event_type: &str,
        order_id: &str,
        bytes: &[u8],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO outbox (seq, event_id, event_type, order_id, envelope, created_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                to_i64(seq.get()),
                event_id.to_string(),
                event_type,
                order_id,
                bytes,
                now_ms
            ])?;
        st.next_seq += 1;
        st.pending += 1;
        Ok(())
    }

    pub(super) fn cancel(
        &self,
        st: &mut State,
        order_id: OrderId,
        reason: &str,
        traceparent: Option<&Traceparent>,
        now: OffsetDateTime,
        now_ms: i64,
    ) -> Result<CancelOutcome, StoreError> {
        let oid = order_id.to_string();
        let row = self
            .conn
            .prepare_cached("SELECT status, cancelled_at_ms FROM orders WHERE order_id = ?1")?
            .query_row([&oid], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
            })
            .optional()?;
        match row {
            None => return Err(StoreError::OrderNotFound(order_id)),
            Some((status, at)) if status == "cancelled" => {
                return Ok(CancelOutcome {
                    order_id,
                    cancelled_at_ms: at.unwrap_or(now_ms),
                    seq: None,
                    already_cancelled: true,
                });
            }
            Some(_) => {}
        }
        self.check_backlog(st)?;
        self.conn
            .prepare_cached(
                "UPDATE orders SET status = 'cancelled', cancelled_at_ms = ?2, cancel_reason = ?3 \
                 WHERE order_id = ?1",
            )?
            .execute(params![oid, now_ms, reason])?;
        let payload = Event::OrderCancelled(OrderCancelled {
            order_id,
            reason: reason.to_owned(),
        });
        let seq = self.append(st, payload, order_id, traceparent, now, now_ms)?;
        Ok(CancelOutcome {
            order_id,
            cancelled_at_ms: now_ms,
            seq: Some(seq),
            already_cancelled: false,
        })
    }

    pub(super) fn ack(
        &self,
        st: &mut State,
        ack: &Ack,
        now_ms: i64,
    ) -> Result<AckOutcome, StoreError> {
        let through = ack.through_seq.get();
        let head = st.next_seq - 1;
        if through > head {
            return Err(StoreError::InvalidAck { seq: through, head });
        }
        if let Some(r) = ack.rejected.iter().find(|r| r.seq.get() > through) {
            return Err(StoreError::InvalidAck {
                seq: r.seq.get(),
                head: through,
            });
        }
        let through_i = to_i64(through);
        // Pending rows all lie past the last ack: (acked, through] bounds
        // every statement below to the rows this ack settles.
        let from_i = to_i64(st.last_acked_seq);
        let mut out = AckOutcome::default();
        for r in &ack.rejected {
            let seq = to_i64(r.seq.get());
            let n = self
                .conn
                .prepare_cached(
                    "UPDATE outbox SET state = 'rejected', acked_at_ms = ?2, reject_code = ?3, \
                     reject_reason = ?4 WHERE seq = ?1 AND state = 'pending'",
                )?
                .execute(params![seq, now_ms, r.code, r.reason])?;
            if n == 1 {
                out.rejected += 1;
                self.conn
                    .prepare_cached(
                        "UPDATE orders SET sync_state = 'rejected', reject_code = ?2, \
                         reject_reason = ?3 WHERE order_id = (SELECT order_id FROM outbox \
                         WHERE seq = ?1 AND event_type = 'OrderCreated')",
                    )?
                    .execute(params![seq, r.code, r.reason])?;
                self.reject_return(seq, &r.code, &r.reason)?;
            }
        }
        // The cloud settled every offline card sale in the range, accepted
        // or rejected (a rejected one is followed up by staff from its sync
        // state): none counts against the offline cap any more.
        let released: i64 = self
            .conn
            .prepare_cached(
                "SELECT COALESCE(SUM(o.offline_card_minor), 0) FROM outbox x \
                 JOIN orders o ON o.order_id = x.order_id \
                 WHERE x.state IN ('pending', 'rejected') AND x.seq > ?2 AND x.seq <= ?1 \
                 AND x.event_type = 'OrderCreated' \
                 AND o.offline_card_minor > 0 AND o.offline_released = 0 AND o.currency = ?3",
            )?
            .query_row(
                params![through_i, from_i, self.offline_currency.map(|c| c.code())],
                |r| r.get(0),
            )?;
        self.conn
            .prepare_cached(
                "UPDATE orders SET offline_released = 1 \
                 WHERE offline_card_minor > 0 AND offline_released = 0 \
                 AND order_id IN (SELECT order_id FROM outbox \
                 WHERE state IN ('pending', 'rejected') \
                 AND seq > ?2 AND seq <= ?1 AND event_type = 'OrderCreated')",
            )?
            .execute([through_i, from_i])?;
        self.conn
            .prepare_cached(
                "UPDATE orders SET sync_state = 'synced' \
                 WHERE order_id IN (SELECT order_id FROM outbox WHERE state = 'pending' \
                 AND seq > ?2 AND seq <= ?1 AND event_type = 'OrderCreated')",
            )?
            .execute([through_i, from_i])?;
        self.sync_returns(through_i, from_i)?;
        let acked = self
            .conn
            .prepare_cached(
                "UPDATE outbox SET state = 'acked', acked_at_ms = ?2 \
                 WHERE state = 'pending' AND seq > ?3 AND seq <= ?1",
            )?
            .execute(params![through_i, now_ms, from_i])?;
        out.acked = acked as u64;
        st.last_acked_seq = st.last_acked_seq.max(through);
        self.conn
            .prepare_cached(
                "UPDATE sync_state SET last_acked_seq = ?1, last_ack_at_ms = ?2 WHERE id = 1",
            )?
            .execute(params![to_i64(st.last_acked_seq), now_ms])?;
        st.pending = st.pending.saturating_sub(out.acked + out.rejected);
        st.exposure = st.exposure.saturating_sub(released);
        out.last_acked_seq = st.last_acked_seq;
        out.released_offline_minor = released;
        Ok(out)
    }

    pub(super) fn status(
        &self,
        u: &StatusUpdate,
        now_ms: i64,
    ) -> Result<StatusOutcome, StoreError> {
        let oid = u.order_id.to_string();
        let fresh = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO applied_status_events (event_id, order_id, applied_at_ms) \
                 VALUES (?1, ?2, ?3)",
            )?
            .execute(params![u.event_id.to_string(), oid, now_ms])?;
        if fresh == 0 {
            return Ok(StatusOutcome::Duplicate);
        }
        let at = unix_ms(u.occurred_at);
        // A return's status is the return's, never its order's.
        if u.ret.is_some() || u.status.is_return() {
            return self.return_status(u, at, now_ms);
        }
        // The cloud's per-order sequence decides when both the stored status
        // and this update have one: only a greater one replaces it. Without
        // (a cloud that sends none), the newest `occurred_at` wins as before.
        // Sequences stay below 2^53; a larger one still outranks the rest.
        let seq = u.seq.map(|s| i64::try_from(s).unwrap_or(i64::MAX));
        let n = self
            .conn
            .prepare_cached(
                "UPDATE orders SET cloud_status = ?2, cloud_reason = ?3, cloud_status_at_ms = ?4, \
                 cloud_status_received_at_ms = ?5, cloud_status_seq = ?6 \
                 WHERE order_id = ?1 AND CASE \
                 WHEN ?6 IS NOT NULL AND cloud_status_seq IS NOT NULL THEN ?6 > cloud_status_seq \
                 ELSE cloud_status_at_ms IS NULL OR cloud_status_at_ms <= ?4 END",
            )?
            .execute(params![oid, u.status.as_str(), u.reason, at, now_ms, seq])?;
        if n == 1 {
            return Ok(StatusOutcome::Applied);
        }
        let exists = self
            .conn
            .prepare_cached("SELECT 1 FROM orders WHERE order_id = ?1")?
            .query_row([&oid], |_| Ok(()))
            .optional()?
            .is_some();
        Ok(if exists {
            StatusOutcome::Stale
        } else {
            StatusOutcome::UnknownOrder
        })
    }

    pub(super) fn prune(&self, older_than_ms: i64) -> Result<u64, StoreError> {
        let n = self
            .conn
            // Not past the last closed day: a day not yet closed keeps
            // every event its manifest will count (migration 0010).
            .prepare_cached(
                "DELETE FROM outbox WHERE state = 'acked' AND acked_at_ms < ?1 \
                 AND seq <= (SELECT COALESCE(MAX(manifest_seq), 0) FROM business_days)",
            )?
            .execute([older_than_ms])?;
        self.conn
            .prepare_cached("DELETE FROM applied_status_events WHERE applied_at_ms < ?1")?
            .execute([older_than_ms])?;
        Ok(n as u64)
    }
}
