//! The fleet view end to end (issue 18): real `o2c-agent`s publishing
//! their retained health on a private Mosquitto, the real
//! `o2c-cloud fleet serve`, `o2c-cloud ingest` into Kafka (Tansu), the
//! `/fleet` page in headless Chromium (Debian's `chromium`).
//!
//! - `fleet_view_follows_backlog_drain_and_stops`: an agent's backlog grows
//!   while no ingest runs and drains when one starts, as `GET /v1/fleet`,
//!   `o2c-cloud fleet [--json]` and the page show; then one agent stopped
//!   (SIGTERM: its goodbye) and one killed (SIGKILL: its MQTT last will) are
//!   offline within 10 s, in the JSON, on the page's DOM and in its
//!   screenshot (the offline marker's red pixels).
//! - `fleet_view_refuses_a_health_message_of_another_agent`: a health
//!   message whose ids are not its topic's is refused and counted.

use std::time::{Duration, Instant};

use o2c_fleet::core::Status;
use o2c_fleet::view::{AgentView, FleetView};
use o2c_protocol::health::OfflineReason;
use o2c_tests::fleet::{Auth, Client};
use o2c_tests::fleet_view::{FleetProc, OFFLINE_RGB, ONLINE_RGB, Png, row_html, screenshot};
use o2c_tests::pipeline::{AgentProc, Ingest};
use o2c_tests::wait::wait_for_value;
use o2c_tests::{PrivateMosquitto, TestEnv};
use rumqttc::v5::mqttbytes::v5::PubAckReason;

/// The issue's bound: a stopped agent shows offline within this.
const OFFLINE_WITHIN: Duration = Duration::from_secs(10);

/// The agents' MQTT and heartbeat settings: a heartbeat a second.
const AGENT_EXTRA: &str = "keep_alive_secs = 5\n[telemetry]\nheartbeat_secs = 1";

fn row<'a>(v: &'a FleetView, agent: &str) -> Option<&'a AgentView> {
    v.agents.iter().find(|a| a.row.agent_id.as_str() == agent)
}

