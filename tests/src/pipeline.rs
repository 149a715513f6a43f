//! The o2c pipeline as real processes: `o2c-cloud ingest` and `o2c-agent`
//! instances with generated configs, plus the checks the end-to-end suites
//! and the demo share (what the agent confirmed vs. what Kafka holds).

use crate::wait::wait_http_ok;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use sha2::Digest;

use crate::{ChildGuard, ConsumedRecord, HarnessError, bin_path, free_port, wait_until_named};

/// The bearer token of terminal `T1` in every generated agent config.
pub const TERMINAL_TOKEN: &str = "o2c-test-terminal-token";

fn spawn_logged(
    name: &str,
    bin: &str,
    config: &Path,
    sub: &str,
    log: &Path,
    env: &[(&str, &str)],
) -> Result<ChildGuard, HarnessError> {
    spawn_logged_wrapped(name, &[], bin, config, sub, log, env)
}

/// [`spawn_logged`] run through `wrapper` (e.g. `ip netns exec NS`), when
/// not empty.
fn spawn_logged_wrapped(
    name: &str,
    wrapper: &[String],
    bin: &str,
    config: &Path,
    sub: &str,
    log: &Path,
    env: &[(&str, &str)],
) -> Result<ChildGuard, HarnessError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| HarnessError::io(format!("open {}", log.display()), e))?;
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(bin_path(bin));
            c
        }
        None => Command::new(bin_path(bin)),
    };
    cmd.arg(sub)
        .arg("--config")
        .arg(config)
        .env(
            "RUST_LOG",
            std::env::var("O2C_TEST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(file);
    ChildGuard::spawn(name, &mut cmd)
}

/// A running `o2c-cloud ingest`.
#[derive(Debug)]
pub struct Ingest {
    guard: ChildGuard,
    config: PathBuf,
    log: PathBuf,
    http: SocketAddr,
}

impl Ingest {
    /// Writes `ingest.toml` in `dir` and starts the ingest: topics under
    /// `{prefix}.`, shared group `{prefix}`; waits until `/readyz` is 200.
    pub async fn start(
        dir: &Path,
        prefix: &str,
        mqtt_url: &str,
        brokers: &str,
    ) -> Result<Self, HarnessError> {
        Self::start_with_env(dir, prefix, mqtt_url, brokers, &[]).await
    }

    /// [`Ingest::start`] with extra environment variables (fault injection).
    pub async fn start_with_env(
        dir: &Path,
        prefix: &str,
        mqtt_url: &str,
        brokers: &str,
        env: &[(&str, &str)],
    ) -> Result<Self, HarnessError> {
        Self::start_with_tables(dir, prefix, mqtt_url, brokers, env, "").await
    }

    /// [`Ingest::start_with_env`], with `tables` (TOML tables, e.g. a
    /// `[telemetry]` table) appended to its config.
    pub async fn start_with_tables(
        dir: &Path,
        prefix: &str,
        mqtt_url: &str,
        brokers: &str,
        env: &[(&str, &str)],
        tables: &str,
    ) -> Result<Self, HarnessError> {
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let config = dir.join("ingest.toml");
        std::fs::write(
            &config,
            format!(
                "[mqtt]\nurl = \"{mqtt_url}\"\n[kafka]\nbrokers = \"{brokers}\"\ntopic_prefix = \"{prefix}.\"\n\
                 [ingest]\nshared_group = \"{prefix}\"\n[http]\nlisten = \"{http}\"\n{tables}\n"
            ),
        )
        .map_err(|e| HarnessError::io("write ingest.toml", e))?;
        let log = dir.join("ingest.log");
        let guard = spawn_logged(
            "o2c-cloud ingest",
            "o2c-cloud",
            &config,
            "ingest",
            &log,
            env,
        )?;
        let mut me = Ingest {
            guard,
            config,
            log,
            http,
        };
        me.wait_ready().await?;
        Ok(me)
    }

    /// Polls `/readyz` until it answers 200.
    pub async fn wait_ready(&mut self) -> Result<(), HarnessError> {
        let url = format!("http://{}/readyz", self.http);
        wait_http_ok("ingest /readyz", &url, &self.log).await
    }

    /// `/metrics` text.
    pub async fn metrics(&self) -> Result<String, HarnessError> {
        let r = reqwest::get(format!("http://{}/metrics", self.http))
            .await
            .map_err(http_err)?;
        r.text().await.map_err(http_err)
    }

    /// SIGKILL.
    pub fn kill(&mut self) -> Result<(), HarnessError> {
        self.guard.kill().map(|_| ())
    }

    /// Waits for the process to exit by itself (e.g. an injected crash).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<(), HarnessError> {
        self.guard.wait_exit(timeout).await.map(|_| ())
    }

    /// The end of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        crate::process::log_tail(&self.log, 6000)
    }

    /// Starts it again with the same config (after [`Ingest::kill`]).
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        let _ = self.guard.kill();
        self.guard = spawn_logged(
            "o2c-cloud ingest",
            "o2c-cloud",
            &self.config,
            "ingest",
            &self.log,
            &[],
        )?;
        self.wait_ready().await
    }
}

