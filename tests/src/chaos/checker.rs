//! The checker: pure. It takes the facts the runner collected after
//! quiescence ([`Facts`]) and returns a [`Verdict`]. Nothing here touches
//! a socket, so it is unit-tested with synthetic histories, failing ones
//! included. The returns' checks are in `checker_returns.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

#[path = "checker_returns.rs"]
mod returns;

pub use returns::{ORDER_CANCELLED, ReturnFact, return_settled};

/// How a till paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pay {
    /// Cash only: never reaches the processor.
    Cash,
    /// One card for the whole amount.
    Card,
    /// Card for part, cash for the rest.
    Split,
    /// A card the processor declines (`tok_decline…`).
    Declined,
}

impl Pay {
    /// Whether the processor sees this order.
    pub fn uses_card(self) -> bool {
        matches!(self, Pay::Card | Pay::Split | Pay::Declined)
    }
}

/// One order a till got a 201 (or a 200 replay) for, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderFact {
    /// The order id.
    pub order_id: String,
    /// Agent index (0-based).
    pub agent: usize,
    /// The till's idempotency key.
    pub key: String,
    /// Tender.
    pub pay: Pay,
    /// Card part, minor units (0 for cash).
    pub card_minor: i64,
    /// SKU and quantity sold.
    pub sku: String,
    /// Units.
    pub qty: i64,
    /// Ship-to-home rather than carry-out.
    pub ship: bool,
    /// When the till got its answer, ms from the run's start.
    pub captured_ms: u64,
    /// The HTTP status of that answer (201, or 200 for a replay).
    pub http: u16,
    /// When the till's void was accepted, if it voided the order.
    pub voided_ms: Option<u64>,
    /// The cloud status the store shows at the end.
    pub final_status: Option<String>,
    /// Capture amounts in the processor's ledger for this order.
    pub captures: Vec<i64>,
    /// Refund amounts in the processor's ledger for this order.
    pub refunds: Vec<i64>,
    /// The status of each booking the carrier holds for this order.
    pub parcels: Vec<String>,
    /// Net stock movement of this order: (on_hand, reserved).
    pub stock_delta: (i64, i64),
    /// The cloud's own view, e.g. `order completed, payment refunded` (to
    /// tell a lost status update from a stuck saga).
    pub cloud: Option<String>,
}

/// One SKU's stock at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StockFact {
    /// SKU.
    pub sku: String,
    /// Units provisioned (auto stock for each row made for a sale; none
    /// for a row a return made at a store that had none).
    pub initial: i64,
    /// Units on hand now, over every warehouse.
    pub on_hand: i64,
    /// Units reserved now.
    pub reserved: i64,
    /// Units put back by returns (the `return` movements; each return's
    /// own are checked against its decision).
    pub returned: i64,
}

/// What Kafka holds for the agents' events, by `event_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KafkaFact {
    /// Event ids in an agent's outbox and in no Kafka topic.
    pub missing: Vec<String>,
    /// Event ids in Kafka with two different payloads.
    pub changed: Vec<String>,
    /// Event ids in Kafka no agent wrote.
    pub unknown: Vec<String>,
    /// Records beyond the first per event id (removed by dedup).
    pub raw_duplicates: usize,
    /// Per-agent seq order broken within a partition.
    pub order_errors: Vec<String>,
}

/// One agent's outbox at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentFact {
    /// Agent index.
    pub agent: usize,
    /// Rows not acked.
    pub pending: usize,
    /// Every outbox seq, ascending.
    pub seqs: Vec<u64>,
}

/// A consumer group's committed offset on one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupOffset {
    /// Group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Committed offset (None: nothing committed).
    pub committed: Option<i64>,
    /// End offset (high watermark).
    pub end: i64,
}

impl GroupOffset {
    /// Whether everything up to the end is committed.
    pub fn caught_up(&self) -> bool {
        self.end == 0 || self.committed.is_some_and(|c| c >= self.end)
    }
}

/// A fault as it happened, ms from the run's start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultSpan {
    /// When it began.
    pub start_ms: u64,
    /// When it healed.
    pub end_ms: u64,
    /// What it was.
    pub label: String,
}