/// Polls `GET /v1/fleet` until `ok` holds for it; panics with the last view.
async fn wait_view(
    fleet: &FleetProc,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&FleetView) -> bool,
) -> FleetView {
    let ok = &ok;
    match wait_for_value(
        what,
        || async move {
            match fleet.view().await {
                Ok(v) => (ok(&v), Some(v)),
                Err(_) => (false, None),
            }
        },
        timeout,
    )
    .await
    {
        Ok(Some(v)) => v,
        Ok(None) => unreachable!("ok() held for a view"),
        Err((e, last)) => panic!(
            "{e}; last view: {last:#?}\nfleet log:\n{}",
            fleet.log_tail()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_view_follows_backlog_drain_and_stops() {
    let env = TestEnv::new();
    let brokers = env.require_kafka().await.to_owned();
    let mosq = PrivateMosquitto::start().await.expect("mosquitto");
    let url = mosq.url();
    let store = env.store_id("S1");
    let (a1, a2) = (format!("{store}-A1"), format!("{store}-A2"));
    let fleet = FleetProc::start(env.path(), &url, "").await.expect("fleet");
    let mut agent1 = AgentProc::start(env.path(), &store, &a1, &url, AGENT_EXTRA)
        .await
        .expect("agent 1");
    let mut agent2 = AgentProc::start(env.path(), &store, &a2, &url, AGENT_EXTRA)
        .await
        .expect("agent 2");

    let both_online = |v: &FleetView| {
        [&a1, &a2].iter().all(|a| {
            row(v, a).is_some_and(|r| r.row.status == Status::Online && r.row.heartbeat_secs == 1)
        })
    };
    let v = wait_view(
        &fleet,
        "both agents online",
        Duration::from_secs(20),
        both_online,
    )
    .await;
    let r1 = row(&v, &a1).expect("a1");
    assert_eq!(r1.row.pending_events, 0);
    assert!(r1.row.since_ms.is_some(), "connected since: {r1:?}");
    assert!(
        r1.row.disk_free_bytes.is_some_and(|b| b > 0),
        "disk free: {r1:?}"
    );
    assert!(!r1.row.agent_version.is_empty());

    // No ingest yet: captures wait in the outbox, and the view shows them.
    for i in 0..3 {
        agent1
            .post_order(&format!("fleet-{i}"))
            .await
            .expect("capture");
    }
    let v = wait_view(
        &fleet,
        "a backlog of 3 at agent 1",
        Duration::from_secs(15),
        |v| {
            row(v, &a1).is_some_and(|r| {
                r.row.pending_events == 3 && r.row.oldest_pending_age_ms.is_some_and(|a| a > 0)
            })
        },
    )
    .await;
    assert_eq!(row(&v, &a1).expect("a1").row.status, Status::Online);
    // Worst first: the agent with a backlog comes before the idle one.
    assert_eq!(v.agents[0].row.agent_id.as_str(), a1);
    let text = fleet.cli(false).expect("o2c-cloud fleet");
    let line = text
        .lines()
        .find(|l| l.contains(&a1))
        .unwrap_or_else(|| panic!("no line for {a1}:\n{text}"));
    assert!(line.contains("online"), "{text}");
    assert!(
        line.split_whitespace().any(|w| w == "3"),
        "backlog 3 in: {line}"
    );

    // The ingest comes: the backlog drains and the lag is reported.
    let _ingest = Ingest::start(env.path(), env.prefix(), &url, &brokers)
        .await
        .expect("ingest");
    let v = wait_view(&fleet, "agent 1 drained", Duration::from_secs(60), |v| {
        row(v, &a1).is_some_and(|r| {
            r.row.pending_events == 0
                && r.row.last_acked_seq == 3
                && r.row.ingest_lag_ms.is_some()
                && r.row.oldest_pending_age_ms.is_none()
        })
    })
    .await;
    assert_eq!(v.summary.online, 2, "{v:#?}");

    // The page shows both online (green pills, no red).
    let page = format!("{}/fleet", fleet.base());
    let before = env.path().join("fleet-online.png");
    let dom = screenshot(&page, &before, (1400, 400), 3000).expect("page");
    for a in [&a1, &a2] {
        let tr = row_html(&dom, &store, a).unwrap_or_else(|| panic!("no row for {a}:\n{dom}"));
        assert!(tr.contains("data-status=\"online\""), "{tr}");
    }
    let png = Png::read(&before).expect("png");
    assert!(png.count(ONLINE_RGB, 8) > 100, "no green pill pixels");
    assert_eq!(png.count(OFFLINE_RGB, 8), 0, "red before any agent stopped");

    // Stop one (SIGTERM: it says goodbye) and kill the other (SIGKILL: the
    // broker publishes its last will): both offline within 10 s.
    let stopped_at = Instant::now();
    agent1.stop().await.expect("stop agent 1");
    agent2.kill().expect("kill agent 2");
    let v = wait_view(&fleet, "both agents offline", OFFLINE_WITHIN, |v| {
        [&a1, &a2]
            .iter()
            .all(|a| row(v, a).is_some_and(|r| r.row.status == Status::Offline))
    })
    .await;
    let json_after = stopped_at.elapsed();
    let (r1, r2) = (row(&v, &a1).expect("a1"), row(&v, &a2).expect("a2"));
    assert_eq!(r1.row.reason, Some(OfflineReason::Shutdown), "{r1:?}");
    assert_eq!(r2.row.reason, Some(OfflineReason::ConnectionLost), "{r2:?}");
    assert!(r1.row.since_exact && r2.row.since_exact);
    // Offline agents keep their last figures.
    assert_eq!(r1.row.last_acked_seq, 3);
    assert_eq!(v.summary.offline, 2);

    // The page: offline rows in the DOM and the red marker in the
    // screenshot, still within the 10 s.
    let after = env.path().join("fleet-offline.png");
    let dom = screenshot(&page, &after, (1400, 400), 3000).expect("page");
    let page_after = stopped_at.elapsed();
    for a in [&a1, &a2] {
        let tr = row_html(&dom, &store, a).unwrap_or_else(|| panic!("no row for {a}:\n{dom}"));
        assert!(
            tr.contains("data-status=\"offline\"") && tr.contains("status-offline"),
            "{tr}"
        );
    }
    let png = Png::read(&after).expect("png");
    assert!(
        png.count(OFFLINE_RGB, 8) > 100,
        "no red offline marker in {}",
        after.display()
    );
    assert_eq!(png.count(ONLINE_RGB, 8), 0, "a green pill left");
    assert!(
        page_after <= OFFLINE_WITHIN,
        "page showed offline after {page_after:?} (JSON after {json_after:?})"
    );

    // The CLI and the metrics agree.
    let json: FleetView =
        serde_json::from_str(&fleet.cli(true).expect("fleet --json")).expect("json view");
    assert_eq!(json.summary.offline, 2);
    let text = fleet.cli(false).expect("o2c-cloud fleet");
    assert!(
        text.lines().nth(1).is_some_and(|l| l.contains("offline")),
        "worst first:\n{text}"
    );
    let metrics = fleet.metrics().await.expect("metrics");
    for a in [&a1, &a2] {
        let up = format!("o2c_fleet_agent_up{{store=\"{store}\",agent=\"{a}\"}} 0");
        assert!(metrics.contains(&up), "{up} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_view_refuses_a_health_message_of_another_agent() {
    let env = TestEnv::new();
    let mosq = PrivateMosquitto::start().await.expect("mosquitto");
    let fleet = FleetProc::start(env.path(), &mosq.url(), "")
        .await
        .expect("fleet");
    let store = env.store_id("S1");
    let (a1, a2) = (format!("{store}-A1"), format!("{store}-A2"));
    let health = |agent: &str| {
        format!(
            r#"{{"schema_version":1,"store_id":"{store}","agent_id":"{agent}","state":"online",
               "sent_at_ms":1,"agent_version":"0.1.0","heartbeat_secs":30,"pending_events":0,
               "last_acked_seq":0,"rejected_events":0}}"#
        )
    };
    let mut c = Client::connect(mosq.port(), Auth::Plain, "spoofer")
        .await
        .expect("connect");
    let topic = |agent: &str| format!("o2c/v1/stores/{store}/agents/{agent}/health");
    // A2's health on A1's topic: refused. Then A1's own: accepted.
    assert_eq!(
        c.publish(&topic(&a1), &health(&a2)).await,
        PubAckReason::Success
    );
    assert_eq!(
        c.publish(&topic(&a1), &health(&a1)).await,
        PubAckReason::Success
    );
    let v = wait_view(&fleet, "A1 in the view", Duration::from_secs(10), |v| {
        row(v, &a1).is_some()
    })
    .await;
    assert_eq!(v.agents.len(), 1, "{v:#?}");
    assert!(row(&v, &a2).is_none());
    let metrics = fleet.metrics().await.expect("metrics");
    assert!(
        metrics.contains("o2c_fleet_messages_total{outcome=\"identity_mismatch\"} 1"),
        "{metrics}"
    );
}
