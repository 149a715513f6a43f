//! The card-number detector that keeps PANs out of the system: in ids, in
//! free text, in error messages and dead letters. Depends on nothing else in
//! the crate, so [`crate::ids`] and [`crate::validate`] can both use it.

/// Whether `s` holds something shaped like a primary account number: a
/// Luhn-valid run of 13–19 digits. Digits may be split into groups by single
/// spaces or dashes, as people type them, and a card number may be followed
/// or preceded by more groups (`4111 1111 1111 1111 123` with its CVV, or
/// an expiry date): every run of whole groups that holds 13–19 digits is
/// tested. A single group longer than 19 digits is a numeric id, not a card
/// number, and no window inside it is tested.
///
/// A 13- or 14-digit run that is a valid GS1 GTIN (EAN-13, GTIN-14: the
/// barcodes stores use as SKUs) is not flagged: about one GTIN in ten also
/// passes Luhn, and refusing those products' sales is worse than missing the
/// rare 13/14-digit card number that is also a valid GTIN.
pub fn contains_card_number(s: &str) -> bool {
    !card_number_spans(s).is_empty()
}

/// `s` with every card-number-shaped part (see [`contains_card_number`])
/// replaced by `[redacted]`; borrowed when there is none. For texts that
/// leave a component and may quote input: parser errors, dead letters.
pub fn redact_card_numbers(s: &str) -> std::borrow::Cow<'_, str> {
    let spans = card_number_spans(s);
    if spans.is_empty() {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for span in spans {
        out.push_str(&s[at..span.start]);
        out.push_str("[redacted]");
        at = span.end;
    }
    out.push_str(&s[at..]);
    std::borrow::Cow::Owned(out)
}

/// The byte ranges of `s` that look like card numbers (whole runs of
/// digit groups), in order.
fn card_number_spans(s: &str) -> Vec<std::ops::Range<usize>> {
    let bytes = s.as_bytes();
    let mut spans = Vec::new();
    // The digit groups of the current run: (start, end) byte offsets.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        groups.push((start, i));
        // One space or dash between digits continues the run.
        let joined = matches!(bytes.get(i), Some(b' ' | b'-'))
            && bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
        if joined {
            i += 1;
        } else {
            scan_run(bytes, &groups, &mut spans);
            groups.clear();
        }
    }
    spans
}

/// Tests every window of whole `groups` holding 13–19 digits; on a hit the
/// whole run is one span (the groups around a card number may be its CVV or
/// expiry date).
fn scan_run(bytes: &[u8], groups: &[(usize, usize)], spans: &mut Vec<std::ops::Range<usize>>) {
    let (Some(first), Some(last)) = (groups.first(), groups.last()) else {
        return;
    };
    let mut digits: Vec<u8> = Vec::with_capacity(19);
    for from in 0..groups.len() {
        digits.clear();
        for &(start, end) in &groups[from..] {
            if digits.len() + (end - start) > 19 {
                break;
            }
            digits.extend(bytes[start..end].iter().map(|d| d - b'0'));
            if digits.len() >= 13
                && luhn_valid(&digits)
                && !(digits.len() <= 14 && gtin_valid(&digits))
            {
                spans.push(first.0..last.1);
                return;
            }
        }
    }
}

/// The GS1 check digit (GTIN-8/12/13/14): weights 3,1,3,… from the right,
/// excluding the check digit itself.
pub fn gtin_valid(digits: &[u8]) -> bool {
    let Some((&check, body)) = digits.split_last() else {
        return false;
    };
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| u32::from(d) * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    (10 - sum % 10) % 10 == u32::from(check)
}

/// The Luhn checksum over decimal digits.
pub fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    !digits.is_empty() && sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_redacts_grouped_card_numbers() {
        assert!(contains_card_number("pan 4111-1111-1111-1111 end"));
        assert!(!contains_card_number("sku 4006381333931")); // a GTIN-13
        assert_eq!(
            redact_card_numbers("x 4111 1111 1111 1111 123 y"),
            "x [redacted] y"
        );
        assert!(luhn_valid(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 3]));
        assert!(gtin_valid(&[4, 0, 0, 6, 3, 8, 1, 3, 3, 3, 9, 3, 1]));
    }
}
