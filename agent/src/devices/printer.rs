//! Label printers: ZPL over raw TCP (port 9100) or a serial line, one writer per printer.
//!
//! A job counts as printed only when the printer took it and reported no fault: `~HS`
//! (host status) is asked before and after each job and parsed by the pure
//! [`parse_host_status`]. No answer within the timeout is a fault too, because a Zebra
//! printer with its head open or out of media may stay silent (FIELD-NOTES.md).
//!
//! The queue hook: [`run`] takes jobs from a channel of [`PrintJob`]s and sends a
//! [`JobReport`] for each attempt's outcome. It keeps retrying the job at the head until it
//! prints, so labels come out in order; it reports a failure once per distinct fault. The
//! durable queue feeds it the unprinted jobs from the store (after a restart too) and marks
//! a job printed on [`JobReport::Printed`]. Printer state for the station screen and the
//! `Status` message is published on a `watch` channel.
//!
//! Known limit: a job the printer held in its buffer when a fault came up may print once
//! the fault is cleared and then again on the retry; a duplicate label is preferred to a
//! missing one.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use floorhand_protocol::oms::PrinterState;

/// Where the printer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Raw TCP, usually port 9100: `host:port`.
    Tcp(String),
    /// A serial port.
    Serial {
        /// Device path, e.g. `/dev/ttyUSB0`.
        path: String,
        /// Baud rate, e.g. 9600.
        baud: u32,
    },
}

impl Transport {
    /// The address or device path, as people and error messages name the printer.
    pub fn name(&self) -> &str {
        match self {
            Transport::Tcp(addr) => addr,
            Transport::Serial { path, .. } => path,
        }
    }
}

/// Printer settings.
#[derive(Debug, Clone)]
pub struct PrinterConfig {
    /// Where it is.
    pub transport: Transport,
    /// How long to wait for a connection, a write, or a `~HS` answer.
    pub timeout: Duration,
    /// Pause between attempts while the printer has a fault.
    pub retry_every: Duration,
    /// Status poll interval while no job is waiting.
    pub poll_every: Duration,
}

/// A label job: its id in the print queue and its ZPL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrintJob {
    /// Queue id.
    pub job_id: u64,
    /// ZPL bytes.
    pub zpl: Vec<u8>,
}

/// The outcome of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobReport {
    /// The printer took the job and reported no fault.
    Printed {
        /// Queue id.
        job_id: u64,
    },
    /// Not printed (yet): the job stays at the head of the queue and is retried.
    Failed {
        /// Queue id.
        job_id: u64,
        /// Why.
        fault: Fault,
    },
}

/// Why a printer cannot print.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// Could not connect or write.
    #[error("printer unreachable: {0}")]
    Unreachable(String),
    /// No `~HS` answer in time (head open or media out on many Zebras).
    #[error("printer not answering (head open or out of labels?)")]
    NoAnswer,
    /// An answer that is not a host status.
    #[error("printer answered garbage: {0}")]
    BadStatus(String),
    /// Out of paper or labels.
    #[error("paper out")]
    PaperOut,
    /// Ribbon out.
    #[error("ribbon out")]
    RibbonOut,
    /// Print head open.
    #[error("head open")]
    HeadOpen,
    /// Paused.
    #[error("printer paused")]
    Paused,
    /// Receive buffer full.
    #[error("printer buffer full")]
    BufferFull,
    /// Head too cold.
    #[error("head under temperature")]
    UnderTemperature,
    /// Head too hot.
    #[error("head over temperature")]
    OverTemperature,
}

impl Fault {
    /// The protocol's summary of this fault.
    pub fn state(&self) -> PrinterState {
        match self {
            Fault::Unreachable(_) | Fault::NoAnswer => PrinterState::Offline,
            Fault::PaperOut => PrinterState::PaperOut,
            Fault::RibbonOut => PrinterState::RibbonOut,
            Fault::HeadOpen => PrinterState::HeadOpen,
            Fault::Paused => PrinterState::Paused,
            Fault::BadStatus(_)
            | Fault::BufferFull
            | Fault::UnderTemperature
            | Fault::OverTemperature => PrinterState::Fault,
        }
    }
}

