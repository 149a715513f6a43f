//! The pure reconciliation: what the cloud holds (events, dead letters,
//! manifests) against what each agent's manifest says it sent.
//!
//! Feed a [`Ledger`] every record read, then ask it for a store's date
//! ([`Ledger::reconcile`]). No I/O and no clock.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use o2c_protocol::day::{BusinessDate, DayClosed, DayTally, EventDigest, SeqRange, Tender};
use o2c_protocol::{AgentId, EventId, Money, OrderId, StoreId};
use serde::Serialize;

/// A store event found in the order history (written by the ingest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Its id.
    pub event_id: EventId,
    /// What it says.
    pub kind: Kind,
}

/// What a store event contributes to a day's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A sale: its order, total and payments.
    Created {
        /// The order.
        order_id: OrderId,
        /// Its total.
        total: Money,
        /// Its payments.
        payments: Vec<(Tender, Money)>,
    },
    /// A void of an order.
    Cancelled(OrderId),
    /// Anything else (counted only).
    Other,
}

/// A store event the ingest dead-lettered: settled, but not in Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Its id, when it was readable.
    pub event_id: Option<EventId>,
    /// The ingest's reason code.
    pub reason: String,
}

type AgentKey = (StoreId, AgentId);

/// Everything read, indexed for reconciling.
#[derive(Debug, Default)]
pub struct Ledger {
    events: HashMap<AgentKey, BTreeMap<u64, Vec<Seen>>>,
    totals: HashMap<OrderId, Money>,
    rejected: HashMap<AgentKey, BTreeMap<u64, Rejected>>,
    manifests: BTreeMap<AgentKey, BTreeMap<u64, DayClosed>>,
    /// Per store, the earliest UTC date of an event seen.
    first_seen: HashMap<StoreId, time::Date>,
}

/// A day's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every event of the manifest is in Kafka exactly once, and the
    /// figures and the digest agree.
    Complete,
    /// No manifest yet, and nothing from the agent after that day either:
    /// it may still be offline.
    Pending,
    /// Differences (missing seqs, rejected events, conflicts, figures).
    Incomplete,
    /// No manifest, although the agent has sent a later day's.
    Missing,
}

impl Status {
    /// The word printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Complete => "complete",
            Status::Pending => "pending",
            Status::Incomplete => "incomplete",
            Status::Missing => "missing",
        }
    }
}

/// One agent's day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentDay {
    /// The agent.
    pub agent_id: AgentId,
    /// Its verdict.
    pub status: Status,
    /// The manifest's own seq, when there is one.
    pub manifest_seq: Option<u64>,
    /// The seqs the manifest covers.
    pub range: Option<SeqRange>,
    /// The figures the manifest states.
    pub stated: Option<DayTally>,
    /// The figures recomputed from Kafka over the same seqs.
    pub found: Option<DayTally>,
    /// Seqs of the range in neither the history nor the dead letters, as
    /// `[first, last]` runs.
    pub missing_seqs: Vec<[u64; 2]>,
    /// Seqs the ingest dead-lettered, with the reason.
    pub rejected: Vec<(u64, String)>,
    /// Seqs held by more than one event id.
    pub seq_conflicts: Vec<u64>,
    /// Orders sold under more than one event id (dedup by event id cannot
    /// remove these).
    pub duplicate_orders: Vec<OrderId>,
    /// Records stored more than once with the same event id (harmless:
    /// consumers dedup by event id).
    pub raw_duplicates: u64,
    /// Whether the digest of the range's event ids matches.
    pub digest_matches: Option<bool>,
    /// Human explanations of every difference.
    pub problems: Vec<String>,
}

/// One store's day: the worst of its agents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreDay {
    /// The store.
    pub store_id: StoreId,
    /// The business date.
    pub business_date: BusinessDate,
    /// The worst agent verdict (pending when no agent is known).
    pub status: Status,
    /// Per agent.
    pub agents: Vec<AgentDay>,
}

