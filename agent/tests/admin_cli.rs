//! Operator commands against the real binary, with the agent running in
//! another process: `terminal add|list|revoke` take effect without a
//! restart, `status` reads the live agent (and `--offline` the database),
//! `outbox list` and `backup` work while orders are being captured.
// Load generators and tests measure and wait on real time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{TOKEN_T1, config_toml, http, order_body, wait_for_addr};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_o2c-agent");

struct Running {
    dir: tempfile::TempDir,
    config: PathBuf,
    child: Child,
    addr: std::net::SocketAddr,
}

impl Running {
    async fn start() -> Running {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let config = dir.path().join("agent.toml");
        // An MQTT port nothing listens on: the agent stays offline.
        let text = config_toml(&data, "").replace("127.0.0.1:1883", "127.0.0.1:1");
        std::fs::write(&config, text).unwrap();
        let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let addr = wait_for_addr(&data.join("http.addr"), Duration::from_secs(60)).await;
        Running {
            dir,
            config,
            child,
            addr,
        }
    }

    /// Runs `o2c-agent ARGS --config <this agent's config>`.
    async fn cli(&self, args: &[&str]) -> Output {
        cli(&self.config, args).await
    }

    async fn stop(&mut self) {
        let pid = self.child.id().unwrap().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        let exit = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("SIGTERM did not stop the agent")
            .unwrap();
        assert!(exit.success(), "{exit:?}");
    }
}

