//! `api`: the cloud order API (issue 19), from a customer's request to its
//! 201, and from the 201 to the order's `OrderCreated` in
//! `{prefix}.orders.created`, at an open-loop offered rate.
//!
//! Starts `o2c-cloud api` alone (the workspace's built binary beside
//! `o2c-bench`, [`crate::bin_path`]): its own fresh database on the shared
//! PostgreSQL, and a private Tansu with memory storage, as the `saga`
//! bench uses (`O2C_BENCH_KAFKA=shared`: the dev services' Tansu, SQLite
//! storage, instead). Its quotas are raised above the run. A catalog of
//! [`SKUS`] products is imported (the API migrates the inventory schema
//! itself, so a ship-to-home order's stock check reserves for real in the
//! same database; `ship_unverified` counts any that did not), and
//! [`CUSTOMERS`] tokens are minted up front and used round-robin, so the
//! requests spread over the API's PostgreSQL lanes (picked by customer) as
//! many customers' would.
//!
//! The schedule is fixed: request `i` is due at `start + i / rate` and is
//! sent on its own task at that time, whatever the answers before it are
//! doing (open loop). Each latency runs from the request's *scheduled*
//! time, so a stall is charged to every request that was due during it
//! (no coordinated omission); `send_lag_*` shows how far the generator
//! itself fell behind its schedule. Every request that is not a 201
//! (status, transport failure or unreadable body) is counted as an error.
//!
//! Phases, back to back:
//! 1. Warm-up: two seconds of orders at the rate (HTTP connections,
//!    PostgreSQL lanes, the stock lane, the relay's producer), then until
//!    each of them is in Kafka. Not measured.
//! 2. Baseline: `--n` `GET /openapi.json` at the same rate, same client,
//!    same server: the HTTP floor of this machine at this rate (routing,
//!    the anonymous quota, a socket round trip) without a token check,
//!    the catalog, PostgreSQL or the relay.
//! 3. `--n` orders (default 15,000, 30 s at the default rate) at `--batch`
//!    orders/s (default 500): carry-out web orders, and every
//!    [`SHIP_EVERY`]th one shipped to home (stock reserved before the 201).
//!
//! Kafka side: one consumer (its own thread, manual assignment from the
//! beginning of every partition, no group) reads `orders.created` from
//! before the warm-up; a record is matched to its order by its key (the
//! order id). Two latencies from the 201 (the moment the bench had read its
//! body), both by this machine's wall clock:
//! - `kafka_consumed_*`: to the record's receipt by the consumer. This is
//!   the headline: the order is in Kafka and readable by the saga, relay
//!   and broker included. The consumer's fetch ([`FETCH_WAIT_MS`]) is
//!   answered when the record lands (the project's Tansu carries
//!   `deploy/dev/tansu/fetch.patch`; BENCHMARKS.md issue 17).
//! - `kafka_timestamp_*`: to the record's Kafka timestamp, which is the
//!   relay's produce call (librdkafka sets `CreateTime` when the record is
//!   handed to it; whole milliseconds, so the middle of that millisecond
//!   is used, ±0.5 ms). It isolates the API's own relay (commit → NOTIFY →
//!   claim → produce) from the broker. A relay can produce before the
//!   bench has read the 201; such records count as 0 ms, and those
//!   produced a whole millisecond before it are counted in
//!   `kafka_timestamp_before_201`.
//!
//! `kafka_missing` (201s whose record never came) and `kafka_duplicates`
//! (records seen more than once) are reported, not hidden.
//!
//! CPU (utime + stime from /proc) over phase 3 until the last record was
//! consumed: the `o2c-cloud api` process (HTTP side and relay), every
//! PostgreSQL process (the shared server: other work on it counts too),
//! the private Tansu, and the bench.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;

use super::cpu::{CpuSnapshot, cpu_of, cpu_seconds_of};
use super::{BenchArgs, BenchError, Measurement, Scenario, block_on, harness};
use crate::api::{ApiProc, product_line, token, web_order};
use crate::tansu::{PrivateTansu, TansuStorage};

/// The registry entry.
pub const SCENARIO: Scenario = Scenario {
    name: "api",
    about: "cloud order API: POST /v1/orders at an open-loop --batch orders/s (default 500), --n orders (default 15000): 201 latency, 201 → orders.created (needs the dev services)",
    run,
};

