//! The payment service: captures card and gift-card tenders of each
//! `OrderCreated` at the processor (offline-authorised cards included), and
//! refunds after a cancellation.
//!
//! Processor calls are made outside the database transaction, each with an
//! `Idempotency-Key` of `{order_id}:{step}:{tender}`, so a redelivery or a
//! crash between the call and the commit never captures or refunds twice:
//! the processor answers the stored result. The state records intent first
//! (`Capturing`), and a cancellation that finds a capture in progress waits
//! (transient failure, retried) for it to settle.
//!
//! Cash is not sent to the processor; a cash-only order is captured as
//! `in_store`.

use o2c_protocol::event::{PaymentCaptured, PaymentFailed, RefundIssued};
use o2c_protocol::{Envelope, Event, EventType, KafkaTopics, Money, Order, Payment};
use serde::{Deserialize, Serialize};

use super::consumer::{Step, StepError};
use super::db::Tx;
use super::{Pg, db, outbox};
use crate::psp::{CaptureOutcome, CaptureRequest, PspClient, RefundRequest};

pub(crate) const SCHEMA: &str = "o2c_payment";

/// Topics the payment service consumes.
pub const SUBSCRIBES: &[EventType] = &[EventType::OrderCreated, EventType::OrderCancelled];

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
}

fn psp_err(e: crate::psp::PspError) -> StepError {
    StepError::Transient(format!("payment processor: {e}"))
}

impl Step for PaymentStep {
    fn pg(&self) -> &Pg {
        &self.pg
    }

    /// Processor calls happen between two transactions, so events never
    /// share one: [`Step::handle`] below is used instead.
    fn batchable(&self) -> bool {
        false
    }

    async fn handle_in(&self, _tx: &Tx<'_>, _env: &Envelope) -> Result<(), StepError> {
        Err(StepError::Transient(
            "payment events are handled in their own transactions".into(),
        ))
    }

    async fn handle(&self, env: &Envelope) -> Result<(), StepError> {
        match &env.payload {
            Event::OrderCreated(order) => self.capture(env, order).await,
            Event::OrderCancelled(_) => self.refund(env).await,
            _ => Ok(()),
        }
    }
}

