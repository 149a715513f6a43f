use std::time::{Duration, Instant};

use super::*;

const A: &str = "o2c/v1/stores/s1/agents/A1/status";
const B: &str = "o2c/v1/stores/s2/agents/A1/status";

fn cfg() -> DeliveryConfig {
    DeliveryConfig {
        first_retry: Duration::from_millis(200),
        max_retry: Duration::from_secs(1),
        give_up_after: Duration::from_secs(10),
    }
}

fn rec(p: i32, o: i64) -> RecordPos {
    (("t".to_owned(), p), o)
}

fn msg(topic: &str, body: u32, records: &[RecordPos]) -> Outgoing<u32> {
    Outgoing {
        topic: topic.to_owned(),
        body,
        records: records.to_vec(),
    }
}

/// Connected, with `messages` pushed and written as pkids 1, 2, ...
fn sent(d: &mut Delivery<u32>, records: &[RecordPos], messages: Vec<Outgoing<u32>>) -> Vec<u32> {
    d.handle_connected();
    d.push(records, messages);
    let out = d.poll_transmit();
    for (i, _) in out.iter().enumerate() {
        d.handle_written(u16::try_from(i + 1).unwrap());
    }
    out.into_iter().map(|(_, _, b)| b).collect()
}

#[test]
fn a_delivered_message_commits_its_records_and_a_record_without_one_at_once() {
    let mut d = Delivery::new(cfg());
    let now = Instant::now();
    let bodies = sent(
        &mut d,
        &[rec(0, 5), rec(0, 6)],
        vec![msg(A, 1, &[rec(0, 6)])],
    );
    assert_eq!(bodies, [1]);
    // Offset 5 made no message; 6 is in flight.
    assert_eq!(d.poll_commits(), vec![(("t".to_owned(), 0), 6)]);
    assert_eq!(d.handle_ack(now, 1, true), None);
    assert_eq!(d.poll_commits(), vec![(("t".to_owned(), 0), 7)]);
    assert!(d.poll_commits().is_empty(), "nothing new to commit");
    assert_eq!(d.backlog(), 0);
}

#[test]
fn no_matching_subscribers_holds_the_commit_and_retries_with_backoff_until_delivered() {
    let mut d = Delivery::new(cfg());
    let t0 = Instant::now();
    sent(&mut d, &[rec(0, 1)], vec![msg(A, 1, &[rec(0, 1)])]);
    assert!(d.handle_ack(t0, 1, false).is_none());
    assert_eq!(d.poll_commits(), vec![(("t".to_owned(), 0), 1)]);
    assert!(d.poll_transmit().is_empty(), "not before the backoff");
    // A later message of the same topic waits behind it.
    d.push(&[rec(0, 2)], vec![msg(A, 2, &[rec(0, 2)])]);
    assert!(d.poll_transmit().is_empty());
    assert_eq!(d.poll_timeout(), Some(t0 + Duration::from_millis(200)));
    // At the retry, only the oldest probes.
    let t1 = t0 + Duration::from_millis(200);
    assert!(d.handle_timeout(t1).is_empty());
    let probe = d.poll_transmit();
    assert_eq!(probe.iter().map(|p| p.2).collect::<Vec<_>>(), [1]);
    d.handle_written(7);
    // Still no session: the backoff doubles.
    assert!(d.handle_ack(t1, 7, false).is_none());
    assert_eq!(d.poll_timeout(), Some(t1 + Duration::from_millis(400)));
    let t2 = t1 + Duration::from_millis(400);
    d.handle_timeout(t2);
    assert_eq!(d.poll_transmit().len(), 1);
    d.handle_written(8);
    // The agent subscribed: delivered, and the waiting one goes at once.
    assert!(d.handle_ack(t2, 8, true).is_none());
    let rest = d.poll_transmit();
    assert_eq!(rest.iter().map(|p| p.2).collect::<Vec<_>>(), [2]);
    assert_eq!(d.poll_commits(), vec![(("t".to_owned(), 0), 2)]);
    d.handle_written(9);
    d.handle_ack(t2, 9, true);
    assert_eq!(d.poll_commits(), vec![(("t".to_owned(), 0), 3)]);
    assert_eq!(d.poll_timeout(), None);
}

#[test]
fn the_backoff_stops_doubling_at_its_maximum() {
    let mut d = Delivery::new(cfg());
    let mut now = Instant::now();
    sent(&mut d, &[rec(0, 1)], vec![msg(A, 1, &[rec(0, 1)])]);
    let mut pkid = 1;
    let mut waits = Vec::new();
    for _ in 0..5 {
        d.handle_ack(now, pkid, false);
        let at = d.poll_timeout().unwrap();
        waits.push(at - now);
        now = at;
        d.handle_timeout(now);
        assert_eq!(d.poll_transmit().len(), 1);
        pkid += 1;
        d.handle_written(pkid);
    }
    let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, [200, 400, 800, 1000, 1000]);
}

