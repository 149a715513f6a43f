//! Model test of the sync window: random captures, connects, disconnects,
//! timer expiry, and frames lost, duplicated or reordered in both
//! directions. A model cloud stores what it receives and acks cumulatively.
//!
//! Some seqs are poison: the model cloud refuses whole any frame holding
//! one (a frame nack), as the ingest refuses a frame it cannot read. The
//! broker answers (or not) the agent's requests, and time passes, so the
//! liveness rule is exercised too.
//!
//! Invariants checked after every step:
//! - no seq is acknowledged to the agent before the cloud holds it;
//! - every batch, first send or resend, starts right after the agent's
//!   acknowledged prefix, so the cloud never sees a gap;
//! - only poison seqs are ever rejected, and only by a nack of a frame
//!   holding that seq alone;
//! - the agent asks to drop its connection exactly when a request has gone
//!   unanswered by the broker for the liveness timeout (or an attempt for
//!   the connect timeout), and reconnect delays respect their caps;
//! - once the network behaves, everything captured gets acknowledged:
//!   every good seq reaches the cloud, every poison seq is rejected.

use std::collections::BTreeSet;

use o2c_protocol::sync::{AckVerdict, NackVerdict, SyncConfig, SyncState};
use o2c_protocol::{Ack, AckMessage, FrameNack, Seq};
use proptest::prelude::*;

/// The seq numbered `n` (at least 1).
fn seq(n: u64) -> Seq {
    Seq::new(n).unwrap()
}

/// A seq bound: `None` for 0 (before the first seq).
fn mark(n: u64) -> Option<Seq> {
    Seq::new(n).ok()
}

/// The number of a seq bound, 0 for `None`.
fn num(s: Option<Seq>) -> u64 {
    s.map_or(0, Seq::get)
}

#[derive(Debug, Clone)]
enum Op {
    Capture(u64),
    Connect,
    Disconnect,
    DeliverUp(usize),
    DropUp(usize),
    DuplicateUp(usize),
    DeliverDown(usize),
    DropDown(usize),
    DuplicateDown(usize),
    Advance(u64),
    /// The broker answers everything written so far (a PUBACK, a PINGRESP).
    BrokerHeard,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u64..50).prop_map(Op::Capture),
        2 => Just(Op::Connect),
        1 => Just(Op::Disconnect),
        4 => any::<usize>().prop_map(Op::DeliverUp),
        1 => any::<usize>().prop_map(Op::DropUp),
        1 => any::<usize>().prop_map(Op::DuplicateUp),
        4 => any::<usize>().prop_map(Op::DeliverDown),
        1 => any::<usize>().prop_map(Op::DropDown),
        1 => any::<usize>().prop_map(Op::DuplicateDown),
        2 => (0u64..15_000).prop_map(Op::Advance),
        3 => Just(Op::BrokerHeard),
    ]
}

struct World {
    agent: SyncState,
    outbox_tail: u64,
    /// Batches in flight to the cloud: (first, last).
    up: Vec<(u64, u64)>,
    /// Acks and frame nacks in flight to the agent.
    down: Vec<AckMessage>,
    /// Highest contiguous seq the cloud holds in Kafka (or has refused for
    /// good, as a frame of that seq alone).
    cloud_hwm: u64,
    /// Seqs whose event the cloud cannot read.
    poison: BTreeSet<u64>,
    /// Seqs the agent marked rejected.
    rejected: BTreeSet<u64>,
    now: u64,
    /// The model's own view: when the oldest unanswered request was written
    /// on the current connection, and when the connection attempt started.
    awaiting_since: Option<u64>,
    connecting_since: Option<u64>,
    cfg: SyncConfig,
}

impl World {
    fn new(poison: BTreeSet<u64>) -> Self {
        let cfg = SyncConfig {
            ack_timeout_ms: 5_000,
            max_batch_events: 37,
            liveness_timeout_ms: 3_000,
            connect_timeout_ms: 2_000,
            ..SyncConfig::default()
        };
        Self {
            agent: SyncState::new(cfg, None, None, 42),
            outbox_tail: 0,
            up: vec![],
            down: vec![],
            cloud_hwm: 0,
            poison,
            rejected: BTreeSet::new(),
            now: 0,
            awaiting_since: None,
            connecting_since: None,
            cfg,
        }
    }

