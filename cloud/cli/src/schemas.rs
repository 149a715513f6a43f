//! `o2c-cloud schemas check|register`: the wire contract's kept versions
//! (`protocol/schemas/`) checked against this build, and, given a
//! Confluent-compatible schema registry (Karapace), the Kafka subjects
//! registered there with `BACKWARD_TRANSITIVE` and checked against every
//! version the registry holds.
//!
//! Subjects follow the topic name strategy: `{topic}-value` for each
//! event type's topic and for `orders.state`. The schema registered is
//! the writer's form of the kept schema (`schema::check::writer_form`).

use std::path::Path;

use anyhow::{Context, bail};
use o2c_protocol::schema::check::{Kept, check, writer_form};
use o2c_protocol::schema::{CONTRACT_VERSION, schemas};
use o2c_protocol::{EventType, KafkaTopics};
use serde_json::{Value, json};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// `(subject, schema)` for every Kafka topic with one value type.
pub(crate) fn subjects(topics: &KafkaTopics) -> Vec<(String, Value)> {
    let by_file: std::collections::BTreeMap<String, Value> = schemas().into_iter().collect();
    let mut out: Vec<(String, Value)> = EventType::ALL
        .into_iter()
        .filter_map(|t| {
            let s = by_file.get(&format!("{t}.json"))?;
            Some((format!("{}-value", topics.for_event(t)), writer_form(s)))
        })
        .collect();
    if let Some(s) = by_file.get("OrderState.json") {
        out.push((format!("{}-value", topics.state()), writer_form(s)));
    }
    out
}

/// The local check: the kept versions under `dir` against this build.
/// Prints each problem; true when there is none.
pub(crate) fn check_local(dir: &Path) -> anyhow::Result<bool> {
    let kept = Kept::read_all(dir).with_context(|| format!("read {}", dir.display()))?;
    let problems = check(&kept);
    let versions: Vec<&str> = kept.iter().map(|k| k.version.as_str()).collect();
    for p in &problems {
        println!("incompatible: {p}");
    }
    if problems.is_empty() {
        println!(
            "contract {CONTRACT_VERSION}: compatible with kept versions {versions:?} ({})",
            dir.display()
        );
    }
    Ok(problems.is_empty())
}

async fn registry_call(req: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
    let resp = req
        .header("Content-Type", CONTENT_TYPE)
        .send()
        .await
        .context("schema registry")?;
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    Ok((
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    ))
}

fn body(schema: &Value) -> Value {
    json!({"schemaType": "JSON", "schema": schema.to_string()})
}

/// Checks every subject's schema of this build against every version the
/// registry holds. Prints a line per subject; true when all are
/// compatible.
pub(crate) async fn check_registry(url: &str, topics: &KafkaTopics) -> anyhow::Result<bool> {
    let client = reqwest::Client::new();
    let url = url.trim_end_matches('/');
    let mut ok = true;
    for (subject, schema) in subjects(topics) {
        let (status, versions) =
            registry_call(client.get(format!("{url}/subjects/{subject}/versions"))).await?;
        if status == 404 {
            println!("{subject}: new (nothing registered yet)");
            continue;
        }
        if status != 200 {
            bail!("{subject}: registry answered {status}: {versions}");
        }
        let versions: Vec<i64> = serde_json::from_value(versions).unwrap_or_default();
        let mut refused = Vec::new();
        for v in &versions {
            let (status, answer) = registry_call(
                client
                    .post(format!(
                        "{url}/compatibility/subjects/{subject}/versions/{v}?verbose=true"
                    ))
                    .json(&body(&schema)),
            )
            .await?;
            if status != 200 {
                bail!("{subject} version {v}: registry answered {status}: {answer}");
            }
            if answer["is_compatible"] != true {
                refused.push(format!("version {v}: {}", answer["messages"]));
            }
        }
        if refused.is_empty() {
            println!("{subject}: compatible with versions {versions:?}");
        } else {
            ok = false;
            println!("{subject}: INCOMPATIBLE with {}", refused.join("; "));
        }
    }
    Ok(ok)
}

/// Registers every subject's schema (after setting `BACKWARD_TRANSITIVE`
/// on it); the registry refuses an incompatible one. Prints each id.
pub(crate) async fn register(url: &str, topics: &KafkaTopics) -> anyhow::Result<bool> {
    let client = reqwest::Client::new();
    let url = url.trim_end_matches('/');
    let mut ok = true;
    for (subject, schema) in subjects(topics) {
        let (status, answer) = registry_call(
            client
                .put(format!("{url}/config/{subject}"))
                .json(&json!({"compatibility": "BACKWARD_TRANSITIVE"})),
        )
        .await?;
        if status != 200 {
            bail!("{subject}: setting BACKWARD_TRANSITIVE: registry answered {status}: {answer}");
        }
        let (status, answer) = registry_call(
            client
                .post(format!("{url}/subjects/{subject}/versions"))
                .json(&body(&schema)),
        )
        .await?;
        match status {
            200 => println!("{subject}: id {}", answer["id"]),
            409 => {
                ok = false;
                println!("{subject}: REFUSED as incompatible: {answer}");
            }
            _ => bail!("{subject}: registry answered {status}: {answer}"),
        }
    }
    Ok(ok)
}
