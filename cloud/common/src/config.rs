//! `cloud.toml`: one `Config` for every cloud process, read from TOML with
//! environment overrides, validated before anything starts.
//!
//! Environment overrides: `O2C_CLOUD__<TABLE>__<KEY>=value`, e.g.
//! `O2C_CLOUD__KAFKA__BROKERS=10.0.0.5:9092`. Values are read as TOML
//! scalars (numbers, booleans) when they parse as such, else as strings.
//! Unknown keys, in the file or the environment, are errors.

use std::net::SocketAddr;
use std::path::Path;

use o2c_protocol::KafkaTopics;
pub use o2c_runtime::config::ConfigError;
use o2c_runtime::config::Loader;
use o2c_runtime::mqtt::MqttTlsConfig;
use serde::{Deserialize, Serialize};

mod analytics;
mod api;
mod carrier;
mod catalog;
mod fleet;
mod notify;
pub use analytics::{AnalyticsConfig, ClickHouseConfig, RedisConfig};
pub use api::{ApiConfig, JwtConfig};
pub use carrier::CarrierConfig;
pub use catalog::{CatalogConfig, CatalogTls};
pub use fleet::{FleetConfig, OpeningHours};
pub use notify::NotifyConfig;

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "O2C_CLOUD__";

/// The config loader: `cloud.toml`, then `O2C_CLOUD__*` overrides.
pub const LOADER: Loader = Loader::new(ENV_PREFIX);

/// The whole cloud configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// MQTT broker connection.
    pub mqtt: MqttConfig,
    /// Kafka connection.
    pub kafka: KafkaConfig,
    /// Ingest settings.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// Health and metrics endpoint.
    #[serde(default)]
    pub http: HttpConfig,
    /// The saga services (`o2c-cloud saga`).
    #[serde(default)]
    pub saga: SagaConfig,
    /// The saga's database.
    #[serde(default)]
    pub postgres: PostgresConfig,
    /// The payment processor the payment service calls.
    #[serde(default)]
    pub psp: PspConfig,
    /// The carrier the shipping service books parcels with.
    #[serde(default)]
    pub carrier: CarrierConfig,
    /// The catalog service (`o2c-cloud catalog`).
    #[serde(default)]
    pub catalog: CatalogConfig,
    /// The sales analytics service (`o2c-cloud analytics`).
    #[serde(default)]
    pub analytics: AnalyticsConfig,
    /// The fleet view (`o2c-cloud fleet serve`).
    #[serde(default)]
    pub fleet: FleetConfig,
    /// The cloud order API for web and mobile (`o2c-cloud api`).
    #[serde(default)]
    pub api: ApiConfig,
    /// Customer notifications (`o2c-cloud notify`).
    #[serde(default)]
    pub notify: NotifyConfig,
    /// `[telemetry]`: trace export over OTLP (off by default).
    #[serde(default)]
    pub telemetry: o2c_runtime::trace::TraceConfig,
}

