use o2c_protocol::frame::encode_raw_batch;
use o2c_protocol::*;
use time::macros::datetime;

use super::*;

fn cad() -> Currency {
    Currency::from_code("CAD").unwrap()
}

const TOPIC: &str = "o2c/v1/stores/S001/agents/S001-A1/events";

fn envelope(seq: u64, store: &str) -> Envelope {
    let order = Order {
        order_id: OrderId::from_parts(1_700_000_000_000 + seq, [seq as u8; 10]),
        store_id: StoreId::new(store).unwrap(),
        terminal_id: TerminalId::new("T1").unwrap(),
        currency: cad(),
        lines: vec![OrderLine {
            sku: "SKU-1".into(),
            quantity: 1,
            unit_price: Money::new(500, cad()),
            category: None,
        }],
        payments: vec![Payment::Cash {
            amount: Money::new(500, cad()),
        }],
        fulfillment: Fulfillment::CarryOut {},
        customer: None,
        captured_at: datetime!(2026-11-24 10:00:00 UTC),
        catalog_version: None,
        stock_check: None,
        channel: None,
        customer_id: None,
    };
    Envelope {
        event_id: EventId::from_parts(1_700_000_000_000 + seq, [(seq as u8).wrapping_add(1); 10]),
        schema_version: SCHEMA_VERSION,
        store_id: StoreId::new(store).unwrap(),
        agent_id: AgentId::new("S001-A1").unwrap(),
        seq: Some(Seq::new(seq).unwrap()),
        occurred_at: datetime!(2026-11-24 10:00:00 UTC),
        traceparent: Traceparent::from_ids(1, 2).ok(),
        payload: Event::OrderCreated(Box::new(order)),
    }
}

fn frame(agent: &str, events: &[Vec<u8>]) -> Vec<u8> {
    encode_raw_batch(
        &AgentId::new(agent).unwrap(),
        events.iter().map(Vec::as_slice),
    )
    .unwrap()
}

fn enc(e: &Envelope) -> Vec<u8> {
    e.encode().unwrap()
}

fn topics() -> KafkaTopics {
    KafkaTopics::new("t.").unwrap()
}

fn batch(v: Verdict) -> Plan {
    match v {
        Verdict::Batch(p) => p,
        Verdict::Refuse(d) => panic!("refused: {} {}", d.reason, d.detail),
    }
}

fn refused(v: Verdict) -> DeadLetter {
    match v {
        Verdict::Refuse(d) => d,
        Verdict::Batch(p) => panic!("accepted: {p:?}"),
    }
}

#[test]
fn valid_batch_is_produced_unchanged_with_headers() {
    let events = [enc(&envelope(1, "S001")), enc(&envelope(2, "S001"))];
    let p = batch(plan(
        &Ledger::default(),
        &topics(),
        TOPIC,
        &frame("S001-A1", &events),
    ));
    assert_eq!(p.produce.len(), 2);
    assert_eq!(p.produce[0].value, events[0], "bytes forwarded unchanged");
    assert_eq!(p.produce[0].topic, "t.orders.created");
    assert_eq!(
        p.history_topic, "t.orders.events",
        "and every one to the history"
    );
    let names: Vec<&str> = p.produce[0].headers.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        names,
        [
            "event_id",
            "event_type",
            "schema_version",
            "store_id",
            "agent_id",
            "seq",
            "source",
            "traceparent"
        ]
    );
    assert_eq!(p.ack.through_seq.get(), 2);
    assert!(p.ack.rejected.is_empty());
}

#[test]
fn identity_mismatch_refuses_the_whole_frame() {
    // The envelope claims store S002 on S001's topic.
    let events = [enc(&envelope(1, "S001")), enc(&envelope(2, "S002"))];
    let d = refused(plan(
        &Ledger::default(),
        &topics(),
        TOPIC,
        &frame("S001-A1", &events),
    ));
    assert_eq!(d.reason, "identity_mismatch");
    // The frame's agent differs from the topic's.
    let d = refused(plan(
        &Ledger::default(),
        &topics(),
        TOPIC,
        &frame("S009-A1", &events[..1]),
    ));
    assert_eq!(d.reason, "identity_mismatch");
}

#[test]
fn garbage_goes_to_the_dlq_with_raw_bytes() {
    let d = refused(plan(
        &Ledger::default(),
        &topics(),
        TOPIC,
        b"\x00\xffnot json",
    ));
    assert_eq!(d.reason, "malformed_frame");
    assert_eq!(d.value, b"\x00\xffnot json");
    let d = refused(plan(
        &Ledger::default(),
        &topics(),
        "o2c/v1/stores/S1/bad",
        b"{}",
    ));
    assert_eq!(d.reason, "bad_topic");
}

