//! # o2c-cloud: the cloud side of o2c
//!
//! Layout (start with [`ingest`]):
//! - [`config`]: `cloud.toml` with `O2C_CLOUD__*` overrides, validated.
//! - [`ingest`]: MQTT → validate → Kafka → ack. [`ingest::core`] is the pure
//!   planner; [`ingest::quota`] the per-agent token buckets; `ingest/mod.rs`
//!   is the I/O shell.
//! - [`kafka`]: idempotent producer, topic creation, log bridge.
//! - [`mqtt`]: MQTT v5 client options (TLS, packet size).
//! - [`http`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`metrics`]: the Prometheus registry.
//! - [`saga`]: the Order-to-Cash saga services (order, payment, inventory,
//!   shipping), their outboxes and the status publisher back to stores;
//!   `dlq list|replay`. Start with `saga/mod.rs`.
//! - [`psp`]: the payment processor client (idempotency keys, circuit
//!   breaker) and its simulator.
//!
//! The binary (`src/main.rs`) is a thin clap shell: `o2c-cloud ingest`,
//! `saga`, `psp-sim`, `dlq list|replay`, `check-config`.

pub mod config;
pub mod http;
pub mod ingest;
pub mod kafka;
pub mod metrics;
pub mod mqtt;
pub mod psp;
pub mod saga;
