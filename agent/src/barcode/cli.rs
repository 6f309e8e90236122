//! `floorhand barcode parse DATA`: shows integrators what Floorhand reads from a label, as
//! JSON. Pure: builds the report; `main` prints it and picks the exit code.

use serde::Serialize;

use super::{Barcode, BarcodeError, Element, Form, GtinFormat, Symbology, printable};

/// `floorhand barcode ...` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum BarcodeCommand {
    /// Parse scanned data and print what it means as JSON. C escapes are accepted:
    /// `\x1d` (GS, for FNC1), `\n`, `\r`, `\t`, `\\`. Exits 1 when the barcode is invalid.
    Parse {
        /// The data as the scanner sends it, e.g. ']C10109506000134352\x1d10ABC'.
        data: String,
    },
}

/// DATA had a bad escape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DATA at byte {pos}: {what}; use \\xNN (two hex digits), \\n, \\r, \\t, \\0 or \\\\")]
pub struct EscapeError {
    /// Byte offset of the backslash.
    pub pos: usize,
    /// What was wrong.
    pub what: String,
}

/// Turns C-style escapes into bytes.
pub fn unescape(s: &str) -> Result<Vec<u8>, EscapeError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let err = |what: String| EscapeError { pos: i, what };
        let (byte, len) = match b.get(i + 1) {
            Some(b'n') => (b'\n', 2),
            Some(b'r') => (b'\r', 2),
            Some(b't') => (b'\t', 2),
            Some(b'0') => (0, 2),
            Some(b'\\') => (b'\\', 2),
            Some(b'x') => {
                let hex = b
                    .get(i + 2..i + 4)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                let hex = hex.ok_or_else(|| err("\\x needs two hex digits".into()))?;
                let v = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| err("\\x needs two hex digits".into()))?;
                (v, 4)
            }
            Some(&c) => return Err(err(format!("unknown escape \\{}", char::from(c)))),
            None => return Err(err("a lone \\ at the end".into())),
        };
        out.push(byte);
        i += len;
    }
    Ok(out)
}

/// The JSON report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The bytes parsed, printable (`\x1d` for GS).
    pub input: String,
    /// Whether the barcode is usable.
    pub valid: bool,
    /// AIM identifier, if sent.
    pub symbology: Option<Symbology>,
    /// How the data was written.
    pub form: Form,
    /// Retail symbol, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retail: Option<GtinFormat>,
    /// The normalised GTIN-14, if any.
    pub gtin14: Option<String>,
    /// AIs with their data and meaning.
    pub elements: Vec<ElementView>,
    /// The data as text, for non-GS1 barcodes (badges, locations, totes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// What makes the barcode unusable.
    pub errors: Vec<BarcodeError>,
    /// Rules another label on the same item must satisfy.
    pub notes: Vec<BarcodeError>,
}

/// One AI in the report.
#[derive(Debug, Serialize)]
pub struct ElementView {
    /// The AI.
    pub ai: String,
    /// GS1 data title.
    pub title: &'static str,
    /// Data as written.
    pub data: String,
    /// What it means: an ISO date, a decimal with its unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meaning: Option<String>,
    /// Byte offset of the data in the input.
    pub pos: usize,
}

impl From<&Element> for ElementView {
    fn from(e: &Element) -> Self {
        let meaning = match (&e.date, &e.decimal) {
            (Some(d), _) if d.day == 0 => Some(format!("{} (day 00: end of month)", d.iso())),
            (Some(d), _) => Some(d.iso()),
            (None, Some(v)) => Some(format!("{v} {}", e.unit)),
            (None, None) => None,
        };
        Self {
            ai: e.ai.clone(),
            title: e.title,
            data: e.data.clone(),
            meaning,
            pos: e.pos,
        }
    }
}

/// Builds the report for `raw`.
pub fn report(raw: &[u8]) -> Report {
    let bc: Barcode = super::parse(raw);
    Report {
        input: printable(raw),
        valid: bc.is_valid(),
        gtin14: bc.gtin.as_ref().map(ToString::to_string),
        elements: bc.elements.iter().map(ElementView::from).collect(),
        text: (bc.form == Form::Text).then(|| bc.text.clone()),
        symbology: bc.symbology,
        form: bc.form,
        retail: bc.retail,
        errors: bc.errors,
        notes: bc.notes,
    }
}

/// Runs a `barcode` subcommand: the JSON to print and whether the barcode was valid.
pub fn run(cmd: &BarcodeCommand) -> Result<(String, bool), EscapeError> {
    match cmd {
        BarcodeCommand::Parse { data } => {
            let r = report(&unescape(data)?);
            let json = serde_json::to_string_pretty(&r).unwrap_or_default();
            Ok((json, r.valid))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_become_bytes_and_bad_escapes_are_named() {
        fn check(input: &str, expected: Result<&[u8], &str>) {
            let got = unescape(input).map_err(|e| e.to_string());
            assert_eq!(
                got,
                expected.map(<[u8]>::to_vec).map_err(str::to_string),
                "{input}"
            );
        }
        check(r"]C101\x1d10A", Ok(b"]C101\x1d10A"));
        check(r"a\nb\r\t\\\0", Ok(b"a\nb\r\t\\\0"));
        check(r"\x1D", Ok(b"\x1d"));
        check(
            r"ab\q",
            Err(
                r"DATA at byte 2: unknown escape \q; use \xNN (two hex digits), \n, \r, \t, \0 or \\",
            ),
        );
        check(
            r"\x1",
            Err(
                r"DATA at byte 0: \x needs two hex digits; use \xNN (two hex digits), \n, \r, \t, \0 or \\",
            ),
        );
        check(
            "a\\",
            Err(
                r"DATA at byte 1: a lone \ at the end; use \xNN (two hex digits), \n, \r, \t, \0 or \\",
            ),
        );
    }

    #[test]
    fn report_shows_dates_as_iso_and_decimals_with_units() {
        let r = report(b"]C1010950600013435217270600\x1d3103001250");
        let json = serde_json::to_value(&r).unwrap_or_default();
        assert_eq!(json["gtin14"], "09506000134352");
        assert_eq!(
            json["elements"][1]["meaning"],
            "2027-06-30 (day 00: end of month)"
        );
        assert_eq!(json["elements"][2]["meaning"], "1.250 kg");
        assert_eq!(json["valid"], true);
        assert_eq!(json["symbology"]["name"], "GS1-128");
    }

    #[test]
    fn parse_refuses_bytes_that_are_not_text_and_control_bytes_with_exit_status_invalid() {
        fn check(data: &str, error: &str) {
            let cmd = BarcodeCommand::Parse { data: data.into() };
            let (json, valid) = run(&cmd).expect("escapes are fine");
            let json: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
            assert!(!valid, "{data}: {json}");
            assert_eq!(json["errors"][0], error, "{data}");
        }
        check(r"\xff\xfe\x00", "at byte 0: bytes that are not UTF-8 text");
        check(
            r"LOC-1\0",
            "at byte 5: control character U+0000 not allowed",
        );
        check(
            r"]C1\x1b0109506000134352",
            r"at byte 3: no known AI starts with '\x1b010'",
        );
    }
}
