//! [`CatalogProc`]: a running `o2c-cloud catalog` (the store API over
//! HTTPS with mutual TLS, and the change hints); [`StoreClient`], an
//! HTTPS client holding one fleet certificate, to call it as a store would;
//! and [`CatalogWorld`], the fleet, database and service one catalog test
//! needs, with agents that pull from it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::Duration;

use serde_json::json;

use crate::fleet::{Fleet, fleet};
use crate::pipeline::AgentProc;
use crate::saga::spawn_cloud;
use crate::tls::TlsFiles;
use crate::wait::wait_http_ok;
use crate::{ChildGuard, HarnessError, free_port, wait_until_named};

/// A running catalog service.
#[derive(Debug)]
pub struct CatalogProc {
    guard: ChildGuard,
    config: PathBuf,
    log: PathBuf,
    http: SocketAddr,
    api: SocketAddr,
}

/// What the service is started with.
#[derive(Debug, Clone)]
pub struct CatalogSettings<'a> {
    /// PostgreSQL connection string.
    pub pg: &'a str,
    /// The broker (`mqtts://`).
    pub mqtt_url: &'a str,
    /// The `o2c-catalog` service identity (MQTT client certificate).
    pub service: &'a TlsFiles,
    /// The HTTPS server certificate (and the fleet CA as client CA).
    pub server: &'a TlsFiles,
    /// Extra lines for `[catalog]` (e.g. `page_size = 100`).
    pub extra: &'a str,
    /// Extra tables at the end (e.g. `[saga]` with `central_warehouse`).
    pub extra_tables: &'a str,
}

impl CatalogProc {
    /// Writes `catalog.toml` in `dir` and starts the service; waits until
    /// `/readyz` is 200.
    pub async fn start(dir: &Path, s: &CatalogSettings<'_>) -> Result<Self, HarnessError> {
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let api = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let config = dir.join("catalog.toml");
        let text = format!(
            "[mqtt]\nurl = \"{}\"\n[mqtt.tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
             [kafka]\nbrokers = \"127.0.0.1:1\"\n\
             [postgres]\nurl = \"{}\"\n\
             [catalog]\nlisten = \"{api}\"\nhttp_listen = \"{http}\"\nrefresh_ms = 50\n{}\n\
             [catalog.tls]\nclient_ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n{}\n",
            s.mqtt_url,
            s.service.ca.display(),
            s.service.cert.display(),
            s.service.key.display(),
            s.pg,
            s.extra,
            s.server.ca.display(),
            s.server.cert.display(),
            s.server.key.display(),
            s.extra_tables,
        );
        std::fs::write(&config, text).map_err(|e| HarnessError::io("write catalog.toml", e))?;
        let log = dir.join("catalog.log");
        let guard = Self::spawn(&config, &log)?;
        let me = CatalogProc {
            guard,
            config,
            log,
            http,
            api,
        };
        me.wait_ready().await?;
        Ok(me)
    }

    fn spawn(config: &Path, log: &Path) -> Result<ChildGuard, HarnessError> {
        spawn_cloud(&["catalog"], config, &[], log)
    }

    async fn wait_ready(&self) -> Result<(), HarnessError> {
        wait_http_ok(
            "catalog /readyz",
            &format!("http://{}/readyz", self.http),
            &self.log,
        )
        .await
    }

    /// `https://127.0.0.1:PORT`, the store API.
    pub fn url(&self) -> String {
        format!("https://{}", self.api)
    }

    /// The store API's address.
    pub fn api_addr(&self) -> SocketAddr {
        self.api
    }

    /// The config file (for `o2c-cloud catalog import`).
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
            .map_err(|e| HarnessError::Pipeline(format!("catalog metrics: {e}")))?;
        r.text()
            .await
            .map_err(|e| HarnessError::Pipeline(format!("catalog metrics: {e}")))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.guard.id()
    }

    /// SIGKILL.
    pub fn kill(&mut self) -> Result<(), HarnessError> {
        self.guard.kill().map(|_| ())
    }

    /// Starts it again with the same config.
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        let _ = self.guard.kill();
        self.guard = Self::spawn(&self.config, &self.log)?;
        self.wait_ready().await
    }
}

/// An HTTPS client with one fleet identity.
#[derive(Debug, Clone)]
pub struct StoreClient {
    client: reqwest::Client,
}

impl StoreClient {
    /// A client presenting `files` and trusting only their CA.
    pub fn new(files: &TlsFiles) -> Result<Self, HarnessError> {
        o2c_runtime::mqtt::install_crypto_provider();
        let tls = o2c_runtime::tls::client_config(o2c_runtime::tls::Files {
            ca: ("ca", &files.ca),
            identity: Some((("cert", &files.cert), ("key", &files.key))),
        })
        .map_err(|e| HarnessError::Pipeline(e.to_string()))?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .gzip(true)
            .build()
            .map_err(|e| HarnessError::Pipeline(e.to_string()))?;
        Ok(Self { client })
    }

