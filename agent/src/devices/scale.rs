//! Serial shipping scales: the pure line parser [`parse_line`], the pure [`Settle`] filter
//! that turns a scale's continuous output into one event per settled weight, and the
//! blocking reader [`run`], which reuses the scanner's serial reader loop
//! ([`crate::devices::scanner::run`]: open, read, reopen after an unplug, split lines).
//!
//! The format is the comma-separated "status header" family of continuous output that A&D
//! (`ST,+00001.25 kg`) and most indicator heads (CAS, Mettler-Toledo "Continuous" on
//! low-cost bench scales, the many Chinese XK3190-type indicators: `ST,GS,+  1.250kg`)
//! send, one line per reading, ending in CR LF:
//!
//! ```text
//! ST,GS,+  1.250kg      stable, gross 1.25 kg
//! US,NT,+  1.248kg      unstable (still moving): never delivered
//! OL,GS,+  9.999kg      overload: an error
//! ST,+00125.0  g        A&D, one header
//!   1250 g              no header (simple scales): stable after 3 equal lines
//! ```
//!
//! Header 1 is `ST` (stable), `US` (unstable) or `OL` (overload); an optional header 2 is
//! `GS`/`G` (gross), `NT`/`N` (net) or `TR`/`T` (tare). Then a sign, the number (spaces
//! and leading zeros allowed, `.` decimals) and the unit `kg`, `g` or `lb`, converted to
//! whole grams (rounded). A line without a header carries no stability flag, so it counts
//! as stable only once the same weight came [`PLAIN_STABLE_LINES`] times in a row.
//!
//! Invariants: only stable readings are delivered; a bad line is a [`LineError`] that is
//! logged and skipped, never a panic; a weight is delivered once when it settles, not on
//! every line of the continuous output (a stable reading repeats ten times a second).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use serde::Deserialize;

use crate::devices::scanner::{self, ScannerConfig, ScannerEvent};

/// The heaviest carton the station accepts, in grams (the pack workflow's limit).
pub const MAX_GRAMS: u32 = 999_999;

/// Equal readings in a row that make a header-less line stable.
pub const PLAIN_STABLE_LINES: u8 = 3;

/// `[scale]` in the agent's config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleConfig {
    /// Serial port, e.g. `/dev/ttyUSB2` or a udev name like `/dev/floorhand-scale`.
    pub port: PathBuf,
    /// Baud rate (most scales: 9600, 8N1).
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// How often to try reopening an unplugged scale, in milliseconds.
    #[serde(default = "default_reopen_ms")]
    pub reopen_ms: u64,
}

fn default_baud() -> u32 {
    9600
}
fn default_reopen_ms() -> u64 {
    1000
}

/// Whether the scale says the reading has settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stability {
    /// `ST`.
    Stable,
    /// `US`: the pan is still moving.
    Unstable,
    /// No header: the scale does not say.
    Unknown,
}

/// One parsed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Stable or not.
    pub stability: Stability,
    /// Whole grams.
    pub grams: u32,
}

/// Why a line is not a usable reading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The scale reports an overload.
    #[error("scale overload (OL): take weight off the scale")]
    Overload,
    /// A negative weight (a zero that drifted, or a tare larger than the load).
    #[error("negative weight {0:?}: empty the scale and zero it")]
    Negative(String),
    /// Heavier than the station accepts, or too many digits.
    #[error("weight {0:?} is over the {MAX_GRAMS} g a carton may weigh")]
    OverRange(String),
    /// A unit other than kg, g or lb.
    #[error("unit {0:?} is not kg, g or lb: set the scale to kg, g or lb")]
    Unit(String),
    /// Not the expected format at all.
    #[error("not a scale reading: {0:?} (expected e.g. \"ST,GS,+  1.250kg\")")]
    Garbage(String),
}

/// Parses one line (without its line ending; surrounding whitespace is ignored). Pure.
pub fn parse_line(line: &[u8]) -> Result<Reading, LineError> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_matches(|c: char| c.is_whitespace() || c.is_control());
    let garbage = || LineError::Garbage(text.chars().take(40).collect());
    let mut fields: Vec<&str> = text.split(',').map(str::trim).collect();
    let value = fields.pop().ok_or_else(garbage)?;
    let stability = match fields.as_slice() {
        [] => Stability::Unknown,
        [h1, rest @ ..] if rest.len() <= 1 => {
            if let [h2] = rest
                && !matches!(
                    h2.to_ascii_uppercase().as_str(),
                    "GS" | "G" | "NT" | "N" | "TR" | "T"
                )
            {
                return Err(garbage());
            }
            match h1.to_ascii_uppercase().as_str() {
                "ST" => Stability::Stable,
                "US" => Stability::Unstable,
                "OL" => return Err(LineError::Overload),
                _ => return Err(garbage()),
            }
        }
        _ => return Err(garbage()),
    };
    let grams = parse_weight(value).map_err(|e| match e {
        LineError::Garbage(_) => garbage(),
        other => other,
    })?;
    Ok(Reading { stability, grams })
}

