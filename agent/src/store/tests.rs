//! Store tests: real SQLite files in a temp dir per test.

use std::path::Path;

use o2c_protocol::{
    Ack, AgentId, CardAuthorization, Currency, Envelope, Event, Fulfillment, Money, Order, OrderId,
    OrderLine, Payment, Rejection, Seq, StoreId, TerminalId,
};
use time::OffsetDateTime;

use super::*;
use crate::metrics::StoreMetrics;

mod day;
mod offline;
mod returns;
mod status;

fn cad() -> Currency {
    Currency::from_code("CAD").unwrap()
}

fn opts(dir: &Path) -> StoreOptions {
    let mut o = StoreOptions::new(
        dir.join("agent.db"),
        StoreId::new("S001").unwrap(),
        AgentId::new("S001-A1").unwrap(),
    );
    o.offline_currency = Some(cad());
    o
}

fn order_with(payments: Vec<Payment>, unit: i64) -> Order {
    Order {
        order_id: OrderId::from_uuid(uuid::Uuid::now_v7()).unwrap(),
        store_id: StoreId::new("S001").unwrap(),
        terminal_id: TerminalId::new("T1").unwrap(),
        currency: cad(),
        lines: vec![OrderLine {
            sku: "SKU-1".into(),
            quantity: 1,
            unit_price: Money::new(unit, cad()),
            category: None,
        }],
        payments,
        fulfillment: Fulfillment::CarryOut {},
        customer: None,
        captured_at: OffsetDateTime::UNIX_EPOCH,
        catalog_version: None,
        stock_check: None,
        channel: None,
        customer_id: None,
    }
}

fn cash_order(amount: i64) -> Order {
    order_with(
        vec![Payment::Cash {
            amount: Money::new(amount, cad()),
        }],
        amount,
    )
}

fn offline_order(amount: i64) -> Order {
    order_with(
        vec![Payment::Card {
            amount: Money::new(amount, cad()),
            token: "tok".into(),
            brand: "visa".into(),
            last4: "4242".into(),
            authorization: CardAuthorization::Offline,
        }],
        amount,
    )
}

fn new_capture(order: Order, key: &str) -> NewCapture {
    NewCapture {
        order,
        idempotency_key: key.into(),
        request_sha256: [key.len() as u8; 32],
        traceparent: None,
    }
}

async fn capture(store: &Store, amount: i64, key: &str) -> CaptureOutcome {
    store
        .capture(new_capture(cash_order(amount), key))
        .await
        .unwrap()
}

fn ack(through: u64, rejected: Vec<Rejection>) -> Ack {
    Ack {
        through_seq: Seq::new(through).unwrap(),
        rejected,
    }
}

#[tokio::test]
async fn captures_get_gap_free_seqs_and_exact_envelopes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(opts(dir.path()), StoreMetrics::default()).unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let out = capture(&store, 100 + i, &format!("k{i}")).await;
        assert_eq!(out.seq, Some(Seq::new(i as u64 + 1).unwrap()));
        assert!(!out.replayed);
        ids.push(out.order_id);
    }
    assert_eq!(store.pending_events(), 5);
    assert_eq!(store.last_seq(), 5);
    let batch = store.pending_batch(0, 100, usize::MAX).await.unwrap();
    assert_eq!(batch.len(), 5);
    for (i, ev) in batch.iter().enumerate() {
        assert_eq!(ev.seq.get(), i as u64 + 1);
        let env = Envelope::decode(&ev.envelope).unwrap();
        assert_eq!(env.event_id, ev.event_id);
        assert_eq!(env.seq, Some(ev.seq));
        assert_eq!(env.store_id.as_str(), "S001");
        assert_eq!(env.agent_id.as_str(), "S001-A1");
        assert!(env.traceparent.is_some());
        env.validate_store_event().unwrap();
        match env.payload {
            Event::OrderCreated(o) => assert_eq!(o.order_id, ids[i]),
            other => panic!("unexpected {other:?}"),
        }
    }
    // after_seq, max_events and max_bytes.
    let tail = store.pending_batch(3, 100, usize::MAX).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.seq.get()).collect::<Vec<_>>(), [4, 5]);
    assert_eq!(
        store.pending_batch(0, 2, usize::MAX).await.unwrap().len(),
        2
    );
    let first_two = batch[0].envelope.len() + batch[1].envelope.len();
    let two = store.pending_batch(0, 100, first_two).await.unwrap();
    assert_eq!(two.len(), 2);
    let at_least_one = store.pending_batch(0, 100, 1).await.unwrap();
    assert_eq!(at_least_one.len(), 1, "always at least one");
    assert!(store.pending_batch(5, 100, 1).await.unwrap().is_empty());
    store.close().await.unwrap();
}