/// A parsed `~HS` answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostStatus {
    /// Line 1 field b.
    pub paper_out: bool,
    /// Line 1 field c.
    pub paused: bool,
    /// Line 1 field eee: formats in the receive buffer.
    pub labels_in_buffer: u32,
    /// Line 1 field f.
    pub buffer_full: bool,
    /// Line 1 field h: a partial format is in progress.
    pub partial_format: bool,
    /// Line 1 field k.
    pub under_temperature: bool,
    /// Line 1 field l.
    pub over_temperature: bool,
    /// Line 2 field o.
    pub head_up: bool,
    /// Line 2 field p.
    pub ribbon_out: bool,
}

impl HostStatus {
    /// The most pressing fault, if any.
    pub fn fault(&self) -> Option<Fault> {
        [
            (self.head_up, Fault::HeadOpen),
            (self.paper_out, Fault::PaperOut),
            (self.ribbon_out, Fault::RibbonOut),
            (self.over_temperature, Fault::OverTemperature),
            (self.under_temperature, Fault::UnderTemperature),
            (self.buffer_full, Fault::BufferFull),
            (self.paused, Fault::Paused),
        ]
        .into_iter()
        .find_map(|(set, f)| set.then_some(f))
    }
}

const STX: u8 = 0x02;
const ETX: u8 = 0x03;

/// Splits the `STX ... ETX` groups out of `bytes`: the complete groups' contents.
fn groups(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some(start) = rest.iter().position(|&b| b == STX) {
        let after = &rest[start + 1..];
        let Some(end) = after.iter().position(|&b| b == ETX) else {
            break;
        };
        out.push(&after[..end]);
        rest = &after[end + 1..];
    }
    out
}

/// Parses a `~HS` answer: three lines `<STX>...<ETX><CR><LF>`. Returns `Ok(None)` while
/// fewer than three lines have arrived.
pub fn parse_host_status(bytes: &[u8]) -> Result<Option<HostStatus>, Fault> {
    let lines = groups(bytes);
    if lines.len() < 3 {
        return Ok(None);
    }
    let fields = |line: &[u8], min: usize| -> Result<Vec<String>, Fault> {
        let text = String::from_utf8_lossy(line).into_owned();
        let f: Vec<String> = text.split(',').map(|s| s.trim().to_owned()).collect();
        if f.len() < min {
            return Err(Fault::BadStatus(format!(
                "{text:?} has {} fields, expected {min}",
                f.len()
            )));
        }
        Ok(f)
    };
    let l1 = fields(lines[0], 12)?;
    let l2 = fields(lines[1], 11)?;
    let flag = |s: &str| s == "1";
    Ok(Some(HostStatus {
        paper_out: flag(&l1[1]),
        paused: flag(&l1[2]),
        labels_in_buffer: l1[4].parse().map_err(|_| {
            Fault::BadStatus(format!("labels in buffer {:?} is not a number", l1[4]))
        })?,
        buffer_full: flag(&l1[5]),
        partial_format: flag(&l1[7]),
        under_temperature: flag(&l1[10]),
        over_temperature: flag(&l1[11]),
        head_up: flag(&l2[2]),
        ribbon_out: flag(&l2[3]),
    }))
}

/// A connection to a printer.
trait Link: Send {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Reads what is there, waiting at most about the link's read slice. `Ok(0)` means
    /// nothing arrived yet; a closed connection is an error.
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

/// How long one read waits before the deadline is checked again.
const READ_SLICE: Duration = Duration::from_millis(50);

struct TcpLink(TcpStream);

impl Link for TcpLink {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes)?;
        self.0.flush()
    }

    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf) {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the printer closed the connection",
            )),
            Ok(n) => Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }
}

struct SerialLink(Box<dyn serialport::SerialPort>);

impl Link for SerialLink {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes)?;
        self.0.flush()
    }

    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Ok(0),
            Err(e) => Err(e),
        }
    }
}

