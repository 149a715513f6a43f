//! The wire contract's compatibility check (run by CI with the tests):
//! schemas and golden files of every version under `protocol/schemas/`.
//! See `o2c_protocol::schema` and docs/schemas.md.
//!
//! `O2C_BLESS_SCHEMAS=1 cargo test -p o2c-protocol --test contract`
//! rewrites the current version's directory from the code.

#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use o2c_protocol::frame::{AckMessage, StatusUpdate};
use o2c_protocol::order_state::OrderStateRecord;
use o2c_protocol::resync::StatusResync;
use o2c_protocol::schema::{CONTRACT_VERSION, EARLIER_VERSIONS, samples, schema_of, schemas};
use o2c_protocol::{DecodeError, Envelope};
use serde_json::Value;

fn dir(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(version)
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("json") + "\n"
}

fn files(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Decodes a golden file with today's reader for its kind.
fn decode(name: &str, bytes: &[u8]) -> Result<(), String> {
    let kind = name.split('.').next().unwrap_or_default();
    let r = match kind {
        "StatusMessage" => StatusUpdate::decode_many(bytes)
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
        _ => Envelope::decode(bytes)
            .map_err(|e| e.to_string())
            .and_then(|env| {
                if env.event_type().as_str() != kind {
                    return Err(format!("decoded as {}", env.event_type()));
                }
                if env.event_type().is_store_event() {
                    env.validate_store_event().map_err(|e| e.to_string())?;
                }
                Ok(())
            }),
    };
    r.map_err(|e| format!("{name}: {e}"))
}

#[test]
fn the_current_versions_schemas_and_golden_files_are_what_the_code_writes() {
    let bless = std::env::var_os("O2C_BLESS_SCHEMAS").is_some();
    let d = dir(CONTRACT_VERSION);
    let golden = d.join("golden");
    let mut stale = Vec::new();
    let mut write = |path: PathBuf, text: String| {
        if bless {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, text).unwrap();
        } else if fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(path.display().to_string());
        }
    };
    let mut want = BTreeSet::new();
    for (name, schema) in schemas() {
        want.insert(name.clone());
        write(d.join(&name), pretty(&schema));
    }
    let mut want_golden = BTreeSet::new();
    for (name, bytes) in samples() {
        want_golden.insert(name.clone());
        write(golden.join(&name), String::from_utf8(bytes).unwrap() + "\n");
    }
    if !bless {
        stale.extend(files(&d).difference(&want).map(|f| format!("extra {f}")));
        stale.extend(
            files(&golden)
                .difference(&want_golden)
                .map(|f| format!("extra golden/{f}")),
        );
    }
    assert!(
        stale.is_empty(),
        "protocol/schemas/{CONTRACT_VERSION} differs from the code: {stale:#?}\n\
         If the change is intended, regenerate with \
         `O2C_BLESS_SCHEMAS=1 cargo test -p o2c-protocol --test contract`. A version \
         already released is frozen: bump CONTRACT_VERSION (minor for an additive change, \
         major for a breaking one) and list the old one in EARLIER_VERSIONS."
    );
}

#[test]
fn every_golden_file_of_every_version_decodes_with_todays_readers() {
    let mut seen = 0;
    for v in EARLIER_VERSIONS.iter().chain([&CONTRACT_VERSION]) {
        let golden = dir(v).join("golden");
        let names = files(&golden);
        assert!(!names.is_empty(), "no golden files in {}", golden.display());
        for name in names {
            let bytes = fs::read(golden.join(&name)).unwrap();
            let bytes = bytes.trim_ascii_end();
            decode(&name, bytes).unwrap_or_else(|e| panic!("version {v}: {e}"));
            seen += 1;
        }
    }
    assert!(seen >= 2 * samples().len() - 1, "{seen} golden files");
}

#[test]
fn todays_messages_are_accepted_by_the_previous_versions_schemas() {
    let Some(prev) = EARLIER_VERSIONS.last() else {
        return;
    };
    let d = dir(prev);
    let mut checked = 0;
    for (name, bytes) in samples() {
        let schema_file = d.join(schema_of(&name).unwrap());
        // A kind of message the previous version did not have has no
        // reader there to break.
        let Ok(text) = fs::read_to_string(&schema_file) else {
            continue;
        };
        let schema: Value = serde_json::from_str(&text).unwrap();
        let validator = jsonschema::validator_for(&schema)
            .unwrap_or_else(|e| panic!("{}: {e}", schema_file.display()));
        let instance: Value = serde_json::from_slice(&bytes).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{name} is refused by version {prev}'s schema: {errors:#?}"
        );
        checked += 1;
    }
    assert!(checked >= 9, "only {checked} messages checked");
}

fn golden(name: &str) -> Value {
    let path = dir(CONTRACT_VERSION).join("golden").join(name);
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn decodes(v: &Value) -> Result<Envelope, DecodeError> {
    Envelope::decode(&serde_json::to_vec(v).unwrap())
}

/// An additive change, as a newer writer makes it: today's readers take
/// it. Next to card data or inside an amount, a field nobody knows is
/// refused.
#[test]
fn readers_ignore_fields_they_do_not_know_except_next_to_card_data_and_in_money() {
    let mut v = golden("OrderCreated.ship_gift.json");
    v["channel"] = "web".into();
    v["payload"]["loyalty_id"] = "L-1".into();
    v["payload"]["lines"][0]["discount"] = serde_json::json!({"kind": "promo"});
    v["payload"]["customer"]["locale"] = "fr-CA".into();
    v["payload"]["fulfillment"]["carrier_hint"] = "fast".into();
    v["payload"]["fulfillment"]["address"]["floor"] = "3".into();
    let env = decodes(&v).expect("an additive change decodes");
    env.validate_store_event().expect("and validates");

    let mut card = golden("OrderCreated.card.json");
    card["payload"]["payments"][0]["cvv"] = "123".into();
    assert!(matches!(
        decodes(&card),
        Err(DecodeError::InvalidPayload { .. })
    ));
    let mut money = golden("OrderCreated.cash.json");
    money["payload"]["lines"][0]["unit_price"]["scale"] = 3.into();
    assert!(decodes(&money).is_err());

    // The ingest forwards a store event's bytes unchanged: a field it does
    // not know may not hold a card number.
    let raw = serde_json::to_string(&v).unwrap();
    o2c_protocol::validate::check_unknown_fields(&raw, &env).expect("no card data");
    let mut leak = v.clone();
    leak["payload"]["customer"]["card"] = "4111 1111 1111 1111".into();
    let raw = serde_json::to_string(&leak).unwrap();
    let env = decodes(&leak).expect("decodes: the field is unknown");
    let err = o2c_protocol::validate::check_unknown_fields(&raw, &env).unwrap_err();
    assert!(err.has_card_data(), "{err}");
    assert_eq!(err.0[0].field, "payload.customer.card");

    let mut status = golden("StatusMessage.v1.json");
    status[0]["tracking_url"] = "https://example.com/t/1".into();
    StatusUpdate::decode_many(&serde_json::to_vec(&status).unwrap()).expect("status");
    let mut ack = golden("Ack.v1.json");
    ack["window"] = 64.into();
    assert!(matches!(
        AckMessage::decode(&serde_json::to_vec(&ack).unwrap()),
        Ok(AckMessage::Ack(_))
    ));
    // A newer major version is still refused, by name.
    let mut major = golden("OrderCompleted.v1.json");
    major["schema_version"] = 2.into();
    assert!(matches!(
        decodes(&major),
        Err(DecodeError::UnsupportedSchemaVersion(2))
    ));
}
