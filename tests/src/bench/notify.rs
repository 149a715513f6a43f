//! `notify`: customer notifications (`o2c-cloud notify`, issue 20), from
//! the order history to the mail server, against a bare SMTP client.
//!
//! One world: a private Tansu (memory storage) with the o2c topics
//! ([`PARTITIONS`] each), a fresh database on the shared PostgreSQL, one
//! aiosmtpd server ([`crate::smtp::SmtpServer`], Python: it fsyncs every
//! message before its `250`, and may be the ceiling of both sides), and
//! `o2c-cloud notify` with `concurrency = `[`CONCURRENCY`] and
//! `poll_ms = `[`POLL_MS`]. Events are produced straight to
//! `{prefix}.orders.events` (the only topic `notify` reads), keyed by order
//! id, as the saga's relay writes them.
//!
//! Up front, the `OrderCreated` of every order of both phases (one e-mail
//! address each), and a wait until `o2c_notify.contacts` holds them all:
//! what is timed below is the messages, not the contacts.
//!
//! 1. **Throughput**: `--n` (default 5,000) `PaymentCaptured` are produced
//!    at once; each calls for exactly one e-mail, `order_confirmed`, whose
//!    `Message-ID` is `<{order}.order_confirmed@shop.test>`. Timed from
//!    just before the first produce to the server's acceptance of the last
//!    message (its `received_ns`, same wall clock): `notify_msgs_per_s`,
//!    and `notify_msgs_per_cpu_s` over the CPU of the `notify` process in
//!    that window (the "per core" figure). PostgreSQL (every process of
//!    the shared server), Tansu and the SMTP server's CPU are reported too.
//! 2. **Baseline**, same run, same server: a bare lettre
//!    `AsyncSmtpTransport` (one connection per message, as notify) sends `n`
//!    messages of the same shape (phase 1's subject and body with another
//!    order id, distinct `Message-ID`s), [`CONCURRENCY`] at once:
//!    `bare_msgs_per_s`, and `bare_msgs_per_cpu_s` over this process's CPU.
//! 3. **Latency**: `PaymentCaptured` of fresh orders at `--batch` orders/s
//!    (default 100) for [`LATENCY_SECS`] s, open loop: order `i` is due at
//!    `start + i / rate` and produced on its own task then, whatever the
//!    others are doing. Each latency runs from the *due* time (no
//!    coordinated omission) by this machine's wall clock to the server's
//!    `received_ns`, matched by `Message-ID`: `latency_p50_ms`, `_p99_ms`,
//!    `_max_ms`, with `latency_missing` and `latency_duplicates`. Issue 20
//!    names no number for it: reported only.
//!
//! `NotifyProc` and `SmtpServer` do not expose their pids; both are found
//! among this process's children in `/proc` ([`child_pid`]).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt as _;
use hdrhistogram::Histogram;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use o2c_protocol::event::PaymentCaptured;
use o2c_protocol::{
    AgentId, Currency, Customer, Envelope, Event, EventId, Fulfillment, KafkaTopics, Money, Order,
    OrderId, OrderLine, Payment, StoreId, TerminalId,
};
use tokio::time::Instant;

use super::analytics::drain;
use super::cpu::{CpuSnapshot, cpu_of, cpu_seconds_of};
use super::{BenchArgs, BenchError, Measurement, Scenario, block_on, harness};
use crate::notify::{FROM, NotifyProc};
use crate::saga::SagaSettings;
use crate::smtp::{SmtpOptions, SmtpServer};
use crate::tansu::{PrivateTansu, TansuStorage};

/// The registry entry.
pub const SCENARIO: Scenario = Scenario {
    name: "notify",
    about: "customer notifications: --n order confirmations (default 5000) per s and per CPU s against a bare SMTP client, event → mail latency at --batch orders/s (default 100; needs PostgreSQL and aiosmtpd)",
    run,
};