fn connect(cfg: &PrinterConfig) -> Result<Box<dyn Link>, Fault> {
    let unreachable =
        |what: &str, e: &dyn std::fmt::Display| Fault::Unreachable(format!("{what}: {e}"));
    match &cfg.transport {
        Transport::Tcp(addr) => {
            let sock = addr
                .to_socket_addrs()
                .map_err(|e| unreachable(addr, &e))?
                .next()
                .ok_or_else(|| Fault::Unreachable(format!("{addr}: no address")))?;
            let stream = TcpStream::connect_timeout(&sock, cfg.timeout)
                .map_err(|e| unreachable(addr, &e))?;
            stream
                .set_read_timeout(Some(READ_SLICE))
                .and_then(|()| stream.set_write_timeout(Some(cfg.timeout)))
                .map_err(|e| unreachable(addr, &e))?;
            let _ = stream.set_nodelay(true);
            Ok(Box::new(TcpLink(stream)))
        }
        Transport::Serial { path, baud } => {
            let port = super::open_serial(path, *baud, READ_SLICE)
                .map_err(|e| Fault::Unreachable(e.to_string()))?;
            // Drop a late answer to an earlier ~HS that would be read as this one.
            let _ = port.clear(serialport::ClearBuffer::Input);
            Ok(Box::new(SerialLink(port)))
        }
    }
}

/// One printer and its connection, reconnected on demand.
pub struct Printer {
    cfg: PrinterConfig,
    link: Option<Box<dyn Link>>,
}

impl Printer {
    /// A printer; it connects on first use.
    pub fn new(cfg: PrinterConfig) -> Printer {
        Printer { cfg, link: None }
    }

    fn link(&mut self) -> Result<&mut Box<dyn Link>, Fault> {
        if self.link.is_none() {
            self.link = Some(connect(&self.cfg)?);
        }
        self.link
            .as_mut()
            .ok_or_else(|| Fault::Unreachable("not connected".into()))
    }

    /// Runs `f` on the link; any failure drops the connection so the next use reconnects
    /// (and a late answer on the old one is never mistaken for a new one).
    fn with_link<T>(
        &mut self,
        f: impl FnOnce(&mut Box<dyn Link>, Duration) -> Result<T, Fault>,
    ) -> Result<T, Fault> {
        let timeout = self.cfg.timeout;
        let name = self.cfg.transport.name().to_string();
        // Every failure names the printer, so the screen and the log say which one.
        let result = self
            .link()
            .and_then(|l| f(l, timeout))
            .map_err(|e| match e {
                Fault::Unreachable(m) if !m.starts_with(&name) => {
                    Fault::Unreachable(format!("{name}: {m}"))
                }
                other => other,
            });
        if result.is_err() {
            self.link = None;
        }
        result
    }

    /// Asks `~HS` and waits for the three-line answer.
    pub fn status(&mut self) -> Result<HostStatus, Fault> {
        self.with_link(|link, timeout| {
            link.write_all(b"~HS")
                .map_err(|e| Fault::Unreachable(e.to_string()))?;
            let deadline = Instant::now() + timeout;
            let mut answer = Vec::new();
            let mut buf = [0u8; 256];
            loop {
                if let Some(status) = parse_host_status(&answer)? {
                    return Ok(status);
                }
                if Instant::now() >= deadline {
                    return Err(Fault::NoAnswer);
                }
                let n = link
                    .read_some(&mut buf)
                    .map_err(|e| Fault::Unreachable(e.to_string()))?;
                answer.extend_from_slice(&buf[..n]);
                if answer.len() > 4096 {
                    return Err(Fault::BadStatus("answer longer than 4 KiB".into()));
                }
            }
        })
    }

    /// Prints one job: status before, the ZPL, status after. `Ok` only if the printer
    /// took the job and reported no fault either time.
    pub fn print(&mut self, job: &PrintJob) -> Result<(), Fault> {
        if let Some(f) = self.status()?.fault() {
            return Err(f);
        }
        self.with_link(|link, _| {
            link.write_all(&job.zpl)
                .map_err(|e| Fault::Unreachable(e.to_string()))
        })?;
        match self.status()?.fault() {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }
}

/// The printer's state as the station screen and `Status` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterView {
    /// Summary for the protocol.
    pub state: PrinterState,
    /// The fault in words, if any.
    pub fault: Option<String>,
}

fn view(result: &Result<(), Fault>) -> PrinterView {
    match result {
        Ok(()) => PrinterView {
            state: PrinterState::Ready,
            fault: None,
        },
        Err(f) => PrinterView {
            state: f.state(),
            fault: Some(f.to_string()),
        },
    }
}

