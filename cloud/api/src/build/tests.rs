use std::collections::HashMap;

use o2c_order_http::{CardAuthorizationBody, FulfillmentBody, PaymentBody};
use o2c_protocol::catalog::{Price, Product};
use o2c_protocol::{Currency, CustomerId, OrderId, SalesChannel, StoreId};
use time::macros::datetime;

use super::*;
use crate::model::{ChannelBody, CreateOrderRequest, WebLine};

fn cad() -> Currency {
    Currency::from_code("CAD").expect("CAD")
}

fn catalog() -> HashMap<String, Product> {
    let product = |sku: &str, minor: i64, active: bool| Product {
        sku: sku.into(),
        name: format!("{sku} name"),
        category: Some("Apparel".into()),
        active,
        prices: vec![
            Price {
                currency: cad(),
                minor,
                effective_from: None,
            },
            // A sale that starts later than "now" below.
            Price {
                currency: cad(),
                minor: minor / 2,
                effective_from: Some(datetime!(2027-01-01 00:00 UTC)),
            },
        ],
    };
    [product("SKU-1", 1499, true), product("OLD", 100, false)]
        .into_iter()
        .map(|p| (p.sku.clone(), p))
        .collect()
}

fn card(amount_minor: i64) -> PaymentBody {
    PaymentBody::Card {
        amount_minor,
        token: "tok_1".into(),
        brand: "visa".into(),
        last4: "4242".into(),
        authorization: CardAuthorizationBody::Online,
    }
}

fn request(lines: Vec<WebLine>, payments: Vec<PaymentBody>) -> CreateOrderRequest {
    CreateOrderRequest {
        channel: ChannelBody::Mobile,
        currency: "CAD".into(),
        lines,
        payments,
        fulfillment: FulfillmentBody::CarryOut {},
        customer: None,
    }
}

fn line(sku: &str, quantity: i64, unit_price_minor: Option<i64>) -> WebLine {
    WebLine {
        sku: sku.into(),
        quantity,
        unit_price_minor,
    }
}

fn run(req: CreateOrderRequest) -> Result<o2c_protocol::Order, BuildError> {
    let store = StoreId::new("WEB").expect("store");
    let customer = CustomerId::new("c-1").expect("customer");
    let cx = Context {
        store: &store,
        customer: &customer,
        order_id: OrderId::from_parts(1, [1; 10]),
        now: datetime!(2026-12-06 12:00 UTC),
        currencies: &[],
    };
    build(req, cx, &catalog())
}

#[test]
fn lines_are_priced_from_the_catalog_in_force_now() {
    let o = run(request(vec![line("SKU-1", 2, None)], vec![card(2998)])).expect("order");
    assert_eq!(o.lines[0].unit_price.minor, 1499);
    assert_eq!(o.lines[0].category.as_deref(), Some("Apparel"));
    assert_eq!(o.channel, Some(SalesChannel::Mobile));
    assert_eq!(o.customer_id.as_ref().map(|c| c.as_str()), Some("c-1"));
    assert_eq!(o.terminal_id.as_str(), "mobile");
    // A stated price that is the catalog's is fine.
    run(request(
        vec![line("SKU-1", 1, Some(1499))],
        vec![card(1499)],
    ))
    .expect("same price");
}

#[test]
fn a_price_the_catalog_does_not_have_is_refused() {
    assert_eq!(
        run(request(vec![line("SKU-1", 1, Some(1))], vec![card(1)])),
        Err(BuildError::PriceChanged {
            field: "lines[0].unit_price_minor".into(),
            catalog: 1499
        })
    );
}

#[test]
fn unknown_and_inactive_skus_are_refused_naming_the_line() {
    for sku in ["NOPE", "OLD"] {
        assert_eq!(
            run(request(
                vec![line("SKU-1", 1, None), line(sku, 1, None)],
                vec![card(1599)]
            )),
            Err(BuildError::UnknownSku {
                field: "lines[1].sku".into()
            })
        );
    }
}

#[test]
fn the_order_rules_apply_with_request_paths() {
    let err = run(request(vec![line("SKU-1", 2, None)], vec![card(100)])).expect_err("sum");
    assert!(
        matches!(&err, BuildError::Invalid { field, rule, .. }
            if field == "payments" && rule == "payment_total_mismatch"),
        "{err:?}"
    );
    let err = run(request(
        vec![line("SKU-1", 1, None)],
        vec![PaymentBody::Cash { amount_minor: 1499 }],
    ))
    .expect_err("cash");
    assert!(
        matches!(&err, BuildError::Invalid { field, rule, .. }
            if field == "payments[0].method" && rule == "not_allowed"),
        "{err:?}"
    );
    let err = run(request(vec![line("SKU-1", 0, None)], vec![card(0)])).expect_err("qty");
    assert!(
        matches!(&err, BuildError::Invalid { field, .. } if field == "lines[0].quantity"),
        "{err:?}"
    );
    let mut req = request(vec![line("SKU-1", 1, None)], vec![card(1499)]);
    req.currency = "XYZ".into();
    assert!(matches!(
        run(req),
        Err(BuildError::Invalid { field, .. }) if field == "currency"
    ));
}

#[test]
fn a_card_number_in_a_field_is_refused_as_card_data() {
    let mut req = request(vec![line("SKU-1", 1, None)], vec![card(1499)]);
    req.payments = vec![PaymentBody::Card {
        amount_minor: 1499,
        token: "4111111111111111".into(),
        brand: "visa".into(),
        last4: "1111".into(),
        authorization: CardAuthorizationBody::Online,
    }];
    assert_eq!(
        run(req),
        Err(BuildError::CardData {
            field: "payments[0].token".into()
        })
    );
}

#[test]
fn only_the_configured_currencies_are_sold() {
    let store = StoreId::new("WEB").expect("store");
    let customer = CustomerId::new("c-1").expect("customer");
    let usd = Currency::from_code("USD").expect("USD");
    let cx = Context {
        store: &store,
        customer: &customer,
        order_id: OrderId::from_parts(1, [1; 10]),
        now: datetime!(2026-12-06 12:00 UTC),
        currencies: &[usd],
    };
    let req = request(vec![line("SKU-1", 1, None)], vec![card(1499)]);
    assert!(matches!(
        build(req, cx, &catalog()),
        Err(BuildError::Invalid { field, rule, .. }) if field == "currency" && rule == "currency_not_sold"
    ));
}
