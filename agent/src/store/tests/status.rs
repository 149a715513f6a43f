//! Cloud status updates: applied once per event id, in time order, one
//! status message's updates as one command.

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
        order_id: id,
        status,
        reason: None,
        event_id: EventId::from_uuid(uuid::Uuid::now_v7()).unwrap(),
        occurred_at: t + time::Duration::seconds(secs),
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
        order_id,
        status,
        reason: None,
        event_id: EventId::from_uuid(uuid::Uuid::now_v7()).unwrap(),
        occurred_at: t + time::Duration::seconds(secs),
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
