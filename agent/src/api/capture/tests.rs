use o2c_order_http::BodyError;
use o2c_protocol::{OrderId, StoreId};

use super::*;

fn store() -> StoreId {
    StoreId::new("S001").unwrap()
}

fn id() -> OrderId {
    OrderId::from_uuid(uuid::Uuid::now_v7()).unwrap()
}

fn body(lines: &str, payments: &str) -> String {
    format!(
        r#"{{"terminal_id":"T1","currency":"CAD","lines":{lines},"payments":{payments},"fulfillment":{{"type":"carry_out"}}}}"#
    )
}

fn no_catalog(_: &str, _: Currency) -> Result<Option<Price>, String> {
    Ok(None)
}

fn cad() -> Currency {
    Currency::from_code("CAD").unwrap()
}

fn limits(code: Option<&str>, floor_minor: i64) -> OfflineLimits {
    OfflineLimits {
        currency: code.map(|c| Currency::from_code(c).unwrap()),
        floor_minor,
    }
}

fn build(b: &str) -> Result<Order, CaptureError> {
    let req = parse_request(b.as_bytes())?;
    build_order(
        req,
        &store(),
        id(),
        limits(Some("CAD"), 10_000),
        |sku, _| {
            Ok((sku == "SKU-CAT").then(|| Price {
                minor: 250,
                currency: Currency::from_code("CAD").unwrap(),
                category: Some("Toys".into()),
            }))
        },
    )
}

fn field_of(e: CaptureError) -> String {
    match e {
        CaptureError::Invalid { field, .. }
        | CaptureError::Body(BodyError::UnknownField { field })
        | CaptureError::Body(BodyError::Shape { field, .. })
        | CaptureError::UnknownSku { field }
        | CaptureError::OfflineFloor { field, .. }
        | CaptureError::OfflineUnavailable { field } => field,
        other => panic!("no field in {other:?}"),
    }
}

#[test]
fn valid_order_builds() {
    let b = body(
        r#"[{"sku":"SKU-1","quantity":2,"unit_price_minor":1499}]"#,
        r#"[{"method":"card","amount_minor":2000,"token":"tok_abc","brand":"visa","last4":"4242","authorization":"online"},{"method":"cash","amount_minor":998}]"#,
    );
    let o = build(&b).unwrap();
    assert_eq!(o.total().unwrap().minor, 2998);
    assert_eq!(o.payments.len(), 2);
}

#[test]
fn catalog_price_fills_missing_unit_price() {
    let b = body(
        r#"[{"sku":"SKU-CAT","quantity":2}]"#,
        r#"[{"method":"cash","amount_minor":500}]"#,
    );
    let line = &build(&b).unwrap().lines[0];
    assert_eq!(line.unit_price.minor, 250);
    assert_eq!(line.category.as_deref(), Some("Toys"));
    // A till-set price keeps the catalog's category; an unknown SKU has none.
    let priced = body(
        r#"[{"sku":"SKU-CAT","quantity":1,"unit_price_minor":300},{"sku":"SKU-Y","quantity":1,"unit_price_minor":200}]"#,
        r#"[{"method":"cash","amount_minor":500}]"#,
    );
    let o = build(&priced).unwrap();
    assert_eq!(o.lines[0].category.as_deref(), Some("Toys"));
    assert_eq!(o.lines[1].category, None);
    let unknown = body(
        r#"[{"sku":"SKU-X","quantity":1}]"#,
        r#"[{"method":"cash","amount_minor":1}]"#,
    );
    assert_eq!(
        build(&unknown).unwrap_err(),
        CaptureError::UnknownSku {
            field: "lines[0].sku".into()
        }
    );
}

#[test]
fn validation_paths_name_request_fields() {
    let cases = [
        (
            body(
                r#"[{"sku":"A","quantity":0,"unit_price_minor":1}]"#,
                r#"[{"method":"cash","amount_minor":0}]"#,
            ),
            "lines[0].quantity",
        ),
        (
            body(
                r#"[{"sku":"A","quantity":1,"unit_price_minor":-5}]"#,
                r#"[{"method":"cash","amount_minor":-5}]"#,
            ),
            "lines[0].unit_price_minor",
        ),
        (
            body(
                r#"[{"sku":"A","quantity":1,"unit_price_minor":0}]"#,
                r#"[{"method":"cash","amount_minor":0}]"#,
            ),
            "payments[0].amount_minor",
        ),
        (
            body(
                r#"[{"sku":"A","quantity":1,"unit_price_minor":10}]"#,
                r#"[{"method":"cash","amount_minor":9}]"#,
            ),
            "payments",
        ),
        (
            body(
                r#"[{"sku":"A","quantity":1,"unit_price_minor":10}]"#,
                r#"[{"method":"card","amount_minor":10,"token":"t","brand":"visa","last4":"42","authorization":"online"}]"#,
            ),
            "payments[0].last4",
        ),
    ];
    for (b, want) in cases {
        assert_eq!(field_of(build(&b).unwrap_err()), want, "{b}");
    }
}

