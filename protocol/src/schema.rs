//! The published contract: JSON Schemas of every event envelope and
//! message, generated from the Rust types with `schemars`, and sample
//! messages (the golden files) as this version writes them.
//!
//! `protocol/schemas/{version}/` keeps, for each contract version, the
//! schemas ([`schemas`]) and the golden messages ([`samples`]) of that
//! version. [`CONTRACT_VERSION`] is the one this crate writes; the
//! directories of earlier versions are frozen. `protocol/tests/contract.rs`
//! is the compatibility check CI runs:
//! - the schemas and golden files of [`CONTRACT_VERSION`] are what the
//!   code generates (regenerate with `O2C_BLESS_SCHEMAS=1`);
//! - every golden file of every version decodes with today's readers;
//! - today's messages validate against the previous version's schemas
//!   (what the previous release's readers accept).
//!
//! The rules (docs/schemas.md): an additive change (a new optional field,
//! or a new enum value with a documented fallback) keeps the major
//! version, `schema_version` in the envelope, and bumps the minor; every
//! reader ignores fields it does not know. A breaking change bumps the
//! major. `deny_unknown_fields` is kept only on [`crate::Payment`] (a
//! stray field next to a card token can only be card data) and
//! [`crate::Money`] (a field an older reader ignored could change an
//! amount's meaning).

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::Envelope;

#[cfg(feature = "contract-check")]
pub mod check;
use crate::envelope::{SCHEMA_VERSION, Traceparent};
use crate::event::{self, Event, EventType};
use crate::frame::{Ack, FrameNack, Rejection, StatusUpdate};
use crate::ids::{AgentId, CustomerId, EventId, OrderId, ReturnId, Seq, StoreId, TerminalId};
use crate::money::{Currency, Money};
use crate::order::{Address, CardAuthorization, Customer, Fulfillment, Order, OrderLine, Payment};
use crate::order_state::{ORDER_STATE_VERSION, OrderStateRecord};
use crate::resync::StatusResync;
use crate::returns;
use crate::status::CloudStatus;

/// The contract version this crate writes: `{major}.{minor}`; the major is
/// the envelope's `schema_version`.
pub const CONTRACT_VERSION: &str = "1.7";

/// The contract versions before [`CONTRACT_VERSION`], oldest first; their
/// directories under `protocol/schemas/` are frozen.
pub const EARLIER_VERSIONS: &[&str] = &["1.0", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6"];

macro_rules! string_schema {
    ($ty:ty, $name:literal, $schema:tt) => {
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!($schema)
            }
        }
    };
}

string_schema!(StoreId, "StoreId", {
    "type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9_-]+$"
});
string_schema!(AgentId, "AgentId", {
    "type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9_-]+$"
});
string_schema!(TerminalId, "TerminalId", {
    "type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9_-]+$"
});
string_schema!(CustomerId, "CustomerId", {
    "type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9_-]+$"
});
string_schema!(OrderId, "OrderId", {
    "type": "string", "format": "uuid",
    "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
});
string_schema!(ReturnId, "ReturnId", {
    "type": "string", "format": "uuid",
    "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
});
string_schema!(EventId, "EventId", {
    "type": "string", "format": "uuid",
    "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
});
string_schema!(Seq, "Seq", { "type": "integer", "minimum": 1 });
string_schema!(Traceparent, "Traceparent", {
    "type": "string", "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
});
string_schema!(Currency, "Currency", { "type": "string", "pattern": "^[A-Z]{3}$" });

/// The envelope as written on the wire, for its schema only (the
/// envelope's own (de)serializer is hand-written, see [`crate::envelope`]).
#[derive(JsonSchema)]
#[allow(dead_code)]
struct EnvelopeWire<P> {
    event_id: EventId,
    event_type: String,
    /// The contract's major version.
    schema_version: u16,
    store_id: StoreId,
    agent_id: AgentId,
    /// Present on store events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seq: Option<Seq>,
    #[schemars(with = "String", extend("format" = "date-time"))]
    occurred_at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traceparent: Option<Traceparent>,
    payload: P,
}

