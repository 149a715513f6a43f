//! The agent's one `Config`: a TOML file, then environment overrides, then
//! semantic checks. Nothing is bound or opened here.
//!
//! Loading and the `O2C_AGENT__*` environment overrides are
//! [`o2c_runtime::config`]'s (its docs give the rules): `O2C_AGENT__` then
//! the key's path in upper case with `__` between the levels, e.g.
//! `O2C_AGENT__MQTT__TLS__CA_FILE` for `mqtt.tls.ca_file` or
//! `O2C_AGENT__TERMINALS__0__TOKEN_SHA256` for `terminals[0].token_sha256`.
//! A value is TOML when it parses as TOML, a string when the file holds a
//! string at that key; unknown keys are errors naming the key.
//!
//! Then [`legacy`](self) moves keys of the old layout to their new place
//! with a warning (`mqtt.ack_timeout_ms` is now `sync.ack_timeout_ms`, ...),
//! and [`check`](self) applies the rules serde cannot. Every error names
//! the key it is about; `o2c-agent` exits with code 64 on any of them.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use o2c_protocol::{AgentId, Currency, StoreId, TerminalId};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use legacy::Deprecated;

use crate::business_day::{BusinessDay, ClosingTime, StoreZone};
pub use o2c_runtime::config::ConfigError;
pub use o2c_runtime::mqtt::MqttTlsConfig;

mod check;
mod legacy;

/// Prefix of every environment override.
pub const ENV_PREFIX: &str = "O2C_AGENT__";

const LOADER: o2c_runtime::Loader = o2c_runtime::Loader::new(ENV_PREFIX);

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
    /// The sync window: batch sizes and the ack timeout.
    #[serde(default)]
    pub sync: SyncSettings,
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
    /// `[business_day]`: when the store's day closes.
    #[serde(default)]
    pub business_day: BusinessDayConfig,
    /// `[fulfillment]`: the ship-to-home stock check.
    #[serde(default)]
    pub fulfillment: FulfillmentConfig,
    /// `[telemetry]`: trace export over OTLP (off by default) and the
    /// fleet-view heartbeat.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

/// `[telemetry]`: the runtime's shared trace keys
/// ([`o2c_runtime::trace::TraceConfig`], same names as the cloud's) plus
/// the agent's own `heartbeat_secs`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TelemetryConfig {
    /// Trace export (`endpoint`, `sampling_ratio`, ...), flattened.
    #[serde(flatten)]
    pub trace: o2c_runtime::trace::TraceConfig,
    /// Seconds between two health heartbeats on the agent's retained
    /// `.../health` topic (default 30; 1 to 3600). A health message also
    /// goes out on each change (connect, backlog emptied or started, a
    /// rejection); the fleet view calls an agent stale after three
    /// intervals without one.
    pub heartbeat_secs: u32,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            trace: o2c_runtime::trace::TraceConfig::default(),
            heartbeat_secs: defaults::heartbeat_secs(),
        }
    }
}

impl<'de> Deserialize<'de> for TelemetryConfig {
    /// `heartbeat_secs` is taken out, and every other key must be a
    /// `TraceConfig` key (unknown ones stay errors naming the key; serde's
    /// `flatten` would ignore them).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(d)?;
        let heartbeat_secs = match table.remove("heartbeat_secs") {
            None => defaults::heartbeat_secs(),
            Some(v) => v
                .as_integer()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    D::Error::custom("heartbeat_secs: must be a whole number of seconds")
                })?,
        };
        let trace = o2c_runtime::trace::TraceConfig::deserialize(toml::Value::Table(table))
            .map_err(|e| D::Error::custom(e.message()))?;
        Ok(Self {
            trace,
            heartbeat_secs,
        })
    }
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
    /// The store's IANA time zone (default `"UTC"`), from the system's tz
    /// database: its business day ([`BusinessDayConfig`]) runs on this
    /// wall clock.
    #[serde(default)]
    pub timezone: StoreZone,
}

/// `[business_day]`: when the store's day closes. At that moment the agent
/// writes the day's manifest into its outbox (`o2c-cloud reconcile` checks
/// the cloud against it), and the Z-report of a date covers the sales from
/// one closing to the next.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessDayConfig {
    /// Wall-clock closing time, `HH:MM` in `[store] timezone` (default
    /// `"00:00"`). A sale before it belongs to the day before.
    #[serde(default)]
    pub closes_at: ClosingTime,
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

