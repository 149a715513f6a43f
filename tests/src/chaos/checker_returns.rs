//! The checker's returns (contract 1.7): pure, like the rest of the
//! checker. One [`ReturnFact`] per return a till asked for; a return the
//! till got a 201 (or a 200 replay) for must be decided exactly once by the
//! cloud, and what follows must match the decision: an accepted return is
//! restocked once at its store and, to a card, refunded once at the
//! processor with one `RefundIssued`; a refused one (its order cancelled)
//! is neither.

use serde::Serialize;

use super::{OrderFact, must_sell};

/// Why the cloud (or the agent, at the till) refuses the return of a
/// cancelled order.
pub const ORDER_CANCELLED: &str = "order_cancelled";

/// One return a till asked for, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReturnFact {
    /// The order the goods were sold on.
    pub order_id: String,
    /// Agent index (0-based).
    pub agent: usize,
    /// The agent's store id (where the goods are restocked).
    pub store: String,
    /// The return's idempotency key.
    pub key: String,
    /// Back to the order's card (else cash).
    pub card: bool,
    /// The returned SKU.
    pub sku: String,
    /// Units returned.
    pub units: i64,
    /// What the units are worth: unit price × units, minor units.
    pub amount_minor: i64,
    /// When the till had its answer, ms from the run's start.
    pub requested_ms: u64,
    /// 201, 200 (replay), a 4xx, or 0 when the till gave up.
    pub http: u16,
    /// The return id, on a 2xx.
    pub return_id: Option<String>,
    /// The agent's `error.code` on a 4xx, or why the till gave up.
    pub code: Option<String>,
    /// The return's `cloud_status` at its store at the end.
    pub cloud_status: Option<String>,
    /// Its `cloud_reason` there.
    pub cloud_reason: Option<String>,
    /// The amount of each `ReturnAccepted` for it in Kafka, one per
    /// distinct `event_id`.
    pub accepted: Vec<i64>,
    /// The reason of each `ReturnRefused` for it, one per `event_id`.
    pub refused: Vec<String>,
    /// The amount of each `RefundIssued` naming it, one per `event_id`.
    pub refund_issued: Vec<i64>,
    /// The processor's refunds of its order, but a void's (an order has at
    /// most one return in the plan, so they are this return's).
    pub psp_refunds: Vec<i64>,
    /// The `return` movements of its order and SKU: (warehouse, on hand).
    pub movements: Vec<(String, i64)>,
}

impl ReturnFact {
    /// What the store shows, or what the till was told: `return_refunded`,
    /// `refused at the till: order_cancelled`, …
    pub fn outcome(&self) -> String {
        match (&self.return_id, &self.cloud_status) {
            (Some(_), Some(s)) => s.clone(),
            (Some(_), None) => "no cloud status".into(),
            (None, _) => format!(
                "not taken: {} {}",
                self.http,
                self.code.as_deref().unwrap_or("")
            ),
        }
    }
}

/// Whether the store shows the return's last status: refused, or accepted
/// and, for a card, refunded.
pub fn return_settled(card: bool, cloud_status: Option<&str>) -> bool {
    match cloud_status {
        Some("return_refused" | "return_refunded") => true,
        Some("return_accepted") => !card,
        _ => false,
    }
}