    /// Drops the connection: what was on the wire is lost.
    fn disconnect(&mut self) {
        let pending = self.agent.backlog() > 0;
        let delay = self.agent.handle_disconnected();
        let cap = if pending {
            self.cfg.backoff_pending_max_ms
        } else {
            self.cfg.backoff_max_ms
        };
        assert!(delay <= cap, "delay {delay} over cap {cap}");
        self.up.clear();
        self.down.clear();
        self.awaiting_since = None;
        self.connecting_since = None;
    }

    /// The cloud's answer to a frame: an ack, or a nack if it holds poison.
    fn cloud_receives(&mut self, first: u64, last: u64) {
        assert!(
            first <= self.cloud_hwm + 1,
            "cloud saw a gap: {first} after {}",
            self.cloud_hwm
        );
        if self.poison.range(first..=last).next().is_some() {
            if first == last {
                // Refused for good: settled, like a rejected event.
                self.cloud_hwm = self.cloud_hwm.max(last);
            }
            self.down.push(AckMessage::FrameNack(FrameNack {
                first_seq: seq(first),
                last_seq: seq(last),
                code: "malformed_frame".into(),
                reason: "unreadable".into(),
            }));
        } else {
            self.cloud_hwm = self.cloud_hwm.max(last);
            self.down.push(AckMessage::Ack(Ack {
                through_seq: seq(last),
                rejected: vec![],
            }));
        }
    }

    /// The shell: publish whatever the state machine asks for.
    fn pump(&mut self) {
        while let Some(t) = self.agent.poll_transmit() {
            assert_eq!(
                t.after_seq,
                self.agent.acked_through(),
                "batch must start after the acked prefix"
            );
            let after = num(t.after_seq);
            let first = after + 1;
            let mut last = self.outbox_tail.min(after + t.max_events as u64);
            if let Some(up_to) = t.up_to {
                last = last.min(up_to.get());
            }
            if last < first {
                self.agent.handle_nothing_pending(t.after_seq);
                continue;
            }
            self.up.push((first, last));
            self.agent.handle_sent(seq(first), seq(last), self.now);
            // Written at once in the model.
            self.agent.handle_request_written(self.now);
            self.awaiting_since.get_or_insert(self.now);
        }
    }

