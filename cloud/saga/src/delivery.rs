//! The status publisher's delivery tracker: the pure core behind
//! [`super::status`] (no socket, no clock: time is passed in).
//!
//! Every agent keeps a persistent MQTT session with its status
//! subscription (a week's expiry), even while its store is offline. So a
//! QoS 1 publish that the broker answers with PUBACK reason 0x10 "No
//! matching subscribers" (Mosquitto 2.0.11 does) reached no session: the
//! broker lost it (kill -9 before an autosave) or the store stayed away
//! past the expiry. Such an update is not delivered (issue 21). This
//! tracker:
//!
//! - maps each message to the packet id rumqttc gives it (the shell reports
//!   `Outgoing::Publish(pkid)` events, which come in publish order) and
//!   each PUBACK back to its message;
//! - re-publishes a message answered "no matching subscribers" with a
//!   backoff per agent topic ([`DeliveryConfig::first_retry`] doubling to
//!   [`DeliveryConfig::max_retry`]): while a topic backs off, its messages
//!   wait and one (the oldest) probes at each retry; the first one
//!   delivered releases the rest. Other topics are not held up;
//! - gives a message up once it has failed for
//!   [`DeliveryConfig::give_up_after`] (returned to the shell, which logs
//!   and counts it);
//! - says, per Kafka partition, up to which offset every consumed record's
//!   updates were delivered or given up: only that may be committed;
//! - on a lost connection (the publisher uses clean start, so the broker
//!   and rumqttc drop what was in flight), sends those messages again once
//!   connected.
//!
//! Methods: getters ([`Delivery::backlog`]), `handle_*` for what the
//! network or a timer reports, [`Delivery::push`] and [`Delivery::reset`]
//! for the application, `poll_*` for what the shell must do next.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::watch::Tp;

/// Retry and give-up times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// Backoff after a topic's first undelivered message.
    pub first_retry: Duration,
    /// Longest backoff (it doubles up to this).
    pub max_retry: Duration,
    /// A message undelivered for this long after its first failure is
    /// given up (`saga.status_redeliver_for_secs`).
    pub give_up_after: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            first_retry: Duration::from_millis(200),
            max_retry: Duration::from_secs(10),
            give_up_after: Duration::from_secs(600),
        }
    }
}

/// A message's id in the tracker (grows with each [`Delivery::push`]).
pub type MsgId = u64;

/// A consumed Kafka record: its partition and offset.
pub type RecordPos = (Tp, i64);

/// A message to deliver: its MQTT topic, the body the shell publishes,
/// and the records whose updates it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing<M> {
    /// The agent's status topic.
    pub topic: String,
    /// What the shell publishes (opaque here).
    pub body: M,
    /// Records this message answers for.
    pub records: Vec<RecordPos>,
}

/// A message given up: never delivered within the give-up time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaveUp<M> {
    /// Its topic.
    pub topic: String,
    /// Its body.
    pub body: M,
    /// How long it kept failing.
    pub failed_for: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// To publish (when connected and its topic is not backing off).
    Ready,
    /// Handed to the client; no packet id yet.
    Unwritten,
    /// Written with this packet id; awaiting its PUBACK.
    Inflight(u16),
    /// Its topic backs off.
    Waiting,
}

#[derive(Debug)]
struct Msg<M> {
    topic: String,
    body: M,
    records: Vec<RecordPos>,
    state: State,
    failing_since: Option<Instant>,
}

/// A topic that answered "no matching subscribers".
#[derive(Debug)]
struct Backoff {
    /// The next backoff.
    next: Duration,
    /// When the next probe goes (None: a probe is out).
    retry_at: Option<Instant>,
}

/// The tracker (see the module doc).
#[derive(Debug)]
pub struct Delivery<M> {
    cfg: DeliveryConfig,
    next_id: MsgId,
    msgs: BTreeMap<MsgId, Msg<M>>,
    unwritten: VecDeque<MsgId>,
    inflight: HashMap<u16, MsgId>,
    backoff: HashMap<String, Backoff>,
    /// Per partition: offsets of records with messages not yet settled,
    /// with how many.
    open: BTreeMap<Tp, BTreeMap<i64, usize>>,
    /// Per partition: the greatest offset consumed.
    seen: BTreeMap<Tp, i64>,
    /// Per partition: the offset last returned by [`Delivery::poll_commits`].
    committed: BTreeMap<Tp, i64>,
    connected: bool,
}

