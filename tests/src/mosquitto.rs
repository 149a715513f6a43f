//! [`PrivateMosquitto`]: a dedicated Mosquitto on a free loopback port, so a
//! fault test can stop, kill or restart its broker without touching others.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::HarnessError;
use crate::broker::BrokerProcess;
use crate::mqtt::mqtt_answers;
use crate::process::{find_program, free_port};

/// How long a fresh Mosquitto may take to answer CONNECT.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// A Mosquitto process of this test's own. Dropping it kills the broker.
///
/// Its directory holds `mosquitto.conf` and `mosquitto.log` (the broker logs to
/// stderr, redirected there). Extra config lines go after the generated ones,
/// e.g. `persistence true` with `persistence_location` under [`Self::dir`].
#[derive(Debug)]
pub struct PrivateMosquitto {
    process: BrokerProcess,
    dir: TempDir,
}

impl PrivateMosquitto {
    /// Starts a broker with the default config and waits until it answers.
    pub async fn start() -> Result<Self, HarnessError> {
        Self::start_with(&[]).await
    }

    /// Starts a broker with `extra_config` lines appended to its config.
    pub async fn start_with(extra_config: &[&str]) -> Result<Self, HarnessError> {
        let program = find_program("mosquitto", &[PathBuf::from("/usr/sbin")]).ok_or(
            HarnessError::ProgramNotFound {
                name: "mosquitto".to_owned(),
                hint: "apt-get install mosquitto",
            },
        )?;
        let dir = tempfile::Builder::new()
            .prefix("o2c-mosquitto-")
            .tempdir()
            .map_err(|e| HarnessError::io("creating the Mosquitto dir", e))?;
        let port = free_port()?;
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(&conf, config_text(port, extra_config))
            .map_err(|e| HarnessError::io(format!("writing {}", conf.display()), e))?;
        let process = BrokerProcess {
            service: "mosquitto",
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

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.process.port)
    }

    /// The broker's own directory (config, log; writable for persistence).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The broker's log file.
    pub fn log_path(&self) -> &Path {
        &self.process.log
    }

    /// True while the broker process runs.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Graceful stop (SIGTERM, SIGKILL after a grace period).
    pub async fn stop(&mut self) -> Result<(), HarnessError> {
        self.process.stop().await
    }

    /// Hard stop: SIGKILL.
    pub fn kill(&mut self) -> Result<(), HarnessError> {
        self.process.kill()
    }

    /// Stops the broker if it runs, then starts it again on the same port.
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        self.process.stop().await?;
        self.start_and_wait().await
    }

    async fn start_and_wait(&mut self) -> Result<(), HarnessError> {
        self.process.spawn()?;
        let url = self.url();
        self.process
            .wait_ready(READY_TIMEOUT, || mqtt_answers(&url, Duration::from_secs(2)))
            .await
    }
}

/// The generated config: loopback listener, anonymous access, no Nagle
/// delay (as the dev broker), log to stderr.
///
/// `user root` keeps a root-started broker from switching to the `mosquitto`
/// user, which could not write persistence files in a root-owned temp dir.
fn config_text(port: u16, extra: &[&str]) -> String {
    let mut text = format!(
        "listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\nlog_dest stderr\nuser root\n"
    );
    for line in extra {
        text.push_str(line);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_the_listener_and_extras() {
        let text = config_text(4242, &["max_packet_size 1048576"]);
        assert!(text.contains("listener 4242 127.0.0.1\n"));
        assert!(text.contains("allow_anonymous true\n"));
        assert!(text.ends_with("max_packet_size 1048576\n"));
    }
}
