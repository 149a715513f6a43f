//! Proptest round-trips for every wire type, and "no panic on any bytes"
//! for every decoder.

use o2c_protocol::event::*;
use o2c_protocol::frame::encode_raw_batch;
use o2c_protocol::*;
use proptest::prelude::*;
use time::OffsetDateTime;

fn token(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[A-Za-z0-9_-]{{1,{max}}}")).unwrap()
}

fn text() -> impl Strategy<Value = String> {
    ".{0,40}"
}

fn currency() -> impl Strategy<Value = Currency> {
    prop::sample::select(vec!["CAD", "USD", "EUR", "JPY", "GBP", "BHD"])
        .prop_map(|c| Currency::from_code(c).unwrap())
}

fn money() -> impl Strategy<Value = Money> {
    (any::<i64>(), currency()).prop_map(|(m, c)| Money::new(m, c))
}

fn uuid_parts() -> impl Strategy<Value = (u64, [u8; 10])> {
    (0u64..(1 << 48), any::<[u8; 10]>())
}

fn order_id() -> impl Strategy<Value = OrderId> {
    uuid_parts().prop_map(|(t, r)| OrderId::from_parts(t, r))
}

fn event_id() -> impl Strategy<Value = EventId> {
    uuid_parts().prop_map(|(t, r)| EventId::from_parts(t, r))
}

fn seq() -> impl Strategy<Value = Seq> {
    (1u64..).prop_map(|n| Seq::new(n).unwrap())
}

fn timestamp() -> impl Strategy<Value = OffsetDateTime> {
    // Whole seconds plus nanos, within years 1970..9999.
    (0i64..253_402_300_799, 0u32..1_000_000_000).prop_map(|(s, n)| {
        OffsetDateTime::from_unix_timestamp(s).unwrap() + time::Duration::nanoseconds(n.into())
    })
}

fn payment() -> impl Strategy<Value = Payment> {
    prop_oneof![
        (money(), text(), text(), text(), any::<bool>()).prop_map(
            |(amount, token, brand, last4, on)| {
                Payment::Card {
                    amount,
                    token,
                    brand,
                    last4,
                    authorization: if on {
                        CardAuthorization::Online
                    } else {
                        CardAuthorization::Offline
                    },
                }
            }
        ),
        money().prop_map(|amount| Payment::Cash { amount }),
        (money(), text()).prop_map(|(amount, token)| Payment::GiftCard { amount, token }),
    ]
}

fn fulfillment() -> impl Strategy<Value = Fulfillment> {
    prop_oneof![
        Just(Fulfillment::CarryOut {}),
        (
            text(),
            text(),
            proptest::option::of(text()),
            text(),
            proptest::option::of(text()),
            text(),
            text()
        )
            .prop_map(|(name, line1, line2, city, region, postal_code, country)| {
                Fulfillment::ShipToHome {
                    address: Address {
                        name,
                        line1,
                        line2,
                        city,
                        region,
                        postal_code,
                        country,
                    },
                }
            }),
    ]
}

