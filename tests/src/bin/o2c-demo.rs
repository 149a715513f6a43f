//! `o2c-demo`: the whole order-to-cash job on this machine. Two store
//! agents sell through simulated tills (card, cash, a few declined cards,
//! a few voids of paid orders), sync over MQTT to the ingest, which writes
//! Kafka (Tansu); the analytics service (`o2c-cloud analytics`: Redis
//! counters, ClickHouse facts, the `/sales` page); the saga services
//! (`o2c-cloud saga --service all`, on a
//! PostgreSQL database of the demo's own, against the `o2c-psp-sim`
//! processor simulator) carry every order to cash and send its status back
//! to its store. Store 2's link is cut for a while, then restored. Beside
//! them a web shop sells through the cloud order API (`o2c-cloud api`, on
//! the saga's database and Kafka prefix, with a catalog of its own SKUs in
//! CAD): a few customers place web orders (carry-out and ship-to-home,
//! cards authorised online, a few declined, some sent twice with the same
//! `Idempotency-Key`), and one cancels an order once it is paid
//! (`o2c_tests::demo::web`). The notification service (`o2c-cloud
//! notify`) mails the customers who gave an address (one store order in 3,
//! every web order) through an SMTP server of the demo's own
//! (`o2c_tests::demo::mail`). The stores reach the cloud as in a real
//! deployment: MQTT over mutual TLS, each agent with its own certificate,
//! and the catalog service (`o2c-cloud catalog`) brings the catalog down
//! to them; the tills ask their agent for each price, a price change
//! imported part-way reaches an online store within a second and the
//! offline one once its link is back (`o2c_tests::demo::catalog`).
//!
//! Every second it prints a table per store: the sync side (captured,
//! pending, synced, rejected, oldest pending) and the saga side (how many
//! of the store's orders are at each cloud status, as the store sees them),
//! with a row for the web channel (its orders' statuses as the API shows
//! them to their customers; `none` is `received`). At the end it checks
//! both sides: every event the stores wrote is in Kafka exactly once after
//! dedup by `event_id`, and every order reached a final status at its
//! store (completed, cancelled or refunded; declined cards cancelled, voids
//! after capture refunded) within the settle deadline; every web order's
//! `OrderCreated` is in Kafka exactly once after the same dedup, and every
//! web order reached a final status at the API (declined cards cancelled,
//! the one cancelled after payment refunded); every order with an address
//! got exactly the mail its final status calls for, each message once, and
//! no other order got any. Exit 1, naming the orders, otherwise.
//!
//! Services come from `O2C_TEST_MQTT_URL`, `O2C_TEST_KAFKA` and
//! `O2C_TEST_PG` (defaults: the dev services of `deploy/dev/services.sh`);
//! the stores' TLS broker is the demo's own Mosquitto.
//! Run it with `deploy/dev/demo.sh`, which starts them and builds the
//! binaries.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use o2c_tests::TestEnv;
use o2c_tests::analytics::AnalyticsProc;
use o2c_tests::api::WEB_STORE;
use o2c_tests::demo::catalog::{self as cat, DemoCatalog};
use o2c_tests::demo::mail::{Mail, with_email};
use o2c_tests::demo::web::{CUSTOMERS, WebShop, web_records};
use o2c_tests::demo::{CLOUD_HEADER, FINAL, PAID, lock, print_cloud_row, some, tally};
use o2c_tests::pipeline::{AgentProc, Ingest, agent_records};
use o2c_tests::proxy::LinkProxy;
use o2c_tests::saga::{CarrierSim, PspSim, SagaProc, SagaSettings, Tender, capture, order_body};

