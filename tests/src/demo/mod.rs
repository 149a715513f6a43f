//! The parts of `o2c-demo` (`src/bin/o2c-demo.rs`) that the binary's store
//! side and its web shop share: which statuses end an order, the cloud
//! table's row, and how failures name orders. The web shop itself is
//! [`web`]; the customers' mail (`o2c-cloud notify`, an SMTP server, the
//! check of what it received) is [`mail`].

pub mod catalog;
pub mod mail;
pub mod web;

use std::sync::{Mutex, MutexGuard};

use o2c_protocol::CloudStatus;

/// Statuses that end an order.
pub const FINAL: [&str; 3] = ["completed", "cancelled", "refunded"];

/// Statuses after a successful capture: a void or a customer's
/// cancellation then means a refund.
pub const PAID: [&str; 6] = [
    "paid",
    "inventory_confirmed",
    "shipment_scheduled",
    "dispatched",
    "delivered",
    "completed",
];

/// The cloud table's header (under the per-store sync table).
pub const CLOUD_HEADER: &str = "         cloud    none  accepted   paid  stock  shipment  completed  cancelled  refunded  voids/cancels";

/// Locks `m`, taking the data of a poisoned lock as it is (the demo's
/// locks guard plain collections).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Prints one row of the cloud table: how many of `statuses` are at each
/// cloud status (`None`: none yet), then `tail`.
pub fn print_cloud_row<'a>(
    name: &str,
    statuses: impl IntoIterator<Item = Option<&'a str>>,
    tail: &str,
) {
    let mut none = 0;
    let mut at = [0usize; CloudStatus::ALL.len()];
    for st in statuses {
        match CloudStatus::ALL.iter().position(|c| Some(c.as_str()) == st) {
            Some(i) => at[i] += 1,
            None => none += 1,
        }
    }
    // Saga order: accepted, paid, stock, shipment (scheduled, dispatched
    // or delivered), completed, cancelled, refunded.
    let [
        accepted,
        paid,
        stock,
        scheduled,
        dispatched,
        delivered,
        completed,
        cancelled,
        refunded,
        // A return's statuses never become its order's.
        ..,
    ] = at;
    let shipment = scheduled + dispatched + delivered;
    println!(
        "         {name:<8} {none:>4} {accepted:>9} {paid:>6} {stock:>6} {shipment:>9} {completed:>10} {cancelled:>10} {refunded:>9}  {tail}"
    );
}

/// At most 10 of `items`, then how many more.
pub fn some(items: &[String]) -> String {
    let mut text = items
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n  ");
    if items.len() > 10 {
        text.push_str(&format!("\n  … and {} more", items.len() - 10));
    }
    text
}

/// `"3 completed, 1 refunded"`: how many of each status.
pub fn tally<'a>(statuses: impl IntoIterator<Item = &'a str>) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for st in statuses {
        *counts.entry(st).or_insert(0usize) += 1;
    }
    counts
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}
