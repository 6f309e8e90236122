//! Barcode parsing, pure: bytes from a scanner in, a [`Barcode`] out. No I/O, no clock.
//!
//! - [`gtin`]: EAN-8, UPC-A, UPC-E, EAN-13, GTIN-14 and check digits, normalised to
//!   [`Gtin14`].
//! - [`ai`]: the GS1 Application Identifier table; [`element`]: element strings and the
//!   bracketed form; [`link`]: GS1 Digital Link URIs; [`value`]: one AI's data checked.
//! - [`item`]: required and excluded AIs over all the scans of one item.
//! - [`location`]: location barcodes and their two-digit check codes.
//! - [`cli`]: `floorhand barcode parse`, the JSON report for integrators.
//!
//! [`parse`] never panics and never fails: what is wrong is listed in
//! [`Barcode::errors`], each naming the AI and the byte where it was found.

pub mod ai;
pub mod cli;
pub mod element;
pub mod gtin;
pub mod item;
pub mod link;
pub mod location;
mod value;

#[cfg(test)]
mod tests;

use serde::Serialize;

pub use element::{GS, printable};
pub use gtin::{Gtin14, GtinFormat, check_digit, upce_to_upca};
pub use item::ItemData;
pub use location::{LocationMatch, LocationTarget};

/// A calendar date from a GS1 field. `day == 0` means "end of the month".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Date {
    /// Full year.
    pub year: u16,
    /// 1-12.
    pub month: u8,
    /// 0 (end of month) or 1-31.
    pub day: u8,
}

impl Date {
    /// ISO 8601 `YYYY-MM-DD`; day 00 becomes the month's last day.
    pub fn iso(&self) -> String {
        let day = if self.day == 0 {
            value::days_in_month(self.year, self.month)
        } else {
            self.day
        };
        format!("{:04}-{:02}-{:02}", self.year, self.month, day)
    }
}

/// One AI and its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Element {
    /// The AI, e.g. `17` or `3103`.
    pub ai: String,
    /// GS1 data title, e.g. `USE BY or EXPIRY`.
    pub title: &'static str,
    /// The data as written.
    pub data: String,
    /// Byte offset of the data in the scanned input.
    pub pos: usize,
    /// For date AIs: the date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<Date>,
    /// For measures: the value with its implied decimals, e.g. `1.250`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decimal: Option<String>,
    /// For measures: the unit.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub unit: &'static str,
}

/// What is wrong, without where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// No data at all.
    #[error("no data")]
    Empty,
    /// A digit was expected.
    #[error("'{ch}' is not a digit")]
    NotDigit {
        /// The offending character.
        ch: char,
    },
    /// Digits only were expected.
    #[error("not all digits")]
    NotNumeric,
    /// A character outside GS1 set 82.
    #[error("'{ch}' is not allowed in GS1 data (character set 82)")]
    NotCset82 {
        /// The offending character.
        ch: char,
    },
    /// Bytes that are not UTF-8 text (ISO 646 is its 7-bit part).
    #[error("bytes that are not UTF-8 text")]
    NotUtf8,
    /// A control character (NUL, CR, ESC, DEL ...) where none may be: only GS, and RS and
    /// EOT around an ISO/IEC 15434 envelope, belong in GS1 data.
    #[error("control character U+{:04X} not allowed", u32::from(*ch))]
    Control {
        /// The character.
        ch: char,
    },
    /// An ISO/IEC 15434 envelope (`[)>` RS `05` GS ...) that does not end with RS EOT.
    #[error("the ISO/IEC 15434 envelope does not end with RS EOT")]
    Envelope,
    /// Wrong length.
    #[error("length {got}, expected {}", if min == max { format!("{min}") } else { format!("{min} to {max}") })]
    Length {
        /// Fewest allowed.
        min: usize,
        /// Most allowed.
        max: usize,
        /// Found.
        got: usize,
    },
    /// A GTIN of a length no symbol has.
    #[error("{got} digits is not a GTIN length (8, 12, 13 or 14)")]
    GtinLength {
        /// Digits found.
        got: usize,
    },
    /// Check digit mismatch.
    #[error("check digit {found} should be {expected}")]
    CheckDigit {
        /// Digit found.
        found: char,
        /// Digit computed.
        expected: u8,
    },
    /// Date is not YYMMDD digits.
    #[error("not a YYMMDD date")]
    DateFormat,
    /// Bad month.
    #[error("month {month} is not a month")]
    Month {
        /// Month found.
        month: u8,
    },
    /// Bad day.
    #[error("day {day} is not a date")]
    Day {
        /// Day found.
        day: u8,
    },
    /// Bad hour, minute or second.
    #[error("not a valid time of day")]
    Time,
    /// Bad ISO country code field.
    #[error("must start with a three-digit ISO country code")]
    Country,
    /// Bad list of country codes.
    #[error("must be one to five three-digit country codes")]
    Countries,
    /// GRAI must start with 0.
    #[error("a GRAI starts with the digit 0")]
    GraiZero,
    /// UPC-E shape.
    #[error("a UPC-E is 8 digits")]
    UpcE,
    /// UPC-E number system.
    #[error("a UPC-E starts with 0 or 1")]
    UpcENumberSystem,
    /// Unknown AI.
    #[error("no known AI starts with '{start}'")]
    UnknownAi {
        /// The characters where an AI was expected.
        start: String,
    },
    /// Bracketed form not starting with an AI.
    #[error("the bracketed form starts with an AI in brackets, like (01)")]
    Bracketed,
    /// An excluded pair.
    #[error("cannot be used with AI {other} on the same item")]
    Excludes {
        /// The other AI.
        other: String,
    },
    /// A required AI is missing.
    #[error("needs AI {any_of} on the same item")]
    Requires {
        /// The AIs, one of which is needed.
        any_of: String,
    },
    /// Same AI, two values.
    #[error("scanned twice with different values '{first}' and '{second}'")]
    Repeated {
        /// First value.
        first: String,
        /// Second value.
        second: String,
    },
    /// Digital Link without primary key.
    #[error("no GS1 primary key (01, 00, 414, ...) in the URI path")]
    NoDigitalLinkKey,
    /// Digital Link qualifier order.
    #[error("qualifiers must follow the key in the order 22, 10, 21")]
    QualifierOrder,
    /// Digital Link qualifier not allowed for the key.
    #[error("is not a qualifier of AI {key} in a Digital Link path")]
    NotAQualifier {
        /// The key.
        key: String,
    },
    /// Bad percent escape.
    #[error("bad percent escape (expected %XX with hex digits, giving UTF-8)")]
    Percent,
}