#[derive(Debug, Parser)]
#[command(
    name = "o2c-demo",
    about = "Run agents, broker, ingest, Kafka, the saga, the order API and the processor simulator end to end"
)]
struct Cli {
    /// Seconds of selling.
    #[arg(long, default_value_t = 35)]
    duration_secs: u64,
    /// Orders per second per store.
    #[arg(long, default_value_t = 20)]
    rate: u64,
    /// Web orders per second (all customers together; 0: none).
    #[arg(long, default_value_t = 2)]
    web_rate: u64,
    /// When store 2's link is cut (seconds after selling starts).
    #[arg(long, default_value_t = 8)]
    outage_at_secs: u64,
    /// How long it stays cut.
    #[arg(long, default_value_t = 10)]
    outage_secs: u64,
    /// When a price change is imported into the cloud's catalog (seconds
    /// after selling starts; by default while store 2 is cut off; at most
    /// half-way through the selling, so that the tills sell at it).
    #[arg(long, default_value_t = 12)]
    price_change_at_secs: u64,
    /// After selling, how long every order has to reach a final status.
    #[arg(long, default_value_t = 120)]
    settle_secs: u64,
}

/// One store: its agent and what its tills saw.
struct Store {
    name: &'static str,
    agent: AgentProc,
    captured: AtomicU64,
    failed: AtomicU64,
    /// Failed captures' errors (the first few).
    errors: Mutex<Vec<String>>,
    /// Card orders to void once the store sees them paid.
    to_void: Mutex<Vec<String>>,
    /// Orders voided after capture.
    voided: Mutex<BTreeSet<String>>,
    /// Orders paid with a declined card.
    declined: Mutex<BTreeSet<String>>,
}

impl Store {
    fn new(name: &'static str, agent: AgentProc) -> Self {
        Store {
            name,
            agent,
            captured: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            errors: Mutex::new(Vec::new()),
            to_void: Mutex::new(Vec::new()),
            voided: Mutex::new(BTreeSet::new()),
            declined: Mutex::new(BTreeSet::new()),
        }
    }
}

