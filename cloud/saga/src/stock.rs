//! The stock rows one inventory batch touches, held in memory.
//!
//! [`StockBook::load`] locks the rows of the batch's SKUs (`FOR UPDATE`, in
//! SKU and warehouse order, so concurrent batches cannot deadlock). The
//! inventory step then picks, reserves, confirms and releases against the
//! book ([`StockBook::pick`], [`StockBook::apply`]), which refuses any
//! change that would take `on_hand` or `reserved` below zero or `reserved`
//! above `on_hand`, exactly as the table's CHECKs do. [`StockBook::flush`]
//! writes each row's net change (one `UPDATE … FROM unnest`) and every
//! movement (one `INSERT … SELECT FROM unnest`).
//!
//! The rows are locked from load to commit, so the book is the table's
//! state plus this batch's changes, and every intermediate state it
//! accepted is one the table would have accepted.

use std::collections::BTreeMap;

use o2c_protocol::event::Reservation;

use super::db::Tx;
use super::inventory::SCHEMA;

/// A stock change the book refuses (a bug upstream: holds are picked
/// against the book).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StockError {
    /// No such row.
    #[error("no stock row for {sku} at {warehouse}")]
    NoRow {
        /// SKU.
        sku: String,
        /// Warehouse.
        warehouse: String,
    },
    /// The change would break `0 <= reserved <= on_hand`.
    #[error("stock of {sku} at {warehouse} would be on_hand {on_hand}, reserved {reserved}")]
    Invalid {
        /// SKU.
        sku: String,
        /// Warehouse.
        warehouse: String,
        /// Units on hand after the change.
        on_hand: i64,
        /// Units reserved after the change.
        reserved: i64,
    },
}

/// One row: units on hand and reserved, and the batch's net change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Row {
    on_hand: i64,
    reserved: i64,
    d_on_hand: i64,
    d_reserved: i64,
}

/// One recorded movement.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Movement {
    order_id: String,
    sku: String,
    warehouse: String,
    kind: &'static str,
    d_on_hand: i64,
    d_reserved: i64,
}

/// The locked stock rows of a batch (see the module docs).
#[derive(Debug, Default)]
pub struct StockBook {
    rows: BTreeMap<(String, String), Row>,
    moves: Vec<Movement>,
}

impl StockBook {
    /// A book of `(sku, warehouse, on_hand, reserved)` rows.
    pub fn new(rows: impl IntoIterator<Item = (String, String, i64, i64)>) -> Self {
        Self {
            rows: rows
                .into_iter()
                .map(|(s, w, on_hand, reserved)| {
                    let row = Row {
                        on_hand,
                        reserved,
                        ..Row::default()
                    };
                    ((s, w), row)
                })
                .collect(),
            moves: Vec::new(),
        }
    }

    /// A warehouse with `qty` units of `sku` available, preferring
    /// `preferred`, then the first by name (byte order).
    pub fn pick(&self, sku: &str, qty: i64, preferred: &str) -> Option<String> {
        let mut candidates = self
            .rows
            .range((sku.to_owned(), String::new())..)
            .take_while(|((s, _), _)| s == sku)
            .filter(|(_, r)| r.on_hand - r.reserved >= qty)
            .map(|((_, w), _)| w);
        let first = candidates.next()?;
        if first == preferred {
            return Some(first.clone());
        }
        Some(
            candidates
                .find(|w| *w == preferred)
                .unwrap_or(first)
                .clone(),
        )
    }

