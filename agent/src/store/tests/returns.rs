//! Returns in the store: checked against a local order and its earlier
//! returns, taken unverified for an order not known here, idempotent, and
//! kept apart from their order's status when the cloud answers.

use o2c_protocol::returns::{RefundTender, Refusal, ReturnLine, ReturnRequested};
use o2c_protocol::{CloudStatus, EventId, ReturnId, ReturnStatus, StatusUpdate};

use super::*;

/// An order of `units` × SKU-1 at 1499, paid by card `tok_a` (or by
/// `payments` when given).
fn sale(units: i64, payments: Option<Vec<Payment>>) -> Order {
    let total = 1499 * units;
    let mut o = order_with(
        payments.unwrap_or_else(|| {
            vec![Payment::Card {
                amount: Money::new(total, cad()),
                token: "tok_a".into(),
                brand: "visa".into(),
                last4: "4242".into(),
                authorization: CardAuthorization::Online,
            }]
        }),
        1499,
    );
    o.lines[0].quantity = units;
    o
}

fn card(token: &str) -> RefundTender {
    RefundTender::Card {
        token: token.into(),
        brand: "visa".into(),
        last4: "4242".into(),
    }
}

fn new_return(order_id: OrderId, qty: i64, refund: RefundTender, key: &str) -> NewReturn {
    NewReturn {
        request: ReturnRequested {
            order_id,
            return_id: ReturnId::from_uuid(uuid::Uuid::now_v7()).unwrap(),
            terminal_id: TerminalId::new("T1").unwrap(),
            lines: vec![ReturnLine {
                sku: "SKU-1".into(),
                quantity: qty,
            }],
            refund,
            reason: "damaged".into(),
        },
        idempotency_key: key.into(),
        request_sha256: [qty as u8; 32],
        traceparent: None,
    }
}

async fn open(dir: &Path) -> Store {
    Store::open(opts(dir), StoreMetrics::default()).unwrap()
}

async fn sold(store: &Store, order: Order) -> OrderId {
    store
        .capture(new_capture(order, "sale"))
        .await
        .unwrap()
        .order_id
}

fn view(out: &ReturnOutcome) -> ReturnView {
    serde_json::from_str(&out.response_json).unwrap()
}

#[tokio::test]
async fn a_return_is_checked_against_the_order_and_its_earlier_returns() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let id = sold(&store, sale(2, None)).await;
    let first = store
        .request_return(new_return(id, 1, card("tok_a"), "r1"))
        .await
        .unwrap();
    assert_eq!(first.seq, Some(Seq::new(2).unwrap()));
    let v = view(&first);
    assert!(v.verified_locally);
    assert_eq!(
        (v.amount_minor, v.currency.as_deref()),
        (Some(1499), Some("CAD"))
    );
    assert_eq!(v.status, ReturnState::Requested);
    assert_eq!(v.sync, OrderSyncState::Pending);
    // The event is in the outbox, about its order, in its order's trace.
    let batch = store.pending_batch(1, 10, usize::MAX).await.unwrap();
    let env = Envelope::decode(&batch[0].envelope).unwrap();
    env.validate_store_event().unwrap();
    match &env.payload {
        Event::ReturnRequested(r) => {
            assert_eq!((r.order_id, r.return_id), (id, first.return_id));
        }
        other => panic!("unexpected {other:?}"),
    }
    let order_trace = store.order(id).await.unwrap().unwrap().traceparent;
    assert_eq!(env.traceparent.map(|t| t.as_str().to_owned()), order_trace);
    // Two more units than are left: refused, naming the line, nothing
    // written.
    let err = store
        .request_return(new_return(id, 2, card("tok_a"), "r2"))
        .await
        .unwrap_err();
    let StoreError::ReturnRefused(refusal) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(refusal.code(), "over_return");
    assert_eq!(refusal.field(), "lines[0].quantity");
    assert_eq!(store.last_seq(), 2);
    // The last unit is still there; then none.
    store
        .request_return(new_return(id, 1, card("tok_a"), "r3"))
        .await
        .unwrap();
    let err = store
        .request_return(new_return(id, 1, RefundTender::Cash {}, "r4"))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::ReturnRefused(Refusal::OverReturn { .. })
    ));
    store.close().await.unwrap();
}

#[tokio::test]
async fn tenders_are_checked_against_the_order_payments() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let id = sold(&store, sale(2, None)).await;
    // Cash for a card sale: fine, the amount from the order's price.
    let cash = store
        .request_return(new_return(id, 1, RefundTender::Cash {}, "cash"))
        .await
        .unwrap();
    assert_eq!(view(&cash).amount_minor, Some(1499));
    assert_eq!(view(&cash).refund, RefundBody(RefundTender::Cash {}));
    // A card the order was not paid with.
    let err = store
        .request_return(new_return(id, 1, card("tok_other"), "other"))
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::ReturnRefused(Refusal::TenderMismatch));
    // A split tender: 1000 on the card cannot take a 1499 refund.
    let split = sold_with(
        &store,
        vec![
            Payment::Card {
                amount: Money::new(1000, cad()),
                token: "tok_b".into(),
                brand: "visa".into(),
                last4: "4242".into(),
                authorization: CardAuthorization::Online,
            },
            Payment::Cash {
                amount: Money::new(1998, cad()),
            },
        ],
    )
    .await;
    let err = store
        .request_return(new_return(split, 1, card("tok_b"), "split"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::ReturnRefused(Refusal::ExceedsTender {
            amount: 1499,
            left: 1000
        })
    );
    store.close().await.unwrap();
}

