//! The fact tables in ClickHouse, their views, and the queries over them.
//!
//! Each applied event writes its order's whole row again with the record's
//! version; a replayed event writes the same row with the same version.
//! The tables are `ReplacingMergeTree(version)`, so each order (line,
//! shipment) is one row after merges, and every read says `FINAL`.
//!
//! The aggregates (daily sales by store and by category, product
//! performance, customer lifetime value) are views over the `FINAL` facts,
//! not materialized views: a materialized view is fed by every insert, so
//! the same row inserted again by a replay (or an order's row rewritten by
//! its void) would be summed twice, and neither ClickHouse 18.16 nor any
//! non-replicated table deduplicates inserts. Over `FINAL`, a day's view
//! is exactly the sum of its facts, whatever was replayed.

use clickhouse::{Client, Row};
use o2c_cloud_common::config::ClickHouseConfig;
use serde::{Deserialize, Serialize};

use crate::counters::Record;
use crate::fold::{Base, Shipment};

/// A ClickHouse failure.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// A query or insert failed.
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
}

/// `fact_orders`: one row per order (its latest version).
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct OrderFact {
    /// The order.
    pub order_id: String,
    /// The selling store.
    pub store_id: String,
    /// `pos`, `web`, `mobile`.
    pub channel: String,
    /// Hash of the customer's contact; empty if none.
    pub customer_key: String,
    /// Capture time (`DateTime`, Unix seconds).
    pub captured_at: u32,
    /// Business date (`Date`, days since 1970-01-01).
    pub business_date: u16,
    /// ISO 4217.
    pub currency: String,
    /// The order's total, minor units.
    pub total_minor: i64,
    /// Refunded so far.
    pub refunded_minor: i64,
    /// What the order is worth now: 0 once voided, else total less refunds.
    pub net_minor: i64,
    /// `created`, `paid`, `payment_failed`, `completed`, `cancelled`.
    pub status: String,
    /// Tender methods, sorted, joined by `+`.
    pub payment_method: String,
    /// Units sold.
    pub items_count: u32,
    /// Capture to completion, ms; -1 until completed.
    pub processing_ms: i64,
    /// Arrived late (captured offline).
    pub late: u8,
    /// The record's version.
    pub version: u64,
}

/// `fact_order_items`: one row per order line.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct ItemFact {
    /// The order.
    pub order_id: String,
    /// Position in the order.
    pub line_no: u16,
    /// The selling store.
    pub store_id: String,
    /// Capture time.
    pub captured_at: u32,
    /// Business date.
    pub business_date: u16,
    /// SKU.
    pub sku: String,
    /// Category at capture.
    pub category: String,
    /// Units.
    pub quantity: i64,
    /// Unit price.
    pub unit_price_minor: i64,
    /// quantity × unit price.
    pub line_total_minor: i64,
    /// ISO 4217.
    pub currency: String,
    /// 1 once the order is voided.
    pub cancelled: u8,
    /// The record's version.
    pub version: u64,
}

/// `fact_shipments`.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct ShipmentFact {
    /// The shipment.
    pub shipment_id: String,
    /// Its order.
    pub order_id: String,
    /// The order's store.
    pub store_id: String,
    /// When it was scheduled.
    pub scheduled_at: u32,
    /// `scheduled`.
    pub status: String,
    /// Version (1: scheduled).
    pub version: u64,
}

/// Rows waiting for the next insert.
#[derive(Debug, Default)]
pub struct Pending {
    /// Order rows.
    pub orders: Vec<OrderFact>,
    /// Line rows.
    pub items: Vec<ItemFact>,
    /// Shipment rows.
    pub shipments: Vec<ShipmentFact>,
}

