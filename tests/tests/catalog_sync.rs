//! Issue 15: the catalog, prices and stock flow down to stores. Real
//! PostgreSQL, a Mosquitto with the deploy ACL over mutual TLS, the real
//! `o2c-cloud catalog` and `o2c-agent` processes.
//!
//! - an agent pulls the catalog at start and prices captures with it;
//! - a price change is served by the agent within 2 s of the import (the
//!   retained hint wakes the pull);
//! - a deactivated SKU is refused at capture (422 `unknown_sku`);
//! - `If-None-Match` is answered 304;
//! - a store cannot read another store's catalog or stock over HTTPS (403),
//!   nor its hint over MQTT;
//! - with the catalog service down the agent keeps selling on its last
//!   catalog, and catches up when the service is back.

use std::path::Path;
use std::time::{Duration, Instant};

use o2c_tests::catalog::{CatalogProc, CatalogSettings, StoreClient};
use o2c_tests::fleet::fleet;
use o2c_tests::pipeline::AgentProc;
use o2c_tests::saga::cloud_command;
use o2c_tests::wait_until_named;
use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode;
use serde_json::{Value, json};

fn import(config: &Path, dir: &Path, name: &str, text: &str) {
    let file = dir.join(name);
    std::fs::write(&file, text).expect("write import file");
    let (code, out) =
        cloud_command(config, &["catalog", "import", &file.to_string_lossy()]).expect("import");
    assert_eq!(code, 0, "import {name}: {out}");
}

async fn product(agent: &AgentProc, sku: &str) -> Value {
    agent
        .get(&format!("/v1/products/{sku}"))
        .await
        .expect("GET product")
}

async fn sell(agent: &AgentProc, key: &str, sku: &str, cash: i64) -> (u16, Value) {
    let body = json!({
        "terminal_id": "T1", "currency": "CAD",
        "lines": [{"sku": sku, "quantity": 1}],
        "payments": [{"method": "cash", "amount_minor": cash}],
        "fulfillment": {"type": "carry_out"}
    });
    agent
        .post_json("/v1/orders", Some(key), &body)
        .await
        .expect("POST order")
}

