//! Model test of the sync window: random captures, connects, disconnects,
//! timer expiry, and frames lost, duplicated or reordered in both
//! directions. A model cloud stores what it receives and acks cumulatively.
//!
//! Invariants checked after every step:
//! - no seq is acknowledged to the agent before the cloud holds it;
//! - every batch, first send or resend, starts right after the agent's
//!   acknowledged prefix, so the cloud never sees a gap;
//! - once the network behaves, everything captured gets acknowledged.

use o2c_protocol::sync::{AckVerdict, SyncConfig, SyncState};
use o2c_protocol::{Ack, Seq};
use proptest::prelude::*;

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
    ]
}

struct World {
    agent: SyncState,
    outbox_tail: u64,
    /// Batches in flight to the cloud: (first, last).
    up: Vec<(u64, u64)>,
    /// Acks in flight to the agent.
    down: Vec<Ack>,
    /// Highest contiguous seq the cloud holds in Kafka.
    cloud_hwm: u64,
    now: u64,
    cfg: SyncConfig,
}

impl World {
    fn new() -> Self {
        let cfg = SyncConfig {
            ack_timeout_ms: 5_000,
            max_batch_events: 37,
            ..SyncConfig::default()
        };
        Self {
            agent: SyncState::new(cfg, 0, 0, 42),
            outbox_tail: 0,
            up: vec![],
            down: vec![],
            cloud_hwm: 0,
            now: 0,
            cfg,
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
            let first = t.after_seq + 1;
            let mut last = self.outbox_tail.min(t.after_seq + t.max_events as u64);
            if let Some(up_to) = t.up_to {
                last = last.min(up_to);
            }
            if last < first {
                self.agent.handle_nothing_pending(t.after_seq);
                continue;
            }
            self.up.push((first, last));
            self.agent.handle_sent(first, last, self.now);
        }
    }

    fn step(&mut self, op: Op) {
        let pick = |len: usize, i: usize| if len == 0 { None } else { Some(i % len) };
        match op {
            Op::Capture(n) => {
                self.outbox_tail += n;
                self.agent.handle_captured(self.outbox_tail);
            }
            Op::Connect => {
                if !self.agent.is_connected() {
                    self.agent.handle_connected();
                }
            }
            Op::Disconnect => {
                if self.agent.is_connected() {
                    let delay = self.agent.handle_disconnected();
                    assert!(delay <= self.cfg.backoff_max_ms);
                    // A dropped connection loses what was on the wire.
                    self.up.clear();
                    self.down.clear();
                }
            }
            Op::DeliverUp(i) => {
                if let Some(i) = pick(self.up.len(), i) {
                    let (first, last) = self.up.remove(i);
                    assert!(
                        first <= self.cloud_hwm + 1,
                        "cloud saw a gap: {first} after {}",
                        self.cloud_hwm
                    );
                    self.cloud_hwm = self.cloud_hwm.max(last);
                    self.down.push(Ack {
                        through_seq: Seq::new(last).unwrap(),
                        rejected: vec![],
                    });
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
                    let ack = self.down.remove(i);
                    match self
                        .agent
                        .check_ack(&ack)
                        .expect("a real ack is never invalid")
                    {
                        AckVerdict::Apply { through } => {
                            assert!(
                                through <= self.cloud_hwm,
                                "acked {through} but cloud holds {}",
                                self.cloud_hwm
                            );
                            self.agent.handle_ack_applied(through);
                        }
                        AckVerdict::Stale => {}
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
            }
        }
        self.pump();
        assert!(self.agent.acked_through() <= self.cloud_hwm);
        assert!(self.agent.acked_through() <= self.outbox_tail);
        if let Some(f) = self.agent.in_flight() {
            assert_eq!(f.first, self.agent.acked_through() + 1);
            assert!(f.last >= f.first && f.last <= self.outbox_tail);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn window_is_safe_and_live(ops in prop::collection::vec(op(), 0..200)) {
        let mut w = World::new();
        for op in ops {
            w.step(op);
        }
        // Heal the network: connect, deliver everything in order, let
        // timers fire. Everything captured must end up acknowledged.
        w.step(Op::Connect);
        for _ in 0..10_000 {
            if w.agent.acked_through() == w.outbox_tail {
                break;
            }
            if !w.up.is_empty() {
                w.step(Op::DeliverUp(0));
            } else if !w.down.is_empty() {
                w.step(Op::DeliverDown(0));
            } else {
                w.step(Op::Advance(5_000));
            }
        }
        prop_assert_eq!(w.agent.acked_through(), w.outbox_tail);
        prop_assert_eq!(w.agent.backlog(), 0);
        prop_assert_eq!(w.agent.poll_transmit(), None);
    }
}

#[test]
fn invalid_acks_are_refused() {
    let mut s = SyncState::new(SyncConfig::default(), 0, 10, 1);
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
        Ok(AckVerdict::Apply { through: 5 })
    );
    s.handle_ack_applied(5);
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
    let mut s = SyncState::new(cfg, 0, 25, 7);
    assert_eq!(s.poll_transmit(), None, "nothing is sent while offline");
    s.handle_connected();
    let t = s.poll_transmit().unwrap();
    assert_eq!((t.after_seq, t.up_to, t.resend), (0, None, false));
    s.handle_sent(1, 10, 0);
    assert_eq!(s.poll_transmit(), None, "one batch in flight at a time");
    assert_eq!(s.poll_deadline(), Some(1000));
    s.handle_timeout(999);
    assert_eq!(s.poll_transmit(), None);
    s.handle_timeout(1000);
    let t = s.poll_transmit().unwrap();
    assert_eq!((t.after_seq, t.up_to, t.resend), (0, Some(10), true));
    s.handle_sent(1, 10, 1000);
    assert_eq!(s.in_flight().unwrap().attempts, 2);
    let d1 = s.handle_disconnected();
    let d2 = s.handle_disconnected();
    assert!(d1 <= 200 && d2 <= 400, "backoff grows: {d1} {d2}");
    s.handle_connected();
    assert_eq!(s.poll_transmit().unwrap().up_to, Some(10));
}

/// A commit can land between the shell's look at the store's head and its
/// read of the batch, so a batch may reach past the tail the state knew.
/// The ack for it must apply at once, not wait out the ack timeout.
#[test]
fn a_batch_read_past_the_known_tail_is_acked_at_once() {
    let mut s = SyncState::new(SyncConfig::default(), 0, 245, 3);
    s.handle_connected();
    let t = s.poll_transmit().unwrap();
    assert_eq!((t.after_seq, t.up_to), (0, None));
    // The outbox already held 246 when the shell read the batch.
    s.handle_sent(1, 246, 0);
    let ack = Ack {
        through_seq: Seq::new(246).unwrap(),
        rejected: vec![],
    };
    assert_eq!(s.check_ack(&ack), Ok(AckVerdict::Apply { through: 246 }));
    s.handle_ack_applied(246);
    assert_eq!(s.in_flight(), None);
    assert_eq!(s.poll_transmit(), None, "nothing left to send");
}