#[tokio::test]
async fn idempotency_replays_and_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(opts(dir.path()), StoreMetrics::default()).unwrap();
    let first = capture(&store, 500, "same").await;
    let again = store
        .capture(new_capture(cash_order(500), "same"))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.order_id, first.order_id);
    assert_eq!(again.response_json, first.response_json);
    let mut other = new_capture(cash_order(700), "same");
    other.request_sha256 = [9; 32];
    assert_eq!(
        store.capture(other).await,
        Err(StoreError::IdempotencyConflict)
    );
    // Keys are scoped per terminal.
    let mut t2 = cash_order(500);
    t2.terminal_id = TerminalId::new("T2").unwrap();
    assert!(
        !store
            .capture(new_capture(t2, "same"))
            .await
            .unwrap()
            .replayed
    );
    assert_eq!(store.last_seq(), 2);
    store.close().await.unwrap();
}

#[tokio::test]
async fn concurrent_captures_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = StoreMetrics::default();
    let store = Store::open(opts(dir.path()), metrics.clone()).unwrap();
    let n = 300;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let s = store.clone();
        tasks.spawn(async move { capture(&s, 100, &format!("c{i}")).await.seq.unwrap() });
    }
    let mut seqs: Vec<u64> = tasks.join_all().await.iter().map(|s| s.get()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=n as u64).collect::<Vec<_>>());
    let commits = metrics.commits.get();
    assert!(commits < n as u64, "{commits} commits for {n} captures");
    store.close().await.unwrap();
}

#[tokio::test]
async fn backlog_full_refuses_then_recovers_after_ack() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.max_pending_events = 2;
    let store = Store::open(o, StoreMetrics::default()).unwrap();
    capture(&store, 1, "a").await;
    let b = capture(&store, 1, "b").await;
    let refused = store.capture(new_capture(cash_order(1), "c")).await;
    assert_eq!(
        refused,
        Err(StoreError::BacklogFull {
            pending: 2,
            limit: 2
        })
    );
    // A cancel appends an event too, so it is refused as well.
    assert!(matches!(
        store.cancel(b.order_id, "store_void".into(), None).await,
        Err(StoreError::BacklogFull { .. })
    ));
    // A replay of a committed key is still answered.
    assert!(capture(&store, 1, "a").await.replayed);
    store.apply_ack(&ack(2, vec![]), 1).await.unwrap();
    assert_eq!(store.pending_events(), 0);
    assert_eq!(capture(&store, 1, "c").await.seq.map(Seq::get), Some(3));
    store.close().await.unwrap();
}

