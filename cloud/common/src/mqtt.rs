//! MQTT v5 client options from the `[mqtt]` config: address, TLS, packet
//! size, a unique client id.

use std::time::Duration;

use o2c_protocol::topic::MqttUrl;
use rumqttc::v5::MqttOptions;
use rumqttc::{TlsConfiguration, Transport};

use crate::config::MqttConfig;

/// Why MQTT options could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MqttSetupError {
    /// The URL is not `mqtt[s]://host:port`.
    #[error("mqtt.url {0:?}: expected mqtt://host:port or mqtts://host:port")]
    Url(String),
    /// A TLS file could not be read.
    #[error("mqtt.tls: cannot read {path}: {source}")]
    Tls {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Options for a clean-start session (no broker-side state: ingest
/// replicas must not keep receiving their share while away).
pub fn options(cfg: &MqttConfig, client_id: &str) -> Result<MqttOptions, MqttSetupError> {
    let url: MqttUrl = cfg
        .url
        .parse()
        .map_err(|_| MqttSetupError::Url(cfg.url.clone()))?;
    let mut o = MqttOptions::new(client_id, url.host, url.port);
    o.set_keep_alive(Duration::from_secs(cfg.keep_alive_secs.max(5)));
    o.set_clean_start(true);
    o.set_max_packet_size(Some(cfg.max_packet_bytes));
    // Acks and small batches are latency-bound: no Nagle delay.
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    o.set_network_options(net);
    o.set_request_channel_capacity(1024);
    if let (true, Some(t)) = (url.tls, &cfg.tls) {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|source| MqttSetupError::Tls {
                path: p.display().to_string(),
                source,
            })
        };
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
            ca: read(&t.ca_file)?,
            alpn: None,
            client_auth: Some((read(&t.cert_file)?, read(&t.key_file)?)),
        }));
    }
    Ok(o)
}
