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

/// A loopback TCP port that is free now and that the kernel does not hand out
/// by itself.
///
/// A port from `bind(0)` is an ephemeral one. Once it is released, the kernel
/// may give it to any outgoing connection (to PostgreSQL, the broker, Kafka)
/// made before the child binds it, or to the next `bind(0)`, so two listeners
/// of one child can get the same port. CI saw that as a service failing with
/// "Address already in use". So ports come from outside the kernel's
/// ephemeral range (`net.ipv4.ip_local_port_range`), one after another from
/// an offset drawn per process, and each is checked bindable.
pub fn free_port() -> Result<u16, HarnessError> {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static SPAN: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    let Some((first, len)) = *SPAN.get_or_init(|| {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok();
        let span = non_ephemeral_span(range.as_deref());
        let seed = std::process::id().wrapping_mul(7919)
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
        NEXT.store(seed, Ordering::Relaxed);
        span
    }) else {
        return kernel_port();
    };
    for _ in 0..len {
        let port = first + NEXT.fetch_add(1, Ordering::Relaxed) % len;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(HarnessError::io(
        format!("finding a free loopback port in {first}..{}", first + len),
        std::io::Error::from(std::io::ErrorKind::AddrInUse),
    ))
}

/// The larger run of ports outside the ephemeral range `range` (the text of
/// `ip_local_port_range`, "low high"), above 10000, as (first, length); None
/// if no run of 1000 ports is left or the range cannot be read.
fn non_ephemeral_span(range: Option<&str>) -> Option<(u32, u32)> {
    let mut it = range?.split_whitespace().map(str::parse::<u32>);
    let (low, high) = (it.next()?.ok()?, it.next()?.ok()?);
    let below = (10_000, low.saturating_sub(10_000));
    let above = (high + 1, 65_535u32.saturating_sub(high));
    let best = if below.1 >= above.1 { below } else { above };
    (best.1 >= 1000).then_some(best)
}

/// A port from `bind(0)`: the fallback where no non-ephemeral span exists.
fn kernel_port() -> Result<u16, HarnessError> {
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

    #[test]
    fn free_ports_are_distinct_and_outside_the_ephemeral_range() {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
        let (first, len) = non_ephemeral_span(Some(&range)).unwrap();
        let ports: Vec<u16> = (0..200).map(|_| free_port().unwrap()).collect();
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        for p in ports {
            assert!((first..first + len).contains(&u32::from(p)), "{p}");
        }
    }

    #[test]
    fn non_ephemeral_span_takes_the_larger_side() {
        assert_eq!(
            non_ephemeral_span(Some("32768\t60999\n")),
            Some((10_000, 22_768))
        );
        assert_eq!(
            non_ephemeral_span(Some("1024 40000")),
            Some((40_001, 25_535))
        );
        assert_eq!(non_ephemeral_span(Some("1024 65000")), None);
        assert_eq!(non_ephemeral_span(Some("junk")), None);
        assert_eq!(non_ephemeral_span(None), None);
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
