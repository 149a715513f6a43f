//! # o2c-cloud-common: the cloud's configuration, shared by its services
//!
//! - [`config`]: `cloud.toml` with `O2C_CLOUD__*` overrides, validated: one
//!   file for every cloud service, each reading its own tables.
//! - [`mqtt`]: MQTT v5 client options (TLS, packet size) from `[mqtt]`,
//!   over `o2c_runtime::mqtt`.
//!
//! The Kafka producer is `o2c_runtime::kafka` (feature `kafka`).
//!
//! It holds no service: the ingest is `o2c-ingest`, the saga `o2c-saga`,
//! and the binary `o2c-cloud` (`cloud/cli`).

#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod config;
pub mod mqtt;