fn http_err(e: reqwest::Error) -> HarnessError {
    HarnessError::Pipeline(format!("http: {e}"))
}

/// A running `o2c-agent` with one terminal `T1` (token [`TERMINAL_TOKEN`]).
#[derive(Debug)]
pub struct AgentProc {
    guard: ChildGuard,
    config: PathBuf,
    data_dir: PathBuf,
    log: PathBuf,
    addr: SocketAddr,
    client: reqwest::Client,
    /// Prefix of the command line (e.g. `ip netns exec NS`); empty: none.
    wrapper: Vec<String>,
    /// `http.listen` override (`O2C_AGENT__HTTP__LISTEN`), if any.
    listen: Option<String>,
    /// The store id.
    pub store_id: String,
    /// The agent id.
    pub agent_id: String,
}

/// A 201/200 answer to `POST /v1/orders`.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// HTTP status.
    pub status: u16,
    /// The order id.
    pub order_id: String,
}

/// A `[business_day]` table closing the day 12 hours from now (UTC), unless
/// `extra` has its own: a test never crosses its agent's close, which would
/// add a day manifest (`DayClosed`) to the outbox mid-test.
fn business_day_far_off(extra: &str) -> String {
    if extra.contains("[business_day]") {
        return String::new();
    }
    let at = time::OffsetDateTime::now_utc() + time::Duration::hours(12);
    format!(
        "[business_day]\ncloses_at = \"{:02}:{:02}\"\n",
        at.hour(),
        at.minute()
    )
}

impl AgentProc {
    /// Writes `{dir}/{agent_id}/agent.toml` and starts the agent, with
    /// `extra` TOML appended to the `[mqtt]` table (e.g. `keep_alive_secs = 5`;
    /// other tables may follow: `"[sync]\nack_timeout_ms = 2000"`).
    pub async fn start(
        dir: &Path,
        store_id: &str,
        agent_id: &str,
        mqtt_url: &str,
        extra_mqtt: &str,
    ) -> Result<Self, HarnessError> {
        Self::start_wrapped(
            dir,
            store_id,
            agent_id,
            mqtt_url,
            extra_mqtt,
            Vec::new(),
            None,
        )
        .await
    }

