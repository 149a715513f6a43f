//! The store API's reads from PostgreSQL: catalog and stock pages, the
//! versions behind the `ETag`s and hints, and the stores to hint.
//!
//! The catalog is `o2c_catalog` (this crate's [`crate::db`]); the stock is
//! the inventory service's table (`{inventory}.stock`, whose rows take a
//! version from one sequence on every change; see the inventory migration
//! `007_stock_version.sql`).

use o2c_protocol::catalog::{CatalogPage, CatalogVersion, Product, StockLevel, StockPage};
use tokio_postgres::Client;

use crate::db::CatalogError;

fn version(v: i64) -> CatalogVersion {
    CatalogVersion(u64::try_from(v).unwrap_or(0))
}

fn pg(v: CatalogVersion) -> i64 {
    i64::try_from(v.0).unwrap_or(i64::MAX)
}

/// What a page request names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// The client's version; `None` (or a version the cloud never had)
    /// asks for a snapshot.
    pub since: Option<CatalogVersion>,
    /// The SKU the previous page ended with.
    pub after: Option<String>,
    /// The walk's version, from its first page.
    pub upto: Option<CatalogVersion>,
}

/// One catalog page, `limit` products, for a catalog at `current`.
pub async fn catalog_page(
    client: &Client,
    req: &PageRequest,
    current: CatalogVersion,
    limit: u32,
) -> Result<CatalogPage, CatalogError> {
    // A client ahead of the cloud (a restored database) starts again.
    let since = req.since.filter(|s| *s <= current);
    let rows = client
        .query(
            "SELECT sku, name, category, active, prices::text FROM o2c_catalog.products \
             WHERE version > $1 AND sku > $2 ORDER BY sku LIMIT $3",
            &[
                &since.map(pg).unwrap_or(0),
                &req.after.as_deref().unwrap_or(""),
                &i64::from(limit),
            ],
        )
        .await?;
    let products = products_of(&rows)?;
    let next_after = (products.len() == limit as usize)
        .then(|| products.last().map(|p| p.sku.clone()))
        .flatten();
    Ok(CatalogPage {
        version: req.upto.unwrap_or(current),
        since,
        full: since.is_none(),
        products,
        next_after,
    })
}

/// The products of `rows` (`sku, name, category, active, prices::text`).
fn products_of(rows: &[tokio_postgres::Row]) -> Result<Vec<Product>, CatalogError> {
    let mut products = Vec::with_capacity(rows.len());
    for r in rows {
        let prices: &str = r.get(4);
        products.push(Product {
            sku: r.get(0),
            name: r.get(1),
            category: r.get(2),
            active: r.get(3),
            prices: serde_json::from_str(prices)?,
        });
    }
    Ok(products)
}

/// The products among `skus` the catalog knows (active or not), in SKU
/// order: how the cloud order API prices a web or mobile order.
pub async fn products(client: &Client, skus: &[String]) -> Result<Vec<Product>, CatalogError> {
    let rows = client
        .query(
            "SELECT sku, name, category, active, prices::text FROM o2c_catalog.products \
             WHERE sku = ANY($1) ORDER BY sku",
            &[&skus],
        )
        .await?;
    products_of(&rows)
}

/// Up to `limit` active products after the SKU `after` holding a price in
/// `currency` (in force or to come), in SKU order: the pages of the cloud
/// order API's product list. The caller drops those whose price is not
/// yet in force, so a page may hold fewer than `limit`.
pub async fn priced_page(
    client: &Client,
    currency: &str,
    after: &str,
    limit: u32,
) -> Result<Vec<Product>, CatalogError> {
    let rows = client
        .query(
            "SELECT sku, name, category, active, prices::text FROM o2c_catalog.products \
             WHERE active AND sku > $1 AND prices @> jsonb_build_array(jsonb_build_object('currency', $2::text)) \
             ORDER BY sku LIMIT $3",
            &[&after, &currency, &i64::from(limit)],
        )
        .await?;
    products_of(&rows)
}

