//! The agent's one `Config`: a TOML file, then environment overrides, then
//! semantic checks. Nothing is bound or opened here.
//!
//! # Environment overrides
//! Every key can be overridden by a variable named `O2C_AGENT__` followed by
//! the key's path in upper case, with `__` between the levels:
//!
//! | key                                  | variable                                       |
//! |--------------------------------------|------------------------------------------------|
//! | `store_id`                           | `O2C_AGENT__STORE_ID`                          |
//! | `store.currency`                     | `O2C_AGENT__STORE__CURRENCY`                   |
//! | `http.listen`                        | `O2C_AGENT__HTTP__LISTEN`                      |
//! | `mqtt.tls.ca_file`                   | `O2C_AGENT__MQTT__TLS__CA_FILE`                |
//! | `payments.offline_floor_limit_minor` | `O2C_AGENT__PAYMENTS__OFFLINE_FLOOR_LIMIT_MINOR`|
//! | `terminals[0].token_sha256`          | `O2C_AGENT__TERMINALS__0__TOKEN_SHA256`        |
//!
//! A value is read as a TOML value when it parses as one (`42`, `true`,
//! `[{ id = "T1", token_sha256 = "…" }]`) and as a plain string otherwise.
//! When the file already holds a string at that key the value is always a
//! string. Quote a value (`'"123"'`) to force a string.
//!
//! Unknown keys, in the file or in a variable, are errors. Every error names
//! the key it is about; `o2c-agent` exits with code 64 on any of them.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use o2c_protocol::{AgentId, Currency, StoreId, TerminalId};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Prefix of every environment override.
pub const ENV_PREFIX: &str = "O2C_AGENT__";

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// An environment override could not be applied.
    #[error("environment variable {var} (config key `{key}`): {message}")]
    Env {
        /// The variable.
        var: String,
        /// The key it addresses.
        key: String,
        /// What was wrong.
        message: String,
    },
    /// A key has a bad value, is missing or is unknown.
    #[error("config key `{key}`: {message}")]
    Key {
        /// The key's path, e.g. `http.listen` or `terminals[0].id`.
        key: String,
        /// What was wrong.
        message: String,
    },
}

impl ConfigError {
    fn key(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Key {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The whole agent configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This store.
    pub store_id: StoreId,
    /// This agent process.
    pub agent_id: AgentId,
    /// Holds `agent.db` (SQLite), `catalog/` (sled) and `http.addr`.
    pub data_dir: PathBuf,
    /// The store itself: its currency.
    #[serde(default)]
    pub store: StoreConfig,
    /// The local HTTP API.
    pub http: HttpConfig,
    /// The MQTT link to the cloud (used by the sync task).
    pub mqtt: MqttConfig,
    /// POS terminals allowed to call the API.
    #[serde(default)]
    pub terminals: Vec<TerminalConfig>,
    /// Offline card limits.
    #[serde(default)]
    pub payments: PaymentsConfig,
    /// Outbox limits and group commit.
    #[serde(default)]
    pub outbox: OutboxConfig,
    /// Local catalog cache.
    #[serde(default)]
    pub catalog: CatalogConfig,
}

/// `[store]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The store's currency (ISO 4217, e.g. `"EUR"`). The offline card
    /// limits in `[payments]` are amounts in its minor units, and only a
    /// sale in this currency can be authorised offline. Without it the
    /// agent takes no offline card payment at all (422
    /// `offline_card_unavailable`), and setting an offline limit in the file
    /// or the environment is a config error: minor units of no currency
    /// mean nothing (100 yen is not 1 euro).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to bind; port 0 picks a free port (see `data_dir/http.addr`).
    pub listen: SocketAddr,
    /// How long SIGTERM waits for in-flight requests, in milliseconds.
    #[serde(default = "defaults::shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
}

/// `[mqtt]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host:port` or `mqtts://host:port` (the latter needs `[mqtt.tls]`).
    pub url: String,
    /// TLS material for `mqtts://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<MqttTlsConfig>,
    /// MQTT keep-alive, seconds (default 30).
    #[serde(default = "defaults::keep_alive_secs")]
    pub keep_alive_secs: u64,
    /// Most events in one batch frame (default 500).
    #[serde(default = "defaults::max_batch_events")]
    pub max_batch_events: usize,
    /// Most envelope bytes in one batch frame (default 256 KiB; at most
    /// `o2c_protocol::frame::MAX_FRAME_BYTES` minus framing).
    #[serde(default = "defaults::max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// Resend a batch whose application ack has not come back after this
    /// many milliseconds (default 5000).
    #[serde(default = "defaults::ack_timeout_ms")]
    pub ack_timeout_ms: u64,
    /// Acked outbox rows are pruned after this many days (default 7).
    #[serde(default = "defaults::retention_days")]
    pub retention_days: u32,
    /// Drop a connection on which a publish or ping has had no answer at
    /// all from the broker for this many milliseconds (default 5000): a
    /// silent partition is left in seconds, not after TCP's backoff.
    #[serde(default = "defaults::liveness_timeout_ms")]
    pub liveness_timeout_ms: u64,
    /// Abandon a connection attempt not complete after this many
    /// milliseconds (default 3000).
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

/// `[mqtt.tls]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTlsConfig {
    /// CA bundle (PEM) that signed the broker's certificate.
    pub ca_file: PathBuf,
    /// Client certificate (PEM), for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// Client key (PEM), for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

/// One `[[terminals]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalConfig {
    /// The terminal's id, as sent in `terminal_id`.
    pub id: TerminalId,
    /// SHA-256 of its bearer token, 64 hex digits.
    pub token_sha256: TokenHash,
}

