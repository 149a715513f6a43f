use o2c_protocol::{
    AgentId, Currency, Customer, EventId, Fulfillment, Money, Order, OrderId, OrderLine, Payment,
    StoreId, TerminalId,
};
use time::macros::datetime;

use super::*;

fn cad() -> Currency {
    Currency::from_code("CAD").unwrap()
}

fn settings() -> Settings {
    Settings {
        offset: UtcOffset::from_hms(-5, 0, 0).unwrap(),
        late_after_secs: 300,
    }
}

fn order(captured: OffsetDateTime) -> Order {
    Order {
        order_id: OrderId::from_uuid(uuid::Uuid::now_v7()).unwrap(),
        store_id: StoreId::new("S001").unwrap(),
        terminal_id: TerminalId::new("T1").unwrap(),
        currency: cad(),
        lines: vec![
            OrderLine {
                sku: "A".into(),
                quantity: 2,
                unit_price: Money::new(1000, cad()),
                category: Some("Toys".into()),
            },
            OrderLine {
                sku: "B".into(),
                quantity: 1,
                unit_price: Money::new(500, cad()),
                category: None,
            },
        ],
        payments: vec![
            Payment::Cash {
                amount: Money::new(1500, cad()),
            },
            Payment::GiftCard {
                amount: Money::new(1000, cad()),
                token: "gc_tok_1".into(),
            },
        ],
        fulfillment: Fulfillment::CarryOut {},
        customer: Some(Customer {
            email: Some(" Ann@Example.com ".into()),
            phone: None,
        }),
        captured_at: captured,
        catalog_version: None,
        stock_check: None,
        channel: None,
        customer_id: None,
    }
}

#[test]
fn a_sale_is_booked_by_capture_time_and_business_date() {
    // 03:30 UTC on the 6th is 22:30 on the 5th at UTC-5.
    let captured = datetime!(2026-12-06 03:30 UTC);
    let b = base(
        &order(captured),
        captured + time::Duration::seconds(2),
        settings(),
    )
    .unwrap();
    assert_eq!(b.h, "2026120603");
    assert_eq!(b.d, "20261205");
    assert_eq!(
        date_of_day_number(b.day_number).unwrap().to_string(),
        "2026-12-05"
    );
    assert_eq!(b.total, 2500);
    assert_eq!(b.cur, "CAD");
    assert_eq!(
        b.cats,
        vec![("Toys".into(), 2000), (UNCATEGORIZED.into(), 500)]
    );
    assert_eq!(
        b.tenders,
        vec![("cash".into(), 1500), ("gift_card".into(), 1000)]
    );
    assert_eq!(b.payment_method, "cash+gift_card");
    assert_eq!(b.items, 3);
    assert!(!b.late);
    assert_eq!(b.scopes, vec!["", "s:S001|", "c:pos|"]);
    // The customer is a hash of the normalised e-mail, never the address.
    assert_eq!(b.customer_key.len(), 64);
    assert!(!b.customer_key.contains('@'));
    let mut same = order(captured);
    same.customer = Some(Customer {
        email: Some("ann@example.com".into()),
        phone: None,
    });
    assert_eq!(
        base(&same, captured, settings()).unwrap().customer_key,
        b.customer_key
    );
}

#[test]
fn an_order_arriving_three_days_late_keeps_its_day_and_is_late() {
    let captured = datetime!(2026-12-03 15:00 UTC);
    let b = base(
        &order(captured),
        datetime!(2026-12-06 09:00 UTC),
        settings(),
    )
    .unwrap();
    assert_eq!(b.d, "20261203");
    assert_eq!(b.h, "2026120315");
    assert!(b.late);
}

#[test]
fn each_event_maps_to_its_change() {
    let captured = datetime!(2026-12-06 12:00 UTC);
    let o = order(captured);
    let env = |payload: Event| Envelope {
        event_id: EventId::from_uuid(uuid::Uuid::now_v7()).unwrap(),
        schema_version: 1,
        store_id: StoreId::new("S001").unwrap(),
        agent_id: AgentId::new("A1").unwrap(),
        seq: None,
        occurred_at: datetime!(2026-12-06 12:00:05 UTC),
        traceparent: None,
        payload,
    };
    let at = captured;
    let f = fold(
        &env(Event::OrderCreated(Box::new(o.clone()))),
        at,
        settings(),
    )
    .unwrap();
    assert!(matches!(
        f,
        Folded::Order {
            change: Change::Created(_),
            ..
        }
    ));
    let refund = Event::RefundIssued(o2c_protocol::event::RefundIssued {
        order_id: o.order_id,
        amount: Money::new(700, cad()),
        psp_reference: "r".into(),
        return_id: None,
    });
    assert_eq!(
        fold(&env(refund), at, settings()).unwrap(),
        Folded::Order {
            order_id: o.order_id.to_string(),
            change: Change::Refunded(700)
        }
    );
    let done = Event::OrderCompleted(o2c_protocol::event::OrderCompleted {
        order_id: o.order_id,
    });
    assert_eq!(
        fold(&env(done), at, settings()).unwrap(),
        Folded::Order {
            order_id: o.order_id.to_string(),
            change: Change::Completed(datetime!(2026-12-06 12:00:05 UTC).unix_timestamp() * 1000)
        }
    );
    let mut bad = o.clone();
    bad.lines[0].unit_price = Money::new(i64::MAX, cad());
    let err = fold(&env(Event::OrderCreated(Box::new(bad))), at, settings()).unwrap_err();
    assert_eq!(err.code(), "invalid_payload");
}