#[test]
fn bad_events_are_rejected_and_the_rest_flow() {
    let mut v: serde_json::Value = serde_json::from_slice(&enc(&envelope(2, "S001"))).unwrap();
    v["schema_version"] = 7.into();
    let wrong_version = serde_json::to_vec(&v).unwrap();
    let mut invalid = envelope(3, "S001");
    if let Event::OrderCreated(o) = &mut invalid.payload {
        o.lines[0].quantity = 0;
    }
    let events = [
        enc(&envelope(1, "S001")),
        wrong_version,
        enc(&invalid),
        enc(&envelope(4, "S001")),
    ];
    let p = batch(plan(
        &Ledger::default(),
        &topics(),
        TOPIC,
        &frame("S001-A1", &events),
    ));
    assert_eq!(p.produce.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 4]);
    let rej: Vec<(u64, &str)> = p
        .ack
        .rejected
        .iter()
        .map(|r| (r.seq.get(), r.code.as_str()))
        .collect();
    assert_eq!(
        rej,
        [(2, "unsupported_schema_version"), (3, "invalid_event")]
    );
    assert_eq!(p.dead.len(), 2);
    assert!(
        p.dead[1].detail.contains("payload.lines[0].quantity"),
        "{}",
        p.dead[1].detail
    );
    assert_eq!(p.ack.through_seq.get(), 4);
}

#[test]
fn resends_are_acked_without_producing_and_conflicts_are_caught() {
    let events = [enc(&envelope(1, "S001")), enc(&envelope(2, "S001"))];
    let mut ledger = Ledger::default();
    let p = batch(plan(&ledger, &topics(), TOPIC, &frame("S001-A1", &events)));
    ledger.commit(&p);
    assert_eq!(ledger.hwm(), 2);
    let again = batch(plan(&ledger, &topics(), TOPIC, &frame("S001-A1", &events)));
    assert!(again.produce.is_empty());
    assert_eq!(again.duplicates, 2);
    assert_eq!(again.ack.through_seq.get(), 2);
    // Same seq 2, another event id: a conflict.
    let mut other = envelope(2, "S001");
    other.event_id = EventId::from_parts(1, [9; 10]);
    let p = batch(plan(
        &ledger,
        &topics(),
        TOPIC,
        &frame("S001-A1", &[enc(&other)]),
    ));
    assert_eq!(p.ack.rejected[0].code, "seq_conflict");
    assert_eq!(p.dead[0].reason, "seq_conflict");
}

#[test]
fn seq_gaps_and_store_only_types_are_refused() {
    let events = [enc(&envelope(1, "S001")), enc(&envelope(3, "S001"))];
    let d = refused(plan(
        &Ledger::default(),
        &topics(),
        TOPIC,
        &frame("S001-A1", &events),
    ));
    assert_eq!(d.reason, "malformed_frame");
    let mut cloud = envelope(1, "S001");
    cloud.payload = Event::OrderCompleted(o2c_protocol::event::OrderCompleted {
        order_id: OrderId::from_parts(1, [1; 10]),
    });
    let p = batch(plan(
        &Ledger::default(),
        &topics(),
        TOPIC,
        &frame("S001-A1", &[enc(&cloud)]),
    ));
    assert_eq!(p.ack.rejected[0].code, "invalid_event");
}

#[test]
fn seqs_below_the_window_are_produced_again_not_guessed() {
    // The ledger only remembers the last LEDGER_WINDOW ids; an older seq
    // (e.g. from an agent restored from an old backup) must be written, not
    // acked as a presumed duplicate.
    let mut ledger = Ledger::default();
    let n = LEDGER_WINDOW as u64 + 10;
    let events: Vec<Vec<u8>> = (1..=n).map(|s| enc(&envelope(s, "S001"))).collect();
    for chunk in events.chunks(1000) {
        let p = batch(plan(&ledger, &topics(), TOPIC, &frame("S001-A1", chunk)));
        ledger.commit(&p);
    }
    assert_eq!(ledger.hwm(), n);
    let old = batch(plan(
        &ledger,
        &topics(),
        TOPIC,
        &frame("S001-A1", &events[..2]),
    ));
    assert_eq!(old.produce.len(), 2, "outside the window: produced again");
    assert_eq!(old.duplicates, 0);
    let recent = batch(plan(
        &ledger,
        &topics(),
        TOPIC,
        &frame("S001-A1", &events[events.len() - 2..]),
    ));
    assert_eq!(recent.duplicates, 2, "inside the window: known duplicates");
}

