//! Fleet security with the real pieces: certificates from
//! `deploy/pki/o2c-certs.sh`, a private Mosquitto started from
//! `deploy/mosquitto/o2c.conf` with the ACL `o2c-certs.sh acl` renders, real
//! rumqttc v5 clients, and the real `o2c-agent` and `o2c-cloud ingest` over
//! `mqtts://` into Kafka (Tansu).
//!
//! - `acl_*`: each ACL rule, checked by what the broker answers (PUBACK
//!   reason codes) and by what it delivers;
//! - `tls_*`: who cannot even connect.
//!
//! The agent and ingest over TLS end to end are in `tls_sync.rs`.
//!
//! Mosquitto 2.0 answers an unauthorized QoS 1 publish with PUBACK 0x87 (Not
//! authorized) and drops it. It grants every SUBSCRIBE (SUBACK 0) and checks
//! `read` on each message it would deliver, so "cannot subscribe to `#`" is
//! proved by what arrives: nothing but the agent's own topics.

use std::collections::BTreeSet;

use o2c_tests::fleet::{Auth, Client, STEP, fleet, topic};
use o2c_tests::tls::{Pki, TlsFiles};
use o2c_tests::wait_until_named;
use rumqttc::v5::mqttbytes::v5::{PubAckReason, SubscribeReasonCode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_agent_publishes_only_its_own_events() {
    let f = fleet(&[
        ("S001", "S001-A1"),
        ("S001", "S001-A2"),
        ("S002", "S002-A1"),
    ])
    .await;
    let mut ingest = f.client(&f.service("o2c-ingest"), "ingest-1").await;
    assert!(matches!(
        ingest
            .subscribe("$share/o2c-ingest/o2c/v1/stores/+/agents/+/events")
            .await,
        SubscribeReasonCode::Success(_)
    ));
    let mut a1 = f.client(&f.pki.agent("S001-A1"), "S001-A1").await;

    let own = topic("S001", "S001-A1", "events");
    assert_eq!(a1.publish(&own, "legit").await, PubAckReason::Success);
    for (other, why) in [
        (
            topic("S001", "S001-A2", "events"),
            "another agent, same store",
        ),
        (
            topic("S002", "S001-A1", "events"),
            "its own id under another store",
        ),
        (topic("S002", "S002-A1", "events"), "another store's agent"),
        (topic("S001", "S001-A1", "acks"), "forging its own acks"),
        (topic("S001", "S001-A1", "status"), "forging its own status"),
        ("o2c/v1/stores/S001".to_owned(), "outside the agent tree"),
    ] {
        assert_eq!(
            a1.publish(&other, "forged").await,
            PubAckReason::NotAuthorized,
            "{why}: {other}"
        );
    }
    // The ingest (a shared subscription of the whole tree) saw only the
    // legitimate event: a sentinel published after the forgeries comes next.
    assert_eq!(a1.publish(&own, "sentinel").await, PubAckReason::Success);
    let seen = ingest.receive_until("sentinel").await;
    assert_eq!(
        seen,
        vec![(own.clone(), "legit".into()), (own, "sentinel".into())]
    );

    // Status resync requests: only under its own store and id, and the
    // status publisher's shared subscription sees only those.
    let mut status = f.client(&f.service("o2c-status"), "status-1").await;
    assert!(matches!(
        status
            .subscribe("$share/o2c-status/o2c/v1/stores/+/agents/+/resync")
            .await,
        SubscribeReasonCode::Success(_)
    ));
    let resync = topic("S001", "S001-A1", "resync");
    for other in [
        topic("S001", "S001-A2", "resync"),
        topic("S002", "S001-A1", "resync"),
    ] {
        assert_eq!(
            a1.publish(&other, "forged").await,
            PubAckReason::NotAuthorized,
            "{other}"
        );
    }
    assert_eq!(a1.publish(&resync, "ask").await, PubAckReason::Success);
    assert_eq!(
        status.receive_until("ask").await,
        vec![(resync, "ask".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_agent_reads_only_its_own_acks_and_status() {
    let f = fleet(&[
        ("S001", "S001-A1"),
        ("S001", "S001-A2"),
        ("S002", "S002-A1"),
    ])
    .await;
    let mut ingest = f.client(&f.service("o2c-ingest"), "ingest-1").await;
    let mut status = f.client(&f.service("o2c-status"), "status-1").await;
    let mut spy = f.client(&f.pki.agent("S001-A1"), "S001-A1").await;
    let mut victim = f.client(&f.pki.agent("S001-A2"), "S001-A2").await;
    let mut s2 = f.client(&f.pki.agent("S002-A1"), "S002-A1").await;

    // Mosquitto 2.0 grants these SUBSCRIBEs; accept a refusal too. What
    // matters is below: nothing but the spy's own topics is delivered.
    for filter in [
        "#".to_owned(),
        "o2c/#".to_owned(),
        topic("S001", "S001-A2", "acks"),
        topic("S001", "+", "status"),
        "$share/steal/o2c/v1/stores/+/agents/+/events".to_owned(),
        topic("S001", "S001-A1", "acks"),
        topic("S001", "S001-A1", "status"),
    ] {
        let code = spy.subscribe(&filter).await;
        assert!(
            matches!(
                code,
                SubscribeReasonCode::Success(_) | SubscribeReasonCode::NotAuthorized
            ),
            "{filter}: {code:?}"
        );
    }
    assert!(matches!(
        victim.subscribe(&topic("S001", "S001-A2", "acks")).await,
        SubscribeReasonCode::Success(_)
    ));

    // Traffic for others, each acknowledged by the broker before the next.
    assert_eq!(
        ingest
            .publish(&topic("S001", "S001-A2", "acks"), "victim-ack")
            .await,
        PubAckReason::Success
    );
    assert_eq!(
        status
            .publish(&topic("S001", "S001-A2", "status"), "victim-status")
            .await,
        PubAckReason::Success
    );
    assert!(matches!(
        s2.publish(&topic("S002", "S002-A1", "events"), "s2-event")
            .await,
        PubAckReason::Success | PubAckReason::NoMatchingSubscribers
    ));
    // Then the spy's own status and ack: the last is the sentinel.
    assert!(matches!(
        status
            .publish(&topic("S001", "S001-A1", "status"), "own-status")
            .await,
        PubAckReason::Success
    ));
    assert_eq!(
        ingest
            .publish(&topic("S001", "S001-A1", "acks"), "own-ack")
            .await,
        PubAckReason::Success
    );
    let seen = spy.receive_until("own-ack").await;
    let topics: BTreeSet<&str> = seen.iter().map(|(t, _)| t.as_str()).collect();
    let own: BTreeSet<String> = [
        topic("S001", "S001-A1", "acks"),
        topic("S001", "S001-A1", "status"),
    ]
    .into();
    let own: BTreeSet<&str> = own.iter().map(String::as_str).collect();
    assert!(topics.is_subset(&own), "spy received {seen:?}");
    assert!(seen.iter().any(|(_, b)| b == "own-status"), "{seen:?}");
    // Positive control: the victim did get its ack.
    assert_eq!(
        victim.receive_until("victim-ack").await,
        vec![(topic("S001", "S001-A2", "acks"), "victim-ack".to_owned())]
    );

    // Service identities have the reverse rights, and no more.
    for (svc, t) in [
        ("ingest", topic("S001", "S001-A1", "events")),
        ("ingest", topic("S001", "S001-A1", "status")),
        ("status", topic("S001", "S001-A1", "acks")),
        ("status", topic("S001", "S001-A1", "events")),
    ] {
        let client = if svc == "ingest" {
            &mut ingest
        } else {
            &mut status
        };
        assert_eq!(
            client.publish(&t, "x").await,
            PubAckReason::NotAuthorized,
            "{svc} -> {t}"
        );
    }
}

/// Health (the fleet view's input, retained): an agent writes only its
/// own, the o2c-fleet identity reads every agent's and writes none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_agent_publishes_only_its_own_health() {
    let f = fleet(&[
        ("S001", "S001-A1"),
        ("S001", "S001-A2"),
        ("S002", "S002-A1"),
    ])
    .await;
    let mut view = f.client(&f.service("o2c-fleet"), "o2c-fleet-1").await;
    assert!(matches!(
        view.subscribe("o2c/v1/stores/+/agents/+/health").await,
        SubscribeReasonCode::Success(_)
    ));
    let own = topic("S001", "S001-A1", "health");
    // The fleet view reads; it writes no health (nor anything else). (Its
    // publishes come first: waiting for their PUBACKs skips deliveries.)
    for t in [own.clone(), topic("S001", "S001-A1", "events")] {
        assert_eq!(
            view.publish(&t, "forged-by-view").await,
            PubAckReason::NotAuthorized,
            "{t}"
        );
    }
    let mut a1 = f.client(&f.pki.agent("S001-A1"), "S001-A1").await;
    assert_eq!(a1.publish(&own, "legit").await, PubAckReason::Success);
    for (other, why) in [
        (
            topic("S001", "S001-A2", "health"),
            "another agent, same store",
        ),
        (topic("S002", "S002-A1", "health"), "another store's agent"),
        (
            topic("S002", "S001-A1", "health"),
            "its own id under another store",
        ),
    ] {
        assert_eq!(
            a1.publish(&other, "forged").await,
            PubAckReason::NotAuthorized,
            "{why}: {other}"
        );
    }
    assert_eq!(a1.publish(&own, "sentinel").await, PubAckReason::Success);
    assert_eq!(
        view.receive_until("sentinel").await,
        vec![(own.clone(), "legit".into()), (own, "sentinel".into())]
    );
    // Another agent cannot read anyone's health.
    let mut a2 = f.client(&f.pki.agent("S001-A2"), "S001-A2").await;
    let _ = a2.subscribe("o2c/v1/stores/+/agents/+/health").await;
    let _ = a2.subscribe(&topic("S001", "S001-A2", "acks")).await;
    let mut ingest = f.client(&f.service("o2c-ingest"), "ingest-1").await;
    assert_eq!(
        a1.publish(&topic("S001", "S001-A1", "health"), "not-for-a2")
            .await,
        PubAckReason::Success
    );
    assert_eq!(
        ingest
            .publish(&topic("S001", "S001-A2", "acks"), "a2-sentinel")
            .await,
        PubAckReason::Success
    );
    assert_eq!(
        a2.receive_until("a2-sentinel").await,
        vec![(topic("S001", "S001-A2", "acks"), "a2-sentinel".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_new_agent_is_refused_until_the_acl_is_regenerated() {
    let mut f = fleet(&[("S001", "S001-A1")]).await;
    // Enrolled after the broker loaded its ACL: it can connect (the CA
    // signed it) but may not write anything yet.
    let files = f.pki.issue_agent("S003", "S003-A1").expect("issue");
    let mut late = f.client(&files, "S003-A1").await;
    let own = topic("S003", "S003-A1", "events");
    assert_eq!(
        late.publish(&own, "early").await,
        PubAckReason::NotAuthorized
    );

    f.broker.reload_acl(&f.pki).expect("SIGHUP");
    // The broker reloads on its own schedule: poll with real publishes.
    let late = tokio::sync::Mutex::new(late);
    wait_until_named(
        "the reloaded ACL to let S003-A1 publish",
        || async {
            let mut c = late.lock().await;
            let r = c.publish(&own, "after-reload").await;
            matches!(
                r,
                PubAckReason::Success | PubAckReason::NoMatchingSubscribers
            )
        },
        STEP,
    )
    .await
    .expect("acl reload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_refuses_clients_without_a_fleet_certificate() {
    let f = fleet(&[("S001", "S001-A1")]).await;
    let port = f.broker.port();
    let ca = f.pki.agent("S001-A1").ca;

    let no_cert = Client::connect(port, Auth::NoCert { ca: &ca }, "S001-A1").await;
    assert!(no_cert.is_err(), "connected without a client certificate");

    let plain = Client::connect(port, Auth::Plain, "S001-A1").await;
    assert!(plain.is_err(), "connected without TLS");

    // Same CN and store, signed by another CA.
    let rogue = Pki::init(f.env.path().join("rogue")).expect("rogue CA");
    let mut forged = rogue.issue_agent("S001", "S001-A1").expect("rogue cert");
    forged.ca = ca.clone();
    let r = Client::connect(port, Auth::Cert(&forged), "S001-A1").await;
    assert!(r.is_err(), "connected with a certificate from another CA");

    // A broker certificate from another CA is refused by the client.
    let genuine = f.pki.agent("S001-A1");
    let wrong_trust = TlsFiles {
        ca: rogue.dir().join("ca/ca.pem"),
        ..genuine.clone()
    };
    let r = Client::connect(port, Auth::Cert(&wrong_trust), "S001-A1").await;
    assert!(r.is_err(), "trusted a broker outside the client's CA");

    // The control: the genuine certificate connects.
    Client::connect(port, Auth::Cert(&genuine), "S001-A1")
        .await
        .expect("genuine agent connects");
}
