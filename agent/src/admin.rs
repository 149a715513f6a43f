//! The operator commands behind `o2c-agent terminal add|list|revoke`,
//! `status`, `outbox list`, `backup` and `report z`. Each returns the text to print (so
//! tests can check it) and works while the agent runs: they use their own
//! connection to the database ([`AdminDb`]) or the agent's local API.
//!
//! - Terminals: `[[terminals]]` in the config file plus CLI-managed ones in
//!   the database's `terminals` table. `add` prints a fresh token once and
//!   stores only its SHA-256; the running agent picks adds and revokes up
//!   within a second (see `api::auth`). Config-file terminals are changed
//!   by editing the file.
//! - `status` asks the running agent (`GET /v1/sync` at `data_dir/http.addr`)
//!   or, with `--offline`, reads the database read-only.
//! - `report z --date D` reads the database read-only and prints the
//!   Z-report of business date D (`crate::report`).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use o2c_protocol::TerminalId;
use rand::TryRngCore;
use sha2::{Digest, Sha256};

use crate::api::model::SyncResponse;
use crate::business_day::parse_date;
use crate::config::Config;
use crate::report;
use crate::store::report::read_z_report_rows;
use crate::store::{
    AddTerminalOutcome, AdminDb, OutboxState, RevokeTerminalOutcome, StoreError, SyncCounts,
    fingerprint, now_ms,
};

/// How long `status` waits for the running agent.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// Why an operator command failed. [`AdminError::exit_code`] maps each to a
/// sysexits code.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The database could not be opened, read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Not a valid terminal id.
    #[error("invalid terminal id {id:?}: {message}")]
    BadTerminalId {
        /// What was given.
        id: String,
        /// Why it is refused.
        message: String,
    },
    /// The terminal is defined in the config file, which the CLI never edits.
    #[error(
        "terminal {id:?} is defined in the config file {config}; remove (or change) its \
         [[terminals]] entry there and restart the agent"
    )]
    ConfigTerminal {
        /// The terminal.
        id: String,
        /// The config file.
        config: PathBuf,
    },
    /// An active CLI-managed terminal already has this id.
    #[error(
        "terminal {0:?} already exists; `o2c-agent terminal revoke {0}` first to issue a new token"
    )]
    TerminalExists(String),
    /// No CLI-managed terminal has this id.
    #[error("no terminal {0:?} (neither in the config file nor added with `terminal add`)")]
    UnknownTerminal(String),
    /// The system's random source failed.
    #[error("cannot read the OS random source: {0}")]
    Random(String),
    /// The running agent did not answer.
    #[error(
        "the agent is not running or not answering ({detail}); start it, or use \
         `o2c-agent status --offline` to read the database directly"
    )]
    AgentNotRunning {
        /// What failed.
        detail: String,
    },
    /// Not a business date.
    #[error("invalid --date {date:?}: {message}")]
    BadDate {
        /// What was given.
        date: String,
        /// Why it is refused.
        message: String,
    },
    /// The report's figures could not be computed.
    #[error("cannot build the report: {0}")]
    Report(#[from] crate::report::ReportError),
    /// The agent answered something unexpected.
    #[error("unexpected answer from the agent at {addr}: {detail}")]
    BadAnswer {
        /// Where it was asked.
        addr: SocketAddr,
        /// What was wrong.
        detail: String,
    },
}

impl AdminError {
    /// The process exit code for this error (sysexits.h).
    pub fn exit_code(&self) -> u8 {
        match self {
            AdminError::BadTerminalId { .. } => 64,
            AdminError::TerminalExists(_) | AdminError::ConfigTerminal { .. } => 65,
            AdminError::UnknownTerminal(_) => 67,
            AdminError::BadDate { .. } => 64,
            AdminError::Report(_) => 65,
            AdminError::AgentNotRunning { .. } => 69,
            AdminError::BadAnswer { .. } | AdminError::Random(_) => 70,
            AdminError::Store(StoreError::Setup(_)) => 66,
            AdminError::Store(_) => 74,
        }
    }
}

/// A token issued by [`terminal_add`]; printed once, never stored.
#[derive(Clone)]
pub struct IssuedToken {
    /// The terminal.
    pub id: TerminalId,
    /// 32 random bytes from the OS CSPRNG, hex encoded.
    pub token: String,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("id", &self.id)
            .field("token", &"<redacted>")
            .finish()
    }
}

fn parse_id(id: &str) -> Result<TerminalId, AdminError> {
    id.parse()
        .map_err(|e: o2c_protocol::IdError| AdminError::BadTerminalId {
            id: id.to_owned(),
            message: e.to_string(),
        })
}

fn in_config(config: &Config, id: &TerminalId) -> bool {
    config.terminals.iter().any(|t| &t.id == id)
}

