//! Child processes that cannot outlive a test, free ports, and program lookup.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::HarnessError;

/// A spawned child process that is killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
}

impl ChildGuard {
    /// Spawns `cmd` and guards the child. `name` appears in errors.
    pub fn spawn(name: impl Into<String>, cmd: &mut Command) -> Result<Self, HarnessError> {
        let name = name.into();
        let child = cmd
            .spawn()
            .map_err(|e| HarnessError::io(format!("spawning {name}"), e))?;
        Ok(Self { name, child })
    }

    /// Guards an already spawned child.
    pub fn new(name: impl Into<String>, child: Child) -> Self {
        Self {
            name: name.into(),
            child,
        }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The guarded child, for its pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// True while the child has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `sig` to the child (a no-op if it already exited).
    pub fn signal(&mut self, sig: Signal) -> Result<(), HarnessError> {
        if !self.is_running() {
            return Ok(());
        }
        let pid = i32::try_from(self.child.id()).map_err(|_| {
            HarnessError::io(
                format!("pid of {}", self.name),
                std::io::Error::other("pid out of range"),
            )
        })?;
        signal::kill(Pid::from_raw(pid), sig)
            .map_err(|e| HarnessError::io(format!("sending {sig} to {}", self.name), e.into()))
    }

    /// Kills the child with SIGKILL and reaps it.
    pub fn kill(&mut self) -> Result<ExitStatus, HarnessError> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Ok(status);
        }
        self.child
            .kill()
            .map_err(|e| HarnessError::io(format!("killing {}", self.name), e))?;
        self.child
            .wait()
            .map_err(|e| HarnessError::io(format!("reaping {}", self.name), e))
    }

    /// Waits for the child to exit by itself, polling until `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() >= deadline => {
                    return Err(HarnessError::Timeout {
                        what: format!("{} to exit", self.name),
                        timeout,
                    });
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(e) => {
                    return Err(HarnessError::io(format!("waiting for {}", self.name), e));
                }
            }
        }
    }

    /// Graceful stop: SIGTERM, wait up to `grace`, then SIGKILL.
    pub async fn terminate(&mut self, grace: Duration) -> Result<ExitStatus, HarnessError> {
        self.terminate_with(Signal::SIGTERM, grace).await
    }

    /// Graceful stop with a chosen signal, then SIGKILL after `grace`.
    pub async fn terminate_with(
        &mut self,
        sig: Signal,
        grace: Duration,
    ) -> Result<ExitStatus, HarnessError> {
        self.signal(sig)?;
        match self.wait_exit(grace).await {
            Ok(status) => Ok(status),
            Err(HarnessError::Timeout { .. }) => self.kill(),
            Err(e) => Err(e),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // Best effort: the process may exit between the check and the kill.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A loopback TCP port that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> Result<u16, HarnessError> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| HarnessError::io("binding 127.0.0.1:0", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| HarnessError::io("reading the bound port", e))?
        .port();
    Ok(port)
}

/// Finds `name` on `PATH`, then in `extra` directories.
pub(crate) fn find_program(name: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().cloned())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The last `max` bytes of a log file, lossily decoded; empty if unreadable.
pub(crate) fn log_tail(path: &Path, max: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        TcpListener::bind(("127.0.0.1", port)).unwrap();
    }

    #[tokio::test]
    async fn child_guard_terminates_and_kills() {
        let mut guard = ChildGuard::spawn("sleep", Command::new("sleep").arg("60")).unwrap();
        assert!(guard.is_running());
        let status = guard.terminate(Duration::from_secs(5)).await.unwrap();
        assert!(!status.success());
        assert!(!guard.is_running());
    }

    #[test]
    fn child_guard_drop_kills_the_child() {
        let guard = ChildGuard::spawn("sleep", Command::new("sleep").arg("60")).unwrap();
        let pid = guard.id();
        drop(guard);
        // Reaped by drop, so the pid no longer names our child.
        let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status"));
        assert!(
            proc_status.is_err() || !proc_status.unwrap().contains("State:\tS"),
            "child {pid} still alive"
        );
    }

    #[test]
    fn log_tail_reads_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "first line\nlast line\n").unwrap();
        assert_eq!(log_tail(&path, 10), "last line\n");
        assert_eq!(log_tail(&dir.path().join("missing"), 10), "");
    }
}
