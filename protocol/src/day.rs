//! The day manifest: what a store agent says it sent for one business day,
//! so the cloud can prove it has every event of that day exactly once.
//!
//! When a store's business day closes, the agent writes a `DayClosed`
//! event into its outbox. It travels like any store event (same frame, same
//! seq line, same ack) but is not an order event: it has no order, goes to
//! its own Kafka topic (`stores.days`, keyed by store) and never to the
//! order history. [`DayClosed`] is its envelope; the wire shape is the
//! order events' envelope with `event_type: "DayClosed"` and a
//! [`DayManifest`] payload.
//!
//! A manifest covers the agent's seqs after its previous manifest and
//! before its own ([`DayManifest::range`]); consecutive manifests tile the
//! agent's seq line with no gap. Its figures are over the events in that
//! range, tallied by [`DayTally`] from the events themselves, so the cloud
//! recomputes them from Kafka with the same code. [`EventDigest`] hashes the
//! range's event ids in seq order.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{Date, OffsetDateTime};

use crate::envelope::{DecodeError, EncodeError, SCHEMA_VERSION, SUPPORTED_SCHEMA_VERSIONS};
use crate::ids::{AgentId, EventId, Seq, StoreId};
use crate::money::{Currency, Money, MoneyError};
use crate::order::{CardAuthorization, Order, Payment};
use crate::validate::{ValidationError, ValidationErrors};

/// The manifest's `event_type`.
pub const DAY_CLOSED: &str = "DayClosed";

/// The Kafka topic (without prefix) of day manifests.
pub const DAYS_TOPIC: &str = "stores.days";

/// How money was taken, as a Z-report and a manifest total it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Tender {
    /// A card authorised online.
    CardOnline,
    /// A card accepted offline under the floor limit.
    CardOffline,
    /// Cash.
    Cash,
    /// A gift card.
    GiftCard,
}

impl Tender {
    /// The tender of one payment.
    pub fn of(p: &Payment) -> Tender {
        match p {
            Payment::Card {
                authorization: CardAuthorization::Online,
                ..
            } => Tender::CardOnline,
            Payment::Card {
                authorization: CardAuthorization::Offline,
                ..
            } => Tender::CardOffline,
            Payment::Cash { .. } => Tender::Cash,
            Payment::GiftCard { .. } => Tender::GiftCard,
        }
    }
}

/// A business date, `YYYY-MM-DD` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BusinessDate(pub Date);

const DATE_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

impl BusinessDate {
    /// Parses `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Result<BusinessDate, DayError> {
        Date::parse(s, DATE_FORMAT)
            .map(BusinessDate)
            .map_err(|_| DayError::Date(s.chars().take(32).collect()))
    }
}

impl std::fmt::Display for BusinessDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0.format(DATE_FORMAT).map_err(|_| std::fmt::Error)?;
        f.write_str(&s)
    }
}

impl Serialize for BusinessDate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BusinessDate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        BusinessDate::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for BusinessDate {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "BusinessDate".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "format": "date" })
    }
}

/// Why a manifest or a date was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DayError {
    /// Not `YYYY-MM-DD`.
    #[error("not a date as YYYY-MM-DD: {0:?}")]
    Date(String),
    /// A total overflowed or mixed currencies.
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// A closed seq range, `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SeqRange {
    /// The first seq of the day.
    pub first: Seq,
    /// The last seq of the day.
    pub last: Seq,
}

/// One currency's sales of the day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CurrencyTotals {
    /// Totals of the orders captured in the range.
    pub gross: Money,
    /// Totals of the orders voided in the range (whenever captured).
    pub voided: Money,
}

/// Money taken by one tender in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TenderTotal {
    /// How.
    pub tender: Tender,
    /// How much, from the orders captured in the range.
    pub amount: Money,
}