#[test]
fn another_agents_messages_are_not_held_up() {
    let mut d = Delivery::new(cfg());
    let now = Instant::now();
    sent(&mut d, &[rec(0, 1)], vec![msg(A, 1, &[rec(0, 1)])]);
    d.handle_ack(now, 1, false);
    d.push(&[rec(1, 1)], vec![msg(B, 2, &[rec(1, 1)])]);
    let out = d.poll_transmit();
    assert_eq!(out.iter().map(|p| p.2).collect::<Vec<_>>(), [2]);
    d.handle_written(2);
    d.handle_ack(now, 2, true);
    // Partition 1 commits; partition 0 stays at the undelivered record.
    let commits = d.poll_commits();
    assert!(commits.contains(&(("t".to_owned(), 1), 2)), "{commits:?}");
    assert!(commits.contains(&(("t".to_owned(), 0), 1)), "{commits:?}");
}

#[test]
fn a_message_undelivered_past_the_give_up_time_is_given_up_and_committed() {
    let mut d = Delivery::new(cfg());
    let t0 = Instant::now();
    sent(
        &mut d,
        &[rec(0, 1), rec(0, 2)],
        vec![msg(A, 1, &[rec(0, 1)]), msg(A, 2, &[rec(0, 2)])],
    );
    d.handle_ack(t0, 1, false);
    d.handle_ack(t0 + Duration::from_secs(5), 2, false);
    // Message 1 probes and fails past its time: given up at the ack.
    d.handle_timeout(t0 + Duration::from_secs(9));
    assert_eq!(d.poll_transmit().len(), 1);
    d.handle_written(3);
    let t1 = t0 + Duration::from_secs(10);
    let gone = d.handle_ack(t1, 3, false).expect("given up");
    assert_eq!((gone.body, gone.topic.as_str()), (1, A));
    assert_eq!(gone.failed_for, Duration::from_secs(10));
    assert_eq!(d.poll_commits(), vec![(("t".to_owned(), 0), 2)]);
    // Message 2 is given up by the timer once its own time is past.
    let t2 = t0 + Duration::from_secs(15);
    let gone = d.handle_timeout(t2);
    assert_eq!(gone.iter().map(|g| g.body).collect::<Vec<_>>(), [2]);
    assert_eq!(d.poll_commits(), vec![(("t".to_owned(), 0), 3)]);
    assert_eq!((d.backlog(), d.poll_timeout()), (0, None));
    // The topic is not backing off any more: the next message goes at once.
    d.push(&[rec(0, 3)], vec![msg(A, 3, &[rec(0, 3)])]);
    assert_eq!(d.poll_transmit().len(), 1);
}

#[test]
fn a_lost_connection_sends_what_was_in_flight_again_and_keeps_the_pkid_order() {
    let mut d = Delivery::new(cfg());
    let now = Instant::now();
    d.handle_connected();
    d.push(
        &[rec(0, 1), rec(0, 2), rec(0, 3), rec(0, 4)],
        (1..=4)
            .map(|n| msg(A, n, &[rec(0, i64::from(n))]))
            .collect(),
    );
    assert_eq!(d.poll_transmit().len(), 4);
    // 1 written; 2 drained from the client's queue by the disconnect; 3
    // and 4 handed over afterwards stay queued in the client.
    d.handle_written(1);
    d.handle_disconnected(now, 1);
    assert!(d.poll_transmit().is_empty(), "nothing while disconnected");
    // Reconnected: 3 and 4 are written first (they were queued), then the
    // lost ones go again.
    d.handle_connected();
    let again = d.poll_transmit();
    assert_eq!(again.iter().map(|p| p.2).collect::<Vec<_>>(), [1, 2]);
    for pkid in [1, 2, 3, 4] {
        d.handle_written(pkid);
    }
    // pkids map to 3, 4, 1, 2.
    d.handle_ack(now, 1, true);
    d.handle_ack(now, 2, true);
    assert_eq!(d.poll_commits(), vec![(("t".to_owned(), 0), 1)]);
    d.handle_ack(now, 3, true);
    assert_eq!(d.poll_commits(), vec![(("t".to_owned(), 0), 2)]);
    d.handle_ack(now, 4, true);
    assert_eq!(d.poll_commits(), vec![(("t".to_owned(), 0), 5)]);
}

#[test]
fn a_message_carrying_several_records_commits_them_once_delivered() {
    let mut d = Delivery::new(cfg());
    let now = Instant::now();
    sent(
        &mut d,
        &[rec(0, 1), rec(0, 2)],
        vec![msg(A, 1, &[rec(0, 1), rec(0, 2)]), msg(B, 2, &[rec(0, 2)])],
    );
    d.handle_ack(now, 1, true);
    // Record 2 is also in B's message, still in flight.
    assert_eq!(d.poll_commits(), vec![(("t".to_owned(), 0), 2)]);
    d.handle_ack(now, 2, true);
    assert_eq!(d.poll_commits(), vec![(("t".to_owned(), 0), 3)]);
}

#[test]
fn after_a_reset_nothing_is_committed_for_the_old_records() {
    let mut d = Delivery::new(cfg());
    let now = Instant::now();
    sent(&mut d, &[rec(0, 1)], vec![msg(A, 1, &[rec(0, 1)])]);
    d.reset();
    assert!(d.poll_commits().is_empty());
    // The message is still delivered; its ack commits nothing.
    d.handle_ack(now, 1, true);
    assert!(d.poll_commits().is_empty());
    assert_eq!(d.backlog(), 0);
}