fn phase(text: &str) {
    println!("[o2c-demo] {text}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let dir = tempfile::Builder::new().prefix("o2c-demo-").tempdir()?;
    let result = run(&cli, dir.path()).await;
    if result.is_err() {
        let kept = dir.keep();
        eprintln!("[o2c-demo] FAILED; logs kept in {}", kept.display());
    }
    result
}

async fn run(cli: &Cli, dir: &Path) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let env = TestEnv::new();
    let prefix = env.prefix().to_owned();
    let (mqtt, kafka) = (env.mqtt_url().to_owned(), env.kafka_brokers().to_owned());
    phase(&format!(
        "starting the pipeline: fleet PKI and Mosquitto over mutual TLS, catalog service, ingest, \
         processor simulator, saga, order API, notifications and SMTP, analytics, 2 store agents \
         (topics {prefix}.*, logs in {})",
        dir.display()
    ));
    env.require_mqtt().await;
    env.require_kafka().await;
    env.require_postgres().await;
    let pg = env.create_database("saga").await?;
    let (s1, s2) = (env.store_id("s1"), env.store_id("s2"));
    let catalog = DemoCatalog::start(dir, &[&s1, &s2], &pg).await?;
    let tls_mqtt = catalog.mqtt_url();
    println!(
        "           stores' broker {tls_mqtt} (mutual TLS), catalog log {}",
        catalog.log_path().display()
    );

    let _ingest = Ingest::start_with_tables(
        dir,
        &prefix,
        &tls_mqtt,
        &kafka,
        &[],
        &catalog.service_tls("o2c-ingest")?,
    )
    .await
    .context("start the ingest")?;
    let psp = PspSim::start(dir)
        .await
        .context("start the processor simulator")?;
    let carrier = CarrierSim::start(dir)
        .await
        .context("start the carrier simulator")?;
    let settings = SagaSettings {
        prefix: prefix.clone(),
        mqtt_url: mqtt.clone(),
        brokers: kafka.clone(),
        pg: pg.clone(),
        psp_url: psp.url(),
        carrier_url: carrier.url(),
        extra_saga: String::new(),
        extra_tables: String::new(),
        extra_psp: String::new(),
        extra_kafka: String::new(),
    };
    // The saga's status publisher reaches the stores over TLS; the other
    // services keep the plain settings.
    let saga_settings = SagaSettings {
        mqtt_url: tls_mqtt.clone(),
        extra_tables: catalog.service_tls("o2c-status")?,
        ..settings.clone()
    };
    let saga = SagaProc::start(dir, &saga_settings, "all")
        .await
        .context("start the saga (o2c-cloud saga --service all)")?;
    println!(
        "           saga database {}, saga log {}",
        env.db_name("saga"),
        saga.log_path().display()
    );
    // The order API and the notifications start while the analytics service does.
    let side_start = tokio::spawn({
        let (d, s) = (dir.to_owned(), settings.clone());
        async move { tokio::join!(WebShop::start(&d, &s), Mail::start(&d, &s)) }
    });
    let analytics = AnalyticsProc::start(dir, &settings, "", "")
        .await
        .context("start the analytics service (o2c-cloud analytics; Redis and ClickHouse)")?;
    println!(
        "           live sales page {}/sales (open it while the demo sells)",
        analytics.base()
    );
    let (web, mail) = side_start.await?;
    let (web, mail) = (Arc::new(web?), Arc::new(mail?));
    println!(
        "           order API {} (web shop: {} customers), API log {}",
        web.url(),
        CUSTOMERS.len(),
        web.log_path().display()
    );
    println!("           {}", mail.describe());
    // Store 2 reaches the broker and the catalog service through a link
    // that the demo cuts.
    let link = [
        LinkProxy::start(catalog.broker_addr()).await?,
        LinkProxy::start(catalog.api_addr()).await?,
    ];
    let set_link = |up: bool| link.iter().for_each(|p| p.set_up(up));
    let extra = "[sync]\nack_timeout_ms = 2000";
    let a1_tables = catalog.agent_tables(&s1, catalog.api_addr());
    let a1 = AgentProc::start(
        dir,
        &s1,
        &format!("{s1}-A1"),
        &tls_mqtt,
        &format!("{extra}\n{a1_tables}"),
    )
    .await?;
    let proxied = format!("mqtts://{}", link[0].addr());
    let a2_tables = catalog.agent_tables(&s2, link[1].addr());
    let a2 = AgentProc::start(
        dir,
        &s2,
        &format!("{s2}-A1"),
        &proxied,
        &format!("{extra}\n{a2_tables}"),
    )
    .await?;
    for agent in [&a1, &a2] {
        cat::wait_first_catalog(agent).await?;
    }
    let stores = Arc::new(vec![Store::new("store 1", a1), Store::new("store 2", a2)]);
    let change_at = cli.price_change_at_secs.min(cli.duration_secs / 2).max(1);

    phase(&format!(
        "pipeline up in {:.1} s; selling for {} s at {} orders/s per store and {} web \
         orders/s; store 2's link is cut at {} s for {} s; a price change at {} s",
        t0.elapsed().as_secs_f64(),
        cli.duration_secs,
        cli.rate,
        cli.web_rate,
        cli.outage_at_secs,
        cli.outage_secs,
        change_at
    ));
    let selling = Duration::from_secs(cli.duration_secs);
    let start = Instant::now();
    let mut sellers = Vec::new();
    for i in 0..stores.len() {
        let (stores, mail) = (Arc::clone(&stores), Arc::clone(&mail));
        let period = Duration::from_micros(1_000_000 / cli.rate.max(1));
        sellers.push(tokio::spawn(async move {
            sell(&stores[i], i + 1, &mail, period, start + selling).await;
        }));
    }
    sellers.push(tokio::spawn({
        let (web, rate) = (Arc::clone(&web), cli.web_rate);
        async move { web.sell(rate, start, selling).await }
    }));

    let (cut, restore) = (cli.outage_at_secs, cli.outage_at_secs + cli.outage_secs);
    let settle = Duration::from_secs(cli.settle_secs);
    let mut settling = false;
    let mut second = 0;
    let mut watchers = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        // The display's own pace: one table a second.
        tick.tick().await;
        second += 1;
        if second == cut {
            set_link(false);
            println!(">>> cutting store 2's network link (it keeps selling offline)");
        }
        if second == restore {
            set_link(true);
            println!(">>> restoring store 2's network link");
        }
        if second == change_at {
            let (sku, minor) = cat::CHANGED;
            catalog.change_price()?;
            println!(">>> the cloud's catalog changes {sku}'s price to {minor} (version 2)");
            let since = Instant::now();
            for i in 0..stores.len() {
                let stores = Arc::clone(&stores);
                watchers.push(tokio::spawn(async move {
                    let s = &stores[i];
                    cat::watch(s.name, &s.agent, since, Duration::from_secs(120)).await
                }));
            }
        }
        let selling_done = start.elapsed() >= selling;
        if selling_done && !link[0].is_up() {
            set_link(true);
            println!(">>> restoring store 2's network link (selling is over)");
        }
        if selling_done && !settling {
            settling = true;
            phase(&format!(
                "selling done; settling: waiting up to {} s for the outboxes to drain and every \
                 order to reach a final status",
                cli.settle_secs
            ));
        }
        let settled = print_table(&stores, second, link[0].is_up()).await;
        let web_settled = web.print_row().await;
        mail.print_row();
        if selling_done && settled && web_settled {
            break;
        }
        if start.elapsed() > selling + settle {
            println!(">>> settle deadline ({} s) passed", cli.settle_secs);
            break;
        }
    }
    for s in sellers {
        s.await?;
    }
    let mut served = Vec::new();
    for w in watchers {
        served.push(w.await?);
    }
    println!();
    phase(&format!(
        "sold for {} s, settling took {:.0} s more",
        cli.duration_secs,
        start.elapsed().saturating_sub(selling).as_secs_f64()
    ));
    phase(
        "checking Kafka, every order's final status at its store and every web order's at the API",
    );
    // The web shop's records are read while the stores are checked.
    let web_kafka = tokio::spawn({
        let (kafka, prefix) = (kafka.clone(), prefix.clone());
        async move { web_records(&kafka, &prefix).await }
    });
    let checked = check(&stores, &kafka, &prefix).await;
    let web_checked = match web_kafka.await {
        Ok(Ok(records)) => web.check(records).await,
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(e.into()),
    };
    let counted = analytics_check(&stores, web.created(), &analytics).await;
    let mailed = mail.check_all(&web, stores.iter().map(|s| &s.agent)).await;
    if let Ok(stats) = psp.stats().await {
        println!(
            "processor simulator: {} captures, {} refunds, {} declines",
            stats["captures"].as_array().map_or(0, Vec::len),
            stats["refunds"].as_array().map_or(0, Vec::len),
            stats["declines"]
        );
    }
    if checked.is_err() || web_checked.is_err() {
        eprintln!("saga log: {}", saga.log_path().display());
    }
    if web_checked.is_err() {
        eprintln!("order API log: {}", web.log_path().display());
    }
    let priced = cat::check_served(&served);
    let failures: Vec<String> = [checked, web_checked, counted, mailed, priced]
        .into_iter()
        .filter_map(|r| r.err().map(|e| format!("{e:#}")))
        .collect();
    if !failures.is_empty() {
        bail!("{}", failures.join("\n"));
    }
    Ok(())
}

