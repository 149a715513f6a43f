use o2c_protocol::health::HEALTH_SCHEMA_VERSION;

use super::*;

const T0: i64 = 1_764_000_000_000;

fn topic(store: &str, agent: &str) -> String {
    format!("o2c/v1/stores/{store}/agents/{agent}/health")
}

fn health(store: &str, agent: &str, pending: u64, oldest_ms: Option<u64>) -> Health {
    Health {
        schema_version: HEALTH_SCHEMA_VERSION,
        store_id: StoreId::new(store).unwrap(),
        agent_id: AgentId::new(agent).unwrap(),
        state: AgentState::Online,
        reason: None,
        sent_at_ms: T0,
        agent_version: "0.1.0".into(),
        heartbeat_secs: 30,
        connected_since_ms: Some(T0 - 60_000),
        pending_events: pending,
        oldest_pending_age_ms: oldest_ms,
        last_acked_seq: 10,
        rejected_events: 0,
        catalog_version: None,
        disk_free_bytes: Some(1 << 30),
        ingest_lag_ms: Some(40),
        last_ack_at_ms: None,
    }
}

fn feed(t: &mut FleetTable, h: &Health, retained: bool, now: i64) -> Result<Applied, FleetError> {
    t.handle_message(
        &topic(h.store_id.as_str(), h.agent_id.as_str()),
        &h.encode().unwrap(),
        retained,
        now,
    )
}

fn ids(rows: &[Row]) -> Vec<&str> {
    rows.iter().map(|r| r.agent_id.as_str()).collect()
}

#[test]
fn worst_first_offline_then_stale_then_by_oldest_pending() {
    let mut t = FleetTable::new(3, T0);
    feed(&mut t, &health("S1", "A-ok", 0, None), false, T0).unwrap();
    feed(
        &mut t,
        &health("S1", "A-backlog", 50, Some(5_000)),
        false,
        T0,
    )
    .unwrap();
    feed(&mut t, &health("S2", "A-old", 2, Some(600_000)), false, T0).unwrap();
    let mut quiet = health("S3", "A-quiet", 0, None);
    quiet.heartbeat_secs = 10;
    feed(&mut t, &quiet, false, T0 - 40_000).unwrap();
    let gone = health("S4", "A-gone", 1, Some(1_000));
    feed(&mut t, &gone, false, T0 - 1_000).unwrap();
    feed(
        &mut t,
        &gone.offline(OfflineReason::ConnectionLost, T0),
        false,
        T0,
    )
    .unwrap();

    let rows = t.rows(T0);
    assert_eq!(
        ids(&rows),
        ["A-gone", "A-quiet", "A-old", "A-backlog", "A-ok"]
    );
    assert_eq!(rows[0].status, Status::Offline);
    assert_eq!(rows[0].reason, Some(OfflineReason::ConnectionLost));
    assert_eq!(rows[0].since_ms, Some(T0));
    // The offline agent keeps its last heartbeat's figures, aging.
    assert_eq!(rows[0].pending_events, 1);
    assert_eq!(rows[0].oldest_pending_age_ms, Some(2_000));
    assert_eq!(rows[1].status, Status::Stale);
    assert_eq!(rows[1].since_ms, Some(T0 - 40_000));
    assert_eq!(rows[4].status, Status::Online);
    assert_eq!(rows[4].since_ms, Some(T0 - 60_000));
    let s = Summary::of(&rows);
    assert_eq!((s.agents, s.online, s.stale, s.offline), (5, 3, 1, 1));
    assert_eq!(s.pending_events, 53);
}

#[test]
fn stale_is_decided_by_the_announced_interval_and_injected_time() {
    let mut t = FleetTable::new(3, T0);
    feed(&mut t, &health("S1", "A1", 0, None), false, T0).unwrap();
    // 30 s heartbeats: stale after 90 s of silence, not before.
    assert_eq!(t.rows(T0 + 90_000)[0].status, Status::Online);
    let row = &t.rows(T0 + 90_001)[0];
    assert_eq!(row.status, Status::Stale);
    assert_eq!(row.down_ms(T0 + 90_001), 90_001);
    // A heartbeat brings it back.
    feed(&mut t, &health("S1", "A1", 0, None), false, T0 + 95_000).unwrap();
    assert_eq!(t.rows(T0 + 95_000)[0].status, Status::Online);
    assert_eq!(t.rows(T0 + 95_000)[0].down_ms(T0 + 95_000), 0);
}

#[test]
fn a_goodbye_and_a_retained_will() {
    let mut t = FleetTable::new(3, T0);
    let h = health("S1", "A1", 0, None);
    feed(&mut t, &h, true, T0).unwrap();
    assert_eq!(
        feed(
            &mut t,
            &h.offline(OfflineReason::Shutdown, T0 + 5),
            false,
            T0 + 10
        ),
        Ok(Applied::Offline)
    );
    let row = &t.rows(T0 + 70)[0];
    assert_eq!(row.status, Status::Offline);
    assert_eq!((row.since_ms, row.since_exact), (Some(T0 + 10), true));
    assert_eq!(row.down_ms(T0 + 70), 60);

    // A will already retained when the view started: time unknown, shown
    // as "before the view started".
    let mut t = FleetTable::new(3, T0);
    // Its figures were measured when it was written (agent clock).
    let will =
        health("S2", "A2", 3, Some(1_000)).offline(OfflineReason::ConnectionLost, T0 - 1_000);
    feed(&mut t, &will, true, T0 + 100).unwrap();
    let row = &t.rows(T0 + 1_100)[0];
    assert_eq!(row.status, Status::Offline);
    assert_eq!((row.since_ms, row.since_exact), (Some(T0), false));
    assert_eq!(row.oldest_pending_age_ms, Some(3_100));

    // An old retained heartbeat (no will ever came) is stale at once.
    let mut old = health("S3", "A3", 0, None);
    old.sent_at_ms = T0 - 600_000;
    feed(&mut t, &old, true, T0).unwrap();
    let rows = t.rows(T0);
    let row = rows.iter().find(|r| r.agent_id.as_str() == "A3").unwrap();
    assert_eq!(row.status, Status::Stale);
    assert_eq!(row.since_ms, Some(T0 - 600_000));
}

#[test]
fn identity_mismatch_and_garbage_are_refused_and_empty_removes() {
    let mut t = FleetTable::new(3, T0);
    let h = health("S1", "A1", 0, None);
    let err = t
        .handle_message(&topic("S1", "A2"), &h.encode().unwrap(), false, T0)
        .unwrap_err();
    assert_eq!(err.outcome(), "identity_mismatch");
    let err = t
        .handle_message(&topic("S2", "A1"), &h.encode().unwrap(), false, T0)
        .unwrap_err();
    assert_eq!(err.outcome(), "identity_mismatch");
    assert!(t.is_empty());
    assert_eq!(
        t.handle_message(&topic("S1", "A1"), b"{not json", false, T0)
            .unwrap_err()
            .outcome(),
        "malformed"
    );
    assert_eq!(
        t.handle_message("o2c/v1/stores/S1/agents/A1/events", b"{}", false, T0)
            .unwrap_err()
            .outcome(),
        "bad_topic"
    );
    feed(&mut t, &h, false, T0).unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(
        t.handle_message(&topic("S1", "A1"), b"", true, T0),
        Ok(Applied::Removed)
    );
    assert!(t.is_empty());
}
