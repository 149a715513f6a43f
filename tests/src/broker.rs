//! The process half shared by [`crate::PrivateMosquitto`] and [`crate::PrivateTansu`]:
//! spawn with output to a log file, stop, kill, and a readiness loop.

use std::fs::OpenOptions;
use std::future::Future;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::HarnessError;
use crate::process::{ChildGuard, log_tail};

/// How long a graceful stop may take before SIGKILL.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(crate) struct BrokerProcess {
    pub(crate) service: &'static str,
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) cwd: PathBuf,
    pub(crate) log: PathBuf,
    pub(crate) port: u16,
    pub(crate) stop_signal: Signal,
    pub(crate) child: Option<ChildGuard>,
}

impl BrokerProcess {
    /// Spawns the broker (if not running), appending its output to the log.
    pub(crate) fn spawn(&mut self) -> Result<(), HarnessError> {
        if self.is_running() {
            return Ok(());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| HarnessError::io(format!("opening {}", self.log.display()), e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| HarnessError::io("cloning the log handle", e))?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        self.child = Some(ChildGuard::spawn(self.service, &mut cmd)?);
        Ok(())
    }

    pub(crate) fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(ChildGuard::is_running)
    }

    /// Graceful stop with the broker's stop signal, SIGKILL after [`STOP_GRACE`].
    pub(crate) async fn stop(&mut self) -> Result<(), HarnessError> {
        if let Some(mut child) = self.child.take() {
            child.terminate_with(self.stop_signal, STOP_GRACE).await?;
        }
        Ok(())
    }

    /// SIGKILL: no chance to flush anything.
    pub(crate) fn kill(&mut self) -> Result<(), HarnessError> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
        }
        Ok(())
    }

    /// Polls `probe` until it succeeds; fails early if the process exits.
    pub(crate) async fn wait_ready<F, Fut>(
        &mut self,
        timeout: Duration,
        mut probe: F,
    ) -> Result<(), HarnessError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), HarnessError>>,
    {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(10);
        loop {
            let last_error = match probe().await {
                Ok(()) => return Ok(()),
                Err(e) => e.to_string(),
            };
            if !self.is_running() {
                return Err(self.not_ready(timeout, format!("process exited; {last_error}")));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.not_ready(timeout, last_error));
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    fn not_ready(&self, timeout: Duration, last_error: String) -> HarnessError {
        HarnessError::NotReady {
            service: self.service,
            port: self.port,
            timeout,
            last_error,
            log_tail: log_tail(&self.log, 4096),
        }
    }
}
