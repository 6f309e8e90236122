//! Barcode scanners: serial (USB-CDC or UART, through `serialport`) and keyboard-wedge
//! (stdin, any byte stream such as a tty or FIFO, or a Linux input device). Split in two:
//! the pure [`Framer`] (bytes in, scans out: prefix/suffix stripping, GS substitute, max
//! length, optional bounce suppression) and the blocking reader loop [`run`], which opens
//! the source, reopens it when it comes back after an unplug, and reports
//! [`ScannerEvent`]s. Raw bytes are kept, GS (0x1D) included.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// Where the scanner's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    /// A serial port, e.g. `/dev/ttyACM0` or a udev name like `/dev/scanner`.
    Serial {
        /// Device path.
        path: PathBuf,
        /// Baud rate (ignored by USB-CDC devices).
        #[serde(default = "default_baud")]
        baud: u32,
    },
    /// A keyboard-wedge byte stream: a tty, a FIFO, or stdin when `path` is absent.
    Wedge {
        /// Path to read; stdin if absent.
        #[serde(default)]
        path: Option<PathBuf>,
    },
    /// A Linux input device (`/dev/input/eventN`) of a USB HID keyboard-wedge scanner,
    /// decoded with a US keymap; Ctrl+] is GS, as such scanners send FNC1.
    InputDevice {
        /// Device path; `/dev/input/by-id/...` names survive replugging.
        path: PathBuf,
    },
}

fn default_baud() -> u32 {
    9600
}
fn default_suffix() -> String {
    "\r".into()
}
fn default_max_len() -> usize {
    floorhand_protocol::limits::MAX_SCAN_BYTES
}
fn default_reopen_ms() -> u64 {
    1000
}

/// Scanner settings, as embedded in the agent's config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScannerConfig {
    /// Where bytes come from.
    pub source: Source,
    /// Bytes the scanner sends before each barcode (stripped when present).
    #[serde(default)]
    pub prefix: String,
    /// Bytes that end each barcode; default CR.
    #[serde(default = "default_suffix")]
    pub suffix: String,
    /// Longest barcode accepted, prefix and suffix excluded.
    #[serde(default = "default_max_len")]
    pub max_len: usize,
    /// Keyboard wedges cannot type GS: the character the scanner is set to send instead
    /// (ASCII), turned back into GS (0x1D).
    #[serde(default)]
    pub gs_substitute: Option<char>,
    /// Drop a scan identical to the previous one within this many ms (0: off; the pick
    /// workflow has its own bounce rule).
    #[serde(default)]
    pub bounce_ms: u64,
    /// How often to try reopening an unplugged scanner.
    #[serde(default = "default_reopen_ms")]
    pub reopen_ms: u64,
}

/// A scanner configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScannerConfigError {
    /// Empty suffix: scans could not be told apart.
    #[error(
        "scanner suffix is empty: set it to what the scanner sends after each barcode (usually \"\\r\")"
    )]
    EmptySuffix,
    /// GS substitute not ASCII.
    #[error("scanner gs_substitute {0:?} is not an ASCII character")]
    GsSubstitute(char),
}

impl ScannerConfig {
    /// A serial scanner with the defaults (CR suffix, 128 bytes, reopen every second).
    pub fn serial(path: impl Into<PathBuf>, baud: u32) -> Self {
        Self {
            source: Source::Serial {
                path: path.into(),
                baud,
            },
            prefix: String::new(),
            suffix: default_suffix(),
            max_len: default_max_len(),
            gs_substitute: None,
            bounce_ms: 0,
            reopen_ms: default_reopen_ms(),
        }
    }
}

/// What the framer made of the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framed {
    /// One barcode, prefix and suffix removed, GS restored.
    Scan(Vec<u8>),
    /// Data longer than `max_len` before a suffix: dropped.
    TooLong {
        /// Bytes dropped.
        len: usize,
    },
}

/// Pure framing: bytes in, scans out.
#[derive(Debug, Clone)]
pub struct Framer {
    prefix: Vec<u8>,
    suffix: Vec<u8>,
    max_len: usize,
    gs_substitute: Option<u8>,
    bounce_ms: u64,
    buf: Vec<u8>,
    dropped: usize,
    last: Option<(Vec<u8>, u64)>,
}

