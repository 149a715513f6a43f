//! The returns' facts (contract 1.7): each till's return and what its store
//! shows; the cloud's return events in Kafka (each once per `event_id`);
//! the processor's refunds; the `return` movements; and whatever in the
//! cloud names a return no till was given.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use o2c_protocol::{Envelope, Event, EventType};

use super::pg_err;
use crate::chaos::ChaosError;
use crate::chaos::checker::ReturnFact;
use crate::chaos::tills::{TillRecord, UNIT_MINOR};
use crate::chaos::world::World;
use crate::kafka::ConsumedRecord;
use crate::pipeline::TERMINAL_TOKEN;

/// A return a till was given an id for.
#[derive(Debug, Clone)]
pub(super) struct Taken {
    /// Agent index.
    pub agent: usize,
    /// The return id.
    pub return_id: String,
    /// Refunded to a card.
    pub card: bool,
}

/// The returns the tills were given an id for, in ledger order.
pub(super) fn taken(orders: &[TillRecord]) -> Vec<Taken> {
    orders
        .iter()
        .filter_map(|o| {
            let id = o.ret.as_ref()?.return_id.clone()?;
            Some(Taken {
                agent: o.plan.agent,
                return_id: id,
                card: o.plan.ret.is_some_and(|r| r.card),
            })
        })
        .collect()
}

/// Each return's `(cloud_status, cloud_reason)` at its store (None: no
/// answer, or no status yet).
pub(super) async fn statuses(
    world: &World,
    taken: &[Taken],
) -> Vec<(Option<String>, Option<String>)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let mut out = Vec::with_capacity(taken.len());
    for t in taken {
        let v = match world.agent_dirs.get(t.agent) {
            Some(dir) => view(&client, dir, &t.return_id).await,
            None => None,
        };
        let field = |name: &str| v.as_ref().and_then(|v| v[name].as_str().map(str::to_owned));
        out.push((field("cloud_status"), field("cloud_reason")));
    }
    out
}

