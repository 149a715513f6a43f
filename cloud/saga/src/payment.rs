//! The payment service: captures card and gift-card tenders of each
//! `OrderCreated` at the processor (offline-authorised cards included), and
//! refunds after a cancellation.
//!
//! Processor calls are made outside the database transaction, each with an
//! `Idempotency-Key` of `{order_id}:{step}:{tender}`, so a redelivery or a
//! crash between the call and the commit never captures or refunds twice:
//! the processor answers the stored result. Each call is recorded in
//! `psp_calls` under that key. A request the processor refuses for good (a
//! 4xx other than 402, 408, 409, 425 and 429) dead-letters the event at once
//! as `psp_rejected`; other failures are retried. The state records intent first
//! (`Capturing`, with the event in `capture_cause` for card orders).
//!
//! A cancellation that finds a capture in progress records
//! `cancel_requested` and is acked; from then on the capture is never sent
//! again, and [`super::reconcile`] settles the order once the processor's
//! answer is known: refunded if it was captured, cancelled otherwise. Orders
//! left `Capturing` by a processor outage are finished by the same
//! reconciler. A refund the processor cannot take when the cancellation
//! comes is recorded as owed and paid by the reconciler too
//! ([`refund`](self::refund)).
//!
//! Cash is not sent to the processor; a cash-only order is captured as
//! `in_store`.
//!
//! A return accepted with a card refund is refunded at the processor
//! against that tender's capture ([`returns`](self::returns)).
//!
//! The decisions are pure, in [`state`] (what an `OrderCreated` or an
//! `OrderCancelled` does to a [`PaymentState`]); this module and
//! [`refund`](self::refund) are the shell that calls the processor and
//! writes.

use std::collections::HashSet;
use std::sync::Arc;

use o2c_protocol::event::{PaymentCaptured, PaymentFailed};
use o2c_protocol::{Envelope, Event, EventType, KafkaTopics, Money, Order, Payment};
use serde::{Deserialize, Serialize};

use super::batch::{self, Batch, States};
use super::consumer::{Step, StepError};
use super::db::Tx;
use super::reconcile::Reconciler;
use crate::pool::Pg;
use crate::psp::{CaptureOutcome, CaptureRequest, PspClient};
use o2c_protocol::breaker::BreakerState;

mod calls;
mod refund;
mod returns;
pub mod state;

pub(crate) use calls::{Calls, refund_capture, refund_issued};
pub(crate) use returns::{ReturnRefundError, record_return_refund, refund_return};
pub use state::{CancelOutcome, CaptureStart};

pub(crate) const SCHEMA: &str = "o2c_payment";

/// Topics the payment service consumes.
pub const SUBSCRIBES: &[EventType] = &[
    EventType::OrderCreated,
    EventType::OrderCancelled,
    EventType::ReturnAccepted,
];

/// The reason a declined payment gives.
pub const PAYMENT_DECLINED: &str = "payment_declined";
/// The reference of money taken at the till.
pub const IN_STORE: &str = "in_store";

/// Where one order's payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayPhase {
    /// Nothing done yet.
    #[default]
    Pending,
    /// Processor calls started (intent recorded).
    Capturing,
    /// Captured; `PaymentCaptured` emitted.
    Captured,
    /// Declined; `PaymentFailed` emitted.
    Failed,
    /// Cancelled before any capture: never capture.
    Cancelled,
    /// Refunded after a cancellation; `RefundIssued` emitted.
    Refunded,
}

/// One captured tender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Captured {
    /// Index of the tender in the order.
    pub tender: usize,
    /// The processor's capture id.
    pub capture_id: String,
    /// Amount.
    pub amount: Money,
}

/// The payment service's state of one order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PaymentState {
    /// Where it stands.
    pub phase: PayPhase,
    /// Everything tendered (cash included).
    pub total: Option<Money>,
    /// Tenders captured at the processor.
    pub captures: Vec<Captured>,
    /// A cancellation arrived while capturing: never capture again; the
    /// reconciler refunds what was captured.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_requested: bool,
    /// Returns refunded at the processor (contract 1.7): each once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub returns_refunded: Vec<o2c_protocol::ReturnId>,
    /// Returns whose card refund the processor could not take yet: their
    /// `ReturnAccepted` envelopes (JSON), refunded by the reconciler.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub returns_owed: Vec<String>,
    /// Set while `returns_owed` is not empty: the reconciler's index
    /// (migration 011) reads it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub return_owed: bool,
}

