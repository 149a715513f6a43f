//! # o2c-catalog: the catalog master data and the store API (issue 15)
//!
//! The cloud is the master of the catalog, its prices and the stock a
//! store sees. A product has a SKU, a name, a category, an active flag and
//! prices per currency in minor units, each with an optional
//! `effective_from` (the wire types are `o2c_protocol::catalog`). Every
//! import that changes anything takes the next catalog version.
//!
//! - [`import`]: parsing and checking an import file, JSON Lines or CSV
//!   (pure): every bad line named with its number and field, and a file
//!   with one refused whole.
//! - [`db`]: the catalog in PostgreSQL (`o2c_catalog`): migration and the
//!   idempotent, versioned import.
//! - [`pages`]: the store API's reads: catalog and stock pages, versions,
//!   the stores to hint.
//! - [`service`]: `o2c-cloud catalog`, the HTTPS store API (mutual TLS,
//!   the store taken from the client certificate, `ETag`/304, gzip) and
//!   the retained MQTT change hints.
//! - [`metrics`]: its Prometheus metrics and probes.
//!
//! `o2c-cloud catalog --config cloud.toml import FILE` runs the import.

pub mod db;
pub mod import;
pub mod metrics;
pub mod pages;
pub mod service;

pub use db::{CatalogError, Outcome};
pub use import::{LineError, Price, Product};