const DEFAULT_N: u64 = 5_000;
const DEFAULT_RATE: u64 = 100;
const LATENCY_SECS: u64 = 20;
const PARTITIONS: i32 = 6;
/// `[notify] concurrency`, and the bare client's sends at once.
const CONCURRENCY: usize = 16;
/// `[notify] poll_ms`.
const POLL_MS: u64 = 20;
/// How long contacts or a phase's messages may take.
const DEADLINE: Duration = Duration::from_secs(600);
/// How long after its due time the last latency order's mail may take.
const LATENCY_DEADLINE: Duration = Duration::from_secs(120);
/// Every order's total (one line, paid in cash), minor units of CAD.
const TOTAL_MINOR: i64 = 1_250;

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

fn bad_id(e: o2c_protocol::IdError) -> BenchError {
    BenchError::Invalid(e.to_string())
}

fn cad() -> Result<Currency, BenchError> {
    Currency::from_code("CAD").map_err(|e| BenchError::Invalid(e.to_string()))
}

fn envelope(store: &StoreId, payload: Event) -> Result<Envelope, BenchError> {
    let now = time::OffsetDateTime::now_utc();
    Ok(Envelope {
        event_id: EventId::from_uuid(uuid::Uuid::now_v7()).map_err(bad_id)?,
        schema_version: o2c_protocol::SCHEMA_VERSION,
        store_id: store.clone(),
        agent_id: AgentId::new("A1").map_err(bad_id)?,
        seq: None,
        occurred_at: now,
        traceparent: None,
        payload,
    })
}

/// A store order of one line paid in cash, with an e-mail address.
fn order_created(i: u64) -> Result<Envelope, BenchError> {
    let cad = cad()?;
    let store = StoreId::new(format!("S{:03}", i % 50)).map_err(bad_id)?;
    let order = Order {
        order_id: OrderId::from_uuid(uuid::Uuid::now_v7()).map_err(bad_id)?,
        store_id: store.clone(),
        terminal_id: TerminalId::new("T1").map_err(bad_id)?,
        currency: cad,
        lines: vec![OrderLine {
            sku: format!("SKU-{}", i % 500),
            quantity: 1,
            unit_price: Money::new(TOTAL_MINOR, cad),
            category: None,
        }],
        payments: vec![Payment::Cash {
            amount: Money::new(TOTAL_MINOR, cad),
        }],
        fulfillment: Fulfillment::CarryOut {},
        customer: Some(Customer {
            email: Some(format!("customer-{i}@shop.test")),
            phone: None,
        }),
        captured_at: time::OffsetDateTime::now_utc(),
        catalog_version: None,
        stock_check: None,
        channel: None,
        customer_id: None,
    };
    envelope(&store, Event::OrderCreated(Box::new(order)))
}

/// The `PaymentCaptured` of `created`'s order: one `order_confirmed` mail.
fn payment_captured(created: &Envelope) -> Result<Envelope, BenchError> {
    let order_id = created.payload.order_id();
    envelope(
        &created.store_id,
        Event::PaymentCaptured(PaymentCaptured {
            order_id,
            amount: Money::new(TOTAL_MINOR, cad()?),
            psp_reference: format!("psp-{order_id}"),
        }),
    )
}

/// `(key, value)` of a record of the history topic.
fn record(env: &Envelope) -> Result<(String, Vec<u8>), BenchError> {
    let bytes = env
        .encode()
        .map_err(|e| BenchError::Invalid(e.to_string()))?;
    Ok((env.payload.order_id().to_string(), bytes))
}

/// The `Message-ID` `notify` gives an order's confirmation.
fn message_id(order_id: &str) -> String {
    let domain = FROM
        .rsplit_once('@')
        .map_or("", |(_, d)| d.trim_end_matches('>'));
    format!("<{order_id}.order_confirmed@{domain}>")
}

/// Produces every record at once (up to 20,000 in flight).
async fn produce_all(
    producer: &o2c_runtime::kafka::Producer_,
    topic: &str,
    records: Vec<(String, Vec<u8>)>,
) -> Result<(), BenchError> {
    let mut sends = futures::stream::FuturesUnordered::new();
    for (key, bytes) in records {
        let (p, t) = (producer.clone(), topic.to_owned());
        sends.push(async move { o2c_runtime::kafka::send(&p, &t, &key, &[], &bytes).await });
        if sends.len() >= 20_000 {
            drain(&mut sends, 10_000).await?;
        }
    }
    drain(&mut sends, 0).await
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The pid of this process's child whose `comm` and command-line
/// arguments satisfy `matches`.
fn child_pid(matches: impl Fn(&str, &[&[u8]]) -> bool) -> Option<u32> {
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces or ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(me) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if matches(&stat[open + 1..close], &args) {
            return Some(pid);
        }
    }
    None
}

