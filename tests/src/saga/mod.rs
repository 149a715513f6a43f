//! The saga as real processes: `o2c-psp-sim` and `o2c-cloud saga`
//! with generated configs, a whole-pipeline setup ([`SagaWorld`]: private
//! Mosquitto, ingest, saga, simulator, one agent, a database of its own),
//! and the agent-side helpers the saga suites assert with. What the suites
//! read back from a world's Kafka and database (groups caught up, outbox
//! rows, stock) is in `state`; returns at the till in [`returns`].

use crate::wait::wait_http_ok;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::pipeline::{AgentProc, Ingest, TERMINAL_TOKEN};
use crate::{
    ChildGuard, HarnessError, PrivateMosquitto, TestEnv, bin_path, free_port, wait_until_named,
};

fn http_err(e: reqwest::Error) -> HarnessError {
    HarnessError::Pipeline(format!("http: {e}"))
}

/// Starts `o2c-cloud {command} --config {config} {args}` with its output
/// appended to `log` and `RUST_LOG` from `O2C_TEST_LOG` (default `info`):
/// every long-running cloud process of the harness.
pub(crate) fn spawn_cloud(
    command: &[&str],
    config: &Path,
    args: &[&str],
    log: &Path,
) -> Result<ChildGuard, HarnessError> {
    let mut cmd = Command::new(bin_path("o2c-cloud"));
    cmd.args(command)
        .arg("--config")
        .arg(config)
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("O2C_TEST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(log_file(log)?)
        .stderr(log_file(log)?);
    let mut name = format!("o2c-cloud {}", command.join(" "));
    for a in args {
        name.push(' ');
        name.push_str(a);
    }
    ChildGuard::spawn(name, &mut cmd)
}

pub(crate) fn log_file(path: &Path) -> Result<std::fs::File, HarnessError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| HarnessError::io(format!("open {}", path.display()), e))
}

/// Units provisioned for each SKU the saga sees first (`saga.auto_stock`
/// in every generated config).
pub const AUTO_STOCK: i64 = 1_000_000;

/// A running `o2c-cloud saga`.
#[derive(Debug)]
pub struct SagaProc {
    guard: ChildGuard,
    config: PathBuf,
    log: PathBuf,
    http: SocketAddr,
    service: String,
}

/// What a saga config needs.
#[derive(Debug, Clone)]
pub struct SagaSettings {
    /// Unique prefix: topics `{prefix}.…`, groups `{prefix}-…`.
    pub prefix: String,
    /// MQTT broker URL.
    pub mqtt_url: String,
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// PostgreSQL connection string (with `dbname=`).
    pub pg: String,
    /// The simulator's URL.
    pub psp_url: String,
    /// The carrier simulator's URL (empty: no `[carrier]` table, for a
    /// world without the shipping service).
    pub carrier_url: String,
    /// Extra TOML appended to `[saga]` (e.g. `retry_base_ms = 100`).
    pub extra_saga: String,
    /// Extra TOML tables appended after `[saga]`.
    pub extra_tables: String,
    /// Extra TOML appended to `[psp]` (e.g. `breaker_open_ms = 1000`).
    pub extra_psp: String,
    /// Extra TOML appended to `[kafka]` (e.g. `partitions = 6`).
    pub extra_kafka: String,
}

impl SagaProc {
    /// Writes `saga-{service}-{port}.toml` in `dir` and starts `o2c-cloud
    /// saga --service {service}` (several replicas of one service each get
    /// their own files); waits until `/readyz` is 200.
    pub async fn start(dir: &Path, s: &SagaSettings, service: &str) -> Result<Self, HarnessError> {
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let config = dir.join(format!("saga-{service}-{}.toml", http.port()));
        let text = format!(
            "[mqtt]\nurl = \"{}\"\n\
             [kafka]\nbrokers = \"{}\"\ntopic_prefix = \"{}.\"\n{}\n\
             [postgres]\nurl = \"{}\"\n\
             [saga]\ngroup_prefix = \"{}\"\nhttp_listen = \"{http}\"\nauto_stock = {AUTO_STOCK}\n{}\n\
             {}\n",
            s.mqtt_url,
            s.brokers,
            s.prefix,
            s.extra_kafka,
            s.pg,
            s.prefix,
            s.extra_saga,
            s.extra_tables
        );
        let mut text = format!("{text}[psp]\nurl = \"{}\"\n{}\n", s.psp_url, s.extra_psp);
        if !s.carrier_url.is_empty() {
            text.push_str(&carrier_table(&s.carrier_url));
        }
        std::fs::write(&config, text).map_err(|e| HarnessError::io("write saga.toml", e))?;
        let log = dir.join(format!("saga-{service}-{}.log", http.port()));
        let guard = Self::spawn(&config, service, &log)?;
        let me = SagaProc {
            guard,
            config,
            log,
            http,
            service: service.to_owned(),
        };
        me.wait_ready().await?;
        Ok(me)
    }

