//! The order service's returns: holding a `ReturnRequested` until its
//! order settles, then deciding it once (pure; see the parent module).

use o2c_protocol::returns::{ReturnAccepted, ReturnRefused, assess_sale};
use o2c_protocol::{Envelope, Event};

use super::{HeldReturn, OrderState, Phase};

/// A held return that cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReturnStateError {
    /// The envelope could not be written into the state.
    #[error("return {0}: cannot keep its envelope: {1}")]
    Encode(String, String),
    /// A held envelope is not a readable `ReturnRequested`.
    #[error("held return {0}: {1}")]
    Decode(String, String),
}

/// Why a return of an order this service has no sale of is refused (an
/// order created before contract 1.7).
pub(crate) const SALE_UNKNOWN: &str = "sale_unknown";

impl OrderState {
    /// Holds the return of `env` (a `ReturnRequested`) unless it was held
    /// or decided before.
    pub fn hold_return(&mut self, env: &Envelope) -> Result<(), ReturnStateError> {
        let Event::ReturnRequested(r) = &env.payload else {
            return Ok(());
        };
        let id = r.return_id;
        if self.decided.contains(&id) || self.held.iter().any(|h| h.return_id == id) {
            return Ok(());
        }
        let bytes = env
            .encode()
            .map_err(|e| ReturnStateError::Encode(id.to_string(), e.to_string()))?;
        let cause = String::from_utf8(bytes)
            .map_err(|e| ReturnStateError::Encode(id.to_string(), e.to_string()))?;
        self.held.push(HeldReturn {
            return_id: id,
            cause,
        });
        Ok(())
    }

