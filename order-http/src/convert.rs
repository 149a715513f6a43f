//! Between the bodies and the protocol's order: a request's tenders,
//! fulfillment and contact into `o2c_protocol` types, a stored order's
//! back into bodies (tokens are never shown back), and `Order::validate()`'s
//! field paths onto the request's names.

use o2c_protocol::{
    Address, CardAuthorization, Currency, Customer, Fulfillment, Money, OrderLine, Payment,
};

use crate::body::{
    AddressBody, CardAuthorizationBody, CustomerBody, FulfillmentBody, LineView, PaymentBody,
    PaymentView,
};

/// Maps an `Order::validate()` path onto the request's field names.
pub fn request_path(path: &str) -> String {
    for (model, request) in [
        (".unit_price.minor", ".unit_price_minor"),
        (".unit_price.currency", ".unit_price_minor"),
        (".amount.minor", ".amount_minor"),
        (".amount.currency", ".amount_minor"),
    ] {
        if let Some(stem) = path.strip_suffix(model) {
            return format!("{stem}{request}");
        }
    }
    path.to_owned()
}

/// A requested tender, in `currency`.
pub fn payment(p: PaymentBody, currency: Currency) -> Payment {
    let m = |minor| Money::new(minor, currency);
    match p {
        PaymentBody::Card {
            amount_minor,
            token,
            brand,
            last4,
            authorization,
        } => Payment::Card {
            amount: m(amount_minor),
            token,
            brand,
            last4,
            authorization: match authorization {
                CardAuthorizationBody::Online => CardAuthorization::Online,
                CardAuthorizationBody::Offline => CardAuthorization::Offline,
            },
        },
        PaymentBody::Cash { amount_minor } => Payment::Cash {
            amount: m(amount_minor),
        },
        PaymentBody::GiftCard {
            amount_minor,
            token,
        } => Payment::GiftCard {
            amount: m(amount_minor),
            token,
        },
    }
}

/// A requested fulfillment.
pub fn fulfillment(f: FulfillmentBody) -> Fulfillment {
    match f {
        FulfillmentBody::CarryOut {} => Fulfillment::CarryOut {},
        FulfillmentBody::ShipToHome { address: a } => Fulfillment::ShipToHome {
            address: Address {
                name: a.name,
                line1: a.line1,
                line2: a.line2,
                city: a.city,
                region: a.region,
                postal_code: a.postal_code,
                country: a.country,
            },
        },
    }
}

/// A requested contact.
pub fn customer(c: CustomerBody) -> Customer {
    Customer {
        email: c.email,
        phone: c.phone,
    }
}

/// The request-shaped view of a stored fulfillment.
pub fn fulfillment_body(f: &Fulfillment) -> FulfillmentBody {
    match f {
        Fulfillment::CarryOut {} => FulfillmentBody::CarryOut {},
        Fulfillment::ShipToHome { address: a } => FulfillmentBody::ShipToHome {
            address: AddressBody {
                name: a.name.clone(),
                line1: a.line1.clone(),
                line2: a.line2.clone(),
                city: a.city.clone(),
                region: a.region.clone(),
                postal_code: a.postal_code.clone(),
                country: a.country.clone(),
            },
        },
    }
}

/// The request-shaped view of a stored contact.
pub fn customer_body(c: &Customer) -> CustomerBody {
    CustomerBody {
        email: c.email.clone(),
        phone: c.phone.clone(),
    }
}

/// A stored line as shown back.
pub fn line_view(l: &OrderLine) -> LineView {
    LineView {
        sku: l.sku.clone(),
        quantity: l.quantity,
        unit_price_minor: l.unit_price.minor,
    }
}

/// A stored tender as shown back: never its token.
pub fn payment_view(p: &Payment) -> PaymentView {
    let mut v = PaymentView {
        method: p.method().to_owned(),
        amount_minor: p.amount().minor,
        brand: None,
        last4: None,
        authorization: None,
    };
    if let Payment::Card {
        brand,
        last4,
        authorization,
        ..
    } = p
    {
        v.brand = Some(brand.clone());
        v.last4 = Some(last4.clone());
        v.authorization = Some(match authorization {
            CardAuthorization::Online => CardAuthorizationBody::Online,
            CardAuthorization::Offline => CardAuthorizationBody::Offline,
        });
    }
    v
}
