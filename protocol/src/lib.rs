//! # o2c-protocol: the wire contract shared by the store agent and the cloud
//!
//! Pure code: types, encoding, versioning and the sync state machine. No
//! I/O, no clocks, no async runtime; time and randomness are passed in.
//!
//! Layout (start with [`envelope`] and [`frame`]):
//! - [`ids`]: typed ids (`StoreId`, `AgentId`, `TerminalId`, `OrderId`,
//!   `EventId`, `Seq`), validated at construction.
//! - [`money`]: `Money { minor, currency }` with checked arithmetic.
//! - [`order`]: the order model (lines, payments, fulfillment, customer).
//! - [`validate`]: `Order::validate()` with field paths.
//! - [`breaker`]: a circuit breaker (closed, open, half-open) with
//!   injected time.
//! - [`retry`]: what a failed call out leads to (retry after a doubling
//!   wait, or give up), pure; shared by notifications and shipping.
//! - [`catalog`]: the catalog down-sync contract (products, prices,
//!   catalog and stock pages, the change hint) and the checks an agent runs
//!   on a page before applying it.
//! - [`card`]: the card-number detector (Luhn runs, GTIN exemption,
//!   redaction); used by [`ids`] and [`validate`].
//! - [`day`]: the day manifest (`DayClosed`): what an agent sent in one
//!   business day (seq range, counts, totals by currency and tender, a
//!   digest of event ids), and the tally both sides compute it with.
//! - [`returns`]: returns (contract 1.7): `ReturnRequested` from a store,
//!   `ReturnAccepted`/`ReturnRefused` from the cloud, and `assess`, the
//!   check of a return against its order that both sides run.
//! - [`status`]: `CloudStatus`, an order's saga status, and its wire names.
//! - [`event`]: event types, their Kafka topics and payloads.
//! - [`envelope`]: the `Envelope` around every event; JSON encode/decode
//!   with typed errors for unknown versions and types.
//! - [`frame`]: sync frames `Batch`, `Ack`, `FrameNack` and `StatusUpdate`.
//! - [`health`]: `Health`, an agent's retained heartbeat on its
//!   `.../health` topic (and its MQTT last will): the fleet view's input.
//! - [`order_state`]: `OrderStateRecord`, one order's latest state on the
//!   compacted `orders.state` topic (the read model).
//! - [`resync`]: `StatusResync`, an agent's request for its open orders'
//!   current status (after a broker lost queued updates).
//! - [`schema`]: the published contract: JSON Schemas generated from these
//!   types and golden messages, kept per version in `protocol/schemas/`.
//! - [`topic`]: MQTT topic builders/parsers and Kafka topic names.
//! - [`sync`]: the agent's sync window (batch, ack, resend, backoff) as a
//!   sans-IO state machine.

#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod breaker;
pub mod card;
pub mod catalog;
pub mod day;
pub mod envelope;
pub mod event;
pub mod frame;
pub mod health;
pub mod ids;
pub mod money;
pub mod order;
pub mod order_state;
pub mod resync;
pub mod retry;
pub mod returns;
pub mod schema;
pub mod status;
pub mod sync;
pub mod topic;
pub mod validate;

pub use envelope::{DecodeError, EncodeError, Envelope, SCHEMA_VERSION, Traceparent};
pub use event::{Event, EventType};
pub use frame::{
    Ack, AckMessage, Batch, FrameError, FrameId, FrameNack, RawBatch, Rejection, ReturnStatus,
    StatusUpdate,
};
pub use ids::{AgentId, CustomerId, EventId, IdError, OrderId, ReturnId, Seq, StoreId, TerminalId};
pub use money::{Currency, Money, MoneyError};
pub use order::{
    Address, CardAuthorization, Customer, Fulfillment, Order, OrderLine, Payment, SalesChannel,
    StockCheck,
};
pub use status::{CloudStatus, UnknownCloudStatus};
pub use topic::{Channel, KafkaTopics, MqttUrl, MqttUrlError, TopicError};
pub use validate::{ValidationError, ValidationErrors};
