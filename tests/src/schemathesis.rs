//! Schemathesis, the property-based API tester, run against an OpenAPI
//! document and a live server: [`Run`] says what to run, [`Run::execute`]
//! runs the `st` CLI (installed by `deploy/dev/schemathesis.sh install`)
//! and reads its NDJSON report into an [`Outcome`]: the check failures,
//! and per operation how many generated requests got 2xx, 4xx or 5xx.
//!
//! ```ignore
//! let outcome = Run::new(format!("{base}/openapi.json"), base)
//!     .bearer(token)
//!     .max_examples(50)
//!     .seed(7)
//!     .unique_header("Idempotency-Key")
//!     .execute()
//!     .await?;
//! outcome.assert_no_failures();
//! let capture = outcome.operation("POST /v1/orders");
//! ```
//!
//! A header named with [`Run::unique_header`] is one a client must not
//! reuse across different requests (an idempotency key): when a generated
//! request repeats a value already sent with another request, a
//! `before_call` hook (the remedy Schemathesis itself suggests for values
//! repeated across cases) gives it a fresh value of letters, at least as
//! long. Bodies, queries and paths are never rewritten.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::HarnessError;

/// The checks run unless [`Run::checks`] says otherwise: no server error,
/// and every response (status, content type, headers, body) as documented.
pub const DEFAULT_CHECKS: [&str; 5] = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
];

const INSTALL_HINT: &str = "run `deploy/dev/schemathesis.sh install` (part of `deploy/dev/services.sh up`), or set O2C_SCHEMATHESIS to an `st` binary";

/// The `st` CLI: `O2C_SCHEMATHESIS`, else the venv that
/// `deploy/dev/schemathesis.sh install` makes under
/// `${O2C_DEV_DIR:-$HOME/.local/state/o2c-dev}`.
pub fn st_path() -> PathBuf {
    if let Some(p) = std::env::var_os("O2C_SCHEMATHESIS") {
        return PathBuf::from(p);
    }
    crate::env::dev_state_dir().join("schemathesis-venv/bin/st")
}

/// One Schemathesis run: the schema, the server and the generation knobs.
#[derive(Debug, Clone)]
pub struct Run {
    schema_url: String,
    base_url: String,
    headers: Vec<(String, String)>,
    max_examples: u32,
    seed: u64,
    operation_ids: Vec<String>,
    checks: Vec<String>,
    phases: Vec<String>,
    unique_headers: Vec<String>,
    timeout: Duration,
}

impl Run {
    /// Every operation of the document at `schema_url`, sent to `base_url`,
    /// with [`DEFAULT_CHECKS`], 20 examples per operation and seed 1.
    pub fn new(schema_url: impl Into<String>, base_url: impl Into<String>) -> Self {
        Self {
            schema_url: schema_url.into(),
            base_url: base_url.into(),
            headers: Vec::new(),
            max_examples: 20,
            seed: 1,
            operation_ids: Vec::new(),
            checks: DEFAULT_CHECKS.iter().map(|c| (*c).to_owned()).collect(),
            phases: Vec::new(),
            unique_headers: Vec::new(),
            timeout: Duration::from_secs(180),
        }
    }

