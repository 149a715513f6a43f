//! The world the `drain` and `e2e` scenarios share: one real `o2c-agent`
//! syncing through a private Mosquitto to one real `o2c-cloud ingest`, which
//! writes to a private Tansu, plus the measuring tools both need.
//!
//! - [`SyncWorld`]: starts Tansu (memory storage), creates every o2c topic
//!   up front (3 partitions, as the ingest would), starts Mosquitto, the
//!   ingest and the agent (release binaries next to `o2c-bench`). With
//!   `offline`, the agent reaches Mosquitto only through a cut
//!   [`LinkProxy`]; otherwise it connects directly.
//! - [`Poster::post_order`]: one cash carry-out order, timed at the 201.
//! - [`SyncWorld::verify_kafka`]: Kafka holds exactly the outbox's event ids
//!   (a benchmark that loses or invents orders fails).
//! - [`CpuSnapshot`] (from [`super::cpu`]): the CPU each process used.
//! - [`IngestCounters`]: frames, events and produce time from the ingest's
//!   `/metrics`, to see batch sizes and where a round trip spends its time.
//! - [`producer`]: a bare rdkafka producer with the ingest's settings, for
//!   the same-run baselines.
//!
//! Why memory storage: Tansu's SQLite storage tops out near 18k idempotent
//! records/s on this machine (`shared/DEPENDENCY-NOTES.md`), below the
//! drain target, so it would measure Tansu's SQLite, not o2c. In memory,
//! the broker's own storage is out of the way and the raw-producer ceiling
//! measured in the same run shows what is left of it.

use crate::bench::harness;
use crate::kafka::create_o2c_topics;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use o2c_protocol::KafkaTopics;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use serde_json::Value;
use tempfile::TempDir;

use super::{BenchError, Measurement};
use crate::netns::AgentNet;
use crate::pipeline::{AgentProc, Ingest, KafkaView, TERMINAL_TOKEN};
use crate::proxy::LinkProxy;
use crate::{
    ConsumedRecord, PrivateMosquitto, PrivateTansu, TansuStorage, consume_all,
    create_topics_with_partitions, topic_record_count,
};

/// Partitions of every topic: the ingest's default (`kafka.partitions`).
pub(super) const PARTITIONS: i32 = 3;
/// Topics the baselines write to, without prefix (created up front too).
pub(super) const RAW_TOPICS: [&str; 2] = ["bench.raw", "bench.raw-batched"];
/// Microseconds since the Unix epoch.
pub(super) fn unix_us(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// A latency histogram in microseconds, 1 µs to 1 hour.
pub(super) fn histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .map_err(|e| BenchError::Histogram(e.to_string()))
}

/// Pushes `{prefix}_p50_ms`, `p99`, `p999` and `max` of a µs histogram.
pub(super) fn push_latencies(
    m: &mut Measurement,
    prefix: &str,
    h: &Histogram<u64>,
    push: fn(&mut Measurement, &str, f64),
) {
    let ms = |us: u64| us as f64 / 1000.0;
    push(m, &format!("{prefix}_p50_ms"), ms(h.value_at_quantile(0.5)));
    push(
        m,
        &format!("{prefix}_p99_ms"),
        ms(h.value_at_quantile(0.99)),
    );
    push(
        m,
        &format!("{prefix}_p999_ms"),
        ms(h.value_at_quantile(0.999)),
    );
    push(m, &format!("{prefix}_max_ms"), ms(h.max()));
}

/// How to start a [`SyncWorld`].
#[derive(Debug, Clone)]
pub(super) struct WorldOptions {
    /// Route the agent through a [`LinkProxy`] that starts cut.
    pub(super) offline: bool,
    /// Run the agent in a network namespace of its own, reaching Mosquitto
    /// through a [`LinkProxy`] on the veth's host end (link faults).
    pub(super) netns: bool,
    /// Extra lines for the agent's `[mqtt]` table (batch sizes, timeouts).
    pub(super) agent_mqtt: String,
}

