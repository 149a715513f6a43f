//! # o2c-fleet: the fleet view
//!
//! Every store agent publishes a retained health message on its
//! `o2c/v1/stores/{store}/agents/{agent}/health` topic (heartbeat, last
//! will, goodbye: `o2c_protocol::health`). `o2c-cloud fleet serve`
//! subscribes to all of them and shows each agent online, stale or offline
//! and since when, with its backlog, the age of its oldest pending event
//! and its capture-to-Kafka lag, worst first: as JSON (`GET /v1/fleet`), as
//! a page (`/fleet`) and as Prometheus gauges for the alert rules
//! (`deploy/monitoring/o2c-fleet.rules.yml`). `o2c-cloud fleet [--json]`
//! prints the running service's view ([`client`]).
//!
//! Start with [`core`]:
//! - [`core`]: pure: the table, health messages in, rows out worst first,
//!   online/stale/offline decided with the time passed in.
//! - [`hours`]: pure once built: each store's opening hours (the offline
//!   alert applies only while a store is open).
//! - [`view`]: pure: the JSON view and the text table.
//! - [`service`]: the MQTT subscription feeding the table, and `run`.
//! - [`http`]: `/v1/fleet`, the page `/fleet` (`fleet.html`), the probes.
//! - [`metrics`]: the gauges and counters the alert rules watch.
//! - [`client`]: `o2c-cloud fleet`'s HTTP call to the running service.

#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod client;
pub mod core;
pub mod hours;
pub mod http;
pub mod metrics;
pub mod service;
pub mod view;
