//! Validation of one AI's data against its syntax: character sets, lengths, check digits,
//! dates and implied decimals. Shared by element strings, the bracketed form and Digital
//! Link URIs, so the three forms accept exactly the same data.

use super::ai::{AiDef, Syntax, is_cset82};
use super::gtin::verify;
use super::{BarcodeError, Date, Element, Problem};

/// Checks `data` for the AI `code` (defined by `def`), found at byte `pos` of the input.
pub(crate) fn element(
    def: &'static AiDef,
    code: &str,
    data: &str,
    pos: usize,
) -> Result<Element, BarcodeError> {
    let ai = Some(code);
    let err = |at: usize, problem| BarcodeError::new(ai, Some(pos + at), problem);
    let mut el = Element {
        ai: code.to_string(),
        title: def.title,
        data: data.to_string(),
        pos,
        date: None,
        decimal: None,
        unit: def.unit,
    };
    if data.is_empty() {
        return Err(err(0, Problem::Empty));
    }
    let digits = |min: usize, max: usize| -> Result<(), BarcodeError> {
        if let Some(i) = data.bytes().position(|b| !b.is_ascii_digit()) {
            return Err(err(
                i,
                Problem::NotDigit {
                    ch: char_at(data, i),
                },
            ));
        }
        length(data.len(), min, max).map_err(|p| err(0, p))
    };
    match def.syntax {
        Syntax::NCheck(n) => {
            digits(n, n)?;
            verify(data, ai, pos)?;
        }
        Syntax::N(n) => digits(n, n)?,
        Syntax::NVar(n) => digits(1, n)?,
        Syntax::X(n) => cset82(data, 1, n).map_err(|(i, p)| err(i, p))?,
        Syntax::Date => {
            digits(6, 6)?;
            el.date = Some(date(data, true).map_err(|p| err(0, p))?);
        }
        Syntax::Measure => {
            digits(6, 6)?;
            let decimals = usize::from(code.as_bytes()[3] - b'0');
            el.decimal = Some(decimal(data, decimals));
        }
        Syntax::Country => {
            digits(3, 3)?;
        }
        Syntax::CountryX(n) => {
            let (cc, rest) = data.split_at(data.len().min(3));
            if cc.len() < 3 || !cc.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err(0, Problem::Country));
            }
            cset82(rest, 1, n).map_err(|(i, p)| err(3 + i, p))?;
        }
        Syntax::Countries => {
            digits(3, 15)?;
            if !data.len().is_multiple_of(3) {
                return Err(err(0, Problem::Countries));
            }
        }
        Syntax::DateTime => {
            digits(10, 10)?;
            let d = date(&data[..6], false).map_err(|p| err(0, p))?;
            time(&data[6..]).map_err(|p| err(6, p))?;
            el.date = Some(d);
        }
        Syntax::ProdTime => {
            digits(8, 12)?;
            if !data.len().is_multiple_of(2) {
                return Err(err(
                    0,
                    Problem::Length {
                        min: 8,
                        max: 12,
                        got: data.len(),
                    },
                ));
            }
            let d = date(&data[..6], false).map_err(|p| err(0, p))?;
            time(&data[6..]).map_err(|p| err(6, p))?;
            el.date = Some(d);
        }
        Syntax::Grai => {
            let head = data.get(..14).unwrap_or(data);
            if let Some(i) = head.bytes().position(|b| !b.is_ascii_digit()) {
                return Err(err(
                    i,
                    Problem::NotDigit {
                        ch: char_at(data, i),
                    },
                ));
            }
            if head.len() < 14 {
                return Err(err(
                    0,
                    Problem::Length {
                        min: 14,
                        max: 30,
                        got: data.len(),
                    },
                ));
            }
            if !head.starts_with('0') {
                return Err(err(0, Problem::GraiZero));
            }
            verify(&head[1..], ai, pos + 1)?;
            if data.len() > 14 {
                cset82(&data[14..], 1, 16).map_err(|(i, p)| err(14 + i, p))?;
            }
        }
    }
    Ok(el)
}

fn char_at(s: &str, i: usize) -> char {
    s[i..].chars().next().unwrap_or('?')
}

fn length(got: usize, min: usize, max: usize) -> Result<(), Problem> {
    if got < min || got > max {
        return Err(Problem::Length { min, max, got });
    }
    Ok(())
}

fn cset82(s: &str, min: usize, max: usize) -> Result<(), (usize, Problem)> {
    if let Some(i) = s.bytes().position(|b| !is_cset82(b)) {
        return Err((i, Problem::NotCset82 { ch: char_at(s, i) }));
    }
    length(s.len(), min, max).map_err(|p| (0, p))
}

/// Parses YYMMDD. GS1 General Specifications 7.12 maps YY to a century with a window
/// around today's year; the workflow core has no clock, so we fix the window at 2000:
/// 00-50 are 20YY, 51-99 are 19YY (right for expiry and production dates until 2050).
pub(crate) fn date(s: &str, day_zero_ok: bool) -> Result<Date, Problem> {
    let two = |i: usize| -> u8 {
        let b = s.as_bytes();
        (b[i] - b'0') * 10 + (b[i + 1] - b'0')
    };
    if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Problem::DateFormat);
    }
    let yy = u16::from(two(0));
    let year = if yy <= 50 { 2000 + yy } else { 1900 + yy };
    let (month, day) = (two(2), two(4));
    if !(1..=12).contains(&month) {
        return Err(Problem::Month { month });
    }
    if day == 0 && !day_zero_ok || day > days_in_month(year, month) {
        return Err(Problem::Day { day });
    }
    Ok(Date { year, month, day })
}

fn time(s: &str) -> Result<(), Problem> {
    let b = s.as_bytes();
    let limits = [24u8, 60, 60];
    for (i, pair) in b.chunks(2).enumerate() {
        let v = (pair[0] - b'0') * 10 + pair.get(1).map_or(0, |d| d - b'0');
        if v >= limits[i.min(2)] {
            return Err(Problem::Time);
        }
    }
    Ok(())
}

/// Days in `month` of `year` (Gregorian).
pub(crate) fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

/// Six digits with `decimals` implied decimals, written out: `001250`, 3 -> `1.250`.
fn decimal(digits: &str, decimals: usize) -> String {
    let (int, frac) = digits.split_at(digits.len() - decimals);
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    }
}
