//! The consumer-group watchdog: does the group still consume everything it
//! subscribed to?
//!
//! A consumer group can stop consuming a partition without any error: a
//! member may hold an assignment that leaves out a subscribed topic, or a
//! partition may be owned by a member that no longer fetches. The saga then
//! stalls silently (issue 21: orders stuck at `paid` for 11 minutes with a
//! green `/readyz`). This module makes that visible and recoverable:
//!
//! - [`GroupWatch`] is the pure core. Fed a [`Snapshot`] of the group (each
//!   subscribed partition's end offset, the group's committed offset and
//!   whether some member of the group owns it) with the time, it returns a
//!   [`Verdict`]: the lag per topic, the partitions no member owns, and the
//!   partitions whose backlog has not moved for [`WatchConfig::stall_after`].
//! - [`parse_assignment`] decodes a member's assignment as the Kafka consumer
//!   protocol encodes it (what DescribeGroups returns).
//! - The shell that takes the snapshots and acts on the verdict is in
//!   [`super::consumer`]: it reports not-ready, sets the metrics the alert
//!   rules watch (`deploy/cloud/alerts/o2c.rules.yml`), and has the member
//!   rejoin the group when the gap outlasts a rebalance.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// One partition: `(topic, partition)`.
pub type Tp = (String, i32);

/// What the watchdog saw of one subscribed partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Log end offset (high watermark).
    pub end: i64,
    /// The group's committed offset (`None`: never committed).
    pub committed: Option<i64>,
    /// Whether some member of the group holds it in its assignment
    /// (`None`: the group's assignments could not be read).
    pub owned: Option<bool>,
    /// Whether this member holds it.
    pub mine: bool,
}

impl PartitionView {
    /// Records not yet committed by the group. With no commit yet the whole
    /// log is backlog (the group starts at the earliest offset).
    pub fn lag(&self) -> i64 {
        (self.end - self.committed.unwrap_or(0)).max(0)
    }

    fn tp(&self) -> Tp {
        (self.topic.clone(), self.partition)
    }
}

/// One look at the group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Every partition of every subscribed topic.
    pub partitions: Vec<PartitionView>,
}

/// Thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchConfig {
    /// A partition owned by no member for this long is a gap (longer than a
    /// normal rebalance).
    pub unowned_after: Duration,
    /// A partition whose backlog stays above zero with no commit for this
    /// long is stalled.
    pub stall_after: Duration,
    /// A partition whose backlog has only grown for this long is falling
    /// behind.
    pub behind_after: Duration,
    /// A member that holds no partition at all while a subscribed one has
    /// had a backlog and no commit for this long rejoins (shorter than
    /// `stall_after`: such a member does no work that a rejoin could
    /// interrupt). After a kill -9 and restart, Tansu 0.6 can leave the new
    /// member with nothing assigned while the dead one's partitions wait
    /// (RELIABILITY.md, seeds 1818 and 2020).
    pub idle_rejoin_after: Duration,
    /// A partition another member holds, with a backlog and no commit for
    /// this long while this member's own commits have moved since, is
    /// stalled, and this member rejoins (shorter than `stall_after`: the
    /// shared database and broker work, so its owner is gone or no longer
    /// fetches). After a member's kill -9, Tansu 0.6 can keep its
    /// partitions assigned to it and never rebalance the survivors (the
    /// scale-out test in CI, 2026-12-07). Such a stall asks for at most
    /// one rejoin per period.
    pub orphan_after: Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            unowned_after: Duration::from_secs(15),
            stall_after: Duration::from_secs(60),
            behind_after: Duration::from_secs(180),
            idle_rejoin_after: Duration::from_secs(10),
            orphan_after: Duration::from_secs(20),
        }
    }
}

/// What the watchdog concluded from a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Backlog per subscribed topic.
    pub lag: BTreeMap<String, i64>,
    /// Partitions that no member of the group has owned for
    /// [`WatchConfig::unowned_after`].
    pub unowned: Vec<Tp>,
    /// Partitions with a backlog whose committed offset has not moved for
    /// [`WatchConfig::stall_after`] (another member's: for
    /// [`WatchConfig::orphan_after`] while this member's commits moved).
    pub stalled: Vec<Tp>,
    /// Partitions whose backlog has only grown for
    /// [`WatchConfig::behind_after`].
    pub behind: Vec<Tp>,
    /// Whether this member should leave and rejoin the group, so that a
    /// fresh rebalance hands out every subscribed partition again: some
    /// partition has no owner, or is stalled while another member holds it
    /// (a member that no longer fetches), or this member holds nothing
    /// while a partition has waited [`WatchConfig::idle_rejoin_after`].
    /// An early stall of another member's partition (before
    /// [`WatchConfig::stall_after`]) asks for a rejoin at most once per
    /// [`WatchConfig::orphan_after`].
    pub rejoin: bool,
}

