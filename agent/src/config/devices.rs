//! The device sections of the configuration file (`[scanner]`, `[terminal]`, `[printer]`,
//! `[scale]`), in one style: each names its connection with one key for its kind
//! (`serial` with `baud`, `tcp`, `wedge`, `input_device`), and each becomes the device
//! module's own settings once, at load ([`DeviceSections`]).
//!
//! Files written before that style keep loading: the scanner's `source = { kind = .. }`
//! table and the terminal's and the scale's `port`. A section may use one form or the
//! other, not both; every message names the key the file used.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{MAX_BAUD, Number};
use crate::devices::printer::{PrinterConfig, Transport};
use crate::devices::scale::ScaleConfig;
use crate::devices::scanner::{Framer, ScannerConfig, Source};
use crate::devices::terminal::TerminalConfig;

/// A section that cannot work: the key to fix and what is wrong.
pub(super) type Bad = (&'static str, String);

/// A serial scanner's baud rate when the file gives none (as `devices::scanner`'s).
const SCANNER_BAUD: u32 = 9600;

/// `[scanner]`: where scans come from, exactly one of `serial` (with `baud`), `wedge` and
/// `input_device` (or the older `source` table), and how each scan is framed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scanner {
    /// A serial scanner's port (USB CDC or UART), e.g. `/dev/floorhand-scanner`.
    pub serial: Option<PathBuf>,
    /// The serial port's baud rate.
    pub baud: Option<u32>,
    /// A keyboard wedge's byte stream: a tty or a FIFO, `-` for standard input.
    pub wedge: Option<PathBuf>,
    /// A USB HID keyboard-wedge scanner's input device (`/dev/input/...`).
    pub input_device: Option<PathBuf>,
    /// The older form: `source = { kind = "serial", path = "...", baud = 9600 }`.
    pub source: Option<Source>,
    /// Bytes the scanner sends before each barcode.
    pub prefix: Option<String>,
    /// Bytes that end each barcode.
    pub suffix: Option<String>,
    /// Longest barcode accepted.
    pub max_len: Option<usize>,
    /// The ASCII character a keyboard wedge sends for GS.
    pub gs_substitute: Option<char>,
    /// Drop a scan identical to the previous one within this many ms.
    pub bounce_ms: Option<u64>,
    /// How often to try reopening an unplugged scanner, in ms.
    pub reopen_ms: Option<u64>,
}

/// `[terminal]`: the display terminal's serial port (`serial`, or the older `port`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Terminal {
    /// Serial port of the display terminal, e.g. `/dev/ttyAMA0`.
    pub serial: Option<String>,
    /// The older name of `serial`.
    pub port: Option<String>,
    /// Baud rate.
    #[serde(default = "default_terminal_baud")]
    pub baud: u32,
}

fn default_terminal_baud() -> u32 {
    115_200
}

/// `[printer]`: exactly one of `tcp` and `serial`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Printer {
    /// Raw TCP, `host:9100`.
    pub tcp: Option<String>,
    /// Serial port, e.g. `/dev/ttyUSB0`.
    pub serial: Option<String>,
    /// Baud rate of the serial port.
    #[serde(default = "default_printer_baud")]
    pub baud: u32,
    /// Milliseconds to wait for a connection, a write or a `~HS` answer.
    #[serde(default = "default_printer_timeout")]
    pub timeout_ms: u64,
    /// Milliseconds between attempts while the printer has a fault.
    #[serde(default = "default_printer_retry")]
    pub retry_ms: u64,
}

fn default_printer_baud() -> u32 {
    9600
}
fn default_printer_timeout() -> u64 {
    2000
}
fn default_printer_retry() -> u64 {
    2000
}

/// `[scale]`: a serial shipping scale (`serial`, or the older `port`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    /// Serial port of the scale, e.g. `/dev/floorhand-scale`.
    pub serial: Option<PathBuf>,
    /// The older name of `serial`.
    pub port: Option<PathBuf>,
    /// Baud rate (most scales: 9600, 8N1).
    #[serde(default = "default_scale_baud")]
    pub baud: u32,
    /// How often to try reopening an unplugged scale, in ms.
    #[serde(default = "default_scale_reopen_ms")]
    pub reopen_ms: u64,
}

fn default_scale_baud() -> u32 {
    9600
}
fn default_scale_reopen_ms() -> u64 {
    1000
}

