//! Every link fault between a store and the broker, one after another,
//! each with orders captured while it lasts: after each heals, Kafka holds
//! exactly the agent's outbox (nothing lost, each event once after dedup)
//! and the agent's events keep their order.
//!
//! The agent runs in a network namespace of its own ([`AgentNet`]), joined
//! to the host by a veth pair; its broker address is a [`LinkProxy`] on the
//! veth's host end, relaying to a private Mosquitto. Loss and silent
//! partitions are nftables drops inside the namespace, the rate limit is
//! `tc` tbf on its veth, and cuts, silent proxy partitions, delay and
//! reordering are the proxy's (this kernel has no netem). Real
//! `o2c-cloud ingest` and Kafka. A namespace that cannot be created fails
//! the test with the reason.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use o2c_tests::netns::AgentNet;
use o2c_tests::pipeline::{AgentProc, Ingest, KafkaView};
use o2c_tests::proxy::{LinkMode, LinkProxy};
use o2c_tests::{PrivateMosquitto, TestEnv};

/// Orders captured during each fault.
const PER_FAULT: usize = 150;
/// How long each fault lasts.
const FAULT: Duration = Duration::from_secs(5);
const DRAIN: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy)]
enum LinkFault {
    Loss(u8),
    Partition,
    Rate(u32),
    Proxy(LinkMode),
}

const FAULTS: &[(&str, LinkFault)] = &[
    ("5% loss", LinkFault::Loss(5)),
    ("30% loss", LinkFault::Loss(30)),
    ("200 +/- 100 ms delay", LinkFault::Proxy(LinkMode::DELAY)),
    ("reordering", LinkFault::Proxy(LinkMode::REORDER)),
    ("silent partition (nftables)", LinkFault::Partition),
    (
        "silent partition (proxy)",
        LinkFault::Proxy(LinkMode::Blackhole),
    ),
    ("cut", LinkFault::Proxy(LinkMode::Cut)),
    ("256 kbit/s uplink", LinkFault::Rate(256)),
];

struct Link {
    net: AgentNet,
    proxy: LinkProxy,
}

impl Link {
    fn set(&self, fault: LinkFault) {
        let port = self.proxy.addr().port();
        match fault {
            LinkFault::Loss(p) => self.net.set_loss(port, p).expect("nft loss"),
            LinkFault::Partition => self.net.partition(port, true).expect("nft partition"),
            LinkFault::Rate(kbit) => self.net.set_rate(Some(kbit)).expect("tc tbf"),
            LinkFault::Proxy(mode) => self.proxy.set_mode(mode),
        }
    }

    fn heal(&self) {
        self.net.heal(self.proxy.addr().port()).expect("heal");
        self.proxy.set_mode(LinkMode::Up);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_link_fault_loses_nothing_and_keeps_the_order() {
    let env = TestEnv::new();
    let brokers = env.require_kafka().await.to_owned();
    let mosq = PrivateMosquitto::start().await.expect("mosquitto");
    let _ingest = Ingest::start(env.path(), env.prefix(), &mosq.url(), &brokers)
        .await
        .expect("ingest");
    let tag = format!("l{:06x}", rand::random::<u32>() & 0xff_ffff);
    let net = AgentNet::create(&tag).unwrap_or_else(|e| {
        panic!("cannot create a network namespace (root, iproute2 and nftables needed): {e}")
    });
    let upstream = SocketAddr::from(([127, 0, 0, 1], mosq.port()));
    let proxy = LinkProxy::start_on(SocketAddr::from((net.host_ip(), 0)), upstream)
        .await
        .expect("proxy");
    let store = env.store_id("S1");
    let agent = AgentProc::start_wrapped(
        env.path(),
        &store,
        &format!("{store}-A1"),
        &format!("mqtt://{}", proxy.addr()),
        // As the chaos runner's agents: a dead link is noticed in seconds.
        "keep_alive_secs = 5\n[sync]\nack_timeout_ms = 3000\nmax_batch_events = 20",
        net.wrapper(),
        Some(format!("{}:0", net.ns_ip())),
    )
    .await
    .expect("agent in its namespace");
    let link = Link { net, proxy };
    let topic = env.topic("orders.created");

    let mut captured = 0;
    for (i, (name, fault)) in FAULTS.iter().enumerate() {
        let started = Instant::now();
        link.set(*fault);
        // Tills keep selling through the fault: every capture answers 201.
        let keys: Vec<String> = (0..PER_FAULT).map(|k| format!("f{i}-{k}")).collect();
        for chunk in keys.chunks(10) {
            for r in futures::future::join_all(chunk.iter().map(|k| agent.post_order(k))).await {
                r.unwrap_or_else(|e| panic!("{name}: capture refused: {e}"));
            }
        }
        captured += PER_FAULT;
        // The fault lasts its full length (the fault itself, not a wait
        // for a condition).
        tokio::time::sleep(FAULT.saturating_sub(started.elapsed())).await;
        link.heal();
        let healed = Instant::now();
        agent
            .wait_drained(DRAIN)
            .await
            .unwrap_or_else(|e| panic!("{name}: not drained after the heal: {e}"));
        eprintln!("{name}: drained {:?} after the heal", healed.elapsed());

        // Zero loss, each event once after dedup, order kept.
        let outbox = agent.outbox().expect("outbox");
        assert_eq!(outbox.len(), captured, "{name}: outbox rows");
        assert!(
            outbox.iter().all(|(_, _, s)| s == "acked"),
            "{name}: every row acked"
        );
        let expected: BTreeSet<String> = outbox.into_iter().map(|(_, id, _)| id).collect();
        let view = KafkaView::read(&brokers, &topic, Duration::from_secs(60))
            .await
            .expect("read Kafka");
        assert_eq!(
            view.event_ids(),
            expected,
            "{name}: Kafka holds exactly the outbox"
        );
        view.seqs_increase_per_partition(&agent.agent_id)
            .unwrap_or_else(|e| panic!("{name}: order broken: {e}"));
        eprintln!(
            "{name}: {} events in Kafka, {} raw duplicates removed by event_id",
            expected.len(),
            view.raw_duplicates()
        );
    }
}
