//! The demo's store network as it runs in a real deployment, and its
//! catalog. A fleet PKI (`deploy/pki/o2c-certs.sh`) gives each store's
//! agent, the ingest, the status publisher and the catalog service their
//! own certificates; a Mosquitto of the demo's own serves MQTT over mutual
//! TLS with the deploy ACL. The cloud's catalog service (`o2c-cloud
//! catalog`, on the saga's database, so it serves the inventory's stock
//! and takes ship-to-home reservations against it) holds the four SKUs the
//! tills sell. Each agent pulls it over HTTPS with its certificate at
//! start; the tills ask the agent for a SKU's price before each sale.
//!
//! Part-way through the selling, [`DemoCatalog::change_price`] imports a
//! new price for one SKU; [`DemoCatalog::watch`] prints when each store
//! serves it: an online store within a second (the MQTT hint, then the
//! pull), a store whose link is cut only once it is back.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::catalog::{CatalogProc, CatalogSettings};
use crate::pipeline::AgentProc;
use crate::saga::{AUTO_STOCK, cloud_command};
use crate::tls::{Pki, TlsFiles, TlsMosquitto};

/// The SKUs the demo's tills sell, each at this price (CAD minor units).
pub const SKUS: [&str; 4] = ["SKU-1", "SKU-2", "SKU-3", "SKU-4"];
/// Their price in the first catalog.
pub const FIRST_PRICE: i64 = 1000;
/// The SKU whose price changes part-way, and its new price.
pub const CHANGED: (&str, i64) = ("SKU-4", 1250);

/// The PKI, the TLS broker and the catalog service.
#[derive(Debug)]
pub struct DemoCatalog {
    pki: Pki,
    /// The ingest's and the status publisher's identities.
    services: [(&'static str, TlsFiles); 2],
    broker: TlsMosquitto,
    cat: CatalogProc,
    dir: std::path::PathBuf,
}

impl DemoCatalog {
    /// Issues the certificates (an agent `{store}-A1` per store), starts
    /// the broker and the catalog service on `pg`, and imports the first
    /// catalog.
    pub async fn start(dir: &Path, stores: &[&str], pg: &str) -> anyhow::Result<Self> {
        let pki = Pki::init(dir.join("pki")).context("fleet PKI")?;
        let server = pki
            .issue_server("localhost", &["IP:127.0.0.1"])
            .context("broker certificate")?;
        for store in stores {
            pki.issue_agent(store, &format!("{store}-A1"))
                .context("agent certificate")?;
        }
        let services = [
            (
                "o2c-ingest",
                pki.issue_service("o2c-ingest")
                    .context("ingest certificate")?,
            ),
            (
                "o2c-status",
                pki.issue_service("o2c-status")
                    .context("status certificate")?,
            ),
        ];
        let service = pki
            .issue_service("o2c-catalog")
            .context("catalog certificate")?;
        let https = pki
            .issue_server("catalog", &["IP:127.0.0.1"])
            .context("catalog server certificate")?;
        let broker = TlsMosquitto::start(&pki, &server)
            .await
            .context("Mosquitto over mutual TLS")?;
        let cat = CatalogProc::start(
            dir,
            &CatalogSettings {
                pg,
                mqtt_url: &broker.url(),
                service: &service,
                server: &https,
                extra: "",
                // Reservations provision new SKUs as the saga does.
                extra_tables: &format!("[saga]\nauto_stock = {AUTO_STOCK}\n"),
            },
        )
        .await
        .context("start the catalog service (o2c-cloud catalog)")?;
        let me = Self {
            pki,
            services,
            broker,
            cat,
            dir: dir.to_owned(),
        };
        let first: Vec<(&str, i64)> = SKUS.iter().map(|s| (*s, FIRST_PRICE)).collect();
        me.import("catalog-1.jsonl", &first)?;
        Ok(me)
    }

    /// The broker, `mqtts://127.0.0.1:PORT`.
    pub fn mqtt_url(&self) -> String {
        self.broker.url()
    }

    /// The broker's address (for a link proxy).
    pub fn broker_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.broker.port()))
    }

    /// The catalog service's store API (for a link proxy).
    pub fn api_addr(&self) -> SocketAddr {
        self.cat.api_addr()
    }

    /// `[mqtt.tls]` of a cloud service (`o2c-ingest`, `o2c-status`).
    pub fn service_tls(&self, name: &str) -> anyhow::Result<String> {
        self.services
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, files)| files.toml_table())
            .with_context(|| format!("no certificate issued for {name}"))
    }

    /// The agent's config past `[mqtt] url`: its certificate and the
    /// catalog service at `catalog` (`https://…`, maybe through a proxy).
    pub fn agent_tables(&self, store: &str, catalog: SocketAddr) -> String {
        format!(
            "{}[catalog]\nurl = \"https://{catalog}\"\npoll_interval_secs = 60\n",
            self.pki.agent(&format!("{store}-A1")).toml_table()
        )
    }

    /// Imports `CHANGED`'s new price: the catalog's version 2.
    pub fn change_price(&self) -> anyhow::Result<()> {
        self.import("catalog-2.jsonl", &[CHANGED])
    }

    fn import(&self, name: &str, prices: &[(&str, i64)]) -> anyhow::Result<()> {
        let text: String = prices
            .iter()
            .map(|(sku, minor)| {
                format!(
                    "{{\"sku\":\"{sku}\",\"name\":\"Demo product {sku}\",\"category\":\"demo\",\
                     \"prices\":[{{\"currency\":\"CAD\",\"minor\":{minor}}}]}}\n"
                )
            })
            .collect();
        let file = self.dir.join(name);
        std::fs::write(&file, text).context("write the catalog import")?;
        let (code, out) = cloud_command(
            self.cat.config_path(),
            &["catalog", "import", &file.to_string_lossy()],
        )?;
        if code != 0 {
            bail!("o2c-cloud catalog import {name} exited {code}: {out}");
        }
        Ok(())
    }

    /// The catalog service's log.
    pub fn log_path(&self) -> &Path {
        self.cat.log_path()
    }
}