impl Ledger {
    /// Adds a store event read from the history at `seq`, occurring on UTC
    /// date `on`.
    pub fn add_event(&mut self, store: StoreId, agent: AgentId, seq: u64, on: time::Date, e: Seen) {
        if let Kind::Created {
            order_id, total, ..
        } = &e.kind
        {
            self.totals.entry(*order_id).or_insert(*total);
        }
        let first = self.first_seen.entry(store.clone()).or_insert(on);
        *first = (*first).min(on);
        self.events
            .entry((store, agent))
            .or_default()
            .entry(seq)
            .or_default()
            .push(e);
    }

    /// Adds a dead-lettered store event.
    pub fn add_rejected(&mut self, store: StoreId, agent: AgentId, seq: u64, r: Rejected) {
        self.rejected
            .entry((store, agent))
            .or_default()
            .insert(seq, r);
    }

    /// Adds a manifest (a copy of one already added is ignored).
    pub fn add_manifest(&mut self, d: DayClosed) {
        let key = (d.store_id.clone(), d.agent_id.clone());
        self.manifests
            .entry(key)
            .or_default()
            .entry(d.seq.get())
            .or_insert(d);
    }

    /// The stores expected to close `date`: those with a manifest for it or
    /// before it, or with an event on or before it (UTC).
    pub fn stores_for(&self, date: BusinessDate) -> BTreeSet<StoreId> {
        let with_manifest = self
            .manifests
            .iter()
            .filter(|(_, by_seq)| by_seq.values().any(|d| d.payload.business_date <= date))
            .map(|((s, _), _)| s.clone());
        let with_events = self
            .first_seen
            .iter()
            .filter(|(_, on)| **on <= date.0)
            .map(|(s, _)| s.clone());
        with_manifest.chain(with_events).collect()
    }

    /// Reconciles `store`'s business date `date`, agent by agent.
    pub fn reconcile(&self, store: &StoreId, date: BusinessDate) -> StoreDay {
        let agents: BTreeSet<&AgentId> = self
            .manifests
            .keys()
            .chain(self.events.keys())
            .filter(|(s, _)| s == store)
            .map(|(_, a)| a)
            .collect();
        let agents: Vec<AgentDay> = agents
            .into_iter()
            .map(|a| self.agent_day(store, a, date))
            .collect();
        let status = agents
            .iter()
            .map(|a| a.status)
            .max()
            .unwrap_or(Status::Pending);
        StoreDay {
            store_id: store.clone(),
            business_date: date,
            status,
            agents,
        }
    }

    fn agent_day(&self, store: &StoreId, agent: &AgentId, date: BusinessDate) -> AgentDay {
        let key = (store.clone(), agent.clone());
        let mut day = AgentDay {
            agent_id: agent.clone(),
            status: Status::Complete,
            manifest_seq: None,
            range: None,
            stated: None,
            found: None,
            missing_seqs: Vec::new(),
            rejected: Vec::new(),
            seq_conflicts: Vec::new(),
            duplicate_orders: Vec::new(),
            raw_duplicates: 0,
            digest_matches: None,
            problems: Vec::new(),
        };
        let manifests = self.manifests.get(&key);
        let Some(m) =
            manifests.and_then(|by_seq| by_seq.values().find(|d| d.payload.business_date == date))
        else {
            let later = manifests
                .is_some_and(|by_seq| by_seq.values().any(|d| d.payload.business_date > date));
            day.status = if later {
                day.problems
                    .push(format!("no manifest for {date}, but one for a later day"));
                Status::Missing
            } else {
                day.problems.push(format!(
                    "no manifest for {date} yet: the agent has not synced its close"
                ));
                Status::Pending
            };
            return day;
        };
        day.manifest_seq = Some(m.seq.get());
        day.range = m.payload.range;
        day.stated = Some(m.payload.tally.clone());
        let manifest_seqs: BTreeSet<u64> = manifests
            .map(|by_seq| by_seq.keys().copied().collect())
            .unwrap_or_default();
        let (found, digest) = self.recount(&key, m.payload.range, &manifest_seqs, &mut day);
        day.digest_matches = Some(digest == m.payload.event_ids_sha256);
        if day.digest_matches == Some(false) {
            day.problems
                .push("the digest of the day's event ids differs".to_owned());
        }
        if found != m.payload.tally {
            day.problems.push(format!(
                "figures differ: stated {} events, {} orders, {} voids; found {}, {}, {}",
                m.payload.tally.events,
                m.payload.tally.orders,
                m.payload.tally.voids,
                found.events,
                found.orders,
                found.voids
            ));
        }
        let clean = day.missing_seqs.is_empty()
            && day.rejected.is_empty()
            && day.seq_conflicts.is_empty()
            && day.duplicate_orders.is_empty()
            && day.digest_matches == Some(true)
            && found == m.payload.tally;
        day.found = Some(found);
        if !clean {
            day.status = Status::Incomplete;
        }
        day
    }

