//! The local catalog cache: one sled tree keyed by SKU, values are the
//! product's JSON. It is a cache, rebuildable from the cloud, so it lives
//! outside SQLite; nothing that must never be lost is kept here. Lookups go
//! to sled (bounded page cache), so a large catalog is never held in memory.
//!
//! `o2c-agent catalog import FILE.jsonl` loads one product per line:
//! `{"sku","name","price_minor","currency","category","stock_on_hand"}`.
//!
//! Capture does not look prices up in sled: [`Catalog::price`] reads a
//! compact in-memory [`Prices`] table, loaded when the catalog opens and
//! replaced by each import. `GET /v1/products` reads sled.

mod prices;

pub use prices::{Prices, PricesError};

use std::io::BufRead;
use std::path::Path;
use std::sync::{Arc, RwLock};

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
    /// The price table could not hold the catalog.
    #[error("building the price table: {0}")]
    Prices(#[from] PricesError),
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
    /// One key, [`PRICES_KEY`]: the [`Prices`] table of the last import
    /// that completed.
    meta: sled::Tree,
    /// That table in memory, swapped whole by an import.
    prices: Arc<RwLock<Arc<Prices>>>,
}

const PRICES_KEY: &[u8] = b"prices";

/// How long [`Catalog::open`] waits for sled's file lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether `e` is sled's "could not acquire lock" (another handle, maybe
/// one still shutting down, holds the catalog). sled 0.34 reports it as an
/// I/O error of kind `Other` wrapping the `WouldBlock` of `flock`.
fn is_lock_held(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

impl Catalog {
    /// Opens (creating) the catalog at `dir`, with a page cache of
    /// `cache_bytes`.
    ///
    /// sled holds a file lock until its background flusher has stopped,
    /// which is a little after the last handle is dropped (or after a
    /// previous agent process exits). A lock held that way is waited for,
    /// up to [`LOCK_WAIT`]; a lock still held after that (another process
    /// has the catalog open) is an error.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Catalog, CatalogError> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::LowSpace);
        let deadline = o2c_runtime::clock::now() + LOCK_WAIT;
        let db = loop {
            match config.open() {
                Err(e) if is_lock_held(&e) && o2c_runtime::clock::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other?,
            }
        };
        let products = db.open_tree("products")?;
        let meta = db.open_tree("meta")?;
        let mut catalog = Catalog {
            db,
            products,
            meta,
            prices: Arc::default(),
        };
        let prices = catalog.load_prices()?;
        catalog.prices = Arc::new(RwLock::new(Arc::new(prices)));
        Ok(catalog)
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

    /// A SKU's price (minor units, currency), from the in-memory table.
    pub fn price(&self, sku: &str) -> Option<(i64, Currency)> {
        self.table().get(sku)
    }

    /// The current price table.
    pub fn table(&self) -> Arc<Prices> {
        match self.prices.read() {
            Ok(t) => Arc::clone(&t),
            // A writer panicked mid-swap; the Arc inside is still whole.
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The stored price table. Each import stores it whole, so opening
    /// the catalog reads one value instead of walking every product
    /// through sled's cache (which left about 14 MiB more resident for
    /// 50,000 SKUs). A catalog without a readable one (an import that did
    /// not finish, one made by an older agent, a damaged value) gets it
    /// built again from the products and stored: it is derived data.
    fn load_prices(&self) -> Result<Prices, CatalogError> {
        if let Some(bytes) = self.meta.get(PRICES_KEY)? {
            match Prices::decode(&bytes) {
                Ok(prices) => return Ok(prices),
                Err(e) => {
                    tracing::warn!(error = %e, "stored price table unreadable; rebuilding it")
                }
            }
        }
        let prices = self.build_prices()?;
        self.meta.insert(PRICES_KEY, prices.encode()?)?;
        self.db.flush()?;
        Ok(prices)
    }

    /// Reads every product's price.
    fn build_prices(&self) -> Result<Prices, CatalogError> {
        #[derive(Deserialize)]
        struct Priced {
            price_minor: i64,
            currency: String,
        }
        let mut prices = Prices::default();
        for item in self.products.iter() {
            let (key, value) = item?;
            let sku = String::from_utf8_lossy(&key);
            let corrupt = |message: String| CatalogError::Corrupt {
                sku: sku.to_string(),
                message,
            };
            let p: Priced = serde_json::from_slice(&value).map_err(|e| corrupt(e.to_string()))?;
            let currency = Currency::from_code(&p.currency).map_err(|e| corrupt(e.to_string()))?;
            prices.push(&sku, p.price_minor, currency)?;
        }
        Ok(prices.finish())
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
    /// are reported and skipped. Then stores the price table. Flushes
    /// before returning.
    pub fn import_jsonl(&self, input: impl BufRead) -> Result<ImportReport, CatalogError> {
        // Until this import completes, no price table: one that stops
        // half-way leaves the next open to build it from what is there.
        self.meta.remove(PRICES_KEY)?;
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
        let prices = self.build_prices()?;
        self.meta.insert(PRICES_KEY, prices.encode()?)?;
        self.db.flush()?;
        let prices = Arc::new(prices);
        match self.prices.write() {
            Ok(mut t) => *t = prices,
            Err(poisoned) => *poisoned.into_inner() = prices,
        }
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
    fn open_waits_for_a_lock_that_is_being_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let first = Catalog::open(&path, 1 << 20).unwrap();
        // Another handle keeps the lock a while (as sled's flusher does
        // after a drop, or an agent still exiting), well within LOCK_WAIT.
        let holder = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            drop(first);
        });
        let second = Catalog::open(&path, 1 << 20);
        holder.join().unwrap();
        assert!(second.is_ok(), "{:?}", second.err());
    }

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
        assert_eq!(cat.table().len(), 1);
        assert_eq!(
            cat.price("SKU-1").map(|(m, c)| (m, c.code())),
            Some((1499, "CAD"))
        );
        assert!(cat.get("SKU-2").unwrap().is_none());
        assert_eq!(cat.len(), 1);
        // Re-import upserts.
        let again = r#"{"sku":"SKU-1","name":"Mug","price_minor":1599,"currency":"CAD","category":"home","stock_on_hand":6}"#;
        cat.import_jsonl(again.as_bytes()).unwrap();
        assert_eq!(cat.get("SKU-1").unwrap().unwrap().price_minor, 1599);
        assert_eq!(cat.price("SKU-1").unwrap().0, 1599);
        // Reopened, it reads the stored table; without one (an import that
        // stopped half-way) it builds it and keeps it.
        cat.meta.remove(PRICES_KEY).unwrap();
        drop(cat);
        let cat = Catalog::open(&dir.path().join("c"), 1 << 20).unwrap();
        assert_eq!(cat.price("SKU-1").unwrap().0, 1599);
        assert!(cat.meta.get(PRICES_KEY).unwrap().is_some());
        drop(cat);
        let cat = Catalog::open(&dir.path().join("c"), 1 << 20).unwrap();
        assert_eq!(cat.price("SKU-1").unwrap().0, 1599);
        // A damaged stored table is rebuilt, not fatal.
        cat.meta.insert(PRICES_KEY, &b"not a table"[..]).unwrap();
        drop(cat);
        let cat = Catalog::open(&dir.path().join("c"), 1 << 20).unwrap();
        assert_eq!(cat.price("SKU-1").unwrap().0, 1599);
        assert!(Prices::decode(&cat.meta.get(PRICES_KEY).unwrap().unwrap()).is_ok());
    }
}
