//! The payment reconciler: finishes captures a processor outage left
//! `Capturing`, without a DLQ replay.
//!
//! Every `saga.capture_reconcile_secs` it claims, one at a time, payment rows
//! still `Capturing` whose last capture call is older than
//! `saga.capture_stuck_secs` (`FOR UPDATE SKIP LOCKED`: several payment
//! replicas share the work, and the consumer waits on the row meanwhile).
//! Holding that row lock, it asks the processor what became of each
//! tender's capture key (`GET /v1/captures/{key}`), lets [`core::decide`]
//! choose, makes the calls that choice needs (a capture again with the same
//! key, refunds and voids with their stable keys), and commits the new
//! state, the `psp_calls` rows and the one event in one transaction. A
//! crash anywhere before that commit rolls it all back; the next round asks
//! again with the same keys and gets the same answers, so nothing is
//! captured, refunded or emitted twice.
//!
//! The payment step also calls [`Reconciler::settle_orders`] at once for an
//! order whose cancellation arrived while its capture call was answered.
//!
//! The same sweep pays refunds owed: a cancelled order that was captured,
//! whose refund the processor could not take when the cancellation came
//! (`Captured` with `cancel_requested`, see `payment::refund`). It refunds
//! each capture under its `refund` key (a refund made before answers its
//! stored result) and ends `Refunded` with one `RefundIssued`. And the
//! card refunds of returns owed (`returns_owed`, see `payment::returns`),
//! each under its return's key, with one `RefundIssued` each.

pub mod core;

use std::sync::Arc;
use std::time::Duration;

use o2c_protocol::event::{PaymentCaptured, PaymentFailed};
use o2c_protocol::{Envelope, Event, KafkaTopics, Order};
use tokio_postgres::Row;
use tokio_util::sync::CancellationToken;

use self::core::{Action, CAPTURE_EXPIRED, Stuck, decide};
use super::db::{Lane, Tx};
use super::outbox;
use super::payment::{
    Calls, Captured, PAYMENT_DECLINED, PayPhase, PaymentState, ReturnRefundError, SCHEMA,
    idempotency_key, processor_tenders, record_return_refund, refund_capture, refund_issued,
    refund_return,
};
use crate::db::DbError;
use crate::metrics::{OutcomeLabel, SagaMetrics};
use crate::psp::{CaptureLookup, CaptureOutcome, CaptureRequest, PspClient, PspError};

/// Why one order could not be reconciled this round (it is tried again
/// next round).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// PostgreSQL.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// Reading or writing a state.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The processor did not answer (or refused).
    #[error("order {order}: processor: {source}")]
    Psp {
        /// The order.
        order: String,
        /// The processor's error.
        source: PspError,
    },
    /// The stored row cannot be settled as it is.
    #[error("order {order}: {detail}")]
    BadRow {
        /// The order.
        order: String,
        /// What is wrong.
        detail: String,
    },
}

/// The payment row of a captured order whose cancellation still owes its
/// refund (SQL, on `o2c_payment.orders`).
macro_rules! owed_capture_refund {
    () => {
        "(state::jsonb ->> 'phase') = 'captured' \
         AND (state::jsonb ->> 'cancel_requested') = 'true'"
    };
}

/// The payment row of an order whose return still owes its card refund.
macro_rules! owed_return_refund {
    () => {
        "(state::jsonb ->> 'return_owed') = 'true'"
    };
}

/// Rows still capturing whose last call is older than `$1` ms, oldest
/// first, except those in `$2` (tried this round).
const CLAIM_STUCK: &str = "SELECT order_id, state, capture_cause, \
     (extract(epoch FROM capture_started_at) * 1000)::int8, \
     (extract(epoch FROM clock_timestamp()) * 1000)::int8 \
     FROM o2c_payment.orders \
     WHERE (state::jsonb ->> 'phase') = 'capturing' AND capture_cause IS NOT NULL \
     AND capture_attempt_at < clock_timestamp() - $1::int8 * interval '1 millisecond' \
     AND NOT (order_id = ANY($2)) \
     ORDER BY capture_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED";

