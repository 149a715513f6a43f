//! The contract's compatibility check: `o2c-cloud schemas check` and
//! `protocol/tests/contract.rs` both call [`check`] on the kept versions.
//! Feature `contract-check`, for tools only (the agent does without its
//! JSON Schema validator); [`Kept::read_all`] is the one place this crate
//! reads files, and only for these tools.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

#[cfg(test)]
use super::writer_form;
use super::{CONTRACT_VERSION, samples, schema_of, schemas};
use crate::Envelope;
use crate::frame::{AckMessage, StatusUpdate};
use crate::order_state::OrderStateRecord;
use crate::resync::StatusResync;

/// One kept contract version: its schemas and golden files by file name.
#[derive(Debug, Clone, Default)]
pub struct Kept {
    /// `1.0`, `1.1`, ...
    pub version: String,
    /// `OrderCreated.json` → schema.
    pub schemas: BTreeMap<String, Value>,
    /// `OrderCreated.card.json` → bytes (a trailing newline is ignored).
    pub golden: BTreeMap<String, Vec<u8>>,
}

impl Kept {
    /// Reads every version kept under `dir` (`protocol/schemas`): each
    /// subdirectory is a version, with `*.json` schemas and `golden/*.json`.
    pub fn read_all(dir: &std::path::Path) -> std::io::Result<Vec<Kept>> {
        fn json_files(dir: &std::path::Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
            let mut out = Vec::new();
            for e in std::fs::read_dir(dir)? {
                let path = e?.path();
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                if let Some(name) = name.filter(|n| n.ends_with(".json") && path.is_file()) {
                    out.push((name, std::fs::read(&path)?));
                }
            }
            Ok(out)
        }
        let mut kept = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let path = e?.path();
            if !path.is_dir() {
                continue;
            }
            let mut k = Kept {
                version: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                ..Kept::default()
            };
            for (name, bytes) in json_files(&path)? {
                let v = serde_json::from_slice(&bytes).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{name}: {e}"))
                })?;
                k.schemas.insert(name, v);
            }
            let golden = path.join("golden");
            if golden.is_dir() {
                k.golden = json_files(&golden)?.into_iter().collect();
            }
            kept.push(k);
        }
        kept.sort_by_key(|a| version_key(&a.version));
        Ok(kept)
    }
}

fn version_key(v: &str) -> Vec<u32> {
    v.split('.').filter_map(|p| p.parse().ok()).collect()
}

/// What the check found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No kept directory for the version this build writes.
    NoCurrent,
    /// A kept file of the current version differs from what the code
    /// generates (or is missing, or is extra).
    Drift {
        /// The file, `schemas/` or `golden/` relative.
        file: String,
    },
    /// A golden file of some version no longer decodes.
    GoldenUnreadable {
        /// Its version.
        version: String,
        /// The file.
        file: String,
        /// Today's reader's error.
        error: String,
    },
    /// A message this version writes is refused by the previous version's
    /// schema (its readers).
    RefusedByPrevious {
        /// The previous version.
        version: String,
        /// The golden file name of the message.
        file: String,
        /// The schema's errors.
        errors: Vec<String>,
    },
    /// A kept schema is not a valid JSON Schema.
    BadSchema {
        /// Its version.
        version: String,
        /// The file.
        file: String,
        /// Why.
        error: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NoCurrent => write!(
                f,
                "no kept schemas for contract {CONTRACT_VERSION}: generate them \
                 (O2C_BLESS_SCHEMAS=1 cargo test -p o2c-protocol --test contract)"
            ),
            Problem::Drift { file } => write!(
                f,
                "{CONTRACT_VERSION}/{file} differs from what the code writes: a released \
                 version is frozen; bump CONTRACT_VERSION (minor if additive, major if \
                 breaking) and regenerate"
            ),
            Problem::GoldenUnreadable {
                version,
                file,
                error,
            } => write!(
                f,
                "{version}/golden/{file} no longer decodes with today's reader: {error}"
            ),
            Problem::RefusedByPrevious {
                version,
                file,
                errors,
            } => write!(
                f,
                "{file} as this version writes it is refused by contract {version}'s readers: {}",
                errors.join("; ")
            ),
            Problem::BadSchema {
                version,
                file,
                error,
            } => write!(f, "{version}/{file} is not a valid JSON Schema: {error}"),
        }
    }
}

/// Decodes a golden file with today's reader for its kind (the part of
/// its name before the first dot).
pub fn decode_golden(name: &str, bytes: &[u8]) -> Result<(), String> {
    let bytes = bytes.trim_ascii_end();
    let kind = name.split('.').next().unwrap_or_default();
    match kind {
        "StatusMessage" | "ReturnStatusMessage" => StatusUpdate::decode_many(bytes)
            .map(drop)
            .map_err(|e| e.to_string()),
        "StatusResync" => StatusResync::decode(bytes)
            .map(drop)
            .map_err(|e| e.to_string()),
        "Ack" => match AckMessage::decode(bytes) {
            Ok(AckMessage::Ack(_)) => Ok(()),
            other => Err(format!("not an ack: {other:?}")),
        },
        "FrameNack" => match AckMessage::decode(bytes) {
            Ok(AckMessage::FrameNack(_)) => Ok(()),
            other => Err(format!("not a frame nack: {other:?}")),
        },
        "OrderState" => OrderStateRecord::decode(bytes)
            .map(drop)
            .map_err(|e| e.to_string()),
        "Health" => crate::health::Health::decode(bytes)
            .map(drop)
            .map_err(|e| e.to_string()),
        "DayClosed" => crate::day::DayClosed::decode(bytes)
            .map_err(|e| e.to_string())
            .and_then(|d| d.validate().map_err(|e| e.to_string())),
        _ => {
            let env = Envelope::decode(bytes).map_err(|e| e.to_string())?;
            if env.event_type().as_str() != kind {
                return Err(format!("decoded as {}", env.event_type()));
            }
            if crate::order::SalesChannel::of_cloud_agent(&env.agent_id).is_some() {
                env.validate_channel_event().map_err(|e| e.to_string())?;
            } else if env.event_type().is_store_event() {
                env.validate_store_event().map_err(|e| e.to_string())?;
            }
            Ok(())
        }
    }
}

