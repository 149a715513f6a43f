//! The checker's unit tests: clean and failing synthetic histories.
use super::*;

fn order(id: &str, pay: Pay, status: &str) -> OrderFact {
    let card = if pay == Pay::Cash { 0 } else { 1000 };
    OrderFact {
        order_id: id.into(),
        agent: 0,
        key: format!("k-{id}"),
        pay,
        card_minor: card,
        sku: "SKU-A".into(),
        qty: 1,
        ship: false,
        captured_ms: 10_000,
        http: 201,
        voided_ms: None,
        final_status: Some(status.into()),
        captures: if pay.uses_card() && pay != Pay::Declined {
            vec![card]
        } else {
            vec![]
        },
        refunds: vec![],
        parcels: vec![],
        stock_delta: if status == "completed" {
            (-1, 0)
        } else {
            (0, 0)
        },
        cloud: Some(format!("order {status}")),
    }
}

fn healthy() -> Facts {
    let mut voided = order("o3", Pay::Card, "refunded");
    voided.voided_ms = Some(12_000);
    voided.refunds = vec![1000];
    Facts {
        orders: vec![
            order("o1", Pay::Card, "completed"),
            order("o2", Pay::Cash, "completed"),
            voided,
            order("o4", Pay::Declined, "cancelled"),
        ],
        returns: vec![],
        stray_returns: vec![],
        stock: vec![StockFact {
            sku: "SKU-A".into(),
            initial: 100,
            on_hand: 98,
            reserved: 0,
            returned: 0,
        }],
        kafka: KafkaFact {
            raw_duplicates: 3,
            ..KafkaFact::default()
        },
        agents: vec![AgentFact {
            agent: 0,
            pending: 0,
            seqs: vec![1, 2, 3, 4, 5],
        }],
        groups: vec![GroupOffset {
            group: "g-order".into(),
            topic: "t.orders.created".into(),
            partition: 0,
            committed: Some(5),
            end: 5,
        }],
        faults: vec![FaultSpan {
            start_ms: 9_000,
            end_ms: 9_500,
            label: "kill -9 saga-payment".into(),
        }],
    }
}

#[test]
fn a_clean_history_passes() {
    let v = check(&healthy());
    assert!(v.passed(), "{v}");
    assert_eq!(v.by_status["completed"], 2);
    assert!(v.to_string().starts_with("verdict: PASS"));
}

#[test]
fn a_stuck_order_fails_and_names_the_faults_around_it() {
    let mut f = healthy();
    f.orders[0].final_status = Some("paid".into());
    f.orders[0].stock_delta = (0, 1);
    f.stock[0].on_hand = 99;
    f.stock[0].reserved = 1;
    f.groups[0].committed = None;
    let v = check(&f);
    assert!(!v.passed());
    let stuck = v
        .failures
        .iter()
        .find(|x| x.what.contains("stuck at"))
        .expect("a stuck failure");
    assert_eq!(stuck.order_id.as_deref(), Some("o1"));
    assert!(stuck.what.contains("stuck at `paid`"), "{}", stuck.what);
    assert!(
        stuck.what.contains("cloud: order completed"),
        "{}",
        stuck.what
    );
    assert_eq!(
        stuck.faults_near,
        vec!["t+9000..9500 ms kill -9 saga-payment"]
    );
    let text = v.to_string();
    assert!(text.contains("committed nothing of end offset 5"), "{text}");
    assert!(
        text.contains("orders stuck (not final): 1 at `paid`"),
        "{text}"
    );
    assert!(text.contains("verdict: FAIL"));
}

