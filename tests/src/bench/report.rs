//! The result document (`--json`) and the table `o2c-bench` prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::Measurement;
use super::machine::Machine;

/// `{"scenario", "params", "metrics", "baseline", "machine", "unix_time"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The scenario name.
    pub scenario: String,
    /// Parameters used.
    pub params: BTreeMap<String, serde_json::Value>,
    /// Results by name.
    pub metrics: BTreeMap<String, f64>,
    /// Same-run reference values by name.
    pub baseline: BTreeMap<String, f64>,
    /// Where it ran.
    pub machine: Machine,
    /// When it finished (seconds since the Unix epoch).
    pub unix_time: u64,
}

impl Report {
    /// Builds the document from a measurement.
    pub fn new(scenario: &str, measurement: &Measurement, machine: Machine) -> Self {
        Self {
            scenario: scenario.to_owned(),
            params: measurement.params.iter().cloned().collect(),
            metrics: measurement.metrics.iter().cloned().collect(),
            baseline: measurement.baseline.iter().cloned().collect(),
            machine,
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

/// The human-readable table, in the measurement's own order.
pub fn table(scenario: &str, measurement: &Measurement, machine: &Machine) -> String {
    let width = measurement
        .metrics
        .iter()
        .chain(&measurement.baseline)
        .map(|(name, _)| name.len())
        .chain(measurement.params.iter().map(|(name, _)| name.len()))
        .max()
        .unwrap_or(0)
        .max(6);
    let mut out = String::new();
    let _ = writeln!(out, "scenario: {scenario}");
    let _ = writeln!(
        out,
        "machine:  {} CPUs, {}, {} RAM, kernel {}",
        machine.cpus, machine.model, machine.mem_total, machine.kernel
    );
    for (title, rows) in [
        ("metric", &measurement.metrics),
        ("baseline", &measurement.baseline),
    ] {
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title:<width$}  {:>14}", "value");
        let _ = writeln!(out, "{}  {}", "-".repeat(width), "-".repeat(14));
        for (name, value) in rows {
            let _ = writeln!(out, "{name:<width$}  {value:>14.3}");
        }
    }
    if !measurement.params.is_empty() {
        let _ = writeln!(out, "\nparams:");
        for (name, value) in &measurement.params {
            let _ = writeln!(out, "  {name:<width$}  {value}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Measurement, Machine) {
        let mut m = Measurement::default();
        m.param("n", 10);
        m.metric("single_tx_per_s", 321.5);
        m.baseline("raw_fdatasync_per_s", 400.0);
        let machine = Machine {
            cpus: 2,
            model: "cpu".into(),
            mem_total: "1 kB".into(),
            kernel: "6".into(),
            hostname: "h".into(),
        };
        (m, machine)
    }

    #[test]
    fn json_has_the_documented_shape() {
        let (m, machine) = sample();
        let json = serde_json::to_value(Report::new("fsync", &m, machine)).unwrap();
        assert_eq!(json["scenario"], "fsync");
        assert_eq!(json["metrics"]["single_tx_per_s"], 321.5);
        assert_eq!(json["baseline"]["raw_fdatasync_per_s"], 400.0);
        assert_eq!(json["machine"]["cpus"], 2);
        assert_eq!(json["params"]["n"], 10);
    }

    #[test]
    fn table_lists_every_metric() {
        let (m, machine) = sample();
        let text = table("fsync", &m, &machine);
        assert!(text.contains("single_tx_per_s"));
        assert!(text.contains("321.500"));
        assert!(text.contains("raw_fdatasync_per_s"));
    }
}
