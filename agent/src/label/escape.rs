//! Field-data escaping for ZPL `^FH`: the one place order data becomes printer bytes.
//!
//! A raw `^` in field data ends the field and starts a command, and a raw `~` runs a
//! control command at once, even inside a label (`~JA` cancels every job in the printer).
//! With `^FH` in front of a `^FD`, `_XX` is the byte `0xXX`, so every `^`, `~`, `_`, control
//! byte (< 0x20) and DEL becomes a hex escape and reaches the printer as data, never as a
//! command (docs/dev/field-notes.md, "ZPL II and Zebra printers").

/// Most bytes of field data in one `^FD ... ^FS` a Zebra printer accepts.
pub const MAX_FIELD_BYTES: usize = 3072;

/// Whether `b` must be written as `_XX` inside an `^FH` field.
fn needs_escape(b: u8) -> bool {
    matches!(b, b'^' | b'~' | b'_') || b < 0x20 || b == 0x7f
}

/// Bytes `c` takes once escaped.
fn escaped_len(c: char) -> usize {
    let mut buf = [0u8; 4];
    c.encode_utf8(&mut buf)
        .bytes()
        .map(|b| if needs_escape(b) { 3 } else { 1 })
        .sum()
}

/// Appends `c` to `out`, escaped for `^FH`.
fn push_escaped(out: &mut String, c: char) {
    let mut buf = [0u8; 4];
    for &b in c.encode_utf8(&mut buf).as_bytes() {
        if needs_escape(b) {
            out.push('_');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        } else {
            // Only ASCII bytes need escaping, so a non-escaped byte of a multi-byte
            // character means the whole character is plain: push it once.
            out.push(c);
            return;
        }
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Escapes `text` for an `^FH` field, keeping at most `max_chars` characters and at most
/// `max_bytes` escaped bytes. The cut falls on a character boundary, never inside a UTF-8
/// sequence or an `_XX` escape.
pub fn escape_field(text: &str, max_chars: usize, max_bytes: usize) -> String {
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n >= max_chars || out.len() + escaped_len(c) > max_bytes {
            break;
        }
        push_escaped(&mut out, c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(escape_field(input, usize::MAX, usize::MAX), expected);
    }

    #[test]
    fn command_characters_and_control_bytes_become_hex_escapes() {
        check("^XA~JA_", "_5EXA_7EJA_5F");
        check("a\r\nb\x7f\x00", "a_0D_0Ab_7F_00");
        check("plain text, 5/8 (ok)", "plain text, 5/8 (ok)");
    }

    #[test]
    fn utf8_passes_through_whole() {
        check("Jürgen Groß 東京", "Jürgen Groß 東京");
    }

    #[test]
    fn cut_never_splits_a_character_or_an_escape() {
        assert_eq!(escape_field("ab^c", 10, 4), "ab");
        assert_eq!(escape_field("ab^c", 10, 5), "ab_5E");
        assert_eq!(escape_field("aü", 10, 2), "a");
        assert_eq!(escape_field("abcdef", 3, 100), "abc");
    }

    #[test]
    fn escaped_output_never_holds_a_command_character() {
        let all: String = (0u8..=0x7f).map(char::from).collect();
        let out = escape_field(&all, usize::MAX, usize::MAX);
        assert!(!out.contains('^') && !out.contains('~'), "{out}");
        assert!(out.bytes().all(|b| b >= 0x20 && b != 0x7f), "{out}");
    }
}