    /// Sends `name: value` on every request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sends `Authorization: Bearer {token}` on every request.
    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", format!("Bearer {token}"))
    }

    /// At most `n` generated requests per operation and phase (`-n`).
    pub fn max_examples(mut self, n: u32) -> Self {
        self.max_examples = n;
        self
    }

    /// The random seed: the same seed, schema and server state give the
    /// same requests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Tests only these operations (by `operationId`); all when never called.
    pub fn operation_id(mut self, id: impl Into<String>) -> Self {
        self.operation_ids.push(id.into());
        self
    }

    /// Replaces the checks (names as `st run --checks` takes them).
    pub fn checks(mut self, checks: &[&str]) -> Self {
        self.checks = checks.iter().map(|c| (*c).to_owned()).collect();
        self
    }

    /// Runs only these phases (`examples`, `coverage`, `fuzzing`,
    /// `stateful`); all when never called.
    pub fn phases(mut self, phases: &[&str]) -> Self {
        self.phases = phases.iter().map(|p| (*p).to_owned()).collect();
        self
    }

    /// A header a client must not reuse across different requests (see
    /// the module doc).
    pub fn unique_header(mut self, name: impl Into<String>) -> Self {
        self.unique_headers.push(name.into());
        self
    }

    /// Kills `st` after `timeout` (default 180 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The `st run` arguments, the report written to `report`.
    fn args(&self, report: &std::path::Path) -> Vec<String> {
        let mut a = vec!["run".to_owned(), self.schema_url.clone()];
        // One worker and no example database: the same seed gives the same run.
        let fixed = "--workers 1 --generation-database none --request-timeout 10 \
                     --report ndjson --no-color";
        a.extend(fixed.split_whitespace().map(str::to_owned));
        for (flag, value) in [
            ("--url", self.base_url.clone()),
            ("--checks", self.checks.join(",")),
            ("--max-examples", self.max_examples.to_string()),
            ("--seed", self.seed.to_string()),
            ("--report-ndjson-path", report.display().to_string()),
        ] {
            a.extend([flag.to_owned(), value]);
        }
        for (name, value) in &self.headers {
            a.extend(["--header".into(), format!("{name}: {value}")]);
        }
        for id in &self.operation_ids {
            a.extend(["--include-operation-id".into(), id.clone()]);
        }
        if !self.phases.is_empty() {
            a.extend(["--phases".into(), self.phases.join(",")]);
        }
        a
    }

    /// Runs `st` and reads its report. Fails (never skips) when `st` is
    /// not installed, when it cannot run, or when it writes no report; a
    /// run that finds failures is an `Ok` [`Outcome`] listing them.
    pub async fn execute(&self) -> Result<Outcome, HarnessError> {
        let st = st_path();
        if !st.is_file() {
            return Err(HarnessError::ProgramNotFound {
                name: format!("schemathesis ({})", st.display()),
                hint: INSTALL_HINT,
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("o2c-schemathesis-")
            .tempdir()
            .map_err(|e| HarnessError::io("create a temp dir for schemathesis", e))?;
        let report = dir.path().join("report.ndjson");
        let mut cmd = tokio::process::Command::new(&st);
        cmd.args(self.args(&report))
            .current_dir(dir.path())
            .kill_on_drop(true);
        if !self.unique_headers.is_empty() {
            std::fs::write(dir.path().join("o2c_st_hooks.py"), HOOKS)
                .map_err(|e| HarnessError::io("write the schemathesis hooks", e))?;
            let names = serde_json::to_string(&self.unique_headers).unwrap_or_default();
            cmd.env("PYTHONPATH", dir.path())
                .env("SCHEMATHESIS_HOOKS", "o2c_st_hooks")
                .env("O2C_ST_UNIQUE_HEADERS", names);
        }
        let output = tokio::time::timeout(self.timeout, cmd.output())
            .await
            .map_err(|_| HarnessError::Timeout {
                what: format!("schemathesis against {}", self.schema_url),
                timeout: self.timeout,
            })?
            .map_err(|e| HarnessError::io(format!("run {}; {INSTALL_HINT}", st.display()), e))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let text = std::fs::read_to_string(&report).map_err(|e| {
            HarnessError::Pipeline(format!(
                "schemathesis wrote no report ({e}; exit {:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
                output.status.code(),
                tail(&stdout, 60),
                tail(&stderr, 30)
            ))
        })?;
        let mut outcome = Outcome::from_ndjson(&text)?;
        outcome.exit_code = output.status.code();
        outcome.summary = tail(&stdout, 80);
        Ok(outcome)
    }
}

/// The last `lines` lines of `s`.
fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The `before_call` hook behind [`Run::unique_header`].
const HOOKS: &str = r#"
import json, os, secrets, string, threading
import schemathesis

_UNIQUE = {h.lower() for h in json.loads(os.environ.get("O2C_ST_UNIQUE_HEADERS", "[]"))}
_first_use = {}
_lock = threading.Lock()

def _request(case):
    return json.dumps([case.method, case.formatted_path, case.query, case.body],
                      sort_keys=True, default=repr)

@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers
    if not headers:
        return
    request = _request(case)
    for name in list(headers):
        value = headers[name]
        if name.lower() not in _UNIQUE or not isinstance(value, str):
            continue
        with _lock:
            if _first_use.setdefault((name.lower(), value), request) == request:
                continue
            fresh = "".join(secrets.choice(string.ascii_letters) for _ in range(max(len(value), 16)))
            _first_use[(name.lower(), fresh)] = request
        headers[name] = fresh
"#;

/// What one run found.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The Schemathesis version that ran.
    pub version: String,
    /// `st`'s exit code (`None` if killed by a signal).
    pub exit_code: Option<i32>,
    /// Every failed check, one per request.
    pub failures: Vec<Failure>,
    /// Errors that stopped an operation or the run (schema, network).
    pub errors: Vec<String>,
    /// Per operation (`"POST /v1/orders"`), what its generated requests got.
    pub operations: BTreeMap<String, OperationStats>,
    /// The end of `st`'s own text report.
    pub summary: String,
}

/// One failed check on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `"POST /v1/orders"`.
    pub operation: String,
    /// The check, e.g. `response_schema_conformance`.
    pub check: String,
    /// The failure's title and message, as Schemathesis words them.
    pub description: String,
    /// The response status, when there was a response.
    pub status: Option<u16>,
    /// The request line, `POST http://...`.
    pub request: String,
}