    /// Decides the held returns once the order has settled, in the order
    /// they came: each answer with the `ReturnRequested` envelope it
    /// answers (its store, agent and trace go on the answer). An open
    /// order keeps them held.
    pub fn settle_returns(&mut self) -> Result<Vec<(Envelope, Event)>, ReturnStateError> {
        if self.phase == Phase::Open || self.held.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(self.held.len());
        for h in std::mem::take(&mut self.held) {
            let cause = Envelope::decode(h.cause.as_bytes())
                .map_err(|e| ReturnStateError::Decode(h.return_id.to_string(), e.to_string()))?;
            let Event::ReturnRequested(r) = &cause.payload else {
                return Err(ReturnStateError::Decode(
                    h.return_id.to_string(),
                    format!("a {} envelope", cause.event_type()),
                ));
            };
            let refuse = |reason: &str, sku: Option<&str>| {
                Event::ReturnRefused(ReturnRefused {
                    order_id: r.order_id,
                    return_id: r.return_id,
                    reason: reason.to_owned(),
                    sku: sku.map(str::to_owned),
                })
            };
            let answer = match (&self.phase, &self.sale) {
                (Phase::Cancelled, _) => refuse("order_cancelled", None),
                (_, None) => refuse(SALE_UNKNOWN, None),
                (_, Some(sale)) => match assess_sale(sale, &self.returned, &r.lines, &r.refund) {
                    Ok(a) => {
                        self.returned.record(&r.lines, &a);
                        Event::ReturnAccepted(ReturnAccepted {
                            order_id: r.order_id,
                            return_id: r.return_id,
                            store_id: cause.store_id.clone(),
                            lines: r.lines.clone(),
                            amount: a.amount,
                            refund: r.refund.clone(),
                            tender: a.tender,
                        })
                    }
                    Err(refusal) => refuse(refusal.code(), refusal.sku()),
                },
            };
            self.decided.push(h.return_id);
            out.push((cause, answer));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use o2c_protocol::event::{InventoryConfirmed, OrderCancelled};
    use o2c_protocol::returns::{RefundTender, ReturnLine, ReturnRequested};
    use o2c_protocol::{
        AgentId, CardAuthorization, Currency, EventId, Money, Order, OrderId, OrderLine, Payment,
        ReturnId, Seq, StoreId, TerminalId,
    };

    fn cad(minor: i64) -> Money {
        Money::new(minor, Currency::from_code("CAD").unwrap())
    }

    fn oid() -> OrderId {
        OrderId::from_parts(1, [1; 10])
    }

    fn order() -> Order {
        Order {
            order_id: oid(),
            store_id: StoreId::new("S1").unwrap(),
            terminal_id: TerminalId::new("T1").unwrap(),
            currency: Currency::from_code("CAD").unwrap(),
            lines: vec![OrderLine {
                sku: "A".into(),
                quantity: 2,
                unit_price: cad(1000),
                category: None,
            }],
            payments: vec![Payment::Card {
                amount: cad(2000),
                token: "tok".into(),
                brand: "visa".into(),
                last4: "4242".into(),
                authorization: CardAuthorization::Online,
            }],
            fulfillment: o2c_protocol::Fulfillment::CarryOut {},
            customer: None,
            captured_at: time::OffsetDateTime::UNIX_EPOCH,
            catalog_version: None,
            stock_check: None,
            channel: None,
            customer_id: None,
        }
    }

    fn envelope(store: &str, payload: Event) -> Envelope {
        Envelope {
            event_id: EventId::from_parts(2, rand::random()),
            schema_version: o2c_protocol::SCHEMA_VERSION,
            store_id: StoreId::new(store).unwrap(),
            agent_id: AgentId::new(format!("{store}-A1")).unwrap(),
            seq: Some(Seq::FIRST),
            occurred_at: time::OffsetDateTime::UNIX_EPOCH,
            traceparent: None,
            payload,
        }
    }

    fn ret(n: u8, store: &str, quantity: i64, refund: RefundTender) -> Envelope {
        envelope(
            store,
            Event::ReturnRequested(ReturnRequested {
                order_id: oid(),
                return_id: ReturnId::from_parts(3, [n; 10]),
                terminal_id: TerminalId::new("T9").unwrap(),
                lines: vec![ReturnLine {
                    sku: "A".into(),
                    quantity,
                }],
                refund,
                reason: "damaged".into(),
            }),
        )
    }

    /// Applies `env` as the step does; the answers' events and stores.
    fn step(s: &mut OrderState, env: &Envelope) -> Vec<(String, Event)> {
        s.hold_return(env).unwrap();
        s.apply(&env.payload);
        s.settle_returns()
            .unwrap()
            .into_iter()
            .map(|(c, e)| (c.store_id.to_string(), e))
            .collect()
    }

    #[test]
    fn a_return_waits_for_its_order_then_a_second_of_the_same_line_is_refused() {
        let mut s = OrderState::default();
        // Another store's return arrives before the order: held.
        let card = RefundTender::Card {
            token: "tok".into(),
            brand: "visa".into(),
            last4: "4242".into(),
        };
        assert!(step(&mut s, &ret(1, "S2", 1, card)).is_empty());
        assert!(
            step(
                &mut s,
                &envelope("S1", Event::OrderCreated(Box::new(order())))
            )
            .is_empty()
        );
        let confirmed = Event::InventoryConfirmed(InventoryConfirmed {
            order_id: oid(),
            reservations: vec![],
        });
        let out = step(&mut s, &envelope("S1", confirmed));
        assert_eq!(s.phase, Phase::Completed);
        let [(store, Event::ReturnAccepted(a))] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(store, "S2", "the answer goes to the returning store");
        assert_eq!(
            (a.amount, a.tender, a.store_id.as_str()),
            (cad(1000), Some(0), "S2")
        );
        // Two more of A: one is left, so refused, naming the SKU.
        let out = step(&mut s, &ret(2, "S1", 2, RefundTender::Cash {}));
        assert!(
            matches!(out.as_slice(), [(_, Event::ReturnRefused(r))] if r.reason == "over_return" && r.sku.as_deref() == Some("A")),
            "{out:?}"
        );
        // A replay of a decided return answers nothing.
        assert!(step(&mut s, &ret(1, "S2", 1, RefundTender::Cash {})).is_empty());
        // The last unit, by cash of a card sale.
        let out = step(&mut s, &ret(3, "S1", 1, RefundTender::Cash {}));
        assert!(matches!(out.as_slice(), [(_, Event::ReturnAccepted(a))] if a.tender.is_none()));
    }

    #[test]
    fn a_cancelled_order_refuses_its_returns() {
        let mut s = OrderState::default();
        step(
            &mut s,
            &envelope("S1", Event::OrderCreated(Box::new(order()))),
        );
        assert!(step(&mut s, &ret(1, "S1", 1, RefundTender::Cash {})).is_empty());
        let void = Event::OrderCancelled(OrderCancelled {
            order_id: oid(),
            reason: "store_void".into(),
        });
        let out = step(&mut s, &envelope("S1", void));
        assert!(
            matches!(out.as_slice(), [(_, Event::ReturnRefused(r))] if r.reason == "order_cancelled"),
            "{out:?}"
        );
        assert!(s.held.is_empty());
    }
}
