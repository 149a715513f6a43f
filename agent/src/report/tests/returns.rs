//! Returns in the Z-report: refunds by tender, the cash drawer, refused
//! and unpriced returns, a currency with returns and no sales, and the
//! `ReturnRequested` events.

use o2c_protocol::CloudStatus;

use super::*;

fn cad(minor: i64) -> Option<Amount> {
    Some(Amount {
        currency: "CAD".into(),
        minor,
    })
}

fn ret(terminal: &str, refund: RefundMethod, local: Option<Amount>) -> ReturnRow {
    ReturnRow {
        terminal_id: terminal.into(),
        refund,
        local,
        cloud: None,
        cloud_status: None,
    }
}

/// T1 sold 3000 on a card, T2 2000 in cash. T1: a cash return of 1000 of
/// the card sale, a refused cash return of 700. T2: a card return the
/// agent priced 500 and the cloud 450, an unpriced gift card return of an
/// order not known here, and a card return of a web order the cloud
/// priced in EUR (no EUR sales). One of T2's events was pruned.
fn day_with_returns() -> DayRows {
    let mut refused = ret("T1", RefundMethod::Cash, cad(700));
    refused.cloud_status = Some(CloudStatus::ReturnRefused);
    let mut repriced = ret("T2", RefundMethod::Card, cad(500));
    repriced.cloud = cad(450);
    repriced.cloud_status = Some(CloudStatus::ReturnAccepted);
    let mut eur = ret("T2", RefundMethod::Card, None);
    eur.cloud = Some(Amount {
        currency: "EUR".into(),
        minor: 1200,
    });
    eur.cloud_status = Some(CloudStatus::ReturnRefunded);
    DayRows {
        orders: vec![
            order("o1", "T1", "CAD", &[(Tender::CardOnline, 3000)]),
            order("o2", "T2", "CAD", &[(Tender::Cash, 2000)]),
        ],
        returns: vec![
            ret("T1", RefundMethod::Cash, cad(1000)),
            refused,
            repriced,
            ret("T2", RefundMethod::GiftCard, None),
            eur,
        ],
        events: vec![
            events("T1", EventKind::Created, EventState::Synced, 1),
            events("T2", EventKind::Created, EventState::Synced, 1),
            events("T1", EventKind::ReturnRequested, EventState::Synced, 1),
            events("T1", EventKind::ReturnRequested, EventState::Pending, 1),
            events("T2", EventKind::ReturnRequested, EventState::Pending, 2),
        ],
    }
}

fn figures(
    currency: &str,
    sales: (u64, i64),
    tenders: [i64; 2],
    returns: u64,
    refunds: [i64; 3],
) -> CurrencyFigures {
    let (orders, net) = sales;
    let returned = refunds.iter().sum::<i64>();
    CurrencyFigures {
        currency: currency.into(),
        orders,
        voids: 0,
        gross_minor: net,
        voided_minor: 0,
        net_minor: net,
        tenders: Tenders {
            card_online_minor: tenders[0],
            card_offline_minor: 0,
            cash_minor: tenders[1],
            gift_card_minor: 0,
        },
        offline_unconfirmed_orders: 0,
        offline_unconfirmed_minor: 0,
        returns,
        refunds: Refunds {
            card_minor: refunds[0],
            cash_minor: refunds[1],
            gift_card_minor: refunds[2],
        },
        returned_minor: returned,
        net_after_returns_minor: net - returned,
        cash_in_drawer_minor: tenders[1] - refunds[1],
    }
}