/// The analytics side: today's counters (by capture time) count every
/// order the stores captured and the web shop created exactly once, voids,
/// cancellations and declined cards netted out; prints them per store (the
/// web shop's under its store, `WEB`).
async fn analytics_check(stores: &[Store], web: u64, an: &AnalyticsProc) -> anyhow::Result<()> {
    let captured: u64 = web
        + stores
            .iter()
            .map(|s| s.captured.load(Ordering::Relaxed))
            .sum::<u64>();
    let deadline = Instant::now() + Duration::from_secs(60);
    let live = loop {
        let (_, live) = an.get("/v1/analytics/live").await?;
        if live["today"]["orders"].as_u64() == Some(captured) || Instant::now() > deadline {
            break live;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let today = &live["today"];
    println!(
        "analytics (Redis, by capture time): {} orders today, {} after voids and cancellations, net {} CAD minor",
        today["orders"], today["net_orders"], today["net"]["CAD"]
    );
    let rows = stores.iter().map(|s| (s.name, s.agent.store_id.as_str()));
    for (name, store) in rows.chain([("web", WEB_STORE)]) {
        let f = &today["by_store"][store];
        println!(
            "  {name}: {} orders, {} voided or cancelled, net {} CAD minor",
            f["orders"], f["voids"], f["net"]["CAD"]
        );
    }
    if today["orders"].as_u64() != Some(captured) {
        bail!(
            "analytics counted {} orders today, the stores captured and the web shop created {captured}",
            today["orders"]
        );
    }
    Ok(())
}

/// One store's tills: an order every `period`.
/// 55% card, 35% cash, 5% card ship-to-home, 5% a declined card; one in
/// 40 is a card order to void once the store sees it paid. One in 3 gives
/// the customer's e-mail address (`mail`). Until `end`.
async fn sell(s: &Store, store_no: usize, mail: &Mail, period: Duration, end: Instant) {
    let mut tick = tokio::time::interval(period);
    let mut n = 0u64;
    while Instant::now() < end {
        // The tills' pace.
        tick.tick().await;
        n += 1;
        let key = format!("s{store_no}-sale-{n}");
        let card = Tender::Card(format!("tok_demo_{key}"));
        let (tender, ship) = match n % 20 {
            0..=9 => (card, false),
            10..=16 => (Tender::Cash, false),
            17 | 18 => (card, n % 20 == 18),
            _ => (Tender::Card(format!("tok_decline_{key}")), false),
        };
        let declined = matches!(&tender, Tender::Card(t) if t.starts_with("tok_decline"));
        let sku = cat::SKUS[(n % 4) as usize];
        let qty = 1 + (n % 3) as i64;
        let mut body = order_body(sku, qty, &tender, ship);
        let email = n.is_multiple_of(3).then(|| with_email(&mut body, &key));
        // The till asks its agent for the price in force, then sells.
        let captured = match cat::price_at(&s.agent, sku).await {
            Ok(unit) => {
                cat::price_by_catalog(&mut body, unit * qty);
                capture(&s.agent, &key, &body)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(format!("price of {sku}: {e:#}")),
        };
        match captured {
            Ok(id) => {
                s.captured.fetch_add(1, Ordering::Relaxed);
                if let Some(email) = email {
                    mail.expect(&id, &email, ship);
                }
                if declined {
                    lock(&s.declined).insert(id);
                } else if n % 40 == 3 {
                    lock(&s.to_void).push(id);
                }
            }
            Err(e) => {
                s.failed.fetch_add(1, Ordering::Relaxed);
                let mut errors = lock(&s.errors);
                if errors.len() < 5 {
                    errors.push(format!("{key}: {e}"));
                }
            }
        }
    }
}

/// Voids the store's pending voids that it now sees paid.
async fn void_paid(s: &Store, statuses: &BTreeMap<String, Option<String>>) {
    let due: Vec<String> = lock(&s.to_void)
        .iter()
        .filter(|id| {
            statuses
                .get(*id)
                .and_then(|st| st.as_deref())
                .is_some_and(|st| PAID.contains(&st))
        })
        .cloned()
        .collect();
    for id in due {
        if s.agent.cancel(&id).await.is_ok() {
            lock(&s.to_void).retain(|v| *v != id);
            lock(&s.voided).insert(id);
        }
    }
}

/// Prints the tables; voids what is due. Returns whether everything
/// settled: outboxes drained, nothing left to void, every order final.
async fn print_table(stores: &[Store], second: u64, link2_up: bool) -> bool {
    let mut settled = true;
    println!(
        "\n t={second:>3}s  store    link   captured  pending   synced  rejected  oldest-pending"
    );
    for (i, s) in stores.iter().enumerate() {
        let v = s.agent.sync_status().await.unwrap_or_default();
        let pending = v["pending_events"].as_u64().unwrap_or(0);
        settled &= pending == 0 && v["connected"] == true;
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
    println!("{CLOUD_HEADER}");
    for s in stores {
        let statuses: BTreeMap<String, Option<String>> = match s.agent.order_statuses().await {
            Ok(list) => list.into_iter().collect(),
            Err(e) => {
                println!("         {:<8} cannot list orders: {e}", s.name);
                settled = false;
                continue;
            }
        };
        void_paid(s, &statuses).await;
        let finals = statuses
            .values()
            .filter(|v| v.as_deref().is_some_and(|st| FINAL.contains(&st)))
            .count();
        let to_void = lock(&s.to_void).len();
        let voided = lock(&s.voided).len();
        settled &= finals == statuses.len() && to_void == 0;
        print_cloud_row(
            s.name,
            statuses.values().map(Option::as_deref),
            &format!("{voided} done, {to_void} due"),
        );
    }
    settled
}

/// Both sides: Kafka holds every event the stores wrote exactly once after
/// dedup, and every order is final at its store (declined cards
/// cancelled, voids after capture refunded).
async fn check(stores: &[Store], brokers: &str, prefix: &str) -> anyhow::Result<()> {
    let mut written = BTreeSet::new();
    let mut captured = 0;
    let mut not_final = Vec::new();
    let mut wrong = Vec::new();
    let mut ends = Vec::new();
    for s in stores {
        let failed = s.failed.load(Ordering::Relaxed);
        if failed > 0 {
            bail!(
                "{}: {failed} captures failed:\n  {}",
                s.name,
                some(&lock(&s.errors))
            );
        }
        let n = s.captured.load(Ordering::Relaxed);
        captured += n;
        let statuses = s.agent.order_statuses().await?;
        if statuses.len() as u64 != n {
            bail!(
                "{}: {n} orders got a 2xx but the store lists {}",
                s.name,
                statuses.len()
            );
        }
        written.extend(s.agent.outbox()?.into_iter().map(|(_, id, _)| id));
        let (voided, declined) = (lock(&s.voided).clone(), lock(&s.declined).clone());
        for (id, st) in statuses {
            let st = st.unwrap_or_else(|| "no status".into());
            ends.push(st.clone());
            let line = format!("{} order {id}: {st}", s.name);
            if !FINAL.contains(&st.as_str()) {
                not_final.push(line);
            } else if voided.contains(&id) && st != "refunded" {
                wrong.push(format!("{line} (voided after capture: expected refunded)"));
            } else if declined.contains(&id) && st != "cancelled" {
                wrong.push(format!("{line} (declined card: expected cancelled)"));
            }
        }
        for id in lock(&s.to_void).iter() {
            wrong.push(format!(
                "{} order {id}: never seen paid, so never voided",
                s.name
            ));
        }
    }

    let mut seen = BTreeSet::new();
    let mut duplicates = 0;
    for (topic, view) in agent_records(brokers, prefix, Duration::from_secs(60)).await? {
        println!(
            "Kafka {topic}: {} distinct event_ids from the stores, {} raw duplicates removed by dedup",
            view.by_event.len(),
            view.raw_duplicates()
        );
        duplicates += view.raw_duplicates();
        seen.extend(view.event_ids());
    }
    let missing: Vec<String> = written.difference(&seen).cloned().collect();
    let extra: Vec<String> = seen.difference(&written).cloned().collect();
    println!(
        "orders at the stores: {}",
        tally(ends.iter().map(String::as_str))
    );

    let mut failures = Vec::new();
    if !missing.is_empty() || !extra.is_empty() {
        let (m, x) = (missing.len(), extra.len());
        failures.push(format!(
            "MISMATCH: {m} events the stores wrote are missing from Kafka, {x} unexpected:\n  {}",
            some(&[missing, extra].concat())
        ));
    }
    if !not_final.is_empty() {
        failures.push(format!(
            "NOT SETTLED: {} orders did not reach a final status (completed, cancelled, refunded):\n  {}",
            not_final.len(),
            some(&not_final)
        ));
    }
    if !wrong.is_empty() {
        failures.push(format!(
            "WRONG OUTCOME: {} orders:\n  {}",
            wrong.len(),
            some(&wrong)
        ));
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("\n"));
    }
    let voids: usize = stores.iter().map(|s| lock(&s.voided).len()).sum();
    let declines: usize = stores.iter().map(|s| lock(&s.declined).len()).sum();
    println!(
        "OK: all {} events the stores wrote (captures and voids) are in Kafka exactly once \
         after dedup by event_id ({duplicates} raw duplicates removed).",
        written.len()
    );
    println!(
        "OK: all {captured} orders reached a final status at their store; {declines} declined \
         cards were cancelled and {voids} voids after capture were refunded."
    );
    Ok(())
}
