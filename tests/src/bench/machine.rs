//! The machine a result was measured on, read from `/proc`.

use serde::Serialize;

/// CPU, memory, kernel and host of the benchmark machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Machine {
    /// Logical CPUs available to this process.
    pub cpus: usize,
    /// `model name` from `/proc/cpuinfo`.
    pub model: String,
    /// `MemTotal` from `/proc/meminfo`, as written there (e.g. `24563652 kB`).
    pub mem_total: String,
    /// Kernel release (`/proc/sys/kernel/osrelease`).
    pub kernel: String,
    /// Host name (`/proc/sys/kernel/hostname`).
    pub hostname: String,
}

impl Machine {
    /// Reads the current machine; unknown fields become `"unknown"`.
    pub fn detect() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let meminfo = read("/proc/meminfo");
        Self {
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            model: field(&cpuinfo, "model name"),
            mem_total: field(&meminfo, "MemTotal"),
            kernel: or_unknown(read("/proc/sys/kernel/osrelease").trim()),
            hostname: or_unknown(read("/proc/sys/kernel/hostname").trim()),
        }
    }
}

/// The value of the first `key: value` line.
fn field(text: &str, key: &str) -> String {
    let value = text
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
        .unwrap_or("");
    or_unknown(value)
}

fn or_unknown(value: &str) -> String {
    if value.is_empty() {
        "unknown".to_owned()
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_from_proc_style_text() {
        let text = "processor\t: 0\nmodel name\t: Test CPU @ 2.0GHz\nflags\t: x\n";
        assert_eq!(field(text, "model name"), "Test CPU @ 2.0GHz");
        assert_eq!(field(text, "missing"), "unknown");
        assert_eq!(
            field("MemTotal:       24563652 kB\n", "MemTotal"),
            "24563652 kB"
        );
    }

    #[test]
    fn detect_finds_cpus() {
        assert!(Machine::detect().cpus > 0);
    }
}
