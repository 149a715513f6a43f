//! The chaos world: every component of the pipeline as a real process on
//! loopback, each behind a lock so faults on different components can
//! overlap while two faults on one component take turns.
//!
//! Each agent reaches the broker through a [`LinkProxy`] of its own (cuts,
//! delay, reordering), and with namespaces from a network namespace too
//! ([`AgentNet`]: loss, silent partitions, rate limits; its proxy listens
//! on the veth's host end). The ingest replicas and the saga reach Kafka
//! through one more proxy (Tansu advertises it, so every Kafka connection
//! crosses it), and the saga reaches the processor simulator through one
//! too (its outages: a killed simulator would lose its ledger, which a real
//! processor never does). PostgreSQL is a [`PrivatePostgres`], so its
//! restarts disturb no other test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tempfile::TempDir;
use tokio::sync::Mutex;

use super::ChaosError;
use super::schedule::SAGA_SERVICES;
use crate::netns::{AgentNet, PortLoss};
use crate::pg::PrivatePostgres;
use crate::pipeline::{AgentProc, Ingest};
use crate::proxy::LinkProxy;
use crate::saga::{CarrierSim, PspSim, SagaProc, SagaSettings};
use crate::{PrivateMosquitto, PrivateTansu};

pub use crate::saga::AUTO_STOCK;

/// The agents' `[mqtt]` extras: a short keepalive and ack timeout, so a
/// dead link is noticed within seconds.
const AGENT_MQTT: &str = "keep_alive_secs = 5\n[sync]\nack_timeout_ms = 3000";

/// Which saga processes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SagaLayout {
    /// One process per service (the general schedule).
    PerService,
    /// `--service all` in one process (issue 21's scenario).
    All,
}

/// The saga reconciler's period in a chaos world, and the age after which
/// it takes up a capture or an owed refund (`[saga] capture_reconcile_secs`
/// and `capture_stuck_secs`; 30 s and 60 s by default). A run's quiet
/// period is 30 s, so at the defaults a refund owed near the end would be
/// called a stall before it was due.
pub const RECONCILE_SECS: u64 = 5;

/// How many of each.
#[derive(Debug, Clone, Copy)]
pub struct WorldShape {
    /// Agents (one store each).
    pub agents: usize,
    /// Ingest replicas.
    pub ingests: usize,
    /// Saga processes.
    pub sagas: SagaLayout,
    /// Each agent in a network namespace of its own (else behind a proxy).
    pub netns: bool,
}

/// Everything running, for one chaos run.
#[derive(Debug)]
pub struct World {
    /// Unique prefix of topics, groups and stores.
    pub prefix: String,
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// PostgreSQL (restarted on a blocking thread, so shared).
    pub pg: Arc<PrivatePostgres>,
    /// Kafka.
    pub tansu: Mutex<PrivateTansu>,
    /// MQTT.
    pub mosq: Mutex<PrivateMosquitto>,
    /// The processor simulator (never killed: it holds the ledger).
    pub psp: PspSim,
    /// The carrier simulator.
    pub carrier: CarrierSim,
    /// The saga's link to the simulator.
    pub psp_link: LinkProxy,
    /// The cloud's link to Kafka (every Kafka connection crosses it).
    pub kafka_link: LinkProxy,
    /// Random loss on Tansu's own port (namespace mode), locked for a
    /// whole Kafka link fault, so two take turns.
    pub kafka_loss: Mutex<Option<PortLoss>>,
    /// Ingest replicas.
    pub ingests: Vec<Mutex<Ingest>>,
    /// Saga processes with their service names.
    pub sagas: Vec<(String, Mutex<SagaProc>)>,
    /// Each agent's link to the broker.
    pub links: Vec<LinkProxy>,
    /// Each agent's namespace and the broker port it reaches (namespace
    /// mode; empty otherwise). Locked for a whole link fault, so two faults
    /// on one agent's link take turns instead of undoing each other.
    pub nets: Vec<Mutex<(AgentNet, u16)>>,
    /// Agents.
    pub agents: Vec<Mutex<AgentProc>>,
    /// Each agent's data dir (holds `http.addr`, read by the tills).
    pub agent_dirs: Vec<PathBuf>,
    /// Each agent's store id.
    pub stores: Vec<String>,
    dir: TempDir,
}

