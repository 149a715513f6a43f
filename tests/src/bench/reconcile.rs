//! `o2c-bench reconcile`: `reconcile --all` over `--n` stores (default
//! 1,000) of `--batch` orders each (default 2,000).
//!
//! Each store's agent has sold its orders (seqs 1..=N, split card and cash
//! tenders) and sent its day manifest (seq N+1) with the right figures and
//! digest; the records carry the ingest's headers. Every run must find all
//! stores complete. Two phases over the same records:
//! 1. In process: what `reconcile --all` does with the records its scans
//!    read (`o2c_reconcile::Reader`), then every store judged. Baseline:
//!    only decoding every event, the floor of any reader.
//! 2. Through Kafka (skip with `O2C_BENCH_RECONCILE_KAFKA=0`): the records
//!    produced to a private Tansu with SQLite storage (its header index
//!    added), then `reconcile --all` as the CLI runs it. Baseline: a plain
//!    consumer reading the history. (Not memory storage: Tansu 0.6's
//!    answers a high watermark of 1 for partitions holding thousands of
//!    records, so a scan bounded by the watermarks reads one record each.)

use std::time::Instant;

use o2c_protocol::day::{BusinessDate, DayClosed, DayManifest, DayTally, EventDigest, SeqRange};
use o2c_protocol::{
    AgentId, CardAuthorization, Currency, Envelope, Event, EventId, Fulfillment, KafkaTopics,
    Money, Order, OrderId, OrderLine, Payment, SCHEMA_VERSION, Seq, StoreId, TerminalId,
};
use o2c_reconcile::core::{Status, StoreDay};
use o2c_reconcile::{Reader, Scope};
use o2c_runtime::kafka::scan::ScannedRecord;

use super::analytics::{bare_read, drain};
use super::{BenchArgs, BenchError, Measurement, Scenario, harness};
use crate::tansu::{PrivateTansu, TansuStorage};

/// Partitions of each topic in the Kafka phase.
const PARTITIONS: i32 = 6;

/// The registry entry.
pub const SCENARIO: Scenario = Scenario {
    name: "reconcile",
    about: "end-of-day reconcile --all in process: --n stores × --batch orders each (default 1,000 × 2,000)",
    run,
};

fn run(args: &BenchArgs) -> Result<Measurement, BenchError> {
    let stores = args.n.unwrap_or(1_000);
    let orders = args.batch.unwrap_or(2_000);
    if stores == 0 || orders == 0 {
        return Err(BenchError::Invalid(
            "--n and --batch must be positive".into(),
        ));
    }
    measure(stores, orders)
}

fn invalid(e: impl std::fmt::Display) -> BenchError {
    BenchError::Invalid(e.to_string())
}

/// One sale of `store`'s agent at `seq`.
fn sale(
    store: &StoreId,
    agent: &AgentId,
    seq: u64,
    at: time::OffsetDateTime,
) -> Result<Envelope, BenchError> {
    let cad = Currency::from_code("CAD").map_err(invalid)?;
    let order = Order {
        order_id: OrderId::from_uuid(uuid::Uuid::now_v7()).map_err(invalid)?,
        store_id: store.clone(),
        terminal_id: TerminalId::new("T1").map_err(invalid)?,
        currency: cad,
        lines: vec![OrderLine {
            sku: format!("SKU-{}", seq % 500),
            quantity: 1,
            unit_price: Money::new(1000 + (seq % 7) as i64, cad),
            category: None,
        }],
        payments: vec![
            Payment::Card {
                amount: Money::new(600, cad),
                token: "tok_bench".into(),
                brand: "visa".into(),
                last4: "4242".into(),
                authorization: CardAuthorization::Online,
            },
            Payment::Cash {
                amount: Money::new(400 + (seq % 7) as i64, cad),
            },
        ],
        fulfillment: Fulfillment::CarryOut {},
        customer: None,
        captured_at: at,
        catalog_version: None,
        stock_check: None,
        channel: None,
        customer_id: None,
    };
    Ok(Envelope {
        event_id: EventId::from_uuid(uuid::Uuid::now_v7()).map_err(invalid)?,
        schema_version: SCHEMA_VERSION,
        store_id: store.clone(),
        agent_id: agent.clone(),
        seq: Some(Seq::new(seq).map_err(invalid)?),
        occurred_at: at,
        traceparent: None,
        payload: Event::OrderCreated(Box::new(order)),
    })
}

