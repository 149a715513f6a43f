//! Fleet security with the real pieces: certificates from
//! `deploy/pki/o2c-certs.sh`, a private Mosquitto started from
//! `deploy/mosquitto/o2c.conf` with the ACL `o2c-certs.sh acl` renders, real
//! rumqttc v5 clients, and the real `o2c-agent` and `o2c-cloud ingest` over
//! `mqtts://` into Kafka (Tansu).
//!
//! - `acl_*`: each ACL rule, checked by what the broker answers (PUBACK
//!   reason codes) and by what it delivers;
//! - `tls_*`: who cannot even connect;
//! - `agent_syncs_*` and `certificate_rotation_*`: end to end, and a
//!   certificate renewed and swapped in mid-backlog with nothing lost.
//!
//! Mosquitto 2.0 answers an unauthorized QoS 1 publish with PUBACK 0x87 (Not
//! authorized) and drops it. It grants every SUBSCRIBE (SUBACK 0) and checks
//! `read` on each message it would deliver, so "cannot subscribe to `#`" is
//! proved by what arrives: nothing but the agent's own topics.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use o2c_tests::pipeline::{AgentProc, Ingest, KafkaView};
use o2c_tests::tls::{Pki, TlsFiles, TlsMosquitto};
use o2c_tests::{TestEnv, wait_until_named};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use tokio::sync::mpsc;

const STEP: Duration = Duration::from_secs(10);
// 1,000 orders drain in about 5 s over loopback TLS.
const DRAIN: Duration = Duration::from_secs(60);

fn topic(store: &str, agent: &str, channel: &str) -> String {
    format!("o2c/v1/stores/{store}/agents/{agent}/{channel}")
}