async fn sold_with(store: &Store, payments: Vec<Payment>) -> OrderId {
    store
        .capture(new_capture(sale(2, Some(payments)), "split-sale"))
        .await
        .unwrap()
        .order_id
}

#[tokio::test]
async fn a_return_of_a_voided_order_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let id = sold(&store, sale(1, None)).await;
    store.cancel(id, "store_void".into(), None).await.unwrap();
    let err = store
        .request_return(new_return(id, 1, RefundTender::Cash {}, "r"))
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::ReturnRefused(Refusal::OrderCancelled));
    assert_eq!(store.last_seq(), 2, "nothing written");
    store.close().await.unwrap();
}

#[tokio::test]
async fn an_order_not_known_here_is_taken_unverified() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let web_order = OrderId::from_uuid(uuid::Uuid::now_v7()).unwrap();
    let out = store
        .request_return(new_return(web_order, 5, card("tok_web"), "r"))
        .await
        .unwrap();
    let v = view(&out);
    assert!(!v.verified_locally);
    assert_eq!((v.amount_minor, v.currency.as_deref()), (None, None));
    let stored = store.stored_return(out.return_id).await.unwrap().unwrap();
    assert_eq!(stored.view(), v, "the stored row reads back as the answer");
    assert_eq!(stored.request.order_id, web_order);
    assert_eq!(store.last_seq(), 1);
    store.close().await.unwrap();
}

#[tokio::test]
async fn the_same_key_replays_and_another_request_under_it_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let id = sold(&store, sale(2, None)).await;
    let first = store
        .request_return(new_return(id, 1, RefundTender::Cash {}, "k"))
        .await
        .unwrap();
    // A retry mints a new return id; the first answer comes back.
    let again = store
        .request_return(new_return(id, 1, RefundTender::Cash {}, "k"))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.seq, None);
    assert_eq!(again.return_id, first.return_id);
    assert_eq!(again.response_json, first.response_json);
    let err = store
        .request_return(new_return(id, 2, RefundTender::Cash {}, "k"))
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::IdempotencyConflict);
    assert_eq!(store.last_seq(), 2);
    store.close().await.unwrap();
}

fn ret_update(
    order_id: OrderId,
    return_id: ReturnId,
    status: CloudStatus,
    secs: i64,
    amount: Option<i64>,
    seq: Option<u64>,
) -> StatusUpdate {
    StatusUpdate {
        order_id,
        status,
        reason: (status == CloudStatus::ReturnRefused).then(|| "over_return".to_owned()),
        ret: Some(ReturnStatus {
            return_id,
            amount: amount.map(|m| Money::new(m, cad())),
            sku: (status == CloudStatus::ReturnRefused).then(|| "SKU-1".to_owned()),
        }),
        event_id: EventId::from_uuid(uuid::Uuid::now_v7()).unwrap(),
        occurred_at: OffsetDateTime::from_unix_timestamp(1_700_000_000 + secs).unwrap(),
        seq,
    }
}