#[test]
fn returns_per_terminal_and_in_total() {
    let r = build(&meta(1_796_400_000_000), &day_with_returns()).unwrap();
    let (t1, t2) = (&r.terminals[0].figures, &r.terminals[1].figures);
    // T1: 3000 card in, 1000 cash out of a drawer that took none.
    assert_eq!(
        t1.currencies,
        vec![figures("CAD", (1, 3000), [3000, 0], 1, [0, 1000, 0])]
    );
    assert_eq!(t1.currencies[0].net_after_returns_minor, 2000);
    assert_eq!(t1.currencies[0].cash_in_drawer_minor, -1000);
    assert_eq!(
        (t1.returns, t1.returns_refused, t1.returns_unpriced),
        (1, 1, 0)
    );
    assert_eq!(
        t1.events,
        EventFigures {
            synced: 2,
            pending: 1,
            rejected: 0,
            pruned: 0
        }
    );
    // T2: the cloud's 450, not the agent's 500; EUR with no sales.
    assert_eq!(
        t2.currencies,
        vec![
            figures("CAD", (1, 2000), [0, 2000], 1, [450, 0, 0]),
            figures("EUR", (0, 0), [0, 0], 1, [1200, 0, 0]),
        ]
    );
    assert_eq!(t2.currencies[0].net_after_returns_minor, 1550);
    assert_eq!(t2.currencies[1].net_after_returns_minor, -1200);
    assert_eq!(
        (t2.returns, t2.returns_refused, t2.returns_unpriced),
        (3, 0, 1)
    );
    // Four events expected (a sale, three returns), three found.
    assert_eq!(
        t2.events,
        EventFigures {
            synced: 2,
            pending: 2,
            rejected: 0,
            pruned: 1
        }
    );
    let total = &r.total;
    assert_eq!(
        total.currencies,
        vec![
            figures("CAD", (2, 5000), [3000, 2000], 2, [450, 1000, 0]),
            figures("EUR", (0, 0), [0, 0], 1, [1200, 0, 0]),
        ]
    );
    assert_eq!(total.currencies[0].net_after_returns_minor, 3550);
    assert_eq!(total.currencies[0].cash_in_drawer_minor, 1000);
    assert_eq!(
        (total.returns, total.returns_refused, total.returns_unpriced),
        (4, 1, 1)
    );
    assert_eq!(
        total.returns,
        total.currencies.iter().map(|c| c.returns).sum::<u64>() + total.returns_unpriced
    );
    assert_eq!(total.events.pruned, 1);
    assert!(!r.events_complete);
}

#[test]
fn the_text_shows_returns_and_the_drawer() {
    let r = build(&meta(1_796_400_000_000), &day_with_returns()).unwrap();
    let text = render_text(&r);
    let words = |prefix: &str, needle: &str, after: &str| -> Vec<String> {
        let from = text
            .find(after)
            .unwrap_or_else(|| panic!("{after}\n{text}"));
        text[from..]
            .lines()
            .find(|l| l.starts_with(prefix) && l.contains(needle))
            .unwrap_or_else(|| panic!("no {prefix} {needle} after {after} in\n{text}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        words("TOTAL", " CAD ", "\nRETURNS"),
        [
            "TOTAL", "CAD", "2", "4.50", "10.00", "0.00", "14.50", "35.50"
        ]
    );
    assert_eq!(
        words("T2", " EUR ", "\nRETURNS"),
        ["T2", "EUR", "1", "12.00", "0.00", "0.00", "12.00", "-12.00"]
    );
    assert_eq!(words("TOTAL", "", " UNPRICED"), ["TOTAL", "1", "1"]);
    assert_eq!(
        words("T1", " CAD ", "\nCASH DRAWER"),
        ["T1", "CAD", "0.00", "10.00", "-10.00"]
    );
    assert_eq!(
        words("TOTAL", " CAD ", "\nCASH DRAWER"),
        ["TOTAL", "CAD", "20.00", "10.00", "10.00"]
    );
    // Sales: EUR has returns and no orders.
    assert_eq!(
        words("TOTAL", " EUR ", "\nSALES"),
        ["TOTAL", "EUR", "0", "0", "0.00", "0.00", "0.00"]
    );
}

#[test]
fn a_day_with_returns_only_is_not_a_day_without_anything() {
    let rows = DayRows {
        returns: vec![ret("T3", RefundMethod::Cash, cad(250))],
        ..DayRows::default()
    };
    let r = build(&meta(1_796_400_000_000), &rows).unwrap();
    assert_eq!(r.terminals.len(), 1);
    assert_eq!(r.terminals[0].terminal_id, "T3");
    let cad = &r.total.currencies[0];
    assert_eq!((cad.orders, cad.returns), (0, 1));
    assert_eq!(cad.cash_in_drawer_minor, -250);
    assert_eq!(r.total.events.pruned, 1, "its ReturnRequested is expected");
    let text = render_text(&r);
    assert!(text.contains("(no orders captured"), "{text}");
    assert!(!text.contains("(no returns taken"), "{text}");
    let empty = render_text(&build(&meta(0), &DayRows::default()).unwrap());
    assert!(empty.contains("(no returns taken"), "{empty}");
}

#[test]
fn an_overflowing_refund_is_an_error() {
    let rows = DayRows {
        returns: vec![
            ret("T1", RefundMethod::Cash, cad(i64::MAX)),
            ret("T1", RefundMethod::Cash, cad(1)),
        ],
        ..DayRows::default()
    };
    assert_eq!(
        build(&meta(0), &rows),
        Err(ReportError::Overflow {
            what: "refund total",
            currency: "CAD".into()
        })
    );
}
