//! Applying a pull atomically. A pull is a walk of pages (a snapshot or a
//! delta); its pages go first to a staging tree, never to the live one:
//!
//! 1. `begin`: the walk marker names its staging tree: for a catalog
//!    snapshot a fresh tree, `products.gN`; otherwise the kind's staging
//!    tree, cleared.
//! 2. `stage`: each checked page into staging, one write per entry (sled
//!    keeps a batch whole in memory: a page of 5,000 products as one batch
//!    took a million-SKU sync past 1.8 GiB resident; written one by one,
//!    it stays near the page cache's bound).
//! 3. `commit`: one write of the commit marker `{version, full, staging}`,
//!    flushed after everything staged. This is the commit point.
//! 4. A catalog snapshot: one batch on `meta` makes `products.gN` the live
//!    tree and writes the version (no copy; the old tree is dropped by the
//!    next walk or open, never under a reader). Otherwise: staging is
//!    copied into the live tree (a stock snapshot also removes entries it
//!    does not list), then the version, then staging is cleared.
//! 5. A catalog change makes the cached prices stale
//!    ([`super::PriceCache::invalidate`]), after sled has it.
//!
//! A crash (kill -9, power loss) before 3 leaves the previous version: at
//! open, the staging tree is dropped. A crash after 3 leaves the new one:
//! at open, step 4 runs again (it is idempotent). So after a restart the
//! catalog is exactly version N or N+1. Lookups are served throughout; while
//! a delta's step 4 runs, a lookup may see one SKU at N+1 and another at N,
//! each product whole.

use o2c_protocol::catalog::{CatalogVersion, Product, StockLevel};
use serde::{Deserialize, Serialize};

use super::{Catalog, CatalogError, corrupt, reclaim, reclaim_after};

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

/// The walk marker: where the walk stages, and whether it is a snapshot.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Walk {
    pub(super) staging: String,
    full: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Commit {
    version: u64,
    full: bool,
    /// The staging tree (absent in markers of agents before generations).
    #[serde(default)]
    staging: Option<String>,
}

/// `meta` key: the name of the live products tree.
pub(super) const LIVE_PRODUCTS: &[u8] = b"products_tree";
/// `meta` key: the last generation number given to a snapshot tree.
const GENERATION: &[u8] = b"generation";
/// Snapshot trees are `products.g1`, `products.g2`, ...
const GENERATION_PREFIX: &str = "products.g";

/// The fault injection aborts step 4 after this many copies.
const ABORT_AFTER: usize = 2000;

/// The live products tree's name in `meta` (`products` until a snapshot).
pub(super) fn live_products_name(meta: &sled::Tree) -> Result<String, CatalogError> {
    Ok(meta
        .get(LIVE_PRODUCTS)?
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_else(|| "products".to_owned()))
}

impl Catalog {
    fn live(&self, kind: Kind) -> sled::Tree {
        match kind {
            Kind::Catalog => self.live_products(),
            Kind::Stock => self.stock.clone(),
        }
    }

    /// The current walk of `kind`, if any.
    pub(super) fn walk(&self, kind: Kind) -> Result<Option<Walk>, CatalogError> {
        Ok(self.meta.get(kind.walk_key())?.map(|v| {
            serde_json::from_slice(&v).unwrap_or(Walk {
                // An older agent's empty marker.
                staging: kind.staging().to_owned(),
                full: false,
            })
        }))
    }

    fn staging_of(&self, kind: Kind) -> Result<sled::Tree, CatalogError> {
        let walk = self
            .walk(kind)?
            .ok_or_else(|| corrupt(kind.walk_key(), "no walk under way"))?;
        Ok(self.db.open_tree(walk.staging)?)
    }

    /// Drops (or, for a shared staging tree, clears) a walk's staging.
    fn drop_staging(&self, kind: Kind, name: &str) -> Result<(), CatalogError> {
        if name == kind.staging() {
            self.db.open_tree(name)?.clear()?;
        } else {
            self.db.drop_tree(name)?;
        }
        Ok(())
    }

