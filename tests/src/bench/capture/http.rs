//! The till side of the `capture` benchmark: one keep-alive HTTP/1.1
//! connection per till, and the orders it posts.
//!
//! Each till holds a hyper `client::conn::http1` connection of its own (no
//! pool, no per-request bookkeeping), since client and agent share the
//! machine's two cores: a lean client leaves more CPU to the agent, and its
//! cost is measured and reported anyway (`*_client_cpu_cores`).
//!
//! Orders are generated from a seeded mix (1-3 lines of random SKUs from the
//! generated catalog, priced by the catalog, card or cash for the exact
//! total), so every request is valid and must be answered `201`.

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Products in the generated catalog (`SKU-00000` .. `SKU-49999`).
pub(super) const CATALOG_SKUS: u32 = 50_000;

/// Largest response body accepted (the agent's bodies are well under 1 KiB).
const MAX_BODY: usize = 1 << 20;

/// A request as the bench sends it.
pub(super) type Req = Request<Full<Bytes>>;

/// One keep-alive connection to the agent.
#[derive(Debug)]
pub(super) struct Conn {
    send: SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
    body: Bytes,
}

fn io_error(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(e)
}

impl Conn {
    /// Connects with `TCP_NODELAY` (a till sends one small request at a time).
    pub(super) async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (send, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io_error)?;
        let driver = tokio::spawn(async move {
            // Ends when the connection closes; the next request then fails.
            let _ = conn.await;
        });
        Ok(Self {
            send,
            driver,
            body: Bytes::new(),
        })
    }

    /// Sends one request and reads its answer; returns the status. The body
    /// stays readable through [`Conn::body`] until the next call.
    pub(super) async fn roundtrip(&mut self, request: Req) -> io::Result<u16> {
        self.send.ready().await.map_err(io_error)?;
        let response = self.send.send_request(request).await.map_err(io_error)?;
        let status = response.status().as_u16();
        self.body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| io::Error::other(e.to_string()))?
            .to_bytes();
        Ok(status)
    }

    /// The body of the last answer.
    pub(super) fn body(&self) -> &[u8] {
        &self.body
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

fn request(addr: SocketAddr, method: Method, path: &str) -> hyper::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, addr.to_string())
}

/// `GET path` without auth (for `/v1/sync`, `/readyz`, `/metrics`).
pub(super) fn get_request(addr: SocketAddr, path: &str) -> io::Result<Req> {
    request(addr, Method::GET, path)
        .body(Full::new(Bytes::new()))
        .map_err(io_error)
}

/// `POST /v1/orders` for one order.
pub(super) fn capture_request(
    addr: SocketAddr,
    token: &str,
    key: &str,
    body: String,
) -> io::Result<Req> {
    request(addr, Method::POST, "/v1/orders")
        .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
        .header("Idempotency-Key", key)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(io_error)
}

/// The SKU of catalog product `i`.
pub(super) fn sku(i: u32) -> String {
    format!("SKU-{i:05}")
}

/// The catalog price of product `i`, in cents (1.99 to 201.98 CAD).
pub(super) fn price_minor(i: u32) -> i64 {
    199 + i64::from(i.wrapping_mul(7919) % 20_000)
}

/// The catalog as JSON lines, the format `o2c-agent catalog import` reads.
pub(super) fn catalog_jsonl(skus: u32) -> String {
    let mut out = String::with_capacity(skus as usize * 130);
    for i in 0..skus {
        out.push_str(&format!(
            "{{\"sku\":\"{}\",\"name\":\"Bench product {i}\",\"price_minor\":{},\
             \"currency\":\"CAD\",\"category\":\"cat-{}\",\"stock_on_hand\":{}}}\n",
            sku(i),
            price_minor(i),
            i % 40,
            i % 500
        ));
    }
    out
}

/// splitmix64: a tiny seeded generator, so a run's orders are reproducible.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The JSON body of order `seq` of `terminal` in phase `phase`: 1-3 lines of
/// random catalog SKUs priced by the catalog, paid by card (online) or cash
/// for the exact total. Every token and key stays far from 13 consecutive
/// digits, so the agent's card-number scan never fires.
pub(super) fn order_body(phase: u8, terminal: &str, terminal_no: u64, seq: u64) -> String {
    let mut state = mix((u64::from(phase) << 56) ^ (terminal_no << 40) ^ seq);
    let mut next = || {
        state = mix(state);
        state
    };
    let line_count = 1 + next() % 3;
    let mut lines = String::new();
    let mut total: i64 = 0;
    for l in 0..line_count {
        let r = next();
        let product = (r % u64::from(CATALOG_SKUS)) as u32;
        let quantity = 1 + (r >> 32) % 3;
        total += price_minor(product) * quantity as i64;
        if l > 0 {
            lines.push(',');
        }
        lines.push_str(&format!(
            "{{\"sku\":\"{}\",\"quantity\":{quantity}}}",
            sku(product)
        ));
    }
    let payment = if next() % 2 == 0 {
        format!(
            "{{\"method\":\"card\",\"amount_minor\":{total},\"token\":\"tok_{terminal}_{phase}_{seq}\",\
             \"brand\":\"visa\",\"last4\":\"4242\",\"authorization\":\"online\"}}"
        )
    } else {
        format!("{{\"method\":\"cash\",\"amount_minor\":{total}}}")
    };
    format!(
        "{{\"terminal_id\":\"{terminal}\",\"currency\":\"CAD\",\"lines\":[{lines}],\
         \"payments\":[{payment}],\"fulfillment\":{{\"type\":\"carry_out\"}},\
         \"customer\":{{\"email\":\"c{seq}@example.com\"}}}}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_valid_json_paying_their_catalog_total() {
        for seq in 0..200 {
            let body = order_body(1, "T07", 7, seq);
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let total: i64 = v["lines"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    let sku = l["sku"].as_str().unwrap();
                    let i: u32 = sku.trim_start_matches("SKU-").parse().unwrap();
                    assert!(i < CATALOG_SKUS);
                    price_minor(i) * l["quantity"].as_i64().unwrap()
                })
                .sum();
            assert_eq!(v["payments"][0]["amount_minor"].as_i64(), Some(total));
            assert!(!o2c_protocol::validate::contains_card_number(&body));
        }
    }

    #[test]
    fn catalog_lines_parse() {
        let text = catalog_jsonl(3);
        let rows: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2]["sku"], "SKU-00002");
        assert_eq!(rows[2]["price_minor"], price_minor(2));
    }
}