/// Every device section in the file, as the device's own settings, worked out once by
/// [`super::Config::parse`]: `floorhand run` takes those its role uses
/// ([`super::StationSettings`]), `floorhand doctor` opens them all.
#[derive(Debug, Clone, Default)]
pub struct DeviceSections {
    /// `[scanner]`.
    pub scanner: Option<Section<ScannerConfig>>,
    /// `[terminal]`.
    pub terminal: Option<Section<TerminalConfig>>,
    /// `[printer]`.
    pub printer: Option<Section<PrinterConfig>>,
    /// `[scale]`.
    pub scale: Option<Section<ScaleConfig>>,
}

/// One device's settings and where the file names its port, for messages that tell a
/// technician which line to check.
#[derive(Debug, Clone)]
pub struct Section<T> {
    /// The device's settings.
    pub settings: T,
    /// The key naming its port or address, e.g. `terminal.serial`.
    pub port_key: &'static str,
}

/// The one key of `keys` (name, value) that is set; `Err` names what is wrong when none
/// or more than one is. `shown` lists the keys to use, for the message (an older form
/// still loads, but is not offered).
fn one_of<T>(
    section: &'static str,
    shown: &str,
    keys: Vec<(&'static str, Option<T>)>,
) -> Result<(&'static str, T), Bad> {
    let mut set = keys.into_iter().filter_map(|(k, v)| v.map(|v| (k, v)));
    match (set.next(), set.next()) {
        (Some(one), None) => Ok(one),
        (None, _) => Err((section, format!("set {shown}"))),
        (Some((first, _)), Some((second, _))) => Err((
            second,
            format!("set only one of {shown} ({first} is set already)"),
        )),
    }
}

impl Scanner {
    /// Where scans come from, and the key that says it.
    fn source(&self) -> Result<(Source, &'static str), Bad> {
        let serial = self.serial.clone().map(|path| Source::Serial {
            path,
            baud: self.baud.unwrap_or(SCANNER_BAUD),
        });
        let wedge = self.wedge.clone().map(|path| Source::Wedge {
            path: (path.as_os_str() != "-").then_some(path),
        });
        let input = self
            .input_device
            .clone()
            .map(|path| Source::InputDevice { path });
        let (key, source) = one_of(
            "scanner",
            "one of scanner.serial, scanner.wedge or scanner.input_device",
            vec![
                ("scanner.serial", serial),
                ("scanner.wedge", wedge),
                ("scanner.input_device", input),
                ("scanner.source", self.source.clone()),
            ],
        )?;
        if self.baud.is_some() && key != "scanner.serial" {
            return Err((
                "scanner.baud",
                "only a serial scanner (scanner.serial) has a baud rate".into(),
            ));
        }
        let key = if key == "scanner.source" {
            "the path in scanner.source"
        } else {
            key
        };
        Ok((source, key))
    }

    /// The scanner's settings (the scanner module's defaults for what the file leaves out).
    fn settings(&self) -> Result<Section<ScannerConfig>, Bad> {
        let (source, port_key) = self.source()?;
        let base = ScannerConfig::serial(PathBuf::new(), SCANNER_BAUD);
        let settings = ScannerConfig {
            source,
            prefix: self.prefix.clone().unwrap_or(base.prefix),
            suffix: self.suffix.clone().unwrap_or(base.suffix),
            max_len: self.max_len.unwrap_or(base.max_len),
            gs_substitute: self.gs_substitute.or(base.gs_substitute),
            bounce_ms: self.bounce_ms.unwrap_or(base.bounce_ms),
            reopen_ms: self.reopen_ms.unwrap_or(base.reopen_ms),
        };
        if let Err(e) = Framer::new(&settings) {
            return Err(("scanner", e.to_string()));
        }
        Ok(Section { settings, port_key })
    }

    fn numbers(&self, n: &mut Vec<Number>) {
        let base = ScannerConfig::serial(PathBuf::new(), SCANNER_BAUD);
        match (&self.source, self.baud) {
            (Some(Source::Serial { baud, .. }), _) => n.push(Number::new(
                "scanner.source.baud",
                *baud,
                50..=MAX_BAUD,
                "baud",
            )),
            (_, Some(baud)) => n.push(Number::new("scanner.baud", baud, 50..=MAX_BAUD, "baud")),
            _ => {}
        }
        let longest = floorhand_protocol::limits::MAX_SCAN_BYTES as u64;
        n.extend([
            Number::new(
                "scanner.max_len",
                self.max_len.unwrap_or(base.max_len),
                1..=longest,
                "bytes",
            ),
            Number::new(
                "scanner.bounce_ms",
                self.bounce_ms.unwrap_or(base.bounce_ms),
                0..=10_000,
                "ms",
            ),
            Number::new(
                "scanner.reopen_ms",
                self.reopen_ms.unwrap_or(base.reopen_ms),
                10..=60_000,
                "ms",
            ),
        ]);
    }
}

impl Terminal {
    fn settings(&self) -> Result<Section<TerminalConfig>, Bad> {
        let (port_key, path) = one_of(
            "terminal",
            "terminal.serial to the terminal's serial port",
            vec![
                ("terminal.serial", self.serial.clone()),
                ("terminal.port", self.port.clone()),
            ],
        )?;
        if path.is_empty() {
            return Err((port_key, "must name a serial port".into()));
        }
        Ok(Section {
            settings: TerminalConfig {
                path,
                baud: self.baud,
            },
            port_key,
        })
    }
}

impl Printer {
    fn settings(&self) -> Result<Section<PrinterConfig>, Bad> {
        let (transport, port_key) = match (&self.tcp, &self.serial) {
            (Some(_), Some(_)) => {
                return Err((
                    "printer.tcp",
                    "set printer.tcp or printer.serial, not both".into(),
                ));
            }
            (None, None) => {
                return Err((
                    "printer.tcp",
                    "set printer.tcp = \"host:9100\" or printer.serial = \"/dev/...\"".into(),
                ));
            }
            (Some(addr), None) if !addr.contains(':') => {
                return Err((
                    "printer.tcp",
                    format!("{addr:?} has no port: write host:9100"),
                ));
            }
            (Some(addr), None) => (Transport::Tcp(addr.clone()), "printer.tcp"),
            (None, Some(path)) => (
                Transport::Serial {
                    path: path.clone(),
                    baud: self.baud,
                },
                "printer.serial",
            ),
        };
        Ok(Section {
            settings: PrinterConfig {
                transport,
                timeout: Duration::from_millis(self.timeout_ms.max(1)),
                retry_every: Duration::from_millis(self.retry_ms.max(10)),
                poll_every: Duration::from_secs(5),
            },
            port_key,
        })
    }
}

impl Scale {
    fn settings(&self) -> Result<Section<ScaleConfig>, Bad> {
        let (port_key, port) = one_of(
            "scale",
            "scale.serial to the scale's serial port",
            vec![
                ("scale.serial", self.serial.clone()),
                ("scale.port", self.port.clone()),
            ],
        )?;
        if port.as_os_str().is_empty() {
            return Err((port_key, "must name a serial port".into()));
        }
        Ok(Section {
            settings: ScaleConfig {
                port,
                baud: self.baud,
                reopen_ms: self.reopen_ms,
            },
            port_key,
        })
    }
}

/// The file's device sections, as written.
pub(super) struct Written<'a> {
    pub scanner: Option<&'a Scanner>,
    pub terminal: Option<&'a Terminal>,
    pub printer: Option<&'a Printer>,
    pub scale: Option<&'a Scale>,
}

