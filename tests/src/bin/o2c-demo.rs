//! `o2c-demo`: the whole pipeline on this machine. Two store agents sell
//! through simulated terminals, sync over MQTT to the ingest, which writes
//! Kafka (Tansu). One store's link is cut for a while, then restored. A
//! table per store is printed every second; at the end Kafka is checked:
//! every captured order must be there exactly once after dedup by
//! `event_id`. Run it with `deploy/dev/demo.sh` (which starts the services
//! and builds the binaries).

use std::collections::BTreeSet;
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use o2c_protocol::MqttUrl;
use o2c_tests::pipeline::{AgentProc, Ingest, KafkaView};
use o2c_tests::proxy::LinkProxy;
use o2c_tests::{consume_all, topic_record_count};

#[derive(Debug, Parser)]
#[command(
    name = "o2c-demo",
    about = "Run agents, broker, ingest and Kafka end to end"
)]
struct Cli {
    /// Seconds of selling.
    #[arg(long, default_value_t = 30)]
    duration_secs: u64,
    /// Orders per second per store.
    #[arg(long, default_value_t = 40)]
    rate: u64,
    /// When store 2's link is cut (seconds after start).
    #[arg(long, default_value_t = 8)]
    outage_at_secs: u64,
    /// How long it stays cut.
    #[arg(long, default_value_t = 10)]
    outage_secs: u64,
    /// MQTT broker.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    mqtt: String,
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    kafka: String,
}

struct Store {
    name: &'static str,
    agent: AgentProc,
    captured: AtomicU64,
    failed: AtomicU64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let dir = tempfile::Builder::new().prefix("o2c-demo-").tempdir()?;
    let prefix = format!("demo{:08x}", rand::random::<u32>());
    let url: MqttUrl = cli.mqtt.parse()?;
    let upstream = (url.host.as_str(), url.port)
        .to_socket_addrs()?
        .next()
        .context("resolve the MQTT broker")?;
    println!(
        "o2c demo: topics {prefix}.*, logs in {}",
        dir.path().display()
    );

    let _ingest = Ingest::start(dir.path(), &prefix, &cli.mqtt, &cli.kafka)
        .await
        .context("start the ingest")?;
    let proxy = LinkProxy::start(upstream).await?;
    let s1 = format!("{prefix}-S1");
    let s2 = format!("{prefix}-S2");
    let a1 = AgentProc::start(
        dir.path(),
        &s1,
        &format!("{s1}-A1"),
        &cli.mqtt,
        "ack_timeout_ms = 2000",
    )
    .await?;
    let proxied = format!("mqtt://{}", proxy.addr());
    let a2 = AgentProc::start(
        dir.path(),
        &s2,
        &format!("{s2}-A1"),
        &proxied,
        "ack_timeout_ms = 2000",
    )
    .await?;
    let stores: Arc<Vec<Store>> = Arc::new(vec![
        Store {
            name: "store 1",
            agent: a1,
            captured: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        },
        Store {
            name: "store 2",
            agent: a2,
            captured: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        },
    ]);

    let selling = Duration::from_secs(cli.duration_secs);
    let start = Instant::now();
    let mut sellers = Vec::new();
    for i in 0..stores.len() {
        let stores = Arc::clone(&stores);
        let period = Duration::from_micros(1_000_000 / cli.rate.max(1));
        sellers.push(tokio::spawn(async move {
            let s = &stores[i];
            let mut tick = tokio::time::interval(period);
            let mut n = 0u64;
            while start.elapsed() < selling {
                tick.tick().await;
                n += 1;
                match s.agent.post_order(&format!("sale-{n}")).await {
                    Ok(_) => s.captured.fetch_add(1, Ordering::Relaxed),
                    Err(_) => s.failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }

    let (cut, restore) = (cli.outage_at_secs, cli.outage_at_secs + cli.outage_secs);
    let mut second = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        second += 1;
        if second == cut {
            proxy.set_up(false);
            println!(">>> cutting store 2's network link (it keeps selling offline)");
        }
        if second == restore {
            proxy.set_up(true);
            println!(">>> restoring store 2's network link");
        }
        print_table(&stores, second, proxy.is_up()).await;
        let selling_done = start.elapsed() >= selling;
        if selling_done && !proxy.is_up() {
            proxy.set_up(true);
        }
        if selling_done && all_drained(&stores).await {
            break;
        }
        if start.elapsed() > selling + Duration::from_secs(180) {
            bail!("the stores did not drain within 180 s of the end of selling");
        }
    }
    for s in sellers {
        s.await?;
    }
    check_kafka(&stores, &cli.kafka, &prefix).await
}

async fn print_table(stores: &[Store], second: u64, link2_up: bool) {
    println!(
        "\n t={second:>3}s  store    link   captured  pending   synced  rejected  oldest-pending"
    );
    for (i, s) in stores.iter().enumerate() {
        let v = s.agent.sync_status().await.unwrap_or_default();
        let pending = v["pending_events"].as_u64().unwrap_or(0);
        let acked = v["last_acked_seq"].as_u64().unwrap_or(0);
        let rejected = v["rejected_events"].as_u64().unwrap_or(0);
        let lag = v["oldest_pending_age_ms"]
            .as_u64()
            .map_or("-".into(), |ms| format!("{ms} ms"));
        let link = if i == 1 && !link2_up { "DOWN" } else { "up" };
        println!(
            "         {:<8} {:<5} {:>9} {:>8} {:>8} {:>9}  {}",
            s.name,
            link,
            s.captured.load(Ordering::Relaxed),
            pending,
            acked.saturating_sub(rejected),
            rejected,
            lag
        );
    }
}

async fn all_drained(stores: &[Store]) -> bool {
    for s in stores {
        match s.agent.sync_status().await {
            Ok(v) if v["pending_events"] == 0 && v["connected"] == true => {}
            _ => return false,
        }
    }
    true
}

async fn check_kafka(stores: &[Store], brokers: &str, prefix: &str) -> anyhow::Result<()> {
    let mut expected = BTreeSet::new();
    let mut captured = 0;
    for s in stores {
        captured += s.captured.load(Ordering::Relaxed);
        let failed = s.failed.load(Ordering::Relaxed);
        if failed > 0 {
            bail!("{}: {failed} captures failed", s.name);
        }
        expected.extend(s.agent.outbox()?.into_iter().map(|(_, id, _)| id));
    }
    let topic = format!("{prefix}.orders.created");
    let count = usize::try_from(topic_record_count(brokers, &topic).await?)?;
    let view = KafkaView::new(consume_all(brokers, &topic, count, Duration::from_secs(60)).await?);
    let got = view.event_ids();
    println!(
        "\nKafka {topic}: {count} records, {} distinct event_ids, {} raw duplicates removed by dedup",
        got.len(),
        view.raw_duplicates()
    );
    if expected.len() as u64 != captured {
        bail!(
            "{captured} orders got a 201 but the outboxes hold {}",
            expected.len()
        );
    }
    if got != expected {
        let missing = expected.difference(&got).count();
        let extra = got.difference(&expected).count();
        bail!("MISMATCH: {missing} captured orders missing from Kafka, {extra} unexpected");
    }
    println!(
        "OK: all {captured} captured orders are in Kafka exactly once after dedup by event_id."
    );
    Ok(())
}
