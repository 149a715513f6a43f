//! The inventory state machine, pure: [`super::apply`] over an in-memory
//! [`StockBook`], one event at a time, in any order.

use o2c_protocol::event::{OrderCancelled, PaymentCaptured};
use o2c_protocol::{
    AgentId, CardAuthorization, Currency, Envelope, EventId, Money, OrderLine, Payment,
    SCHEMA_VERSION, StoreId, TerminalId,
};
use time::OffsetDateTime;

use super::*;

fn cad() -> Currency {
    Currency::from_code("CAD").unwrap()
}

fn order(qty: i64) -> Order {
    Order {
        order_id: OrderId::from_parts(1, [7; 10]),
        store_id: StoreId::new("S001").unwrap(),
        terminal_id: TerminalId::new("T1").unwrap(),
        currency: cad(),
        lines: vec![OrderLine {
            sku: "A".into(),
            quantity: qty,
            unit_price: Money::new(500, cad()),
            category: None,
        }],
        payments: vec![Payment::Card {
            amount: Money::new(500 * qty, cad()),
            token: "tok_a".into(),
            brand: "visa".into(),
            last4: "4242".into(),
            authorization: CardAuthorization::Online,
        }],
        fulfillment: Fulfillment::CarryOut {},
        customer: None,
        captured_at: OffsetDateTime::UNIX_EPOCH,
        catalog_version: None,
        stock_check: None,
        channel: None,
        customer_id: None,
    }
}

fn env(n: u8, payload: Event) -> Envelope {
    Envelope {
        event_id: EventId::from_parts(2, [n; 10]),
        schema_version: SCHEMA_VERSION,
        store_id: StoreId::new("S001").unwrap(),
        agent_id: AgentId::new("S001-A1").unwrap(),
        seq: None,
        occurred_at: OffsetDateTime::UNIX_EPOCH,
        traceparent: None,
        payload,
    }
}

fn created(qty: i64) -> Envelope {
    env(1, Event::OrderCreated(Box::new(order(qty))))
}

fn paid() -> Envelope {
    env(
        2,
        Event::PaymentCaptured(PaymentCaptured {
            order_id: order(1).order_id,
            amount: Money::new(500, cad()),
            psp_reference: "cap_1".into(),
        }),
    )
}

fn cancelled() -> Envelope {
    env(
        3,
        Event::OrderCancelled(OrderCancelled {
            order_id: order(1).order_id,
            reason: "voided".into(),
        }),
    )
}

/// 5 units of `A` in the store, none held.
fn book() -> StockBook {
    StockBook::new([("A".to_owned(), "S001".to_owned(), 5, 0)])
}

fn run(st: &mut InventoryState, book: &mut StockBook, e: &Envelope) -> Vec<Event> {
    apply(st, e, book, "S001").unwrap()
}

#[test]
fn created_holds_then_paid_confirms_once() {
    let (mut st, mut b) = (InventoryState::default(), book());
    assert!(
        run(&mut st, &mut b, &created(2)).is_empty(),
        "a hold emits nothing"
    );
    assert_eq!(b.units("A", "S001"), Some((5, 2)));
    let out = run(&mut st, &mut b, &paid());
    assert!(
        matches!(out.as_slice(), [Event::InventoryConfirmed(_)]),
        "{out:?}"
    );
    assert_eq!(b.units("A", "S001"), Some((3, 0)));
    // The same capture again changes nothing.
    assert!(run(&mut st, &mut b, &paid()).is_empty());
    assert_eq!(b.units("A", "S001"), Some((3, 0)));
}

#[test]
fn not_enough_stock_is_released_as_insufficient_when_paid() {
    let (mut st, mut b) = (InventoryState::default(), book());
    assert!(run(&mut st, &mut b, &created(9)).is_empty());
    assert_eq!(st.hold, Hold::Insufficient);
    assert_eq!(b.units("A", "S001"), Some((5, 0)), "nothing held");
    let out = run(&mut st, &mut b, &paid());
    assert!(
        matches!(out.as_slice(), [Event::InventoryReleased(r)] if r.reason == INSUFFICIENT_STOCK),
        "{out:?}"
    );
}

#[test]
fn a_void_after_confirmation_restocks_and_releases_once() {
    let (mut st, mut b) = (InventoryState::default(), book());
    run(&mut st, &mut b, &created(2));
    run(&mut st, &mut b, &paid());
    let out = run(&mut st, &mut b, &cancelled());
    assert!(
        matches!(out.as_slice(), [Event::InventoryReleased(r)] if r.reason == ORDER_CANCELLED),
        "{out:?}"
    );
    assert_eq!(b.units("A", "S001"), Some((5, 0)), "back on hand");
    // Replayed: no second release, no second restock.
    assert!(run(&mut st, &mut b, &cancelled()).is_empty());
    assert!(run(&mut st, &mut b, &paid()).is_empty());
    assert_eq!(b.units("A", "S001"), Some((5, 0)));
}

#[test]
fn a_cancellation_seen_before_the_order_holds_nothing() {
    let (mut st, mut b) = (InventoryState::default(), book());
    let out = run(&mut st, &mut b, &cancelled());
    assert!(
        matches!(out.as_slice(), [Event::InventoryReleased(_)]),
        "{out:?}"
    );
    assert!(run(&mut st, &mut b, &created(2)).is_empty());
    assert_eq!(b.units("A", "S001"), Some((5, 0)), "never held");
    assert!(run(&mut st, &mut b, &paid()).is_empty());
}
