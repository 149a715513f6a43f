//! The rules serde cannot apply: ranges, keys that go together, unique
//! terminals. Each error names its key.

use std::collections::HashSet;

use super::{Config, ConfigError};

/// Most milliseconds a connection timeout may be.
const MAX_TIMEOUT_MS: u64 = 600_000;

impl Config {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::key("data_dir", "must not be empty"));
        }
        o2c_runtime::mqtt::check_settings(&self.mqtt.url, self.mqtt.tls.as_ref())
            .map_err(|e| mqtt_key(&e))?;
        self.check_mqtt_and_sync()?;
        self.check_terminals()?;
        for (key, value) in [
            (
                "payments.offline_floor_limit_minor",
                self.payments.offline_floor_limit_minor,
            ),
            (
                "payments.offline_total_cap_minor",
                self.payments.offline_total_cap_minor,
            ),
        ] {
            if value < 0 {
                return Err(ConfigError::key(key, "must be >= 0"));
            }
        }
        if self.outbox.max_pending_events == 0 {
            return Err(ConfigError::key(
                "outbox.max_pending_events",
                "must be >= 1",
            ));
        }
        if self.outbox.max_commit_batch == 0 {
            return Err(ConfigError::key("outbox.max_commit_batch", "must be >= 1"));
        }
        self.check_catalog()
    }

    fn check_catalog(&self) -> Result<(), ConfigError> {
        let f = &self.fulfillment;
        if f.check_timeout_ms == 0 || f.check_timeout_ms > MAX_TIMEOUT_MS {
            return Err(ConfigError::key(
                "fulfillment.check_timeout_ms",
                format!("must be between 1 and {MAX_TIMEOUT_MS}"),
            ));
        }
        if f.breaker_failures == 0 {
            return Err(ConfigError::key(
                "fulfillment.breaker_failures",
                "must be >= 1",
            ));
        }
        if f.breaker_open_secs == 0 {
            return Err(ConfigError::key(
                "fulfillment.breaker_open_secs",
                "must be >= 1",
            ));
        }
        let max_ttl = o2c_protocol::catalog::MAX_RESERVATION_TTL_SECS;
        if f.reservation_ttl_secs == 0 || f.reservation_ttl_secs > max_ttl {
            return Err(ConfigError::key(
                "fulfillment.reservation_ttl_secs",
                format!("must be between 1 and {max_ttl}"),
            ));
        }
        let c = &self.catalog;
        if c.poll_interval_secs == 0 {
            return Err(ConfigError::key(
                "catalog.poll_interval_secs",
                "must be >= 1",
            ));
        }
        if c.timeout_ms == 0 || c.timeout_ms > MAX_TIMEOUT_MS {
            return Err(ConfigError::key(
                "catalog.timeout_ms",
                format!("must be between 1 and {MAX_TIMEOUT_MS}"),
            ));
        }
        if let Some(url) = &c.url {
            if !url.starts_with("https://") || url.len() <= "https://".len() {
                return Err(ConfigError::key(
                    "catalog.url",
                    "must be https://host:port (the store is known by its client certificate)",
                ));
            }
            match &self.mqtt.tls {
                Some(t) if t.cert_file.is_some() => {}
                _ => {
                    return Err(ConfigError::key(
                        "catalog.url",
                        "needs [mqtt.tls] with cert_file and key_file: the catalog service \
                         knows the store by that client certificate",
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_mqtt_and_sync(&self) -> Result<(), ConfigError> {
        let frame_room = o2c_protocol::frame::MAX_FRAME_BYTES - 4096;
        if self.sync.max_batch_bytes == 0 || self.sync.max_batch_bytes > frame_room {
            return Err(ConfigError::key(
                "sync.max_batch_bytes",
                format!("must be between 1 and {frame_room}"),
            ));
        }
        if self.sync.max_batch_events == 0 {
            return Err(ConfigError::key("sync.max_batch_events", "must be >= 1"));
        }
        if self.mqtt.keep_alive_secs == 0 {
            return Err(ConfigError::key("mqtt.keep_alive_secs", "must be >= 1"));
        }
        if self.sync.ack_timeout_ms == 0 {
            return Err(ConfigError::key("sync.ack_timeout_ms", "must be >= 1"));
        }
        for (key, ms) in [
            ("mqtt.liveness_timeout_ms", self.mqtt.liveness_timeout_ms),
            ("mqtt.connect_timeout_ms", self.mqtt.connect_timeout_ms),
        ] {
            if !(100..=MAX_TIMEOUT_MS).contains(&ms) {
                return Err(ConfigError::key(
                    key,
                    format!("must be between 100 and {MAX_TIMEOUT_MS}"),
                ));
            }
        }
        Ok(())
    }

    fn check_terminals(&self) -> Result<(), ConfigError> {
        if self.terminals.is_empty() {
            return Err(ConfigError::key(
                "terminals",
                "at least one [[terminals]] entry is required",
            ));
        }
        let mut ids = HashSet::new();
        let mut hashes = HashSet::new();
        for (i, t) in self.terminals.iter().enumerate() {
            if !ids.insert(t.id.as_str()) {
                return Err(ConfigError::key(
                    format!("terminals[{i}].id"),
                    format!("duplicate terminal id {:?}", t.id.as_str()),
                ));
            }
            if !hashes.insert(t.token_sha256.0) {
                return Err(ConfigError::key(
                    format!("terminals[{i}].token_sha256"),
                    "two terminals share a token",
                ));
            }
        }
        Ok(())
    }
}

/// An MQTT settings error as a config error on its key.
fn mqtt_key(e: &o2c_runtime::mqtt::MqttError) -> ConfigError {
    let message = match e {
        o2c_runtime::mqtt::MqttError::Url(inner) => inner.to_string(),
        o2c_runtime::mqtt::MqttError::Settings { message, .. } => (*message).to_owned(),
        other => other.to_string(),
    };
    ConfigError::key(e.key(), message)
}

/// The first offline card limit the file or the environment sets, if any
/// (defaults do not count: without `store.currency` they are unused).
pub(super) fn offline_limits_set(root: &toml::Value) -> Option<&'static str> {
    let payments = root.get("payments")?;
    ["offline_floor_limit_minor", "offline_total_cap_minor"]
        .into_iter()
        .find(|k| payments.get(k).is_some())
}
