//! # o2c-cloud-common: what every cloud service shares
//!
//! - [`config`]: `cloud.toml` with `O2C_CLOUD__*` overrides, validated: one
//!   file for every cloud service, each reading its own tables.
//! - [`kafka`]: the idempotent producer, topic creation, the log bridge and
//!   the produce helpers the ingest and every dead-letter path use.
//! - [`mqtt`]: MQTT v5 client options (TLS, packet size) from `[mqtt]`.
//!
//! It holds no service: the ingest is `o2c-ingest`, the saga `o2c-saga`,
//! and the binary `o2c-cloud` (`cloud/cli`).

pub mod config;
pub mod kafka;
pub mod mqtt;
