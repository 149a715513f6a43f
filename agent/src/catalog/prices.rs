//! The capture path's price table: SKU → catalog prices (per currency, each
//! from its `effective_from`). Each catalog import or applied pull builds it
//! and stores it in sled; the catalog reads it back when it opens and swaps
//! in a new one after each change (see `Catalog::price`). Inactive products
//! have no entry: capture refuses them as unknown.
//!
//! One string holds every SKU back to back and a table sorted by SKU points
//! into it, so a 50,000-SKU catalog takes about 1.3 MiB and a lookup is a
//! binary search: no I/O, no allocation. Looking each line up in
//! sled instead (its page cache bounded to a few MiB) was a fifth of the
//! HTTP threads' CPU under the capture benchmark.

use std::borrow::Cow;
use std::fmt;

use std::collections::HashSet;

use o2c_protocol::Currency;
use o2c_protocol::catalog::Product;
use serde::Deserializer as _;
use serde::de::{self, SeqAccess, Visitor};

/// SKU → price (and the product's category, which capture copies onto
/// each order line for sales analytics).
#[derive(Debug, Default)]
pub struct Prices {
    skus: String,
    table: Vec<Entry>,
    /// Distinct categories; an entry's `category` is 1 + its index here
    /// (0: none). A catalog has few, so each entry holds a small number.
    categories: Vec<Box<str>>,
    /// While building: category → its number in `categories`.
    interned: std::collections::HashMap<Box<str>, u32>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    start: u32,
    len: u8,
    currency: Currency,
    minor: i64,
    /// In force from (Unix seconds); `i64::MIN` for always.
    from: i64,
    /// 1 + index into `Prices::categories`; 0 for none.
    category: u32,
}

/// "Always": the `from` of a price without `effective_from`.
pub(crate) const ALWAYS: i64 = i64::MIN;

/// Why a SKU could not go into the table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricesError {
    /// Longer than any SKU the catalog accepts.
    #[error("SKU of {0} bytes is too long for the price table")]
    SkuTooLong(usize),
    /// More SKU text (or categories) than the table can address.
    #[error("the catalog's SKUs exceed 4 GiB")]
    TooLarge,
    /// The stored table could not be written or read back.
    #[error("stored price table: {0}")]
    Codec(String),
}

impl Prices {
    /// Adds one SKU (each at most once; any order).
    pub(crate) fn push(
        &mut self,
        sku: &str,
        minor: i64,
        currency: Currency,
        from: i64,
        category: Option<&str>,
    ) -> Result<(), PricesError> {
        let len = u8::try_from(sku.len()).map_err(|_| PricesError::SkuTooLong(sku.len()))?;
        let start = u32::try_from(self.skus.len()).map_err(|_| PricesError::TooLarge)?;
        u32::try_from(self.skus.len() + sku.len()).map_err(|_| PricesError::TooLarge)?;
        let category = match category {
            None => 0,
            Some(c) => match self.interned.get(c) {
                Some(&n) => n,
                None => {
                    self.categories.push(c.into());
                    let n =
                        u32::try_from(self.categories.len()).map_err(|_| PricesError::TooLarge)?;
                    self.interned.insert(c.into(), n);
                    n
                }
            },
        };
        self.skus.push_str(sku);
        self.table.push(Entry {
            start,
            len,
            currency,
            minor,
            from,
            category,
        });
        Ok(())
    }

    /// Adds every price of an active product (an inactive one has none).
    pub(crate) fn push_product(&mut self, p: &Product) -> Result<(), PricesError> {
        if !p.active {
            return Ok(());
        }
        for price in &p.prices {
            let from = price
                .effective_from
                .map_or(ALWAYS, time::OffsetDateTime::unix_timestamp);
            self.push(
                &p.sku,
                price.minor,
                price.currency,
                from,
                p.category.as_deref(),
            )?;
        }
        Ok(())
    }

    /// Sorts the table for lookups; call once after the last `push`.
    pub(crate) fn finish(self) -> Prices {
        let Prices {
            mut skus,
            mut table,
            mut categories,
            interned: _,
        } = self;
        table.sort_unstable_by(|a, b| order(&skus, a, &skus, b));
        skus.shrink_to_fit();
        table.shrink_to_fit();
        categories.shrink_to_fit();
        Prices {
            skus,
            table,
            categories,
            interned: Default::default(),
        }
    }

    /// The category of `sku`'s product, if it has a price and a category.
    pub fn category(&self, sku: &str) -> Option<&str> {
        let start = self.table.partition_point(|e| sku_of(&self.skus, e) < sku);
        let e = self
            .table
            .get(start)
            .filter(|e| sku_of(&self.skus, e) == sku)?;
        self.category_of(e)
    }