const DEFAULT_N: u64 = 15_000;
const DEFAULT_RATE: u64 = 500;
/// Distinct customers (tokens minted up front, used round-robin).
const CUSTOMERS: u64 = 1_000;
/// Catalog products, used round-robin.
const SKUS: u64 = 5;
/// Every this many orders, one is shipped to home (the others carry out).
const SHIP_EVERY: u64 = 10;
/// Warm-up length, in seconds of the offered rate.
const WARMUP_SECS: u64 = 2;
/// One request's limit; past it the request is a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long after the last 201 its records may take to be consumed.
const KAFKA_DEADLINE: Duration = Duration::from_secs(120);
/// The bench consumer's `fetch.wait.max.ms` (the services' default is 20).
const FETCH_WAIT_MS: u32 = 10;
/// Issue 19's target for the 201, and the architecture's own figure.
const TARGET_P99_MS: f64 = 100.0;
const ARCHITECTURE_P99_MS: f64 = 380.0;
/// Quotas far above the run (per customer and per anonymous IP, a minute).
const QUOTAS: &str = "customer_per_minute = 10000000\nanonymous_per_minute = 10000000";
/// `memory` (default): a private Tansu with memory storage; `shared`: the
/// dev services' Tansu (SQLite storage).
const KAFKA_ENV: &str = "O2C_BENCH_KAFKA";

fn run(args: &BenchArgs) -> Result<Measurement, BenchError> {
    let n = args.n.unwrap_or(DEFAULT_N);
    let rate = args.batch.unwrap_or(DEFAULT_RATE);
    if n == 0 || rate == 0 {
        return Err(BenchError::Invalid(
            "--n and --batch (rate) must be positive".into(),
        ));
    }
    block_on(measure(n, rate))
}

/// One request's outcome, times relative to the run's start.
#[derive(Debug)]
struct Sent {
    /// Request index in the schedule.
    i: u64,
    /// When it was due.
    due: Duration,
    /// When its task actually began sending.
    sent: Duration,
    /// When its answer's body was read (or the failure came).
    answered: Duration,
    /// Wall clock of `answered`, unix µs (compared with Kafka's times).
    answered_unix_us: i64,
    /// The status, or why there was none.
    status: Result<u16, String>,
    /// The body (only kept for 201s).
    body: Option<Bytes>,
}

impl Sent {
    fn latency(&self) -> Duration {
        self.answered.saturating_sub(self.due)
    }
}

/// One record of `orders.created` as the consumer saw it.
#[derive(Debug)]
struct Seen {
    key: String,
    /// The record's timestamp, unix ms.
    timestamp_ms: Option<i64>,
    /// When the consumer had it, unix µs.
    received_unix_us: i64,
}

fn unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, 600_000_000, 3).map_err(|e| BenchError::Histogram(e.to_string()))
}

fn record_us(h: &mut Histogram<u64>, us: u64) -> Result<(), BenchError> {
    h.record(us.max(1))
        .map_err(|e| BenchError::Histogram(e.to_string()))
}

/// `{prefix}_p50_ms`, `_p90_ms`, `_p99_ms`, `_max_ms` of a µs histogram.
fn percentiles(m: &mut Measurement, prefix: &str, h: &Histogram<u64>, baseline: bool) {
    let ms = |us: u64| us as f64 / 1000.0;
    let rows = [
        ("p50", ms(h.value_at_quantile(0.50))),
        ("p90", ms(h.value_at_quantile(0.90))),
        ("p99", ms(h.value_at_quantile(0.99))),
        ("max", ms(h.max())),
    ];
    for (q, v) in rows {
        let name = format!("{prefix}_{q}_ms");
        if baseline {
            m.baseline(&name, v);
        } else {
            m.metric(&name, v);
        }
    }
}