    /// Applies `sign_on_hand * qty` and `sign_reserved * qty` to each
    /// line's row and records the movement; all lines or none.
    pub fn apply(
        &mut self,
        order_id: &str,
        lines: &[Reservation],
        kind: &'static str,
        sign_on_hand: i64,
        sign_reserved: i64,
    ) -> Result<(), StockError> {
        // Check every line first (a SKU twice in `lines` adds up).
        let mut after: BTreeMap<(&str, &str), (i64, i64)> = BTreeMap::new();
        for l in lines {
            let key = (l.sku.clone(), l.warehouse.clone());
            let row = self.rows.get(&key).ok_or_else(|| StockError::NoRow {
                sku: l.sku.clone(),
                warehouse: l.warehouse.clone(),
            })?;
            let (on_hand, reserved) = after
                .entry((l.sku.as_str(), l.warehouse.as_str()))
                .or_insert((row.on_hand, row.reserved));
            *on_hand += sign_on_hand * l.quantity;
            *reserved += sign_reserved * l.quantity;
            if *on_hand < 0 || *reserved < 0 || *reserved > *on_hand {
                return Err(StockError::Invalid {
                    sku: l.sku.clone(),
                    warehouse: l.warehouse.clone(),
                    on_hand: *on_hand,
                    reserved: *reserved,
                });
            }
        }
        for l in lines {
            let (d_on_hand, d_reserved) = (sign_on_hand * l.quantity, sign_reserved * l.quantity);
            if let Some(row) = self.rows.get_mut(&(l.sku.clone(), l.warehouse.clone())) {
                row.on_hand += d_on_hand;
                row.reserved += d_reserved;
                row.d_on_hand += d_on_hand;
                row.d_reserved += d_reserved;
            }
            self.moves.push(Movement {
                order_id: order_id.to_owned(),
                sku: l.sku.clone(),
                warehouse: l.warehouse.clone(),
                kind,
                d_on_hand,
                d_reserved,
            });
        }
        Ok(())
    }

    /// Units on hand and reserved of a row (tests, diagnostics).
    pub fn units(&self, sku: &str, warehouse: &str) -> Option<(i64, i64)> {
        self.rows
            .get(&(sku.to_owned(), warehouse.to_owned()))
            .map(|r| (r.on_hand, r.reserved))
    }

