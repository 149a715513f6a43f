//! The Z-report of a business day (issue 18), per terminal and for the
//! store: pure, rows in → report out. No database, no clock: the store
//! reads the rows (`store::report`, into the types of [`rows`]), the
//! caller passes `now`, and the shells are `GET /v1/reports/z`
//! (`api::report`) and `o2c-agent report z` (`admin::report_z`, rendered
//! by [`text`]).
//!
//! The figures, per terminal and in total, per currency (money is never
//! summed across currencies):
//! - `orders`: orders captured in the business day's window, voided ones
//!   included; `voids`: those since voided (`status = cancelled`).
//! - `gross_minor`: the totals of all of them; `voided_minor`: of the
//!   voided ones; `net_minor = gross_minor - voided_minor`.
//! - `tenders`: the payments of the orders not voided, each part of a
//!   split tender in its own tender (card online, card offline, cash, gift
//!   card); they add up to `net_minor`.
//! - `offline_unconfirmed_*`: offline card money the cloud has not
//!   confirmed yet (not released by an ack), exactly what counts against
//!   the store's offline cap; a voided sale counts until its ack too.
//! - `rejected_orders` (and the report's `rejections`): orders the cloud
//!   refused for good (`sync = rejected`), with its code.
//! - Returns taken at the terminal in the window (by the return's
//!   `created_at_ms`), whatever order they are of: `returns` (those the
//!   cloud refused excluded; refused ones are `returns_refused` and in no
//!   amount), of which `returns_unpriced` have no known amount yet (an
//!   order not known here the cloud has not priced: no amount, no
//!   currency, so counted in [`Figures`] only). The priced ones, per
//!   currency (a currency with returns and no sales still gets its entry):
//!   `returns`, `refunds` by refund tender (the cloud's amount once it gave
//!   one, else this agent's) and `returned_minor` their sum;
//!   `net_after_returns_minor = net_minor - returned_minor`; and
//!   `cash_in_drawer_minor = tenders.cash_minor - refunds.cash_minor`, the
//!   cash the day's sales and returns left in the drawer (the opening
//!   float not included).
//! - `events`: the outbox events of the day's orders (their
//!   `OrderCreated`, and `OrderCancelled` for a void, whenever it
//!   happened) and of the day's returns (their `ReturnRequested`) by
//!   state. Acked rows are pruned after `[outbox] retention_days`; every
//!   order has one `OrderCreated`, every void one `OrderCancelled` and
//!   every return one `ReturnRequested`, and only acked rows are pruned,
//!   so a missing row is a synced event: it is counted in `synced` and
//!   also in `pruned`, and [`ZReport::events_complete`] says so.

mod rows;
mod text;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::Date;
use utoipa::ToSchema;

use crate::business_day::{BusinessDay, BusinessDayError};

pub use rows::{
    Amount, DayRows, EventCount, EventKind, EventState, OrderRow, RefundMethod, ReturnRow, Tender,
};
pub use text::render_text;

/// Why a report could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// A sum does not fit in 64 bits.
    #[error("the {what} of {currency} overflows")]
    Overflow {
        /// Which figure.
        what: &'static str,
        /// Its currency.
        currency: String,
    },
}

/// Who and when: what the report says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportMeta {
    /// The store.
    pub store_id: String,
    /// The business date, `YYYY-MM-DD`.
    pub business_date: String,
    /// IANA time zone of the store.
    pub timezone: String,
    /// Closing time, `HH:MM`.
    pub closes_at: String,
    /// `[start, end)` of the business day, Unix ms.
    pub window_ms: (i64, i64),
    /// When the report is made, Unix ms.
    pub now_ms: i64,
    /// `[outbox] retention_days`.
    pub retention_days: u32,
}

