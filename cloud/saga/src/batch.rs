//! Set-based handling of one lane's events in one transaction.
//!
//! A [`Batch`] does with a fixed handful of statements, whatever the number
//! of events, what the idempotent consumer does per event:
//!
//! 1. [`Batch::open`] records every event in `processed_events` (one
//!    `INSERT … SELECT FROM unnest … ON CONFLICT DO NOTHING RETURNING`):
//!    the events it returns are the fresh ones; the rest were seen before
//!    and change nothing. It then creates and locks the state rows of the
//!    fresh events' orders (`FOR UPDATE`, in order-id order).
//! 2. The step applies each fresh event to its order's state in memory, in
//!    arrival order ([`Batch::state_mut`]) and queues the events to emit
//!    ([`Batch::emit`]).
//! 3. [`Batch::close`] writes the states that changed (one `UPDATE … FROM
//!    unnest`) and the outbox rows (one `INSERT … SELECT FROM unnest`, one
//!    notification).
//!
//! Everything is inside the caller's transaction: the ledger rows, the
//! state changes and the outbox rows commit together or not at all.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use o2c_protocol::{Envelope, Event, KafkaTopics, OrderId};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::db::Tx;
use super::outbox;
use crate::db::DbError;

/// One order's state and the text it was stored as.
#[derive(Debug)]
struct Slot<S> {
    state: S,
    stored: String,
}

/// Records `events` as processed by `schema`'s service (one statement);
/// returns those not processed before, in arrival order. An event id twice
/// in `events` counts once (the first).
pub(crate) async fn mark_processed<'e>(
    tx: &Tx<'_>,
    schema: &str,
    events: &[&'e Envelope],
) -> Result<Vec<&'e Envelope>, DbError> {
    let mut seen = HashSet::with_capacity(events.len());
    let unique: Vec<&'e Envelope> = events
        .iter()
        .copied()
        .filter(|e| seen.insert(e.event_id))
        .collect();
    if unique.is_empty() {
        return Ok(unique);
    }
    let ids: Vec<String> = unique.iter().map(|e| e.event_id.to_string()).collect();
    let types: Vec<&str> = unique.iter().map(|e| e.event_type().as_str()).collect();
    let orders: Vec<String> = unique
        .iter()
        .map(|e| e.payload.order_id().to_string())
        .collect();
    let rows = tx
        .query(
            &format!(
                "INSERT INTO {schema}.processed_events (event_id, event_type, order_id, processed_at) \
                 SELECT e, t, o, clock_timestamp() \
                 FROM unnest($1::text[], $2::text[], $3::text[]) AS u(e, t, o) \
                 ON CONFLICT DO NOTHING RETURNING event_id"
            ),
            &[&ids, &types, &orders],
        )
        .await?;
    let new: HashSet<&str> = rows.iter().map(|r| r.get::<_, &str>(0)).collect();
    Ok(unique
        .into_iter()
        .zip(&ids)
        .filter(|(_, id)| new.contains(id.as_str()))
        .map(|(e, _)| e)
        .collect())
}

/// The locked state rows of some orders.
#[derive(Debug)]
pub(crate) struct States<S> {
    schema: &'static str,
    slots: HashMap<OrderId, Slot<S>>,
}

impl<S: Serialize + DeserializeOwned + Default> States<S> {
    /// Creates the missing state rows of the orders of `events` (with
    /// `S::default()`, and the creating store when an event is its
    /// `OrderCreated`) and locks them all, in order-id order.
    ///
    /// Fails with [`DbError::NotOwner`] if a store event is about an
    /// order another store created: one store may not void, or create
    /// again, another's order.
    pub(crate) async fn lock(
        tx: &Tx<'_>,
        schema: &'static str,
        events: &[&Envelope],
    ) -> Result<Self, DbError> {
        let mut owners: HashMap<OrderId, Option<&str>> = HashMap::with_capacity(events.len());
        let mut orders = Vec::with_capacity(events.len());
        for e in events {
            let order = e.payload.order_id();
            let owner = matches!(e.payload, Event::OrderCreated(_)).then(|| e.store_id.as_str());
            match owners.entry(order) {
                Entry::Vacant(v) => {
                    v.insert(owner);
                    orders.push(order);
                }
                Entry::Occupied(mut o) => {
                    if o.get().is_none() {
                        o.insert(owner);
                    }
                }
            }
        }
        let mut slots = HashMap::with_capacity(orders.len());
        if orders.is_empty() {
            return Ok(Self { schema, slots });
        }
        let fresh = serde_json::to_string(&S::default()).map_err(DbError::State)?;
        // Rows are locked in order-id order, here and below, so that two
        // transactions never wait on each other's rows.
        let mut ids: Vec<(String, OrderId)> = orders.iter().map(|o| (o.to_string(), *o)).collect();
        ids.sort_unstable();
        let stores: Vec<Option<&str>> = ids.iter().map(|(_, o)| owners[o]).collect();
        let (ids, orders): (Vec<String>, Vec<OrderId>) = ids.into_iter().unzip();
        // An order's row may exist before its OrderCreated arrives (events
        // of one order come on several topics, in any order): the creator
        // is then recorded on the existing row.
        tx.execute(
            &format!(
                "INSERT INTO {schema}.orders AS t (order_id, state, store_id) \
                 SELECT o, $2, s FROM unnest($1::text[], $3::text[]) AS u(o, s) \
                 ON CONFLICT (order_id) DO UPDATE SET store_id = EXCLUDED.store_id \
                 WHERE t.store_id IS NULL AND EXCLUDED.store_id IS NOT NULL"
            ),
            &[&ids, &fresh, &stores],
        )
        .await?;
        let rows = tx
            .query(
                &format!(
                    "SELECT order_id, state, store_id FROM {schema}.orders \
                     WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE"
                ),
                &[&ids],
            )
            .await?;
        let by_text: HashMap<&str, OrderId> = ids
            .iter()
            .map(String::as_str)
            .zip(orders.iter().copied())
            .collect();
        let mut stored_owner: HashMap<OrderId, String> = HashMap::new();
        for r in rows {
            let stored: String = r.get(1);
            let state = serde_json::from_str(&stored).map_err(DbError::State)?;
            if let Some(order) = by_text.get(r.get::<_, &str>(0)) {
                if let Some(owner) = r.get::<_, Option<String>>(2) {
                    stored_owner.insert(*order, owner);
                }
                slots.insert(*order, Slot { state, stored });
            }
        }
        for e in events {
            let owner = stored_owner.get(&e.payload.order_id()).map(String::as_str);
            super::db::check_owner(e, owner)?;
        }
        Ok(Self { schema, slots })
    }

