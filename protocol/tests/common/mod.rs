//! Fixtures shared by the protocol's integration tests.
#![allow(dead_code, unreachable_pub)]

use o2c_protocol::*;
use time::macros::datetime;

pub fn cad() -> Currency {
    Currency::from_code("CAD").unwrap()
}

pub fn order_id() -> OrderId {
    "01890a5d-ac96-774b-bcce-b302099a8057".parse().unwrap()
}

pub fn event_id() -> EventId {
    "01890a5d-ac96-774b-bcce-b302099a8058".parse().unwrap()
}

/// A valid carry-out order: 2 × 14.99 paid by card.
pub fn order() -> Order {
    Order {
        order_id: order_id(),
        store_id: StoreId::new("S001").unwrap(),
        terminal_id: TerminalId::new("T1").unwrap(),
        currency: cad(),
        lines: vec![OrderLine {
            sku: "SKU-1".into(),
            quantity: 2,
            unit_price: Money::new(1499, cad()),
            category: None,
        }],
        payments: vec![Payment::Card {
            amount: Money::new(2998, cad()),
            token: "tok_abc".into(),
            brand: "visa".into(),
            last4: "4242".into(),
            authorization: CardAuthorization::Online,
        }],
        fulfillment: Fulfillment::CarryOut {},
        customer: Some(Customer {
            email: Some("a@example.com".into()),
            phone: None,
        }),
        captured_at: datetime!(2026-11-24 10:00:00 UTC),
        catalog_version: None,
        stock_check: None,
        channel: None,
        customer_id: None,
    }
}

pub fn address() -> Address {
    Address {
        name: "Ada Lovelace".into(),
        line1: "1 Main St".into(),
        line2: None,
        city: "Toronto".into(),
        region: Some("ON".into()),
        postal_code: "M5V 1A1".into(),
        country: "CA".into(),
    }
}

pub fn envelope(payload: Event) -> Envelope {
    Envelope {
        event_id: event_id(),
        schema_version: SCHEMA_VERSION,
        store_id: StoreId::new("S001").unwrap(),
        agent_id: AgentId::new("S001-A1").unwrap(),
        seq: Some(Seq::new(1).unwrap()),
        occurred_at: datetime!(2026-11-24 10:00:00 UTC),
        traceparent: Some(
            Traceparent::new("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap(),
        ),
        payload,
    }
}

/// The seq numbered `n` (at least 1).
pub fn seq(n: u64) -> Seq {
    Seq::new(n).unwrap()
}

/// A seq bound: `None` for 0 (before the first seq).
pub fn mark(n: u64) -> Option<Seq> {
    Seq::new(n).ok()
}

/// The number of a seq bound, 0 for `None`.
pub fn num(s: Option<Seq>) -> u64 {
    s.map_or(0, Seq::get)
}