impl Written<'_> {
    /// Works out every section's settings; the first section that cannot work is named.
    pub(super) fn sections(&self) -> Result<DeviceSections, Bad> {
        Ok(DeviceSections {
            scanner: self.scanner.map(Scanner::settings).transpose()?,
            terminal: self.terminal.map(Terminal::settings).transpose()?,
            printer: self.printer.map(Printer::settings).transpose()?,
            scale: self.scale.map(Scale::settings).transpose()?,
        })
    }

    /// The numbers of the sections present, with their ranges.
    pub(super) fn numbers(&self, n: &mut Vec<Number>) {
        if let Some(sc) = self.scanner {
            sc.numbers(n);
        }
        if let Some(p) = self.printer {
            n.extend([
                Number::new("printer.baud", p.baud, 50..=MAX_BAUD, "baud"),
                Number::new("printer.timeout_ms", p.timeout_ms, 100..=60_000, "ms"),
                Number::new("printer.retry_ms", p.retry_ms, 10..=60_000, "ms"),
            ]);
        }
        if let Some(t) = self.terminal {
            n.push(Number::new("terminal.baud", t.baud, 50..=MAX_BAUD, "baud"));
        }
    }

    /// The scale's numbers (listed after the label's, as the file has them).
    pub(super) fn scale_numbers(&self, n: &mut Vec<Number>) {
        if let Some(sc) = self.scale {
            n.extend([
                Number::new("scale.baud", sc.baud, 50..=MAX_BAUD, "baud"),
                Number::new("scale.reopen_ms", sc.reopen_ms, 10..=60_000, "ms"),
            ]);
        }
    }
}
