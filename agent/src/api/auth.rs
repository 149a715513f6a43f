//! Terminal bearer auth. A request's token is hashed with SHA-256 and the
//! digest is compared, in constant time, with every known terminal's hash:
//! the `[[terminals]]` of the config file plus the CLI-managed terminals in
//! the database (`o2c-agent terminal add|revoke`), so a running agent honours
//! an add or a revoke without a restart.
//!
//! The database list is cached. At most every [`REFRESH_EVERY`] a request
//! reads the table's generation counter (one point read on the read pool)
//! and reloads the list only when the counter moved; a revoke therefore
//! takes effect within that interval.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, header};
use o2c_protocol::TerminalId;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};
use tokio::time::Instant;

use super::ApiError;
use crate::store::Store;

/// How stale the cached database terminals may get.
pub(crate) const REFRESH_EVERY: Duration = Duration::from_millis(500);

type Known = Arc<[(TerminalId, [u8; 32])]>;

/// The terminals allowed to call the API.
#[derive(Debug)]
pub(crate) struct TerminalAuth {
    config: Vec<(TerminalId, [u8; 32])>,
    store: Store,
    cache: Mutex<Cache>,
    /// One refresh at a time; the others wait for its result.
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Cache {
    generation: Option<i64>,
    checked_at: Option<Instant>,
    db: Known,
}

impl TerminalAuth {
    pub(crate) fn new(config: Vec<(TerminalId, [u8; 32])>, store: Store) -> Self {
        Self {
            config,
            store,
            cache: Mutex::new(Cache {
                generation: None,
                checked_at: None,
                db: Arc::from(Vec::new()),
            }),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    /// The terminal whose bearer token the request carries.
    pub(crate) async fn authenticate(&self, headers: &HeaderMap) -> Result<TerminalId, ApiError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(super::error::unauthorized)?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let db = self.db_terminals().await;
        find(self.config.iter().chain(db.iter()), &digest).ok_or_else(super::error::unauthorized)
    }

    /// The cached database terminals, refreshed when stale.
    async fn db_terminals(&self) -> Known {
        if let Some(fresh) = self.fresh() {
            return fresh;
        }
        let _one = self.refresh.lock().await;
        // Someone else may have refreshed while we waited.
        if let Some(fresh) = self.fresh() {
            return fresh;
        }
        let known = self.lock().generation;
        let reloaded = match self.store.terminals_generation().await {
            Ok(g) if Some(g) == known => Ok(None),
            Ok(_) => self.store.active_terminals().await.map(Some),
            Err(e) => Err(e),
        };
        let mut cache = self.lock();
        match reloaded {
            Ok(None) => {}
            Ok(Some((generation, rows))) => {
                let list: Vec<_> = rows
                    .into_iter()
                    .filter_map(|r| match r.id.parse::<TerminalId>() {
                        Ok(id) => Some((id, r.token_sha256)),
                        Err(_) => {
                            tracing::warn!(id = %r.id, "ignoring a stored terminal with a bad id");
                            None
                        }
                    })
                    .collect();
                tracing::info!(
                    generation,
                    terminals = list.len(),
                    "reloaded CLI-managed terminals"
                );
                cache.generation = Some(generation);
                cache.db = Arc::from(list);
            }
            // Keep the last good list; the next request tries again.
            Err(e) => tracing::warn!(error = %e, "cannot read CLI-managed terminals"),
        }
        cache.checked_at = Some(Instant::now());
        Arc::clone(&cache.db)
    }

    fn fresh(&self) -> Option<Known> {
        let cache = self.lock();
        cache
            .checked_at
            .filter(|t| t.elapsed() < REFRESH_EVERY)
            .map(|_| Arc::clone(&cache.db))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // The cache is always left consistent; a panic elsewhere cannot
        // poison its meaning.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The terminal whose hash equals `digest`. Every entry is compared, each
/// in constant time, and the loop never exits early.
fn find<'a>(
    known: impl Iterator<Item = &'a (TerminalId, [u8; 32])>,
    digest: &[u8; 32],
) -> Option<TerminalId> {
    let mut found = None;
    for (id, hash) in known {
        let eq: Choice = hash.ct_eq(digest);
        if bool::from(eq) {
            found = Some(id);
        }
    }
    found.cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_an_exact_hash() {
        let t1: TerminalId = "T1".parse().unwrap();
        let t2: TerminalId = "T2".parse().unwrap();
        let h1: [u8; 32] = Sha256::digest(b"one").into();
        let h2: [u8; 32] = Sha256::digest(b"two").into();
        let known = [(t1.clone(), h1), (t2.clone(), h2)];
        assert_eq!(find(known.iter(), &h1), Some(t1));
        assert_eq!(find(known.iter(), &h2), Some(t2));
        let mut near = h1;
        near[31] ^= 1;
        assert_eq!(find(known.iter(), &near), None);
    }
}
