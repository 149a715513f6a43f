//! After the faults: waiting for quiescence, then reading every fact the
//! checker needs from the real components (agents' APIs and outboxes, the
//! processor's ledger, the inventory schema, Kafka, consumer groups). The
//! returns' own facts are read in `collect_returns.rs`.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use o2c_protocol::EventType;

use super::ChaosError;
use super::checker::{
    AgentFact, Facts, GroupOffset, KafkaFact, OrderFact, StockFact, return_settled,
};
use super::tills::TillRecord;
use super::world::{AUTO_STOCK, World};
use crate::HarnessError;
use crate::kafka::{ConsumedRecord, group_offsets};
use crate::pipeline::{KafkaView, TERMINAL_TOKEN, agent_records};
use crate::saga::group_topics;

#[path = "collect_returns.rs"]
mod returns;

/// Statuses that end an order.
const FINAL: [&str; 3] = ["completed", "cancelled", "refunded"];

/// The cloud status each order shows at its store (None: no answer or no
/// status yet).
pub async fn statuses(world: &World, orders: &[TillRecord]) -> Vec<Option<String>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let mut out = Vec::with_capacity(orders.len());
    for o in orders {
        let status = match (&o.order_id, world.agent_dirs.get(o.plan.agent)) {
            (Some(id), Some(dir)) => status_of(&client, dir, id).await,
            _ => None,
        };
        out.push(status);
    }
    out
}

/// Per agent, the status updates its resyncs recovered
/// (`o2c_agent_status_resynced_total`: updates the broker or the status
/// publisher lost on the way); `None` where the agent did not answer.
pub async fn resynced(world: &World) -> Vec<Option<f64>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let mut out = Vec::with_capacity(world.agent_dirs.len());
    for dir in &world.agent_dirs {
        out.push(resynced_of(&client, dir).await);
    }
    out
}

async fn resynced_of(client: &reqwest::Client, dir: &Path) -> Option<f64> {
    let addr = std::fs::read_to_string(dir.join("http.addr")).ok()?;
    let text = client
        .get(format!("http://{}/metrics", addr.trim()))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("o2c_agent_status_resynced_total "))
        .and_then(|v| v.trim().parse().ok())
}

async fn status_of(client: &reqwest::Client, dir: &Path, id: &str) -> Option<String> {
    let addr = std::fs::read_to_string(dir.join("http.addr")).ok()?;
    let r = client
        .get(format!("http://{}/v1/orders/{id}", addr.trim()))
        .bearer_auth(TERMINAL_TOKEN)
        .send()
        .await
        .ok()?;
    let v: serde_json::Value = r.json().await.ok()?;
    v["cloud_status"].as_str().map(str::to_owned)
}

async fn agents_drained(world: &World) -> bool {
    for a in &world.agents {
        let a = a.lock().await;
        let ok = a
            .sync_status()
            .await
            .is_ok_and(|v| v["pending_events"] == 0 && v["connected"] == true);
        if !ok {
            return false;
        }
    }
    true
}

/// Refunds the payment service still owes ([`o2c_saga::reconcile::refunds_owed`]):
/// an order owed one may already show `cancelled` at its store, so it is
/// not settled yet. `None` if the database cannot be read.
async fn refunds_owed(world: &World) -> Option<i64> {
    let db = world.pg.connect(crate::pg::DB_NAME).await.ok()?;
    o2c_saga::reconcile::refunds_owed(&db).await.ok()
}

/// Every saga group's offsets on every topic it reads.
pub async fn group_facts(world: &World) -> Result<Vec<GroupOffset>, ChaosError> {
    let mut out = Vec::new();
    for (group, topics) in group_topics() {
        let topics: Vec<String> = topics.iter().map(|t| world.topic(t)).collect();
        let g = world.group(group);
        for (topic, partition, committed, end) in group_offsets(&world.brokers, &g, &topics).await?
        {
            out.push(GroupOffset {
                group: g.clone(),
                topic,
                partition,
                committed,
                end,
            });
        }
    }
    Ok(out)
}

/// How quiescence ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quiet {
    /// Every order final, outboxes empty, groups caught up.
    Settled,
    /// Nothing changed for the quiet period, but not everything settled.
    Stalled,
    /// The deadline passed while things were still changing.
    Deadline,
}

