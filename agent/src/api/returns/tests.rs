//! The request → `ReturnRequested` step, without a store.

use super::*;

fn ids() -> (OrderId, ReturnId, TerminalId) {
    (
        OrderId::from_uuid(uuid::Uuid::now_v7()).unwrap(),
        ReturnId::from_uuid(uuid::Uuid::now_v7()).unwrap(),
        TerminalId::new("T1").unwrap(),
    )
}

fn build(body: &str) -> Result<ReturnRequested, ApiError> {
    let req: ReturnRequest = parse_body(body.as_bytes())?;
    let (o, r, t) = ids();
    build_return(req, o, r, t)
}

#[test]
fn a_valid_request_builds_its_event_payload() {
    let r = build(
        r#"{"terminal_id":"T1","lines":[{"sku":"SKU-1","quantity":2}],
            "refund":{"method":"card","token":"tok_1","brand":"visa","last4":"4242"},
            "reason":"damaged"}"#,
    )
    .unwrap();
    assert_eq!(
        r.lines,
        vec![ReturnLine {
            sku: "SKU-1".into(),
            quantity: 2
        }]
    );
    assert_eq!(r.refund.method(), "card");
    let cash = build(
        r#"{"terminal_id":"T1","lines":[{"sku":"A","quantity":1}],"refund":{"method":"cash"},"reason":"x"}"#,
    )
    .unwrap();
    assert_eq!(cash.refund, o2c_protocol::returns::RefundTender::Cash {});
}

#[test]
fn shape_errors_name_their_field() {
    let e =
        build(r#"{"terminal_id":"T1","lines":[],"refund":{"method":"cash"},"reason":"x","why":1}"#)
            .unwrap_err();
    assert_eq!(
        (e.status, e.code),
        (StatusCode::BAD_REQUEST, "unknown_field")
    );
    // A cash refund refuses extra keys too (a unit variant would not).
    let e = build(
        r#"{"terminal_id":"T1","lines":[{"sku":"A","quantity":1}],"refund":{"method":"cash","amount_minor":5},"reason":"x"}"#,
    )
    .unwrap_err();
    assert_eq!(e.code, "unknown_field", "{e}");
    let e = build(r#"{"terminal_id":"T1","#).unwrap_err();
    assert_eq!(e.code, "malformed_json");
    let e = build(
        r#"{"terminal_id":"T1","lines":[{"sku":"A","quantity":"1"}],"refund":{"method":"cash"},"reason":"x"}"#,
    )
    .unwrap_err();
    assert_eq!(
        (e.status, e.code, e.field.as_deref()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("lines[0].quantity")
        )
    );
}

#[test]
fn rule_errors_name_the_request_field_without_the_payload_prefix() {
    let cases = [
        (
            r#"[{"sku":"A","quantity":0}]"#,
            r#""x""#,
            "lines[0].quantity",
        ),
        (r#"[]"#, r#""x""#, "lines"),
        (
            r#"[{"sku":"A","quantity":1},{"sku":"A","quantity":1}]"#,
            r#""x""#,
            "lines[1].sku",
        ),
        (r#"[{"sku":"A","quantity":1}]"#, r#""""#, "reason"),
    ];
    for (lines, reason, field) in cases {
        let e = build(&format!(
            r#"{{"terminal_id":"T1","lines":{lines},"refund":{{"method":"cash"}},"reason":{reason}}}"#
        ))
        .unwrap_err();
        assert_eq!(e.code, "invalid_field", "{lines}");
        assert_eq!(e.field.as_deref(), Some(field), "{lines}");
        assert!(!e.message.contains("payload."), "{}", e.message);
    }
    let e = build(
        r#"{"terminal_id":"T1","lines":[{"sku":"A","quantity":1}],
            "refund":{"method":"card","token":"t","brand":"visa","last4":"42x2"},"reason":"x"}"#,
    )
    .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("refund.last4"));
}

#[test]
fn card_data_is_refused_even_behind_json_escapes() {
    // The raw scan misses digits written as \u escapes; the payload's own
    // rules catch them decoded.
    let e = build(
        r#"{"terminal_id":"T1","lines":[{"sku":"A","quantity":1}],"refund":{"method":"cash"},
            "reason":"\u0034111111111111111"}"#,
    )
    .unwrap_err();
    assert_eq!(
        (e.code, e.field.as_deref()),
        ("card_data_rejected", Some("reason"))
    );
}

#[test]
fn the_request_hash_covers_the_order() {
    let (a, _, _) = ids();
    let (b, _, _) = ids();
    assert_eq!(request_hash(a, b"{}"), request_hash(a, b"{}"));
    assert_ne!(request_hash(a, b"{}"), request_hash(b, b"{}"));
    assert_ne!(request_hash(a, b"{}"), request_hash(a, b"{ }"));
}
