//! A real SMTP server of one test's own, for the notification suites:
//! `tests/smtp/server.py` (aiosmtpd, from PyPI, installed by
//! `deploy/dev/aiosmtpd.sh install`) on a free loopback port, and what it
//! received, read back from the JSON lines it writes.
//!
//! ```ignore
//! let smtp = SmtpServer::start(&env.path().join("smtp")).await?;
//! // point `o2c-cloud notify` at smtp.url(), make it send...
//! let mails = smtp.wait_for_messages(1, Duration::from_secs(10)).await?;
//! assert_eq!(mails[0].subject, "Your order is ready");
//! ```
//!
//! The server answers by the recipient's local part (see `server.py`):
//! - `reject…@` is refused at RCPT TO with `550 5.1.1` (permanent);
//! - `tempfail…@` is refused with `451 4.3.0` (transient);
//! - `hold…@`: the message is noted as held ([`SmtpServer::wait_held`]) and
//!   left unanswered after its DATA until [`SmtpServer::release`];
//! - anything else is accepted.
//!
//! A message is in `messages.jsonl`, fsynced, before the server answers
//! `250` for it; [`SmtpOptions::delay_ms`] delays every answer to DATA. A
//! client that disconnects while its message is held or delayed has had
//! nothing accepted: the message never appears in
//! [`SmtpServer::messages`], and [`SmtpServer::wait_abandoned`] sees it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::process::log_tail;
use crate::{ChildGuard, HarnessError, wait_until_named};

const INSTALL_HINT: &str = "run `deploy/dev/aiosmtpd.sh install` (part of `deploy/dev/services.sh up`), or set O2C_AIOSMTPD_PYTHON to a python3 that has aiosmtpd";

/// How long the server may take to print `listening <port>`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The python3 that runs the server: `O2C_AIOSMTPD_PYTHON`, else the venv
/// that `deploy/dev/aiosmtpd.sh install` makes under
/// `${O2C_DEV_DIR:-$HOME/.local/state/o2c-dev}`.
pub fn python_path() -> PathBuf {
    if let Some(p) = std::env::var_os("O2C_AIOSMTPD_PYTHON") {
        return PathBuf::from(p);
    }
    crate::env::dev_state_dir().join("aiosmtpd-venv/bin/python3")
}

/// `tests/smtp/server.py`.
fn server_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("smtp/server.py")
}

/// How the server behaves beyond its recipient rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SmtpOptions {
    /// Milliseconds the server waits in DATA before accepting each
    /// message (default 0), for latency tests.
    pub delay_ms: u64,
}

/// One message the server accepted, as `server.py` parsed it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReceivedMail {
    /// When it was accepted: nanoseconds since the Unix epoch.
    pub received_ns: u64,
    /// The envelope sender (MAIL FROM).
    pub mail_from: String,
    /// The envelope recipients the server accepted (RCPT TO).
    pub rcpt_tos: Vec<String>,
    /// The `Message-ID` header as sent, `<…>` included; empty if none.
    pub message_id: String,
    /// The `Subject` header, RFC 2047 words decoded.
    pub subject: String,
    /// Every header, decoded, by its name as sent; the last of a
    /// repeated header wins.
    pub headers: BTreeMap<String, String>,
    /// The text/plain body, decoded, lines ending in `\n`; empty if none.
    pub body: String,
}

impl ReceivedMail {
    /// The header `name`, compared without regard to ASCII case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One line of `held.jsonl` or `abandoned.jsonl`.
#[derive(Debug, Clone, Deserialize)]
struct NotedMail {
    message_id: String,
}

/// A running `server.py`, killed when dropped.
#[derive(Debug)]
pub struct SmtpServer {
    dir: PathBuf,
    port: u16,
    messages: Mutex<JsonlLog<ReceivedMail>>,
    held: Mutex<JsonlLog<NotedMail>>,
    abandoned: Mutex<JsonlLog<NotedMail>>,
    // Holds the server's stdin open too: it exits when the test process
    // dies without dropping it.
    _guard: ChildGuard,
}

impl SmtpServer {
    /// Starts a server that writes into `dir` (created if missing), with
    /// default [`SmtpOptions`].
    pub async fn start(dir: &Path) -> Result<SmtpServer, HarnessError> {
        Self::start_with(dir, SmtpOptions::default()).await
    }