    /// Every locked state.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &S> {
        self.slots.values().map(|s| &s.state)
    }

    /// The state of `order`, which should be one of the locked orders
    /// (another gets a default state that [`States::save`] cannot write).
    pub(crate) fn get_mut(&mut self, order: OrderId) -> &mut S {
        &mut self
            .slots
            .entry(order)
            .or_insert_with(|| Slot {
                state: S::default(),
                stored: String::new(),
            })
            .state
    }

    /// Writes the states that changed (one statement).
    pub(crate) async fn save(&self, tx: &Tx<'_>) -> Result<(), DbError> {
        let mut ids = Vec::new();
        let mut texts = Vec::new();
        for (order, slot) in &self.slots {
            let text = serde_json::to_string(&slot.state).map_err(DbError::State)?;
            if text != slot.stored {
                ids.push(order.to_string());
                texts.push(text);
            }
        }
        if ids.is_empty() {
            return Ok(());
        }
        let schema = self.schema;
        let updated = tx
            .execute(
                &format!(
                    "UPDATE {schema}.orders AS o SET state = u.s, updated_at = now() \
                     FROM unnest($1::text[], $2::text[]) AS u(id, s) WHERE o.order_id = u.id"
                ),
                &[&ids, &texts],
            )
            .await?;
        // A state changed for an order whose row was not locked would be
        // lost without a word: fail the transaction instead.
        if updated != ids.len() as u64 {
            return Err(DbError::StateRowMissing {
                schema,
                expected: ids.len(),
                updated,
            });
        }
        Ok(())
    }
}

/// The fresh events of a lane batch and their orders' locked states.
#[derive(Debug)]
pub(crate) struct Batch<'e, S> {
    schema: &'static str,
    fresh: Vec<&'e Envelope>,
    states: States<S>,
    emits: Vec<(&'e Envelope, Event)>,
    /// Events caused by an envelope kept in a state, not in this batch.
    emits_as: Vec<(Envelope, Event)>,
}

impl<'e, S: Serialize + DeserializeOwned + Default> Batch<'e, S> {
    /// Records `events` as processed by `schema`'s service and locks the
    /// states of the fresh ones' orders.
    pub(crate) async fn open(
        tx: &Tx<'_>,
        schema: &'static str,
        events: &[&'e Envelope],
    ) -> Result<Self, DbError> {
        let fresh = mark_processed(tx, schema, events).await?;
        let states = States::lock(tx, schema, &fresh).await?;
        Ok(Batch {
            schema,
            fresh,
            states,
            emits: Vec::new(),
            emits_as: Vec::new(),
        })
    }

    /// The events not processed before, in arrival order.
    pub(crate) fn fresh(&self) -> Vec<&'e Envelope> {
        self.fresh.clone()
    }

    /// The locked states, for reading before the events are applied.
    pub(crate) fn states(&self) -> impl Iterator<Item = &S> {
        self.states.iter()
    }

    /// The state of `order`, the order of a fresh event.
    pub(crate) fn state_mut(&mut self, order: OrderId) -> &mut S {
        self.states.get_mut(order)
    }

    /// Queues `event`, caused by `cause`, for the outbox.
    pub(crate) fn emit(&mut self, cause: &'e Envelope, event: Event) {
        self.emits.push((cause, event));
    }

    /// Queues `event`, caused by `cause`, an envelope a state kept (a
    /// held return, answered for its store).
    pub(crate) fn emit_as(&mut self, cause: Envelope, event: Event) {
        self.emits_as.push((cause, event));
    }

    /// Writes the changed states and the queued outbox rows.
    pub(crate) async fn close(self, tx: &Tx<'_>, topics: &KafkaTopics) -> Result<(), DbError> {
        self.states.save(tx).await?;
        let emits_as = self.emits_as;
        let mut all: Vec<(&Envelope, Event)> = self.emits;
        all.extend(emits_as.iter().map(|(c, e)| (c, e.clone())));
        outbox::insert_many(tx, self.schema, topics, all).await
    }
}