prop_compose! {
    fn order()(
        order_id in order_id(),
        store in token(64),
        terminal in token(64),
        currency in currency(),
        lines in prop::collection::vec((text(), any::<i64>(), money()), 0..4),
        payments in prop::collection::vec(payment(), 0..3),
        fulfillment in fulfillment(),
        customer in proptest::option::of((proptest::option::of(text()), proptest::option::of(text()))),
        captured_at in timestamp(),
        catalog_version in proptest::option::of(any::<u64>()),
        stock_check in proptest::option::of(prop_oneof![Just(StockCheck::Verified), Just(StockCheck::Unverified)]),
        channel in proptest::option::of(prop_oneof![Just(SalesChannel::Pos), Just(SalesChannel::Web), Just(SalesChannel::Mobile)]),
        customer_id in proptest::option::of(token(64)),
    ) -> Order {
        Order {
            order_id,
            store_id: StoreId::new(store).unwrap(),
            terminal_id: TerminalId::new(terminal).unwrap(),
            currency,
            lines: lines.into_iter().map(|(sku, quantity, unit_price)| OrderLine { sku, quantity, unit_price, category: None }).collect(),
            payments,
            fulfillment,
            customer: customer.map(|(email, phone)| Customer { email, phone }),
            captured_at,
            catalog_version,
            stock_check,
            channel,
            customer_id: customer_id.map(|c| CustomerId::new(c).unwrap()),
        }
    }
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        order().prop_map(|o| Event::OrderCreated(Box::new(o))),
        (order_id(), text()).prop_map(|(order_id, reason)| Event::OrderCancelled(OrderCancelled {
            order_id,
            reason
        })),
        (order_id(), money(), text()).prop_map(|(order_id, amount, psp_reference)| {
            Event::PaymentCaptured(PaymentCaptured {
                order_id,
                amount,
                psp_reference,
            })
        }),
        (order_id(), text()).prop_map(|(order_id, reason)| Event::PaymentFailed(PaymentFailed {
            order_id,
            reason
        })),
        (
            order_id(),
            prop::collection::vec((text(), any::<i64>(), text()), 0..3)
        )
            .prop_map(|(order_id, r)| {
                Event::InventoryConfirmed(InventoryConfirmed {
                    order_id,
                    reservations: r
                        .into_iter()
                        .map(|(sku, quantity, warehouse)| Reservation {
                            sku,
                            quantity,
                            warehouse,
                        })
                        .collect(),
                })
            }),
        (order_id(), text()).prop_map(|(order_id, reason)| Event::InventoryReleased(
            InventoryReleased { order_id, reason }
        )),
        (order_id(), text()).prop_map(|(order_id, shipment_id)| Event::ShipmentScheduled(
            ShipmentScheduled {
                order_id,
                shipment_id
            }
        )),
        (order_id(), text(), text(), text()).prop_map(
            |(order_id, shipment_id, carrier, tracking_number)| {
                Event::ShipmentDispatched(ShipmentDispatched {
                    order_id,
                    shipment_id,
                    carrier,
                    tracking_number,
                })
            }
        ),
        (order_id(), text(), text(), text()).prop_map(
            |(order_id, shipment_id, carrier, tracking_number)| {
                Event::ShipmentDelivered(ShipmentDelivered {
                    order_id,
                    shipment_id,
                    carrier,
                    tracking_number,
                })
            }
        ),
        (order_id(), text(), text()).prop_map(|(order_id, shipment_id, reason)| {
            Event::ShipmentCancelled(ShipmentCancelled {
                order_id,
                shipment_id,
                reason,
            })
        }),
        order_id().prop_map(|order_id| Event::OrderCompleted(OrderCompleted { order_id })),
        (order_id(), money(), text()).prop_map(|(order_id, amount, psp_reference)| {
            Event::RefundIssued(RefundIssued {
                return_id: None,
                order_id,
                amount,
                psp_reference,
            })
        }),
    ]
}

prop_compose! {
    fn envelope()(
        event_id in event_id(),
        store in token(64),
        agent in token(64),
        seq in proptest::option::of(seq()),
        occurred_at in timestamp(),
        trace in proptest::option::of((1u128.., 1u64..)),
        payload in event(),
    ) -> Envelope {
        Envelope {
            event_id,
            schema_version: SCHEMA_VERSION,
            store_id: StoreId::new(store).unwrap(),
            agent_id: AgentId::new(agent).unwrap(),
            seq,
            occurred_at,
            traceparent: trace.map(|(t, s)| Traceparent::from_ids(t, s).unwrap()),
            payload,
        }
    }
}

fn rejection() -> impl Strategy<Value = Rejection> {
    (seq(), proptest::option::of(event_id()), text(), text()).prop_map(
        |(seq, event_id, code, reason)| Rejection {
            seq,
            event_id,
            code,
            reason,
        },
    )
}

fn cloud_status() -> impl Strategy<Value = CloudStatus> {
    prop::sample::select(CloudStatus::ALL.to_vec())
}

