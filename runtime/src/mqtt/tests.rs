use std::path::Path;
use std::path::PathBuf;

use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

fn mutual() -> MqttTlsConfig {
    MqttTlsConfig {
        ca_file: fixture("ca.pem"),
        cert_file: Some(fixture("client.pem")),
        key_file: Some(fixture("client.key")),
    }
}

#[test]
fn good_files_load_with_and_without_a_client_certificate() {
    install_crypto_provider();
    check("mqtts://broker:8883", Some(&mutual())).unwrap();
    let server_only = MqttTlsConfig {
        cert_file: None,
        key_file: None,
        ..mutual()
    };
    check("mqtts://broker:8883", Some(&server_only)).unwrap();
    check("mqtt://broker:1883", None).unwrap();
}

#[test]
fn a_missing_file_names_its_key_and_path() {
    install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pem");
    for (t, key) in [
        (
            MqttTlsConfig {
                ca_file: missing.clone(),
                ..mutual()
            },
            "mqtt.tls.ca_file",
        ),
        (
            MqttTlsConfig {
                cert_file: Some(missing.clone()),
                ..mutual()
            },
            "mqtt.tls.cert_file",
        ),
        (
            MqttTlsConfig {
                key_file: Some(missing.clone()),
                ..mutual()
            },
            "mqtt.tls.key_file",
        ),
    ] {
        let err = check("mqtts://b:8883", Some(&t)).unwrap_err();
        assert_eq!(err.key(), key, "{err}");
        assert!(err.to_string().contains("nope.pem"), "{err}");
    }
}

#[test]
fn bad_pem_is_refused() {
    install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    for (t, key) in [
        (
            MqttTlsConfig {
                ca_file: junk.clone(),
                ..mutual()
            },
            "mqtt.tls.ca_file",
        ),
        (
            MqttTlsConfig {
                ca_file: broken.clone(),
                ..mutual()
            },
            "mqtt.tls.ca_file",
        ),
        (
            MqttTlsConfig {
                // A certificate where the key should be.
                key_file: Some(fixture("client.pem")),
                ..mutual()
            },
            "mqtt.tls.key_file",
        ),
        (
            MqttTlsConfig {
                // A key where the certificate should be.
                cert_file: Some(fixture("client.key")),
                ..mutual()
            },
            "mqtt.tls.cert_file",
        ),
    ] {
        let err = check("mqtts://b:8883", Some(&t)).unwrap_err();
        assert_eq!(err.key(), key, "{err}");
    }
}

#[test]
fn url_and_tls_table_must_fit_together() {
    let cases = [
        ("http://b", Some(mutual()), "mqtt.url"),
        ("mqtts://b:8883", None, "mqtt.tls"),
        ("mqtt://b:1883", Some(mutual()), "mqtt.tls"),
        (
            "mqtts://b:8883",
            Some(MqttTlsConfig {
                key_file: None,
                ..mutual()
            }),
            "mqtt.tls.key_file",
        ),
    ];
    for (url, tls, key) in cases {
        let err = check_settings(url, tls.as_ref()).unwrap_err();
        assert_eq!(err.key(), key, "{url}: {err}");
    }
}

#[test]
fn options_carry_the_address_and_keep_alive() {
    install_crypto_provider();
    let tls = mutual();
    let o = options(Connection {
        url: "mqtts://broker.example:8883",
        tls: Some(&tls),
        client_id: "S001-A1",
        keep_alive: Duration::from_secs(1),
        max_packet_bytes: 1024,
    })
    .unwrap();
    assert_eq!(o.broker_address(), ("broker.example".to_owned(), 8883));
    assert_eq!(o.keep_alive(), MIN_KEEP_ALIVE);
    assert_eq!(o.client_id(), "S001-A1");
}