/// `+  1.250kg`, `-0.010 kg`, `1250 g`, `2.5lb`: sign, number, unit, to whole grams.
fn parse_weight(value: &str) -> Result<u32, LineError> {
    let garbage = || LineError::Garbage(value.to_string());
    let unit_at = value
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or_else(garbage)?;
    let (number, unit) = value.split_at(unit_at);
    let number: String = number.chars().filter(|c| *c != ' ').collect();
    let (negative, digits) = match number.as_bytes().first() {
        Some(b'-') => (true, &number[1..]),
        Some(b'+') => (false, &number[1..]),
        _ => (false, number.as_str()),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(garbage());
    }
    // Hundred-thousandths of a gram per unit: exact for lb (453.59237 g).
    let per_unit: u128 = match unit.trim().to_ascii_lowercase().as_str() {
        "g" => 100_000,
        "kg" => 100_000_000,
        "lb" | "lbs" => 45_359_237,
        other => return Err(LineError::Unit(other.to_string())),
    };
    let over = || LineError::OverRange(value.trim().to_string());
    // More digits than any scale sends: refuse before the arithmetic could overflow.
    let int = int.trim_start_matches('0');
    if int.len() + frac.len() > 18 {
        return Err(over());
    }
    let mantissa: u128 = format!("{int}{frac}0")
        .parse::<u128>()
        .map_err(|_| garbage())?
        / 10;
    let divisor = 10u128.pow(u32::try_from(frac.len()).map_err(|_| over())?) * 100_000;
    let grams = (mantissa * per_unit + divisor / 2) / divisor;
    if negative && mantissa > 0 {
        return Err(LineError::Negative(value.trim().to_string()));
    }
    match u32::try_from(grams) {
        Ok(g) if g <= MAX_GRAMS => Ok(g),
        _ => Err(over()),
    }
}

/// Turns a stream of readings into settled weights: a stable reading is delivered once
/// when it settles (it differs from the last delivered one, or the pan moved in between),
/// so a weight that stays on the scale is delivered once, not on every line. An empty
/// scale (0 g) is delivered too, so the station knows the carton is off.
#[derive(Debug, Clone, Default)]
pub struct Settle {
    last: Option<u32>,
    plain: Option<(u32, u8)>,
}

impl Settle {
    /// Feeds one reading; returns the weight to deliver, if it just settled.
    pub fn feed(&mut self, r: Reading) -> Option<u32> {
        let stable = match r.stability {
            Stability::Stable => true,
            Stability::Unstable => {
                // The pan moved: the weight it settles on next is delivered, even if equal.
                self.last = None;
                false
            }
            Stability::Unknown => {
                let n = match self.plain {
                    Some((g, n)) if g == r.grams => n.saturating_add(1),
                    _ => {
                        self.last = None;
                        1
                    }
                };
                self.plain = Some((r.grams, n));
                n >= PLAIN_STABLE_LINES
            }
        };
        if !stable || self.last == Some(r.grams) {
            return None;
        }
        self.last = Some(r.grams);
        Some(r.grams)
    }

    /// Forgets the last weight (after a disconnect), so the next one is delivered.
    pub fn reset(&mut self) {
        *self = Settle::default();
    }
}

/// What the scale reader reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScaleEvent {
    /// A stable weight in grams, once per settle (0: the scale is empty).
    Weight(u32),
    /// The scale is gone (unplugged, or not there at start).
    Disconnected(String),
    /// It is back.
    Reconnected,
}

/// The serial line settings the scanner reader needs: lines end in LF (the CR of CR LF is
/// trimmed by the parser).
fn line_config(config: &ScaleConfig) -> ScannerConfig {
    ScannerConfig {
        suffix: "\n".into(),
        reopen_ms: config.reopen_ms,
        ..ScannerConfig::serial(config.port.clone(), config.baud)
    }
}

