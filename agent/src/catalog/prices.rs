//! The capture path's prices: a bounded cache of SKU → prices (per
//! currency, each from its `effective_from`) in front of the sled products
//! tree. A catalog of a million SKUs is never held in memory: only the SKUs
//! a store sells, up to `[catalog] price_cache_skus` (`quick_cache`, which
//! keeps the ones asked for often and evicts the rest).
//!
//! Each cached entry carries the generation it was read under. A change to
//! the catalog writes sled first, then moves the generation on, so an entry
//! read before (or during) a change is never served after it: a lookup
//! takes the generation before it reads sled, and an entry of an older
//! generation counts as a miss. Unknown and inactive SKUs are cached too,
//! as "no price", so a till retrying an unknown SKU does not walk sled each
//! time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use o2c_protocol::Currency;
use o2c_protocol::catalog::Product;
use time::OffsetDateTime;

/// One SKU's prices and category as capture needs them, compact (a cache
/// of tens of thousands of SKUs costs a few MiB): no prices for a SKU that
/// is unknown, inactive or unpriced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SkuPrices {
    /// Sorted by currency code, then start time.
    rows: Box<[Row]>,
    category: Option<Box<str>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Row {
    currency: Currency,
    minor: i64,
    /// In force from (Unix seconds); `i64::MIN` for always.
    from: i64,
}

impl SkuPrices {
    /// A product's prices (none if it is inactive: capture refuses it as
    /// unknown).
    pub fn of(p: &Product) -> SkuPrices {
        if !p.active {
            return SkuPrices::default();
        }
        let mut rows: Vec<Row> = p
            .prices
            .iter()
            .map(|price| Row {
                currency: price.currency,
                minor: price.minor,
                from: price
                    .effective_from
                    .map_or(i64::MIN, OffsetDateTime::unix_timestamp),
            })
            .collect();
        rows.sort_unstable_by(|a, b| (a.currency.code(), a.from).cmp(&(b.currency.code(), b.from)));
        SkuPrices {
            rows: rows.into_boxed_slice(),
            category: p.category.as_deref().map(Box::from),
        }
    }

    /// The price in force at `at`: in `currency` if the product has one,
    /// else in the first other currency (by code) that has one, so the
    /// caller can name the mismatch; `None` if no price is in force.
    pub fn get(&self, currency: Currency, at: OffsetDateTime) -> Option<(i64, Currency)> {
        let at = at.unix_timestamp();
        // The latest start not after `at`, in `c` (rows are in start order).
        let in_force = |c: Currency| {
            self.rows
                .iter()
                .rfind(|r| r.currency == c && r.from <= at)
                .map(|r| (r.minor, r.currency))
        };
        in_force(currency).or_else(|| {
            self.rows
                .iter()
                .filter(|r| r.from <= at)
                .find_map(|r| in_force(r.currency))
        })
    }

    /// The product's category (`None` too for a SKU without prices).
    pub fn category(&self) -> Option<&str> {
        if self.rows.is_empty() {
            return None;
        }
        self.category.as_deref()
    }
}

/// A cached lookup and the generation it was read under.
#[derive(Debug, Clone)]
struct Cached {
    generation: u64,
    prices: Arc<SkuPrices>,
}

/// The bounded price cache.
#[derive(Debug)]
pub struct PriceCache {
    cache: quick_cache::sync::Cache<String, Cached>,
    generation: AtomicU64,
}

impl PriceCache {
    /// A cache of at most `skus` SKUs (at least one).
    pub fn new(skus: usize) -> PriceCache {
        PriceCache {
            cache: quick_cache::sync::Cache::new(skus.max(1)),
            generation: AtomicU64::new(0),
        }
    }

    /// `sku`'s prices: from the cache if read under the current generation,
    /// else from `load` (a read of the products tree), then cached.
    pub fn lookup<E>(
        &self,
        sku: &str,
        load: impl FnOnce() -> Result<Option<Product>, E>,
    ) -> Result<Arc<SkuPrices>, E> {
        // Taken before the read: a change that lands after it makes this
        // entry stale rather than letting an old read pass for a new one.
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(hit) = self.cache.get(sku)
            && hit.generation == generation
        {
            return Ok(hit.prices);
        }
        let prices = Arc::new(load()?.as_ref().map(SkuPrices::of).unwrap_or_default());
        self.cache.insert(
            sku.to_owned(),
            Cached {
                generation,
                prices: Arc::clone(&prices),
            },
        );
        Ok(prices)
    }

