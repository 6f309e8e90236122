//! GTINs: EAN-8, UPC-A, UPC-E, EAN-13 and GTIN-14 with their check digits, normalised to
//! GTIN-14 so that every form of the same trade item compares equal.

use std::fmt;

use serde::Serialize;

use super::{BarcodeError, Problem};

/// The GS1 mod-10 check digit of `data` (the digits before the check digit): weights
/// 3,1,3,... from the rightmost data digit (GS1 General Specifications 7.9.1, and
/// docs/dev/field-notes.md, "GS1 barcodes"). Returns `None` if `data` holds a non-digit.
pub fn check_digit(data: &[u8]) -> Option<u8> {
    let mut sum: u32 = 0;
    for (i, &b) in data.iter().rev().enumerate() {
        if !b.is_ascii_digit() {
            return None;
        }
        let d = u32::from(b - b'0');
        sum += if i % 2 == 0 { 3 * d } else { d };
    }
    Some(((10 - sum % 10) % 10) as u8)
}

/// Checks the last digit of `digits` against the others. On a mismatch the error names
/// the digit found and the one expected, at the byte offset `pos` of `digits`' start.
pub(crate) fn verify(digits: &str, ai: Option<&str>, pos: usize) -> Result<(), BarcodeError> {
    let bytes = digits.as_bytes();
    let Some((&last, data)) = bytes.split_last() else {
        return Err(BarcodeError::new(ai, Some(pos), Problem::Empty));
    };
    let expected =
        check_digit(data).ok_or_else(|| BarcodeError::new(ai, Some(pos), Problem::NotNumeric))?;
    let found = last.wrapping_sub(b'0');
    if found != expected {
        return Err(BarcodeError::new(
            ai,
            Some(pos),
            Problem::CheckDigit {
                found: char::from(last),
                expected,
            },
        ));
    }
    Ok(())
}

/// A GTIN written as 14 digits (shorter GTINs zero-padded on the left), check digit
/// verified. Two `Gtin14`s are equal exactly when they name the same trade item.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Gtin14(String);

impl Gtin14 {
    /// Parses an 8, 12, 13 or 14 digit GTIN (EAN-8, UPC-A, EAN-13, GTIN-14) with its check
    /// digit. A UPC-E symbol is not a GTIN by itself: expand it with [`upce_to_upca`].
    pub fn parse(digits: &str) -> Result<Self, BarcodeError> {
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BarcodeError::new(None, Some(0), Problem::NotNumeric));
        }
        if ![8, 12, 13, 14].contains(&digits.len()) {
            return Err(BarcodeError::new(
                None,
                Some(0),
                Problem::GtinLength { got: digits.len() },
            ));
        }
        verify(digits, None, 0)?;
        Ok(Self(format!("{digits:0>14}")))
    }

    /// The 14 digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Gtin14 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which retail symbol a GTIN came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum GtinFormat {
    /// 8 digits.
    Ean8,
    /// 12 digits.
    UpcA,
    /// 8 digits (number system 0 or 1, six digits, check digit), zero-suppressed UPC-A.
    UpcE,
    /// 13 digits.
    Ean13,
    /// 14 digits (ITF-14, or AI 01 without the AI).
    Gtin14,
}

/// Expands an 8-digit UPC-E (`0` or `1`, six data digits, check digit) to its 12-digit
/// UPC-A, checking the check digit (which UPC-E shares with the expanded UPC-A).
/// The rule is the zero-suppression table of GS1 General Specifications 5.2.2.4.2.
pub fn upce_to_upca(upce: &str) -> Result<String, BarcodeError> {
    let b = upce.as_bytes();
    if b.len() != 8 || !b.iter().all(u8::is_ascii_digit) {
        return Err(BarcodeError::new(None, Some(0), Problem::UpcE));
    }
    if b[0] != b'0' && b[0] != b'1' {
        return Err(BarcodeError::new(None, Some(0), Problem::UpcENumberSystem));
    }
    let d = |i: usize| char::from(b[i]);
    let (d1, d2, d3, d4, d5, d6) = (d(1), d(2), d(3), d(4), d(5), d(6));
    let body: String = match b[6] {
        b'0'..=b'2' => [d1, d2, d6, '0', '0', '0', '0', d3, d4, d5]
            .iter()
            .collect(),
        b'3' => [d1, d2, d3, '0', '0', '0', '0', '0', d4, d5]
            .iter()
            .collect(),
        b'4' => [d1, d2, d3, d4, '0', '0', '0', '0', '0', d5]
            .iter()
            .collect(),
        _ => [d1, d2, d3, d4, d5, '0', '0', '0', '0', d6]
            .iter()
            .collect(),
    };
    let upca = format!("{}{}{}", d(0), body, d(7));
    verify(&upca, None, 0)?;
    Ok(upca)
}