/// Everything the checker needs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Facts {
    /// Orders with a 2xx.
    pub orders: Vec<OrderFact>,
    /// Every return a till asked for.
    pub returns: Vec<ReturnFact>,
    /// Return events and `return` movements in the cloud that no till's
    /// return accounts for, and return records that do not decode
    /// (described: topic or table, return and order).
    pub stray_returns: Vec<String>,
    /// Stock per SKU.
    pub stock: Vec<StockFact>,
    /// The Kafka view.
    pub kafka: KafkaFact,
    /// Agents' outboxes.
    pub agents: Vec<AgentFact>,
    /// Saga consumer groups.
    pub groups: Vec<GroupOffset>,
    /// Faults applied.
    pub faults: Vec<FaultSpan>,
}

/// One broken promise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The order it concerns, if any.
    pub order_id: Option<String>,
    /// What is wrong.
    pub what: String,
    /// Faults near the order's capture (see [`FAULT_WINDOW_MS`]).
    pub faults_near: Vec<String>,
}

/// The result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    /// Orders checked.
    pub orders: usize,
    /// Orders by final status at the store.
    pub by_status: BTreeMap<String, usize>,
    /// Returns asked for.
    pub returns: usize,
    /// Returns by final status at the store (or how the till was refused).
    pub returns_by_status: BTreeMap<String, usize>,
    /// Raw duplicates in Kafka (allowed; removed by dedup).
    pub raw_duplicates: usize,
    /// Everything that failed.
    pub failures: Vec<Failure>,
}

impl Verdict {
    /// True when nothing failed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = if self.passed() { "PASS" } else { "FAIL" };
        writeln!(
            f,
            "verdict: {word}: {} orders, final statuses {:?}, {} returns {:?}, {} raw Kafka duplicates (deduped), {} failures",
            self.orders,
            self.by_status,
            self.returns,
            self.returns_by_status,
            self.raw_duplicates,
            self.failures.len()
        )?;
        let stuck: Vec<String> = self
            .by_status
            .iter()
            .filter(|(s, _)| !FINAL.contains(&s.as_str()))
            .map(|(s, n)| format!("{n} at `{s}`"))
            .collect();
        if !stuck.is_empty() {
            writeln!(f, "  orders stuck (not final): {}", stuck.join(", "))?;
        }
        for x in self.failures.iter().take(50) {
            match &x.order_id {
                Some(id) => write!(f, "  order {id}: {}", x.what)?,
                None => write!(f, "  {}", x.what)?,
            }
            if !x.faults_near.is_empty() {
                let shown: Vec<&str> = x.faults_near.iter().take(3).map(String::as_str).collect();
                write!(f, " [faults near: {}", shown.join("; "))?;
                if x.faults_near.len() > 3 {
                    write!(f, "; +{} more", x.faults_near.len() - 3)?;
                }
                write!(f, "]")?;
            }
            writeln!(f)?;
        }
        if self.failures.len() > 50 {
            writeln!(
                f,
                "  … and {} more (see the history file)",
                self.failures.len() - 50
            )?;
        }
        Ok(())
    }
}

/// Faults from this long before an order's capture to this long after it
/// are named in its failure.
pub const FAULT_WINDOW_MS: u64 = 30_000;

const FINAL: [&str; 3] = ["completed", "cancelled", "refunded"];