/// `[saga]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SagaConfig {
    /// Consumer groups are `{group_prefix}-{service}`.
    #[serde(default = "default_saga_group")]
    pub group_prefix: String,
    /// First retry delay of a transient failure; then twice, four times
    /// (default 1000: 1 s, 2 s, 4 s).
    #[serde(default = "default_retry_base")]
    pub retry_base_ms: u64,
    /// Outbox polling backstop: how soon a relay finds rows no commit of
    /// its own process woke it for (another process's, a lost wake).
    #[serde(default = "default_outbox_poll")]
    pub outbox_poll_ms: u64,
    /// PostgreSQL connections per service (twice as many for payment;
    /// inventory always uses one, as its batches share stock rows).
    #[serde(default = "default_pg_lanes")]
    pub pg_lanes: usize,
    /// Units provisioned for a SKU without any stock row (0: none, so an
    /// unknown SKU is out of stock).
    #[serde(default)]
    pub auto_stock: i64,
    /// Warehouse of ship-to-home orders (carry-out takes the store's).
    #[serde(default = "default_central")]
    pub central_warehouse: String,
    /// Health and metrics of `o2c-cloud saga`.
    #[serde(default = "default_saga_http")]
    pub http_listen: SocketAddr,
    /// This replica's id, in its Kafka client ids (logs, broker metrics).
    /// Consumer groups use dynamic membership: see `saga::consumer`.
    #[serde(default = "default_instance")]
    pub instance_id: String,
    /// Time between two checks of each consumer group by its watchdog
    /// (`saga::member`): lag, partitions no member owns, stalls.
    #[serde(default = "default_group_check")]
    pub group_check_ms: u64,
    /// A subscribed partition no member owns for this long makes the
    /// service not ready and its member rejoin the group.
    #[serde(default = "default_group_unowned_after")]
    pub group_unowned_after_ms: u64,
    /// A partition with a backlog and no commit for this long is stalled:
    /// not ready; a rejoin if another member holds it.
    #[serde(default = "default_group_stall_after")]
    pub group_stall_after_ms: u64,
    /// A backlog that only grows for this long makes the service not
    /// ready (it falls behind).
    #[serde(default = "default_group_behind_after")]
    pub group_behind_after_ms: u64,
    /// A member that holds no partition while a subscribed one has had a
    /// backlog and no commit for this long rejoins its group (default
    /// 10,000 ms; see `saga::watch`).
    #[serde(default = "default_group_idle_rejoin_after")]
    pub group_idle_rejoin_after_ms: u64,
    /// A partition another member holds, with a backlog and no commit for
    /// this long while this member's own commits move, is stalled and this
    /// member rejoins (default 20,000 ms, twice the session timeout: its
    /// owner is gone or no longer fetches; see `saga::watch`).
    #[serde(default = "default_group_orphan_after")]
    pub group_orphan_after_ms: u64,
    /// Published outbox rows older than this many hours are deleted
    /// (0: kept forever). Unpublished rows are never deleted.
    #[serde(default = "default_outbox_retention")]
    pub outbox_retention_hours: u64,
    /// Idempotent-consumer ledger rows older than this many hours are
    /// deleted (0, the default: kept forever). The ledger is what makes a
    /// replay harmless, so it must outlive every record Kafka still keeps:
    /// set it above the `retention.ms` of every saga topic. At least
    /// [`MIN_LEDGER_RETENTION_HOURS`].
    #[serde(default)]
    pub ledger_retention_hours: u64,
    /// Seconds between two sweeps of the payment reconciler (orders left
    /// `Capturing`, see `saga::reconcile`).
    #[serde(default = "default_capture_reconcile")]
    pub capture_reconcile_secs: u64,
    /// A payment counts as stuck once its last capture call is this many
    /// seconds old. Must exceed `psp.timeout_ms`, so that the reconciler
    /// never races a call still in flight.
    #[serde(default = "default_capture_stuck")]
    pub capture_stuck_secs: u64,
    /// How long the status publisher keeps re-publishing an update the
    /// broker answered "no matching subscribers" (the agent's session is
    /// gone) before it gives it up (logged, counted in
    /// `o2c_saga_status_undeliverable_total`). See docs/operations.md.
    #[serde(default = "default_status_redeliver_for")]
    pub status_redeliver_for_secs: u64,
}

/// The shortest ledger retention accepted: twice Kafka's default topic
/// retention (7 days).
pub const MIN_LEDGER_RETENTION_HOURS: u64 = 2 * 7 * 24;

/// `[postgres]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// tokio-postgres connection string, e.g.
    /// `host=127.0.0.1 user=postgres dbname=o2c`.
    #[serde(default = "default_pg_url")]
    pub url: String,
}

/// `[psp]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PspConfig {
    /// Base URL of the processor (or `o2c-cloud psp-sim`).
    #[serde(default = "default_psp_url")]
    pub url: String,
    /// Per-call timeout.
    #[serde(default = "default_psp_timeout")]
    pub timeout_ms: u64,
    /// Consecutive failures that open the circuit breaker.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long the breaker stays open before one trial call.
    #[serde(default = "default_breaker_open")]
    pub breaker_open_ms: u64,
    /// How long the processor honours an idempotency key (24 h at Stripe).
    /// Within it the reconciler sends a capture the processor never got
    /// again with its key; past it, it fails the payment instead.
    #[serde(default = "default_key_lifetime")]
    pub key_lifetime_hours: u64,
}

