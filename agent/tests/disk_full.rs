//! Disk-full test. Fault injected: the filesystem holding `data_dir` runs
//! out of space while orders are being captured.
//!
//! Preferred: a real 8 MiB tmpfs mounted for the test (needs root, as CI
//! runs). A ballast file takes part of it; captures run until the agent
//! answers 507 `storage_full`; the ballast is deleted; captures succeed
//! again without a restart.
//!
//! Fallback, only where `mount` is refused: SQLite's `max_page_count` is
//! lowered through a test hook, which makes SQLite fail exactly as on a
//! full disk (`SQLITE_FULL`), then raised again. The test prints which
//! mode it ran in; `O2C_DISK_FULL_INJECT=1` forces the fallback.
//!
//! Either way it then checks: every 201 order is stored exactly once, no
//! 507 left anything behind, `PRAGMA integrity_check` is ok and the seqs
//! are 1..N.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{TOKEN_T1, config_toml, order_body};
use o2c_agent::{Agent, Config};
use serde_json::Value;
use tower::ServiceExt;

/// Unmounts on drop (lazily, so a failed test never leaves it busy).
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn try_mount_tmpfs(dir: &Path, bytes: u64) -> Option<Mount> {
    std::fs::create_dir_all(dir).ok()?;
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Mount(dir.to_owned()))
}

async fn post(router: &Router, key: &str, body: &Value) -> (StatusCode, Value) {
    let req = Request::post("/v1/orders")
        .header("authorization", format!("Bearer {TOKEN_T1}"))
        .header("idempotency-key", key)
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A bigger order (about 2 KiB) so the disk fills in a few thousand.
fn big_order() -> Value {
    let mut body = order_body();
    body["fulfillment"] = serde_json::json!({"type": "ship_to_home", "address": {
        "name": "N".repeat(120), "line1": "L".repeat(120), "line2": "M".repeat(120),
        "city": "Toronto", "region": "ON", "postal_code": "M5V 2T6", "country": "CA"}});
    body
}

#[tokio::test]
async fn storage_full_gets_507_and_the_agent_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    // O2C_DISK_FULL_INJECT=1 forces the fallback, to exercise it too.
    let mount = if std::env::var_os("O2C_DISK_FULL_INJECT").is_some_and(|v| !v.is_empty()) {
        None
    } else {
        try_mount_tmpfs(&mnt, 8 * 1024 * 1024)
    };
    let real_fs = mount.is_some();
    let data = if real_fs {
        mnt.join("data")
    } else {
        dir.path().join("data")
    };
    eprintln!(
        "disk-full test mode: {}",
        if real_fs {
            "real 8 MiB tmpfs"
        } else {
            "INJECTED (mount refused): SQLite max_page_count"
        }
    );
    let config = Config::from_toml_with_env(
        &config_toml(&data, "[catalog]\ncache_bytes = 65536\n"),
        Vec::new(),
    )
    .unwrap();
    let agent = Agent::open(config).unwrap();
    let router = agent.router();
    let ballast = mnt.join("ballast");
    if real_fs {
        std::fs::write(&ballast, vec![7u8; 2 * 1024 * 1024]).unwrap();
    } else {
        let pages: u64 = agent.store().inject_max_page_count(1).await.unwrap();
        // The cap cannot go below the current size; allow ~300 more pages.
        agent
            .store()
            .inject_max_page_count(pages + 300)
            .await
            .unwrap();
    }

    let body = big_order();
    let mut created = Vec::new();
    let mut full = None;
    for i in 0..200_000 {
        let (status, v) = post(&router, &format!("fill-{i}"), &body).await;
        match status {
            StatusCode::CREATED => created.push(v["order_id"].as_str().unwrap().to_owned()),
            StatusCode::INSUFFICIENT_STORAGE => {
                assert_eq!(v["error"]["code"], "storage_full");
                full = Some(i);
                break;
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    let full_at = full.expect("the disk never filled");
    eprintln!("disk full after {} orders", created.len());
    assert!(!created.is_empty(), "nothing fitted before the disk filled");
    assert_eq!(
        agent.store().last_seq(),
        created.len() as u64,
        "a 507 left a row behind"
    );

    // While full, every answer is a 201 (a small write may still fit in
    // freed pages) or a 507 that left nothing behind; the writer lives on.
    for i in 0..5 {
        let (status, v) = post(&router, &format!("while-full-{i}"), &body).await;
        match status {
            StatusCode::CREATED => created.push(v["order_id"].as_str().unwrap().to_owned()),
            StatusCode::INSUFFICIENT_STORAGE => {}
            other => panic!("unexpected {other}: {v}"),
        }
        assert_eq!(agent.store().last_seq(), created.len() as u64);
    }
    assert!(agent.store().is_alive());

    // Space returns: captures succeed again without a restart.
    if real_fs {
        std::fs::remove_file(&ballast).unwrap();
    } else {
        agent.store().inject_max_page_count(1 << 30).await.unwrap();
    }
    for i in 0..20 {
        let (status, v) = post(&router, &format!("after-{i}"), &body).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        created.push(v["order_id"].as_str().unwrap().to_owned());
    }
    // The key refused with 507 was never stored: it now captures (201).
    let (status, _) = post(&router, &format!("fill-{full_at}"), &body).await;
    assert_eq!(status, StatusCode::CREATED);
    agent.shutdown().await.unwrap();

    let conn = rusqlite::Connection::open(data.join("agent.db")).unwrap();
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
    let n = created.len() as i64 + 1;
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
    for id in &created {
        let c: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM orders WHERE order_id = ?1",
                [id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(c, 1, "order {id}");
    }
    drop(conn);
    drop(mount);
}