/// A frame nack as sent: `{"frame_nack": {...}}`.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct NackWire {
    frame_nack: FrameNack,
}

fn envelope_schema<P: JsonSchema>(t: EventType) -> Value {
    let mut v = schemars::schema_for!(EnvelopeWire<P>).to_value();
    v["title"] = json!(t.as_str());
    v["properties"]["event_type"] = json!({ "const": t.as_str() });
    v
}

/// Every schema of the contract: `(file name, schema)`, one per event
/// type's envelope and one per message.
pub fn schemas() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = EventType::ALL
        .into_iter()
        .map(|t| {
            let v = match t {
                EventType::OrderCreated => envelope_schema::<Order>(t),
                EventType::OrderCancelled => envelope_schema::<event::OrderCancelled>(t),
                EventType::PaymentCaptured => envelope_schema::<event::PaymentCaptured>(t),
                EventType::PaymentFailed => envelope_schema::<event::PaymentFailed>(t),
                EventType::InventoryReserved => envelope_schema::<event::InventoryReserved>(t),
                EventType::InventoryConfirmed => envelope_schema::<event::InventoryConfirmed>(t),
                EventType::InventoryReleased => envelope_schema::<event::InventoryReleased>(t),
                EventType::ShipmentScheduled => envelope_schema::<event::ShipmentScheduled>(t),
                EventType::ShipmentDispatched => envelope_schema::<event::ShipmentDispatched>(t),
                EventType::ShipmentDelivered => envelope_schema::<event::ShipmentDelivered>(t),
                EventType::ShipmentCancelled => envelope_schema::<event::ShipmentCancelled>(t),
                EventType::OrderCompleted => envelope_schema::<event::OrderCompleted>(t),
                EventType::RefundIssued => envelope_schema::<event::RefundIssued>(t),
                EventType::ReturnRequested => envelope_schema::<returns::ReturnRequested>(t),
                EventType::ReturnAccepted => envelope_schema::<returns::ReturnAccepted>(t),
                EventType::ReturnRefused => envelope_schema::<returns::ReturnRefused>(t),
            };
            (format!("{t}.json"), v)
        })
        .collect();
    let mut message = |name: &str, v: Value| out.push((format!("{name}.json"), v));
    message(
        "StatusMessage",
        schemars::schema_for!(Vec<StatusUpdate>).to_value(),
    );
    // The same message, holding return statuses: sent only to an agent
    // that sent the return, so never to a reader before 1.7.
    message(
        "ReturnStatusMessage",
        schemars::schema_for!(Vec<StatusUpdate>).to_value(),
    );
    message(
        "StatusResync",
        schemars::schema_for!(StatusResync).to_value(),
    );
    message("Ack", schemars::schema_for!(Ack).to_value());
    message("FrameNack", schemars::schema_for!(NackWire).to_value());
    message(
        "OrderState",
        schemars::schema_for!(OrderStateRecord).to_value(),
    );
    message(
        "DayClosed",
        schemars::schema_for!(crate::day::DayClosed).to_value(),
    );
    message(
        "Health",
        schemars::schema_for!(crate::health::Health).to_value(),
    );
    out
}

/// A schema in its writer's form, for a registry: every object closed
/// (`additionalProperties: false` where nothing else is said), so that a
/// Confluent-style BACKWARD check allows a new optional field and refuses
/// a removed or newly required one. (Against an open model such a checker
/// refuses even an optional field: old data could have held anything
/// there.)
pub fn writer_form(schema: &Value) -> Value {
    fn close(v: &mut Value) {
        match v {
            Value::Object(o) => {
                if o.get("type").and_then(Value::as_str) == Some("object")
                    && o.contains_key("properties")
                    && !o.contains_key("additionalProperties")
                {
                    o.insert("additionalProperties".into(), Value::Bool(false));
                }
                o.values_mut().for_each(close);
            }
            Value::Array(a) => a.iter_mut().for_each(close),
            _ => {}
        }
    }
    let mut v = schema.clone();
    close(&mut v);
    v
}

/// The schema file that describes a golden file: `OrderCreated.card.json`
/// is described by `OrderCreated.json`.
pub fn schema_of(golden: &str) -> Option<String> {
    golden.split_once('.').map(|(s, _)| format!("{s}.json"))
}