async fn wait_version(agent: &AgentProc, version: u64) {
    wait_until_named(
        &format!("agent at catalog version {version}"),
        || async {
            agent
                .get("/v1/catalog/status")
                .await
                .is_ok_and(|s| s["version"] == json!(version))
        },
        Duration::from_secs(20),
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nagent log:\n{}",
            std::fs::read_to_string(agent.log_path()).unwrap_or_default()
        )
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_flows_down_and_each_store_reads_only_its_own() {
    let f = fleet(&[("S001", "S001-A1"), ("S002", "S002-A1")]).await;
    f.env.require_postgres().await;
    let pg = f
        .env
        .create_database("catalog_sync")
        .await
        .expect("database");
    let service = f.pki.issue_service("o2c-catalog").expect("service cert");
    let server = f
        .pki
        .issue_server("catalog", &["IP:127.0.0.1"])
        .expect("server cert");
    let broker_url = f.broker.url();
    let mut cat = CatalogProc::start(
        f.env.path(),
        &CatalogSettings {
            pg: &pg,
            mqtt_url: &broker_url,
            service: &service,
            server: &server,
            extra: "page_size = 2\nstores = [\"S002\"]",
            extra_tables: "",
        },
    )
    .await
    .expect("catalog service");
    let config = cat.config_path().to_owned();
    let dir = f.env.path().to_owned();
    import(
        &config,
        &dir,
        "v1.jsonl",
        r#"{"sku":"SKU-1","name":"Mug","prices":[{"currency":"CAD","minor":1000}]}
{"sku":"SKU-2","name":"Pen","prices":[{"currency":"CAD","minor":500}]}
{"sku":"SKU-OLD","name":"Old","prices":[{"currency":"CAD","minor":200}]}
"#,
    );

    let tls = f.pki.agent("S001-A1").toml_table();
    let agent = AgentProc::start(
        &dir,
        "S001",
        "S001-A1",
        &broker_url,
        &format!(
            "{tls}\n[catalog]\nurl = \"{}\"\npoll_interval_secs = 3600\n",
            cat.url()
        ),
    )
    .await
    .expect("agent");
    // Pulled at start (three products over two pages of two).
    wait_version(&agent, 1).await;
    let p = product(&agent, "SKU-1").await;
    assert_eq!(
        (&p["price_minor"], &p["active"]),
        (&json!(1000), &json!(true)),
        "{p}"
    );
    let (status, order) = sell(&agent, "k1", "SKU-1", 1000).await;
    assert_eq!(status, 201, "{order}");

    // A price change and a deactivation: served within 2 s of the import.
    let t0 = Instant::now();
    import(
        &config,
        &dir,
        "v2.jsonl",
        r#"{"sku":"SKU-1","name":"Mug","prices":[{"currency":"CAD","minor":1200}]}
{"sku":"SKU-OLD","name":"Old","active":false}
"#,
    );
    wait_until_named(
        "the new price at the agent",
        || async { product(&agent, "SKU-1").await["price_minor"] == json!(1200) },
        Duration::from_secs(10),
    )
    .await
    .expect("new price");
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(2), "price change took {took:?}");
    let (status, body) = sell(&agent, "k2", "SKU-OLD", 200).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("unknown_sku")),
        "{body}"
    );
    let (status, body) = sell(&agent, "k3", "SKU-1", 1200).await;
    assert_eq!(status, 201, "{body}");

    // The 304 path, and another store's data refused.
    let s1 = StoreClient::new(&f.pki.agent("S001-A1")).expect("client");
    let own = format!("{}/v1/stores/S001/catalog", cat.url());
    let (status, tag, body) = s1.get(&own, None).await.expect("GET");
    assert_eq!(status, 200, "{body}");
    let tag = tag.expect("an ETag");
    let page: Value = serde_json::from_str(&body).expect("page");
    assert_eq!((&page["version"], &page["full"]), (&json!(2), &json!(true)));
    let (status, _, _) = s1.get(&own, Some(&tag)).await.expect("GET");
    assert_eq!(status, 304);
    for path in ["/v1/stores/S002/catalog", "/v1/stores/S002/stock"] {
        let (status, _, body) = s1
            .get(&format!("{}{path}", cat.url()), None)
            .await
            .expect("GET");
        assert_eq!(status, 403, "{path}: {body}");
    }
    let ingest = StoreClient::new(&f.service("o2c-ingest")).expect("client");
    let (status, _, _) = ingest.get(&own, None).await.expect("GET");
    assert_eq!(status, 403, "a certificate without a store");
    let metrics = cat.metrics().await.expect("metrics");
    assert!(
        metrics.contains(r#"o2c_catalog_requests_total{route="catalog",code="304"}"#),
        "{metrics}"
    );

    // Over MQTT: the own hint is retained; another store's is refused.
    let mut spy = f.client(&f.pki.agent("S001-A1"), "S001-A1-spy").await;
    assert!(matches!(
        spy.subscribe("o2c/v1/stores/S001/catalog").await,
        SubscribeReasonCode::Success(_)
    ));
    // Mosquitto grants the filter but never delivers what the ACL denies:
    // S002's retained hint (it exists: S002 is in `stores`) would come
    // right after the grant, before a marker sent on S001's topic after it.
    let code = spy.subscribe("o2c/v1/stores/S002/catalog").await;
    assert!(
        matches!(
            code,
            SubscribeReasonCode::Success(_) | SubscribeReasonCode::NotAuthorized
        ),
        "{code:?}"
    );
    let mut hinter = f.client(&service, "o2c-catalog-marker").await;
    hinter.publish("o2c/v1/stores/S001/catalog", "marker").await;
    let got = spy.receive_until("marker").await;
    assert!(
        got.iter().any(|(t, _)| t == "o2c/v1/stores/S001/catalog"),
        "{got:?}"
    );
    assert!(
        !got.iter().any(|(t, _)| t.contains("S002")),
        "S001 read S002's hint: {got:?}"
    );

    // The service down: selling goes on at the last catalog; back, the
    // agent catches up (the hints sent at the service's reconnect).
    cat.kill().expect("kill catalog");
    import(
        &config,
        &dir,
        "v3.jsonl",
        r#"{"sku":"SKU-2","name":"Pen","prices":[{"currency":"CAD","minor":550}]}
"#,
    );
    let (status, body) = sell(&agent, "k4", "SKU-2", 500).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(product(&agent, "SKU-2").await["price_minor"], json!(500));
    cat.restart().await.expect("restart catalog");
    wait_version(&agent, 3).await;
    assert_eq!(product(&agent, "SKU-2").await["price_minor"], json!(550));
}
