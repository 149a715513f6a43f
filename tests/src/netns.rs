//! [`AgentNet`]: a network namespace of its own for one agent, joined to the
//! host by a veth pair, with the link faults this kernel can do (it has no
//! netem; see DEPENDENCY-NOTES.md "Link faults"):
//! - random loss: nftables `numgen random` drops inside the namespace, both
//!   ways, on traffic to and from the host end only;
//! - partitions: an nftables drop-all on the same traffic (silent: no RST,
//!   as a dead uplink);
//! - rate limits: `tc` tbf on the namespace's end of the veth.
//!
//! [`PortLoss`] does the same random loss in the host's own namespace on
//! one loopback TCP port (a private broker's), for links between processes
//! that do not run in a namespace (the cloud and Kafka).
//!
//! Everything stays on this machine: the addresses are the veth pair's own
//! (a random /30 in 10.64.0.0/10). Creating a namespace needs root (CAP_NET_ADMIN);
//! when it fails, the error says which command failed and why.

use std::net::Ipv4Addr;
use std::process::Command;

/// A failed namespace operation.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// A command could not be started (not installed?).
    #[error("cannot run `{command}`: {source} (install iproute2 and nftables; needs root)")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A command failed.
    #[error("`{command}` failed: {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its stderr.
        stderr: String,
    },
}

