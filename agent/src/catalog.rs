//! The local catalog cache, kept in sled: a cache of the cloud's catalog
//! and of this store's stock, rebuildable from the cloud, so it lives
//! outside SQLite; nothing that must never be lost is kept here. Lookups go
//! to sled (bounded page cache), so a large catalog is never held in memory;
//! a walk or an import drains what its writes replaced every 1,000 writes
//! (`reclaim`), so that garbage does not build up either.
//!
//! Trees: `products` (SKU → `o2c_protocol::catalog::Product` JSON),
//! `stock` (SKU → `StockLevel` JSON), `meta` (versions and walk markers)
//! and one staging tree per kind (see [`apply`]).
//!
//! The cloud feeds it through [`pull`] (the down-sync task, whose CPU work
//! runs on the catalog thread, [`worker`], below capture's priority); [`check`]
//! reserves a ship-to-home sale's stock in the cloud at capture;
//! `o2c-agent catalog import FILE.jsonl` bootstraps a box that has never
//! been online, one product per line, either the cloud's import format or
//! the older `{"sku","name","price_minor","currency","category","stock_on_hand"}`.
//!
//! Capture looks prices up through a bounded [`PriceCache`] in front of
//! the products tree ([`Catalog::price`]): the SKUs a store sells stay in
//! memory, the rest of a large catalog stays on disk. Each change to the
//! products makes the cached prices stale. `GET /v1/products/{sku}` reads
//! sled.

mod apply;
pub mod check;
pub mod pace;
mod prices;
pub mod pull;
pub mod worker;

pub use apply::Kind;
pub use prices::{PriceCache, SkuPrices};

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
    /// Versions ([`Kind::version_key`]) and walk markers.
    meta: sled::Tree,
    /// The capture path's prices (bounded; made stale by each change).
    prices: Arc<PriceCache>,
    /// When the tills last looked a price up (the pull yields to them).
    pace: Arc<pace::Pace>,
    /// What the last pulls did.
    status: pull::StatusCell,
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

/// `meta` key of the whole price table agents before the price cache kept
/// (about 50 MiB for a million SKUs): removed at open, never read.
const LEGACY_PRICES_KEY: &[u8] = b"prices";

/// SKUs whose prices capture keeps in memory, unless configured
/// (`[catalog] price_cache_skus`): about 10 MiB when full, more than the
/// distinct SKUs most stores sell in a month.
pub const DEFAULT_PRICE_CACHE_SKUS: usize = 65_536;

/// Writes between two [`reclaim`]s.
const RECLAIM_EVERY: usize = 1000;
/// Collection rounds per [`reclaim`]: each frees up to 8 bags of 64
/// deferred frees, so 16 cover 1,000 writes that defer up to 8 each.
const RECLAIM_ROUNDS: usize = 16;

/// Frees what sled's writes replaced. sled frees a replaced node through
/// crossbeam-epoch's default collector, which reclaims at most 8 bags of
/// garbage per 128 pins of a thread, and only as its epoch advances:
/// through a long stream of single writes on one thread, what the writes
/// replaced builds up before it is freed. Draining it every 1,000 writes
/// took the agent's peak RSS in a full sync of 1,000,000 SKUs from
/// 59.7-72.6 MiB to 53.1-59.9 MiB (BENCHMARKS.md, "Issue 15, fourth
/// pass"). Each round pins this thread, hands its garbage to the
/// collector and runs what no thread can still reach; nothing is freed
/// early.
fn reclaim() {
    for _ in 0..RECLAIM_ROUNDS {
        crossbeam_epoch::pin().flush();
    }
}

/// After the `written`-th write of a walk or an import: [`reclaim`] every
/// [`RECLAIM_EVERY`] writes.
fn reclaim_after(written: usize) {
    if written.is_multiple_of(RECLAIM_EVERY) {
        reclaim();
    }
}

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

