//! `[carrier]`: the parcel carrier the shipping service books ship-to-home
//! orders with and follows to delivery (`o2c-cloud saga --service
//! shipping`): its URL, the client's timeout and circuit breaker, how often
//! a parcel is asked about, and how failed calls are retried.

use o2c_runtime::config::ConfigError;
use serde::{Deserialize, Serialize};

/// `[carrier]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarrierConfig {
    /// Base URL of the carrier's API (or `o2c-carrier-sim` in tests).
    #[serde(default = "default_url")]
    pub url: String,
    /// Per-call timeout (default 5000 ms).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Consecutive failures that open the circuit breaker (default 5).
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long the breaker stays open before one trial call (default
    /// 30,000 ms).
    #[serde(default = "default_breaker_open")]
    pub breaker_open_ms: u64,
    /// How often a booked or dispatched parcel is asked about (default
    /// 300 s: carriers update a few times a day).
    #[serde(default = "default_track_every")]
    pub track_every_ms: u64,
    /// How often the tracker looks for due work (default 500 ms; a
    /// cancellation also wakes it).
    #[serde(default = "default_claim_every")]
    pub claim_every_ms: u64,
    /// Wait before the first retry of a failed call; doubled each time
    /// (default 1000 ms).
    #[serde(default = "default_retry_base")]
    pub retry_base_ms: u64,
    /// Longest wait between two retries (default 600 s).
    #[serde(default = "default_retry_max")]
    pub retry_max_secs: u64,
    /// How long a tracker holds a shipment it is working on: if it dies
    /// mid-call, another takes it over after this (default 60 s).
    #[serde(default = "default_lease")]
    pub lease_secs: u64,
    /// Carrier calls at once (default 8).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

impl Default for CarrierConfig {
    fn default() -> Self {
        Self {
            url: default_url(),
            timeout_ms: default_timeout(),
            breaker_failures: default_breaker_failures(),
            breaker_open_ms: default_breaker_open(),
            track_every_ms: default_track_every(),
            claim_every_ms: default_claim_every(),
            retry_base_ms: default_retry_base(),
            retry_max_secs: default_retry_max(),
            lease_secs: default_lease(),
            concurrency: default_concurrency(),
        }
    }
}

impl CarrierConfig {
    /// Checks what deserialisation cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::key(format!("carrier.{key}"), message);
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(bad("url", format!("{:?} is not an http(s) URL", self.url)));
        }
        let positive = [
            ("timeout_ms", self.timeout_ms),
            ("breaker_failures", u64::from(self.breaker_failures)),
            ("track_every_ms", self.track_every_ms),
            ("claim_every_ms", self.claim_every_ms),
            ("retry_base_ms", self.retry_base_ms),
            ("retry_max_secs", self.retry_max_secs),
            ("concurrency", self.concurrency as u64),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(bad(key, "must be above 0".into()));
        }
        if self.lease_secs.saturating_mul(1000) <= self.timeout_ms {
            return Err(bad(
                "lease_secs",
                format!(
                    "must exceed timeout_ms ({} ms): a call may still be in flight",
                    self.timeout_ms
                ),
            ));
        }
        Ok(())
    }
}

fn default_url() -> String {
    "http://127.0.0.1:9500".into()
}
fn default_timeout() -> u64 {
    5000
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_open() -> u64 {
    30_000
}
fn default_track_every() -> u64 {
    300_000
}
fn default_claim_every() -> u64 {
    500
}
fn default_retry_base() -> u64 {
    1000
}
fn default_retry_max() -> u64 {
    600
}
fn default_lease() -> u64 {
    60
}
fn default_concurrency() -> usize {
    8
}