impl Framer {
    /// A framer for `config`.
    pub fn new(config: &ScannerConfig) -> Result<Self, ScannerConfigError> {
        if config.suffix.is_empty() {
            return Err(ScannerConfigError::EmptySuffix);
        }
        let gs_substitute = match config.gs_substitute {
            Some(c) if c.is_ascii() => Some(c as u8),
            Some(c) => return Err(ScannerConfigError::GsSubstitute(c)),
            None => None,
        };
        Ok(Self {
            prefix: config.prefix.as_bytes().to_vec(),
            suffix: config.suffix.as_bytes().to_vec(),
            max_len: config.max_len,
            gs_substitute,
            bounce_ms: config.bounce_ms,
            buf: Vec::new(),
            dropped: 0,
            last: None,
        })
    }

    /// Forgets a partial barcode (after a disconnect).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.dropped = 0;
    }

    /// Feeds bytes received at `now_ms`; returns the barcodes they complete.
    pub fn feed(&mut self, now_ms: u64, bytes: &[u8]) -> Vec<Framed> {
        let mut out = Vec::new();
        let limit = self.max_len + self.prefix.len() + self.suffix.len();
        for &b in bytes {
            self.buf.push(b);
            if self.buf.ends_with(&self.suffix) {
                let end = self.buf.len() - self.suffix.len();
                if self.dropped > 0 {
                    out.push(Framed::TooLong {
                        len: self.dropped + end,
                    });
                    self.dropped = 0;
                } else if let Some(scan) = self.frame(now_ms, end) {
                    out.push(Framed::Scan(scan));
                }
                self.buf.clear();
            } else if self.buf.len() > limit {
                // Keep only what could still be the start of a suffix.
                let keep = self.suffix.len().saturating_sub(1);
                let cut = self.buf.len() - keep;
                self.dropped += cut;
                self.buf.drain(..cut);
            }
        }
        out
    }

    fn frame(&mut self, now_ms: u64, end: usize) -> Option<Vec<u8>> {
        let mut data = &self.buf[..end];
        // A CR LF scanner on a CR suffix leaves the LF at the start of the next barcode.
        while let [b'\n' | b'\r', rest @ ..] = data {
            data = rest;
        }
        let data = data.strip_prefix(&self.prefix[..]).unwrap_or(data);
        let scan: Vec<u8> = data
            .iter()
            .map(|&b| {
                if Some(b) == self.gs_substitute {
                    0x1D
                } else {
                    b
                }
            })
            .collect();
        if scan.is_empty() || scan.len() > self.max_len {
            return None;
        }
        if self.bounce_ms > 0
            && let Some((last, at)) = &self.last
            && *last == scan
            && now_ms.saturating_sub(*at) < self.bounce_ms
        {
            return None;
        }
        self.last = Some((scan.clone(), now_ms));
        Some(scan)
    }
}

/// What a scanner reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScannerEvent {
    /// A barcode, raw bytes (GS included).
    Scan(Vec<u8>),
    /// Bytes that were not a usable barcode (too long).
    Rejected(String),
    /// The scanner is gone (unplugged, or not there at start); the screen should say so.
    Disconnected(String),
    /// It is back.
    Reconnected,
}

/// Decodes Linux input events (`struct input_event`, 24 bytes on 64-bit) from a HID
/// keyboard-wedge scanner into the bytes it typed, with a US keymap. Pure.
#[derive(Debug, Clone, Default)]
pub struct EvdevDecoder {
    partial: Vec<u8>,
    shift: bool,
    ctrl: bool,
}

const EVENT_SIZE: usize = 24;
const EV_KEY: u16 = 1;
const PLAIN: &[u8; 58] =
    b"\0\x1b1234567890-=\x08\tqwertyuiop[]\r\0asdfghjkl;'`\0\\zxcvbnm,./\0*\0 ";
const SHIFTED: &[u8; 58] =
    b"\0\x1b!@#$%^&*()_+\x08\tQWERTYUIOP{}\r\0ASDFGHJKL:\"~\0|ZXCVBNM<>?\0*\0 ";

impl EvdevDecoder {
    /// Feeds raw event bytes; returns the characters typed.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.partial.extend_from_slice(bytes);
        let mut out = Vec::new();
        let whole = self.partial.len() / EVENT_SIZE * EVENT_SIZE;
        for ev in self.partial[..whole].chunks_exact(EVENT_SIZE) {
            let kind = u16::from_ne_bytes([ev[16], ev[17]]);
            let code = u16::from_ne_bytes([ev[18], ev[19]]);
            let value = i32::from_ne_bytes([ev[20], ev[21], ev[22], ev[23]]);
            if kind != EV_KEY {
                continue;
            }
            match code {
                42 | 54 => self.shift = value != 0,
                29 | 97 => self.ctrl = value != 0,
                _ if value == 0 => {}
                // Ctrl+] is GS: how HID wedge scanners send FNC1.
                27 if self.ctrl => out.push(0x1D),
                96 => out.push(b'\r'),
                c => {
                    let map = if self.shift { SHIFTED } else { PLAIN };
                    match map.get(usize::from(c)) {
                        Some(&ch) if ch != 0 => out.push(ch),
                        _ => {}
                    }
                }
            }
        }
        self.partial.drain(..whole);
        out
    }
}