fn default_saga_group() -> String {
    "o2c-saga".into()
}
fn default_retry_base() -> u64 {
    1000
}
fn default_outbox_poll() -> u64 {
    500
}
fn default_pg_lanes() -> usize {
    4
}
fn default_central() -> String {
    "central".into()
}
fn default_saga_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9301))
}
fn default_instance() -> String {
    "0".into()
}
fn default_outbox_retention() -> u64 {
    7 * 24
}
fn default_pg_url() -> String {
    "host=127.0.0.1 user=postgres dbname=o2c".into()
}
fn default_psp_url() -> String {
    "http://127.0.0.1:9400".into()
}
fn default_psp_timeout() -> u64 {
    2000
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_open() -> u64 {
    30_000
}
fn default_capture_reconcile() -> u64 {
    30
}
fn default_capture_stuck() -> u64 {
    60
}
fn default_status_redeliver_for() -> u64 {
    600
}
fn default_key_lifetime() -> u64 {
    24
}

fn default_group_check() -> u64 {
    10_000
}
fn default_group_unowned_after() -> u64 {
    15_000
}
fn default_group_idle_rejoin_after() -> u64 {
    10_000
}
fn default_group_orphan_after() -> u64 {
    20_000
}
fn default_group_stall_after() -> u64 {
    60_000
}
fn default_group_behind_after() -> u64 {
    180_000
}

impl Default for SagaConfig {
    fn default() -> Self {
        Self {
            group_prefix: default_saga_group(),
            retry_base_ms: default_retry_base(),
            outbox_poll_ms: default_outbox_poll(),
            pg_lanes: default_pg_lanes(),
            auto_stock: 0,
            central_warehouse: default_central(),
            http_listen: default_saga_http(),
            instance_id: default_instance(),
            group_check_ms: default_group_check(),
            group_unowned_after_ms: default_group_unowned_after(),
            group_stall_after_ms: default_group_stall_after(),
            group_idle_rejoin_after_ms: default_group_idle_rejoin_after(),
            group_orphan_after_ms: default_group_orphan_after(),
            group_behind_after_ms: default_group_behind_after(),
            outbox_retention_hours: default_outbox_retention(),
            ledger_retention_hours: 0,
            capture_reconcile_secs: default_capture_reconcile(),
            capture_stuck_secs: default_capture_stuck(),
            status_redeliver_for_secs: default_status_redeliver_for(),
        }
    }
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: default_pg_url(),
        }
    }
}

impl Default for PspConfig {
    fn default() -> Self {
        Self {
            url: default_psp_url(),
            timeout_ms: default_psp_timeout(),
            breaker_failures: default_breaker_failures(),
            breaker_open_ms: default_breaker_open(),
            key_lifetime_hours: default_key_lifetime(),
        }
    }
}

/// `[mqtt]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub url: String,
    /// Client id; a random suffix is added so replicas never collide.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Largest MQTT packet accepted or sent.
    #[serde(default = "default_max_packet")]
    pub max_packet_bytes: u32,
    /// Keep-alive interval.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_secs: u64,
    /// TLS material, required for `mqtts://`.
    #[serde(default)]
    pub tls: Option<MqttTlsConfig>,
}

/// `[kafka]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port]`.
    pub brokers: String,
    /// Prefix before every topic name.
    #[serde(default)]
    pub topic_prefix: String,
    /// Producer `linger.ms`.
    #[serde(default = "default_linger")]
    pub linger_ms: u32,
    /// The saga consumers' and the status publisher's `fetch.wait.max.ms`:
    /// how long the broker may hold a fetch that finds no data. Kafka, and
    /// the project's Tansu (`deploy/dev/tansu/fetch.patch`), answer
    /// a held fetch as soon as records land, so this sets how often an idle
    /// consumer asks, not a hop's latency. Tansu 0.6.0 as published sleeps
    /// it out on every fetch (its issue #672; BENCHMARKS.md, issue 17).
    #[serde(default = "default_fetch_wait")]
    pub fetch_wait_ms: u32,
    /// Dev and tests: apply the topology file at startup, with
    /// `partitions` per topic and one replica. Off (production): the
    /// services only check the live topics against the file, and a missing
    /// or different one stops them with an error naming it; create them
    /// with `o2c-cloud topics apply`.
    #[serde(default = "yes")]
    pub create_topics: bool,
    /// Partitions per topic when `create_topics` is on.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// The topology file (default: the built-in copy of
    /// `deploy/cloud/topics.toml`).
    #[serde(default)]
    pub topics_file: Option<std::path::PathBuf>,
    /// A Confluent-compatible schema registry (`http://host:port`). When
    /// set, every record produced carries the id of its value's schema in
    /// the `o2c-schema-id` header; the subjects must be registered first
    /// (`o2c-cloud schemas register`), or the service stops at start
    /// naming the missing one.
    #[serde(default)]
    pub schema_registry_url: Option<String>,
}

/// `[ingest]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Shared-subscription group of all ingest replicas.
    #[serde(default = "default_group")]
    pub shared_group: String,
    /// Frames processed at once; beyond it frames are shed (not acked, so
    /// agents resend them).
    #[serde(default = "default_inflight")]
    pub max_inflight_frames: usize,
    /// Sustained events per second each agent may send (0, the default:
    /// no quota). Over it, the agent's batches are held (neither produced
    /// nor acked) until its token bucket allows them: slowed, never dropped.
    #[serde(default)]
    pub agent_quota_events_per_sec: u32,
    /// Token-bucket size in events (0, the default: one second of
    /// `agent_quota_events_per_sec`). Only with a quota set.
    #[serde(default)]
    pub agent_quota_burst: u32,
}

/// `[http]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address for `/healthz`, `/readyz`, `/metrics`.
    #[serde(default = "default_http")]
    pub listen: SocketAddr,
}

