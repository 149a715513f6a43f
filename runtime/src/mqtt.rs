//! MQTT v5 plumbing: the `[mqtt.tls]` table, its rustls loader, base
//! options (address, keep-alive, packet size, no Nagle, TLS) and
//! [`check`], which `check-config` and `run` call before anything starts so
//! that a missing, unreadable or malformed TLS file is a config error
//! naming its key, not a connection task that gives up later.
//!
//! Session policy (persistent or clean, manual acks, in-flight limits)
//! differs per binary and is set by the caller on the returned options.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use o2c_protocol::topic::{MqttUrl, MqttUrlError};
use rumqttc::v5::MqttOptions;
use rumqttc::{TlsConfiguration, Transport};
use serde::{Deserialize, Serialize};

/// Shortest keep-alive the options use, whatever the config says.
const MIN_KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Why MQTT settings or TLS files are unusable.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The URL is not `mqtt[s]://host:port`.
    #[error("mqtt.url: {0}")]
    Url(#[from] MqttUrlError),
    /// The URL and the `[mqtt.tls]` table do not fit together.
    #[error("{key}: {message}")]
    Settings {
        /// The config key at fault (`mqtt.tls`, `mqtt.tls.key_file`).
        key: &'static str,
        /// What is wrong.
        message: &'static str,
    },
    /// A TLS file is missing, unreadable, or not what its key says.
    #[error("{key}: {path}: {reason}")]
    Tls {
        /// The config key that names the file (`mqtt.tls.key_file`, ...).
        key: &'static str,
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl MqttError {
    /// The config key the error is about.
    pub fn key(&self) -> &'static str {
        match self {
            MqttError::Url(_) => "mqtt.url",
            MqttError::Settings { key, .. } | MqttError::Tls { key, .. } => key,
        }
    }
}

/// `[mqtt.tls]`: PEM files for `mqtts://`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTlsConfig {
    /// CA bundle (PEM) that signed the broker's certificate.
    pub ca_file: PathBuf,
    /// Client certificate (PEM), for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// Client key (PEM), for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

/// Installs ring as the process's one rustls crypto provider. Call it once
/// at the start of `main`; a second call changes nothing.
pub fn install_crypto_provider() {
    // Err means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the rustls client config from `[mqtt.tls]`: the fleet CA as the
/// only trust root and, for mutual TLS, the client certificate and key.
pub fn tls_client_config(t: &MqttTlsConfig) -> Result<rustls::ClientConfig, MqttError> {
    let identity = match (&t.cert_file, &t.key_file) {
        (Some(cert), Some(key)) => Some((
            ("mqtt.tls.cert_file", cert.as_path()),
            ("mqtt.tls.key_file", key.as_path()),
        )),
        (None, None) => None,
        _ => return Err(together()),
    };
    crate::tls::client_config(crate::tls::Files {
        ca: ("mqtt.tls.ca_file", &t.ca_file),
        identity,
    })
    .map_err(MqttError::from)
}

impl From<crate::tls::TlsError> for MqttError {
    fn from(e: crate::tls::TlsError) -> Self {
        MqttError::Tls {
            key: e.key,
            path: e.path,
            reason: e.reason,
        }
    }
}

fn together() -> MqttError {
    MqttError::Settings {
        key: "mqtt.tls.key_file",
        message: "cert_file and key_file go together",
    }
}

/// Checks that the URL and the `[mqtt.tls]` table fit together, without
/// touching a file: `mqtts://` needs the table, `mqtt://` refuses it, and
/// a client certificate comes with its key.
pub fn check_settings(url: &str, tls: Option<&MqttTlsConfig>) -> Result<MqttUrl, MqttError> {
    let parsed: MqttUrl = url.parse()?;
    match (parsed.tls, tls) {
        (true, None) => Err(MqttError::Settings {
            key: "mqtt.tls",
            message: "an mqtts:// url needs a [mqtt.tls] table",
        }),
        (false, Some(_)) => Err(MqttError::Settings {
            key: "mqtt.tls",
            message: "[mqtt.tls] is only used with an mqtts:// url",
        }),
        (_, Some(t)) if t.cert_file.is_some() != t.key_file.is_some() => Err(together()),
        _ => Ok(parsed),
    }
}

/// What `run` will need from `[mqtt]`: [`check_settings`], then that the
/// TLS files load.
pub fn check(url: &str, tls: Option<&MqttTlsConfig>) -> Result<(), MqttError> {
    check_settings(url, tls)?;
    match tls {
        Some(t) => tls_client_config(t).map(drop),
        None => Ok(()),
    }
}

/// The connection settings every o2c MQTT client shares.
#[derive(Debug, Clone, Copy)]
pub struct Connection<'a> {
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub url: &'a str,
    /// TLS material, used with `mqtts://`.
    pub tls: Option<&'a MqttTlsConfig>,
    /// The MQTT client id.
    pub client_id: &'a str,
    /// Keep-alive (at least 5 s is used).
    pub keep_alive: Duration,
    /// Largest packet sent or accepted.
    pub max_packet_bytes: u32,
}

/// Base MQTT v5 options: address, keep-alive, packet size, TCP_NODELAY and,
/// for `mqtts://`, TLS from [`tls_client_config`]. The caller sets the
/// session policy.
pub fn options(c: Connection<'_>) -> Result<MqttOptions, MqttError> {
    let url: MqttUrl = c.url.parse()?;
    let mut o = MqttOptions::new(c.client_id, url.host, url.port);
    o.set_keep_alive(c.keep_alive.max(MIN_KEEP_ALIVE));
    o.set_max_packet_size(Some(c.max_packet_bytes));
    // Acks and small batches are latency-bound: no Nagle delay.
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    o.set_network_options(net);
    if url.tls
        && let Some(t) = c.tls
    {
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls_client_config(t)?),
        )));
    }
    Ok(o)
}

#[cfg(test)]
mod tests;