/// How long one read of a scanner waits before the stop flag is checked again.
const READ_WAIT: Duration = Duration::from_millis(100);

/// Where an open source's bytes are read from.
enum Reader {
    /// A serial port: its reads wait [`READ_WAIT`] themselves.
    Serial(Box<dyn serialport::SerialPort>),
    /// A tty, FIFO, input device or standard input, polled for [`READ_WAIT`] before each
    /// read, so a stop is noticed even when no byte comes. Unbuffered: a buffer would keep
    /// bytes the poll cannot see.
    File(std::fs::File),
}

/// An open source, read in chunks (input device events decoded).
struct Open {
    reader: Reader,
    evdev: Option<EvdevDecoder>,
}

/// Opens `path` for reading without waiting: no writer needed on a FIFO, no controlling
/// tty taken.
fn open_nonblocking(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

fn open(source: &Source) -> std::io::Result<Open> {
    let (reader, evdev) = match source {
        Source::Serial { path, baud } => {
            let port = super::open_serial(&path.to_string_lossy(), *baud, READ_WAIT)
                .map_err(std::io::Error::other)?;
            (Reader::Serial(port), None)
        }
        Source::Wedge { path: Some(path) } => (Reader::File(open_nonblocking(path)?), None),
        Source::Wedge { path: None } => {
            use std::os::fd::AsFd;
            let fd = std::io::stdin().as_fd().try_clone_to_owned()?;
            (Reader::File(std::fs::File::from(fd)), None)
        }
        Source::InputDevice { path } => (
            Reader::File(open_nonblocking(path)?),
            Some(EvdevDecoder::default()),
        ),
    };
    Ok(Open { reader, evdev })
}

/// Waits up to [`READ_WAIT`] for `fd` to have something to read (data, or its end):
/// false when it has not.
fn readable(fd: std::os::fd::RawFd) -> std::io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let wait = libc::c_int::try_from(READ_WAIT.as_millis()).unwrap_or(100);
    // SAFETY: `p` is one valid pollfd that outlives the call, and 1 is its count.
    match unsafe { libc::poll(&mut p, 1, wait) } {
        0 => Ok(false),
        n if n > 0 => Ok(true),
        _ => Err(std::io::Error::last_os_error()),
    }
}

