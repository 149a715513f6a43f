//! [`CpuSnapshot`]: utime + stime of the agent, ingest, Mosquitto, Tansu
//! and the bench process itself, read from `/proc/<pid>/stat`, and the
//! difference of two snapshots as benchmark metrics.

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

/// The processes accounted, by `comm`, and their metric names.
const PROCESSES: [(&str, &str); 4] = [
    ("o2c-agent", "agent"),
    ("o2c-cloud", "ingest"),
    ("mosquitto", "mosquitto"),
    ("tansu", "tansu"),
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
            if stat.ppid != me {
                continue;
            }
            if let Some((_, label)) = PROCESSES.iter().find(|(comm, _)| *comm == stat.comm) {
                *ticks.entry(*label).or_insert(0) += stat.ticks;
            }
        }
        Ok(Self { ticks })
    }

    /// Records `cpu_{process}_s` for the time between `self` and `later`,
    /// and `cpu_total_s`.
    pub(super) fn record_delta(&self, later: &CpuSnapshot, m: &mut Measurement, prefix: &str) {
        let mut total = 0.0;
        for label in PROCESSES
            .iter()
            .map(|(_, l)| *l)
            .chain(std::iter::once("bench"))
        {
            let before = self.ticks.get(label).copied().unwrap_or(0);
            let after = later.ticks.get(label).copied().unwrap_or(0);
            let secs = after.saturating_sub(before) as f64 / USER_HZ;
            total += secs;
            m.metric(&format!("{prefix}cpu_{label}_s"), secs);
        }
        m.metric(&format!("{prefix}cpu_total_s"), total);
    }
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