/// The generated requests of one operation, by generation mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperationStats {
    /// Requests generated to satisfy the schema.
    pub positive: StatusCounts,
    /// Requests generated to violate it.
    pub negative: StatusCounts,
    /// The positive requests per phase (`examples`, `coverage`, ...).
    pub positive_by_phase: BTreeMap<String, StatusCounts>,
    /// Why positive requests were refused: `"422 invalid_order"` (the
    /// error body's `error.code`, else the status alone) and how often.
    pub refusals: BTreeMap<String, u32>,
}

/// Responses by status class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// 2xx.
    pub success: u32,
    /// 4xx.
    pub client_error: u32,
    /// 5xx.
    pub server_error: u32,
    /// Anything else, or no response.
    pub other: u32,
    /// Every status seen, and how often.
    pub by_status: BTreeMap<u16, u32>,
}

impl StatusCounts {
    fn add(&mut self, status: Option<u16>) {
        match status {
            Some(200..=299) => self.success += 1,
            Some(400..=499) => self.client_error += 1,
            Some(500..=599) => self.server_error += 1,
            _ => self.other += 1,
        }
        if let Some(s) = status {
            *self.by_status.entry(s).or_default() += 1;
        }
    }

    /// Every request counted.
    pub fn total(&self) -> u32 {
        self.success + self.client_error + self.server_error + self.other
    }

    /// The share answered 2xx (0 when nothing was sent).
    pub fn accepted_fraction(&self) -> f64 {
        match self.total() {
            0 => 0.0,
            n => f64::from(self.success) / f64::from(n),
        }
    }
}

impl fmt::Display for StatusCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} sent: {} 2xx ({:.0}%), {} 4xx, {} 5xx",
            self.total(),
            self.success,
            100.0 * self.accepted_fraction(),
            self.client_error,
            self.server_error
        )?;
        if self.other > 0 {
            write!(f, ", {} other", self.other)?;
        }
        Ok(())
    }
}

