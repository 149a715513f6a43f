//! The live counters in Redis, and each order's record.
//!
//! Every event goes through one Lua script (`apply.lua`), atomically: it
//! records the event id (`SET NX EX`), updates the order's record, and
//! applies the change to the counters of the hour and the business day the
//! order was captured in. An event already applied changes nothing, so a
//! replay or a restart after kill -9 counts nothing twice.
//!
//! Keys (`{p}` is `[analytics.redis] key_prefix`, default `o2c:an:`):
//!
//! | key | type | holds | TTL |
//! | --- | --- | --- | --- |
//! | `{p}e:{event_id}` | string | an applied event | `dedup_ttl_secs` (30 days) |
//! | `{p}o:{order_id}` | hash | the order's record: `b` (what its counters need, JSON), `f` (its whole base, for the facts), `x` (cancelled), `rfd` (refunded), `pay`, `done`, `v` (version) | `hour_ttl_secs` (35 days), from its last change |
//! | `{p}h:{YYYYMMDDHH}` | hash | the counters of a capture hour (UTC) | `hour_ttl_secs` |
//! | `{p}d:{YYYYMMDD}` | hash | the counters of a business date | `day_ttl_secs` (400 days) |
//! | `{p}arr:{YYYYMMDDHH}` | hash | orders that arrived late in that hour (`late`, by scope) | `hour_ttl_secs` |
//!
//! Counter fields, each fleet-wide and prefixed by `s:{store}|` and
//! `c:{channel}|` for the same figure per store and per channel:
//! `orders`, `net_orders`, `voids`, `late`; and per currency `gross:{CUR}`,
//! `net:{CUR}` (gross less voids and refunds), `void:{CUR}`, `refund:{CUR}`,
//! `tender:{method}:{CUR}`, `cat:{category}|gross:{CUR}` and
//! `cat:{category}|net:{CUR}` (net of voids; refunds name no category).

use std::collections::HashMap;

use o2c_cloud_common::config::RedisConfig;
use redis::aio::ConnectionManager;

use crate::fold::{Base, Change};

/// A Redis failure (the caller retries: nothing is lost, the offset is not
/// committed).
#[derive(Debug, thiserror::Error)]
pub enum CountersError {
    /// Connecting or a command failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A record whose base is not ours (damaged, or a newer writer's).
    #[error("order record {key}: {detail}")]
    Record {
        /// The key.
        key: String,
        /// What was wrong.
        detail: String,
    },
}

/// The part of an order's base the script reads (`b`): what its counters
/// need, and nothing it would decode for nothing (lines, customer).
#[derive(Debug, serde::Serialize)]
struct CounterBase<'a> {
    h: &'a str,
    d: &'a str,
    cur: &'a str,
    total: i64,
    scopes: &'a [String],
    cats: &'a [(String, i64)],
    tenders: &'a [(String, i64)],
    late: bool,
}

impl<'a> CounterBase<'a> {
    fn of(b: &'a Base) -> Self {
        Self {
            h: &b.h,
            d: &b.d,
            cur: &b.cur,
            total: b.total,
            scopes: &b.scopes,
            cats: &b.cats,
            tenders: &b.tenders,
            late: b.late,
        }
    }
}

/// An order's record after an event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// The sale, once its `OrderCreated` has been applied.
    pub base: Option<Base>,
    /// Voided or cancelled.
    pub cancelled: bool,
    /// Refunded so far, minor units.
    pub refunded: i64,
    /// `captured` or `failed`, once the payment step has run.
    pub payment: Option<String>,
    /// Completion time, Unix milliseconds.
    pub completed_ms: Option<i64>,
    /// Bumped by every applied event: the facts' version.
    pub version: u64,
}

/// The counters' connection and settings.
#[derive(Clone)]
pub struct Counters {
    conn: ConnectionManager,
    script: std::sync::Arc<redis::Script>,
    cfg: RedisConfig,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters")
            .field("prefix", &self.cfg.key_prefix)
            .finish_non_exhaustive()
    }
}

