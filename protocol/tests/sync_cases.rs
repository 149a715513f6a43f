//! Hand-picked cases of the sync window ([`o2c_protocol::sync::SyncState`]):
//! invalid acks, resends, a batch read past the known tail, frame nacks,
//! liveness and backoff. The random model check is `sync_model.rs`.

use o2c_protocol::sync::{AckVerdict, NackVerdict, SyncConfig, SyncState};
use o2c_protocol::{Ack, AckMessage, FrameNack, Seq};

mod common;
use common::{mark, seq};

#[test]
fn invalid_acks_are_refused() {
    let mut s = SyncState::new(SyncConfig::default(), None, mark(10), 1);
    s.handle_connected();
    let ack = |through, rejected: Vec<u64>| Ack {
        through_seq: Seq::new(through).unwrap(),
        rejected: rejected
            .into_iter()
            .map(|seq| o2c_protocol::Rejection {
                seq: Seq::new(seq).unwrap(),
                event_id: None,
                code: "x".into(),
                reason: "y".into(),
            })
            .collect(),
    };
    assert!(s.check_ack(&ack(11, vec![])).is_err());
    assert!(s.check_ack(&ack(5, vec![6])).is_err());
    assert_eq!(
        s.check_ack(&ack(5, vec![5])),
        Ok(AckVerdict::Apply { through: seq(5) })
    );
    s.handle_ack_applied(seq(5));
    assert_eq!(s.check_ack(&ack(5, vec![])), Ok(AckVerdict::Stale));
    assert_eq!(s.check_ack(&ack(3, vec![])), Ok(AckVerdict::Stale));
}

#[test]
fn resend_after_timeout_and_on_reconnect_keeps_the_range() {
    let cfg = SyncConfig {
        ack_timeout_ms: 1000,
        max_batch_events: 10,
        ..SyncConfig::default()
    };
    let mut s = SyncState::new(cfg, None, mark(25), 7);
    assert_eq!(s.poll_transmit(), None, "nothing is sent while offline");
    s.handle_connected();
    let t = s.poll_transmit().unwrap();
    assert_eq!((t.after_seq, t.up_to, t.resend), (None, None, false));
    s.handle_sent(seq(1), seq(10), 0);
    assert_eq!(s.poll_transmit(), None, "one batch in flight at a time");
    assert_eq!(s.poll_deadline(), Some(1000));
    s.handle_timeout(999);
    assert_eq!(s.poll_transmit(), None);
    s.handle_timeout(1000);
    let t = s.poll_transmit().unwrap();
    assert_eq!((t.after_seq, t.up_to, t.resend), (None, mark(10), true));
    s.handle_sent(seq(1), seq(10), 1000);
    assert_eq!(s.in_flight().unwrap().attempts, 2);
    let d1 = s.handle_disconnected();
    let d2 = s.handle_disconnected();
    assert!(d1 <= 200 && d2 <= 400, "backoff grows: {d1} {d2}");
    s.handle_connected();
    assert_eq!(s.poll_transmit().unwrap().up_to, mark(10));
}

/// A commit can land between the shell's look at the store's head and its
/// read of the batch, so a batch may reach past the tail the state knew.
/// The ack for it must apply at once, not wait out the ack timeout.
#[test]
fn a_batch_read_past_the_known_tail_is_acked_at_once() {
    let mut s = SyncState::new(SyncConfig::default(), None, mark(245), 3);
    s.handle_connected();
    let t = s.poll_transmit().unwrap();
    assert_eq!((t.after_seq, t.up_to), (None, None));
    // The outbox already held 246 when the shell read the batch.
    s.handle_sent(seq(1), seq(246), 0);
    let ack = Ack {
        through_seq: Seq::new(246).unwrap(),
        rejected: vec![],
    };
    assert_eq!(
        s.check_ack(&ack),
        Ok(AckVerdict::Apply { through: seq(246) })
    );
    s.handle_ack_applied(seq(246));
    assert_eq!(s.in_flight(), None);
    assert_eq!(s.poll_transmit(), None, "nothing left to send");
}

fn nack(first: u64, last: u64) -> FrameNack {
    FrameNack {
        first_seq: Seq::new(first).unwrap(),
        last_seq: Seq::new(last).unwrap(),
        code: "malformed_frame".into(),
        reason: "an event has no readable seq".into(),
    }
}