/// A problem in a barcode: which AI, where, what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{problem}", where_(ai.as_deref(), *pos))]
pub struct BarcodeError {
    /// The AI concerned, if any.
    pub ai: Option<String>,
    /// Byte offset in the scanned input, if known.
    pub pos: Option<usize>,
    /// What is wrong.
    pub problem: Problem,
}

fn where_(ai: Option<&str>, pos: Option<usize>) -> String {
    match (ai, pos) {
        (Some(ai), Some(pos)) => format!("AI {ai} at byte {pos}: "),
        (Some(ai), None) => format!("AI {ai}: "),
        (None, Some(pos)) => format!("at byte {pos}: "),
        (None, None) => String::new(),
    }
}

impl BarcodeError {
    pub(crate) fn new(ai: Option<&str>, pos: Option<usize>, problem: Problem) -> Self {
        Self {
            ai: ai.map(str::to_string),
            pos,
            problem,
        }
    }
}

impl Serialize for BarcodeError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The symbology a scanner announced with an AIM identifier (`]C1` ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Symbology {
    /// The identifier as sent, e.g. `]C1`.
    pub id: String,
    /// What it means, e.g. `GS1-128`.
    pub name: &'static str,
    /// Whether the symbol carries GS1 element strings.
    pub gs1: bool,
}

/// AIM symbology identifiers (ISO/IEC 15424; docs/dev/field-notes.md's list and the common others).
const AIM: &[(&str, &str, bool)] = &[
    ("C0", "Code 128", false),
    ("C1", "GS1-128", true),
    ("C2", "Code 128 (FNC1 in second position)", false),
    ("e0", "GS1 DataBar", true),
    ("d0", "Data Matrix (ECC 000-140)", false),
    ("d1", "Data Matrix", false),
    ("d2", "GS1 DataMatrix", true),
    ("Q0", "QR Code (model 1)", false),
    ("Q1", "QR Code", false),
    ("Q3", "GS1 QR Code", true),
    ("E0", "EAN-13, UPC-A or UPC-E", false),
    ("E3", "EAN/UPC with add-on", false),
    ("E4", "EAN-8", false),
    ("J0", "DotCode", false),
    ("J1", "GS1 DotCode", true),
    ("A0", "Code 39", false),
    ("I0", "Interleaved 2 of 5", false),
    ("I1", "Interleaved 2 of 5 (check digit verified)", false),
    ("X0", "Other", false),
];

/// How the data was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Form {
    /// A retail GTIN symbol (EAN/UPC/ITF-14 digits).
    Retail,
    /// A GS1 element string, as a scanner sends it.
    ElementString,
    /// The bracketed human form `(01)...(10)...`.
    Bracketed,
    /// A GS1 Digital Link URI.
    DigitalLink,
    /// Anything else: a badge, a location, a tote, a lot on its own label.
    Text,
}