    fn category_of(&self, e: &Entry) -> Option<&str> {
        let n = usize::try_from(e.category).ok()?.checked_sub(1)?;
        self.categories.get(n).map(|c| &**c)
    }

    /// This table with every SKU of `changed` replaced by its new prices
    /// (none for an inactive product): a delta's table without reading the
    /// catalog back from disk. The kept rows are already in order, so only
    /// the new ones are sorted, then the two runs are merged.
    pub(crate) fn merged(&self, changed: &[Product]) -> Result<Prices, PricesError> {
        let gone: HashSet<&str> = changed.iter().map(|p| p.sku.as_str()).collect();
        let mut fresh = Prices::default();
        for p in changed {
            fresh.push_product(p)?;
        }
        let fresh = fresh.finish();
        let mut out = Prices {
            skus: String::with_capacity(self.skus.len() + fresh.skus.len()),
            table: Vec::with_capacity(self.table.len() + fresh.table.len()),
            ..Prices::default()
        };
        let kept = self
            .table
            .iter()
            .filter(|e| !gone.contains(sku_of(&self.skus, e)));
        let mut kept = kept.peekable();
        let mut new = fresh.table.iter().peekable();
        loop {
            let take_kept = match (kept.peek(), new.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(k), Some(n)) => order(&self.skus, k, &fresh.skus, n).is_le(),
            };
            let (from, e) = if take_kept {
                (self, kept.next())
            } else {
                (&fresh, new.next())
            };
            if let Some(e) = e {
                out.push(
                    sku_of(&from.skus, e),
                    e.minor,
                    e.currency,
                    e.from,
                    from.category_of(e),
                )?;
            }
        }
        Ok(out)
    }

    /// The price of `sku` in force at `at` (Unix seconds): in `currency`
    /// if the catalog has one, else in another currency (the caller names
    /// the mismatch); `None` for a SKU without a price in force.
    pub fn get(&self, sku: &str, currency: Currency, at: i64) -> Option<(i64, Currency)> {
        let start = self.table.partition_point(|e| sku_of(&self.skus, e) < sku);
        let end = start + self.table[start..].partition_point(|e| sku_of(&self.skus, e) == sku);
        let rows = &self.table[start..end];
        let in_force = |c: Currency| {
            rows.iter()
                .rfind(|e| e.currency == c && e.from <= at)
                .map(|e| (e.minor, e.currency))
        };
        in_force(currency).or_else(|| {
            rows.iter()
                .filter(|e| e.from <= at)
                .find_map(|e| in_force(e.currency))
        })
    }

    /// The table as JSON, `[[sku, minor, currency, from, category], ...]`,
    /// sorted. A table stored by an older agent (no category) does not
    /// decode, and is built again from the products (see `load_prices`).
    pub(crate) fn encode(&self) -> Result<Vec<u8>, PricesError> {
        let rows: Vec<(&str, i64, &str, i64, Option<&str>)> = self
            .table
            .iter()
            .map(|e| {
                (
                    sku_of(&self.skus, e),
                    e.minor,
                    e.currency.code(),
                    e.from,
                    self.category_of(e),
                )
            })
            .collect();
        serde_json::to_vec(&rows).map_err(|e| PricesError::Codec(e.to_string()))
    }

    /// Reads what [`Prices::encode`] wrote, row by row (no intermediate
    /// list of rows: the table is all that stays allocated).
    pub(crate) fn decode(bytes: &[u8]) -> Result<Prices, PricesError> {
        struct Rows;
        impl<'de> Visitor<'de> for Rows {
            type Value = Prices;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of [sku, price_minor, currency, from, category]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Prices, A::Error> {
                let mut prices = Prices::default();
                type Row<'a> = (Cow<'a, str>, i64, Cow<'a, str>, i64, Option<Cow<'a, str>>);
                while let Some((sku, minor, code, from, category)) =
                    seq.next_element::<Row<'de>>()?
                {
                    let currency = Currency::from_code(&code).map_err(de::Error::custom)?;
                    prices
                        .push(&sku, minor, currency, from, category.as_deref())
                        .map_err(de::Error::custom)?;
                }
                Ok(prices.finish())
            }
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let prices = de
            .deserialize_seq(Rows)
            .and_then(|p| de.end().map(|()| p))
            .map_err(|e| PricesError::Codec(e.to_string()))?;
        Ok(prices)
    }

    /// Number of prices (a SKU has one per currency and start time).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

/// The table's order: SKU, then currency, then start time.
fn order(a_skus: &str, a: &Entry, b_skus: &str, b: &Entry) -> std::cmp::Ordering {
    sku_of(a_skus, a)
        .cmp(sku_of(b_skus, b))
        .then(a.currency.code().cmp(b.currency.code()))
        .then(a.from.cmp(&b.from))
}

