//! The fault schedule: pure and seeded. [`Schedule::generate`] draws the
//! whole schedule up front from the seed with [`SplitMix64`] (a fixed
//! algorithm, so the same seed gives the same schedule on every machine
//! and every `rand` version), and [`Schedule::saga_kill`] is the
//! reproduction of the stall seen in issue 21.

use std::fmt;

use serde::Serialize;

/// A small, fixed, seedable generator (Steele, Lea and Flood's SplitMix64).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (`lo` if `hi < lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// The saga services, each run as its own process in the general schedule.
pub const SAGA_SERVICES: [&str; 6] = [
    "order",
    "payment",
    "inventory",
    "shipping",
    "state",
    "status",
];

/// A process the runner can kill -9 and restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "process", content = "index", rename_all = "snake_case")]
pub enum Process {
    /// Agent `i` (0-based).
    Agent(usize),
    /// Ingest replica `i` (0-based).
    Ingest(usize),
    /// Saga service [`SAGA_SERVICES`]`[i]`.
    Saga(usize),
    /// `o2c-cloud saga --service all` (the saga-kill scenario).
    SagaAll,
    /// The Kafka broker.
    Tansu,
    /// The MQTT broker.
    Mosquitto,
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Process::Agent(i) => write!(f, "agent-{}", i + 1),
            Process::Ingest(i) => write!(f, "ingest-{}", i + 1),
            Process::Saga(i) => write!(f, "saga-{}", SAGA_SERVICES.get(*i).unwrap_or(&"?")),
            Process::SagaAll => write!(f, "saga-all"),
            Process::Tansu => write!(f, "tansu"),
            Process::Mosquitto => write!(f, "mosquitto"),
        }
    }
}

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// SIGKILL, then a restart `down_ms` later.
    Kill {
        /// What is killed.
        target: Process,
        /// How long it stays dead.
        down_ms: u64,
    },
    /// PostgreSQL stopped in immediate mode (no checkpoint: crash
    /// recovery at the next start), then started again.
    PostgresRestart,
    /// The link between agent `agent` and the broker is cut (every relayed
    /// connection dropped, new ones refused) for `ms`.
    LinkCut {
        /// Which agent.
        agent: usize,
        /// How long.
        ms: u64,
    },
    /// Agent `agent`'s namespace drops `percent`% of its packets to and
    /// from the broker for `ms` (nftables).
    Loss {
        /// Which agent.
        agent: usize,
        /// 5 or 30.
        percent: u8,
        /// How long.
        ms: u64,
    },
    /// Agent `agent`'s namespace drops every packet to and from the broker
    /// for `ms`: a silent partition, no RST.
    Partition {
        /// Which agent.
        agent: usize,
        /// How long.
        ms: u64,
    },
    /// Agent `agent`'s uplink is limited to `kbit` kbit/s for `ms` (tbf).
    Rate {
        /// Which agent.
        agent: usize,
        /// The rate.
        kbit: u32,
        /// How long.
        ms: u64,
    },
    /// Agent `agent`'s link delays each chunk by 200 ± 100 ms for `ms`
    /// (the proxy's [`crate::proxy::LinkMode::DELAY`]).
    Delay {
        /// Which agent.
        agent: usize,
        /// How long.
        ms: u64,
    },
    /// Agent `agent`'s link reorders segments for `ms`: each on its own
    /// delay of 0 to 40 ms, delivered as TCP would (the proxy's
    /// [`crate::proxy::LinkMode::REORDER`]).
    Reorder {
        /// Which agent.
        agent: usize,
        /// How long.
        ms: u64,
    },
    /// The link between the cloud (both ingest replicas and the saga) and
    /// Kafka fails as `how` for `ms`.
    KafkaLink {
        /// The fault.
        how: LinkFault,
        /// How long.
        ms: u64,
    },
    /// The payment processor is unreachable for `ms` (its link cut; the
    /// simulator keeps its ledger, as a real processor would).
    PspOutage {
        /// How long.
        ms: u64,
    },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill { target, down_ms } => {
                write!(f, "kill -9 {target}, restart after {down_ms} ms")
            }
            Fault::PostgresRestart => write!(f, "postgres immediate stop + start"),
            Fault::LinkCut { agent, ms } => {
                write!(f, "cut link agent-{} <-> broker for {ms} ms", agent + 1)
            }
            Fault::PspOutage { ms } => write!(f, "processor unreachable for {ms} ms"),
            Fault::Loss { agent, percent, ms } => {
                write!(
                    f,
                    "{percent}% loss agent-{} <-> broker for {ms} ms",
                    agent + 1
                )
            }
            Fault::Partition { agent, ms } => {
                write!(
                    f,
                    "silent partition agent-{} <-> broker for {ms} ms",
                    agent + 1
                )
            }
            Fault::Rate { agent, kbit, ms } => {
                write!(
                    f,
                    "agent-{} uplink limited to {kbit} kbit/s for {ms} ms",
                    agent + 1
                )
            }
            Fault::Delay { agent, ms } => {
                write!(
                    f,
                    "200 +/- 100 ms delay agent-{} <-> broker for {ms} ms",
                    agent + 1
                )
            }
            Fault::Reorder { agent, ms } => {
                write!(
                    f,
                    "reordering (0-40 ms per segment) agent-{} <-> broker for {ms} ms",
                    agent + 1
                )
            }
            Fault::KafkaLink { how, ms } => write!(f, "cloud <-> kafka {how} for {ms} ms"),
        }
    }
}

