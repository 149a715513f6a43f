//! Opening hours, pure once built: whether a store is open at an instant,
//! on its own wall clock (IANA time zone, so daylight saving time moves the
//! hours with the clocks). Built from `[fleet.hours]` and
//! `[fleet.stores.ID]`; the time zones are looked up in the system's tz
//! database once, at start.

use std::collections::HashMap;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use o2c_cloud_common::config::{FleetConfig, OpeningHours};
use o2c_protocol::StoreId;

/// Why the opening hours cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct HoursError {
    /// The config key.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Clone)]
struct Hours {
    tz: TimeZone,
    open: u16,
    close: u16,
}

impl Hours {
    fn build(key: String, h: &OpeningHours) -> Result<Self, HoursError> {
        let (open, close) = h.minutes().map_err(|message| HoursError {
            key: key.clone(),
            message,
        })?;
        let tz = TimeZone::get(&h.timezone).map_err(|e| HoursError {
            key: format!("{key}.timezone"),
            message: format!("{:?}: {e}", h.timezone),
        })?;
        Ok(Self { tz, open, close })
    }

    fn is_open(&self, now_ms: i64) -> bool {
        let Ok(t) = Timestamp::from_millisecond(now_ms) else {
            return true;
        };
        let local = t.to_zoned_datetime(self.tz.clone());
        let minute =
            u16::try_from(i32::from(local.hour()) * 60 + i32::from(local.minute())).unwrap_or(0);
        if self.open < self.close {
            (self.open..self.close).contains(&minute)
        } else {
            minute >= self.open || minute < self.close
        }
    }
}

/// Every store's opening hours.
#[derive(Debug, Clone)]
pub struct StoreHours {
    default: Hours,
    stores: HashMap<StoreId, Hours>,
}

impl StoreHours {
    /// From `[fleet]`.
    pub fn from_config(cfg: &FleetConfig) -> Result<Self, HoursError> {
        let default = Hours::build("fleet.hours".into(), &cfg.hours)?;
        let mut stores = HashMap::new();
        for (id, h) in &cfg.stores {
            let key = format!("fleet.stores.{id}");
            let store = StoreId::new(id.as_str()).map_err(|e| HoursError {
                key: key.clone(),
                message: e.to_string(),
            })?;
            stores.insert(store, Hours::build(key, h)?);
        }
        Ok(Self { default, stores })
    }

    /// Whether `store` is open at `now_ms`.
    pub fn is_open(&self, store: &StoreId, now_ms: i64) -> bool {
        self.stores
            .get(store)
            .unwrap_or(&self.default)
            .is_open(now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(tz: &str, open: &str, close: &str) -> OpeningHours {
        OpeningHours {
            timezone: tz.into(),
            open: open.into(),
            close: close.into(),
        }
    }

    fn at(rfc3339: &str) -> i64 {
        rfc3339.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn open_on_the_store_clock() {
        let mut cfg = FleetConfig::default();
        cfg.stores
            .insert("S1".into(), hours("America/Toronto", "08:00", "21:00"));
        cfg.stores
            .insert("S2".into(), hours("UTC", "22:00", "06:00"));
        let h = StoreHours::from_config(&cfg).unwrap();
        let s1 = StoreId::new("S1").unwrap();
        let s2 = StoreId::new("S2").unwrap();
        let other = StoreId::new("S9").unwrap();
        // 12:30 UTC in winter is 07:30 in Toronto: closed; 13:00 is 08:00.
        assert!(!h.is_open(&s1, at("2026-12-07T12:30:00Z")));
        assert!(h.is_open(&s1, at("2026-12-07T13:00:00Z")));
        assert!(!h.is_open(&s1, at("2026-12-08T02:00:00Z")));
        // In summer Toronto is UTC-4: 12:30 UTC is 08:30, open.
        assert!(h.is_open(&s1, at("2026-07-07T12:30:00Z")));
        // Over midnight.
        assert!(h.is_open(&s2, at("2026-12-07T23:00:00Z")));
        assert!(h.is_open(&s2, at("2026-12-07T05:59:00Z")));
        assert!(!h.is_open(&s2, at("2026-12-07T06:00:00Z")));
        // The default is always open.
        assert!(h.is_open(&other, at("2026-12-07T03:00:00Z")));
    }

    #[test]
    fn an_unknown_zone_names_its_key() {
        let mut cfg = FleetConfig::default();
        cfg.stores
            .insert("S1".into(), hours("Mars/Olympus", "08:00", "21:00"));
        let e = StoreHours::from_config(&cfg).unwrap_err();
        assert_eq!(e.key, "fleet.stores.S1.timezone");
    }
}
