//! # o2c-reconcile: prove each store's business day complete
//!
//! `o2c-cloud reconcile --store S001 --date 2026-12-03` (or `--all`) reads
//! what the cloud holds and compares it with each agent's day manifest
//! (`o2c_protocol::day`): every seq of the day in Kafka exactly once, the
//! same figures, the same digest of event ids.
//!
//! - [`core`]: the pure comparison ([`core::Ledger`]), verdicts and
//!   reports. Start there.
//! - this module: the shell. It scans three topics once, up to their high
//!   watermarks at the start: the day manifests (`stores.days`), the order
//!   history (`orders.events`; the ingest's records, told by their
//!   `source` header, carry store, agent and seq headers) and the dead
//!   letters (`o2c.dlq`; a rejected event is settled but not in Kafka).
//!   Records of other stores are skipped by their headers, undecoded.
//! - [`render`]: the table and the JSON, the exit code, and the
//!   Prometheus text file for the alert rule.

#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod core;
pub mod render;

use std::time::Duration;

use o2c_protocol::day::{BusinessDate, DayClosed, Tender};
use o2c_protocol::topic::parse_agent_topic;
use o2c_protocol::{AgentId, Envelope, Event, EventId, StoreId};
use o2c_runtime::kafka::scan::{ScanFrom, ScannedRecord, scan_each};

use self::core::{Kind, Ledger, Rejected, Seen, StoreDay};
use o2c_cloud_common::config::Config;

/// Why a reconciliation could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Reading a topic failed.
    #[error("reading {topic}: {source}")]
    Kafka {
        /// The topic.
        topic: String,
        /// What failed.
        source: rdkafka::error::KafkaError,
    },
    /// The blocking reader stopped.
    #[error("reader task: {0}")]
    Join(String),
}

/// Which stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One store.
    Store(StoreId),
    /// Every store expected to close the date.
    All,
}

/// Longest a topic scan may take.
const SCAN_WAIT: Duration = Duration::from_secs(600);

/// Reads the cloud's records and reconciles `date` for `scope`.
pub async fn reconcile(
    cfg: &Config,
    scope: Scope,
    date: BusinessDate,
) -> Result<Vec<StoreDay>, ReconcileError> {
    reconcile_with(cfg.kafka.brokers.clone(), cfg.topics(), scope, date).await
}

/// [`reconcile`] given the brokers and the topic names.
pub async fn reconcile_with(
    brokers: String,
    topics: o2c_protocol::KafkaTopics,
    scope: Scope,
    date: BusinessDate,
) -> Result<Vec<StoreDay>, ReconcileError> {
    let only = match &scope {
        Scope::Store(s) => Some(s.clone()),
        Scope::All => None,
    };
    let ledger = tokio::task::spawn_blocking(move || read_ledger(&brokers, &topics, only.as_ref()))
        .await
        .map_err(|e| ReconcileError::Join(e.to_string()))??;
    let stores = match scope {
        Scope::Store(s) => vec![s],
        Scope::All => ledger.stores_for(date).into_iter().collect(),
    };
    let mut days: Vec<StoreDay> = stores.iter().map(|s| ledger.reconcile(s, date)).collect();
    days.sort_by(|a, b| {
        b.status
            .cmp(&a.status)
            .then_with(|| a.store_id.as_str().cmp(b.store_id.as_str()))
    });
    Ok(days)
}

/// Scans the three topics into a ledger (of `only`'s records, or all).
pub fn read_ledger(
    brokers: &str,
    topics: &o2c_protocol::KafkaTopics,
    only: Option<&StoreId>,
) -> Result<Ledger, ReconcileError> {
    let mut reader = Reader::new(only.cloned());
    let scan = |topic: String, key: Option<&str>, each: &mut dyn FnMut(ScannedRecord)| {
        scan_each(brokers, &topic, key, ScanFrom::Beginning, SCAN_WAIT, each)
            .map_err(|source| ReconcileError::Kafka { topic, source })
    };
    scan(topics.days(), only.map(StoreId::as_str), &mut |r| {
        reader.manifest(&r)
    })?;
    scan(topics.history(), None, &mut |r| reader.history(&r))?;
    scan(topics.dlq(), None, &mut |r| reader.dead_letter(&r))?;
    if reader.skipped > 0 {
        tracing::warn!(
            skipped = reader.skipped,
            "records that could not be read were skipped"
        );
    }
    Ok(reader.ledger)
}