/// What is wrong with one return; `order` is its order's fact.
pub(super) fn return_problems(r: &ReturnFact, order: Option<&OrderFact>) -> Vec<String> {
    let Some(order) = order else {
        return vec!["its order is not among the confirmed orders".into()];
    };
    let sells = must_sell(order);
    let mut out = Vec::new();
    if r.return_id.is_none() {
        // Refused at the till: right only for a cancelled order.
        let code = r.code.as_deref().unwrap_or("none");
        if sells || r.http != 422 || code != ORDER_CANCELLED {
            let want = if sells {
                "201"
            } else {
                "201 or 422 `order_cancelled`"
            };
            out.push(format!(
                "the till's return was not taken: http {} `{code}`, expected {want}",
                r.http
            ));
        }
        return out;
    }
    // The cloud's decision: exactly one event, accepted xor refused.
    let (acc, refd) = (r.accepted.len(), r.refused.len());
    if acc > 1 {
        out.push(format!(
            "accepted {acc} times in Kafka (distinct ReturnAccepted events), expected once"
        ));
    }
    if refd > 1 {
        out.push(format!(
            "refused {refd} times in Kafka {:?}, expected once",
            r.refused
        ));
    }
    let accepted = match (acc, refd) {
        (0, 0) => {
            out.push("no decision in Kafka: neither ReturnAccepted nor ReturnRefused".into());
            Some(false)
        }
        (_, 0) => Some(true),
        (0, _) => Some(false),
        _ => {
            out.push(format!(
                "both accepted and refused {:?} in Kafka",
                r.refused
            ));
            None
        }
    };
    if accepted == Some(true) && !sells {
        out.push("accepted, expected refused `order_cancelled` (its order was cancelled)".into());
    }
    if refd > 0 && acc == 0 {
        if sells {
            out.push(format!("refused {:?}, expected accepted", r.refused));
        } else if r.refused.iter().any(|x| x != ORDER_CANCELLED) {
            out.push(format!(
                "refused {:?}, expected `{ORDER_CANCELLED}`",
                r.refused
            ));
        }
    }
    // What follows, from the decision the cloud made.
    match accepted {
        Some(true) => out.extend(accepted_problems(r)),
        Some(false) => out.extend(refused_problems(r, refd > 0)),
        None => {}
    }
    out
}

fn accepted_problems(r: &ReturnFact) -> Vec<String> {
    let mut out = Vec::new();
    let amount = r.amount_minor;
    if r.accepted.iter().any(|a| *a != amount) {
        out.push(format!(
            "accepted for {:?} minor units, the units are worth {amount}",
            r.accepted
        ));
    }
    if r.movements != [(r.store.clone(), r.units)] {
        out.push(format!(
            "`return` movements (warehouse, on hand) {:?}, expected one of {} at {}",
            r.movements, r.units, r.store
        ));
    }
    let want_status = if r.card {
        if r.psp_refunds != [amount] {
            out.push(format!(
                "{} processor refunds {:?} for a card return, expected exactly one of {amount}",
                r.psp_refunds.len(),
                r.psp_refunds
            ));
        }
        if r.refund_issued != [amount] {
            out.push(format!(
                "RefundIssued {:?} naming it, expected exactly one of {amount}",
                r.refund_issued
            ));
        }
        "return_refunded"
    } else {
        if !r.psp_refunds.is_empty() || !r.refund_issued.is_empty() {
            out.push(format!(
                "a cash return, with processor refunds {:?} and RefundIssued {:?}: expected none",
                r.psp_refunds, r.refund_issued
            ));
        }
        "return_accepted"
    };
    if r.cloud_status.as_deref() != Some(want_status) {
        out.push(format!(
            "shows `{}` at its store, expected `{want_status}`",
            r.cloud_status.as_deref().unwrap_or("none")
        ));
    }
    out
}

fn refused_problems(r: &ReturnFact, refused: bool) -> Vec<String> {
    let mut out = Vec::new();
    if !r.movements.is_empty() {
        out.push(format!(
            "not accepted, yet restocked: `return` movements (warehouse, on hand) {:?}",
            r.movements
        ));
    }
    if !r.psp_refunds.is_empty() || !r.refund_issued.is_empty() {
        out.push(format!(
            "not accepted, yet refunded: processor refunds {:?}, RefundIssued {:?}",
            r.psp_refunds, r.refund_issued
        ));
    }
    let reason = r.refused.first().map(String::as_str);
    if refused
        && (r.cloud_status.as_deref() != Some("return_refused")
            || r.cloud_reason.as_deref() != reason)
    {
        out.push(format!(
            "shows `{}` (reason {:?}) at its store, expected `return_refused` ({:?})",
            r.cloud_status.as_deref().unwrap_or("none"),
            r.cloud_reason,
            reason.unwrap_or_default()
        ));
    }
    out
}
