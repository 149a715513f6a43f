//! The local catalog cache, kept in sled: a cache of the cloud's catalog
//! and of this store's stock, rebuildable from the cloud, so it lives
//! outside SQLite; nothing that must never be lost is kept here. Lookups go
//! to sled (bounded page cache), so a large catalog is never held in memory.
//!
//! Trees: `products` (SKU → `o2c_protocol::catalog::Product` JSON),
//! `stock` (SKU → `StockLevel` JSON), `meta` (versions, the price table,
//! walk markers) and one staging tree per kind (see [`apply`]).
//!
//! The cloud feeds it through [`pull`] (the down-sync task); [`check`]
//! reserves a ship-to-home sale's stock in the cloud at capture;
//! `o2c-agent catalog import FILE.jsonl` bootstraps a box that has never
//! been online, one product per line, either the cloud's import format or
//! the older `{"sku","name","price_minor","currency","category","stock_on_hand"}`.
//!
//! Capture does not look prices up in sled: [`Catalog::price`] reads a
//! compact in-memory [`Prices`] table, loaded when the catalog opens and
//! replaced after each change. `GET /v1/products/{sku}` reads sled.

mod apply;
pub mod check;
mod prices;
pub mod pull;

pub use apply::Kind;
pub use prices::{Prices, PricesError};

use std::io::BufRead;
use std::path::Path;
use std::sync::{Arc, RwLock};

use o2c_protocol::Currency;
use o2c_protocol::catalog::{CatalogVersion, Price, Product, StockLevel};
use serde::Deserialize;

/// Why the catalog failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// sled failed (including "the catalog is in use by a running agent").
    #[error("catalog store: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value is not what its tree holds.
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

/// The line format of agents before the cloud catalog (issue 15).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyLine {
    sku: String,
    name: String,
    price_minor: i64,
    currency: Currency,
    category: String,
    stock_on_hand: i64,
}

impl LegacyLine {
    fn into_parts(self) -> (Product, StockLevel) {
        let product = Product {
            sku: self.sku.clone(),
            name: self.name,
            category: Some(self.category),
            active: true,
            prices: vec![Price {
                currency: self.currency,
                minor: self.price_minor,
                effective_from: None,
            }],
        };
        let stock = StockLevel {
            sku: self.sku,
            on_hand: self.stock_on_hand,
            reserved: 0,
        };
        (product, stock)
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
    /// The live products tree (a snapshot pull swaps in a new one).
    products: Arc<RwLock<sled::Tree>>,
    stock: sled::Tree,
    /// Versions ([`Kind::version_key`]), the [`PRICES_KEY`] table of the
    /// last change that completed, and walk markers.
    meta: sled::Tree,
    /// The price table in memory, swapped whole by each change.
    prices: Arc<RwLock<Arc<Prices>>>,
    /// What the last pulls did.
    status: pull::StatusCell,
    /// The table in memory is newer than the stored one.
    prices_unsaved: Arc<std::sync::atomic::AtomicBool>,
    /// The catalog version held, for capture without a sled read
    /// (`u64::MAX`: none yet); set at open and by each commit.
    version_held: Arc<std::sync::atomic::AtomicU64>,
    /// Fault injection for the crash test: abort the process after the
    /// first batch of applying a committed walk ([`FAULT_ABORT_MID_APPLY`]).
    abort_mid_apply: bool,
}

/// Set to `1`, the agent aborts (as a kill -9 would stop it) part-way
/// through applying a committed catalog pull: a restart must finish it.
/// Tests only (`tests/tests/catalog_crash.rs`).
pub const FAULT_ABORT_MID_APPLY: &str = "O2C_AGENT_FAULT_ABORT_MID_CATALOG_APPLY";

const PRICES_KEY: &[u8] = b"prices";

/// How long [`Catalog::open`] waits for sled's file lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether `e` is sled's "could not acquire lock" (another handle, maybe
/// one still shutting down, holds the catalog). sled 0.34 reports it as an
/// I/O error of kind `Other` wrapping the `WouldBlock` of `flock`.
fn is_lock_held(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

fn corrupt(key: &[u8], e: impl ToString) -> CatalogError {
    CatalogError::Corrupt {
        sku: String::from_utf8_lossy(key).into_owned(),
        message: e.to_string(),
    }
}

/// A stored product: the cloud's format, or an older agent's line.
fn decode_product(key: &[u8], bytes: &[u8]) -> Result<Product, CatalogError> {
    match serde_json::from_slice::<Product>(bytes) {
        Ok(p) => Ok(p),
        Err(e) => serde_json::from_slice::<LegacyLine>(bytes)
            .map(|l| l.into_parts().0)
            .map_err(|_| corrupt(key, e)),
    }
}

fn unix_seconds(t: time::OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

impl Catalog {
    /// Opens (creating) the catalog at `dir`, with a page cache of
    /// `cache_bytes`, and finishes a change a crash interrupted (see
    /// [`apply`]).
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
        let meta = db.open_tree("meta")?;
        let products = db.open_tree(apply::live_products_name(&meta)?)?;
        let stock = db.open_tree("stock")?;
        let mut catalog = Catalog {
            db,
            products: Arc::new(RwLock::new(products)),
            stock,
            meta,
            prices: Arc::default(),
            status: pull::StatusCell::default(),
            prices_unsaved: Arc::default(),
            version_held: Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX)),
            abort_mid_apply: false,
        };
        let rebuilt = catalog.recover()?;
        let prices = if rebuilt {
            catalog.store_prices()?
        } else {
            catalog.load_prices()?
        };
        catalog.prices = Arc::new(RwLock::new(Arc::new(prices)));
        catalog.hold_version()?;
        Ok(catalog)
    }