/// `GET /v1/reports/z` and `o2c-agent report z --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ZReport {
    /// The store.
    #[schema(example = "S001")]
    pub store_id: String,
    /// The business date reported, `YYYY-MM-DD`.
    #[schema(example = "2026-12-03")]
    pub business_date: String,
    /// The store's IANA time zone (`[store] timezone`).
    #[schema(example = "Europe/Paris")]
    pub timezone: String,
    /// When the business day closes, wall clock `HH:MM`
    /// (`[business_day] closes_at`).
    #[schema(example = "03:00")]
    pub closes_at: String,
    /// First moment of the business day, RFC 3339 (UTC).
    pub window_start: String,
    /// End of the business day (excluded), RFC 3339 (UTC).
    pub window_end: String,
    /// When this report was made, RFC 3339 (the agent's clock).
    pub generated_at: String,
    /// Whether the business day is over; while it is not, the figures
    /// still change.
    pub day_closed: bool,
    /// Per terminal that captured orders or took returns in the window,
    /// by id.
    pub terminals: Vec<TerminalFigures>,
    /// The whole store.
    pub total: Figures,
    /// The day's orders the cloud rejected, oldest first.
    pub rejections: Vec<Rejection>,
    /// `[outbox] retention_days`: acked events older than this are pruned.
    pub outbox_retention_days: u32,
    /// Whether every event of the day's orders and returns is still in
    /// the outbox.
    /// When not, the missing ones were acked and pruned: they are counted
    /// as `synced` (and in `pruned`).
    pub events_complete: bool,
}

/// One terminal's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TerminalFigures {
    /// The terminal.
    #[schema(example = "T1")]
    pub terminal_id: String,
    /// Its figures.
    pub figures: Figures,
}

/// The figures of a terminal or of the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Figures {
    /// Per currency, by code.
    pub currencies: Vec<CurrencyFigures>,
    /// Orders the cloud rejected.
    pub rejected_orders: u64,
    /// Returns taken in the window, those the cloud refused excluded:
    /// the priced ones (`returns` of each currency) and
    /// `returns_unpriced`.
    pub returns: u64,
    /// Returns the cloud refused (`return_refused`): in no other figure.
    pub returns_refused: u64,
    /// Of `returns`, those whose amount is not known yet (an order not
    /// known here, the cloud has not priced it): in no amount and no
    /// currency.
    pub returns_unpriced: u64,
    /// The outbox events of these orders and returns by state.
    pub events: EventFigures,
}

/// Sales and returns in one currency. Amounts are minor units of
/// `currency`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CurrencyFigures {
    /// ISO 4217 code.
    #[schema(example = "CAD")]
    pub currency: String,
    /// Orders captured, voided ones included.
    pub orders: u64,
    /// Of which voided.
    pub voids: u64,
    /// Totals of all orders captured.
    pub gross_minor: i64,
    /// Totals of the voided ones.
    pub voided_minor: i64,
    /// `gross_minor - voided_minor`.
    pub net_minor: i64,
    /// Payments of the orders not voided, by tender (sums to `net_minor`).
    pub tenders: Tenders,
    /// Orders with offline card money the cloud has not confirmed yet.
    pub offline_unconfirmed_orders: u64,
    /// That money (voided sales included until their ack: what counts
    /// against the store's offline cap).
    pub offline_unconfirmed_minor: i64,
    /// Returns in this currency whose amount is known, those the cloud
    /// refused excluded.
    pub returns: u64,
    /// Their money by refund tender: the cloud's amount once it gave one,
    /// else this agent's.
    pub refunds: Refunds,
    /// All of it: the sum of `refunds`.
    pub returned_minor: i64,
    /// `net_minor - returned_minor`.
    pub net_after_returns_minor: i64,
    /// The cash the day's sales and returns left in the drawer:
    /// `tenders.cash_minor - refunds.cash_minor` (cash paid for the orders
    /// not voided, minus cash paid back for returns). The opening float is
    /// not included; negative when more cash went out than came in.
    pub cash_in_drawer_minor: i64,
}

/// Money given back by refund tender, minor units.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Refunds {
    /// Back to the card the order was paid with.
    pub card_minor: i64,
    /// Cash out of the drawer.
    pub cash_minor: i64,
    /// Store credit on gift cards.
    pub gift_card_minor: i64,
}

/// Payments by tender, minor units.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Tenders {
    /// Cards authorised online.
    pub card_online_minor: i64,
    /// Cards accepted offline.
    pub card_offline_minor: i64,
    /// Cash.
    pub cash_minor: i64,
    /// Gift cards.
    pub gift_card_minor: i64,
}

