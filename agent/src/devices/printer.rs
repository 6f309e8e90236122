//! Label printers: ZPL over raw TCP (port 9100) or a serial line, one writer per printer.
//!
//! A job counts as printed only when the printer took it and reported no fault: `~HS`
//! (host status) is asked before and after each job and parsed by the pure
//! [`parse_host_status`]. No answer within the timeout is a fault too, because a Zebra
//! printer with its head open or out of media may stay silent (docs/dev/field-notes.md,
//! "ZPL II and Zebra printers").
//!
//! The queue hook: [`run`] takes jobs from a channel of [`PrintJob`]s and sends a
//! [`JobReport`] for each attempt's outcome. It keeps retrying the job at the head until it
//! prints, so labels come out in order; it reports a failure once per distinct fault. The
//! durable queue feeds it the unprinted jobs from the store (after a restart too) and marks
//! a job printed on [`JobReport::Printed`]. Printer state for the station screen and the
//! `Status` message is published on a `watch` channel.
//!
//! A job the printer took is never sent again: when the `~HS` after sending shows labels
//! still in the printer's buffer (it is printing, or a fault came up before it could), the
//! job is reported [`JobReport::Sent`] (the queue records it, so a restart does not send
//! it again either) and then only confirmed: its status is asked every `retry_every` until
//! the buffer is empty with no fault, and only then is it [`JobReport::Printed`]. A fault
//! meanwhile is reported as for any job. A duplicate SSCC label on a second carton is
//! worse than a missing one, which the packer sees and reprints (F3 or its SSCC).
//!
//! [`run_until`] stops at a flag: after the attempt it is in, never mid-write, and drops the
//! connection (closes the port).

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
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

/// A job from the durable queue, for [`run_until`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    /// The job.
    pub job: PrintJob,
    /// The printer already took it (before a restart): only confirm it, never resend.
    pub sent: bool,
}

impl From<PrintJob> for QueuedJob {
    fn from(job: PrintJob) -> QueuedJob {
        QueuedJob { job, sent: false }
    }
}

/// The outcome of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobReport {
    /// The printer took the job and reported no fault.
    Printed {
        /// Queue id.
        job_id: u64,
    },
    /// The printer took the job and holds it in its buffer: it must not be sent again;
    /// `Printed` follows once the buffer is empty with no fault.
    Sent {
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
    /// Line 2 field iiiiiiii: labels of the current batch still to print (processed, not
    /// yet out of the printer).
    pub labels_remaining: u32,
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
    /// Labels the printer holds and has not printed yet: formats still in its receive
    /// buffer plus labels of the batch it is printing. A job counts as printed only when
    /// this is 0 with no fault.
    pub fn labels_pending(&self) -> u32 {
        self.labels_in_buffer.saturating_add(self.labels_remaining)
    }

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
        labels_remaining: l2[8].parse().map_err(|_| {
            Fault::BadStatus(format!("labels remaining {:?} is not a number", l2[8]))
        })?,
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
    /// When the status was last asked, for the idle poll.
    last_poll: Option<Instant>,
}

impl Printer {
    /// A printer; it connects on first use.
    pub fn new(cfg: PrinterConfig) -> Printer {
        Printer {
            cfg,
            link: None,
            last_poll: None,
        }
    }

    fn polled(&mut self) {
        self.last_poll = Some(Instant::now());
    }