impl<M: Clone> Delivery<M> {
    /// An empty tracker, not connected.
    pub fn new(cfg: DeliveryConfig) -> Self {
        Self {
            cfg,
            next_id: 0,
            msgs: BTreeMap::new(),
            unwritten: VecDeque::new(),
            inflight: HashMap::new(),
            backoff: HashMap::new(),
            open: BTreeMap::new(),
            seen: BTreeMap::new(),
            committed: BTreeMap::new(),
            connected: false,
        }
    }

    /// Messages not yet delivered or given up.
    pub fn backlog(&self) -> usize {
        self.msgs.len()
    }

    /// Whether `topic` backs off (its agent's session was missing).
    pub fn backing_off(&self, topic: &str) -> bool {
        self.backoff.contains_key(topic)
    }

    /// The topic of the message in flight with `pkid`.
    pub fn inflight_topic(&self, pkid: u16) -> Option<&str> {
        let id = self.inflight.get(&pkid)?;
        self.msgs.get(id).map(|m| m.topic.as_str())
    }

    /// Takes a batch: the records consumed (each at most once, in offset
    /// order per partition) and the messages made from them. A record
    /// whose updates are in no message is settled at once.
    pub fn push(&mut self, records: &[RecordPos], messages: Vec<Outgoing<M>>) {
        for (tp, offset) in records {
            let seen = self.seen.entry(tp.clone()).or_insert(*offset);
            *seen = (*seen).max(*offset);
        }
        for m in messages {
            for (tp, offset) in &m.records {
                *self
                    .open
                    .entry(tp.clone())
                    .or_default()
                    .entry(*offset)
                    .or_default() += 1;
            }
            let state = if self.backoff.contains_key(&m.topic) {
                State::Waiting
            } else {
                State::Ready
            };
            self.msgs.insert(
                self.next_id,
                Msg {
                    topic: m.topic,
                    body: m.body,
                    records: m.records,
                    state,
                    failing_since: None,
                },
            );
            self.next_id += 1;
        }
    }

    /// Forgets the records (the consumer left its group: whatever was not
    /// committed is read again, by this member or another). Messages still
    /// tracked keep being delivered; a repeat is dropped by its event id.
    pub fn reset(&mut self) {
        self.open.clear();
        self.seen.clear();
        self.committed.clear();
        for m in self.msgs.values_mut() {
            m.records.clear();
        }
    }

    /// The connection is up (CONNACK).
    pub fn handle_connected(&mut self) {
        self.connected = true;
    }

    /// The connection was lost. Everything in flight is lost with it
    /// (clean start), and so are the first `lost_unwritten` messages not
    /// yet written (rumqttc drains its request queue then); they are sent
    /// again once connected. Messages handed over later stay queued in the
    /// client and are written after the reconnect.
    pub fn handle_disconnected(&mut self, now: Instant, lost_unwritten: usize) {
        self.connected = false;
        let lost = self.unwritten.len().min(lost_unwritten);
        let mut back: Vec<MsgId> = self.unwritten.drain(..lost).collect();
        back.extend(self.inflight.drain().map(|(_, id)| id));
        for id in back {
            if let Some(m) = self.msgs.get_mut(&id) {
                m.state = if self.backoff.contains_key(&m.topic) {
                    State::Waiting
                } else {
                    State::Ready
                };
            }
        }
        // A topic whose probe was lost probes again at once.
        for b in self.backoff.values_mut() {
            b.retry_at.get_or_insert(now);
        }
    }

    /// The client wrote the oldest unwritten message with `pkid`.
    pub fn handle_written(&mut self, pkid: u16) {
        if let Some(id) = self.unwritten.pop_front() {
            if let Some(m) = self.msgs.get_mut(&id) {
                m.state = State::Inflight(pkid);
            }
            self.inflight.insert(pkid, id);
        }
    }