impl Counters {
    /// Connects (and reconnects by itself after a failure).
    pub async fn connect(cfg: &RedisConfig) -> Result<Self, CountersError> {
        let client = redis::Client::open(cfg.url.as_str())?;
        let conn = ConnectionManager::new(client).await?;
        Ok(Self {
            conn,
            script: std::sync::Arc::new(redis::Script::new(include_str!("apply.lua"))),
            cfg: cfg.clone(),
        })
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.cfg.key_prefix
    }

    /// Applies `change` to `order_id` once per `event_id`. Returns whether
    /// it was applied now (false: a replay) and the record after it.
    pub async fn apply(
        &self,
        event_id: &str,
        order_id: &str,
        change: &Change,
        arrival_hour: &str,
    ) -> Result<(bool, Record), CountersError> {
        let p = &self.cfg.key_prefix;
        let encode = |v: Result<String, serde_json::Error>| {
            v.map_err(|e| CountersError::Record {
                key: format!("{p}o:{order_id}"),
                detail: e.to_string(),
            })
        };
        let (value, whole) = match change {
            Change::Created(base) => (
                encode(serde_json::to_string(&CounterBase::of(base)))?,
                encode(serde_json::to_string(base))?,
            ),
            Change::Refunded(minor) => (minor.to_string(), String::new()),
            Change::Completed(ms) => (ms.to_string(), String::new()),
            Change::Cancelled | Change::Paid | Change::PaymentFailed => {
                (String::new(), String::new())
            }
        };
        let record_key = format!("{p}o:{order_id}");
        let mut conn = self.conn.clone();
        let (fresh, fields): (i64, Vec<String>) = self
            .script
            .key(format!("{p}e:{event_id}"))
            .key(&record_key)
            .arg(change.op())
            .arg(self.cfg.dedup_ttl_secs)
            .arg(self.cfg.hour_ttl_secs)
            .arg(self.cfg.day_ttl_secs)
            .arg(p)
            .arg(value)
            .arg(arrival_hour)
            .arg(whole)
            .invoke_async(&mut conn)
            .await?;
        Ok((fresh == 1, record(&record_key, &fields)?))
    }

    /// One field of each key (without the prefix), in one round trip; 0
    /// where absent.
    pub async fn field(&self, keys: &[String], field: &str) -> Result<Vec<i64>, CountersError> {
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.hget(format!("{}{k}", self.cfg.key_prefix), field);
        }
        let mut conn = self.conn.clone();
        let out: Vec<Option<i64>> = pipe.query_async(&mut conn).await?;
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// Whether `key` (without the prefix) exists.
    pub async fn exists(&self, key: &str) -> Result<bool, CountersError> {
        let mut conn = self.conn.clone();
        let n: i64 = redis::cmd("EXISTS")
            .arg(format!("{}{key}", self.cfg.key_prefix))
            .query_async(&mut conn)
            .await?;
        Ok(n == 1)
    }

    /// The counters of each key (`h:{hour}`, `d:{day}`, `arr:{hour}`),
    /// in one round trip. A key that does not exist reads as empty.
    pub async fn read(&self, keys: &[String]) -> Result<Vec<HashMap<String, i64>>, CountersError> {
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.hgetall(format!("{}{k}", self.cfg.key_prefix));
        }
        let mut conn = self.conn.clone();
        let out: Vec<HashMap<String, i64>> = pipe.query_async(&mut conn).await?;
        Ok(out)
    }
}

fn record(key: &str, flat: &[String]) -> Result<Record, CountersError> {
    let bad = |detail: String| CountersError::Record {
        key: key.to_owned(),
        detail,
    };
    let mut r = Record::default();
    for pair in flat.chunks(2) {
        let [k, v] = pair else {
            return Err(bad("odd HGETALL reply".into()));
        };
        match k.as_str() {
            "f" => r.base = Some(serde_json::from_str(v).map_err(|e| bad(e.to_string()))?),
            "x" => r.cancelled = v == "1",
            "rfd" => r.refunded = v.parse().map_err(|_| bad(format!("rfd {v:?}")))?,
            "pay" => r.payment = Some(v.clone()),
            "done" => r.completed_ms = Some(v.parse().map_err(|_| bad(format!("done {v:?}")))?),
            "v" => r.version = v.parse().map_err(|_| bad(format!("v {v:?}")))?,
            _ => {}
        }
    }
    Ok(r)
}
