//! A TLS test fleet: a CA with agent and cloud service identities from
//! `deploy/pki/o2c-certs.sh`, a private Mosquitto started from
//! `deploy/mosquitto/o2c.conf` with the ACL the script renders ([`fleet`]),
//! and raw rumqttc v5 clients connecting as any identity ([`Client`]).
//! Test code: its helpers panic with what went wrong.

use std::path::Path;
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use tokio::sync::mpsc;

use crate::TestEnv;
use crate::tls::{Pki, TlsFiles, TlsMosquitto};

/// Longest wait for one client event.
pub const STEP: Duration = Duration::from_secs(10);

/// An agent channel's topic.
pub fn topic(store: &str, agent: &str, channel: &str) -> String {
    format!("o2c/v1/stores/{store}/agents/{agent}/{channel}")
}

/// A raw MQTT v5 client whose event loop feeds a channel; it stops polling
/// at the first error (no silent reconnects).
#[derive(Debug)]
pub struct Client {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Event, String>>,
    name: String,
}

#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
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
    pub async fn connect(port: u16, auth: Auth<'_>, id: &str) -> Result<Client, String> {
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

    /// The next event, within [`STEP`].
    pub async fn next(&mut self) -> Result<Event, String> {
        match tokio::time::timeout(STEP, self.events.recv()).await {
            Err(_) => Err(format!("{}: no event within {STEP:?}", self.name)),
            Ok(None) => Err(format!("{}: event loop ended", self.name)),
            Ok(Some(r)) => r,
        }
    }

    /// QoS 1 publish; returns the broker's PUBACK reason.
    pub async fn publish(&mut self, topic: &str, payload: &str) -> PubAckReason {
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
    pub async fn subscribe(&mut self, filter: &str) -> SubscribeReasonCode {
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
    pub async fn receive_until(&mut self, until: &str) -> Vec<(String, String)> {
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

/// A fleet: CA, broker cert for 127.0.0.1, the given agents, the cloud
/// service identities (o2c-ingest, o2c-status, o2c-fleet); and a broker
/// started from the deploy config.
#[derive(Debug)]
pub struct Fleet {
    /// The test's environment (temp dir, names).
    pub env: TestEnv,
    /// The CA and its issued files.
    pub pki: Pki,
    /// The broker.
    pub broker: TlsMosquitto,
}

/// Issues the certificates and starts the broker (panics on failure).
pub async fn fleet(agents: &[(&str, &str)]) -> Fleet {
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
    pki.issue_service("o2c-fleet").expect("fleet view cert");
    let broker = TlsMosquitto::start(&pki, &server).await.expect("broker");
    Fleet { env, pki, broker }
}

impl Fleet {
    /// A client with `files`, connected as `id` (panics on failure).
    pub async fn client(&self, files: &TlsFiles, id: &str) -> Client {
        Client::connect(self.broker.port(), Auth::Cert(files), id)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{id} cannot connect: {e}\nbroker log:\n{}",
                    std::fs::read_to_string(self.broker.log_path()).unwrap_or_default()
                )
            })
    }

    /// A cloud service identity's files.
    pub fn service(&self, name: &str) -> TlsFiles {
        let dir = self.pki.dir().join("services").join(name);
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}