/// A raw MQTT v5 client whose event loop feeds a channel; it stops polling
/// at the first error (no silent reconnects).
struct Client {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Event, String>>,
    name: String,
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    /// Trust `ca`, present nothing.
    NoCert { ca: &'a Path },
    /// Mutual TLS with these files.
    Cert(&'a TlsFiles),
    /// Plain MQTT (no TLS at all).
    Plain,
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

impl Client {
    /// Connects and waits for CONNACK; `Err` carries why it failed.
    async fn connect(port: u16, auth: Auth<'_>, id: &str) -> Result<Client, String> {
        // The same provider the agent and the cloud install (an Err only
        // means another test installed it first).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_start(true);
        let tls = match auth {
            Auth::NoCert { ca } => Some(TlsConfiguration::Simple {
                ca: read(ca),
                alpn: None,
                client_auth: None,
            }),
            Auth::Cert(f) => Some(TlsConfiguration::Simple {
                ca: read(&f.ca),
                alpn: None,
                client_auth: Some((read(&f.cert), read(&f.key))),
            }),
            Auth::Plain => None,
        };
        if let Some(tls) = tls {
            opts.set_transport(Transport::tls_with_config(tls));
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(ev) => {
                        if tx.send(Ok(ev)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        let mut me = Client {
            client,
            events: rx,
            name: id.to_owned(),
        };
        loop {
            match me.next().await? {
                // rumqttc turns a CONNACK with a failure code into an error.
                Event::Incoming(Packet::ConnAck(_)) => return Ok(me),
                _ => continue,
            }
        }
    }

    async fn next(&mut self) -> Result<Event, String> {
        match tokio::time::timeout(STEP, self.events.recv()).await {
            Err(_) => Err(format!("{}: no event within {STEP:?}", self.name)),
            Ok(None) => Err(format!("{}: event loop ended", self.name)),
            Ok(Some(r)) => r,
        }
    }

    /// QoS 1 publish; returns the broker's PUBACK reason.
    async fn publish(&mut self, topic: &str, payload: &str) -> PubAckReason {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.to_owned())
            .await
            .expect("queue publish");
        loop {
            match self.next().await.expect("puback") {
                Event::Incoming(Packet::PubAck(ack)) => return ack.reason,
                _ => continue,
            }
        }
    }

    /// Subscribes at QoS 1; returns the SUBACK reason code.
    async fn subscribe(&mut self, filter: &str) -> SubscribeReasonCode {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("queue subscribe");
        loop {
            match self.next().await.expect("suback") {
                Event::Incoming(Packet::SubAck(ack)) => return ack.return_codes[0],
                _ => continue,
            }
        }
    }

    /// Collects delivered messages (topic, payload) until one with
    /// `payload == until` arrives.
    async fn receive_until(&mut self, until: &str) -> Vec<(String, String)> {
        let mut got = Vec::new();
        loop {
            if let Event::Incoming(Packet::Publish(p)) = self.next().await.expect("publish") {
                let t = String::from_utf8_lossy(&p.topic).into_owned();
                let body = String::from_utf8_lossy(&p.payload).into_owned();
                let done = body == until;
                got.push((t, body));
                if done {
                    return got;
                }
            }
        }
    }
}

/// A fleet: CA, broker cert for 127.0.0.1, three agents in two stores, the
/// two cloud service identities; and a broker started from the deploy config.
struct Fleet {
    env: TestEnv,
    pki: Pki,
    broker: TlsMosquitto,
}

async fn fleet(agents: &[(&str, &str)]) -> Fleet {
    let env = TestEnv::new();
    let pki = Pki::init(env.path().join("pki")).expect("pki init");
    let server = pki
        .issue_server("localhost", &["IP:127.0.0.1"])
        .expect("server cert");
    for (store, agent) in agents {
        pki.issue_agent(store, agent).expect("agent cert");
    }
    pki.issue_service("o2c-ingest").expect("ingest cert");
    pki.issue_service("o2c-status").expect("status cert");
    let broker = TlsMosquitto::start(&pki, &server).await.expect("broker");
    Fleet { env, pki, broker }
}

impl Fleet {
    async fn client(&self, files: &TlsFiles, id: &str) -> Client {
        Client::connect(self.broker.port(), Auth::Cert(files), id)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{id} cannot connect: {e}\nbroker log:\n{}",
                    std::fs::read_to_string(self.broker.log_path()).unwrap_or_default()
                )
            })
    }

    fn service(&self, name: &str) -> TlsFiles {
        let dir = self.pki.dir().join("services").join(name);
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

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

/// Ingest over mutual TLS with the `o2c-ingest` identity.
async fn tls_ingest(f: &Fleet, brokers: &str) -> Ingest {
    let svc = f.service("o2c-ingest");
    let (ca, cert, key) = (
        svc.ca.display().to_string(),
        svc.cert.display().to_string(),
        svc.key.display().to_string(),
    );
    Ingest::start_with_env(
        f.env.path(),
        f.env.prefix(),
        &f.broker.url(),
        brokers,
        &[
            ("O2C_CLOUD__MQTT__TLS__CA_FILE", ca.as_str()),
            ("O2C_CLOUD__MQTT__TLS__CERT_FILE", cert.as_str()),
            ("O2C_CLOUD__MQTT__TLS__KEY_FILE", key.as_str()),
        ],
    )
    .await
    .expect("ingest over TLS")
}

async fn tls_agent(f: &Fleet, store: &str, agent: &str, extra: &str) -> AgentProc {
    let tls = f.pki.agent(agent).toml_table();
    AgentProc::start(
        f.env.path(),
        store,
        agent,
        &f.broker.url(),
        &format!("{extra}\n{tls}"),
    )
    .await
    .expect("agent over TLS")
}

async fn capture(agent: &AgentProc, tag: &str, n: usize) {
    let keys: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
    for chunk in keys.chunks(16) {
        for r in futures::future::join_all(chunk.iter().map(|k| agent.post_order(k))).await {
            r.expect("capture");
        }
    }
}

/// Every outbox row is acked and every event id is in Kafka exactly as a set.
async fn assert_kafka_has_every_event(f: &Fleet, brokers: &str, agent: &AgentProc) -> usize {
    let outbox = agent.outbox().expect("outbox");
    let pending: Vec<_> = outbox.iter().filter(|(_, _, s)| s != "acked").collect();
    assert!(pending.is_empty(), "{} rows not acked", pending.len());
    let expected: BTreeSet<String> = outbox.into_iter().map(|(_, id, _)| id).collect();
    let t = f.env.topic("orders.created");
    let view = KafkaView::read(brokers, &t, Duration::from_secs(60))
        .await
        .expect("read Kafka");
    let got = view.event_ids();
    let missing: Vec<_> = expected.difference(&got).collect();
    assert!(missing.is_empty(), "{} events missing", missing.len());
    assert_eq!(got, expected, "Kafka holds events the outbox does not");
    expected.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_syncs_over_mutual_tls_into_kafka() {
    let f = fleet(&[("S001", "S001-A1")]).await;
    let brokers = f.env.require_kafka().await.to_owned();
    let _ingest = tls_ingest(&f, &brokers).await;
    let agent = tls_agent(&f, "S001", "S001-A1", "ack_timeout_ms = 2000").await;
    capture(&agent, "tls", 40).await;
    agent.wait_drained(DRAIN).await.expect("drained over TLS");
    assert_eq!(assert_kafka_has_every_event(&f, &brokers, &agent).await, 40);
    // The broker saw the agent by its certificate's identity.
    let log = std::fs::read_to_string(f.broker.log_path()).unwrap_or_default();
    assert!(log.contains("u'S001-A1'"), "broker log:\n{log}");
    assert!(log.contains("u'o2c-ingest'"), "broker log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_mid_backlog_loses_nothing() {
    const ORDERS: usize = 1_000;
    let f = fleet(&[("S001", "S001-A1")]).await;
    let brokers = f.env.require_kafka().await.to_owned();
    // Small batches: the drain takes ~200 round trips, so the restart below
    // lands in its middle.
    let mut agent = tls_agent(
        &f,
        "S001",
        "S001-A1",
        "ack_timeout_ms = 1000\nmax_batch_events = 5",
    )
    .await;
    // No ingest yet: everything captured stays pending (a backlog).
    capture(&agent, "rot", ORDERS).await;
    let st = agent.sync_status().await.expect("sync status");
    assert_eq!(st["pending_events"], ORDERS, "{st}");

    // The new pair lands on disk at the paths agent.toml names; the running
    // agent keeps its TLS session with the old one.
    let old_serial = Pki::serial(&f.pki.agent("S001-A1").cert).expect("serial");
    let renewed = f.pki.renew_agent("S001-A1").expect("renew");
    let new_serial = Pki::serial(&renewed.cert).expect("serial");
    assert_ne!(old_serial, new_serial);

    let _ingest = tls_ingest(&f, &brokers).await;
    let acked = |agent: &AgentProc| {
        agent
            .outbox()
            .map(|rows| rows.iter().filter(|(_, _, s)| s == "acked").count())
            .unwrap_or(0)
    };
    wait_until_named(
        "the drain to start",
        || async { acked(&agent) >= 25 },
        DRAIN,
    )
    .await
    .expect("drain started");
    // Restart mid-drain, as `systemctl restart o2c-agent` would.
    agent.stop().await.expect("SIGTERM");
    let done = acked(&agent);
    assert!(
        done < ORDERS,
        "the backlog drained before the restart; nothing was proved"
    );
    eprintln!("restarting with certificate {new_serial} after {done}/{ORDERS} acked");
    agent.restart().await.expect("restart with the new cert");
    agent
        .wait_drained(DRAIN)
        .await
        .expect("drained after rotation");
    assert_eq!(
        assert_kafka_has_every_event(&f, &brokers, &agent).await,
        ORDERS
    );
}

/// The issue's rule for the agent's TLS files: a missing or unreadable key or
/// certificate is a config error (exit 64, naming the key), found before the
/// agent binds anything; never a panic or a sync task that silently gives up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_bad_key_or_certificate_is_a_config_error() {
    let env = TestEnv::new();
    let pki = Pki::init(env.path().join("pki")).expect("pki init");
    let good = pki.issue_agent("S001", "S001-A1").expect("agent cert");
    let garbage = env.path().join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file\n").expect("write");
    let missing = env.path().join("missing.pem");
    let cases = [
        (
            "mqtt.tls.key_file",
            "missing key",
            TlsFiles {
                key: missing.clone(),
                ..good.clone()
            },
        ),
        (
            "mqtt.tls.key_file",
            "key is a directory",
            TlsFiles {
                key: env.path().to_path_buf(),
                ..good.clone()
            },
        ),
        (
            "mqtt.tls.key_file",
            "key is not PEM",
            TlsFiles {
                key: garbage.clone(),
                ..good.clone()
            },
        ),
        (
            "mqtt.tls.cert_file",
            "missing certificate",
            TlsFiles {
                cert: missing.clone(),
                ..good.clone()
            },
        ),
        (
            "mqtt.tls.ca_file",
            "missing CA",
            TlsFiles {
                ca: missing,
                ..good.clone()
            },
        ),
    ];
    for (i, (key, why, files)) in cases.into_iter().enumerate() {
        let config = env.path().join(format!("agent-{i}.toml"));
        std::fs::write(
            &config,
            format!(
                "store_id = \"S001\"\nagent_id = \"S001-A1\"\ndata_dir = \"{}\"\n\
                 [http]\nlisten = \"127.0.0.1:0\"\n[mqtt]\nurl = \"mqtts://127.0.0.1:1\"\n{}\n\
                 [[terminals]]\nid = \"T1\"\ntoken_sha256 = \"{}\"\n",
                env.path().join(format!("data-{i}")).display(),
                files.toml_table(),
                "0".repeat(64)
            ),
        )
        .expect("write config");
        for sub in ["check-config", "run"] {
            let out = tokio::time::timeout(
                STEP,
                tokio::process::Command::new(o2c_tests::bin_path("o2c-agent"))
                    .arg(sub)
                    .arg("--config")
                    .arg(&config)
                    .kill_on_drop(true)
                    .output(),
            )
            .await
            .unwrap_or_else(|_| panic!("{why}: `o2c-agent {sub}` still running after {STEP:?}"))
            .expect("spawn o2c-agent");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(64),
                "{why}: `o2c-agent {sub}` must exit 64; stderr:\n{stderr}"
            );
            assert!(
                stderr.contains(key),
                "{why}: stderr must name {key}:\n{stderr}"
            );
        }
    }
}