/// SHA-256 of a bearer token. Printed as hex; the token itself is never
/// stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({})", hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for TokenHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out).map_err(|_| {
            serde::de::Error::custom("must be 64 hex digits (the SHA-256 of the bearer token)")
        })?;
        Ok(TokenHash(out))
    }
}

impl Serialize for TokenHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

/// `[payments]`: offline card limits, in minor units of `store.currency`
/// (required when either is set).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentsConfig {
    /// Largest single offline-authorised card payment (minor units).
    #[serde(default = "defaults::offline_floor_limit_minor")]
    pub offline_floor_limit_minor: i64,
    /// Most offline-authorised card money not yet confirmed by the cloud.
    #[serde(default = "defaults::offline_total_cap_minor")]
    pub offline_total_cap_minor: i64,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        Self {
            offline_floor_limit_minor: defaults::offline_floor_limit_minor(),
            offline_total_cap_minor: defaults::offline_total_cap_minor(),
        }
    }
}

/// `[outbox]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// New captures get 503 `backlog_full` once this many events are pending.
    #[serde(default = "defaults::max_pending_events")]
    pub max_pending_events: u64,
    /// Most commands the writer commits in one transaction (default 2048).
    #[serde(default = "defaults::max_commit_batch")]
    pub max_commit_batch: usize,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            max_pending_events: defaults::max_pending_events(),
            max_commit_batch: defaults::max_commit_batch(),
        }
    }
}

/// `[catalog]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// sled page cache, bytes (default 4 MiB); bounds the catalog's RSS.
    #[serde(default = "defaults::catalog_cache_bytes")]
    pub cache_bytes: u64,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            cache_bytes: defaults::catalog_cache_bytes(),
        }
    }
}

mod defaults {
    pub(super) fn shutdown_grace_ms() -> u64 {
        10_000
    }
    pub(super) fn keep_alive_secs() -> u64 {
        30
    }
    pub(super) fn max_batch_events() -> usize {
        500
    }
    pub(super) fn max_batch_bytes() -> usize {
        256 * 1024
    }
    pub(super) fn ack_timeout_ms() -> u64 {
        5_000
    }
    pub(super) fn retention_days() -> u32 {
        7
    }
    pub(super) fn liveness_timeout_ms() -> u64 {
        5_000
    }
    pub(super) fn connect_timeout_ms() -> u64 {
        3_000
    }
    pub(super) fn offline_floor_limit_minor() -> i64 {
        10_000
    }
    pub(super) fn offline_total_cap_minor() -> i64 {
        500_000
    }
    pub(super) fn max_pending_events() -> u64 {
        1_000_000
    }
    pub(super) fn max_commit_batch() -> usize {
        2048
    }
    pub(super) fn catalog_cache_bytes() -> u64 {
        4 * 1024 * 1024
    }
}