impl Open {
    /// Reads once: `Ok(None)` when nothing came within [`READ_WAIT`], `Ok(Some(bytes))`
    /// on data, an error (`UnexpectedEof` at the end of the stream) when the source is gone.
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<Option<Vec<u8>>> {
        use std::os::fd::AsRawFd;
        let got = match &mut self.reader {
            Reader::Serial(port) => port.read(buf),
            Reader::File(f) => match readable(f.as_raw_fd()) {
                Ok(true) => f.read(buf),
                Ok(false) => return Ok(None),
                Err(e) => Err(e),
            },
        };
        match got {
            Ok(0) => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "end of stream",
            )),
            Ok(n) => Ok(Some(match &mut self.evdev {
                Some(d) => d.feed(&buf[..n]),
                None => buf[..n].to_vec(),
            })),
            Err(e) if super::nothing_yet(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Opens `source` the way [`run`] does and closes it again: what the scanner is, or why
/// it cannot be opened. A FIFO or tty is opened without waiting for a writer, so this
/// never blocks. Stdin has nothing to open.
pub fn probe(source: &Source) -> Result<String, super::PortError> {
    let file = |path: &std::path::Path| {
        open_nonblocking(path)
            .map(drop)
            .map_err(|e| super::PortError::from_io(&path.to_string_lossy(), &e))
    };
    match source {
        Source::Serial { path, baud } => {
            super::open_serial(&path.to_string_lossy(), *baud, READ_WAIT)?;
            Ok(format!(
                "serial port {} opened at {baud} baud",
                path.display()
            ))
        }
        Source::Wedge { path: Some(path) } => {
            file(path)?;
            Ok(format!("keyboard wedge {} opened", path.display()))
        }
        Source::Wedge { path: None } => {
            Ok("keyboard wedge on standard input: nothing to open".into())
        }
        Source::InputDevice { path } => {
            file(path)?;
            Ok(format!("input device {} opened", path.display()))
        }
    }
}

/// Reads the scanner until `stop` is set or `sink` returns false. An unplugged scanner is
/// reported once as [`ScannerEvent::Disconnected`], then reopened every `reopen_ms`;
/// [`ScannerEvent::Reconnected`] follows when it is back. Stdin is not reopened: its end
/// ends the loop (and the station goes on without it). Each read waits at most 100 ms, so
/// a stop is seen within that, whatever the source. Blocking: run it on its own thread.
pub fn run(
    config: &ScannerConfig,
    stop: &AtomicBool,
    mut sink: impl FnMut(ScannerEvent) -> bool,
) -> Result<(), ScannerConfigError> {
    let mut framer = Framer::new(config)?;
    let started = Instant::now();
    let now_ms = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut down = false;
    let mut buf = [0u8; 256];
    while !stop.load(Ordering::Relaxed) {
        let problem = match open(&config.source) {
            Ok(mut src) => {
                if down && !sink(ScannerEvent::Reconnected) {
                    return Ok(());
                }
                down = false;
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    match src.read(&mut buf) {
                        Ok(None) => {}
                        Ok(Some(bytes)) => {
                            for f in framer.feed(now_ms(), &bytes) {
                                let ev = match f {
                                    Framed::Scan(s) => ScannerEvent::Scan(s),
                                    Framed::TooLong { len } => ScannerEvent::Rejected(format!(
                                        "{len} bytes without a suffix: longer than max_len {}",
                                        config.max_len
                                    )),
                                };
                                if !sink(ev) {
                                    return Ok(());
                                }
                            }
                        }
                        Err(e) => break e.to_string(),
                    }
                }
            }
            Err(e) => e.to_string(),
        };
        framer.reset();
        if matches!(config.source, Source::Wedge { path: None }) {
            return Ok(());
        }
        if !down {
            down = true;
            if !sink(ScannerEvent::Disconnected(problem)) {
                return Ok(());
            }
        }
        let until = Instant::now() + Duration::from_millis(config.reopen_ms);
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(prefix: &str, suffix: &str, gs: Option<char>, bounce_ms: u64) -> ScannerConfig {
        ScannerConfig {
            prefix: prefix.into(),
            suffix: suffix.into(),
            gs_substitute: gs,
            bounce_ms,
            max_len: 32,
            ..ScannerConfig::serial("/dev/null", 9600)
        }
    }

    fn check(config: &ScannerConfig, chunks: &[(u64, &[u8])], expected: &[Framed]) {
        let mut f = Framer::new(config).expect("valid config");
        let got: Vec<Framed> = chunks.iter().flat_map(|(t, b)| f.feed(*t, b)).collect();
        assert_eq!(got, expected);
    }

    fn scan(b: &[u8]) -> Framed {
        Framed::Scan(b.to_vec())
    }

    #[test]
    fn framing_splits_on_the_suffix_and_keeps_gs_bytes() {
        let c = config("", "\r", None, 0);
        check(&c, &[(0, b"]C101095060001343521")], &[]);
        check(
            &c,
            &[(0, b"]C10109506000134352\x1d10A"), (1, b"BC\rOP7\r")],
            &[scan(b"]C10109506000134352\x1d10ABC"), scan(b"OP7")],
        );
        // CR LF scanners: the LF does not start the next barcode.
        check(
            &c,
            &[(0, b"A-01\r\nB-02\r\n")],
            &[scan(b"A-01"), scan(b"B-02")],
        );
        check(&c, &[(0, b"\r\r")], &[]);
    }

    #[test]
    fn framing_strips_prefix_and_multibyte_suffix() {
        let c = config("\x02", "\x03\r\n", None, 0);
        check(
            &c,
            &[(0, b"\x02ABC\x03\r\n\x02D\x03"), (5, b"\r\n")],
            &[scan(b"ABC"), scan(b"D")],
        );
        // A barcode without the prefix is kept as it is.
        check(&c, &[(0, b"XYZ\x03\r\n")], &[scan(b"XYZ")]);
    }

    #[test]
    fn framing_turns_the_wedge_gs_substitute_back_into_gs() {
        let c = config("", "\n", Some('~'), 0);
        check(
            &c,
            &[(0, b"0109506000134352~10ABC\n")],
            &[scan(b"0109506000134352\x1d10ABC")],
        );
    }

    #[test]
    fn framing_drops_data_longer_than_max_len_and_recovers() {
        let c = config("", "\r", None, 0);
        let long = [b'9'; 50];
        check(
            &c,
            &[(0, &long), (1, b"\rOK\r")],
            &[Framed::TooLong { len: 50 }, scan(b"OK")],
        );
    }

    #[test]
    fn framing_bounce_suppression_drops_only_quick_repeats() {
        let c = config("", "\r", None, 100);
        check(
            &c,
            &[(0, b"A\r"), (30, b"A\r"), (200, b"A\r"), (210, b"B\r")],
            &[scan(b"A"), scan(b"A"), scan(b"B")],
        );
    }

    #[test]
    fn framer_refuses_an_empty_suffix_or_non_ascii_gs_substitute() {
        assert_eq!(
            Framer::new(&config("", "", None, 0)).err(),
            Some(ScannerConfigError::EmptySuffix)
        );
        let c = config("", "\r", Some('é'), 0);
        assert_eq!(
            Framer::new(&c).err(),
            Some(ScannerConfigError::GsSubstitute('é'))
        );
    }

    #[test]
    fn config_reads_from_json_and_refuses_unknown_fields() {
        let c: ScannerConfig = serde_json::from_str(
            r#"{"source": {"kind": "serial", "path": "/dev/ttyACM0"}, "suffix": "\r\n"}"#,
        )
        .expect("valid");
        assert_eq!(
            c.source,
            Source::Serial {
                path: "/dev/ttyACM0".into(),
                baud: 9600
            }
        );
        assert_eq!(c.max_len, 128);
        let bad = serde_json::from_str::<ScannerConfig>(
            r#"{"source": {"kind": "wedge"}, "sufix": "\r"}"#,
        );
        assert!(bad.is_err_and(|e| e.to_string().contains("unknown field `sufix`")));
    }

    #[test]
    fn a_wedge_fifo_is_read_again_after_its_writer_leaves_and_a_stop_is_seen_at_once() {
        use std::io::Write;
        use std::sync::mpsc;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("wedge");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let config = ScannerConfig {
            source: Source::Wedge {
                path: Some(fifo.clone()),
            },
            reopen_ms: 20,
            ..ScannerConfig::serial("/dev/null", 9600)
        };
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let reader = {
            let stop = stop.clone();
            std::thread::spawn(move || run(&config, &stop, |ev| tx.send(ev).is_ok()))
        };
        let next = || {
            rx.recv_timeout(Duration::from_secs(10))
                .expect("a scanner event")
        };
        // Opening for writing waits for the reader: it opened without waiting for us.
        let mut w = std::fs::File::options().write(true).open(&fifo).unwrap();
        w.write_all(b"OP7\r").unwrap();
        assert_eq!(next(), ScannerEvent::Scan(b"OP7".to_vec()));
        drop(w);
        assert!(matches!(next(), ScannerEvent::Disconnected(why) if why.contains("end of stream")));
        assert_eq!(next(), ScannerEvent::Reconnected);
        let mut w = std::fs::File::options().write(true).open(&fifo).unwrap();
        w.write_all(b"A-01\r").unwrap();
        assert_eq!(next(), ScannerEvent::Scan(b"A-01".to_vec()));
        // No byte is coming: the reader still sees the stop within one read.
        let asked = Instant::now();
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap().unwrap();
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "stopped after {:?}",
            asked.elapsed()
        );
        drop(w);
    }

    #[test]
    fn evdev_keys_decode_with_shift_and_ctrl_bracket_as_gs() {
        fn ev(code: u16, value: i32) -> Vec<u8> {
            let mut b = vec![0u8; 16];
            b.extend_from_slice(&EV_KEY.to_ne_bytes());
            b.extend_from_slice(&code.to_ne_bytes());
            b.extend_from_slice(&value.to_ne_bytes());
            b
        }
        let mut bytes = Vec::new();
        for (code, value) in [
            (11, 1),
            (11, 0),
            (2, 1),
            (2, 0),
            (42, 1),
            (30, 1),
            (30, 0),
            (42, 0),
        ] {
            bytes.extend(ev(code, value));
        }
        bytes.extend(
            [
                ev(29, 1),
                ev(27, 1),
                ev(27, 0),
                ev(29, 0),
                ev(48, 1),
                ev(28, 1),
            ]
            .concat(),
        );
        let mut d = EvdevDecoder::default();
        // Split mid-event: the decoder keeps the partial event.
        let mut out = d.feed(&bytes[..30]);
        out.extend(d.feed(&bytes[30..]));
        assert_eq!(out, b"01A\x1db\r");
    }
}
