//! `[api]`: the cloud order API for web and mobile customers
//! (`o2c-cloud api`): where it listens, which store its orders are sold by,
//! how customers' tokens are checked, and its request quotas.

use std::net::SocketAddr;
use std::path::PathBuf;

use o2c_protocol::StoreId;
use o2c_runtime::config::ConfigError;
use serde::{Deserialize, Serialize};

/// `[api]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// The order API (HTTP/JSON; TLS ends at the gateway in front of it).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// `/healthz`, `/readyz` and `/metrics` of its saga side (relay and
    /// history projection), kept off the public port.
    #[serde(default = "default_admin_listen")]
    pub admin_listen: SocketAddr,
    /// The store that sells web and mobile orders: its warehouse's stock is
    /// reserved, and reconciliation and analytics see its orders under it.
    #[serde(default = "default_store")]
    pub store: String,
    /// How customers' bearer tokens are checked.
    #[serde(default)]
    pub jwt: JwtConfig,
    /// Requests per minute of one authenticated customer (default 1,000).
    #[serde(default = "default_customer_per_minute")]
    pub customer_per_minute: u32,
    /// Requests per minute of one client IP without a valid token (default
    /// 100).
    #[serde(default = "default_anonymous_per_minute")]
    pub anonymous_per_minute: u32,
    /// Take the client IP from the first `X-Forwarded-For` address (only
    /// behind a gateway that sets it; default off: the peer address).
    #[serde(default)]
    pub trust_forwarded_for: bool,
    /// The currencies the web shop and the app sell in (ISO 4217 codes);
    /// an order in another is refused, and the served OpenAPI document
    /// lists these. Empty (the default): any code the catalog prices in.
    #[serde(default)]
    pub currencies: Vec<String>,
    /// How long a ship-to-home order's stock stays held for it if its
    /// `OrderCreated` never reaches the inventory service (default 900 s).
    #[serde(default = "default_reservation_ttl")]
    pub reservation_ttl_secs: u64,
}

/// `[api.jwt]`: HS256 with a shared secret is for development; production
/// verifies RS256 or ES256 signatures with the identity provider's public
/// key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// `HS256`, `RS256` or `ES256`.
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    /// HS256 only: the shared secret (at least 32 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// RS256 or ES256: the PEM public key file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_file: Option<PathBuf>,
    /// The `iss` every token must carry, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The `aud` every token must carry, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, seconds (default 30).
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

impl ApiConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::key(format!("api.{key}"), message);
        StoreId::new(self.store.as_str()).map_err(|e| bad("store", e.to_string()))?;
        if self.customer_per_minute == 0 {
            return Err(bad("customer_per_minute", "must be at least 1".into()));
        }
        if self.anonymous_per_minute == 0 {
            return Err(bad("anonymous_per_minute", "must be at least 1".into()));
        }
        for (i, c) in self.currencies.iter().enumerate() {
            o2c_protocol::Currency::from_code(c)
                .map_err(|e| bad(&format!("currencies[{i}]"), e.to_string()))?;
        }
        if self.reservation_ttl_secs == 0 {
            return Err(bad("reservation_ttl_secs", "must be at least 1".into()));
        }
        Ok(())
    }

    /// `[api] store` as an id (checked by [`ApiConfig::validate`]).
    pub fn store_id(&self) -> Result<StoreId, ConfigError> {
        StoreId::new(self.store.as_str()).map_err(|e| ConfigError::key("api.store", e.to_string()))
    }
}

impl JwtConfig {
    /// Checks the key settings; called by `o2c-cloud api` at start (other
    /// services leave `[api.jwt]` unset).
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::key(format!("api.{key}"), message);
        match (self.algorithm.as_str(), &self.secret, &self.public_key_file) {
            ("HS256", Some(s), None) if s.len() >= 32 => Ok(()),
            ("HS256", Some(_), None) => Err(bad(
                "jwt.secret",
                "an HS256 secret must be at least 32 bytes".into(),
            )),
            ("HS256", _, _) => Err(bad(
                "jwt",
                "HS256 needs `secret` and no `public_key_file`".into(),
            )),
            ("RS256" | "ES256", None, Some(_)) => Ok(()),
            ("RS256" | "ES256", _, _) => Err(bad(
                "jwt",
                format!("{} needs `public_key_file` and no `secret`", self.algorithm),
            )),
            (other, _, _) => Err(bad(
                "jwt.algorithm",
                format!("{other:?} is not HS256, RS256 or ES256"),
            )),
        }
    }
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            algorithm: default_algorithm(),
            secret: None,
            public_key_file: None,
            issuer: None,
            audience: None,
            leeway_secs: default_leeway(),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            admin_listen: default_admin_listen(),
            store: default_store(),
            jwt: JwtConfig::default(),
            customer_per_minute: default_customer_per_minute(),
            anonymous_per_minute: default_anonymous_per_minute(),
            trust_forwarded_for: false,
            currencies: Vec::new(),
            reservation_ttl_secs: default_reservation_ttl(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8090))
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9190))
}
fn default_store() -> String {
    "WEB".into()
}
fn default_customer_per_minute() -> u32 {
    1000
}
fn default_anonymous_per_minute() -> u32 {
    100
}
fn default_reservation_ttl() -> u64 {
    900
}
fn default_algorithm() -> String {
    "HS256".into()
}
fn default_leeway() -> u64 {
    30
}
