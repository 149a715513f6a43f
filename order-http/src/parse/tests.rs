use serde::Deserialize;

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Line {
    sku: String,
    quantity: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Req {
    lines: Vec<Line>,
}

fn field_of(e: BodyError) -> String {
    match e {
        BodyError::UnknownField { field } | BodyError::Shape { field, .. } => field,
        other => panic!("no field in {other:?}"),
    }
}

#[test]
fn shape_errors_are_classified() {
    assert!(matches!(
        parse_body::<Req>(b"{not json"),
        Err(BodyError::Malformed(_))
    ));
    let extra = br#"{"lines":[{"sku":"A","quantity":1,"colour":"red"}]}"#;
    assert_eq!(
        field_of(parse_body::<Req>(extra).unwrap_err()),
        "lines[0].colour"
    );
    assert_eq!(
        field_of(parse_body::<Req>(br#"{"lines":[],"bogus":1}"#).unwrap_err()),
        "bogus"
    );
    let wrong_type = br#"{"lines":[{"sku":"A","quantity":"two"}]}"#;
    assert_eq!(
        field_of(parse_body::<Req>(wrong_type).unwrap_err()),
        "lines[0].quantity"
    );
}

#[test]
fn card_numbers_are_found_and_located() {
    let b = br#"{"payments":[{"token":"4111 1111 1111 1111"}]}"#;
    assert_eq!(
        scan_card_data(b),
        Err(BodyError::CardData {
            field: Some("payments[0].token".into())
        })
    );
    assert_eq!(
        scan_card_data(b"{\"x\": 4111111111111111"),
        Err(BodyError::CardData { field: None })
    );
    assert_eq!(scan_card_data(br#"{"lines":[{"sku":"A"}]}"#), Ok(()));
    // Escaped digits dodge the raw scan: the decoded strings are scanned
    // too.
    let escaped = br#"{"lines":[{"sku":"\u0034111111111111111"}]}"#;
    assert_eq!(
        scan_card_data(escaped),
        Err(BodyError::CardData {
            field: Some("lines[0].sku".into())
        })
    );
    // A card number with its CVV after it.
    let with_cvv = br#"{"payments":[{"token":"4111111111111111 123"}]}"#;
    assert_eq!(
        scan_card_data(with_cvv),
        Err(BodyError::CardData {
            field: Some("payments[0].token".into())
        })
    );
}

#[test]
fn idempotency_keys_are_visible_ascii_and_never_card_numbers() {
    let with = |v: &str| {
        let mut h = HeaderMap::new();
        h.insert("idempotency-key", v.parse().expect("a header value"));
        idempotency_key(&h)
    };
    assert_eq!(
        idempotency_key(&HeaderMap::new()),
        Err(BodyError::MissingKey)
    );
    assert_eq!(with("w-1"), Ok("w-1".to_owned()));
    assert_eq!(with(&"k".repeat(129)), Err(BodyError::BadKey));
    assert_eq!(with("a b"), Err(BodyError::BadKey));
    assert_eq!(with("4111111111111111"), Err(BodyError::BadKey));
}
