//! What `o2c-cloud reconcile` prints and exits with.
//!
//! - [`table`]: one line per store and agent, then each difference.
//! - [`json`]: the same as data (`--json`).
//! - [`exit_code`]: 0 when every store is complete, 3 when some are only
//!   pending (nothing wrong yet), 2 when any is incomplete or missing.
//! - [`prometheus`]: a text-format file for node_exporter's textfile
//!   collector (`--metrics-file`), which the alert rule
//!   `O2cReconcileNotComplete` watches.

use std::fmt::Write as _;

use o2c_protocol::day::{BusinessDate, DayTally};

use crate::core::{Status, StoreDay, runs_text};

/// Stores by status for a date (gauge).
pub const STORES: &str = "o2c_reconcile_stores";
/// 1 when a store's day reconciled complete (gauge, per store).
pub const STORE_COMPLETE: &str = "o2c_reconcile_store_complete";
/// When the file was written (gauge, Unix seconds).
pub const LAST_RUN: &str = "o2c_reconcile_last_run_timestamp_seconds";

/// The human table.
pub fn table(days: &[StoreDay]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:<16} {:<10} {:<10} {:>14} {:>7} {:>7} {:>6}  TOTALS",
        "STORE", "AGENT", "DATE", "STATUS", "SEQS", "EVENTS", "ORDERS", "VOIDS"
    );
    for d in days {
        if d.agents.is_empty() {
            let _ = writeln!(
                out,
                "{:<12} {:<16} {:<10} {:<10}",
                d.store_id.as_str(),
                "-",
                d.business_date.to_string(),
                d.status.as_str()
            );
        }
        for a in &d.agents {
            let seqs = a
                .range
                .map(|r| format!("{}-{}", r.first, r.last))
                .unwrap_or_else(|| "-".to_owned());
            let t = a.stated.as_ref();
            let _ = writeln!(
                out,
                "{:<12} {:<16} {:<10} {:<10} {:>14} {:>7} {:>7} {:>6}  {}",
                d.store_id.as_str(),
                a.agent_id.as_str(),
                d.business_date.to_string(),
                a.status.as_str(),
                seqs,
                t.map_or("-".into(), |t| t.events.to_string()),
                t.map_or("-".into(), |t| t.orders.to_string()),
                t.map_or("-".into(), |t| t.voids.to_string()),
                t.map_or(String::new(), totals),
            );
            for p in &a.problems {
                let _ = writeln!(out, "    {}: {p}", a.agent_id.as_str());
            }
            if !a.missing_seqs.is_empty() {
                let _ = writeln!(
                    out,
                    "    {}: missing seqs {}",
                    a.agent_id.as_str(),
                    runs_text(&a.missing_seqs)
                );
            }
        }
    }
    let count = |s: Status| days.iter().filter(|d| d.status == s).count();
    let _ = writeln!(
        out,
        "{} store(s): {} complete, {} pending, {} incomplete, {} missing",
        days.len(),
        count(Status::Complete),
        count(Status::Pending),
        count(Status::Incomplete),
        count(Status::Missing)
    );
    out
}

fn totals(t: &DayTally) -> String {
    t.totals
        .iter()
        .map(|c| {
            format!(
                "{} gross {} voided {}",
                c.gross.currency.code(),
                c.gross.minor,
                c.voided.minor
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The JSON document.
pub fn json(date: BusinessDate, days: &[StoreDay]) -> serde_json::Value {
    serde_json::json!({
        "business_date": date,
        "stores": days,
    })
}

/// 0: every store complete; 3: nothing wrong but some pending; 2: some
/// incomplete or missing.
pub fn exit_code(days: &[StoreDay]) -> u8 {
    match days.iter().map(|d| d.status).max() {
        None | Some(Status::Complete) => 0,
        Some(Status::Pending) => 3,
        Some(Status::Incomplete | Status::Missing) => 2,
    }
}

/// `o2c_reconcile_stores{business_date, status}` and, per store that is
/// not complete, `o2c_reconcile_store_complete{store, business_date} 0`,
/// with `o2c_reconcile_last_run_timestamp_seconds`.
pub fn prometheus(date: BusinessDate, days: &[StoreDay], now_unix: i64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP {STORES} Stores by reconcile status for a business date.\n# TYPE {STORES} gauge"
    );
    for s in [
        Status::Complete,
        Status::Pending,
        Status::Incomplete,
        Status::Missing,
    ] {
        let n = days.iter().filter(|d| d.status == s).count();
        let _ = writeln!(
            out,
            "{STORES}{{business_date=\"{date}\",status=\"{}\"}} {n}",
            s.as_str()
        );
    }
    let _ = writeln!(
        out,
        "# HELP {STORE_COMPLETE} 1 when the store's day reconciled complete.\n\
         # TYPE {STORE_COMPLETE} gauge"
    );
    for d in days {
        let _ = writeln!(
            out,
            "{STORE_COMPLETE}{{store=\"{}\",business_date=\"{date}\",status=\"{}\"}} {}",
            d.store_id.as_str(),
            d.status.as_str(),
            u8::from(d.status == Status::Complete)
        );
    }
    let _ = writeln!(
        out,
        "# HELP {LAST_RUN} When reconcile last ran.\n# TYPE {LAST_RUN} gauge\n{LAST_RUN} {now_unix}"
    );
    out
}
