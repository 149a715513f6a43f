use super::text::money;
use super::*;

mod returns;

fn meta(now_ms: i64) -> ReportMeta {
    ReportMeta {
        store_id: "S001".into(),
        business_date: "2026-12-03".into(),
        timezone: "Europe/Paris".into(),
        closes_at: "03:00".into(),
        // 2026-12-03T02:00:00Z .. 2026-12-04T02:00:00Z
        window_ms: (1_796_263_200_000, 1_796_349_600_000),
        now_ms,
        retention_days: 7,
    }
}

fn order(id: &str, terminal: &str, currency: &str, tenders: &[(Tender, i64)]) -> OrderRow {
    OrderRow {
        order_id: id.into(),
        terminal_id: terminal.into(),
        currency: currency.into(),
        total_minor: tenders.iter().map(|t| t.1).sum(),
        voided: false,
        rejected: None,
        offline_unconfirmed_minor: 0,
        tenders: tenders.to_vec(),
    }
}

fn events(terminal: &str, kind: EventKind, state: EventState, count: u64) -> EventCount {
    EventCount {
        terminal_id: terminal.into(),
        kind,
        state,
        count,
    }
}

/// T1: a split card+cash sale, a voided cash sale, an offline card sale
/// still unconfirmed; T2: a gift card sale rejected by the cloud and a
/// sale in another currency.
fn day() -> DayRows {
    let split = order(
        "o1",
        "T1",
        "CAD",
        &[(Tender::CardOnline, 1500), (Tender::Cash, 500)],
    );
    let mut void = order("o2", "T1", "CAD", &[(Tender::Cash, 999)]);
    void.voided = true;
    let mut offline = order("o3", "T1", "CAD", &[(Tender::CardOffline, 2500)]);
    offline.offline_unconfirmed_minor = 2500;
    let mut gift = order("o4", "T2", "CAD", &[(Tender::GiftCard, 700)]);
    gift.rejected = Some(("invalid_order".into(), "unknown store".into()));
    let eur = order("o5", "T2", "EUR", &[(Tender::CardOnline, 1000)]);
    DayRows {
        orders: vec![split, void, offline, gift, eur],
        returns: Vec::new(),
        events: vec![
            events("T1", EventKind::Created, EventState::Synced, 2),
            events("T1", EventKind::Created, EventState::Pending, 1),
            events("T1", EventKind::Cancelled, EventState::Pending, 1),
            events("T2", EventKind::Created, EventState::Rejected, 1),
            events("T2", EventKind::Created, EventState::Synced, 1),
        ],
    }
}

#[test]
fn figures_per_terminal_and_in_total() {
    let r = build(&meta(1_796_400_000_000), &day()).unwrap();
    assert!(r.day_closed);
    assert_eq!(r.window_start, "2026-12-03T02:00:00Z");
    assert_eq!(r.window_end, "2026-12-04T02:00:00Z");
    assert_eq!(r.terminals.len(), 2);
    let t1 = &r.terminals[0];
    assert_eq!(t1.terminal_id, "T1");
    assert_eq!(
        t1.figures.currencies,
        vec![CurrencyFigures {
            currency: "CAD".into(),
            orders: 3,
            voids: 1,
            gross_minor: 2000 + 999 + 2500,
            voided_minor: 999,
            net_minor: 4500,
            tenders: Tenders {
                card_online_minor: 1500,
                card_offline_minor: 2500,
                cash_minor: 500,
                gift_card_minor: 0,
            },
            offline_unconfirmed_orders: 1,
            offline_unconfirmed_minor: 2500,
            returns: 0,
            refunds: Refunds::default(),
            returned_minor: 0,
            net_after_returns_minor: 4500,
            cash_in_drawer_minor: 500,
        }]
    );
    assert_eq!(
        (
            t1.figures.returns,
            t1.figures.returns_refused,
            t1.figures.returns_unpriced
        ),
        (0, 0, 0)
    );
    assert_eq!(t1.figures.rejected_orders, 0);
    assert_eq!(
        t1.figures.events,
        EventFigures {
            synced: 2,
            pending: 2,
            rejected: 0,
            pruned: 0
        }
    );
    let t2 = &r.terminals[1];
    assert_eq!(t2.figures.currencies.len(), 2, "CAD and EUR apart");
    assert_eq!(t2.figures.currencies[0].tenders.gift_card_minor, 700);
    assert_eq!(t2.figures.currencies[1].currency, "EUR");
    assert_eq!(t2.figures.currencies[1].net_minor, 1000);
    assert_eq!(t2.figures.rejected_orders, 1);

    let cad = &r.total.currencies[0];
    assert_eq!((cad.orders, cad.voids), (4, 1));
    assert_eq!(cad.gross_minor, 6199);
    assert_eq!(cad.net_minor, 5200);
    let t = &cad.tenders;
    assert_eq!(
        t.card_online_minor + t.card_offline_minor + t.cash_minor + t.gift_card_minor,
        cad.net_minor,
        "tenders add up to net"
    );
    assert_eq!(r.total.currencies[1].gross_minor, 1000);
    assert_eq!(r.total.rejected_orders, 1);
    assert_eq!(
        r.total.events,
        EventFigures {
            synced: 3,
            pending: 2,
            rejected: 1,
            pruned: 0
        }
    );
    assert!(r.events_complete);
    assert_eq!(r.rejections.len(), 1);
    assert_eq!(r.rejections[0].order_id, "o4");
    assert_eq!(r.rejections[0].code, "invalid_order");
    assert_eq!(r.rejections[0].total_minor, 700);
}