/// A refused frame of several events is sent again one event per frame;
/// the lone bad event is rejected with the nack's code; then batches grow
/// back to full size.
#[test]
fn a_refused_frame_is_split_then_its_bad_event_rejected() {
    let cfg = SyncConfig {
        max_batch_events: 10,
        ..SyncConfig::default()
    };
    let mut s = SyncState::new(cfg, None, mark(30), 5);
    s.handle_connected();
    assert_eq!(s.poll_transmit().unwrap().max_events, 10);
    s.handle_sent(seq(1), seq(10), 0);
    assert_eq!(
        s.handle_frame_nack(&nack(2, 10)),
        NackVerdict::Stale,
        "not that frame"
    );
    assert_eq!(s.handle_frame_nack(&nack(1, 10)), NackVerdict::Isolate);
    assert!(s.is_isolating());
    assert_eq!(
        s.handle_frame_nack(&nack(1, 10)),
        NackVerdict::Stale,
        "repeat"
    );
    let t = s.poll_transmit().unwrap();
    assert_eq!((t.after_seq, t.max_events, t.resend), (None, 1, false));
    s.handle_sent(seq(1), seq(1), 1);
    s.handle_ack_applied(seq(1));
    assert_eq!(
        s.poll_transmit().unwrap().max_events,
        1,
        "still inside the refused frame"
    );
    s.handle_sent(seq(2), seq(2), 2);
    let NackVerdict::Reject { ack, through } = s.handle_frame_nack(&nack(2, 2)) else {
        panic!("a lone event is rejected");
    };
    assert_eq!(through, seq(2));
    assert_eq!(ack.rejected.len(), 1);
    assert_eq!(ack.rejected[0].seq.get(), 2);
    assert_eq!(ack.rejected[0].code, "malformed_frame");
    assert_eq!(s.check_ack(&ack), Ok(AckVerdict::Apply { through: seq(2) }));
    s.handle_ack_applied(seq(2));
    for n in 3..=10 {
        assert_eq!(s.poll_transmit().unwrap().max_events, 1);
        s.handle_sent(seq(n), seq(n), n);
        s.handle_ack_applied(seq(n));
    }
    assert!(!s.is_isolating());
    assert_eq!(
        s.poll_transmit().unwrap().max_events,
        10,
        "full batches again"
    );
}

/// A publish that the broker never answers makes the connection dead after
/// the liveness timeout; anything heard from the broker keeps it alive.
#[test]
fn a_silent_connection_is_dropped_after_the_liveness_timeout() {
    let cfg = SyncConfig {
        ack_timeout_ms: 10_000,
        liveness_timeout_ms: 2_000,
        connect_timeout_ms: 1_500,
        backoff_pending_max_ms: 1_000,
        ..SyncConfig::default()
    };
    let mut s = SyncState::new(cfg, None, mark(100), 9);
    s.handle_connecting(0);
    assert_eq!(s.poll_deadline(), Some(1_500), "the attempt has a deadline");
    s.handle_connected();
    s.handle_sent(seq(1), seq(10), 100);
    s.handle_request_written(100);
    assert_eq!(s.poll_deadline(), Some(2_100));
    s.handle_timeout(1_000);
    s.handle_heard(); // the broker's PUBACK
    assert_eq!(
        s.poll_deadline(),
        Some(10_100),
        "only the ack timeout is left"
    );
    s.handle_timeout(10_100);
    s.handle_sent(seq(1), seq(10), 10_100); // the resend
    s.handle_request_written(10_100);
    s.handle_timeout(12_099);
    assert!(!s.poll_drop_connection());
    s.handle_timeout(12_100);
    assert!(s.poll_drop_connection(), "two seconds without a word");
    assert_eq!(s.poll_transmit(), None);
    // Pending events: the reconnect delay stays short however often it fails.
    for _ in 0..20 {
        assert!(s.handle_disconnected() <= 1_000);
        s.handle_connecting(20_000);
        s.handle_timeout(21_499);
        assert!(!s.poll_drop_connection());
        s.handle_timeout(21_500);
        assert!(s.poll_drop_connection(), "the attempt took too long");
    }
    s.handle_disconnected();
    s.handle_connecting(30_000);
    s.handle_connected();
    assert_eq!(
        s.poll_transmit().unwrap().up_to,
        mark(10),
        "the batch goes again"
    );
}

/// With nothing pending the backoff grows to its usual maximum.
#[test]
fn an_idle_agent_backs_off_further() {
    let mut s = SyncState::new(SyncConfig::default(), None, None, 11);
    let most = (0..30).map(|_| s.handle_disconnected()).max().unwrap();
    assert!(most > 1_000 && most <= 30_000, "{most}");
}

#[test]
fn frame_nacks_and_acks_decode_apart() {
    let n = nack(3, 9);
    let bytes = n.encode().unwrap();
    assert_eq!(AckMessage::decode(&bytes), Ok(AckMessage::FrameNack(n)));
    // An agent that predates nacks sees an undecodable ack, nothing worse.
    assert!(Ack::decode(&bytes).is_err());
    let a = Ack {
        through_seq: Seq::new(4).unwrap(),
        rejected: vec![],
    };
    assert_eq!(
        AckMessage::decode(&a.encode().unwrap()),
        Ok(AckMessage::Ack(a))
    );
    assert!(
        AckMessage::decode(
            br#"{"frame_nack":{"first_seq":9,"last_seq":3,"code":"x","reason":"y"}}"#
        )
        .is_err()
    );
    assert!(AckMessage::decode(br#"{"frame_nack":{"first_seq":1,"last_seq":3}}"#).is_err());
    assert!(AckMessage::decode(b"[1]").is_err());
    let id = o2c_protocol::FrameId::parse_property("12-40").unwrap();
    assert_eq!((id.first.get(), id.last.get()), (12, 40));
    assert_eq!(id.to_property(), "12-40");
    for bad in [
        "",
        "1",
        "0-3",
        "3-1",
        "-1-3",
        "+1-3",
        "1-3-4",
        "a-b",
        "1-99999999999999999999",
    ] {
        assert!(o2c_protocol::FrameId::parse_property(bad).is_err(), "{bad}");
    }
}
