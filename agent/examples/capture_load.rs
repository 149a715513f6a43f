//! Quick capture load check against a running agent (the real benchmark is
//! `o2c-bench capture` in the tests crate). Keep-alive HTTP/1.1 over
//! loopback, N connections, closed loop or a paced offered rate.
//!
//! ```text
//! cargo run --release --example capture_load -- ADDR TOKEN CONNS SECONDS [RATE_PER_SEC] [BASELINE_DB]
//! ```
//! With `BASELINE_DB`, first measures single-row fsync-bound commits
//! (WAL, synchronous=FULL) in that file for 2 s.
// Load generators and tests measure and wait on real time.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn baseline(path: &str) -> f64 {
    let conn = rusqlite::Connection::open(path).expect("open baseline db");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("sync");
    conn.execute_batch("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB)")
        .expect("create");
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        conn.execute("INSERT INTO t (v) VALUES (?1)", [vec![0u8; 1024]])
            .expect("insert");
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn one(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    req: &[u8],
) -> std::io::Result<u16> {
    w.write_all(req).await?;
    let mut line = String::new();
    r.read_line(&mut line).await?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut len = 0usize;
    loop {
        line.clear();
        r.read_line(&mut line).await?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(status)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: capture_load ADDR TOKEN CONNS SECONDS [RATE] [BASELINE_DB]");
        std::process::exit(2);
    }
    let addr: SocketAddr = args[1].parse().expect("addr");
    let token = args[2].clone();
    let conns: usize = args[3].parse().expect("conns");
    let secs: u64 = args[4].parse().expect("seconds");
    let rate: f64 = args.get(5).and_then(|r| r.parse().ok()).unwrap_or(0.0);
    if let Some(db) = args.get(6) {
        println!(
            "fsync-bound single-row baseline: {:.0} commits/s",
            baseline(db)
        );
    }
    let body = r#"{"terminal_id":"T1","currency":"CAD","lines":[{"sku":"SKU-1","quantity":2,"unit_price_minor":1499}],"payments":[{"method":"card","amount_minor":2998,"token":"tok_abc","brand":"visa","last4":"4242","authorization":"online"}],"fulfillment":{"type":"carry_out"},"customer":{"email":"a@example.com"}}"#;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..conns {
        let token = token.clone();
        tasks.spawn(async move {
            let stream = TcpStream::connect(addr).await.expect("connect");
            stream.set_nodelay(true).ok();
            let (r, mut w) = stream.into_split();
            let mut r = BufReader::new(r);
            let mut lat = Vec::new();
            let mut bad = 0u64;
            let period = (rate > 0.0).then(|| Duration::from_secs_f64(conns as f64 / rate));
            // Stagger the connections so the offered load is smooth, not
            // 64-request bursts.
            let mut tick = period.map(|p| {
                let offset = p.mul_f64(c as f64 / conns as f64);
                tokio::time::interval_at(tokio::time::Instant::now() + offset, p)
            });
            let mut i = 0u64;
            while Instant::now() < deadline {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let req = format!(
                    "POST /v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nIdempotency-Key: b-{c}-{i}-{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    std::process::id(),
                    body.len()
                );
                i += 1;
                let t0 = Instant::now();
                match one(&mut r, &mut w, req.as_bytes()).await {
                    Ok(201) => lat.push(t0.elapsed()),
                    _ => bad += 1,
                }
            }
            (lat, bad)
        });
    }
    let mut all = Vec::new();
    let mut bad = 0;
    while let Some(r) = tasks.join_next().await {
        let (l, b) = r.expect("task");
        all.extend(l);
        bad += b;
    }
    all.sort();
    let q = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    println!(
        "{} orders in {secs}s = {:.0} orders/s, non-201 {bad}; p50 {:?} p99 {:?} p99.9 {:?}",
        all.len(),
        all.len() as f64 / secs as f64,
        q(0.50),
        q(0.99),
        q(0.999)
    );
}