/// The running pipeline. Dropping it stops every process.
#[derive(Debug)]
pub(super) struct SyncWorld {
    /// The agent (shared with capture tasks).
    pub(super) agent: Arc<AgentProc>,
    /// The ingest.
    pub(super) ingest: Ingest,
    /// The agent's link, when started `offline` or in a namespace.
    pub(super) proxy: Option<LinkProxy>,
    /// The agent's namespace (dropped after the agent).
    pub(super) net: Option<AgentNet>,
    /// Mosquitto (kept alive for the world's lifetime).
    _mosquitto: PrivateMosquitto,
    /// Tansu (kept alive for the world's lifetime).
    _tansu: PrivateTansu,
    /// Bootstrap servers of the private Tansu.
    pub(super) brokers: String,
    /// Topic names under this run's unique prefix (`{prefix}.`).
    pub(super) topics: KafkaTopics,
    prefix: String,
    base: String,
    http: reqwest::Client,
    _dir: TempDir,
}

impl SyncWorld {
    /// Starts Tansu, the topics, Mosquitto, the ingest and the agent.
    pub(super) async fn start(opts: &WorldOptions) -> Result<Self, BenchError> {
        let dir = tempfile::Builder::new()
            .prefix("o2c-bench-sync-")
            .tempdir()
            .map_err(|e| BenchError::io("creating the bench dir", e))?;
        let prefix = format!("b{:010x}", rand::random::<u64>() & 0xff_ffff_ffff);
        let tansu = PrivateTansu::start_with(TansuStorage::Memory)
            .await
            .map_err(|e| harness("starting Tansu (memory storage)", e))?;
        let brokers = tansu.brokers();
        let topics =
            KafkaTopics::new(format!("{prefix}.")).map_err(|e| harness("topic prefix", e))?;
        create_o2c_topics(&brokers, &format!("{prefix}."), PARTITIONS)
            .await
            .map_err(|e| harness("creating the o2c topics", e))?;
        let names: Vec<String> = RAW_TOPICS.iter().map(|t| format!("{prefix}.{t}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        create_topics_with_partitions(&brokers, &refs, PARTITIONS)
            .await
            .map_err(|e| harness("creating the raw topics", e))?;
        let mosquitto = PrivateMosquitto::start()
            .await
            .map_err(|e| harness("starting Mosquitto", e))?;
        let ingest = Ingest::start(dir.path(), &prefix, &mosquitto.url(), &brokers)
            .await
            .map_err(|e| harness("starting the ingest", e))?;
        let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], mosquitto.port()));
        let net = if opts.netns {
            let tag = format!("b{:06x}", rand::random::<u32>() & 0xff_ffff);
            Some(AgentNet::create(&tag).map_err(|e| harness("creating the agent's namespace", e))?)
        } else {
            None
        };
        let proxy = match (&net, opts.offline) {
            (Some(net), _) => Some(
                LinkProxy::start_on(std::net::SocketAddr::from((net.host_ip(), 0)), upstream)
                    .await
                    .map_err(|e| harness("starting the link proxy", e))?,
            ),
            (None, true) => Some(
                LinkProxy::start(upstream)
                    .await
                    .map_err(|e| harness("starting the link proxy", e))?,
            ),
            (None, false) => None,
        };
        if let Some(p) = &proxy {
            p.set_up(!opts.offline);
        }
        let agent_url = proxy
            .as_ref()
            .map_or_else(|| mosquitto.url(), |p| format!("mqtt://{}", p.addr()));
        let store = format!("{prefix}-S1");
        let (wrapper, listen) = match &net {
            Some(net) => (net.wrapper(), Some(format!("{}:0", net.ns_ip()))),
            None => (Vec::new(), None),
        };
        let agent = AgentProc::start_wrapped(
            dir.path(),
            &store,
            &format!("{store}-A1"),
            &agent_url,
            &opts.agent_mqtt,
            wrapper,
            listen,
        )
        .await
        .map_err(|e| harness("starting the agent", e))?;
        let base = crate::saga::agent_base(&agent).map_err(|e| harness("agent address", e))?;
        Ok(Self {
            agent: Arc::new(agent),
            ingest,
            proxy,
            net,
            _mosquitto: mosquitto,
            _tansu: tansu,
            brokers,
            topics,
            prefix,
            base,
            http: reqwest::Client::new(),
            _dir: dir,
        })
    }

    /// A topic under this run's prefix.
    pub(super) fn topic(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    /// A cloneable handle for capture tasks.
    pub(super) fn poster(&self) -> Poster {
        Poster {
            http: self.http.clone(),
            base: self.base.clone(),
        }
    }

    /// `GET /v1/sync`.
    pub(super) async fn sync_status(&self) -> Result<Value, BenchError> {
        self.agent
            .sync_status()
            .await
            .map_err(|e| harness("GET /v1/sync", e))
    }

    /// Polls `GET /v1/sync` every `poll` until `connected` is true.
    pub(super) async fn wait_connected(
        &self,
        poll: Duration,
        timeout: Duration,
    ) -> Result<SystemTime, BenchError> {
        let deadline = Instant::now() + timeout;
        let mut tick = tokio::time::interval(poll);
        loop {
            tick.tick().await;
            let st = self.sync_status().await?;
            if st["connected"] == true {
                return Ok(SystemTime::now());
            }
            if Instant::now() >= deadline {
                return Err(BenchError::Invalid(format!(
                    "agent not connected after {timeout:?}: {st}"
                )));
            }
        }
    }

    /// Polls `GET /v1/sync` every `poll` until nothing is pending; returns
    /// the last status seen (it carries `last_ack_at_ms`).
    pub(super) async fn wait_drained(
        &self,
        poll: Duration,
        timeout: Duration,
    ) -> Result<Value, BenchError> {
        let deadline = Instant::now() + timeout;
        let mut tick = tokio::time::interval(poll);
        loop {
            tick.tick().await;
            let st = self.sync_status().await?;
            if st["pending_events"] == 0 && st["connected"] == true {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                return Err(BenchError::Invalid(format!(
                    "outbox not drained after {timeout:?}: {st}"
                )));
            }
        }
    }

    /// The outbox read from the agent's SQLite file (read-only):
    /// `(order_id, event_id, event_type, state, acked_at_ms)` in seq order.
    pub(super) fn outbox_rows(&self) -> Result<Vec<OutboxRow>, BenchError> {
        read_outbox(&self.agent.db_path())
    }

    /// `sync_state.last_ack_at_ms`: when the agent received its latest ack
    /// (wall clock, whole ms), read from its SQLite file (read-only).
    pub(super) fn last_ack_at_ms(&self) -> Result<i64, BenchError> {
        let what = "reading the agent's last ack time";
        let conn = rusqlite::Connection::open_with_flags(
            self.agent.db_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .map_err(|e| BenchError::sqlite(what, e))?;
        let at: Option<i64> = conn
            .query_row(
                "SELECT last_ack_at_ms FROM sync_state WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .map_err(|e| BenchError::sqlite(what, e))?;
        at.ok_or_else(|| BenchError::Invalid("the agent has no ack yet".into()))
    }

    /// Checks that every outbox event is acked and that the event topic
    /// holds exactly those event ids; returns the records (all copies).
    pub(super) async fn verify_kafka(&self) -> Result<KafkaCheck, BenchError> {
        let rows = self.outbox_rows()?;
        if let Some(r) = rows.iter().find(|r| r.state != "acked") {
            return Err(BenchError::Invalid(format!(
                "outbox event {} is {}, not acked",
                r.event_id, r.state
            )));
        }
        if rows.iter().any(|r| r.event_type != "OrderCreated") {
            return Err(BenchError::Invalid(
                "the outbox holds events other than OrderCreated".into(),
            ));
        }
        let expected: BTreeSet<String> = rows.iter().map(|r| r.event_id.clone()).collect();
        let topic = self.topics.for_event(o2c_protocol::EventType::OrderCreated);
        let count = topic_record_count(&self.brokers, &topic)
            .await
            .map_err(|e| harness("counting Kafka records", e))?;
        // The watermarks may under-count on Tansu; read at least one
        // record per acked event (a short read fails the run below).
        let count = usize::try_from(count).unwrap_or(0).max(expected.len());
        let records = consume_all(&self.brokers, &topic, count, Duration::from_secs(120))
            .await
            .map_err(|e| harness("reading the event topic back (orders lost?)", e))?;
        let view = KafkaView::new(records.clone());
        let got = view.event_ids();
        let missing = expected.difference(&got).count();
        let extra = got.difference(&expected).count();
        if missing > 0 || extra > 0 {
            return Err(BenchError::Invalid(format!(
                "Kafka and the outbox differ: {missing} acked events missing from Kafka, \
                 {extra} unknown events in Kafka"
            )));
        }
        Ok(KafkaCheck {
            events: got.len(),
            raw_duplicates: view.raw_duplicates(),
            records,
        })
    }
}

/// A cheap, cloneable way to post orders from spawned tasks.
#[derive(Debug, Clone)]
pub(super) struct Poster {
    http: reqwest::Client,
    base: String,
}

impl Poster {
    /// Posts one cash carry-out order (the harness's standard body) and
    /// returns its id and the wall-clock time the 201 arrived.
    pub(super) async fn post_order(&self, key: &str) -> Result<(String, SystemTime), BenchError> {
        post_order(&self.http, &self.base, key).await
    }
}

async fn post_order(
    http: &reqwest::Client,
    base: &str,
    key: &str,
) -> Result<(String, SystemTime), BenchError> {
    let body = serde_json::json!({
        "terminal_id": "T1", "currency": "CAD",
        "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1499}],
        "payments": [{"method": "cash", "amount_minor": 2998}],
        "fulfillment": {"type": "carry_out"}
    });
    let r = http
        .post(format!("{base}/v1/orders"))
        .bearer_auth(TERMINAL_TOKEN)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .map_err(|e| harness("POST /v1/orders", e))?;
    let at = SystemTime::now();
    let status = r.status().as_u16();
    let v: Value = r
        .json()
        .await
        .map_err(|e| harness("POST /v1/orders body", e))?;
    match (status, v["order_id"].as_str()) {
        (201, Some(id)) => Ok((id.to_owned(), at)),
        _ => Err(BenchError::Invalid(format!(
            "POST /v1/orders answered {status} {v}"
        ))),
    }
}

/// One outbox row.
#[derive(Debug, Clone)]
pub(super) struct OutboxRow {
    pub(super) order_id: String,
    pub(super) event_id: String,
    pub(super) event_type: String,
    pub(super) state: String,
    pub(super) acked_at_ms: Option<i64>,
}

fn read_outbox(db: &Path) -> Result<Vec<OutboxRow>, BenchError> {
    let what = "reading the agent's outbox";
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| BenchError::sqlite(what, e))?;
    let mut stmt = conn
        .prepare(
            "SELECT order_id, event_id, event_type, state, acked_at_ms FROM outbox ORDER BY seq",
        )
        .map_err(|e| BenchError::sqlite(what, e))?;
    stmt.query_map([], |r| {
        Ok(OutboxRow {
            order_id: r.get(0)?,
            event_id: r.get(1)?,
            event_type: r.get(2)?,
            state: r.get(3)?,
            acked_at_ms: r.get(4)?,
        })
    })
    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
    .map_err(|e| BenchError::sqlite(what, e))
}

/// What [`SyncWorld::verify_kafka`] found.
#[derive(Debug)]
pub(super) struct KafkaCheck {
    /// Distinct event ids (equal to the outbox's).
    pub(super) events: usize,
    /// Records beyond the first per event id.
    pub(super) raw_duplicates: usize,
    /// Every record read, duplicates included.
    pub(super) records: Vec<ConsumedRecord>,
}

impl KafkaCheck {
    /// The first copy of each event, as the ingest wrote it.
    pub(super) fn firsts(&self) -> Vec<&ConsumedRecord> {
        let mut seen = BTreeSet::new();
        self.records
            .iter()
            .filter(|r| seen.insert(r.header_str("event_id").unwrap_or_default()))
            .collect()
    }
}

/// Counters from the ingest's `/metrics` at one moment.
#[derive(Debug, Clone, Default)]
pub(super) struct IngestCounters {
    values: HashMap<String, f64>,
}

impl IngestCounters {
    /// Reads and parses `/metrics` (Prometheus text).
    pub(super) async fn read(ingest: &Ingest) -> Result<Self, BenchError> {
        let text = ingest
            .metrics()
            .await
            .map_err(|e| harness("reading the ingest's /metrics", e))?;
        Ok(Self::parse(&text))
    }

    fn parse(text: &str) -> Self {
        let values = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_owned(), value.parse::<f64>().ok()?))
            })
            .collect();
        Self { values }
    }

    fn get(&self, name: &str) -> f64 {
        self.values.get(name).copied().unwrap_or(0.0)
    }

    /// Records frames, events per frame and produce time per frame between
    /// `self` and `later`.
    pub(super) fn record_delta(&self, later: &IngestCounters, m: &mut Measurement) {
        let d = |n: &str| later.get(n) - self.get(n);
        let frames = d("o2c_ingest_frames_in_total");
        let events = d("o2c_ingest_events_in_total");
        let produce = d("o2c_ingest_produce_seconds_sum");
        let produced_batches = d("o2c_ingest_produce_seconds_count");
        m.metric("ingest_frames", frames);
        m.metric("ingest_events_per_frame", events / frames.max(1.0));
        m.metric(
            "ingest_produce_per_frame_ms",
            produce * 1000.0 / produced_batches.max(1.0),
        );
        m.metric("ingest_produce_total_s", produce);
        m.metric(
            "ingest_frames_coalesced",
            d("o2c_ingest_frames_coalesced_total"),
        );
        m.metric(
            "ingest_events_duplicate",
            d("o2c_ingest_events_duplicate_total"),
        );
    }
}

