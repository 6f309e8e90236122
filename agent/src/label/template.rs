//! Label templates: ZPL with named placeholders (`{{ship_to.name}}`), checked when loaded
//! so that a bad template fails at start-up with a clear message, not at the printer.
//!
//! Rules a template must follow (each broken one is a [`TemplateError`]):
//! - every `^XA` is closed by `^XZ` before the next `^XA`, and there is at least one label;
//! - `^CI28` (UTF-8) comes before the first field of each label;
//! - a placeholder stands only in field data (after `^FD`, before the next command), and
//!   that field has `^FH` (default `_` indicator) so its data is hex-escaped;
//! - placeholder names are known ([`PLACEHOLDERS`]);
//! - no `^CC`/`~CC`, `^CT`/`~CT`, `^CD`/`~CD`: changing the command characters would
//!   defeat the escaping.

use super::escape::{MAX_FIELD_BYTES, escape_field};

/// Every placeholder name a template may use, with the most characters its value keeps.
pub const PLACEHOLDERS: &[(&str, usize)] = &[
    ("ship_from.name", 48),
    ("ship_from.company", 48),
    ("ship_from.line1", 48),
    ("ship_from.line2", 48),
    ("ship_from.line3", 48),
    ("ship_from.line4", 48),
    ("ship_from.city", 48),
    ("ship_from.region", 48),
    ("ship_from.postal_code", 16),
    ("ship_from.country", 2),
    ("ship_from.city_line", 64),
    ("ship_to.name", 48),
    ("ship_to.company", 48),
    ("ship_to.line1", 48),
    ("ship_to.line2", 48),
    ("ship_to.line3", 48),
    ("ship_to.line4", 48),
    ("ship_to.city", 48),
    ("ship_to.region", 48),
    ("ship_to.postal_code", 16),
    ("ship_to.country", 2),
    ("ship_to.city_line", 64),
    ("carrier", 24),
    ("service", 32),
    ("order_id", 40),
    ("carton_no", 5),
    ("carton_count", 5),
    ("carton", 16),
    ("weight_g", 10),
    ("weight_kg", 16),
    ("tracking", super::MAX_TRACKING),
    ("sscc", 18),
    ("digital_link", 64),
];

/// The most characters placeholder `name` keeps, if it is one.
pub fn max_chars(name: &str) -> Option<usize> {
    PLACEHOLDERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, max)| max)
}

/// Why a template was refused. Lines and columns count from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{{` without `}}`.
    #[error("line {line}, column {col}: `{{{{` is not closed by `}}}}`")]
    Unclosed {
        /// Line.
        line: usize,
        /// Column.
        col: usize,
    },
    /// A placeholder name that is not in [`PLACEHOLDERS`].
    #[error(
        "line {line}, column {col}: unknown placeholder {{{{{name}}}}}; known: {known}",
        known = PLACEHOLDERS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
    )]
    UnknownPlaceholder {
        /// Line.
        line: usize,
        /// Column.
        col: usize,
        /// The name.
        name: String,
    },
    /// A placeholder outside `^FD` field data.
    #[error(
        "line {line}, column {col}: placeholder {{{{{name}}}}} is outside a field: put it in ^FD field data, between ^FD and ^FS"
    )]
    OutsideField {
        /// Line.
        line: usize,
        /// Column.
        col: usize,
        /// The name.
        name: String,
    },
    /// A placeholder in a field without `^FH`.
    #[error(
        "line {line}, column {col}: placeholder {{{{{name}}}}} is in a field without ^FH: write ^FH just before its ^FD so its data is hex-escaped"
    )]
    NoHexEscape {
        /// Line.
        line: usize,
        /// Column.
        col: usize,
        /// The name.
        name: String,
    },
    /// `^FH` with an indicator other than `_`.
    #[error(
        "line {line}, column {col}: ^FH must use the default `_` indicator (write ^FH), Floorhand escapes field data as _XX"
    )]
    HexIndicator {
        /// Line.
        line: usize,
        /// Column.
        col: usize,
    },
    /// `^XA` inside a label.
    #[error("line {line}, column {col}: ^XA inside a label: the ^XA before it has no ^XZ")]
    NestedStart {
        /// Line.
        line: usize,
        /// Column.
        col: usize,
    },
    /// `^XZ` outside a label.
    #[error("line {line}, column {col}: ^XZ without a ^XA before it")]
    StrayEnd {
        /// Line.
        line: usize,
        /// Column.
        col: usize,
    },
    /// A label not closed at the end of the template.
    #[error("the label starting at line {line} has no ^XZ: every ^XA needs a ^XZ")]
    Unterminated {
        /// Line of the `^XA`.
        line: usize,
    },
    /// No `^XA ... ^XZ` at all.
    #[error("the template has no label: it needs ^XA ... ^XZ")]
    Empty,
    /// A field before `^CI28`.
    #[error(
        "line {line}, column {col}: field before ^CI28: put ^CI28 right after ^XA so UTF-8 data prints right"
    )]
    NoUtf8 {
        /// Line.
        line: usize,
        /// Column.
        col: usize,
    },
    /// A command that changes the command characters.
    #[error(
        "line {line}, column {col}: {command} changes ZPL's command characters, which would defeat the field escaping; remove it"
    )]
    ForbiddenCommand {
        /// Line.
        line: usize,
        /// Column.
        col: usize,
        /// The command, e.g. `^CC`.
        command: String,
    },
    /// Field data longer than a printer accepts.
    #[error(
        "line {line}: field data has {len} bytes of fixed text; a ZPL field holds at most {MAX_FIELD_BYTES}"
    )]
    FieldTooLong {
        /// Line of the `^FD`.
        line: usize,
        /// Its fixed text length.
        len: usize,
    },
}

