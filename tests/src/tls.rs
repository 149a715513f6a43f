//! The production TLS pieces, run for real: [`Pki`] drives
//! `deploy/pki/o2c-certs.sh` in a temp dir, and [`TlsMosquitto`] starts a
//! private Mosquitto from `deploy/mosquitto/o2c.conf` (paths and port
//! rewritten) with the ACL that `o2c-certs.sh acl` renders.
//!
//! Nothing here re-implements what the deploy files say: if the config or the
//! script changes, the tests run the changed files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::HarnessError;
use crate::broker::BrokerProcess;
use crate::process::{find_program, free_port};

/// How long a fresh Mosquitto may take to accept TCP connections.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// The repository root (parent of the `tests/` crate).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `deploy/pki/o2c-certs.sh`.
pub fn certs_script() -> PathBuf {
    repo_root().join("deploy/pki/o2c-certs.sh")
}

/// One identity's PEM files, as `o2c-certs.sh` lays them out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The fleet CA.
    pub ca: PathBuf,
    /// The identity's certificate.
    pub cert: PathBuf,
    /// Its private key (mode 0600).
    pub key: PathBuf,
}

impl TlsFiles {
    fn in_dir(dir: &Path) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }

    /// The `[mqtt.tls]` table for agent.toml / cloud.toml.
    pub fn toml_table(&self) -> String {
        format!(
            "[mqtt.tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            self.ca.display(),
            self.cert.display(),
            self.key.display()
        )
    }
}