impl World {
    /// Starts PostgreSQL, Tansu (header index applied), Mosquitto, the
    /// simulator, the ingest replicas, the saga and the agents, in that
    /// order, each ready before the next.
    pub async fn start(shape: WorldShape, log: impl Fn(&str)) -> Result<Self, ChaosError> {
        let dir = tempfile::Builder::new()
            .prefix("o2c-chaos-")
            .tempdir()
            .map_err(|e| ChaosError::io("creating the run's dir", e))?;
        let prefix = format!("c{:010x}", rand::random::<u64>() & 0xff_ffff_ffff);
        log("starting a private PostgreSQL");
        let pg = Arc::new(PrivatePostgres::start().await?);
        log("starting a private Tansu (SQLite storage)");
        let (mut tansu, kafka_link) = PrivateTansu::start_proxied().await?;
        // The first start created the database; the restart adds the
        // header index Tansu 0.6 lacks.
        tansu.restart().await?;
        let brokers = tansu.brokers();
        // Loss on the link to Kafka: nftables on Tansu's own port, behind
        // the proxy (needs the same root and nftables as the namespaces).
        let kafka_loss = if shape.netns {
            Some(PortLoss::create(tansu.port())?)
        } else {
            None
        };
        log("starting a private Mosquitto");
        let persist = dir.path().join("mosquitto");
        std::fs::create_dir_all(&persist)
            .map_err(|e| ChaosError::io("creating the broker's dir", e))?;
        // As deploy/mosquitto/o2c.conf: persistence on, a deep queue.
        let location = format!("persistence_location {}/", persist.display());
        let extra = ["persistence true", &location, "max_queued_messages 1000000"];
        let mosq = PrivateMosquitto::start_with(&extra).await?;
        let mosq_addr = SocketAddr::from(([127, 0, 0, 1], mosq.port()));
        // With namespaces, each agent's proxy listens on its veth's host end.
        let mut nets = Vec::new();
        let mut links = Vec::new();
        let tag = format!("c{:06x}", rand::random::<u32>() & 0xff_ffff);
        for i in 0..shape.agents {
            let bind = if shape.netns {
                let net = AgentNet::create(&format!("{tag}{i}"))?;
                let bind = SocketAddr::from((net.host_ip(), 0));
                nets.push(net);
                bind
            } else {
                SocketAddr::from(([127, 0, 0, 1], 0))
            };
            links.push(LinkProxy::start_on(bind, mosq_addr).await?);
        }
        let nets: Vec<(AgentNet, u16)> = nets
            .into_iter()
            .zip(&links)
            .map(|(net, link)| (net, link.addr().port()))
            .collect();
        let psp = PspSim::start(dir.path()).await?;
        let psp_addr: SocketAddr = psp
            .url()
            .trim_start_matches("http://")
            .parse()
            .map_err(|_| ChaosError::Setup(format!("bad simulator url {}", psp.url())))?;
        let psp_link = LinkProxy::start(psp_addr).await?;
        let carrier = CarrierSim::start(dir.path()).await?;
        log("starting the ingest replicas");
        let mut ingests = Vec::new();
        for i in 0..shape.ingests {
            let d = sub_dir(dir.path(), &format!("ingest-{}", i + 1))?;
            ingests.push(Mutex::new(
                Ingest::start(&d, &prefix, &mosq.url(), &brokers).await?,
            ));
        }
        let settings = SagaSettings {
            prefix: prefix.clone(),
            mqtt_url: mosq.url(),
            brokers: brokers.clone(),
            pg: pg.conn_str(),
            psp_url: format!("http://{}", psp_link.addr()),
            carrier_url: carrier.url(),
            // A refund the processor could not take (unreachable at the
            // cancellation) is owed and paid by the reconciler: soon enough
            // here that the run settles well inside its quiet period.
            extra_saga: format!(
                "capture_reconcile_secs = {RECONCILE_SECS}\ncapture_stuck_secs = {RECONCILE_SECS}"
            ),
            extra_tables: String::new(),
            extra_psp: String::new(),
            extra_kafka: String::new(),
        };
        let services: Vec<&str> = match shape.sagas {
            SagaLayout::PerService => SAGA_SERVICES.to_vec(),
            SagaLayout::All => vec!["all"],
        };
        let mut sagas = Vec::new();
        for s in services {
            log(&format!("starting saga service {s}"));
            sagas.push((
                s.to_owned(),
                Mutex::new(SagaProc::start(dir.path(), &settings, s).await?),
            ));
        }
        let mut agents = Vec::new();
        let mut agent_dirs = Vec::new();
        let mut stores = Vec::new();
        for (i, link) in links.iter().enumerate() {
            let store = format!("{prefix}-s{}", i + 1);
            let url = format!("mqtt://{}", link.addr());
            let (wrapper, listen) = match nets.get(i) {
                Some((net, _)) => (net.wrapper(), Some(format!("{}:0", net.ns_ip()))),
                None => (Vec::new(), None),
            };
            log(&format!(
                "starting agent-{} (store {store}, broker {url})",
                i + 1
            ));
            let agent = AgentProc::start_wrapped(
                dir.path(),
                &store,
                &format!("A{}", i + 1),
                &url,
                AGENT_MQTT,
                wrapper,
                listen,
            )
            .await?;
            agent_dirs.push(
                agent
                    .db_path()
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default(),
            );
            agents.push(Mutex::new(agent));
            stores.push(store);
        }
        Ok(Self {
            prefix,
            brokers,
            pg,
            tansu: Mutex::new(tansu),
            mosq: Mutex::new(mosq),
            psp,
            carrier,
            psp_link,
            kafka_link,
            kafka_loss: Mutex::new(kafka_loss),
            ingests,
            sagas,
            links,
            nets: nets.into_iter().map(Mutex::new).collect(),
            agents,
            agent_dirs,
            stores,
            dir,
        })
    }

    /// The run's directory (configs and every process's log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Saga consumer group of `group` (`order`, `payment`, …).
    pub fn group(&self, group: &str) -> String {
        format!("{}-{group}", self.prefix)
    }

    /// A saga topic (`orders.created`, …).
    pub fn topic(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    /// Keeps the run's directory (logs) after the world drops; returns it.
    pub fn keep_dir(self) -> PathBuf {
        let World { dir, .. } = self;
        dir.keep()
    }
}

fn sub_dir(root: &Path, name: &str) -> Result<PathBuf, ChaosError> {
    let d = root.join(name);
    std::fs::create_dir_all(&d)
        .map_err(|e| ChaosError::io(format!("creating {}", d.display()), e))?;
    Ok(d)
}