/// The errors `schema` finds in `instance`.
pub fn validate(schema: &Value, instance: &Value) -> Result<Vec<String>, String> {
    let v = jsonschema::validator_for(schema).map_err(|e| e.to_string())?;
    Ok(v.iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect())
}

/// Checks the kept versions (any order) against this build: the current
/// version's files are what the code writes, every golden file of every
/// version decodes today, and today's messages pass the schemas of the
/// version before this one.
pub fn check(kept: &[Kept]) -> Vec<Problem> {
    let mut problems = Vec::new();
    match kept.iter().find(|k| k.version == CONTRACT_VERSION) {
        None => problems.push(Problem::NoCurrent),
        Some(cur) => {
            let want: BTreeMap<String, Value> = schemas().into_iter().collect();
            let drift = |have: &BTreeMap<String, Value>| {
                want.keys()
                    .chain(have.keys())
                    .filter(|f| want.get(*f) != have.get(*f))
                    .cloned()
                    .collect::<std::collections::BTreeSet<_>>()
            };
            for file in drift(&cur.schemas) {
                problems.push(Problem::Drift { file });
            }
            let want_golden: BTreeMap<String, Vec<u8>> = samples().into_iter().collect();
            for file in want_golden.keys().chain(cur.golden.keys()) {
                let have = cur.golden.get(file).map(|b| b.trim_ascii_end());
                if want_golden.get(file).map(Vec::as_slice) != have {
                    problems.push(Problem::Drift {
                        file: format!("golden/{file}"),
                    });
                }
            }
            problems.dedup();
        }
    }
    for k in kept {
        for (file, bytes) in &k.golden {
            if let Err(error) = decode_golden(file, bytes) {
                problems.push(Problem::GoldenUnreadable {
                    version: k.version.clone(),
                    file: file.clone(),
                    error,
                });
            }
        }
    }
    if let Some(prev) = previous(kept) {
        for (file, bytes) in samples() {
            let Some(schema) = schema_of(&file).and_then(|s| prev.schemas.get(&s)) else {
                // A kind of message the previous version did not have.
                continue;
            };
            let instance: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            match validate(schema, &instance) {
                Ok(errors) if errors.is_empty() => {}
                Ok(errors) => problems.push(Problem::RefusedByPrevious {
                    version: prev.version.clone(),
                    file,
                    errors,
                }),
                Err(error) => problems.push(Problem::BadSchema {
                    version: prev.version.clone(),
                    file: schema_of(&file).unwrap_or_default(),
                    error,
                }),
            }
        }
    }
    problems
}

/// The newest kept version before [`CONTRACT_VERSION`].
fn previous(kept: &[Kept]) -> Option<&Kept> {
    let cur = version_key(CONTRACT_VERSION);
    kept.iter()
        .filter(|k| version_key(&k.version) < cur)
        .max_by_key(|k| version_key(&k.version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> Kept {
        Kept {
            version: CONTRACT_VERSION.into(),
            schemas: schemas().into_iter().collect(),
            golden: samples().into_iter().collect(),
        }
    }

    #[test]
    fn a_change_to_a_released_schema_and_a_message_old_readers_refuse_are_found() {
        assert_eq!(check(&[current()]), []);
        let mut cur = current();
        cur.schemas
            .get_mut("OrderCompleted.json")
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert("description".into(), "edited".into());
        assert!(
            matches!(&check(&[cur])[..], [Problem::Drift { file }] if file == "OrderCompleted.json")
        );
        // A previous version whose readers want a field today's writer
        // does not send.
        let mut prev = current();
        prev.version = "1.0".into();
        let s = prev.schemas.get_mut("OrderCompleted.json").unwrap();
        s["required"]
            .as_array_mut()
            .unwrap()
            .push("completed_by".into());
        let problems = check(&[current(), prev]);
        assert!(
            problems.iter().any(|p| matches!(p, Problem::RefusedByPrevious { file, .. } if file == "OrderCompleted.v1.json")),
            "{problems:?}"
        );
        let mut broken = current();
        broken.golden.insert(
            "OrderCompleted.old.json".into(),
            b"{\"schema_version\":1}".to_vec(),
        );
        assert!(
            check(&[broken])
                .iter()
                .any(|p| matches!(p, Problem::GoldenUnreadable { .. }))
        );
    }

    #[test]
    fn the_writer_form_closes_every_object() {
        let v = writer_form(&serde_json::json!({
            "type": "object", "properties": {"a": {"type": "object", "properties": {}}},
            "$defs": {"X": {"type": "object", "properties": {}, "additionalProperties": true}}
        }));
        assert_eq!(v["additionalProperties"], false);
        assert_eq!(v["properties"]["a"]["additionalProperties"], false);
        assert_eq!(
            v["$defs"]["X"]["additionalProperties"], true,
            "an explicit choice stays"
        );
    }
}
