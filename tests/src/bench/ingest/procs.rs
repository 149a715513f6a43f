//! The processes around the measurement: one real `o2c-cloud ingest` that
//! this module spawns itself (to keep its pid), and CPU time read from
//! `/proc/<pid>/stat` and `/proc/<pid>/task/*/stat`.

use crate::bench::harness;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::super::BenchError;
use crate::wait::wait_http_ok;
use crate::{ChildGuard, bin_path, free_port};

/// A running `o2c-cloud ingest`, killed when dropped.
#[derive(Debug)]
pub(super) struct IngestProc {
    guard: ChildGuard,
    http: SocketAddr,
    log: PathBuf,
}

impl IngestProc {
    /// Writes `ingest.toml` in `dir` (topics under `{prefix}.`, shared group
    /// `{prefix}`, as `pipeline::Ingest` does) and starts the release binary
    /// next to this one; waits until `/readyz` answers 200.
    pub(super) async fn start(
        dir: &Path,
        prefix: &str,
        mqtt_url: &str,
        brokers: &str,
        partitions: i32,
    ) -> Result<Self, BenchError> {
        let http = SocketAddr::from((
            [127, 0, 0, 1],
            free_port().map_err(|e| harness("a free port", e))?,
        ));
        let config = dir.join("ingest.toml");
        std::fs::write(
            &config,
            format!(
                "[mqtt]\nurl = \"{mqtt_url}\"\n[kafka]\nbrokers = \"{brokers}\"\n\
                 topic_prefix = \"{prefix}.\"\npartitions = {partitions}\n\
                 [ingest]\nshared_group = \"{prefix}\"\n[http]\nlisten = \"{http}\"\n"
            ),
        )
        .map_err(|e| BenchError::io("writing ingest.toml", e))?;
        let log = dir.join("ingest.log");
        let file = std::fs::File::create(&log)
            .map_err(|e| BenchError::io(format!("creating {}", log.display()), e))?;
        let mut cmd = Command::new(bin_path("o2c-cloud"));
        cmd.arg("ingest")
            .arg("--config")
            .arg(&config)
            .env(
                "RUST_LOG",
                std::env::var("O2C_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        let guard = ChildGuard::spawn("o2c-cloud ingest", &mut cmd)
            .map_err(|e| harness("starting o2c-cloud ingest", e))?;
        let me = Self { guard, http, log };
        let url = format!("http://{http}/readyz");
        wait_http_ok("ingest /readyz", &url, &me.log)
            .await
            .map_err(|e| harness("waiting for the ingest", e))?;
        Ok(me)
    }

    /// Its process id.
    pub(super) fn pid(&self) -> u32 {
        self.guard.id()
    }

    /// The end of its log, for error messages.
    pub(super) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(3000);
        text.get(start..).unwrap_or("").to_owned()
    }

    /// `/metrics` as `name{labels} -> value`, for the counters it reports.
    pub(super) async fn metrics(&self) -> Result<BTreeMap<String, f64>, BenchError> {
        let text = reqwest::get(format!("http://{}/metrics", self.http))
            .await
            .map_err(|e| harness("GET /metrics", e))?
            .text()
            .await
            .map_err(|e| harness("GET /metrics", e))?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
            .collect())
    }
}

/// Clock ticks per second for `/proc` times (`getconf CLK_TCK`; 100 on
/// Linux unless the kernel was built otherwise).
pub(super) fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|&t| t > 0.0)
        .unwrap_or(100.0)
}

/// `utime + stime` in ticks from a `/proc/.../stat` line.
fn stat_ticks(text: &str) -> Option<u64> {
    // The command name may contain spaces and ')' : split after the last ')'.
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU ticks of a whole process (all its threads, live and exited).
pub(super) fn process_ticks(pid: u32) -> Result<u64, BenchError> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| BenchError::io(&path, e))?;
    stat_ticks(&text).ok_or_else(|| BenchError::Invalid(format!("cannot parse {path}")))
}

/// CPU ticks per live thread: `tid -> (name, ticks)`.
pub(super) fn thread_ticks(pid: u32) -> BTreeMap<u32, (String, u64)> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let path = entry.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if let Some(t) = std::fs::read_to_string(path.join("stat"))
            .ok()
            .as_deref()
            .and_then(stat_ticks)
        {
            out.insert(tid, (name.trim().to_owned(), t));
        }
    }
    out
}

/// Which part of a process a thread belongs to, by its name.
pub(super) fn thread_kind(name: &str) -> &'static str {
    if name.starts_with("rdk:") {
        "rdkafka"
    } else if name.starts_with("tokio-") {
        "tokio"
    } else {
        "other"
    }
}

/// Ticks spent per thread between two snapshots, summed by [`thread_kind`];
/// also the per-thread list, busiest first.
pub(super) fn thread_delta(
    before: &BTreeMap<u32, (String, u64)>,
    after: &BTreeMap<u32, (String, u64)>,
) -> (BTreeMap<&'static str, u64>, Vec<(String, u64)>) {
    let mut kinds = BTreeMap::new();
    let mut threads = Vec::new();
    for (tid, (name, t)) in after {
        let was = before.get(tid).map_or(0, |(_, t)| *t);
        let d = t.saturating_sub(was);
        *kinds.entry(thread_kind(name)).or_insert(0) += d;
        threads.push((format!("{name}[{tid}]"), d));
    }
    threads.sort_by_key(|t| std::cmp::Reverse(t.1));
    (kinds, threads)
}

/// The pid of a child of this process whose command line contains `marker`
/// (the private brokers do not expose theirs).
pub(super) fn child_pid_with_arg(marker: &str) -> Option<u32> {
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(me) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline
            .split(|&b| b == 0)
            .any(|arg| arg == marker.as_bytes())
        {
            return Some(pid);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_with_odd_names() {
        let line = "1234 (rdk:broker 1) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(stat_ticks(line), Some(300));
        assert_eq!(stat_ticks("garbage"), None);
    }

    #[test]
    fn this_process_has_cpu_time_and_threads() {
        assert!(process_ticks(std::process::id()).is_ok());
        assert!(!thread_ticks(std::process::id()).is_empty());
        assert!(clock_ticks() > 0.0);
    }

    #[test]
    fn thread_deltas_group_by_kind() {
        let before = BTreeMap::from([(1, ("rdk:main".to_owned(), 10))]);
        let after = BTreeMap::from([
            (1, ("rdk:main".to_owned(), 15)),
            (2, ("tokio-runtime-w".to_owned(), 7)),
        ]);
        let (kinds, threads) = thread_delta(&before, &after);
        assert_eq!(kinds.get("rdkafka"), Some(&5));
        assert_eq!(kinds.get("tokio"), Some(&7));
        assert_eq!(threads[0].1, 7);
    }
}