/// How a proxied link fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkFault {
    /// Connections closed, new ones refused.
    Cut,
    /// Silent partition: nothing forwarded, nobody told.
    Partition,
    /// 200 ± 100 ms on each chunk.
    Delay,
    /// This share of the packets dropped both ways (nftables on the
    /// broker's port).
    Loss(u8),
}

impl fmt::Display for LinkFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkFault::Cut => f.write_str("cut"),
            LinkFault::Partition => f.write_str("silent partition"),
            LinkFault::Delay => f.write_str("200 +/- 100 ms delay"),
            LinkFault::Loss(p) => write!(f, "{p}% loss"),
        }
    }
}

/// A fault and when it starts, in ms after the run's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Planned {
    /// Start time, ms from the run's start.
    pub at_ms: u64,
    /// The fault.
    pub fault: Fault,
}

/// The shape of a run the schedule is drawn for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Length of the fault phase.
    pub duration_ms: u64,
    /// Number of agents.
    pub agents: usize,
    /// Number of ingest replicas.
    pub ingests: usize,
    /// Agents live in network namespaces: link faults are loss, silent
    /// partitions, rate limits, delay, reordering and cuts; otherwise they
    /// are cuts, delay and reordering (the proxy's alone).
    pub netns: bool,
}

/// The whole schedule of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Schedule {
    /// The seed it was drawn from.
    pub seed: u64,
    /// Faults by start time.
    pub faults: Vec<Planned>,
}

/// Quiet time at the start (everything warms up) and before the end of the
/// fault phase (the last fault heals inside the phase).
const LEAD_IN_MS: u64 = 3_000;
const TAIL_MS: u64 = 5_000;

impl Schedule {
    /// The general schedule: a fault every 3 to 9 s, drawn over every
    /// process, PostgreSQL, agent links and the processor's link.
    pub fn generate(seed: u64, shape: Shape) -> Self {
        let mut rng = SplitMix64::new(seed);
        let mut faults = Vec::new();
        let mut at = LEAD_IN_MS;
        let end = shape.duration_ms.saturating_sub(TAIL_MS);
        loop {
            at += rng.range(3_000, 9_000);
            if at >= end {
                break;
            }
            let fault = Self::draw(&mut rng, shape);
            faults.push(Planned { at_ms: at, fault });
        }
        Self { seed, faults }
    }

