//! One failing input per validation rule, each asserting its field path.

mod common;

use common::*;
use o2c_protocol::*;

/// Asserts that validation fails with exactly one problem at `field`/`code`.
fn assert_one(order: &Order, field: &str, code: &str) {
    let errs = order.validate().expect_err("order should be invalid").0;
    assert!(
        errs.iter().any(|e| e.field == field && e.code == code),
        "expected {field}/{code}, got {errs:#?}"
    );
}

#[test]
fn the_fixture_is_valid() {
    assert_eq!(order().validate(), Ok(()));
    let mut o = order();
    o.fulfillment = Fulfillment::ShipToHome { address: address() };
    assert_eq!(o.validate(), Ok(()));
}

#[test]
fn empty_lines() {
    let mut o = order();
    o.lines.clear();
    assert_one(&o, "lines", "required");
}

#[test]
fn too_many_lines() {
    let mut o = order();
    o.lines = vec![o.lines[0].clone(); o2c_protocol::validate::MAX_LINES + 1];
    assert_one(&o, "lines", "too_many");
}

#[test]
fn zero_and_negative_quantity() {
    for q in [0, -1] {
        let mut o = order();
        o.lines[0].quantity = q;
        assert_one(&o, "lines[0].quantity", "out_of_range");
    }
}

#[test]
fn negative_unit_price() {
    let mut o = order();
    o.lines[0].unit_price.minor = -1;
    assert_one(&o, "lines[0].unit_price.minor", "out_of_range");
}

#[test]
fn empty_and_long_sku() {
    let mut o = order();
    o.lines[0].sku = String::new();
    assert_one(&o, "lines[0].sku", "required");
    o.lines[0].sku = "x".repeat(65);
    assert_one(&o, "lines[0].sku", "too_long");
}

#[test]
fn mixed_currencies() {
    let usd = Currency::from_code("USD").unwrap();
    let mut o = order();
    o.lines.push(OrderLine {
        sku: "SKU-2".into(),
        quantity: 1,
        unit_price: Money::new(100, usd),
        category: None,
    });
    assert_one(&o, "lines[1].unit_price.currency", "currency_mismatch");
    let mut o = order();
    o.payments = vec![Payment::Cash {
        amount: Money::new(2998, usd),
    }];
    assert_one(&o, "payments[0].amount.currency", "currency_mismatch");
}

#[test]
fn payments_must_sum_to_total() {
    let mut o = order();
    o.payments.push(Payment::Cash {
        amount: Money::new(1, cad()),
    });
    assert_one(&o, "payments", "payment_total_mismatch");
}

#[test]
fn split_payment_is_fine() {
    let mut o = order();
    o.payments = vec![
        Payment::Card {
            amount: Money::new(2000, cad()),
            token: "tok_abc".into(),
            brand: "visa".into(),
            last4: "4242".into(),
            authorization: CardAuthorization::Offline,
        },
        Payment::Cash {
            amount: Money::new(998, cad()),
        },
    ];
    assert_eq!(o.validate(), Ok(()));
    assert_eq!(o.offline_card_total(), Ok(Money::new(2000, cad())));
}

#[test]
fn no_payments() {
    let mut o = order();
    o.payments.clear();
    assert_one(&o, "payments", "required");
}

#[test]
fn non_positive_payment() {
    let mut o = order();
    o.payments = vec![
        Payment::Cash {
            amount: Money::new(0, cad()),
        },
        Payment::Cash {
            amount: Money::new(2998, cad()),
        },
    ];
    assert_one(&o, "payments[0].amount.minor", "out_of_range");
}

#[test]
fn bad_last4_token_and_brand() {
    let mut o = order();
    if let Payment::Card {
        last4,
        token,
        brand,
        ..
    } = &mut o.payments[0]
    {
        *last4 = "42a".into();
        *token = "t".repeat(129);
        *brand = String::new();
    }
    assert_one(&o, "payments[0].last4", "invalid_format");
    assert_one(&o, "payments[0].token", "too_long");
    assert_one(&o, "payments[0].brand", "required");
}

#[test]
fn gift_card_token_required() {
    let mut o = order();
    o.payments = vec![Payment::GiftCard {
        amount: Money::new(2998, cad()),
        token: String::new(),
    }];
    assert_one(&o, "payments[0].token", "required");
}

#[test]
fn over_long_strings() {
    let mut o = order();
    let mut a = address();
    a.line1 = "x".repeat(129);
    a.country = "Canada".into();
    o.fulfillment = Fulfillment::ShipToHome { address: a };
    o.customer = Some(Customer {
        email: Some(format!("{}@example.com", "a".repeat(250))),
        phone: Some("1".repeat(33)),
    });
    assert_one(&o, "fulfillment.address.line1", "too_long");
    assert_one(&o, "fulfillment.address.country", "invalid_format");
    assert_one(&o, "customer.email", "too_long");
    assert_one(&o, "customer.phone", "too_long");
}