impl Verdict {
    /// Whether the group consumes its whole subscription.
    pub fn healthy(&self) -> bool {
        self.unowned.is_empty() && self.stalled.is_empty() && self.behind.is_empty()
    }
}

/// Per partition: since when it has been unowned; its last committed
/// offset with the time it last moved (or the backlog was empty); and the
/// backlog when it last shrank, with the time.
#[derive(Debug, Default)]
struct Track {
    unowned_since: Option<Instant>,
    committed: Option<i64>,
    progress_at: Option<Instant>,
    lag: i64,
    growing_since: Option<(i64, Instant)>,
}

/// The watchdog's state: when each partition was last seen owned and
/// progressing.
#[derive(Debug)]
pub struct GroupWatch {
    cfg: WatchConfig,
    tracks: BTreeMap<Tp, Track>,
    /// Since when this member has held no partition (since it was first
    /// seen so, after its last rejoin).
    idle_since: Option<Instant>,
    /// When a commit of this member's own partitions was last seen to move.
    worked_at: Option<Instant>,
    /// When this member last rejoined.
    rejoined_at: Option<Instant>,
}

impl GroupWatch {
    /// A watchdog that has seen nothing yet.
    pub fn new(cfg: WatchConfig) -> Self {
        Self {
            cfg,
            tracks: BTreeMap::new(),
            idle_since: None,
            worked_at: None,
            rejoined_at: None,
        }
    }

    /// Takes a snapshot made at `now` and judges it.
    pub fn observe(&mut self, now: Instant, snap: &Snapshot) -> Verdict {
        let mut v = Verdict::default();
        let seen: BTreeSet<Tp> = snap.partitions.iter().map(PartitionView::tp).collect();
        let idle_for = if snap.partitions.iter().any(|p| p.mine) {
            self.idle_since = None;
            Duration::ZERO
        } else {
            now.saturating_duration_since(*self.idle_since.get_or_insert(now))
        };
        let idle = idle_for >= self.cfg.idle_rejoin_after;
        self.tracks.retain(|tp, _| seen.contains(tp));
        let worked = snap.partitions.iter().any(|p| {
            p.mine
                && self
                    .tracks
                    .get(&p.tp())
                    .is_some_and(|t| t.progress_at.is_some() && t.committed != p.committed)
        });
        if worked {
            self.worked_at = Some(now);
        }
        // An early stall of another member's partition asks for a rejoin
        // at most once per `orphan_after`.
        let settled = self
            .rejoined_at
            .is_none_or(|r| now.saturating_duration_since(r) >= self.cfg.orphan_after);
        for p in &snap.partitions {
            *v.lag.entry(p.topic.clone()).or_default() += p.lag();
            let t = self.tracks.entry(p.tp()).or_default();
            match p.owned {
                Some(false) => {
                    let since = *t.unowned_since.get_or_insert(now);
                    if now.saturating_duration_since(since) >= self.cfg.unowned_after {
                        v.unowned.push(p.tp());
                    }
                }
                Some(true) => t.unowned_since = None,
                // Unknown: keep what was known.
                None => {}
            }
            if p.lag() == 0 || t.committed != p.committed || t.progress_at.is_none() {
                t.committed = p.committed;
                t.progress_at = Some(now);
            } else if let Some(at) = t.progress_at {
                let waited = now.saturating_duration_since(at);
                let stalled = waited >= self.cfg.stall_after;
                // Its owner idles while this member's commits move.
                let orphaned = !p.mine
                    && waited >= self.cfg.orphan_after
                    && self.worked_at.is_some_and(|w| w > at);
                if stalled || orphaned {
                    v.stalled.push(p.tp());
                    v.rejoin |= !p.mine && (stalled || settled);
                }
                v.rejoin |= idle && waited >= self.cfg.idle_rejoin_after;
            }
            let lag = p.lag();
            if lag == 0 || lag < t.lag || t.growing_since.is_none() {
                t.growing_since = Some((lag, now));
            } else if let Some((from, at)) = t.growing_since
                && lag > from
                && now.saturating_duration_since(at) >= self.cfg.behind_after
            {
                v.behind.push(p.tp());
            }
            t.lag = lag;
        }
        v.rejoin |= !v.unowned.is_empty();
        v
    }

