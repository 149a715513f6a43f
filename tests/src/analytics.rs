//! The analytics service as a real process (`o2c-cloud analytics`) against
//! the real Redis and ClickHouse, each test with its own key prefix and
//! database; and the probes that fail a test, saying what to start, when
//! either server is missing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use o2c_analytics::counters::Counters;
use o2c_analytics::facts::Facts;
use o2c_cloud_common::config::{ClickHouseConfig, RedisConfig};
use serde_json::Value;

use crate::saga::{SagaSettings, spawn_cloud};
use crate::wait::wait_http_ok;
use crate::{ChildGuard, HarnessError, free_port};

/// Redis of the tests (`O2C_TEST_REDIS`, default the dev server).
pub fn redis_url() -> String {
    std::env::var("O2C_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// ClickHouse of the tests (`O2C_TEST_CLICKHOUSE`, default the dev server).
pub fn clickhouse_url() -> String {
    std::env::var("O2C_TEST_CLICKHOUSE").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

const START_HINT: &str = "start the dev services with `deploy/dev/services.sh up` \
    (it starts Redis and ClickHouse; .ci/run installs ClickHouse)";

/// Panics, saying what to start, unless Redis answers PING.
pub async fn require_redis() -> String {
    let url = redis_url();
    let ping = async {
        let client = redis::Client::open(url.as_str())?;
        let mut c = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut c).await
    };
    match tokio::time::timeout(Duration::from_secs(10), ping).await {
        Ok(Ok(_)) => url,
        Ok(Err(e)) => panic!("Redis {url} does not answer: {e}; {START_HINT}"),
        Err(_) => panic!("Redis {url} does not answer within 10 s; {START_HINT}"),
    }
}

/// Panics, saying what to start, unless ClickHouse answers `/ping`.
pub async fn require_clickhouse() -> String {
    let url = clickhouse_url();
    let r = reqwest::Client::new()
        .get(format!("{url}/ping"))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    match r {
        Ok(r) if r.status().is_success() => url,
        Ok(r) => panic!("ClickHouse {url} answers {}; {START_HINT}", r.status()),
        Err(e) => panic!("ClickHouse {url} does not answer: {e}; {START_HINT}"),
    }
}

/// A running `o2c-cloud analytics`.
#[derive(Debug)]
pub struct AnalyticsProc {
    guard: ChildGuard,
    config: PathBuf,
    log: PathBuf,
    http: SocketAddr,
    /// Its Redis settings (prefix of this test).
    pub redis: RedisConfig,
    /// Its ClickHouse settings (database of this test).
    pub clickhouse: ClickHouseConfig,
    /// Its consumer group.
    pub group: String,
    brokers: String,
    topics: Vec<String>,
}

impl AnalyticsProc {
    /// Writes a config next to the saga's (same Kafka topics) with consumer
    /// group `{prefix}-analytics{group_suffix}`, Redis prefix `{prefix}:an:`
    /// and ClickHouse database `{prefix}_an`, and starts the service.
    pub async fn start(
        dir: &Path,
        s: &SagaSettings,
        group_suffix: &str,
        extra: &str,
    ) -> Result<Self, HarnessError> {
        let redis_url = require_redis().await;
        let ch_url = require_clickhouse().await;
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let config = dir.join(format!("analytics-{}.toml", http.port()));
        let db = format!("{}_an", s.prefix.replace(['-', '.'], "_"));
        let prefix = format!("{}:an:", s.prefix);
        let text = format!(
            "[mqtt]\nurl = \"{}\"\n[kafka]\nbrokers = \"{}\"\ntopic_prefix = \"{}.\"\n\
             [analytics]\ngroup = \"{}-analytics{group_suffix}\"\nhttp_listen = \"{http}\"\n{extra}\n\
             [analytics.redis]\nurl = \"{redis_url}\"\nkey_prefix = \"{prefix}\"\n\
             [analytics.clickhouse]\nurl = \"{ch_url}\"\ndatabase = \"{db}\"\nflush_ms = 200\n",
            s.mqtt_url, s.brokers, s.prefix, s.prefix
        );
        std::fs::write(&config, text).map_err(|e| HarnessError::io("write analytics.toml", e))?;
        let log = dir.join(format!("analytics-{}.log", http.port()));
        let guard = Self::spawn(&config, &log)?;
        let redis = RedisConfig {
            url: redis_url,
            key_prefix: prefix,
            ..RedisConfig::default()
        };
        let clickhouse = ClickHouseConfig {
            url: ch_url,
            database: db,
            ..ClickHouseConfig::default()
        };
        let kafka_topics = o2c_protocol::KafkaTopics::new(format!("{}.", s.prefix))
            .map_err(|e| HarnessError::Pipeline(e.to_string()))?;
        let me = Self {
            guard,
            config,
            log,
            http,
            redis,
            clickhouse,
            group: format!("{}-analytics{group_suffix}", s.prefix),
            brokers: s.brokers.clone(),
            topics: o2c_analytics::service::EVENT_TYPES
                .iter()
                .map(|t| kafka_topics.for_event(*t))
                .collect(),
        };
        me.wait_ready().await?;
        Ok(me)
    }

    fn spawn(config: &Path, log: &Path) -> Result<ChildGuard, HarnessError> {
        spawn_cloud(&["analytics"], config, &[], log)
    }

    async fn wait_ready(&self) -> Result<(), HarnessError> {
        wait_http_ok(
            "analytics /readyz",
            &format!("http://{}/readyz", self.http),
            &self.log,
        )
        .await
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.guard.id()
    }

    /// SIGKILL.
    pub fn kill(&mut self) -> Result<(), HarnessError> {
        self.guard.kill().map(|_| ())
    }

    /// Starts it again with the same config; waits until ready.
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        let _ = self.guard.kill();
        self.guard = Self::spawn(&self.config, &self.log)?;
        self.wait_ready().await
    }

    /// The config file (for `o2c-cloud analytics report`).
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The log's last lines.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(200)..].join("\n")
    }

    /// `http://addr`.
    pub fn base(&self) -> String {
        format!("http://{}", self.http)
    }

    /// `GET {path}` as JSON (any status).
    pub async fn get(&self, path: &str) -> Result<(u16, Value), HarnessError> {
        let r = reqwest::get(format!("{}{path}", self.base()))
            .await
            .map_err(|e| HarnessError::Pipeline(format!("GET {path}: {e}")))?;
        let code = r.status().as_u16();
        let v = r.json().await.unwrap_or(Value::Null);
        Ok((code, v))
    }

    /// A counter of its `/metrics` (0 when absent), summed over label sets
    /// that contain `labels`.
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        let Ok(r) = reqwest::get(format!("{}/metrics", self.base())).await else {
            return 0.0;
        };
        let text = r.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits until its group has committed every record of its topics.
    pub async fn wait_caught_up(&self, timeout: Duration) -> Result<(), HarnessError> {
        crate::wait_until_named(
            &format!("analytics group {} caught up", self.group),
            || async {
                crate::kafka::group_caught_up(&self.brokers, &self.group, &self.topics)
                    .await
                    .unwrap_or(false)
            },
            timeout,
        )
        .await
    }

    /// A client of its Redis counters.
    pub async fn counters(&self) -> Counters {
        Counters::connect(&self.redis)
            .await
            .unwrap_or_else(|e| panic!("redis: {e}"))
    }

    /// A client of its ClickHouse facts.
    pub fn facts(&self) -> Facts {
        Facts::new(&self.clickhouse)
    }
}

/// Loads `url` in headless Chromium (Debian's `chromium`), lets its
/// scripts run for `budget_ms` of virtual time, and returns the DOM.
pub fn chromium_dom(url: &str, budget_ms: u32) -> Result<String, HarnessError> {
    chromium(&[
        &format!("--virtual-time-budget={budget_ms}"),
        "--dump-dom",
        url,
    ])
}

/// Runs headless Chromium with `args` after the common flags; its stdout,
/// or an error saying how to install it or why it failed.
pub fn chromium(args: &[&str]) -> Result<String, HarnessError> {
    let out = Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .args(args)
        .output()
        .map_err(|e| {
            HarnessError::Pipeline(format!(
                "cannot run chromium ({e}); install it: apt-get install chromium (.ci/run does)"
            ))
        })?;
    if !out.status.success() {
        return Err(HarnessError::Pipeline(format!(
            "chromium exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The text of the element with `id` in `dom` (a flat element only).
pub fn element_text(dom: &str, id: &str) -> Option<String> {
    let start = dom.find(&format!("id=\"{id}\""))?;
    let open_end = start + dom[start..].find('>')? + 1;
    let close = open_end + dom[open_end..].find('<')?;
    Some(dom[open_end..close].trim().to_owned())
}