impl Pending {
    /// Rows waiting.
    pub fn len(&self) -> usize {
        self.orders.len() + self.items.len() + self.shipments.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds an order's rows as its record now stands (nothing before its
    /// sale has been seen).
    pub fn add_order(&mut self, r: &Record) {
        let Some(b) = &r.base else { return };
        self.orders.push(order_row(b, r));
        for (i, l) in b.lines.iter().enumerate() {
            self.items.push(ItemFact {
                order_id: b.order_id.clone(),
                line_no: u16::try_from(i).unwrap_or(u16::MAX),
                store_id: b.store_id.clone(),
                captured_at: secs(b.captured_s),
                business_date: b.day_number,
                sku: l.sku.clone(),
                category: l.category.clone(),
                quantity: l.quantity,
                unit_price_minor: l.unit_minor,
                line_total_minor: l.unit_minor.saturating_mul(l.quantity),
                currency: b.cur.clone(),
                cancelled: u8::from(r.cancelled),
                version: r.version,
            });
        }
    }

    /// Adds a shipment's row.
    pub fn add_shipment(&mut self, s: &Shipment) {
        self.shipments.push(ShipmentFact {
            shipment_id: s.shipment_id.clone(),
            order_id: s.order_id.clone(),
            store_id: s.store_id.clone(),
            scheduled_at: secs(s.scheduled_s),
            status: "scheduled".into(),
            version: 1,
        });
    }
}

/// An order's row from its record.
pub fn order_row(b: &Base, r: &Record) -> OrderFact {
    let status = if r.cancelled {
        "cancelled"
    } else if r.completed_ms.is_some() {
        "completed"
    } else {
        match r.payment.as_deref() {
            Some("captured") => "paid",
            Some("failed") => "payment_failed",
            _ => "created",
        }
    };
    OrderFact {
        order_id: b.order_id.clone(),
        store_id: b.store_id.clone(),
        channel: b.channel.clone(),
        customer_key: b.customer_key.clone(),
        captured_at: secs(b.captured_s),
        business_date: b.day_number,
        currency: b.cur.clone(),
        total_minor: b.total,
        refunded_minor: r.refunded,
        net_minor: if r.cancelled {
            0
        } else {
            b.total.saturating_sub(r.refunded)
        },
        status: status.into(),
        payment_method: b.payment_method.clone(),
        items_count: b.items,
        processing_ms: r.completed_ms.map_or(-1, |done| {
            done.saturating_sub(b.captured_s.saturating_mul(1000))
                .max(0)
        }),
        late: u8::from(b.late),
        version: r.version,
    }
}

/// A day number as `YYYY-MM-DD`, the form ClickHouse reads as a `Date`.
fn iso(day: u16) -> String {
    crate::fold::date_of_day_number(day).map_or_else(String::new, |d| d.to_string())
}

fn secs(s: i64) -> u32 {
    u32::try_from(s.max(0)).unwrap_or(u32::MAX)
}

/// The tables and views, in the configured database. Only what
/// ClickHouse 18.16 supports: no `DateTime64`, `TTL` or window functions.
pub fn ddl(db: &str) -> Vec<String> {
    let facts = [
        (
            "fact_orders",
            "order_id String, store_id String, channel String, customer_key String, \
             captured_at DateTime, business_date Date, currency String, total_minor Int64, \
             refunded_minor Int64, net_minor Int64, status String, payment_method String, \
             items_count UInt32, processing_ms Int64, late UInt8, version UInt64",
            "order_id",
        ),
        (
            "fact_order_items",
            "order_id String, line_no UInt16, store_id String, captured_at DateTime, \
             business_date Date, sku String, category String, quantity Int64, \
             unit_price_minor Int64, line_total_minor Int64, currency String, cancelled UInt8, \
             version UInt64",
            "(order_id, line_no)",
        ),
        (
            "fact_shipments",
            "shipment_id String, order_id String, store_id String, scheduled_at DateTime, \
             status String, version UInt64",
            "(order_id, shipment_id)",
        ),
    ];
    let date_of = |t: &str| match t {
        "fact_shipments" => "toDate(scheduled_at)",
        _ => "business_date",
    };
    let mut out = vec![format!("CREATE DATABASE IF NOT EXISTS {db}")];
    for (table, cols, key) in facts {
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {db}.{table} ({cols}) \
             ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM({}) ORDER BY {key}",
            date_of(table)
        ));
    }
    out.push(format!(
        "CREATE VIEW IF NOT EXISTS {db}.daily_sales_by_store AS \
         SELECT business_date, store_id, currency, \
         countIf(status != 'cancelled') AS orders, countIf(status = 'cancelled') AS voids, \
         sum(total_minor) AS gross_minor, sum(refunded_minor) AS refunded_minor, \
         sum(net_minor) AS net_minor \
         FROM {db}.fact_orders FINAL GROUP BY business_date, store_id, currency"
    ));
    out.push(format!(
        "CREATE VIEW IF NOT EXISTS {db}.daily_sales_by_category AS \
         SELECT business_date, category, currency, \
         uniqExactIf(order_id, cancelled = 0) AS orders, sumIf(quantity, cancelled = 0) AS units, \
         sumIf(line_total_minor, cancelled = 0) AS net_minor \
         FROM {db}.fact_order_items FINAL GROUP BY business_date, category, currency"
    ));
    out.push(format!(
        "CREATE VIEW IF NOT EXISTS {db}.product_performance AS \
         SELECT sku, category, currency, sum(quantity) AS units, \
         sum(line_total_minor) AS revenue_minor, uniqExact(order_id) AS orders, \
         min(captured_at) AS first_sold, max(captured_at) AS last_sold \
         FROM {db}.fact_order_items FINAL WHERE cancelled = 0 GROUP BY sku, category, currency"
    ));
    out.push(format!(
        "CREATE VIEW IF NOT EXISTS {db}.customer_lifetime_value AS \
         SELECT customer_key, currency, countIf(status != 'cancelled') AS orders, \
         sum(net_minor) AS net_minor, min(captured_at) AS first_order, \
         max(captured_at) AS last_order \
         FROM {db}.fact_orders FINAL WHERE customer_key != '' GROUP BY customer_key, currency"
    ));
    out
}

