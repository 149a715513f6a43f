//! `analytics`: the sales analytics service (`o2c-cloud analytics`) against
//! a private Tansu (memory storage) and the dev Redis and ClickHouse.
//!
//! 1. **Backfill**: `--n` (default 1,000,000) historical `OrderCreated`
//!    events (captured over the last 30 days, 50 stores, 20 categories,
//!    two lines, a split tender) are produced first. A bare rdkafka
//!    consumer reads them all (the baseline: what reading alone costs),
//!    then the service starts from nothing and the time until every order
//!    is in the Redis day counters and in `fact_orders` is taken, with the
//!    CPU of the service, Redis and ClickHouse.
//! 2. **Latency**: at `--batch` orders/s (default 1,000) for 20 s, every
//!    10th order is followed to its Redis record (polled every 2 ms) and
//!    every 100th to its `fact_orders` row (polled every 50 ms), from just
//!    before its produce call.
//!
//! Metrics: `backfill_s`, `backfill_events_per_s`,
//! `events_per_service_cpu_s` and per core of service + Redis +
//! ClickHouse, `redis_p50_ms`/`p99`/`max`, `clickhouse_p50_ms`/`p99`/`max`.
//! Baseline: `bare_consume_per_s` and `bare_consume_events_per_cpu_s`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use o2c_protocol::{
    AgentId, Currency, Envelope, Event, EventId, EventType, Fulfillment, KafkaTopics, Money, Order,
    OrderId, OrderLine, Payment, StoreId, TerminalId,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message as _};

use super::cpu::cpu_seconds_of;
use super::{BenchArgs, BenchError, Measurement, Scenario, harness};
use crate::analytics::AnalyticsProc;
use crate::saga::SagaSettings;
use crate::tansu::{PrivateTansu, TansuStorage};

/// The registry entry.
pub const SCENARIO: Scenario = Scenario {
    name: "analytics",
    about: "sales analytics: backfill of --n orders, event → Redis / ClickHouse latency at --batch orders/s (needs Redis and ClickHouse)",
    run,
};

const DEFAULT_N: u64 = 1_000_000;
const DEFAULT_RATE: u64 = 1_000;
const LATENCY_SECS: u64 = 20;
const DEADLINE: Duration = Duration::from_secs(1800);
/// Partitions of each topic (the dev topology's order topics have 24; a
/// single instance reads them all either way).
const PARTITIONS: i32 = 6;

fn run(args: &BenchArgs) -> Result<Measurement, BenchError> {
    let n = args.n.unwrap_or(DEFAULT_N);
    let rate = args.batch.unwrap_or(DEFAULT_RATE);
    if n == 0 || rate == 0 {
        return Err(BenchError::Invalid(
            "--n and --batch must be positive".into(),
        ));
    }
    super::block_on(measure(n, rate))
}

fn order_event(i: u64, captured: time::OffsetDateTime) -> Result<Envelope, BenchError> {
    let cad = Currency::from_code("CAD").map_err(|e| BenchError::Invalid(e.to_string()))?;
    let bad = |e: o2c_protocol::IdError| BenchError::Invalid(e.to_string());
    let store = StoreId::new(format!("S{:03}", i % 50)).map_err(bad)?;
    let order = Order {
        order_id: OrderId::from_uuid(uuid::Uuid::now_v7()).map_err(bad)?,
        store_id: store.clone(),
        terminal_id: TerminalId::new("T1").map_err(bad)?,
        currency: cad,
        lines: vec![
            OrderLine {
                sku: format!("SKU-{}", i % 5000),
                quantity: 1,
                unit_price: Money::new(1000, cad),
                category: Some(format!("cat-{}", i % 20)),
            },
            OrderLine {
                sku: format!("SKU-{}", (i + 7) % 5000),
                quantity: 2,
                unit_price: Money::new(250, cad),
                category: Some(format!("cat-{}", (i + 7) % 20)),
            },
        ],
        payments: vec![
            Payment::Cash {
                amount: Money::new(500, cad),
            },
            Payment::Cash {
                amount: Money::new(1000, cad),
            },
        ],
        fulfillment: Fulfillment::CarryOut {},
        customer: None,
        captured_at: captured,
        catalog_version: None,
        stock_check: None,
        channel: None,
        customer_id: None,
    };
    Ok(Envelope {
        event_id: EventId::from_uuid(uuid::Uuid::now_v7()).map_err(bad)?,
        schema_version: o2c_protocol::SCHEMA_VERSION,
        store_id: store,
        agent_id: AgentId::new("A1").map_err(bad)?,
        seq: None,
        occurred_at: captured,
        traceparent: None,
        payload: Event::OrderCreated(Box::new(order)),
    })
}