#[test]
fn card_numbers_never_reach_a_dead_letter_or_the_agent() {
    const PAN: &str = "4111111111111111";
    // In a field serde cannot read: its error quotes the value.
    let mut v: serde_json::Value = serde_json::from_slice(&enc(&envelope(1, "S001"))).unwrap();
    v["payload"]["lines"][0]["quantity"] = PAN.parse::<u64>().unwrap().into();
    v["payload"]["lines"][0]["sku"] = format!("{PAN} 123").into();
    let unreadable = serde_json::to_vec(&v).unwrap();
    // In a field that decodes, and is refused as card data.
    let mut card = envelope(2, "S001");
    if let Event::OrderCreated(o) = &mut card.payload {
        o.lines[0].sku = format!("{PAN} 123");
    }
    // In a field this cloud does not know (a newer agent's): readers skip
    // it, so the ingest must look.
    let mut v: serde_json::Value = serde_json::from_slice(&enc(&envelope(3, "S001"))).unwrap();
    v["payload"]["lines"][0]["serial"] = PAN.into();
    let unknown = serde_json::to_vec(&v).unwrap();
    // And a field it does not know without card data passes.
    let mut v: serde_json::Value = serde_json::from_slice(&enc(&envelope(4, "S001"))).unwrap();
    v["payload"]["loyalty_id"] = "L-42".into();
    let additive = serde_json::to_vec(&v).unwrap();
    let p = batch(plan(
        &Ledger::default(),
        &topics(),
        TOPIC,
        &frame(
            "S001-A1",
            &[unreadable, enc(&card), unknown, additive.clone()],
        ),
    ));
    let codes: Vec<&str> = p.ack.rejected.iter().map(|r| r.code.as_str()).collect();
    assert_eq!(codes[1], "card_data_rejected", "{codes:?}");
    assert_eq!(codes[2], "card_data_rejected", "{codes:?}");
    assert_eq!(codes.len(), 3, "{codes:?}");
    assert_eq!(p.produce.len(), 1);
    assert_eq!(
        p.produce[0].value, additive,
        "forwarded unchanged, new field and all"
    );
    assert_eq!(p.dead.len(), 3);
    for d in &p.dead {
        let value = String::from_utf8_lossy(&d.value);
        assert!(!value.contains("4111"), "{value}");
        assert!(value.contains("[redacted]"), "{value}");
        assert!(!d.detail.contains("4111"), "{}", d.detail);
    }
    for r in &p.ack.rejected {
        assert!(!r.reason.contains("4111"), "{}", r.reason);
    }

    // A refused frame's copy is masked too.
    let other = enc(&envelope(1, "S002"));
    let mut raw = frame("S001-A1", &[other]);
    raw.extend_from_slice(format!(" {PAN}").as_bytes());
    let d = refused(plan(&Ledger::default(), &topics(), TOPIC, &raw));
    assert!(!String::from_utf8_lossy(&d.value).contains("4111"));
}

#[test]
fn the_last_possible_seq_is_refused_not_wrapped() {
    let mut v: serde_json::Value = serde_json::from_slice(&enc(&envelope(1, "S001"))).unwrap();
    v["seq"] = u64::MAX.into();
    let d = refused(plan(
        &Ledger::default(),
        &topics(),
        TOPIC,
        &frame("S001-A1", &[serde_json::to_vec(&v).unwrap()]),
    ));
    assert_eq!(d.reason, "malformed_frame", "{}", d.detail);
}

#[test]
fn an_oversized_frame_is_refused_with_a_bounded_dead_letter() {
    let big = vec![b'x'; frame::MAX_FRAME_BYTES + 10];
    let d = refused(plan(&Ledger::default(), &topics(), TOPIC, &big));
    assert_eq!(d.value.len(), DEAD_FRAME_MAX_BYTES);
    assert!(d.detail.contains("bytes are kept"), "{}", d.detail);
}

