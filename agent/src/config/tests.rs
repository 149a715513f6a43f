use super::*;

const MINIMAL: &str = r#"
store_id = "S001"
agent_id = "S001-A1"
data_dir = "/var/lib/o2c-agent"
[store]
currency = "CAD"
[http]
listen = "127.0.0.1:8080"
[mqtt]
url = "mqtt://127.0.0.1:1883"
[[terminals]]
id = "T1"
token_sha256 = "1a7674eb4ee78df7e1ac439a93c3fa8e3c945784d4dec9fd8e3011738b2f1d62"
[payments]
offline_floor_limit_minor = 10000
offline_total_cap_minor = 500000
[outbox]
max_pending_events = 1000000
"#;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn key_of(e: ConfigError) -> String {
    match e {
        ConfigError::Key { key, .. } | ConfigError::Env { key, .. } => key,
        other => panic!("no key in {other}"),
    }
}

#[test]
fn minimal_config_parses_with_defaults() {
    let c = Config::from_toml_with_env(MINIMAL, []).unwrap();
    assert_eq!(c.store_id.as_str(), "S001");
    assert_eq!(c.http.listen.port(), 8080);
    assert_eq!(c.sync.max_batch_events, 500);
    assert_eq!(c.outbox.retention_days, 7);
    assert_eq!(c.outbox.max_pending_events, 1_000_000);
    assert_eq!(c.db_path(), Path::new("/var/lib/o2c-agent/agent.db"));
    // The printed config parses back to the same thing.
    let again = Config::from_toml_with_env(&c.to_toml(), []).unwrap();
    assert_eq!(again.to_toml(), c.to_toml());
}