#[test]
fn an_open_day_and_an_empty_day() {
    let r = build(&meta(1_796_300_000_000), &DayRows::default()).unwrap();
    assert!(!r.day_closed);
    assert!(r.terminals.is_empty());
    assert_eq!(r.total, Figures::default());
    assert!(r.events_complete);
    let text = render_text(&r);
    assert!(text.contains("DAY STILL OPEN"), "{text}");
    assert!(text.contains("(no orders captured"), "{text}");
}

#[test]
fn pruned_events_are_counted_as_synced_and_flagged() {
    let mut rows = day();
    // Retention pruned T1's two synced OrderCreated rows.
    rows.events.remove(0);
    let r = build(&meta(1_797_000_000_000), &rows).unwrap();
    assert!(!r.events_complete);
    assert_eq!(
        r.terminals[0].figures.events,
        EventFigures {
            synced: 2,
            pending: 2,
            rejected: 0,
            pruned: 2
        }
    );
    assert_eq!(r.terminals[1].figures.events.pruned, 0);
    assert_eq!(r.total.events.synced, 3);
    assert_eq!(r.total.events.pruned, 2);
    let text = render_text(&r);
    assert!(
        text.contains("2 synced events of these orders and returns are no longer"),
        "{text}"
    );
}

#[test]
fn events_of_other_kinds_are_counted_but_do_not_hide_pruned_ones() {
    let mut rows = day();
    rows.events.remove(0);
    rows.events
        .push(events("T1", EventKind::Other, EventState::Synced, 2));
    let r = build(&meta(1_797_000_000_000), &rows).unwrap();
    assert_eq!(r.terminals[0].figures.events.pruned, 2);
    assert_eq!(r.terminals[0].figures.events.synced, 4);
}

#[test]
fn an_overflowing_sum_is_an_error_not_a_wrong_figure() {
    let rows = DayRows {
        orders: vec![
            order("a", "T1", "CAD", &[(Tender::Cash, i64::MAX)]),
            order("b", "T1", "CAD", &[(Tender::Cash, 1)]),
        ],
        ..DayRows::default()
    };
    assert_eq!(
        build(&meta(0), &rows),
        Err(ReportError::Overflow {
            what: "gross",
            currency: "CAD".into()
        })
    );
}

#[test]
fn amounts_are_shown_in_the_currency_decimals() {
    assert_eq!(money(2998, "CAD"), "29.98");
    assert_eq!(money(5, "EUR"), "0.05");
    assert_eq!(money(-1205, "USD"), "-12.05");
    assert_eq!(money(500, "JPY"), "500");
    assert_eq!(money(1005, "BHD"), "1.005");
    assert_eq!(money(i64::MIN, "CAD"), "-92233720368547758.08");
    assert_eq!(money(42, "XXQ"), "42", "unknown code: minor units");
}

#[test]
fn the_text_shows_every_section() {
    let r = build(&meta(1_796_400_000_000), &day()).unwrap();
    let text = render_text(&r);
    for needle in [
        "Z-REPORT  store S001  business date 2026-12-03  (day closed)",
        "SALES",
        "TENDERS",
        "OFFLINE CARD MONEY NOT YET CONFIRMED",
        "EVENTS OF THE DAY'S ORDERS",
        "REJECTED BY THE CLOUD",
        "invalid_order",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from\n{text}");
    }
    let total_cad = text
        .lines()
        .find(|l| l.starts_with("TOTAL") && l.contains("CAD") && l.contains("61.99"))
        .unwrap_or_else(|| panic!("no TOTAL CAD sales line in\n{text}"));
    assert!(total_cad.ends_with("52.00"), "{total_cad}");
}
