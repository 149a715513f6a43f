//! Parsing and checking an import file (pure): JSON Lines, one product per
//! line, or CSV, one price per row. Every bad line is reported with its
//! number and field; a file with any is refused whole.
//!
//! JSON Lines:
//! `{"sku":"SKU-1","name":"Widget","category":"tools","active":true,
//!   "prices":[{"currency":"CAD","minor":1000,"effective_from":"2026-12-01T00:00:00Z"}]}`
//!
//! CSV, with this header: `sku,name,category,active,currency,minor,effective_from`.
//! Rows of one SKU are merged (its name, category and active flag must
//! agree); a product with no price has an empty `currency`.

use std::collections::HashMap;

use o2c_protocol::Currency;
use serde::Deserialize;
use time::OffsetDateTime;

pub use o2c_protocol::catalog::{MAX_CATEGORY, MAX_NAME, MAX_SKU, Price, Product};

/// A bad line of an import file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {field}: {message}")]
pub struct LineError {
    /// 1-based line number (the header is line 1 of a CSV file).
    pub line: usize,
    /// The field, e.g. `prices[0].minor`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn err(line: usize, field: impl Into<String>, message: impl Into<String>) -> LineError {
    LineError {
        line,
        field: field.into(),
        message: message.into(),
    }
}

/// Checks one product; puts its prices in canonical order.
fn check(line: usize, p: &mut Product, errors: &mut Vec<LineError>) {
    errors.extend(
        p.normalize()
            .into_iter()
            .map(|f| err(line, f.field, f.message)),
    );
}

/// Checks every product and that no SKU comes twice.
fn check_all(
    rows: Vec<(usize, Product)>,
    mut errors: Vec<LineError>,
) -> Result<Vec<Product>, Vec<LineError>> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for (line, mut p) in rows {
        check(line, &mut p, &mut errors);
        if let Some(first) = seen.insert(p.sku.clone(), line) {
            errors.push(err(
                line,
                "sku",
                format!("{} again (first on line {first})", p.sku),
            ));
        }
        out.push(p);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        errors.sort_by_key(|e| e.line);
        Err(errors)
    }
}

/// Parses a JSON Lines file (blank lines are skipped).
pub fn parse_jsonl(text: &str) -> Result<Vec<Product>, Vec<LineError>> {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Product>(l) {
            Ok(p) => rows.push((i + 1, p)),
            Err(e) => errors.push(err(
                i + 1,
                "json",
                o2c_protocol::validate::redact_card_numbers(&e.to_string()),
            )),
        }
    }
    check_all(rows, errors)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvRow {
    sku: String,
    name: String,
    #[serde(default)]
    category: String,
    active: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    minor: String,
    #[serde(default)]
    effective_from: String,
}

/// Parses a CSV file with the header `sku,name,category,active,currency,minor,effective_from`.
pub fn parse_csv(text: &str) -> Result<Vec<Product>, Vec<LineError>> {
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let mut errors = Vec::new();
    let mut products: Vec<(usize, Product)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, rec) in reader.deserialize::<CsvRow>().enumerate() {
        let line = i + 2;
        let row = match rec {
            Ok(r) => r,
            Err(e) => {
                errors.push(err(
                    line,
                    "csv",
                    o2c_protocol::validate::redact_card_numbers(&e.to_string()),
                ));
                continue;
            }
        };
        let active = match row.active.trim() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            other => {
                errors.push(err(
                    line,
                    "active",
                    format!("{other:?} is not true or false"),
                ));
                continue;
            }
        };
        let price = if row.currency.trim().is_empty() {
            None
        } else {
            let currency = match Currency::from_code(row.currency.trim()) {
                Ok(c) => c,
                Err(e) => {
                    errors.push(err(line, "currency", e.to_string()));
                    continue;
                }
            };
            let Ok(minor) = row.minor.trim().parse::<i64>() else {
                errors.push(err(line, "minor", "must be an integer in minor units"));
                continue;
            };
            let effective_from = if row.effective_from.trim().is_empty() {
                None
            } else {
                match OffsetDateTime::parse(
                    row.effective_from.trim(),
                    &time::format_description::well_known::Rfc3339,
                ) {
                    Ok(t) => Some(t),
                    Err(_) => {
                        errors.push(err(line, "effective_from", "must be an RFC 3339 time"));
                        continue;
                    }
                }
            };
            Some(Price {
                currency,
                minor,
                effective_from,
            })
        };
        let category = Some(row.category.trim().to_owned()).filter(|c| !c.is_empty());
        match index.get(&row.sku) {
            Some(&at) => {
                let p = &mut products[at].1;
                if p.name != row.name || p.category != category || p.active != active {
                    errors.push(err(
                        line,
                        "sku",
                        "its name, category or active flag differ from an earlier row",
                    ));
                }
                p.prices.extend(price);
            }
            None => {
                index.insert(row.sku.clone(), products.len());
                products.push((
                    line,
                    Product {
                        sku: row.sku,
                        name: row.name,
                        category,
                        active,
                        prices: price.into_iter().collect(),
                    },
                ));
            }
        }
    }
    check_all(products, errors)
}