async fn measure(n: u64, rate: u64) -> Result<Measurement, BenchError> {
    let tansu = PrivateTansu::start_with(TansuStorage::Memory)
        .await
        .map_err(|e| harness("starting Tansu (memory storage)", e))?;
    let brokers = tansu.brokers();
    let env = crate::TestEnv::new();
    let topics = KafkaTopics::new(format!("{}.", env.prefix()))
        .map_err(|e| BenchError::Invalid(e.to_string()))?;
    let created = topics.for_event(EventType::OrderCreated);
    // Every topic the service reads, and the dead-letter topic.
    let mut names: Vec<String> = o2c_analytics::service::EVENT_TYPES
        .iter()
        .map(|t| topics.for_event(*t))
        .collect();
    names.push(topics.dlq());
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    crate::create_topics_with_partitions(&brokers, &refs, PARTITIONS)
        .await
        .map_err(|e| harness("creating topics", e))?;
    let producer = o2c_runtime::kafka::producer(&brokers, 5).map_err(|e| harness("producer", e))?;
    let mut m = Measurement::default();
    m.param("partitions", PARTITIONS);
    m.param("n", n);
    m.param("rate_per_s", rate);

    // 1. The history, produced first.
    let now = time::OffsetDateTime::now_utc();
    let t0 = Instant::now();
    let mut sends = futures::stream::FuturesUnordered::new();
    for i in 0..n {
        let captured = now - time::Duration::seconds(((i * 7919) % (30 * 86_400)) as i64);
        let env = order_event(i, captured)?;
        let bytes = env
            .encode()
            .map_err(|e| BenchError::Invalid(e.to_string()))?;
        let key = env.payload.order_id().to_string();
        let (p, t) = (producer.clone(), created.clone());
        sends.push(async move { o2c_runtime::kafka::send(&p, &t, &key, &[], &bytes).await });
        if sends.len() >= 20_000 {
            drain(&mut sends, 10_000).await?;
        }
    }
    drain(&mut sends, 0).await?;
    m.metric("produce_s", t0.elapsed().as_secs_f64());

    // Baseline: a bare consumer reading the same records.
    let (bare_s, bare_cpu) = {
        let (b, t) = (brokers.clone(), created.clone());
        tokio::task::spawn_blocking(move || bare_read(&b, &t, n))
            .await
            .map_err(|e| harness("bare consumer", e))??
    };
    m.baseline("bare_consume_s", bare_s);
    m.baseline("bare_consume_per_s", n as f64 / bare_s);
    m.baseline(
        "bare_consume_events_per_cpu_s",
        n as f64 / bare_cpu.max(0.01),
    );

    // The service from nothing.
    let settings = SagaSettings {
        prefix: env.prefix().to_owned(),
        mqtt_url: "mqtt://127.0.0.1:1883".into(),
        brokers: brokers.clone(),
        pg: String::new(),
        psp_url: String::new(),
        carrier_url: String::new(),
        extra_saga: String::new(),
        extra_tables: String::new(),
        extra_psp: String::new(),
        extra_kafka: String::new(),
    };
    let stores_before = store_cpu();
    let t0 = Instant::now();
    let an = AnalyticsProc::start(env.path(), &settings, "", "")
        .await
        .map_err(|e| harness("starting o2c-cloud analytics", e))?;
    let counters = an.counters().await;
    let facts = an.facts();
    let days: Vec<String> = (0..=31)
        .map(|d| {
            format!(
                "d:{}",
                o2c_analytics::fold::day_key((now - time::Duration::days(d)).date())
            )
        })
        .collect();
    let mut counted = 0;
    let mut rows = 0;
    while (counted as u64) < n || rows < n {
        if t0.elapsed() > DEADLINE {
            return Err(BenchError::Invalid(format!(
                "backfill not done in {DEADLINE:?}: {counted} counted, {rows} rows\n{}",
                an.log_tail()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        counted = counters
            .field(&days, "orders")
            .await
            .map_err(|e| harness("reading counters", e))?
            .iter()
            .sum::<i64>();
        rows = facts
            .count_orders()
            .await
            .map_err(|e| harness("counting facts", e))?;
    }
    let backfill = t0.elapsed().as_secs_f64();
    let service_cpu = cpu_seconds_of(an.pid())?;
    let stores_after = store_cpu();
    m.metric("backfill_s", backfill);
    m.metric("backfill_events_per_s", n as f64 / backfill);
    m.metric("service_cpu_s", service_cpu);
    m.metric("events_per_service_cpu_s", n as f64 / service_cpu.max(0.01));
    let redis_cpu = stores_after.0 - stores_before.0;
    let ch_cpu = stores_after.1 - stores_before.1;
    m.metric("redis_cpu_s", redis_cpu);
    m.metric("clickhouse_cpu_s", ch_cpu);
    m.metric(
        "events_per_cpu_s_service_redis_clickhouse",
        n as f64 / (service_cpu + redis_cpu + ch_cpu).max(0.01),
    );

    // 2. Latency at a steady rate.
    let mut redis_h = Histogram::<u64>::new(3).map_err(|e| BenchError::Histogram(e.to_string()))?;
    let mut ch_h = Histogram::<u64>::new(3).map_err(|e| BenchError::Histogram(e.to_string()))?;
    let total = rate * LATENCY_SECS;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let counters = Arc::new(counters);
    let mut probes = Vec::new();
    for i in 0..total {
        tick.tick().await;
        let env = order_event(n + i, time::OffsetDateTime::now_utc())?;
        let bytes = env
            .encode()
            .map_err(|e| BenchError::Invalid(e.to_string()))?;
        let id = env.payload.order_id().to_string();
        let sent = Instant::now();
        let (p, t, key) = (producer.clone(), created.clone(), id.clone());
        tokio::spawn(async move { o2c_runtime::kafka::send(&p, &t, &key, &[], &bytes).await });
        if i % 10 == 0 {
            let (c, key) = (counters.clone(), format!("o:{id}"));
            let to_ch = (i % 100 == 0).then(|| (facts.clone(), id.clone()));
            probes.push(tokio::spawn(async move {
                let redis_ms = loop {
                    if c.exists(&key).await.unwrap_or(false) {
                        break sent.elapsed().as_secs_f64() * 1000.0;
                    }
                    if sent.elapsed() > Duration::from_secs(60) {
                        break f64::INFINITY;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                };
                let ch_ms = match to_ch {
                    None => None,
                    Some((f, id)) => Some(loop {
                        if f.has_order(&id).await.unwrap_or(false) {
                            break sent.elapsed().as_secs_f64() * 1000.0;
                        }
                        if sent.elapsed() > Duration::from_secs(120) {
                            break f64::INFINITY;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }),
                };
                (redis_ms, ch_ms)
            }));
        }
    }
    for p in probes {
        let (r, c) = p.await.map_err(|e| harness("latency probe", e))?;
        record(&mut redis_h, r)?;
        if let Some(c) = c {
            record(&mut ch_h, c)?;
        }
    }
    for (name, h) in [("redis", &redis_h), ("clickhouse", &ch_h)] {
        m.metric(&format!("{name}_samples"), h.len() as f64);
        m.metric(
            &format!("{name}_p50_ms"),
            h.value_at_quantile(0.5) as f64 / 1000.0,
        );
        m.metric(
            &format!("{name}_p99_ms"),
            h.value_at_quantile(0.99) as f64 / 1000.0,
        );
        m.metric(&format!("{name}_max_ms"), h.max() as f64 / 1000.0);
    }
    drop(an);
    drop(tansu);
    Ok(m)
}

fn record(h: &mut Histogram<u64>, ms: f64) -> Result<(), BenchError> {
    if !ms.is_finite() {
        return Err(BenchError::Invalid("an order never showed up".into()));
    }
    h.record((ms * 1000.0) as u64)
        .map_err(|e| BenchError::Histogram(e.to_string()))
}

pub(super) async fn drain(
    sends: &mut futures::stream::FuturesUnordered<
        impl std::future::Future<Output = Result<(), rdkafka::error::KafkaError>>,
    >,
    down_to: usize,
) -> Result<(), BenchError> {
    use futures::StreamExt as _;
    while sends.len() > down_to {
        if let Some(r) = sends.next().await {
            r.map_err(|e| harness("produce", e))?;
        }
    }
    Ok(())
}

/// Reads `n` records of `topic` with a plain consumer: seconds and the
/// CPU seconds of this process meanwhile.
pub(super) fn bare_read(brokers: &str, topic: &str, n: u64) -> Result<(f64, f64), BenchError> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "o2c-bench-bare")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|e| harness("bare consumer", e))?;
    c.subscribe(&[topic]).map_err(|e| harness("subscribe", e))?;
    let cpu0 = cpu_seconds_of(std::process::id())?;
    let t0 = Instant::now();
    let mut seen = 0u64;
    let mut bytes = 0usize;
    while seen < n {
        if t0.elapsed() > DEADLINE {
            return Err(BenchError::Invalid(format!(
                "bare consumer read {seen} of {n}"
            )));
        }
        if let Some(r) = c.poll(Duration::from_millis(100)) {
            let m = r.map_err(|e| harness("bare poll", e))?;
            bytes += m.payload().map_or(0, <[u8]>::len);
            seen += 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds_of(std::process::id())? - cpu0;
    std::hint::black_box(bytes);
    Ok((secs, cpu))
}

/// CPU seconds so far of Redis and ClickHouse (the dev servers), by
/// process name.
fn store_cpu() -> (f64, f64) {
    let mut redis = 0.0;
    let mut ch = 0.0;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return (0.0, 0.0);
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let comm = comm.trim();
        let cpu = cpu_seconds_of(pid).unwrap_or(0.0);
        if comm == "redis-server" {
            redis += cpu;
        } else if comm.starts_with("clickhouse") {
            ch += cpu;
        }
    }
    (redis, ch)
}
