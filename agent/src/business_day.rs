//! The store's business day: which calendar date a moment belongs to, and
//! the moments a date covers.
//!
//! A store's day does not end at midnight UTC. It ends at `[business_day]
//! closes_at` (for example `03:00`) on the store's wall clock (`[store]
//! timezone`, an IANA name such as `Europe/Paris`, from the system's tz
//! database). A sale at 01:30 on the 4th, with the day closing at 03:00,
//! belongs to the business date of the 3rd.
//!
//! [`BusinessDay::window`] gives the half-open range of Unix milliseconds of
//! a date; [`BusinessDay::date_of`] is its inverse and agrees with it across
//! daylight-saving changes (a closing time that does not exist on the day
//! clocks spring forward is moved on by the gap, 02:30 becoming 03:30; one
//! that happens twice is taken at its first occurrence). Pure: no clock is
//! read.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use jiff::civil;
use jiff::tz::TimeZone;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::Date;

/// Why a time zone, closing time or date was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusinessDayError {
    /// Not an IANA time zone name known to this system's tz database.
    #[error("unknown time zone {0:?} (an IANA name such as \"Europe/Paris\"): {1}")]
    Zone(String, String),
    /// Not `HH:MM` (24-hour).
    #[error("not a time of day as HH:MM: {0:?}")]
    Time(String),
    /// Not `YYYY-MM-DD`.
    #[error("not a date as YYYY-MM-DD: {0:?}")]
    Date(String),
    /// A date outside what the tz database covers.
    #[error("date out of range: {0}")]
    Range(String),
}

/// `[store] timezone`: an IANA time zone, checked against the tz database
/// when the configuration loads.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreZone {
    name: String,
    zone: TimeZone,
}

impl StoreZone {
    /// UTC.
    pub fn utc() -> StoreZone {
        StoreZone {
            name: "UTC".to_owned(),
            zone: TimeZone::UTC,
        }
    }

    /// The IANA name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Default for StoreZone {
    fn default() -> Self {
        StoreZone::utc()
    }
}

impl FromStr for StoreZone {
    type Err = BusinessDayError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let zone =
            TimeZone::get(s).map_err(|e| BusinessDayError::Zone(s.to_owned(), e.to_string()))?;
        Ok(StoreZone {
            name: s.to_owned(),
            zone,
        })
    }
}

/// `[business_day] closes_at`: a wall-clock time of day, `HH:MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosingTime(civil::Time);

impl ClosingTime {
    /// Midnight.
    pub const MIDNIGHT: ClosingTime = ClosingTime(civil::Time::midnight());
}

impl Default for ClosingTime {
    fn default() -> Self {
        ClosingTime::MIDNIGHT
    }
}

impl FromStr for ClosingTime {
    type Err = BusinessDayError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BusinessDayError::Time(s.to_owned());
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        let h: i8 = h.parse().map_err(|_| bad())?;
        let m: i8 = m.parse().map_err(|_| bad())?;
        civil::Time::new(h, m, 0, 0)
            .map(ClosingTime)
            .map_err(|_| bad())
    }
}

impl fmt::Display for ClosingTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0.hour(), self.0.minute())
    }
}

macro_rules! string_serde {
    ($t:ty, $show:expr) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                #[allow(clippy::redundant_closure_call)]
                s.serialize_str(&($show)(self))
            }
        }
    };
}
string_serde!(StoreZone, |z: &StoreZone| z.name.clone());
string_serde!(ClosingTime, |t: &ClosingTime| t.to_string());

/// The years a business date may fall in: a store's days are recorded in
/// Unix milliseconds and printed in RFC 3339, which has no year before 1 or
/// after 9999; nothing sold before 1970.
pub const YEARS: std::ops::RangeInclusive<i32> = 1970..=9998;

/// Parses a business date given as `YYYY-MM-DD`, in [`YEARS`].
pub fn parse_date(s: &str) -> Result<Date, BusinessDayError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = Date::parse(s, format).map_err(|_| BusinessDayError::Date(s.to_owned()))?;
    if !YEARS.contains(&date.year()) {
        return Err(BusinessDayError::Range(format!(
            "{s}: a business date is between {}-01-01 and {}-12-31",
            YEARS.start(),
            YEARS.end()
        )));
    }
    Ok(date)
}

/// A store's business day: its zone and its closing time.
#[derive(Debug, Clone, PartialEq)]
pub struct BusinessDay {
    zone: StoreZone,
    closes_at: ClosingTime,
}

impl BusinessDay {
    /// The day of a store in `zone` that closes at `closes_at`.
    pub fn new(zone: StoreZone, closes_at: ClosingTime) -> BusinessDay {
        BusinessDay { zone, closes_at }
    }

    /// The store's zone.
    pub fn zone(&self) -> &StoreZone {
        &self.zone
    }

    /// When the day closes, wall clock.
    pub fn closes_at(&self) -> ClosingTime {
        self.closes_at
    }

    /// `[start, end)` in Unix milliseconds of the business date `date`:
    /// from its closing time on `date` to its closing time on the next day
    /// (a day that closes at midnight is the calendar day).
    pub fn window(&self, date: Date) -> Result<(i64, i64), BusinessDayError> {
        let start = self.boundary(date)?;
        let next = date
            .next_day()
            .ok_or_else(|| BusinessDayError::Range(date.to_string()))?;
        Ok((start, self.boundary(next)?))
    }