fn at(s: i64) -> OffsetDateTime {
    // A fixed instant: the golden files never change with the clock.
    OffsetDateTime::from_unix_timestamp(1_764_000_000 + s).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn ids() -> (StoreId, AgentId, OrderId) {
    (
        StoreId::new("S001").unwrap_or_else(|_| unreachable!("valid literal")),
        AgentId::new("S001-A1").unwrap_or_else(|_| unreachable!("valid literal")),
        OrderId::from_parts(1_764_000_000_000, [7; 10]),
    )
}

fn cad(minor: i64) -> Money {
    Money {
        minor,
        currency: Currency::from_code("CAD").unwrap_or_else(|_| unreachable!("valid literal")),
    }
}

fn order(payments: Vec<Payment>, fulfillment: Fulfillment, customer: Option<Customer>) -> Order {
    let (store_id, _, order_id) = ids();
    Order {
        order_id,
        store_id,
        terminal_id: TerminalId::new("T1").unwrap_or_else(|_| unreachable!("valid literal")),
        currency: Currency::from_code("CAD").unwrap_or_else(|_| unreachable!("valid literal")),
        lines: vec![OrderLine {
            sku: "SKU-1".into(),
            quantity: 2,
            unit_price: cad(1000),
            category: Some("Apparel".into()),
        }],
        payments,
        fulfillment,
        customer,
        captured_at: at(0),
        catalog_version: None,
        stock_check: None,
        channel: None,
        customer_id: None,
    }
}

fn envelope(n: u8, seq: Option<u64>, payload: Event) -> Envelope {
    let (store_id, agent_id, _) = ids();
    Envelope {
        event_id: EventId::from_parts(1_764_000_000_000 + u64::from(n), [n; 10]),
        schema_version: SCHEMA_VERSION,
        store_id,
        agent_id,
        seq: seq.and_then(|s| Seq::new(s).ok()),
        occurred_at: at(i64::from(n)),
        traceparent: Traceparent::from_ids(
            0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
            0x00f0_67aa_0ba9_02b7,
        )
        .ok(),
        payload,
    }
}

/// Sample messages of every kind, as this version writes them: `(golden
/// file name, bytes)`. The name's first part names its schema
/// ([`schema_of`]).
pub fn samples() -> Vec<(String, Vec<u8>)> {
    let (_, _, order_id) = ids();
    let card = Payment::Card {
        amount: cad(2000),
        token: "tok_visa_4242".into(),
        brand: "visa".into(),
        last4: "4242".into(),
        authorization: CardAuthorization::Online,
    };
    let ship = Fulfillment::ShipToHome {
        address: Address {
            name: "A. Customer".into(),
            line1: "1 Main St".into(),
            line2: None,
            city: "Toronto".into(),
            region: Some("ON".into()),
            postal_code: "M5V 1A1".into(),
            country: "CA".into(),
        },
    };
    let customer = Some(Customer {
        email: Some("a@example.com".into()),
        phone: None,
    });
    let events: Vec<(&str, Envelope)> = vec![
        (
            "card",
            envelope(
                1,
                Some(1),
                Event::OrderCreated(Box::new(order(
                    vec![card.clone()],
                    Fulfillment::CarryOut {},
                    None,
                ))),
            ),
        ),
        (
            "cash",
            envelope(
                2,
                Some(2),
                Event::OrderCreated(Box::new(order(
                    vec![Payment::Cash { amount: cad(2000) }],
                    Fulfillment::CarryOut {},
                    None,
                ))),
            ),
        ),
        (
            "ship_gift",
            envelope(
                3,
                Some(3),
                Event::OrderCreated(Box::new(Order {
                    catalog_version: Some(7),
                    stock_check: Some(crate::order::StockCheck::Verified),
                    ..order(
                        vec![Payment::GiftCard {
                            amount: cad(2000),
                            token: "gc_tok_1".into(),
                        }],
                        ship.clone(),
                        customer.clone(),
                    )
                })),
            ),
        ),
        (
            // A web order from the cloud order API: no seq, the channel's
            // agent id, its customer (contract 1.5).
            "web",
            Envelope {
                agent_id: crate::order::SalesChannel::Web
                    .cloud_agent()
                    .unwrap_or_else(|| unreachable!("web has a cloud agent")),
                ..envelope(
                    20,
                    None,
                    Event::OrderCreated(Box::new(Order {
                        terminal_id: TerminalId::new("web")
                            .unwrap_or_else(|_| unreachable!("valid literal")),
                        stock_check: Some(crate::order::StockCheck::Verified),
                        channel: Some(crate::order::SalesChannel::Web),
                        customer_id: Some(
                            CustomerId::new("c-1842")
                                .unwrap_or_else(|_| unreachable!("valid literal")),
                        ),
                        ..order(vec![card], ship, customer)
                    })),
                )
            },
        ),
        (
            "void",
            envelope(
                4,
                Some(4),
                Event::OrderCancelled(event::OrderCancelled {
                    order_id,
                    reason: "store_void".into(),
                }),
            ),
        ),
        (
            "v1",
            envelope(
                5,
                None,
                Event::PaymentCaptured(event::PaymentCaptured {
                    order_id,
                    amount: cad(2000),
                    psp_reference: "psp_1".into(),
                }),
            ),
        ),
        (
            "v1",
            envelope(
                6,
                None,
                Event::PaymentFailed(event::PaymentFailed {
                    order_id,
                    reason: "payment_declined".into(),
                }),
            ),
        ),
        (
            "v1",
            envelope(
                12,
                None,
                Event::InventoryReserved(event::InventoryReserved {
                    order_id,
                    reservations: vec![event::Reservation {
                        sku: "SKU-1".into(),
                        quantity: 2,
                        warehouse: "central".into(),
                    }],
                }),
            ),
        ),
        (
            "v1",
            envelope(
                7,
                None,
                Event::InventoryConfirmed(event::InventoryConfirmed {
                    order_id,
                    reservations: vec![event::Reservation {
                        sku: "SKU-1".into(),
                        quantity: 2,
                        warehouse: "central".into(),
                    }],
                }),
            ),
        ),
        (
            "v1",
            envelope(
                8,
                None,
                Event::InventoryReleased(event::InventoryReleased {
                    order_id,
                    reason: "order_cancelled".into(),
                }),
            ),
        ),
        (
            "v1",
            envelope(
                9,
                None,
                Event::ShipmentScheduled(event::ShipmentScheduled {
                    order_id,
                    shipment_id: "shp_1".into(),
                }),
            ),
        ),
        (
            "v1",
            envelope(
                13,
                None,
                Event::ShipmentDispatched(event::ShipmentDispatched {
                    order_id,
                    shipment_id: "shp_1".into(),
                    carrier: "simpost".into(),
                    tracking_number: "SP0000000001".into(),
                }),
            ),
        ),
        (
            "v1",
            envelope(
                14,
                None,
                Event::ShipmentDelivered(event::ShipmentDelivered {
                    order_id,
                    shipment_id: "shp_1".into(),
                    carrier: "simpost".into(),
                    tracking_number: "SP0000000001".into(),
                }),
            ),
        ),
        (
            "v1",
            envelope(
                15,
                None,
                Event::ShipmentCancelled(event::ShipmentCancelled {
                    order_id,
                    shipment_id: "shp_1".into(),
                    reason: "order_cancelled".into(),
                }),
            ),
        ),
        (
            "v1",
            envelope(
                10,
                None,
                Event::OrderCompleted(event::OrderCompleted { order_id }),
            ),
        ),
        (
            "v1",
            envelope(
                11,
                None,
                Event::RefundIssued(event::RefundIssued {
                    order_id,
                    amount: cad(2000),
                    psp_reference: "rfd_1".into(),
                    return_id: None,
                }),
            ),
        ),
    ];
    let events = events.into_iter().chain(return_samples(order_id));
    let mut out: Vec<(String, Vec<u8>)> = events
        .into_iter()
        .map(|(variant, e)| {
            let bytes = e.encode().unwrap_or_default();
            (format!("{}.{variant}.json", e.event_type()), bytes)
        })
        .collect();
    let update = |status: CloudStatus, reason: Option<&str>, n: u8| StatusUpdate {
        order_id,
        status,
        reason: reason.map(str::to_owned),
        event_id: EventId::from_parts(1_764_000_000_100 + u64::from(n), [n; 10]),
        occurred_at: at(100 + i64::from(n)),
        seq: None,
        ret: None,
    };
    let updates = vec![
        update(CloudStatus::Paid, None, 1),
        update(CloudStatus::Cancelled, Some("payment_declined"), 2),
    ];
    out.push((
        "StatusMessage.v1.json".into(),
        StatusUpdate::encode_many(&updates).unwrap_or_default(),
    ));
    let returned = |status: CloudStatus, reason: Option<&str>, n: u8| StatusUpdate {
        ret: Some(crate::frame::ReturnStatus {
            return_id: return_id(),
            amount: (status != CloudStatus::ReturnRefused).then(|| cad(1000)),
            sku: reason.map(|_| "SKU-1".to_owned()),
        }),
        ..update(status, reason, n)
    };
    let updates = vec![
        returned(CloudStatus::ReturnAccepted, None, 3),
        returned(CloudStatus::ReturnRefunded, None, 4),
        returned(CloudStatus::ReturnRefused, Some("over_return"), 5),
    ];
    out.push((
        "ReturnStatusMessage.v1.json".into(),
        StatusUpdate::encode_many(&updates).unwrap_or_default(),
    ));
    out.push((
        "StatusResync.v1.json".into(),
        StatusResync {
            orders: vec![order_id],
            returns: vec![return_id()],
        }
        .encode()
        .unwrap_or_default(),
    ));
    let ack = Ack {
        through_seq: Seq::FIRST,
        rejected: vec![Rejection {
            seq: Seq::FIRST,
            event_id: None,
            code: "invalid_event".into(),
            reason: "payload.lines: required".into(),
        }],
    };
    out.push(("Ack.v1.json".into(), ack.encode().unwrap_or_default()));
    let nack = FrameNack {
        first_seq: Seq::FIRST,
        last_seq: Seq::FIRST,
        code: "malformed_frame".into(),
        reason: "not JSON".into(),
    };
    out.push((
        "FrameNack.v1.json".into(),
        nack.encode().unwrap_or_default(),
    ));
    let state = OrderStateRecord {
        version: ORDER_STATE_VERSION,
        order_id,
        store_id: ids().0,
        agent_id: ids().1,
        status: CloudStatus::Completed,
        reason: None,
        status_seq: 5 << 44,
        event_id: EventId::from_parts(1_764_000_000_010, [10; 10]),
        event_type: EventType::OrderCompleted,
        occurred_at: at(10),
    };
    out.push((
        "OrderState.v1.json".into(),
        state.encode().unwrap_or_default(),
    ));
    out.push(("DayClosed.v1.json".into(), day_closed_sample()));
    out.push(("Health.v1.json".into(), health_sample()));
    out
}

fn return_id() -> ReturnId {
    ReturnId::from_parts(1_764_000_000_200, [9; 10])
}

/// A card return of one unit of the sample order, its acceptance and card
/// refund, and a refusal (contract 1.7).
fn return_samples(order_id: OrderId) -> Vec<(&'static str, Envelope)> {
    use crate::returns::{RefundTender, ReturnAccepted, ReturnLine, ReturnRefused};
    let lines = vec![ReturnLine {
        sku: "SKU-1".into(),
        quantity: 1,
    }];
    let card = RefundTender::Card {
        token: "tok_visa_4242".into(),
        brand: "visa".into(),
        last4: "4242".into(),
    };
    vec![
        (
            "card",
            envelope(
                16,
                Some(5),
                Event::ReturnRequested(returns::ReturnRequested {
                    order_id,
                    return_id: return_id(),
                    terminal_id: TerminalId::new("T1")
                        .unwrap_or_else(|_| unreachable!("valid literal")),
                    lines: lines.clone(),
                    refund: card.clone(),
                    reason: "damaged".into(),
                }),
            ),
        ),
        (
            "cash",
            envelope(
                17,
                Some(6),
                Event::ReturnRequested(returns::ReturnRequested {
                    order_id,
                    return_id: ReturnId::from_parts(1_764_000_000_201, [8; 10]),
                    terminal_id: TerminalId::new("T1")
                        .unwrap_or_else(|_| unreachable!("valid literal")),
                    lines: lines.clone(),
                    refund: RefundTender::Cash {},
                    reason: "changed_mind".into(),
                }),
            ),
        ),
        (
            "v1",
            envelope(
                18,
                None,
                Event::ReturnAccepted(ReturnAccepted {
                    order_id,
                    return_id: return_id(),
                    store_id: ids().0,
                    lines,
                    amount: cad(1000),
                    refund: card,
                    tender: Some(0),
                }),
            ),
        ),
        (
            "v1",
            envelope(
                19,
                None,
                Event::ReturnRefused(ReturnRefused {
                    order_id,
                    return_id: ReturnId::from_parts(1_764_000_000_201, [8; 10]),
                    reason: "over_return".into(),
                    sku: Some("SKU-1".into()),
                }),
            ),
        ),
        (
            "return",
            envelope(
                21,
                None,
                Event::RefundIssued(event::RefundIssued {
                    order_id,
                    amount: cad(1000),
                    psp_reference: "rfd_2".into(),
                    return_id: Some(return_id()),
                }),
            ),
        ),
    ]
}

/// An online agent's heartbeat with every figure.
fn health_sample() -> Vec<u8> {
    use crate::health::{AgentState, HEALTH_SCHEMA_VERSION, Health};
    let (store_id, agent_id, _) = ids();
    Health {
        schema_version: HEALTH_SCHEMA_VERSION,
        store_id,
        agent_id,
        state: AgentState::Online,
        reason: None,
        sent_at_ms: 1_764_000_060_000,
        agent_version: "0.1.0".into(),
        heartbeat_secs: 30,
        connected_since_ms: Some(1_764_000_000_000),
        pending_events: 3,
        oldest_pending_age_ms: Some(4_500),
        last_acked_seq: 41,
        rejected_events: 0,
        catalog_version: Some(7),
        disk_free_bytes: Some(12_884_901_888),
        ingest_lag_ms: Some(180),
        last_ack_at_ms: Some(1_764_000_059_000),
    }
    .encode()
    .unwrap_or_default()
}

/// A manifest of a day with one sale (split card and cash) and one void.
fn day_closed_sample() -> Vec<u8> {
    use crate::day::{BusinessDate, CurrencyTotals, DayClosed, DayManifest, DayTally, SeqRange};
    use crate::day::{EventDigest, Tender, TenderTotal};
    let (store, agent, _) = ids();
    let mut digest = EventDigest::default();
    for n in 1..=2 {
        digest.add(&EventId::from_parts(1_764_000_000_000 + n, [n as u8; 10]));
    }
    let date =
        time::Date::from_calendar_date(2025, time::Month::November, 24).unwrap_or(time::Date::MIN);
    DayClosed::new(
        EventId::from_parts(1_764_000_000_003, [3; 10]),
        store,
        agent,
        Seq::new(3).unwrap_or(Seq::FIRST),
        at(86_400),
        DayManifest {
            business_date: BusinessDate(date),
            timezone: "America/Toronto".into(),
            closes_at: "03:00".into(),
            opened_at: at(0),
            closed_at: at(86_400),
            range: Some(SeqRange {
                first: Seq::FIRST,
                last: Seq::new(2).unwrap_or(Seq::FIRST),
            }),
            tally: DayTally {
                events: 2,
                orders: 1,
                voids: 1,
                totals: vec![CurrencyTotals {
                    gross: cad(2000),
                    voided: cad(2000),
                }],
                tenders: vec![
                    TenderTotal {
                        tender: Tender::CardOnline,
                        amount: cad(1500),
                    },
                    TenderTotal {
                        tender: Tender::Cash,
                        amount: cad(500),
                    },
                ],
            },
            event_ids_sha256: digest.finish(),
        },
    )
    .encode()
    .unwrap_or_default()
}
