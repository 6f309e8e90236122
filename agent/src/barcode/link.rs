//! GS1 Digital Link URIs (`https://id.gs1.org/01/09506000134352/10/L1?17=270630`, any host)
//! parsed into the same AIs as an element string. Rules from the GS1 Digital Link standard
//! 1.2: after any path prefix comes a primary key AI and its value, then that key's
//! qualifiers in their fixed order; other AIs go in the query string; values are
//! percent-encoded; a GTIN in the path may be written with 8, 12, 13 or 14 digits.

use super::ai;
use super::value;
use super::{BarcodeError, Element, Problem};

/// Primary keys we accept and their qualifiers, in the order the standard requires.
const KEYS: &[(&str, &[&str])] = &[
    ("01", &["22", "10", "21"]),
    ("00", &[]),
    ("414", &["254"]),
    ("417", &[]),
    ("401", &[]),
    ("402", &[]),
    ("8003", &[]),
    ("8004", &[]),
];

/// Whether `s` looks like a URI this module should read.
pub(crate) fn is_uri(s: &str) -> bool {
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// Parses a Digital Link URI. Never panics, whatever the string.
pub(crate) fn parse(uri: &str, base: usize) -> (Vec<Element>, Vec<BarcodeError>) {
    let mut elements = Vec::new();
    let mut errors = Vec::new();
    let err = |ai: Option<&str>, at: usize, p| BarcodeError::new(ai, Some(base + at), p);
    let after_scheme = uri.find("://").map_or(0, |i| i + 3);
    let path_start = uri[after_scheme..]
        .find('/')
        .map_or(uri.len(), |i| after_scheme + i);
    let end = uri.find('#').unwrap_or(uri.len());
    let query_start = uri[..end].find('?').unwrap_or(end).max(path_start);
    let path = &uri[path_start..query_start];

    // Segments with their byte offsets.
    let mut segs = Vec::new();
    let mut at = path_start;
    for seg in path.split('/') {
        if !seg.is_empty() {
            segs.push((at, seg));
        }
        at += seg.len() + 1;
    }
    let key_at = (0..segs.len())
        .find(|&k| (segs.len() - k) % 2 == 0 && KEYS.iter().any(|(key, _)| *key == segs[k].1));
    let Some(k) = key_at else {
        errors.push(err(None, path_start, Problem::NoDigitalLinkKey));
        return (elements, errors);
    };
    let qualifiers = KEYS
        .iter()
        .find(|(key, _)| *key == segs[k].1)
        .map_or(&[][..], |(_, q)| *q);
    let mut last_rank = None;
    for pair in segs[k..].chunks(2) {
        let [(ai_at, code), (val_at, raw)] = pair else {
            continue;
        };
        if *ai_at != segs[k].0 {
            match qualifiers.iter().position(|q| q == code) {
                Some(rank) if last_rank.is_none_or(|r| rank > r) => last_rank = Some(rank),
                Some(_) => {
                    errors.push(err(Some(code), *ai_at, Problem::QualifierOrder));
                    continue;
                }
                None => {
                    errors.push(err(
                        Some(code),
                        *ai_at,
                        Problem::NotAQualifier {
                            key: segs[k].1.to_string(),
                        },
                    ));
                    continue;
                }
            }
        }
        push(code, raw, *val_at, base, &mut elements, &mut errors);
    }

    if query_start < end {
        let mut at = query_start + 1;
        for param in uri[query_start + 1..end].split('&') {
            let (key, val) = param.split_once('=').unwrap_or((param, ""));
            // Other parameters (linkType, ...) are allowed by the standard and ignored.
            if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
                push(
                    key,
                    val,
                    at + key.len() + 1,
                    base,
                    &mut elements,
                    &mut errors,
                );
            }
            at += param.len() + 1;
        }
    }
    (elements, errors)
}

fn push(
    code: &str,
    raw: &str,
    at: usize,
    base: usize,
    elements: &mut Vec<Element>,
    errors: &mut Vec<BarcodeError>,
) {
    let Some(def) = ai::by_code(code) else {
        errors.push(BarcodeError::new(
            None,
            Some(base + at.saturating_sub(code.len() + 1)),
            Problem::UnknownAi {
                start: code.to_string(),
            },
        ));
        return;
    };
    let data = match percent_decode(raw) {
        Ok(d) => d,
        Err(i) => {
            errors.push(BarcodeError::new(
                Some(code),
                Some(base + at + i),
                Problem::Percent,
            ));
            return;
        }
    };
    // A GTIN-8, -12 or -13 in the path stands for its GTIN-14.
    let data = if code == "01" && [8, 12, 13].contains(&data.len()) {
        format!("{data:0>14}")
    } else {
        data
    };
    match value::element(def, code, &data, base + at) {
        Ok(el) => elements.push(el),
        Err(e) => errors.push(e),
    }
}

/// Decodes `%XX` escapes; on a bad escape or bytes that are not UTF-8, returns the offset
/// of the problem.
fn percent_decode(s: &str) -> Result<String, usize> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or(i)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(i);
            }
            let hex = std::str::from_utf8(hex).map_err(|_| i)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| i)?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|e| e.utf8_error().valid_up_to())
}
