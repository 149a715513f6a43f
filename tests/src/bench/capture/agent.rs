//! The agent under test: the real release `o2c-agent` binary, configured with
//! one terminal per simulated till and a generated catalog imported with
//! `o2c-agent catalog import` before it starts. Also reads what the bench
//! reports about it: memory and CPU from `/proc/<pid>`, and the rows of its
//! database after a `kill -9`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest;

use super::harness;
use super::http::{self, Conn};
use crate::ChildGuard;
use crate::bench::BenchError;

/// Linux reports `/proc` CPU times in `USER_HZ` ticks, 100 per second.
const TICKS_PER_S: f64 = 100.0;

/// One simulated till: its id and bearer token.
#[derive(Debug, Clone)]
pub(super) struct Terminal {
    /// `T01`, `T02`, ...
    pub(super) id: String,
    /// The bearer token (the config holds only its SHA-256).
    pub(super) token: String,
    /// 1-based number, seeds its orders.
    pub(super) no: u64,
}

/// A running agent, killed when dropped.
#[derive(Debug)]
pub(super) struct BenchAgent {
    guard: ChildGuard,
    pid: u32,
    addr: SocketAddr,
    db: PathBuf,
    log: PathBuf,
    /// The terminals in its config.
    pub(super) terminals: Vec<Terminal>,
    /// How long `o2c-agent catalog import` took.
    pub(super) import_time: Duration,
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Memory {
    pub(super) rss_kib: u64,
    pub(super) hwm_kib: u64,
    /// Heap and other anonymous pages (`RssAnon`).
    pub(super) anon_kib: u64,
}

/// CPU ticks of the agent, split by thread role, plus the bench process.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Cpu {
    /// Every agent thread.
    pub(super) agent: u64,
    /// The store's single writer thread (`o2c-store-writer`).
    pub(super) writer: u64,
    /// tokio workers and blocking threads (HTTP, JSON, auth, reads).
    pub(super) runtime: u64,
    /// The bench itself (the simulated tills).
    pub(super) client: u64,
}

impl Cpu {
    /// Ticks used between `self` and `later`.
    pub(super) fn until(self, later: Cpu) -> Cpu {
        Cpu {
            agent: later.agent.saturating_sub(self.agent),
            writer: later.writer.saturating_sub(self.writer),
            runtime: later.runtime.saturating_sub(self.runtime),
            client: later.client.saturating_sub(self.client),
        }
    }

    /// Ticks as cores over `elapsed`.
    pub(super) fn as_cores(ticks: u64, elapsed: Duration) -> f64 {
        ticks as f64 / TICKS_PER_S / elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Ticks as microseconds.
    pub(super) fn as_micros(ticks: u64) -> f64 {
        ticks as f64 / TICKS_PER_S * 1e6
    }
}

/// Rows in the agent's database.
/// The `le` of the agent's commit histogram bucket above which a group
/// commit counts as slow (16 ms: past the capture p99 target).
const SLOW_SECONDS: &str = "0.016";

/// The writer's group commits so far, from `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Commits {
    pub(super) total: u64,
    /// Commits that took over 16 ms in all.
    pub(super) slow: u64,
    /// Commits whose `COMMIT` alone (WAL write and fsync) took over 16 ms.
    pub(super) slow_sync: u64,
}

impl Commits {
    /// What happened between `self` and `later`.
    pub(super) fn until(self, later: Commits) -> Commits {
        Commits {
            total: later.total.saturating_sub(self.total),
            slow: later.slow.saturating_sub(self.slow),
            slow_sync: later.slow_sync.saturating_sub(self.slow_sync),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rows {
    pub(super) orders: u64,
    pub(super) pending_outbox: u64,
    pub(super) idempotency: u64,
}

/// The workspace binary `name` next to the running bench
/// (`target/release/`), or an error naming the build command.
fn workspace_bin(name: &str) -> Result<PathBuf, BenchError> {
    let exe = std::env::current_exe().map_err(|e| BenchError::io("locating o2c-bench", e))?;
    exe.ancestors()
        .skip(1)
        .take(3)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            BenchError::Invalid(format!(
                "binary {name} not found next to {}; build it with \
                 `cargo build --release -p o2c-agent`",
                exe.display()
            ))
        })
}

impl BenchAgent {
    /// Writes `agent.toml` in `home` with `terminals` tills and an MQTT url
    /// where nothing listens, imports a `skus`-product catalog, starts the
    /// agent and waits until `/readyz` answers 200.
    pub(super) async fn start(
        home: &Path,
        terminals: usize,
        skus: u32,
    ) -> Result<Self, BenchError> {
        Self::start_with(home, terminals, skus, None, "").await
    }