#[test]
fn double_captures_and_captures_of_cancelled_orders_fail() {
    let mut f = healthy();
    f.orders[0].captures = vec![1000, 1000];
    f.orders[3].captures = vec![1000];
    let mut cancelled = order("o5", Pay::Card, "cancelled");
    cancelled.voided_ms = Some(11_000);
    cancelled.captures = vec![1000];
    f.orders.push(cancelled);
    let v = check(&f);
    let whats: Vec<_> = v
        .failures
        .iter()
        .map(|x| (x.order_id.clone(), x.what.clone()))
        .collect();
    assert!(
        whats
            .iter()
            .any(|(o, w)| o.as_deref() == Some("o1") && w.contains("2 captures")),
        "{whats:?}"
    );
    assert!(
        whats
            .iter()
            .any(|(o, w)| o.as_deref() == Some("o4") && w.contains("1 captures")),
        "{whats:?}"
    );
    assert!(
        whats.iter().any(|(o, w)| o.as_deref() == Some("o5")
            && w.contains("voided, with 1 captures and 0 refunds")),
        "{whats:?}"
    );
}

#[test]
fn a_ship_to_home_sale_needs_exactly_one_delivered_parcel() {
    // o1 (a completed card sale) shipped to home.
    let with = |parcels: &[&str]| {
        let mut facts = healthy();
        facts.orders[0].ship = true;
        facts.orders[0].parcels = parcels.iter().map(|s| (*s).to_owned()).collect();
        facts
    };
    let ok = with(&["delivered"]);
    assert!(check(&ok).passed(), "{}", check(&ok));
    for bad in [&[][..], &["in_transit"], &["delivered", "delivered"]] {
        let v = check(&with(bad));
        assert!(!v.passed(), "{bad:?}");
        assert!(v.to_string().contains("carrier bookings"), "{v}");
    }
    let mut carry = healthy();
    carry.orders[0].parcels = vec!["booked".into()];
    assert!(!check(&carry).passed());
}

#[test]
fn a_refund_missing_or_doubled_fails() {
    let mut f = healthy();
    f.orders[2].refunds = vec![];
    assert!(
        check(&f)
            .failures
            .iter()
            .any(|x| x.what.contains("0 refunds"))
    );
    f.orders[2].refunds = vec![1000, 1000];
    assert!(
        check(&f)
            .failures
            .iter()
            .any(|x| x.what.contains("2 refunds"))
    );
}

