//! MQTT v5 options for the agent: broker address, TLS with the fleet CA
//! and the agent's client certificate, packet size.

use std::path::Path;
use std::time::Duration;

use o2c_protocol::topic::MqttUrl;
use rumqttc::v5::MqttOptions;
use rumqttc::{TlsConfiguration, Transport};

use crate::config::MqttConfig;

/// Largest MQTT packet the agent sends or accepts.
const MAX_PACKET_BYTES: u32 = 4 * 1024 * 1024;

/// Why MQTT options could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MqttSetupError {
    /// The URL is not `mqtt[s]://host:port`.
    #[error("mqtt.url: {0}")]
    Url(#[from] o2c_protocol::topic::MqttUrlError),
    /// A TLS file could not be read.
    #[error("mqtt.tls: cannot read {path}: {source}")]
    Tls {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn read(p: &Path) -> Result<Vec<u8>, MqttSetupError> {
    std::fs::read(p).map_err(|source| MqttSetupError::Tls {
        path: p.display().to_string(),
        source,
    })
}

/// Clean-start options: a lost ack is recovered by resending the batch,
/// which the cloud acknowledges again without writing it twice.
pub(crate) fn options(cfg: &MqttConfig, client_id: &str) -> Result<MqttOptions, MqttSetupError> {
    let url: MqttUrl = cfg.url.parse()?;
    let mut o = MqttOptions::new(client_id, url.host, url.port);
    o.set_keep_alive(Duration::from_secs(cfg.keep_alive_secs.max(5)));
    o.set_clean_start(true);
    o.set_max_packet_size(Some(MAX_PACKET_BYTES));
    // Acks and small batches are latency-bound: no Nagle delay.
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    o.set_network_options(net);
    if url.tls
        && let Some(t) = &cfg.tls
    {
        let client_auth = match (&t.cert_file, &t.key_file) {
            (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
            _ => None,
        };
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
            ca: read(&t.ca_file)?,
            alpn: None,
            client_auth,
        }));
    }
    Ok(o)
}
