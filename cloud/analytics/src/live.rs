//! The live figures: a counters hash (see [`crate::counters`] for its
//! fields) read back into fleet, per-store, per-channel and per-category
//! figures. Pure.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// Amounts per currency (minor units).
pub type ByCurrency = BTreeMap<String, i64>;

/// The figures of one scope (the fleet, a store, a channel).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Figures {
    /// Orders captured.
    pub orders: i64,
    /// Orders not voided.
    pub net_orders: i64,
    /// Orders voided.
    pub voids: i64,
    /// Orders that arrived late (captured offline).
    pub late: i64,
    /// Every order's total.
    pub gross: ByCurrency,
    /// Gross less voids and refunds.
    pub net: ByCurrency,
    /// Voided totals.
    pub void: ByCurrency,
    /// Refunded.
    pub refund: ByCurrency,
    /// By tender method.
    pub tender: BTreeMap<String, ByCurrency>,
    /// By category.
    pub by_category: BTreeMap<String, CategoryFigures>,
}

/// A category's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CategoryFigures {
    /// Line totals of every order.
    pub gross: ByCurrency,
    /// Line totals of orders not voided.
    pub net: ByCurrency,
}

/// A counters hash, split by scope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Scoped {
    /// Fleet-wide.
    #[serde(flatten)]
    pub fleet: Figures,
    /// Per store.
    pub by_store: BTreeMap<String, Figures>,
    /// Per channel.
    pub by_channel: BTreeMap<String, Figures>,
}

impl Scoped {
    /// Reads a counters hash. Fields it does not know are left out.
    pub fn from_fields(fields: &HashMap<String, i64>) -> Self {
        let mut out = Scoped::default();
        for (field, &v) in fields {
            let (figures, rest) = if let Some(r) = field.strip_prefix("s:") {
                match r.split_once('|') {
                    Some((store, rest)) => {
                        (out.by_store.entry(store.to_owned()).or_default(), rest)
                    }
                    None => continue,
                }
            } else if let Some(r) = field.strip_prefix("c:") {
                match r.split_once('|') {
                    Some((ch, rest)) => (out.by_channel.entry(ch.to_owned()).or_default(), rest),
                    None => continue,
                }
            } else {
                (&mut out.fleet, field.as_str())
            };
            figures.add(rest, v);
        }
        out
    }
}

impl Figures {
    fn add(&mut self, field: &str, v: i64) {
        if let Some(r) = field.strip_prefix("cat:") {
            let Some((cat, metric)) = r.rsplit_once('|') else {
                return;
            };
            let c = self.by_category.entry(cat.to_owned()).or_default();
            match metric.split_once(':') {
                Some(("gross", cur)) => *c.gross.entry(cur.to_owned()).or_default() += v,
                Some(("net", cur)) => *c.net.entry(cur.to_owned()).or_default() += v,
                _ => {}
            }
            return;
        }
        match field {
            "orders" => self.orders += v,
            "net_orders" => self.net_orders += v,
            "voids" => self.voids += v,
            "late" => self.late += v,
            _ => {
                let Some((metric, rest)) = field.split_once(':') else {
                    return;
                };
                let map = match metric {
                    "gross" => &mut self.gross,
                    "net" => &mut self.net,
                    "void" => &mut self.void,
                    "refund" => &mut self.refund,
                    "tender" => {
                        if let Some((method, cur)) = rest.split_once(':') {
                            *self
                                .tender
                                .entry(method.to_owned())
                                .or_default()
                                .entry(cur.to_owned())
                                .or_default() += v;
                        }
                        return;
                    }
                    _ => return,
                };
                *map.entry(rest.to_owned()).or_default() += v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_split_by_scope_category_and_currency() {
        let fields: HashMap<String, i64> = [
            ("orders", 3),
            ("net_orders", 2),
            ("voids", 1),
            ("gross:CAD", 3000),
            ("net:CAD", 1500),
            ("void:CAD", 1000),
            ("refund:CAD", 500),
            ("tender:card:CAD", 2000),
            ("tender:cash:CAD", 1000),
            ("cat:Toys|gross:CAD", 3000),
            ("cat:A|B|net:CAD", 7),
            ("s:S001|orders", 3),
            ("s:S001|cat:Toys|net:CAD", 2000),
            ("c:pos|net:CAD", 1500),
            ("s:broken", 9),
            ("mystery", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let s = Scoped::from_fields(&fields);
        assert_eq!(s.fleet.orders, 3);
        assert_eq!(s.fleet.net_orders, 2);
        assert_eq!(s.fleet.voids, 1);
        assert_eq!(s.fleet.gross["CAD"], 3000);
        assert_eq!(s.fleet.net["CAD"], 1500);
        assert_eq!(s.fleet.void["CAD"], 1000);
        assert_eq!(s.fleet.refund["CAD"], 500);
        assert_eq!(s.fleet.tender["card"]["CAD"], 2000);
        assert_eq!(s.fleet.by_category["Toys"].gross["CAD"], 3000);
        // A category may hold `|`: the metric is after the last one.
        assert_eq!(s.fleet.by_category["A|B"].net["CAD"], 7);
        assert_eq!(s.by_store["S001"].orders, 3);
        assert_eq!(s.by_store["S001"].by_category["Toys"].net["CAD"], 2000);
        assert_eq!(s.by_channel["pos"].net["CAD"], 1500);
        assert_eq!(s.by_store.len(), 1);
    }
}