impl Config {
    /// Reads `path`, applies the `O2C_AGENT__*` variables of this process
    /// and checks the result.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// Like [`Config::load`] with an explicit environment (for tests).
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_with_env(&text, env).map_err(|e| match e {
            ConfigError::Syntax { message, .. } => ConfigError::Syntax {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses TOML text, applies overrides from `env` and checks the result.
    pub fn from_toml_with_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: PathBuf::new(),
                    message: e.to_string(),
                })?;
        let mut root = toml::Value::Table(table);
        let mut overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        overrides.sort();
        for (var, value) in overrides {
            apply_env(&mut root, &var, &value)?;
        }
        let limits_set = offline_limits_set(&root);
        let config: Config = serde_path_to_error::deserialize(root).map_err(|e| {
            let key = e.path().to_string();
            // toml appends "in `key`" lines; the key is named already.
            let full = e.inner().to_string();
            let message = full.lines().next().unwrap_or_default().trim().to_owned();
            ConfigError::key(unknown_field_key(&key, &message), message)
        })?;
        config.check()?;
        if let Some(limit) = limits_set
            && config.store.currency.is_none()
        {
            return Err(ConfigError::key(
                "store.currency",
                format!(
                    "required when payments.{limit} is set: offline card limits are amounts \
                     in the store's currency (ISO 4217, e.g. \"EUR\")"
                ),
            ));
        }
        Ok(config)
    }

    /// The effective configuration as TOML (what `check-config` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// Where the SQLite database lives.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("agent.db")
    }

    /// Where the sled catalog lives.
    pub fn catalog_path(&self) -> PathBuf {
        self.data_dir.join("catalog")
    }

    /// Where the bound HTTP address is written.
    pub fn http_addr_path(&self) -> PathBuf {
        self.data_dir.join("http.addr")
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::key("data_dir", "must not be empty"));
        }
        let url: o2c_protocol::MqttUrl = self
            .mqtt
            .url
            .parse()
            .map_err(|e: o2c_protocol::MqttUrlError| ConfigError::key("mqtt.url", e.to_string()))?;
        let tls = url.tls;
        if tls && self.mqtt.tls.is_none() {
            return Err(ConfigError::key(
                "mqtt.tls",
                "an mqtts:// url needs a [mqtt.tls] table",
            ));
        }
        if let Some(t) = &self.mqtt.tls {
            if !tls {
                return Err(ConfigError::key(
                    "mqtt.tls",
                    "[mqtt.tls] is only used with an mqtts:// url",
                ));
            }
            if t.cert_file.is_some() != t.key_file.is_some() {
                return Err(ConfigError::key(
                    "mqtt.tls.key_file",
                    "cert_file and key_file go together",
                ));
            }
        }
        let frame_room = o2c_protocol::frame::MAX_FRAME_BYTES - 4096;
        if self.mqtt.max_batch_bytes == 0 || self.mqtt.max_batch_bytes > frame_room {
            return Err(ConfigError::key(
                "mqtt.max_batch_bytes",
                format!("must be between 1 and {frame_room}"),
            ));
        }
        if self.mqtt.max_batch_events == 0 {
            return Err(ConfigError::key("mqtt.max_batch_events", "must be >= 1"));
        }
        if self.mqtt.keep_alive_secs == 0 {
            return Err(ConfigError::key("mqtt.keep_alive_secs", "must be >= 1"));
        }
        if self.mqtt.ack_timeout_ms == 0 {
            return Err(ConfigError::key("mqtt.ack_timeout_ms", "must be >= 1"));
        }
        for (key, ms) in [
            ("mqtt.liveness_timeout_ms", self.mqtt.liveness_timeout_ms),
            ("mqtt.connect_timeout_ms", self.mqtt.connect_timeout_ms),
        ] {
            if !(100..=600_000).contains(&ms) {
                return Err(ConfigError::key(key, "must be between 100 and 600000"));
            }
        }
        if self.terminals.is_empty() {
            return Err(ConfigError::key(
                "terminals",
                "at least one [[terminals]] entry is required",
            ));
        }
        let mut ids = HashSet::new();
        let mut hashes = HashSet::new();
        for (i, t) in self.terminals.iter().enumerate() {
            if !ids.insert(t.id.as_str()) {
                return Err(ConfigError::key(
                    format!("terminals[{i}].id"),
                    format!("duplicate terminal id {:?}", t.id.as_str()),
                ));
            }
            if !hashes.insert(t.token_sha256.0) {
                return Err(ConfigError::key(
                    format!("terminals[{i}].token_sha256"),
                    "two terminals share a token",
                ));
            }
        }
        if self.payments.offline_floor_limit_minor < 0 {
            return Err(ConfigError::key(
                "payments.offline_floor_limit_minor",
                "must be >= 0",
            ));
        }
        if self.payments.offline_total_cap_minor < 0 {
            return Err(ConfigError::key(
                "payments.offline_total_cap_minor",
                "must be >= 0",
            ));
        }
        if self.outbox.max_pending_events == 0 {
            return Err(ConfigError::key(
                "outbox.max_pending_events",
                "must be >= 1",
            ));
        }
        if self.outbox.max_commit_batch == 0 {
            return Err(ConfigError::key("outbox.max_commit_batch", "must be >= 1"));
        }
        Ok(())
    }
}