/// Parses `text` as CSV when `name` ends in `.csv`, else as JSON Lines.
pub fn parse(name: &str, text: &str) -> Result<Vec<Product>, Vec<LineError>> {
    if name.to_ascii_lowercase().ends_with(".csv") {
        parse_csv(text)
    } else {
        parse_jsonl(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jsonl_file_parses_and_every_bad_line_is_named() {
        let good = r#"{"sku":"SKU-1","name":"Widget","category":"tools","prices":[{"currency":"CAD","minor":1000}]}
{"sku":"SKU-2","name":"Old","active":false}"#;
        let p = parse("x.jsonl", good).unwrap();
        assert_eq!(p.len(), 2);
        assert!(p[0].active && !p[1].active);
        let bad = r#"{"sku":"SKU-1","name":"Widget","prices":[{"currency":"CAD","minor":-5}]}
{"sku":"SKU-2","name":"X","prices":[{"currency":"XYZ","minor":1}]}
{"sku":"SKU-1","name":"Again","prices":[{"currency":"CAD","minor":1}]}
{"sku":"SKU-3","name":"Y","prise":1}"#;
        let errs = parse("x.jsonl", bad).unwrap_err();
        let at: Vec<(usize, &str)> = errs.iter().map(|e| (e.line, e.field.as_str())).collect();
        assert_eq!(
            at,
            [(1, "prices[0].minor"), (2, "json"), (3, "sku"), (4, "json")],
            "{errs:?}"
        );
    }

    #[test]
    fn csv_rows_of_one_sku_merge_and_disagreements_are_refused() {
        let csv = "sku,name,category,active,currency,minor,effective_from\n\
                   SKU-1,Widget,tools,true,CAD,1000,\n\
                   SKU-1,Widget,tools,true,USD,800,2026-12-01T00:00:00Z\n\
                   SKU-2,Old,,false,,,\n";
        let p = parse("c.CSV", csv).unwrap();
        assert_eq!(p[0].prices.len(), 2);
        assert_eq!(p[1].prices.len(), 0);
        let bad = "sku,name,category,active,currency,minor,effective_from\n\
                   SKU-1,Widget,tools,true,CAD,ten,\n\
                   SKU-2,A,,maybe,CAD,1,\n\
                   SKU-3,B,,true,CAD,1,\n\
                   SKU-3,C,,true,USD,1,\n";
        let errs = parse_csv(bad).unwrap_err();
        let at: Vec<(usize, &str)> = errs.iter().map(|e| (e.line, e.field.as_str())).collect();
        assert_eq!(at, [(2, "minor"), (3, "active"), (5, "sku")], "{errs:?}");
    }

    #[test]
    fn a_card_number_in_a_name_is_refused_and_never_echoed() {
        let bad = r#"{"sku":"SKU-1","name":"4111 1111 1111 1111","prices":[{"currency":"CAD","minor":1}]}"#;
        let errs = parse_jsonl(bad).unwrap_err();
        assert_eq!(errs[0].field, "name");
        assert!(!errs[0].to_string().contains("4111"));
    }
}