/// The printer's writer loop, on its own thread: prints `jobs` in order, retrying the job
/// at the head every `retry_every` until it prints, reports each outcome on `reports`
/// (a failure once per distinct fault), and publishes the printer state on `state`.
/// Returns when `jobs` is closed and empty, or `reports` is dropped.
pub fn run(
    mut printer: Printer,
    jobs: Receiver<PrintJob>,
    reports: Sender<JobReport>,
    state: tokio::sync::watch::Sender<PrinterView>,
) {
    let publish = |r: &Result<(), Fault>| {
        let v = view(r);
        state.send_if_modified(|old| {
            let changed = *old != v;
            *old = v;
            changed
        });
    };
    loop {
        let job = match jobs.recv_timeout(printer.cfg.poll_every) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                publish(&printer.status().and_then(|s| s.fault().map_or(Ok(()), Err)));
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut last_fault = None;
        loop {
            let result = printer.print(&job);
            publish(&result);
            let report = match result {
                Ok(()) => JobReport::Printed { job_id: job.job_id },
                Err(fault) if last_fault.as_ref() == Some(&fault) => {
                    std::thread::sleep(printer.cfg.retry_every);
                    continue;
                }
                Err(fault) => {
                    last_fault = Some(fault.clone());
                    JobReport::Failed {
                        job_id: job.job_id,
                        fault,
                    }
                }
            };
            let printed = matches!(report, JobReport::Printed { .. });
            if reports.send(report).is_err() {
                return;
            }
            if printed {
                break;
            }
            std::thread::sleep(printer.cfg.retry_every);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(l1: &str, l2: &str) -> Vec<u8> {
        format!("\x02{l1}\x03\r\n\x02{l2}\x03\r\n\x021234,0\x03\r\n").into_bytes()
    }

    const READY1: &str = "030,0,0,1245,000,0,0,0,000,0,0,0";
    const READY2: &str = "000,0,0,0,1,2,4,0,00000000,1,000";

    fn check(bytes: &[u8], expected: Result<Option<Option<Fault>>, ()>) {
        let got = parse_host_status(bytes)
            .map(|s| s.map(|s| s.fault()))
            .map_err(|_| ());
        assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(bytes));
    }

    #[test]
    fn a_ready_printer_has_no_fault() {
        check(&status(READY1, READY2), Ok(Some(None)));
        let s = parse_host_status(&status("030,0,0,1245,002,0,0,0,000,0,0,0", READY2))
            .unwrap()
            .unwrap();
        assert_eq!(s.labels_in_buffer, 2);
    }

    #[test]
    fn each_status_flag_maps_to_its_fault() {
        let cases = [
            ("030,1,0,1245,000,0,0,0,000,0,0,0", READY2, Fault::PaperOut),
            ("030,0,1,1245,000,0,0,0,000,0,0,0", READY2, Fault::Paused),
            (
                "030,0,0,1245,000,1,0,0,000,0,0,0",
                READY2,
                Fault::BufferFull,
            ),
            (
                "030,0,0,1245,000,0,0,0,000,0,1,0",
                READY2,
                Fault::UnderTemperature,
            ),
            (
                "030,0,0,1245,000,0,0,0,000,0,0,1",
                READY2,
                Fault::OverTemperature,
            ),
            (READY1, "000,0,1,0,1,2,4,0,00000000,1,000", Fault::HeadOpen),
            (READY1, "000,0,0,1,1,2,4,0,00000000,1,000", Fault::RibbonOut),
        ];
        for (l1, l2, fault) in cases {
            check(&status(l1, l2), Ok(Some(Some(fault))));
        }
    }

    #[test]
    fn a_partial_or_garbled_answer_never_panics() {
        let full = status(READY1, READY2);
        for cut in 0..full.len() {
            let _ = parse_host_status(&full[..cut]);
        }
        check(&full[..full.len() - 12], Ok(None));
        check(&status("030,0", READY2), Err(()));
        check(&status("030,0,0,1245,abc,0,0,0,000,0,0,0", READY2), Err(()));
        check(b"\x02\x03\x02\x03\x02\x03", Err(()));
    }

    #[test]
    fn faults_map_to_the_protocol_printer_state() {
        assert_eq!(Fault::NoAnswer.state(), PrinterState::Offline);
        assert_eq!(Fault::PaperOut.state(), PrinterState::PaperOut);
        assert_eq!(Fault::BufferFull.state(), PrinterState::Fault);
    }
}
