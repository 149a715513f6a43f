use super::*;
use crate::ids::StoreId;
use crate::money::Currency;
use crate::order::{CardAuthorization, Fulfillment, OrderLine};

fn cad(minor: i64) -> Money {
    Money::new(minor, Currency::from_code("CAD").unwrap())
}

fn line(sku: &str, quantity: i64, price: i64) -> OrderLine {
    OrderLine {
        sku: sku.into(),
        quantity,
        unit_price: cad(price),
        category: None,
    }
}

fn card(token: &str, minor: i64) -> Payment {
    Payment::Card {
        amount: cad(minor),
        token: token.into(),
        brand: "visa".into(),
        last4: "4242".into(),
        authorization: CardAuthorization::Online,
    }
}

/// Two of A at 10.00 and one of B at 5.00, paid 15.00 by card and 10.00
/// in cash.
fn order() -> Order {
    Order {
        order_id: OrderId::from_parts(1, [1; 10]),
        store_id: StoreId::new("S1").unwrap(),
        terminal_id: TerminalId::new("T1").unwrap(),
        currency: Currency::from_code("CAD").unwrap(),
        lines: vec![line("A", 2, 1000), line("B", 1, 500)],
        payments: vec![card("tok_1", 1500), Payment::Cash { amount: cad(1000) }],
        fulfillment: Fulfillment::CarryOut {},
        customer: None,
        captured_at: time::OffsetDateTime::UNIX_EPOCH,
        catalog_version: None,
        stock_check: None,
        channel: None,
        customer_id: None,
    }
}

fn ret(sku: &str, quantity: i64) -> ReturnLine {
    ReturnLine {
        sku: sku.into(),
        quantity,
    }
}

fn card_refund(token: &str) -> RefundTender {
    RefundTender::Card {
        token: token.into(),
        brand: "visa".into(),
        last4: "4242".into(),
    }
}

#[test]
fn a_partial_return_then_the_same_line_again_is_an_over_return() {
    let o = order();
    let mut ledger = ReturnLedger::default();
    let first = assess(&o, &ledger, &[ret("A", 1)], &card_refund("tok_1")).unwrap();
    assert_eq!(first.amount, cad(1000));
    assert_eq!(first.tender, Some(0));
    ledger.record(&[ret("A", 1)], &first);
    // One unit of A is left: two more is too many, and names its line.
    let err = assess(
        &o,
        &ledger,
        &[ret("B", 1), ret("A", 2)],
        &RefundTender::Cash {},
    )
    .unwrap_err();
    assert_eq!(
        err,
        Refusal::OverReturn {
            line: 1,
            sku: "A".into(),
            requested: 2,
            left: 1
        }
    );
    assert_eq!(err.code(), "over_return");
    assert_eq!(err.field(), "lines[1].quantity");
    assert_eq!(err.sku(), Some("A"));
    // The last unit still goes back.
    let last = assess(&o, &ledger, &[ret("A", 1)], &RefundTender::Cash {}).unwrap();
    assert_eq!((last.amount, last.tender), (cad(1000), None));
}

#[test]
fn cash_may_refund_a_card_sale_and_a_card_only_its_own_payment() {
    let o = order();
    let ledger = ReturnLedger::default();
    let cash = assess(&o, &ledger, &[ret("A", 2)], &RefundTender::Cash {}).unwrap();
    assert_eq!((cash.amount, cash.tender), (cad(2000), None));
    assert_eq!(
        assess(&o, &ledger, &[ret("A", 1)], &card_refund("tok_other")).unwrap_err(),
        Refusal::TenderMismatch
    );
    // 20.00 back on a card that paid 15.00 is refused.
    assert_eq!(
        assess(&o, &ledger, &[ret("A", 2)], &card_refund("tok_1")).unwrap_err(),
        Refusal::ExceedsTender {
            amount: 2000,
            left: 1500
        }
    );
    // What the card already gave back counts.
    let mut ledger = ReturnLedger::default();
    let b = assess(&o, &ledger, &[ret("B", 1)], &card_refund("tok_1")).unwrap();
    ledger.record(&[ret("B", 1)], &b);
    assert_eq!(ledger.refunded.get(&0), Some(&500));
    assert!(assess(&o, &ledger, &[ret("A", 1)], &card_refund("tok_1")).is_ok());
    let gift = RefundTender::GiftCard { token: "gc".into() };
    assert_eq!(
        assess(&o, &ledger, &[ret("A", 2)], &gift).unwrap().tender,
        None
    );
}

#[test]
fn a_sku_not_sold_is_refused_and_several_prices_refund_the_lowest() {
    let mut o = order();
    let ledger = ReturnLedger::default();
    let err = assess(&o, &ledger, &[ret("Z", 1)], &RefundTender::Cash {}).unwrap_err();
    assert_eq!(err.code(), "not_on_order");
    assert_eq!(err.field(), "lines[0].sku");
    o.lines.push(line("A", 1, 700));
    let a = assess(&o, &ledger, &[ret("A", 3)], &RefundTender::Cash {}).unwrap();
    assert_eq!(a.amount, cad(2100));
}

#[test]
fn the_payload_rules_name_their_fields() {
    let r = ReturnRequested {
        order_id: OrderId::from_parts(1, [1; 10]),
        return_id: ReturnId::from_parts(2, [2; 10]),
        terminal_id: TerminalId::new("T1").unwrap(),
        lines: vec![ret("A", 0), ret("A", 1), ret("4111111111111111", 1)],
        refund: RefundTender::Card {
            token: "t".into(),
            brand: "visa".into(),
            last4: "42".into(),
        },
        reason: String::new(),
    };
    let fields: Vec<(String, String)> = r
        .problems()
        .into_iter()
        .map(|e| (e.field, e.code))
        .collect();
    for (field, code) in [
        ("payload.lines[0].quantity", "out_of_range"),
        ("payload.lines[1].sku", "duplicate"),
        ("payload.lines[2].sku", crate::validate::CARD_DATA),
        ("payload.reason", "required"),
        ("payload.refund.last4", "invalid_format"),
    ] {
        assert!(
            fields.iter().any(|(f, c)| f == field && c == code),
            "{field} {code} in {fields:?}"
        );
    }
    let ok = ReturnRequested {
        lines: vec![ret("A", 1)],
        refund: RefundTender::Cash {},
        reason: "damaged".into(),
        ..r
    };
    assert!(ok.validate().is_ok());
    // A tender refuses what it does not know: next to a token, a stray
    // field can only be card data.
    let stray = r#"{"method":"card","token":"t","brand":"visa","last4":"4242","pan":"x"}"#;
    assert!(serde_json::from_str::<RefundTender>(stray).is_err());
    let stray = r#"{"method":"cash","track2":"x"}"#;
    assert!(serde_json::from_str::<RefundTender>(stray).is_err());
    let cash: RefundTender = serde_json::from_str(r#"{"method":"cash"}"#).unwrap();
    assert_eq!(
        serde_json::to_string(&cash).unwrap(),
        r#"{"method":"cash"}"#
    );
}
