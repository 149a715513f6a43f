//! Webhooks: each notice also goes, as JSON, to `[notify] webhook_url`
//! (the app's push gateway, a CRM), signed with HMAC-SHA256.
//!
//! Headers:
//! - `X-O2C-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`
//!   with `[notify] webhook_secret`; the receiver recomputes it and should
//!   refuse a stale `t` (a replay).
//! - `Idempotency-Key: <order>.<kind>`: the same for every retry of a
//!   notice, so the receiver can drop a repeat.
//!
//! A 2xx is delivered; 408, 425, 429 and 5xx, a refused connection or a
//! timeout are retried; any other status is permanent.

use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use sha2::Sha256;

use crate::retry::Failure;

/// The signature header.
pub const SIGNATURE: &str = "X-O2C-Signature";

/// The keyed MAC of `secret`.
pub fn key(secret: &[u8]) -> Result<Hmac<Sha256>, WebhookError> {
    Hmac::<Sha256>::new_from_slice(secret).map_err(|_| WebhookError::Key)
}

/// `t=<unix_secs>,v1=<hex>` of `body` with `key`.
pub fn signature(key: &Hmac<Sha256>, unix_secs: i64, body: &[u8]) -> String {
    let mut mac = key.clone();
    mac.update(unix_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={unix_secs},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// The webhook side.
#[derive(Debug, Clone)]
pub struct Webhook {
    client: reqwest::Client,
    url: String,
    key: Hmac<Sha256>,
}

/// Why the webhook client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The HTTP client.
    #[error("webhook client: {0}")]
    Client(#[from] reqwest::Error),
    /// A key HMAC refused (it takes any length: not expected).
    #[error("notify.webhook_secret: not a usable HMAC key")]
    Key,
}

impl Webhook {
    /// A client for `url` signing with `secret`.
    pub fn new(url: &str, secret: &str, timeout: Duration) -> Result<Self, WebhookError> {
        Ok(Webhook {
            client: reqwest::Client::builder().timeout(timeout).build()?,
            url: url.to_owned(),
            key: key(secret.as_bytes())?,
        })
    }

    /// Posts `body` as notice `key`, signed at `unix_secs`.
    pub async fn send(&self, key: &str, body: Vec<u8>, unix_secs: i64) -> Result<(), Failure> {
        let sig = signature(&self.key, unix_secs, &body);
        let answer = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE, sig)
            .header("Idempotency-Key", key)
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::Transient(format!("webhook: {e}")))?;
        classify(answer.status())
    }
}

/// A webhook answer's meaning.
fn classify(status: StatusCode) -> Result<(), Failure> {
    if status.is_success() {
        return Ok(());
    }
    let reason = format!("webhook: HTTP {status}");
    match status.as_u16() {
        408 | 425 | 429 | 500..=599 => Err(Failure::Transient(reason)),
        _ => Err(Failure::Permanent(reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body() {
        // Against a direct HMAC of "<t>.<body>".
        let jefe = key(b"Jefe").expect("key");
        let sig = signature(&jefe, 1_700_000_000, b"{\"a\":1}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").expect("key");
        mac.update(b"1700000000.{\"a\":1}");
        let want = hex::encode(mac.finalize().into_bytes());
        assert_eq!(sig, format!("t=1700000000,v1={want}"));
        // Another body, another signature.
        assert_ne!(sig, signature(&jefe, 1_700_000_000, b"{\"a\":2}"));
    }

    #[test]
    fn statuses_are_retried_or_not_as_documented() {
        assert_eq!(classify(StatusCode::NO_CONTENT), Ok(()));
        for s in [408, 425, 429, 500, 503] {
            let status = StatusCode::from_u16(s).expect("status");
            assert!(
                matches!(classify(status), Err(Failure::Transient(_))),
                "{s}"
            );
        }
        for s in [400, 401, 404, 410, 422] {
            let status = StatusCode::from_u16(s).expect("status");
            assert!(
                matches!(classify(status), Err(Failure::Permanent(_))),
                "{s}"
            );
        }
    }
}
