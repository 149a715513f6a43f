//! Closing business days: manifests in the outbox, and pruning kept
//! within closed days.

use o2c_protocol::day::{DayClosed, EventDigest, Tender};

use super::*;
use crate::business_day::BusinessDay;

const DAY_SECS: i64 = 86_400;

fn utc_day() -> BusinessDay {
    BusinessDay::new(Default::default(), Default::default())
}

fn skewed(dir: &Path, days_back: i64) -> Store {
    let mut o = opts(dir);
    o.clock_skew_secs = -days_back * DAY_SECS;
    Store::open(o, StoreMetrics::default()).unwrap()
}

async fn manifests(store: &Store) -> Vec<DayClosed> {
    store
        .pending_batch(0, 1000, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| DayClosed::decode(&e.envelope).ok())
        .collect()
}

#[tokio::test]
async fn each_overdue_day_gets_one_manifest_of_its_own_events() {
    let dir = tempfile::tempdir().unwrap();
    // Two days ago: a split sale (card offline + cash), a cash sale, and a
    // void of the cash sale.
    let store = skewed(dir.path(), 2);
    assert!(store.close_days(utc_day()).await.unwrap().closed.is_empty());
    let split = order_with(
        vec![
            Payment::Card {
                amount: Money::new(600, cad()),
                token: "tok_1".into(),
                brand: "visa".into(),
                last4: "4242".into(),
                authorization: CardAuthorization::Offline,
            },
            Payment::Cash {
                amount: Money::new(400, cad()),
            },
        ],
        1000,
    );
    store.capture(new_capture(split, "a")).await.unwrap();
    let cash = capture(&store, 250, "b").await;
    store
        .cancel(cash.order_id, "store_void".into(), None)
        .await
        .unwrap();
    store.close().await.unwrap();
    // Yesterday: one more sale.
    let store = skewed(dir.path(), 1);
    capture(&store, 70, "c").await;
    store.close().await.unwrap();

    let store = skewed(dir.path(), 0);
    let done = store.close_days(utc_day()).await.unwrap();
    let today = OffsetDateTime::now_utc().date();
    let dates: Vec<time::Date> = done.closed.iter().map(|c| c.business_date).collect();
    assert_eq!(
        dates,
        vec![
            today - time::Duration::days(2),
            today - time::Duration::days(1)
        ]
    );
    let seqs: Vec<(u64, Option<(u64, u64)>)> = done
        .closed
        .iter()
        .map(|c| {
            (
                c.manifest_seq.get(),
                c.range.map(|r| (r.first.get(), r.last.get())),
            )
        })
        .collect();
    assert_eq!(seqs, vec![(5, Some((1, 3))), (6, Some((4, 4)))]);
    assert!(done.wait_ms > 0 && done.wait_ms <= 3_600_000);

    let m = manifests(&store).await;
    assert_eq!(m.len(), 2);
    let first = &m[0].payload;
    assert_eq!(
        (first.tally.events, first.tally.orders, first.tally.voids),
        (3, 2, 1)
    );
    assert_eq!(first.tally.totals[0].gross.minor, 1250);
    assert_eq!(first.tally.totals[0].voided.minor, 250);
    let tenders: Vec<(Tender, i64)> = first
        .tally
        .tenders
        .iter()
        .map(|t| (t.tender, t.amount.minor))
        .collect();
    assert_eq!(
        tenders,
        vec![(Tender::CardOffline, 600), (Tender::Cash, 650)]
    );
    let mut digest = EventDigest::default();
    for e in store.pending_batch(0, 3, usize::MAX).await.unwrap() {
        digest.add(&e.event_id);
    }
    assert_eq!(first.event_ids_sha256, digest.finish());
    assert!(m.iter().all(|d| d.validate().is_ok()));

    // Nothing more is due; a restart does not close a day twice.
    assert!(store.close_days(utc_day()).await.unwrap().closed.is_empty());
    store.close().await.unwrap();
    let store = skewed(dir.path(), 0);
    assert!(store.close_days(utc_day()).await.unwrap().closed.is_empty());
    // Today's next sale opens today's range after the manifests.
    assert_eq!(capture(&store, 10, "d").await.seq.map(Seq::get), Some(7));
    store.close().await.unwrap();
}

#[tokio::test]
async fn acked_rows_of_a_day_not_yet_closed_are_not_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let store = skewed(dir.path(), 1);
    for i in 0..3 {
        capture(&store, 10, &format!("k{i}")).await;
    }
    store.apply_ack(&ack(3, vec![]), 100).await.unwrap();
    assert_eq!(store.prune_acked(101).await.unwrap(), 0, "the day is open");
    store.close().await.unwrap();
    let store = skewed(dir.path(), 0);
    let done = store.close_days(utc_day()).await.unwrap();
    assert_eq!(done.closed.len(), 1);
    assert_eq!(store.prune_acked(100).await.unwrap(), 0, "strictly older");
    assert_eq!(store.prune_acked(101).await.unwrap(), 3);
    assert_eq!(store.last_seq(), 4, "the manifest, pending");
    store.close().await.unwrap();
}
