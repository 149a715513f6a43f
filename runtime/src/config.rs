//! The TOML loader shared by every binary: a file, then environment
//! overrides, then serde into the binary's own `Config`. Semantic checks
//! (ranges, tables that go together) stay with each binary's `Config`.
//!
//! # Environment overrides
//! Every key can be overridden by a variable named after the [`Loader`]'s
//! prefix (`O2C_AGENT__`, `O2C_CLOUD__`, ...) followed by the key's path in
//! upper case, with `__` between the levels and array indexes as levels:
//!
//! | key                        | variable (prefix `O2C_AGENT__`)         |
//! |----------------------------|-----------------------------------------|
//! | `store_id`                 | `O2C_AGENT__STORE_ID`                   |
//! | `http.listen`              | `O2C_AGENT__HTTP__LISTEN`               |
//! | `mqtt.tls.ca_file`         | `O2C_AGENT__MQTT__TLS__CA_FILE`         |
//! | `terminals[0].token_sha256`| `O2C_AGENT__TERMINALS__0__TOKEN_SHA256` |
//!
//! A value is read as a TOML value when it parses as one (`42`, `true`,
//! `[{ id = "T1", token_sha256 = "…" }]`) and as a plain string otherwise.
//! When the file already holds a string at that key the value is always a
//! string. Quote a value (`'"123"'`) to force a string. Variables are
//! applied in name order.
//!
//! Unknown keys, in the file or in a variable, are errors (the target types
//! use `#[serde(deny_unknown_fields)]`). Every error names the key it is
//! about.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file (empty when the text did not come from a file).
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// An environment override could not be applied.
    #[error("environment variable {var} (config key `{key}`): {message}")]
    Env {
        /// The variable.
        var: String,
        /// The key it addresses.
        key: String,
        /// What was wrong.
        message: String,
    },
    /// A key has a bad value, is missing or is unknown.
    #[error("config key `{key}`: {message}")]
    Key {
        /// The key's path, e.g. `http.listen` or `terminals[0].id`.
        key: String,
        /// What was wrong.
        message: String,
    },
}

impl ConfigError {
    /// A [`ConfigError::Key`].
    pub fn key(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Key {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Loads a TOML config with `PREFIX__KEY` environment overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loader {
    prefix: &'static str,
}

impl Loader {
    /// A loader for variables named `{prefix}KEY__SUBKEY`; `prefix` ends
    /// with `__` (e.g. `"O2C_AGENT__"`).
    pub const fn new(prefix: &'static str) -> Self {
        Self { prefix }
    }

    /// The variable prefix.
    pub fn prefix(&self) -> &'static str {
        self.prefix
    }

    /// Reads `path` and applies the overrides in `env`; the raw tree, for a
    /// caller that inspects or rewrites keys before [`deserialize`].
    pub fn read(
        &self,
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<toml::Value, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.parse(&text, env).map_err(|e| match e {
            ConfigError::Syntax { message, .. } => ConfigError::Syntax {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses TOML text and applies the overrides in `env` (other
    /// variables are ignored).
    pub fn parse(
        &self,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<toml::Value, ConfigError> {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: PathBuf::new(),
                    message: e.to_string(),
                })?;
        let mut root = toml::Value::Table(table);
        let mut overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(self.prefix))
            .collect();
        overrides.sort();
        for (var, value) in overrides {
            apply_env(&mut root, &var, &var[self.prefix.len()..], &value)?;
        }
        Ok(root)
    }

    /// [`Loader::read`], then [`deserialize`].
    pub fn load<T: DeserializeOwned>(
        &self,
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<T, ConfigError> {
        deserialize(self.read(path, env)?)
    }

    /// [`Loader::parse`], then [`deserialize`].
    pub fn from_toml<T: DeserializeOwned>(
        &self,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<T, ConfigError> {
        deserialize(self.parse(text, env)?)
    }
}

/// Deserializes a config tree; an error names the key it is about
/// (`http.listen`, `terminals[0].id`, an unknown `outbox.bogus`).
pub fn deserialize<T: DeserializeOwned>(root: toml::Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(root).map_err(|e| {
        let key = e.path().to_string();
        // toml appends "in `key`" lines; the key is named already.
        let full = e.inner().to_string();
        let message = full.lines().next().unwrap_or_default().trim().to_owned();
        ConfigError::key(unknown_field_key(&key, &message), message)
    })
}

/// serde reports an unknown or missing field at its parent's path; name
/// the field itself.
fn unknown_field_key(path: &str, message: &str) -> String {
    let field = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("missing field `"))
        .and_then(|rest| rest.split_once('`'))
        .map(|(f, _)| f);
    match (field, path) {
        (Some(f), "." | "") => f.to_owned(),
        (Some(f), p) if !p.ends_with(f) => format!("{p}.{f}"),
        (_, "." | "") => "(root)".to_owned(),
        _ => path.to_owned(),
    }
}

/// Applies one variable; `rest` is its name without the prefix.
fn apply_env(root: &mut toml::Value, var: &str, rest: &str, raw: &str) -> Result<(), ConfigError> {
    let segments: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    let key = segments.join(".");
    let err = |message: String| ConfigError::Env {
        var: var.to_owned(),
        key: key.clone(),
        message,
    };
    if segments.iter().any(String::is_empty) {
        return Err(err("empty key segment".to_owned()));
    }
    let Some((last, parents)) = segments.split_last() else {
        return Err(err("empty key".to_owned()));
    };
    let mut cur = root;
    for seg in parents {
        cur = descend(cur, seg).ok_or_else(|| err(format!("`{seg}` is not a table or index")))?;
    }
    let parsed = parse_env_value(raw);
    match cur {
        toml::Value::Table(t) => {
            let value = match t.get(last.as_str()) {
                Some(toml::Value::String(_)) => toml::Value::String(raw.to_owned()),
                _ => parsed,
            };
            t.insert(last.clone(), value);
        }
        toml::Value::Array(a) => {
            let slot = last
                .parse::<usize>()
                .ok()
                .and_then(|i| a.get_mut(i))
                .ok_or_else(|| err(format!("no array element `{last}`")))?;
            *slot = parsed;
        }
        _ => return Err(err("parent is not a table".to_owned())),
    }
    Ok(())
}

fn descend<'a>(cur: &'a mut toml::Value, seg: &str) -> Option<&'a mut toml::Value> {
    match cur {
        toml::Value::Table(t) => Some(
            t.entry(seg.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new())),
        ),
        toml::Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
        _ => None,
    }
}

fn parse_env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests;
