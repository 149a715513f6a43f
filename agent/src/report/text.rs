//! The Z-report as a table for people (`o2c-agent report z`). Amounts are
//! shown in major units with the currency's own decimals, computed on the
//! integer minor units (never through a float).

use std::fmt::Write as _;

use super::{Figures, ZReport};

/// The report as text, one section per figure, terminals then `TOTAL`.
pub fn render_text(r: &ZReport) -> String {
    let mut out = String::new();
    let state = if r.day_closed {
        "day closed"
    } else {
        "DAY STILL OPEN: the figures may still change"
    };
    let _ = writeln!(
        out,
        "Z-REPORT  store {}  business date {}  ({state})",
        r.store_id, r.business_date
    );
    let _ = writeln!(
        out,
        "  from {} to {} ({}, the day closes at {})",
        r.window_start, r.window_end, r.timezone, r.closes_at
    );
    let _ = writeln!(out, "  generated {}", r.generated_at);
    let rows: Vec<(&str, &Figures)> = r
        .terminals
        .iter()
        .map(|t| (t.terminal_id.as_str(), &t.figures))
        .chain(std::iter::once(("TOTAL", &r.total)))
        .collect();

    let _ = writeln!(
        out,
        "\nSALES\n{:<16} {:<4} {:>7} {:>6} {:>14} {:>14} {:>14}",
        "TERMINAL", "CUR", "ORDERS", "VOIDS", "GROSS", "VOIDED", "NET"
    );
    if r.total.currencies.iter().all(|c| c.orders == 0) {
        out.push_str("(no orders captured in this business day)\n");
    }
    for (name, f) in &rows {
        for c in &f.currencies {
            let m = |v| money(v, &c.currency);
            let _ = writeln!(
                out,
                "{name:<16} {:<4} {:>7} {:>6} {:>14} {:>14} {:>14}",
                c.currency,
                c.orders,
                c.voids,
                m(c.gross_minor),
                m(c.voided_minor),
                m(c.net_minor)
            );
        }
    }

    let _ = writeln!(
        out,
        "\nTENDERS (orders not voided)\n{:<16} {:<4} {:>14} {:>14} {:>14} {:>14}",
        "TERMINAL", "CUR", "CARD ONLINE", "CARD OFFLINE", "CASH", "GIFT CARD"
    );
    for (name, f) in &rows {
        for c in &f.currencies {
            let m = |v| money(v, &c.currency);
            let t = &c.tenders;
            let _ = writeln!(
                out,
                "{name:<16} {:<4} {:>14} {:>14} {:>14} {:>14}",
                c.currency,
                m(t.card_online_minor),
                m(t.card_offline_minor),
                m(t.cash_minor),
                m(t.gift_card_minor)
            );
        }
    }

    returns(&mut out, r, &rows);

    let _ = writeln!(
        out,
        "\nOFFLINE CARD MONEY NOT YET CONFIRMED BY THE CLOUD\n{:<16} {:<4} {:>7} {:>14}",
        "TERMINAL", "CUR", "ORDERS", "AMOUNT"
    );
    if r.total
        .currencies
        .iter()
        .all(|c| c.offline_unconfirmed_orders == 0)
    {
        out.push_str("(none)\n");
    } else {
        for (name, f) in &rows {
            for c in f
                .currencies
                .iter()
                .filter(|c| c.offline_unconfirmed_orders > 0)
            {
                let _ = writeln!(
                    out,
                    "{name:<16} {:<4} {:>7} {:>14}",
                    c.currency,
                    c.offline_unconfirmed_orders,
                    money(c.offline_unconfirmed_minor, &c.currency)
                );
            }
        }
    }

    let _ = writeln!(
        out,
        "\nEVENTS OF THE DAY'S ORDERS AND RETURNS\n{:<16} {:>8} {:>8} {:>9} {:>14}",
        "TERMINAL", "SYNCED", "PENDING", "REJECTED", "REJECTED ORDERS"
    );
    for (name, f) in &rows {
        let e = &f.events;
        let _ = writeln!(
            out,
            "{name:<16} {:>8} {:>8} {:>9} {:>14}",
            e.synced, e.pending, e.rejected, f.rejected_orders
        );
    }
    if !r.events_complete {
        let _ = writeln!(
            out,
            "note: {} synced events of these orders and returns are no longer in the outbox (acked rows \
             are pruned after {} days, [outbox] retention_days); they are counted as synced \
             from the orders and returns",
            r.total.events.pruned, r.outbox_retention_days
        );
    }

    out.push_str("\nREJECTED BY THE CLOUD\n");
    if r.rejections.is_empty() {
        out.push_str("(none)\n");
    } else {
        let _ = writeln!(
            out,
            "{:<36} {:<16} {:>14} {:<4} {:<24} REASON",
            "ORDER_ID", "TERMINAL", "TOTAL", "CUR", "CODE"
        );
        for j in &r.rejections {
            let _ = writeln!(
                out,
                "{:<36} {:<16} {:>14} {:<4} {:<24} {}",
                j.order_id,
                j.terminal_id,
                money(j.total_minor, &j.currency),
                j.currency,
                j.code,
                j.reason
            );
        }
    }
    out
}

