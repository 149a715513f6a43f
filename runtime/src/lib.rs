//! # o2c-runtime: the I/O plumbing every o2c binary needs, written once
//!
//! The store agent and the cloud processes load a TOML config with
//! environment overrides, connect to Mosquitto over MQTT v5 with TLS, serve
//! `/healthz`, `/readyz` and `/metrics`, stop on SIGTERM and log through
//! `tracing`. Those pieces live here so they cannot drift apart. Among o2c's
//! crates this one depends on `o2c-protocol` only; it knows nothing of
//! orders, outboxes or sagas.
//!
//! Layout (start with [`config`]):
//! - [`clock`]: the one place the system clocks are read (see
//!   `clippy.toml`).
//! - [`config`]: the TOML loader with `PREFIX__KEY` environment overrides,
//!   generic over the prefix and the target type, and the key-naming
//!   [`config::ConfigError`].
//! - [`mqtt`]: MQTT v5 base options, the `[mqtt.tls]` table and its rustls
//!   loader, and [`mqtt::check`] for `check-config`.
//! - [`http`]: the `/healthz`, `/readyz`, `/metrics` router over a
//!   [`http::Probes`] implementation.
//! - `kafka` (feature `kafka`, the cloud's): the idempotent producer, the
//!   librdkafka log bridge, and [`kafka::send_until_stored`],
//!   the one "produce until durable" loop of every dead-letter path.
//! - [`tls`]: PEM loading, the rustls client config MQTT and HTTPS share,
//!   the mutual-TLS server config, and the fleet identity (store, agent) a
//!   client certificate carries.
//! - [`signal`]: the SIGTERM/SIGINT shutdown future.
//! - [`telemetry`]: tracing-subscriber initialisation (env filter, text or
//!   JSON).
//! - [`trace`]: the `[telemetry]` table, the OTLP export of the order-path
//!   spans, and the W3C `traceparent` helpers every hop uses.

#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod clock;
pub mod config;
pub mod http;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod mqtt;
pub mod signal;
pub mod telemetry;
pub mod tls;
pub mod trace;

pub use config::{ConfigError, Loader};
pub use signal::shutdown_signal;