#[tokio::test]
async fn offline_cap_counts_until_acked() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.offline_total_cap_minor = 1000;
    let store = Store::open(o.clone(), StoreMetrics::default()).unwrap();
    store
        .capture(new_capture(offline_order(600), "o1"))
        .await
        .unwrap();
    let err = store
        .capture(new_capture(offline_order(600), "o2"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::OfflineCapExceeded {
            would_be: 1200,
            cap: 1000
        }
    );
    // Cash is not limited.
    capture(&store, 5000, "cash").await;
    assert_eq!(store.offline_exposure_minor(), 600);
    // Exposure survives a restart.
    store.close().await.unwrap();
    let store = Store::open(o.clone(), StoreMetrics::default()).unwrap();
    assert_eq!(store.offline_exposure_minor(), 600);
    let out = store.apply_ack(&ack(1, vec![]), 10).await.unwrap();
    assert_eq!(out.released_offline_minor, 600);
    assert_eq!(store.offline_exposure_minor(), 0);
    store
        .capture(new_capture(offline_order(600), "o2"))
        .await
        .unwrap();
    // A sale the cloud rejects is settled too: it stops counting, and the
    // cap is free again, also after a restart.
    let rej = Rejection {
        seq: Seq::new(3).unwrap(),
        event_id: None,
        code: "invalid_event".into(),
        reason: "refused".into(),
    };
    let out = store.apply_ack(&ack(3, vec![rej]), 20).await.unwrap();
    assert_eq!((out.rejected, out.released_offline_minor), (1, 600));
    assert_eq!(store.offline_exposure_minor(), 0);
    store.close().await.unwrap();
    let store = Store::open(o, StoreMetrics::default()).unwrap();
    assert_eq!(store.offline_exposure_minor(), 0);
    store
        .capture(new_capture(offline_order(600), "o3"))
        .await
        .unwrap();
    store.close().await.unwrap();
}

#[tokio::test]
async fn acks_are_cumulative_idempotent_and_record_rejections() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(opts(dir.path()), StoreMetrics::default()).unwrap();
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(capture(&store, 10, &format!("k{i}")).await.order_id);
    }
    let rej = Rejection {
        seq: Seq::new(2).unwrap(),
        event_id: None,
        code: "identity_mismatch".into(),
        reason: "nope".into(),
    };
    let a = ack(3, vec![rej]);
    let out = store.apply_ack(&a, 1_000).await.unwrap();
    assert_eq!((out.acked, out.rejected, out.last_acked_seq), (2, 1, 3));
    let again = store.apply_ack(&a, 2_000).await.unwrap();
    assert_eq!(
        (again.acked, again.rejected, again.last_acked_seq),
        (0, 0, 3)
    );
    assert_eq!(store.pending_events(), 1);
    let counts = store.sync_counts(5_000).await.unwrap();
    assert_eq!(counts.pending_events, 1);
    assert_eq!(counts.last_acked_seq, 3);
    assert_eq!(counts.last_ack_at_ms, Some(2_000));
    assert_eq!(counts.rejected_events, 1);
    assert!(counts.oldest_pending_age_ms.is_some());
    let o = store.order(ids[1]).await.unwrap().unwrap();
    assert_eq!(o.sync, OrderSyncState::Rejected);
    assert_eq!(o.reject_code.as_deref(), Some("identity_mismatch"));
    assert_eq!(
        store.order(ids[0]).await.unwrap().unwrap().sync,
        OrderSyncState::Synced
    );
    assert_eq!(
        store.order(ids[3]).await.unwrap().unwrap().sync,
        OrderSyncState::Pending
    );
    let batch = store.pending_batch(0, 10, usize::MAX).await.unwrap();
    assert_eq!(batch.iter().map(|e| e.seq.get()).collect::<Vec<_>>(), [4]);
    // An ack beyond the head changes nothing.
    assert_eq!(
        store.apply_ack(&ack(9, vec![]), 1).await,
        Err(StoreError::InvalidAck { seq: 9, head: 4 })
    );
    assert_eq!(store.pending_events(), 1);
    store.close().await.unwrap();
}

