//! Tests of the cloud config: defaults, validation, the shipped files.

use super::*;

const MINIMAL: &str = r#"
[mqtt]
url = "mqtt://127.0.0.1:1883"
[kafka]
brokers = "127.0.0.1:9092"
"#;

#[test]
fn minimal_config_gets_defaults() {
    let c = Config::from_toml(MINIMAL, []).unwrap();
    assert_eq!(c.ingest.shared_group, "o2c-ingest");
    assert_eq!(c.kafka.linger_ms, 1);
    assert_eq!(c.topics().dlq(), "o2c.dlq");
}

#[test]
fn env_overrides_and_unknown_keys() {
    let env = [
        (
            "O2C_CLOUD__KAFKA__TOPIC_PREFIX".to_string(),
            "t1.".to_string(),
        ),
        ("O2C_CLOUD__KAFKA__LINGER_MS".to_string(), "5".to_string()),
        ("OTHER".to_string(), "x".to_string()),
    ];
    let c = Config::from_toml(MINIMAL, env).unwrap();
    assert_eq!(c.kafka.topic_prefix, "t1.");
    assert_eq!(c.kafka.linger_ms, 5);
    let bad = [("O2C_CLOUD__KAFKA__NOPE".to_string(), "1".to_string())];
    let e = Config::from_toml(MINIMAL, bad).unwrap_err().to_string();
    assert!(e.contains("nope"), "{e}");
    let e = Config::from_toml(&format!("{MINIMAL}\n[extra]\n"), [])
        .unwrap_err()
        .to_string();
    assert!(e.contains("extra"), "{e}");
}

#[test]
fn invalid_values_name_their_key() {
    let e = Config::from_toml(&MINIMAL.replace("mqtt://", "http://"), []).unwrap_err();
    assert!(e.to_string().contains("mqtt.url"), "{e}");
    let e = Config::from_toml(&MINIMAL.replace("mqtt://", "mqtts://"), []).unwrap_err();
    assert!(e.to_string().contains("mqtt.tls"), "{e}");
    let env = [(
        "O2C_CLOUD__KAFKA__TOPIC_PREFIX".to_string(),
        "a/b".to_string(),
    )];
    let e = Config::from_toml(MINIMAL, env).unwrap_err();
    assert!(e.to_string().contains("kafka.topic_prefix"), "{e}");
}

#[test]
fn shipped_configs_parse() {
    for (name, text) in [
        (
            "ingest",
            include_str!("../../../../deploy/cloud/config/ingest.toml"),
        ),
        (
            "saga",
            include_str!("../../../../deploy/cloud/config/saga.toml"),
        ),
        (
            "status",
            include_str!("../../../../deploy/cloud/config/status.toml"),
        ),
        (
            "catalog",
            include_str!("../../../../deploy/cloud/config/catalog.toml"),
        ),
        (
            "analytics",
            include_str!("../../../../deploy/cloud/config/analytics.toml"),
        ),
        (
            "reconcile",
            include_str!("../../../../deploy/cloud/config/reconcile.toml"),
        ),
        (
            "api",
            include_str!("../../../../deploy/cloud/config/api.toml"),
        ),
        (
            "notify",
            include_str!("../../../../deploy/cloud/config/notify.toml"),
        ),
    ] {
        match Config::from_toml(text, []) {
            Err(e) => panic!("deploy/cloud/config/{name}.toml: {e}"),
            // The order API's key settings are checked when it starts.
            Ok(cfg) if name == "api" => {
                if let Err(e) = cfg.api.jwt.check() {
                    panic!("deploy/cloud/config/api.toml: {e}");
                }
            }
            Ok(_) => {}
        }
    }
}

#[test]
fn ledger_retention_is_forever_or_long() {
    let c = Config::from_toml(MINIMAL, []).unwrap();
    assert_eq!(c.saga.ledger_retention_hours, 0, "kept forever by default");
    assert_eq!(c.saga.outbox_retention_hours, 168);
    let with = |hours: u64| {
        let env = [(
            "O2C_CLOUD__SAGA__LEDGER_RETENTION_HOURS".to_string(),
            hours.to_string(),
        )];
        Config::from_toml(MINIMAL, env)
    };
    let e = with(24).unwrap_err();
    assert!(e.to_string().contains("saga.ledger_retention_hours"), "{e}");
    assert!(with(MIN_LEDGER_RETENTION_HOURS - 1).is_err());
    assert_eq!(
        with(MIN_LEDGER_RETENTION_HOURS)
            .unwrap()
            .saga
            .ledger_retention_hours,
        MIN_LEDGER_RETENTION_HOURS
    );
}

#[test]
fn the_reconciler_never_takes_a_capture_younger_than_a_call() {
    let c = Config::from_toml(MINIMAL, []).unwrap();
    assert_eq!(
        (c.saga.capture_reconcile_secs, c.saga.capture_stuck_secs),
        (30, 60)
    );
    assert_eq!(c.psp.key_lifetime_hours, 24);
    let with = |pairs: &[(&str, &str)]| {
        let env = pairs
            .iter()
            .map(|(k, v)| (format!("O2C_CLOUD__{k}"), v.to_string()));
        Config::from_toml(MINIMAL, env)
    };
    let e = with(&[("SAGA__CAPTURE_STUCK_SECS", "2")]).unwrap_err();
    assert!(e.to_string().contains("saga.capture_stuck_secs"), "{e}");
    assert!(
        with(&[
            ("SAGA__CAPTURE_STUCK_SECS", "2"),
            ("PSP__TIMEOUT_MS", "500")
        ])
        .is_ok()
    );
    let e = with(&[("SAGA__CAPTURE_RECONCILE_SECS", "0")]).unwrap_err();
    assert!(e.to_string().contains("saga.capture_reconcile_secs"), "{e}");
    let e = with(&[("PSP__KEY_LIFETIME_HOURS", "0")]).unwrap_err();
    assert!(e.to_string().contains("psp.key_lifetime_hours"), "{e}");
}

#[test]
fn agent_quota_is_off_by_default_and_checked() {
    let c = Config::from_toml(MINIMAL, []).unwrap();
    assert_eq!(c.ingest.agent_quota_events_per_sec, 0, "off by default");
    assert_eq!(c.ingest.agent_quota_burst, 0);
    let env = |k: &str, v: &str| (format!("O2C_CLOUD__INGEST__{k}"), v.to_owned());
    let c = Config::from_toml(
        MINIMAL,
        [
            env("AGENT_QUOTA_EVENTS_PER_SEC", "200"),
            env("AGENT_QUOTA_BURST", "1000"),
        ],
    )
    .unwrap();
    assert_eq!(c.ingest.agent_quota_events_per_sec, 200);
    assert_eq!(c.ingest.agent_quota_burst, 1000);
    let e = Config::from_toml(MINIMAL, [env("AGENT_QUOTA_BURST", "1000")]).unwrap_err();
    assert!(e.to_string().contains("ingest.agent_quota_burst"), "{e}");
    let e = Config::from_toml(MINIMAL, [env("AGENT_QUOTA_EVENTS_PER_SEC", "-1")]).unwrap_err();
    assert!(e.to_string().contains("agent_quota_events_per_sec"), "{e}");
}
