//! The wire contract's compatibility check (run by CI with the tests):
//! schemas and golden files of every version under `protocol/schemas/`.
//! See `o2c_protocol::schema` and docs/schemas.md.
//!
//! `O2C_BLESS_SCHEMAS=1 cargo test -p o2c-protocol --test contract`
//! rewrites the current version's directory from the code.

#![allow(clippy::disallowed_methods)]

use std::fs;
use std::path::{Path, PathBuf};

use o2c_protocol::frame::{AckMessage, StatusUpdate};
use o2c_protocol::schema::check::{Kept, check};
use o2c_protocol::schema::{CONTRACT_VERSION, EARLIER_VERSIONS, samples, schemas};
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

fn kept() -> Vec<Kept> {
    Kept::read_all(&Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")).expect("kept schemas")
}

/// With `O2C_BLESS_SCHEMAS=1`, writes the current version's directory.
fn bless() {
    let d = dir(CONTRACT_VERSION);
    let golden = d.join("golden");
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&golden).unwrap();
    for (name, schema) in schemas() {
        fs::write(d.join(name), pretty(&schema)).unwrap();
    }
    for (name, bytes) in samples() {
        fs::write(golden.join(name), [bytes, b"\n".to_vec()].concat()).unwrap();
    }
}

/// The whole check CI runs (and `o2c-cloud schemas check`): the current
/// version's files are what the code writes, every golden file of every
/// version decodes with today's readers, and today's messages pass the
/// previous version's schemas.
#[test]
fn the_kept_contract_versions_are_compatible_with_this_build() {
    if std::env::var_os("O2C_BLESS_SCHEMAS").is_some() {
        bless();
    }
    let kept = kept();
    let versions: Vec<&str> = kept.iter().map(|k| k.version.as_str()).collect();
    for v in EARLIER_VERSIONS.iter().chain([&CONTRACT_VERSION]) {
        assert!(versions.contains(v), "no kept version {v} in {versions:?}");
    }
    assert!(
        kept.iter().all(|k| !k.golden.is_empty()),
        "a version without golden files"
    );
    let problems = check(&kept);
    assert!(
        problems.is_empty(),
        "{}",
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
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