    /// Forgets ownership and idle history (after this member rejoined), so
    /// a gap must last [`WatchConfig::unowned_after`] (an idle member
    /// [`WatchConfig::idle_rejoin_after`]) again before it counts, and
    /// an early stall of another member's partition asks for the next
    /// rejoin only [`WatchConfig::orphan_after`] after `now`.
    pub fn rejoined(&mut self, now: Instant) {
        self.rejoined_at = Some(now);
        for t in self.tracks.values_mut() {
            t.unowned_since = None;
        }
        // A rejoin takes time to bring an assignment: idle counts afresh.
        self.idle_since = None;
    }
}

/// Why an assignment could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    /// The bytes end early or a length is negative.
    #[error("truncated consumer-protocol assignment at byte {0}")]
    Truncated(usize),
    /// A topic name is not UTF-8.
    #[error("topic name is not UTF-8")]
    Utf8,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], AssignmentError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or(AssignmentError::Truncated(self.at))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn i16(&mut self) -> Result<i16, AssignmentError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32, AssignmentError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn len(&mut self, n: i64) -> Result<usize, AssignmentError> {
        usize::try_from(n).map_err(|_| AssignmentError::Truncated(self.at))
    }
}

/// Decodes a consumer-protocol assignment (`version: i16`, then
/// `[topic: string, [partition: i32]]`, then user data, which is ignored)
/// into its partitions. An empty byte string is an empty assignment.
pub fn parse_assignment(bytes: &[u8]) -> Result<Vec<Tp>, AssignmentError> {
    let mut out = Vec::new();
    if bytes.is_empty() {
        return Ok(out);
    }
    let mut r = Reader { bytes, at: 0 };
    let _version = r.i16()?;
    let n = r.i32()?;
    for _ in 0..r.len(n.into())? {
        let len = r.i16()?;
        let len = r.len(len.into())?;
        let topic = std::str::from_utf8(r.take(len)?)
            .map_err(|_| AssignmentError::Utf8)?
            .to_owned();
        let parts = r.i32()?;
        for _ in 0..r.len(parts.into())? {
            out.push((topic.clone(), r.i32()?));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(topic: &str, p: i32, end: i64, committed: Option<i64>, owned: bool) -> PartitionView {
        PartitionView {
            topic: topic.into(),
            partition: p,
            end,
            committed,
            owned: Some(owned),
            mine: owned,
        }
    }

    fn cfg() -> WatchConfig {
        WatchConfig {
            unowned_after: Duration::from_secs(15),
            stall_after: Duration::from_secs(60),
            behind_after: Duration::from_secs(120),
            idle_rejoin_after: Duration::from_secs(10),
            orphan_after: Duration::from_secs(20),
        }
    }

    #[test]
    fn an_unowned_partition_counts_only_after_the_grace() {
        let t0 = Instant::now();
        let mut w = GroupWatch::new(cfg());
        let snap = Snapshot {
            partitions: vec![view("a", 0, 5, Some(5), true), view("b", 0, 3, None, false)],
        };
        assert!(w.observe(t0, &snap).healthy());
        assert!(w.observe(t0 + Duration::from_secs(14), &snap).healthy());
        let v = w.observe(t0 + Duration::from_secs(15), &snap);
        assert_eq!(v.unowned, vec![("b".to_owned(), 0)]);
        assert!(v.rejoin);
        assert_eq!(v.lag["b"], 3);
        assert_eq!(v.lag["a"], 0);
        // Owned again: healthy at once.
        let snap2 = Snapshot {
            partitions: vec![
                view("a", 0, 5, Some(5), true),
                view("b", 0, 3, Some(3), true),
            ],
        };
        assert!(w.observe(t0 + Duration::from_secs(16), &snap2).healthy());
    }

    #[test]
    fn a_member_that_holds_nothing_rejoins_once_a_backlog_waits_briefly() {
        let t0 = Instant::now();
        // Restarted after a kill -9: nothing assigned to it, the dead
        // member's partition still listed as someone's.
        let mut theirs = Snapshot {
            partitions: vec![view("a", 0, 10, Some(4), false)],
        };
        theirs.partitions[0].owned = None;
        let mut w = GroupWatch::new(cfg());
        assert!(!w.observe(t0, &theirs).rejoin);
        assert!(!w.observe(t0 + Duration::from_secs(9), &theirs).rejoin);
        let v = w.observe(t0 + Duration::from_secs(10), &theirs);
        assert!(v.rejoin, "idle while a backlog waits");
        assert!(v.stalled.is_empty(), "not yet stalled: {v:?}");
        // After the rejoin, the member gets as long again before the next.
        w.rejoined(t0 + Duration::from_secs(10));
        assert!(!w.observe(t0 + Duration::from_secs(11), &theirs).rejoin);
        assert!(!w.observe(t0 + Duration::from_secs(20), &theirs).rejoin);
        assert!(w.observe(t0 + Duration::from_secs(21), &theirs).rejoin);
        // A member with work of its own waits for the stall threshold.
        let mut busy = theirs.clone();
        busy.partitions.push(view("b", 0, 5, Some(5), true));
        let mut w2 = GroupWatch::new(cfg());
        w2.observe(t0, &busy);
        assert!(!w2.observe(t0 + Duration::from_secs(30), &busy).rejoin);
        assert!(w2.observe(t0 + Duration::from_secs(61), &busy).rejoin);
    }

    #[test]
    fn a_backlog_that_does_not_move_is_stalled_and_progress_clears_it() {
        let t0 = Instant::now();
        let mut w = GroupWatch::new(cfg());
        let stuck = Snapshot {
            partitions: vec![view("a", 0, 10, Some(4), true)],
        };
        assert!(w.observe(t0, &stuck).healthy());
        let v = w.observe(t0 + Duration::from_secs(61), &stuck);
        assert_eq!(v.stalled, vec![("a".to_owned(), 0)]);
        assert!(!v.rejoin, "this member's own: slow, not a gap");
        // The same stall on a partition another member holds: rejoin.
        let mut w2 = GroupWatch::new(cfg());
        let mut theirs = stuck.clone();
        theirs.partitions[0].owned = None;
        theirs.partitions[0].mine = false;
        w2.observe(t0, &theirs);
        assert!(w2.observe(t0 + Duration::from_secs(61), &theirs).rejoin);
        let moved = Snapshot {
            partitions: vec![view("a", 0, 12, Some(6), true)],
        };
        assert!(w.observe(t0 + Duration::from_secs(62), &moved).healthy());
    }

    #[test]
    fn another_members_backlog_that_waits_while_this_one_commits_is_stalled_early() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // Its own partition "a" commits; "b" is another member's (ownership
        // unknown, as Tansu 0.6 reports it) and its backlog does not move.
        let at = |mine_committed: i64, end_b: i64| {
            let mut b = view("b", 0, end_b, Some(3), false);
            b.owned = None;
            Snapshot {
                partitions: vec![view("a", 0, 100, Some(mine_committed), true), b],
            }
        };
        let mut w = GroupWatch::new(cfg());
        assert!(w.observe(t0, &at(10, 5)).healthy());
        assert!(w.observe(t0 + s(10), &at(20, 6)).healthy());
        assert!(w.observe(t0 + s(19), &at(30, 7)).healthy());
        let v = w.observe(t0 + s(20), &at(40, 8));
        assert_eq!(v.stalled, vec![("b".to_owned(), 0)]);
        assert!(v.rejoin, "its owner idles while this member works");
        // After the rejoin: still reported, but the next rejoin waits.
        w.rejoined(t0 + s(21));
        let v = w.observe(t0 + s(30), &at(50, 9));
        assert_eq!(v.stalled.len(), 1);
        assert!(!v.rejoin, "one early rejoin per period: {v:?}");
        assert!(w.observe(t0 + s(41), &at(60, 9)).rejoin);
        // Its owner commits again: healthy at once.
        let mut moved = at(70, 9);
        moved.partitions[1].committed = Some(9);
        assert!(w.observe(t0 + s(42), &moved).healthy());

        // The same wait while this member's own commits do not move (the
        // database or broker is out for everyone): only the stall
        // threshold counts.
        let mut w = GroupWatch::new(cfg());
        for secs in [0, 10, 20, 59] {
            let v = w.observe(t0 + s(secs), &at(10, 5));
            assert!(v.healthy() && !v.rejoin, "at {secs} s: {v:?}");
        }
        assert!(w.observe(t0 + s(60), &at(10, 5)).rejoin);
        // This member's commits moved only before the wait began: no
        // evidence about now.
        let mut w = GroupWatch::new(cfg());
        let mut before = at(10, 5);
        before.partitions[1].committed = Some(2);
        w.observe(t0, &before);
        w.observe(t0 + s(5), &at(20, 5));
        let v = w.observe(t0 + s(30), &at(20, 5));
        assert!(v.healthy() && !v.rejoin, "{v:?}");
    }

    #[test]
    fn a_caught_up_partition_is_never_stalled() {
        let t0 = Instant::now();
        let mut w = GroupWatch::new(cfg());
        let idle = Snapshot {
            partitions: vec![
                view("a", 0, 10, Some(10), true),
                view("b", 0, 0, None, true),
            ],
        };
        for s in [0, 100, 1000] {
            assert!(w.observe(t0 + Duration::from_secs(s), &idle).healthy());
        }
    }

    #[test]
    fn unknown_ownership_keeps_the_clock_running() {
        let t0 = Instant::now();
        let mut w = GroupWatch::new(cfg());
        let unowned = Snapshot {
            partitions: vec![view("a", 0, 1, None, false)],
        };
        let mut unknown = unowned.clone();
        unknown.partitions[0].owned = None;
        w.observe(t0, &unowned);
        w.observe(t0 + Duration::from_secs(10), &unknown);
        assert_eq!(
            w.observe(t0 + Duration::from_secs(16), &unowned)
                .unowned
                .len(),
            1
        );
        w.rejoined(t0 + Duration::from_secs(16));
        assert!(
            w.observe(t0 + Duration::from_secs(17), &unowned)
                .unowned
                .is_empty()
        );
    }

    #[test]
    fn a_backlog_that_only_grows_is_behind_and_one_that_shrinks_is_not() {
        let t0 = Instant::now();
        let mut w = GroupWatch::new(cfg());
        // Commits move (not stalled) but the backlog grows for 2 minutes.
        let at = |s: u64, end: i64, committed: i64| {
            (
                t0 + Duration::from_secs(s),
                Snapshot {
                    partitions: vec![view("a", 0, end, Some(committed), true)],
                },
            )
        };
        for (s, end, c) in [(0, 10, 5), (60, 40, 20), (119, 90, 30)] {
            let (t, snap) = at(s, end, c);
            assert!(w.observe(t, &snap).healthy());
        }
        let (t, snap) = at(120, 130, 40);
        assert_eq!(w.observe(t, &snap).behind, vec![("a".to_owned(), 0)]);
        // It shrinks: fine again, and the window starts over.
        let (t, snap) = at(130, 130, 100);
        assert!(w.observe(t, &snap).healthy());
        let (t, snap) = at(200, 200, 150);
        assert!(w.observe(t, &snap).healthy());
    }

    fn encode(version: i16, topics: &[(&str, &[i32])], user: &[u8]) -> Vec<u8> {
        let mut b = version.to_be_bytes().to_vec();
        b.extend((topics.len() as i32).to_be_bytes());
        for (t, ps) in topics {
            b.extend((t.len() as i16).to_be_bytes());
            b.extend(t.as_bytes());
            b.extend((ps.len() as i32).to_be_bytes());
            for p in *ps {
                b.extend(p.to_be_bytes());
            }
        }
        b.extend((user.len() as i32).to_be_bytes());
        b.extend(user);
        b
    }

    #[test]
    fn assignments_decode_and_garbage_is_an_error_not_a_panic() {
        let b = encode(0, &[("x.orders", &[0, 2]), ("y", &[1])], b"ud");
        assert_eq!(
            parse_assignment(&b).unwrap(),
            vec![
                ("x.orders".into(), 0),
                ("x.orders".into(), 2),
                ("y".into(), 1)
            ]
        );
        assert_eq!(parse_assignment(&[]).unwrap(), vec![]);
        for cut in 1..b.len() - 6 {
            assert!(parse_assignment(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut neg = encode(0, &[], b"");
        neg[2..6].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(parse_assignment(&neg).is_err());
    }
}