    /// True (and the poll noted) when `poll_every` has passed since the last status.
    fn idle_poll_due(&mut self) -> bool {
        let due = self
            .last_poll
            .is_none_or(|t| t.elapsed() >= self.cfg.poll_every);
        if due {
            self.polled();
        }
        due
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
    /// took the job and reported no fault either time (labels may still be in its buffer:
    /// [`Printer::attempt`] tells these apart).
    pub fn print(&mut self, job: &PrintJob) -> Result<(), Fault> {
        match self.attempt(job, false) {
            Attempt::Printed | Attempt::Buffered => Ok(()),
            Attempt::Failed { fault, .. } => Err(fault),
        }
    }

    /// One attempt at `job`: unless `sent`, status before and the ZPL; then the status
    /// that says whether it is done.
    pub fn attempt(&mut self, job: &PrintJob, sent: bool) -> Attempt {
        let fail = |fault, taken| Attempt::Failed { fault, taken };
        if !sent {
            match self.status().map(|s| s.fault()) {
                Ok(None) => {}
                Ok(Some(f)) | Err(f) => return fail(f, false),
            }
            if let Err(f) = self.with_link(|link, _| {
                link.write_all(&job.zpl)
                    .map_err(|e| Fault::Unreachable(e.to_string()))
            }) {
                return fail(f, false);
            }
        }
        match self.status() {
            Err(f) => fail(f, true),
            Ok(s) => match s.fault() {
                Some(f) => fail(f, true),
                None if s.labels_pending() > 0 => Attempt::Buffered,
                None => Attempt::Printed,
            },
        }
    }
}

/// What one attempt at a job came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Taken, the buffer is empty and no fault: printed.
    Printed,
    /// Taken, no fault, labels still in the printer's buffer: confirm again later.
    Buffered,
    /// A fault; `taken` when the ZPL was written (or had been before), so it must not be
    /// written again.
    Failed {
        /// What is wrong.
        fault: Fault,
        /// The printer has the job.
        taken: bool,
    },
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
    printer: Printer,
    jobs: Receiver<PrintJob>,
    reports: Sender<JobReport>,
    state: tokio::sync::watch::Sender<PrinterView>,
) {
    run_until(printer, jobs, reports, state, &AtomicBool::new(false));
}

/// [`run`], which also returns once `stop` is set: after the attempt it is in (a job is
/// never cut off mid-write), dropping the printer's connection.
pub fn run_until<J: Into<QueuedJob>>(
    mut printer: Printer,
    jobs: Receiver<J>,
    reports: Sender<JobReport>,
    state: tokio::sync::watch::Sender<PrinterView>,
    stop: &AtomicBool,
) {
    let publish = |r: &Result<(), Fault>| {
        let v = view(r);
        state.send_if_modified(|old| {
            let changed = *old != v;
            *old = v;
            changed
        });
    };
    // Sleeps `d` in short slices; false if `stop` was set meanwhile.
    let pause = |d: Duration| {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(READ_SLICE.min(until.saturating_duration_since(Instant::now())));
        }
        !stop.load(Ordering::Relaxed)
    };
    while !stop.load(Ordering::Relaxed) {
        let queued: QueuedJob =
            match jobs.recv_timeout(printer.cfg.poll_every.min(Duration::from_millis(200))) {
                Ok(job) => job.into(),
                Err(RecvTimeoutError::Timeout) => {
                    if printer.idle_poll_due() {
                        publish(&printer.status().and_then(|s| s.fault().map_or(Ok(()), Err)));
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
        let QueuedJob { job, mut sent } = queued;
        let mut last_fault = None;
        loop {
            let attempt = printer.attempt(&job, sent);
            printer.polled();
            let report = match attempt {
                Attempt::Printed => {
                    publish(&Ok(()));
                    Some(JobReport::Printed { job_id: job.job_id })
                }
                Attempt::Buffered => {
                    publish(&Ok(()));
                    last_fault = None;
                    (!sent).then_some(JobReport::Sent { job_id: job.job_id })
                }
                Attempt::Failed { fault, taken } => {
                    publish(&Err(fault.clone()));
                    if taken
                        && !sent
                        && reports
                            .send(JobReport::Sent { job_id: job.job_id })
                            .is_err()
                    {
                        return;
                    }
                    sent |= taken;
                    if last_fault.as_ref() == Some(&fault) {
                        None
                    } else {
                        last_fault = Some(fault.clone());
                        Some(JobReport::Failed {
                            job_id: job.job_id,
                            fault,
                        })
                    }
                }
            };
            if matches!(report, Some(JobReport::Sent { .. })) {
                sent = true;
            }
            let printed = matches!(report, Some(JobReport::Printed { .. }));
            if let Some(r) = report
                && reports.send(r).is_err()
            {
                return;
            }
            if printed {
                break;
            }
            if !pause(printer.cfg.retry_every) {
                return;
            }
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
        assert_eq!((s.labels_in_buffer, s.labels_pending()), (2, 2));
        // A label already processed but still printing counts as pending too.
        let printing = READY2.replacen("00000000", "00000001", 1);
        let s = parse_host_status(&status(READY1, &printing))
            .unwrap()
            .unwrap();
        assert_eq!((s.labels_remaining, s.labels_pending()), (1, 1));
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