fn default_client_id() -> String {
    "o2c-ingest".into()
}
fn default_max_packet() -> u32 {
    4 * 1024 * 1024
}
fn default_keep_alive() -> u64 {
    15
}
fn default_fetch_wait() -> u32 {
    20
}

fn default_linger() -> u32 {
    1
}
fn default_partitions() -> i32 {
    3
}
fn yes() -> bool {
    true
}
fn default_group() -> String {
    "o2c-ingest".into()
}
fn default_inflight() -> usize {
    512
}
fn default_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9300))
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            shared_group: default_group(),
            max_inflight_frames: default_inflight(),
            agent_quota_events_per_sec: 0,
            agent_quota_burst: 0,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_http(),
        }
    }
}

impl Config {
    /// Reads `path`, applies `O2C_CLOUD__*` overrides, validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = LOADER.load(path, std::env::vars())?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses TOML text with the given environment overrides.
    pub fn from_toml(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let cfg: Config = LOADER.from_toml(text, env)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        o2c_runtime::mqtt::check_settings(&self.mqtt.url, self.mqtt.tls.as_ref())
            .map_err(|e| ConfigError::key(e.key(), e.to_string()))?;
        // The cloud's services always authenticate with a client
        // certificate (the broker's ACLs are per identity).
        if let Some(t) = &self.mqtt.tls
            && t.cert_file.is_none()
        {
            return Err(ConfigError::key(
                "mqtt.tls.cert_file",
                "the cloud's services need a client certificate and key",
            ));
        }
        KafkaTopics::new(&self.kafka.topic_prefix)
            .map_err(|e| ConfigError::key("kafka.topic_prefix", e.to_string()))?;
        self.analytics.validate()?;
        self.fleet.validate()?;
        self.api.validate()?;
        self.notify.validate()?;
        self.carrier.validate()?;
        self.telemetry.check()?;
        o2c_protocol::topic::shared_events_filter(&self.ingest.shared_group)
            .map_err(|e| ConfigError::key("ingest.shared_group", e.to_string()))?;
        if self.kafka.brokers.trim().is_empty() {
            return Err(ConfigError::key("kafka.brokers", "must not be empty"));
        }
        if self.ingest.max_inflight_frames == 0 {
            return Err(ConfigError::key(
                "ingest.max_inflight_frames",
                "must be at least 1",
            ));
        }
        if self.ingest.agent_quota_burst != 0 && self.ingest.agent_quota_events_per_sec == 0 {
            return Err(ConfigError::key(
                "ingest.agent_quota_burst",
                "set without ingest.agent_quota_events_per_sec (0 turns quotas off)",
            ));
        }
        if self.saga.auto_stock < 0 {
            return Err(ConfigError::key("saga.auto_stock", "must not be negative"));
        }
        let ledger = self.saga.ledger_retention_hours;
        if ledger != 0 && ledger < MIN_LEDGER_RETENTION_HOURS {
            return Err(ConfigError::key(
                "saga.ledger_retention_hours",
                format!(
                    "must be 0 (keep forever) or at least {MIN_LEDGER_RETENTION_HOURS}, and longer \
                     than every saga topic's retention.ms: a replay of an event whose ledger row \
                     is gone would be applied again"
                ),
            ));
        }
        KafkaTopics::new(&self.saga.group_prefix)
            .map_err(|e| ConfigError::key("saga.group_prefix", e.to_string()))?;
        if self.saga.capture_reconcile_secs == 0 {
            return Err(ConfigError::key(
                "saga.capture_reconcile_secs",
                "must be at least 1",
            ));
        }
        if self.saga.capture_stuck_secs.saturating_mul(1000) <= self.psp.timeout_ms {
            return Err(ConfigError::key(
                "saga.capture_stuck_secs",
                format!(
                    "must exceed psp.timeout_ms ({} ms): a younger capture may still be in flight",
                    self.psp.timeout_ms
                ),
            ));
        }
        if self.psp.key_lifetime_hours == 0 {
            return Err(ConfigError::key(
                "psp.key_lifetime_hours",
                "must be at least 1",
            ));
        }
        if !(self.psp.url.starts_with("http://") || self.psp.url.starts_with("https://")) {
            return Err(ConfigError::key(
                "psp.url",
                "must be an http:// or https:// URL",
            ));
        }
        if let Some(url) = &self.kafka.schema_registry_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::key(
                "kafka.schema_registry_url",
                "must be an http:// or https:// URL",
            ));
        }
        if self.kafka.partitions < 1 {
            return Err(ConfigError::key("kafka.partitions", "must be at least 1"));
        }
        Ok(())
    }

    /// Kafka topic names for this deployment.
    pub fn topics(&self) -> KafkaTopics {
        // Validated in `validate`.
        KafkaTopics::new(&self.kafka.topic_prefix).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