impl PaymentStep {
    async fn capture(&self, env: &Envelope, order: &Order) -> Result<(), StepError> {
        let order_id = order.order_id.to_string();
        let event_id = env.event_id.to_string();
        // The lane is held only around each transaction, not across the
        // processor calls: the recorded intent and the idempotency keys
        // make concurrent deliveries of one order safe.
        {
            let mut lane = self.pg.get(&order_id).await?;
            if db::is_processed(lane.client(), SCHEMA, &event_id).await? {
                return Ok(());
            }
            // Record intent, unless the order is already settled or cancelled.
            let tx = lane.begin().await?;
            let mut st: PaymentState = db::lock_state(&tx, SCHEMA, &order_id).await?;
            match st.phase {
                PayPhase::Pending => {
                    st.phase = PayPhase::Capturing;
                    db::save_state(&tx, SCHEMA, &order_id, &st).await?;
                    tx.commit().await?;
                }
                PayPhase::Capturing => {}
                _ => {
                    db::mark_processed(&tx, SCHEMA, &event_id, "OrderCreated", &order_id).await?;
                    tx.commit().await?;
                    return Ok(());
                }
            }
        }
        let total = order.paid().map_err(|e| StepError::Poison {
            code: "validation_failed",
            detail: e.to_string(),
        })?;
        // Processor calls, outside any transaction.
        let mut captures = Vec::new();
        let mut declined = None;
        for (i, token, amount) in processor_tenders(order) {
            let req = CaptureRequest {
                order_id: order_id.clone(),
                token: token.to_owned(),
                amount_minor: amount.minor,
                currency: amount.currency.code().to_owned(),
            };
            let key = format!("{order_id}:capture:{i}");
            match self.psp.capture(&key, &req).await.map_err(psp_err)? {
                CaptureOutcome::Approved(id) => captures.push(Captured {
                    tender: i,
                    capture_id: id,
                    amount,
                }),
                CaptureOutcome::Declined(code) => {
                    declined = Some(code);
                    break;
                }
            }
        }
        if declined.is_some() {
            // Tenders captured before the decline are given back.
            for c in &captures {
                self.refund_one(&order_id, c, "void").await?;
            }
        }
        let mut lane = self.pg.get(&order_id).await?;
        let tx = lane.begin().await?;
        if !db::mark_processed(&tx, SCHEMA, &event_id, "OrderCreated", &order_id).await? {
            return Ok(());
        }
        let mut st: PaymentState = db::lock_state(&tx, SCHEMA, &order_id).await?;
        if st.phase != PayPhase::Capturing {
            tx.commit().await?;
            return Ok(());
        }
        st.total = Some(total);
        let event = if let Some(code) = declined {
            st.phase = PayPhase::Failed;
            log_call(&tx, &order_id, "capture", &format!("declined:{code}"), None).await?;
            Event::PaymentFailed(PaymentFailed {
                order_id: order.order_id,
                reason: PAYMENT_DECLINED.to_owned(),
            })
        } else {
            st.phase = PayPhase::Captured;
            for c in &captures {
                log_call(&tx, &order_id, "capture", "approved", Some(&c.capture_id)).await?;
            }
            let reference = if captures.is_empty() {
                IN_STORE.to_owned()
            } else {
                captures
                    .iter()
                    .map(|c| c.capture_id.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            st.captures = captures;
            Event::PaymentCaptured(PaymentCaptured {
                order_id: order.order_id,
                amount: total,
                psp_reference: reference,
            })
        };
        db::save_state(&tx, SCHEMA, &order_id, &st).await?;
        outbox::insert(&tx, SCHEMA, &self.topics, env, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn refund_one(
        &self,
        order_id: &str,
        c: &Captured,
        step: &str,
    ) -> Result<String, StepError> {
        let req = RefundRequest {
            order_id: order_id.to_owned(),
            capture_id: c.capture_id.clone(),
            amount_minor: c.amount.minor,
            currency: c.amount.currency.code().to_owned(),
        };
        let key = format!("{order_id}:{step}:{}", c.tender);
        self.psp.refund(&key, &req).await.map_err(psp_err)
    }

    async fn refund(&self, env: &Envelope) -> Result<(), StepError> {
        let order_id = env.payload.order_id().to_string();
        let event_id = env.event_id.to_string();
        let seen: Option<PaymentState> = {
            let lane = self.pg.get(&order_id).await?;
            if db::is_processed(lane.client(), SCHEMA, &event_id).await? {
                return Ok(());
            }
            db::read_state(lane.client(), SCHEMA, &order_id).await?
        };
        let mut refunds = Vec::new();
        if let Some(st) = &seen {
            match st.phase {
                PayPhase::Capturing => {
                    return Err(StepError::Transient("capture in progress".into()));
                }
                PayPhase::Captured => {
                    for c in &st.captures {
                        refunds.push(self.refund_one(&order_id, c, "refund").await?);
                    }
                }
                _ => {}
            }
        }
        let mut lane = self.pg.get(&order_id).await?;
        let tx = lane.begin().await?;
        if !db::mark_processed(&tx, SCHEMA, &event_id, "OrderCancelled", &order_id).await? {
            return Ok(());
        }
        let mut st: PaymentState = db::lock_state(&tx, SCHEMA, &order_id).await?;
        match st.phase {
            PayPhase::Pending => {
                st.phase = PayPhase::Cancelled;
                db::save_state(&tx, SCHEMA, &order_id, &st).await?;
            }
            PayPhase::Captured if seen.as_ref().map(|s| s.phase) == Some(PayPhase::Captured) => {
                st.phase = PayPhase::Refunded;
                for r in &refunds {
                    log_call(&tx, &order_id, "refund", "refunded", Some(r)).await?;
                }
                let reference = if refunds.is_empty() {
                    IN_STORE.to_owned()
                } else {
                    refunds.join(",")
                };
                let amount = st.total.ok_or_else(|| StepError::Poison {
                    code: "bad_state",
                    detail: "captured without a total".into(),
                })?;
                db::save_state(&tx, SCHEMA, &order_id, &st).await?;
                let event = Event::RefundIssued(RefundIssued {
                    order_id: env.payload.order_id(),
                    amount,
                    psp_reference: reference,
                });
                outbox::insert(&tx, SCHEMA, &self.topics, env, event).await?;
            }
            PayPhase::Captured | PayPhase::Capturing => {
                // Changed under us: roll back and retry.
                return Err(StepError::Transient("payment state changed".into()));
            }
            PayPhase::Failed | PayPhase::Cancelled | PayPhase::Refunded => {}
        }
        tx.commit().await?;
        Ok(())
    }
}

async fn log_call(
    tx: &Tx<'_>,
    order_id: &str,
    kind: &str,
    outcome: &str,
    reference: Option<&str>,
) -> Result<(), StepError> {
    tx.execute(
        &format!(
            "INSERT INTO {SCHEMA}.psp_calls (order_id, idempotency_key, kind, outcome, reference) \
             VALUES ($1, $2, $3, $4, $5)"
        ),
        &[
            &order_id,
            &format!("{order_id}:{kind}"),
            &kind,
            &outcome,
            &reference,
        ],
    )
    .await?;
    Ok(())
}