/// `terminal add ID`: a new random token for `id`, stored as its SHA-256.
/// Refuses ids of config-file terminals and of active CLI terminals.
pub fn terminal_add(
    config: &Config,
    config_path: &Path,
    id: &str,
) -> Result<IssuedToken, AdminError> {
    let id = parse_id(id)?;
    if in_config(config, &id) {
        return Err(AdminError::ConfigTerminal {
            id: id.to_string(),
            config: config_path.to_owned(),
        });
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| AdminError::Random(e.to_string()))?;
    let token = hex::encode(bytes);
    let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let mut db = AdminDb::open_read_write(&config.db_path())?;
    match db.add_terminal(id.as_str(), &hash, now_ms())? {
        AddTerminalOutcome::Added => Ok(IssuedToken { id, token }),
        AddTerminalOutcome::AlreadyActive => Err(AdminError::TerminalExists(id.to_string())),
    }
}

/// `terminal revoke ID`: revokes a CLI-managed terminal.
pub fn terminal_revoke(
    config: &Config,
    config_path: &Path,
    id: &str,
) -> Result<String, AdminError> {
    let id = parse_id(id)?;
    if in_config(config, &id) {
        return Err(AdminError::ConfigTerminal {
            id: id.to_string(),
            config: config_path.to_owned(),
        });
    }
    let mut db = AdminDb::open_read_write(&config.db_path())?;
    match db.revoke_terminal(id.as_str(), now_ms())? {
        RevokeTerminalOutcome::Revoked => Ok(format!(
            "revoked terminal {id}; the running agent refuses its token within a second\n"
        )),
        RevokeTerminalOutcome::AlreadyRevoked(at) => Ok(format!(
            "terminal {id} was already revoked at {}\n",
            rfc3339(at)
        )),
        RevokeTerminalOutcome::NotFound => Err(AdminError::UnknownTerminal(id.to_string())),
    }
}

/// `terminal list`: every terminal, where it comes from, created and
/// revoked times, and a token fingerprint (never a token or a full hash).
pub fn terminal_list(config: &Config) -> Result<String, AdminError> {
    let path = config.db_path();
    let stored = if path.exists() {
        AdminDb::open_read_only(&path)?.terminals()?
    } else {
        Vec::new()
    };
    let mut out = format!(
        "{:<20} {:<8} {:<25} {:<25} {}\n",
        "ID", "SOURCE", "CREATED", "REVOKED", "TOKEN_SHA256"
    );
    for t in &config.terminals {
        let _ = writeln!(
            out,
            "{:<20} {:<8} {:<25} {:<25} {}…",
            t.id.as_str(),
            "config",
            "-",
            "-",
            fingerprint(&t.token_sha256.0)
        );
    }
    for t in &stored {
        let _ = writeln!(
            out,
            "{:<20} {:<8} {:<25} {:<25} {}…",
            t.id,
            "cli",
            rfc3339(t.created_at_ms),
            t.revoked_at_ms.map_or_else(|| "-".to_owned(), rfc3339),
            fingerprint(&t.token_sha256)
        );
    }
    Ok(out)
}

/// `status`: the running agent's `GET /v1/sync`, or with `offline` the
/// same figures counted from the database (read-only).
pub fn status(config: &Config, offline: bool, timeout: Duration) -> Result<String, AdminError> {
    if offline {
        let db = AdminDb::open_read_only(&config.db_path())?;
        let c = db.sync_counts(now_ms())?;
        let last_ack_at = c.last_ack_at_ms.map(rfc3339);
        return Ok(render_status(
            &format!("database {} (read-only)", config.db_path().display()),
            "unknown (--offline does not ask the agent)",
            &c,
            last_ack_at,
        ));
    }
    let addr_file = config.http_addr_path();
    let addr: SocketAddr = std::fs::read_to_string(&addr_file)
        .map_err(|e| AdminError::AgentNotRunning {
            detail: format!("cannot read {}: {e}", addr_file.display()),
        })?
        .trim()
        .parse()
        .map_err(|_| AdminError::AgentNotRunning {
            detail: format!("{} does not hold an address", addr_file.display()),
        })?;
    let body = http_get(addr, "/v1/sync", timeout)?;
    let s: SyncResponse = serde_json::from_str(&body).map_err(|e| AdminError::BadAnswer {
        addr,
        detail: format!("GET /v1/sync: {e}"),
    })?;
    let counts = SyncCounts {
        pending_events: s.pending_events,
        oldest_pending_age_ms: s.oldest_pending_age_ms,
        last_acked_seq: s.last_acked_seq,
        last_ack_at_ms: None,
        rejected_events: s.rejected_events,
    };
    Ok(render_status(
        &format!("running agent at {addr}"),
        if s.connected {
            "connected"
        } else {
            "disconnected"
        },
        &counts,
        s.last_ack_at,
    ))
}