impl Outcome {
    /// Reads a `st run --report ndjson` report.
    pub fn from_ndjson(text: &str) -> Result<Self, HarnessError> {
        let mut out = Outcome::default();
        let mut seen = HashSet::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let event: Value = serde_json::from_str(line).map_err(|e| {
                HarnessError::Pipeline(format!("schemathesis report line {}: {e}", n + 1))
            })?;
            let Some((kind, body)) = event.as_object().and_then(|o| o.iter().next()) else {
                continue;
            };
            match kind.as_str() {
                "Initialize" => {
                    out.version = str_at(body, "/schemathesis_version").to_owned();
                }
                "NonFatalError" => out.errors.push(format!(
                    "{}: {}: {}",
                    str_at(body, "/label"),
                    str_at(body, "/value/type"),
                    str_at(body, "/value/message")
                )),
                "FatalError" => out.errors.push(format!("fatal: {body}")),
                _ => {
                    if let Some(recorder) = body.get("recorder") {
                        out.record(recorder, &mut seen);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Counts the cases of one scenario recorder (each case once).
    fn record(&mut self, recorder: &Value, seen: &mut HashSet<String>) {
        let Some(cases) = recorder.get("cases").and_then(Value::as_object) else {
            return;
        };
        for (id, case) in cases {
            if !seen.insert(id.clone()) {
                continue;
            }
            let value = &case["value"];
            let op = format!("{} {}", str_at(value, "/method"), str_at(value, "/path"));
            let response = recorder.pointer(&format!("/interactions/{id}/response"));
            let status = response
                .and_then(|r| r["status_code"].as_u64())
                .and_then(|s| u16::try_from(s).ok());
            let stats = self.operations.entry(op.clone()).or_default();
            if str_at(value, "/meta/generation/mode") == "negative" {
                stats.negative.add(status);
            } else {
                stats.positive.add(status);
                let phase = str_at(value, "/meta/phase/name").to_owned();
                stats
                    .positive_by_phase
                    .entry(phase)
                    .or_default()
                    .add(status);
                if !matches!(status, Some(200..=299)) {
                    let code = response.and_then(error_code);
                    let why = match (status, code) {
                        (Some(s), Some(c)) => format!("{s} {c}"),
                        (Some(s), None) => s.to_string(),
                        (None, _) => "no response".to_owned(),
                    };
                    *stats.refusals.entry(why).or_default() += 1;
                }
            }
            let checks = recorder.pointer(&format!("/checks/{id}"));
            for check in checks.and_then(Value::as_array).into_iter().flatten() {
                if check["status"] != "failure" {
                    continue;
                }
                let failure = &check["failure_info"]["failure"];
                self.failures.push(Failure {
                    operation: op.clone(),
                    check: str_at(check, "/name").to_owned(),
                    description: format!(
                        "{}: {}",
                        str_at(failure, "/title"),
                        str_at(failure, "/message")
                    ),
                    status,
                    request: recorder
                        .pointer(&format!("/interactions/{id}/request"))
                        .map(|r| format!("{} {}", str_at(r, "/method"), str_at(r, "/uri")))
                        .unwrap_or_default(),
                });
            }
        }
    }

    /// The stats of `operation` (`"POST /v1/orders"`); empty when it was
    /// never called.
    pub fn operation(&self, operation: &str) -> OperationStats {
        self.operations.get(operation).cloned().unwrap_or_default()
    }

    /// Panics, listing every failure and error, unless there is none.
    pub fn assert_no_failures(&self) {
        assert!(
            self.failures.is_empty() && self.errors.is_empty(),
            "schemathesis {} found {} failure(s) and {} error(s):\n{}\n--- st summary ---\n{}",
            self.version,
            self.failures.len(),
            self.errors.len(),
            self.failures
                .iter()
                .map(|f| format!(
                    "- {} [{}] {}: {}\n  {}",
                    f.operation,
                    f.status.map(|s| s.to_string()).unwrap_or_default(),
                    f.check,
                    f.description,
                    f.request
                ))
                .chain(self.errors.iter().map(|e| format!("- error: {e}")))
                .collect::<Vec<_>>()
                .join("\n"),
            self.summary
        );
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "schemathesis {}: {} failure(s), {} error(s)",
            self.version,
            self.failures.len(),
            self.errors.len()
        )?;
        let mut probes = StatusCounts::default();
        for (op, s) in &self.operations {
            if s.positive.total() == 0 {
                // Only negative cases: methods the document does not define.
                for (status, n) in &s.negative.by_status {
                    for _ in 0..*n {
                        probes.add(Some(*status));
                    }
                }
                continue;
            }
            writeln!(
                f,
                "{op}\n  positive: {}\n  negative: {}",
                s.positive, s.negative
            )?;
            for (phase, c) in &s.positive_by_phase {
                writeln!(f, "    {phase}: {c}")?;
            }
            if !s.refusals.is_empty() {
                let why: Vec<String> = s
                    .refusals
                    .iter()
                    .map(|(k, n)| format!("{k} ×{n}"))
                    .collect();
                writeln!(f, "    refused: {}", why.join(", "))?;
            }
        }
        if probes.total() > 0 {
            writeln!(f, "methods the document does not define: {probes}")?;
        }
        Ok(())
    }
}

/// The string at JSON pointer `at` of `v` (empty when absent).
fn str_at<'a>(v: &'a Value, at: &str) -> &'a str {
    v.pointer(at).and_then(Value::as_str).unwrap_or_default()
}

/// `error.code` of a recorded response body `{"error": {"code": ...}}`.
fn error_code(response: &Value) -> Option<String> {
    // The report writes bodies as standard base64 with padding.
    let body = base64::engine::general_purpose::STANDARD
        .decode(response.pointer("/content/$base64")?.as_str()?)
        .ok()?;
    let v: Value = serde_json::from_slice(&body).ok()?;
    let code = v.pointer("/error/code")?.as_str()?;
    Some(match v.pointer("/error/field").and_then(Value::as_str) {
        Some(field) => format!("{code} ({field})"),
        None => code.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cases_checks_and_refusals() {
        // A 201, a 422 `invalid_order` failing a check, a negative 400;
        // the scenario is reported twice, its cases counted once.
        let case = |mode: &str, phase: &str| {
            serde_json::json!({"value": {"method": "POST", "path": "/v1/orders",
                "meta": {"generation": {"mode": mode}, "phase": {"name": phase}}}})
        };
        let answer = |status: u16, body: &str| {
            serde_json::json!({"request": {"method": "POST", "uri": "http://x/v1/orders"},
                "response": {"status_code": status, "content": {"$base64": body}}})
        };
        let invalid_order = "eyJlcnJvciI6eyJjb2RlIjoiaW52YWxpZF9vcmRlciJ9fQ==";
        let event = serde_json::json!({"ScenarioFinished": {"recorder": {
            "cases": {"a": case("positive", "fuzzing"), "b": case("positive", "coverage"),
                "c": case("negative", "fuzzing")},
            "checks": {"b": [{"name": "response_schema_conformance", "status": "failure",
                "failure_info": {"failure": {"title": "Response violates schema", "message": "x"}}}]},
            "interactions": {"a": answer(201, ""), "b": answer(422, invalid_order),
                "c": answer(400, "")}
        }}});
        let init = r#"{"Initialize": {"schemathesis_version": "4.32.5"}}"#;
        let out = Outcome::from_ndjson(&format!("{init}\n{event}\n{event}\n")).unwrap();
        assert_eq!(out.version, "4.32.5");
        let s = out.operation("POST /v1/orders");
        assert_eq!((s.positive.success, s.positive.client_error), (1, 1));
        assert_eq!(s.negative.client_error, 1);
        assert_eq!(s.refusals.get("422 invalid_order"), Some(&1));
        assert_eq!(s.positive_by_phase["coverage"].by_status[&422], 1);
        assert_eq!(out.failures.len(), 1);
        assert_eq!(out.failures[0].check, "response_schema_conformance");
        assert_eq!(out.failures[0].status, Some(422));
    }
}
