//! The test doubles of the saga's outside world as real processes:
//! `o2c-psp-sim` (the payment processor) and `o2c-carrier-sim` (the
//! carrier), each on a free port, with what the suites read back from
//! them and the faults they inject (kill, freeze, restart).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use super::{http_err, log_file};
use crate::wait::wait_http_ok;
use crate::{ChildGuard, HarnessError, bin_path, free_port};

/// One simulator process.
#[derive(Debug)]
struct SimProc {
    bin: &'static str,
    args: Vec<String>,
    guard: ChildGuard,
    addr: SocketAddr,
    log: PathBuf,
}

impl SimProc {
    /// Starts `bin --listen ADDR args…` on a free port; waits for
    /// `/healthz`.
    async fn start(dir: &Path, bin: &'static str, args: &[&str]) -> Result<Self, HarnessError> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let log = dir.join(format!("{bin}.log"));
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let guard = Self::spawn(bin, addr, &args, &log)?;
        let me = SimProc {
            bin,
            args,
            guard,
            addr,
            log,
        };
        me.wait_healthy().await?;
        Ok(me)
    }

    fn spawn(
        bin: &'static str,
        addr: SocketAddr,
        args: &[String],
        log: &Path,
    ) -> Result<ChildGuard, HarnessError> {
        let mut cmd = Command::new(bin_path(bin));
        cmd.arg("--listen")
            .arg(addr.to_string())
            .args(args)
            .stdout(log_file(log)?)
            .stderr(log_file(log)?);
        ChildGuard::spawn(bin, &mut cmd)
    }

    async fn wait_healthy(&self) -> Result<(), HarnessError> {
        wait_http_ok(
            &format!("{} /healthz", self.bin),
            &format!("{}/healthz", self.url()),
            &self.log,
        )
        .await
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn get(&self, path: &str) -> Result<Value, HarnessError> {
        let r = reqwest::get(format!("{}{path}", self.url()))
            .await
            .map_err(http_err)?;
        r.json().await.map_err(http_err)
    }

    async fn post(&self, path: &str, body: Value) -> Result<(), HarnessError> {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.url()))
            .json(&body)
            .send()
            .await
            .map_err(http_err)?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(HarnessError::Pipeline(format!(
                "{} {path}: {}",
                self.bin,
                r.status()
            )))
        }
    }

    async fn restart(&mut self) -> Result<(), HarnessError> {
        let _ = self.guard.kill();
        self.guard = Self::spawn(self.bin, self.addr, &self.args, &self.log)?;
        self.wait_healthy().await
    }
}

/// A running `o2c-psp-sim`.
#[derive(Debug)]
pub struct PspSim {
    sim: SimProc,
}

impl PspSim {
    /// Starts the simulator on a free port; waits for `/healthz`.
    pub async fn start(dir: &Path) -> Result<Self, HarnessError> {
        Ok(PspSim {
            sim: SimProc::start(dir, "o2c-psp-sim", &[]).await?,
        })
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        self.sim.url()
    }

    /// `GET /v1/stats`.
    pub async fn stats(&self) -> Result<Value, HarnessError> {
        self.sim.get("/v1/stats").await
    }

    /// Captures made for `order_id`.
    pub async fn captures_of(&self, order_id: &str) -> Result<usize, HarnessError> {
        let s = self.stats().await?;
        Ok(count_for(&s["captures"], order_id))
    }

    /// Refunds made for `order_id`.
    pub async fn refunds_of(&self, order_id: &str) -> Result<usize, HarnessError> {
        let s = self.stats().await?;
        Ok(count_for(&s["refunds"], order_id))
    }

    /// SIGKILL (a dead processor).
    pub fn kill(&mut self) -> Result<(), HarnessError> {
        self.sim.guard.kill().map(|_| ())
    }

    /// SIGSTOP: a hung processor. Connections are accepted by the kernel
    /// but nothing answers, so calls time out; its ledger is kept.
    pub fn freeze(&mut self) -> Result<(), HarnessError> {
        self.sim.guard.signal(nix::sys::signal::Signal::SIGSTOP)
    }

