//! `[fleet]`: the fleet view (`o2c-cloud fleet serve`): where it serves
//! `/v1/fleet`, `/fleet` and its metrics, when an agent counts as stale,
//! and each store's opening hours (the offline alert fires only while a
//! store is open; see `deploy/monitoring/o2c-fleet.rules.yml`).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use o2c_protocol::StoreId;
use o2c_runtime::config::ConfigError;
use serde::{Deserialize, Serialize};

/// `[fleet]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// `/healthz`, `/readyz`, `/metrics`, `GET /v1/fleet` and the page
    /// `/fleet`.
    #[serde(default = "default_http_listen")]
    pub http_listen: SocketAddr,
    /// Where `o2c-cloud fleet` asks for the table (default: `http://`
    /// `http_listen`); set it when the service runs elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// MQTT client id (a random suffix is added). With TLS the broker
    /// knows the service by its certificate's CN, `o2c-fleet`.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// An online agent silent for more than this many of its heartbeat
    /// intervals is shown stale (default 3).
    #[serde(default = "default_stale_after")]
    pub stale_after_heartbeats: u32,
    /// Opening hours of every store without its own entry in `stores`
    /// (default: always open).
    #[serde(default)]
    pub hours: OpeningHours,
    /// Opening hours by store id, e.g. `[fleet.stores.S001]`.
    #[serde(default)]
    pub stores: BTreeMap<String, OpeningHours>,
}

/// A store's daily opening hours on its local wall clock. `close` before
/// `open` spans midnight (`22:00` to `06:00`); `00:00` to `24:00` is
/// always open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpeningHours {
    /// IANA time zone, e.g. `Europe/Paris` (default `UTC`).
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Opens, `HH:MM` (default `00:00`).
    #[serde(default = "default_open")]
    pub open: String,
    /// Closes, `HH:MM` or `24:00` (default `24:00`).
    #[serde(default = "default_close")]
    pub close: String,
}

impl OpeningHours {
    /// `open` and `close` as minutes of the day (`close` may be 1440).
    pub fn minutes(&self) -> Result<(u16, u16), String> {
        let open = parse_hhmm(&self.open).filter(|m| *m < 1440);
        let close = parse_hhmm(&self.close);
        match (open, close) {
            (Some(o), Some(c)) if o != c || (o == 0 && c == 1440) => Ok((o, c)),
            (Some(_), Some(_)) => Err("open and close must differ".into()),
            (None, _) => Err(format!("open {:?}: use HH:MM, 00:00 to 23:59", self.open)),
            (_, None) => Err(format!("close {:?}: use HH:MM, up to 24:00", self.close)),
        }
    }
}

/// `HH:MM` as minutes, up to `24:00`.
fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(1440),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

impl FleetConfig {
    /// Checks what serde cannot (the time zones are checked by the service
    /// at start, against the system's tz database).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.client_id.trim().is_empty() {
            return Err(ConfigError::key("fleet.client_id", "must not be empty"));
        }
        if !(1..=100).contains(&self.stale_after_heartbeats) {
            return Err(ConfigError::key(
                "fleet.stale_after_heartbeats",
                "must be 1 to 100",
            ));
        }
        if let Some(url) = &self.url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::key(
                "fleet.url",
                "must be an http:// or https:// URL",
            ));
        }
        self.hours
            .minutes()
            .map_err(|e| ConfigError::key("fleet.hours", e))?;
        for (store, hours) in &self.stores {
            StoreId::new(store.as_str())
                .map_err(|e| ConfigError::key(format!("fleet.stores.{store}"), e.to_string()))?;
            hours
                .minutes()
                .map_err(|e| ConfigError::key(format!("fleet.stores.{store}"), e))?;
        }
        Ok(())
    }

    /// The base URL of the running service.
    pub fn base_url(&self) -> String {
        self.url.clone().map_or_else(
            || format!("http://{}", self.http_listen),
            |u| u.trim_end_matches('/').to_owned(),
        )
    }
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            http_listen: default_http_listen(),
            url: None,
            client_id: default_client_id(),
            stale_after_heartbeats: default_stale_after(),
            hours: OpeningHours::default(),
            stores: BTreeMap::new(),
        }
    }
}

impl Default for OpeningHours {
    fn default() -> Self {
        Self {
            timezone: default_timezone(),
            open: default_open(),
            close: default_close(),
        }
    }
}

fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9317))
}
fn default_client_id() -> String {
    "o2c-fleet".into()
}
fn default_stale_after() -> u32 {
    3
}
fn default_timezone() -> String {
    "UTC".into()
}
fn default_open() -> String {
    "00:00".into()
}
fn default_close() -> String {
    "24:00".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(open: &str, close: &str) -> OpeningHours {
        OpeningHours {
            timezone: "UTC".into(),
            open: open.into(),
            close: close.into(),
        }
    }

    #[test]
    fn opening_hours_parse() {
        assert_eq!(OpeningHours::default().minutes(), Ok((0, 1440)));
        assert_eq!(hours("08:30", "21:00").minutes(), Ok((510, 1260)));
        assert_eq!(hours("22:00", "06:00").minutes(), Ok((1320, 360)));
        for (o, c) in [
            ("8:00", "21:00"),
            ("24:00", "21:00"),
            ("08:00", "24:01"),
            ("08:00", "08:00"),
            ("08:60", "21:00"),
        ] {
            assert!(hours(o, c).minutes().is_err(), "{o}-{c}");
        }
        let mut f = FleetConfig::default();
        f.stores.insert("S 1".into(), OpeningHours::default());
        assert!(f.validate().is_err());
        assert_eq!(FleetConfig::default().base_url(), "http://127.0.0.1:9317");
    }

    #[test]
    fn the_shipped_example_loads() {
        let text = include_str!("../../../../deploy/cloud/config/fleet.toml");
        let c = crate::config::Config::from_toml(text, []).unwrap();
        assert_eq!(c.fleet.stale_after_heartbeats, 3);
        assert_eq!(c.mqtt.client_id, "o2c-fleet");
        let store = "[fleet.stores.S001]\ntimezone = \"America/Toronto\"\nopen = \"08:00\"\nclose = \"21:00\"\n";
        let c = crate::config::Config::from_toml(&format!("{text}{store}"), []).unwrap();
        assert_eq!(c.fleet.stores["S001"].minutes(), Ok((480, 1260)));
        let bad = "[fleet.stores.S002]\nopen = \"25:00\"\n";
        let e = crate::config::Config::from_toml(&format!("{text}{bad}"), []).unwrap_err();
        assert!(e.to_string().contains("fleet.stores.S002"), "{e}");
    }
}
