//! What a barcode scanned at the pack station is: an item (GTIN with lot, serial, expiry
//! where the barcode carries them), a carton's SSCC, GS1 data without an item (a lot
//! label), plain text (an order or tote id, a lot typed on a label), or a label that cannot
//! be read. Pure; the reading is [`barcode::parse`]'s, the same as the pick station's, so
//! every AI, check digit and form it knows counts here too.

use crate::barcode::{self, Barcode, BarcodeError, Form, Problem};
use crate::label::sscc::gs1_check_digit;

/// A classified scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scanned {
    /// An item: GTIN-14 and what its barcode carried.
    Item {
        /// GTIN-14 (shorter GTINs zero-padded): AI 01, or AI 02 of a case's contents.
        gtin: String,
        /// AI 10.
        lot: Option<String>,
        /// AI 21.
        serial: Option<String>,
        /// AI 17, as YYMMDD.
        expiry: Option<String>,
    },
    /// GS1 data naming no item or carton: a lot, serial or expiry label on its own.
    Data {
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
    /// A label that cannot be read: what is wrong, naming the AI where there is one.
    Invalid(BarcodeError),
    /// Anything else, as text.
    Text(String),
}

/// Whether 18 bare digits are an SSCC with a valid check digit.
fn sscc_check_ok(digits: &str) -> bool {
    let b = digits.as_bytes();
    b.len() == 18 && b.iter().all(u8::is_ascii_digit) && gs1_check_digit(&b[..17]) == b[17] - b'0'
}

/// Parses raw scanner bytes (an AIM symbology prefix such as `]C1` is allowed; CR, LF
/// and spaces around them are dropped) with [`barcode::parse`], as the pick station does:
/// bytes that are not UTF-8 text, or control bytes GS1 does not allow, make it invalid.
pub fn parse(raw: &[u8]) -> Barcode {
    let edge = |b: &u8| matches!(b, b'\r' | b'\n' | b' ');
    let start = raw.iter().position(|b| !edge(b)).unwrap_or(raw.len());
    let end = raw.iter().rposition(|b| !edge(b)).map_or(start, |i| i + 1);
    barcode::parse(&raw[start..end])
}

/// Classifies raw scanner bytes: [`of`] their [`parse`].
pub fn classify(raw: &[u8]) -> Scanned {
    of(&parse(raw))
}

/// The pack station's reading of a parsed barcode.
pub fn of(bc: &Barcode) -> Scanned {
    if let Some(e) = bc.errors.first() {
        return match &e.problem {
            Problem::CheckDigit { .. } => Scanned::BadCheckDigit(bad_digits(bc, e)),
            _ => Scanned::Invalid(e.clone()),
        };
    }
    let ai = |code: &str| bc.ai(code).map(|e| e.data.clone());
    if let Some(sscc) = ai("00") {
        return Scanned::Sscc(sscc);
    }
    let gtin = bc
        .gtin
        .as_ref()
        .map(ToString::to_string)
        .or_else(|| ai("02"));
    let (lot, serial, expiry) = (ai("10"), ai("21"), ai("17"));
    match (bc.form, gtin) {
        (_, Some(gtin)) => Scanned::Item {
            gtin,
            lot,
            serial,
            expiry,
        },
        (Form::Text, None) => {
            // Plain digits: a carton label's SSCC read without AI 00, or a GTIN whose
            // check digit is wrong (`barcode::parse` reads it as text).
            let t = &bc.text;
            let digits = t.bytes().all(|b| b.is_ascii_digit());
            match t.len() {
                18 if digits && sscc_check_ok(t) => Scanned::Sscc(t.clone()),
                8 | 12 | 13 | 14 | 18 if digits => Scanned::BadCheckDigit(t.clone()),
                _ => Scanned::Text(t.clone()),
            }
        }
        (_, None) => Scanned::Data {
            lot,
            serial,
            expiry,
        },
    }
}