/// CPU seconds of `pid` so far, 0 if it is unknown.
fn cpu_of_pid(pid: Option<u32>) -> Result<f64, BenchError> {
    pid.map_or(Ok(0.0), cpu_seconds_of)
}

/// Waits until `o2c_notify.contacts` holds `want` rows.
async fn wait_contacts(
    db: &tokio_postgres::Client,
    want: u64,
    notify: &NotifyProc,
) -> Result<(), BenchError> {
    let t0 = Instant::now();
    loop {
        let have: i64 = db
            .query_one("SELECT count(*) FROM o2c_notify.contacts", &[])
            .await
            .map_err(|e| harness("counting contacts", e))?
            .get(0);
        if u64::try_from(have).unwrap_or(0) >= want {
            return Ok(());
        }
        if t0.elapsed() > DEADLINE {
            return Err(harness(
                "contacts",
                format!("{have} of {want} in {DEADLINE:?}\n{}", notify.log_tail()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the server until it has accepted `want` messages in all, or
/// `deadline`; returns how many it has.
async fn wait_count(
    smtp: &SmtpServer,
    want: usize,
    deadline: Instant,
) -> Result<usize, BenchError> {
    loop {
        let have = smtp
            .message_count()
            .map_err(|e| harness("reading messages.jsonl", e))?;
        if have >= want || Instant::now() >= deadline {
            return Ok(have);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How the messages with the ids of `expected` arrived: the first
/// `received_ns` of each, and how many came more than once.
fn arrivals(
    mails: &[crate::smtp::ReceivedMail],
    expected: &HashMap<String, u64>,
) -> (HashMap<String, u64>, u64) {
    let mut first = HashMap::with_capacity(expected.len());
    let mut duplicates = 0;
    for m in mails
        .iter()
        .filter(|m| expected.contains_key(&m.message_id))
    {
        if first.contains_key(&m.message_id) {
            duplicates += 1;
        } else {
            first.insert(m.message_id.clone(), m.received_ns);
        }
    }
    (first, duplicates)
}

fn histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, 600_000_000, 3).map_err(|e| BenchError::Histogram(e.to_string()))
}

fn record_us(h: &mut Histogram<u64>, us: u64) -> Result<(), BenchError> {
    h.record(us.max(1))
        .map_err(|e| BenchError::Histogram(e.to_string()))
}

async fn measure(n: u64, rate: u64) -> Result<Measurement, BenchError> {
    let tansu = PrivateTansu::start_with(TansuStorage::Memory)
        .await
        .map_err(|e| harness("starting Tansu (memory storage)", e))?;
    let brokers = tansu.brokers();
    let env = crate::TestEnv::new();
    env.require_postgres().await;
    let pg = env
        .create_database("notify")
        .await
        .map_err(|e| harness("creating the database", e))?;
    crate::kafka::create_o2c_topics(&brokers, &format!("{}.", env.prefix()), PARTITIONS)
        .await
        .map_err(|e| harness("creating the topics", e))?;
    let topic = KafkaTopics::new(format!("{}.", env.prefix()))
        .map_err(|e| BenchError::Invalid(e.to_string()))?
        .history();
    let smtp = SmtpServer::start_with(&env.path().join("smtp"), SmtpOptions::default())
        .await
        .map_err(|e| harness("starting the SMTP server", e))?;
    let settings = SagaSettings {
        prefix: env.prefix().to_owned(),
        // Required by the config's layout; notify never connects.
        mqtt_url: "mqtt://127.0.0.1:1".into(),
        brokers: brokers.clone(),
        pg: pg.clone(),
        psp_url: "http://127.0.0.1:1".into(),
        carrier_url: String::new(),
        extra_saga: String::new(),
        extra_tables: String::new(),
        extra_psp: String::new(),
        extra_kafka: format!("partitions = {PARTITIONS}"),
    };
    let notify = NotifyProc::start(
        env.path(),
        "bench",
        &settings,
        env.prefix(),
        &smtp.url(),
        &format!("concurrency = {CONCURRENCY}\npoll_ms = {POLL_MS}"),
    )
    .await
    .map_err(|e| harness("starting o2c-cloud notify", e))?;
    let notify_pid =
        child_pid(|comm, args| comm == "o2c-cloud" && args.iter().any(|a| *a == b"notify"));
    let smtp_pid = child_pid(|_, args| args.iter().any(|a| a.ends_with(b"server.py")));
    let (db, conn) = tokio_postgres::connect(&pg, tokio_postgres::NoTls)
        .await
        .map_err(|e| harness("connecting to the database", e))?;
    tokio::spawn(conn);
    let producer = o2c_runtime::kafka::producer(&brokers, 5).map_err(|e| harness("producer", e))?;

    let mut m = Measurement::default();
    let latency_n = rate * LATENCY_SECS;
    m.param("n", n);
    m.param("rate_per_s", rate);
    m.param("latency_secs", LATENCY_SECS);
    m.param("partitions", PARTITIONS);
    m.param("concurrency", CONCURRENCY);
    m.param("poll_ms", POLL_MS);
    m.param("kafka", "private Tansu, memory storage");
    m.param("smtp", "aiosmtpd (tests/smtp/server.py), fsync before 250");

    // Every order of both phases, then their contacts.
    let created: Vec<Envelope> = (0..n + latency_n)
        .map(order_created)
        .collect::<Result<_, _>>()?;
    let records = created.iter().map(record).collect::<Result<_, _>>()?;
    let t0 = Instant::now();
    produce_all(&producer, &topic, records).await?;
    wait_contacts(&db, n + latency_n, &notify).await?;
    m.metric("contacts_s", t0.elapsed().as_secs_f64());
    let (throughput, latency) = created.split_at(usize::try_from(n).unwrap_or(usize::MAX));

    // 1. Throughput.
    let captured: Vec<Envelope> = throughput
        .iter()
        .map(payment_captured)
        .collect::<Result<_, _>>()?;
    let expected: HashMap<String, u64> = captured
        .iter()
        .map(|e| (message_id(&e.payload.order_id().to_string()), 0))
        .collect();
    let records = captured.iter().map(record).collect::<Result<_, _>>()?;
    let cpu_before = CpuSnapshot::take()?;
    let (notify_cpu0, smtp_cpu0) = (cpu_of_pid(notify_pid)?, cpu_of_pid(smtp_pid)?);
    let start_ns = unix_ns();
    produce_all(&producer, &topic, records).await?;
    let want = usize::try_from(n).unwrap_or(usize::MAX);
    let have = wait_count(&smtp, want, Instant::now() + DEADLINE).await?;
    let notify_cpu = cpu_of_pid(notify_pid)? - notify_cpu0;
    let smtp_cpu = cpu_of_pid(smtp_pid)? - smtp_cpu0;
    let cpu_after = CpuSnapshot::take()?;
    let mails = smtp
        .messages()
        .map_err(|e| harness("reading messages.jsonl", e))?;
    let (first, duplicates) = arrivals(&mails, &expected);
    if have < want || first.len() < expected.len() {
        return Err(harness(
            "throughput phase",
            format!(
                "{} of {n} messages accepted in {DEADLINE:?}\n{}",
                first.len(),
                notify.log_tail()
            ),
        ));
    }
    let last_ns = first.values().copied().max().unwrap_or(start_ns);
    let first_ns = first.values().copied().min().unwrap_or(start_ns);
    let secs = last_ns.saturating_sub(start_ns) as f64 / 1e9;
    m.metric("notify_s", secs);
    m.metric("notify_msgs_per_s", n as f64 / secs.max(1e-3));
    m.metric("notify_cpu_s", notify_cpu);
    m.metric("notify_msgs_per_cpu_s", n as f64 / notify_cpu.max(0.01));
    m.metric(
        "notify_first_mail_ms",
        first_ns.saturating_sub(start_ns) as f64 / 1e6,
    );
    m.metric("notify_duplicates", duplicates as f64);
    m.metric(
        "cpu_postgres_s",
        cpu_of(&cpu_before, &cpu_after, "postgres"),
    );
    m.metric("cpu_tansu_s", cpu_of(&cpu_before, &cpu_after, "tansu"));
    if smtp_pid.is_some() {
        m.metric("cpu_smtp_server_s", smtp_cpu);
    }

    // 2. Baseline: the same messages from a bare client.
    let sample_id = throughput[0].payload.order_id().to_string();
    let sample = mails
        .iter()
        .find(|mail| mail.message_id == message_id(&sample_id))
        .ok_or_else(|| harness("baseline", "phase 1's first order has no mail"))?;
    m.param("mail_body_bytes", sample.body.len());
    let (bare_s, bare_cpu, bare_errors, bare_smtp_cpu) = bare_send(
        &smtp,
        smtp_pid,
        n,
        &sample_id,
        &sample.subject,
        &sample.body,
    )
    .await?;
    m.baseline("bare_s", bare_s);
    m.baseline("bare_msgs_per_s", n as f64 / bare_s.max(1e-3));
    m.baseline("bare_cpu_s", bare_cpu);
    m.baseline("bare_msgs_per_cpu_s", n as f64 / bare_cpu.max(0.01));
    m.baseline("bare_errors", bare_errors as f64);
    if smtp_pid.is_some() {
        m.baseline("cpu_smtp_server_s", bare_smtp_cpu);
    }
    let before_latency = smtp
        .message_count()
        .map_err(|e| harness("reading messages.jsonl", e))?;

    // 3. Latency at a steady rate, open loop.
    let records: Vec<(String, Vec<u8>)> = latency
        .iter()
        .map(|c| payment_captured(c).and_then(|p| record(&p)))
        .collect::<Result<_, _>>()?;
    let notify_cpu0 = cpu_of_pid(notify_pid)?;
    let (wall0, start) = (unix_ns(), Instant::now());
    // A moment to spawn nothing late at the first tick.
    let (start, start_ns) = (start + Duration::from_millis(5), wall0 + 5_000_000);
    let mut due_of = HashMap::with_capacity(records.len());
    let mut lag_h = histogram()?;
    let mut sends = Vec::with_capacity(records.len());
    for (i, (key, bytes)) in (0u64..).zip(records) {
        let due = i.saturating_mul(1_000_000_000) / rate;
        let at = start + Duration::from_nanos(due);
        tokio::time::sleep_until(at).await;
        record_us(
            &mut lag_h,
            u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX),
        )?;
        due_of.insert(message_id(&key), start_ns + due);
        let (p, t) = (producer.clone(), topic.clone());
        sends.push(tokio::spawn(async move {
            o2c_runtime::kafka::send(&p, &t, &key, &[], &bytes).await
        }));
    }
    let mut produce_errors = 0u64;
    for s in sends {
        if !matches!(s.await, Ok(Ok(()))) {
            produce_errors += 1;
        }
    }
    let deadline = Instant::now() + LATENCY_DEADLINE;
    let want = before_latency + due_of.len();
    let (mut first, mut duplicates);
    loop {
        wait_count(&smtp, want, deadline).await?;
        let mails = smtp
            .messages()
            .map_err(|e| harness("reading messages.jsonl", e))?;
        (first, duplicates) = arrivals(&mails, &due_of);
        if first.len() == due_of.len() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let notify_cpu = cpu_of_pid(notify_pid)? - notify_cpu0;
    let mut h = histogram()?;
    for (id, received_ns) in &first {
        let due_ns = due_of.get(id).copied().unwrap_or(*received_ns);
        record_us(&mut h, received_ns.saturating_sub(due_ns) / 1000)?;
    }
    let ms = |us: u64| us as f64 / 1000.0;
    m.metric("latency_samples", h.len() as f64);
    m.metric("latency_p50_ms", ms(h.value_at_quantile(0.50)));
    m.metric("latency_p90_ms", ms(h.value_at_quantile(0.90)));
    m.metric("latency_p99_ms", ms(h.value_at_quantile(0.99)));
    m.metric("latency_max_ms", ms(h.max()));
    m.metric("latency_missing", (due_of.len() - first.len()) as f64);
    m.metric("latency_duplicates", duplicates as f64);
    m.metric("latency_produce_errors", produce_errors as f64);
    m.metric("send_lag_p99_ms", ms(lag_h.value_at_quantile(0.99)));
    m.metric(
        "notify_cpu_ms_per_msg_at_rate",
        notify_cpu * 1000.0 / first.len().max(1) as f64,
    );
    m.param(
        "latency_target",
        "issue 20 names no number for the p99: reported only",
    );
    m.param(
        "baseline",
        "bare lettre AsyncSmtpTransport, same server, messages and concurrency",
    );
    drop(notify);
    drop(smtp);
    drop(tansu);
    Ok(m)
}

/// Sends `n` messages shaped like `subject` and `body` (with a fresh order
/// id for `sample_id`) with a bare lettre client, [`CONCURRENCY`] at once:
/// seconds, this process's CPU seconds, errors, and the server's CPU.
async fn bare_send(
    smtp: &SmtpServer,
    smtp_pid: Option<u32>,
    n: u64,
    sample_id: &str,
    subject: &str,
    body: &str,
) -> Result<(f64, f64, u64, f64), BenchError> {
    let from: Mailbox = FROM.parse().map_err(|e| harness("parsing the sender", e))?;
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(smtp.port())
        .timeout(Some(Duration::from_secs(10)))
        .build();
    let (cpu0, smtp_cpu0) = (cpu_seconds_of(std::process::id())?, cpu_of_pid(smtp_pid)?);
    let t0 = Instant::now();
    let outcomes: Vec<Result<(), String>> = futures::stream::iter(0..n)
        .map(|i| {
            let (transport, from) = (&transport, from.clone());
            async move {
                let id = uuid::Uuid::now_v7().to_string();
                let message = Message::builder()
                    .from(from)
                    .to(format!("bare-{i}@shop.test")
                        .parse()
                        .map_err(|e| format!("{e}"))?)
                    .subject(subject.replace(sample_id, &id))
                    .message_id(Some(message_id(&id)))
                    .header(ContentType::TEXT_PLAIN)
                    .body(body.replace(sample_id, &id))
                    .map_err(|e| format!("{e}"))?;
                transport
                    .send(message)
                    .await
                    .map(drop)
                    .map_err(|e| format!("{e}"))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds_of(std::process::id())? - cpu0;
    let smtp_cpu = cpu_of_pid(smtp_pid)? - smtp_cpu0;
    let errors = outcomes.iter().filter(|o| o.is_err()).count() as u64;
    if errors == n {
        let first = outcomes.into_iter().find_map(Result::err);
        return Err(harness(
            "bare client",
            format!("every send failed: {first:?}"),
        ));
    }
    Ok((secs, cpu, errors, smtp_cpu))
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
    fn message_ids_are_notify_s() {
        assert_eq!(message_id("o-1"), "<o-1.order_confirmed@shop.test>");
    }

    #[test]
    fn orders_are_valid_and_paid_in_full() {
        let created = order_created(7).unwrap();
        let Event::OrderCreated(o) = &created.payload else {
            panic!("an OrderCreated");
        };
        o.validate().unwrap();
        let paid = payment_captured(&created).unwrap();
        assert_eq!(paid.payload.order_id(), o.order_id);
        assert_eq!(paid.store_id, created.store_id);
    }

    #[test]
    fn arrivals_count_firsts_and_duplicates_of_expected_ids_only() {
        let mail = |id: &str, ns| crate::smtp::ReceivedMail {
            received_ns: ns,
            mail_from: String::new(),
            rcpt_tos: Vec::new(),
            message_id: id.into(),
            subject: String::new(),
            headers: Default::default(),
            body: String::new(),
        };
        let expected = HashMap::from([("<a>".to_owned(), 0), ("<b>".to_owned(), 0)]);
        let mails = [
            mail("<a>", 5),
            mail("<x>", 6),
            mail("<a>", 7),
            mail("<b>", 9),
        ];
        let (first, dups) = arrivals(&mails, &expected);
        assert_eq!(first, HashMap::from([("<a>".into(), 5), ("<b>".into(), 9)]));
        assert_eq!(dups, 1);
    }
}