/// The first offline card limit the file or the environment sets, if any
/// (defaults do not count: without `store.currency` they are unused).
fn offline_limits_set(root: &toml::Value) -> Option<&'static str> {
    let payments = root.get("payments")?;
    ["offline_floor_limit_minor", "offline_total_cap_minor"]
        .into_iter()
        .find(|k| payments.get(k).is_some())
}

/// serde reports an unknown or missing field at its parent's path; name
/// the field itself.
fn unknown_field_key(path: &str, message: &str) -> String {
    let field = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("missing field `"))
        .and_then(|rest| rest.split_once('`'))
        .map(|(f, _)| f);
    match (field, path) {
        (Some(f), "." | "") => f.to_owned(),
        (Some(f), p) if !p.ends_with(f) => format!("{p}.{f}"),
        (_, "." | "") => "(root)".to_owned(),
        _ => path.to_owned(),
    }
}

fn apply_env(root: &mut toml::Value, var: &str, raw: &str) -> Result<(), ConfigError> {
    let rest = &var[ENV_PREFIX.len()..];
    let segments: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    let key = segments.join(".");
    let err = |message: String| ConfigError::Env {
        var: var.to_owned(),
        key: key.clone(),
        message,
    };
    if segments.iter().any(String::is_empty) {
        return Err(err("empty key segment".to_owned()));
    }
    let Some((last, parents)) = segments.split_last() else {
        return Err(err("empty key".to_owned()));
    };
    let mut cur = root;
    for seg in parents {
        cur = descend(cur, seg).ok_or_else(|| err(format!("`{seg}` is not a table or index")))?;
    }
    let parsed = parse_env_value(raw);
    match cur {
        toml::Value::Table(t) => {
            let value = match t.get(last.as_str()) {
                Some(toml::Value::String(_)) => toml::Value::String(raw.to_owned()),
                _ => parsed,
            };
            t.insert(last.clone(), value);
        }
        toml::Value::Array(a) => {
            let slot = last
                .parse::<usize>()
                .ok()
                .and_then(|i| a.get_mut(i))
                .ok_or_else(|| err(format!("no array element `{last}`")))?;
            *slot = parsed;
        }
        _ => return Err(err("parent is not a table".to_owned())),
    }
    Ok(())
}

fn descend<'a>(cur: &'a mut toml::Value, seg: &str) -> Option<&'a mut toml::Value> {
    match cur {
        toml::Value::Table(t) => Some(
            t.entry(seg.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new())),
        ),
        toml::Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
        _ => None,
    }
}

fn parse_env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests;
