//! GS1 element strings, as a scanner sends them (AIs run together, GS after each
//! variable-length field) and in the bracketed human form `(01)09506000134352(10)ABC`.

use super::ai::{self, AiDef};
use super::value;
use super::{BarcodeError, Element, Problem};

/// The GS byte a scanner sends for FNC1 (docs/dev/field-notes.md: "Inside GS1 data, FNC1
/// reaches the host as GS").
pub const GS: u8 = 0x1D;

/// Parses an element string starting at byte `base` of the whole input. Returns the
/// elements read and the errors found; stops at the first AI it cannot delimit, since
/// nothing after it can be located.
pub(crate) fn parse(data: &[u8], base: usize) -> (Vec<Element>, Vec<BarcodeError>) {
    let mut elements = Vec::new();
    let mut errors = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if data[i] == GS {
            // A leading FNC1, or a GS after a fixed-length field: harmless.
            i += 1;
            continue;
        }
        let rest = &data[i..];
        let head: String = rest
            .iter()
            .take(4)
            .take_while(|b| b.is_ascii_digit())
            .map(|&b| char::from(b))
            .collect();
        let Some((def, code)) = ai::lookup(&head) else {
            errors.push(BarcodeError::new(
                None,
                Some(base + i),
                Problem::UnknownAi {
                    start: printable(&rest[..rest.len().min(4)]),
                },
            ));
            break;
        };
        let code = code.to_string();
        let start = i + code.len();
        let end = match ai::fixed_len(def) {
            Some(n) => (start + n).min(data.len()),
            None => data[start..]
                .iter()
                .position(|&b| b == GS)
                .map_or(data.len(), |p| start + p),
        };
        match std::str::from_utf8(&data[start..end]) {
            Ok(s) => match value::element(def, &code, s, base + start) {
                Ok(el) => elements.push(el),
                Err(e) => errors.push(e),
            },
            Err(e) => errors.push(BarcodeError::new(
                Some(&code),
                Some(base + start + e.valid_up_to()),
                Problem::NotUtf8,
            )),
        }
        i = end;
    }
    (elements, errors)
}

/// Parses the bracketed form. A `(` starts a new AI only when followed by a known AI and
/// `)`; otherwise it is data (set 82 includes brackets).
pub(crate) fn parse_bracketed(s: &str, base: usize) -> (Vec<Element>, Vec<BarcodeError>) {
    let mut elements = Vec::new();
    let mut errors = Vec::new();
    let starts = ai_starts(s);
    if starts.first().map(|&(at, _, _)| at) != Some(0) {
        errors.push(BarcodeError::new(None, Some(base), Problem::Bracketed));
        return (elements, errors);
    }
    for (n, &(at, def, ref code)) in starts.iter().enumerate() {
        let from = at + code.len() + 2;
        let to = starts.get(n + 1).map_or(s.len(), |&(next, _, _)| next);
        let data = &s[from..to];
        match check_fixed(def, code, data, base + from)
            .and_then(|()| value::element(def, code, data, base + from))
        {
            Ok(el) => elements.push(el),
            Err(e) => errors.push(e),
        }
    }
    (elements, errors)
}

fn check_fixed(def: &AiDef, code: &str, data: &str, pos: usize) -> Result<(), BarcodeError> {
    if let Some(n) = ai::fixed_len(def)
        && data.len() != n
    {
        return Err(BarcodeError::new(
            Some(code),
            Some(pos),
            Problem::Length {
                min: n,
                max: n,
                got: data.len(),
            },
        ));
    }
    Ok(())
}

fn ai_starts(s: &str) -> Vec<(usize, &'static AiDef, String)> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'('
            && let Some(close) = b[i + 1..].iter().take(5).position(|&c| c == b')')
        {
            let inner = &s[i + 1..i + 1 + close];
            if let Some((def, code)) = ai::lookup(inner)
                && code == inner
            {
                out.push((i, def, code.to_string()));
                i += close + 2;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// Bytes shown in an error message: printable ASCII as is, the rest as `\xNN`.
pub fn printable(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}