    /// Recounts the range from what Kafka holds; fills `day`'s lists.
    fn recount(
        &self,
        key: &AgentKey,
        range: Option<SeqRange>,
        manifest_seqs: &BTreeSet<u64>,
        day: &mut AgentDay,
    ) -> (DayTally, String) {
        let mut tally = DayTally::default();
        let mut digest = EventDigest::default();
        let Some(r) = range else {
            return (tally, digest.finish());
        };
        let events = self.events.get(key);
        let rejected = self.rejected.get(key);
        let mut sold: HashMap<OrderId, EventId> = HashMap::new();
        for seq in r.first.get()..=r.last.get() {
            if manifest_seqs.contains(&seq) {
                continue;
            }
            let seen = events.and_then(|e| e.get(&seq));
            match seen.map(Vec::as_slice) {
                Some([first, rest @ ..]) => {
                    let ids: BTreeSet<EventId> =
                        seen.into_iter().flatten().map(|s| s.event_id).collect();
                    day.raw_duplicates += rest.len() as u64 + 1 - ids.len() as u64;
                    if ids.len() > 1 {
                        day.seq_conflicts.push(seq);
                        day.problems
                            .push(format!("seq {seq} is held by {} event ids", ids.len()));
                    }
                    digest.add(&first.event_id);
                    let counted = match &first.kind {
                        Kind::Created {
                            order_id,
                            total,
                            payments,
                        } => {
                            if let Some(other) = sold.insert(*order_id, first.event_id)
                                && other != first.event_id
                            {
                                day.duplicate_orders.push(*order_id);
                                day.problems
                                    .push(format!("order {order_id} was sold twice (seq {seq})"));
                            }
                            tally.add_sale(*total, payments.iter().copied())
                        }
                        Kind::Cancelled(order_id) => {
                            tally.add_voided(self.totals.get(order_id).copied())
                        }
                        Kind::Other => {
                            tally.add_other();
                            Ok(())
                        }
                    };
                    if let Err(e) = counted {
                        day.problems.push(format!("seq {seq}: {e}"));
                    }
                }
                _ => match rejected.and_then(|r| r.get(&seq)) {
                    Some(rej) => {
                        if let Some(id) = &rej.event_id {
                            digest.add(id);
                        }
                        day.rejected.push((seq, rej.reason.clone()));
                        day.problems.push(format!(
                            "seq {seq} was rejected by the ingest ({})",
                            rej.reason
                        ));
                    }
                    None => push_run(&mut day.missing_seqs, seq),
                },
            }
        }
        if !day.missing_seqs.is_empty() {
            let n: u64 = day.missing_seqs.iter().map(|[a, b]| b - a + 1).sum();
            day.problems.push(format!(
                "{n} seq(s) missing from Kafka: {}",
                runs_text(&day.missing_seqs)
            ));
        }
        (tally, digest.finish())
    }
}

fn push_run(runs: &mut Vec<[u64; 2]>, seq: u64) {
    match runs.last_mut() {
        Some([_, last]) if *last + 1 == seq => *last = seq,
        _ => runs.push([seq, seq]),
    }
}

/// `5, 9-12` for the runs `[5,5]` and `[9,12]`.
pub fn runs_text(runs: &[[u64; 2]]) -> String {
    runs.iter()
        .map(|[a, b]| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