/// One stock page of `store`'s warehouse, for a stock at `current`.
pub async fn stock_page(
    client: &Client,
    inventory: &str,
    store: &str,
    req: &PageRequest,
    current: CatalogVersion,
    limit: u32,
) -> Result<StockPage, CatalogError> {
    let since = req.since.filter(|s| *s <= current);
    let rows = client
        .query(
            &format!(
                "SELECT sku, on_hand, reserved FROM {inventory}.stock \
                 WHERE warehouse = $1 AND version > $2 AND sku > $3 ORDER BY sku LIMIT $4"
            ),
            &[
                &store,
                &since.map(pg).unwrap_or(0),
                &req.after.as_deref().unwrap_or(""),
                &i64::from(limit),
            ],
        )
        .await?;
    let levels: Vec<StockLevel> = rows
        .iter()
        .map(|r| StockLevel {
            sku: r.get(0),
            on_hand: r.get(1),
            reserved: r.get(2),
        })
        .collect();
    let next_after = (levels.len() == limit as usize)
        .then(|| levels.last().map(|l| l.sku.clone()))
        .flatten();
    Ok(StockPage {
        version: req.upto.unwrap_or(current),
        since,
        levels,
        next_after,
    })
}

/// The catalog version and the stock sequence's last value (0 before the
/// inventory service has made its table).
pub async fn versions(
    client: &Client,
    inventory: &str,
) -> Result<(CatalogVersion, CatalogVersion), CatalogError> {
    let catalog = crate::db::version(client).await?;
    let stock: i64 = client
        .query_one(
            &format!(
                "SELECT CASE WHEN to_regclass('{inventory}.stock_version_seq') IS NULL THEN 0 \
                 ELSE (SELECT last_value FROM {inventory}.stock_version_seq) END"
            ),
            &[],
        )
        .await
        .map(|r| r.get(0))
        .or_else(|e| missing_table(e, 0))?;
    Ok((version(catalog), version(stock)))
}

/// The stores whose stock moved after `since`, with their stock version.
pub async fn stock_moved(
    client: &Client,
    inventory: &str,
    since: CatalogVersion,
) -> Result<Vec<(String, CatalogVersion)>, CatalogError> {
    let rows = client
        .query(
            &format!(
                "SELECT warehouse, max(version) FROM {inventory}.stock \
                 WHERE version > $1 GROUP BY warehouse"
            ),
            &[&pg(since)],
        )
        .await
        .or_else(|e| missing_table(e, Vec::new()))?;
    Ok(rows.iter().map(|r| (r.get(0), version(r.get(1)))).collect())
}

/// One store's stock version.
pub async fn store_stock_version(
    client: &Client,
    inventory: &str,
    store: &str,
) -> Result<CatalogVersion, CatalogError> {
    let v: Option<i64> = client
        .query_one(
            &format!("SELECT max(version) FROM {inventory}.stock WHERE warehouse = $1"),
            &[&store],
        )
        .await
        .map(|r| r.get(0))
        .or_else(|e| missing_table(e, None))?;
    Ok(version(v.unwrap_or(0)))
}

/// The stores that have called the API.
pub async fn known_stores(client: &Client) -> Result<Vec<String>, CatalogError> {
    let rows = client
        .query("SELECT store_id FROM o2c_catalog.stores", &[])
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Records a store that called the API.
pub async fn remember_store(client: &Client, store: &str) -> Result<(), CatalogError> {
    client
        .execute(
            "INSERT INTO o2c_catalog.stores (store_id) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&store],
        )
        .await?;
    Ok(())
}

/// `fallback` when the inventory service has not made its tables yet
/// (undefined table or column), else the error.
fn missing_table<T>(e: tokio_postgres::Error, fallback: T) -> Result<T, tokio_postgres::Error> {
    use tokio_postgres::error::SqlState;
    match e.code() {
        Some(c) if *c == SqlState::UNDEFINED_TABLE || *c == SqlState::UNDEFINED_COLUMN => {
            Ok(fallback)
        }
        _ => Err(e),
    }
}