    /// [`BenchAgent::start`] with an MQTT url (instead of one where nothing
    /// listens) and extra TOML after `[mqtt]` (e.g. `[mqtt.tls]` and
    /// `[catalog]`).
    pub(super) async fn start_with(
        home: &Path,
        terminals: usize,
        skus: u32,
        mqtt_url: Option<&str>,
        extra_toml: &str,
    ) -> Result<Self, BenchError> {
        let bin = workspace_bin("o2c-agent")?;
        let data_dir = home.join("data");
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| BenchError::io(format!("creating {}", data_dir.display()), e))?;
        let terminals: Vec<Terminal> = (1..=terminals as u64)
            .map(|no| Terminal {
                id: format!("T{no:02}"),
                token: format!("o2c-bench-capture-terminal-{no:02}"),
                no,
            })
            .collect();
        // Capture must not depend on sync: the store is offline for the whole
        // run. The port was free a moment ago and nothing is started on it,
        // so the sync task only retries with backoff.
        let dead_port = crate::free_port().map_err(|e| harness("picking a free port", e))?;
        let mqtt_url =
            mqtt_url.map_or_else(|| format!("mqtt://127.0.0.1:{dead_port}"), str::to_owned);
        let mut toml = format!(
            "store_id = \"S-BENCH\"\nagent_id = \"S-BENCH-A1\"\ndata_dir = \"{}\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n[mqtt]\nurl = \"{mqtt_url}\"\n{extra_toml}\n",
            data_dir.display()
        );
        for t in &terminals {
            let hash = hex::encode(sha2::Sha256::digest(t.token.as_bytes()));
            toml.push_str(&format!(
                "[[terminals]]\nid = \"{}\"\ntoken_sha256 = \"{hash}\"\n",
                t.id
            ));
        }
        let config = home.join("agent.toml");
        std::fs::write(&config, toml).map_err(|e| BenchError::io("writing agent.toml", e))?;