    /// After a change to the products is written: every entry cached so far
    /// is stale.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.cache.clear();
    }

    /// SKUs cached now (tests, diagnostics).
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use o2c_protocol::catalog::Price;

    fn cur(code: &str) -> Currency {
        Currency::from_code(code).unwrap()
    }

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    fn product(sku: &str, active: bool, prices: &[(&str, i64, Option<i64>)]) -> Product {
        Product {
            sku: sku.into(),
            name: sku.into(),
            category: Some("tools".into()),
            active,
            prices: prices
                .iter()
                .map(|&(c, minor, from)| Price {
                    currency: cur(c),
                    minor,
                    effective_from: from.map(at),
                })
                .collect(),
        }
    }

    #[test]
    fn finds_the_price_in_force_in_the_currency_asked() {
        let (cad, eur) = (cur("CAD"), cur("EUR"));
        // Listed out of order: CAD from 2000, EUR always, CAD always, CAD
        // from 1000.
        let p = SkuPrices::of(&product(
            "SKU-1",
            true,
            &[
                ("CAD", 888, Some(2000)),
                ("EUR", 300, None),
                ("CAD", 100, None),
                ("CAD", 777, Some(1000)),
            ],
        ));
        assert_eq!(p.get(cad, at(0)), Some((100, cad)));
        assert_eq!(p.get(cad, at(999)), Some((100, cad)));
        assert_eq!(p.get(cad, at(1000)), Some((777, cad)));
        assert_eq!(p.get(cad, at(5000)), Some((888, cad)));
        assert_eq!(p.get(eur, at(5000)), Some((300, eur)));
        // Asked in JPY, priced in CAD and EUR: the first currency in force
        // names the mismatch.
        assert_eq!(p.get(cur("JPY"), at(0)), Some((100, cad)));
        assert_eq!(p.category(), Some("tools"));

        // Priced in USD from t=1000 and in EUR from t=2000: nothing in force
        // before, then the first currency by code that is.
        let later = SkuPrices::of(&product(
            "L",
            true,
            &[("USD", 6, Some(1000)), ("EUR", 5, Some(2000))],
        ));
        assert_eq!(later.get(eur, at(999)), None);
        assert_eq!(later.get(cad, at(1000)), Some((6, cur("USD"))));
        assert_eq!(later.get(cad, at(2000)), Some((5, eur)));

        for none in [
            product("I", false, &[("EUR", 5, None)]),
            product("N", true, &[]),
        ] {
            let p = SkuPrices::of(&none);
            assert_eq!(
                (p.get(eur, at(0)), p.category()),
                (None, None),
                "{}",
                none.sku
            );
        }
    }

    #[test]
    fn a_change_makes_every_earlier_read_stale() {
        let cache = PriceCache::new(10);
        let eur = cur("EUR");
        let mut reads = 0;
        let mut read = |minor: i64| {
            reads += 1;
            Ok::<_, ()>(Some(product("A", true, &[("EUR", minor, None)])))
        };
        let price = |p: Arc<SkuPrices>| p.get(eur, at(0)).map(|(m, _)| m);
        assert_eq!(price(cache.lookup("A", || read(1)).unwrap()), Some(1));
        // A hit: no read.
        assert_eq!(price(cache.lookup("A", || read(2)).unwrap()), Some(1));
        cache.invalidate();
        assert_eq!(price(cache.lookup("A", || read(3)).unwrap()), Some(3));
        assert_eq!(reads, 2);

        // A read that started before a change (it took the old generation)
        // and stored its answer after it is never served.
        let stale_generation = cache.generation.load(Ordering::Acquire);
        cache.invalidate();
        cache.cache.insert(
            "B".into(),
            Cached {
                generation: stale_generation,
                prices: Arc::new(SkuPrices::of(&product("B", true, &[("EUR", 9, None)]))),
            },
        );
        let fresh = cache
            .lookup("B", || {
                Ok::<_, ()>(Some(product("B", true, &[("EUR", 10, None)])))
            })
            .unwrap();
        assert_eq!(price(fresh), Some(10));

        // Unknown SKUs are cached as "no price"; a load error is returned
        // and caches nothing.
        assert_eq!(
            price(cache.lookup("Z", || Ok::<_, ()>(None)).unwrap()),
            None
        );
        let cached = cache.lookup("Z", || -> Result<Option<Product>, ()> { panic!("cached") });
        assert_eq!(cached.map(price), Ok(None));
        assert_eq!(
            cache
                .lookup("Y", || Err::<Option<Product>, _>("down"))
                .map(price),
            Err("down")
        );
        assert_eq!(cache.lookup("Y", || Ok::<_, ()>(None)).map(price), Ok(None));
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = PriceCache::new(100);
        for i in 0..10_000 {
            let sku = format!("SKU-{i}");
            cache
                .lookup(&sku, || {
                    Ok::<_, ()>(Some(product(&sku, true, &[("EUR", 1, None)])))
                })
                .unwrap();
        }
        assert!(cache.len() <= 100, "{} cached", cache.len());
    }
}