    /// [`AgentProc::start`], with the command line prefixed by `wrapper`
    /// (e.g. `ip netns exec NS`, for an agent in a network namespace) and
    /// the HTTP API on `listen` instead of `127.0.0.1:0` when given; both
    /// apply to every restart too.
    pub async fn start_wrapped(
        dir: &Path,
        store_id: &str,
        agent_id: &str,
        mqtt_url: &str,
        extra_mqtt: &str,
        wrapper: Vec<String>,
        listen: Option<String>,
    ) -> Result<Self, HarnessError> {
        let home = dir.join(agent_id);
        let data_dir = home.join("data");
        std::fs::create_dir_all(&data_dir).map_err(|e| HarnessError::io("create agent dir", e))?;
        let hash = hex::encode(sha2::Sha256::digest(TERMINAL_TOKEN.as_bytes()));
        let day = business_day_far_off(extra_mqtt);
        let config = home.join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "store_id = \"{store_id}\"\nagent_id = \"{agent_id}\"\ndata_dir = \"{}\"\n\
                 [store]\ncurrency = \"CAD\"\n[http]\nlisten = \"127.0.0.1:0\"\n[mqtt]\nurl = \"{mqtt_url}\"\n{extra_mqtt}\n{day}\
                 [[terminals]]\nid = \"T1\"\ntoken_sha256 = \"{hash}\"\n",
                data_dir.display()
            ),
        )
        .map_err(|e| HarnessError::io("write agent.toml", e))?;
        let log = home.join("agent.log");
        let (guard, addr) =
            Self::spawn(&config, &data_dir, &log, &wrapper, listen.as_deref(), &[]).await?;
        Ok(AgentProc {
            guard,
            config,
            data_dir,
            log,
            addr,
            client: reqwest::Client::new(),
            wrapper,
            listen,
            store_id: store_id.into(),
            agent_id: agent_id.into(),
        })
    }

    async fn spawn(
        config: &Path,
        data_dir: &Path,
        log: &Path,
        wrapper: &[String],
        listen: Option<&str>,
        extra_env: &[(&str, &str)],
    ) -> Result<(ChildGuard, SocketAddr), HarnessError> {
        let addr_file = data_dir.join("http.addr");
        let _ = std::fs::remove_file(&addr_file);
        let mut env: Vec<(&str, &str)> = listen
            .map(|l| ("O2C_AGENT__HTTP__LISTEN", l))
            .into_iter()
            .collect();
        env.extend_from_slice(extra_env);
        let guard =
            spawn_logged_wrapped("o2c-agent", wrapper, "o2c-agent", config, "run", log, &env)?;
        crate::wait_for_file(&addr_file, Duration::from_secs(30)).await?;
        let text = std::fs::read_to_string(&addr_file)
            .map_err(|e| HarnessError::io("read http.addr", e))?;
        let addr = text
            .trim()
            .parse()
            .map_err(|_| HarnessError::Pipeline(format!("bad http.addr {text:?}")))?;
        Ok((guard, addr))
    }

    /// The agent's SQLite database.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("agent.db")
    }

    /// The agent's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// SIGKILL.
    pub fn kill(&mut self) -> Result<(), HarnessError> {
        self.guard.kill().map(|_| ())
    }

    /// SIGTERM and wait.
    pub async fn stop(&mut self) -> Result<(), HarnessError> {
        self.guard
            .terminate(Duration::from_secs(20))
            .await
            .map(|_| ())
    }

    /// Starts it again (after kill or stop).
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        self.restart_with_env(&[]).await
    }

    /// Stops the agent, runs `o2c-agent catalog import` of `jsonl` (JSON
    /// Lines products) on its data dir, and starts it again.
    pub async fn import_catalog(&mut self, jsonl: &str) -> Result<(), HarnessError> {
        self.stop().await?;
        let file = self.data_dir.with_file_name("catalog-import.jsonl");
        std::fs::write(&file, jsonl).map_err(|e| HarnessError::io("write catalog jsonl", e))?;
        let out = std::process::Command::new(crate::bin_path("o2c-agent"))
            .args(["catalog", "import", "--config"])
            .arg(&self.config)
            .arg(&file)
            .env("RUST_LOG", "warn")
            .output()
            .map_err(|e| HarnessError::io("run o2c-agent catalog import", e))?;
        if !out.status.success() {
            return Err(HarnessError::Pipeline(format!(
                "o2c-agent catalog import: {} {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        self.restart().await
    }

    /// [`AgentProc::restart`] with extra environment variables (fault
    /// injection) for this run only.
    pub async fn restart_with_env(&mut self, env: &[(&str, &str)]) -> Result<(), HarnessError> {
        let _ = self.guard.kill();
        let (guard, addr) = Self::spawn(
            &self.config,
            &self.data_dir,
            &self.log,
            &self.wrapper,
            self.listen.as_deref(),
            env,
        )
        .await?;
        self.guard = guard;
        self.addr = addr;
        Ok(())
    }

    /// Waits for the process to exit by itself (e.g. an injected crash).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<(), HarnessError> {
        self.guard.wait_exit(timeout).await.map(|_| ())
    }

    /// Captures a carry-out order paid in cash; `key` is the idempotency key.
    pub async fn post_order(&self, key: &str) -> Result<Receipt, HarnessError> {
        let body = serde_json::json!({
            "terminal_id": "T1", "currency": "CAD",
            "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1499}],
            "payments": [{"method": "cash", "amount_minor": 2998}],
            "fulfillment": {"type": "carry_out"}
        });
        self.post_json("/v1/orders", Some(key), &body)
            .await
            .and_then(|(status, v)| match (status, v["order_id"].as_str()) {
                (200 | 201, Some(id)) => Ok(Receipt {
                    status,
                    order_id: id.to_owned(),
                }),
                _ => Err(HarnessError::Pipeline(format!(
                    "POST /v1/orders: {status} {v}"
                ))),
            })
    }

    /// Voids an order.
    pub async fn cancel(&self, order_id: &str) -> Result<Value, HarnessError> {
        let (status, v) = self
            .post_json(
                &format!("/v1/orders/{order_id}/cancel"),
                None,
                &serde_json::json!({}),
            )
            .await?;
        if status >= 300 {
            return Err(HarnessError::Pipeline(format!("cancel: {status} {v}")));
        }
        Ok(v)
    }

    /// `POST path` with a JSON body (and an idempotency key): status and body.
    pub async fn post_json(
        &self,
        path: &str,
        key: Option<&str>,
        body: &Value,
    ) -> Result<(u16, Value), HarnessError> {
        let mut req = self
            .client
            .post(format!("http://{}{path}", self.addr))
            .bearer_auth(TERMINAL_TOKEN)
            .json(body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let r = req.send().await.map_err(http_err)?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// `GET path` as JSON.
    pub async fn get(&self, path: &str) -> Result<Value, HarnessError> {
        let r = self
            .client
            .get(format!("http://{}{path}", self.addr))
            .bearer_auth(TERMINAL_TOKEN)
            .send()
            .await
            .map_err(http_err)?;
        r.json().await.map_err(http_err)
    }

    /// `/metrics` text.
    pub async fn metrics(&self) -> Result<String, HarnessError> {
        let r = self
            .client
            .get(format!("http://{}/metrics", self.addr))
            .send()
            .await
            .map_err(http_err)?;
        r.text().await.map_err(http_err)
    }

    /// `GET /v1/sync`.
    pub async fn sync_status(&self) -> Result<Value, HarnessError> {
        self.get("/v1/sync").await
    }

    /// Waits until the agent has nothing pending and has acked everything.
    pub async fn wait_drained(&self, timeout: Duration) -> Result<(), HarnessError> {
        wait_until_named(
            "agent outbox drained",
            || async {
                self.sync_status()
                    .await
                    .is_ok_and(|v| v["pending_events"] == 0 && v["connected"] == true)
            },
            timeout,
        )
        .await
    }

    /// Every order at the agent as `(order_id, cloud_status)`, oldest
    /// first, read page by page from `GET /v1/orders`.
    pub async fn order_statuses(&self) -> Result<Vec<(String, Option<String>)>, HarnessError> {
        let mut out = Vec::new();
        let mut path = "/v1/orders?limit=1000".to_owned();
        loop {
            let page = self.get(&path).await?;
            let orders = page["orders"]
                .as_array()
                .ok_or_else(|| HarnessError::Pipeline(format!("GET {path}: {page}")))?;
            out.extend(orders.iter().map(|o| {
                (
                    o["order_id"].as_str().unwrap_or_default().to_owned(),
                    o["cloud_status"].as_str().map(str::to_owned),
                )
            }));
            match page["next_after"].as_str() {
                Some(after) => path = format!("/v1/orders?limit=1000&after={after}"),
                None => return Ok(out),
            }
        }
    }

    /// The outbox as (seq, event_id, state), read from SQLite directly.
    pub fn outbox(&self) -> Result<Vec<(u64, String, String)>, HarnessError> {
        let conn = rusqlite::Connection::open_with_flags(
            self.db_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .map_err(|e| HarnessError::Pipeline(format!("open agent db: {e}")))?;
        let mut stmt = conn
            .prepare("SELECT seq, event_id, state FROM outbox ORDER BY seq")
            .map_err(|e| HarnessError::Pipeline(e.to_string()))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?))
            })
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| HarnessError::Pipeline(e.to_string()))?;
        Ok(rows)
    }
}

