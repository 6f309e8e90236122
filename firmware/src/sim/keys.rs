//! What a line typed on the host runner's stdin means.

use floorhand_protocol::link::Key;

/// One input typed as a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Key presses, in order (a line of digits presses each digit).
    Keys(Vec<Key>),
    /// A barcode, as if read by a scanner on the terminal.
    Scan(Vec<u8>),
    /// Stop the runner.
    Quit,
}

/// The help text for the typed inputs, shown by `--help`.
pub const KEYS_HELP: &str = "Keys, one per line on stdin: digits (a line of digits presses each), \
enter (or an empty line), b = back, u = up, d = down, c = clear, f1..f4, \
scan <data> = a barcode read by a scanner, q = quit.";

/// Parses a line typed on stdin; `Err` names what was not understood.
pub fn parse(line: &str) -> Result<Input, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    if let Some(data) = line.strip_prefix("scan ") {
        return Ok(Input::Scan(data.as_bytes().to_vec()));
    }
    let word = line.trim().to_ascii_lowercase();
    let key = match word.as_str() {
        "" | "enter" | "e" => Key::Enter,
        "b" | "back" => Key::Back,
        "u" | "up" => Key::Up,
        "d" | "down" => Key::Down,
        "c" | "clear" => Key::Clear,
        "f1" => Key::F(1),
        "f2" => Key::F(2),
        "f3" => Key::F(3),
        "f4" => Key::F(4),
        "q" | "quit" => return Ok(Input::Quit),
        digits if digits.chars().all(|c| c.is_ascii_digit()) => {
            return Ok(Input::Keys(
                digits.bytes().map(|b| Key::Digit(b - b'0')).collect(),
            ));
        }
        other => return Err(format!("unknown key {other:?}. {KEYS_HELP}")),
    };
    Ok(Input::Keys(vec![key]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, expected: Input) {
        assert_eq!(parse(line), Ok(expected), "{line:?}");
    }

    #[test]
    fn typed_lines_become_keys_scans_or_quit() {
        check("7\n", Input::Keys(vec![Key::Digit(7)]));
        check("12", Input::Keys(vec![Key::Digit(1), Key::Digit(2)]));
        check("", Input::Keys(vec![Key::Enter]));
        check("enter", Input::Keys(vec![Key::Enter]));
        check("b", Input::Keys(vec![Key::Back]));
        check("U", Input::Keys(vec![Key::Up]));
        check("d", Input::Keys(vec![Key::Down]));
        check("f3", Input::Keys(vec![Key::F(3)]));
        check(
            "scan 0109506000134352",
            Input::Scan(b"0109506000134352".to_vec()),
        );
        check("q", Input::Quit);
    }

    #[test]
    fn an_unknown_line_is_refused_with_the_key_list() {
        let err = parse("f9").unwrap_err();
        assert!(err.contains("unknown key \"f9\""), "{err}");
        assert!(err.contains("b = back"), "{err}");
    }
}
