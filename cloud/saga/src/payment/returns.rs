//! The payment step's returns: a `ReturnAccepted` whose money goes back
//! to a card is refunded at the processor against that tender's capture,
//! under the key `{order_id}:return:{return_id}`, and answered with one
//! `RefundIssued` naming the return. Money given back at the till (cash,
//! a gift card) needs no call here.
//!
//! The call is made before the transaction that records it, as for a
//! cancellation: a redelivery or a crash in between makes the same call
//! with the same key, and the processor answers its stored result. A
//! processor that cannot answer now is retried by the consumer (then
//! dead-lettered, for a replay once it is back); one that refuses for good
//! dead-letters the event at once (`psp_rejected`).

use o2c_protocol::Envelope;
use o2c_protocol::event::RefundIssued;
use o2c_protocol::returns::ReturnAccepted;

use super::{Calls, PaymentState, PaymentStep, SCHEMA, psp_err};
use crate::batch::Batch;
use crate::consumer::StepError;
use crate::db;
use crate::psp::RefundRequest;

/// The processor's idempotency key of a return's refund.
pub(crate) fn return_key(a: &ReturnAccepted) -> String {
    format!("{}:return:{}", a.order_id, a.return_id)
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
        let capture = {
            let lane = self.pg.get(&order_id).await?;
            if db::is_processed(lane.client(), SCHEMA, &event_id).await? {
                return Ok(());
            }
            let st: Option<PaymentState> = db::read_state(lane.client(), SCHEMA, env).await?;
            st.and_then(|s| {
                s.captures
                    .into_iter()
                    .find(|c| u32::try_from(c.tender).ok() == Some(tender))
            })
            .ok_or_else(|| StepError::Poison {
                code: "no_capture",
                detail: format!("order {order_id}: no capture of tender {tender} to refund"),
            })?
        };
        let key = return_key(a);
        let req = RefundRequest {
            order_id: order_id.clone(),
            capture_id: capture.capture_id.clone(),
            amount_minor: a.amount.minor,
            currency: a.amount.currency.code().to_owned(),
        };
        let reference = self.psp.refund(&key, &req).await.map_err(psp_err)?;
        let mut lane = self.pg.get(&order_id).await?;
        let tx = lane.begin().await?;
        let mut batch = Batch::<PaymentState>::open(&tx, SCHEMA, &[env]).await?;
        if batch.fresh().is_empty() {
            return Ok(());
        }
        let st = batch.state_mut(a.order_id);
        if !st.returns_refunded.contains(&a.return_id) {
            st.returns_refunded.push(a.return_id);
            let mut calls = Calls::default();
            calls.push_key(
                &order_id,
                "refund",
                key,
                "refunded".into(),
                Some(&reference),
            );
            calls.write(&tx).await?;
            batch.emit(
                env,
                o2c_protocol::Event::RefundIssued(RefundIssued {
                    order_id: a.order_id,
                    amount: a.amount,
                    psp_reference: reference,
                    return_id: Some(a.return_id),
                }),
            );
        }
        batch.close(&tx, &self.topics).await?;
        tx.commit().await?;
        Ok(())
    }
}
