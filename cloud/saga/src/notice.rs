//! The customer notifications' side of the saga ([`crate::Service::Notify`],
//! run by `o2c-cloud notify`): which message each event calls for, and
//! their idempotent record in `o2c_notify`.
//!
//! The step reads the order history (`orders.events`), which carries every
//! event of an order. An `OrderCreated` records who to tell
//! (`o2c_notify.contacts`); an event a customer hears about records one
//! message per channel (`o2c_notify.messages`), keyed by order, kind and
//! channel. That key is the idempotency record: a replayed event, or the
//! same event read again after a crash, adds nothing, so each message is
//! sent once. The sender (crate `o2c-notify`) delivers them.
//!
//! A compensation is a message of its own, never an unsend: an order
//! confirmed and then cancelled gets both.

use o2c_protocol::{Envelope, Event, Money};
use serde::{Deserialize, Serialize};

use super::consumer::{Step, StepError};
use super::db::Tx;
use crate::pool::Pg;

/// The service's schema.
pub const SCHEMA: &str = "o2c_notify";

/// What a customer is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The payment was taken: the order is confirmed.
    OrderConfirmed,
    /// The order was cancelled (a declined payment, a void, the customer).
    OrderCancelled,
    /// The shipment left, with its carrier and tracking number.
    ShipmentDispatched,
    /// The carrier delivered it.
    ShipmentDelivered,
    /// Money went back to the customer.
    RefundIssued,
    /// A return's money went back: at the till, or to the card (one per
    /// return, contract 1.7).
    ReturnRefunded,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 6] = [
        Kind::OrderConfirmed,
        Kind::OrderCancelled,
        Kind::ShipmentDispatched,
        Kind::ShipmentDelivered,
        Kind::RefundIssued,
        Kind::ReturnRefunded,
    ];

    /// Its name (stored, in templates' file names, in webhooks).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::OrderConfirmed => "order_confirmed",
            Kind::OrderCancelled => "order_cancelled",
            Kind::ShipmentDispatched => "shipment_dispatched",
            Kind::ShipmentDelivered => "shipment_delivered",
            Kind::RefundIssued => "refund_issued",
            Kind::ReturnRefunded => "return_refunded",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// What a message's template shows besides the order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// An amount captured or refunded, in minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_minor: Option<i64>,
    /// Its currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Why an order was cancelled (`payment_declined`, `store_void`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The carrier's tracking number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<String>,
    /// The carrier's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    /// The return, for a return's notice: one message per return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_id: Option<String>,
    /// How a return's money went back: `card`, `cash` or `gift_card`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_method: Option<String>,
}

impl Facts {
    fn money(m: &Money) -> Self {
        Facts {
            amount_minor: Some(m.minor),
            currency: Some(m.currency.code().to_owned()),
            ..Facts::default()
        }
    }
}

/// Who to tell about an order, from its `OrderCreated`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The order.
    pub order_id: String,
    /// Its store.
    pub store_id: String,
    /// Its e-mail address, if the customer gave one.
    pub email: Option<String>,
    /// Its customer, for a web or mobile order or a loyalty customer's.
    pub customer_id: Option<String>,
    /// `pos`, `web` or `mobile`.
    pub channel: &'static str,
    /// Its currency.
    pub currency: String,
    /// Its total, in minor units (0 if it does not add up: validated
    /// upstream).
    pub total_minor: i64,
}

/// What one event means to the customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Who to tell about a new order.
    Contact(Contact),
    /// A message to send.
    Message(Kind, Facts),
    /// Nothing to say.
    None,
}