    /// `POST url` with a JSON body: status and body.
    pub async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<(u16, serde_json::Value), HarnessError> {
        let r = self
            .client
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|e| HarnessError::Pipeline(format!("POST {url}: {e}")))?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(serde_json::Value::Null)))
    }

    /// `GET url` with an optional `If-None-Match`: status, `ETag`, body.
    pub async fn get(
        &self,
        url: &str,
        if_none_match: Option<&str>,
    ) -> Result<(u16, Option<String>, String), HarnessError> {
        let mut req = self.client.get(url);
        if let Some(t) = if_none_match {
            req = req.header("If-None-Match", t);
        }
        let r = req
            .send()
            .await
            .map_err(|e| HarnessError::Pipeline(format!("GET {url}: {e}")))?;
        let status = r.status().as_u16();
        let tag = r
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = r
            .text()
            .await
            .map_err(|e| HarnessError::Pipeline(format!("GET {url}: {e}")))?;
        Ok((status, tag, body))
    }
}

/// A fleet (PKI, Mosquitto over mutual TLS with the deploy ACL), a
/// PostgreSQL database of the test's own and a catalog service on them.
#[derive(Debug)]
pub struct CatalogWorld {
    /// The fleet: its env (temp dir), PKI and broker.
    pub fleet: Fleet,
    /// The database's connection string.
    pub pg: String,
    /// The service.
    pub cat: CatalogProc,
}

impl CatalogWorld {
    /// Starts it for `agents` (store, agent), with `extra` lines for
    /// `[catalog]` and `extra_tables` after it (panics on failure, naming
    /// what to start).
    pub async fn start(
        agents: &[(&str, &str)],
        database: &str,
        extra: &str,
        extra_tables: &str,
    ) -> Self {
        let fleet = fleet(agents).await;
        fleet.env.require_postgres().await;
        let pg = fleet.env.create_database(database).await.expect("database");
        let service = fleet
            .pki
            .issue_service("o2c-catalog")
            .expect("service cert");
        let server = fleet
            .pki
            .issue_server("catalog", &["IP:127.0.0.1"])
            .expect("server cert");
        let cat = CatalogProc::start(
            fleet.env.path(),
            &CatalogSettings {
                pg: &pg,
                mqtt_url: &fleet.broker.url(),
                service: &service,
                server: &server,
                extra,
                extra_tables,
            },
        )
        .await
        .expect("catalog service");
        Self { fleet, pg, cat }
    }

    /// `o2c-cloud catalog import` of `text`, written to `name` (asserts
    /// exit 0).
    pub fn import(&self, name: &str, text: &str) {
        let file = self.fleet.env.path().join(name);
        std::fs::write(&file, text).expect("write import file");
        let (code, out) = crate::saga::cloud_command(
            self.cat.config_path(),
            &["catalog", "import", &file.to_string_lossy()],
        )
        .expect("import");
        assert_eq!(code, 0, "import {name}: {out}");
    }

    /// Starts agent `agent` of `store` over TLS, pulling from the service;
    /// `extra` is more TOML (e.g. `[fulfillment]`).
    pub async fn agent(&self, store: &str, agent: &str, extra: &str) -> AgentProc {
        self.agent_via(
            store,
            agent,
            &self.fleet.broker.url(),
            &self.cat.url(),
            extra,
        )
        .await
    }

    /// [`CatalogWorld::agent`] reaching the broker at `mqtt_url` and the
    /// service at `catalog_url` (e.g. through [`crate::proxy::LinkProxy`]s).
    pub async fn agent_via(
        &self,
        store: &str,
        agent: &str,
        mqtt_url: &str,
        catalog_url: &str,
        extra: &str,
    ) -> AgentProc {
        let tls = self.fleet.pki.agent(agent).toml_table();
        AgentProc::start(
            self.fleet.env.path(),
            store,
            agent,
            mqtt_url,
            &format!(
                "{tls}\n[catalog]\nurl = \"{catalog_url}\"\npoll_interval_secs = 3600\n{extra}"
            ),
        )
        .await
        .expect("agent")
    }
}

/// Waits until `agent` reports catalog `version` (panics with its log).
pub async fn wait_catalog_version(agent: &AgentProc, version: u64, timeout: Duration) {
    wait_until_named(
        &format!("agent at catalog version {version}"),
        || async {
            agent
                .get("/v1/catalog/status")
                .await
                .is_ok_and(|s| s["version"] == json!(version))
        },
        timeout,
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nagent log:\n{}",
            std::fs::read_to_string(agent.log_path()).unwrap_or_default()
        )
    });
}
