//! SSCC (GS1 Serial Shipping Container Code, AI 00): 18 digits built from an extension
//! digit, the site's GS1 company prefix, a serial reference and a mod-10 check digit.

use std::fmt;

/// Why an SSCC could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsccError {
    /// The extension digit is not 0-9.
    #[error("SSCC extension digit {0} is not 0-9")]
    Extension(u8),
    /// The company prefix is not 4 to 12 digits.
    #[error("GS1 company prefix {0:?} must be 4 to 12 digits, as GS1 assigned it to your company")]
    Prefix(String),
    /// The serial does not fit in the digits the prefix leaves.
    #[error(
        "SSCC serial {serial} does not fit in the {digits} digits left by company prefix {prefix}: the serial range is used up; ask GS1 for another prefix or use another extension digit"
    )]
    SerialOutOfRange {
        /// The serial counter value.
        serial: u64,
        /// Digits available for it.
        digits: usize,
        /// The company prefix.
        prefix: String,
    },
    /// Not 18 digits.
    #[error("{0:?} is not an SSCC: an SSCC has 18 digits")]
    Format(String),
    /// The check digit is wrong.
    #[error("{text:?} is not a valid SSCC: its check digit should be {expected}")]
    CheckDigit {
        /// The digits read.
        text: String,
        /// The right check digit.
        expected: u8,
    },
}

/// GS1 mod-10 check digit of `digits` (ASCII digits): weights 3, 1, 3, ... from the
/// rightmost digit (docs/dev/field-notes.md, "GS1 barcodes").
pub fn gs1_check_digit(digits: &[u8]) -> u8 {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| u32::from(d - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    // The sum mod 10 is below 10, so the cast cannot truncate.
    ((10 - sum % 10) % 10) as u8
}

/// A valid SSCC: 18 ASCII digits with a correct check digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sscc(String);

impl Sscc {
    /// Builds the SSCC for `serial` from the site's `extension` digit and GS1
    /// `company_prefix`. The serial comes from a counter that never repeats (the store
    /// keeps it), so every carton gets its own SSCC.
    pub fn build(extension: u8, company_prefix: &str, serial: u64) -> Result<Sscc, SsccError> {
        if extension > 9 {
            return Err(SsccError::Extension(extension));
        }
        let prefix_ok = (4..=12).contains(&company_prefix.len())
            && company_prefix.bytes().all(|b| b.is_ascii_digit());
        if !prefix_ok {
            return Err(SsccError::Prefix(company_prefix.to_owned()));
        }
        let digits = 16 - company_prefix.len();
        let reference = format!("{serial:0digits$}");
        if reference.len() > digits {
            return Err(SsccError::SerialOutOfRange {
                serial,
                digits,
                prefix: company_prefix.to_owned(),
            });
        }
        let mut s = format!("{extension}{company_prefix}{reference}");
        let check = gs1_check_digit(s.as_bytes());
        s.push(char::from(b'0' + check));
        Ok(Sscc(s))
    }

    /// Reads an SSCC from its 18 digits, checking the check digit.
    pub fn parse(text: &str) -> Result<Sscc, SsccError> {
        if text.len() != 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SsccError::Format(text.to_owned()));
        }
        let expected = gs1_check_digit(&text.as_bytes()[..17]);
        if text.as_bytes()[17] - b'0' != expected {
            return Err(SsccError::CheckDigit {
                text: text.to_owned(),
                expected,
            });
        }
        Ok(Sscc(text.to_owned()))
    }

    /// The 18 digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The GS1 Digital Link URI of this SSCC, for the label's QR code.
    pub fn digital_link(&self) -> String {
        format!("https://id.gs1.org/00/{}", self.0)
    }
}

impl fmt::Display for Sscc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_sscc_of_the_protocol_example() {
        let s = Sscc::build(3, "4012345", 1).unwrap();
        assert_eq!(s.as_str(), "340123450000000017");
        assert_eq!(s.digital_link(), "https://id.gs1.org/00/340123450000000017");
    }

    #[test]
    fn check_digit_matches_the_gs1_example() {
        // GS1 General Specifications example SSCC (00)106141411234567897.
        assert_eq!(gs1_check_digit(b"10614141123456789"), 7);
        assert!(Sscc::parse("106141411234567897").is_ok());
    }

    #[test]
    fn a_wrong_check_digit_or_length_is_refused() {
        assert!(matches!(
            Sscc::parse("106141411234567890"),
            Err(SsccError::CheckDigit { expected: 7, .. })
        ));
        assert!(matches!(Sscc::parse("12345"), Err(SsccError::Format(_))));
        assert!(matches!(
            Sscc::parse("10614141123456789x"),
            Err(SsccError::Format(_))
        ));
    }

    #[test]
    fn a_serial_too_large_for_the_prefix_is_refused() {
        let e = Sscc::build(0, "123456789012", 10_000).unwrap_err();
        assert!(matches!(e, SsccError::SerialOutOfRange { digits: 4, .. }));
        assert!(Sscc::build(0, "123456789012", 9_999).is_ok());
        assert!(matches!(
            Sscc::build(0, "12a4567", 1),
            Err(SsccError::Prefix(_))
        ));
        assert!(matches!(
            Sscc::build(10, "1234567", 1),
            Err(SsccError::Extension(10))
        ));
    }

    #[test]
    fn every_built_sscc_parses_back() {
        for serial in [0, 1, 9, 10, 99_999, 123_456_789] {
            let s = Sscc::build(5, "4012345", serial).unwrap();
            assert_eq!(Sscc::parse(s.as_str()).unwrap(), s);
        }
    }
}
