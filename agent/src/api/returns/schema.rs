//! The hand-written OpenAPI schema of [`RefundBody`]: one component per
//! tender, each refusing unknown fields (as the parser does), with a
//! discriminator on `method`, built with `o2c_order_http::schema`'s parts
//! as the payment tenders are. The limits are `o2c_protocol::returns`'s.

use std::borrow::Cow;

use o2c_order_http::schema::{NO_CARD_DATA, closed, last4, tag, text, union};
use o2c_protocol::validate::MAX_TOKEN_LEN;
use serde_json::json;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::store::RefundBody;

const VARIANTS: [(&str, &str); 3] = [
    ("card", "CardRefund"),
    ("cash", "CashRefund"),
    ("gift_card", "GiftCardRefund"),
];

impl PartialSchema for RefundBody {
    fn schema() -> RefOr<Schema> {
        union(
            "method",
            &VARIANTS,
            "How the money goes back, by `method`. Never a card number: a card is its \
             processor token, brand and last four.",
        )
    }
}

impl ToSchema for RefundBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("RefundBody")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        let token = |description: &str, example: &str| {
            text(1, MAX_TOKEN_LEN, &format!("{description}{NO_CARD_DATA}"))
                .examples([json!(example)])
        };
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
                token(
                    "The processor token of the order's card payment.",
                    "tok_visa_4f9a2c",
                ),
            )
            .required("token")
            .property(
                "brand",
                text(1, 32, &format!("Card brand.{NO_CARD_DATA}")).examples([json!("visa")]),
            )
            .required("brand")
            .property("last4", last4())
            .required("last4");
        let cash = ObjectBuilder::new()
            .description(Some("Cash from the till."))
            .property("method", tag("cash"))
            .required("method");
        let gift_card = ObjectBuilder::new()
            .description(Some("Store credit loaded onto a gift card at the till."))
            .property("method", tag("gift_card"))
            .required("method")
            .property("token", token("The gift card's token.", "gc_7d1e0b"))
            .required("token");
        schemas.extend(
            [
                ("CardRefund", card),
                ("CashRefund", cash),
                ("GiftCardRefund", gift_card),
            ]
            .map(|(name, o)| (name.to_owned(), o.additional_properties(closed()).into())),
        );
    }
}