/// A fleet PKI in a directory, made and changed only through `o2c-certs.sh`.
#[derive(Debug)]
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// Runs `o2c-certs.sh init` in `dir` (created if missing).
    pub fn init(dir: impl Into<PathBuf>) -> Result<Self, HarnessError> {
        let pki = Self { dir: dir.into() };
        pki.run(&["init"])?;
        Ok(pki)
    }

    /// The PKI directory (`O2C_PKI_DIR`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `o2c-certs.sh ARGS` with `O2C_PKI_DIR` set; returns its stdout.
    pub fn run(&self, args: &[&str]) -> Result<String, HarnessError> {
        let script = certs_script();
        let out = Command::new("bash")
            .arg(&script)
            .args(args)
            .env("O2C_PKI_DIR", &self.dir)
            .output()
            .map_err(|e| HarnessError::io(format!("running {}", script.display()), e))?;
        if !out.status.success() {
            return Err(HarnessError::Pipeline(format!(
                "o2c-certs.sh {}: {}\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `issue-agent STORE AGENT`.
    pub fn issue_agent(&self, store: &str, agent: &str) -> Result<TlsFiles, HarnessError> {
        self.run(&["issue-agent", store, agent])?;
        Ok(self.agent(agent))
    }

    /// `issue-server NAME --san ...`.
    pub fn issue_server(&self, name: &str, sans: &[&str]) -> Result<TlsFiles, HarnessError> {
        let mut args = vec!["issue-server", name];
        for san in sans {
            args.extend(["--san", san]);
        }
        self.run(&args)?;
        Ok(TlsFiles::in_dir(&self.dir.join("servers").join(name)))
    }

    /// `issue-service NAME`.
    pub fn issue_service(&self, name: &str) -> Result<TlsFiles, HarnessError> {
        self.run(&["issue-service", name])?;
        Ok(TlsFiles::in_dir(&self.dir.join("services").join(name)))
    }

    /// `renew agent AGENT`: a new key and certificate at the same paths.
    pub fn renew_agent(&self, agent: &str) -> Result<TlsFiles, HarnessError> {
        self.run(&["renew", "agent", agent])?;
        Ok(self.agent(agent))
    }

    /// The files of an issued agent.
    pub fn agent(&self, agent: &str) -> TlsFiles {
        TlsFiles::in_dir(&self.dir.join("agents").join(agent))
    }

    /// The files of an issued server.
    pub fn server(&self, name: &str) -> TlsFiles {
        TlsFiles::in_dir(&self.dir.join("servers").join(name))
    }

    /// `acl`: the broker ACL for every agent issued so far.
    pub fn acl(&self) -> Result<String, HarnessError> {
        self.run(&["acl"])
    }

    /// The serial number of a certificate, as `openssl x509 -serial` prints it.
    pub fn serial(cert: &Path) -> Result<String, HarnessError> {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-serial", "-in"])
            .arg(cert)
            .output()
            .map_err(|e| HarnessError::io("running openssl x509", e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .strip_prefix("serial=")
            .map(str::to_owned)
            .ok_or_else(|| HarnessError::Pipeline(format!("no serial in {}", cert.display())))
    }
}

/// Rewrites the deploy config for a test: listener on `127.0.0.1:port`, the
/// given server files and ACL path, persistence in the ACL's directory, log
/// to stderr, and `user root` (so a root-started broker can read 0600 keys
/// in a root-owned temp dir).
///
/// Fails if the template lacks any of the lines it must rewrite, so a
/// renamed key in `deploy/mosquitto/o2c.conf` breaks the test loudly.
pub fn render_conf(
    template: &str,
    port: u16,
    server: &TlsFiles,
    acl: &Path,
) -> Result<String, HarnessError> {
    let mut out = String::new();
    let mut seen = [false; 6];
    let state_dir = acl.parent().unwrap_or(acl);
    for line in template.lines() {
        let key = line.split_whitespace().next().unwrap_or_default();
        let replaced = match key {
            "listener" => Some((0, format!("listener {port} 127.0.0.1"))),
            "cafile" => Some((1, format!("cafile {}", server.ca.display()))),
            "certfile" => Some((2, format!("certfile {}", server.cert.display()))),
            "keyfile" => Some((3, format!("keyfile {}", server.key.display()))),
            "acl_file" => Some((4, format!("acl_file {}", acl.display()))),
            "persistence_location" => {
                Some((5, format!("persistence_location {}/", state_dir.display())))
            }
            _ => None,
        };
        match replaced {
            Some((i, text)) => {
                seen[i] = true;
                out.push_str(&text);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        let names = [
            "listener",
            "cafile",
            "certfile",
            "keyfile",
            "acl_file",
            "persistence_location",
        ];
        return Err(HarnessError::Pipeline(format!(
            "deploy/mosquitto/o2c.conf has no `{}` line",
            names[i]
        )));
    }
    out.push_str("log_dest stderr\nuser root\n");
    Ok(out)
}

/// A Mosquitto of this test's own, started from `deploy/mosquitto/o2c.conf`.
/// Dropping it kills the broker.
#[derive(Debug)]
pub struct TlsMosquitto {
    process: BrokerProcess,
    dir: TempDir,
}

impl TlsMosquitto {
    /// Starts a broker with `server`'s certificate and `pki`'s current ACL,
    /// and waits until it accepts TCP connections. (Whether TLS and the
    /// ACL work is for the test to prove.)
    pub async fn start(pki: &Pki, server: &TlsFiles) -> Result<Self, HarnessError> {
        let program = find_program("mosquitto", &[PathBuf::from("/usr/sbin")]).ok_or(
            HarnessError::ProgramNotFound {
                name: "mosquitto".to_owned(),
                hint: "apt-get install mosquitto",
            },
        )?;
        let dir = tempfile::Builder::new()
            .prefix("o2c-mosquitto-tls-")
            .tempdir()
            .map_err(|e| HarnessError::io("creating the Mosquitto dir", e))?;
        let template_path = repo_root().join("deploy/mosquitto/o2c.conf");
        let template = std::fs::read_to_string(&template_path)
            .map_err(|e| HarnessError::io(format!("reading {}", template_path.display()), e))?;
        let port = free_port()?;
        let acl = dir.path().join("o2c.acl");
        std::fs::write(&acl, pki.acl()?)
            .map_err(|e| HarnessError::io(format!("writing {}", acl.display()), e))?;
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(&conf, render_conf(&template, port, server, &acl)?)
            .map_err(|e| HarnessError::io(format!("writing {}", conf.display()), e))?;
        let process = BrokerProcess {
            service: "mosquitto (TLS)",
            program,
            args: vec!["-c".to_owned(), conf.display().to_string()],
            cwd: dir.path().to_path_buf(),
            log: dir.path().join("mosquitto.log"),
            port,
            stop_signal: Signal::SIGTERM,
            child: None,
        };
        let mut broker = Self { process, dir };
        broker.start_and_wait().await?;
        Ok(broker)
    }

    /// The broker's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// `mqtts://127.0.0.1:PORT` (the server certificate has SAN IP:127.0.0.1).
    pub fn url(&self) -> String {
        format!("mqtts://127.0.0.1:{}", self.process.port)
    }

    /// The broker's directory (config, ACL, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The broker's log.
    pub fn log_path(&self) -> &Path {
        &self.process.log
    }

    /// Rewrites the ACL from `pki` and sends SIGHUP, which makes Mosquitto
    /// reload it (what an operator does after enrolling a store).
    pub fn reload_acl(&mut self, pki: &Pki) -> Result<(), HarnessError> {
        let acl = self.dir.path().join("o2c.acl");
        std::fs::write(&acl, pki.acl()?)
            .map_err(|e| HarnessError::io(format!("writing {}", acl.display()), e))?;
        match self.process.child.as_mut() {
            Some(child) => child.signal(Signal::SIGHUP),
            None => Err(HarnessError::Pipeline("broker is not running".into())),
        }
    }

    /// Graceful stop.
    pub async fn stop(&mut self) -> Result<(), HarnessError> {
        self.process.stop().await
    }

    /// Stops the broker if it runs, then starts it again on the same port.
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        self.process.stop().await?;
        self.start_and_wait().await
    }

    async fn start_and_wait(&mut self) -> Result<(), HarnessError> {
        self.process.spawn()?;
        let port = self.process.port;
        self.process
            .wait_ready(READY_TIMEOUT, || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .map(drop)
                    .map_err(|e| HarnessError::io(format!("connecting to 127.0.0.1:{port}"), e))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deploy_config_renders_with_every_path_rewritten() {
        let template = std::fs::read_to_string(repo_root().join("deploy/mosquitto/o2c.conf"))
            .expect("deploy/mosquitto/o2c.conf");
        let files = TlsFiles::in_dir(Path::new("/t/srv"));
        let text = render_conf(&template, 4242, &files, Path::new("/t/acl")).unwrap();
        assert!(text.contains("\nlistener 4242 127.0.0.1\n"), "{text}");
        assert!(text.contains("\ncafile /t/srv/ca.pem\n"));
        assert!(text.contains("\nkeyfile /t/srv/key.pem\n"));
        assert!(text.contains("\nacl_file /t/acl\n"));
        assert!(text.contains("\npersistence_location /t/\n"), "{text}");
        for line in [
            "require_certificate true",
            "use_identity_as_username true",
            "allow_anonymous false",
            "persistence true",
        ] {
            assert!(text.contains(line), "{line} missing");
        }
        assert!(render_conf("listener 1\n", 1, &files, Path::new("/a")).is_err());
    }
}