/// `DayClosed`'s payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DayManifest {
    /// The business date closed.
    pub business_date: BusinessDate,
    /// The store's IANA time zone.
    pub timezone: String,
    /// The closing time, `HH:MM` wall clock.
    pub closes_at: String,
    /// When the business date began.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub opened_at: OffsetDateTime,
    /// When it closed.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub closed_at: OffsetDateTime,
    /// The seqs of the day's events; absent when the day had none. It
    /// starts right after the previous manifest's seq, and ends right
    /// before this manifest's own unless a later day's events follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<SeqRange>,
    /// Figures over the events in `range`.
    #[serde(flatten)]
    pub tally: DayTally,
    /// [`EventDigest`] of the range's event ids, lowercase hex.
    pub event_ids_sha256: String,
}

/// The figures of a range of events: what a manifest states and what the
/// cloud recomputes. Add events in any order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DayTally {
    /// Events in the range.
    pub events: u64,
    /// `OrderCreated` events.
    pub orders: u64,
    /// `OrderCancelled` events.
    pub voids: u64,
    /// Per currency, sorted by code.
    pub totals: Vec<CurrencyTotals>,
    /// Per tender and currency, sorted.
    pub tenders: Vec<TenderTotal>,
}

impl DayTally {
    /// Counts an event that is neither a sale nor a void.
    pub fn add_other(&mut self) {
        self.events += 1;
    }

    /// Counts an `OrderCreated`.
    pub fn add_created(&mut self, order: &Order) -> Result<(), DayError> {
        let total = order.total()?;
        self.add_sale(
            total,
            order.payments.iter().map(|p| (Tender::of(p), p.amount())),
        )
    }

    /// Counts a sale of `total` paid by `payments` (what
    /// [`DayTally::add_created`] takes from an order).
    pub fn add_sale(
        &mut self,
        total: Money,
        payments: impl IntoIterator<Item = (Tender, Money)>,
    ) -> Result<(), DayError> {
        self.events += 1;
        self.orders += 1;
        let t = self.currency(total.currency);
        t.gross = t.gross.checked_add(total)?;
        for (tender, amount) in payments {
            let at = match self
                .tenders
                .binary_search_by_key(&(tender, amount.currency.code()), |t| {
                    (t.tender, t.amount.currency.code())
                }) {
                Ok(i) => i,
                Err(i) => {
                    self.tenders.insert(
                        i,
                        TenderTotal {
                            tender,
                            amount: Money::zero(amount.currency),
                        },
                    );
                    i
                }
            };
            let slot = &mut self.tenders[at].amount;
            *slot = slot.checked_add(amount)?;
        }
        Ok(())
    }

    /// Counts an `OrderCancelled` of an order whose total was `total`
    /// (`None` when that order is unknown: the void is counted, its money
    /// is not).
    pub fn add_voided(&mut self, total: Option<Money>) -> Result<(), DayError> {
        self.events += 1;
        self.voids += 1;
        if let Some(total) = total {
            let t = self.currency(total.currency);
            t.voided = t.voided.checked_add(total)?;
        }
        Ok(())
    }

    fn currency(&mut self, c: Currency) -> &mut CurrencyTotals {
        let i = match self
            .totals
            .binary_search_by_key(&c.code(), |t| t.gross.currency.code())
        {
            Ok(i) => i,
            Err(i) => {
                self.totals.insert(
                    i,
                    CurrencyTotals {
                        gross: Money::zero(c),
                        voided: Money::zero(c),
                    },
                );
                i
            }
        };
        &mut self.totals[i]
    }
}

/// SHA-256 over event ids in seq order, each as its hyphenated lowercase
/// text followed by `\n`.
#[derive(Debug, Clone, Default)]
pub struct EventDigest(Sha256);

impl EventDigest {
    /// Adds the next event id.
    pub fn add(&mut self, id: &EventId) {
        self.0.update(id.to_string().as_bytes());
        self.0.update(b"\n");
    }

