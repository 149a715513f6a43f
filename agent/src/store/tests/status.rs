//! Cloud status updates: applied once per event id, in sequence order (in
//! time order for updates without one), one status message's updates as
//! one command.

use o2c_protocol::{CloudStatus, EventId, OrderId, StatusUpdate};
use time::OffsetDateTime;

use super::*;

/// One update as a message of its own.
async fn apply_one(
    store: &Store,
    u: &StatusUpdate,
    now_ms: i64,
) -> Result<StatusOutcome, StoreError> {
    let outcomes = store.apply_statuses(vec![u.clone()], now_ms).await?;
    assert_eq!(outcomes.len(), 1, "one outcome per update");
    Ok(outcomes[0])
}

#[tokio::test]
async fn status_updates_apply_once_and_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(opts(dir.path()), StoreMetrics::default()).unwrap();
    let id = capture(&store, 10, "k").await.order_id;
    let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let upd = |status, secs: i64| StatusUpdate {
        ret: None,
        order_id: id,
        status,
        reason: None,
        event_id: EventId::from_uuid(uuid::Uuid::now_v7()).unwrap(),
        occurred_at: t + time::Duration::seconds(secs),
        seq: None,
    };
    let paid = upd(CloudStatus::Paid, 10);
    assert_eq!(
        apply_one(&store, &paid, 1).await,
        Ok(StatusOutcome::Applied)
    );
    assert_eq!(
        apply_one(&store, &paid, 1).await,
        Ok(StatusOutcome::Duplicate)
    );
    let older = upd(CloudStatus::Accepted, 5);
    assert_eq!(apply_one(&store, &older, 1).await, Ok(StatusOutcome::Stale));
    let mut cancelled = upd(CloudStatus::Cancelled, 20);
    cancelled.reason = Some("payment_declined".into());
    assert_eq!(
        apply_one(&store, &cancelled, 1).await,
        Ok(StatusOutcome::Applied)
    );
    let o = store.order(id).await.unwrap().unwrap();
    assert_eq!(o.cloud_status, Some(CloudStatus::Cancelled));
    assert_eq!(o.cloud_reason.as_deref(), Some("payment_declined"));
    assert_eq!(o.cloud_status_received_at_ms, Some(1));
    // A stale update changes neither the status nor when it was received.
    let late = upd(CloudStatus::Paid, 15);
    assert_eq!(apply_one(&store, &late, 99).await, Ok(StatusOutcome::Stale));
    let o = store.order(id).await.unwrap().unwrap();
    assert_eq!(o.cloud_status, Some(CloudStatus::Cancelled));
    assert_eq!(o.cloud_status_received_at_ms, Some(1));
    let mut unknown = upd(CloudStatus::Paid, 1);
    unknown.order_id = OrderId::from_uuid(uuid::Uuid::now_v7()).unwrap();
    assert_eq!(
        apply_one(&store, &unknown, 1).await,
        Ok(StatusOutcome::UnknownOrder)
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_status_message_applies_its_updates_in_order_as_one_command() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(opts(dir.path()), StoreMetrics::default()).unwrap();
    let a = capture(&store, 10, "a").await.order_id;
    let b = capture(&store, 10, "b").await.order_id;
    let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let upd = |order_id, status, secs: i64| StatusUpdate {
        ret: None,
        order_id,
        status,
        reason: None,
        event_id: EventId::from_uuid(uuid::Uuid::now_v7()).unwrap(),
        occurred_at: t + time::Duration::seconds(secs),
        seq: None,
    };
    let a_paid = upd(a, CloudStatus::Paid, 10);
    let a_done = upd(a, CloudStatus::Completed, 20);
    let b_paid = upd(b, CloudStatus::Paid, 15);
    let stranger = upd(
        OrderId::from_uuid(uuid::Uuid::now_v7()).unwrap(),
        CloudStatus::Paid,
        1,
    );
    let outcomes = store
        .apply_statuses(
            vec![a_paid.clone(), b_paid, a_done, a_paid.clone(), stranger],
            1,
        )
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            StatusOutcome::Applied,
            StatusOutcome::Applied,
            StatusOutcome::Applied,
            StatusOutcome::Duplicate,
            StatusOutcome::UnknownOrder,
        ]
    );
    let status = |id| {
        let store = &store;
        async move { store.order(id).await.unwrap().unwrap().cloud_status }
    };
    assert_eq!(status(a).await, Some(CloudStatus::Completed));
    assert_eq!(status(b).await, Some(CloudStatus::Paid));
    let listed = store.list_orders(None, 10).await.unwrap();
    assert!(
        listed
            .iter()
            .all(|o| o.cloud_status_received_at_ms == Some(1)),
        "{listed:?}"
    );
    // The same message again changes nothing.
    assert_eq!(
        store.apply_statuses(vec![a_paid], 1).await.unwrap(),
        vec![StatusOutcome::Duplicate]
    );
    store.close().await.unwrap();
}