/// The topics (without prefix) agents write: captures and store voids.
pub const AGENT_TOPICS: [&str; 2] = ["orders.created", "orders.cancelled"];

/// What the agents wrote to each of [`AGENT_TOPICS`] under `prefix`, as
/// `(topic, view)`. The saga writes cancellations too (a declined card):
/// only records an agent wrote (they carry its `seq` header) are kept.
pub async fn agent_records(
    brokers: &str,
    prefix: &str,
    timeout: Duration,
) -> Result<Vec<(String, KafkaView)>, HarnessError> {
    let mut out = Vec::new();
    for name in AGENT_TOPICS {
        let topic = format!("{prefix}.{name}");
        let n = usize::try_from(crate::topic_record_count(brokers, &topic).await?).unwrap_or(0);
        let from_agents: Vec<_> = crate::consume_all(brokers, &topic, n, timeout)
            .await?
            .into_iter()
            .filter(|r| r.header_str("seq").is_some())
            .collect();
        out.push((topic, KafkaView::new(from_agents)));
    }
    Ok(out)
}

/// What Kafka holds for one topic, deduplicated by `event_id`.
#[derive(Debug, Default)]
pub struct KafkaView {
    /// event_id → its records (more than one means a raw duplicate).
    pub by_event: BTreeMap<String, Vec<ConsumedRecord>>,
}