impl Catalog {
    /// Opens (creating) the catalog at `dir`, with a page cache of
    /// `cache_bytes` and the default price cache, and finishes a change a
    /// crash interrupted (see [`apply`]).
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Catalog, CatalogError> {
        Self::open_sized(dir, cache_bytes, DEFAULT_PRICE_CACHE_SKUS)
    }

    /// [`Catalog::open`] with a price cache of `price_cache_skus` SKUs.
    ///
    /// sled holds a file lock until its background flusher has stopped,
    /// which is a little after the last handle is dropped (or after a
    /// previous agent process exits). A lock held that way is waited for,
    /// up to [`LOCK_WAIT`]; a lock still held after that (another process
    /// has the catalog open) is an error.
    pub fn open_sized(
        dir: &Path,
        cache_bytes: u64,
        price_cache_skus: usize,
    ) -> Result<Catalog, CatalogError> {
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
        let catalog = Catalog {
            db,
            products: Arc::new(RwLock::new(products)),
            stock,
            meta,
            prices: Arc::new(PriceCache::new(price_cache_skus)),
            pace: Arc::new(pace::Pace::new(o2c_runtime::clock::now())),
            status: pull::StatusCell::default(),
            version_held: Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX)),
            abort_mid_apply: false,
        };
        catalog.recover()?;
        if catalog.meta.remove(LEGACY_PRICES_KEY)?.is_some() {
            catalog.db.flush()?;
        }
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

    /// Looks a SKU up (a till asking: marks the tills busy, see [`pace`]).
    pub fn get(&self, sku: &str) -> Result<Option<Product>, CatalogError> {
        self.pace.busy(o2c_runtime::clock::now());
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
    /// and its currency), through the price cache. Inactive and unknown
    /// SKUs have none.
    pub fn price(
        &self,
        sku: &str,
        currency: Currency,
        at: time::OffsetDateTime,
    ) -> Result<Option<(i64, Currency)>, CatalogError> {
        Ok(self.prices_of(sku)?.get(currency, at))
    }

    /// [`Catalog::price`] and the product's category (capture copies it
    /// onto the order line), from one lookup.
    pub fn price_and_category(
        &self,
        sku: &str,
        currency: Currency,
        at: time::OffsetDateTime,
    ) -> Result<Option<(i64, Currency, Option<String>)>, CatalogError> {
        let p = self.prices_of(sku)?;
        Ok(p.get(currency, at)
            .map(|(minor, currency)| (minor, currency, p.category().map(str::to_owned))))
    }

    /// A SKU's prices, from the cache or the products tree (a till
    /// selling: marks the tills busy, see [`pace`]).
    fn prices_of(&self, sku: &str) -> Result<Arc<SkuPrices>, CatalogError> {
        self.pace.busy(o2c_runtime::clock::now());
        self.prices.lookup(sku, || self.get(sku))
    }

    /// When the tills last looked a price up.
    pub fn pace(&self) -> &pace::Pace {
        &self.pace
    }

    /// The price cache (tests, diagnostics).
    pub fn price_cache(&self) -> &PriceCache {
        &self.prices
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
    /// and skipped. Then makes the cached prices stale. Flushes before
    /// returning.
    /// The catalog version is left as it is: the next pull brings the
    /// cloud's.
    pub fn import_jsonl(&self, input: impl BufRead) -> Result<ImportReport, CatalogError> {
        let mut report = ImportReport::default();
        let live = self.live_products();
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
            // One write per product: sled holds a batch whole in memory
            // (a large one costs far more than its size), and an import
            // is not atomic anyway.
            live.insert(product.sku.as_bytes(), value)?;
            reclaim_after(report.imported as usize + 1);
            if let Some(level) = level {
                let value =
                    serde_json::to_vec(&level).map_err(|e| corrupt(level.sku.as_bytes(), e))?;
                self.stock.insert(level.sku.as_bytes(), value)?;
            }
            report.imported += 1;
        }
        self.db.flush()?;
        self.prices.invalidate();
        Ok(report)
    }

    /// Flushes to disk (at shutdown).
    pub fn flush(&self) -> Result<(), CatalogError> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