/// `status` of `order` at `ms` (unix milliseconds) with sequence `seq`.
fn at_ms(order_id: OrderId, status: CloudStatus, ms: i64, seq: Option<u64>) -> StatusUpdate {
    StatusUpdate {
        ret: None,
        order_id,
        status,
        reason: None,
        event_id: EventId::from_uuid(uuid::Uuid::now_v7()).unwrap(),
        occurred_at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap(),
        seq,
    }
}

#[tokio::test]
async fn the_greater_sequence_wins_whatever_the_arrival_order_or_millisecond() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(opts(dir.path()), StoreMetrics::default()).unwrap();
    let id = capture(&store, 10, "k").await.order_id;
    let ms = 1_764_000_000_000;
    let status = |store: &Store| {
        let store = store.clone();
        async move { store.order(id).await.unwrap().unwrap().cloud_status }
    };
    // Completed and paid in one millisecond, completed first: paid (a
    // lower sequence) must not replace it. Time alone let it.
    let completed = at_ms(id, CloudStatus::Completed, ms, Some(50));
    let paid = at_ms(id, CloudStatus::Paid, ms, Some(20));
    assert_eq!(
        apply_one(&store, &completed, 1).await,
        Ok(StatusOutcome::Applied)
    );
    assert_eq!(apply_one(&store, &paid, 2).await, Ok(StatusOutcome::Stale));
    assert_eq!(status(&store).await, Some(CloudStatus::Completed));
    // A greater sequence wins even with an older time; an equal one not.
    let refunded = at_ms(id, CloudStatus::Refunded, ms - 1_000, Some(70));
    assert_eq!(
        apply_one(&store, &refunded, 3).await,
        Ok(StatusOutcome::Applied)
    );
    let same = at_ms(id, CloudStatus::Cancelled, ms + 1_000, Some(70));
    assert_eq!(apply_one(&store, &same, 4).await, Ok(StatusOutcome::Stale));
    assert_eq!(status(&store).await, Some(CloudStatus::Refunded));
    // The stored sequence survives a restart.
    store.close().await.unwrap();
    let store = Store::open(opts(dir.path()), StoreMetrics::default()).unwrap();
    let late = at_ms(id, CloudStatus::Paid, ms + 5_000, Some(69));
    assert_eq!(apply_one(&store, &late, 5).await, Ok(StatusOutcome::Stale));
    assert_eq!(status(&store).await, Some(CloudStatus::Refunded));
    store.close().await.unwrap();
}

#[tokio::test]
async fn updates_without_a_sequence_keep_the_time_rule() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(opts(dir.path()), StoreMetrics::default()).unwrap();
    let a = capture(&store, 10, "a").await.order_id;
    let b = capture(&store, 10, "b").await.order_id;
    let ms = 1_764_000_000_000;
    let status = |id| {
        let store = store.clone();
        async move { store.order(id).await.unwrap().unwrap().cloud_status }
    };
    // From an older cloud: the newest time wins, the later arrival on a tie.
    let outcomes = store
        .apply_statuses(
            vec![
                at_ms(a, CloudStatus::Completed, ms, None),
                at_ms(a, CloudStatus::Paid, ms - 1, None),
                at_ms(a, CloudStatus::Paid, ms, None),
            ],
            1,
        )
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [
            StatusOutcome::Applied,
            StatusOutcome::Stale,
            StatusOutcome::Applied
        ]
    );
    assert_eq!(status(a).await, Some(CloudStatus::Paid));
    // Mixed: a stored status without a sequence is compared by time, and
    // so is an update without one against a stored sequence.
    let seqd = at_ms(b, CloudStatus::Paid, ms, Some(20));
    let unseqd = at_ms(b, CloudStatus::Accepted, ms - 1, None);
    assert_eq!(
        apply_one(&store, &unseqd, 1).await,
        Ok(StatusOutcome::Applied)
    );
    assert_eq!(
        apply_one(&store, &seqd, 1).await,
        Ok(StatusOutcome::Applied)
    );
    let older = at_ms(b, CloudStatus::Completed, ms - 5, None);
    assert_eq!(apply_one(&store, &older, 1).await, Ok(StatusOutcome::Stale));
    let newer = at_ms(b, CloudStatus::Completed, ms + 5, None);
    assert_eq!(
        apply_one(&store, &newer, 1).await,
        Ok(StatusOutcome::Applied)
    );
    assert_eq!(status(b).await, Some(CloudStatus::Completed));
    store.close().await.unwrap();
}