/// The producer settings of `runtime/src/kafka.rs` (`producer`): idempotent,
/// `acks=all`, `linger.ms` = the ingest's default of 1, no message timeout.
pub(super) const PRODUCER_LINGER_MS: u32 = 1;

/// A bare idempotent producer with the ingest's settings.
pub(super) fn producer(brokers: &str) -> Result<FutureProducer, BenchError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", PRODUCER_LINGER_MS.to_string())
        .set("message.timeout.ms", "0")
        .set("message.max.bytes", "4000000")
        .set("client.id", "o2c-bench")
        .create()
        .map_err(|e| harness("creating the baseline producer", e))
}

/// Sends one record to `topic` and waits for it: sets up the idempotent
/// producer id and the topic's metadata before anything is timed.
pub(super) async fn warm(producer: &FutureProducer, topic: &str) -> Result<(), BenchError> {
    let record = FutureRecord::to(topic).key("warm-up").payload("warm-up");
    producer
        .send(record, Timeout::Never)
        .await
        .map(|_| ())
        .map_err(|(e, _)| harness("warming the baseline producer", e))?;
    // Nothing of the warm-up stays queued.
    producer
        .flush(Timeout::After(Duration::from_secs(10)))
        .map_err(|e| harness("flushing the baseline producer", e))
}

