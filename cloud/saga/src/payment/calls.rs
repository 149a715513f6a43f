//! The payment service's bookkeeping of processor calls: the audit rows of
//! `psp_calls`, refunds by their stable idempotency keys, and the
//! `RefundIssued` they lead to. Shared by the consumer step
//! ([`super::PaymentStep`]) and the reconciler ([`crate::reconcile`]).

use o2c_protocol::event::RefundIssued;
use o2c_protocol::{Event, Money, OrderId};

use super::{Captured, IN_STORE, SCHEMA, idempotency_key};
use crate::consumer::StepError;
use crate::db::Tx;
use crate::psp::{PspClient, PspError, RefundRequest};

/// Refunds capture `c` of `order_id` under the key of `step` (`refund`
/// or `void`): the same capture and step never refund twice.
pub(crate) async fn refund_capture(
    psp: &PspClient,
    order_id: &str,
    c: &Captured,
    step: &str,
) -> Result<String, PspError> {
    let req = RefundRequest {
        order_id: order_id.to_owned(),
        capture_id: c.capture_id.clone(),
        amount_minor: c.amount.minor,
        currency: c.amount.currency.code().to_owned(),
    };
    psp.refund(&idempotency_key(order_id, step, c.tender), &req)
        .await
}

/// `RefundIssued` of `amount` given back by refunds `ids` (none: at the till).
pub(crate) fn refund_issued(order_id: OrderId, amount: Money, ids: &[&str]) -> Event {
    let psp_reference = if ids.is_empty() {
        IN_STORE.to_owned()
    } else {
        ids.join(",")
    };
    Event::RefundIssued(RefundIssued {
        return_id: None,
        order_id,
        amount,
        psp_reference,
    })
}

/// Processor calls to record in `psp_calls`, written in one statement.
#[derive(Debug, Default)]
pub(crate) struct Calls {
    order_ids: Vec<String>,
    keys: Vec<String>,
    kinds: Vec<&'static str>,
    outcomes: Vec<String>,
    references: Vec<Option<String>>,
}

impl Calls {
    /// A call of kind `capture`, `void` or `refund` for tender `tender`,
    /// recorded under the idempotency key it was made with.
    pub(crate) fn push(
        &mut self,
        order_id: &str,
        kind: &'static str,
        tender: usize,
        outcome: String,
        reference: Option<&str>,
    ) {
        let key = idempotency_key(order_id, kind, tender);
        self.push_key(order_id, kind, key, outcome, reference);
    }

    /// A call of kind `kind` made under `key` (a return's refund).
    pub(crate) fn push_key(
        &mut self,
        order_id: &str,
        kind: &'static str,
        key: String,
        outcome: String,
        reference: Option<&str>,
    ) {
        self.order_ids.push(order_id.to_owned());
        self.keys.push(key);
        self.kinds.push(kind);
        self.outcomes.push(outcome);
        self.references.push(reference.map(str::to_owned));
    }

    pub(crate) async fn write(&self, tx: &Tx<'_>) -> Result<(), StepError> {
        if self.order_ids.is_empty() {
            return Ok(());
        }
        tx.execute(
            &format!(
                "INSERT INTO {SCHEMA}.psp_calls (order_id, idempotency_key, kind, outcome, reference) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])"
            ),
            &[
                &self.order_ids,
                &self.keys,
                &self.kinds,
                &self.outcomes,
                &self.references,
            ],
        )
        .await?;
        Ok(())
    }
}