/// Reads the scale until `stop` is set or `sink` returns false; unplugs and bad lines are
/// logged, never fatal. Blocking: run it on its own thread.
pub fn run(config: &ScaleConfig, stop: &AtomicBool, mut sink: impl FnMut(ScaleEvent) -> bool) {
    let mut settle = Settle::default();
    let name = config.port.display().to_string();
    let lines = line_config(config);
    let result = scanner::run(&lines, stop, |ev| match ev {
        ScannerEvent::Scan(line) => match parse_line(&line) {
            Ok(r) => match settle.feed(r) {
                Some(g) => sink(ScaleEvent::Weight(g)),
                None => true,
            },
            Err(e) => {
                tracing::warn!("scale {name}: {e}; line skipped");
                true
            }
        },
        ScannerEvent::Rejected(why) => {
            tracing::warn!("scale {name}: {why}; line skipped");
            true
        }
        ScannerEvent::Disconnected(why) => {
            settle.reset();
            sink(ScaleEvent::Disconnected(why))
        }
        ScannerEvent::Reconnected => sink(ScaleEvent::Reconnected),
    });
    if let Err(e) = result {
        tracing::error!("scale {name}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, expected: Result<(Stability, u32), LineError>) {
        let got = parse_line(line.as_bytes()).map(|r| (r.stability, r.grams));
        assert_eq!(got, expected, "{line:?}");
    }

    use Stability::{Stable, Unknown, Unstable};

    #[test]
    fn stable_and_unstable_lines_parse_to_grams_in_every_unit() {
        check("ST,GS,+  1.250kg\r", Ok((Stable, 1250)));
        check("US,GS,+  1.248kg", Ok((Unstable, 1248)));
        check("ST,NT,+0001.250 kg", Ok((Stable, 1250)));
        check("ST,+00125.0  g", Ok((Stable, 125)));
        check("st,gs,+ 0.0004kg", Ok((Stable, 0)));
        check("ST,GS,+   2.50lb", Ok((Stable, 1134)));
        check("ST,GS,+   1 lb", Ok((Stable, 454)));
        check("  1250 g", Ok((Unknown, 1250)));
        check("1.5kg", Ok((Unknown, 1500)));
        check("ST,GS,-  0.000kg", Ok((Stable, 0)));
    }

    #[test]
    fn garbage_overload_negative_and_overflow_are_errors_not_panics() {
        check("OL,GS,+  9.999kg", Err(LineError::Overload));
        check(
            "ST,GS,-  0.010kg",
            Err(LineError::Negative("-  0.010kg".into())),
        );
        check(
            "ST,GS,+1000.000kg",
            Err(LineError::OverRange("+1000.000kg".into())),
        );
        check(
            "ST,GS,+99999999999999999999999999999kg",
            Err(LineError::OverRange(
                "+99999999999999999999999999999kg".into(),
            )),
        );
        check("ST,GS,+  12 pcs", Err(LineError::Unit("pcs".into())));
        check("ST,GS,+1kgx", Err(LineError::Unit("kgx".into())));
        for bad in [
            "",
            "hello",
            "ST,GS,kg",
            "ST,GS,+1.2.3kg",
            "XX,GS,+1kg",
            "ST,ZZ,+1kg",
            "ST,GS,NT,+1kg",
            "\u{0}\u{1}\u{ff}",
        ] {
            assert!(
                matches!(parse_line(bad.as_bytes()), Err(LineError::Garbage(_))),
                "{bad:?}"
            );
        }
        // Arbitrary bytes never panic.
        for n in 0..=255u8 {
            let _ = parse_line(&[n, b',', n, b'1', b'k', b'g', n]);
        }
    }

    #[test]
    fn a_weight_is_delivered_once_when_it_settles_and_never_while_unstable() {
        let mut s = Settle::default();
        let r = |stability, grams| Reading { stability, grams };
        let got: Vec<Option<u32>> = [
            r(Unstable, 900),
            r(Unstable, 1240),
            r(Stable, 1250),
            r(Stable, 1250),
            r(Unstable, 1251),
            r(Stable, 1250),
            r(Stable, 0),
            r(Stable, 1250),
        ]
        .into_iter()
        .map(|x| s.feed(x))
        .collect();
        assert_eq!(
            got,
            [
                None,
                None,
                Some(1250),
                None,
                None,
                Some(1250),
                Some(0),
                Some(1250)
            ]
        );
    }

    #[test]
    fn a_header_less_weight_is_stable_after_three_equal_lines() {
        let mut s = Settle::default();
        let r = |grams| Reading {
            stability: Unknown,
            grams,
        };
        let got: Vec<Option<u32>> = [500, 500, 700, 700, 700, 700, 700, 500, 700, 700, 700]
            .into_iter()
            .map(|g| s.feed(r(g)))
            .collect();
        assert_eq!(
            got,
            [
                None,
                None,
                None,
                None,
                Some(700),
                None,
                None,
                None,
                None,
                None,
                Some(700)
            ]
        );
    }

    #[test]
    fn config_refuses_unknown_keys_and_defaults_the_baud() {
        let c: ScaleConfig = toml::from_str("port = \"/dev/ttyUSB2\"").expect("valid");
        assert_eq!(c.baud, 9600);
        let e = toml::from_str::<ScaleConfig>("port = \"/dev/x\"\nbaudrate = 1").unwrap_err();
        assert!(e.to_string().contains("unknown field `baudrate`"), "{e}");
    }
}
