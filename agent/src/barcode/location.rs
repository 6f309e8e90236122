//! Does an input prove the picker is at a task's location? Either the location barcode
//! (compared without separators or case, since labels print `A-12-03-B` and barcodes often
//! carry `A1203B`) or the location's two-digit check code, as voice picking uses, scanned
//! from a check-digit label or typed on the keypad.

/// What a task says about its location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocationTarget<'a> {
    /// Location code as printed, e.g. `A-12-03-B`.
    pub code: &'a str,
    /// Its check code, 0-99 (protocol `Task::location_check`).
    pub check: u8,
}

/// How an input matched a location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationMatch {
    /// The location's own barcode.
    Code,
    /// The location's check code (one or two digits; `7` and `07` both mean 7).
    CheckCode,
    /// Something else: the picker is elsewhere or scanned the wrong label.
    No,
}

impl LocationTarget<'_> {
    /// Matches `input` (a scan's text or digits typed) against this location.
    pub fn matches(&self, input: &str) -> LocationMatch {
        let input = input.trim();
        if !input.is_empty() && squash(input) == squash(self.code) {
            return LocationMatch::Code;
        }
        let is_check = (1..=2).contains(&input.len()) && input.bytes().all(|b| b.is_ascii_digit());
        if is_check && input.parse::<u8>().ok() == Some(self.check) {
            return LocationMatch::CheckCode;
        }
        LocationMatch::No
    }
}

fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '-' | ' ' | '.' | '/' | '_'))
        .flat_map(char::to_uppercase)
        .collect()
}