    /// SIGCONT: the processor answers again, with its ledger.
    pub fn thaw(&mut self) -> Result<(), HarnessError> {
        self.sim.guard.signal(nix::sys::signal::Signal::SIGCONT)
    }

    /// Starts it again on the same port (its memory is gone).
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        self.sim.restart().await
    }
}

fn count_for(list: &Value, order_id: &str) -> usize {
    list.as_array()
        .map(|a| a.iter().filter(|m| m["order_id"] == order_id).count())
        .unwrap_or(0)
}

/// A running `o2c-carrier-sim`: parcels are picked up
/// [`CarrierSim::DISPATCH_AFTER_MS`] after booking and delivered
/// [`CarrierSim::DELIVER_AFTER_MS`] later, unless the recipient's name
/// says `HOLD` (then only [`CarrierSim::advance`] moves them).
#[derive(Debug)]
pub struct CarrierSim {
    sim: SimProc,
}

impl CarrierSim {
    /// Booking to pick-up, in the suites.
    pub const DISPATCH_AFTER_MS: u64 = 100;
    /// Pick-up to delivery, in the suites.
    pub const DELIVER_AFTER_MS: u64 = 200;

    /// Starts the simulator on a free port; waits for `/healthz`.
    pub async fn start(dir: &Path) -> Result<Self, HarnessError> {
        let (dispatch, deliver) = (
            Self::DISPATCH_AFTER_MS.to_string(),
            Self::DELIVER_AFTER_MS.to_string(),
        );
        let args = [
            "--dispatch-after-ms",
            dispatch.as_str(),
            "--deliver-after-ms",
            deliver.as_str(),
        ];
        Ok(CarrierSim {
            sim: SimProc::start(dir, "o2c-carrier-sim", &args).await?,
        })
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        self.sim.url()
    }

    /// `GET /v1/stats`.
    pub async fn stats(&self) -> Result<Value, HarnessError> {
        self.sim.get("/v1/stats").await
    }

    /// The bookings made for `order_id` (the order id is each booking's
    /// `reference`).
    pub async fn bookings_of(&self, order_id: &str) -> Result<Vec<Value>, HarnessError> {
        let s = self.stats().await?;
        Ok(s["bookings"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|b| b["reference"] == order_id)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Moves a parcel on: `in_transit` or `delivered`.
    pub async fn advance(&self, tracking_number: &str, status: &str) -> Result<(), HarnessError> {
        self.sim
            .post(
                &format!("/v1/control/shipments/{tracking_number}/advance"),
                json!({ "status": status }),
            )
            .await
    }

    /// SIGSTOP: a hung carrier. Requests wait in the kernel's queue and
    /// are served, bookings included, once it is thawed.
    pub fn freeze(&mut self) -> Result<(), HarnessError> {
        self.sim.guard.signal(nix::sys::signal::Signal::SIGSTOP)
    }

    /// SIGCONT.
    pub fn thaw(&mut self) -> Result<(), HarnessError> {
        self.sim.guard.signal(nix::sys::signal::Signal::SIGCONT)
    }

    /// The next `count` carrier requests answer `status`.
    pub async fn fail_next(&self, count: u32, status: u16) -> Result<(), HarnessError> {
        self.sim
            .post(
                "/v1/control/fail-next",
                json!({ "count": count, "status": status }),
            )
            .await
    }
}

/// The `[carrier]` table of a saga config for `url`: the suites look at
/// parcels and due work often, and retry soon.
pub fn carrier_table(url: &str) -> String {
    format!(
        "[carrier]\nurl = \"{url}\"\ntrack_every_ms = 100\nclaim_every_ms = 50\n\
         retry_base_ms = 100\nretry_max_secs = 2\nbreaker_open_ms = 1000\ntimeout_ms = 2000\nlease_secs = 10\n"
    )
}
