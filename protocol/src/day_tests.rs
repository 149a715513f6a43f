use super::*;
use crate::order::{Fulfillment, OrderLine};
use crate::{OrderId, TerminalId};

fn cad(minor: i64) -> Money {
    Money::new(minor, Currency::from_code("CAD").unwrap())
}

fn order(n: u8, lines: &[i64], payments: Vec<Payment>) -> Order {
    Order {
        order_id: OrderId::from_parts(1_764_000_000_000 + u64::from(n), [n; 10]),
        store_id: StoreId::new("S001").unwrap(),
        terminal_id: TerminalId::new("T1").unwrap(),
        currency: payments[0].amount().currency,
        lines: lines
            .iter()
            .map(|&p| OrderLine {
                sku: "SKU-1".into(),
                quantity: 1,
                unit_price: cad(p),
                category: None,
            })
            .collect(),
        payments,
        fulfillment: Fulfillment::CarryOut {},
        customer: None,
        captured_at: OffsetDateTime::from_unix_timestamp(1_764_000_000).unwrap(),
        catalog_version: None,
        stock_check: None,
        channel: None,
        customer_id: None,
    }
}

fn card(minor: i64, authorization: CardAuthorization) -> Payment {
    Payment::Card {
        amount: cad(minor),
        token: "tok_1".into(),
        brand: "visa".into(),
        last4: "4242".into(),
        authorization,
    }
}

#[test]
fn a_tally_sums_sales_voids_and_split_tenders_per_currency() {
    let mut t = DayTally::default();
    let split = order(
        1,
        &[700, 300],
        vec![
            card(600, CardAuthorization::Offline),
            Payment::Cash { amount: cad(400) },
        ],
    );
    t.add_created(&split).unwrap();
    t.add_created(&order(2, &[250], vec![Payment::Cash { amount: cad(250) }]))
        .unwrap();
    t.add_voided(Some(cad(250))).unwrap();
    t.add_voided(None).unwrap();
    t.add_other();
    assert_eq!((t.events, t.orders, t.voids), (5, 2, 2));
    assert_eq!(
        t.totals,
        vec![CurrencyTotals {
            gross: cad(1250),
            voided: cad(250)
        }]
    );
    let tenders: Vec<(Tender, i64)> = t
        .tenders
        .iter()
        .map(|x| (x.tender, x.amount.minor))
        .collect();
    assert_eq!(
        tenders,
        vec![(Tender::CardOffline, 600), (Tender::Cash, 650)]
    );
}

#[test]
fn a_tally_is_the_same_in_any_order() {
    let a = order(1, &[100], vec![card(100, CardAuthorization::Online)]);
    let b = order(
        2,
        &[900],
        vec![Payment::GiftCard {
            amount: cad(900),
            token: "gc".into(),
        }],
    );
    let mut x = DayTally::default();
    x.add_created(&a).unwrap();
    x.add_created(&b).unwrap();
    let mut y = DayTally::default();
    y.add_created(&b).unwrap();
    y.add_created(&a).unwrap();
    assert_eq!(x, y);
}

fn manifest() -> DayClosed {
    let mut digest = EventDigest::default();
    digest.add(&EventId::from_parts(1_764_000_000_000, [1; 10]));
    DayClosed::new(
        EventId::from_parts(1_764_000_000_001, [2; 10]),
        StoreId::new("S001").unwrap(),
        AgentId::new("S001-A1").unwrap(),
        Seq::new(3).unwrap(),
        OffsetDateTime::from_unix_timestamp(1_764_100_000).unwrap(),
        DayManifest {
            business_date: BusinessDate::parse("2026-12-03").unwrap(),
            timezone: "Europe/Paris".into(),
            closes_at: "03:00".into(),
            opened_at: OffsetDateTime::from_unix_timestamp(1_764_000_000).unwrap(),
            closed_at: OffsetDateTime::from_unix_timestamp(1_764_086_400).unwrap(),
            range: Some(SeqRange {
                first: Seq::new(1).unwrap(),
                last: Seq::new(2).unwrap(),
            }),
            tally: DayTally::default(),
            event_ids_sha256: digest.finish(),
        },
    )
}

#[test]
fn a_manifest_round_trips_and_is_told_apart_from_order_events() {
    let m = manifest();
    let bytes = m.encode().unwrap();
    let text = std::str::from_utf8(&bytes).unwrap();
    assert!(DayClosed::is_day_closed(text));
    assert!(text.contains("\"business_date\":\"2026-12-03\""), "{text}");
    assert_eq!(DayClosed::decode(&bytes).unwrap(), m);
    assert!(m.validate().is_ok());
    assert!(!DayClosed::is_day_closed(
        r#"{"event_type":"OrderCreated"}"#
    ));
    assert!(matches!(
        crate::Envelope::decode(&bytes),
        Err(DecodeError::UnknownEventType(_))
    ));
}

#[test]
fn a_manifest_whose_range_reaches_its_own_seq_is_invalid() {
    let mut m = manifest();
    m.payload.range = Some(SeqRange {
        first: Seq::new(1).unwrap(),
        last: Seq::new(3).unwrap(),
    });
    m.payload.event_ids_sha256 = "xyz".into();
    let errs = m.validate().unwrap_err();
    let fields: Vec<&str> = errs.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, vec!["payload.range", "payload.event_ids_sha256"]);
    assert!(BusinessDate::parse("2026-02-30").is_err());
}
