//! Hand-written OpenAPI schemas where the derive cannot state what the
//! code enforces: the tagged tenders and fulfillments (one component per
//! variant, each refusing unknown fields, with a discriminator) and the
//! ISO 4217 codes `o2c_protocol::Currency` accepts. The limits come from
//! `o2c_protocol::validate`; the tests below keep the currency list equal
//! to the protocol's.

use std::borrow::Cow;

use o2c_protocol::validate::MAX_TOKEN_LEN;
use serde_json::json;
use utoipa::openapi::schema::{
    AdditionalProperties, Discriminator, KnownFormat, ObjectBuilder, OneOfBuilder, Schema,
    SchemaFormat, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::body::{AddressBody, CardAuthorizationBody, FulfillmentBody, PaymentBody};

/// Every ISO 4217 code `o2c_protocol::Currency::from_code` accepts.
pub const CURRENCY_CODES: [&str; 183] = [
    "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN",
    "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUC", "CUP", "CVE",
    "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL",
    "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HRK", "HTG", "HUF", "IDR", "ILS",
    "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW",
    "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD",
    "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN",
    "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR",
    "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL",
    "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY",
    "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES",
    "VND", "VUV", "WST", "XAD", "XAF", "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XCD", "XCG",
    "XDR", "XOF", "XPD", "XPF", "XPT", "XSU", "XTS", "XUA", "XXX", "YER", "ZAR", "ZMW", "ZWG",
    "ZWL",
];

/// The schema of an ISO 4217 code (the component `CurrencyCode`).
#[derive(Debug, Clone, Copy)]
pub struct CurrencyCode;

impl PartialSchema for CurrencyCode {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "ISO 4217 alphabetic code, upper case: any code the standard lists (funds, metals and \
                 superseded codes included). A store's offline card limits apply in its `[store] \
                 currency` only.",
            ))
            .enum_values(Some(CURRENCY_CODES))
            .examples([json!("CAD")])
            .into()
    }
}

impl ToSchema for CurrencyCode {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("CurrencyCode")
    }
}

/// The tender of a payment as shown back, `o2c_protocol::Payment::method()`
/// (the component `PaymentMethod`).
#[derive(Debug, Clone, Copy)]
pub struct PaymentMethod;

impl PartialSchema for PaymentMethod {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("The tender."))
            .enum_values(Some(["card", "cash", "gift_card"]))
            .into()
    }
}

impl ToSchema for PaymentMethod {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("PaymentMethod")
    }
}

/// A string of `min..=max` characters (Unicode scalar values, as JSON
/// Schema counts them and as `o2c_protocol::validate` does).
pub fn text(min: usize, max: usize, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(min))
        .max_length(Some(max))
        .description(Some(description))
}

/// The rule every free-text field shares, appended to its description.
pub const NO_CARD_DATA: &str = " Refused (422 `card_data_rejected`) when it holds \
    what looks like a card number: a Luhn-valid run of 13-19 digits, possibly grouped by \
    single spaces or dashes.";

/// An amount in minor units, `minimum` or more.
fn amount(minimum: i64, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(minimum))
        .description(Some(description))
}

/// The constant tag of one variant.
pub fn tag(value: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([value]))
}

/// No property but those listed.
pub fn closed() -> Option<AdditionalProperties<Schema>> {
    Some(AdditionalProperties::FreeForm(false))
}

/// A card's last four digits.
pub fn last4() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^[0-9]{4}$"))
        .description(Some("The card's last four digits."))
        .examples([json!("4242")])
}

fn reference(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

/// A tagged union of the named components, on `property`.
pub fn union(property: &str, variants: &[(&str, &str)], description: &str) -> RefOr<Schema> {
    let mut discriminator = Discriminator::new(property);
    let mut one_of = OneOfBuilder::new().description(Some(description));
    for (value, name) in variants {
        discriminator
            .mapping
            .insert((*value).to_owned(), format!("#/components/schemas/{name}"));
        one_of = one_of.item(reference(name));
    }
    one_of.discriminator(Some(discriminator)).into()
}

const PAYMENT_AMOUNT: &str = "Amount, minor units of the order's currency, at least 1. The \
    payments must sum to the order total (422 `invalid_order`, rule `payment_total_mismatch`).";

/// A card payment's schema: `online` only for a channel that cannot take
/// an offline card (the cloud order API), else `online` or `offline` (the
/// agent's, whose `CardAuthorizationBody` component states the rule).
fn card_payment(online_only: bool) -> RefOr<Schema> {
    let authorization = if online_only {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["online"]))
            .description(Some(
                "Authorised online by the processor (the only kind taken here).",
            ))
            .into()
    } else {
        reference(&CardAuthorizationBody::name())
    };
    let description = if online_only {
        "A card, as a processor token, its brand and last four digits: never the card number. \
         Authorised online."
    } else {
        "A card, as a processor token, its brand and last four digits: never the card \
         number. An `offline` authorisation needs the order in the store's currency and \
         at most `[payments] offline_floor_limit_minor`."
    };
    ObjectBuilder::new()
        .description(Some(description))
        .property("method", tag("card"))
        .required("method")
        .property(
            "amount_minor",
            amount(1, PAYMENT_AMOUNT).examples([json!(2998)]),
        )
        .required("amount_minor")
        .property(
            "token",
            text(1, MAX_TOKEN_LEN, &format!("Processor token.{NO_CARD_DATA}"))
                .examples([json!("tok_visa_4f9a2c")]),
        )
        .required("token")
        .property(
            "brand",
            text(1, 32, &format!("Card brand.{NO_CARD_DATA}")).examples([json!("visa")]),
        )
        .required("brand")
        .property("last4", last4())
        .required("last4")
        .property("authorization", authorization)
        .required("authorization")
        .additional_properties(closed())
        .into()
}