/// A row of `daily_sales_by_store`.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct DailyByStore {
    /// Business date.
    pub business_date: u16,
    /// Store.
    pub store_id: String,
    /// ISO 4217.
    pub currency: String,
    /// Orders not voided.
    pub orders: u64,
    /// Voided orders.
    pub voids: u64,
    /// Every order's total.
    pub gross_minor: i64,
    /// Refunded.
    pub refunded_minor: i64,
    /// Net of voids and refunds.
    pub net_minor: i64,
}

/// A row of `daily_sales_by_category`.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct DailyByCategory {
    /// Business date.
    pub business_date: u16,
    /// Category.
    pub category: String,
    /// ISO 4217.
    pub currency: String,
    /// Orders with a line in it, not voided.
    pub orders: u64,
    /// Units, not voided.
    pub units: i64,
    /// Line totals, not voided.
    pub net_minor: i64,
}

/// The ClickHouse side.
#[derive(Clone)]
pub struct Facts {
    client: Client,
    tables: Client,
    db: String,
}

impl std::fmt::Debug for Facts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Facts")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

impl Facts {
    /// A client for `cfg` (no connection is made yet).
    pub fn new(cfg: &ClickHouseConfig) -> Self {
        let client = Client::default()
            .with_url(&cfg.url)
            .with_user(&cfg.user)
            .with_password(&cfg.password)
            // 18.16 (Debian's package, dev and CI) has neither the
            // RowBinaryWithNamesAndTypes format nor the setting the
            // client's schema check needs; see `ClickHouseConfig::validation`.
            .with_validation(cfg.validation);
        Self {
            // Inserts name the table alone (the crate quotes a name whole,
            // so `db.table` would be one identifier): the database is the
            // connection's. DDL, which creates that database, runs without.
            tables: client.clone().with_database(&cfg.database),
            client,
            db: cfg.database.clone(),
        }
    }

    /// The database.
    pub fn database(&self) -> &str {
        &self.db
    }

    /// Creates the database, tables and views if missing.
    pub async fn migrate(&self) -> Result<(), FactsError> {
        for stmt in ddl(&self.db) {
            self.client.query(&stmt).execute().await?;
        }
        Ok(())
    }

