//! `o2c-agent check-config` against the real binary: a config in the old
//! layout (sync window and retention in `[mqtt]`) loads with a warning per
//! old key and prints the new layout; an old key and its new key together
//! exit 64 naming both.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::config_toml;

const BIN: &str = env!("CARGO_BIN_EXE_o2c-agent");

fn check_config(config: &Path) -> Output {
    Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The test config with `keys` added to its `[mqtt]` table and `extra`
/// appended.
fn write_config(dir: &Path, keys: &str, extra: &str) -> std::path::PathBuf {
    let url = "url = \"mqtt://127.0.0.1:1883\"";
    let text = config_toml(&dir.join("data"), extra).replace(url, &format!("{url}\n{keys}"));
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn an_old_layout_config_loads_with_warnings_and_prints_the_new_layout() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "max_batch_events = 20\nack_timeout_ms = 3000\nretention_days = 9",
        // With a currency: the printed defaults of [payments] need one.
        "[store]\ncurrency = \"EUR\"",
    );
    let out = check_config(&config);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    for (old, new) in [
        ("mqtt.max_batch_events", "sync.max_batch_events"),
        ("mqtt.ack_timeout_ms", "sync.ack_timeout_ms"),
        ("mqtt.retention_days", "outbox.retention_days"),
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("WARN") && l.contains(old) && l.contains(new)),
            "{old}: {stderr}"
        );
    }
    let sync = &stdout[stdout.find("[sync]").expect("a [sync] table")..];
    assert!(sync.contains("max_batch_events = 20"), "{stdout}");
    assert!(sync.contains("ack_timeout_ms = 3000"), "{stdout}");
    let outbox = &stdout[stdout.find("[outbox]").expect("an [outbox] table")..];
    assert!(outbox.contains("retention_days = 9"), "{stdout}");
    // The printed config is the file to keep: it loads without a warning
    // and prints the same.
    std::fs::write(&config, &stdout).unwrap();
    let again = check_config(&config);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout), stdout);
    assert!(
        !text(&again.stderr).contains("WARN"),
        "{}",
        text(&again.stderr)
    );
}

#[test]
fn an_old_key_beside_its_new_key_is_a_config_error_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "ack_timeout_ms = 3000",
        "[sync]\nack_timeout_ms = 1000",
    );
    let out = check_config(&config);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("mqtt.ack_timeout_ms") && stderr.contains("sync.ack_timeout_ms"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
