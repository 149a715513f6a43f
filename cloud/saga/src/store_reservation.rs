//! Store reservations (issue 15): a store that is online reserves a
//! ship-to-home order's stock before it answers the till, through the
//! catalog service (`POST /v1/stores/{store}/reservations`), which calls
//! [`Reservations::reserve`]. The units go to `stock.reserved` at once, as
//! the inventory service's own holds do, and under the same rules
//! ([`StockBook`]: picked from the central warehouse first, never below
//! zero).
//!
//! The inventory service honours a held reservation when the order's
//! `OrderCreated` arrives: it takes the units over as the order's hold
//! (no second reservation), marks it `consumed` and publishes
//! `InventoryReserved` (see [`crate::inventory`]). Until then a void
//! ([`Reservations::release`]) or the TTL ([`Reservations::sweep`]) gives
//! the units back. Each transition locks the reservation row before any
//! stock row, as the inventory step does, so they cannot deadlock, and
//! each happens once.

use std::collections::BTreeMap;
use std::time::Duration;

use o2c_protocol::event::Reservation;
use o2c_protocol::{OrderId, StoreId};
use tokio::sync::Mutex;

use crate::db::{DbError, Lane};
use crate::inventory::SCHEMA;
use crate::stock::{StockBook, StockError};

/// Why a reservation call failed (not an answer: out of stock and a
/// conflicting repeat are [`Outcome`]s).
#[derive(Debug, thiserror::Error)]
pub enum ReservationError {
    /// PostgreSQL.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A statement failed.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The book refused a change it had allowed (a bug).
    #[error(transparent)]
    Stock(#[from] StockError),
    /// A stored row is unreadable.
    #[error("stored reservation: {0}")]
    Corrupt(String),
}

/// The answer to a reservation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The units are held (or were already, for a repeat of the request).
    Held {
        /// Where each SKU's units are held.
        lines: Vec<Reservation>,
        /// When the hold lapses unless the order arrives (RFC 3339).
        expires_at: String,
        /// `held`, or `consumed` when the order already took it over.
        state: String,
        /// A repeat of an earlier request.
        repeat: bool,
    },
    /// Not enough stock for this SKU; nothing was held.
    OutOfStock {
        /// The first SKU short.
        sku: String,
    },
    /// This order id was reserved before with other lines, or released.
    Conflict {
        /// What the stored reservation is.
        state: String,
    },
}

/// Units wanted per SKU, merged, in SKU order.
pub fn merge(lines: &[(String, i64)]) -> Vec<(String, i64)> {
    let mut m: BTreeMap<String, i64> = BTreeMap::new();
    for (sku, qty) in lines {
        *m.entry(sku.clone()).or_default() += qty;
    }
    m.into_iter().collect()
}

/// Reservations on one connection (the catalog service holds one).
#[derive(Debug)]
pub struct Reservations {
    url: String,
    lane: Mutex<Option<Lane>>,
    central_warehouse: String,
    auto_stock: i64,
}

impl Reservations {
    /// Not connected yet; each call connects if needed.
    pub fn new(url: &str, central_warehouse: &str, auto_stock: i64) -> Self {
        Self {
            url: url.to_owned(),
            lane: Mutex::new(None),
            central_warehouse: central_warehouse.to_owned(),
            auto_stock,
        }
    }