/// The notice `env` calls for (pure).
pub fn notice(env: &Envelope) -> Notice {
    match &env.payload {
        Event::OrderCreated(o) => Notice::Contact(Contact {
            order_id: o.order_id.to_string(),
            store_id: o.store_id.to_string(),
            email: o
                .customer
                .as_ref()
                .and_then(|c| c.email.as_deref())
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_owned),
            customer_id: o.customer_id.as_ref().map(ToString::to_string),
            channel: o.channel.map_or("pos", |c| c.as_str()),
            currency: o.currency.code().to_owned(),
            total_minor: o.total().map_or(0, |m| m.minor),
        }),
        Event::PaymentCaptured(p) => Notice::Message(Kind::OrderConfirmed, Facts::money(&p.amount)),
        Event::OrderCancelled(c) => Notice::Message(
            Kind::OrderCancelled,
            Facts {
                reason: Some(c.reason.clone()),
                ..Facts::default()
            },
        ),
        Event::ShipmentDispatched(s) => Notice::Message(
            Kind::ShipmentDispatched,
            Facts {
                tracking: Some(s.tracking_number.clone()),
                carrier: Some(s.carrier.clone()),
                ..Facts::default()
            },
        ),
        Event::ShipmentDelivered(s) => Notice::Message(
            Kind::ShipmentDelivered,
            Facts {
                tracking: Some(s.tracking_number.clone()),
                carrier: Some(s.carrier.clone()),
                ..Facts::default()
            },
        ),
        // A return's card refund: once the processor has it.
        Event::RefundIssued(r) if r.return_id.is_some() => Notice::Message(
            Kind::ReturnRefunded,
            Facts {
                return_id: r.return_id.map(|id| id.to_string()),
                refund_method: Some("card".to_owned()),
                ..Facts::money(&r.amount)
            },
        ),
        Event::RefundIssued(r) => Notice::Message(Kind::RefundIssued, Facts::money(&r.amount)),
        // Money given back at the till: the return's acceptance is its
        // refund (a card's waits for its RefundIssued above).
        Event::ReturnAccepted(a) if a.tender.is_none() => Notice::Message(
            Kind::ReturnRefunded,
            Facts {
                return_id: Some(a.return_id.to_string()),
                refund_method: Some(a.refund.method().to_owned()),
                ..Facts::money(&a.amount)
            },
        ),
        _ => Notice::None,
    }
}

/// Whether `env` is recent enough to tell a customer about at `now`
/// (`max_age` `None`: always). A first start on a long history, or a replay
/// of an old one, records the old orders' messages as `stale`, never sends
/// them.
pub fn fresh(
    env: &Envelope,
    now: time::OffsetDateTime,
    max_age: Option<std::time::Duration>,
) -> bool {
    max_age.is_none_or(|max| now - env.occurred_at <= max)
}

/// The SQL test, over a message `m` and its order's contact `c`, of a
/// message that has no one to go to: an e-mail of an order without an
/// address, or a webhook message of an order with neither an address nor a
/// customer. Such a message is `skipped`, never sent.
pub const UNADDRESSED: &str =
    "(c.email IS NULL AND (m.channel = 'email' OR c.customer_id IS NULL))";

/// The channels a message goes out on.
pub const EMAIL: &str = "email";
/// See [`EMAIL`].
pub const WEBHOOK: &str = "webhook";

/// The projector's step.
#[derive(Debug)]
pub(crate) struct NoticeStep {
    pub(crate) pg: Pg,
    /// `[notify] webhook_url` is set: every message also goes there.
    pub(crate) webhook: bool,
    /// `[notify] max_event_age_secs` (`None`: no limit).
    pub(crate) max_age: Option<std::time::Duration>,
}

impl Step for NoticeStep {
    fn pg(&self) -> &Pg {
        &self.pg
    }