/// `[sync]`: the sync window (see `o2c_protocol::sync`). These keys were
/// in `[mqtt]` before; there they still load, with a warning.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSettings {
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
    /// Ask the cloud again for the status of the orders not yet final this
    /// often, in seconds (default 300; 0: only after each reconnect). A
    /// broker crash loses status updates queued for this store; see
    /// `o2c_protocol::resync`.
    #[serde(default = "defaults::status_resync_secs")]
    pub status_resync_secs: u64,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            max_batch_events: defaults::max_batch_events(),
            max_batch_bytes: defaults::max_batch_bytes(),
            ack_timeout_ms: defaults::ack_timeout_ms(),
            status_resync_secs: defaults::status_resync_secs(),
        }
    }
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
    /// Acked outbox rows are pruned after this many days (default 7; was
    /// `mqtt.retention_days`).
    #[serde(default = "defaults::retention_days")]
    pub retention_days: u32,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            max_pending_events: defaults::max_pending_events(),
            max_commit_batch: defaults::max_commit_batch(),
            retention_days: defaults::retention_days(),
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
    /// SKUs whose prices capture keeps in memory (default 65,536, about
    /// 10 MiB when full); the rest of the catalog is read from sled when sold.
    #[serde(default = "defaults::price_cache_skus")]
    pub price_cache_skus: usize,
    /// The cloud catalog service, `https://host:port`; without it the
    /// catalog changes only by `o2c-agent catalog import`. Its client
    /// certificate is `[mqtt.tls]`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Pull this often (with up to 10% jitter) besides at start, on
    /// reconnect and on a change hint.
    #[serde(default = "defaults::catalog_poll_secs")]
    pub poll_interval_secs: u64,
    /// Per request.
    #[serde(default = "defaults::catalog_timeout_ms")]
    pub timeout_ms: u64,
    /// Most a pull waits, before writing each page, for the tills to pause
    /// (default 200 ms; 0: never waits). Selling goes first; a sync under
    /// continuous selling still writes a page (5,000 products) per wait.
    #[serde(default = "defaults::catalog_yield_per_page_ms")]
    pub yield_per_page_ms: u64,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            cache_bytes: defaults::catalog_cache_bytes(),
            price_cache_skus: defaults::price_cache_skus(),
            url: None,
            poll_interval_secs: defaults::catalog_poll_secs(),
            timeout_ms: defaults::catalog_timeout_ms(),
            yield_per_page_ms: defaults::catalog_yield_per_page_ms(),
        }
    }
}

/// What a ship-to-home sale does when its stock cannot be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnverifiedPolicy {
    /// Sell; the order says `stock_check: "unverified"` (degraded mode).
    #[default]
    Accept,
    /// Refuse the sale (503 `stock_unverified`).
    Refuse,
}

/// `[fulfillment]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FulfillmentConfig {
    /// When the store is offline or the check's breaker is open.
    #[serde(default)]
    pub ship_to_home_when_unverified: UnverifiedPolicy,
    /// Per check call.
    #[serde(default = "defaults::check_timeout_ms")]
    pub check_timeout_ms: u64,
    /// Consecutive failures that open the breaker.
    #[serde(default = "defaults::breaker_failures")]
    pub breaker_failures: u32,
    /// How long it stays open before one trial.
    #[serde(default = "defaults::breaker_open_secs")]
    pub breaker_open_secs: u64,
    /// How long the cloud holds a reservation the order never claims.
    #[serde(default = "defaults::reservation_ttl_secs")]
    pub reservation_ttl_secs: u64,
}

impl Default for FulfillmentConfig {
    fn default() -> Self {
        Self {
            ship_to_home_when_unverified: UnverifiedPolicy::Accept,
            check_timeout_ms: defaults::check_timeout_ms(),
            breaker_failures: defaults::breaker_failures(),
            breaker_open_secs: defaults::breaker_open_secs(),
            reservation_ttl_secs: defaults::reservation_ttl_secs(),
        }
    }
}

mod defaults {
    pub(super) fn heartbeat_secs() -> u32 {
        30
    }
    pub(super) fn check_timeout_ms() -> u64 {
        2000
    }
    pub(super) fn breaker_failures() -> u32 {
        5
    }
    pub(super) fn breaker_open_secs() -> u64 {
        30
    }
    pub(super) fn reservation_ttl_secs() -> u64 {
        1800
    }
    pub(super) fn catalog_poll_secs() -> u64 {
        300
    }
    pub(super) fn catalog_timeout_ms() -> u64 {
        10_000
    }
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
    pub(super) fn status_resync_secs() -> u64 {
        300
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
    pub(super) fn catalog_yield_per_page_ms() -> u64 {
        200
    }
    pub(super) fn price_cache_skus() -> usize {
        crate::catalog::DEFAULT_PRICE_CACHE_SKUS
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
        Ok(warn(Self::from_value(LOADER.read(path, env)?)?))
    }

    /// Parses TOML text, applies overrides from `env` and checks the result.
    pub fn from_toml_with_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        Ok(warn(Self::from_value(LOADER.parse(text, env)?)?))
    }

    /// Checks a config tree (file plus overrides) and the keys of the old
    /// layout it used.
    pub fn from_value(mut root: toml::Value) -> Result<(Config, Vec<Deprecated>), ConfigError> {
        let deprecated = legacy::migrate(&mut root)?;
        let limits_set = check::offline_limits_set(&root);
        let config: Config = o2c_runtime::config::deserialize(root)?;
        config.check()?;
        config.telemetry.trace.check()?;
        if !(1..=3600).contains(&config.telemetry.heartbeat_secs) {
            return Err(ConfigError::key(
                "telemetry.heartbeat_secs",
                "must be 1 to 3600 seconds",
            ));
        }
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
        Ok((config, deprecated))
    }

    /// The effective configuration as TOML, in the current layout (what
    /// `check-config` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// The store's business day (`[store] timezone`, `[business_day]`).
    pub fn business_day(&self) -> BusinessDay {
        BusinessDay::new(self.store.timezone.clone(), self.business_day.closes_at)
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
}

/// Logs each key of the old layout the config used.
fn warn((config, deprecated): (Config, Vec<Deprecated>)) -> Config {
    for d in &deprecated {
        tracing::warn!(
            old = d.old,
            new = d.new,
            "config key `{}` is deprecated: use `{}`",
            d.old,
            d.new
        );
    }
    config
}

#[cfg(test)]
mod tests;