    fn spawn(config: &Path, service: &str, log: &Path) -> Result<ChildGuard, HarnessError> {
        spawn_cloud(&["saga"], config, &["--service", service], log)
    }

    async fn wait_ready(&self) -> Result<(), HarnessError> {
        wait_http_ok(
            "saga /readyz",
            &format!("http://{}/readyz", self.http),
            &self.log,
        )
        .await
    }

    /// `/readyz`: its status code and body.
    pub async fn readyz(&self) -> Result<(u16, String), HarnessError> {
        let r = reqwest::get(format!("http://{}/readyz", self.http))
            .await
            .map_err(http_err)?;
        let code = r.status().as_u16();
        Ok((code, r.text().await.map_err(http_err)?))
    }

    /// The config file (for `o2c-cloud dlq`).
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
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

    /// Starts it again with the same config.
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        let _ = self.guard.kill();
        self.guard = Self::spawn(&self.config, &self.service, &self.log)?;
        self.wait_ready().await
    }

    /// SIGKILL and start again at once, without waiting for `/readyz`
    /// (back-to-back kills, as in issue 21's stall).
    pub fn respawn(&mut self) -> Result<(), HarnessError> {
        let _ = self.guard.kill();
        self.guard = Self::spawn(&self.config, &self.service, &self.log)?;
        Ok(())
    }

    /// Waits until `/readyz` is 200 (after [`SagaProc::respawn`]).
    pub async fn wait_until_ready(&self) -> Result<(), HarnessError> {
        self.wait_ready().await
    }
}