fn headers(
    store: &StoreId,
    agent: &AgentId,
    seq: u64,
    id: &EventId,
    kind: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("event_id", id.to_string()),
        ("event_type", kind.to_owned()),
        ("store_id", store.to_string()),
        ("agent_id", agent.to_string()),
        ("seq", seq.to_string()),
        ("source", "ingest".to_owned()),
    ]
}

fn record(
    topic_offset: i64,
    key: String,
    headers: Vec<(&'static str, String)>,
    value: Vec<u8>,
) -> ScannedRecord {
    ScannedRecord {
        partition: 0,
        offset: topic_offset,
        timestamp_ms: None,
        key,
        headers: headers
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        value,
    }
}

/// The records of `stores` stores' day: (history, manifests).
fn day_records(
    stores: u64,
    orders: u64,
) -> Result<(Vec<ScannedRecord>, Vec<ScannedRecord>, BusinessDate), BenchError> {
    let now = time::OffsetDateTime::now_utc();
    let date = BusinessDate(now.date());
    let mut history = Vec::with_capacity((stores * orders) as usize);
    let mut days = Vec::with_capacity(stores as usize);
    for s in 0..stores {
        let store = StoreId::new(format!("B{s:05}")).map_err(invalid)?;
        let agent = AgentId::new(format!("B{s:05}-A1")).map_err(invalid)?;
        let mut tally = DayTally::default();
        let mut digest = EventDigest::default();
        for seq in 1..=orders {
            let e = sale(&store, &agent, seq, now)?;
            if let Event::OrderCreated(o) = &e.payload {
                tally.add_created(o).map_err(invalid)?;
            }
            digest.add(&e.event_id);
            let bytes = e.encode().map_err(invalid)?;
            let h = headers(&store, &agent, seq, &e.event_id, "OrderCreated");
            let offset = history.len() as i64;
            history.push(record(offset, e.payload.order_id().to_string(), h, bytes));
        }
        let manifest = DayClosed::new(
            EventId::from_uuid(uuid::Uuid::now_v7()).map_err(invalid)?,
            store.clone(),
            agent.clone(),
            Seq::new(orders + 1).map_err(invalid)?,
            now,
            DayManifest {
                business_date: date,
                timezone: "UTC".into(),
                closes_at: "00:00".into(),
                opened_at: now - time::Duration::days(1),
                closed_at: now,
                range: Some(SeqRange {
                    first: Seq::FIRST,
                    last: Seq::new(orders).map_err(invalid)?,
                }),
                tally,
                event_ids_sha256: digest.finish(),
            },
        );
        let bytes = manifest.encode().map_err(invalid)?;
        let h = headers(&store, &agent, orders + 1, &manifest.event_id, "DayClosed");
        days.push(record(s as i64, store.to_string(), h, bytes));
    }
    Ok((history, days, date))
}

fn measure(stores: u64, orders: u64) -> Result<Measurement, BenchError> {
    let mut m = Measurement::default();
    m.param("stores", stores);
    m.param("orders_per_store", orders);
    m.param("records", stores * orders + stores);
    let t0 = Instant::now();
    let (history, days, date) = day_records(stores, orders)?;
    m.param("generate_s", t0.elapsed().as_secs_f64());

    // Baseline: decoding every history record's envelope, the floor of
    // any reader that looks inside the events.
    let pid = std::process::id();
    let cpu0 = super::cpu::cpu_seconds_of(pid)?;
    let t0 = Instant::now();
    let mut decoded = 0u64;
    for r in &history {
        decoded += u64::from(Envelope::decode(&r.value).is_ok());
    }
    let bare = t0.elapsed().as_secs_f64();
    let bare_cpu = super::cpu::cpu_seconds_of(pid)? - cpu0;
    std::hint::black_box(decoded);
    m.baseline("decode_only_s", bare);
    m.baseline("decode_only_cpu_s", bare_cpu);

    // reconcile --all from the records: the scans' per-record work, then
    // every store judged.
    let cpu0 = super::cpu::cpu_seconds_of(pid)?;
    let t0 = Instant::now();
    let mut reader = Reader::new(None);
    for r in &days {
        reader.manifest(r);
    }
    for r in &history {
        reader.history(r);
    }
    let ledger = reader.ledger;
    let stores_due = ledger.stores_for(date);
    let result: Vec<_> = stores_due
        .iter()
        .map(|s| ledger.reconcile(s, date))
        .collect();
    let secs = t0.elapsed().as_secs_f64();
    let cpu = super::cpu::cpu_seconds_of(pid)? - cpu0;
    let complete = all_complete(&result, stores)?;
    m.metric("reconcile_all_in_process_s", secs);
    m.metric("reconcile_in_process_cpu_s", cpu);
    m.metric("in_process_records_per_s", (stores * orders) as f64 / secs);
    m.metric("stores_complete", complete as f64);
    if std::env::var("O2C_BENCH_RECONCILE_KAFKA").is_ok_and(|v| v == "0") {
        return Ok(m);
    }
    super::block_on(through_kafka(&mut m, &history, &days, date, stores))?;
    Ok(m)
}

/// How many stores are complete; an error unless all `stores` are.
fn all_complete(result: &[StoreDay], stores: u64) -> Result<usize, BenchError> {
    let complete = result
        .iter()
        .filter(|d| d.status == Status::Complete)
        .count();
    if complete as u64 != stores || result.len() as u64 != stores {
        let first = result.iter().find(|d| d.status != Status::Complete);
        return Err(BenchError::Invalid(format!(
            "{complete} of {} stores complete; expected all {stores}; first other: {}",
            result.len(),
            first.map_or(String::new(), |d| serde_json::to_string(d)
                .unwrap_or_default())
        )));
    }
    Ok(complete)
}

/// The same records in a private Tansu (SQLite storage, with the header
/// index the harness adds on restart), then `reconcile --all` through
/// Kafka, against a plain consumer reading the history.
async fn through_kafka(
    m: &mut Measurement,
    history: &[ScannedRecord],
    days: &[ScannedRecord],
    date: BusinessDate,
    stores: u64,
) -> Result<(), BenchError> {
    let mut tansu = PrivateTansu::start_with(TansuStorage::Sqlite)
        .await
        .map_err(|e| harness("starting Tansu (SQLite storage)", e))?;
    let brokers = tansu.brokers();
    let env = crate::TestEnv::new();
    let topics = KafkaTopics::new(format!("{}.", env.prefix())).map_err(invalid)?;
    let (h, d, q) = (topics.history(), topics.days(), topics.dlq());
    crate::create_topics_with_partitions(&brokers, &[&h, &d, &q], PARTITIONS)
        .await
        .map_err(|e| harness("creating topics", e))?;
    // Tansu 0.6's SQLite storage has no index on its header table; reads of
    // big topics crawl without it (DEPENDENCY-NOTES). The harness adds it
    // on a restart.
    tansu
        .restart()
        .await
        .map_err(|e| harness("restarting Tansu with the header index", e))?;
    let producer = o2c_runtime::kafka::producer(&brokers, 5).map_err(|e| harness("producer", e))?;
    let t0 = Instant::now();
    let mut sends = futures::stream::FuturesUnordered::new();
    for (topic, records) in [(&h, history), (&d, days)] {
        for r in records {
            let headers: Vec<(&str, String)> = r
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            let (p, t) = (producer.clone(), topic.clone());
            let (key, value) = (r.key.clone(), r.value.clone());
            sends.push(async move {
                let hs: Vec<(&str, String)> = headers;
                o2c_runtime::kafka::send(&p, &t, &key, &hs, &value).await
            });
            if sends.len() >= 20_000 {
                drain(&mut sends, 10_000).await?;
            }
        }
        drain(&mut sends, 0).await?;
    }
    m.metric("kafka_produce_s", t0.elapsed().as_secs_f64());

    let n = history.len() as u64;
    let (b, t) = (brokers.clone(), h.clone());
    let (bare_s, _) = tokio::task::spawn_blocking(move || bare_read(&b, &t, n))
        .await
        .map_err(|e| harness("bare consumer", e))??;
    m.baseline("kafka_bare_read_history_s", bare_s);
    m.baseline("kafka_bare_read_per_s", n as f64 / bare_s);

    let t0 = Instant::now();
    let result = o2c_reconcile::reconcile_with(brokers, topics, Scope::All, date)
        .await
        .map_err(|e| harness("reconcile --all", e))?;
    let secs = t0.elapsed().as_secs_f64();
    all_complete(&result, stores)?;
    m.metric("reconcile_all_through_kafka_s", secs);
    m.metric("through_kafka_records_per_s", n as f64 / secs);
    Ok(())
}