fn sku_of<'a>(skus: &'a str, e: &Entry) -> &'a str {
    let start = e.start as usize;
    skus.get(start..start + usize::from(e.len))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_price_in_force_in_the_currency_asked() {
        let cad = Currency::from_code("CAD").unwrap();
        let eur = Currency::from_code("EUR").unwrap();
        let mut p = Prices::default();
        for (i, sku) in ["b", "a", "SKU-10", "SKU-1", "SKU-2", "ü"]
            .iter()
            .enumerate()
        {
            let currency = if i % 2 == 0 { cad } else { eur };
            p.push(
                sku,
                i as i64 * 100,
                currency,
                ALWAYS,
                Some(if i % 2 == 0 { "even" } else { "odd" }),
            )
            .unwrap();
        }
        // SKU-1 also in CAD from t=1000, and again from t=2000.
        p.push("SKU-1", 777, cad, 1000, None).unwrap();
        p.push("SKU-1", 888, cad, 2000, None).unwrap();
        let p = p.finish();
        assert_eq!(p.len(), 8);
        assert_eq!(p.get("b", cad, 0), Some((0, cad)));
        assert_eq!(p.get("a", eur, 0), Some((100, eur)));
        // Asked in CAD, priced only in EUR: the EUR price names the mismatch.
        assert_eq!(p.get("a", cad, 0), Some((100, eur)));
        assert_eq!(p.get("SKU-1", eur, 0), Some((300, eur)));
        assert_eq!(p.get("SKU-1", cad, 999), Some((300, eur)));
        assert_eq!(p.get("SKU-1", cad, 1000), Some((777, cad)));
        assert_eq!(p.get("SKU-1", cad, 5000), Some((888, cad)));
        assert_eq!(p.get("SKU-10", cad, 0), Some((200, cad)));
        assert_eq!(p.get("ü", eur, 0), Some((500, eur)));
        for missing in ["", "SKU", "SKU-3", "c", "SKU-1 "] {
            assert_eq!(p.get(missing, cad, 0), None, "{missing:?}");
        }
        assert_eq!(p.category("b"), Some("even"));
        assert_eq!(p.category("a"), Some("odd"));
        assert_eq!(p.category("SKU-3"), None);
        let back = Prices::decode(&p.encode().unwrap()).unwrap();
        assert_eq!(back.len(), 8);
        assert_eq!(back.category("a"), Some("odd"));
        // A table an older agent stored (no category) is rebuilt, not misread.
        assert!(Prices::decode(br#"[["a",1,"CAD",0]]"#).is_err());
        for sku in ["a", "b", "SKU-1", "SKU-10", "SKU-2", "ü"] {
            for at in [0, 1500, 3000] {
                assert_eq!(back.get(sku, cad, at), p.get(sku, cad, at), "{sku}");
            }
        }
        assert!(matches!(
            Prices::decode(b"[[1]]"),
            Err(PricesError::Codec(_))
        ));
        assert!(Prices::default().finish().get("a", cad, 0).is_none());
        let long = "x".repeat(256);
        assert_eq!(
            Prices::default().push(&long, 1, cad, ALWAYS, None),
            Err(PricesError::SkuTooLong(256))
        );
    }

    #[test]
    fn a_merge_replaces_changed_skus_and_keeps_the_order() {
        let cad = Currency::from_code("CAD").unwrap();
        let mut p = Prices::default();
        for (sku, minor) in [("a", 1), ("c", 3), ("e", 5), ("g", 7)] {
            p.push(sku, minor, cad, ALWAYS, Some("old")).unwrap();
        }
        let p = p.finish();
        let product = |sku: &str, minor: i64, active: bool| Product {
            sku: sku.into(),
            name: sku.into(),
            category: Some("new".into()),
            active,
            prices: vec![o2c_protocol::catalog::Price {
                currency: cad,
                minor,
                effective_from: None,
            }],
        };
        let m = p
            .merged(&[
                product("c", 30, true),
                product("d", 4, true),
                product("a", 1, false),
                product("h", 8, true),
            ])
            .unwrap();
        let got: Vec<Option<i64>> = ["a", "c", "d", "e", "g", "h", "b"]
            .iter()
            .map(|s| m.get(s, cad, 0).map(|(minor, _)| minor))
            .collect();
        assert_eq!(
            got,
            [None, Some(30), Some(4), Some(5), Some(7), Some(8), None]
        );
        let skus: Vec<&str> = m.table.iter().map(|e| sku_of(&m.skus, e)).collect();
        assert_eq!(skus, ["c", "d", "e", "g", "h"]);
        assert_eq!(m.category("c"), Some("new"));
        assert_eq!(m.category("e"), Some("old"));
    }
}
