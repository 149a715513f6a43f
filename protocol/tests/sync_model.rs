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
use o2c_protocol::{Ack, AckMessage, FrameNack};
use proptest::prelude::*;

mod common;
use common::{mark, num, seq};

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
