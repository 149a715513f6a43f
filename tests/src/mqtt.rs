//! A minimal MQTT health probe: CONNECT, expect CONNACK 0, DISCONNECT.
//!
//! Hand-written (MQTT 3.1.1, 20 bytes) so the harness checks the broker's real
//! protocol without running a client event loop; tests use rumqttc itself.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::HarnessError;

/// Splits `mqtt://host:port` (or `tcp://host:port`, or bare `host:port`) into host and port.
pub fn parse_mqtt_url(url: &str) -> Result<(String, u16), HarnessError> {
    let invalid = |why| HarnessError::InvalidName {
        name: url.to_owned(),
        why,
    };
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .unwrap_or(url);
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| invalid("expected mqtt://HOST:PORT"))?;
    let port = port.parse().map_err(|_| invalid("port is not a number"))?;
    if host.is_empty() {
        return Err(invalid("empty host"));
    }
    Ok((host.to_owned(), port))
}

/// The MQTT 3.1.1 CONNECT packet the probe sends (clean session, keep-alive 10 s).
fn connect_packet(client_id: &str) -> Vec<u8> {
    let id = client_id.as_bytes();
    // Protocol name (6) + level (1) + flags (1) + keep-alive (2) + id length (2) + id.
    let remaining = 12 + id.len();
    let mut packet = Vec::with_capacity(2 + remaining);
    packet.push(0x10);
    // Client ids here are short, so the remaining length fits one byte.
    packet.push(u8::try_from(remaining).unwrap_or(127).min(127));
    packet.extend_from_slice(&[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x0a]);
    packet.extend_from_slice(&u16::try_from(id.len()).unwrap_or(0).to_be_bytes());
    packet.extend_from_slice(id);
    packet
}

/// Connects to the broker at `url`, and succeeds only on CONNACK with return code 0.
pub async fn mqtt_answers(url: &str, timeout: Duration) -> Result<(), HarnessError> {
    let (host, port) = parse_mqtt_url(url)?;
    let probe = async {
        let mut stream = TcpStream::connect((host.as_str(), port)).await?;
        stream
            .write_all(&connect_packet(&format!(
                "o2c-probe-{}",
                std::process::id()
            )))
            .await?;
        let mut connack = [0u8; 4];
        stream.read_exact(&mut connack).await?;
        if connack[0] != 0x20 || connack[1] != 0x02 || connack[3] != 0x00 {
            return Err(std::io::Error::other(format!(
                "unexpected CONNACK {connack:02x?}"
            )));
        }
        stream.write_all(&[0xe0, 0x00]).await?;
        Ok(())
    };
    match tokio::time::timeout(timeout, probe).await {
        Ok(result) => result.map_err(|e| HarnessError::io(format!("MQTT probe of {url}"), e)),
        Err(_) => Err(HarnessError::Timeout {
            what: format!("MQTT CONNACK from {url}"),
            timeout,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        assert_eq!(
            parse_mqtt_url("mqtt://127.0.0.1:1883").unwrap(),
            ("127.0.0.1".to_owned(), 1883)
        );
        assert_eq!(
            parse_mqtt_url("localhost:1884/").unwrap(),
            ("localhost".to_owned(), 1884)
        );
        assert!(parse_mqtt_url("mqtt://nohost").is_err());
        assert!(parse_mqtt_url("mqtt://h:port").is_err());
    }

    #[test]
    fn connect_packet_has_a_consistent_length() {
        let packet = connect_packet("abc");
        assert_eq!(usize::from(packet[1]), packet.len() - 2);
        assert_eq!(&packet[packet.len() - 3..], b"abc");
    }
}