    fn draw(rng: &mut SplitMix64, shape: Shape) -> Fault {
        let down_ms = rng.range(0, 3_000);
        let agents = shape.agents.max(1) as u64;
        let ingests = shape.ingests.max(1) as u64;
        // Weights: link faults and saga kills are the most common.
        match rng.range(0, 99) {
            0..=19 if shape.netns => {
                let agent = rng.range(0, agents - 1) as usize;
                match rng.range(0, 6) {
                    0 => Fault::Loss {
                        agent,
                        percent: 5,
                        ms: rng.range(5_000, 30_000),
                    },
                    1 => Fault::Loss {
                        agent,
                        percent: 30,
                        ms: rng.range(3_000, 15_000),
                    },
                    2 => Fault::Partition {
                        agent,
                        ms: rng.range(5_000, 30_000),
                    },
                    3 => Fault::Rate {
                        agent,
                        kbit: 256,
                        ms: rng.range(3_000, 15_000),
                    },
                    4 => Fault::Delay {
                        agent,
                        ms: rng.range(5_000, 20_000),
                    },
                    5 => Fault::Reorder {
                        agent,
                        ms: rng.range(5_000, 20_000),
                    },
                    _ => Fault::LinkCut {
                        agent,
                        ms: rng.range(1_000, 12_000),
                    },
                }
            }
            0..=19 => {
                let agent = rng.range(0, agents - 1) as usize;
                match rng.range(0, 2) {
                    0 => Fault::Delay {
                        agent,
                        ms: rng.range(5_000, 20_000),
                    },
                    1 => Fault::Reorder {
                        agent,
                        ms: rng.range(5_000, 20_000),
                    },
                    _ => Fault::LinkCut {
                        agent,
                        ms: rng.range(1_000, 12_000),
                    },
                }
            }
            20..=44 => Fault::Kill {
                target: Process::Saga(rng.range(0, SAGA_SERVICES.len() as u64 - 1) as usize),
                down_ms,
            },
            45..=56 => Fault::Kill {
                target: Process::Agent(rng.range(0, agents - 1) as usize),
                down_ms,
            },
            57..=68 => Fault::Kill {
                target: Process::Ingest(rng.range(0, ingests - 1) as usize),
                down_ms,
            },
            69..=72 => Fault::Kill {
                target: Process::Tansu,
                down_ms,
            },
            // Loss needs nftables, as the namespaces do.
            73..=76 => match rng.range(0, if shape.netns { 4 } else { 2 }) {
                0 => Fault::KafkaLink {
                    how: LinkFault::Cut,
                    ms: rng.range(1_000, 8_000),
                },
                1 => Fault::KafkaLink {
                    how: LinkFault::Partition,
                    ms: rng.range(2_000, 10_000),
                },
                2 => Fault::KafkaLink {
                    how: LinkFault::Delay,
                    ms: rng.range(5_000, 20_000),
                },
                3 => Fault::KafkaLink {
                    how: LinkFault::Loss(5),
                    ms: rng.range(5_000, 20_000),
                },
                _ => Fault::KafkaLink {
                    how: LinkFault::Loss(30),
                    ms: rng.range(3_000, 10_000),
                },
            },
            77..=83 => Fault::Kill {
                target: Process::Mosquitto,
                down_ms,
            },
            84..=92 => Fault::PostgresRestart,
            _ => Fault::PspOutage {
                ms: rng.range(500, 2_500),
            },
        }
    }

    /// Issue 21's "failure already seen": the whole saga (one process) is
    /// killed six times, 1 to 3 s apart, and restarted at once each time.
    /// `start_ms` is when the first kill lands.
    pub fn saga_kill(seed: u64, start_ms: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let mut at = start_ms;
        let faults = (0..6)
            .map(|i| {
                if i > 0 {
                    at += rng.range(1_000, 3_000);
                }
                Planned {
                    at_ms: at,
                    fault: Fault::Kill {
                        target: Process::SagaAll,
                        down_ms: 0,
                    },
                }
            })
            .collect();
        Self { seed, faults }
    }

