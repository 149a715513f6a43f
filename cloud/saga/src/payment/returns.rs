//! The payment step's returns: a `ReturnAccepted` whose money goes back
//! to a card is refunded at the processor against that tender's capture,
//! under the key `{order_id}:return:{return_id}`, and answered with one
//! `RefundIssued` naming the return. Money given back at the till (cash,
//! a gift card) needs no call here.
//!
//! The call is made before the transaction that records it, as for a
//! cancellation: a redelivery or a crash in between makes the same call
//! with the same key, and the processor answers its stored result. A
//! refund the processor cannot take now (down, timing out, the breaker
//! open) is owed: the `ReturnAccepted` is kept in the order's state
//! (`returns_owed`) and acked in one transaction, and the reconciler
//! ([`crate::reconcile`]) refunds it under the same key once the processor
//! answers. A refund the processor refuses for good dead-letters the event
//! (`psp_rejected`), for a human.

use o2c_protocol::event::RefundIssued;
use o2c_protocol::returns::ReturnAccepted;
use o2c_protocol::{Envelope, Event};

use super::{Calls, PaymentState, PaymentStep, SCHEMA, psp_err};
use crate::batch::Batch;
use crate::consumer::StepError;
use crate::db;
use crate::psp::{PspClient, PspError, RefundRequest};

/// The processor's idempotency key of a return's refund.
pub(crate) fn return_key(a: &ReturnAccepted) -> String {
    format!("{}:return:{}", a.order_id, a.return_id)
}

/// Why a return's card refund cannot be asked for.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReturnRefundError {
    /// The order has no capture of the tender the return names.
    #[error("order {order}: no capture of tender {tender} to refund")]
    NoCapture {
        /// The order.
        order: String,
        /// The tender.
        tender: u32,
    },
    /// The processor did not take it.
    #[error(transparent)]
    Psp(#[from] PspError),
}

/// Refunds return `a` (a card return, `tender` set) at the processor
/// against its tender's capture in `st`; returns the refund's reference.
pub(crate) async fn refund_return(
    psp: &PspClient,
    st: &PaymentState,
    a: &ReturnAccepted,
    tender: u32,
) -> Result<String, ReturnRefundError> {
    let capture = st
        .captures
        .iter()
        .find(|c| u32::try_from(c.tender).ok() == Some(tender))
        .ok_or_else(|| ReturnRefundError::NoCapture {
            order: a.order_id.to_string(),
            tender,
        })?;
    let req = RefundRequest {
        order_id: a.order_id.to_string(),
        capture_id: capture.capture_id.clone(),
        amount_minor: a.amount.minor,
        currency: a.amount.currency.code().to_owned(),
    };
    Ok(psp.refund(&return_key(a), &req).await?)
}

/// Records return `a` refunded by `reference` in `st` and `calls`; the
/// `RefundIssued` to emit, or `None` if it was recorded before.
pub(crate) fn record_return_refund(
    st: &mut PaymentState,
    calls: &mut Calls,
    a: &ReturnAccepted,
    reference: String,
) -> Option<Event> {
    if st.returns_refunded.contains(&a.return_id) {
        return None;
    }
    st.returns_refunded.push(a.return_id);
    let order_id = a.order_id.to_string();
    calls.push_key(
        &order_id,
        "refund",
        return_key(a),
        "refunded".into(),
        Some(&reference),
    );
    Some(Event::RefundIssued(RefundIssued {
        order_id: a.order_id,
        amount: a.amount,
        psp_reference: reference,
        return_id: Some(a.return_id),
    }))
}

impl PaymentStep {
    /// Handles one `ReturnAccepted`.
    pub(super) async fn refund_return(
        &self,
        env: &Envelope,
        a: &ReturnAccepted,
    ) -> Result<(), StepError> {
        let Some(tender) = a.tender else {
            // Given back at the till: nothing to call, nothing to record.
            return Ok(());
        };
        let order_id = a.order_id.to_string();
        let event_id = env.event_id.to_string();
        let st: PaymentState = {
            let lane = self.pg.get(&order_id).await?;
            if db::is_processed(lane.client(), SCHEMA, &event_id).await? {
                return Ok(());
            }
            db::read_state(lane.client(), SCHEMA, env)
                .await?
                .unwrap_or_default()
        };
        let reference = match refund_return(&self.psp, &st, a, tender).await {
            Ok(r) => Some(r),
            Err(ReturnRefundError::Psp(e @ PspError::Rejected { .. })) => return Err(psp_err(e)),
            Err(e @ ReturnRefundError::NoCapture { .. }) => {
                return Err(StepError::Poison {
                    code: "no_capture",
                    detail: e.to_string(),
                });
            }
            Err(ReturnRefundError::Psp(e)) => {
                tracing::warn!(order_id, return_id = %a.return_id, error = %e,
                    "return refund not possible now: owed, and left to the reconciler");
                None
            }
        };
        let mut lane = self.pg.get(&order_id).await?;
        let tx = lane.begin().await?;
        let mut batch = Batch::<PaymentState>::open(&tx, SCHEMA, &[env]).await?;
        if batch.fresh().is_empty() {
            return Ok(());
        }
        let st = batch.state_mut(a.order_id);
        let mut calls = Calls::default();
        match reference {
            Some(r) => {
                if let Some(event) = record_return_refund(st, &mut calls, a, r) {
                    batch.emit(env, event);
                }
            }
            None => {
                let cause = env.encode().map_err(|e| StepError::Poison {
                    code: "encode_failed",
                    detail: e.to_string(),
                })?;
                st.owe_return(String::from_utf8_lossy(&cause).into_owned());
                tx.execute(
                    &format!(
                        "UPDATE {SCHEMA}.orders SET capture_attempt_at = clock_timestamp() \
                         WHERE order_id = $1"
                    ),
                    &[&order_id],
                )
                .await?;
            }
        }
        calls.write(&tx).await?;
        batch.close(&tx, &self.topics).await?;
        tx.commit().await?;
        Ok(())
    }
}
