//! Crash test: the real `o2c-agent` binary, concurrent orders over real
//! HTTP, and `kill -9` (SIGKILL) at a random point, 24 times. Fault
//! injected: SIGKILL of the whole process while captures are in flight.
//!
//! Afterwards, with the agent stopped by SIGTERM (which must exit 0):
//! - every order that got a 201 is in `orders` exactly once, with exactly
//!   one `OrderCreated` outbox row, and a retry of its key replays it (200,
//!   same order id);
//! - `PRAGMA integrity_check` is `ok`;
//! - the outbox seqs are exactly 1..N.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TOKEN_T1, config_toml, http, order_body, wait_for_addr};
use rand::Rng;
use tokio::process::{Child, Command};
use tokio::sync::Notify;

const ROUNDS: usize = 24;
const CLIENTS: usize = 16;
const BIN: &str = env!("CARGO_BIN_EXE_o2c-agent");

fn start(dir: &Path, config: &Path, round: usize) -> Child {
    let _ = std::fs::remove_file(dir.join("data/http.addr"));
    let log = std::fs::File::create(dir.join(format!("agent-{round}.log"))).unwrap();
    Command::new(BIN)
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn post(
    addr: std::net::SocketAddr,
    key: &str,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let auth = format!("Bearer {TOKEN_T1}");
    http(
        addr,
        "POST",
        "/v1/orders",
        &[
            ("Authorization", &auth),
            ("Idempotency-Key", key),
            ("Content-Type", "application/json"),
        ],
        body,
    )
    .await
}

fn order_id_of(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["order_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_at_random_points_loses_no_confirmed_order() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, config_toml(&data, "")).unwrap();
    let body = Arc::new(serde_json::to_vec(&order_body()).unwrap());
    let next_key = Arc::new(AtomicU64::new(0));
    let mut confirmed: Vec<(String, String)> = Vec::new();
    let mut rng = rand::rng();

    for round in 0..ROUNDS {
        let mut child = start(dir.path(), &config, round);
        let addr = wait_for_addr(&data.join("http.addr"), Duration::from_secs(60)).await;
        // 0 kills as soon as the agent listens (possibly mid-recovery).
        let threshold: usize = rng.random_range(0..=60);
        let ok = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let reached = Arc::new(Notify::new());
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..CLIENTS {
            let (ok, count, reached, stop, body, next_key) = (
                ok.clone(),
                count.clone(),
                reached.clone(),
                stop.clone(),
                body.clone(),
                next_key.clone(),
            );
            clients.spawn(async move {
                while !stop.load(Ordering::Acquire) {
                    let key = format!("crash-{}", next_key.fetch_add(1, Ordering::Relaxed));
                    match post(addr, &key, &body).await {
                        Ok((201, resp)) => {
                            ok.lock().unwrap().push((key, order_id_of(&resp)));
                            if count.fetch_add(1, Ordering::AcqRel) + 1 == threshold {
                                reached.notify_one();
                            }
                        }
                        Ok((status, resp)) => panic!("unexpected {status}: {resp}"),
                        // The agent was killed under us.
                        Err(_) => break,
                    }
                }
            });
        }
        if threshold > 0 {
            tokio::time::timeout(Duration::from_secs(60), reached.notified())
                .await
                .expect("captures stalled");
        }
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        stop.store(true, Ordering::Release);
        while let Some(r) = clients.join_next().await {
            r.unwrap();
        }
        confirmed.extend(ok.lock().unwrap().drain(..));
    }
    assert!(
        confirmed.len() >= ROUNDS,
        "too few orders: {}",
        confirmed.len()
    );

    // Restart once more: the confirmed orders replay, then a clean SIGTERM.
    let mut child = start(dir.path(), &config, ROUNDS);
    let addr = wait_for_addr(&data.join("http.addr"), Duration::from_secs(60)).await;
    for (key, id) in confirmed.iter().step_by((confirmed.len() / 20).max(1)) {
        let (status, resp) = post(addr, key, &body).await.unwrap();
        assert_eq!(status, 200, "{resp}");
        assert_eq!(&order_id_of(&resp), id);
    }
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("SIGTERM did not stop the agent")
        .unwrap();
    assert!(exit.success(), "SIGTERM exit: {exit:?}");

    verify(&data.join("agent.db"), &confirmed);
}

fn verify(db: &Path, confirmed: &[(String, String)]) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");

    let seqs: Vec<i64> = conn
        .prepare("SELECT seq FROM outbox ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let n = seqs.len() as i64;
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "outbox seqs have a gap");

    let orders: i64 = conn
        .query_row("SELECT COUNT(*) FROM orders", [], |r| r.get(0))
        .unwrap();
    assert_eq!(orders, n, "one OrderCreated per order");
    assert!(orders as usize >= confirmed.len());

    let mut by_order = conn
        .prepare(
            "SELECT (SELECT COUNT(*) FROM orders WHERE order_id = ?1), \
             (SELECT COUNT(*) FROM outbox WHERE order_id = ?1 AND event_type = 'OrderCreated')",
        )
        .unwrap();
    let mut unique = HashSet::new();
    for (_, id) in confirmed {
        assert!(unique.insert(id.clone()), "order {id} confirmed twice");
        let (o, e): (i64, i64) = by_order
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!((o, e), (1, 1), "order {id}");
    }
    eprintln!(
        "crash test: {} confirmed orders, {n} committed, {ROUNDS} kills",
        confirmed.len()
    );
}
