use o2c_protocol::day::{DayManifest, SeqRange};
use o2c_protocol::{Currency, Seq};
use time::OffsetDateTime;

use super::*;

fn cad(minor: i64) -> Money {
    Money::new(minor, Currency::from_code("CAD").unwrap())
}

fn store() -> StoreId {
    StoreId::new("S001").unwrap()
}

fn agent() -> AgentId {
    AgentId::new("S001-A1").unwrap()
}

fn id(n: u64) -> EventId {
    EventId::from_parts(1_764_000_000_000 + n, [n as u8; 10])
}

fn oid(n: u64) -> OrderId {
    OrderId::from_parts(1_764_000_000_000 + n, [n as u8; 10])
}

fn date(s: &str) -> BusinessDate {
    BusinessDate::parse(s).unwrap()
}

/// Seqs 1..=3: two sales (one split) and a void of the first.
fn events() -> Vec<(u64, Seen)> {
    vec![
        (
            1,
            Seen {
                event_id: id(1),
                kind: Kind::Created {
                    order_id: oid(1),
                    total: cad(1000),
                    payments: vec![(Tender::CardOnline, cad(600)), (Tender::Cash, cad(400))],
                },
            },
        ),
        (
            2,
            Seen {
                event_id: id(2),
                kind: Kind::Created {
                    order_id: oid(2),
                    total: cad(500),
                    payments: vec![(Tender::Cash, cad(500))],
                },
            },
        ),
        (
            3,
            Seen {
                event_id: id(3),
                kind: Kind::Cancelled(oid(1)),
            },
        ),
    ]
}

/// The manifest the agent would write for `events()` (seq 4).
fn manifest(day: &str, seq: u64) -> DayClosed {
    let mut tally = DayTally::default();
    let mut digest = EventDigest::default();
    for (_, e) in events() {
        digest.add(&e.event_id);
        match e.kind {
            Kind::Created {
                total, payments, ..
            } => tally.add_sale(total, payments).unwrap(),
            Kind::Cancelled(_) => tally.add_voided(Some(cad(1000))).unwrap(),
            Kind::Other => tally.add_other(),
        }
    }
    DayClosed::new(
        id(100 + seq),
        store(),
        agent(),
        Seq::new(seq).unwrap(),
        OffsetDateTime::from_unix_timestamp(1_764_100_000).unwrap(),
        DayManifest {
            business_date: date(day),
            timezone: "UTC".into(),
            closes_at: "00:00".into(),
            opened_at: OffsetDateTime::from_unix_timestamp(1_764_000_000).unwrap(),
            closed_at: OffsetDateTime::from_unix_timestamp(1_764_086_400).unwrap(),
            range: Some(SeqRange {
                first: Seq::new(1).unwrap(),
                last: Seq::new(3).unwrap(),
            }),
            tally,
            event_ids_sha256: digest.finish(),
        },
    )
}

fn ledger(skip: &[u64]) -> Ledger {
    let mut l = Ledger::default();
    let on = date("2026-12-03").0;
    for (seq, e) in events() {
        if !skip.contains(&seq) {
            l.add_event(store(), agent(), seq, on, e);
        }
    }
    l
}

#[test]
fn a_day_with_every_event_once_is_complete_even_with_raw_duplicates() {
    let mut l = ledger(&[]);
    l.add_event(
        store(),
        agent(),
        2,
        date("2026-12-03").0,
        events()[1].1.clone(),
    );
    l.add_manifest(manifest("2026-12-03", 4));
    l.add_manifest(manifest("2026-12-03", 4));
    let d = l.reconcile(&store(), date("2026-12-03"));
    assert_eq!(d.status, Status::Complete, "{d:#?}");
    let a = &d.agents[0];
    assert_eq!(a.raw_duplicates, 1);
    assert_eq!(a.found, a.stated);
    assert_eq!(a.digest_matches, Some(true));
}

#[test]
fn a_seq_missing_from_kafka_is_reported_by_number() {
    let mut l = ledger(&[2]);
    l.add_manifest(manifest("2026-12-03", 4));
    let d = l.reconcile(&store(), date("2026-12-03"));
    assert_eq!(d.status, Status::Incomplete);
    let a = &d.agents[0];
    assert_eq!(a.missing_seqs, vec![[2, 2]]);
    assert_eq!(a.digest_matches, Some(false));
    assert!(
        a.problems
            .iter()
            .any(|p| p.contains("missing from Kafka: 2")),
        "{:?}",
        a.problems
    );
    assert_eq!(runs_text(&[[2, 2], [5, 9]]), "2, 5-9");
}

#[test]
fn a_rejected_event_is_named_with_its_reason_not_as_missing() {
    let mut l = ledger(&[3]);
    l.add_rejected(
        store(),
        agent(),
        3,
        Rejected {
            event_id: Some(id(3)),
            reason: "invalid_event".into(),
        },
    );
    l.add_manifest(manifest("2026-12-03", 4));
    let a = l.reconcile(&store(), date("2026-12-03")).agents.remove(0);
    assert_eq!(a.status, Status::Incomplete);
    assert!(a.missing_seqs.is_empty());
    assert_eq!(a.rejected, vec![(3, "invalid_event".to_owned())]);
    // The digest covers the rejected event's id: only the figures differ.
    assert_eq!(a.digest_matches, Some(true));
}

#[test]
fn a_second_event_id_for_a_seq_or_an_order_is_a_surviving_duplicate() {
    let mut l = ledger(&[]);
    let mut again = events()[0].1.clone();
    again.event_id = id(9);
    l.add_event(store(), agent(), 1, date("2026-12-03").0, again);
    l.add_manifest(manifest("2026-12-03", 4));
    let a = l.reconcile(&store(), date("2026-12-03")).agents.remove(0);
    assert_eq!(a.status, Status::Incomplete);
    assert_eq!(a.seq_conflicts, vec![1]);
}

#[test]
fn no_manifest_is_pending_until_a_later_day_shows_it_was_skipped() {
    let l = ledger(&[]);
    assert_eq!(
        l.reconcile(&store(), date("2026-12-03")).status,
        Status::Pending
    );
    assert!(l.stores_for(date("2026-12-03")).contains(&store()));
    assert!(
        l.stores_for(date("2026-12-02")).is_empty(),
        "not a store yet"
    );
    let mut l = ledger(&[]);
    l.add_manifest(manifest("2026-12-04", 4));
    assert_eq!(
        l.reconcile(&store(), date("2026-12-03")).status,
        Status::Missing
    );
    let unknown = StoreId::new("S999").unwrap();
    let d = l.reconcile(&unknown, date("2026-12-03"));
    assert_eq!((d.status, d.agents.len()), (Status::Pending, 0));
}