async fn view(client: &reqwest::Client, dir: &Path, id: &str) -> Option<serde_json::Value> {
    let addr = std::fs::read_to_string(dir.join("http.addr")).ok()?;
    let r = client
        .get(format!("http://{}/v1/returns/{id}", addr.trim()))
        .bearer_auth(TERMINAL_TOKEN)
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

/// Every record the topic of `t` holds now.
pub(super) async fn read_topic(
    world: &World,
    t: EventType,
) -> Result<Vec<ConsumedRecord>, ChaosError> {
    let topic = world.topic(t.kafka_topic());
    let n = usize::try_from(crate::topic_record_count(&world.brokers, &topic).await?).unwrap_or(0);
    Ok(crate::consume_all(&world.brokers, &topic, n, Duration::from_secs(120)).await?)
}

/// The return events in Kafka, each once per `event_id`.
#[derive(Debug, Default)]
struct Events {
    /// return_id → event_id → amount, of `ReturnAccepted`.
    accepted: HashMap<String, BTreeMap<String, i64>>,
    /// return_id → event_id → reason, of `ReturnRefused`.
    refused: HashMap<String, BTreeMap<String, String>>,
    /// return_id → event_id → amount, of `RefundIssued` naming a return.
    refunds: HashMap<String, BTreeMap<String, i64>>,
    /// (topic, return_id, order_id) of every return event, requests included.
    named: BTreeSet<(String, String, String)>,
    /// Records that do not decode.
    undecodable: Vec<String>,
}

impl Events {
    fn add(&mut self, topic: &str, records: &[ConsumedRecord]) {
        for r in records {
            let env = match Envelope::decode(&r.payload) {
                Ok(env) => env,
                Err(e) => {
                    self.undecodable.push(format!(
                        "undecodable record in {topic} at {}/{}: {e}",
                        r.partition, r.offset
                    ));
                    continue;
                }
            };
            let event = env.event_id.to_string();
            let (rid, oid) = match &env.payload {
                Event::ReturnRequested(e) => (e.return_id.to_string(), e.order_id.to_string()),
                Event::ReturnAccepted(e) => {
                    let rid = e.return_id.to_string();
                    let by = self.accepted.entry(rid.clone()).or_default();
                    by.insert(event, e.amount.minor);
                    (rid, e.order_id.to_string())
                }
                Event::ReturnRefused(e) => {
                    let rid = e.return_id.to_string();
                    let by = self.refused.entry(rid.clone()).or_default();
                    by.insert(event, e.reason.clone());
                    (rid, e.order_id.to_string())
                }
                Event::RefundIssued(e) => {
                    // A void's refund names no return.
                    let Some(rid) = e.return_id.map(|r| r.to_string()) else {
                        continue;
                    };
                    let by = self.refunds.entry(rid.clone()).or_default();
                    by.insert(event, e.amount.minor);
                    (rid, e.order_id.to_string())
                }
                _ => continue,
            };
            self.named.insert((topic.to_owned(), rid, oid));
        }
    }
}

/// Every return the tills asked for as a [`ReturnFact`], and the strays:
/// return events and `return` movements no till's return accounts for.
/// `requested` is what `returns.requested` holds, `refunds` the processor's
/// refunds by order.
pub(super) async fn facts(
    world: &World,
    orders: &[TillRecord],
    requested: &[ConsumedRecord],
    refunds: &HashMap<String, Vec<i64>>,
    db: &tokio_postgres::Client,
) -> Result<(Vec<ReturnFact>, Vec<String>), ChaosError> {
    let mut events = Events::default();
    events.add(EventType::ReturnRequested.kafka_topic(), requested);
    for t in [
        EventType::ReturnAccepted,
        EventType::ReturnRefused,
        EventType::RefundIssued,
    ] {
        events.add(t.kafka_topic(), &read_topic(world, t).await?);
    }
    // (order, sku) → [(warehouse, on hand)] of the `return` movements.
    let mut moves: HashMap<(String, String), Vec<(String, i64)>> = HashMap::new();
    for r in db
        .query(
            "SELECT order_id, sku, warehouse, delta_on_hand FROM o2c_inventory.movements \
             WHERE kind = 'return' ORDER BY id",
            &[],
        )
        .await
        .map_err(pg_err("reading the return movements"))?
    {
        moves
            .entry((r.get(0), r.get(1)))
            .or_default()
            .push((r.get(2), r.get(3)));
    }

    let taken = taken(orders);
    let mut shown: HashMap<String, (Option<String>, Option<String>)> = taken
        .iter()
        .map(|t| t.return_id.clone())
        .zip(statuses(world, &taken).await)
        .collect();
    let mut out = Vec::new();
    for o in orders {
        let (Some(order_id), Some(plan), Some(rec)) = (&o.order_id, o.plan.ret, &o.ret) else {
            continue;
        };
        let rid = rec.return_id.clone();
        let of = |m: &HashMap<String, BTreeMap<String, i64>>| {
            rid.as_ref()
                .and_then(|id| m.get(id))
                .map(|by| by.values().copied().collect())
                .unwrap_or_default()
        };
        // The processor's refunds of the order, but a voided capture's.
        let mut psp: Vec<i64> = refunds.get(order_id).cloned().unwrap_or_default();
        if o.voided_ms.is_some()
            && let Some(i) = psp.iter().position(|a| *a == o.plan.card_minor())
        {
            psp.remove(i);
        }
        let (cloud_status, cloud_reason) = rid
            .as_ref()
            .and_then(|id| shown.remove(id))
            .unwrap_or_default();
        out.push(ReturnFact {
            order_id: order_id.clone(),
            agent: o.plan.agent,
            store: world.stores.get(o.plan.agent).cloned().unwrap_or_default(),
            key: o.plan.return_key(),
            card: plan.card,
            sku: o.plan.sku.to_owned(),
            units: plan.units,
            amount_minor: UNIT_MINOR * plan.units,
            requested_ms: rec.requested_ms,
            http: rec.http,
            code: rec.code.clone(),
            cloud_status,
            cloud_reason,
            accepted: of(&events.accepted),
            refused: rid
                .as_ref()
                .and_then(|id| events.refused.get(id))
                .map(|by| by.values().cloned().collect())
                .unwrap_or_default(),
            refund_issued: of(&events.refunds),
            psp_refunds: if rid.is_some() { psp } else { Vec::new() },
            movements: match rid {
                Some(_) => moves
                    .get(&(order_id.clone(), o.plan.sku.to_owned()))
                    .cloned()
                    .unwrap_or_default(),
                None => Vec::new(),
            },
            return_id: rid,
        });
    }
    let strays = strays(&out, &events, &moves);
    Ok((out, strays))
}

/// What in the cloud names a return no till was given.
fn strays(
    facts: &[ReturnFact],
    events: &Events,
    moves: &HashMap<(String, String), Vec<(String, i64)>>,
) -> Vec<String> {
    let given: BTreeSet<&str> = facts
        .iter()
        .filter_map(|r| r.return_id.as_deref())
        .collect();
    let pairs: BTreeSet<(&str, &str)> = facts
        .iter()
        .filter(|r| r.return_id.is_some())
        .map(|r| (r.order_id.as_str(), r.sku.as_str()))
        .collect();
    let mut out: Vec<String> = events
        .named
        .iter()
        .filter(|(_, rid, _)| !given.contains(rid.as_str()))
        .map(|(topic, rid, oid)| {
            format!("{topic} names return {rid} of order {oid}, which no till was given")
        })
        .collect();
    let mut stray_moves: Vec<String> = moves
        .iter()
        .filter(|((oid, sku), _)| !pairs.contains(&(oid.as_str(), sku.as_str())))
        .map(|((oid, sku), m)| {
            format!("`return` movements {m:?} of {sku} for order {oid}, which no till returned")
        })
        .collect();
    stray_moves.sort();
    out.extend(stray_moves);
    out.extend(events.undecodable.iter().cloned());
    out
}