/// A piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field {
        /// Index into [`PLACEHOLDERS`].
        name: usize,
        /// Most escaped bytes the value may take in its field.
        budget: usize,
    },
}

/// A checked template, ready to fill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

fn position(src: &str, at: usize) -> (usize, usize) {
    let before = &src[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(at, |nl| at - nl - 1) + 1;
    (line, col)
}

/// A field being read: where its `^FD` was and what it holds so far.
struct OpenField {
    at: usize,
    fixed: usize,
    placeholders: Vec<usize>,
}

impl Template {
    /// Parses and checks a template.
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut label_at: Option<usize> = None;
        let mut labels = 0usize;
        let mut utf8 = false;
        let mut hex = false;
        let mut field: Option<OpenField> = None;
        let mut i = 0;
        while i < src.len() {
            let rest = &src[i..];
            if let Some(after) = rest.strip_prefix("{{") {
                let (line, col) = position(src, i);
                let end = after
                    .find("}}")
                    .ok_or(TemplateError::Unclosed { line, col })?;
                let name = after[..end].trim().to_owned();
                let index = PLACEHOLDERS
                    .iter()
                    .position(|(n, _)| *n == name)
                    .ok_or_else(|| TemplateError::UnknownPlaceholder {
                        line,
                        col,
                        name: name.clone(),
                    })?;
                let open = field.as_mut().ok_or_else(|| TemplateError::OutsideField {
                    line,
                    col,
                    name: name.clone(),
                })?;
                if !hex {
                    return Err(TemplateError::NoHexEscape { line, col, name });
                }
                open.placeholders.push(parts.len() + 1);
                parts.push(Part::Text(std::mem::take(&mut text)));
                parts.push(Part::Field {
                    name: index,
                    budget: 0,
                });
                i += 2 + end + 2;
                continue;
            }
            let c = rest.chars().next().unwrap_or(' ');
            if c != '^' && c != '~' {
                if let Some(open) = field.as_mut() {
                    open.fixed += c.len_utf8();
                }
                text.push(c);
                i += c.len_utf8();
                continue;
            }
            // A command: the prefix and two letters.
            let (line, col) = position(src, i);
            let code: String = rest
                .chars()
                .skip(1)
                .take(2)
                .collect::<String>()
                .to_ascii_uppercase();
            if let Some(open) = field.take() {
                close_field(src, open, &mut parts)?;
                hex = false;
            }
            match code.as_str() {
                "XA" => {
                    if label_at.is_some() {
                        return Err(TemplateError::NestedStart { line, col });
                    }
                    label_at = Some(i);
                    utf8 = false;
                }
                "XZ" => {
                    if label_at.take().is_none() {
                        return Err(TemplateError::StrayEnd { line, col });
                    }
                    labels += 1;
                }
                "CI" => utf8 = rest.get(3..).is_some_and(|r| r.starts_with("28")),
                "FH" => {
                    let indicator = rest.get(3..).and_then(|r| r.chars().next());
                    if !matches!(indicator, None | Some('^' | '~' | '_' | '\r' | '\n')) {
                        return Err(TemplateError::HexIndicator { line, col });
                    }
                    hex = true;
                }
                "FD" => {
                    if !utf8 {
                        return Err(TemplateError::NoUtf8 { line, col });
                    }
                    field = Some(OpenField {
                        at: i,
                        fixed: 0,
                        placeholders: Vec::new(),
                    });
                }
                "CC" | "CT" | "CD" => {
                    return Err(TemplateError::ForbiddenCommand {
                        line,
                        col,
                        command: rest[..3].to_owned(),
                    });
                }
                _ => {}
            }
            let taken = rest.chars().take(3).map(char::len_utf8).sum::<usize>();
            text.push_str(&rest[..taken]);
            i += taken;
        }
        if let Some(open) = field.take() {
            close_field(src, open, &mut parts)?;
        }
        if let Some(at) = label_at {
            return Err(TemplateError::Unterminated {
                line: position(src, at).0,
            });
        }
        if labels == 0 {
            return Err(TemplateError::Empty);
        }
        parts.push(Part::Text(text));
        Ok(Template { parts })
    }

    /// Fills the placeholders with `value(name)`, each escaped for `^FH` and cut to its
    /// length bound, and returns the ZPL.
    pub fn fill(&self, value: impl Fn(&str) -> String) -> Vec<u8> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field { name, budget } => {
                    let (n, max_chars) = PLACEHOLDERS[*name];
                    out.push_str(&escape_field(&value(n), max_chars, *budget));
                }
            }
        }
        out.into_bytes()
    }

    /// Names of the placeholders used, in order.
    pub fn placeholders(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Field { name, .. } => Some(PLACEHOLDERS[*name].0),
            Part::Text(_) => None,
        })
    }
}