proptest! {
    #[test]
    fn envelope_round_trips(e in envelope()) {
        let bytes = e.encode().unwrap();
        prop_assert_eq!(Envelope::decode(&bytes).unwrap(), e);
    }

    #[test]
    fn batch_round_trips(agent in token(64), events in prop::collection::vec(envelope(), 0..4)) {
        let b = Batch { agent_id: AgentId::new(agent).unwrap(), events };
        let bytes = b.encode().unwrap();
        prop_assert_eq!(&Batch::decode(&bytes).unwrap(), &b);
        // The agent's zero-copy encoder produces the same frame.
        let encoded: Vec<Vec<u8>> = b.events.iter().map(|e| e.encode().unwrap()).collect();
        let raw = encode_raw_batch(&b.agent_id, encoded.iter().map(Vec::as_slice)).unwrap();
        prop_assert_eq!(&Batch::decode(&raw).unwrap(), &b);
        // The ingest's raw view keeps each envelope's bytes exactly.
        let rb = RawBatch::decode(&raw).unwrap();
        for (r, e) in rb.events.iter().zip(&encoded) {
            prop_assert_eq!(r.get().as_bytes(), e.as_slice());
        }
    }

    #[test]
    fn ack_round_trips(through in seq(), rejected in prop::collection::vec(rejection(), 0..4)) {
        let a = Ack { through_seq: through, rejected };
        prop_assert_eq!(Ack::decode(&a.encode().unwrap()).unwrap(), a);
    }

    #[test]
    fn status_round_trips(
        order_id in order_id(), status in cloud_status(), reason in proptest::option::of(text()),
        event_id in event_id(), occurred_at in timestamp(),
    ) {
        let s = StatusUpdate { order_id, status, reason, event_id, occurred_at, seq: None, ret: None };
        prop_assert_eq!(StatusUpdate::decode(&s.encode().unwrap()).unwrap(), s.clone());
        // A single object is also a valid status message.
        prop_assert_eq!(StatusUpdate::decode_many(&s.encode().unwrap()).unwrap(), vec![s]);
    }

    #[test]
    fn status_messages_round_trip(
        updates in prop::collection::vec(
            (order_id(), cloud_status(), proptest::option::of(text()), event_id(), timestamp(), any::<u64>()),
            1..6,
        ),
    ) {
        let updates: Vec<StatusUpdate> = updates
            .into_iter()
            .map(|(order_id, status, reason, event_id, occurred_at, seq)| StatusUpdate {
                ret: None,
                order_id, status, reason, event_id, occurred_at, seq: Some(seq),
            })
            .collect();
        let bytes = StatusUpdate::encode_many(&updates).unwrap();
        // The JSON carries no seq: the same bytes as without any.
        let unsequenced: Vec<StatusUpdate> =
            updates.iter().cloned().map(|u| StatusUpdate { seq: None, ..u }).collect();
        prop_assert_eq!(&StatusUpdate::encode_many(&unsequenced).unwrap(), &bytes);
        prop_assert_eq!(&StatusUpdate::decode_many(&bytes).unwrap(), &unsequenced);
        // With the message's seq property, every update comes back whole.
        let property = StatusUpdate::seqs_property(&updates).unwrap();
        let mut each = StatusUpdate::decode_each(&bytes).unwrap();
        StatusUpdate::set_seqs(&mut each, &property).unwrap();
        let back: Vec<StatusUpdate> = each.into_iter().map(Result::unwrap).collect();
        prop_assert_eq!(back, updates);
    }

    #[test]
    fn ids_round_trip(s in token(64), a in token(64), t in token(64), o in order_id(), e in event_id(), q in seq()) {
        let json = serde_json::to_string(&(StoreId::new(&*s).unwrap(), AgentId::new(&*a).unwrap(),
            TerminalId::new(&*t).unwrap(), o, e, q)).unwrap();
        let back: (StoreId, AgentId, TerminalId, OrderId, EventId, Seq) = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, (StoreId::new(s).unwrap(), AgentId::new(a).unwrap(), TerminalId::new(t).unwrap(), o, e, q));
    }

    #[test]
    fn money_round_trips(m in money()) {
        prop_assert_eq!(serde_json::from_str::<Money>(&serde_json::to_string(&m).unwrap()).unwrap(), m);
    }

    #[test]
    fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Envelope::decode(&bytes);
        let _ = Batch::decode(&bytes);
        let _ = RawBatch::decode(&bytes);
        let _ = Ack::decode(&bytes);
        let _ = StatusUpdate::decode(&bytes);
        let _ = StatusUpdate::decode_many(&bytes);
    }

    #[test]
    fn validate_never_panics(o in order()) {
        let _ = o.validate();
    }
}

#[test]
fn a_status_message_is_one_update_or_a_non_empty_array() {
    let one = br#"{"order_id":"01890a5d-ac96-774b-bcce-b302099a8057","status":"paid",
        "event_id":"01890a5d-ac96-774b-bcce-b302099a8058","occurred_at":"2026-11-24T10:00:00Z"}"#;
    assert_eq!(StatusUpdate::decode_many(one).unwrap().len(), 1);
    let mut two = b" \n[".to_vec();
    two.extend_from_slice(one);
    two.push(b',');
    two.extend_from_slice(one);
    two.push(b']');
    assert_eq!(StatusUpdate::decode_many(&two).unwrap().len(), 2);
    for bad in [&b"[]"[..], b" [ ] ", b"[{}]", b"[1]", b"", b"null"] {
        assert!(
            matches!(
                StatusUpdate::decode_many(bad),
                Err(FrameError::Malformed(_))
            ),
            "{:?} decoded",
            String::from_utf8_lossy(bad)
        );
    }
    // One update a newer cloud added a status for does not take the others
    // with it.
    let mut mixed = b"[".to_vec();
    mixed.extend_from_slice(one);
    mixed.extend_from_slice(
        br#",{"order_id":"01890a5d-ac96-774b-bcce-b302099a8057","status":"teleported","#,
    );
    mixed.extend_from_slice(br#""event_id":"01890a5d-ac96-774b-bcce-b302099a8059","occurred_at":"2026-11-24T10:00:01Z"},"#);
    mixed.extend_from_slice(one);
    mixed.push(b']');
    assert!(
        StatusUpdate::decode_many(&mixed).is_err(),
        "strict: all or nothing"
    );
    let each = StatusUpdate::decode_each(&mixed).unwrap();
    assert_eq!(
        each.iter().map(Result::is_ok).collect::<Vec<_>>(),
        [true, false, true]
    );
    let huge = vec![b' '; frame::MAX_FRAME_BYTES + 1];
    assert!(matches!(
        StatusUpdate::decode_many(&huge),
        Err(FrameError::TooLarge(_))
    ));
}