/// Checks every promise (see the module docs of `chaos`).
pub fn check(facts: &Facts) -> Verdict {
    let mut v = Verdict {
        orders: facts.orders.len(),
        returns: facts.returns.len(),
        raw_duplicates: facts.kafka.raw_duplicates,
        ..Verdict::default()
    };
    // Orders whose processor refunds the checks of their returns account for.
    let returned: BTreeSet<&str> = facts
        .returns
        .iter()
        .filter(|r| r.return_id.is_some())
        .map(|r| r.order_id.as_str())
        .collect();
    for o in &facts.orders {
        let status = o.final_status.clone().unwrap_or_else(|| "none".into());
        *v.by_status.entry(status).or_default() += 1;
        for what in order_problems(o, returned.contains(o.order_id.as_str())) {
            v.failures.push(Failure {
                order_id: Some(o.order_id.clone()),
                what: format!(
                    "{what} (agent-{}, key {}, {:?}, captured t+{} ms, http {}{}; cloud: {})",
                    o.agent + 1,
                    o.key,
                    o.pay,
                    o.captured_ms,
                    o.http,
                    o.voided_ms
                        .map(|t| format!(", voided t+{t} ms"))
                        .unwrap_or_default(),
                    o.cloud.as_deref().unwrap_or("no state")
                ),
                faults_near: faults_near(&facts.faults, o.captured_ms),
            });
        }
    }
    return_failures(facts, &mut v);
    for s in &facts.stray_returns {
        v.failures.push(global(format!("returns: {s}")));
    }
    stock_problems(facts, &mut v.failures);
    let k = &facts.kafka;
    for (list, what) in [
        (&k.missing, "confirmed event missing from Kafka"),
        (
            &k.changed,
            "event changed in transit (two payloads for one event_id)",
        ),
        (&k.unknown, "event in Kafka that no agent wrote"),
    ] {
        for id in list {
            v.failures.push(global(format!("{what}: event_id {id}")));
        }
    }
    for e in &k.order_errors {
        v.failures
            .push(global(format!("per-agent order broken in Kafka: {e}")));
    }
    for a in &facts.agents {
        if a.pending > 0 {
            v.failures.push(global(format!(
                "agent-{}: {} outbox rows never acked",
                a.agent + 1,
                a.pending
            )));
        }
        let expected: Vec<u64> = (1..=a.seqs.len() as u64).collect();
        if a.seqs != expected {
            let gap = a
                .seqs
                .iter()
                .zip(expected.iter())
                .find(|(s, e)| s != e)
                .map(|(s, e)| format!("seq {s} where {e} was due"))
                .unwrap_or_default();
            v.failures.push(global(format!(
                "agent-{}: outbox seqs have a gap: {gap}",
                a.agent + 1
            )));
        }
    }
    for g in facts.groups.iter().filter(|g| !g.caught_up()) {
        v.failures.push(global(format!(
            "consumer group {} on {}[{}]: committed {} of end offset {}",
            g.group,
            g.topic,
            g.partition,
            g.committed
                .map(|c| c.to_string())
                .unwrap_or_else(|| "nothing".into()),
            g.end
        )));
    }
    v
}

fn global(what: String) -> Failure {
    Failure {
        order_id: None,
        what,
        faults_near: Vec::new(),
    }
}

/// The faults that overlap `[t - window, t + window]`.
pub fn faults_near(faults: &[FaultSpan], t: u64) -> Vec<String> {
    let lo = t.saturating_sub(FAULT_WINDOW_MS);
    let hi = t + FAULT_WINDOW_MS;
    faults
        .iter()
        .filter(|f| f.end_ms >= lo && f.start_ms <= hi)
        .map(|f| format!("t+{}..{} ms {}", f.start_ms, f.end_ms, f.label))
        .collect()
}

/// Whether the order must end sold: the till did not void it and the
/// processor did not decline it. Money and stock are checked against this
/// (what the tills did), not against the status the store shows, so a lost
/// status update is reported as that and not as a stock error.
pub fn must_sell(o: &OrderFact) -> bool {
    o.voided_ms.is_none() && o.pay != Pay::Declined
}

/// Each return's failures, with its till, times and the faults near its
/// request.
fn return_failures(facts: &Facts, v: &mut Verdict) {
    let orders: BTreeMap<&str, &OrderFact> = facts
        .orders
        .iter()
        .map(|o| (o.order_id.as_str(), o))
        .collect();
    for r in &facts.returns {
        *v.returns_by_status.entry(r.outcome()).or_default() += 1;
        let order = orders.get(r.order_id.as_str()).copied();
        for what in returns::return_problems(r, order) {
            v.failures.push(Failure {
                order_id: Some(r.order_id.clone()),
                what: format!(
                    "return {}: {what} (agent-{}, key {}, {} of {} {} of a {} order, requested t+{} ms, http {}; store: {}{})",
                    r.return_id.as_deref().unwrap_or("(none)"),
                    r.agent + 1,
                    r.key,
                    if r.card { "card refund" } else { "cash refund" },
                    r.units,
                    r.sku,
                    order.map_or_else(|| "?".to_owned(), |o| format!("{:?}", o.pay)),
                    r.requested_ms,
                    r.http,
                    r.cloud_status.as_deref().unwrap_or("no status"),
                    r.cloud_reason
                        .as_deref()
                        .map(|x| format!(" {x}"))
                        .unwrap_or_default()
                ),
                faults_near: faults_near(&facts.faults, r.requested_ms),
            });
        }
    }
}