    fn step(&mut self, op: Op) {
        let pick = |len: usize, i: usize| if len == 0 { None } else { Some(i % len) };
        match op {
            Op::Capture(n) => {
                self.outbox_tail += n;
                if let Some(tail) = mark(self.outbox_tail) {
                    self.agent.handle_captured(tail);
                }
            }
            Op::Connect => {
                if self.agent.is_connected() {
                } else if self.connecting_since.is_none() {
                    self.agent.handle_connecting(self.now);
                    self.connecting_since = Some(self.now);
                } else {
                    self.agent.handle_connected();
                    self.connecting_since = None;
                    self.awaiting_since = None;
                }
            }
            Op::Disconnect => {
                if self.agent.is_connected() || self.connecting_since.is_some() {
                    self.disconnect();
                }
            }
            Op::DeliverUp(i) => {
                if let Some(i) = pick(self.up.len(), i) {
                    let (first, last) = self.up.remove(i);
                    self.cloud_receives(first, last);
                }
            }
            Op::DropUp(i) => {
                if let Some(i) = pick(self.up.len(), i) {
                    self.up.remove(i);
                }
            }
            Op::DuplicateUp(i) => {
                if let Some(i) = pick(self.up.len(), i) {
                    self.up.push(self.up[i]);
                }
            }
            Op::DeliverDown(i) => {
                if let Some(i) = pick(self.down.len(), i) {
                    let msg = self.down.remove(i);
                    self.agent.handle_heard();
                    self.awaiting_since = None;
                    match msg {
                        AckMessage::Ack(ack) => self.apply_ack(&ack),
                        AckMessage::FrameNack(nack) => match self.agent.handle_frame_nack(&nack) {
                            NackVerdict::Reject { ack, through } => {
                                assert_eq!(nack.first_seq, nack.last_seq, "only a lone event");
                                assert_eq!(ack.through_seq, through);
                                for r in &ack.rejected {
                                    assert!(
                                        self.poison.contains(&r.seq.get()),
                                        "good seq {} rejected",
                                        r.seq
                                    );
                                }
                                self.apply_ack(&ack);
                            }
                            NackVerdict::Isolate => {
                                assert!(nack.first_seq < nack.last_seq);
                                assert!(self.agent.is_isolating());
                            }
                            NackVerdict::Stale => {}
                        },
                    }
                }
            }
            Op::DropDown(i) => {
                if let Some(i) = pick(self.down.len(), i) {
                    self.down.remove(i);
                }
            }
            Op::DuplicateDown(i) => {
                if let Some(i) = pick(self.down.len(), i) {
                    self.down.push(self.down[i].clone());
                }
            }
            Op::Advance(ms) => {
                self.now += ms;
                self.agent.handle_timeout(self.now);
                let expect_dead = if self.agent.is_connected() {
                    self.awaiting_since
                        .is_some_and(|t| self.now >= t + self.cfg.liveness_timeout_ms)
                } else {
                    self.connecting_since
                        .is_some_and(|t| self.now >= t + self.cfg.connect_timeout_ms)
                };
                assert_eq!(
                    self.agent.poll_drop_connection(),
                    expect_dead,
                    "liveness verdict at {} (awaiting since {:?}, connecting since {:?})",
                    self.now,
                    self.awaiting_since,
                    self.connecting_since
                );
                if expect_dead {
                    assert_eq!(
                        self.agent.poll_transmit(),
                        None,
                        "nothing goes on a dead link"
                    );
                    self.disconnect();
                }
            }
            Op::BrokerHeard => {
                if self.agent.is_connected() {
                    self.agent.handle_heard();
                    self.awaiting_since = None;
                }
            }
        }
        self.pump();
        assert!(num(self.agent.acked_through()) <= self.cloud_hwm);
        assert!(num(self.agent.acked_through()) <= self.outbox_tail);
        if let Some(f) = self.agent.in_flight() {
            assert_eq!(f.first.get(), num(self.agent.acked_through()) + 1);
            assert!(f.last >= f.first && f.last.get() <= self.outbox_tail);
        }
    }

    fn apply_ack(&mut self, ack: &Ack) {
        match self
            .agent
            .check_ack(ack)
            .expect("a real ack is never invalid")
        {
            AckVerdict::Apply { through } => {
                assert!(
                    through.get() <= self.cloud_hwm,
                    "acked {through} but cloud holds {}",
                    self.cloud_hwm
                );
                self.rejected
                    .extend(ack.rejected.iter().map(|r| r.seq.get()));
                self.agent.handle_ack_applied(through);
            }
            AckVerdict::Stale => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn window_is_safe_and_live(
        ops in prop::collection::vec(op(), 0..200),
        poison in prop::collection::btree_set(1u64..400, 0..6),
    ) {
        let mut w = World::new(poison);
        for op in ops {
            w.step(op);
        }
        // Heal the network: connect, the broker answers at once, deliver
        // everything in order, let timers fire. Everything captured must
        // end up acknowledged or (poison only) rejected.
        for _ in 0..10_000 {
            if num(w.agent.acked_through()) == w.outbox_tail {
                break;
            }
            if !w.agent.is_connected() {
                w.step(Op::Connect);
            } else if !w.up.is_empty() {
                w.step(Op::BrokerHeard);
                w.step(Op::DeliverUp(0));
            } else if !w.down.is_empty() {
                w.step(Op::DeliverDown(0));
            } else {
                w.step(Op::Advance(5_000));
            }
        }
        prop_assert_eq!(num(w.agent.acked_through()), w.outbox_tail);
        prop_assert_eq!(w.agent.backlog(), 0);
        prop_assert_eq!(w.agent.poll_transmit(), None);
        let expected: BTreeSet<u64> = w.poison.iter().copied().filter(|&p| p <= w.outbox_tail).collect();
        prop_assert_eq!(&w.rejected, &expected);
    }
}

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