/// The returns taken at each terminal (money per currency, then the
/// counts in no amount) and the cash they leave in the drawer.
fn returns(out: &mut String, r: &ZReport, rows: &[(&str, &Figures)]) {
    let _ = writeln!(
        out,
        "\nRETURNS (priced; the refused and unpriced ones below are in no amount)\n\
         {:<16} {:<4} {:>7} {:>14} {:>14} {:>14} {:>14} {:>17}",
        "TERMINAL", "CUR", "RETURNS", "CARD", "CASH", "GIFT CARD", "RETURNED", "NET AFTER RETURNS"
    );
    if r.total.returns == 0 && r.total.returns_refused == 0 {
        out.push_str("(no returns taken in this business day)\n");
    }
    for (name, f) in rows {
        for c in f.currencies.iter().filter(|c| c.returns > 0) {
            let m = |v| money(v, &c.currency);
            let _ = writeln!(
                out,
                "{name:<16} {:<4} {:>7} {:>14} {:>14} {:>14} {:>14} {:>17}",
                c.currency,
                c.returns,
                m(c.refunds.card_minor),
                m(c.refunds.cash_minor),
                m(c.refunds.gift_card_minor),
                m(c.returned_minor),
                m(c.net_after_returns_minor)
            );
        }
    }
    if r.total.returns_refused > 0 || r.total.returns_unpriced > 0 {
        let _ = writeln!(
            out,
            "{:<16} {:>8} {:>9}  (unpriced: the amount is not known yet, in no figure)",
            "TERMINAL", "REFUSED", "UNPRICED"
        );
        for (name, f) in rows {
            let _ = writeln!(
                out,
                "{name:<16} {:>8} {:>9}",
                f.returns_refused, f.returns_unpriced
            );
        }
    }

    let _ = writeln!(
        out,
        "\nCASH DRAWER (cash of orders not voided minus cash refunds; float not included)\n\
         {:<16} {:<4} {:>14} {:>14} {:>14}",
        "TERMINAL", "CUR", "CASH IN", "CASH REFUNDS", "IN DRAWER"
    );
    for (name, f) in rows {
        for c in &f.currencies {
            let m = |v| money(v, &c.currency);
            let _ = writeln!(
                out,
                "{name:<16} {:<4} {:>14} {:>14} {:>14}",
                c.currency,
                m(c.tenders.cash_minor),
                m(c.refunds.cash_minor),
                m(c.cash_in_drawer_minor)
            );
        }
    }
}

/// `minor` in major units of `code` (`2998` CAD is `29.98`); raw minor
/// units for a code without a known exponent.
pub(crate) fn money(minor: i64, code: &str) -> String {
    let exp = o2c_protocol::Currency::from_code(code)
        .ok()
        .and_then(|c| c.exponent())
        .unwrap_or(0);
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    match 10u64.checked_pow(u32::from(exp)) {
        Some(scale) if exp > 0 => format!(
            "{sign}{}.{:0width$}",
            abs / scale,
            abs % scale,
            width = usize::from(exp)
        ),
        _ => format!("{sign}{abs}"),
    }
}