    /// The business date the moment `at_ms` (Unix milliseconds) belongs to.
    pub fn date_of(&self, at_ms: i64) -> Result<Date, BusinessDayError> {
        let range = || BusinessDayError::Range(at_ms.to_string());
        let ts = Timestamp::from_millisecond(at_ms).map_err(|_| range())?;
        let local = self.zone.zone.to_datetime(ts);
        // Wall clock minus the closing time is the business date, except
        // near a daylight-saving change: settle it against the windows.
        let shifted = local
            .checked_sub(jiff::SignedDuration::from_secs(
                i64::from(self.closes_at.0.hour()) * 3600
                    + i64::from(self.closes_at.0.minute()) * 60,
            ))
            .map_err(|_| range())?;
        let mut date = to_time(shifted.date()).ok_or_else(range)?;
        for _ in 0..2 {
            let (start, end) = self.window(date)?;
            if at_ms < start {
                date = date.previous_day().ok_or_else(range)?;
            } else if at_ms >= end {
                date = date.next_day().ok_or_else(range)?;
            } else {
                return Ok(date);
            }
        }
        Ok(date)
    }

    /// Unix milliseconds of the closing time on `date`, in the zone.
    fn boundary(&self, date: Date) -> Result<i64, BusinessDayError> {
        let range = || BusinessDayError::Range(date.to_string());
        let civil_date = civil::Date::new(
            i16::try_from(date.year()).map_err(|_| range())?,
            u8::from(date.month()) as i8,
            date.day() as i8,
        )
        .map_err(|_| range())?;
        let dt = civil_date.to_datetime(self.closes_at.0);
        // `compatible()`: a time in a gap moves on by the gap, a fold takes
        // the earlier moment.
        let ts = self
            .zone
            .zone
            .to_ambiguous_timestamp(dt)
            .compatible()
            .map_err(|_| range())?;
        Ok(ts.as_millisecond())
    }
}

fn to_time(d: civil::Date) -> Option<Date> {
    let month = time::Month::try_from(d.month() as u8).ok()?;
    Date::from_calendar_date(i32::from(d.year()), month, d.day() as u8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(zone: &str, closes: &str) -> BusinessDay {
        BusinessDay::new(zone.parse().unwrap(), closes.parse().unwrap())
    }

    fn ms(rfc3339: &str) -> i64 {
        rfc3339.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn date(s: &str) -> Date {
        parse_date(s).unwrap()
    }

    #[test]
    fn a_sale_before_the_closing_time_belongs_to_the_day_before() {
        let d = day("Europe/Paris", "03:00");
        // 01:30 Paris on the 4th (winter, UTC+1) is 00:30 UTC.
        assert_eq!(
            d.date_of(ms("2026-12-04T00:30:00Z")).unwrap(),
            date("2026-12-03")
        );
        // 03:00 Paris exactly opens the 4th.
        assert_eq!(
            d.date_of(ms("2026-12-04T02:00:00Z")).unwrap(),
            date("2026-12-04")
        );
        assert_eq!(
            d.window(date("2026-12-03")).unwrap(),
            (ms("2026-12-03T02:00:00Z"), ms("2026-12-04T02:00:00Z"))
        );
    }

    #[test]
    fn windows_follow_daylight_saving_changes_and_tile_time() {
        // Clocks went forward in Paris at 02:00 on 2026-03-29 (02:30 does
        // not exist that day) and back at 03:00 on 2026-10-25.
        let d = day("Europe/Paris", "02:30");
        let (s, e) = d.window(date("2026-03-28")).unwrap();
        assert_eq!(s, ms("2026-03-28T01:30:00Z"));
        // The missing 02:30 is moved on by the hour-long gap: 03:30 CEST,
        // 01:30 UTC.
        assert_eq!(e, ms("2026-03-29T01:30:00Z"));
        let mut at = ms("2026-03-20T00:00:00Z");
        let mut prev: Option<(Date, i64)> = None;
        while at < ms("2026-11-05T00:00:00Z") {
            let dt = d.date_of(at).unwrap();
            let (s, e) = d.window(dt).unwrap();
            assert!(s <= at && at < e, "{at} not in its own window");
            if let Some((p, pe)) = prev
                && p != dt
            {
                assert_eq!(p.next_day(), Some(dt), "no date is skipped");
                assert_eq!(pe, s, "windows tile");
            }
            prev = Some((dt, e));
            at += 15 * 60 * 1000;
        }
    }

    #[test]
    fn bad_settings_are_refused_with_what_was_given() {
        assert!(matches!(
            "Mars/Olympus".parse::<StoreZone>(),
            Err(BusinessDayError::Zone(..))
        ));
        for bad in ["3:00", "24:00", "03:60", "0300", "ab:cd", ""] {
            assert_eq!(
                bad.parse::<ClosingTime>(),
                Err(BusinessDayError::Time(bad.to_owned()))
            );
        }
        assert_eq!(
            parse_date("2026-13-01"),
            Err(BusinessDayError::Date("2026-13-01".into()))
        );
        // Whatever the closing time and zone, a date out of range is
        // refused, never a window that cannot be printed.
        for far in ["-9999-01-01", "0001-01-01", "1969-12-31", "9999-12-31"] {
            assert!(
                matches!(parse_date(far), Err(BusinessDayError::Range(_))),
                "{far}"
            );
        }
        assert_eq!("23:59".parse::<ClosingTime>().unwrap().to_string(), "23:59");
        let utc = day("UTC", "00:00");
        assert_eq!(
            utc.date_of(ms("2026-12-04T23:59:59Z")).unwrap(),
            date("2026-12-04")
        );
    }
}