fn cash_payment() -> RefOr<Schema> {
    ObjectBuilder::new()
        .description(Some("Cash."))
        .property("method", tag("cash"))
        .required("method")
        .property(
            "amount_minor",
            amount(1, PAYMENT_AMOUNT).examples([json!(2998)]),
        )
        .required("amount_minor")
        .additional_properties(closed())
        .into()
}

fn gift_card_payment() -> RefOr<Schema> {
    ObjectBuilder::new()
        .description(Some("A gift card, as a token."))
        .property("method", tag("gift_card"))
        .required("method")
        .property(
            "amount_minor",
            amount(1, PAYMENT_AMOUNT).examples([json!(2998)]),
        )
        .required("amount_minor")
        .property(
            "token",
            text(1, MAX_TOKEN_LEN, &format!("Gift card token.{NO_CARD_DATA}"))
                .examples([json!("gc_7d1e0b")]),
        )
        .required("token")
        .additional_properties(closed())
        .into()
}

impl PartialSchema for PaymentBody {
    fn schema() -> RefOr<Schema> {
        union(
            "method",
            &[
                ("card", "CardPayment"),
                ("cash", "CashPayment"),
                ("gift_card", "GiftCardPayment"),
            ],
            "One tender, by `method`. Never a card number: only a token, brand and last four.",
        )
    }
}

impl ToSchema for PaymentBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("PaymentBody")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.extend([
            ("CardPayment".to_owned(), card_payment(false)),
            ("CashPayment".to_owned(), cash_payment()),
            ("GiftCardPayment".to_owned(), gift_card_payment()),
            (
                CardAuthorizationBody::name().into_owned(),
                CardAuthorizationBody::schema(),
            ),
        ]);
    }
}

/// The schema of a tender taken by the cloud order API (a web or mobile
/// order is paid before it is confirmed): a card authorised online or a
/// gift card (component `RemotePayment`). Its wire form is
/// [`PaymentBody`]'s; `o2c_protocol::validate` refuses the rest.
#[derive(Debug, Clone, Copy)]
pub struct RemotePayment;

impl PartialSchema for RemotePayment {
    fn schema() -> RefOr<Schema> {
        union(
            "method",
            &[
                ("card", "OnlineCardPayment"),
                ("gift_card", "GiftCardPayment"),
            ],
            "One tender, by `method`: a card authorised online or a gift card. Never a card \
             number: only a token, brand and last four.",
        )
    }
}

impl ToSchema for RemotePayment {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("RemotePayment")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.extend([
            ("OnlineCardPayment".to_owned(), card_payment(true)),
            ("GiftCardPayment".to_owned(), gift_card_payment()),
        ]);
    }
}

impl PartialSchema for FulfillmentBody {
    fn schema() -> RefOr<Schema> {
        union(
            "type",
            &[("carry_out", "CarryOut"), ("ship_to_home", "ShipToHome")],
            "How the goods reach the customer, by `type`.",
        )
    }
}

impl ToSchema for FulfillmentBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("FulfillmentBody")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        let carry_out = ObjectBuilder::new()
            .description(Some("Taken away at the till."))
            .property("type", tag("carry_out"))
            .required("type")
            .additional_properties(closed());
        let ship = ObjectBuilder::new()
            .description(Some(
                "Shipped. When the store checks stock for shipping, capture may answer 422 \
                 `out_of_stock` or 503 `stock_unverified`.",
            ))
            .property("type", tag("ship_to_home"))
            .required("type")
            .property("address", reference(&AddressBody::name()))
            .required("address")
            .additional_properties(closed());
        schemas.extend([
            ("CarryOut".to_owned(), carry_out.into()),
            ("ShipToHome".to_owned(), ship.into()),
            (AddressBody::name().into_owned(), AddressBody::schema()),
        ]);
        <AddressBody as ToSchema>::schemas(schemas);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_codes_are_exactly_those_the_protocol_accepts() {
        let mut accepted = Vec::new();
        for a in b'A'..=b'Z' {
            for b in b'A'..=b'Z' {
                for c in b'A'..=b'Z' {
                    let code = String::from_utf8(vec![a, b, c]).unwrap();
                    if o2c_protocol::Currency::from_code(&code).is_ok() {
                        accepted.push(code);
                    }
                }
            }
        }
        assert_eq!(accepted, CURRENCY_CODES.to_vec());
    }
}