#[test]
fn shape_errors_are_classified() {
    assert!(matches!(
        parse_request(b"{not json"),
        Err(CaptureError::Body(BodyError::Malformed(_)))
    ));
    let extra = body(
        r#"[{"sku":"A","quantity":1,"unit_price_minor":1,"colour":"red"}]"#,
        r#"[{"method":"cash","amount_minor":1}]"#,
    );
    assert_eq!(
        field_of(parse_request(extra.as_bytes()).unwrap_err()),
        "lines[0].colour"
    );
    let top = r#"{"terminal_id":"T1","bogus":1}"#;
    assert_eq!(
        field_of(parse_request(top.as_bytes()).unwrap_err()),
        "bogus"
    );
    let wrong_type = body(
        r#"[{"sku":"A","quantity":"two","unit_price_minor":1}]"#,
        r#"[{"method":"cash","amount_minor":1}]"#,
    );
    assert_eq!(
        field_of(parse_request(wrong_type.as_bytes()).unwrap_err()),
        "lines[0].quantity"
    );
}

// The raw-body scan is `o2c_order_http::scan_card_data`'s (tested there);
// digits hidden by JSON escapes reach validation, which refuses them too.
#[test]
fn escaped_card_numbers_are_refused_by_validation() {
    let escaped = body(
        r#"[{"sku":"\u0034111111111111111","quantity":1,"unit_price_minor":1}]"#,
        r#"[{"method":"cash","amount_minor":1}]"#,
    );
    assert_eq!(
        build(&escaped).unwrap_err(),
        CaptureError::Body(BodyError::CardData {
            field: Some("lines[0].sku".into())
        })
    );
}

#[test]
fn offline_floor_limit() {
    let over = body(
        r#"[{"sku":"A","quantity":1,"unit_price_minor":10001}]"#,
        r#"[{"method":"card","amount_minor":10001,"token":"t","brand":"visa","last4":"4242","authorization":"offline"}]"#,
    );
    assert_eq!(
        field_of(build(&over).unwrap_err()),
        "payments[0].amount_minor"
    );
    let at = over.replace("10001", "10000");
    assert!(build(&at).is_ok());
    let online = over.replace("offline", "online");
    assert!(build(&online).is_ok());
    let req = parse_request(at.as_bytes()).unwrap();
    assert!(build_order(req, &store(), id(), limits(Some("CAD"), 0), no_catalog).is_err());
}

#[test]
fn offline_card_limits_apply_only_in_the_store_currency() {
    let offline = |currency: &str, minor: i64| {
        body(
            &format!(r#"[{{"sku":"A","quantity":1,"unit_price_minor":{minor}}}]"#),
            &format!(
                r#"[{{"method":"card","amount_minor":{minor},"token":"t","brand":"visa","last4":"4242","authorization":"offline"}}]"#
            ),
        )
        .replace("\"CAD\"", &format!("\"{currency}\""))
    };
    let build_with = |b: &str, l: OfflineLimits| {
        build_order(
            parse_request(b.as_bytes()).unwrap(),
            &store(),
            id(),
            l,
            no_catalog,
        )
    };
    // 5,000 yen is far below a floor of 10,000 minor units, but the limit
    // is in CAD: refused, not compared across currencies.
    assert_eq!(
        build_with(&offline("JPY", 5_000), limits(Some("CAD"), 10_000)).unwrap_err(),
        CaptureError::OfflineCurrency {
            order: Currency::from_code("JPY").unwrap(),
            store: cad(),
        }
    );
    // The same sale in the store's currency passes, and above the floor not.
    assert!(build_with(&offline("CAD", 5_000), limits(Some("CAD"), 10_000)).is_ok());
    assert_eq!(
        field_of(build_with(&offline("CAD", 10_001), limits(Some("CAD"), 10_000)).unwrap_err()),
        "payments[0].amount_minor"
    );
    // No store currency: no offline card sale at all.
    assert_eq!(
        build_with(&offline("CAD", 1), limits(None, 10_000)).unwrap_err(),
        CaptureError::OfflineUnavailable {
            field: "payments[0].authorization".into()
        }
    );
    // Online card and cash sales in any currency are untouched.
    for l in [limits(None, 0), limits(Some("CAD"), 0)] {
        assert!(build_with(&offline("JPY", 5_000).replace("offline", "online"), l).is_ok());
        let cash = body(
            r#"[{"sku":"A","quantity":1,"unit_price_minor":7}]"#,
            r#"[{"method":"cash","amount_minor":7}]"#,
        )
        .replace("CAD", "EUR");
        assert!(build_with(&cash, l).is_ok());
    }
}