impl PaymentState {
    /// Owes the refund of the return of `cause` (a `ReturnAccepted`
    /// envelope, JSON).
    pub fn owe_return(&mut self, cause: String) {
        if !self.returns_owed.contains(&cause) {
            self.returns_owed.push(cause);
        }
        self.return_owed = true;
    }
}

/// Tenders that go to the processor: `(index, token, amount)`.
pub fn processor_tenders(order: &Order) -> Vec<(usize, &str, Money)> {
    order
        .payments
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Payment::Card { token, amount, .. } | Payment::GiftCard { token, amount } => {
                Some((i, token.as_str(), *amount))
            }
            Payment::Cash { .. } => None,
        })
        .collect()
}

/// The payment service's step.
#[derive(Debug)]
pub(crate) struct PaymentStep {
    pub(crate) pg: Pg,
    pub(crate) topics: KafkaTopics,
    pub(crate) psp: PspClient,
    /// Settles orders whose cancellation met their capture.
    pub(crate) reconciler: Arc<Reconciler>,
}

/// A request the processor refused for good goes to the DLQ at once (with
/// the processor's answer, and without tripping the breaker); anything else
/// is retried.
pub(crate) fn psp_err(e: crate::psp::PspError) -> StepError {
    match e {
        crate::psp::PspError::Rejected { .. } => StepError::Poison {
            code: "psp_rejected",
            detail: e.to_string(),
        },
        e => StepError::Transient(format!("payment processor: {e}")),
    }
}

impl Step for PaymentStep {
    fn pg(&self) -> &Pg {
        &self.pg
    }

    /// Processor calls happen between transactions: [`Step::handle`]
    /// below is used instead.
    async fn handle_in(&self, _tx: &Tx<'_>, _events: &[&Envelope]) -> Result<(), StepError> {
        Err(StepError::Transient(
            "payment events are handled in their own transactions".into(),
        ))
    }

    /// Creations are captured together ([`PaymentStep::capture`]); a
    /// cancellation is handled on its own, after the creations before it.
    async fn handle(&self, lane: usize, events: &[&Envelope]) -> Result<(), StepError> {
        let mut creations = Vec::new();
        for env in events {
            match &env.payload {
                Event::OrderCreated(order) => creations.push((*env, &**order)),
                Event::OrderCancelled(_) => {
                    self.capture(lane, &std::mem::take(&mut creations)).await?;
                    self.refund(env).await?;
                }
                Event::ReturnAccepted(a) => {
                    self.capture(lane, &std::mem::take(&mut creations)).await?;
                    self.refund_return(env, a).await?;
                }
                _ => {}
            }
        }
        self.capture(lane, &creations).await
    }
}

/// The `Idempotency-Key` of `step` (`capture`, `void` or `refund`) for
/// tender `tender` of `order_id`.
pub(crate) fn idempotency_key(order_id: &str, step: &str, tender: usize) -> String {
    format!("{order_id}:{step}:{tender}")
}

/// What the processor said about one order's tenders.
#[derive(Debug)]
struct Outcome {
    captures: Vec<Captured>,
    /// The tender declined and the processor's code.
    declined: Option<(usize, String)>,
    /// After a decline: the tenders captured before it and given back
    /// (tender, refund id).
    voids: Vec<(usize, String)>,
}