/// Runs `program args`; fails with its stderr.
fn sh(program: &str, args: &[&str]) -> Result<(), NetnsError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| NetnsError::Spawn {
            command: command.clone(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(NetnsError::Failed {
        command,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// Runs `program args` with `stdin` as its input.
fn sh_stdin(program: &str, args: &[&str], stdin: &str) -> Result<(), NetnsError> {
    use std::io::Write;
    let command = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| NetnsError::Spawn {
            command: command.clone(),
            source,
        })?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(stdin.as_bytes())
            .map_err(|source| NetnsError::Spawn {
                command: command.clone(),
                source,
            })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|source| NetnsError::Spawn {
            command: command.clone(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(NetnsError::Failed {
        command: format!("{command} <<< {stdin:?}"),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// The nftables table every fault rule lives in.
const TABLE: &str = "o2cchaos";

/// A namespace with a veth pair to the host. Dropping it deletes both.
#[derive(Debug)]
pub struct AgentNet {
    ns: String,
    host_if: String,
    ns_if: String,
    host_ip: Ipv4Addr,
    ns_ip: Ipv4Addr,
}

impl AgentNet {
    /// Creates namespace `o2c-{tag}` with veth `{tag}h` (host, `.1`) and
    /// `{tag}n` (namespace, `.2`) on a random /30, loopback up, and an
    /// empty fault table. `tag` must be at most 13 characters.
    pub fn create(tag: &str) -> Result<Self, NetnsError> {
        let r: u32 = rand::random();
        // 10.64.0.0/10, in /30 steps.
        let base = (10u32 << 24) | (64 << 16) | ((r % (1 << 20)) << 2);
        let me = Self {
            ns: format!("o2c-{tag}"),
            host_if: format!("{tag}h"),
            ns_if: format!("{tag}n"),
            host_ip: Ipv4Addr::from(base + 1),
            ns_ip: Ipv4Addr::from(base + 2),
        };
        sh("ip", &["netns", "add", &me.ns])?;
        // From here on, Drop deletes what was made.
        me.setup()?;
        Ok(me)
    }

    fn setup(&self) -> Result<(), NetnsError> {
        let (h, n, ns) = (&self.host_if, &self.ns_if, &self.ns);
        sh("ip", &["link", "add", h, "type", "veth", "peer", "name", n])?;
        sh("ip", &["link", "set", n, "netns", ns])?;
        sh(
            "ip",
            &["addr", "add", &format!("{}/30", self.host_ip), "dev", h],
        )?;
        sh("ip", &["link", "set", h, "up"])?;
        self.exec(
            "ip",
            &["addr", "add", &format!("{}/30", self.ns_ip), "dev", n],
        )?;
        self.exec("ip", &["link", "set", n, "up"])?;
        self.exec("ip", &["link", "set", "lo", "up"])?;
        sh_stdin(
            "ip",
            &["netns", "exec", ns, "nft", "-f", "-"],
            &format!(
                "table inet {TABLE} {{\n\
                 chain out {{ type filter hook output priority 0; policy accept; }}\n\
                 chain in {{ type filter hook input priority 0; policy accept; }}\n}}\n"
            ),
        )
    }

    fn exec(&self, program: &str, args: &[&str]) -> Result<(), NetnsError> {
        let mut all = vec!["netns", "exec", self.ns.as_str(), program];
        all.extend_from_slice(args);
        sh("ip", &all)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.ns
    }

    /// The host end's address (a broker listens here for this agent).
    pub fn host_ip(&self) -> Ipv4Addr {
        self.host_ip
    }

    /// The namespace end's address (the agent's HTTP API listens here).
    pub fn ns_ip(&self) -> Ipv4Addr {
        self.ns_ip
    }

    /// The prefix that runs a program inside the namespace.
    pub fn wrapper(&self) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.ns.clone()]
    }

    /// Replaces the fault rules: drop `percent`% of the packets between
    /// the namespace and the host end's TCP `port` (the broker), both ways
    /// (100 is a silent partition; 0 removes the rules). Other traffic,
    /// such as the tills' HTTP to the agent, is left alone.
    pub fn set_loss(&self, port: u16, percent: u8) -> Result<(), NetnsError> {
        let host = self.host_ip;
        let p = percent.min(100);
        let mut script = format!("flush chain inet {TABLE} out\nflush chain inet {TABLE} in\n");
        let (out, inn) = (
            format!("add rule inet {TABLE} out ip daddr {host} tcp dport {port}"),
            format!("add rule inet {TABLE} in ip saddr {host} tcp sport {port}"),
        );
        if p >= 100 {
            script.push_str(&format!("{out} drop\n{inn} drop\n"));
        } else if p > 0 {
            script.push_str(&format!(
                "{out} numgen random mod 100 < {p} drop\n{inn} numgen random mod 100 < {p} drop\n"
            ));
        }
        sh_stdin(
            "ip",
            &["netns", "exec", &self.ns, "nft", "-f", "-"],
            &script,
        )
    }

    /// A silent partition from the broker at `port` (every packet dropped
    /// both ways, no RST), or its end.
    pub fn partition(&self, port: u16, on: bool) -> Result<(), NetnsError> {
        self.set_loss(port, if on { 100 } else { 0 })
    }

    /// Limits the namespace's uplink to `kbit` kbit/s with `tc` tbf, or
    /// removes the limit (`None`).
    pub fn set_rate(&self, kbit: Option<u32>) -> Result<(), NetnsError> {
        match kbit {
            Some(k) => self.exec(
                "tc",
                &[
                    "qdisc",
                    "replace",
                    "dev",
                    &self.ns_if,
                    "root",
                    "tbf",
                    "rate",
                    &format!("{k}kbit"),
                    "burst",
                    "32kbit",
                    "latency",
                    "400ms",
                ],
            ),
            None => match self.exec("tc", &["qdisc", "del", "dev", &self.ns_if, "root"]) {
                // No qdisc to delete is a clean link already.
                Err(NetnsError::Failed { stderr, .. })
                    if stderr.contains("No such file")
                        || stderr.contains("Cannot delete qdisc with handle of zero") =>
                {
                    Ok(())
                }
                other => other,
            },
        }
    }

    /// Removes every fault (the broker at `port`).
    pub fn heal(&self, port: u16) -> Result<(), NetnsError> {
        self.set_loss(port, 0)?;
        self.set_rate(None)
    }
}

impl Drop for AgentNet {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and with it the pair.
        let _ = sh("ip", &["netns", "del", &self.ns]);
        let _ = sh("ip", &["link", "del", &self.host_if]);
    }
}

/// Random loss on one TCP port of the host's own namespace, both ways: an
/// nftables table of its own (`o2cport{port}`), hooked on input, dropping
/// `percent`% of the packets to and from `port`. Nothing else is touched.
/// Dropping it deletes the table.
#[derive(Debug)]
pub struct PortLoss {
    table: String,
    port: u16,
}

impl PortLoss {
    /// Creates the (empty) table for `port`.
    pub fn create(port: u16) -> Result<Self, NetnsError> {
        let me = Self {
            table: format!("o2cport{port}"),
            port,
        };
        sh_stdin(
            "nft",
            &["-f", "-"],
            &format!(
                "table inet {} {{\n\
                 chain in {{ type filter hook input priority 0; policy accept; }}\n}}\n",
                me.table
            ),
        )?;
        Ok(me)
    }

    /// Drops `percent`% of the packets to and from the port (0 removes
    /// the rules; 100 is a silent partition).
    pub fn set_loss(&self, percent: u8) -> Result<(), NetnsError> {
        let (t, port, p) = (&self.table, self.port, percent.min(100));
        let mut script = format!("flush chain inet {t} in\n");
        if p > 0 {
            let drop = if p >= 100 {
                "drop".to_owned()
            } else {
                format!("numgen random mod 100 < {p} drop")
            };
            script.push_str(&format!(
                "add rule inet {t} in tcp dport {port} {drop}\n\
                 add rule inet {t} in tcp sport {port} {drop}\n"
            ));
        }
        sh_stdin("nft", &["-f", "-"], &script)
    }
}

impl Drop for PortLoss {
    fn drop(&mut self) {
        let _ = sh("nft", &["delete", "table", "inet", &self.table]);
    }
}