    /// The digest, lowercase hex.
    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// A `DayClosed` event: the envelope fields of a store event around a
/// [`DayManifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DayClosed {
    /// Minted once, when the day closed.
    pub event_id: EventId,
    /// Always [`DAY_CLOSED`].
    pub event_type: String,
    /// The envelope's schema version.
    pub schema_version: u16,
    /// The store.
    pub store_id: StoreId,
    /// The agent whose seqs the manifest covers.
    pub agent_id: AgentId,
    /// This event's own seq.
    pub seq: Seq,
    /// When the day was closed (the agent's clock).
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub occurred_at: OffsetDateTime,
    /// The manifest.
    pub payload: DayManifest,
}

impl DayClosed {
    /// A manifest event.
    pub fn new(
        event_id: EventId,
        store_id: StoreId,
        agent_id: AgentId,
        seq: Seq,
        occurred_at: OffsetDateTime,
        payload: DayManifest,
    ) -> DayClosed {
        DayClosed {
            event_id,
            event_type: DAY_CLOSED.to_owned(),
            schema_version: SCHEMA_VERSION,
            store_id,
            agent_id,
            seq,
            occurred_at,
            payload,
        }
    }

    /// Whether an event's JSON is a `DayClosed` (by its `event_type`).
    pub fn is_day_closed(json: &str) -> bool {
        #[derive(Deserialize)]
        struct Head<'a> {
            #[serde(borrow)]
            event_type: std::borrow::Cow<'a, str>,
        }
        serde_json::from_str::<Head<'_>>(json).is_ok_and(|h| h.event_type == DAY_CLOSED)
    }

    /// Encodes to JSON bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        Ok(serde_json::to_vec(self)?)
    }

    /// Decodes JSON bytes.
    pub fn decode(bytes: &[u8]) -> Result<DayClosed, DecodeError> {
        let d: DayClosed =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if !SUPPORTED_SCHEMA_VERSIONS.contains(&d.schema_version) {
            return Err(DecodeError::UnsupportedSchemaVersion(u64::from(
                d.schema_version,
            )));
        }
        if d.event_type != DAY_CLOSED {
            return Err(DecodeError::UnknownEventType(d.event_type));
        }
        Ok(d)
    }

    /// What a manifest must satisfy beyond decoding: its range ends before
    /// its own seq, and its totals are not negative.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = Vec::new();
        let m = &self.payload;
        errs.extend(crate::validate::check_text(
            "payload.timezone",
            &m.timezone,
            1,
            64,
        ));
        let hhmm = m.closes_at.len() == 5
            && m.closes_at.as_bytes()[2] == b':'
            && m.closes_at
                .bytes()
                .enumerate()
                .all(|(i, b)| i == 2 || b.is_ascii_digit());
        let mut push = |field: &str, code: &str, message: String| {
            errs.push(ValidationError {
                field: field.to_owned(),
                code: code.to_owned(),
                message,
            })
        };
        if !hhmm {
            push("payload.closes_at", "invalid", "must be HH:MM".to_owned());
        }
        if let Some(r) = m.range
            && (r.first > r.last || r.last >= self.seq)
        {
            push(
                "payload.range",
                "invalid",
                format!(
                    "{}..={} must be ordered and end before the manifest's seq {}",
                    r.first, r.last, self.seq
                ),
            );
        }
        let negative = m
            .tally
            .totals
            .iter()
            .flat_map(|t| [t.gross, t.voided])
            .chain(m.tally.tenders.iter().map(|t| t.amount))
            .any(|x| x.minor < 0);
        if negative {
            push(
                "payload.totals",
                "invalid",
                "totals must not be negative".to_owned(),
            );
        }
        if m.event_ids_sha256.len() != 64
            || !m.event_ids_sha256.bytes().all(|b| b.is_ascii_hexdigit())
        {
            push(
                "payload.event_ids_sha256",
                "invalid",
                "must be 64 hex digits".to_owned(),
            );
        }
        if m.closed_at <= m.opened_at {
            push(
                "payload.closed_at",
                "invalid",
                "must be after opened_at".to_owned(),
            );
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(errs))
        }
    }
}

#[cfg(test)]
#[path = "day_tests.rs"]
mod tests;