/// A frame refused whole is nacked by the range it names, and dead-lettered
/// once: a resend of the same frame is only nacked again.
#[test]
fn a_refused_frame_is_nacked_and_dead_lettered_once() {
    let mut ledger = Ledger::default();
    let raw = b"{\"agent_id\":\"S001-A1\",\"events\":[{\"seq\":".to_vec();
    let first = plan_refusal(
        &ledger,
        TOPIC,
        Some("7-9"),
        &raw,
        refused(plan(&ledger, &topics(), TOPIC, &raw)),
    );
    let dead = first.dead.clone().expect("dead-lettered the first time");
    assert_eq!(dead.reason, "malformed_frame");
    assert_eq!(dead.frame.as_deref(), Some("7-9"));
    let (acks, nack) = first.nack.clone().expect("nacked");
    assert_eq!(acks, "o2c/v1/stores/S001/agents/S001-A1/acks");
    assert_eq!((nack.first_seq.get(), nack.last_seq.get()), (7, 9));
    assert_eq!(nack.code, "malformed_frame");
    // Not yet durable: a resend now is dead-lettered (at least once).
    let early = plan_refusal(&ledger, TOPIC, Some("7-9"), &raw, dead.clone());
    assert!(early.dead.is_some());
    ledger.commit_refusal(&first);
    let again = plan_refusal(&ledger, TOPIC, Some("7-9"), &raw, dead.clone());
    assert_eq!(again.dead, None, "a resend makes no second dead letter");
    assert_eq!(again.nack, first.nack, "but is nacked again");
    // Another frame (other bytes or another range) is its own refusal.
    let other = plan_refusal(&ledger, TOPIC, Some("7-7"), &raw, dead.clone());
    assert!(other.dead.is_some());
    // An old agent names no frame: dead-lettered once, never nacked.
    let old = plan_refusal(&ledger, TOPIC, None, &raw, dead.clone());
    assert_eq!(old.nack, None);
    ledger.commit_refusal(&old);
    assert_eq!(
        plan_refusal(&ledger, TOPIC, None, &raw, dead.clone()).dead,
        None
    );
    // A frame property that does not parse gets no nack, and no header.
    let junk = plan_refusal(&ledger, TOPIC, Some("9-7"), &raw, dead.clone());
    assert_eq!(junk.nack, None);
    assert_eq!(junk.dead.and_then(|d| d.frame), None);
    // No nack to a topic that names no agent.
    let bad = "o2c/v1/nowhere";
    let d = refused(plan(&ledger, &topics(), bad, &raw));
    assert_eq!(plan_refusal(&ledger, bad, Some("7-9"), &raw, d).nack, None);
}

#[test]
fn the_frame_property_is_found_among_user_properties() {
    let props = vec![
        ("traceparent".to_owned(), "x".to_owned()),
        (frame::FRAME_PROPERTY.to_owned(), "1-5".to_owned()),
    ];
    assert_eq!(frame_property(&props), Some("1-5"));
    assert_eq!(frame_property(&props[..1]), None);
}

fn manifest(seq: u64, store: &str, timezone: &str) -> Vec<u8> {
    use o2c_protocol::day::{
        BusinessDate, DayClosed, DayManifest, DayTally, EventDigest, SeqRange,
    };
    DayClosed::new(
        EventId::from_parts(1_700_000_000_900 + seq, [9; 10]),
        StoreId::new(store).unwrap(),
        AgentId::new("S001-A1").unwrap(),
        Seq::new(seq).unwrap(),
        datetime!(2026-11-25 03:00:00 UTC),
        DayManifest {
            business_date: BusinessDate::parse("2026-11-24").unwrap(),
            timezone: timezone.into(),
            closes_at: "03:00".into(),
            opened_at: datetime!(2026-11-24 03:00:00 UTC),
            closed_at: datetime!(2026-11-25 03:00:00 UTC),
            range: Some(SeqRange {
                first: Seq::new(1).unwrap(),
                last: Seq::new(seq - 1).unwrap(),
            }),
            tally: DayTally::default(),
            event_ids_sha256: EventDigest::default().finish(),
        },
    )
    .encode()
    .unwrap()
}

#[test]
fn a_day_manifest_goes_to_the_days_topic_keyed_by_store_and_not_to_the_history() {
    let events = [
        enc(&envelope(1, "S001")),
        manifest(2, "S001", "Europe/Paris"),
    ];
    let p = batch(plan(
        &Ledger::default(),
        &topics(),
        TOPIC,
        &frame("S001-A1", &events),
    ));
    assert_eq!(p.produce.len(), 2);
    assert!(p.produce[0].history);
    let m = &p.produce[1];
    assert_eq!(
        (m.topic.as_str(), m.key.as_str()),
        ("t.stores.days", "S001")
    );
    assert_eq!((m.event_type, m.history, m.seq), ("DayClosed", false, 2));
    assert_eq!(m.value, events[1], "the bytes as the agent sent them");
    assert!(
        m.headers
            .contains(&("business_date", "2026-11-24".to_owned()))
    );
    assert_eq!(p.ack.through_seq.get(), 2);
}

#[test]
fn a_manifest_naming_another_store_or_holding_a_card_number_is_refused() {
    let other = [manifest(2, "S002", "UTC")];
    let d = refused(plan(
        &Ledger::default(),
        &topics(),
        TOPIC,
        &frame("S001-A1", &other),
    ));
    assert_eq!(d.reason, "identity_mismatch");
    let card = [manifest(2, "S001", "4111111111111111")];
    let p = batch(plan(
        &Ledger::default(),
        &topics(),
        TOPIC,
        &frame("S001-A1", &card),
    ));
    assert!(p.produce.is_empty());
    assert_eq!(p.ack.rejected[0].code, "card_data_rejected");
    assert!(!String::from_utf8_lossy(&p.dead[0].value).contains("4111111111111111"));
}