        let catalog = home.join("catalog.jsonl");
        std::fs::write(&catalog, http::catalog_jsonl(skus))
            .map_err(|e| BenchError::io("writing catalog.jsonl", e))?;
        let t0 = Instant::now();
        let out = Command::new(&bin)
            .args(["catalog", "import", "--config"])
            .arg(&config)
            .arg(&catalog)
            .env("RUST_LOG", "warn")
            .output()
            .map_err(|e| BenchError::io("running o2c-agent catalog import", e))?;
        let import_time = t0.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !stdout.contains(&format!("catalog holds {skus}")) {
            return Err(BenchError::Invalid(format!(
                "catalog import failed ({}): {stdout} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }

        let log = home.join("agent.log");
        let log_file = std::fs::File::create(&log)
            .map_err(|e| BenchError::io(format!("creating {}", log.display()), e))?;
        let addr_file = data_dir.join("http.addr");
        let mut cmd = Command::new(&bin);
        cmd.arg("run")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            // As deploy/systemd/o2c-agent.service runs it.
            .env("MALLOC_ARENA_MAX", "2")
            .stdout(Stdio::null())
            .stderr(log_file);
        let guard = ChildGuard::spawn("o2c-agent", &mut cmd).map_err(|e| harness("starting", e))?;
        let pid = guard.id();
        crate::wait_for_file(&addr_file, Duration::from_secs(30))
            .await
            .map_err(|e| harness("waiting for http.addr", e))?;
        let text = std::fs::read_to_string(&addr_file)
            .map_err(|e| BenchError::io("reading http.addr", e))?;
        let addr: SocketAddr = text
            .trim()
            .parse()
            .map_err(|_| BenchError::Invalid(format!("bad http.addr {text:?}")))?;
        let agent = Self {
            guard,
            pid,
            addr,
            db: data_dir.join("agent.db"),
            log,
            terminals,
            import_time,
        };
        agent.wait_ready().await?;
        Ok(agent)
    }

    async fn wait_ready(&self) -> Result<(), BenchError> {
        let addr = self.addr;
        crate::wait_until_named(
            "agent /readyz",
            || async move {
                match Conn::connect(addr).await {
                    Ok(mut c) => match http::get_request(addr, "/readyz") {
                        Ok(req) => c.roundtrip(req).await.is_ok_and(|s| s == 200),
                        Err(_) => false,
                    },
                    Err(_) => false,
                }
            },
            Duration::from_secs(30),
        )
        .await
        .map_err(|e| {
            harness(
                "agent not ready",
                format!("{e}; log:\n{}", crate::process::log_tail(&self.log, 4000)),
            )
        })
    }

    /// The HTTP address.
    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The agent's log file (for error messages).
    pub(super) fn log_tail(&self) -> String {
        crate::process::log_tail(&self.log, 4000)
    }

    /// `GET path` as JSON.
    pub(super) async fn get_json(&self, path: &str) -> Result<serde_json::Value, BenchError> {
        let text = self.get_text(path).await?;
        serde_json::from_str(&text).map_err(|e| harness(&format!("GET {path}: {text}"), e))
    }

    /// `GET path` as text (200 only).
    pub(super) async fn get_text(&self, path: &str) -> Result<String, BenchError> {
        let mut c = Conn::connect(self.addr)
            .await
            .map_err(|e| BenchError::io("connecting to the agent", e))?;
        let status = c
            .roundtrip(
                http::get_request(self.addr, path)
                    .map_err(|e| BenchError::io(format!("GET {path}"), e))?,
            )
            .await
            .map_err(|e| BenchError::io(format!("GET {path}"), e))?;
        let body = String::from_utf8_lossy(c.body()).into_owned();
        if status != 200 {
            return Err(BenchError::Invalid(format!("GET {path}: {status} {body}")));
        }
        Ok(body)
    }

    /// `o2c_agent_store_commits_total` from `/metrics`.
    pub(super) async fn commits(&self) -> Result<Commits, BenchError> {
        let text = self.get_text("/metrics").await?;
        let value = |prefix: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map(|v| v as u64)
                .ok_or_else(|| BenchError::Invalid(format!("no {prefix:?} in /metrics")))
        };
        let slow = |name: &str| -> Result<u64, BenchError> {
            let total = value(&format!("o2c_agent_store_{name}_seconds_count "))?;
            let fast = value(&format!(
                "o2c_agent_store_{name}_seconds_bucket{{le=\"{SLOW_SECONDS}\"}} "
            ))?;
            Ok(total.saturating_sub(fast))
        };
        Ok(Commits {
            total: value("o2c_agent_store_commits_total ")?,
            slow: slow("commit")?,
            slow_sync: slow("sync")?,
        })
    }

    /// `VmRSS` and `VmHWM` from `/proc/<pid>/status`.
    pub(super) fn memory(&self) -> Result<Memory, BenchError> {
        memory_of(self.pid)
    }

    /// The pid, for samplers on other tasks.
    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    /// CPU ticks used so far, by thread role, and by the bench process.
    pub(super) fn cpu(&self) -> Result<Cpu, BenchError> {
        let mut cpu = Cpu::default();
        let dir = format!("/proc/{}/task", self.pid);
        let tasks =
            std::fs::read_dir(&dir).map_err(|e| BenchError::io(format!("listing {dir}"), e))?;
        for task in tasks {
            let task = task.map_err(|e| BenchError::io(format!("listing {dir}"), e))?;
            // A thread may exit between the listing and the read.
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            let Some((name, ticks)) = parse_stat(&stat) else {
                continue;
            };
            cpu.agent += ticks;
            if name.starts_with("o2c-store-write") {
                cpu.writer += ticks;
            } else if name.starts_with("tokio-r") {
                cpu.runtime += ticks;
            }
        }
        let own = std::fs::read_to_string("/proc/self/stat")
            .map_err(|e| BenchError::io("reading /proc/self/stat", e))?;
        cpu.client = parse_stat(&own).map_or(0, |(_, t)| t);
        Ok(cpu)
    }

    /// SIGKILL (so nothing is flushed on the way out), then counts the rows
    /// in the database with a read-only connection.
    pub(super) fn kill_and_count(&mut self) -> Result<Rows, BenchError> {
        self.guard.kill().map_err(|e| harness("killing", e))?;
        let conn = rusqlite::Connection::open_with_flags(
            &self.db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .map_err(|e| BenchError::sqlite("opening agent.db read-only", e))?;
        let count = |sql: &str| -> Result<u64, BenchError> {
            conn.query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|v| u64::try_from(v).unwrap_or(0))
                .map_err(|e| BenchError::sqlite(sql, e))
        };
        Ok(Rows {
            orders: count("SELECT COUNT(*) FROM orders")?,
            pending_outbox: count("SELECT COUNT(*) FROM outbox WHERE state = 'pending'")?,
            idempotency: count("SELECT COUNT(*) FROM idempotency")?,
        })
    }
}

/// `VmRSS`, `VmHWM` and `RssAnon` of `pid`.
pub(super) fn memory_of(pid: u32) -> Result<Memory, BenchError> {
    let path = format!("/proc/{pid}/status");
    let text =
        std::fs::read_to_string(&path).map_err(|e| BenchError::io(format!("reading {path}"), e))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    match (field("VmRSS:"), field("VmHWM:"), field("RssAnon:")) {
        (Some(rss_kib), Some(hwm_kib), Some(anon_kib)) => Ok(Memory {
            rss_kib,
            hwm_kib,
            anon_kib,
        }),
        _ => Err(BenchError::Invalid(format!(
            "no VmRSS/VmHWM/RssAnon in {path}"
        ))),
    }
}

/// The thread name and `utime + stime` ticks of a `/proc/.../stat` line.
fn parse_stat(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = &stat[open + 1..close];
    // After the name: state is field 3, utime 14, stime 15 (1-based).
    let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_with_spaces_in_the_name() {
        let line = "42 (tokio-runtime w) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0";
        assert_eq!(parse_stat(line), Some(("tokio-runtime w", 10)));
    }

    #[test]
    fn own_memory_is_readable() {
        let m = memory_of(std::process::id()).unwrap();
        assert!(m.rss_kib > 0 && m.hwm_kib >= m.rss_kib);
    }
}