/// Outbox events by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventFigures {
    /// Acked by the cloud (`pruned` included).
    pub synced: u64,
    /// Waiting for the cloud.
    pub pending: u64,
    /// Refused by the cloud.
    pub rejected: u64,
    /// Synced events no longer in the outbox (pruned after
    /// `outbox_retention_days`); counted from the orders.
    pub pruned: u64,
}

/// An order the cloud rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rejection {
    /// The order.
    pub order_id: String,
    /// Its terminal.
    pub terminal_id: String,
    /// ISO 4217.
    pub currency: String,
    /// Its total, minor units.
    pub total_minor: i64,
    /// The cloud's code.
    pub code: String,
    /// The cloud's reason.
    pub reason: String,
}

/// The [`ReportMeta`] of the business date `date` of `day`'s store.
pub fn meta_for(
    store_id: &str,
    day: &BusinessDay,
    date: Date,
    retention_days: u32,
    now_ms: i64,
) -> Result<ReportMeta, BusinessDayError> {
    Ok(ReportMeta {
        store_id: store_id.to_owned(),
        business_date: format_date(date),
        timezone: day.zone().name().to_owned(),
        closes_at: day.closes_at().to_string(),
        window_ms: day.window(date)?,
        now_ms,
        retention_days,
    })
}

