//! The real `o2c-agent` and `o2c-cloud ingest` over `mqtts://` into Kafka
//! (Tansu), with the fleet of [`o2c_tests::fleet`]: end to end, a
//! certificate renewed and swapped in mid-backlog with nothing lost, and
//! bad TLS files refused as config errors.

use std::collections::BTreeSet;
use std::time::Duration;

use o2c_tests::fleet::{Fleet, STEP, fleet};
use o2c_tests::pipeline::{AgentProc, Ingest, KafkaView};
use o2c_tests::tls::{Pki, TlsFiles};
use o2c_tests::{TestEnv, wait_until_named};

// 1,000 orders drain in about 5 s over loopback TLS.
const DRAIN: Duration = Duration::from_secs(60);

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
    let agent = tls_agent(&f, "S001", "S001-A1", "[sync]\nack_timeout_ms = 2000").await;
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
        "[sync]\nack_timeout_ms = 1000\nmax_batch_events = 5",
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