    /// Provisions `units` of each `(sku, warehouse)` whose SKU has no row
    /// at all, makes an empty row for each `(sku, warehouse)` of `receive`
    /// that has none (units coming back), then locks and loads every row of
    /// `skus`.
    pub(crate) async fn load(
        tx: &Tx<'_>,
        skus: &[String],
        provision: &[(String, String)],
        units: i64,
        receive: &[(String, String)],
    ) -> Result<Self, tokio_postgres::Error> {
        if !receive.is_empty() {
            let mut sorted: Vec<(&str, &str)> = receive
                .iter()
                .map(|(s, w)| (s.as_str(), w.as_str()))
                .collect();
            sorted.sort_unstable();
            sorted.dedup();
            let (s, w): (Vec<&str>, Vec<&str>) = sorted.into_iter().unzip();
            tx.execute(
                &format!(
                    "INSERT INTO {SCHEMA}.stock (sku, warehouse, on_hand) \
                     SELECT u.s, u.w, 0 FROM unnest($1::text[], $2::text[]) AS u(s, w) \
                     ON CONFLICT DO NOTHING"
                ),
                &[&s, &w],
            )
            .await?;
        }
        if !provision.is_empty() && units > 0 {
            // Inserted in (sku, warehouse) order, as the rows are locked
            // below: batches of two processes provisioning the same new
            // SKUs must not wait on each other's inserts in opposite orders.
            let mut sorted: Vec<(&str, &str)> = provision
                .iter()
                .map(|(s, w)| (s.as_str(), w.as_str()))
                .collect();
            sorted.sort_unstable();
            let (s, w): (Vec<&str>, Vec<&str>) = sorted.into_iter().unzip();
            tx.execute(
                &format!(
                    "INSERT INTO {SCHEMA}.stock (sku, warehouse, on_hand) \
                     SELECT u.s, u.w, $3 FROM unnest($1::text[], $2::text[]) AS u(s, w) \
                     WHERE NOT EXISTS (SELECT 1 FROM {SCHEMA}.stock t WHERE t.sku = u.s) \
                     ON CONFLICT DO NOTHING"
                ),
                &[&s, &w, &units],
            )
            .await?;
        }
        if skus.is_empty() {
            return Ok(Self::default());
        }
        let rows = tx
            .query(
                &format!(
                    "SELECT sku, warehouse, on_hand, reserved FROM {SCHEMA}.stock \
                     WHERE sku = ANY($1) ORDER BY sku, warehouse FOR UPDATE"
                ),
                &[&skus],
            )
            .await?;
        Ok(Self::new(
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))),
        ))
    }

    /// Writes the net change of every row and the movements.
    pub(crate) async fn flush(self, tx: &Tx<'_>) -> Result<(), tokio_postgres::Error> {
        if self.moves.is_empty() {
            return Ok(());
        }
        let (mut s, mut w, mut d1, mut d2) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for ((sku, wh), r) in &self.rows {
            if r.d_on_hand != 0 || r.d_reserved != 0 {
                s.push(sku.as_str());
                w.push(wh.as_str());
                d1.push(r.d_on_hand);
                d2.push(r.d_reserved);
            }
        }
        if !s.is_empty() {
            tx.execute(
                &format!(
                    "UPDATE {SCHEMA}.stock AS t \
                     SET on_hand = t.on_hand + u.d1, reserved = t.reserved + u.d2 \
                     FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[]) AS u(s, w, d1, d2) \
                     WHERE t.sku = u.s AND t.warehouse = u.w"
                ),
                &[&s, &w, &d1, &d2],
            )
            .await?;
        }
        let m = &self.moves;
        let orders: Vec<&str> = m.iter().map(|m| m.order_id.as_str()).collect();
        let skus: Vec<&str> = m.iter().map(|m| m.sku.as_str()).collect();
        let whs: Vec<&str> = m.iter().map(|m| m.warehouse.as_str()).collect();
        let kinds: Vec<&str> = m.iter().map(|m| m.kind).collect();
        let d_on: Vec<i64> = m.iter().map(|m| m.d_on_hand).collect();
        let d_res: Vec<i64> = m.iter().map(|m| m.d_reserved).collect();
        tx.execute(
            &format!(
                "INSERT INTO {SCHEMA}.movements \
                 (order_id, sku, warehouse, kind, delta_on_hand, delta_reserved) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
                 $5::int8[], $6::int8[])"
            ),
            &[&orders, &skus, &whs, &kinds, &d_on, &d_res],
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, wh: &str, qty: i64) -> Reservation {
        Reservation {
            sku: sku.into(),
            quantity: qty,
            warehouse: wh.into(),
        }
    }

    fn book() -> StockBook {
        StockBook::new([
            ("A".to_owned(), "central".to_owned(), 10, 0),
            ("A".to_owned(), "S001".to_owned(), 3, 1),
            ("B".to_owned(), "central".to_owned(), 1, 0),
        ])
    }

    #[test]
    fn pick_prefers_the_given_warehouse_then_the_first_by_name() {
        let b = book();
        assert_eq!(b.pick("A", 2, "S001").as_deref(), Some("S001"));
        // S001 has only 2 available.
        assert_eq!(b.pick("A", 3, "S001").as_deref(), Some("central"));
        // Otherwise the first by name, in byte order.
        assert_eq!(b.pick("A", 2, "S009").as_deref(), Some("S001"));
        assert_eq!(b.pick("A", 3, "S009").as_deref(), Some("central"));
        assert_eq!(b.pick("A", 11, "S001"), None);
        assert_eq!(b.pick("C", 1, "S001"), None);
    }

    #[test]
    fn reservations_see_earlier_ones_of_the_batch() {
        let mut b = book();
        let one = [line("B", "central", 1)];
        b.apply("o1", &one, "reserve", 0, 1).unwrap();
        assert_eq!(b.pick("B", 1, "central"), None);
        assert!(matches!(
            b.apply("o2", &one, "reserve", 0, 1),
            Err(StockError::Invalid { .. })
        ));
        b.apply("o1", &one, "confirm", -1, -1).unwrap();
        assert_eq!(b.units("B", "central"), Some((0, 0)));
        // Nothing may go negative.
        assert!(b.apply("o3", &one, "confirm", -1, -1).is_err());
        assert_eq!(b.moves.len(), 2);
    }

    #[test]
    fn a_refused_order_changes_no_line() {
        let mut b = book();
        let lines = [line("A", "central", 2), line("B", "central", 5)];
        assert!(b.apply("o1", &lines, "reserve", 0, 1).is_err());
        assert_eq!(b.units("A", "central"), Some((10, 0)));
        assert!(b.moves.is_empty());
        // A SKU twice in one order adds up.
        let twice = [line("B", "central", 1), line("B", "central", 1)];
        assert!(b.apply("o2", &twice, "reserve", 0, 1).is_err());
        assert_eq!(b.units("B", "central"), Some((1, 0)));
    }

    #[test]
    fn the_net_change_is_what_is_written() {
        let mut b = book();
        let l = [line("A", "central", 4)];
        b.apply("o1", &l, "reserve", 0, 1).unwrap();
        b.apply("o1", &l, "confirm", -1, -1).unwrap();
        b.apply("o2", &l, "reserve", 0, 1).unwrap();
        let r = b.rows[&("A".to_owned(), "central".to_owned())];
        assert_eq!((r.d_on_hand, r.d_reserved), (-4, 4));
        assert_eq!((r.on_hand, r.reserved), (6, 4));
    }
}
