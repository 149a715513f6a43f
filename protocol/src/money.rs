//! Money: integer minor units plus an ISO 4217 currency. Never floats.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a money value or operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not an active ISO 4217 alphabetic code.
    #[error("unknown ISO 4217 currency code {0:?}")]
    UnknownCurrency(String),
    /// Two amounts in different currencies were combined.
    #[error("currency mismatch: {left} vs {right}")]
    CurrencyMismatch {
        /// Left operand's currency.
        left: Currency,
        /// Right operand's currency.
        right: Currency,
    },
    /// The result does not fit in an `i64` of minor units.
    #[error("amount overflow")]
    Overflow,
}

/// An ISO 4217 currency, e.g. `CAD`. Serialized as its three-letter code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    /// Looks up an alphabetic code (upper case, as ISO 4217 writes it).
    pub fn from_code(code: &str) -> Result<Self, MoneyError> {
        iso_currency::Currency::from_code(code)
            .map(Self)
            .ok_or_else(|| MoneyError::UnknownCurrency(code.chars().take(8).collect()))
    }

    /// The three-letter code.
    pub fn code(&self) -> &'static str {
        self.0.code()
    }

    /// Number of minor-unit digits (2 for CAD, 0 for JPY), if defined.
    pub fn exponent(&self) -> Option<u16> {
        self.0.exponent()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, MoneyError> {
        Self::from_code(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_code(&s).map_err(serde::de::Error::custom)
    }
}

/// An amount: integer minor units (cents) and a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
// Refuses fields it does not know: one an older reader ignored (a scale,
// say) could change what the amount means.
#[serde(deny_unknown_fields)]
pub struct Money {
    /// Amount in the currency's minor unit.
    pub minor: i64,
    /// ISO 4217 currency.
    pub currency: Currency,
}

impl Money {
    /// Builds an amount.
    pub fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    /// Zero in `currency`.
    pub fn zero(currency: Currency) -> Self {
        Self::new(0, currency)
    }

    fn same_currency(&self, other: &Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            })
        }
    }

    /// `self + other`; errors on currency mismatch or overflow.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(&other)?;
        let minor = self
            .minor
            .checked_add(other.minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(minor, self.currency))
    }

    /// `self - other`; errors on currency mismatch or overflow.
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(&other)?;
        let minor = self
            .minor
            .checked_sub(other.minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(minor, self.currency))
    }

    /// `self * factor`; errors on overflow.
    pub fn checked_mul(self, factor: i64) -> Result<Money, MoneyError> {
        let minor = self.minor.checked_mul(factor).ok_or(MoneyError::Overflow)?;
        Ok(Money::new(minor, self.currency))
    }

    /// Sums amounts that must all be in `currency`.
    pub fn checked_sum(
        currency: Currency,
        items: impl IntoIterator<Item = Money>,
    ) -> Result<Money, MoneyError> {
        items
            .into_iter()
            .try_fold(Money::zero(currency), Money::checked_add)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} (minor units)", self.minor, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cad() -> Currency {
        Currency::from_code("CAD").unwrap()
    }

    #[test]
    fn currency_codes() {
        assert_eq!(cad().code(), "CAD");
        assert_eq!(cad().exponent(), Some(2));
        assert_eq!(Currency::from_code("JPY").unwrap().exponent(), Some(0));
        assert!(Currency::from_code("XYZ").is_err());
        assert!(Currency::from_code("cad").is_err());
        assert!(serde_json::from_str::<Currency>("\"ZZZ\"").is_err());
    }

    #[test]
    fn checked_arithmetic() {
        let a = Money::new(i64::MAX, cad());
        assert_eq!(
            a.checked_add(Money::new(1, cad())),
            Err(MoneyError::Overflow)
        );
        assert_eq!(a.checked_mul(2), Err(MoneyError::Overflow));
        let eur = Currency::from_code("EUR").unwrap();
        assert!(matches!(
            Money::new(1, cad()).checked_add(Money::new(1, eur)),
            Err(MoneyError::CurrencyMismatch { .. })
        ));
        let sum = Money::checked_sum(cad(), [Money::new(1499, cad()), Money::new(1, cad())]);
        assert_eq!(sum, Ok(Money::new(1500, cad())));
        assert_eq!(
            Money::new(5, cad()).checked_sub(Money::new(7, cad())),
            Ok(Money::new(-2, cad()))
        );
    }

    #[test]
    fn money_json_is_integer_minor_units() {
        let m = Money::new(2998, cad());
        let j = serde_json::to_string(&m).unwrap();
        assert_eq!(j, r#"{"minor":2998,"currency":"CAD"}"#);
        assert!(serde_json::from_str::<Money>(r#"{"minor":29.98,"currency":"CAD"}"#).is_err());
    }
}