#[test]
fn wrong_stock_lost_events_and_outbox_gaps_fail() {
    let mut f = healthy();
    f.stock[0].on_hand = 97;
    f.kafka.missing = vec!["e1".into()];
    f.kafka.changed = vec!["e2".into()];
    f.agents[0].seqs = vec![1, 2, 4];
    f.agents[0].pending = 2;
    let text = check(&f).to_string();
    for needle in [
        "stock of SKU-A: on_hand 97",
        "missing from Kafka: event_id e1",
        "changed in transit",
        "seq 4 where 3 was due",
        "2 outbox rows never acked",
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
}

#[test]
fn an_unvoided_order_that_ended_cancelled_fails() {
    let mut f = healthy();
    f.orders[1].final_status = Some("cancelled".into());
    f.orders[1].stock_delta = (0, 0);
    f.stock[0].on_hand = 99;
    let v = check(&f);
    assert!(
        v.failures.iter().any(|x| x
            .what
            .contains("ended `cancelled` at the store, expected completed")),
        "{v}"
    );
}

#[test]
fn a_lost_status_update_is_reported_as_that_only() {
    // The cloud completed it (captured once, stock taken), the store never
    // heard: one failure, about the status, not about money or stock.
    let mut f = healthy();
    f.orders[0].final_status = Some("accepted".into());
    let v = check(&f);
    assert_eq!(v.failures.len(), 1, "{v}");
    assert!(v.failures[0].what.contains("stuck at `accepted`"), "{v}");
}

#[test]
fn a_voided_captured_order_must_end_refunded() {
    let mut f = healthy();
    f.orders[2].final_status = Some("cancelled".into());
    let v = check(&f);
    assert_eq!(v.failures.len(), 1, "{v}");
    assert!(
        v.failures[0]
            .what
            .contains("ended `cancelled` at the store, expected refunded"),
        "{v}"
    );
}

#[test]
fn faults_outside_the_window_are_not_named() {
    let faults = vec![
        FaultSpan {
            start_ms: 0,
            end_ms: 100,
            label: "early".into(),
        },
        FaultSpan {
            start_ms: 50_000,
            end_ms: 51_000,
            label: "near".into(),
        },
        FaultSpan {
            start_ms: 200_000,
            end_ms: 201_000,
            label: "late".into(),
        },
    ];
    assert_eq!(faults_near(&faults, 60_000), vec!["t+50000..51000 ms near"]);
}

/// A return of one unit of `order`'s SKU-A at store `s1`, accepted (card:
/// and refunded) as it should be; `cloud` is its final status at the store.
fn ret(id: &str, order: &str, card: bool) -> ReturnFact {
    ReturnFact {
        order_id: order.into(),
        agent: 0,
        store: "s1".into(),
        key: format!("k-{order}-ret"),
        card,
        sku: "SKU-A".into(),
        units: 1,
        amount_minor: 1000,
        requested_ms: 15_000,
        http: 201,
        return_id: Some(id.into()),
        code: None,
        cloud_status: Some(
            if card {
                "return_refunded"
            } else {
                "return_accepted"
            }
            .into(),
        ),
        cloud_reason: None,
        accepted: vec![1000],
        refused: vec![],
        refund_issued: if card { vec![1000] } else { vec![] },
        psp_refunds: if card { vec![1000] } else { vec![] },
        movements: vec![("s1".into(), 1)],
    }
}

/// `healthy()` with returns: a card sale returned to its card, a cash sale
/// returned in cash, a declined order's return refused by the cloud and
/// another refused at the till.
fn with_returns() -> Facts {
    let mut f = healthy();
    f.orders[0].refunds = vec![1000];
    f.orders.push(order("o6", Pay::Declined, "cancelled"));
    let mut refused = ret("r4", "o4", true);
    refused.accepted = vec![];
    refused.refused = vec![ORDER_CANCELLED.into()];
    refused.refund_issued = vec![];
    refused.psp_refunds = vec![];
    refused.movements = vec![];
    refused.cloud_status = Some("return_refused".into());
    refused.cloud_reason = Some(ORDER_CANCELLED.into());
    let mut at_till = ret("-", "o6", false);
    at_till.return_id = None;
    at_till.http = 422;
    at_till.code = Some(ORDER_CANCELLED.into());
    at_till.accepted = vec![];
    at_till.movements = vec![];
    at_till.cloud_status = None;
    f.returns = vec![
        ret("r1", "o1", true),
        ret("r2", "o2", false),
        refused,
        at_till,
    ];
    f.stock[0].on_hand = 100;
    f.stock[0].returned = 2;
    f
}

/// The failures about `order`'s return.
fn return_failures_of(f: &Facts, order: &str) -> Vec<Failure> {
    check(f)
        .failures
        .into_iter()
        .filter(|x| x.order_id.as_deref() == Some(order) && x.what.starts_with("return "))
        .collect()
}

#[test]
fn a_history_with_returns_passes() {
    let v = check(&with_returns());
    assert!(v.passed(), "{v}");
    assert_eq!(v.returns, 4);
    assert_eq!(v.returns_by_status["return_refunded"], 1);
    assert_eq!(v.returns_by_status["return_accepted"], 1);
    assert_eq!(v.returns_by_status["return_refused"], 1);
    assert_eq!(v.returns_by_status["not taken: 422 order_cancelled"], 1);
    assert!(v.to_string().contains("4 returns"), "{v}");
    assert!(return_settled(true, Some("return_refunded")));
    assert!(!return_settled(true, Some("return_accepted")));
    assert!(return_settled(false, Some("return_accepted")));
    assert!(return_settled(false, Some("return_refused")) && !return_settled(false, None));
}

#[test]
fn a_return_accepted_twice_fails_and_names_the_faults_near_it() {
    let mut f = with_returns();
    f.returns[0].accepted = vec![1000, 1000];
    let fails = return_failures_of(&f, "o1");
    assert_eq!(fails.len(), 1, "{fails:?}");
    assert!(
        fails[0].what.starts_with("return r1: accepted 2 times"),
        "{fails:?}"
    );
    assert!(fails[0].what.contains("key k-o1-ret"), "{fails:?}");
    assert_eq!(
        fails[0].faults_near,
        ["t+9000..9500 ms kill -9 saga-payment"]
    );
    // Accepted and refused: one decision too many.
    let mut f = with_returns();
    f.returns[1].refused = vec!["over_return".into()];
    let fails = return_failures_of(&f, "o2");
    assert!(
        fails
            .iter()
            .any(|x| x.what.contains("both accepted and refused")),
        "{fails:?}"
    );
}

#[test]
fn a_card_return_refunded_twice_fails() {
    let mut f = with_returns();
    f.orders[0].refunds = vec![1000, 1000];
    f.returns[0].psp_refunds = vec![1000, 1000];
    let fails = return_failures_of(&f, "o1");
    assert_eq!(fails.len(), 1, "{fails:?}");
    assert!(
        fails[0]
            .what
            .contains("2 processor refunds [1000, 1000] for a card return"),
        "{fails:?}"
    );
    // The order's own check leaves its returns' refunds to them.
    assert!(
        check(&f)
            .failures
            .iter()
            .all(|x| x.what.starts_with("return "))
    );
    // Two RefundIssued for it, or none, fail too; so does a cash return
    // refunded at the processor.
    let mut f = with_returns();
    f.returns[0].refund_issued = vec![];
    assert!(check(&f).to_string().contains("RefundIssued [] naming it"));
    let mut f = with_returns();
    f.orders[1].refunds = vec![1000];
    f.returns[1].psp_refunds = vec![1000];
    assert!(
        check(&f)
            .to_string()
            .contains("a cash return, with processor refunds [1000]")
    );
}

#[test]
fn a_return_with_no_decision_fails() {
    let mut f = with_returns();
    f.returns[1].accepted = vec![];
    f.returns[1].movements = vec![];
    f.returns[1].cloud_status = None;
    f.stock[0].on_hand = 99;
    f.stock[0].returned = 1;
    let fails = return_failures_of(&f, "o2");
    assert_eq!(fails.len(), 1, "{fails:?}");
    assert!(fails[0].what.contains("no decision in Kafka"), "{fails:?}");
    assert!(fails[0].what.contains("store: no status"), "{fails:?}");
}

#[test]
fn a_refused_return_that_was_restocked_fails() {
    let mut f = with_returns();
    f.returns[2].movements = vec![("s1".into(), 1)];
    f.stock[0].on_hand = 101;
    f.stock[0].returned = 3;
    let fails = return_failures_of(&f, "o4");
    assert_eq!(fails.len(), 1, "{fails:?}");
    assert!(
        fails[0].what.contains("not accepted, yet restocked"),
        "{fails:?}"
    );
    // Stock that moved without a `return` movement is the stock check's.
    let mut f = with_returns();
    f.stock[0].on_hand = 101;
    assert!(
        check(&f)
            .to_string()
            .contains("stock of SKU-A: on_hand 101")
    );
}

#[test]
fn wrong_decisions_and_strays_fail() {
    // A sale's return refused, a cancelled order's accepted, a sale's
    // return refused at the till, a return event nobody asked for.
    let mut f = with_returns();
    f.returns[0].accepted = vec![];
    f.returns[0].refused = vec!["over_return".into()];
    f.returns[0].refund_issued = vec![];
    f.returns[0].psp_refunds = vec![];
    f.returns[0].movements = vec![];
    f.returns[0].cloud_status = Some("return_refused".into());
    f.returns[0].cloud_reason = Some("over_return".into());
    f.orders[0].refunds = vec![];
    f.returns[2].refused = vec![];
    f.returns[2].accepted = vec![1000];
    f.returns[1].return_id = None;
    f.returns[1].http = 422;
    f.returns[1].code = Some("over_return".into());
    f.stray_returns = vec!["returns.accepted names return r9 of order o9".into()];
    let text = check(&f).to_string();
    for needle in [
        "return r1: refused [\"over_return\"], expected accepted",
        "return r4: accepted, expected refused `order_cancelled`",
        "return (none): the till's return was not taken: http 422 `over_return`, expected 201",
        "returns: returns.accepted names return r9 of order o9",
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
}
