//! The history file: JSON lines, written as the run goes. The first line
//! is the schedule, then one line per fault as it starts and heals, one per
//! order and one per return once their fate is known, and the verdict last,
//! so a failure can be read back against what happened around it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{Value, json};

use super::ChaosError;
use super::checker::{Facts, Verdict};
use super::schedule::Schedule;

/// An append-only JSON-lines file shared by the runner's tasks.
#[derive(Debug)]
pub struct History {
    out: Mutex<BufWriter<File>>,
}

impl History {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> Result<Self, ChaosError> {
        let file = File::create(path).map_err(|e| ChaosError::Io {
            what: format!("creating the history file {}", path.display()),
            source: e,
        })?;
        Ok(Self {
            out: Mutex::new(BufWriter::new(file)),
        })
    }

    /// Appends one line (`{"type": kind, ...body}`), flushed at once so a
    /// killed runner still leaves what it saw.
    pub fn record(&self, kind: &str, body: impl Serialize) -> Result<(), ChaosError> {
        let mut v = serde_json::to_value(body).map_err(ChaosError::Json)?;
        if let Value::Object(map) = &mut v {
            map.insert("type".into(), Value::String(kind.into()));
        } else {
            v = json!({"type": kind, "value": v});
        }
        let mut line = serde_json::to_string(&v).map_err(ChaosError::Json)?;
        line.push('\n');
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        out.write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| ChaosError::Io {
                what: "writing the history file".into(),
                source: e,
            })
    }

    /// The schedule, before anything starts.
    pub fn schedule(&self, scenario: &str, s: &Schedule) -> Result<(), ChaosError> {
        self.record(
            "schedule",
            json!({"scenario": scenario, "seed": s.seed, "faults": s.faults}),
        )
    }

    /// Every order, every return and the verdict, at the end.
    pub fn finish(&self, facts: &Facts, verdict: &Verdict) -> Result<(), ChaosError> {
        for o in &facts.orders {
            self.record("order", o)?;
        }
        for r in &facts.returns {
            self.record("return", r)?;
        }
        self.record(
            "end_state",
            json!({"stock": facts.stock, "kafka": facts.kafka, "agents": facts.agents,
                   "groups": facts.groups, "stray_returns": facts.stray_returns}),
        )?;
        self.record(
            "verdict",
            json!({"passed": verdict.passed(), "verdict": verdict}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::schedule::Shape;

    #[test]
    fn lines_are_json_with_a_type() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        let h = History::create(&path).unwrap();
        let s = Schedule::generate(
            1,
            Shape {
                duration_ms: 60_000,
                agents: 2,
                ingests: 2,
                netns: false,
            },
        );
        h.schedule("general", &s).unwrap();
        h.record("fault", json!({"t_ms": 5, "phase": "start"}))
            .unwrap();
        h.finish(&Facts::default(), &Verdict::default()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let types: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(types, ["schedule", "fault", "end_state", "verdict"]);
        assert!(text.lines().next().unwrap().contains("\"seed\":1"));
    }
}