#[tokio::test]
async fn return_statuses_go_to_the_return_never_to_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let id = sold(&store, sale(2, None)).await;
    let paid = StatusUpdate {
        order_id: id,
        status: CloudStatus::Paid,
        reason: None,
        ret: None,
        event_id: EventId::from_uuid(uuid::Uuid::now_v7()).unwrap(),
        occurred_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        seq: None,
    };
    store.apply_statuses(vec![paid], 1).await.unwrap();
    let rid = store
        .request_return(new_return(id, 1, card("tok_a"), "r"))
        .await
        .unwrap()
        .return_id;
    let accepted = ret_update(id, rid, CloudStatus::ReturnAccepted, 10, Some(1400), None);
    let refunded = ret_update(id, rid, CloudStatus::ReturnRefunded, 20, None, None);
    // Accepted later than refunded, by time: refunded still outranks it.
    let late = ret_update(id, rid, CloudStatus::ReturnAccepted, 30, Some(1), None);
    let unknown = ret_update(
        id,
        ReturnId::from_uuid(uuid::Uuid::now_v7()).unwrap(),
        CloudStatus::ReturnAccepted,
        10,
        None,
        None,
    );
    let mut bare = ret_update(id, rid, CloudStatus::ReturnRefunded, 40, None, None);
    bare.ret = None;
    let outcomes = store
        .apply_statuses(
            vec![accepted.clone(), refunded, late, unknown, bare, accepted],
            2,
        )
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            StatusOutcome::Applied,
            StatusOutcome::Applied,
            StatusOutcome::Stale,
            StatusOutcome::UnknownReturn,
            StatusOutcome::UnknownReturn,
            StatusOutcome::Duplicate,
        ]
    );
    let v = store.stored_return(rid).await.unwrap().unwrap().view();
    assert_eq!(v.status, ReturnState::Refunded);
    assert_eq!(v.cloud_status.as_deref(), Some("return_refunded"));
    assert_eq!(v.amount_minor, Some(1400), "the cloud's amount, kept");
    assert!(v.cloud_status_received_at.is_some());
    let order = store.order(id).await.unwrap().unwrap();
    assert_eq!(
        order.cloud_status,
        Some(CloudStatus::Paid),
        "order untouched"
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn with_sequences_the_greater_wins_and_a_refusal_frees_the_units() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let id = sold(&store, sale(2, None)).await;
    let rid = store
        .request_return(new_return(id, 2, RefundTender::Cash {}, "r"))
        .await
        .unwrap()
        .return_id;
    let refused = ret_update(id, rid, CloudStatus::ReturnRefused, 10, None, Some(9));
    let older = ret_update(
        id,
        rid,
        CloudStatus::ReturnAccepted,
        20,
        Some(2998),
        Some(8),
    );
    let outcomes = store.apply_statuses(vec![refused, older], 1).await.unwrap();
    assert_eq!(outcomes, vec![StatusOutcome::Applied, StatusOutcome::Stale]);
    let v = store.stored_return(rid).await.unwrap().unwrap().view();
    assert_eq!(v.status, ReturnState::Refused);
    assert_eq!(v.cloud_reason.as_deref(), Some("over_return"));
    assert_eq!(v.cloud_sku.as_deref(), Some("SKU-1"));
    assert_eq!(
        v.amount_minor,
        Some(2998),
        "the local amount without the cloud's"
    );
    // The refused return gave nothing back: both units can be returned.
    store
        .request_return(new_return(id, 2, RefundTender::Cash {}, "again"))
        .await
        .unwrap();
    store.close().await.unwrap();
}

#[tokio::test]
async fn acks_mark_returns_synced_or_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let id = sold(&store, sale(2, None)).await;
    let a = store
        .request_return(new_return(id, 1, RefundTender::Cash {}, "a"))
        .await
        .unwrap();
    let b = store
        .request_return(new_return(id, 1, card("tok_a"), "b"))
        .await
        .unwrap();
    let rejection = Rejection {
        seq: b.seq.unwrap(),
        event_id: None,
        code: "schema_invalid".into(),
        reason: "no".into(),
    };
    let out = store.apply_ack(&ack(3, vec![rejection]), 5).await.unwrap();
    assert_eq!((out.acked, out.rejected), (2, 1));
    let sync = |r: ReturnId| {
        let store = store.clone();
        async move { store.stored_return(r).await.unwrap().unwrap() }
    };
    assert_eq!(sync(a.return_id).await.sync, OrderSyncState::Synced);
    let rejected = sync(b.return_id).await;
    assert_eq!(rejected.sync, OrderSyncState::Rejected);
    assert_eq!(rejected.reject_code.as_deref(), Some("schema_invalid"));
    assert_eq!(
        store.order(id).await.unwrap().unwrap().sync,
        OrderSyncState::Synced
    );
    // The rejected return never reached the cloud: its unit is still
    // there to return.
    store
        .request_return(new_return(id, 1, card("tok_a"), "c"))
        .await
        .unwrap();
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_resync_asks_about_the_synced_returns_not_final_yet() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let id = sold(&store, sale(4, None)).await;
    let mut ids = Vec::new();
    for (key, refund) in [
        ("cash", RefundTender::Cash {}),
        ("card", card("tok_a")),
        ("refused", RefundTender::Cash {}),
        ("card-done", card("tok_a")),
    ] {
        let r = store
            .request_return(new_return(id, 1, refund, key))
            .await
            .unwrap();
        ids.push(r.return_id);
    }
    let none = ReturnId::from_parts(0, [0; 10]);
    // Not synced yet: the cloud cannot know them.
    assert!(store.resync_returns(none, 0, 10).await.unwrap().is_empty());
    store.apply_ack(&ack(5, vec![]), 5).await.unwrap();
    assert_eq!(store.resync_returns(none, 0, 10).await.unwrap(), ids);
    // Final: a cash return accepted, a refused one, a card one refunded. A
    // card return accepted waits for its refund.
    let updates = vec![
        ret_update(id, ids[0], CloudStatus::ReturnAccepted, 1, Some(1499), None),
        ret_update(id, ids[1], CloudStatus::ReturnAccepted, 1, Some(1499), None),
        ret_update(id, ids[2], CloudStatus::ReturnRefused, 1, None, None),
        ret_update(id, ids[3], CloudStatus::ReturnRefunded, 1, Some(1499), None),
    ];
    store.apply_statuses(updates, 6).await.unwrap();
    assert_eq!(
        store.resync_returns(none, 0, 10).await.unwrap(),
        vec![ids[1]]
    );
    // Paged by id, and bounded by time.
    assert!(
        store
            .resync_returns(ids[1], 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .resync_returns(none, i64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
    store.close().await.unwrap();
}