/// The digits whose check digit failed: the AI's data, or the retail symbol's digits.
fn bad_digits(bc: &Barcode, e: &BarcodeError) -> String {
    match (&e.ai, e.pos) {
        (Some(ai), Some(pos)) => {
            let len = match ai.as_str() {
                "00" => 18,
                _ => 14,
            };
            let skip = bc.symbology.as_ref().map_or(0, |s| s.id.len());
            let start = pos.saturating_sub(skip);
            bc.text
                .get(start..start + len)
                .unwrap_or(&bc.text)
                .to_string()
        }
        _ => bc.text.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One scan, read by both stations: the pack station's [`classify`] (of the bytes
    /// its runtime hands over) must give `expected`, and the pick station's reading
    /// ([`barcode::parse`] of the bytes, as `pick::Input::scan` does) must agree on the
    /// GTIN, lot, serial, expiry and validity.
    fn check(raw: impl AsRef<[u8]>, expected: Scanned) {
        let bytes = raw.as_ref();
        let got = classify(bytes);
        let raw = barcode::printable(bytes);
        assert_eq!(got, expected, "pack station, scan {raw}");
        let bc = barcode::parse(bytes.strip_suffix(b"\r\n").unwrap_or(bytes));
        let pick = |bc: &Barcode| {
            (
                bc.gtin.as_ref().map(ToString::to_string),
                bc.lot().map(str::to_string),
                bc.serial().map(str::to_string),
                bc.ai("17").map(|e| e.data.clone()),
            )
        };
        match expected {
            Scanned::Item {
                gtin,
                lot,
                serial,
                expiry,
            } if bc.ai("02").is_none() => {
                assert_eq!(
                    pick(&bc),
                    (Some(gtin), lot, serial, expiry),
                    "pick station, scan {raw}"
                );
            }
            Scanned::Invalid(_) => {
                assert!(!bc.is_valid(), "pick station refuses it too: {raw}");
            }
            // Plain digits are a location or badge to the picker; never an item.
            Scanned::BadCheckDigit(_) => {
                assert!(
                    !bc.is_valid() || (bc.form == Form::Text && bc.gtin.is_none()),
                    "pick station does not take it as an item: {raw}"
                );
            }
            _ => assert!(bc.is_valid(), "pick station reads it too: {raw}"),
        }
    }

    /// An unreadable label: its AI, byte and problem.
    fn invalid(ai: Option<&str>, pos: usize, problem: Problem) -> Scanned {
        Scanned::Invalid(BarcodeError {
            ai: ai.map(str::to_string),
            pos: Some(pos),
            problem,
        })
    }

    fn item(gtin: &str) -> Scanned {
        Scanned::Item {
            gtin: gtin.into(),
            lot: None,
            serial: None,
            expiry: None,
        }
    }

    #[test]
    fn item_barcodes_of_every_length_become_gtin_14() {
        check("9506000134352", item("09506000134352"));
        check("]E09506000134352", item("09506000134352"));
        check("09506000134352", item("09506000134352"));
        check("96385074", item("00000096385074"));
        check("]E004252614", item("00042100005264"));
        check(
            "https://id.gs1.org/01/09506000134352",
            item("09506000134352"),
        );
        check("(01)09506000134352", item("09506000134352"));
    }

    #[test]
    fn gs1_items_carry_lot_serial_and_expiry_whatever_other_ais_they_hold() {
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
        // Issue 16: the weight AI 3103 is fixed-length, so the lot after it is kept.
        check(
            "]C10109506000134352310300125010L1",
            Scanned::Item {
                gtin: "09506000134352".into(),
                lot: Some("L1".into()),
                serial: None,
                expiry: None,
            },
        );
        check(
            "]C1010950600013435211270101\u{1d}10L2\u{1d}3012",
            Scanned::Item {
                gtin: "09506000134352".into(),
                lot: Some("L2".into()),
                serial: None,
                expiry: None,
            },
        );
        // A case: its contents' GTIN (AI 02) with the count (AI 37) and the SSCC-less pallet.
        check(
            "]C10209506000134352\u{1d}3712\u{1d}10L3",
            Scanned::Item {
                gtin: "09506000134352".into(),
                lot: Some("L3".into()),
                serial: None,
                expiry: None,
            },
        );
    }

    #[test]
    fn a_lot_or_expiry_label_without_an_item_is_data_not_text() {
        check(
            "]C110L2311A",
            Scanned::Data {
                lot: Some("L2311A".into()),
                serial: None,
                expiry: None,
            },
        );
        check(
            "]C117270630",
            Scanned::Data {
                lot: None,
                serial: None,
                expiry: Some("270630".into()),
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
        check(
            "]C100340123450000000018",
            Scanned::BadCheckDigit("340123450000000018".into()),
        );
    }

    #[test]
    fn bad_labels_are_refused_naming_the_ai_and_bad_check_digits_are_shown() {
        check(
            "9506000134353",
            Scanned::BadCheckDigit("9506000134353".into()),
        );
        check(
            "]C10109506000134353",
            Scanned::BadCheckDigit("09506000134353".into()),
        );
        check(
            "]C1010950600013435217271332",
            invalid(Some("17"), 21, Problem::Month { month: 13 }),
        );
        check(
            "T-0042\u{0}",
            invalid(None, 6, Problem::Control { ch: '\0' }),
        );
        check(b"T-\xff42", invalid(None, 2, Problem::NotUtf8));
    }

    #[test]
    fn anything_else_is_text_and_never_panics() {
        check("SO-10042", Scanned::Text("SO-10042".into()));
        check("T-0042\r\n", Scanned::Text("T-0042".into()));
        check("10D9T", Scanned::Text("10D9T".into()));
        for junk in [
            "]", "]C", "]C1", "]C10", "]C101", "]C1ü", "]ü1", "]C11", "\u{1d}",
        ] {
            let _ = classify(junk.as_bytes());
        }
    }
}