/// Shares the bytes a field leaves after its fixed text among its placeholders, so that
/// a filled field never exceeds [`MAX_FIELD_BYTES`].
fn close_field(src: &str, open: OpenField, parts: &mut [Part]) -> Result<(), TemplateError> {
    if open.fixed > MAX_FIELD_BYTES {
        return Err(TemplateError::FieldTooLong {
            line: position(src, open.at).0,
            len: open.fixed,
        });
    }
    let share = (MAX_FIELD_BYTES - open.fixed) / open.placeholders.len().max(1);
    for &p in &open.placeholders {
        if let Some(Part::Field { budget, .. }) = parts.get_mut(p) {
            *budget = share;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(src: &str, expected: &str) {
        match Template::parse(src) {
            Ok(_) => assert_eq!("ok", expected, "template: {src}"),
            Err(e) => assert_eq!(e.to_string(), expected, "template: {src}"),
        }
    }

    #[test]
    fn a_good_template_fills_its_placeholders_escaped() {
        let t = Template::parse("^XA^CI28^FO10,10^FH^FDTo: {{ship_to.name}}^FS^XZ").unwrap();
        let zpl = t.fill(|n| {
            assert_eq!(n, "ship_to.name");
            "A^B~JA_".to_owned()
        });
        assert_eq!(
            String::from_utf8(zpl).unwrap(),
            "^XA^CI28^FO10,10^FH^FDTo: A_5EB_7EJA_5F^FS^XZ"
        );
    }

    #[test]
    fn a_template_names_its_placeholders_in_the_order_they_are_used_one_per_use() {
        let t = Template::parse(
            "^XA^CI28^FO10,10^FH^FD{{ship_to.name}} {{carrier}}^FS\
             ^FO10,40^FH^FD{{sscc}} {{carrier}}^FS^XZ",
        )
        .unwrap();
        assert_eq!(
            t.placeholders().collect::<Vec<_>>(),
            ["ship_to.name", "carrier", "sscc", "carrier"]
        );
    }

    #[test]
    fn each_broken_rule_gets_its_own_clear_error() {
        check(
            "^XA^CI28^FH^FD{{ship_to.nmae}}^FS^XZ",
            &TemplateError::UnknownPlaceholder {
                line: 1,
                col: 15,
                name: "ship_to.nmae".into(),
            }
            .to_string(),
        );
        check(
            "^XA^CI28\n^FO{{weight_g}},10^FH^FDx^FS^XZ",
            "line 2, column 4: placeholder {{weight_g}} is outside a field: put it in ^FD field data, between ^FD and ^FS",
        );
        check(
            "^XA^CI28^FD{{sscc}}^FS^XZ",
            "line 1, column 12: placeholder {{sscc}} is in a field without ^FH: write ^FH just before its ^FD so its data is hex-escaped",
        );
        check(
            "^XA^CI28^FH^FDx^FS",
            "the label starting at line 1 has no ^XZ: every ^XA needs a ^XZ",
        );
        check(
            "^XA^CI28^XA^XZ",
            "line 1, column 9: ^XA inside a label: the ^XA before it has no ^XZ",
        );
        check("^XZ", "line 1, column 1: ^XZ without a ^XA before it");
        check("hello", "the template has no label: it needs ^XA ... ^XZ");
        check(
            "^XA^FO1,1^FDx^FS^XZ",
            "line 1, column 10: field before ^CI28: put ^CI28 right after ^XA so UTF-8 data prints right",
        );
        check(
            "^XA^CI28^FH^FD{{sscc}^FS^XZ",
            "line 1, column 15: `{{` is not closed by `}}`",
        );
        check(
            "^XA^CI28~CC#^XZ",
            "line 1, column 9: ~CC changes ZPL's command characters, which would defeat the field escaping; remove it",
        );
        check(
            "^XA^CI28^FH\\^FD{{sscc}}^FS^XZ",
            "line 1, column 9: ^FH must use the default `_` indicator (write ^FH), Floorhand escapes field data as _XX",
        );
    }

    /// The data of the one field of a one-field label.
    fn field_data(zpl: Vec<u8>) -> String {
        let text = String::from_utf8(zpl).unwrap();
        let data = text
            .strip_prefix("^XA^CI28^FH^FD")
            .and_then(|s| s.strip_suffix("^FS^XZ"))
            .unwrap();
        data.to_owned()
    }

    #[test]
    fn a_field_never_exceeds_the_printer_limit() {
        // Issue 16: this once filled 216 of 3,072 bytes, so the budget never mattered.
        // Fixed text leaves 72 bytes for a name bound to 48 characters, 144 bytes escaped.
        let fixed = "x".repeat(MAX_FIELD_BYTES - 72);
        let t =
            Template::parse(&format!("^XA^CI28^FH^FD{fixed}{{{{ship_to.name}}}}^FS^XZ")).unwrap();
        let data = field_data(t.fill(|_| "~".repeat(5000)));
        assert_eq!(
            data.len(),
            MAX_FIELD_BYTES,
            "cut to the bytes left, not beyond"
        );
        assert!(data.ends_with(&"_7E".repeat(24)));
        // Sixty placeholders of 64 characters would need 11,520 bytes escaped: each gets an
        // equal share of the field, and the field stays within the printer's limit.
        let many = "{{ship_to.city_line}}".repeat(60);
        let t = Template::parse(&format!("^XA^CI28^FH^FD{many}^FS^XZ")).unwrap();
        let share = MAX_FIELD_BYTES / 60 / 3 * 3;
        let data = field_data(t.fill(|_| "~".repeat(64)));
        assert_eq!(data.len(), 60 * share);
        assert!(data.len() <= MAX_FIELD_BYTES);
        // A multi-byte character is never split to fit: a share holds whole characters.
        let data = field_data(t.fill(|_| "東".repeat(64)));
        assert_eq!(data.len(), 60 * share);
        assert!(data.chars().all(|c| c == '東'));
    }

    #[test]
    fn a_field_whose_fixed_text_is_longer_than_the_printer_takes_is_refused() {
        let at_limit = "x".repeat(MAX_FIELD_BYTES);
        check(&format!("^XA^CI28^FH^FD{at_limit}^FS^XZ"), "ok");
        check(
            &format!("^XA^CI28\n^FO1,1^FH^FD{at_limit}y^FS^XZ"),
            "line 2: field data has 3073 bytes of fixed text; a ZPL field holds at most 3072",
        );
        // A placeholder in a full field gets no room: its value is left out, never spilled.
        let t = Template::parse(&format!("^XA^CI28^FH^FD{at_limit}{{{{sscc}}}}^FS^XZ")).unwrap();
        assert_eq!(field_data(t.fill(|_| "1".repeat(18))), at_limit);
    }
}