async fn cli(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn post_order(
    addr: std::net::SocketAddr,
    token: &str,
    terminal: &str,
    key: &str,
) -> (u16, String) {
    let mut body = order_body();
    body["terminal_id"] = terminal.into();
    let auth = format!("Bearer {token}");
    http(
        addr,
        "POST",
        "/v1/orders",
        &[
            ("Authorization", &auth),
            ("Idempotency-Key", key),
            ("Content-Type", "application/json"),
        ],
        &serde_json::to_vec(&body).unwrap(),
    )
    .await
    .unwrap()
}

/// Posts until the answer is `want` (the agent's terminal cache refreshes
/// within a second), failing after 10 s. Polls a condition; no fixed sleep.
async fn until_status(addr: std::net::SocketAddr, token: &str, terminal: &str, want: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut i = 0;
    loop {
        i += 1;
        let (status, body) = post_order(addr, token, terminal, &format!("poll-{want}-{i}")).await;
        if status == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {status} ({body}), wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn terminal_added_by_the_cli_works_without_restart_until_revoked() {
    let mut agent = Running::start().await;

    let out = agent.cli(&["terminal", "add", "T9"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let token = text.lines().last().unwrap().trim().to_owned();
    assert_eq!(token.len(), 64, "32 random bytes in hex: {text}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let hash = common::sha256_hex(&token);

    // Accepted by the running agent, without a restart.
    until_status(agent.addr, &token, "T9", 201).await;
    // The token is bound to its terminal.
    let (status, _) = post_order(agent.addr, &token, "T1", "cross").await;
    assert_eq!(status, 403);

    // Adding an active id again is refused.
    let again = agent.cli(&["terminal", "add", "T9"]).await;
    assert_eq!(again.status.code(), Some(65), "{}", stderr(&again));
    assert!(stderr(&again).contains("revoke"), "{}", stderr(&again));

    // The list shows both sources, never a token or a full hash.
    let list = agent.cli(&["terminal", "list"]).await;
    assert!(list.status.success(), "{}", stderr(&list));
    let listing = stdout(&list);
    let row = |id: &str| {
        listing
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("no {id} in:\n{listing}"))
            .to_owned()
    };
    assert!(row("T1").contains(" config "));
    assert!(row("T9").contains(" cli "));
    assert!(row("T9").contains(&hash[..8]));
    assert!(!listing.contains(&token));
    assert!(!listing.contains(&hash));
    assert!(!listing.contains(&common::sha256_hex(TOKEN_T1)));

    // A config-file terminal cannot be revoked from the CLI.
    let refused = agent.cli(&["terminal", "revoke", "T1"]).await;
    assert_eq!(refused.status.code(), Some(65));
    assert!(
        stderr(&refused).contains("config file"),
        "{}",
        stderr(&refused)
    );
    let (status, _) = post_order(agent.addr, TOKEN_T1, "T1", "t1-still-works").await;
    assert_eq!(status, 201);

    let revoked = agent.cli(&["terminal", "revoke", "T9"]).await;
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    until_status(agent.addr, &token, "T9", 401).await;
    let list = stdout(&agent.cli(&["terminal", "list"]).await);
    let t9 = list.lines().find(|l| l.starts_with("T9 ")).unwrap();
    assert!(!t9.contains(" - "), "created and revoked times: {t9}");

    let unknown = agent.cli(&["terminal", "revoke", "T7"]).await;
    assert_eq!(unknown.status.code(), Some(67));
    agent.stop().await;
}

#[tokio::test]
async fn status_reads_the_running_agent_or_the_database() {
    let mut agent = Running::start().await;
    for i in 0..3 {
        let (status, body) = post_order(agent.addr, TOKEN_T1, "T1", &format!("s{i}")).await;
        assert_eq!(status, 201, "{body}");
    }
    let live = agent.cli(&["status"]).await;
    assert!(live.status.success(), "{}", stderr(&live));
    let text = stdout(&live);
    assert!(text.contains("running agent at"), "{text}");
    assert!(text.contains("cloud link:       disconnected"), "{text}");
    assert!(text.contains("pending events:   3\n"), "{text}");
    assert!(text.contains("last ack:         none yet"), "{text}");
    assert!(text.contains("rejected events:  0"), "{text}");

    let pending = agent
        .cli(&["outbox", "list", "--state", "pending", "--limit", "2"])
        .await;
    assert!(pending.status.success(), "{}", stderr(&pending));
    let rows: Vec<String> = stdout(&pending).lines().skip(1).map(String::from).collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[0].trim_start().starts_with("1 ") && rows[0].contains("OrderCreated"));
    assert!(rows[1].trim_start().starts_with("2 "));
    let acked = agent.cli(&["outbox", "list", "--state", "acked"]).await;
    assert_eq!(stdout(&acked).lines().count(), 1, "header only");

    agent.stop().await;
    let down = agent.cli(&["status"]).await;
    assert_eq!(down.status.code(), Some(69));
    assert!(stderr(&down).contains("--offline"), "{}", stderr(&down));

    let offline = agent.cli(&["status", "--offline"]).await;
    assert!(offline.status.success(), "{}", stderr(&offline));
    let text = stdout(&offline);
    assert!(text.contains("pending events:   3\n"), "{text}");
    assert!(text.contains("unknown"), "{text}");
}

#[tokio::test]
async fn status_offline_without_a_database_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, config_toml(&dir.path().join("data"), "")).unwrap();
    let out = cli(&config, &["status", "--offline"]).await;
    assert_eq!(out.status.code(), Some(66));
    assert!(stderr(&out).contains("no database"), "{}", stderr(&out));
    let out = cli(&config, &["status"]).await;
    assert_eq!(out.status.code(), Some(69));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_while_capturing_is_consistent_and_gap_free() {
    const CLIENTS: usize = 8;
    let mut agent = Running::start().await;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let (stop, done, addr) = (stop.clone(), done.clone(), agent.addr);
        clients.spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Acquire) {
                i += 1;
                let (status, body) = post_order(addr, TOKEN_T1, "T1", &format!("b{c}-{i}")).await;
                assert_eq!(status, 201, "{body}");
                done.fetch_add(1, Ordering::AcqRel);
            }
        });
    }
    // Let captures get going: wait for a count, not for a time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while done.load(Ordering::Acquire) < 200 {
        assert!(tokio::time::Instant::now() < deadline, "captures stalled");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = done.load(Ordering::Acquire);
    let copy = agent.dir.path().join("copy.db");
    let out = agent.cli(&["backup", copy.to_str().unwrap()]).await;
    let during = done.load(Ordering::Acquire);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("integrity_check ok"),
        "{}",
        stdout(&out)
    );
    // Refuses to overwrite.
    let again = agent.cli(&["backup", copy.to_str().unwrap()]).await;
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already exists"));
    stop.store(true, Ordering::Release);
    while let Some(r) = clients.join_next().await {
        r.unwrap();
    }
    agent.stop().await;

    let conn = rusqlite::Connection::open(&copy).unwrap();
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
    assert_eq!(orders, n, "one OrderCreated per order in the snapshot");
    assert!(
        n as u64 >= before,
        "copy has {n}, {before} were confirmed before"
    );
    assert!(
        n as u64 <= during + CLIENTS as u64,
        "copy has {n}, at most {during} + in-flight"
    );
    eprintln!("backup: {n} orders in the copy ({before} before, {during} after)");
}
