//! Applying a pull atomically. A pull is a walk of pages (a snapshot or a
//! delta); its pages go first to a staging tree, never to the live one:
//!
//! 1. `begin`: clear the kind's staging tree, write the walk marker.
//! 2. `stage`: each checked page into staging (one sled batch each).
//! 3. `commit`: one write of the commit marker `{version, full}`, flushed.
//!    This is the commit point.
//! 4. copy staging into the live tree in batches (a snapshot also removes
//!    live entries it does not list), write the version, drop the markers
//!    and staging, flush.
//!
//! A crash (kill -9, power loss) before 3 leaves the previous version: at
//! open, the staging tree is cleared. A crash after 3 leaves the new one:
//! at open, step 4 runs again (it is idempotent). So after a restart the
//! catalog is exactly version N or N+1. Lookups are served throughout; while
//! step 4 runs, a lookup may see one SKU at N+1 and another at N, each
//! product whole.

use o2c_protocol::catalog::{CatalogVersion, Product, StockLevel};
use serde::{Deserialize, Serialize};

use super::{Catalog, CatalogError, corrupt};

/// What a walk pulls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Products and prices.
    Catalog,
    /// This store's stock.
    Stock,
}

impl Kind {
    pub(crate) fn version_key(self) -> &'static [u8] {
        match self {
            Kind::Catalog => b"version:catalog",
            Kind::Stock => b"version:stock",
        }
    }
    fn walk_key(self) -> &'static [u8] {
        match self {
            Kind::Catalog => b"walk:catalog",
            Kind::Stock => b"walk:stock",
        }
    }
    fn commit_key(self) -> &'static [u8] {
        match self {
            Kind::Catalog => b"commit:catalog",
            Kind::Stock => b"commit:stock",
        }
    }
    fn staging(self) -> &'static str {
        match self {
            Kind::Catalog => "staging:catalog",
            Kind::Stock => "staging:stock",
        }
    }
    /// Its name in logs and `/v1/catalog/status`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Catalog => "catalog",
            Kind::Stock => "stock",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Commit {
    version: u64,
    full: bool,
}

/// Copies per batch in step 4.
const APPLY_BATCH: usize = 2000;

impl Catalog {
    fn live(&self, kind: Kind) -> &sled::Tree {
        match kind {
            Kind::Catalog => &self.products,
            Kind::Stock => &self.stock,
        }
    }

    fn staging_tree(&self, kind: Kind) -> Result<sled::Tree, CatalogError> {
        Ok(self.db.open_tree(kind.staging())?)
    }

    /// At open: finishes a committed walk, drops an uncommitted one. True
    /// if the catalog changed (its price table must be rebuilt).
    pub(super) fn recover(&self) -> Result<bool, CatalogError> {
        let mut changed = false;
        for kind in [Kind::Catalog, Kind::Stock] {
            if let Some(commit) = self.meta.get(kind.commit_key())? {
                let c: Commit =
                    serde_json::from_slice(&commit).map_err(|e| corrupt(kind.commit_key(), e))?;
                tracing::info!(
                    kind = kind.name(),
                    version = c.version,
                    "finishing a catalog change a restart interrupted"
                );
                self.finish(kind, &c)?;
                changed |= kind == Kind::Catalog;
            } else if self.meta.get(kind.walk_key())?.is_some() {
                tracing::info!(
                    kind = kind.name(),
                    "dropping a catalog pull a restart interrupted"
                );
                self.staging_tree(kind)?.clear()?;
                self.meta.remove(kind.walk_key())?;
            }
        }
        self.db.flush()?;
        Ok(changed)
    }

    /// Step 1.
    pub(crate) fn begin(&self, kind: Kind) -> Result<(), CatalogError> {
        self.staging_tree(kind)?.clear()?;
        self.meta.insert(kind.walk_key(), &[][..])?;
        Ok(())
    }

    /// Step 2, for products.
    pub(crate) fn stage_products(&self, products: &[Product]) -> Result<(), CatalogError> {
        let mut batch = sled::Batch::default();
        for p in products {
            let v = serde_json::to_vec(p).map_err(|e| corrupt(p.sku.as_bytes(), e))?;
            batch.insert(p.sku.as_bytes(), v);
        }
        self.staging_tree(Kind::Catalog)?.apply_batch(batch)?;
        Ok(())
    }

    /// Step 2, for stock levels.
    pub(crate) fn stage_stock(&self, levels: &[StockLevel]) -> Result<(), CatalogError> {
        let mut batch = sled::Batch::default();
        for l in levels {
            let v = serde_json::to_vec(l).map_err(|e| corrupt(l.sku.as_bytes(), e))?;
            batch.insert(l.sku.as_bytes(), v);
        }
        self.staging_tree(Kind::Stock)?.apply_batch(batch)?;
        Ok(())
    }

    /// Steps 3 and 4: commits the staged walk as `version`.
    pub(crate) fn commit(
        &self,
        kind: Kind,
        version: CatalogVersion,
        full: bool,
    ) -> Result<(), CatalogError> {
        let c = Commit {
            version: version.0,
            full,
        };
        let bytes = serde_json::to_vec(&c).map_err(|e| corrupt(kind.commit_key(), e))?;
        // Everything staged is on disk before the commit marker is.
        self.db.flush()?;
        self.meta.insert(kind.commit_key(), bytes)?;
        self.db.flush()?;
        self.finish(kind, &c)?;
        if kind == Kind::Catalog {
            self.swap_prices()?;
        }
        Ok(())
    }

    /// Step 4.
    fn finish(&self, kind: Kind, c: &Commit) -> Result<(), CatalogError> {
        let staging = self.staging_tree(kind)?;
        let live = self.live(kind);
        if kind == Kind::Catalog {
            // The stored price table is stale from here on; an open that
            // finds none builds it from the products.
            self.meta.remove(super::PRICES_KEY)?;
        }
        if c.full {
            // Entries the snapshot does not list are gone.
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for item in live.iter().keys() {
                let key = item?;
                if !staging.contains_key(&key)? {
                    batch.remove(key);
                    n += 1;
                    if n == APPLY_BATCH {
                        live.apply_batch(std::mem::take(&mut batch))?;
                        n = 0;
                    }
                }
            }
            live.apply_batch(batch)?;
        }
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for item in staging.iter() {
            let (k, v) = item?;
            batch.insert(k, v);
            n += 1;
            if n == APPLY_BATCH {
                live.apply_batch(std::mem::take(&mut batch))?;
                n = 0;
                if self.abort_mid_apply {
                    tracing::error!("fault injection: aborting part-way through a catalog apply");
                    let _ = self.db.flush();
                    std::process::abort();
                }
            }
        }
        live.apply_batch(batch)?;
        self.meta
            .insert(kind.version_key(), &c.version.to_be_bytes()[..])?;
        self.meta.remove(kind.walk_key())?;
        self.meta.remove(kind.commit_key())?;
        self.db.flush()?;
        staging.clear()?;
        Ok(())
    }

    /// Drops a walk that failed part-way (a refused page, a network error).
    pub(crate) fn abandon(&self, kind: Kind) -> Result<(), CatalogError> {
        self.staging_tree(kind)?.clear()?;
        self.meta.remove(kind.walk_key())?;
        Ok(())
    }
}
