//! Shared helpers for the agent's integration tests.
#![allow(dead_code, unreachable_pub)]
// Load generators and tests measure and wait on real time.
#![allow(clippy::disallowed_methods)]

use std::path::Path;

pub mod harness;

use sha2::{Digest, Sha256};

/// Bearer token of terminal `T1` (and `T2` with the suffix changed).
pub const TOKEN_T1: &str = "token-of-terminal-1";
pub const TOKEN_T2: &str = "token-of-terminal-2";

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// A config file for a test agent in `data_dir`, with `extra` TOML
/// appended (tables such as `[outbox]`).
pub fn config_toml(data_dir: &Path, extra: &str) -> String {
    format!(
        r#"store_id = "S001"
agent_id = "S001-A1"
data_dir = "{dir}"

[http]
listen = "127.0.0.1:0"
shutdown_grace_ms = 5000

[mqtt]
url = "mqtt://127.0.0.1:1883"

[[terminals]]
id = "T1"
token_sha256 = "{t1}"

[[terminals]]
id = "T2"
token_sha256 = "{t2}"

{extra}
"#,
        dir = data_dir.display(),
        t1 = sha256_hex(TOKEN_T1),
        t2 = sha256_hex(TOKEN_T2),
    )
}

/// A valid order body for terminal `T1` totalling 2998.
pub fn order_body() -> serde_json::Value {
    serde_json::json!({
        "terminal_id": "T1",
        "currency": "CAD",
        "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price_minor": 1499}],
        "payments": [{"method": "card", "amount_minor": 2998, "token": "tok_abc",
                      "brand": "visa", "last4": "4242", "authorization": "online"}],
        "fulfillment": {"type": "carry_out"},
        "customer": {"email": "a@example.com"}
    })
}

/// A minimal HTTP/1.1 client over a fresh connection (`Connection: close`),
/// so tests of the real binary need no client crate. Returns the status
/// code and the body.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("truncated response"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    Ok((status, body.to_owned()))
}

/// Polls until `path` exists and parses as a socket address, or panics
/// after `timeout`. (Polling a condition with a deadline, not a sleep.)
pub async fn wait_for_addr(path: &Path, timeout: std::time::Duration) -> std::net::SocketAddr {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && let Ok(addr) = s.trim().parse()
        {
            return addr;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} did not appear within {timeout:?}",
            path.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
