//! Typed identifiers. Parse at the edge, then trust the type.
//!
//! Store and agent ids appear inside MQTT topics, so they are restricted to
//! 1–64 characters of `[A-Za-z0-9_-]`: never a `/`, `+`, `#` or `$`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Empty or longer than the limit.
    #[error("{kind} must be 1-{max} characters long, got {len}")]
    Length {
        /// Which id.
        kind: &'static str,
        /// Maximum length.
        max: usize,
        /// Actual length.
        len: usize,
    },
    /// A character outside `[A-Za-z0-9_-]`.
    #[error("{kind} may contain only A-Z, a-z, 0-9, '_' and '-'")]
    Charset {
        /// Which id.
        kind: &'static str,
    },
    /// Shaped like a card number (the value is never repeated).
    #[error("{kind} looks like a card number")]
    CardData {
        /// Which id.
        kind: &'static str,
    },
    /// Not a UUID of the expected version.
    #[error("{kind} must be a UUIDv7")]
    Uuid {
        /// Which id.
        kind: &'static str,
    },
    /// Sequence numbers start at 1.
    #[error("seq must be >= 1")]
    ZeroSeq,
}

fn check_token(kind: &'static str, max: usize, s: &str) -> Result<(), IdError> {
    if s.is_empty() || s.len() > max {
        return Err(IdError::Length {
            kind,
            max,
            len: s.len(),
        });
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(IdError::Charset { kind });
    }
    if crate::card::contains_card_number(s) {
        return Err(IdError::CardData { kind });
    }
    Ok(())
}

macro_rules! token_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Maximum length in characters.
            pub const MAX_LEN: usize = $max;

            /// Validates and wraps `s`.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check_token($kind, $max, &s)?;
                Ok(Self(s))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

token_id!(
    /// A store, e.g. `S001`.
    StoreId, "store_id", 64
);
token_id!(
    /// One agent process (one per store box), e.g. `S001-A1`.
    AgentId, "agent_id", 64
);
token_id!(
    /// A POS terminal inside a store, e.g. `T1`.
    TerminalId, "terminal_id", 64
);
token_id!(
    /// A customer of the web shop or the app: the `sub` of their token,
    /// e.g. `c-1842`.
    CustomerId, "customer_id", 64
);

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps a UUID, which must be version 7.
            pub fn from_uuid(u: Uuid) -> Result<Self, IdError> {
                if u.get_version_num() == 7 {
                    Ok(Self(u))
                } else {
                    Err(IdError::Uuid { kind: $kind })
                }
            }

            /// Builds a UUIDv7 from a Unix time in milliseconds and 10 random
            /// bytes. The caller supplies time and randomness (sans-IO).
            pub fn from_parts(unix_ms: u64, random: [u8; 10]) -> Self {
                Self(uuid::Builder::from_unix_timestamp_millis(unix_ms, &random).into_uuid())
            }

            /// The inner UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.as_hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                let u = Uuid::try_parse(s).map_err(|_| IdError::Uuid { kind: $kind })?;
                Self::from_uuid(u)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&self.0.as_hyphenated())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

uuid_id!(
    /// An order, minted by the agent at capture (UUIDv7).
    OrderId, "order_id"
);
uuid_id!(
    /// A return, minted by the agent that takes the goods back (UUIDv7;
    /// contract 1.7).
    ReturnId, "return_id"
);
uuid_id!(
    /// An event, minted once when the event is created (UUIDv7). Consumers
    /// deduplicate on it.
    EventId, "event_id"
);

/// Per-agent sequence number of a store event: gap-free, starting at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Seq(u64);

impl Seq {
    /// The first sequence number.
    pub const FIRST: Seq = Seq(1);

    /// Wraps `n`, which must be at least 1.
    pub fn new(n: u64) -> Result<Self, IdError> {
        if n == 0 {
            Err(IdError::ZeroSeq)
        } else {
            Ok(Self(n))
        }
    }

    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The following sequence number, `None` on overflow.
    pub fn next(self) -> Option<Seq> {
        self.0.checked_add(1).map(Seq)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Seq {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Seq {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Seq::new(u64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_are_topic_safe() {
        assert!(StoreId::new("S001").is_ok());
        assert!(AgentId::new("S001-A1_x").is_ok());
        for bad in ["", "a/b", "a+b", "#", "$SYS", "é", "a b"] {
            assert!(StoreId::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(StoreId::new("x".repeat(64)).is_ok());
        assert_eq!(
            StoreId::new("x".repeat(65)),
            Err(IdError::Length {
                kind: "store_id",
                max: 64,
                len: 65
            })
        );
    }

    #[test]
    fn uuid_ids_require_v7() {
        let v4 = "550e8400-e29b-41d4-a716-446655440000";
        assert!(v4.parse::<EventId>().is_err());
        let id = EventId::from_parts(1_700_000_000_000, [7; 10]);
        assert_eq!(id.to_string().parse::<EventId>(), Ok(id));
        assert!("not-a-uuid".parse::<OrderId>().is_err());
    }

    #[test]
    fn seq_starts_at_one() {
        assert_eq!(Seq::new(0), Err(IdError::ZeroSeq));
        assert_eq!(Seq::FIRST.next(), Seq::new(2).ok());
        assert_eq!(Seq::new(u64::MAX).ok().and_then(Seq::next), None);
        assert!(serde_json::from_str::<Seq>("0").is_err());
    }
}
