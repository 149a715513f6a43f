//! # o2c-saga: the Order-to-Cash saga services
//!
//! The Order-to-Cash saga, choreographed: each service consumes the
//! previous event, does its local transaction and publishes the next
//! through its outbox. No coordinator.
//!
//! ```text
//! orders.created ─► payment ─► payments.captured ─► inventory ─► inventory.confirmed
//!       │  (inventory holds stock here)                              │
//!       │          ship_to_home: shipping ─► shipments.scheduled ─► carrier (tracker)
//!       │                       shipments.dispatched ◄─ picked up ◄──┤
//!       │                       shipments.delivered  ◄─ delivered ◄──┘
//!       │    carry_out: inventory.confirmed / ship_to_home: shipments.delivered
//!       │                                                            ▼
//!       │                                         order ─► orders.completed
//! payments.failed ─► order ─► orders.cancelled ─► inventory ─► inventory.released
//!                                              └► payment (refund if captured) ─► refunds.issued
//!                                              └► shipping (cancel at the carrier) ─► shipments.cancelled
//! shipments.cancelled (carrier refused) ─► order ─► orders.cancelled
//! ```
//!
//! Layout:
//! - [`consumer`]: the shared consumer loop (group, manual commits,
//!   retries 1/2/4 s, dead letters).
//! - [`member`] and [`watch`]: each loop's group consumer and its
//!   watchdog (the pure verdict in `watch`): lag, partitions no member
//!   owns, stalled or falling-behind partitions; `/readyz` and metrics;
//!   a rejoin that closes an ownership gap.
//! - [`db`]: connections, numbered migrations (`cloud/saga/migrations/`), the
//!   `processed_events` ledger, per-order state rows.
//! - [`batch`]: a lane's events in one transaction with a few set-based
//!   statements (ledger, state rows, outbox). Each state row records the
//!   store whose `OrderCreated` made it; a store event about another
//!   store's order is dead-lettered as `identity_mismatch`.
//! - [`outbox`]: the transactional outbox and its relay (woken in-process
//!   at commit by `wake`, not by PostgreSQL's `NOTIFY`, which serialises
//!   commits; `FOR UPDATE SKIP LOCKED`), which writes each event to its own
//!   topic and to the order history, `orders.events`.
//! - [`order`], [`payment`], [`inventory`], [`shipping`]: the services;
//!   each has a pure state type with unit tests and a thin step. The
//!   shipping service also runs the tracker ([`shipping::worker`], deciding
//!   with the pure [`shipping::tracker`]) that books parcels at the carrier
//!   ([`shipping::carrier`]) and follows them to delivery. The
//!   inventory placement (hold at creation, confirm after payment) is
//!   documented in [`inventory`]; [`stock`] holds a batch's stock rows.
//! - [`reconcile`]: finishes payments a processor outage left `Capturing`
//!   (and those cancelled meanwhile); its decision is pure, in
//!   [`reconcile::core`].
//! - [`status`]: status updates back to the stores over MQTT; its pure
//!   delivery tracker (re-publish what reached no agent session, commit
//!   only what was delivered) is [`delivery`]; [`resync`] records the
//!   latest update per order and answers agents' resync requests.
//! - [`state`]: the state projector: folds the order history
//!   (`orders.events`) into each order's latest state, in `o2c_state.orders`
//!   and on the compacted `orders.state` topic.
//! - [`channel`]: the cloud order API's side of the saga
//!   ([`Service::Api`], run by `o2c-cloud api`): its outbox's relay, and its
//!   orders' history projected from `orders.events` for its reads.
//! - [`notice`]: customer notifications' side of the saga
//!   ([`Service::Notify`], run by `o2c-cloud notify`): which message each
//!   event calls for, recorded once per order, kind and channel.
//! - [`history`]: `o2c-cloud order history`: an order's timeline read back
//!   from `orders.events`.
//! - [`retention`]: deletes published outbox rows (and, if configured,
//!   ledger rows) past their age.
//! - [`dlq`]: `dlq list` and `dlq replay`.
//! - [`runner`]: wiring: which services run, HTTP health and metrics.
//! - [`error`], [`metrics`], [`pool`] and [`service`]: the runner's error
//!   (composing each module's own: `db::DbError`, `member::MemberError`,
//!   `outbox::OutboxError`, `status::StatusError`, `psp::PspError`), its
//!   Prometheus metrics, its PostgreSQL lanes, and the service names and
//!   schemas, each in its own module (no module reaches into this root for
//!   them).
//! - [`psp`]: the payment processor client and its wire types, on
//!   [`upstream`]: the HTTP plumbing of every service the saga calls out to
//!   (idempotency keys, timeout, circuit breaker `o2c_protocol::breaker`,
//!   answer classification), shared with the carrier client.
//!
//! Each service has its own PostgreSQL schema (`o2c_order`, `o2c_payment`,
//! `o2c_inventory`, `o2c_shipping`, `o2c_state`) and consumer group
//! (`{saga.group_prefix}-{service}`).

#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod batch;
pub mod channel;
pub mod consumer;
pub mod db;
pub mod delivery;
pub mod dlq;
pub mod error;
pub mod history;
pub mod inventory;
pub mod member;
pub mod metrics;
pub mod notice;
pub mod order;
pub mod outbox;
pub mod payment;
pub mod pool;
pub mod psp;
pub mod reconcile;
pub mod resync;
pub mod retention;
pub mod runner;
pub mod service;
pub mod shipping;
mod spans;
pub mod state;
pub mod status;
pub mod stock;
pub mod store_reservation;
#[cfg(test)]
mod test_support;
pub mod upstream;
mod wake;
pub mod watch;

pub use error::SagaError;
pub use metrics::SagaMetrics;
pub use runner::run;
pub use service::Service;