#[test]
fn email_needs_at_sign() {
    let mut o = order();
    o.customer = Some(Customer {
        email: Some("nobody".into()),
        phone: None,
    });
    assert_one(&o, "customer.email", "invalid_format");
}

#[test]
fn overflowing_total() {
    let mut o = order();
    o.lines[0].unit_price.minor = i64::MAX;
    assert_one(&o, "lines", "overflow");
}

#[test]
fn card_numbers_are_rejected_anywhere_without_echoing_them() {
    let pan = "4111 1111 1111 1111";
    let mut o = order();
    o.lines[0].sku = pan.into();
    o.customer = Some(Customer {
        email: None,
        phone: Some("4111-1111-1111-1111".into()),
    });
    if let Payment::Card { token, .. } = &mut o.payments[0] {
        *token = "4242424242424242".into();
    }
    let errs = o.validate().unwrap_err();
    assert!(errs.has_card_data());
    assert_one(&o, "lines[0].sku", "card_data_rejected");
    assert_one(&o, "customer.phone", "card_data_rejected");
    assert_one(&o, "payments[0].token", "card_data_rejected");
    let text = errs.to_string();
    assert!(
        !text.contains("1111") && !text.contains("4242424242"),
        "{text}"
    );
}

#[test]
fn card_number_detector() {
    use o2c_protocol::validate::{contains_card_number, redact_card_numbers};
    assert_eq!(
        redact_card_numbers("invalid type: integer `4111111111111111`, expected a string"),
        "invalid type: integer `[redacted]`, expected a string"
    );
    assert_eq!(
        redact_card_numbers("pan 4111 1111 1111 1111 123 end"),
        "pan [redacted] end"
    );
    assert_eq!(redact_card_numbers("order 42 of 7"), "order 42 of 7");
    assert!(contains_card_number("4111111111111111"));
    assert!(contains_card_number("pan=378282246310005;")); // Amex, 15 digits
    assert!(contains_card_number("6011-1111-1111-1117"));
    assert!(!contains_card_number("4111111111111112")); // Luhn fails
    assert!(!contains_card_number("123456789012")); // 12 digits
    assert!(!contains_card_number("41111111111111111111")); // 20-digit run
    assert!(!contains_card_number("SKU-1 qty 2"));
    assert!(!contains_card_number("4242"));
    // A card number with more digit groups around it: its CVV, an expiry.
    assert!(contains_card_number("4111111111111111 123"));
    assert!(contains_card_number("4111 1111 1111 1111 1225"));
    assert!(contains_card_number("exp 12-25 4111-1111-1111-1111"));
    assert!(!contains_card_number("4111111111111112 123"));
}

#[test]
fn barcode_skus_are_not_card_numbers() {
    use o2c_protocol::validate::{contains_card_number, gtin_valid, luhn_valid};
    // EAN-13 4006381333924: a valid GS1 check digit, and it passes Luhn too.
    let d: Vec<u8> = "4006381333924".bytes().map(|b| b - b'0').collect();
    assert!(gtin_valid(&d));
    assert!(
        luhn_valid(&d),
        "fixture must be Luhn-valid to test the exemption"
    );
    assert!(!contains_card_number("4006381333924"));
    let mut o = order();
    o.lines[0].sku = "4006381333924".into();
    assert_eq!(o.validate(), Ok(()));
    // A 16-digit PAN is never a GTIN.
    assert!(contains_card_number("4111111111111111"));
}