    /// Inserts what is pending, table by table; on success it is empty.
    /// A failed insert keeps the rows for the next try (re-inserting a
    /// row that did land is harmless: same order, same version).
    pub async fn insert(&self, p: &mut Pending) -> Result<(), FactsError> {
        if !p.orders.is_empty() {
            self.write("fact_orders", &p.orders).await?;
            p.orders.clear();
        }
        if !p.items.is_empty() {
            self.write("fact_order_items", &p.items).await?;
            p.items.clear();
        }
        if !p.shipments.is_empty() {
            self.write("fact_shipments", &p.shipments).await?;
            p.shipments.clear();
        }
        Ok(())
    }

    async fn write<T>(&self, table: &str, rows: &[T]) -> Result<(), FactsError>
    where
        T: Row + Serialize + for<'a> clickhouse::RowWrite<Value<'a> = T>,
    {
        let mut insert = self.tables.insert::<T>(table).await?;
        for r in rows {
            insert.write(r).await?;
        }
        insert.end().await?;
        Ok(())
    }

    /// `daily_sales_by_store` for business dates `from..=to` (day numbers).
    pub async fn daily_by_store(
        &self,
        from: u16,
        to: u16,
    ) -> Result<Vec<DailyByStore>, FactsError> {
        Ok(self
            .client
            .query(&format!(
                "SELECT ?fields FROM {}.daily_sales_by_store \
                 WHERE business_date >= toDate(?) AND business_date <= toDate(?) \
                 ORDER BY business_date, store_id, currency",
                self.db
            ))
            .bind(iso(from))
            .bind(iso(to))
            .fetch_all()
            .await?)
    }

    /// `daily_sales_by_category` for business dates `from..=to`.
    pub async fn daily_by_category(
        &self,
        from: u16,
        to: u16,
    ) -> Result<Vec<DailyByCategory>, FactsError> {
        Ok(self
            .client
            .query(&format!(
                "SELECT ?fields FROM {}.daily_sales_by_category \
                 WHERE business_date >= toDate(?) AND business_date <= toDate(?) \
                 ORDER BY business_date, category, currency",
                self.db
            ))
            .bind(iso(from))
            .bind(iso(to))
            .fetch_all()
            .await?)
    }

    /// The rows of `fact_orders` (`FINAL`) of one business date, for
    /// checks and the report.
    pub async fn orders_of_day(&self, day: u16) -> Result<Vec<OrderFact>, FactsError> {
        Ok(self
            .client
            .query(&format!(
                "SELECT ?fields FROM {}.fact_orders FINAL WHERE business_date = toDate(?) \
                 ORDER BY order_id",
                self.db
            ))
            .bind(iso(day))
            .fetch_all()
            .await?)
    }

    /// Orders in `fact_orders` (`FINAL`).
    pub async fn count_orders(&self) -> Result<u64, FactsError> {
        Ok(self
            .client
            .query(&format!(
                "SELECT count() FROM {}.fact_orders FINAL",
                self.db
            ))
            .fetch_one()
            .await?)
    }

    /// Whether `fact_orders` has a row of `order_id`.
    pub async fn has_order(&self, order_id: &str) -> Result<bool, FactsError> {
        let n: u64 = self
            .client
            .query(&format!(
                "SELECT count() FROM {}.fact_orders WHERE order_id = ?",
                self.db
            ))
            .bind(order_id)
            .fetch_one()
            .await?;
        Ok(n > 0)
    }

    /// The rows of `fact_shipments` (`FINAL`) of some orders.
    pub async fn shipments_of(
        &self,
        order_ids: &[String],
    ) -> Result<Vec<ShipmentFact>, FactsError> {
        Ok(self
            .client
            .query(&format!(
                "SELECT ?fields FROM {}.fact_shipments FINAL WHERE has(?, order_id) \
                 ORDER BY order_id, shipment_id",
                self.db
            ))
            .bind(order_ids)
            .fetch_all()
            .await?)
    }
}
