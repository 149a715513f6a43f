//! # o2c-catalog: the catalog master data (issue 15, first part)
//!
//! The cloud is the master of the catalog and its prices. A product has a
//! SKU, a name, a category, an active flag and prices per currency in minor
//! units, each with an optional `effective_from`. Every import that changes
//! anything takes the next catalog version.
//!
//! - [`import`]: parsing and checking an import file, JSON Lines or CSV
//!   (pure): every bad line named with its number and field, and a file
//!   with one refused whole.
//! - [`db`]: the catalog in PostgreSQL (`o2c_catalog`): migration and the
//!   idempotent, versioned import.
//!
//! `o2c-cloud catalog import FILE --config cloud.toml` runs both.

pub mod db;
pub mod import;

pub use db::{CatalogError, Outcome};
pub use import::{LineError, Price, Product};
