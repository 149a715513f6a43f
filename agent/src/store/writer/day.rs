//! Closing business days: the writer appends each overdue day's manifest
//! (`o2c_protocol::day::DayClosed`) to the outbox and records the day in
//! `business_days`, in the group's transaction.
//!
//! A day's events are the agent's non-manifest outbox rows after the last
//! closed day's, up to the last one created before the day's end. The
//! first day closed is the day of the oldest outbox row; from then on every
//! day is closed, with or without sales, so a silent day is a stated zero
//! and not a gap. A closing time that passed while the agent was off is
//! caught up at its next start, one manifest per day.

use o2c_protocol::day::{
    BusinessDate, DAY_CLOSED, DayClosed, DayManifest, DayTally, EventDigest, SeqRange,
};
use o2c_protocol::{Envelope, Event, EventId, Money, Seq};
use rusqlite::{OptionalExtension, params};
use time::{Date, OffsetDateTime};

use super::{State, Writer, to_i64, to_u64};
use crate::business_day::BusinessDay;
use crate::store::StoreError;
use crate::store::types::{ClosedDay, DayCloses};

/// Most days one call closes (a clock set years ahead would otherwise
/// write years of manifests in one transaction); the next call goes on.
const MAX_DAYS_PER_CALL: usize = 62;

/// Longest wait before asking again: a clock or tz database change is
/// noticed within this.
const MAX_WAIT_MS: i64 = 3_600_000;

