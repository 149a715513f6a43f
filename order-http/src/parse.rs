//! Reading a request: the card-data scan of the raw body, the strict JSON
//! parse that names the field of any shape error, and the
//! `Idempotency-Key` header. Pure: no I/O.
//!
//! Order of checks at both APIs: card data anywhere in the raw body first
//! (so no card number reaches a parser message or a log), then the JSON
//! shape, then the order's own rules.

use axum::http::HeaderMap;
use o2c_protocol::validate::contains_card_number;
use serde::de::DeserializeOwned;

/// The longest `Idempotency-Key`.
pub const MAX_KEY_LEN: usize = 128;

/// Why a request's body or headers are refused before the order is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body is not JSON.
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// A field the API does not know.
    #[error("unknown field {field}")]
    UnknownField {
        /// Its path.
        field: String,
    },
    /// A field of the wrong type, or missing.
    #[error("{field}: {message}")]
    Shape {
        /// Its path.
        field: String,
        /// What was wrong.
        message: String,
    },
    /// Something that looks like a card number. The value is never kept.
    #[error("card data in {}", field.as_deref().unwrap_or("the request"))]
    CardData {
        /// Where, when it could be located.
        field: Option<String>,
    },
    /// No `Idempotency-Key`.
    #[error("the Idempotency-Key header is required")]
    MissingKey,
    /// An `Idempotency-Key` that is not 1-128 visible ASCII characters, or
    /// looks like a card number.
    #[error("the Idempotency-Key must be 1-128 visible ASCII characters")]
    BadKey,
}

/// Refuses a body holding anything shaped like a card number, naming the
/// JSON path where it can be found (the value itself is never returned).
///
/// The raw text is scanned first; a body with JSON `\u` escapes, which can
/// hide digits from that scan, is also decoded and its strings scanned.
pub fn scan_card_data(body: &[u8]) -> Result<(), BodyError> {
    let text = String::from_utf8_lossy(body);
    let in_raw = contains_card_number(&text);
    if !in_raw && !body.windows(2).any(|w| w == b"\\u") {
        return Ok(());
    }
    let field = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| locate(&v, String::new()));
    if in_raw || field.is_some() {
        Err(BodyError::CardData { field })
    } else {
        Ok(())
    }
}

fn locate(v: &serde_json::Value, path: String) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::String(s) if contains_card_number(s) => Some(path),
        Value::Number(n) if contains_card_number(&n.to_string()) => Some(path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, x)| locate(x, format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, x)| {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if contains_card_number(k) {
                Some(p)
            } else {
                locate(x, p)
            }
        }),
        _ => None,
    }
}

/// Parses the body strictly into `T`, naming the field of any shape error.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, BodyError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        match inner.classify() {
            serde_json::error::Category::Data => {
                if let Some(rest) = message.strip_prefix("unknown field `") {
                    let name = rest.split('`').next().unwrap_or_default();
                    let field = if path == "." || path.is_empty() {
                        name.to_owned()
                    } else if path.ends_with(name) {
                        path
                    } else {
                        format!("{path}.{name}")
                    };
                    BodyError::UnknownField { field }
                } else {
                    BodyError::Shape {
                        field: if path == "." { String::new() } else { path },
                        message,
                    }
                }
            }
            _ => BodyError::Malformed(message),
        }
    })
}

/// The request's `Idempotency-Key`: 1-128 visible ASCII characters, not
/// shaped like a card number.
pub fn idempotency_key(headers: &HeaderMap) -> Result<String, BodyError> {
    let v = headers
        .get("idempotency-key")
        .ok_or(BodyError::MissingKey)?;
    let s = v.to_str().unwrap_or_default();
    let ok = !s.is_empty()
        && s.len() <= MAX_KEY_LEN
        && s.bytes().all(|b| b.is_ascii_graphic())
        && !contains_card_number(s);
    if ok {
        Ok(s.to_owned())
    } else {
        Err(BodyError::BadKey)
    }
}

#[cfg(test)]
mod tests;
