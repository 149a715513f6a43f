//! Integers as JSON writes them. JSON has one number type, and JSON Schema's
//! `integer` is any number with no fraction, so `2998.0` is the integer
//! 2998 to a client generated from the documents. The bodies take it as
//! such, exactly: an amount stays integer minor units (never a float in
//! memory or on the wire), and a fraction (`2998.5`) is refused. So is a
//! number written with a decimal point or an exponent beyond 2^52, where a
//! float's spacing is 1 or more and `4503599627370497.5` would silently
//! become an integer (written as a plain integer, any `i64` is taken).

use std::fmt;

use serde::Deserializer;
use serde::de::{self, Visitor};

/// 2^52: below it a float holds every half-integer, so a fraction cannot
/// round away to an integer.
const EXACT: f64 = 4_503_599_627_370_496.0;

struct Integral;

impl Visitor<'_> for Integral {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        if v.fract() == 0.0 && v.abs() <= EXACT {
            // Checked above: integral and within ±2^52.
            #[allow(clippy::cast_possible_truncation)]
            Ok(v as i64)
        } else {
            Err(E::invalid_value(de::Unexpected::Float(v), &self))
        }
    }
}

/// `#[serde(deserialize_with = "o2c_order_http::integer::integral")]`.
pub fn integral<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(Integral)
}

/// As [`integral`], for an optional field (with `#[serde(default)]`).
pub fn integral_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct Opt;
    impl<'de> Visitor<'de> for Opt {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Option<i64>, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Option<i64>, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<i64>, D::Error> {
            integral(d).map(Some)
        }
    }
    d.deserialize_option(Opt)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct T {
        #[serde(deserialize_with = "super::integral")]
        n: i64,
        #[serde(default, deserialize_with = "super::integral_opt")]
        m: Option<i64>,
    }

    fn parse(s: &str) -> Result<T, String> {
        serde_json::from_str(s).map_err(|e| e.to_string())
    }

    #[test]
    fn integers_are_taken_however_json_writes_them_and_fractions_never() {
        assert_eq!(parse(r#"{"n": 2998}"#), Ok(T { n: 2998, m: None }));
        assert_eq!(
            parse(r#"{"n": 2998.0, "m": 1e3}"#),
            Ok(T {
                n: 2998,
                m: Some(1000)
            })
        );
        assert_eq!(parse(r#"{"n": -5, "m": null}"#), Ok(T { n: -5, m: None }));
        assert!(parse(r#"{"n": 2998.5}"#).is_err());
        assert!(parse(r#"{"n": "2998"}"#).is_err());
        assert!(parse(r#"{"n": 18446744073709551615}"#).is_err());
        // Beyond 2^52 a float cannot tell a fraction: refused, never rounded.
        assert!(parse(r#"{"n": 9007199254740993.0}"#).is_err());
        assert!(parse(r#"{"n": 4503599627370497.5}"#).is_err());
        assert_eq!(
            parse(r#"{"n": 4503599627370495.0}"#),
            Ok(T {
                n: 4_503_599_627_370_495,
                m: None
            })
        );
        assert_eq!(
            parse(r#"{"n": 9007199254740993}"#),
            Ok(T {
                n: 9_007_199_254_740_993,
                m: None
            })
        );
    }
}