/// `returned`: the order has a return a till was given, whose checks
/// account for the order's processor refunds.
fn order_problems(o: &OrderFact, returned: bool) -> Vec<String> {
    let mut out = Vec::new();
    let (caps, refs) = (o.captures.len(), o.refunds.len());
    // Money: exactly once, from what the till did.
    if o.pay.uses_card() && o.pay != Pay::Declined {
        if must_sell(o) && returned && caps != 1 {
            out.push(format!(
                "{caps} captures in the processor's ledger, expected exactly 1 (its return's refunds are checked with the return)"
            ));
        }
        if must_sell(o) && !returned && (caps, refs) != (1, 0) {
            out.push(format!(
                "{caps} captures and {refs} refunds in the processor's ledger, expected exactly 1 capture and no refund"
            ));
        }
        if !must_sell(o) && (caps > 1 || refs != caps) {
            out.push(format!(
                "voided, with {caps} captures and {refs} refunds in the processor's ledger: expected every capture (at most 1) refunded once"
            ));
        }
        if o.captures.iter().any(|a| *a != o.card_minor) {
            out.push(format!(
                "captured {:?}, the card part is {}",
                o.captures, o.card_minor
            ));
        }
    } else if caps > 0 || (refs > 0 && !returned) {
        out.push(format!(
            "{caps} captures and {refs} refunds in the processor's ledger for a {:?} order",
            o.pay
        ));
    }
    // Parcels: one per ship-to-home sale, delivered; a voided one
    // cancelled at the carrier unless it had already left.
    let parcels: Vec<&str> = o.parcels.iter().map(String::as_str).collect();
    match (o.ship, must_sell(o)) {
        (false, _) if !parcels.is_empty() => {
            out.push(format!("carry-out, with carrier bookings {parcels:?}"))
        }
        (true, true) if parcels != ["delivered"] => out.push(format!(
            "carrier bookings {parcels:?}, expected exactly one, delivered"
        )),
        (true, false) if parcels.len() > 1 => out.push(format!(
            "voided, with carrier bookings {parcels:?}: expected at most one"
        )),
        _ => {}
    }
    // Stock: taken once when sold, given back otherwise.
    let want_stock = if must_sell(o) { -o.qty } else { 0 };
    if o.stock_delta != (want_stock, 0) {
        out.push(format!(
            "net stock movement (on_hand, reserved) {:?}, expected ({want_stock}, 0)",
            o.stock_delta
        ));
    }
    // The status the store shows.
    let status = o.final_status.as_deref().unwrap_or("none");
    if !FINAL.contains(&status) {
        out.push(format!(
            "stuck at `{status}` at the store, not a final status"
        ));
        return out;
    }
    let expected: &[&str] = match o.pay {
        _ if must_sell(o) => &["completed"],
        Pay::Declined => &["cancelled"],
        Pay::Cash => &["cancelled", "refunded"],
        Pay::Card | Pay::Split if caps > 0 => &["refunded"],
        Pay::Card | Pay::Split => &["cancelled"],
    };
    if !expected.contains(&status) {
        out.push(format!(
            "ended `{status}` at the store, expected {}",
            expected.join(" or ")
        ));
    }
    out
}

fn stock_problems(facts: &Facts, out: &mut Vec<Failure>) {
    let mut sold: BTreeMap<&str, i64> = BTreeMap::new();
    for o in facts.orders.iter().filter(|o| must_sell(o)) {
        *sold.entry(o.sku.as_str()).or_default() += o.qty;
    }
    for s in &facts.stock {
        let want = s.initial - sold.get(s.sku.as_str()).copied().unwrap_or(0) + s.returned;
        if s.on_hand != want || s.reserved != 0 {
            out.push(global(format!(
                "stock of {}: on_hand {} reserved {}, expected on_hand {want} (initial {} minus sold, returns and releases added back) and reserved 0",
                s.sku, s.on_hand, s.reserved, s.initial
            )));
        }
    }
    for sku in sold.keys() {
        if !facts.stock.iter().any(|s| s.sku == *sku) {
            out.push(global(format!("no stock row for {sku}, which was sold")));
        }
    }
}

#[cfg(test)]
#[path = "checker_tests.rs"]
mod tests;