/// `date` as `YYYY-MM-DD` (what [`parse_date`](crate::business_day::parse_date) reads).
pub fn format_date(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// Builds the report of one business day from its rows.
pub fn build(meta: &ReportMeta, rows: &DayRows) -> Result<ZReport, ReportError> {
    let mut by_terminal: BTreeMap<&str, Acc> = BTreeMap::new();
    let mut total = Acc::default();
    for o in &rows.orders {
        total.add_order(o)?;
        by_terminal
            .entry(o.terminal_id.as_str())
            .or_default()
            .add_order(o)?;
    }
    for r in &rows.returns {
        total.add_return(r)?;
        by_terminal
            .entry(r.terminal_id.as_str())
            .or_default()
            .add_return(r)?;
    }
    for e in &rows.events {
        total.add_events(e);
        by_terminal
            .entry(e.terminal_id.as_str())
            .or_default()
            .add_events(e);
    }
    let total = total.finish();
    let mut rejections: Vec<Rejection> = rows
        .orders
        .iter()
        .filter_map(|o| {
            o.rejected.as_ref().map(|(code, reason)| Rejection {
                order_id: o.order_id.clone(),
                terminal_id: o.terminal_id.clone(),
                currency: o.currency.clone(),
                total_minor: o.total_minor,
                code: code.clone(),
                reason: reason.clone(),
            })
        })
        .collect();
    rejections.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    let (start, end) = meta.window_ms;
    Ok(ZReport {
        store_id: meta.store_id.clone(),
        business_date: meta.business_date.clone(),
        timezone: meta.timezone.clone(),
        closes_at: meta.closes_at.clone(),
        window_start: crate::api::rfc3339_ms(start),
        window_end: crate::api::rfc3339_ms(end),
        generated_at: crate::api::rfc3339_ms(meta.now_ms),
        day_closed: meta.now_ms >= end,
        events_complete: total.events.pruned == 0,
        terminals: by_terminal
            .into_iter()
            .map(|(id, acc)| TerminalFigures {
                terminal_id: id.to_owned(),
                figures: acc.finish(),
            })
            .collect(),
        total,
        rejections,
        outbox_retention_days: meta.retention_days,
    })
}

/// Running sums of a terminal or of the store.
#[derive(Debug, Default)]
struct Acc {
    currencies: BTreeMap<String, CurrencyFigures>,
    rejected_orders: u64,
    returns: u64,
    returns_refused: u64,
    returns_unpriced: u64,
    /// Events the rows must have: one per order, one more per void, one
    /// per return.
    expected_events: u64,
    /// `OrderCreated`, `OrderCancelled` and `ReturnRequested` rows found.
    found_events: u64,
    events: EventFigures,
}

impl Acc {
    /// The figures of `code`, created empty.
    fn currency(&mut self, code: &str) -> &mut CurrencyFigures {
        self.currencies
            .entry(code.to_owned())
            .or_insert_with(|| CurrencyFigures {
                currency: code.to_owned(),
                ..CurrencyFigures::default()
            })
    }

    fn add_order(&mut self, o: &OrderRow) -> Result<(), ReportError> {
        let c = self.currency(&o.currency);
        let overflow = |what| overflow(what, &o.currency);
        c.orders += 1;
        c.gross_minor = add(c.gross_minor, o.total_minor).ok_or_else(|| overflow("gross"))?;
        if o.voided {
            c.voids += 1;
            c.voided_minor =
                add(c.voided_minor, o.total_minor).ok_or_else(|| overflow("voided total"))?;
        } else {
            for &(tender, amount) in &o.tenders {
                let slot = match tender {
                    Tender::CardOnline => &mut c.tenders.card_online_minor,
                    Tender::CardOffline => &mut c.tenders.card_offline_minor,
                    Tender::Cash => &mut c.tenders.cash_minor,
                    Tender::GiftCard => &mut c.tenders.gift_card_minor,
                };
                *slot = add(*slot, amount).ok_or_else(|| overflow("tender total"))?;
            }
        }
        if o.offline_unconfirmed_minor > 0 {
            c.offline_unconfirmed_orders += 1;
            c.offline_unconfirmed_minor =
                add(c.offline_unconfirmed_minor, o.offline_unconfirmed_minor)
                    .ok_or_else(|| overflow("unconfirmed offline card money"))?;
        }
        settle(c)?;
        if o.rejected.is_some() {
            self.rejected_orders += 1;
        }
        self.expected_events += 1 + u64::from(o.voided);
        Ok(())
    }

    fn add_return(&mut self, r: &ReturnRow) -> Result<(), ReportError> {
        self.expected_events += 1;
        if r.refused() {
            self.returns_refused += 1;
            return Ok(());
        }
        self.returns += 1;
        let Some(amount) = r.amount() else {
            self.returns_unpriced += 1;
            return Ok(());
        };
        let c = self.currency(&amount.currency);
        let overflow = |what| overflow(what, &amount.currency);
        c.returns += 1;
        let slot = match r.refund {
            RefundMethod::Card => &mut c.refunds.card_minor,
            RefundMethod::Cash => &mut c.refunds.cash_minor,
            RefundMethod::GiftCard => &mut c.refunds.gift_card_minor,
        };
        *slot = add(*slot, amount.minor).ok_or_else(|| overflow("refund total"))?;
        c.returned_minor =
            add(c.returned_minor, amount.minor).ok_or_else(|| overflow("returned total"))?;
        settle(c)
    }

    fn add_events(&mut self, e: &EventCount) {
        let slot = match e.state {
            EventState::Synced => &mut self.events.synced,
            EventState::Pending => &mut self.events.pending,
            EventState::Rejected => &mut self.events.rejected,
        };
        *slot += e.count;
        if e.kind != EventKind::Other {
            self.found_events += e.count;
        }
    }

    fn finish(mut self) -> Figures {
        // Only acked rows are pruned: a missing one was synced.
        let pruned = self.expected_events.saturating_sub(self.found_events);
        self.events.pruned = pruned;
        self.events.synced += pruned;
        Figures {
            currencies: self.currencies.into_values().collect(),
            rejected_orders: self.rejected_orders,
            returns: self.returns,
            returns_refused: self.returns_refused,
            returns_unpriced: self.returns_unpriced,
            events: self.events,
        }
    }
}

/// Recomputes the figures derived from the sums of `c`.
fn settle(c: &mut CurrencyFigures) -> Result<(), ReportError> {
    let overflow = |what| overflow(what, &c.currency);
    c.net_minor = c
        .gross_minor
        .checked_sub(c.voided_minor)
        .ok_or_else(|| overflow("net"))?;
    c.net_after_returns_minor = c
        .net_minor
        .checked_sub(c.returned_minor)
        .ok_or_else(|| overflow("net after returns"))?;
    c.cash_in_drawer_minor = c
        .tenders
        .cash_minor
        .checked_sub(c.refunds.cash_minor)
        .ok_or_else(|| overflow("cash in drawer"))?;
    Ok(())
}

fn overflow(what: &'static str, currency: &str) -> ReportError {
    ReportError::Overflow {
        what,
        currency: currency.to_owned(),
    }
}

fn add(a: i64, b: i64) -> Option<i64> {
    a.checked_add(b)
}

#[cfg(test)]
mod tests;