fn render_status(source: &str, link: &str, c: &SyncCounts, last_ack_at: Option<String>) -> String {
    let oldest = c.oldest_pending_age_ms.map_or_else(
        || "-".to_owned(),
        |ms| format!("{:.1} s", ms as f64 / 1000.0),
    );
    let last_ack = match last_ack_at {
        None if c.last_acked_seq == 0 => "none yet".to_owned(),
        None => format!("seq {}", c.last_acked_seq),
        Some(at) => format!("seq {} at {at}", c.last_acked_seq),
    };
    format!(
        "source:           {source}\n\
         cloud link:       {link}\n\
         pending events:   {}\n\
         oldest pending:   {oldest}\n\
         last ack:         {last_ack}\n\
         rejected events:  {}\n",
        c.pending_events, c.rejected_events
    )
}

/// A plain HTTP/1.1 GET with `Connection: close`; the body of a 200.
fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String, AdminError> {
    let down = |e: std::io::Error| AdminError::AgentNotRunning {
        detail: format!("{addr}: {e}"),
    };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(down)?;
    stream.set_read_timeout(Some(timeout)).map_err(down)?;
    stream.set_write_timeout(Some(timeout)).map_err(down)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(down)?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).map_err(down)?;
    let text = String::from_utf8_lossy(&buf);
    let bad = |detail: &str| AdminError::BadAnswer {
        addr,
        detail: detail.to_owned(),
    };
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("truncated response"))?;
    let status = head.split(' ').nth(1).unwrap_or_default();
    if status != "200" {
        return Err(bad(&format!("GET {path} answered {status}: {body}")));
    }
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    Ok(if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `outbox list --state S [--limit N]`, read-only.
pub fn outbox_list(config: &Config, state: OutboxState, limit: u64) -> Result<String, AdminError> {
    let db = AdminDb::open_read_only(&config.db_path())?;
    let rows = db.outbox(state, limit)?;
    let mut out = format!(
        "{:>8} {:<36} {:<16} {:<36} {:<25}",
        "SEQ", "EVENT_ID", "EVENT_TYPE", "ORDER_ID", "CREATED_AT"
    );
    match state {
        OutboxState::Acked => out.push_str(" ACKED_AT"),
        OutboxState::Rejected => out.push_str(" REJECT_CODE REJECT_REASON"),
        OutboxState::Pending => {}
    }
    out.push('\n');
    for r in &rows {
        let _ = write!(
            out,
            "{:>8} {:<36} {:<16} {:<36} {:<25}",
            r.seq,
            r.event_id,
            r.event_type,
            r.order_id,
            rfc3339(r.created_at_ms)
        );
        match state {
            OutboxState::Acked => {
                let _ = write!(
                    out,
                    " {}",
                    r.acked_at_ms.map_or_else(|| "-".into(), rfc3339)
                );
            }
            OutboxState::Rejected => {
                let _ = write!(
                    out,
                    " {} {}",
                    r.reject_code.as_deref().unwrap_or("-"),
                    r.reject_reason.as_deref().unwrap_or("-")
                );
            }
            OutboxState::Pending => {}
        }
        out.push('\n');
    }
    Ok(out)
}

/// `backup FILE`: a consistent online copy (SQLite backup API), checked
/// with `integrity_check` before it is renamed to `file`.
pub fn backup(config: &Config, file: &Path) -> Result<String, AdminError> {
    let db = AdminDb::open_read_only(&config.db_path())?;
    let pages = db.backup_to(file)?;
    Ok(format!(
        "backed up {} to {} ({pages} pages, integrity_check ok)\n",
        config.db_path().display(),
        file.display()
    ))
}

/// `report z --date D [--json]`: the Z-report of business date `date`
/// (`YYYY-MM-DD`, the store's `[business_day]`), read from the database
/// opened read-only: a table, or with `json` the body of
/// `GET /v1/reports/z`.
pub fn report_z(config: &Config, date: &str, json: bool) -> Result<String, AdminError> {
    let bad = |message: String| AdminError::BadDate {
        date: date.to_owned(),
        message,
    };
    let day = parse_date(date).map_err(|e| bad(e.to_string()))?;
    let meta = report::meta_for(
        config.store_id.as_str(),
        &config.business_day(),
        day,
        config.outbox.retention_days,
        now_ms(),
    )
    .map_err(|e| bad(e.to_string()))?;
    let (start, end) = meta.window_ms;
    let rows = read_z_report_rows(&config.db_path(), start, end)?;
    let z = report::build(&meta, &rows)?;
    if json {
        let mut text = serde_json::to_string_pretty(&z)
            .map_err(|e| AdminError::Store(StoreError::Encode(e.to_string())))?;
        text.push('\n');
        Ok(text)
    } else {
        Ok(report::render_text(&z))
    }
}

fn rfc3339(ms: i64) -> String {
    crate::api::rfc3339_ms(ms)
}
