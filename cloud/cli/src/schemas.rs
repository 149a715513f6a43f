//! `o2c-cloud schemas check|register`: the wire contract's kept versions
//! (`protocol/schemas/`) checked against this build, and the Kafka
//! subjects in a Confluent-compatible schema registry
//! (`o2c_topology::registry`): registered with `BACKWARD_TRANSITIVE`, or
//! checked against every version the registry holds.

use std::path::Path;

use anyhow::Context;
use o2c_protocol::KafkaTopics;
use o2c_protocol::schema::CONTRACT_VERSION;
use o2c_protocol::schema::check::{Kept, check};
use o2c_topology::registry::{Registered, Registry, subjects};

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

/// Checks every subject's schema of this build against every version the
/// registry holds. Prints a line per subject; true when all are
/// compatible.
pub(crate) async fn check_registry(url: &str, topics: &KafkaTopics) -> anyhow::Result<bool> {
    let registry = Registry::new(url);
    let mut ok = true;
    for s in subjects(topics) {
        let Some(versions) = registry.versions(&s.name).await? else {
            println!("{}: new (nothing registered yet)", s.name);
            continue;
        };
        let mut refused = Vec::new();
        for v in &versions {
            if let Err(why) = registry.compatible(&s.name, *v, &s.schema).await? {
                refused.push(format!("version {v}: {why}"));
            }
        }
        if refused.is_empty() {
            println!("{}: compatible with versions {versions:?}", s.name);
        } else {
            ok = false;
            println!("{}: INCOMPATIBLE with {}", s.name, refused.join("; "));
        }
    }
    Ok(ok)
}

/// Registers every subject's schema (after setting `BACKWARD_TRANSITIVE`
/// on it); the registry refuses an incompatible one. Prints each id.
pub(crate) async fn register(url: &str, topics: &KafkaTopics) -> anyhow::Result<bool> {
    let registry = Registry::new(url);
    let mut ok = true;
    for s in subjects(topics) {
        match registry.register(&s.name, &s.schema).await? {
            Registered::Id(id) => println!("{}: id {id}", s.name),
            Registered::Refused(why) => {
                ok = false;
                println!("{}: REFUSED as incompatible: {why}", s.name);
            }
        }
    }
    Ok(ok)
}