    async fn handle_in(&self, tx: &Tx<'_>, events: &[&Envelope]) -> Result<(), StepError> {
        let now = time::OffsetDateTime::from(o2c_runtime::clock::wall());
        let mut contacts: Vec<Contact> = Vec::new();
        let (mut orders, mut kinds, mut channels, mut event_ids, mut facts) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut refs = Vec::new();
        let mut states = Vec::new();
        for env in events {
            match notice(env) {
                Notice::Contact(c) => contacts.push(c),
                Notice::Message(kind, f) => {
                    let json = serde_json::to_string(&f).map_err(|e| StepError::Poison {
                        code: "bad_facts",
                        detail: e.to_string(),
                    })?;
                    let channels_of = if self.webhook {
                        &[EMAIL, WEBHOOK][..]
                    } else {
                        &[EMAIL][..]
                    };
                    let state = if fresh(env, now, self.max_age) {
                        "pending"
                    } else {
                        "stale"
                    };
                    for ch in channels_of {
                        states.push(state);
                        orders.push(env.payload.order_id().to_string());
                        kinds.push(kind.as_str());
                        channels.push(*ch);
                        event_ids.push(env.event_id.to_string());
                        facts.push(json.clone());
                        refs.push(f.return_id.clone().unwrap_or_default());
                    }
                }
                Notice::None => {}
            }
        }
        // Every order this batch touched, for the `skipped` marking below.
        let mut touched: Vec<String> = contacts.iter().map(|c| c.order_id.clone()).collect();
        touched.extend(orders.iter().cloned());
        if !contacts.is_empty() {
            let n = contacts.len();
            let (mut ids, mut stores, mut emails, mut customers) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            let (mut chans, mut currencies, mut totals) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            for c in contacts {
                ids.push(c.order_id);
                stores.push(c.store_id);
                emails.push(c.email);
                customers.push(c.customer_id);
                chans.push(c.channel);
                currencies.push(c.currency);
                totals.push(c.total_minor);
            }
            tx.execute(
                &format!(
                    "INSERT INTO {SCHEMA}.contacts \
                     (order_id, store_id, email, customer_id, channel, currency, total_minor) \
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
                     $5::text[], $6::text[], $7::bigint[]) \
                     ON CONFLICT (order_id) DO NOTHING"
                ),
                &[
                    &ids,
                    &stores,
                    &emails,
                    &customers,
                    &chans,
                    &currencies,
                    &totals,
                ],
            )
            .await?;
        }
        if !orders.is_empty() {
            tx.execute(
                &format!(
                    "INSERT INTO {SCHEMA}.messages \
                     (order_id, kind, channel, event_id, facts, state, ref) \
                     SELECT o, k, c, e, f::jsonb, s, r FROM unnest($1::text[], $2::text[], \
                     $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) \
                     AS m(o, k, c, e, f, s, r) \
                     ON CONFLICT (order_id, kind, channel, ref) DO NOTHING"
                ),
                &[
                    &orders, &kinds, &channels, &event_ids, &facts, &states, &refs,
                ],
            )
            .await?;
        }
        if !touched.is_empty() {
            // Whichever came first, the contact or the message: once both
            // are known, a message with no one to go to is skipped here, so
            // the sender never looks at it.
            tx.execute(
                &format!(
                    "UPDATE {SCHEMA}.messages m SET state = 'skipped', \
                     last_error = 'the order names no one to tell' \
                     FROM {SCHEMA}.contacts c WHERE c.order_id = m.order_id \
                     AND m.order_id = ANY($1) AND m.state = 'pending' AND {UNADDRESSED}"
                ),
                &[&touched],
            )
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::envelope as env;
    use o2c_protocol::event::{OrderCancelled, PaymentCaptured, PaymentFailed, RefundIssued};
    use o2c_protocol::{Currency, OrderId};

    fn eur(minor: i64) -> Money {
        Money::new(minor, Currency::from_code("EUR").expect("EUR"))
    }

    #[test]
    fn each_customer_event_calls_for_its_message() {
        let order = OrderId::from_parts(7, [7; 10]);
        let captured = env(
            1,
            1,
            Event::PaymentCaptured(PaymentCaptured {
                order_id: order,
                amount: eur(1250),
                psp_reference: "psp-1".into(),
            }),
        );
        assert_eq!(
            notice(&captured),
            Notice::Message(
                Kind::OrderConfirmed,
                Facts {
                    amount_minor: Some(1250),
                    currency: Some("EUR".into()),
                    ..Facts::default()
                }
            )
        );
        let declined = env(
            2,
            2,
            Event::OrderCancelled(OrderCancelled {
                order_id: order,
                reason: "payment_declined".into(),
            }),
        );
        let Notice::Message(Kind::OrderCancelled, f) = notice(&declined) else {
            panic!("a cancellation notice");
        };
        assert_eq!(f.reason.as_deref(), Some("payment_declined"));
        let refund = env(
            3,
            3,
            Event::RefundIssued(RefundIssued {
                return_id: None,
                order_id: order,
                amount: eur(1250),
                psp_reference: "r-1".into(),
            }),
        );
        assert!(matches!(
            notice(&refund),
            Notice::Message(Kind::RefundIssued, _)
        ));
        // The failure itself says nothing: its cancellation does.
        let failed = env(
            4,
            4,
            Event::PaymentFailed(PaymentFailed {
                order_id: order,
                reason: "declined".into(),
            }),
        );
        assert_eq!(notice(&failed), Notice::None);
    }

    #[test]
    fn only_recent_events_are_told() {
        let order = OrderId::from_parts(7, [7; 10]);
        let e = env(
            1,
            0,
            Event::OrderCancelled(OrderCancelled {
                order_id: order,
                reason: "store_void".into(),
            }),
        );
        let day = std::time::Duration::from_secs(86_400);
        assert!(fresh(&e, e.occurred_at + day, Some(day)));
        assert!(!fresh(
            &e,
            e.occurred_at + day + time::Duration::SECOND,
            Some(day)
        ));
        assert!(fresh(&e, e.occurred_at + day * 30, None));
    }

    #[test]
    fn kinds_round_trip_their_names() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Kind::parse("unsend"), None);
    }
}