#[tokio::test]
async fn cancel_appends_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(opts(dir.path()), StoreMetrics::default()).unwrap();
    let id = capture(&store, 10, "k").await.order_id;
    let first = store.cancel(id, "store_void".into(), None).await.unwrap();
    assert_eq!(first.seq.map(Seq::get), Some(2));
    assert!(!first.already_cancelled);
    let second = store.cancel(id, "store_void".into(), None).await.unwrap();
    assert!(second.already_cancelled);
    assert_eq!(second.cancelled_at_ms, first.cancelled_at_ms);
    assert_eq!(store.last_seq(), 2);
    let batch = store.pending_batch(1, 10, usize::MAX).await.unwrap();
    let env = Envelope::decode(&batch[0].envelope).unwrap();
    assert!(matches!(env.payload, Event::OrderCancelled(ref c) if c.order_id == id));
    let o = store.order(id).await.unwrap().unwrap();
    assert_eq!(o.status, LocalStatus::Cancelled);
    let missing = OrderId::from_uuid(uuid::Uuid::now_v7()).unwrap();
    assert_eq!(
        store.cancel(missing, "x".into(), None).await,
        Err(StoreError::OrderNotFound(missing))
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn prune_keeps_seq_assignment_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path());
    let store = Store::open(o.clone(), StoreMetrics::default()).unwrap();
    for i in 0..3 {
        capture(&store, 10, &format!("k{i}")).await;
    }
    store.apply_ack(&ack(3, vec![]), 100).await.unwrap();
    // Rows are pruned only within closed business days (see tests/day.rs):
    // close the day, as if the clock had moved on.
    store.close().await.unwrap();
    let mut later = o.clone();
    later.clock_skew_secs = 86_400;
    let store = Store::open(later, StoreMetrics::default()).unwrap();
    let day = crate::business_day::BusinessDay::new(Default::default(), Default::default());
    assert_eq!(store.close_days(day).await.unwrap().closed.len(), 1);
    store.apply_ack(&ack(4, vec![]), 100).await.unwrap();
    assert_eq!(store.prune_acked(100).await.unwrap(), 0, "strictly older");
    assert_eq!(store.prune_acked(101).await.unwrap(), 4);
    store.close().await.unwrap();
    let store = Store::open(o, StoreMetrics::default()).unwrap();
    assert_eq!(store.last_seq(), 4);
    assert_eq!(capture(&store, 10, "k9").await.seq.map(Seq::get), Some(5));
    // Orders outlive their outbox rows.
    assert_eq!(store.list_orders(None, 10).await.unwrap().len(), 4);
    store.close().await.unwrap();
}

#[tokio::test]
async fn list_orders_pages_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(opts(dir.path()), StoreMetrics::default()).unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(capture(&store, 10, &format!("k{i}")).await.order_id);
    }
    ids.sort();
    let page1 = store.list_orders(None, 2).await.unwrap();
    let page2 = store
        .list_orders(Some(page1[1].order_id), 10)
        .await
        .unwrap();
    let got: Vec<OrderId> = page1.iter().chain(&page2).map(|o| o.order_id).collect();
    assert_eq!(got, ids);
    store.close().await.unwrap();
}

#[tokio::test]
async fn closed_store_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(opts(dir.path()), StoreMetrics::default()).unwrap();
    store.close().await.unwrap();
    assert!(!store.is_alive());
    assert_eq!(
        store.capture(new_capture(cash_order(1), "x")).await,
        Err(StoreError::WriterGone)
    );
}

#[tokio::test]
async fn admin_db_reads_outbox_states_and_counts_beside_a_running_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(opts(dir.path()), StoreMetrics::default()).unwrap();
    for i in 0..4 {
        capture(&store, 10, &format!("k{i}")).await;
    }
    let rej = Rejection {
        seq: Seq::new(2).unwrap(),
        event_id: None,
        code: "invalid_order".into(),
        reason: "bad total".into(),
    };
    store.apply_ack(&ack(3, vec![rej]), 1_000).await.unwrap();

    let db = AdminDb::open_read_only(&dir.path().join("agent.db")).unwrap();
    let seqs = |s| {
        db.outbox(s, 10)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect::<Vec<_>>()
    };
    assert_eq!(seqs(OutboxState::Pending), vec![4]);
    assert_eq!(seqs(OutboxState::Acked), vec![3, 1], "acked: newest first");
    let rejected = db.outbox(OutboxState::Rejected, 10).unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].seq, 2);
    assert_eq!(rejected[0].event_type, "OrderCreated");
    assert_eq!(rejected[0].reject_code.as_deref(), Some("invalid_order"));
    assert_eq!(rejected[0].reject_reason.as_deref(), Some("bad total"));
    assert_eq!(db.outbox(OutboxState::Acked, 1).unwrap().len(), 1);

    let offline = db.sync_counts(5_000).unwrap();
    assert_eq!(offline, store.sync_counts(5_000).await.unwrap());
    store.close().await.unwrap();
}