/// Runs `o2c-cloud {args}` with `O2C_CLOUD_CONFIG={config}`; returns its
/// exit code and stdout (stderr in the error when it did not run).
pub fn cloud_command(config: &Path, args: &[&str]) -> Result<(i32, String), HarnessError> {
    let out = Command::new(bin_path("o2c-cloud"))
        .env("O2C_CLOUD_CONFIG", config)
        .args(args)
        .output()
        .map_err(|e| HarnessError::io("run o2c-cloud", e))?;
    let code = out.status.code().ok_or_else(|| {
        HarnessError::Pipeline(format!("o2c-cloud {args:?} was killed by a signal"))
    })?;
    if code != 0 && code != 2 && code != 3 {
        return Err(HarnessError::Pipeline(format!(
            "o2c-cloud {args:?} exited {code}: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok((code, String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Runs `o2c-cloud dlq {args}`; returns stdout (an error unless it exits 0).
pub fn dlq_command(config: &Path, args: &[&str]) -> Result<String, HarnessError> {
    let args: Vec<&str> = std::iter::once("dlq").chain(args.iter().copied()).collect();
    match cloud_command(config, &args)? {
        (0, out) => Ok(out),
        (code, out) => Err(HarnessError::Pipeline(format!(
            "o2c-cloud {args:?} exited {code}: {out}"
        ))),
    }
}

/// How an order is paid in [`order_body`].
#[derive(Debug, Clone)]
pub enum Tender {
    /// Cash.
    Cash,
    /// A card token, authorised online.
    Card(String),
    /// A card token, authorised offline at the till.
    OfflineCard(String),
}

/// A capture request: `qty` units of `sku` at 10.00 CAD.
pub fn order_body(sku: &str, qty: i64, tender: &Tender, ship_to_home: bool) -> Value {
    let total = 1000 * qty;
    let payment = match tender {
        Tender::Cash => json!({"method": "cash", "amount_minor": total}),
        Tender::Card(t) | Tender::OfflineCard(t) => json!({
            "method": "card", "amount_minor": total, "token": t, "brand": "visa", "last4": "4242",
            "authorization": if matches!(tender, Tender::OfflineCard(_)) { "offline" } else { "online" }
        }),
    };
    let fulfillment = if ship_to_home {
        json!({"type": "ship_to_home", "address": {
            "name": "A. Customer", "line1": "1 Main St", "city": "Montreal",
            "postal_code": "H2X 1Y4", "country": "CA"}})
    } else {
        json!({"type": "carry_out"})
    };
    json!({
        "terminal_id": "T1", "currency": "CAD",
        "lines": [{"sku": sku, "quantity": qty, "unit_price_minor": 1000}],
        "payments": [payment],
        "fulfillment": fulfillment
    })
}

/// `http://addr` of the agent's API (read from its `http.addr`).
pub fn agent_base(agent: &AgentProc) -> Result<String, HarnessError> {
    let addr_file = agent
        .db_path()
        .parent()
        .map(|d| d.join("http.addr"))
        .ok_or_else(|| HarnessError::Pipeline("agent data dir".into()))?;
    let text =
        std::fs::read_to_string(&addr_file).map_err(|e| HarnessError::io("read http.addr", e))?;
    Ok(format!("http://{}", text.trim()))
}

/// `POST /v1/orders` with `body`; returns the order id.
pub async fn capture(agent: &AgentProc, key: &str, body: &Value) -> Result<String, HarnessError> {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/orders", agent_base(agent)?))
        .bearer_auth(TERMINAL_TOKEN)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .map_err(http_err)?;
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    match (status, v["order_id"].as_str()) {
        (200 | 201, Some(id)) => Ok(id.to_owned()),
        _ => Err(HarnessError::Pipeline(format!(
            "POST /v1/orders: {status} {v}"
        ))),
    }
}

/// `(cloud_status, cloud_reason)` of an order at the agent.
pub async fn cloud_status(
    agent: &AgentProc,
    order_id: &str,
) -> Result<(Option<String>, Option<String>), HarnessError> {
    let v = agent.get(&format!("/v1/orders/{order_id}")).await?;
    Ok((
        v["cloud_status"].as_str().map(str::to_owned),
        v["cloud_reason"].as_str().map(str::to_owned),
    ))
}

/// Waits until the agent shows `status` for the order.
pub async fn wait_status(
    agent: &AgentProc,
    order_id: &str,
    status: &str,
    timeout: Duration,
) -> Result<(), HarnessError> {
    wait_until_named(
        &format!("order {order_id} cloud_status {status}"),
        || async {
            cloud_status(agent, order_id)
                .await
                .is_ok_and(|(s, _)| s.as_deref() == Some(status))
        },
        timeout,
    )
    .await
}

/// How [`SagaWorld::start_with`] sets a world up.
#[derive(Debug, Clone, Default)]
pub struct WorldOptions<'a> {
    /// Kafka bootstrap servers; the shared Tansu when `None`.
    pub kafka: Option<&'a str>,
    /// Appended to `[saga]`.
    pub extra_saga: &'a str,
    /// Appended to `[psp]`.
    pub extra_psp: &'a str,
    /// Lines appended to the private broker's config.
    pub mosquitto_extra: &'a [&'a str],
    /// Partitions per topic (`[kafka] partitions` of the ingest and every
    /// saga process); the config's default when `None`.
    pub partitions: Option<i32>,
    /// TOML tables appended to every process's config (the agent's, the
    /// ingest's and each saga process's), e.g. a `[telemetry]` table.
    pub tables: &'a str,
}

/// The whole pipeline for one test.
#[derive(Debug)]
pub struct SagaWorld {
    /// Temp dir, prefix, services.
    pub env: TestEnv,
    /// The test's own broker.
    pub mosq: PrivateMosquitto,
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// The saga database's connection string.
    pub pg: String,
    /// The simulator.
    pub psp: PspSim,
    /// The carrier simulator.
    pub carrier: CarrierSim,
    /// The ingest.
    pub ingest: Ingest,
    /// Saga processes.
    pub sagas: Vec<SagaProc>,
    /// Settings the saga processes were started with.
    pub settings: SagaSettings,
    /// One agent (store `{prefix}-s1`, agent `A1`).
    pub agent: AgentProc,
}

impl SagaWorld {
    /// Starts everything; `services` are the saga processes to run (e.g.
    /// `&["all"]`); `extra_saga` is appended to `[saga]`, `extra_psp` to
    /// `[psp]`.
    pub async fn start(
        services: &[&str],
        extra_saga: &str,
        extra_psp: &str,
    ) -> Result<Self, HarnessError> {
        Self::start_with_broker(services, extra_saga, extra_psp, &[]).await
    }

    /// As [`SagaWorld::start`], with `mosquitto_extra` lines appended to the
    /// private broker's config (e.g. `max_queued_messages 100000`).
    pub async fn start_with_broker(
        services: &[&str],
        extra_saga: &str,
        extra_psp: &str,
        mosquitto_extra: &[&str],
    ) -> Result<Self, HarnessError> {
        Self::start_against(None, services, extra_saga, extra_psp, mosquitto_extra).await
    }

    /// As [`SagaWorld::start_with_broker`], against the Kafka at `kafka`
    /// (e.g. a [`crate::tansu::PrivateTansu`]) instead of the shared one
    /// when given.
    pub async fn start_against(
        kafka: Option<&str>,
        services: &[&str],
        extra_saga: &str,
        extra_psp: &str,
        mosquitto_extra: &[&str],
    ) -> Result<Self, HarnessError> {
        let opts = WorldOptions {
            kafka,
            extra_saga,
            extra_psp,
            mosquitto_extra,
            partitions: None,
            tables: "",
        };
        Self::start_with(services, &opts).await
    }

    /// Starts everything as `opts` says.
    pub async fn start_with(
        services: &[&str],
        opts: &WorldOptions<'_>,
    ) -> Result<Self, HarnessError> {
        let env = TestEnv::new();
        let brokers = match opts.kafka {
            Some(k) => k.to_owned(),
            None => env.require_kafka().await.to_owned(),
        };
        env.require_postgres().await;
        let pg = env.create_database("saga").await?;
        let mosq = PrivateMosquitto::start_with(opts.mosquitto_extra).await?;
        let psp = PspSim::start(env.path()).await?;
        let carrier = CarrierSim::start(env.path()).await?;
        let partitions = opts.partitions.map(|n| n.to_string());
        let settings = SagaSettings {
            prefix: env.prefix().to_owned(),
            mqtt_url: mosq.url(),
            brokers: brokers.clone(),
            pg: pg.clone(),
            psp_url: psp.url(),
            carrier_url: carrier.url(),
            extra_saga: opts.extra_saga.to_owned(),
            extra_tables: opts.tables.to_owned(),
            extra_psp: opts.extra_psp.to_owned(),
            extra_kafka: partitions
                .as_ref()
                .map(|n| format!("partitions = {n}"))
                .unwrap_or_default(),
        };
        let ingest_env: Vec<(&str, &str)> = partitions
            .as_deref()
            .map(|n| ("O2C_CLOUD__KAFKA__PARTITIONS", n))
            .into_iter()
            .collect();
        let ingest = Ingest::start_with_tables(
            env.path(),
            env.prefix(),
            &mosq.url(),
            &brokers,
            &ingest_env,
            opts.tables,
        )
        .await?;
        let mut sagas = Vec::new();
        for s in services {
            sagas.push(SagaProc::start(env.path(), &settings, s).await?);
        }
        let store = env.store_id("s1");
        let agent = AgentProc::start(env.path(), &store, "A1", &mosq.url(), opts.tables).await?;
        Ok(SagaWorld {
            env,
            mosq,
            brokers,
            pg,
            psp,
            carrier,
            ingest,
            sagas,
            settings,
            agent,
        })
    }

    /// A connection to the saga database.
    pub async fn db(&self) -> Result<tokio_postgres::Client, HarnessError> {
        let (client, conn) = tokio_postgres::connect(&self.pg, tokio_postgres::NoTls)
            .await
            .map_err(|source| HarnessError::Postgres {
                what: "connect to the saga database".into(),
                source,
            })?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// A metric's value summed over the saga processes' `/metrics`
    /// (`name` with labels as printed, e.g.
    /// `o2c_saga_dead_letters_total{service="payment"}`).
    pub async fn metric(&self, name: &str) -> f64 {
        let mut total = 0.0;
        for s in &self.sagas {
            if let Ok(text) = s.metrics().await {
                total += text
                    .lines()
                    .filter_map(|l| l.strip_prefix(name))
                    .filter_map(|rest| rest.trim().parse::<f64>().ok())
                    .sum::<f64>();
            }
        }
        total
    }

    /// Every saga log's tail, for failure messages.
    pub fn logs(&self) -> String {
        self.sagas
            .iter()
            .map(|s| crate::process::log_tail(s.log_path(), 3000))
            .collect::<Vec<_>>()
            .join("\n----\n")
    }
}

pub mod returns;
mod sims;
mod state;

pub use sims::{CarrierSim, PspSim, carrier_table};

pub use state::group_topics;
