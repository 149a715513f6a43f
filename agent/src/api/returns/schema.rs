//! The hand-written OpenAPI schema of [`RefundBody`]: one component per
//! tender, each refusing unknown fields (as the parser does), with a
//! discriminator on `method`, the way `o2c_order_http::schema` writes the
//! payment tenders. The limits are `o2c_protocol::returns`'s.

use std::borrow::Cow;

use o2c_protocol::validate::MAX_TOKEN_LEN;
use serde_json::json;
use utoipa::openapi::schema::{
    AdditionalProperties, Discriminator, ObjectBuilder, OneOfBuilder, Schema, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::store::RefundBody;

const NO_CARD_DATA: &str = " Refused (422 `card_data_rejected`) when it holds what looks \
    like a card number.";

fn text(min: usize, max: usize, description: &str, example: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(min))
        .max_length(Some(max))
        .description(Some(description))
        .examples([json!(example)])
}

fn tag(value: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([value]))
}

fn closed(o: ObjectBuilder) -> RefOr<Schema> {
    o.additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)))
        .into()
}

const VARIANTS: [(&str, &str); 3] = [
    ("card", "CardRefund"),
    ("cash", "CashRefund"),
    ("gift_card", "GiftCardRefund"),
];

impl PartialSchema for RefundBody {
    fn schema() -> RefOr<Schema> {
        let mut discriminator = Discriminator::new("method");
        let mut one_of = OneOfBuilder::new().description(Some(
            "How the money goes back, by `method`. Never a card number: a card is its \
             processor token, brand and last four.",
        ));
        for (value, name) in VARIANTS {
            discriminator
                .mapping
                .insert(value.to_owned(), format!("#/components/schemas/{name}"));
            one_of = one_of.item(RefOr::Ref(Ref::from_schema_name(name)));
        }
        one_of.discriminator(Some(discriminator)).into()
    }
}

impl ToSchema for RefundBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("RefundBody")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        let card = ObjectBuilder::new()
            .description(Some(
                "Back to a card the order was paid with, by its processor token; the cloud \
                 refunds it at the processor. For an order captured here, a token that is not \
                 one of its card payments is 422 `refund_tender_mismatch`, more than is left \
                 of that payment 422 `refund_exceeds_tender`.",
            ))
            .property("method", tag("card"))
            .required("method")
            .property(
                "token",
                text(
                    1,
                    MAX_TOKEN_LEN,
                    &format!("The processor token of the order's card payment.{NO_CARD_DATA}"),
                    "tok_visa_4f9a2c",
                ),
            )
            .required("token")
            .property(
                "brand",
                text(1, 32, &format!("Card brand.{NO_CARD_DATA}"), "visa"),
            )
            .required("brand")
            .property(
                "last4",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[0-9]{4}$"))
                    .description(Some("The card's last four digits."))
                    .examples([json!("4242")]),
            )
            .required("last4");
        let cash = ObjectBuilder::new()
            .description(Some("Cash from the till."))
            .property("method", tag("cash"))
            .required("method");
        let gift_card = ObjectBuilder::new()
            .description(Some("Store credit loaded onto a gift card at the till."))
            .property("method", tag("gift_card"))
            .required("method")
            .property(
                "token",
                text(
                    1,
                    MAX_TOKEN_LEN,
                    &format!("The gift card's token.{NO_CARD_DATA}"),
                    "gc_7d1e0b",
                ),
            )
            .required("token");
        schemas.extend([
            ("CardRefund".to_owned(), closed(card)),
            ("CashRefund".to_owned(), closed(cash)),
            ("GiftCardRefund".to_owned(), closed(gift_card)),
        ]);
    }
}