#[test]
fn env_overrides_every_level() {
    let c = Config::from_toml_with_env(
        MINIMAL,
        env(&[
            ("O2C_AGENT__STORE_ID", "S002"),
            ("O2C_AGENT__HTTP__LISTEN", "127.0.0.1:0"),
            ("O2C_AGENT__PAYMENTS__OFFLINE_FLOOR_LIMIT_MINOR", "500"),
            ("O2C_AGENT__MQTT__URL", "mqtts://broker:8883"),
            ("O2C_AGENT__MQTT__TLS__CA_FILE", "/etc/ca.pem"),
            (
                "O2C_AGENT__TERMINALS__0__TOKEN_SHA256",
                "0000000000000000000000000000000000000000000000000000000000000001",
            ),
            ("UNRELATED", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(c.store_id.as_str(), "S002");
    assert_eq!(c.http.listen.port(), 0);
    assert_eq!(c.payments.offline_floor_limit_minor, 500);
    assert_eq!(
        c.mqtt.tls.as_ref().unwrap().ca_file,
        Path::new("/etc/ca.pem")
    );
    assert_eq!(c.terminals[0].token_sha256.0[31], 1);
}

#[test]
fn errors_name_the_key() {
    type Env = Vec<(String, String)>;
    let cases: Vec<(String, Env, &str)> = vec![
        (
            MINIMAL.replace("[outbox]", "[outbox]\nbogus = 1"),
            vec![],
            "outbox.bogus",
        ),
        (
            MINIMAL.replace("store_id = \"S001\"", "store_id = \"S/1\""),
            vec![],
            "store_id",
        ),
        (
            MINIMAL.replace("127.0.0.1:8080", "nope"),
            vec![],
            "http.listen",
        ),
        (
            MINIMAL.to_owned(),
            env(&[("O2C_AGENT__HTTP__LISTNE", "1")]),
            "http.listne",
        ),
        (
            MINIMAL.to_owned(),
            env(&[("O2C_AGENT__OUTBOX__MAX_PENDING_EVENTS", "many")]),
            "outbox.max_pending_events",
        ),
        (
            MINIMAL.replace("mqtt://127.0.0.1:1883", "http://x"),
            vec![],
            "mqtt.url",
        ),
        (MINIMAL.replace("mqtt://", "mqtts://"), vec![], "mqtt.tls"),
        (
            MINIMAL.replace("token_sha256 = \"1a", "token_sha256 = \"zz"),
            vec![],
            "terminals[0].token_sha256",
        ),
        (
            MINIMAL.replace("agent_id = \"S001-A1\"\n", ""),
            vec![],
            "agent_id",
        ),
        (
            format!(
                "{MINIMAL}\n[[terminals]]\nid = \"T1\"\ntoken_sha256 = \"{}\"\n",
                "ab".repeat(32)
            ),
            vec![],
            "terminals[1].id",
        ),
        (
            MINIMAL.to_owned(),
            env(&[("O2C_AGENT__TERMINALS__5__ID", "T9")]),
            "terminals.5.id",
        ),
        (
            MINIMAL.replace("\"CAD\"", "\"EURO\""),
            vec![],
            "store.currency",
        ),
        (
            MINIMAL.replace("\"CAD\"", "\"XYZ\""),
            vec![],
            "store.currency",
        ),
        (
            MINIMAL.replace("[store]", "[store]\nbogus = 1"),
            vec![],
            "store.bogus",
        ),
    ];
    for (text, env, want) in cases {
        let err = Config::from_toml_with_env(&text, env).unwrap_err();
        let shown = err.to_string();
        assert_eq!(key_of(err), want, "{shown}");
        assert!(shown.contains(want), "{shown}");
    }
}

#[test]
fn syntax_errors_are_reported() {
    assert!(matches!(
        Config::from_toml_with_env("store_id = ", []),
        Err(ConfigError::Syntax { .. })
    ));
}

/// The config without `[store]` and `[payments]`: an agent configured
/// before `store.currency` existed.
fn without_currency() -> String {
    let text = MINIMAL.replace("[store]\ncurrency = \"CAD\"\n", "");
    let cut = text.find("[payments]").unwrap();
    let end = text.find("[outbox]").unwrap();
    format!("{}{}", &text[..cut], &text[end..])
}

#[test]
fn store_currency_is_parsed_and_can_come_from_the_environment() {
    let c = Config::from_toml_with_env(MINIMAL, []).unwrap();
    assert_eq!(c.store.currency.map(|c| c.code()), Some("CAD"));
    assert!(
        c.to_toml().contains("currency = \"CAD\""),
        "{}",
        c.to_toml()
    );
    let c = Config::from_toml_with_env(
        &without_currency(),
        env(&[("O2C_AGENT__STORE__CURRENCY", "EUR")]),
    )
    .unwrap();
    assert_eq!(c.store.currency.map(|c| c.code()), Some("EUR"));
}

#[test]
fn a_config_without_store_currency_loads_but_cannot_set_offline_limits() {
    // Without offline limits: loads, and offline card sales are refused.
    let c = Config::from_toml_with_env(&without_currency(), []).unwrap();
    assert_eq!(c.store.currency, None);
    // An offline limit set in the file or the environment needs a currency.
    let in_file = format!(
        "{}\n[payments]\noffline_total_cap_minor = 1000\n",
        without_currency()
    );
    let err = Config::from_toml_with_env(&in_file, []).unwrap_err();
    let shown = err.to_string();
    assert_eq!(key_of(err), "store.currency", "{shown}");
    assert!(
        shown.contains("payments.offline_total_cap_minor"),
        "{shown}"
    );
    let err = Config::from_toml_with_env(
        &without_currency(),
        env(&[("O2C_AGENT__PAYMENTS__OFFLINE_FLOOR_LIMIT_MINOR", "500")]),
    )
    .unwrap_err();
    assert_eq!(key_of(err), "store.currency");
}

/// Runs `f` with a subscriber that records every event's text.
fn with_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    (out, text)
}

#[test]
fn new_layout_keys_are_read_from_sync_and_outbox() {
    let text = format!(
        "{MINIMAL}retention_days = 30\n[sync]\nmax_batch_events = 50\n\
         max_batch_bytes = 4096\nack_timeout_ms = 1000\n"
    );
    let (c, logs) = with_logs(|| Config::from_toml_with_env(&text, []).unwrap());
    assert_eq!(c.sync.max_batch_events, 50);
    assert_eq!(c.sync.max_batch_bytes, 4096);
    assert_eq!(c.sync.ack_timeout_ms, 1000);
    assert_eq!(c.outbox.retention_days, 30);
    assert!(!logs.contains("deprecated"), "{logs}");
    // check-config prints the new layout.
    let shown = c.to_toml();
    assert!(shown.contains("[sync]\nmax_batch_events = 50"), "{shown}");
    assert!(shown.contains("retention_days = 30"), "{shown}");
    let mqtt = &shown[shown.find("[mqtt]").unwrap()..];
    let mqtt = &mqtt[..mqtt[1..].find("\n[").map_or(mqtt.len(), |i| i + 1)];
    assert!(!mqtt.contains("ack_timeout_ms"), "{mqtt}");
    assert!(!mqtt.contains("retention_days"), "{mqtt}");
    // Environment overrides reach the new tables.
    let c = Config::from_toml_with_env(
        MINIMAL,
        env(&[
            ("O2C_AGENT__SYNC__ACK_TIMEOUT_MS", "2500"),
            ("O2C_AGENT__OUTBOX__RETENTION_DAYS", "3"),
        ]),
    )
    .unwrap();
    assert_eq!(c.sync.ack_timeout_ms, 2500);
    assert_eq!(c.outbox.retention_days, 3);
}

#[test]
fn old_keys_in_mqtt_are_accepted_with_a_warning() {
    let text = MINIMAL.replace(
        "url = \"mqtt://127.0.0.1:1883\"",
        "url = \"mqtt://127.0.0.1:1883\"\nmax_batch_events = 20\nmax_batch_bytes = 8192\n\
         ack_timeout_ms = 3000\nretention_days = 9",
    );
    let (c, logs) = with_logs(|| Config::from_toml_with_env(&text, []).unwrap());
    assert_eq!(c.sync.max_batch_events, 20);
    assert_eq!(c.sync.max_batch_bytes, 8192);
    assert_eq!(c.sync.ack_timeout_ms, 3000);
    assert_eq!(c.outbox.retention_days, 9);
    for (old, new) in [
        ("mqtt.max_batch_events", "sync.max_batch_events"),
        ("mqtt.max_batch_bytes", "sync.max_batch_bytes"),
        ("mqtt.ack_timeout_ms", "sync.ack_timeout_ms"),
        ("mqtt.retention_days", "outbox.retention_days"),
    ] {
        assert!(
            logs.lines()
                .any(|l| l.contains("WARN") && l.contains(old) && l.contains(new)),
            "{old}: {logs}"
        );
    }
    // The list the loader logs from, in order.
    let root = LOADER.parse(&text, []).unwrap();
    let (_, deprecated) = Config::from_value(root).unwrap();
    assert_eq!(deprecated.len(), 4);
    assert_eq!(deprecated[2].old, "mqtt.ack_timeout_ms");
    assert_eq!(deprecated[2].new, "sync.ack_timeout_ms");
    // An old key from the environment is moved too.
    let (c, logs) = with_logs(|| {
        Config::from_toml_with_env(MINIMAL, env(&[("O2C_AGENT__MQTT__ACK_TIMEOUT_MS", "1234")]))
            .unwrap()
    });
    assert_eq!(c.sync.ack_timeout_ms, 1234);
    assert!(logs.contains("mqtt.ack_timeout_ms"), "{logs}");
    // Old values are still checked, under their new name.
    let err =
        Config::from_toml_with_env(MINIMAL, env(&[("O2C_AGENT__MQTT__MAX_BATCH_EVENTS", "0")]))
            .unwrap_err();
    assert_eq!(key_of(err), "sync.max_batch_events");
}

#[test]
fn an_old_key_and_its_new_key_together_are_an_error_naming_both() {
    let text = format!(
        "{}[sync]\nack_timeout_ms = 1000\n",
        MINIMAL.replace(
            "url = \"mqtt://127.0.0.1:1883\"",
            "url = \"mqtt://127.0.0.1:1883\"\nack_timeout_ms = 3000"
        )
    );
    let err = Config::from_toml_with_env(&text, []).unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("mqtt.ack_timeout_ms"), "{shown}");
    assert!(shown.contains("sync.ack_timeout_ms"), "{shown}");
    assert_eq!(key_of(err), "sync.ack_timeout_ms");
    // The same through the environment.
    let err = Config::from_toml_with_env(
        &format!("{MINIMAL}retention_days = 3\n"),
        env(&[("O2C_AGENT__MQTT__RETENTION_DAYS", "5")]),
    )
    .unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains("mqtt.retention_days") && shown.contains("outbox.retention_days"),
        "{shown}"
    );
}

#[test]
fn telemetry_keeps_the_trace_keys_and_adds_heartbeat_secs() {
    let c = Config::from_toml_with_env(MINIMAL, []).unwrap();
    assert_eq!(c.telemetry.heartbeat_secs, 30);
    assert_eq!(
        c.telemetry.trace,
        o2c_runtime::trace::TraceConfig::default()
    );

    let text = format!(
        "{MINIMAL}[telemetry]\nendpoint = \"http://127.0.0.1:6006/v1/traces\"\n\
         sampling_ratio = 0.5\nservice_name = \"store-1\"\nmax_queue_spans = 10\n\
         export_timeout_ms = 100\nheartbeat_secs = 5\n\
         [telemetry.resource]\n\"deployment.environment\" = \"prod\"\n"
    );
    let c = Config::from_toml_with_env(&text, []).unwrap();
    assert_eq!(c.telemetry.heartbeat_secs, 5);
    assert_eq!(
        c.telemetry.trace.endpoint.as_deref(),
        Some("http://127.0.0.1:6006/v1/traces")
    );
    assert_eq!(c.telemetry.trace.sampling_ratio, 0.5);
    assert_eq!(c.telemetry.trace.max_queue_spans, 10);
    assert_eq!(
        c.telemetry.trace.resource.get("deployment.environment"),
        Some(&"prod".to_owned())
    );
    // The printed config loads again, heartbeat included.
    let again = Config::from_toml_with_env(&c.to_toml(), []).unwrap();
    assert_eq!(again.telemetry, c.telemetry);

    // From the environment too.
    let c = Config::from_toml_with_env(
        MINIMAL,
        env(&[("O2C_AGENT__TELEMETRY__HEARTBEAT_SECS", "7")]),
    )
    .unwrap();
    assert_eq!(c.telemetry.heartbeat_secs, 7);
}

#[test]
fn telemetry_errors_name_the_key() {
    for (extra, key) in [
        ("heartbeat_secs = 0", "telemetry.heartbeat_secs"),
        ("heartbeat_secs = 3601", "telemetry.heartbeat_secs"),
        ("heartbeat_secs = \"x\"", "telemetry"),
        ("no_such_key = 1", "telemetry.no_such_key"),
        ("sampling_ratio = 2.0", "telemetry.sampling_ratio"),
    ] {
        let text = format!("{MINIMAL}[telemetry]\n{extra}\n");
        let e = Config::from_toml_with_env(&text, []).unwrap_err();
        let shown = e.to_string();
        assert_eq!(key_of(e), key, "{extra}: {shown}");
    }
}