/// Sends `n` requests built by `request`, request `i` due at `i / rate`
/// after the start, each on its own task (open loop); returns every
/// outcome, in schedule order.
async fn offer<F>(n: u64, rate: u64, request: F) -> Result<Vec<Sent>, BenchError>
where
    F: Fn(u64) -> reqwest::RequestBuilder,
{
    // A moment to spawn nothing late at the first tick.
    let start = Instant::now() + Duration::from_millis(5);
    let mut tasks = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    for i in 0..n {
        let due = Duration::from_nanos(i.saturating_mul(1_000_000_000) / rate);
        tokio::time::sleep_until(start + due).await;
        let req = request(i).timeout(REQUEST_TIMEOUT);
        tasks.push(tokio::spawn(async move {
            let sent = start.elapsed();
            let status = match req.send().await {
                Err(e) => Err(format!("send: {e}")),
                Ok(resp) => {
                    let code = resp.status().as_u16();
                    match resp.bytes().await {
                        Ok(body) => Ok((code, body)),
                        Err(e) => Err(format!("reading a {code} body: {e}")),
                    }
                }
            };
            let answered = start.elapsed();
            let answered_unix_us = unix_us();
            let (status, body) = match status {
                Ok((code, body)) => (Ok(code), (code == 201).then_some(body)),
                Err(e) => (Err(e), None),
            };
            Sent {
                i,
                due,
                sent,
                answered,
                answered_unix_us,
                status,
                body,
            }
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.map_err(|e| harness("request task", e))?);
    }
    Ok(out)
}

/// What a phase's answers add up to.
#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    errors: u64,
    /// Errors by kind (`status_503`, `transport`, `bad_body`).
    kinds: std::collections::BTreeMap<String, u64>,
    first_error: Option<String>,
}

impl Tally {
    fn error(&mut self, kind: String, detail: String) {
        self.errors += 1;
        *self.kinds.entry(kind).or_insert(0) += 1;
        self.first_error.get_or_insert(detail);
    }

    /// `errors`, then `errors_{kind}` of each kind seen.
    fn rows(&self) -> Vec<(String, f64)> {
        std::iter::once(("errors".to_owned(), self.errors as f64))
            .chain(
                self.kinds
                    .iter()
                    .map(|(kind, count)| (format!("errors_{kind}"), *count as f64)),
            )
            .collect()
    }
}

/// The fields of a 201 the bench reads.
#[derive(Debug, serde::Deserialize)]
struct Created {
    order_id: String,
    #[serde(default)]
    stock_check: Option<String>,
}

/// A created order: its id, when its 201 was read, and its kind.
#[derive(Debug)]
struct Answered {
    order_id: String,
    answered_unix_us: i64,
    /// From the due time to the 201.
    latency: Duration,
    ship: bool,
}

/// Sorts a phase's orders into 201s and errors (anything but a 201 with
/// an order id); counts ship-to-home orders taken unverified.
fn tally_orders(sent: &[Sent], tally: &mut Tally, unverified: &mut u64) -> Vec<Answered> {
    let mut created = Vec::with_capacity(sent.len());
    for s in sent {
        match (&s.status, &s.body) {
            (Ok(201), Some(body)) => match serde_json::from_slice::<Created>(body) {
                Ok(c) => {
                    if is_ship(s.i) && c.stock_check.as_deref() != Some("verified") {
                        *unverified += 1;
                    }
                    tally.ok += 1;
                    created.push(Answered {
                        order_id: c.order_id,
                        answered_unix_us: s.answered_unix_us,
                        latency: s.latency(),
                        ship: is_ship(s.i),
                    });
                }
                Err(e) => tally.error(
                    "bad_body".into(),
                    format!("order {}: a 201 without an order id: {e}", s.i),
                ),
            },
            (Ok(code), _) => tally.error(
                format!("status_{code}"),
                format!("order {}: status {code}", s.i),
            ),
            (Err(e), _) => tally.error("transport".into(), format!("order {}: {e}", s.i)),
        }
    }
    created
}

fn is_ship(i: u64) -> bool {
    i % SHIP_EVERY == SHIP_EVERY - 1
}

/// The bench's HTTP client and the order requests' parts.
struct Orders {
    client: reqwest::Client,
    url: String,
    tokens: Vec<String>,
    /// `[carry-out, ship-to-home]` bodies per SKU.
    bodies: Vec<[Bytes; 2]>,
}

impl Orders {
    fn request(&self, key: &str, i: u64) -> reqwest::RequestBuilder {
        let token = &self.tokens[usize::try_from(i % CUSTOMERS).unwrap_or(0)];
        let body = &self.bodies[usize::try_from(i % SKUS).unwrap_or(0)][usize::from(is_ship(i))];
        self.client
            .post(&self.url)
            .bearer_auth(token)
            .header("idempotency-key", format!("{key}-{i}"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
    }
}

fn sku(k: u64) -> String {
    format!("API-{k}")
}

fn price(k: u64) -> i64 {
    1_000 + 100 * i64::try_from(k).unwrap_or(0)
}

/// Reads `topic` from the beginning of `partitions` on its own thread,
/// handing each record on with its receipt time, until `stop`.
fn spawn_consumer(
    brokers: &str,
    topic: &str,
    partitions: &[i32],
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
    tx: UnboundedSender<Seen>,
) -> Result<std::thread::JoinHandle<()>, BenchError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("o2c-bench-api-{:016x}", rand::random::<u64>()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", FETCH_WAIT_MS.to_string())
        .create()
        .map_err(|e| harness("creating the orders.created consumer", e))?;
    let mut assignment = TopicPartitionList::new();
    for p in partitions {
        assignment
            .add_partition_offset(topic, *p, Offset::Beginning)
            .map_err(|e| harness("assigning orders.created", e))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| harness("assigning orders.created", e))?;
    std::thread::Builder::new()
        .name("bench-api-consumer".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match consumer.poll(Duration::from_millis(100)) {
                    None => {}
                    Some(Err(e)) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "bench consumer");
                    }
                    Some(Ok(msg)) => {
                        let received_unix_us = unix_us();
                        let key = msg
                            .key()
                            .map(|k| String::from_utf8_lossy(k).into_owned())
                            .unwrap_or_default();
                        let _ = tx.send(Seen {
                            key,
                            timestamp_ms: msg.timestamp().to_millis(),
                            received_unix_us,
                        });
                    }
                }
            }
        })
        .map_err(|e| BenchError::io("spawning the consumer thread", e))
}