    /// Arms [`FAULT_ABORT_MID_APPLY`] (call before cloning the handle).
    pub fn inject_abort_mid_apply(&mut self) {
        self.abort_mid_apply = true;
    }

    /// The live products tree.
    fn live_products(&self) -> sled::Tree {
        match self.products.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_live_products(&self, tree: sled::Tree) {
        match self.products.write() {
            Ok(mut t) => *t = tree,
            Err(poisoned) => *poisoned.into_inner() = tree,
        }
    }

    /// Looks a SKU up.
    pub fn get(&self, sku: &str) -> Result<Option<Product>, CatalogError> {
        self.live_products()
            .get(sku.as_bytes())?
            .map(|bytes| decode_product(sku.as_bytes(), &bytes))
            .transpose()
    }

    /// A SKU's stock in the cloud's books, as last pulled.
    pub fn stock(&self, sku: &str) -> Result<Option<StockLevel>, CatalogError> {
        self.stock
            .get(sku.as_bytes())?
            .map(|b| serde_json::from_slice(&b).map_err(|e| corrupt(sku.as_bytes(), e)))
            .transpose()
    }

    /// The version of `kind` applied; `None` before the first pull.
    pub fn version(&self, kind: Kind) -> Result<Option<CatalogVersion>, CatalogError> {
        Ok(self.meta.get(kind.version_key())?.and_then(|v| {
            <[u8; 8]>::try_from(v.as_ref())
                .ok()
                .map(|b| CatalogVersion(u64::from_be_bytes(b)))
        }))
    }

    /// The catalog version held, from memory (the capture path's read).
    pub fn catalog_version(&self) -> Option<u64> {
        let v = self.version_held.load(std::sync::atomic::Ordering::Acquire);
        (v != u64::MAX).then_some(v)
    }

    /// Reads the stored catalog version into memory.
    fn hold_version(&self) -> Result<(), CatalogError> {
        let v = self.version(Kind::Catalog)?.map_or(u64::MAX, |v| v.0);
        self.version_held
            .store(v, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// A SKU's price in force at `at`, preferring `currency` (minor units
    /// and its currency), from the in-memory table. Inactive SKUs have none.
    pub fn price(
        &self,
        sku: &str,
        currency: Currency,
        at: time::OffsetDateTime,
    ) -> Option<(i64, Currency)> {
        self.table().get(sku, currency, unix_seconds(at))
    }

    /// [`Catalog::price`] and the product's category (capture copies it
    /// onto the order line), from one look at the table.
    pub fn price_and_category(
        &self,
        sku: &str,
        currency: Currency,
        at: time::OffsetDateTime,
    ) -> Option<(i64, Currency, Option<String>)> {
        let table = self.table();
        let (minor, currency) = table.get(sku, currency, unix_seconds(at))?;
        Some((minor, currency, table.category(sku).map(str::to_owned)))
    }

    /// The current price table.
    pub fn table(&self) -> Arc<Prices> {
        match self.prices.read() {
            Ok(t) => Arc::clone(&t),
            // A writer panicked mid-swap; the Arc inside is still whole.
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The stored price table. Each change stores it whole, so opening
    /// the catalog reads one value instead of walking every product
    /// through sled's cache (which left about 14 MiB more resident for
    /// 50,000 SKUs). A catalog without a readable one (a change that did
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
        self.store_prices()
    }

    /// Builds the price table from the products and stores it.
    fn store_prices(&self) -> Result<Prices, CatalogError> {
        let prices = self.build_prices()?;
        self.meta.insert(PRICES_KEY, prices.encode()?)?;
        self.db.flush()?;
        Ok(prices)
    }

    /// Reads every active product's prices.
    fn build_prices(&self) -> Result<Prices, CatalogError> {
        let mut prices = Prices::default();
        for item in self.live_products().iter() {
            let (key, value) = item?;
            prices.push_product(&decode_product(&key, &value)?)?;
        }
        Ok(prices.finish())
    }

    /// Builds, stores and swaps in the price table (after a change).
    fn swap_prices(&self) -> Result<(), CatalogError> {
        self.set_prices(self.store_prices()?);
        Ok(())
    }

    fn set_prices(&self, prices: Prices) {
        let prices = Arc::new(prices);
        match self.prices.write() {
            Ok(mut t) => *t = prices,
            Err(poisoned) => *poisoned.into_inner() = prices,
        }
    }

    /// After a delta: the table in memory gets `changed` merged in (no
    /// read of the whole catalog); the stored copy is written at shutdown
    /// ([`Catalog::flush`]), or rebuilt at the next open after a crash.
    fn merge_prices(&self, changed: &[Product]) -> Result<(), CatalogError> {
        let merged = self.table().merged(changed)?;
        self.set_prices(merged);
        self.prices_unsaved
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Changes the pull status.
    pub(crate) fn status_mut(&self, f: impl FnOnce(&mut pull::PullStatus)) {
        f(&mut self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    /// The pull status, with the versions held now (O(1): no walk of the
    /// products, which a status poll every few ms would make a load).
    pub fn status(&self) -> Result<pull::PullStatus, CatalogError> {
        let mut s = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        s.version = self.version(Kind::Catalog)?.map(|v| v.0);
        s.stock_version = self.version(Kind::Stock)?.map(|v| v.0);
        s.age_secs = s
            .last_success
            .map(|t| (time::OffsetDateTime::from(o2c_runtime::clock::wall()) - t).whole_seconds());
        Ok(s)
    }

    /// Every product, in SKU order (diagnostics, tests).
    pub fn products(&self) -> impl Iterator<Item = Result<Product, CatalogError>> + '_ {
        self.live_products().iter().map(|item| {
            let (key, value) = item?;
            decode_product(&key, &value)
        })
    }

    /// Number of products.
    pub fn len(&self) -> usize {
        self.live_products().len()
    }

    /// Whether the catalog is empty.
    pub fn is_empty(&self) -> bool {
        self.live_products().is_empty()
    }

    /// Upserts products from JSON lines (the cloud's import format or the
    /// older agent format); blank lines are skipped, bad lines are reported
    /// and skipped. Then stores the price table. Flushes before returning.
    /// The catalog version is left as it is: the next pull brings the
    /// cloud's.
    pub fn import_jsonl(&self, input: impl BufRead) -> Result<ImportReport, CatalogError> {
        // Until this import completes, no price table: one that stops
        // half-way leaves the next open to build it from what is there.
        self.meta.remove(PRICES_KEY)?;
        let mut report = ImportReport::default();
        let live = self.live_products();
        let (mut products, mut stock) = (sled::Batch::default(), sled::Batch::default());
        let mut in_batch = 0;
        for (i, line) in input.lines().enumerate() {
            let line_no = i as u64 + 1;
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let parsed = match serde_json::from_str::<Product>(&line) {
                Ok(p) => Ok((p, None)),
                Err(e) => serde_json::from_str::<LegacyLine>(&line)
                    .map(|l| {
                        let (p, s) = l.into_parts();
                        (p, Some(s))
                    })
                    .map_err(|_| {
                        o2c_protocol::validate::redact_card_numbers(&e.to_string()).into_owned()
                    }),
            };
            let (mut product, level) = match parsed {
                Ok(p) => p,
                Err(e) => {
                    report.errors.push((line_no, e));
                    continue;
                }
            };
            if let Some(problem) = product.normalize().into_iter().next() {
                report.errors.push((line_no, problem.to_string()));
                continue;
            }
            let value =
                serde_json::to_vec(&product).map_err(|e| corrupt(product.sku.as_bytes(), e))?;
            products.insert(product.sku.as_bytes(), value);
            if let Some(level) = level {
                let value =
                    serde_json::to_vec(&level).map_err(|e| corrupt(level.sku.as_bytes(), e))?;
                stock.insert(level.sku.as_bytes(), value);
            }
            in_batch += 1;
            report.imported += 1;
            if in_batch == 1000 {
                live.apply_batch(std::mem::take(&mut products))?;
                self.stock.apply_batch(std::mem::take(&mut stock))?;
                in_batch = 0;
            }
        }
        live.apply_batch(products)?;
        self.stock.apply_batch(stock)?;
        self.swap_prices()?;
        Ok(report)
    }

    /// Flushes to disk (at shutdown), with the price table if a delta
    /// changed it since it was last stored.
    pub fn flush(&self) -> Result<(), CatalogError> {
        if self
            .prices_unsaved
            .swap(false, std::sync::atomic::Ordering::AcqRel)
        {
            self.meta.insert(PRICES_KEY, self.table().encode()?)?;
        }
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