/// Polls once a second until every order and every return the tills were
/// given is final at its store, no refund is owed, every agent drained and
/// every group caught up; or nothing changed for `quiet`; or `deadline`.
pub async fn wait_quiescence(
    world: &World,
    orders: &[TillRecord],
    quiet: Duration,
    deadline: Duration,
    log: impl Fn(&str),
) -> Quiet {
    let end = Instant::now() + deadline;
    type Seen = (
        Vec<Option<String>>,
        Vec<Option<String>>,
        bool,
        bool,
        Option<i64>,
    );
    let mut last: Option<Seen> = None;
    let mut unchanged_since = Instant::now();
    let taken = returns::taken(orders);
    loop {
        let st = statuses(world, orders).await;
        let rs: Vec<Option<String>> = returns::statuses(world, &taken)
            .await
            .into_iter()
            .map(|(status, _)| status)
            .collect();
        let returns_final = taken
            .iter()
            .zip(&rs)
            .filter(|(t, s)| return_settled(t.card, s.as_deref()))
            .count();
        let drained = agents_drained(world).await;
        let caught_up = group_facts(world)
            .await
            .is_ok_and(|g| g.iter().all(GroupOffset::caught_up));
        let finals = st
            .iter()
            .filter(|s| s.as_deref().is_some_and(|s| FINAL.contains(&s)))
            .count();
        let owed = refunds_owed(world).await;
        let all_final = finals == orders.iter().filter(|o| o.order_id.is_some()).count();
        if all_final && returns_final == taken.len() && owed == Some(0) && drained && caught_up {
            log(&format!(
                "quiescent: {finals} orders and {returns_final} returns final, no refund owed, outboxes empty, groups caught up"
            ));
            return Quiet::Settled;
        }
        let now = (st, rs, drained, caught_up, owed);
        if last.as_ref() != Some(&now) {
            log(&format!(
                "waiting for quiescence: {finals}/{} orders and {returns_final}/{} returns final, refunds owed {}, agents drained {drained}, groups caught up {caught_up}",
                now.0.len(),
                taken.len(),
                owed.map_or("unknown".to_owned(), |n| n.to_string())
            ));
            last = Some(now);
            unchanged_since = Instant::now();
        } else if unchanged_since.elapsed() >= quiet {
            log(&format!("no change for {quiet:?}: stalled"));
            return Quiet::Stalled;
        }
        if Instant::now() >= end {
            log(&format!("quiescence deadline {deadline:?} passed"));
            return Quiet::Deadline;
        }
        // The poll interval of a condition with a deadline.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn pg_err(what: &str) -> impl FnOnce(tokio_postgres::Error) -> ChaosError + '_ {
    move |source| {
        ChaosError::Harness(HarnessError::Postgres {
            what: what.to_owned(),
            source,
        })
    }
}

/// Reads every fact; `orders` are the tills' records (confirmed or not).
pub async fn collect(world: &World, orders: &[TillRecord]) -> Result<Facts, ChaosError> {
    let confirmed: Vec<&TillRecord> = orders.iter().filter(|o| o.order_id.is_some()).collect();
    let owned: Vec<TillRecord> = confirmed.iter().map(|o| (*o).clone()).collect();
    let st = statuses(world, &owned).await;

    // The processor's ledger.
    let ledger = world.psp.stats().await?;
    let mut caps: HashMap<String, Vec<i64>> = HashMap::new();
    let mut refs: HashMap<String, Vec<i64>> = HashMap::new();
    for (list, map) in [
        (&ledger["captures"], &mut caps),
        (&ledger["refunds"], &mut refs),
    ] {
        for m in list.as_array().into_iter().flatten() {
            let id = m["order_id"].as_str().unwrap_or_default().to_owned();
            map.entry(id)
                .or_default()
                .push(m["amount_minor"].as_i64().unwrap_or(0));
        }
    }

    // The carrier's bookings: each one's status, by order.
    let carrier = world.carrier.stats().await?;
    let mut parcels: HashMap<String, Vec<String>> = HashMap::new();
    for b in carrier["bookings"].as_array().into_iter().flatten() {
        let id = b["reference"].as_str().unwrap_or_default().to_owned();
        parcels
            .entry(id)
            .or_default()
            .push(b["status"].as_str().unwrap_or("?").to_owned());
    }

    // Stock and each order's net movement (its returns' are theirs).
    let db = world.pg.connect(crate::pg::DB_NAME).await?;
    let mut moves: HashMap<String, (i64, i64)> = HashMap::new();
    for r in db
        .query(
            "SELECT order_id, sum(delta_on_hand)::bigint, sum(delta_reserved)::bigint \
             FROM o2c_inventory.movements WHERE kind <> 'return' GROUP BY order_id",
            &[],
        )
        .await
        .map_err(pg_err("reading movements"))?
    {
        moves.insert(r.get(0), (r.get(1), r.get(2)));
    }
    let mut cloud: HashMap<String, String> = HashMap::new();
    for r in db
        .query(
            "SELECT o.order_id, (o.state::jsonb)->>'phase', (p.state::jsonb)->>'phase' \
             FROM o2c_order.orders o LEFT JOIN o2c_payment.orders p USING (order_id)",
            &[],
        )
        .await
        .map_err(pg_err("reading the order and payment states"))?
    {
        let order: Option<String> = r.get(1);
        let pay: Option<String> = r.get(2);
        cloud.insert(
            r.get(0),
            format!(
                "order {}, payment {}",
                order.as_deref().unwrap_or("?"),
                pay.as_deref().unwrap_or("no state")
            ),
        );
    }
    // A row whose first movement is a return was made empty by it (its
    // store had none of the SKU); every other row was provisioned.
    let stock = db
        .query(
            "WITH first AS (SELECT DISTINCT ON (sku, warehouse) sku, warehouse, kind \
               FROM o2c_inventory.movements ORDER BY sku, warehouse, id), \
             back AS (SELECT sku, sum(delta_on_hand)::bigint AS units \
               FROM o2c_inventory.movements WHERE kind = 'return' GROUP BY sku) \
             SELECT s.sku, (count(*) FILTER (WHERE f.kind IS DISTINCT FROM 'return'))::bigint, \
               sum(s.on_hand)::bigint, sum(s.reserved)::bigint, coalesce(max(b.units), 0)::bigint \
             FROM o2c_inventory.stock s \
             LEFT JOIN first f ON f.sku = s.sku AND f.warehouse = s.warehouse \
             LEFT JOIN back b ON b.sku = s.sku \
             GROUP BY s.sku ORDER BY s.sku",
            &[],
        )
        .await
        .map_err(pg_err("reading stock"))?
        .iter()
        .map(|r| StockFact {
            sku: r.get(0),
            initial: r.get::<_, i64>(1) * AUTO_STOCK,
            on_hand: r.get(2),
            reserved: r.get(3),
            returned: r.get(4),
        })
        .collect();
    let requested = returns::read_topic(world, EventType::ReturnRequested).await?;
    let (returns, stray_returns) = returns::facts(world, orders, &requested, &refs, &db).await?;

    let facts_orders = confirmed
        .iter()
        .zip(st)
        .map(|(o, status)| {
            let id = o.order_id.clone().unwrap_or_default();
            OrderFact {
                captures: caps.remove(&id).unwrap_or_default(),
                refunds: refs.remove(&id).unwrap_or_default(),
                parcels: parcels.remove(&id).unwrap_or_default(),
                stock_delta: moves.get(&id).copied().unwrap_or((0, 0)),
                cloud: cloud.remove(&id),
                order_id: id,
                agent: o.plan.agent,
                key: o.plan.key.clone(),
                pay: o.plan.pay,
                card_minor: o.plan.card_minor(),
                sku: o.plan.sku.to_owned(),
                qty: o.plan.qty,
                ship: o.plan.ship,
                captured_ms: o.captured_ms,
                http: o.http,
                voided_ms: o.voided_ms,
                final_status: status,
            }
        })
        .collect();

    let (kafka, agents) = kafka_and_outboxes(world, requested).await?;
    Ok(Facts {
        orders: facts_orders,
        returns,
        stray_returns,
        stock,
        kafka,
        agents,
        groups: group_facts(world).await?,
        faults: Vec::new(),
    })
}

/// Compares every agent's outbox with what Kafka holds on the topics the
/// agents write (`orders.created`, `orders.cancelled`, and
/// `returns.requested`, whose records are `requested`).
async fn kafka_and_outboxes(
    world: &World,
    requested: Vec<ConsumedRecord>,
) -> Result<(KafkaFact, Vec<AgentFact>), ChaosError> {
    let mut written: BTreeSet<String> = BTreeSet::new();
    let mut agents = Vec::new();
    let mut agent_ids = Vec::new();
    for (i, a) in world.agents.iter().enumerate() {
        let a = a.lock().await;
        let rows = a.outbox()?;
        agents.push(AgentFact {
            agent: i,
            pending: rows.iter().filter(|(_, _, s)| s != "acked").count(),
            seqs: rows.iter().map(|(s, _, _)| *s).collect(),
        });
        written.extend(rows.into_iter().map(|(_, id, _)| id));
        agent_ids.push(a.agent_id.clone());
    }
    let mut fact = KafkaFact::default();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut views = agent_records(&world.brokers, &world.prefix, Duration::from_secs(120)).await?;
    let from_agents = requested
        .into_iter()
        .filter(|r| r.header_str("seq").is_some())
        .collect();
    views.push((
        world.topic(EventType::ReturnRequested.kafka_topic()),
        KafkaView::new(from_agents),
    ));
    for (topic, view) in views {
        fact.raw_duplicates += view.raw_duplicates();
        for (id, records) in &view.by_event {
            let payloads: BTreeSet<&[u8]> = records.iter().map(|r| r.payload.as_slice()).collect();
            if payloads.len() > 1 {
                fact.changed.push(id.clone());
            }
        }
        for agent in &agent_ids {
            if let Err(e) = view.seqs_increase_per_partition(agent) {
                fact.order_errors
                    .push(format!("{topic}, agent {agent}: {e}"));
            }
        }
        seen.extend(view.event_ids());
    }
    fact.missing = written.difference(&seen).cloned().collect();
    fact.unknown = seen.difference(&written).cloned().collect();
    Ok((fact, agents))
}