/// The records consumed so far, by order id (the first of each).
#[derive(Debug, Default)]
struct Consumed {
    by_key: HashMap<String, Seen>,
    duplicates: u64,
}

impl Consumed {
    fn take(&mut self, s: Seen) {
        if self.by_key.contains_key(&s.key) {
            self.duplicates += 1;
        } else {
            self.by_key.insert(s.key.clone(), s);
        }
    }

    /// Takes records until every one of `ids` was seen or `deadline`;
    /// returns how many are still missing.
    async fn wait_for(
        &mut self,
        rx: &mut UnboundedReceiver<Seen>,
        ids: &[&str],
        deadline: Instant,
    ) -> usize {
        let mut missing: HashSet<&str> = ids
            .iter()
            .copied()
            .filter(|id| !self.by_key.contains_key(*id))
            .collect();
        while !missing.is_empty() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => {
                    missing.remove(s.key.as_str());
                    self.take(s);
                }
                Ok(None) | Err(_) => break,
            }
        }
        missing.len()
    }
}

async fn measure(n: u64, rate: u64) -> Result<Measurement, BenchError> {
    let tansu = match std::env::var(KAFKA_ENV).as_deref() {
        Ok("shared") => None,
        Ok("memory") | Err(_) => Some(
            PrivateTansu::start_with(TansuStorage::Memory)
                .await
                .map_err(|e| harness("starting Tansu (memory storage)", e))?,
        ),
        Ok(other) => {
            return Err(BenchError::Invalid(format!(
                "{KAFKA_ENV}={other:?}: expected memory or shared"
            )));
        }
    };
    let private = tansu.as_ref().map(PrivateTansu::brokers);
    let env = crate::TestEnv::new();
    let api = ApiProc::alone_on(&env, private.as_deref(), QUOTAS)
        .await
        .map_err(|e| harness("starting o2c-cloud api", e))?;
    let brokers = match &private {
        Some(b) => b.clone(),
        None => env.kafka_brokers().to_owned(),
    };

    // The catalog the API prices from.
    let catalog: Vec<String> = (0..SKUS).map(|k| product_line(&sku(k), price(k))).collect();
    let file = env.path().join("bench-catalog.jsonl");
    std::fs::write(&file, catalog.join("\n") + "\n")
        .map_err(|e| BenchError::io("writing the catalog", e))?;
    let config = api.config_path().to_owned();
    let (code, out) = tokio::task::spawn_blocking(move || {
        crate::saga::cloud_command(&config, &["catalog", "import", &file.to_string_lossy()])
    })
    .await
    .map_err(|e| harness("catalog import task", e))?
    .map_err(|e| harness("o2c-cloud catalog import", e))?;
    if code != 0 {
        return Err(harness(
            "o2c-cloud catalog import",
            format!("exit {code}: {out}"),
        ));
    }

    let topics = o2c_protocol::KafkaTopics::new(format!("{}.", env.prefix()))
        .map_err(|e| BenchError::Invalid(e.to_string()))?;
    let topic = topics.for_event(o2c_protocol::EventType::OrderCreated);
    let partitions = crate::topic_partitions(&brokers, &topic, Duration::from_secs(30))
        .await
        .map_err(|e| harness("partitions of orders.created", e))?;
    let stop = Arc::new(AtomicBool::new(false));
    let consumer_errors = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let consumer = spawn_consumer(
        &brokers,
        &topic,
        &partitions,
        stop.clone(),
        consumer_errors.clone(),
        tx,
    )?;
    let mut consumed = Consumed::default();

    let client = reqwest::Client::new();
    let orders = Orders {
        client: client.clone(),
        url: format!("{}/v1/orders", api.url()),
        tokens: (0..CUSTOMERS)
            .map(|c| token(&format!("bench-{c:04}")))
            .collect(),
        bodies: (0..SKUS)
            .map(|k| {
                [false, true].map(|ship| {
                    Bytes::from(
                        web_order(&sku(k), 1, price(k), ship)
                            .to_string()
                            .into_bytes(),
                    )
                })
            })
            .collect(),
    };

    let mut m = Measurement::default();
    m.param("n", n);
    m.param("offered_rate_per_s", rate);
    m.param("customers", CUSTOMERS);
    m.param("skus", SKUS);
    m.param(
        "orders",
        format!("web, 1 line; carry-out, every {SHIP_EVERY}th ship-to-home (stock reserved)"),
    );
    m.param(
        "kafka",
        if private.is_some() {
            "private Tansu, memory storage"
        } else {
            "shared Tansu, SQLite storage"
        },
    );
    m.param("partitions", partitions.len());
    m.param("consumer_fetch_wait_ms", FETCH_WAIT_MS);

    // 1. Warm-up, until its orders are in Kafka.
    let warm_n = rate * WARMUP_SECS;
    let warm = offer(warm_n, rate, |i| orders.request("warm", i)).await?;
    let mut warm_tally = Tally::default();
    let mut unverified = 0;
    let warm_created = tally_orders(&warm, &mut warm_tally, &mut unverified);
    if warm_created.is_empty() {
        return Err(harness(
            "warm-up",
            format!(
                "no order created: {:?}\n{}",
                warm_tally.first_error,
                api.log()
            ),
        ));
    }
    let ids: Vec<&str> = warm_created.iter().map(|a| a.order_id.as_str()).collect();
    let missing = consumed
        .wait_for(&mut rx, &ids, Instant::now() + KAFKA_DEADLINE)
        .await;
    if missing > 0 {
        return Err(harness(
            "warm-up",
            format!("{missing} orders not in Kafka within {KAFKA_DEADLINE:?}"),
        ));
    }
    m.param("warmup_orders", warm_n);
    m.param("warmup_errors", warm_tally.errors);

    // 2. Baseline: the document, no token, no database.
    let doc_url = format!("{}/openapi.json", api.url());
    let api_cpu = cpu_seconds_of(api.pid())?;
    let base = offer(n, rate, |_| client.get(&doc_url)).await?;
    let base_cpu = cpu_seconds_of(api.pid())? - api_cpu;
    let mut base_h = histogram()?;
    let mut base_tally = Tally::default();
    let mut doc_bytes = 0;
    for s in &base {
        match &s.status {
            Ok(200) => {
                base_tally.ok += 1;
                record_us(&mut base_h, micros(s.latency()))?;
            }
            Ok(code) => base_tally.error(
                format!("status_{code}"),
                format!("GET {}: status {code}", s.i),
            ),
            Err(e) => base_tally.error("transport".into(), format!("GET {}: {e}", s.i)),
        }
    }
    if let Ok(r) = client.get(&doc_url).send().await
        && let Ok(b) = r.bytes().await
    {
        doc_bytes = b.len();
    }

    // 3. The orders.
    let cpu_before = CpuSnapshot::take()?;
    let api_cpu = cpu_seconds_of(api.pid())?;
    let sent = offer(n, rate, |i| orders.request("bench", i)).await?;
    let mut tally = Tally::default();
    let mut unverified = 0;
    let created = tally_orders(&sent, &mut tally, &mut unverified);
    let ids: Vec<&str> = created.iter().map(|a| a.order_id.as_str()).collect();
    let missing = consumed
        .wait_for(&mut rx, &ids, Instant::now() + KAFKA_DEADLINE)
        .await;
    let cpu_after = CpuSnapshot::take()?;
    let api_cpu = cpu_seconds_of(api.pid())? - api_cpu;
    stop.store(true, Ordering::Relaxed);
    consumer
        .join()
        .map_err(|_| harness("consumer thread", "panicked"))?;
    while let Ok(s) = rx.try_recv() {
        consumed.take(s);
    }

    // The 201s.
    let (mut all_h, mut carry_h, mut ship_h, mut lag_h) =
        (histogram()?, histogram()?, histogram()?, histogram()?);
    for s in &sent {
        record_us(&mut lag_h, micros(s.sent.saturating_sub(s.due)))?;
    }
    for a in &created {
        let us = micros(a.latency);
        record_us(&mut all_h, us)?;
        record_us(if a.ship { &mut ship_h } else { &mut carry_h }, us)?;
    }
    m.metric("created_201", tally.ok as f64);
    for (name, v) in tally.rows() {
        m.metric(&name, v);
    }
    if let Some(e) = &tally.first_error {
        m.param("first_error", e.clone());
    }
    m.metric("ship_unverified", unverified as f64);
    percentiles(&mut m, "create_201", &all_h, false);
    percentiles(&mut m, "carry_out_201", &carry_h, false);
    percentiles(&mut m, "ship_to_home_201", &ship_h, false);
    // Rates over the run: sends from the first to the last; 201s from the
    // first send to the last answer.
    let first_sent = sent.iter().map(|s| s.sent).min().unwrap_or_default();
    let last_sent = sent.iter().map(|s| s.sent).max().unwrap_or_default();
    let last_answer = sent.iter().map(|s| s.answered).max().unwrap_or_default();
    m.metric(
        "sent_per_s",
        (n - 1) as f64 / (last_sent - first_sent).as_secs_f64().max(0.001),
    );
    m.metric(
        "created_per_s",
        tally.ok as f64 / (last_answer - first_sent).as_secs_f64().max(0.001),
    );
    m.metric(
        "send_lag_p99_ms",
        lag_h.value_at_quantile(0.99) as f64 / 1000.0,
    );
    m.metric("send_lag_max_ms", lag_h.max() as f64 / 1000.0);
    let p99 = all_h.value_at_quantile(0.99) as f64 / 1000.0;
    m.metric(
        "target_201_p99_le_100ms_met",
        f64::from(u8::from(p99 <= TARGET_P99_MS && tally.errors == 0)),
    );
    m.metric(
        "architecture_201_p99_le_380ms_met",
        f64::from(u8::from(p99 <= ARCHITECTURE_P99_MS && tally.errors == 0)),
    );

    // 201 → orders.created.
    let (mut consumed_h, mut stamp_h, mut e2e_h) = (histogram()?, histogram()?, histogram()?);
    let mut before_201 = 0u64;
    for a in &created {
        let Some(seen) = consumed.by_key.get(&a.order_id) else {
            continue;
        };
        let to_consumer = seen.received_unix_us - a.answered_unix_us;
        record_us(&mut consumed_h, u64::try_from(to_consumer).unwrap_or(0))?;
        // From the due time to the record consumed: creation end to end.
        let due_unix_us = a.answered_unix_us - i64::try_from(micros(a.latency)).unwrap_or(0);
        record_us(
            &mut e2e_h,
            u64::try_from(seen.received_unix_us - due_unix_us).unwrap_or(0),
        )?;
        if let Some(ts) = seen.timestamp_ms {
            // The timestamp is whole milliseconds: the produce call was in
            // [ts, ts + 1 ms); take the middle, and count a record as
            // produced before its 201 was read only when all of it was.
            if (ts + 1) * 1000 <= a.answered_unix_us {
                before_201 += 1;
            }
            let to_stamp = ts * 1000 + 500 - a.answered_unix_us;
            record_us(&mut stamp_h, u64::try_from(to_stamp).unwrap_or(0))?;
        }
    }
    m.metric("kafka_missing", missing as f64);
    m.metric("kafka_duplicates", consumed.duplicates as f64);
    m.metric(
        "kafka_consumer_errors",
        consumer_errors.load(Ordering::Relaxed) as f64,
    );
    percentiles(&mut m, "kafka_consumed", &consumed_h, false);
    percentiles(&mut m, "kafka_timestamp", &stamp_h, false);
    m.metric("kafka_timestamp_before_201", before_201 as f64);
    percentiles(&mut m, "due_to_consumed", &e2e_h, false);

    // CPU over the orders phase, until the last record was consumed.
    m.metric("cpu_api_s", api_cpu);
    m.metric(
        "cpu_api_ms_per_order",
        api_cpu * 1000.0 / tally.ok.max(1) as f64,
    );
    m.metric(
        "cpu_postgres_s",
        cpu_of(&cpu_before, &cpu_after, "postgres"),
    );
    if private.is_some() {
        m.metric("cpu_tansu_s", cpu_of(&cpu_before, &cpu_after, "tansu"));
    }
    m.metric("cpu_bench_s", cpu_of(&cpu_before, &cpu_after, "bench"));

    m.param(
        "baseline",
        "GET /openapi.json, same rate, client and server",
    );
    m.param("baseline_body_bytes", doc_bytes);
    m.baseline("openapi_200", base_tally.ok as f64);
    for (name, v) in base_tally.rows() {
        m.baseline(&name, v);
    }
    if let Some(e) = &base_tally.first_error {
        m.param("baseline_first_error", e.clone());
    }
    percentiles(&mut m, "openapi_200", &base_h, true);
    m.baseline(
        "cpu_api_ms_per_request",
        base_cpu * 1000.0 / base_tally.ok.max(1) as f64,
    );
    drop(api);
    drop(tansu);
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_n_or_rate_is_refused() {
        for (n, batch) in [(Some(0), None), (None, Some(0))] {
            let args = BenchArgs {
                n,
                batch,
                dir: None,
            };
            assert!(matches!(run(&args), Err(BenchError::Invalid(_))));
        }
    }

    #[test]
    fn one_order_in_ten_ships_to_home() {
        let ships = (0..1_000).filter(|i| is_ship(*i)).count();
        assert_eq!(ships, 100);
        assert!(!is_ship(0) && is_ship(SHIP_EVERY - 1));
    }

    #[test]
    fn every_non_201_is_an_error_by_kind() {
        let at = Duration::from_millis(1);
        let sent = |i, status: Result<u16, String>, body: Option<&str>| Sent {
            i,
            due: at,
            sent: at,
            answered: at * 3,
            answered_unix_us: 0,
            status,
            body: body.map(|b| Bytes::from(b.to_owned())),
        };
        let all = [
            sent(0, Ok(201), Some(r#"{"order_id":"o-1"}"#)),
            sent(1, Ok(503), None),
            sent(2, Ok(503), None),
            sent(3, Err("send: refused".into()), None),
            sent(4, Ok(201), Some("not json")),
            sent(
                9,
                Ok(201),
                Some(r#"{"order_id":"o-9","stock_check":"unverified"}"#),
            ),
        ];
        let (mut tally, mut unverified) = (Tally::default(), 0);
        let created = tally_orders(&all, &mut tally, &mut unverified);
        assert_eq!(created.len(), 2);
        assert_eq!(created[0].latency, at * 2);
        assert!(created[1].ship);
        assert_eq!(unverified, 1);
        assert_eq!(tally.ok, 2);
        assert_eq!(
            tally.rows(),
            vec![
                ("errors".to_owned(), 4.0),
                ("errors_bad_body".to_owned(), 1.0),
                ("errors_status_503".to_owned(), 2.0),
                ("errors_transport".to_owned(), 1.0),
            ]
        );
        assert_eq!(tally.first_error.as_deref(), Some("order 1: status 503"));
    }
}
