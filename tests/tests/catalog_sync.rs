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
//!   catalog, and catches up when the service is back;
//! - with the agent's own links cut (MQTT and HTTPS) it sells on its last
//!   catalog while the cloud changes a price, and catches up once they heal.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use o2c_tests::catalog::{CatalogWorld, StoreClient, wait_catalog_version};
use o2c_tests::pipeline::AgentProc;
use o2c_tests::proxy::{LinkMode, LinkProxy};
use o2c_tests::wait_until_named;
use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode;
use serde_json::{Value, json};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_flows_down_and_each_store_reads_only_its_own() {
    let mut w = CatalogWorld::start(
        &[("S001", "S001-A1"), ("S002", "S002-A1")],
        "catalog_sync",
        "page_size = 2\nstores = [\"S002\"]",
        "",
    )
    .await;
    let (f, cat) = (&w.fleet, &w.cat);
    w.import(
        "v1.jsonl",
        r#"{"sku":"SKU-1","name":"Mug","prices":[{"currency":"CAD","minor":1000}]}
{"sku":"SKU-2","name":"Pen","prices":[{"currency":"CAD","minor":500}]}
{"sku":"SKU-OLD","name":"Old","prices":[{"currency":"CAD","minor":200}]}
"#,
    );
    let agent = w.agent("S001", "S001-A1", "").await;
    // Pulled at start (three products over two pages of two).
    wait_catalog_version(&agent, 1, Duration::from_secs(20)).await;
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
    w.import(
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
    let mut hinter = f
        .client(&f.service("o2c-catalog"), "o2c-catalog-marker")
        .await;
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
    w.cat.kill().expect("kill catalog");
    w.import(
        "v3.jsonl",
        r#"{"sku":"SKU-2","name":"Pen","prices":[{"currency":"CAD","minor":550}]}
"#,
    );
    let (status, body) = sell(&agent, "k4", "SKU-2", 500).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(product(&agent, "SKU-2").await["price_minor"], json!(500));
    w.cat.restart().await.expect("restart catalog");
    wait_catalog_version(&agent, 3, Duration::from_secs(20)).await;
    assert_eq!(product(&agent, "SKU-2").await["price_minor"], json!(550));
}

/// The issue's "an offline agent keeps selling on its last catalog, then
/// catches up on reconnect", with the agent's links cut rather than the
/// service stopped: both its MQTT and its HTTPS connections go through
/// proxies that are cut while the cloud changes a price, so the change hint
/// never reaches it and no pull can; healed, it pulls (on reconnecting to
/// the broker, and on the retained hint) and sells at the new price.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cut_off_sells_on_its_last_catalog_and_catches_up_when_back() {
    let w = CatalogWorld::start(&[("S001", "S001-A1")], "catalog_offline", "", "").await;
    w.import(
        "v1.jsonl",
        r#"{"sku":"SKU-1","name":"Mug","prices":[{"currency":"CAD","minor":1000}]}
"#,
    );
    let broker = SocketAddr::from(([127, 0, 0, 1], w.fleet.broker.port()));
    let mqtt = LinkProxy::start(broker).await.expect("mqtt proxy");
    let https = LinkProxy::start(w.cat.api_addr())
        .await
        .expect("https proxy");
    let agent = w
        .agent_via(
            "S001",
            "S001-A1",
            &format!("mqtts://{}", mqtt.addr()),
            &format!("https://{}", https.addr()),
            "",
        )
        .await;
    wait_catalog_version(&agent, 1, Duration::from_secs(20)).await;

    mqtt.set_mode(LinkMode::Cut);
    https.set_mode(LinkMode::Cut);
    wait_until_named(
        "the agent to see its broker link down",
        || async {
            agent
                .get("/v1/sync")
                .await
                .is_ok_and(|s| s["connected"] == json!(false))
        },
        Duration::from_secs(20),
    )
    .await
    .expect("agent offline");
    w.import(
        "v2.jsonl",
        r#"{"sku":"SKU-1","name":"Mug","prices":[{"currency":"CAD","minor":1200}]}
"#,
    );
    // The service serves v2 and hints it to the broker, which the agent
    // cannot reach; the agent sells on at v1.
    wait_until_named(
        "the service at catalog version 2",
        || async {
            w.cat
                .metrics()
                .await
                .is_ok_and(|m| m.lines().any(|l| l.trim() == "o2c_catalog_version 2"))
        },
        Duration::from_secs(10),
    )
    .await
    .expect("service at v2");
    let (status, body) = sell(&agent, "offline-1", "SKU-1", 1000).await;
    assert_eq!(status, 201, "{body}");
    let p = product(&agent, "SKU-1").await;
    assert_eq!(p["price_minor"], json!(1000), "{p}");
    let s = agent.get("/v1/catalog/status").await.expect("status");
    assert_eq!(s["version"], json!(1), "{s}");

    https.set_mode(LinkMode::Up);
    mqtt.set_mode(LinkMode::Up);
    wait_catalog_version(&agent, 2, Duration::from_secs(30)).await;
    let p = product(&agent, "SKU-1").await;
    assert_eq!(p["price_minor"], json!(1200), "{p}");
    let (status, body) = sell(&agent, "online-1", "SKU-1", 1200).await;
    assert_eq!(status, 201, "{body}");
}
