//! The trace receiver of the trace tests: Arize Phoenix, started on
//! 127.0.0.1 by `deploy/dev/services.sh`, which takes OTLP/HTTP on
//! `/v1/traces` and answers span queries over REST. Each test sends its
//! spans to a Phoenix project of its own (the resource attribute
//! `openinference.project.name`, set in the processes' `[telemetry]`
//! tables) and reads them back from there.

use std::time::Duration;

use serde_json::Value;

use crate::HarnessError;

/// Phoenix of the tests (`O2C_TEST_PHOENIX`, default the dev server).
pub fn phoenix_url() -> String {
    std::env::var("O2C_TEST_PHOENIX").unwrap_or_else(|_| "http://127.0.0.1:6006".into())
}

/// Panics, saying what to start, unless Phoenix answers.
pub async fn require_phoenix() -> String {
    let url = phoenix_url();
    let r = reqwest::Client::new()
        .get(format!("{url}/v1/projects"))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    match r {
        Ok(r) if r.status().is_success() => url,
        Ok(r) => panic!(
            "Phoenix {url} answers {}; start the dev services with `deploy/dev/services.sh up` \
             (it installs and starts Arize Phoenix)",
            r.status()
        ),
        Err(e) => panic!(
            "Phoenix {url} does not answer: {e}; start the dev services with \
             `deploy/dev/services.sh up` (it installs and starts Arize Phoenix)"
        ),
    }
}

/// The `[telemetry]` table that sends a process's spans, every one
/// sampled, to `phoenix` under `project`.
pub fn telemetry_table(phoenix: &str, project: &str) -> String {
    format!(
        "[telemetry]\nendpoint = \"{phoenix}/v1/traces\"\nsampling_ratio = 1.0\n\
         [telemetry.resource]\n\"openinference.project.name\" = \"{project}\"\n"
    )
}

/// One span as Phoenix stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSpan {
    /// Its name (`agent.capture`, `payment.step`, ...).
    pub name: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// Its parent's span id; `None` for a trace's root.
    pub parent_id: Option<String>,
    /// When it started, µs since the Unix epoch.
    pub start_us: Option<i64>,
}

/// Every span of `trace_id` in `project` (none while the project does
/// not exist yet).
pub async fn trace_spans(
    phoenix: &str,
    project: &str,
    trace_id: &str,
) -> Result<Vec<StoredSpan>, HarnessError> {
    spans(phoenix, project, Some(trace_id)).await
}

/// Every span in `project`, or only those of `trace_id` (none while the
/// project does not exist yet).
pub async fn spans(
    phoenix: &str,
    project: &str,
    trace_id: Option<&str>,
) -> Result<Vec<StoredSpan>, HarnessError> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut req = client
            .get(format!("{phoenix}/v1/projects/{project}/spans"))
            .query(&[("limit", "1000")])
            .timeout(Duration::from_secs(10));
        if let Some(c) = &cursor {
            req = req.query(&[("cursor", c.as_str())]);
        }
        let r = req
            .send()
            .await
            .map_err(|e| HarnessError::Pipeline(format!("Phoenix spans: {e}")))?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(out);
        }
        let body: Value = r
            .error_for_status()
            .map_err(|e| HarnessError::Pipeline(format!("Phoenix spans: {e}")))?
            .json()
            .await
            .map_err(|e| HarnessError::Pipeline(format!("Phoenix spans: {e}")))?;
        for s in body["data"].as_array().into_iter().flatten() {
            let text = |v: &Value| v.as_str().map(str::to_owned);
            let (Some(name), Some(trace), Some(span)) = (
                text(&s["name"]),
                text(&s["context"]["trace_id"]),
                text(&s["context"]["span_id"]),
            ) else {
                continue;
            };
            if trace_id.is_none_or(|t| t == trace) {
                out.push(StoredSpan {
                    name,
                    trace_id: trace,
                    span_id: span,
                    parent_id: text(&s["parent_id"]),
                    start_us: s["start_time"].as_str().and_then(micros),
                });
            }
        }
        cursor = body["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            return Ok(out);
        }
    }
}

/// An RFC 3339 time as µs since the Unix epoch.
fn micros(text: &str) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).ok()
}

/// The time from each producing span's start to the start of the span
/// that took what it produced (a consume, the ingest's event, the agent's
/// status apply), by hop (`"payment.relay -> inventory.consume"`), in µs.
pub fn hop_latencies(spans: &[StoredSpan]) -> std::collections::BTreeMap<String, Vec<i64>> {
    let by_id: std::collections::HashMap<&str, &StoredSpan> =
        spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let mut hops: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for s in spans {
        let taker = s.name.ends_with(".consume")
            || s.name == "ingest.event"
            || s.name == "agent.status.apply";
        let Some(parent) = s.parent_id.as_deref().and_then(|p| by_id.get(p)) else {
            continue;
        };
        if let (true, Some(a), Some(b)) = (taker, parent.start_us, s.start_us) {
            hops.entry(format!("{} -> {}", parent.name, s.name))
                .or_default()
                .push(b - a);
        }
    }
    hops
}

/// The names on the way from `leaf` up to its trace's root (leaf first),
/// following parent ids; it stops at a parent the spans do not hold.
pub fn ancestry(spans: &[StoredSpan], leaf: &StoredSpan) -> Vec<String> {
    let mut names = vec![leaf.name.clone()];
    let mut at = leaf;
    while let Some(parent) = at
        .parent_id
        .as_deref()
        .and_then(|p| spans.iter().find(|s| s.span_id == p))
    {
        names.push(parent.name.clone());
        at = parent;
        if names.len() > spans.len() {
            break;
        }
    }
    names
}
