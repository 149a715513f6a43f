//! `o2c-cloud analytics report --date D`: one business date's sales from
//! the ClickHouse views, by store and by category, with the day's totals
//! checked against a direct sum over `fact_orders`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::facts::{Facts, FactsError};
use crate::fold;

/// Why the report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Not a date.
    #[error("--date must be YYYY-MM-DD, got {0:?}")]
    Date(String),
    /// ClickHouse failed.
    #[error(transparent)]
    Facts(#[from] FactsError),
}

/// The report of `date` (YYYY-MM-DD): text, and whether the view's totals
/// equal the direct sum (false is a defect to investigate).
pub async fn report(facts: &Facts, date: &str) -> Result<(String, bool), ReportError> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(date, &fmt).map_err(|_| ReportError::Date(date.to_owned()))?;
    let day = fold::day_number(d).ok_or_else(|| ReportError::Date(date.to_owned()))?;
    let stores = facts.daily_by_store(day, day).await?;
    let cats = facts.daily_by_category(day, day).await?;
    let direct = facts.orders_of_day(day).await?;
    let mut out = String::new();
    let _ = writeln!(out, "Sales of business date {date} (by capture time)\n");
    let _ = writeln!(
        out,
        "{:<12} {:>4} {:>8} {:>6} {:>14} {:>14} {:>14}",
        "store", "cur", "orders", "voids", "gross", "refunded", "net"
    );
    let mut view_net: BTreeMap<String, i64> = BTreeMap::new();
    for r in &stores {
        let _ = writeln!(
            out,
            "{:<12} {:>4} {:>8} {:>6} {:>14} {:>14} {:>14}",
            r.store_id, r.currency, r.orders, r.voids, r.gross_minor, r.refunded_minor, r.net_minor
        );
        *view_net.entry(r.currency.clone()).or_default() += r.net_minor;
    }
    let _ = writeln!(
        out,
        "\n{:<24} {:>4} {:>8} {:>8} {:>14}",
        "category", "cur", "orders", "units", "net"
    );
    for r in &cats {
        let _ = writeln!(
            out,
            "{:<24} {:>4} {:>8} {:>8} {:>14}",
            r.category, r.currency, r.orders, r.units, r.net_minor
        );
    }
    let mut direct_net: BTreeMap<String, i64> = BTreeMap::new();
    for o in &direct {
        *direct_net.entry(o.currency.clone()).or_default() += o.net_minor;
    }
    let agree = view_net == direct_net;
    let _ = writeln!(
        out,
        "\nnet by currency (minor units): view {view_net:?}, SUM(fact_orders) {direct_net:?}: {}",
        if agree { "equal" } else { "DIFFERENT" }
    );
    Ok((out, agree))
}
