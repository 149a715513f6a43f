//! [`CpuSnapshot`]: utime + stime of the agent, ingest, saga, catalog
//! service, processor simulator, Mosquitto and Tansu (this process's children), of every
//! PostgreSQL process (the shared server's backends) and of the bench
//! process itself, read from `/proc/<pid>/stat`, and the difference of two
//! snapshots as benchmark metrics.

use std::collections::BTreeMap;
use std::path::Path;

use super::{BenchError, Measurement};

/// Linux reports utime/stime in USER_HZ ticks, fixed at 100 per second on
/// x86-64 and arm64 (independent of the kernel's CONFIG_HZ).
const USER_HZ: f64 = 100.0;

/// CPU ticks (utime + stime) per process at one moment.
#[derive(Debug, Clone, Default)]
pub(super) struct CpuSnapshot {
    ticks: BTreeMap<&'static str, u64>,
}

/// The processes accounted, by `comm`, and their metric names (an
/// `o2c-cloud` child is `saga` or `catalog` when its command line runs
/// that service, `ingest` otherwise; `postgres` is every PostgreSQL
/// process, whoever started it).
const PROCESSES: [(&str, &str); 8] = [
    ("o2c-agent", "agent"),
    ("o2c-cloud", "ingest"),
    ("o2c-cloud", "saga"),
    ("o2c-cloud", "catalog"),
    ("o2c-psp-sim", "psp"),
    ("mosquitto", "mosquitto"),
    ("tansu", "tansu"),
    ("postgres", "postgres"),
];

impl CpuSnapshot {
    /// Reads `/proc/<pid>/stat` of every child of this process that is one
    /// of [`PROCESSES`], and of this process (`bench`: HTTP clients, the
    /// link proxy, baseline producers).
    pub(super) fn take() -> Result<Self, BenchError> {
        let me = std::process::id();
        let mut ticks = BTreeMap::new();
        let own = read_stat(Path::new("/proc/self/stat"))?
            .ok_or_else(|| BenchError::Invalid("cannot parse /proc/self/stat".into()))?;
        ticks.insert("bench", own.ticks);
        let entries = std::fs::read_dir("/proc").map_err(|e| BenchError::io("listing /proc", e))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            // A process may exit between listing and reading: skip it.
            let Ok(Some(stat)) = read_stat(&entry.path().join("stat")) else {
                continue;
            };
            let label = match stat.comm.as_str() {
                "postgres" => "postgres",
                _ if stat.ppid != me => continue,
                "o2c-cloud" => {
                    let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                    let runs = |service: &[u8]| cmdline.split(|b| *b == 0).any(|a| a == service);
                    if runs(b"saga") {
                        "saga"
                    } else if runs(b"catalog") {
                        "catalog"
                    } else {
                        "ingest"
                    }
                }
                comm => match PROCESSES.iter().find(|(c, _)| *c == comm) {
                    Some((_, label)) => *label,
                    None => continue,
                },
            };
            *ticks.entry(label).or_insert(0) += stat.ticks;
        }
        Ok(Self { ticks })
    }

    /// Records `cpu_{process}_s` for the time between `self` and `later`,
    /// and `cpu_total_s`; returns the total without the bench's own (the
    /// stack's).
    pub(super) fn record_delta(
        &self,
        later: &CpuSnapshot,
        m: &mut Measurement,
        prefix: &str,
    ) -> f64 {
        let mut total = 0.0;
        let mut bench = 0.0;
        let mut labels: Vec<&str> = PROCESSES.iter().map(|(_, l)| *l).collect();
        labels.push("bench");
        for label in labels {
            let before = self.ticks.get(label).copied().unwrap_or(0);
            let after = later.ticks.get(label).copied().unwrap_or(0);
            let secs = after.saturating_sub(before) as f64 / USER_HZ;
            total += secs;
            if label == "bench" {
                bench = secs;
            }
            m.metric(&format!("{prefix}cpu_{label}_s"), secs);
        }
        m.metric(&format!("{prefix}cpu_total_s"), total);
        total - bench
    }
}

/// `cpu_{label}_s` of the difference between two snapshots (0 when that
/// process kind did not run).
pub(super) fn cpu_of(before: &CpuSnapshot, after: &CpuSnapshot, label: &str) -> f64 {
    let mut all = Measurement::default();
    before.record_delta(after, &mut all, "");
    let name = format!("cpu_{label}_s");
    all.metrics
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0.0, |(_, v)| *v)
}

/// utime + stime of one process, in seconds.
pub(super) fn cpu_seconds_of(pid: u32) -> Result<f64, BenchError> {
    let stat = read_stat(Path::new(&format!("/proc/{pid}/stat")))?
        .ok_or_else(|| BenchError::Invalid(format!("cannot parse /proc/{pid}/stat")))?;
    Ok(stat.ticks as f64 / USER_HZ)
}

struct Stat {
    comm: String,
    ppid: u32,
    ticks: u64,
}

fn read_stat(path: &Path) -> Result<Option<Stat>, BenchError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BenchError::io(format!("reading {}", path.display()), e))?;
    Ok(parse_stat(&text))
}

fn parse_stat(text: &str) -> Option<Stat> {
    // `pid (comm) state ppid … utime stime …`; comm may hold spaces or ')'.
    let (open, close) = (text.find('(')?, text.rfind(')')?);
    let comm = text[open + 1..close].to_owned();
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // After comm: [0] state, [1] ppid, … [11] utime, [12] stime.
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some(Stat {
        comm,
        ppid: u32::try_from(num(1)?).unwrap_or(0),
        ticks: num(11)? + num(12)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_odd_process_names() {
        let line = "4242 (tokio (rt) x) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 9 0";
        let st = parse_stat(line).unwrap();
        assert_eq!(st.comm, "tokio (rt) x");
        assert_eq!(st.ppid, 17);
        assert_eq!(st.ticks, 281);
        assert!(parse_stat("garbage").is_none());
        let own = read_stat(Path::new("/proc/self/stat")).unwrap().unwrap();
        assert_eq!(own.ppid, std::os::unix::process::parent_id());
    }
}
