//! The local catalog cache: one sled tree keyed by SKU, values are the
//! product's JSON. It is a cache, rebuildable from the cloud, so it lives
//! outside SQLite; nothing that must never be lost is kept here. Lookups go
//! to sled (bounded page cache), so a large catalog is never held in memory.
//!
//! `o2c-agent catalog import FILE.jsonl` loads one product per line:
//! `{"sku","name","price_minor","currency","category","stock_on_hand"}`.

use std::io::BufRead;
use std::path::Path;

use o2c_protocol::Currency;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Why the catalog failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// sled failed (including "the catalog is in use by a running agent").
    #[error("catalog store: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value is not a product.
    #[error("catalog entry {sku:?} is corrupt: {message}")]
    Corrupt {
        /// The key.
        sku: String,
        /// What was wrong.
        message: String,
    },
    /// Reading the import file failed.
    #[error("reading the import file: {0}")]
    Io(#[from] std::io::Error),
}

/// One catalog entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// Stock-keeping unit, 1–64 characters.
    #[schema(example = "SKU-1")]
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Unit price, minor units.
    pub price_minor: i64,
    /// ISO 4217 code of the price.
    #[schema(example = "CAD")]
    pub currency: String,
    /// Category.
    pub category: String,
    /// Units on hand in this store.
    pub stock_on_hand: i64,
}

impl Product {
    fn check(&self) -> Result<(), String> {
        if self.sku.is_empty() || self.sku.len() > o2c_protocol::validate::MAX_SKU_LEN {
            return Err("sku must be 1-64 bytes".into());
        }
        if self.name.is_empty() {
            return Err("name must not be empty".into());
        }
        if self.price_minor < 0 {
            return Err("price_minor must be >= 0".into());
        }
        Currency::from_code(&self.currency).map_err(|e| format!("currency: {e}"))?;
        Ok(())
    }
}

/// The outcome of an import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Products written.
    pub imported: u64,
    /// Bad lines: 1-based line number and the reason.
    pub errors: Vec<(u64, String)>,
}

/// Handle to the catalog; clone it freely.
#[derive(Debug, Clone)]
pub struct Catalog {
    db: sled::Db,
    products: sled::Tree,
}

impl Catalog {
    /// Opens (creating) the catalog at `dir`, with a page cache of
    /// `cache_bytes`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Catalog, CatalogError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::LowSpace)
            .open()?;
        let products = db.open_tree("products")?;
        Ok(Catalog { db, products })
    }

    /// Looks a SKU up.
    pub fn get(&self, sku: &str) -> Result<Option<Product>, CatalogError> {
        let Some(bytes) = self.products.get(sku.as_bytes())? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CatalogError::Corrupt {
                sku: sku.to_owned(),
                message: e.to_string(),
            })
    }

    /// Number of products.
    pub fn len(&self) -> usize {
        self.products.len()
    }

    /// Whether the catalog is empty.
    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    /// Upserts products from JSON lines; blank lines are skipped, bad lines
    /// are reported and skipped. Flushes before returning.
    pub fn import_jsonl(&self, input: impl BufRead) -> Result<ImportReport, CatalogError> {
        let mut report = ImportReport::default();
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for (i, line) in input.lines().enumerate() {
            let line_no = i as u64 + 1;
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let product = match serde_json::from_str::<Product>(&line) {
                Ok(p) => p,
                Err(e) => {
                    report.errors.push((line_no, e.to_string()));
                    continue;
                }
            };
            if let Err(e) = product.check() {
                report.errors.push((line_no, e));
                continue;
            }
            let value = serde_json::to_vec(&product).map_err(|e| CatalogError::Corrupt {
                sku: product.sku.clone(),
                message: e.to_string(),
            })?;
            batch.insert(product.sku.as_bytes(), value);
            in_batch += 1;
            report.imported += 1;
            if in_batch == 1000 {
                self.products.apply_batch(std::mem::take(&mut batch))?;
                in_batch = 0;
            }
        }
        self.products.apply_batch(batch)?;
        self.db.flush()?;
        Ok(report)
    }

    /// Flushes to disk (at shutdown).
    pub fn flush(&self) -> Result<(), CatalogError> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_reports_bad_lines_and_serves_lookups() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&dir.path().join("c"), 1 << 20).unwrap();
        let input = concat!(
            r#"{"sku":"SKU-1","name":"Mug","price_minor":1499,"currency":"CAD","category":"home","stock_on_hand":7}"#,
            "\n\n",
            "not json\n",
            r#"{"sku":"SKU-2","name":"Pen","price_minor":-1,"currency":"CAD","category":"office","stock_on_hand":1}"#,
            "\n",
            r#"{"sku":"SKU-3","name":"Cup","price_minor":5,"currency":"ZZZ","category":"home","stock_on_hand":1}"#,
            "\n",
            r#"{"sku":"SKU-4","name":"Box","price_minor":5,"currency":"CAD","category":"home","stock_on_hand":1,"x":1}"#,
            "\n",
        );
        let report = cat.import_jsonl(input.as_bytes()).unwrap();
        assert_eq!(report.imported, 1);
        let lines: Vec<u64> = report.errors.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [3, 4, 5, 6]);
        let p = cat.get("SKU-1").unwrap().unwrap();
        assert_eq!((p.price_minor, p.stock_on_hand), (1499, 7));
        assert!(cat.get("SKU-2").unwrap().is_none());
        assert_eq!(cat.len(), 1);
        // Re-import upserts.
        let again = r#"{"sku":"SKU-1","name":"Mug","price_minor":1599,"currency":"CAD","category":"home","stock_on_hand":6}"#;
        cat.import_jsonl(again.as_bytes()).unwrap();
        assert_eq!(cat.get("SKU-1").unwrap().unwrap().price_minor, 1599);
    }
}
