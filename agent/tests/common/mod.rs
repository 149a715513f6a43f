//! Shared helpers for the agent's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;

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