/// Captured orders owing a refund whose last attempt is older than `$1`
/// ms, oldest first, except those in `$2` (tried this round).
const CLAIM_OWED: &str = concat!(
    "SELECT order_id, state, capture_cause, \
     (extract(epoch FROM capture_started_at) * 1000)::int8, \
     (extract(epoch FROM clock_timestamp()) * 1000)::int8 \
     FROM o2c_payment.orders WHERE ",
    owed_capture_refund!(),
    " AND capture_cause IS NOT NULL \
     AND capture_attempt_at < clock_timestamp() - $1::int8 * interval '1 millisecond' \
     AND NOT (order_id = ANY($2)) \
     ORDER BY capture_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED"
);

/// Orders owing a return's card refund whose last attempt is older than
/// `$1` ms, oldest first, except those in `$2` (tried this round).
const CLAIM_RETURNS: &str = concat!(
    "SELECT order_id, state, coalesce(capture_cause, ''::bytea), \
     (extract(epoch FROM capture_started_at) * 1000)::int8, \
     (extract(epoch FROM clock_timestamp()) * 1000)::int8 \
     FROM o2c_payment.orders WHERE ",
    owed_return_refund!(),
    " AND capture_attempt_at < clock_timestamp() - $1::int8 * interval '1 millisecond' \
     AND NOT (order_id = ANY($2)) \
     ORDER BY capture_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED"
);

/// How many refunds the payment service owes (a cancelled order's capture,
/// or a return's card refund, that the processor could not take when it
/// came), whatever their age: what the reconciler has still to pay. An
/// order owing one may already show `cancelled` at its store.
pub async fn refunds_owed(client: &tokio_postgres::Client) -> Result<i64, tokio_postgres::Error> {
    const SQL: &str = concat!(
        "SELECT count(*) FROM o2c_payment.orders WHERE (",
        owed_capture_refund!(),
        ") OR (",
        owed_return_refund!(),
        ")"
    );
    Ok(client.query_one(SQL, &[]).await?.get(0))
}

/// What a sweep settles.
#[derive(Debug, Clone, Copy)]
enum Work {
    /// Orders left `Capturing`.
    Captures,
    /// Refunds owed.
    Refunds,
    /// Returns' card refunds owed.
    Returns,
}

/// One order, if still capturing.
const CLAIM_ONE: &str = "SELECT order_id, state, capture_cause, \
     (extract(epoch FROM capture_started_at) * 1000)::int8, \
     (extract(epoch FROM clock_timestamp()) * 1000)::int8 \
     FROM o2c_payment.orders \
     WHERE order_id = $1 AND (state::jsonb ->> 'phase') = 'capturing' \
     AND capture_cause IS NOT NULL FOR UPDATE SKIP LOCKED";

/// A claimed row.
#[derive(Debug)]
struct Claimed {
    order_id: String,
    state: PaymentState,
    cause: Vec<u8>,
    started_ms: i64,
    now_ms: i64,
}

impl Claimed {
    fn from_row(r: &Row) -> Result<Self, ReconcileError> {
        let order_id: String = r.try_get(0)?;
        let text: String = r.try_get(1)?;
        let state = serde_json::from_str(&text).map_err(DbError::State)?;
        Ok(Self {
            order_id,
            state,
            cause: r.try_get(2)?,
            started_ms: r.try_get::<_, Option<i64>>(3)?.unwrap_or(0),
            now_ms: r.try_get(4)?,
        })
    }

    fn bad(&self, detail: impl Into<String>) -> ReconcileError {
        ReconcileError::BadRow {
            order: self.order_id.clone(),
            detail: detail.into(),
        }
    }

    fn psp(&self) -> impl Fn(PspError) -> ReconcileError + '_ {
        |source| ReconcileError::Psp {
            order: self.order_id.clone(),
            source,
        }
    }
}

/// The reconciler of one payment process.
#[derive(Debug)]
pub(crate) struct Reconciler {
    pub(crate) url: String,
    pub(crate) psp: PspClient,
    pub(crate) topics: KafkaTopics,
    pub(crate) metrics: Arc<SagaMetrics>,
    /// Time between sweeps.
    pub(crate) every: Duration,
    /// Age of the last capture call before a row counts as stuck.
    pub(crate) stuck_after: Duration,
    /// How long the processor honours an idempotency key.
    pub(crate) key_lifetime: Duration,
}