/// The price `agent` serves for `sku`, from `GET /v1/products/{sku}`.
pub async fn price_at(agent: &AgentProc, sku: &str) -> anyhow::Result<i64> {
    let product: Value = agent.get(&format!("/v1/products/{sku}")).await?;
    product["price_minor"]
        .as_i64()
        .with_context(|| format!("no price for {sku} in {product}"))
}

/// Waits (up to 30 s) until `agent` has pulled the first catalog.
pub async fn wait_first_catalog(agent: &AgentProc) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match price_at(agent, SKUS[0]).await {
            Ok(FIRST_PRICE) => return Ok(()),
            Ok(_) | Err(_) if Instant::now() < deadline => {
                // The agent's first pull, polled every 50 ms.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => bail!(
                "agent {} did not pull the first catalog within 30 s ({other:?}); its log: {}",
                agent.agent_id,
                agent.log_path().display()
            ),
        }
    }
}

/// Makes an order body of the tills (`crate::saga::order_body`) leave
/// the line's price to the agent's catalog, paying `total`.
pub fn price_by_catalog(body: &mut Value, total: i64) {
    if let Some(line) = body["lines"][0].as_object_mut() {
        line.remove("unit_price_minor");
    }
    body["payments"][0]["amount_minor"] = Value::from(total);
}

/// Waits until `agent` serves `CHANGED`'s new price; prints and returns
/// how long after `since` it did (`None`: not within `limit`).
pub async fn watch(
    name: &'static str,
    agent: &AgentProc,
    since: Instant,
    limit: Duration,
) -> (&'static str, Option<Duration>) {
    let (sku, minor) = CHANGED;
    while since.elapsed() < limit {
        if price_at(agent, sku).await.ok() == Some(minor) {
            println!(
                ">>> {name} serves catalog version 2 ({sku} at {minor}) {:.2} s after the import",
                since.elapsed().as_secs_f64()
            );
            return (name, Some(since.elapsed()));
        }
        // A till's glance at the price, every 50 ms.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (name, None)
}

/// Every store served the price change (from [`watch`]).
pub fn check_served(served: &[(&str, Option<Duration>)]) -> anyhow::Result<()> {
    let missed: Vec<&str> = served
        .iter()
        .filter(|(_, t)| t.is_none())
        .map(|(n, _)| *n)
        .collect();
    if served.is_empty() {
        bail!("the price change was never imported (selling ended before --price-change-at-secs)");
    }
    if !missed.is_empty() {
        bail!("never served the price change: {}", missed.join(", "));
    }
    let (sku, minor) = CHANGED;
    println!("catalog: every store serves {sku} at {minor} (version 2)");
    Ok(())
}
