//! `[catalog]`: the catalog service (`o2c-cloud catalog`), the store API
//! over HTTPS with mutual TLS and the retained change hints on MQTT.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[catalog]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// The store API's HTTPS address.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// `/healthz`, `/readyz` and `/metrics` (plain HTTP).
    #[serde(default = "default_http_listen")]
    pub http_listen: SocketAddr,
    /// The server certificate and the fleet CA that signs agents' client
    /// certificates. Required to serve stores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<CatalogTls>,
    /// Products (or stock levels) per page.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// How often the versions are read from PostgreSQL: the latency of a
    /// hint after an import or a stock movement, and how stale an `ETag`
    /// may be.
    #[serde(default = "default_refresh_ms")]
    pub refresh_ms: u64,
    /// The inventory service's schema, whose stock the store API serves.
    #[serde(default = "default_inventory_schema")]
    pub inventory_schema: String,
    /// Stores to send change hints to, besides every store that has called
    /// the API or has stock.
    #[serde(default)]
    pub stores: Vec<String>,
}

/// `[catalog.tls]`: PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogTls {
    /// The fleet CA (PEM): only clients it signed are served.
    pub client_ca_file: PathBuf,
    /// The server's certificate chain (PEM).
    pub cert_file: PathBuf,
    /// The server's private key (PEM).
    pub key_file: PathBuf,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8443))
}
fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9315))
}
fn default_page_size() -> u32 {
    5000
}
fn default_refresh_ms() -> u64 {
    200
}
fn default_inventory_schema() -> String {
    "o2c_inventory".into()
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            http_listen: default_http_listen(),
            tls: None,
            page_size: default_page_size(),
            refresh_ms: default_refresh_ms(),
            inventory_schema: default_inventory_schema(),
            stores: Vec::new(),
        }
    }
}
