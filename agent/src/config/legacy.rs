//! Keys of the old config layout, still accepted since agents are deployed
//! with them: the sync window was in `[mqtt]` and is now `[sync]`;
//! `retention_days` was in `[mqtt]` and is now in `[outbox]`. An old key is
//! moved to its new place (the caller logs a warning naming both); an old
//! key and its new key set at once is an error naming both.

use super::ConfigError;

/// Old key, new key: one table and one key each.
const MOVED: [(&str, &str); 4] = [
    ("mqtt.max_batch_events", "sync.max_batch_events"),
    ("mqtt.max_batch_bytes", "sync.max_batch_bytes"),
    ("mqtt.ack_timeout_ms", "sync.ack_timeout_ms"),
    ("mqtt.retention_days", "outbox.retention_days"),
];

/// A key of the old layout the config used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deprecated {
    /// The old key, e.g. `mqtt.ack_timeout_ms`.
    pub old: &'static str,
    /// Where it lives now, e.g. `sync.ack_timeout_ms`.
    pub new: &'static str,
}

/// Moves old keys in `root` (the file plus overrides) to their new place.
pub(super) fn migrate(root: &mut toml::Value) -> Result<Vec<Deprecated>, ConfigError> {
    let mut found = Vec::new();
    for (old, new) in MOVED {
        let (Some((old_table, old_key)), Some((new_table, new_key))) =
            (old.split_once('.'), new.split_once('.'))
        else {
            continue;
        };
        let Some(value) = root
            .get_mut(old_table)
            .and_then(toml::Value::as_table_mut)
            .and_then(|t| t.remove(old_key))
        else {
            continue;
        };
        let Some(root_table) = root.as_table_mut() else {
            continue;
        };
        let target = root_table
            .entry(new_table)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        // Not a table: leave it to serde to name the key.
        let Some(target) = target.as_table_mut() else {
            continue;
        };
        if target.contains_key(new_key) {
            return Err(ConfigError::key(
                new,
                format!("both `{old}` (deprecated) and `{new}` are set; keep only `{new}`"),
            ));
        }
        target.insert(new_key.to_owned(), value);
        found.push(Deprecated { old, new });
    }
    Ok(found)
}