/// The record `r` re-targeted at `topic`: same key, headers and value.
pub(super) fn record_like<'a>(
    r: &'a ConsumedRecord,
    topic: &'a str,
) -> FutureRecord<'a, [u8], [u8]> {
    let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
    for (k, v) in &r.headers {
        headers = headers.insert(Header {
            key: k,
            value: Some(v.as_slice()),
        });
    }
    let mut rec = FutureRecord::to(topic)
        .payload(r.payload.as_slice())
        .headers(headers);
    if let Some(k) = &r.key {
        rec = rec.key(k.as_slice());
    }
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_counters_give_batch_sizes() {
        let before = IngestCounters::parse("# HELP x\no2c_ingest_frames_in_total 10\n");
        let after = IngestCounters::parse(
            "o2c_ingest_frames_in_total 20\no2c_ingest_events_in_total 5000\n\
             o2c_ingest_produce_seconds_sum 0.05\no2c_ingest_produce_seconds_count 10\n",
        );
        let mut m = Measurement::default();
        before.record_delta(&after, &mut m);
        let get = |n: &str| m.metrics.iter().find(|(k, _)| k == n).unwrap().1;
        assert_eq!(get("ingest_frames"), 10.0);
        assert_eq!(get("ingest_events_per_frame"), 500.0);
        assert!((get("ingest_produce_per_frame_ms") - 5.0).abs() < 1e-9);
    }
}