    /// Starts a server that writes into `dir` (created if missing). Fails
    /// (never skips) when aiosmtpd is not installed or the server does not
    /// listen within 30 s. Files already in `dir` are kept: a server
    /// restarted on the same dir appends to what the last one received
    /// (and an old `release` still releases).
    pub async fn start_with(dir: &Path, opts: SmtpOptions) -> Result<SmtpServer, HarnessError> {
        let python = python_path();
        if !python.is_file() {
            return Err(HarnessError::ProgramNotFound {
                name: format!("aiosmtpd's python3 ({})", python.display()),
                hint: INSTALL_HINT,
            });
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| HarnessError::io(format!("create {}", dir.display()), e))?;
        let log = dir.join("server.log");
        let stderr = File::create(&log)
            .map_err(|e| HarnessError::io(format!("create {}", log.display()), e))?;
        let mut cmd = Command::new(&python);
        cmd.arg(server_script())
            .arg("--dir")
            .arg(dir)
            .args(["--delay-ms", &opts.delay_ms.to_string()])
            .arg("--exit-on-stdin-eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        let mut guard = ChildGuard::spawn("aiosmtpd server.py", &mut cmd)?;
        let stdout = guard
            .child_mut()
            .stdout
            .take()
            .ok_or_else(|| HarnessError::Pipeline("server.py has no stdout pipe".into()))?;
        // On a timeout the guard's drop kills the server, which ends the read.
        let read = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        let failed = |why: String| {
            HarnessError::Pipeline(format!(
                "the SMTP server ({} {}) {why}; {INSTALL_HINT}\n--- server.log ---\n{}",
                python.display(),
                server_script().display(),
                log_tail(&log, 4000)
            ))
        };
        let line = tokio::time::timeout(START_TIMEOUT, read)
            .await
            .map_err(|_| failed(format!("printed no `listening` line in {START_TIMEOUT:?}")))?
            .map_err(|e| failed(format!("could not be read: {e}")))?
            .map_err(|e| failed(format!("stdout could not be read: {e}")))?;
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| match line.is_empty() {
                true => failed("exited before listening".into()),
                false => failed(format!("printed {line:?}, not `listening <port>`")),
            })?;
        Ok(SmtpServer {
            dir: dir.to_owned(),
            port,
            messages: Mutex::new(JsonlLog::new(dir.join("messages.jsonl"))),
            held: Mutex::new(JsonlLog::new(dir.join("held.jsonl"))),
            abandoned: Mutex::new(JsonlLog::new(dir.join("abandoned.jsonl"))),
            _guard: guard,
        })
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `smtp://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The directory it writes `messages.jsonl`, `held.jsonl`,
    /// `abandoned.jsonl` and `server.log` into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every message accepted so far, in the order accepted.
    pub fn messages(&self) -> Result<Vec<ReceivedMail>, HarnessError> {
        let mut log = lock(&self.messages);
        log.refresh()?;
        Ok(log.records.clone())
    }

    /// How many messages were accepted so far (reads only what is new).
    pub fn message_count(&self) -> Result<usize, HarnessError> {
        lock(&self.messages).refresh()
    }

    /// The message ids of every message held so far, released or not.
    pub fn held(&self) -> Result<Vec<String>, HarnessError> {
        message_ids(&self.held)
    }

    /// The message ids of every message whose client went away while it
    /// was held or delayed, before the server accepted it.
    pub fn abandoned(&self) -> Result<Vec<String>, HarnessError> {
        message_ids(&self.abandoned)
    }

    /// Waits until at least `n` messages were accepted; returns them all.
    pub async fn wait_for_messages(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<ReceivedMail>, HarnessError> {
        let what = format!("{n} messages accepted by {}", self.url());
        wait_count(&self.messages, &what, n, timeout).await?;
        self.messages()
    }

    /// Waits until at least `n` messages were held; returns the message
    /// ids of all held so far.
    pub async fn wait_held(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<String>, HarnessError> {
        let what = format!("{n} messages held by {}", self.url());
        wait_count(&self.held, &what, n, timeout).await?;
        self.held()
    }

    /// Waits until at least `n` messages were abandoned by their clients
    /// before being accepted; returns the message ids of all so far.
    pub async fn wait_abandoned(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<String>, HarnessError> {
        let what = format!("{n} messages abandoned at {}", self.url());
        wait_count(&self.abandoned, &what, n, timeout).await?;
        self.abandoned()
    }

    /// Releases every held message, and every one held from now on: the
    /// server accepts them (creates `release` in the dir).
    pub fn release(&self) -> Result<(), HarnessError> {
        let path = self.dir.join("release");
        File::create(&path)
            .map(drop)
            .map_err(|e| HarnessError::io(format!("create {}", path.display()), e))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn message_ids(log: &Mutex<JsonlLog<NotedMail>>) -> Result<Vec<String>, HarnessError> {
    let mut log = lock(log);
    log.refresh()?;
    Ok(log.records.iter().map(|m| m.message_id.clone()).collect())
}

/// Polls `log` until it holds `n` records; a read error ends the wait.
async fn wait_count<T: DeserializeOwned>(
    log: &Mutex<JsonlLog<T>>,
    what: &str,
    n: usize,
    timeout: Duration,
) -> Result<(), HarnessError> {
    let mut failure = None;
    let mut seen = 0;
    let waited = wait_until_named(
        what,
        || {
            let done = match lock(log).refresh() {
                Ok(count) => {
                    seen = count;
                    count >= n
                }
                Err(e) => {
                    failure = Some(e);
                    true
                }
            };
            std::future::ready(done)
        },
        timeout,
    )
    .await;
    if let Some(e) = failure {
        return Err(e);
    }
    waited.map_err(|_| HarnessError::Timeout {
        what: format!("{what} (saw {seen})"),
        timeout,
    })
}

/// A JSON-lines file another process appends to, read incrementally: each
/// refresh parses only the complete lines added since the last one.
#[derive(Debug)]
struct JsonlLog<T> {
    path: PathBuf,
    /// Bytes of the file already parsed (always after a `\n`).
    offset: u64,
    records: Vec<T>,
}

impl<T: DeserializeOwned> JsonlLog<T> {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            offset: 0,
            records: Vec::new(),
        }
    }

    /// Reads the complete lines appended since the last call (a last line
    /// without its `\n` is still being written and waits for the next
    /// call); returns how many records there are. A missing file is empty.
    fn refresh(&mut self) -> Result<usize, HarnessError> {
        let io = |e| HarnessError::io(format!("read {}", self.path.display()), e);
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(self.records.len()),
            Err(e) => return Err(io(e)),
        };
        let mut buf = Vec::new();
        file.seek(SeekFrom::Start(self.offset)).map_err(io)?;
        file.read_to_end(&mut buf).map_err(io)?;
        let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
            return Ok(self.records.len());
        };
        let mut parsed = Vec::new();
        for line in buf[..end].split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let record = serde_json::from_slice(line).map_err(|e| {
                HarnessError::Pipeline(format!(
                    "{}: bad line {:?}: {e}",
                    self.path.display(),
                    String::from_utf8_lossy(line)
                ))
            })?;
            parsed.push(record);
        }
        self.records.extend(parsed);
        self.offset += end as u64 + 1;
        Ok(self.records.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn jsonl_log_reads_complete_lines_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("held.jsonl");
        let mut log = JsonlLog::<NotedMail>::new(path.clone());
        assert_eq!(log.refresh().unwrap(), 0, "a missing file is empty");

        let mut f = File::create(&path).unwrap();
        f.write_all(b"{\"message_id\":\"<a@x>\",\"rcpt_tos\":[]}\n{\"message_id\":")
            .unwrap();
        assert_eq!(log.refresh().unwrap(), 1, "the half-written line waits");
        f.write_all(b"\"<b@x>\",\"rcpt_tos\":[]}\n").unwrap();
        assert_eq!(log.refresh().unwrap(), 2);
        assert_eq!(log.refresh().unwrap(), 2, "nothing read twice");
        let ids: Vec<_> = log.records.iter().map(|h| h.message_id.as_str()).collect();
        assert_eq!(ids, ["<a@x>", "<b@x>"]);
    }

    #[test]
    fn a_bad_line_is_an_error_and_is_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("messages.jsonl");
        std::fs::write(&path, "not json\n").unwrap();
        let mut log = JsonlLog::<ReceivedMail>::new(path);
        assert!(log.refresh().is_err());
        assert!(log.refresh().is_err());
    }

    #[test]
    fn header_lookup_ignores_case() {
        let mail = ReceivedMail {
            received_ns: 1,
            mail_from: "a@x".into(),
            rcpt_tos: vec!["b@x".into()],
            message_id: "<m@x>".into(),
            subject: "s".into(),
            headers: BTreeMap::from([("Message-ID".into(), "<m@x>".into())]),
            body: String::new(),
        };
        assert_eq!(mail.header("message-id"), Some("<m@x>"));
        assert_eq!(mail.header("X-Missing"), None);
    }
}