#[tokio::test]
async fn cli_terminals_reach_the_running_store_through_the_generation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let store = Store::open(opts(dir.path()), StoreMetrics::default()).unwrap();
    let g0 = store.terminals_generation().await.unwrap();
    let mut admin = AdminDb::open_read_write(&path).unwrap();
    let h = [7u8; 32];
    assert_eq!(
        admin.add_terminal("T9", &h, 1_000).unwrap(),
        AddTerminalOutcome::Added
    );
    assert_eq!(
        admin.add_terminal("T9", &[8u8; 32], 1_001).unwrap(),
        AddTerminalOutcome::AlreadyActive
    );
    let (g1, active) = store.active_terminals().await.unwrap();
    assert!(g1 > g0);
    assert_eq!(active.len(), 1);
    assert_eq!((active[0].id.as_str(), active[0].token_sha256), ("T9", h));
    assert!(!format!("{:?}", active[0]).contains(&hex::encode(h)));

    assert_eq!(
        admin.revoke_terminal("T9", 2_000).unwrap(),
        RevokeTerminalOutcome::Revoked
    );
    assert_eq!(
        admin.revoke_terminal("T9", 3_000).unwrap(),
        RevokeTerminalOutcome::AlreadyRevoked(2_000)
    );
    assert_eq!(
        admin.revoke_terminal("T8", 3_000).unwrap(),
        RevokeTerminalOutcome::NotFound
    );
    let (g2, active) = store.active_terminals().await.unwrap();
    assert!(g2 > g1);
    assert!(active.is_empty());
    // Re-adding a revoked id issues the new hash.
    admin.add_terminal("T9", &[9u8; 32], 4_000).unwrap();
    let (_, active) = store.active_terminals().await.unwrap();
    assert_eq!(active[0].token_sha256, [9u8; 32]);
    assert_eq!(admin.terminals().unwrap().len(), 1);
    store.close().await.unwrap();
}

#[tokio::test]
async fn admin_db_needs_an_existing_database_to_read() {
    let dir = tempfile::tempdir().unwrap();
    let err = AdminDb::open_read_only(&dir.path().join("agent.db")).unwrap_err();
    assert!(matches!(err, StoreError::Setup(m) if m.contains("no database")));
}

#[tokio::test]
async fn a_command_failing_after_it_wrote_is_undone_alone() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = StoreMetrics::default();
    let store = Store::open(opts(dir.path()), metrics.clone()).unwrap();
    let bad = cash_order(100);
    let bad_id = bad.order_id;
    // Beside the running store, a trigger fails the bad order's outbox
    // insert, after its order row is already written in the group.
    let side = rusqlite::Connection::open(dir.path().join("agent.db")).unwrap();
    side.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    side.execute_batch(&format!(
        "CREATE TRIGGER fail_one BEFORE INSERT ON outbox WHEN NEW.order_id = '{bad_id}' \
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
    ))
    .unwrap();
    let good = 60;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..good {
        let s = store.clone();
        tasks.spawn(async move {
            s.capture(new_capture(cash_order(100), &format!("g{i}")))
                .await
        });
        if i == good / 2 {
            let s = store.clone();
            let bad = bad.clone();
            tasks.spawn(async move { s.capture(new_capture(bad, "bad")).await });
        }
    }
    let results = tasks.join_all().await;
    let (ok, refused): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    assert_eq!(refused.len(), 1, "{refused:?}");
    let mut seqs: Vec<u64> = ok
        .iter()
        .map(|r| r.as_ref().unwrap().seq.unwrap().get())
        .collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=good).collect::<Vec<_>>(),
        "gap-free despite the failure"
    );
    assert!(metrics.careful_retries.get() >= 1);
    let count = |sql: &str| side.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(count("SELECT COUNT(*) FROM orders"), good as i64);
    assert_eq!(count("SELECT COUNT(*) FROM idempotency"), good as i64);
    assert_eq!(
        count(&format!(
            "SELECT COUNT(*) FROM orders WHERE order_id = '{bad_id}'"
        )),
        0,
        "the failed command's first write was undone"
    );
    drop(side);
    store.close().await.unwrap();
}
