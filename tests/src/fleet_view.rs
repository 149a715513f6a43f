//! The fleet view (issue 18) for the end-to-end suite and `o2c-bench
//! fleet`: `o2c-cloud fleet serve` as a real process ([`FleetProc`]), its
//! JSON view, `o2c-cloud fleet [--json]`, the `/fleet` page rendered by
//! headless Chromium with a screenshot ([`screenshot`]) and a small PNG
//! reader to look at its pixels ([`Png`]). (Not to be confused with
//! [`crate::fleet`], the TLS broker with real ACLs.)

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use o2c_fleet::view::FleetView;

use crate::process::{ChildGuard, free_port};
use crate::{HarnessError, bin_path, wait_until_named};

/// A running `o2c-cloud fleet serve`.
#[derive(Debug)]
pub struct FleetProc {
    guard: ChildGuard,
    config: PathBuf,
    log: PathBuf,
    http: SocketAddr,
    client: reqwest::Client,
}

impl FleetProc {
    /// Writes `{dir}/fleet.toml` (`[mqtt] url = mqtt_url`, `tables`
    /// appended, e.g. `[fleet.stores.S1]`) and starts the service; waits
    /// until `/readyz` is 200 (subscribed).
    pub async fn start(dir: &Path, mqtt_url: &str, tables: &str) -> Result<Self, HarnessError> {
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let config = dir.join("fleet.toml");
        std::fs::write(
            &config,
            format!(
                "[mqtt]\nurl = \"{mqtt_url}\"\n[kafka]\nbrokers = \"127.0.0.1:9\"\n\
                 [fleet]\nhttp_listen = \"{http}\"\n{tables}\n"
            ),
        )
        .map_err(|e| HarnessError::io("write fleet.toml", e))?;
        let log = dir.join("fleet.log");
        let guard = Self::spawn(&config, &log)?;
        let me = Self {
            guard,
            config,
            log,
            http,
            client: reqwest::Client::new(),
        };
        me.wait_ready().await?;
        Ok(me)
    }

    fn spawn(config: &Path, log: &Path) -> Result<ChildGuard, HarnessError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| HarnessError::io(format!("open {}", log.display()), e))?;
        let mut cmd = Command::new(bin_path("o2c-cloud"));
        cmd.args(["fleet", "serve", "--config"])
            .arg(config)
            .env(
                "RUST_LOG",
                std::env::var("O2C_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(file);
        ChildGuard::spawn("o2c-cloud fleet serve", &mut cmd)
    }

    async fn wait_ready(&self) -> Result<(), HarnessError> {
        let url = format!("{}/readyz", self.base());
        let client = self.client.clone();
        wait_until_named(
            "fleet /readyz",
            || {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    client
                        .get(&url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
                }
            },
            Duration::from_secs(30),
        )
        .await
        .map_err(|e| HarnessError::Pipeline(format!("{e}; log:\n{}", self.log_tail())))
    }

    /// `http://host:port`.
    pub fn base(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Its config file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Its process id (for CPU time from /proc).
    pub fn pid(&self) -> u32 {
        self.guard.id()
    }

    /// The end of its log.
    pub fn log_tail(&self) -> String {
        crate::process::log_tail(&self.log, 6000)
    }

    /// `GET /v1/fleet`.
    pub async fn view(&self) -> Result<FleetView, HarnessError> {
        let r = self
            .client
            .get(format!("{}/v1/fleet", self.base()))
            .send()
            .await
            .map_err(|e| HarnessError::Pipeline(format!("GET /v1/fleet: {e}")))?;
        r.json()
            .await
            .map_err(|e| HarnessError::Pipeline(format!("/v1/fleet body: {e}")))
    }

    /// `/metrics` text.
    pub async fn metrics(&self) -> Result<String, HarnessError> {
        let r = self
            .client
            .get(format!("{}/metrics", self.base()))
            .send()
            .await
            .map_err(|e| HarnessError::Pipeline(format!("GET /metrics: {e}")))?;
        r.text()
            .await
            .map_err(|e| HarnessError::Pipeline(format!("/metrics body: {e}")))
    }

    /// Runs `o2c-cloud fleet --config {config} [--json]`; its stdout.
    pub fn cli(&self, json: bool) -> Result<String, HarnessError> {
        cli(&self.config, json)
    }

    /// SIGKILL.
    pub fn kill(&mut self) -> Result<(), HarnessError> {
        self.guard.kill().map(|_| ())
    }
}

/// Runs `o2c-cloud fleet [--json]` with `config`; its stdout (an error
/// unless it exits 0).
pub fn cli(config: &Path, json: bool) -> Result<String, HarnessError> {
    let args: &[&str] = if json {
        &["fleet", "--json"]
    } else {
        &["fleet"]
    };
    match crate::saga::cloud_command(config, args)? {
        (0, out) => Ok(out),
        (code, out) => Err(HarnessError::Pipeline(format!(
            "o2c-cloud fleet exited {code}: {out}"
        ))),
    }
}

/// Loads `url` in headless Chromium, lets its scripts run for `budget_ms`
/// of virtual time, saves a `width`×`height` screenshot to `png` and
/// returns the DOM (a second load: Chromium takes one of the two per run).
pub fn screenshot(
    url: &str,
    png: &Path,
    (width, height): (u32, u32),
    budget_ms: u32,
) -> Result<String, HarnessError> {
    crate::analytics::chromium(&[
        "--hide-scrollbars",
        &format!("--window-size={width},{height}"),
        &format!("--virtual-time-budget={budget_ms}"),
        &format!("--screenshot={}", png.display()),
        url,
    ])?;
    if !png.is_file() {
        return Err(HarnessError::Pipeline(format!(
            "chromium wrote no screenshot at {}",
            png.display()
        )));
    }
    crate::analytics::chromium_dom(url, budget_ms)
}

/// The `<tr>` element of `store`/`agent` on the `/fleet` page, from its id
/// to its end, if the DOM has it.
pub fn row_html<'a>(dom: &'a str, store: &str, agent: &str) -> Option<&'a str> {
    let start = dom.find(&format!("id=\"agent-{store}-{agent}\""))?;
    let open = dom[..start].rfind("<tr")?;
    let end = start + dom[start..].find("</tr>")?;
    Some(&dom[open..end])
}