/// Parses a YYMMDD date typed or scanned on its own (an expiry label without AIs).
/// Day 00 means end of month, as in AI 17.
pub fn parse_yymmdd(s: &str) -> Result<Date, BarcodeError> {
    value::date(s, true).map_err(|p| BarcodeError::new(None, Some(0), p))
}

/// A parsed scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Barcode {
    /// The AIM identifier, when the scanner sent one.
    pub symbology: Option<Symbology>,
    /// How the data was written.
    pub form: Form,
    /// The data after the AIM identifier, as text (GS shown as `\x1d`).
    pub text: String,
    /// For retail symbols: which one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retail: Option<GtinFormat>,
    /// The item's GTIN-14: from a retail symbol or AI 01.
    pub gtin: Option<Gtin14>,
    /// The AIs, in the order scanned.
    pub elements: Vec<Element>,
    /// What makes this barcode unusable.
    pub errors: Vec<BarcodeError>,
    /// Rules this barcode alone does not meet but another label on the same item may
    /// (e.g. a lot label needs the GTIN from the item's other barcode).
    pub notes: Vec<BarcodeError>,
}

impl Barcode {
    /// True when nothing is wrong.
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    /// The first element with AI `code`.
    pub fn ai(&self, code: &str) -> Option<&Element> {
        self.elements.iter().find(|e| e.ai == code)
    }

    /// AI 10.
    pub fn lot(&self) -> Option<&str> {
        self.ai("10").map(|e| e.data.as_str())
    }

    /// AI 21.
    pub fn serial(&self) -> Option<&str> {
        self.ai("21").map(|e| e.data.as_str())
    }

    /// AI 17.
    pub fn expiry(&self) -> Option<Date> {
        self.ai("17").and_then(|e| e.date)
    }

    /// AI 02 and its AI 37 count: a case of `count` units of the contained GTIN.
    pub fn content(&self) -> Option<(Gtin14, u32)> {
        let gtin = Gtin14::parse(&self.ai("02")?.data).ok()?;
        let count = self.ai("37")?.data.parse().ok()?;
        Some((gtin, count))
    }
}

/// Splits an AIM identifier (`]` + code letter + modifier) off the front.
fn split_aim(raw: &[u8]) -> (Option<Symbology>, &[u8]) {
    match raw {
        [b']', c, m, rest @ ..] if c.is_ascii_alphabetic() && m.is_ascii_alphanumeric() => {
            let id = [char::from(*c), char::from(*m)].iter().collect::<String>();
            let (name, gs1) = AIM
                .iter()
                .find(|(code, _, _)| *code == id)
                .map_or(("unknown symbology", false), |&(_, n, g)| (n, g));
            (
                Some(Symbology {
                    id: format!("]{id}"),
                    name,
                    gs1,
                }),
                rest,
            )
        }
        _ => (None, raw),
    }
}

/// The start of an ISO/IEC 15434 envelope of format 05 (GS1 AIs), which a GS1 2D symbol
/// may carry: `[)>` RS `05` GS, then the element string, then RS EOT.
const ENVELOPE_HEAD: &[u8] = b"[)>\x1e05\x1d";
/// Its end: RS EOT.
const ENVELOPE_TAIL: &[u8] = b"\x1e\x04";

/// Why data that is not a GS1 element string cannot be text: bytes that are not UTF-8,
/// or a control character (NUL, CR, ESC, DEL, C1 ...). A badge, a location or a lot
/// label is printable text; anything else is a misread or an injection, never data.
fn not_text(body: &[u8], base: usize) -> Option<BarcodeError> {
    let text = match std::str::from_utf8(body) {
        Ok(text) => text,
        Err(e) => {
            return Some(BarcodeError::new(
                None,
                Some(base + e.valid_up_to()),
                Problem::NotUtf8,
            ));
        }
    };
    let (i, ch) = text.char_indices().find(|(_, c)| c.is_control())?;
    Some(BarcodeError::new(
        None,
        Some(base + i),
        Problem::Control { ch },
    ))
}