/// Takes the records of the three topics one by one into a [`Ledger`]:
/// what [`read_ledger`] does with each record it scans.
#[derive(Debug, Default)]
pub struct Reader {
    only: Option<StoreId>,
    /// Records that could not be read (logged).
    pub skipped: u64,
    /// What was read.
    pub ledger: Ledger,
}

impl Reader {
    /// A reader keeping `only`'s records, or every store's.
    pub fn new(only: Option<StoreId>) -> Reader {
        Reader {
            only,
            ..Reader::default()
        }
    }

    fn wanted(&self, store: &StoreId) -> bool {
        self.only.as_ref().is_none_or(|s| s == store)
    }

    /// A record of `stores.days`.
    pub fn manifest(&mut self, r: &ScannedRecord) {
        match DayClosed::decode(&r.value) {
            Ok(d) if self.wanted(&d.store_id) => self.ledger.add_manifest(d),
            Ok(_) => {}
            Err(e) => {
                self.skipped += 1;
                tracing::warn!(offset = r.offset, error = %e, "undecodable day manifest skipped");
            }
        }
    }

    /// A record of `orders.events`: only the ingest's (store events), and
    /// another store's skipped by its header, undecoded.
    pub fn history(&mut self, r: &ScannedRecord) {
        if r.header("source") != Some("ingest") {
            return;
        }
        if let (Some(s), Some(h)) = (&self.only, r.header("store_id"))
            && s.as_str() != h
        {
            return;
        }
        match store_event(r) {
            Some((store, agent, seq, on, seen)) if self.wanted(&store) => {
                self.ledger.add_event(store, agent, seq, on, seen)
            }
            Some(_) => {}
            None => {
                self.skipped += 1;
                tracing::warn!(
                    offset = r.offset,
                    "unreadable store event in the history skipped"
                );
            }
        }
    }

    /// A record of the dead-letter topic (only a store event's counts).
    pub fn dead_letter(&mut self, r: &ScannedRecord) {
        if let Some((store, agent, seq, rej)) = dead_letter(r)
            && self.wanted(&store)
        {
            self.ledger.add_rejected(store, agent, seq, rej);
        }
    }
}

/// A store event of the history: who, which seq, which UTC date, what.
fn store_event(r: &ScannedRecord) -> Option<(StoreId, AgentId, u64, time::Date, Seen)> {
    let store = StoreId::new(r.header("store_id")?).ok()?;
    let agent = AgentId::new(r.header("agent_id")?).ok()?;
    let seq: u64 = r.header("seq")?.parse().ok()?;
    let env = Envelope::decode(&r.value).ok()?;
    let kind = match env.payload {
        Event::OrderCreated(o) => Kind::Created {
            order_id: o.order_id,
            total: o.total().ok()?,
            payments: o
                .payments
                .iter()
                .map(|p| (Tender::of(p), p.amount()))
                .collect(),
        },
        Event::OrderCancelled(c) => Kind::Cancelled(c.order_id),
        _ => Kind::Other,
    };
    Some((
        store,
        agent,
        seq,
        env.occurred_at.date(),
        Seen {
            event_id: env.event_id,
            kind,
        },
    ))
}

/// A dead-lettered store event: the store from its source MQTT topic.
fn dead_letter(r: &ScannedRecord) -> Option<(StoreId, AgentId, u64, Rejected)> {
    let seq: u64 = r.header("seq")?.parse().ok()?;
    let (store, agent, _) = parse_agent_topic(r.header("source_topic")?).ok()?;
    let event_id = r.header("event_id").and_then(|e| e.parse::<EventId>().ok());
    let reason = r.header("reason").unwrap_or("unknown").to_owned();
    Some((store, agent, seq, Rejected { event_id, reason }))
}
