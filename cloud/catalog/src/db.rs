//! The catalog in PostgreSQL (schema `o2c_catalog`): its migration and the
//! import, one transaction per file.
//!
//! Imports are serialized by a row lock on `o2c_catalog.meta`. An import
//! compares each product with its stored row (prices in canonical order)
//! and, if anything differs, takes the next catalog version for all the
//! rows it changes; an import that changes nothing keeps the version.

use tokio_postgres::Client;

use crate::import::Product;

/// Why the catalog could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// PostgreSQL.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// A product could not be encoded (a bug).
    #[error("encode: {0}")]
    Encode(#[from] serde_json::Error),
}

/// An import that changes this many products refreshes the table's
/// statistics.
const ANALYZE_AFTER: usize = 10_000;

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The catalog version after it.
    pub version: i64,
    /// Products created or changed.
    pub changed: usize,
    /// Products already as in the file.
    pub unchanged: usize,
}

/// Creates the schema if needed.
pub async fn migrate(client: &Client) -> Result<(), CatalogError> {
    client
        .batch_execute(include_str!("../migrations/001_catalog.sql"))
        .await?;
    Ok(())
}

/// The current catalog version.
pub async fn version(client: &Client) -> Result<i64, CatalogError> {
    Ok(client
        .query_one("SELECT version FROM o2c_catalog.meta", &[])
        .await?
        .get(0))
}

/// Applies `products` in one transaction (see the module doc).
pub async fn import(client: &mut Client, products: &[Product]) -> Result<Outcome, CatalogError> {
    let tx = client.transaction().await?;
    let current: i64 = tx
        .query_one("SELECT version FROM o2c_catalog.meta FOR UPDATE", &[])
        .await?
        .get(0);
    let skus: Vec<&str> = products.iter().map(|p| p.sku.as_str()).collect();
    let stored: std::collections::HashMap<String, serde_json::Value> = tx
        .query(
            "SELECT sku, jsonb_build_object('name', name, 'category', category, \
             'active', active, 'prices', prices)::text FROM o2c_catalog.products \
             WHERE sku = ANY($1)",
            &[&skus],
        )
        .await?
        .iter()
        .map(|r| {
            let text: &str = r.get(1);
            (r.get(0), serde_json::from_str(text).unwrap_or_default())
        })
        .collect();
    let mut changed = Vec::new();
    for p in products {
        let prices = serde_json::to_value(&p.prices)?;
        let now = serde_json::json!({
            "name": p.name, "category": p.category, "active": p.active, "prices": prices,
        });
        if stored.get(&p.sku) != Some(&now) {
            changed.push((p, prices));
        }
    }
    let outcome = Outcome {
        version: if changed.is_empty() {
            current
        } else {
            current + 1
        },
        changed: changed.len(),
        unchanged: products.len() - changed.len(),
    };
    if !changed.is_empty() {
        let (mut sku, mut name, mut category, mut active, mut prices) =
            (vec![], vec![], vec![], vec![], vec![]);
        for (p, pr) in &changed {
            sku.push(p.sku.as_str());
            name.push(p.name.as_str());
            category.push(p.category.as_deref());
            active.push(p.active);
            prices.push(pr.to_string());
        }
        tx.execute(
            "INSERT INTO o2c_catalog.products (sku, name, category, active, prices, version) \
             SELECT s, n, c, a, p::jsonb, $6 FROM unnest($1::text[], $2::text[], $3::text[], \
             $4::bool[], $5::text[]) AS t(s, n, c, a, p) \
             ON CONFLICT (sku) DO UPDATE SET name = excluded.name, category = excluded.category, \
             active = excluded.active, prices = excluded.prices, version = excluded.version, \
             updated_at = now()",
            &[&sku, &name, &category, &active, &prices, &outcome.version],
        )
        .await?;
        tx.execute(
            "UPDATE o2c_catalog.meta SET version = $1",
            &[&outcome.version],
        )
        .await?;
    }
    tx.commit().await?;
    if outcome.changed >= ANALYZE_AFTER {
        // Fresh statistics, so a delta's `version > V` is planned as the
        // few rows it is, not as a third of the table.
        client.batch_execute("ANALYZE o2c_catalog.products").await?;
    }
    tracing::info!(
        version = outcome.version,
        changed = outcome.changed,
        unchanged = outcome.unchanged,
        "catalog import applied"
    );
    Ok(outcome)
}
