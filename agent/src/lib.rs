//! # o2c-agent: offline-first order capture for one store
//!
//! POS terminals call the agent's HTTP API; a 201 means the order is on
//! disk (SQLite, WAL, `synchronous=FULL`) together with its `OrderCreated`
//! event in the outbox, whether or not the store is online. Shipping the
//! outbox to the cloud is the sync task's job (`src/sync/`, started from
//! [`agent::Agent::spawn_background_tasks`]).
//!
//! Layout (start with [`agent`] and [`store`]):
//! - [`admin`]: the operator commands (`terminal add|list|revoke`,
//!   `status`, `outbox list`, `backup`), safe while the agent runs.
//! - [`agent`]: `run(config, listener, shutdown)` and the [`agent::Agent`]
//!   that owns the store, the catalog, the metrics and background tasks.
//! - [`config`]: the one `Config` (TOML + `O2C_AGENT__*` env overrides,
//!   loaded by `o2c_runtime::config`; old-layout keys accepted with a
//!   warning).
//! - [`store`]: SQLite behind a single group-committing writer: orders,
//!   returns taken at a till, the outbox, idempotency records, sync
//!   bookkeeping, and its error
//!   ([`store::StoreError`]). The sync task's API (`pending_batch`,
//!   `apply_ack`, `apply_statuses`, ...) lives here.
//! - [`api`]: the axum router, handlers, JSON bodies ([`api::model`]), the
//!   error mapping, and [`api::capture`]: request → validated `Order`
//!   conversion, card-data scan and offline card rules (the store currency,
//!   the floor limit); `api::returns`: in-store returns (request →
//!   `ReturnRequested`, `POST /v1/orders/{id}/returns`,
//!   `GET /v1/returns/{id}`). `/healthz`, `/readyz` and `/metrics` come from
//!   `o2c_runtime::http`.
//! - [`business_day`]: the store's business day (zone, closing time):
//!   the date a moment belongs to and the moments of a date.
//! - [`catalog`]: the sled catalog cache and the JSONL import.
//! - [`metrics`]: Prometheus metrics.
//! - [`sync`]: the sync task, the MQTT shell around
//!   `o2c_protocol::sync::SyncState`; MQTT/TLS setup is `o2c_runtime::mqtt`.
//! - [`report`]: the Z-report of a business day, pure (rows in, report
//!   out); its reads are `store::report`, its shells `GET /v1/reports/z`
//!   and `o2c-agent report z`.
//! - [`openapi`]: the generated OpenAPI document (checked in as
//!   `agent/openapi.json`).
//! - `main.rs`: the CLI (`run`, `check-config`, `catalog import` and the
//!   [`admin`] commands); tracing, the TLS check and the shutdown signal
//!   come from `o2c_runtime`.

#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod admin;
pub mod agent;
pub mod api;
pub mod business_day;
pub mod catalog;
pub mod config;
pub mod metrics;
pub mod openapi;
pub mod report;
pub mod store;
pub mod sync;

pub use agent::{Agent, AgentError, run};
pub use config::Config;
