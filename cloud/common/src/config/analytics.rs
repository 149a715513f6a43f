//! `[analytics]`: the sales analytics service (`o2c-cloud analytics`): its
//! consumer group, the Redis live counters and the ClickHouse fact tables.

use std::net::SocketAddr;

use o2c_runtime::config::ConfigError;
use serde::{Deserialize, Serialize};

/// `[analytics]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsConfig {
    /// The Kafka group id its offsets are committed under (every instance
    /// of one deployment shares it).
    #[serde(default = "default_group")]
    pub group: String,
    /// This instance's number, `0..instances`: it reads partitions `p`
    /// with `p % instances == instance` (see `o2c_analytics::assign`).
    #[serde(default)]
    pub instance: u32,
    /// How many instances share the topics.
    #[serde(default = "default_instances")]
    pub instances: u32,
    /// `/healthz`, `/readyz`, `/metrics`, the read API
    /// (`/v1/analytics/...`) and the live sales page (`/sales`).
    #[serde(default = "default_http_listen")]
    pub http_listen: SocketAddr,
    /// The business day's offset from UTC, in minutes (`-300` for New
    /// York in winter): a sale belongs to the business date of its
    /// `captured_at` at this offset.
    #[serde(default)]
    pub utc_offset_minutes: i32,
    /// An order reaching Kafka this long after its capture is counted as
    /// captured offline and arriving late.
    #[serde(default = "default_late_after")]
    pub late_after_secs: u64,
    /// Live counters.
    #[serde(default)]
    pub redis: RedisConfig,
    /// Fact tables.
    #[serde(default)]
    pub clickhouse: ClickHouseConfig,
}

/// `[analytics.redis]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db`.
    #[serde(default = "default_redis_url")]
    pub url: String,
    /// Every key starts with this (one deployment or test per prefix).
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// How long an applied event's id is remembered. A replay of an event
    /// older than this is applied again: a sale is not (its order's record
    /// already has it), but a refund would be added twice, in the counters
    /// and in the order's fact row. Keep it above the topics' retention
    /// (or the oldest offset a replay may start from).
    #[serde(default = "default_dedup_ttl")]
    pub dedup_ttl_secs: u64,
    /// How long hourly counters (and each order's record, which voids
    /// and refunds need) are kept after their last change.
    #[serde(default = "default_hour_ttl")]
    pub hour_ttl_secs: u64,
    /// How long daily counters are kept after their last change.
    #[serde(default = "default_day_ttl")]
    pub day_ttl_secs: u64,
}

/// `[analytics.clickhouse]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// The HTTP interface.
    #[serde(default = "default_ch_url")]
    pub url: String,
    /// The database holding the fact tables and views (created if missing).
    #[serde(default = "default_ch_database")]
    pub database: String,
    /// Credentials, if the server needs them.
    #[serde(default = "default_ch_user")]
    pub user: String,
    /// Password of `user`.
    #[serde(default)]
    pub password: String,
    /// Whether the client checks each row's schema against the server's.
    /// Off for the ClickHouse 18.16 of Debian's package (dev and CI): its
    /// server knows neither the `RowBinaryWithNamesAndTypes` format nor the
    /// `describe_include_subcolumns` setting the check needs. Turn it on
    /// against a modern server.
    #[serde(default)]
    pub validation: bool,
    /// Most rows per insert.
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Longest a fact row waits before its batch is inserted.
    #[serde(default = "default_flush_ms")]
    pub flush_ms: u64,
}

impl AnalyticsConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.group.trim().is_empty() {
            return Err(ConfigError::key("analytics.group", "must not be empty"));
        }
        if self.instances == 0 || self.instance >= self.instances {
            return Err(ConfigError::key(
                "analytics.instance",
                format!(
                    "must be below analytics.instances ({}), which must be at least 1",
                    self.instances
                ),
            ));
        }
        if !(-14 * 60..=14 * 60).contains(&self.utc_offset_minutes) {
            return Err(ConfigError::key(
                "analytics.utc_offset_minutes",
                "must be between -840 and 840",
            ));
        }
        if self.redis.key_prefix.is_empty() {
            return Err(ConfigError::key(
                "analytics.redis.key_prefix",
                "must not be empty",
            ));
        }
        for (key, v) in [
            ("analytics.redis.dedup_ttl_secs", self.redis.dedup_ttl_secs),
            ("analytics.redis.hour_ttl_secs", self.redis.hour_ttl_secs),
            ("analytics.redis.day_ttl_secs", self.redis.day_ttl_secs),
        ] {
            if v == 0 {
                return Err(ConfigError::key(key, "must be at least 1"));
            }
        }
        let db = &self.clickhouse.database;
        if db.is_empty() || !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ConfigError::key(
                "analytics.clickhouse.database",
                "letters, digits and _ only",
            ));
        }
        if self.clickhouse.batch_rows == 0 {
            return Err(ConfigError::key(
                "analytics.clickhouse.batch_rows",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            group: default_group(),
            instance: 0,
            instances: default_instances(),
            http_listen: default_http_listen(),
            utc_offset_minutes: 0,
            late_after_secs: default_late_after(),
            redis: RedisConfig::default(),
            clickhouse: ClickHouseConfig::default(),
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: default_redis_url(),
            key_prefix: default_prefix(),
            dedup_ttl_secs: default_dedup_ttl(),
            hour_ttl_secs: default_hour_ttl(),
            day_ttl_secs: default_day_ttl(),
        }
    }
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            url: default_ch_url(),
            database: default_ch_database(),
            user: default_ch_user(),
            password: String::new(),
            validation: false,
            batch_rows: default_batch_rows(),
            flush_ms: default_flush_ms(),
        }
    }
}

fn default_group() -> String {
    "o2c-analytics".into()
}
fn default_instances() -> u32 {
    1
}
fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9316))
}
fn default_late_after() -> u64 {
    300
}
fn default_redis_url() -> String {
    "redis://127.0.0.1:6379/0".into()
}
fn default_prefix() -> String {
    "o2c:an:".into()
}
fn default_dedup_ttl() -> u64 {
    30 * 86_400
}
fn default_hour_ttl() -> u64 {
    35 * 86_400
}
fn default_day_ttl() -> u64 {
    400 * 86_400
}
fn default_ch_url() -> String {
    "http://127.0.0.1:8123".into()
}
fn default_ch_database() -> String {
    "o2c_analytics".into()
}
fn default_ch_user() -> String {
    "default".into()
}
fn default_batch_rows() -> usize {
    50_000
}
fn default_flush_ms() -> u64 {
    1000
}