impl Writer {
    /// Closes every business day that ended at or before `now`.
    pub(super) fn close_days(
        &self,
        st: &mut State,
        day: &BusinessDay,
        now: OffsetDateTime,
        now_ms: i64,
    ) -> Result<DayCloses, StoreError> {
        let corrupt = |what: String| StoreError::Corrupt(what);
        let last: Option<(String, Option<i64>)> = self
            .conn
            .query_row(
                "SELECT business_date, \
                 (SELECT MAX(last_seq) FROM business_days) FROM business_days \
                 ORDER BY business_date DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (mut date, mut cursor) = match last {
            Some((d, cursor)) => {
                let d = BusinessDate::parse(&d).map_err(|e| corrupt(e.to_string()))?;
                (next(d.0)?, cursor.unwrap_or(0))
            }
            None => {
                let first: Option<(i64, i64)> = self
                    .conn
                    .query_row(
                        "SELECT seq, created_at_ms FROM outbox WHERE event_type <> ?1 \
                         ORDER BY seq LIMIT 1",
                        [DAY_CLOSED],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                let Some((seq, at)) = first else {
                    return Ok(DayCloses {
                        closed: Vec::new(),
                        wait_ms: MAX_WAIT_MS as u64,
                    });
                };
                (
                    day.date_of(at).map_err(|e| corrupt(e.to_string()))?,
                    seq - 1,
                )
            }
        };
        let mut closed = Vec::new();
        let mut wait_ms = 0;
        while closed.len() < MAX_DAYS_PER_CALL {
            let (start, end) = day.window(date).map_err(|e| corrupt(e.to_string()))?;
            if end > now_ms {
                wait_ms = (end - now_ms).min(MAX_WAIT_MS);
                break;
            }
            let c = self.close_one(st, day, date, (start, end), cursor, now, now_ms)?;
            if let Some(r) = c.range {
                cursor = to_i64(r.last.get());
            }
            closed.push(c);
            date = next(date)?;
        }
        Ok(DayCloses {
            closed,
            wait_ms: to_u64(wait_ms),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn close_one(
        &self,
        st: &mut State,
        day: &BusinessDay,
        date: Date,
        (start, end): (i64, i64),
        cursor: i64,
        now: OffsetDateTime,
        now_ms: i64,
    ) -> Result<ClosedDay, StoreError> {
        let last: Option<i64> = self.conn.query_row(
            "SELECT MAX(seq) FROM outbox WHERE seq > ?1 AND created_at_ms < ?2 \
             AND event_type <> ?3",
            params![cursor, end, DAY_CLOSED],
            |r| r.get(0),
        )?;
        let mut tally = DayTally::default();
        let mut digest = EventDigest::default();
        let mut first: Option<i64> = None;
        if let Some(last) = last {
            let mut stmt = self.conn.prepare_cached(
                "SELECT x.seq, x.event_id, x.event_type, x.envelope, o.total_minor, o.currency \
                 FROM outbox x LEFT JOIN orders o ON o.order_id = x.order_id \
                 WHERE x.seq > ?1 AND x.seq <= ?2 AND x.event_type <> ?3 ORDER BY x.seq",
            )?;
            let mut rows = stmt.query(params![cursor, last, DAY_CLOSED])?;
            while let Some(r) = rows.next()? {
                let seq: i64 = r.get(0)?;
                first.get_or_insert(seq);
                let id: String = r.get(1)?;
                let id: EventId = id
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("outbox seq {seq}: event id")))?;
                digest.add(&id);
                let kind: String = r.get(2)?;
                let counted = match kind.as_str() {
                    "OrderCreated" => {
                        let bytes: Vec<u8> = r.get(3)?;
                        match Envelope::decode(&bytes).map(|e| e.payload) {
                            Ok(Event::OrderCreated(order)) => tally.add_created(&order),
                            _ => {
                                return Err(StoreError::Corrupt(format!(
                                    "outbox seq {seq}: not an OrderCreated envelope"
                                )));
                            }
                        }
                    }
                    "OrderCancelled" => {
                        let total: Option<i64> = r.get(4)?;
                        let currency: Option<String> = r.get(5)?;
                        let money = match (total, currency) {
                            (Some(t), Some(c)) => o2c_protocol::Currency::from_code(&c)
                                .ok()
                                .map(|c| Money::new(t, c)),
                            _ => None,
                        };
                        tally.add_voided(money)
                    }
                    _ => {
                        tally.add_other();
                        Ok(())
                    }
                };
                counted.map_err(|e| StoreError::Corrupt(format!("outbox seq {seq}: {e}")))?;
            }
        }
        let range = match (first, last) {
            (Some(f), Some(l)) => Some(SeqRange {
                first: seq(f)?,
                last: seq(l)?,
            }),
            _ => None,
        };
        let manifest_seq = seq(to_i64(st.next_seq))?;
        let event_id = EventId::from_uuid(uuid::Uuid::now_v7())
            .map_err(|e| StoreError::Encode(e.to_string()))?;
        let at = |ms: i64| {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .map_err(|e| StoreError::Encode(e.to_string()))
        };
        let manifest = DayManifest {
            business_date: BusinessDate(date),
            timezone: day.zone().name().to_owned(),
            closes_at: day.closes_at().to_string(),
            opened_at: at(start)?,
            closed_at: at(end)?,
            range,
            tally,
            event_ids_sha256: digest.finish(),
        };
        let events = manifest.tally.events;
        let event = DayClosed::new(
            event_id,
            self.store_id.clone(),
            self.agent_id.clone(),
            manifest_seq,
            now,
            manifest,
        );
        let bytes = event
            .encode()
            .map_err(|e| StoreError::Encode(e.to_string()))?;
        // A manifest is about no order: its row's order_id is empty.
        self.insert_outbox(st, manifest_seq, event_id, DAY_CLOSED, "", &bytes, now_ms)?;
        let date_text = BusinessDate(date).to_string();
        self.conn
            .prepare_cached(
                "INSERT INTO business_days \
                 (business_date, first_seq, last_seq, manifest_seq, event_id, closed_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                date_text,
                first,
                last,
                to_i64(manifest_seq.get()),
                event_id.to_string(),
                now_ms
            ])?;
        tracing::info!(
            business_date = %date_text,
            manifest_seq = manifest_seq.get(),
            events,
            first_seq = first,
            last_seq = last,
            "business day closed"
        );
        Ok(ClosedDay {
            business_date: date,
            manifest_seq,
            range,
            events,
        })
    }
}

fn next(d: Date) -> Result<Date, StoreError> {
    d.next_day()
        .ok_or_else(|| StoreError::Corrupt(format!("no day after {d}")))
}

fn seq(v: i64) -> Result<Seq, StoreError> {
    Seq::new(to_u64(v)).map_err(|e| StoreError::Corrupt(e.to_string()))
}