    /// Drops snapshot trees that are neither live nor being staged.
    fn drop_old_generations(&self) -> Result<(), CatalogError> {
        let live = live_products_name(&self.meta)?;
        let staging = self.walk(Kind::Catalog)?.map(|w| w.staging);
        for name in self.db.tree_names() {
            let name = String::from_utf8_lossy(&name).into_owned();
            if name.starts_with(GENERATION_PREFIX)
                && name != live
                && Some(&name) != staging.as_ref()
            {
                self.db.drop_tree(name.as_bytes())?;
            }
        }
        Ok(())
    }

    /// Finishes a walk of `kind` that was committed but not finished (a
    /// restart, or an error in step 4); true if there was one.
    fn finish_committed(&self, kind: Kind) -> Result<bool, CatalogError> {
        let Some(commit) = self.meta.get(kind.commit_key())? else {
            return Ok(false);
        };
        let c: Commit =
            serde_json::from_slice(&commit).map_err(|e| corrupt(kind.commit_key(), e))?;
        tracing::info!(
            kind = kind.name(),
            version = c.version,
            "finishing a committed catalog change"
        );
        self.finish(kind, &c)?;
        Ok(true)
    }

    /// At open: finishes a committed walk, drops an uncommitted one.
    pub(super) fn recover(&self) -> Result<(), CatalogError> {
        for kind in [Kind::Catalog, Kind::Stock] {
            if self.finish_committed(kind)? {
                continue;
            }
            if let Some(walk) = self.walk(kind)? {
                tracing::info!(
                    kind = kind.name(),
                    "dropping a catalog pull a restart interrupted"
                );
                self.meta.remove(kind.walk_key())?;
                self.drop_staging(kind, &walk.staging)?;
            }
        }
        self.drop_old_generations()?;
        self.db.flush()?;
        Ok(())
    }

    /// Step 1 (after finishing a committed walk whose step 4 failed: its
    /// staging is the committed change, not a leftover to drop).
    pub(crate) fn begin(&self, kind: Kind, full: bool) -> Result<(), CatalogError> {
        self.finish_committed(kind)?;
        if let Some(old) = self.walk(kind)? {
            self.drop_staging(kind, &old.staging)?;
        }
        self.drop_old_generations()?;
        let staging = if kind == Kind::Catalog && full {
            let n = self
                .meta
                .get(GENERATION)?
                .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                .map_or(0, u64::from_be_bytes)
                + 1;
            self.meta.insert(GENERATION, &n.to_be_bytes()[..])?;
            format!("{GENERATION_PREFIX}{n}")
        } else {
            kind.staging().to_owned()
        };
        self.db.open_tree(&staging)?.clear()?;
        let walk =
            serde_json::to_vec(&Walk { staging, full }).map_err(|e| corrupt(kind.walk_key(), e))?;
        self.meta.insert(kind.walk_key(), walk)?;
        Ok(())
    }

    /// Step 2, for products.
    pub(crate) fn stage_products(&self, products: &[Product]) -> Result<(), CatalogError> {
        self.stage(Kind::Catalog, products, |p| &p.sku)
    }

    /// Step 2, for stock levels.
    pub(crate) fn stage_stock(&self, levels: &[StockLevel]) -> Result<(), CatalogError> {
        self.stage(Kind::Stock, levels, |l| &l.sku)
    }

    /// Step 2: `items` as JSON under their SKUs (the commit marker, not a
    /// batch, makes the walk atomic).
    fn stage<T: Serialize>(
        &self,
        kind: Kind,
        items: &[T],
        sku: impl Fn(&T) -> &str,
    ) -> Result<(), CatalogError> {
        let staging = self.staging_of(kind)?;
        for (n, item) in items.iter().enumerate() {
            let key = sku(item);
            let v = serde_json::to_vec(item).map_err(|e| corrupt(key.as_bytes(), e))?;
            staging.insert(key.as_bytes(), v)?;
            reclaim_after(n + 1);
        }
        reclaim();
        Ok(())
    }

