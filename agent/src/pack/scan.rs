//! What a barcode scanned at the pack station is: an item (GTIN with lot, serial, expiry
//! where the barcode carries them), a carton's SSCC, or plain text (an order or tote id,
//! a lot typed on a label). Pure; GS1 rules from FIELD-NOTES.md, "GS1 barcodes".

use crate::label::sscc::gs1_check_digit;

/// A classified scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scanned {
    /// An item: GTIN-14 and what its barcode carried.
    Item {
        /// GTIN-14 (shorter GTINs zero-padded).
        gtin: String,
        /// AI 10.
        lot: Option<String>,
        /// AI 21.
        serial: Option<String>,
        /// AI 17, as YYMMDD.
        expiry: Option<String>,
    },
    /// A carton's SSCC (AI 00, or 18 bare digits), check digit verified.
    Sscc(String),
    /// Digits that look like a GTIN or SSCC but whose check digit is wrong.
    BadCheckDigit(String),
    /// Anything else, as text.
    Text(String),
}

const GS: char = '\u{1d}';

fn check_ok(digits: &str) -> bool {
    let b = digits.as_bytes();
    b.len() >= 2
        && b.iter().all(u8::is_ascii_digit)
        && gs1_check_digit(&b[..b.len() - 1]) == b[b.len() - 1] - b'0'
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Classifies raw scanner text (an AIM symbology prefix such as `]C1` is allowed).
pub fn classify(raw: &str) -> Scanned {
    let trimmed = raw.trim_matches(|c: char| c == '\r' || c == '\n' || c == ' ');
    let (gs1, body) = match trimmed.strip_prefix(']') {
        Some(rest) if rest.len() >= 2 && rest.is_char_boundary(2) => {
            let id = &rest[..2];
            (matches!(id, "C1" | "e0" | "d2" | "Q3" | "J1"), &rest[2..])
        }
        _ => (false, trimmed),
    };
    if gs1 || body.starts_with(GS) {
        return parse_gs1(body.trim_start_matches(GS));
    }
    if all_digits(body) {
        return match body.len() {
            8 | 12 | 13 | 14 if check_ok(body) => item(format!("{body:0>14}")),
            18 if check_ok(body) => Scanned::Sscc(body.to_owned()),
            8 | 12 | 13 | 14 | 18 => Scanned::BadCheckDigit(body.to_owned()),
            _ => Scanned::Text(body.to_owned()),
        };
    }
    // Without a symbology prefix, a scanner may still send GS1 element strings with a
    // leading AI 01 or 00 and GS separators.
    if body.contains(GS) && (body.starts_with("01") || body.starts_with("00")) {
        return parse_gs1(body);
    }
    Scanned::Text(body.to_owned())
}

fn item(gtin: String) -> Scanned {
    Scanned::Item {
        gtin,
        lot: None,
        serial: None,
        expiry: None,
    }
}

/// Reads GS1 element strings: fixed-length AIs need no separator, variable ones end at
/// GS or at the end.
fn parse_gs1(mut s: &str) -> Scanned {
    let (mut gtin, mut lot, mut serial, mut expiry, mut sscc) = (None, None, None, None, None);
    while !s.is_empty() {
        let Some(ai) = s.get(..2) else {
            return Scanned::Text(s.to_owned());
        };
        let rest = &s[2..];
        let fixed = match ai {
            "00" => Some(18),
            "01" | "02" => Some(14),
            "11" | "12" | "13" | "15" | "16" | "17" => Some(6),
            _ => None,
        };
        let (value, next) = match fixed {
            Some(n) => match (rest.get(..n), rest.get(n..)) {
                (Some(v), Some(next)) => (v, next.trim_start_matches(GS)),
                _ => return Scanned::Text(s.to_owned()),
            },
            None => match rest.find(GS) {
                Some(end) => (&rest[..end], &rest[end + 1..]),
                None => (rest, ""),
            },
        };
        match ai {
            "00" => sscc = Some(value.to_owned()),
            "01" | "02" => gtin = Some(value.to_owned()),
            "10" => lot = Some(value.to_owned()),
            "21" => serial = Some(value.to_owned()),
            "17" => expiry = Some(value.to_owned()),
            "11" | "12" | "13" | "15" | "16" => {}
            // Other AIs (37 count, 30 quantity, ...) do not matter at the pack station,
            // but only variable-length ones we can skip safely; stop at anything unknown.
            _ if fixed.is_none() => {}
            _ => return Scanned::Text(s.to_owned()),
        }
        s = next;
    }
    match (sscc, gtin) {
        (Some(sscc), _) if check_ok(&sscc) => Scanned::Sscc(sscc),
        (Some(sscc), _) => Scanned::BadCheckDigit(sscc),
        (None, Some(gtin)) if check_ok(&gtin) => Scanned::Item {
            gtin,
            lot,
            serial,
            expiry,
        },
        (None, Some(gtin)) => Scanned::BadCheckDigit(gtin),
        (None, None) => Scanned::Text(s.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, expected: Scanned) {
        assert_eq!(classify(raw), expected, "scan {raw:?}");
    }

    #[test]
    fn item_barcodes_of_every_length_become_gtin_14() {
        check("9506000134352", item("09506000134352".into()));
        check("]E09506000134352", item("09506000134352".into()));
        check("09506000134352", item("09506000134352".into()));
    }

    #[test]
    fn gs1_128_items_carry_lot_serial_and_expiry() {
        check(
            concat!(
                "]C1",
                "0109506000134352",
                "17270600",
                "10L2311A\u{1d}",
                "21SN7"
            ),
            Scanned::Item {
                gtin: "09506000134352".into(),
                lot: Some("L2311A".into()),
                serial: Some("SN7".into()),
                expiry: Some("270600".into()),
            },
        );
    }

    #[test]
    fn sscc_scans_are_recognised_with_or_without_ai() {
        check(
            "]C100340123450000000017",
            Scanned::Sscc("340123450000000017".into()),
        );
        check(
            "340123450000000017",
            Scanned::Sscc("340123450000000017".into()),
        );
        check(
            "340123450000000018",
            Scanned::BadCheckDigit("340123450000000018".into()),
        );
    }

    #[test]
    fn anything_else_is_text_and_never_panics() {
        check("SO-10042", Scanned::Text("SO-10042".into()));
        check("T-0042\r\n", Scanned::Text("T-0042".into()));
        check(
            "9506000134353",
            Scanned::BadCheckDigit("9506000134353".into()),
        );
        for junk in [
            "]", "]C", "]C1", "]C10", "]C101", "]C1ü", "]ü1", "]C11", "\u{1d}",
        ] {
            let _ = classify(junk);
        }
    }
}
