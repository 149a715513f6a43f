//! MQTT v5 client options from the `[mqtt]` config: address, TLS, packet
//! size, a unique client id.

use std::time::Duration;

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

/// Splits `mqtt://host:port` into (tls, host, port).
pub fn parse_url(url: &str) -> Result<(bool, String, u16), MqttSetupError> {
    let bad = || MqttSetupError::Url(url.to_owned());
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else {
        return Err(bad());
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
        None => (rest, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((tls, host.to_owned(), port))
}

/// Options for a clean-start session (no broker-side state: ingest
/// replicas must not keep receiving their share while away).
pub fn options(cfg: &MqttConfig, client_id: &str) -> Result<MqttOptions, MqttSetupError> {
    let (tls, host, port) = parse_url(&cfg.url)?;
    let mut o = MqttOptions::new(client_id, host, port);
    o.set_keep_alive(Duration::from_secs(cfg.keep_alive_secs.max(5)));
    o.set_clean_start(true);
    o.set_max_packet_size(Some(cfg.max_packet_bytes));
    o.set_request_channel_capacity(1024);
    if let (true, Some(t)) = (tls, &cfg.tls) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("mqtt://127.0.0.1:1883").unwrap(),
            (false, "127.0.0.1".into(), 1883)
        );
        assert_eq!(
            parse_url("mqtts://broker").unwrap(),
            (true, "broker".into(), 8883)
        );
        assert!(parse_url("http://x:1").is_err());
        assert!(parse_url("mqtt://:1").is_err());
        assert!(parse_url("mqtt://h:notaport").is_err());
    }
}