/// Parses one scan. Never panics; problems are in [`Barcode::errors`].
///
/// Only a GS1 element string may hold GS (FNC1), and only an ISO/IEC 15434 envelope
/// around one RS and EOT; every other control byte, and bytes that are not UTF-8, make
/// the barcode invalid (for a GS1 string, naming the AI whose data holds them).
pub fn parse(raw: &[u8]) -> Barcode {
    let (symbology, body) = split_aim(raw);
    let base = raw.len() - body.len();
    let mut bc = Barcode {
        form: Form::Text,
        text: String::from_utf8_lossy(body).replace('\u{1d}', "\\x1d"),
        retail: None,
        gtin: None,
        elements: Vec::new(),
        errors: Vec::new(),
        notes: Vec::new(),
        symbology,
    };
    if body.is_empty() {
        bc.errors
            .push(BarcodeError::new(None, Some(base), Problem::Empty));
        return bc;
    }
    let sym_id = bc.symbology.as_ref().map(|s| &s.id[1..]);
    let gs1_sym = bc.symbology.as_ref().is_some_and(|s| s.gs1);
    let text = std::str::from_utf8(body).ok();
    let gs1_string = gs1_sym || body.contains(&GS) || (sym_id.is_none() && looks_like_gs1(body));
    let enveloped = body.strip_prefix(ENVELOPE_HEAD);
    let text_form = text.is_some_and(|s| link::is_uri(s) || s.starts_with('('));
    // A GS1 element string is checked AI by AI (digits or set 82), naming the AI; every
    // other form must be printable text.
    if enveloped.is_none()
        && (text_form || !gs1_string)
        && let Some(e) = not_text(body, base)
    {
        bc.form = match text {
            Some(s) if link::is_uri(s) => Form::DigitalLink,
            Some(s) if s.starts_with('(') => Form::Bracketed,
            _ => Form::Text,
        };
        bc.errors.push(e);
        return bc;
    }
    if let Some(inner) = enveloped {
        bc.form = Form::ElementString;
        let at = base + ENVELOPE_HEAD.len();
        let Some(data) = inner.strip_suffix(ENVELOPE_TAIL) else {
            let end = base + body.len();
            bc.errors
                .push(BarcodeError::new(None, Some(end), Problem::Envelope));
            return bc;
        };
        (bc.elements, bc.errors) = element::parse(data, at);
    } else if let Some(s) = text.filter(|s| link::is_uri(s)) {
        bc.form = Form::DigitalLink;
        (bc.elements, bc.errors) = link::parse(s, base);
    } else if let Some(s) = text.filter(|s| s.starts_with('(')) {
        bc.form = Form::Bracketed;
        (bc.elements, bc.errors) = element::parse_bracketed(s, base);
    } else if gs1_string {
        bc.form = Form::ElementString;
        (bc.elements, bc.errors) = element::parse(body, base);
    } else if let Some(format) = retail_format(sym_id, body) {
        bc.form = Form::Retail;
        bc.retail = Some(format);
        // The match arms of retail_format guarantee ASCII digits.
        let digits = text.unwrap_or_default();
        let result = match format {
            GtinFormat::UpcE => upce_to_upca(digits).and_then(|a| Gtin14::parse(&a)),
            _ => Gtin14::parse(digits),
        };
        match result {
            Ok(g) => bc.gtin = Some(g),
            Err(mut e) => {
                e.pos = e.pos.map(|p| p + base);
                bc.errors.push(e);
            }
        }
        return bc;
    } else {
        return bc;
    }
    bc.gtin = bc.ai("01").and_then(|e| Gtin14::parse(&e.data).ok());
    bc.errors.extend(item::conflicts(&bc.elements, false));
    bc.notes = item::missing(&bc.elements, false);
    bc
}

/// Without an AIM identifier, data is GS1 only when it begins with AI 00, 01 or 02 and
/// parses cleanly with valid check digits. This keeps a lot label "10D9T" from being read
/// as AI 10 with lot "D9T" (docs/dev/field-notes.md, "GS1 barcodes": OCA/wms).
fn looks_like_gs1(body: &[u8]) -> bool {
    let starts = [b"00", b"01", b"02"].iter().any(|p| body.starts_with(*p));
    starts && body.len() >= 16 && element::parse(body, 0).1.is_empty()
}

/// Which retail symbol `body` is, if it is one. With no AIM identifier only digits of a
/// GTIN length with a valid check digit count; an 8-digit string is an EAN-8 unless only
/// its UPC-E reading has a valid check digit.
fn retail_format(sym: Option<&str>, body: &[u8]) -> Option<GtinFormat> {
    if !body.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let s = std::str::from_utf8(body).ok()?;
    let by_len = |n: usize| match n {
        8 => Some(GtinFormat::Ean8),
        12 => Some(GtinFormat::UpcA),
        13 => Some(GtinFormat::Ean13),
        14 => Some(GtinFormat::Gtin14),
        _ => None,
    };
    match sym {
        Some("E0") if body.len() == 8 => Some(GtinFormat::UpcE),
        Some("E0" | "E3" | "E4" | "I1" | "I0") => by_len(body.len()),
        Some(_) => None,
        None => {
            let f = by_len(body.len())?;
            if Gtin14::parse(s).is_ok() {
                Some(f)
            } else if f == GtinFormat::Ean8 && upce_to_upca(s).is_ok() {
                Some(GtinFormat::UpcE)
            } else {
                None
            }
        }
    }
}