impl Reconciler {
    /// Sweeps every [`Reconciler::every`] until `cancel`; returns only then.
    pub(crate) async fn run(self: Arc<Self>, cancel: CancellationToken) -> Result<(), DbError> {
        let mut lane: Option<Lane> = None;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                () = tokio::time::sleep(self.every) => {}
            }
            if lane.as_ref().is_none_or(Lane::is_closed) {
                match Lane::connect(&self.url).await {
                    Ok(l) => lane = Some(l),
                    Err(e) => {
                        tracing::warn!(error = %e, "reconciler cannot reach postgres");
                        continue;
                    }
                }
            }
            if let Some(l) = lane.as_mut()
                && let Err(e) = self.sweep(l, &cancel).await
            {
                tracing::warn!(error = %e, "reconciler sweep failed");
            }
        }
    }

    /// One sweep: settles every stuck capture, then every refund owed, it
    /// can; returns how many.
    async fn sweep(
        &self,
        lane: &mut Lane,
        cancel: &CancellationToken,
    ) -> Result<usize, ReconcileError> {
        Ok(self.sweep_for(lane, cancel, Work::Captures).await?
            + self.sweep_for(lane, cancel, Work::Refunds).await?
            + self.sweep_for(lane, cancel, Work::Returns).await?)
    }

    async fn sweep_for(
        &self,
        lane: &mut Lane,
        cancel: &CancellationToken,
        work: Work,
    ) -> Result<usize, ReconcileError> {
        let age_ms = i64::try_from(self.stuck_after.as_millis()).unwrap_or(i64::MAX);
        let claim = match work {
            Work::Captures => CLAIM_STUCK,
            Work::Refunds => CLAIM_OWED,
            Work::Returns => CLAIM_RETURNS,
        };
        let mut tried: Vec<String> = Vec::new();
        let mut settled = 0;
        while !cancel.is_cancelled() {
            let tx = lane.begin().await?;
            let rows = tx.query(claim, &[&age_ms, &tried]).await?;
            let Some(r) = rows.first() else { break };
            let row = Claimed::from_row(r)?;
            tried.push(row.order_id.clone());
            let done = match work {
                Work::Captures => self.settle(&tx, &row).await,
                Work::Refunds => self.refund_owed(&tx, &row).await,
                Work::Returns => self.refund_returns_owed(&tx, &row).await,
            };
            match done {
                Ok(outcome) => {
                    tx.commit().await?;
                    self.count(&row.order_id, outcome);
                    settled += 1;
                }
                // Rolled back (the row stays as it was); next round.
                Err(e) => tracing::warn!(order_id = row.order_id, error = %e,
                    "not reconciled yet"),
            }
        }
        Ok(settled)
    }

    /// Settles `order_ids` now, whatever the age of their last call (the
    /// caller has just had the processor's answer); an order no longer
    /// capturing, or claimed by a sweep, is skipped.
    pub(crate) async fn settle_orders(
        &self,
        lane: &mut Lane,
        order_ids: &[String],
    ) -> Result<(), ReconcileError> {
        for id in order_ids {
            let tx = lane.begin().await?;
            let rows = tx.query(CLAIM_ONE, &[id]).await?;
            let Some(r) = rows.first() else { continue };
            let row = Claimed::from_row(r)?;
            let outcome = self.settle(&tx, &row).await?;
            tx.commit().await?;
            self.count(id, outcome);
        }
        Ok(())
    }

    fn count(&self, order_id: &str, outcome: &'static str) {
        self.metrics
            .payment_reconciled
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
        tracing::info!(order_id, outcome, "payment reconciled");
    }

    /// Asks, decides, acts and writes for one claimed row inside `tx`;
    /// returns the outcome.
    async fn settle(&self, tx: &Tx<'_>, row: &Claimed) -> Result<&'static str, ReconcileError> {
        let env = Envelope::decode(&row.cause).map_err(|e| row.bad(e.to_string()))?;
        let Event::OrderCreated(order) = &env.payload else {
            return Err(row.bad("capture_cause is not an OrderCreated"));
        };
        let tenders = processor_tenders(order);
        let key = |i: usize| idempotency_key(&row.order_id, "capture", i);
        let mut answers = Vec::with_capacity(tenders.len());
        for (i, _, _) in &tenders {
            answers.push(self.psp.lookup_capture(&key(*i)).await.map_err(row.psp())?);
        }
        let stuck = Stuck {
            tenders: tenders.iter().map(|(i, _, a)| (*i, *a)).collect(),
            cancel_requested: row.state.cancel_requested,
            started_ms: row.started_ms,
        };
        let mut action = decide(&stuck, &answers, row.now_ms, self.key_lifetime);
        if let Action::Retry(unknown) = &action {
            // In tender order, stopping at a decline, as the step does.
            for (pos, (i, token, amount)) in tenders.iter().enumerate() {
                if !unknown.contains(i) {
                    continue;
                }
                let req = CaptureRequest {
                    order_id: row.order_id.clone(),
                    token: (*token).to_owned(),
                    amount_minor: amount.minor,
                    currency: amount.currency.code().to_owned(),
                };
                match self.psp.capture(&key(*i), &req).await.map_err(row.psp())? {
                    CaptureOutcome::Approved(id) => answers[pos] = CaptureLookup::Captured(id),
                    CaptureOutcome::Declined(code) => {
                        answers[pos] = CaptureLookup::Declined(code);
                        break;
                    }
                }
            }
            action = decide(&stuck, &answers, row.now_ms, self.key_lifetime);
        }
        self.apply(tx, row, &env, order, action).await
    }

    /// Makes the refunds and voids `action` needs, then writes the state,
    /// the processor calls and the event.
    async fn apply(
        &self,
        tx: &Tx<'_>,
        row: &Claimed,
        env: &Envelope,
        order: &Order,
        action: Action,
    ) -> Result<&'static str, ReconcileError> {
        let outcome = action.outcome();
        let oid = row.order_id.as_str();
        let total = order.paid().map_err(|e| row.bad(e.to_string()))?;
        let mut st = row.state.clone();
        st.total = Some(total);
        let mut calls = Calls::default();
        let event = match action {
            Action::Retry(_) => return Err(row.bad("still unknown after capturing again")),
            Action::Capture(captures) => {
                st.phase = PayPhase::Captured;
                let ids: Vec<&str> = captures.iter().map(|c| c.capture_id.as_str()).collect();
                let psp_reference = ids.join(",");
                for c in &captures {
                    calls.push(
                        oid,
                        "capture",
                        c.tender,
                        "approved".into(),
                        Some(&c.capture_id),
                    );
                }
                st.captures = captures;
                Some(Event::PaymentCaptured(PaymentCaptured {
                    order_id: order.order_id,
                    amount: total,
                    psp_reference,
                }))
            }
            Action::Decline {
                tender,
                code,
                void,
                cancelled,
            } => {
                self.give_back(row, &void, "void", &mut calls).await?;
                calls.push(oid, "capture", tender, format!("declined:{code}"), None);
                if cancelled {
                    st.phase = PayPhase::Cancelled;
                    None
                } else {
                    st.phase = PayPhase::Failed;
                    Some(Event::PaymentFailed(PaymentFailed {
                        order_id: order.order_id,
                        reason: PAYMENT_DECLINED.to_owned(),
                    }))
                }
            }
            Action::Cancel(refund) if refund.is_empty() => {
                st.phase = PayPhase::Cancelled;
                None
            }
            Action::Cancel(refund) => {
                let ids = self.give_back(row, &refund, "refund", &mut calls).await?;
                st.phase = PayPhase::Refunded;
                st.captures = refund;
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                Some(refund_issued(order.order_id, total, &ids))
            }
            Action::Expire(void) => {
                self.give_back(row, &void, "void", &mut calls).await?;
                tracing::error!(
                    order_id = oid,
                    "capture still unknown past psp.key_lifetime_hours: \
                    not sent again, failed as capture_expired"
                );
                st.phase = PayPhase::Failed;
                Some(Event::PaymentFailed(PaymentFailed {
                    order_id: order.order_id,
                    reason: CAPTURE_EXPIRED.to_owned(),
                }))
            }
        };
        let events = event.map(|e| vec![(env, e)]).unwrap_or_default();
        self.write(tx, row, &st, &calls, events).await?;
        Ok(outcome)
    }

    /// Pays the refund owed by claimed row `row` (`Captured` with
    /// `cancel_requested`): every capture under its `refund` key, then
    /// `Refunded` with one `RefundIssued`.
    async fn refund_owed(
        &self,
        tx: &Tx<'_>,
        row: &Claimed,
    ) -> Result<&'static str, ReconcileError> {
        let env = Envelope::decode(&row.cause).map_err(|e| row.bad(e.to_string()))?;
        let oid = row.order_id.as_str();
        let mut st = row.state.clone();
        let total = st
            .total
            .ok_or_else(|| row.bad("captured without a total"))?;
        let mut calls = Calls::default();
        let mut ids = Vec::with_capacity(st.captures.len());
        for c in &st.captures {
            let r = refund_capture(&self.psp, oid, c, "refund")
                .await
                .map_err(row.psp())?;
            calls.push(oid, "refund", c.tender, "refunded".into(), Some(&r));
            ids.push(r);
        }
        st.phase = PayPhase::Refunded;
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let event = refund_issued(env.payload.order_id(), total, &ids);
        self.write(tx, row, &st, &calls, vec![(&env, event)])
            .await?;
        Ok("refunded")
    }

    /// Pays the return refunds owed by claimed row `row`, each under its
    /// return's key (one made before answers its stored result), with one
    /// `RefundIssued` each, caused by its `ReturnAccepted`.
    async fn refund_returns_owed(
        &self,
        tx: &Tx<'_>,
        row: &Claimed,
    ) -> Result<&'static str, ReconcileError> {
        let mut st = row.state.clone();
        let mut calls = Calls::default();
        let mut events = Vec::with_capacity(st.returns_owed.len());
        for cause in std::mem::take(&mut st.returns_owed) {
            let env = Envelope::decode(cause.as_bytes()).map_err(|e| row.bad(e.to_string()))?;
            let Event::ReturnAccepted(a) = &env.payload else {
                return Err(row.bad("an owed return that is not a ReturnAccepted"));
            };
            let tender = a
                .tender
                .ok_or_else(|| row.bad("an owed return with no tender"))?;
            let reference =
                refund_return(&self.psp, &st, a, tender)
                    .await
                    .map_err(|e| match e {
                        ReturnRefundError::Psp(source) => ReconcileError::Psp {
                            order: row.order_id.clone(),
                            source,
                        },
                        e => row.bad(e.to_string()),
                    })?;
            if let Some(event) = record_return_refund(&mut st, &mut calls, a, reference) {
                events.push((env.clone(), event));
            }
        }
        st.return_owed = false;
        let events: Vec<(&Envelope, Event)> = events.iter().map(|(c, e)| (c, e.clone())).collect();
        self.write(tx, row, &st, &calls, events).await?;
        Ok("return_refunded")
    }

    /// Writes a settled row's new state, its processor calls and its
    /// events (each with its cause) inside `tx`.
    async fn write(
        &self,
        tx: &Tx<'_>,
        row: &Claimed,
        st: &PaymentState,
        calls: &Calls,
        events: Vec<(&Envelope, Event)>,
    ) -> Result<(), ReconcileError> {
        let text = serde_json::to_string(st).map_err(DbError::State)?;
        tx.execute(
            &format!(
                "UPDATE {SCHEMA}.orders SET state = $2, updated_at = now() WHERE order_id = $1"
            ),
            &[&row.order_id, &text],
        )
        .await?;
        calls
            .write(tx)
            .await
            .map_err(|e| row.bad(format!("recording processor calls: {e}")))?;
        outbox::insert_many(tx, SCHEMA, &self.topics, events).await?;
        Ok(())
    }

    /// Gives `captures` back under `step`'s keys (`refund` or `void`),
    /// recording the calls; returns the refund ids.
    async fn give_back(
        &self,
        row: &Claimed,
        captures: &[Captured],
        step: &'static str,
        calls: &mut Calls,
    ) -> Result<Vec<String>, ReconcileError> {
        let oid = row.order_id.as_str();
        let mut ids = Vec::with_capacity(captures.len());
        for c in captures {
            let r = refund_capture(&self.psp, oid, c, step)
                .await
                .map_err(row.psp())?;
            calls.push(
                oid,
                "capture",
                c.tender,
                "approved".into(),
                Some(&c.capture_id),
            );
            calls.push(oid, step, c.tender, "refunded".into(), Some(&r));
            ids.push(r);
        }
        Ok(ids)
    }
}