    /// The schedule as printed before a run, one fault a line.
    pub fn render(&self) -> String {
        let mut out = format!(
            "fault schedule (seed {}): {} faults\n",
            self.seed,
            self.faults.len()
        );
        for p in &self.faults {
            out.push_str(&format!(
                "  t+{:>7.3}s  {}\n",
                p.at_ms as f64 / 1000.0,
                p.fault
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: Shape = Shape {
        duration_ms: 120_000,
        agents: 3,
        ingests: 2,
        netns: false,
    };

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        assert_eq!(Schedule::generate(7, SHAPE), Schedule::generate(7, SHAPE));
        assert_eq!(Schedule::saga_kill(7, 2_000), Schedule::saga_kill(7, 2_000));
        assert_ne!(Schedule::generate(7, SHAPE), Schedule::generate(8, SHAPE));
        let ns = Shape {
            netns: true,
            ..SHAPE
        };
        assert_eq!(Schedule::generate(7, ns), Schedule::generate(7, ns));
    }

    #[test]
    fn namespaces_bring_every_link_fault() {
        let ns = Shape {
            netns: true,
            ..SHAPE
        };
        let all: Vec<Fault> = (0..100)
            .flat_map(|seed| Schedule::generate(seed, ns).faults)
            .map(|p| p.fault)
            .collect();
        assert!(
            all.iter()
                .any(|f| matches!(f, Fault::Loss { percent: 5, .. }))
        );
        assert!(
            all.iter()
                .any(|f| matches!(f, Fault::Loss { percent: 30, .. }))
        );
        assert!(
            all.iter()
                .any(|f| matches!(f, Fault::Partition { ms, .. } if *ms <= 30_000))
        );
        assert!(all.iter().any(|f| matches!(f, Fault::Rate { .. })));
        assert!(all.iter().any(|f| matches!(f, Fault::Delay { .. })));
        assert!(all.iter().any(|f| matches!(f, Fault::Reorder { .. })));
        assert!(all.iter().any(|f| matches!(f, Fault::LinkCut { .. })));
        for how in [
            LinkFault::Cut,
            LinkFault::Partition,
            LinkFault::Delay,
            LinkFault::Loss(5),
            LinkFault::Loss(30),
        ] {
            assert!(
                all.iter()
                    .any(|f| matches!(f, Fault::KafkaLink { how: h, .. } if *h == how)),
                "{how}"
            );
        }
    }

    #[test]
    fn the_generator_is_the_fixed_splitmix64() {
        // Reference values of SplitMix64 seeded with 0.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn faults_stay_inside_the_run_and_name_real_targets() {
        for seed in 0..200 {
            let s = Schedule::generate(seed, SHAPE);
            assert!(!s.faults.is_empty(), "seed {seed}");
            let mut last = 0;
            for p in &s.faults {
                assert!(p.at_ms > LEAD_IN_MS && p.at_ms < SHAPE.duration_ms - TAIL_MS);
                assert!(p.at_ms >= last);
                last = p.at_ms;
                match p.fault {
                    Fault::Kill { target, down_ms } => {
                        assert!(down_ms <= 3_000);
                        match target {
                            Process::Agent(i) => assert!(i < SHAPE.agents),
                            Process::Ingest(i) => assert!(i < SHAPE.ingests),
                            Process::Saga(i) => assert!(i < SAGA_SERVICES.len()),
                            Process::SagaAll => {
                                panic!("general schedule kills services one by one")
                            }
                            Process::Tansu | Process::Mosquitto => {}
                        }
                    }
                    Fault::LinkCut { agent, ms } => {
                        assert!(agent < SHAPE.agents && (1_000..=12_000).contains(&ms));
                    }
                    Fault::Delay { agent, ms } | Fault::Reorder { agent, ms } => {
                        assert!(agent < SHAPE.agents && (5_000..=20_000).contains(&ms));
                    }
                    Fault::KafkaLink { how, ms } => {
                        assert!((1_000..=20_000).contains(&ms));
                        assert!(!matches!(how, LinkFault::Loss(_)), "loss needs namespaces");
                    }
                    Fault::PspOutage { ms } => assert!(ms <= 2_500),
                    Fault::Loss { .. } | Fault::Partition { .. } | Fault::Rate { .. } => {
                        panic!("no namespaces in this shape")
                    }
                    Fault::PostgresRestart => {}
                }
            }
        }
    }

    #[test]
    fn saga_kill_is_six_kills_one_to_three_seconds_apart() {
        let s = Schedule::saga_kill(42, 2_000);
        assert_eq!(s.faults.len(), 6);
        assert_eq!(s.faults[0].at_ms, 2_000);
        for w in s.faults.windows(2) {
            let gap = w[1].at_ms - w[0].at_ms;
            assert!((1_000..=3_000).contains(&gap), "{gap}");
        }
        assert!(s.faults.iter().all(|p| p.fault
            == Fault::Kill {
                target: Process::SagaAll,
                down_ms: 0
            }));
        assert!(s.render().contains("kill -9 saga-all"));
    }
}