    async fn lane(&self) -> Result<tokio::sync::MappedMutexGuard<'_, Lane>, ReservationError> {
        let mut slot = self.lane.lock().await;
        if slot.as_ref().is_none_or(Lane::is_closed) {
            *slot = Some(Lane::connect(&self.url).await?);
        }
        Ok(tokio::sync::MutexGuard::map(slot, |l| {
            l.as_mut()
                .unwrap_or_else(|| unreachable!("connected above"))
        }))
    }

    /// Reserves `wanted` (merged per SKU) for `order_id` of `store`, for
    /// `ttl`; idempotent by order id.
    pub async fn reserve(
        &self,
        order_id: &OrderId,
        store: &StoreId,
        wanted: &[(String, i64)],
        ttl: Duration,
    ) -> Result<Outcome, ReservationError> {
        let wanted = merge(wanted);
        let wanted_json =
            serde_json::to_string(&wanted).map_err(|e| ReservationError::Corrupt(e.to_string()))?;
        let oid = order_id.to_string();
        let mut lane = self.lane().await?;
        let tx = lane.begin().await?;
        // One reservation per order id: a concurrent repeat waits here.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            &[&format!("o2c-store-reservation-{oid}")],
        )
        .await?;
        let existing = tx
            .query(
                &format!(
                    "SELECT store_id, wanted::text, lines::text, state, \
                     to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
                     FROM {SCHEMA}.store_reservations WHERE order_id = $1 FOR UPDATE"
                ),
                &[&oid],
            )
            .await?;
        if let Some(r) = existing.first() {
            let (s, w, l, state, exp): (String, String, String, String, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
            let same: Vec<(String, i64)> =
                serde_json::from_str(&w).map_err(|e| ReservationError::Corrupt(e.to_string()))?;
            tx.commit().await?;
            if s != store.as_str() || same != wanted || state == "released" {
                return Ok(Outcome::Conflict { state });
            }
            let lines =
                serde_json::from_str(&l).map_err(|e| ReservationError::Corrupt(e.to_string()))?;
            return Ok(Outcome::Held {
                lines,
                expires_at: exp,
                state,
                repeat: true,
            });
        }
        let skus: Vec<String> = wanted.iter().map(|(s, _)| s.clone()).collect();
        let provision: Vec<(String, String)> = skus
            .iter()
            .map(|s| (s.clone(), self.central_warehouse.clone()))
            .collect();
        let mut book = StockBook::load(&tx, &skus, &provision, self.auto_stock, &[]).await?;
        let mut lines = Vec::with_capacity(wanted.len());
        for (sku, qty) in &wanted {
            match book.pick(sku, *qty, &self.central_warehouse) {
                Some(warehouse) => lines.push(Reservation {
                    sku: sku.clone(),
                    quantity: *qty,
                    warehouse,
                }),
                None => {
                    // Nothing held; the provisioned rows (if any) stay.
                    tx.commit().await?;
                    return Ok(Outcome::OutOfStock { sku: sku.clone() });
                }
            }
        }
        book.apply(&oid, &lines, "store_reserve", 0, 1)?;
        book.flush(&tx).await?;
        let lines_json =
            serde_json::to_string(&lines).map_err(|e| ReservationError::Corrupt(e.to_string()))?;
        let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let row = tx
            .query(
                &format!(
                    "INSERT INTO {SCHEMA}.store_reservations \
                     (order_id, store_id, wanted, lines, state, expires_at) \
                     VALUES ($1, $2, $3::text::jsonb, $4::text::jsonb, 'held', \
                     now() + make_interval(secs => $5::int8::float8)) \
                     RETURNING to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
                ),
                &[&oid, &store.as_str(), &wanted_json, &lines_json, &ttl_secs],
            )
            .await?;
        let expires_at: String = row.first().map(|r| r.get(0)).unwrap_or_default();
        tx.commit().await?;
        Ok(Outcome::Held {
            lines,
            expires_at,
            state: "held".into(),
            repeat: false,
        })
    }

    /// Releases `order_id`'s reservation if it is still held (a void at
    /// the store); returns its state after, `None` if there is none for
    /// this store.
    pub async fn release(
        &self,
        order_id: &OrderId,
        store: &StoreId,
    ) -> Result<Option<String>, ReservationError> {
        let mut lane = self.lane().await?;
        let tx = lane.begin().await?;
        let rows = tx
            .query(
                &format!(
                    "SELECT state, lines::text FROM {SCHEMA}.store_reservations \
                     WHERE order_id = $1 AND store_id = $2 FOR UPDATE"
                ),
                &[&order_id.to_string(), &store.as_str()],
            )
            .await?;
        let Some(r) = rows.first() else {
            tx.commit().await?;
            return Ok(None);
        };
        let (state, lines): (String, String) = (r.get(0), r.get(1));
        if state != "held" {
            tx.commit().await?;
            return Ok(Some(state));
        }
        give_back(&tx, &order_id.to_string(), &lines, "store_release").await?;
        tx.commit().await?;
        Ok(Some("released".into()))
    }

    /// Releases lapsed reservations every `every` until `cancel`, calling
    /// `released` with each sweep's count (the services that take
    /// reservations run it: the catalog service and the order API; a
    /// reservation is released once whichever sweeps first).
    pub async fn sweep_until(
        &self,
        every: Duration,
        released: impl Fn(u64),
        cancel: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = tick.tick() => match self.sweep().await {
                    Ok(0) => {}
                    Ok(n) => released(n),
                    Err(e) => tracing::warn!(error = %e, "releasing lapsed reservations failed"),
                },
            }
        }
    }

    /// Releases every held reservation past its TTL; returns how many.
    pub async fn sweep(&self) -> Result<u64, ReservationError> {
        let mut lane = self.lane().await?;
        let mut n = 0;
        loop {
            let tx = lane.begin().await?;
            let rows = tx
                .query(
                    &format!(
                        "SELECT order_id, lines::text FROM {SCHEMA}.store_reservations \
                         WHERE state = 'held' AND expires_at < now() \
                         ORDER BY expires_at LIMIT 1 FOR UPDATE SKIP LOCKED"
                    ),
                    &[],
                )
                .await?;
            let Some(r) = rows.first() else {
                tx.commit().await?;
                return Ok(n);
            };
            let (oid, lines): (String, String) = (r.get(0), r.get(1));
            give_back(&tx, &oid, &lines, "store_expire").await?;
            tx.commit().await?;
            tracing::info!(order_id = %oid, "store reservation lapsed; units released");
            n += 1;
        }
    }
}

