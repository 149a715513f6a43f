//! `[notify]`: customer notifications (`o2c-cloud notify`): the mail server
//! and sender, the optional webhook and its signing secret, and how failed
//! messages are retried before they are dead-lettered.

use std::net::SocketAddr;
use std::path::PathBuf;

use o2c_runtime::config::ConfigError;
use serde::{Deserialize, Serialize};

/// `[notify]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// `/healthz`, `/readyz` and `/metrics` of the service.
    #[serde(default = "default_admin_listen")]
    pub admin_listen: SocketAddr,
    /// The mail relay, as lettre reads it: `smtp://host:port` (plain, for
    /// a relay on the same host), `smtp://host:587?tls=required`
    /// (STARTTLS) or `smtps://host:465`; credentials as
    /// `smtps://user:password@host`.
    #[serde(default = "default_smtp_url")]
    pub smtp_url: String,
    /// The `From` of every message, e.g. `Shop <orders@shop.example>`.
    #[serde(default = "default_from")]
    pub from: String,
    /// Where each message also goes as signed JSON (the app's push
    /// gateway, a CRM), if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// The HMAC-SHA256 key of the webhook's `X-O2C-Signature` (at least 32
    /// bytes; required with `webhook_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// A directory of templates that replace the built-in ones, file by
    /// file (`order_confirmed.txt`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates_dir: Option<PathBuf>,
    /// Events older than this (by their `occurred_at`) are recorded but
    /// tell no one: a first start on a long history, or a replay of last
    /// month, must not mail customers about old orders (default 86,400 s;
    /// 0: no limit).
    #[serde(default = "default_max_event_age")]
    pub max_event_age_secs: u64,
    /// Sends after which a failing message is dead-lettered (default 15:
    /// about 75 minutes of retries with the default waits).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wait before the first retry; doubled each time (default 2000 ms).
    #[serde(default = "default_retry_base")]
    pub retry_base_ms: u64,
    /// Longest wait between two retries (default 600 s).
    #[serde(default = "default_retry_max")]
    pub retry_max_secs: u64,
    /// How long a sender holds a message it is sending: if it dies
    /// mid-send, another takes the message over after this (default 60 s).
    #[serde(default = "default_lease")]
    pub lease_secs: u64,
    /// Messages sent at once (default 16).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Time between two looks for due messages when there was nothing to
    /// send (default 50 ms).
    #[serde(default = "default_poll")]
    pub poll_ms: u64,
    /// Timeout of one SMTP transaction or webhook call (default 10 s).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

impl NotifyConfig {
    /// Checks what serde cannot; called by `o2c-cloud notify` at start.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::key(format!("notify.{key}"), message);
        if !(self.smtp_url.starts_with("smtp://") || self.smtp_url.starts_with("smtps://")) {
            return Err(bad(
                "smtp_url",
                format!("{:?} is not an smtp:// or smtps:// URL", self.smtp_url),
            ));
        }
        if self.from.trim().is_empty() {
            return Err(bad("from", "must name a sender address".into()));
        }
        match (&self.webhook_url, &self.webhook_secret) {
            (Some(url), _) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                return Err(bad("webhook_url", format!("{url:?} is not an http(s) URL")));
            }
            (Some(_), Some(s)) if s.len() >= 32 => {}
            (Some(_), Some(_)) => {
                return Err(bad("webhook_secret", "must be at least 32 bytes".into()));
            }
            (Some(_), None) => {
                return Err(bad(
                    "webhook_secret",
                    "is required with webhook_url (every call is signed)".into(),
                ));
            }
            (None, _) => {}
        }
        if self.max_attempts == 0 {
            return Err(bad("max_attempts", "must be at least 1".into()));
        }
        if self.concurrency == 0 {
            return Err(bad("concurrency", "must be at least 1".into()));
        }
        if self.lease_secs == 0 || self.timeout_ms == 0 || self.poll_ms == 0 {
            return Err(bad(
                "lease_secs",
                "lease_secs, timeout_ms and poll_ms must be at least 1".into(),
            ));
        }
        if self.timeout_ms / 1000 >= self.lease_secs {
            return Err(bad(
                "lease_secs",
                "must be longer than timeout_ms, or a slow send would be taken over and repeated"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            admin_listen: default_admin_listen(),
            smtp_url: default_smtp_url(),
            from: default_from(),
            webhook_url: None,
            webhook_secret: None,
            templates_dir: None,
            max_event_age_secs: default_max_event_age(),
            max_attempts: default_max_attempts(),
            retry_base_ms: default_retry_base(),
            retry_max_secs: default_retry_max(),
            lease_secs: default_lease(),
            concurrency: default_concurrency(),
            poll_ms: default_poll(),
            timeout_ms: default_timeout(),
        }
    }
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9191))
}
fn default_smtp_url() -> String {
    "smtp://127.0.0.1:25".into()
}
fn default_from() -> String {
    "o2c <orders@o2c.invalid>".into()
}
fn default_max_event_age() -> u64 {
    86_400
}
fn default_max_attempts() -> u32 {
    15
}
fn default_retry_base() -> u64 {
    2000
}
fn default_retry_max() -> u64 {
    600
}
fn default_lease() -> u64 {
    60
}
fn default_concurrency() -> usize {
    16
}
fn default_poll() -> u64 {
    50
}
fn default_timeout() -> u64 {
    10_000
}