impl PaymentStep {
    /// Captures the tenders of `items` (one lane's `OrderCreated` events):
    ///
    /// 1. One transaction records intent (`Capturing`) for every order not
    ///    processed or settled before. While the breaker is open, orders
    ///    that need the processor are recorded `Capturing` and their events
    ///    marked processed with no call: the reconciler captures them once
    ///    the processor is back.
    /// 2. The processor is called for those orders concurrently (each
    ///    order's tenders in turn), outside any transaction.
    /// 3. One transaction records the outcomes, marks the events processed
    ///    and queues `PaymentCaptured` or `PaymentFailed`.
    ///
    /// An order whose calls fail is left `Capturing` and the first such
    /// error is returned after the others are committed; the consumer then
    /// handles the lane's events one by one, and the committed ones are
    /// skipped as processed. The idempotency keys make every repeated call
    /// answer the stored result.
    async fn capture(&self, lane: usize, items: &[(&Envelope, &Order)]) -> Result<(), StepError> {
        if items.is_empty() {
            return Ok(());
        }
        // Checked before any money moves: an order whose tenders cannot be
        // totalled must not be captured first and refused afterwards.
        for (_, order) in items {
            order.paid().map_err(|e| StepError::Poison {
                code: "validation_failed",
                detail: e.to_string(),
            })?;
        }
        let go = self.record_intent(lane, items).await?;
        if go.is_empty() {
            return Ok(());
        }
        // Processor calls, outside any transaction; the lane is free
        // meanwhile (the recorded intent and the idempotency keys make
        // concurrent deliveries of one order safe).
        let results = futures::future::join_all(go.iter().map(|(env, order)| {
            // Under the step's span (the envelope's context).
            let (span, _) = crate::spans::child(
                "payment",
                "processor_call",
                env.traceparent
                    .as_ref()
                    .map(o2c_protocol::Traceparent::as_str),
            );
            tracing::Instrument::instrument(self.call_processor(order), span)
        }))
        .await;
        let mut failure = None;
        let mut done = Vec::new();
        for ((env, order), r) in go.into_iter().zip(results) {
            match r {
                Ok(outcome) => done.push((env, order, outcome)),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if !done.is_empty() {
            let cancelled = self.record_outcomes(lane, done).await?;
            if !cancelled.is_empty() {
                // Cancelled while the processor answered: settle now (the
                // answers are known), or leave it to the periodic sweep.
                let mut lane = self.pg.lane(lane).await?;
                if let Err(e) = self.reconciler.settle_orders(&mut lane, &cancelled).await {
                    tracing::warn!(error = %e, "settling cancelled captures left to the reconciler");
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Step 1 of [`PaymentStep::capture`]: returns the items to call the
    /// processor for.
    async fn record_intent<'e>(
        &self,
        lane: usize,
        items: &[(&'e Envelope, &'e Order)],
    ) -> Result<Vec<(&'e Envelope, &'e Order)>, StepError> {
        let mut lane = self.pg.lane(lane).await?;
        let tx = lane.begin().await?;
        let ids: Vec<String> = items.iter().map(|(e, _)| e.event_id.to_string()).collect();
        let rows = tx
            .query(
                &format!("SELECT event_id FROM {SCHEMA}.processed_events WHERE event_id = ANY($1)"),
                &[&ids],
            )
            .await?;
        let processed: HashSet<&str> = rows.iter().map(|r| r.get::<_, &str>(0)).collect();
        let mut seen = HashSet::new();
        let todo: Vec<(&Envelope, &Order)> = items
            .iter()
            .zip(&ids)
            .filter(|(_, id)| !processed.contains(id.as_str()) && seen.insert(id.as_str()))
            .map(|(item, _)| *item)
            .collect();
        let envs: Vec<&Envelope> = todo.iter().map(|(e, _)| *e).collect();
        let mut states = States::<PaymentState>::lock(&tx, SCHEMA, &envs).await?;
        // With the breaker open no call would be made: an order that needs
        // one becomes `Capturing` with its cause recorded and its event is
        // marked processed, so the capture reconciler (`saga::reconcile`)
        // makes the call once the processor is back, under the same
        // idempotency key. Before the reconciler existed such orders went
        // to the DLQ after their retries and waited for a manual replay.
        let open = self.psp.breaker_state() == BreakerState::Open;
        let mut go = Vec::new();
        let mut settled = Vec::new();
        let mut attempts = Vec::new();
        let mut deferred = 0usize;
        for (env, order) in todo {
            let card = !processor_tenders(order).is_empty();
            match states.get_mut(order.order_id).start_capture(card, open) {
                CaptureStart::Call => {
                    go.push((env, order));
                    if card {
                        attempts.push(env);
                    }
                }
                CaptureStart::Defer => {
                    attempts.push(env);
                    settled.push(env);
                    deferred += 1;
                }
                // Recorded here too for a row older than migration 005.
                CaptureStart::Reconcile => {
                    settled.push(env);
                    attempts.push(env);
                }
                CaptureStart::Skip => settled.push(env),
            }
        }
        states.save(&tx).await?;
        record_attempts(&tx, &attempts).await?;
        batch::mark_processed(&tx, SCHEMA, &settled).await?;
        tx.commit().await?;
        if deferred > 0 {
            tracing::warn!(
                orders = deferred,
                "processor breaker open: captures left to the reconciler"
            );
        }
        Ok(go)
    }

    /// Step 2 of [`PaymentStep::capture`] for one order: its processor
    /// tenders in turn; after a decline, the tenders captured before it are
    /// given back.
    async fn call_processor(&self, order: &Order) -> Result<Outcome, StepError> {
        let order_id = order.order_id.to_string();
        let mut captures = Vec::new();
        let mut declined = None;
        for (i, token, amount) in processor_tenders(order) {
            let req = CaptureRequest {
                order_id: order_id.clone(),
                token: token.to_owned(),
                amount_minor: amount.minor,
                currency: amount.currency.code().to_owned(),
            };
            let key = idempotency_key(&order_id, "capture", i);
            match self.psp.capture(&key, &req).await.map_err(psp_err)? {
                CaptureOutcome::Approved(id) => captures.push(Captured {
                    tender: i,
                    capture_id: id,
                    amount,
                }),
                CaptureOutcome::Declined(code) => {
                    declined = Some((i, code));
                    break;
                }
            }
        }
        let mut voids = Vec::new();
        if declined.is_some() {
            for c in &captures {
                voids.push((c.tender, self.refund_one(&order_id, c, "void").await?));
            }
        }
        Ok(Outcome {
            captures,
            declined,
            voids,
        })
    }

    /// Step 3 of [`PaymentStep::capture`]. Returns the card orders whose
    /// cancellation arrived meanwhile: they stay `Capturing` (event
    /// processed) for [`Reconciler::settle_orders`].
    async fn record_outcomes(
        &self,
        lane: usize,
        done: Vec<(&Envelope, &Order, Outcome)>,
    ) -> Result<Vec<String>, StepError> {
        let mut lane = self.pg.lane(lane).await?;
        let tx = lane.begin().await?;
        let events: Vec<&Envelope> = done.iter().map(|(e, _, _)| *e).collect();
        let mut batch = Batch::<PaymentState>::open(&tx, SCHEMA, &events).await?;
        let fresh: HashSet<_> = batch.fresh().iter().map(|e| e.event_id).collect();
        let mut calls = Calls::default();
        let mut cancelled = Vec::new();
        for (env, order, outcome) in done {
            if !fresh.contains(&env.event_id) {
                continue;
            }
            let order_id = order.order_id.to_string();
            let total = order.paid().map_err(|e| StepError::Poison {
                code: "validation_failed",
                detail: e.to_string(),
            })?;
            let st = batch.state_mut(order.order_id);
            if st.phase != PayPhase::Capturing {
                continue;
            }
            st.total = Some(total);
            if st.cancel_requested {
                if processor_tenders(order).is_empty() {
                    // Cash only: given back at the till, as after a capture.
                    st.phase = PayPhase::Refunded;
                    batch.emit(env, refund_issued(order.order_id, total, &[]));
                } else {
                    cancelled.push(order_id);
                }
                continue;
            }
            for c in &outcome.captures {
                calls.push(
                    &order_id,
                    "capture",
                    c.tender,
                    "approved".into(),
                    Some(&c.capture_id),
                );
            }
            let event = if let Some((tender, code)) = outcome.declined {
                st.phase = PayPhase::Failed;
                calls.push(
                    &order_id,
                    "capture",
                    tender,
                    format!("declined:{code}"),
                    None,
                );
                for (tender, refund) in &outcome.voids {
                    calls.push(&order_id, "void", *tender, "refunded".into(), Some(refund));
                }
                Event::PaymentFailed(PaymentFailed {
                    order_id: order.order_id,
                    reason: PAYMENT_DECLINED.to_owned(),
                })
            } else {
                st.phase = PayPhase::Captured;
                let reference = if outcome.captures.is_empty() {
                    IN_STORE.to_owned()
                } else {
                    outcome
                        .captures
                        .iter()
                        .map(|c| c.capture_id.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                st.captures = outcome.captures;
                Event::PaymentCaptured(PaymentCaptured {
                    order_id: order.order_id,
                    amount: total,
                    psp_reference: reference,
                })
            };
            batch.emit(env, event);
        }
        calls.write(&tx).await?;
        batch.close(&tx, &self.topics).await?;
        tx.commit().await?;
        Ok(cancelled)
    }
}

/// Records a capture attempt of each card order of `events` (their
/// `OrderCreated`): the event itself the first time, and when.
async fn record_attempts(tx: &Tx<'_>, events: &[&Envelope]) -> Result<(), StepError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(events.len());
    let mut causes = Vec::with_capacity(events.len());
    for env in events {
        ids.push(env.payload.order_id().to_string());
        causes.push(env.encode().map_err(|e| StepError::Poison {
            code: "encode_failed",
            detail: e.to_string(),
        })?);
    }
    tx.execute(
        &format!(
            "UPDATE {SCHEMA}.orders AS o SET capture_cause = COALESCE(o.capture_cause, u.c), \
             capture_started_at = COALESCE(o.capture_started_at, clock_timestamp()), \
             capture_attempt_at = clock_timestamp() \
             FROM unnest($1::text[], $2::bytea[]) AS u(id, c) WHERE o.order_id = u.id"
        ),
        &[&ids, &causes],
    )
    .await?;
    Ok(())
}