#[test]
fn a_card_number_in_a_key_nobody_reads_is_still_refused() {
    // Readers ignore fields they do not know (contract 1.1), so a card
    // number could ride along in one, unread: the check of unknown fields
    // finds it wherever it is.
    let ok: Fulfillment = serde_json::from_str(r#"{"type":"carry_out"}"#).unwrap();
    assert_eq!(ok, Fulfillment::CarryOut {});
    assert_eq!(
        serde_json::to_string(&ok).unwrap(),
        r#"{"type":"carry_out"}"#
    );
    let env = envelope(Event::OrderCreated(Box::new(order())));
    let mut v = serde_json::to_value(&env).unwrap();
    v["payload"]["fulfillment"]["pan"] = "4111111111111111".into();
    let raw = serde_json::to_string(&v).unwrap();
    let decoded = Envelope::decode(raw.as_bytes()).expect("tolerant");
    let err = validate::check_unknown_fields(&raw, &decoded).unwrap_err();
    assert_eq!(err.0[0].field, "payload.fulfillment.pan");
    assert!(!err.to_string().contains("4111"), "{err}");
    // As a number too.
    v["payload"]["fulfillment"]["pan"] = 4_111_111_111_111_111_u64.into();
    let raw = serde_json::to_string(&v).unwrap();
    assert!(validate::check_unknown_fields(&raw, &decoded).is_err());
}

#[test]
fn a_cancellation_reason_is_checked_like_any_free_text() {
    let cancel = |reason: &str| {
        envelope(Event::OrderCancelled(event::OrderCancelled {
            order_id: order_id(),
            reason: reason.into(),
        }))
    };
    assert!(cancel("store_void").validate_store_event().is_ok());
    for (reason, code) in [
        ("", "required"),
        (&"x".repeat(129), "too_long"),
        ("4111 1111 1111 1111 123", "card_data_rejected"),
    ] {
        let errs = cancel(reason).validate_store_event().unwrap_err();
        let e = errs.first().unwrap();
        assert_eq!(
            (e.field.as_str(), e.code.as_str()),
            ("payload.reason", code)
        );
        assert!(!errs.to_string().contains("4111"), "{errs}");
    }
}

#[test]
fn ids_shaped_like_card_numbers_are_refused() {
    let e = TerminalId::new("4111111111111111").unwrap_err();
    assert!(matches!(e, IdError::CardData { .. }), "{e}");
    assert!(!e.to_string().contains("4111"), "{e}");
    assert!(StoreId::new("S001").is_ok());
    assert!(TerminalId::new("T-12").is_ok());
}

proptest::proptest! {
    /// Whatever the text, redaction leaves nothing shaped like a card
    /// number, and changes nothing in a text without one.
    #[test]
    fn redaction_leaves_no_card_number(s in "[0-9 a-z\\-`\"]{0,80}|([0-9]{4}[ -]?){3,5}[0-9]{0,4}") {
        let out = o2c_protocol::validate::redact_card_numbers(&s);
        proptest::prop_assert!(!o2c_protocol::validate::contains_card_number(&out), "{s:?} -> {out:?}");
        if !o2c_protocol::validate::contains_card_number(&s) {
            proptest::prop_assert_eq!(out.as_ref(), s.as_str());
        }
    }
}

#[test]
fn a_web_order_names_its_customer_and_is_paid_online() {
    let mut o = order();
    o.channel = Some(SalesChannel::Web);
    assert_one(&o, "customer_id", "required");
    o.customer_id = Some(CustomerId::new("c-1").expect("id"));
    let total = o.total().expect("total");
    o.payments = vec![Payment::Cash { amount: total }];
    assert_one(&o, "payments[0].method", "not_allowed");
    o.payments = vec![Payment::Card {
        amount: total,
        token: "tok_1".into(),
        brand: "visa".into(),
        last4: "4242".into(),
        authorization: CardAuthorization::Offline,
    }];
    assert_one(&o, "payments[0].authorization", "not_allowed");
    if let Payment::Card { authorization, .. } = &mut o.payments[0] {
        *authorization = CardAuthorization::Online;
    }
    assert_eq!(o.validate(), Ok(()));
    // A till's order may carry a loyalty customer, and any tender.
    o.channel = Some(SalesChannel::Pos);
    o.payments = vec![Payment::Cash { amount: total }];
    assert_eq!(o.validate(), Ok(()));
}

#[test]
fn a_store_cannot_send_a_web_order_or_use_the_api_agent_id() {
    let mut o = order();
    o.channel = Some(SalesChannel::Web);
    o.customer_id = Some(CustomerId::new("c-1").expect("id"));
    let env = envelope(Event::OrderCreated(Box::new(o)));
    let errs = env.validate_store_event().expect_err("web from a store").0;
    assert!(
        errs.iter().any(|e| e.field == "payload.channel"),
        "{errs:#?}"
    );
    let mut env = envelope(Event::OrderCreated(Box::new(order())));
    env.agent_id = SalesChannel::Mobile.cloud_agent().expect("mobile agent");
    let errs = env.validate_store_event().expect_err("api agent id").0;
    assert!(
        errs.iter()
            .any(|e| e.field == "agent_id" && e.code == "identity_mismatch"),
        "{errs:#?}"
    );
    assert_eq!(
        SalesChannel::of_cloud_agent(&env.agent_id),
        Some(SalesChannel::Mobile)
    );
    assert_eq!(
        SalesChannel::of_cloud_agent(&AgentId::new("A1").expect("id")),
        None
    );
}