impl KafkaView {
    /// Reads every record `topic` holds now (up to `timeout`), grouped.
    pub async fn read(brokers: &str, topic: &str, timeout: Duration) -> Result<Self, HarnessError> {
        let count = crate::topic_record_count(brokers, topic).await?;
        let count = usize::try_from(count).unwrap_or(0);
        Ok(Self::new(
            crate::consume_all(brokers, topic, count, timeout).await?,
        ))
    }

    /// Groups records by their `event_id` header.
    pub fn new(records: Vec<ConsumedRecord>) -> Self {
        let mut by_event: BTreeMap<String, Vec<ConsumedRecord>> = BTreeMap::new();
        for r in records {
            let id = r.header_str("event_id").unwrap_or_default().to_owned();
            by_event.entry(id).or_default().push(r);
        }
        KafkaView { by_event }
    }

    /// Distinct event ids.
    pub fn event_ids(&self) -> BTreeSet<String> {
        self.by_event.keys().cloned().collect()
    }

    /// Records beyond the first per event id.
    pub fn raw_duplicates(&self) -> usize {
        self.by_event.values().map(|v| v.len() - 1).sum()
    }

    /// Checks that within each partition an agent's seqs only grow (first
    /// copies only: a duplicate from a resend may come later).
    pub fn seqs_increase_per_partition(&self, agent: &str) -> Result<(), String> {
        let mut firsts: Vec<&ConsumedRecord> = self
            .by_event
            .values()
            .filter_map(|v| v.iter().min_by_key(|r| (r.partition, r.offset)))
            .filter(|r| r.header_str("agent_id") == Some(agent))
            .collect();
        firsts.sort_by_key(|r| (r.partition, r.offset));
        for w in firsts.windows(2) {
            let seq = |r: &ConsumedRecord| {
                r.header_str("seq")
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            if w[0].partition == w[1].partition && seq(w[0]) >= seq(w[1]) {
                return Err(format!(
                    "partition {}: seq {} at offset {} before seq {} at offset {}",
                    w[0].partition,
                    seq(w[0]),
                    w[0].offset,
                    seq(w[1]),
                    w[1].offset
                ));
            }
        }
        Ok(())
    }
}
