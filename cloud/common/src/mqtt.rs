//! MQTT v5 client options of the cloud's services from `[mqtt]`: the
//! shared options of [`o2c_runtime::mqtt`] (address, TLS, packet size,
//! TCP_NODELAY) with the cloud's session policy.

use std::time::Duration;

use o2c_runtime::mqtt::{Connection, MqttError};
use rumqttc::v5::MqttOptions;

use crate::config::MqttConfig;

/// Options for a clean-start session (no broker-side state: ingest
/// replicas must not keep receiving their share while away), with room for
/// 1,024 queued requests.
pub fn options(cfg: &MqttConfig, client_id: &str) -> Result<MqttOptions, MqttError> {
    let mut o = o2c_runtime::mqtt::options(Connection {
        url: &cfg.url,
        tls: cfg.tls.as_ref(),
        client_id,
        keep_alive: Duration::from_secs(cfg.keep_alive_secs),
        max_packet_bytes: cfg.max_packet_bytes,
    })?;
    o.set_clean_start(true);
    o.set_request_channel_capacity(1024);
    Ok(o)
}