/// Takes a held reservation's units out of `reserved` and marks it
/// released (the row is locked by the caller).
async fn give_back(
    tx: &crate::db::Tx<'_>,
    order_id: &str,
    lines: &str,
    kind: &'static str,
) -> Result<(), ReservationError> {
    let lines: Vec<Reservation> =
        serde_json::from_str(lines).map_err(|e| ReservationError::Corrupt(e.to_string()))?;
    let skus: Vec<String> = lines.iter().map(|l| l.sku.clone()).collect();
    let mut book = StockBook::load(tx, &skus, &[], 0, &[]).await?;
    book.apply(order_id, &lines, kind, 0, -1)?;
    book.flush(tx).await?;
    tx.execute(
        &format!(
            "UPDATE {SCHEMA}.store_reservations SET state = 'released', ended_at = now() \
             WHERE order_id = $1"
        ),
        &[&order_id],
    )
    .await?;
    Ok(())
}

/// The inventory step's side: takes over the held reservations of
/// `orders` (locking them first), marks them consumed, and returns their
/// lines by order id.
pub(crate) async fn take_over(
    tx: &crate::db::Tx<'_>,
    orders: &[String],
) -> Result<BTreeMap<String, Vec<Reservation>>, ReservationError> {
    if orders.is_empty() {
        return Ok(BTreeMap::new());
    }
    let rows = tx
        .query(
            &format!(
                "UPDATE {SCHEMA}.store_reservations SET state = 'consumed', ended_at = now() \
                 WHERE order_id = ANY($1) AND state = 'held' RETURNING order_id, lines::text"
            ),
            &[&orders],
        )
        .await?;
    let mut out = BTreeMap::new();
    for r in &rows {
        let (oid, lines): (String, String) = (r.get(0), r.get(1));
        let lines =
            serde_json::from_str(&lines).map_err(|e| ReservationError::Corrupt(e.to_string()))?;
        out.insert(oid, lines);
    }
    Ok(out)
}
