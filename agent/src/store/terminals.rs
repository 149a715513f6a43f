//! POS terminals managed from the CLI (`terminals` table, migration 0002):
//! the queries shared by the running agent's auth cache (read pool) and the
//! operator commands ([`AdminDb`](super::AdminDb)).

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::StoreError;

/// One row of the `terminals` table. Only the token's SHA-256 is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct TerminalRecord {
    /// The terminal id (as in `terminal_id`).
    pub id: String,
    /// SHA-256 of its bearer token.
    pub token_sha256: [u8; 32],
    /// When it was added (Unix ms).
    pub created_at_ms: i64,
    /// When it was revoked (Unix ms), if it was.
    pub revoked_at_ms: Option<i64>,
}

impl std::fmt::Debug for TerminalRecord {
    // Never print a full hash: a fingerprint is enough to tell tokens apart.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TerminalRecord")
            .field("id", &self.id)
            .field("token_fingerprint", &fingerprint(&self.token_sha256))
            .field("created_at_ms", &self.created_at_ms)
            .field("revoked_at_ms", &self.revoked_at_ms)
            .finish()
    }
}

/// The first 4 bytes of a token hash, in hex: enough to tell tokens apart
/// in a listing, useless for guessing one.
pub fn fingerprint(hash: &[u8; 32]) -> String {
    hex::encode(&hash[..4])
}

/// What [`AdminDb::add_terminal`](super::AdminDb::add_terminal) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddTerminalOutcome {
    /// Added (or re-added after a revocation, with the new token).
    Added,
    /// An active terminal already has this id; nothing changed.
    AlreadyActive,
}

/// What [`AdminDb::revoke_terminal`](super::AdminDb::revoke_terminal) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeTerminalOutcome {
    /// Revoked now.
    Revoked,
    /// It was revoked before, at this time (Unix ms); nothing changed.
    AlreadyRevoked(i64),
    /// No CLI-managed terminal has this id.
    NotFound,
}

/// The change counter the triggers bump on every write to `terminals`.
pub(crate) fn generation(c: &Connection) -> Result<i64, StoreError> {
    Ok(
        c.prepare_cached("SELECT generation FROM terminals_generation WHERE id = 1")?
            .query_row([], |r| r.get(0))?,
    )
}

/// Every row, oldest first.
pub(crate) fn list(c: &Connection) -> Result<Vec<TerminalRecord>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT id, token_sha256, created_at_ms, revoked_at_ms FROM terminals \
         ORDER BY created_at_ms, id",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        let hash: Vec<u8> = r.get(1)?;
        let token_sha256: [u8; 32] = hash
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("token_sha256 of terminal {id:?}")))?;
        out.push(TerminalRecord {
            id,
            token_sha256,
            created_at_ms: r.get(2)?,
            revoked_at_ms: r.get(3)?,
        });
    }
    Ok(out)
}

/// The generation and the terminals not revoked, read in one snapshot.
pub(crate) fn active(c: &Connection) -> Result<(i64, Vec<TerminalRecord>), StoreError> {
    let tx = c.unchecked_transaction()?;
    let generation = generation(&tx)?;
    let active = list(&tx)?
        .into_iter()
        .filter(|t| t.revoked_at_ms.is_none())
        .collect();
    tx.finish()?;
    Ok((generation, active))
}

pub(crate) fn add(
    c: &mut Connection,
    id: &str,
    token_sha256: &[u8; 32],
    now_ms: i64,
) -> Result<AddTerminalOutcome, StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let revoked: Option<Option<i64>> = tx
        .query_row(
            "SELECT revoked_at_ms FROM terminals WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(None) = revoked {
        return Ok(AddTerminalOutcome::AlreadyActive);
    }
    tx.execute(
        "INSERT INTO terminals (id, token_sha256, created_at_ms, revoked_at_ms) \
         VALUES (?1, ?2, ?3, NULL) \
         ON CONFLICT (id) DO UPDATE SET token_sha256 = excluded.token_sha256, \
         created_at_ms = excluded.created_at_ms, revoked_at_ms = NULL",
        params![id, &token_sha256[..], now_ms],
    )?;
    tx.commit()?;
    Ok(AddTerminalOutcome::Added)
}

pub(crate) fn revoke(
    c: &mut Connection,
    id: &str,
    now_ms: i64,
) -> Result<RevokeTerminalOutcome, StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let revoked: Option<Option<i64>> = tx
        .query_row(
            "SELECT revoked_at_ms FROM terminals WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()?;
    let outcome = match revoked {
        None => RevokeTerminalOutcome::NotFound,
        Some(Some(at)) => RevokeTerminalOutcome::AlreadyRevoked(at),
        Some(None) => {
            tx.execute(
                "UPDATE terminals SET revoked_at_ms = ?2 WHERE id = ?1",
                params![id, now_ms],
            )?;
            RevokeTerminalOutcome::Revoked
        }
    };
    tx.commit()?;
    Ok(outcome)
}
