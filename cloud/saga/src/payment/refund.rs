//! The payment step's cancellations: a void of a captured order is refunded
//! under the stable `refund` keys; one of a capture still in flight is
//! recorded (`cancel_requested`) for the reconciler.
//!
//! A refund the processor cannot take now (it is down, times out, or the
//! breaker is open) is never retried into the DLQ: the cancellation is
//! acked with the debt recorded durably in the same transaction (phase
//! `Captured` with `cancel_requested`), and [`crate::reconcile`]
//! refunds it under the same keys once the processor answers. A refund the
//! processor refuses for good (`psp_rejected`) still goes to the DLQ, for a
//! human.

use o2c_protocol::Envelope;

use super::{Calls, refund_capture, refund_issued};
use super::{CancelOutcome, Captured, PayPhase, PaymentState, PaymentStep, SCHEMA, psp_err};
use crate::batch::Batch;
use crate::consumer::StepError;
use crate::db;

impl PaymentStep {
    pub(super) async fn refund_one(
        &self,
        order_id: &str,
        c: &Captured,
        step: &str,
    ) -> Result<String, StepError> {
        refund_capture(&self.psp, order_id, c, step)
            .await
            .map_err(psp_err)
    }

    /// Handles one `OrderCancelled`.
    pub(super) async fn refund(&self, env: &Envelope) -> Result<(), StepError> {
        let order_id = env.payload.order_id().to_string();
        let event_id = env.event_id.to_string();
        let seen: Option<PaymentState> = {
            let lane = self.pg.get(&order_id).await?;
            if db::is_processed(lane.client(), SCHEMA, &event_id).await? {
                return Ok(());
            }
            // Refused here, before any refund, if another store made it.
            db::read_state(lane.client(), SCHEMA, env).await?
        };
        let mut refunds = Vec::new();
        if let Some(st) = &seen
            && st.phase == PayPhase::Captured
        {
            for c in &st.captures {
                match self.refund_one(&order_id, c, "refund").await {
                    Ok(r) => refunds.push((c.tender, r)),
                    Err(StepError::Transient(why)) => return self.owe_refund(env, &why).await,
                    Err(e) => return Err(e),
                }
            }
        }
        let mut lane = self.pg.get(&order_id).await?;
        let tx = lane.begin().await?;
        let mut batch = Batch::<PaymentState>::open(&tx, SCHEMA, &[env]).await?;
        if batch.fresh().is_empty() {
            return Ok(());
        }
        let st = batch.state_mut(env.payload.order_id());
        let mut calls = Calls::default();
        let refunded = seen.as_ref().map(|s| s.phase) == Some(PayPhase::Captured);
        let event = match st.cancel(refunded) {
            CancelOutcome::Refunded => {
                for (tender, r) in &refunds {
                    calls.push(&order_id, "refund", *tender, "refunded".into(), Some(r));
                }
                let amount = st.total.ok_or_else(|| StepError::Poison {
                    code: "bad_state",
                    detail: "captured without a total".into(),
                })?;
                let ids: Vec<&str> = refunds.iter().map(|(_, r)| r.as_str()).collect();
                Some(refund_issued(env.payload.order_id(), amount, &ids))
            }
            CancelOutcome::Requested => {
                // Recorded and acked; the capture's settlement refunds.
                tracing::info!(
                    order_id,
                    "cancellation during a capture: refund once it settles"
                );
                None
            }
            // Changed under us: roll back and retry.
            CancelOutcome::Changed => {
                return Err(StepError::Transient("payment state changed".into()));
            }
            CancelOutcome::Cancelled | CancelOutcome::Nothing => None,
        };
        if let Some(event) = event {
            batch.emit(env, event);
        }
        calls.write(&tx).await?;
        batch.close(&tx, &self.topics).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The refund of captured order `env` failed for now (`why`): records
    /// the debt (`cancel_requested` on a `Captured` order, the time of this
    /// attempt, and a cause for the `RefundIssued` if the row has none) and
    /// acks the cancellation, in one transaction. The reconciler refunds it
    /// under the same keys; refunds already made answer their stored result.
    async fn owe_refund(&self, env: &Envelope, why: &str) -> Result<(), StepError> {
        let order_id = env.payload.order_id().to_string();
        let mut lane = self.pg.get(&order_id).await?;
        let tx = lane.begin().await?;
        let mut batch = Batch::<PaymentState>::open(&tx, SCHEMA, &[env]).await?;
        if batch.fresh().is_empty() {
            return Ok(());
        }
        if !batch.state_mut(env.payload.order_id()).owe_refund() {
            // Refunded or changed meanwhile: handle it again from the top.
            return Err(StepError::Transient(format!(
                "refund deferred, but the payment state changed: {why}"
            )));
        }
        let cause = env.encode().map_err(|e| StepError::Poison {
            code: "encode_failed",
            detail: e.to_string(),
        })?;
        tx.execute(
            &format!(
                "UPDATE {SCHEMA}.orders SET capture_cause = COALESCE(capture_cause, $2), \
                 capture_attempt_at = clock_timestamp() WHERE order_id = $1"
            ),
            &[&order_id, &cause],
        )
        .await?;
        batch.close(&tx, &self.topics).await?;
        tx.commit().await?;
        tracing::warn!(
            order_id,
            error = why,
            "refund not possible now: owed, and left to the reconciler"
        );
        Ok(())
    }
}