/// An 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes), decoded.
#[derive(Debug, Clone)]
pub struct Png {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// RGB of each pixel, row by row.
    pub pixels: Vec<[u8; 3]>,
}

impl Png {
    /// Reads and decodes `path`.
    pub fn read(path: &Path) -> Result<Png, HarnessError> {
        let bytes = std::fs::read(path).map_err(|e| HarnessError::io("read png", e))?;
        Self::decode(&bytes).map_err(|e| HarnessError::Pipeline(format!("{}: {e}", path.display())))
    }

    /// Decodes PNG bytes.
    pub fn decode(bytes: &[u8]) -> Result<Png, String> {
        let body = bytes
            .strip_prefix(b"\x89PNG\r\n\x1a\n")
            .ok_or("not a PNG")?;
        let (mut at, mut idat, mut header) = (0usize, Vec::new(), None);
        while at + 8 <= body.len() {
            let len = u32::from_be_bytes(body[at..at + 4].try_into().map_err(|_| "chunk")?);
            let kind = &body[at + 4..at + 8];
            let data = body
                .get(at + 8..at + 8 + len as usize)
                .ok_or("truncated chunk")?;
            match kind {
                b"IHDR" => header = Some(data.to_vec()),
                b"IDAT" => idat.extend_from_slice(data),
                b"IEND" => break,
                _ => {}
            }
            at += 12 + len as usize;
        }
        let h = header.ok_or("no IHDR")?;
        let be = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]) as usize;
        let (width, height, depth, color, interlace) = (be(0), be(4), h[8], h[9], h[12]);
        let channels = match (depth, color, interlace) {
            (8, 2, 0) => 3,
            (8, 6, 0) => 4,
            _ => return Err(format!("unsupported PNG: depth {depth} color {color}")),
        };
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(idat.as_slice())
            .read_to_end(&mut raw)
            .map_err(|e| format!("inflate: {e}"))?;
        let stride = width * channels;
        if raw.len() < height * (stride + 1) {
            return Err("short image data".into());
        }
        let mut prev = vec![0u8; stride];
        let mut pixels = Vec::with_capacity(width * height);
        for y in 0..height {
            let line = &raw[y * (stride + 1)..(y + 1) * (stride + 1)];
            let (filter, data) = (line[0], &line[1..]);
            let mut cur = vec![0u8; stride];
            for i in 0..stride {
                let a = if i >= channels { cur[i - channels] } else { 0 };
                let b = prev[i];
                let c = if i >= channels { prev[i - channels] } else { 0 };
                let pred = match filter {
                    0 => 0,
                    1 => a,
                    2 => b,
                    3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                    4 => paeth(a, b, c),
                    f => return Err(format!("bad filter {f}")),
                };
                cur[i] = data[i].wrapping_add(pred);
            }
            pixels.extend(cur.chunks(channels).map(|p| [p[0], p[1], p[2]]));
            prev = cur;
        }
        Ok(Png {
            width,
            height,
            pixels,
        })
    }

    /// Pixels within `tolerance` (per channel) of `rgb`.
    pub fn count(&self, rgb: [u8; 3], tolerance: u8) -> usize {
        self.pixels
            .iter()
            .filter(|p| p.iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= tolerance))
            .count()
    }
}

fn paeth(a: u8, b: u8, c: u8) -> u8 {
    let (ia, ib, ic) = (i16::from(a), i16::from(b), i16::from(c));
    let p = ia + ib - ic;
    let (pa, pb, pc) = ((p - ia).abs(), (p - ib).abs(), (p - ic).abs());
    if pa <= pb && pa <= pc {
        a
    } else if pb <= pc {
        b
    } else {
        c
    }
}

/// The colour of an offline agent's status pill on the `/fleet` page
/// (`#d32f2f` in `cloud/fleet/src/fleet.html`).
pub const OFFLINE_RGB: [u8; 3] = [0xd3, 0x2f, 0x2f];
/// The colour of an online agent's pill (`#1e7e34`).
pub const ONLINE_RGB: [u8; 3] = [0x1e, 0x7e, 0x34];