    /// Steps 3 and 4: commits the staged walk as `version`.
    pub(crate) fn commit(
        &self,
        kind: Kind,
        version: CatalogVersion,
        full: bool,
    ) -> Result<(), CatalogError> {
        let walk = self
            .walk(kind)?
            .ok_or_else(|| corrupt(kind.walk_key(), "commit without a walk"))?;
        let c = Commit {
            version: version.0,
            full,
            staging: Some(walk.staging),
        };
        let bytes = serde_json::to_vec(&c).map_err(|e| corrupt(kind.commit_key(), e))?;
        // Everything staged is on disk before the commit marker is.
        self.db.flush()?;
        self.meta.insert(kind.commit_key(), bytes)?;
        self.db.flush()?;
        self.finish(kind, &c)
    }

    /// Steps 4 and 5.
    fn finish(&self, kind: Kind, c: &Commit) -> Result<(), CatalogError> {
        self.apply_committed(kind, c)?;
        if kind == Kind::Catalog {
            self.prices.invalidate();
            self.hold_version()?;
        }
        Ok(())
    }

    /// Step 4.
    fn apply_committed(&self, kind: Kind, c: &Commit) -> Result<(), CatalogError> {
        let staging_name = c
            .staging
            .clone()
            .unwrap_or_else(|| kind.staging().to_owned());
        if kind == Kind::Catalog && c.full && staging_name != kind.staging() {
            // The snapshot's tree becomes the live one, with its version,
            // in one batch. Readers move to it first: one that sees the
            // new version must find the new tree (a restart reads only the
            // batch, so the disk order is unchanged).
            let tree = self.db.open_tree(&staging_name)?;
            let old = self.live_products();
            self.set_live_products(tree);
            let mut b = sled::Batch::default();
            b.insert(LIVE_PRODUCTS, staging_name.as_bytes());
            b.insert(kind.version_key(), &c.version.to_be_bytes()[..]);
            b.remove(kind.walk_key());
            b.remove(kind.commit_key());
            if let Err(e) = self
                .meta
                .apply_batch(b)
                .and_then(|()| self.db.flush().map(drop))
            {
                // Not committed to disk: readers go back to the old tree
                // (the next pull or open finishes this commit).
                self.set_live_products(old);
                return Err(e.into());
            }
            return Ok(());
        }
        let staging = self.db.open_tree(&staging_name)?;
        let live = self.live(kind);
        // One write per entry, like staging; a restart runs this step again.
        if c.full {
            // Entries the snapshot does not list are gone.
            for item in live.iter().keys() {
                let key = item?;
                if !staging.contains_key(&key)? {
                    live.remove(key)?;
                }
            }
        }
        for (n, item) in staging.iter().enumerate() {
            let (k, v) = item?;
            live.insert(k, v)?;
            reclaim_after(n + 1);
            if self.abort_mid_apply && n + 1 == ABORT_AFTER {
                tracing::error!("fault injection: aborting part-way through a catalog apply");
                let _ = self.db.flush();
                std::process::abort();
            }
        }
        self.meta
            .insert(kind.version_key(), &c.version.to_be_bytes()[..])?;
        self.meta.remove(kind.walk_key())?;
        self.meta.remove(kind.commit_key())?;
        self.db.flush()?;
        self.drop_staging(kind, &staging_name)?;
        Ok(())
    }

    /// Drops a walk that failed part-way (a refused page, a network error).
    pub(crate) fn abandon(&self, kind: Kind) -> Result<(), CatalogError> {
        if let Some(walk) = self.walk(kind)? {
            self.meta.remove(kind.walk_key())?;
            self.drop_staging(kind, &walk.staging)?;
        }
        Ok(())
    }
}