    /// The PUBACK of `pkid`: `matched` unless the broker answered that no
    /// subscriber matched (or refused the message). Returns the message if
    /// it is given up now.
    pub fn handle_ack(&mut self, now: Instant, pkid: u16, matched: bool) -> Option<GaveUp<M>> {
        let id = self.inflight.remove(&pkid)?;
        let topic = self.msgs.get(&id)?.topic.clone();
        if matched {
            self.settle(id);
            // The session is back: release the topic's waiting messages.
            if self.backoff.remove(&topic).is_some() {
                for m in self.msgs.values_mut() {
                    if m.topic == topic && m.state == State::Waiting {
                        m.state = State::Ready;
                    }
                }
            }
            return None;
        }
        let m = self.msgs.get_mut(&id)?;
        let since = *m.failing_since.get_or_insert(now);
        m.state = State::Waiting;
        // The topic backs off (its probe goes at `retry_at`); a topic left
        // with nothing waiting is dropped by `handle_timeout`.
        let (first, max) = (self.cfg.first_retry, self.cfg.max_retry);
        let b = self.backoff.entry(topic).or_insert(Backoff {
            next: first,
            retry_at: None,
        });
        if b.retry_at.is_none() {
            b.retry_at = Some(now + b.next);
            b.next = (b.next * 2).min(max);
        }
        if now.saturating_duration_since(since) >= self.cfg.give_up_after {
            return self.give_up(now, id);
        }
        None
    }

    /// Timers due at `now`: gives up the waiting messages past their time
    /// (returned) and makes each due topic's oldest waiting message its
    /// probe.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<GaveUp<M>> {
        let due: Vec<String> = self
            .backoff
            .iter()
            .filter(|(_, b)| b.retry_at.is_some_and(|t| t <= now))
            .map(|(t, _)| t.clone())
            .collect();
        let mut gave_up = Vec::new();
        for topic in due {
            let waiting: Vec<MsgId> = self
                .msgs
                .iter()
                .filter(|(_, m)| m.topic == topic && m.state == State::Waiting)
                .map(|(id, _)| *id)
                .collect();
            let mut probe = None;
            for id in waiting {
                let expired = self.msgs.get(&id).is_some_and(|m| {
                    m.failing_since
                        .is_some_and(|s| now.saturating_duration_since(s) >= self.cfg.give_up_after)
                });
                if expired {
                    gave_up.extend(self.give_up(now, id));
                } else if probe.is_none() {
                    probe = Some(id);
                }
            }
            match probe.and_then(|id| self.msgs.get_mut(&id)) {
                Some(m) => {
                    m.state = State::Ready;
                    if let Some(b) = self.backoff.get_mut(&topic) {
                        b.retry_at = None;
                    }
                }
                // Nothing left to try: the next message is tried at once.
                None => {
                    self.backoff.remove(&topic);
                }
            }
        }
        gave_up
    }

    /// The earliest retry due, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.backoff.values().filter_map(|b| b.retry_at).min()
    }

    /// The messages to publish now, oldest first (none while disconnected);
    /// the shell must hand each to the client in this order.
    pub fn poll_transmit(&mut self) -> Vec<(MsgId, String, M)> {
        if !self.connected {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (id, m) in &mut self.msgs {
            if m.state == State::Ready {
                m.state = State::Unwritten;
                self.unwritten.push_back(*id);
                out.push((*id, m.topic.clone(), m.body.clone()));
            }
        }
        out
    }

    /// Per partition, the offset to commit (the next record to read) where
    /// it moved since the last call: every record below it is settled.
    pub fn poll_commits(&mut self) -> Vec<(Tp, i64)> {
        let mut out = Vec::new();
        for (tp, seen) in &self.seen {
            let next = self
                .open
                .get(tp)
                .and_then(|o| o.keys().next().copied())
                .unwrap_or(seen + 1);
            if self.committed.get(tp).is_none_or(|c| *c < next) {
                self.committed.insert(tp.clone(), next);
                out.push((tp.clone(), next));
            }
        }
        out
    }

    fn give_up(&mut self, now: Instant, id: MsgId) -> Option<GaveUp<M>> {
        let m = self.settle(id)?;
        let failed_for = m
            .failing_since
            .map(|s| now.saturating_duration_since(s))
            .unwrap_or_default();
        Some(GaveUp {
            topic: m.topic,
            body: m.body,
            failed_for,
        })
    }

    /// Removes a delivered or given-up message; its records may commit.
    fn settle(&mut self, id: MsgId) -> Option<Msg<M>> {
        let m = self.msgs.remove(&id)?;
        for (tp, offset) in &m.records {
            if let Some(open) = self.open.get_mut(tp)
                && let Some(n) = open.get_mut(offset)
            {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.remove(offset);
                }
            }
        }
        Some(m)
    }
}

#[cfg(test)]
mod tests;
