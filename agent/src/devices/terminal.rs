//! The picker's display terminal, seen from the agent: sends hello, screens, beeps and
//! heartbeats over a serial link; receives keys and scans; notices a dead link.
//!
//! Split in two, like the terminal itself:
//! - [`TerminalLink`] is pure: `now_ms` and inputs in, [`Output`]s out. It never reads a
//!   clock or touches the port.
//! - [`spawn`] runs the reader loop on its own thread (the serial port is blocking I/O):
//!   it reads bytes, feeds them through the protocol's `FrameDecoder` into the state, and
//!   writes what the state says to send. Bad bytes on the line are counted and logged,
//!   never a panic.
//!
//! The thread ends only when told to stop. A port that fails (the adapter unplugged) is
//! closed, reported as [`TerminalEvent::Disconnected`] and reopened after
//! [`reopen_delay`] (doubling from [`REOPEN_MIN_MS`] to [`REOPEN_MAX_MS`]); once it is
//! back the terminal gets hello and the current screen again. A link too slow for what
//! the station shows (a scan burst at 115200 baud) drops frames instead of waiting: a
//! write waits at most the port's 20 ms timeout, a full line drops the rest of what was
//! queued (every queued command is taken each round, so none piles up), and the latest
//! screen is written as soon as the line takes it: screens are dropped and coalesced,
//! never waited for. Nothing is flushed with `tcdrain`, which waits for the far end
//! however long it takes.
//!
//! The handshake cannot ping-pong: the terminal answers every agent hello, and the agent
//! answers a terminal hello with its own only when the hello was unsolicited (the terminal
//! restarted); a hello it asked for is answered with the current screen alone.

use std::io::Read;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use floorhand_protocol::envelope::DecodeError;
use floorhand_protocol::frame::{self, FrameDecoder, FrameError};
use floorhand_protocol::limits::MAX_LINK_FRAME;
use floorhand_protocol::link::{
    Beep, Display, FromTerminal, Hello, Key, Level, MenuReason, PickPrompt, Scan, ScanTarget,
    Screen, ToTerminal, fit,
};
use floorhand_protocol::{Envelope, PROTOCOL_VERSION};

/// The agent sends a heartbeat this often; the terminal answers each one.
pub const HEARTBEAT_MS: u64 = 1_000;

/// No frame from the terminal for this long means the link is dead.
pub const DEAD_AFTER_MS: u64 = 3_500;

/// First wait before reopening a port that failed.
pub const REOPEN_MIN_MS: u64 = 200;

/// Longest wait between attempts to reopen a port.
pub const REOPEN_MAX_MS: u64 = 5_000;

/// How long a read or a write of the port waits.
const PORT_WAIT: Duration = Duration::from_millis(20);

/// Milliseconds to wait before reopening attempt number `attempt` (0 first): doubling
/// from [`REOPEN_MIN_MS`] up to [`REOPEN_MAX_MS`], so an adapter plugged back in is used
/// within a fraction of a second and one that stays away costs a try every 5 s.
pub fn reopen_delay(attempt: u32) -> u64 {
    REOPEN_MIN_MS
        .saturating_mul(1 << attempt.min(16))
        .min(REOPEN_MAX_MS)
}

/// What happened at the terminal, for the workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminalEvent {
    /// The terminal said hello with a protocol version we speak.
    Connected(Hello),
    /// The picker pressed a key.
    Key(Key),
    /// A scanner on the terminal read a barcode.
    Scan(Scan),
    /// No frame from the terminal within [`DEAD_AFTER_MS`].
    LinkLost,
    /// The terminal speaks another protocol version: update one side.
    VersionMismatch {
        /// The terminal's version.
        terminal: u8,
    },
    /// A frame was dropped (line noise); the link goes on.
    BadFrame(FrameError),
    /// The port failed (the adapter was unplugged); it is being reopened.
    Disconnected(String),
    /// The port is open again; the terminal was sent hello and the current screen.
    Reconnected,
}

/// What [`TerminalLink`] wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this to the terminal.
    Send(ToTerminal),
    /// Tell the workflow.
    Event(TerminalEvent),
}

/// The agent's side of the link, as a pure state machine.
#[derive(Debug, Clone)]
pub struct TerminalLink {
    screen: Option<Screen>,
    alive: bool,
    last_rx_ms: u64,
    next_heartbeat_ms: u64,
    awaiting_hello: bool,
}

impl Default for TerminalLink {
    fn default() -> Self {
        Self::new()
    }
}

impl TerminalLink {
    /// A link that has not started.
    pub fn new() -> Self {
        TerminalLink {
            screen: None,
            alive: false,
            last_rx_ms: 0,
            next_heartbeat_ms: 0,
            awaiting_hello: false,
        }
    }

    /// Whether the terminal answered within [`DEAD_AFTER_MS`].
    pub fn alive(&self) -> bool {
        self.alive
    }

    /// The screen the terminal should show.
    pub fn screen(&self) -> Option<&Screen> {
        self.screen.as_ref()
    }

    /// The port is open: say hello.
    pub fn start(&mut self, now_ms: u64) -> Vec<Output> {
        self.next_heartbeat_ms = now_ms + HEARTBEAT_MS;
        self.last_rx_ms = now_ms;
        vec![self.hello()]
    }

    fn hello(&mut self) -> Output {
        self.awaiting_hello = true;
        Output::Send(ToTerminal::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            software: fit(env!("CARGO_PKG_VERSION")),
            display: Display::None,
        }))
    }

    /// Show `screen` now, and again whenever the terminal resyncs.
    pub fn show(&mut self, screen: Screen) -> Vec<Output> {
        self.screen = Some(screen.clone());
        vec![Output::Send(ToTerminal::Show(screen))]
    }

    /// Sound the terminal's buzzer.
    pub fn beep(&mut self, beep: Beep) -> Vec<Output> {
        vec![Output::Send(ToTerminal::Beep(beep))]
    }

    /// The port was opened again after a failure: hello, and the current screen at once
    /// (a terminal that kept running answers no hello it did not miss).
    pub fn reopened(&mut self, now_ms: u64) -> Vec<Output> {
        let mut out = self.start(now_ms);
        if let Some(s) = &self.screen {
            out.push(Output::Send(ToTerminal::Show(s.clone())));
        }
        out
    }

    /// A frame (or a dropped one) from the terminal.
    pub fn on_frame(
        &mut self,
        now_ms: u64,
        frame: Result<Envelope<FromTerminal>, FrameError>,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        let msg = match frame {
            Ok(env) => env.body,
            Err(FrameError::Decode(DecodeError::UnsupportedVersion { got, .. })) => {
                out.push(Output::Event(TerminalEvent::VersionMismatch {
                    terminal: got,
                }));
                return out;
            }
            Err(e) => {
                out.push(Output::Event(TerminalEvent::BadFrame(e)));
                return out;
            }
        };
        let was_alive = self.alive;
        self.alive = true;
        self.last_rx_ms = now_ms;
        match msg {
            FromTerminal::Hello(h) if h.protocol != PROTOCOL_VERSION => {
                out.push(Output::Event(TerminalEvent::VersionMismatch {
                    terminal: h.protocol,
                }));
            }
            FromTerminal::Hello(h) => {
                if self.awaiting_hello {
                    self.awaiting_hello = false;
                } else {
                    // Unsolicited: the terminal restarted and needs our version.
                    out.push(self.hello());
                }
                if let Some(s) = &self.screen {
                    out.push(Output::Send(ToTerminal::Show(s.clone())));
                }
                out.push(Output::Event(TerminalEvent::Connected(h)));
            }
            other => {
                if !was_alive && !self.awaiting_hello {
                    // Back after silence without a hello: ask for one, the answer brings
                    // the current screen (the terminal may have missed it).
                    out.push(self.hello());
                }
                match other {
                    FromTerminal::Key(k) => out.push(Output::Event(TerminalEvent::Key(k))),
                    FromTerminal::Scan(s) => out.push(Output::Event(TerminalEvent::Scan(s))),
                    FromTerminal::Heartbeat | FromTerminal::Hello(_) => {}
                }
            }
        }
        out
    }

    /// Time passed: heartbeats out, and the dead-link check.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Output> {
        let mut out = Vec::new();
        if now_ms >= self.next_heartbeat_ms {
            self.next_heartbeat_ms = now_ms + HEARTBEAT_MS;
            out.push(Output::Send(ToTerminal::Heartbeat));
        }
        if self.alive && now_ms.saturating_sub(self.last_rx_ms) >= DEAD_AFTER_MS {
            self.alive = false;
            self.awaiting_hello = false;
            out.push(Output::Event(TerminalEvent::LinkLost));
        }
        out
    }
}

/// Why the terminal link could not run.
#[derive(Debug, thiserror::Error)]
pub enum TerminalError {
    /// The serial port would not open.
    #[error(
        "cannot open terminal port {path}: {source} (check the path and that no other program holds it)"
    )]
    Open {
        /// The port's path.
        path: String,
        /// Why.
        source: super::PortError,
    },
    /// Reading or writing the port failed.
    #[error("terminal port I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The link's thread has stopped; nothing more can be sent.
    #[error("the terminal link has stopped")]
    Stopped,
}

/// Where the terminal is.
#[derive(Debug, Clone)]
pub struct TerminalConfig {
    /// Serial port or pty path.
    pub path: String,
    /// Baud rate (ignored by ptys).
    pub baud: u32,
}

enum Command {
    Show(Screen),
    Beep(Beep),
    Stop,
}

/// Sends screens and beeps to the running link.
pub struct TerminalHandle {
    commands: mpsc::Sender<Command>,
    thread: Option<JoinHandle<Result<(), TerminalError>>>,
}

impl TerminalHandle {
    /// Shows `screen` on the terminal (and again after every resync).
    pub fn show(&self, screen: Screen) -> Result<(), TerminalError> {
        self.commands
            .send(Command::Show(screen))
            .map_err(|_| TerminalError::Stopped)
    }

    /// Sounds the terminal's buzzer.
    pub fn beep(&self, beep: Beep) -> Result<(), TerminalError> {
        self.commands
            .send(Command::Beep(beep))
            .map_err(|_| TerminalError::Stopped)
    }

    /// Stops the link and returns how its thread ended.
    pub fn stop(mut self) -> Result<(), TerminalError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), TerminalError> {
        let _ = self.commands.send(Command::Stop);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(TerminalError::Stopped),
            None => Ok(()),
        }
    }
}

impl Drop for TerminalHandle {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Opens the terminal's port as [`spawn`] does; `floorhand doctor` opens it with this and
/// closes it again.
pub fn open(config: &TerminalConfig) -> Result<Box<dyn serialport::SerialPort>, TerminalError> {
    super::open_serial(&config.path, config.baud, PORT_WAIT).map_err(|source| TerminalError::Open {
        path: config.path.clone(),
        source,
    })
}

/// Opens the terminal's port and runs the link on a thread. Events arrive on the returned
/// receiver (`blocking_recv` from threads, `recv().await` from tasks). A port that cannot
/// be opened now is an error (a wrong path); one that fails later is reopened.
pub fn spawn(
    config: &TerminalConfig,
) -> Result<
    (
        TerminalHandle,
        tokio::sync::mpsc::UnboundedReceiver<TerminalEvent>,
    ),
    TerminalError,
> {
    let port = open(config)?;
    let (cmd_tx, cmd_rx) = mpsc::channel();
    let (ev_tx, ev_rx) = tokio::sync::mpsc::unbounded_channel();
    let config = config.clone();
    let thread = std::thread::Builder::new()
        .name("terminal-link".into())
        .spawn(move || {
            run(&config, port, &cmd_rx, &ev_tx);
            Ok(())
        })?;
    Ok((
        TerminalHandle {
            commands: cmd_tx,
            thread: Some(thread),
        },
        ev_rx,
    ))
}

/// Everything the station asked for since the last look, in order, as outputs of
/// `state`; `None` when the link is to stop (told so, or its handle is gone).
fn drain(commands: &mpsc::Receiver<Command>, state: &mut TerminalLink) -> Option<Vec<Output>> {
    let mut out = Vec::new();
    loop {
        match commands.try_recv() {
            Ok(Command::Show(s)) => out.extend(state.show(s)),
            Ok(Command::Beep(b)) => out.extend(state.beep(b)),
            Ok(Command::Stop) | Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) => return Some(out),
        }
    }
}

/// The reader loop: the only code here that touches the port or the clock. Returns when
/// told to stop (or when the handle is gone), never on an I/O error.
fn run(
    config: &TerminalConfig,
    port: Box<dyn serialport::SerialPort>,
    commands: &mpsc::Receiver<Command>,
    events: &tokio::sync::mpsc::UnboundedSender<TerminalEvent>,
) {
    let start = Instant::now();
    let now = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut state = TerminalLink::new();
    let mut decoder = FrameDecoder::<MAX_LINK_FRAME>::new();
    let mut writer = Writer::new(port);
    // While the port is down: when to try again, and how many tries failed.
    let mut reopen_at = 0;
    let mut failures = 0;
    writer.apply(events, state.start(now()));
    let mut buf = [0u8; 256];
    loop {
        let mut out = Vec::new();
        if writer.port.is_some() {
            match writer.read(&mut buf) {
                Ok(n) => {
                    let mut frames = Vec::new();
                    decoder.feed::<FromTerminal>(&buf[..n], |f| frames.push(f));
                    for f in frames {
                        out.extend(state.on_frame(now(), f));
                    }
                }
                Err(e) => {
                    tracing::warn!("terminal port {} failed: {e}; reopening it", config.path);
                    writer.port = None;
                    decoder = FrameDecoder::new();
                    failures = 0;
                    reopen_at = now() + reopen_delay(0);
                    let _ = events.send(TerminalEvent::Disconnected(e.to_string()));
                }
            }
        } else if now() >= reopen_at {
            match open(config) {
                Ok(p) => {
                    tracing::info!("terminal port {} open again", config.path);
                    writer.reopened(p);
                    out.extend(state.reopened(now()));
                    let _ = events.send(TerminalEvent::Reconnected);
                }
                Err(e) => {
                    failures += 1;
                    reopen_at = now() + reopen_delay(failures);
                    tracing::debug!("terminal: {e}");
                }
            }
        } else {
            // The port is down: wait as a read would, so stop and screens are still seen.
            std::thread::sleep(PORT_WAIT);
        }
        let Some(asked) = drain(commands, &mut state) else {
            return;
        };
        out.extend(asked);
        if writer.port.is_some() {
            out.extend(state.tick(now()));
        }
        writer.apply(events, out);
        writer.catch_up(&state);
        writer.end_round();
    }
}

/// The port (while it is open) and the frames going out on it.
struct Writer {
    port: Option<Box<dyn serialport::SerialPort>>,
    next_id: u64,
    /// A frame was cut short by a write timeout: the next one starts with a delimiter,
    /// so the terminal's decoder drops only the cut frame.
    cut: bool,
    /// The current screen was not written (the line was full): write it when it can be.
    screen_behind: bool,
    /// A write failed for another reason than a full line: the next read reports it, so
    /// the port is closed and reopened in one place.
    failed: Option<std::io::Error>,
    /// Frames dropped on a full line since it last drained, and whether this round
    /// dropped any: the log says when dropping starts and how many when it ends.
    dropped: u64,
    dropped_now: bool,
}

impl Writer {
    fn new(port: Box<dyn serialport::SerialPort>) -> Writer {
        Writer {
            port: Some(port),
            next_id: 1,
            cut: false,
            screen_behind: false,
            failed: None,
            dropped: 0,
            dropped_now: false,
        }
    }

    /// A new port after a failed one: a fresh line (nothing cut, nothing failed); message
    /// ids go on from where they were.
    fn reopened(&mut self, port: Box<dyn serialport::SerialPort>) {
        self.port = Some(port);
        self.cut = false;
        self.failed = None;
    }

    /// Reads what arrived within the port's wait (0 bytes when nothing did); an error
    /// means the port is gone.
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let Some(port) = self.port.as_mut() else {
            return Ok(0);
        };
        match port.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if super::nothing_yet(&e) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Sends and reports what the state said. A full line drops the frames of this round
    /// (the screen among them is written again by [`Writer::catch_up`]); any other
    /// write error is kept for the next read, which reports it and reopens the port.
    fn apply(
        &mut self,
        events: &tokio::sync::mpsc::UnboundedSender<TerminalEvent>,
        outputs: Vec<Output>,
    ) {
        let mut full = false;
        for o in outputs {
            match o {
                Output::Send(msg) => {
                    let is_screen = matches!(msg, ToTerminal::Show(_));
                    if full || self.port.is_none() || self.failed.is_some() {
                        self.screen_behind |= is_screen;
                        if full {
                            self.drop_frame();
                        }
                        continue;
                    }
                    match self.send(&msg) {
                        Ok(()) => {
                            if is_screen {
                                self.screen_behind = false;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                            full = true;
                            self.screen_behind |= is_screen;
                            self.drop_frame();
                        }
                        Err(e) => {
                            self.screen_behind |= is_screen;
                            full = true;
                            self.failed = Some(e);
                        }
                    }
                }
                Output::Event(TerminalEvent::BadFrame(e)) => {
                    tracing::debug!(error = %e, "terminal: frame dropped");
                }
                Output::Event(ev) => {
                    if let TerminalEvent::LinkLost = ev {
                        tracing::warn!("terminal: link lost (no frame within {DEAD_AFTER_MS} ms)");
                    }
                    // Nobody listening is fine: the link keeps the terminal's screen alive.
                    let _ = events.send(ev);
                }
            }
        }
    }

    /// Writes the current screen if an earlier attempt found the line full.
    fn catch_up(&mut self, state: &TerminalLink) {
        if !self.screen_behind || self.port.is_none() || self.failed.is_some() {
            return;
        }
        match state.screen() {
            Some(s) => match self.send(&ToTerminal::Show(s.clone())) {
                Ok(()) => self.screen_behind = false,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => self.drop_frame(),
                Err(e) => self.failed = Some(e),
            },
            None => self.screen_behind = false,
        }
    }

    fn drop_frame(&mut self) {
        if self.dropped == 0 {
            tracing::warn!(
                "terminal: the line is slower than the screens: dropping frames until it drains"
            );
        }
        self.dropped += 1;
        self.dropped_now = true;
    }

    /// Called after each round of writes: a round that dropped nothing ends a run of drops.
    fn end_round(&mut self) {
        if !self.dropped_now && self.dropped > 0 && !self.screen_behind {
            tracing::info!(
                "terminal: the line drained; {} frames were dropped, the latest screen is shown",
                self.dropped
            );
            self.dropped = 0;
        }
        self.dropped_now = false;
    }

    fn send(&mut self, msg: &ToTerminal) -> std::io::Result<()> {
        let Some(port) = self.port.as_mut() else {
            return Ok(());
        };
        let mut bytes = Vec::with_capacity(MAX_LINK_FRAME + 1);
        if self.cut {
            bytes.push(0);
        }
        bytes.extend(frame::encode_to_vec(&Envelope::new(self.next_id, msg)));
        self.next_id = floorhand_protocol::link::next_link_msg_id(self.next_id);
        let mut written = 0;
        while written < bytes.len() {
            match port.write(&bytes[written..]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Part of a frame on the line: the delimiter before the next one ends it.
                    if written > 0 {
                        self.cut = true;
                    }
                    return Err(e);
                }
            }
        }
        self.cut = false;
        Ok(())
    }
}
/// Every screen with each text at its longest and each number at its widest: the largest
/// screen updates the link can carry.
pub fn worst_case_screens() -> Vec<(&'static str, Screen)> {
    let text = |n: usize| "W".repeat(n);
    vec![
        (
            "Pick",
            Screen::Pick(PickPrompt {
                location: fit(&text(14)),
                item: fit(&text(24)),
                qty: u16::MAX,
                done: u16::MAX,
                total: u16::MAX,
            }),
        ),
        (
            "Scan",
            Screen::Scan {
                target: ScanTarget::Carton,
                hint: fit(&text(32)),
            },
        ),
        (
            "Quantity",
            Screen::Quantity {
                prompt: fit(&text(24)),
                value: u32::MAX,
                max: u32::MAX,
            },
        ),
        (
            "Reasons",
            Screen::Reasons {
                options: [MenuReason::NotEnough; 6].into_iter().collect(),
                selected: u8::MAX,
            },
        ),
        (
            "Message",
            Screen::Message {
                level: Level::Warning,
                text: fit(&text(48)),
            },
        ),
        (
            "Offline",
            Screen::Offline {
                backlog: u32::MAX,
                since_s: u32::MAX,
            },
        ),
        (
            "WaveDone",
            Screen::WaveDone {
                picked: u16::MAX,
                short: u16::MAX,
            },
        ),
    ]
}

/// Bytes on the wire for showing `screen` as message `msg_id`: COBS, CRC and delimiter.
pub fn show_frame_len(msg_id: u64, screen: &Screen) -> usize {
    frame::encode_to_vec(&Envelope::new(msg_id, ToTerminal::Show(screen.clone()))).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello_from_terminal(protocol: u8) -> Result<Envelope<FromTerminal>, FrameError> {
        Ok(Envelope::new(
            1,
            FromTerminal::Hello(Hello {
                protocol,
                software: fit("0.1.0"),
                display: Display::Mono128x64,
            }),
        ))
    }

    fn from_terminal(msg: FromTerminal) -> Result<Envelope<FromTerminal>, FrameError> {
        Ok(Envelope::new(2, msg))
    }

    fn sends(out: &[Output]) -> Vec<&ToTerminal> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send(m) => Some(m),
                Output::Event(_) => None,
            })
            .collect()
    }

    fn says_hello(out: &[Output]) -> bool {
        sends(out).iter().any(|m| matches!(m, ToTerminal::Hello(_)))
    }

    fn screen() -> Screen {
        Screen::Message {
            level: Level::Info,
            text: fit("Scan your badge"),
        }
    }

    #[test]
    fn the_answer_to_our_hello_brings_the_screen_but_no_second_hello() {
        let mut l = TerminalLink::new();
        assert!(says_hello(&l.start(0)));
        l.show(screen());
        let out = l.on_frame(10, hello_from_terminal(PROTOCOL_VERSION));
        assert!(!says_hello(&out));
        assert_eq!(sends(&out), vec![&ToTerminal::Show(screen())]);
        assert!(matches!(
            out.last(),
            Some(Output::Event(TerminalEvent::Connected(_)))
        ));
    }

    #[test]
    fn an_unsolicited_hello_from_a_restarted_terminal_gets_hello_and_the_screen() {
        let mut l = TerminalLink::new();
        l.start(0);
        l.show(screen());
        l.on_frame(10, hello_from_terminal(PROTOCOL_VERSION));
        let out = l.on_frame(5_000, hello_from_terminal(PROTOCOL_VERSION));
        assert!(says_hello(&out));
        assert!(sends(&out).contains(&&ToTerminal::Show(screen())));
        // Its answer to our hello ends the exchange.
        let out = l.on_frame(5_010, hello_from_terminal(PROTOCOL_VERSION));
        assert!(!says_hello(&out));
    }

    #[test]
    fn silence_past_the_timeout_is_reported_once_as_link_lost() {
        let mut l = TerminalLink::new();
        l.start(0);
        l.on_frame(10, hello_from_terminal(PROTOCOL_VERSION));
        let mut lost = 0;
        for t in (0..10_000).step_by(100) {
            lost += l
                .tick(t)
                .iter()
                .filter(|o| **o == Output::Event(TerminalEvent::LinkLost))
                .count();
        }
        assert_eq!(lost, 1);
        assert!(!l.alive());
    }

    #[test]
    fn heartbeats_go_out_every_second_and_answers_keep_the_link_alive() {
        let mut l = TerminalLink::new();
        l.start(0);
        l.on_frame(10, hello_from_terminal(PROTOCOL_VERSION));
        let mut beats = 0;
        for t in (100..=10_000).step_by(100) {
            let out = l.tick(t);
            if out.contains(&Output::Send(ToTerminal::Heartbeat)) {
                beats += 1;
                l.on_frame(t + 5, from_terminal(FromTerminal::Heartbeat));
            }
            assert!(!out.contains(&Output::Event(TerminalEvent::LinkLost)));
        }
        assert_eq!(beats, 10);
        assert!(l.alive());
    }

    #[test]
    fn a_heartbeat_after_a_dead_link_asks_for_hello_then_resends_the_screen() {
        let mut l = TerminalLink::new();
        l.start(0);
        l.show(screen());
        l.on_frame(10, hello_from_terminal(PROTOCOL_VERSION));
        l.tick(DEAD_AFTER_MS + 10);
        assert!(!l.alive());
        let out = l.on_frame(6_000, from_terminal(FromTerminal::Heartbeat));
        assert!(says_hello(&out));
        let out = l.on_frame(6_010, hello_from_terminal(PROTOCOL_VERSION));
        assert_eq!(sends(&out), vec![&ToTerminal::Show(screen())]);
    }

    #[test]
    fn keys_and_scans_become_events() {
        let mut l = TerminalLink::new();
        l.start(0);
        l.on_frame(10, hello_from_terminal(PROTOCOL_VERSION));
        let out = l.on_frame(20, from_terminal(FromTerminal::Key(Key::Digit(3))));
        assert_eq!(out, vec![Output::Event(TerminalEvent::Key(Key::Digit(3)))]);
    }

    #[test]
    fn a_terminal_of_another_version_is_reported() {
        let mut l = TerminalLink::new();
        l.start(0);
        let out = l.on_frame(10, hello_from_terminal(PROTOCOL_VERSION + 1));
        assert_eq!(
            out,
            vec![Output::Event(TerminalEvent::VersionMismatch {
                terminal: PROTOCOL_VERSION + 1
            })]
        );
        let out = l.on_frame(
            20,
            Err(FrameError::Decode(DecodeError::UnsupportedVersion {
                got: 7,
                supported: PROTOCOL_VERSION,
            })),
        );
        assert_eq!(
            out,
            vec![Output::Event(TerminalEvent::VersionMismatch {
                terminal: 7
            })]
        );
    }

    #[test]
    fn a_reopened_port_gets_hello_and_the_current_screen_at_once() {
        let mut l = TerminalLink::new();
        l.start(0);
        assert!(says_hello(&l.reopened(100)), "no screen yet: hello alone");
        assert_eq!(sends(&l.reopened(100)).len(), 1);
        l.show(screen());
        let out = l.reopened(5_000);
        assert!(says_hello(&out));
        assert!(sends(&out).contains(&&ToTerminal::Show(screen())));
        // The terminal's answer to that hello does not start another one.
        let out = l.on_frame(5_010, hello_from_terminal(PROTOCOL_VERSION));
        assert!(!says_hello(&out));
    }

    #[test]
    fn reopening_waits_double_each_time_from_200_ms_up_to_5_s() {
        let delays: Vec<u64> = (0..8).map(reopen_delay).collect();
        assert_eq!(delays, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(reopen_delay(u32::MAX), REOPEN_MAX_MS);
    }

    fn text(i: u32) -> Screen {
        Screen::Message {
            level: Level::Info,
            text: fit(&format!("scan {i}")),
        }
    }

    #[test]
    fn queued_screens_and_beeps_go_out_in_order_until_told_to_stop() {
        let (tx, rx) = mpsc::channel();
        let mut l = TerminalLink::new();
        tx.send(Command::Show(text(1))).unwrap();
        tx.send(Command::Beep(Beep::Error)).unwrap();
        tx.send(Command::Show(text(2))).unwrap();
        let out = drain(&rx, &mut l).unwrap();
        assert_eq!(
            sends(&out),
            vec![
                &ToTerminal::Show(text(1)),
                &ToTerminal::Beep(Beep::Error),
                &ToTerminal::Show(text(2))
            ]
        );
        assert_eq!(l.screen(), Some(&text(2)));
        assert_eq!(drain(&rx, &mut l), Some(vec![]), "nothing left");
        tx.send(Command::Show(text(3))).unwrap();
        tx.send(Command::Stop).unwrap();
        assert_eq!(drain(&rx, &mut l), None);
        drop(tx);
        assert_eq!(
            drain(&rx, &mut l),
            None,
            "a dropped handle stops the link too"
        );
    }

    /// Decodes every screen in `bytes`.
    fn screens_in(bytes: &[u8]) -> Vec<Screen> {
        let mut d = FrameDecoder::<MAX_LINK_FRAME>::new();
        let mut out = Vec::new();
        d.feed::<ToTerminal>(bytes, |f| {
            if let Ok(Envelope {
                body: ToTerminal::Show(s),
                ..
            }) = f
            {
                out.push(s);
            }
        });
        out
    }

    #[test]
    fn a_burst_on_a_line_nobody_reads_drops_frames_at_once_and_the_latest_screen_follows() {
        use std::io::Read;
        // A real pty pair: nobody reads the master end until the burst is over, as a
        // terminal reading at 115200 baud cannot keep up with 20,000 screens.
        let (mut terminal_end, mut agent_end) = serialport::TTYPort::pair().unwrap();
        serialport::SerialPort::set_timeout(&mut agent_end, PORT_WAIT).unwrap();
        serialport::SerialPort::set_timeout(&mut terminal_end, PORT_WAIT).unwrap();
        let mut w = Writer::new(Box::new(agent_end));
        let mut l = TerminalLink::new();
        let (events, _rx) = tokio::sync::mpsc::unbounded_channel();
        let started = Instant::now();
        for round in 0..20 {
            let out: Vec<Output> = (0..1000)
                .flat_map(|i| l.show(text(round * 1000 + i)))
                .collect();
            w.apply(&events, out);
            w.catch_up(&l);
        }
        let took = started.elapsed();
        // Each round waits for the full line at most once for its frames (20 ms) and
        // once for the catch-up.
        assert!(
            took < Duration::from_secs(3),
            "20,000 screens took {took:?}"
        );
        assert!(
            w.screen_behind,
            "the latest screen could not be written yet"
        );
        assert!(
            w.port.is_some() && w.failed.is_none(),
            "a full line is not a failure"
        );
        // The terminal reads what is on the line; the latest screen is written next.
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(10);
        while !screens_in(&seen).contains(&text(19_999)) {
            assert!(Instant::now() < deadline, "the latest screen never came");
            if let Ok(n) = terminal_end.read(&mut buf) {
                seen.extend_from_slice(&buf[..n]);
            }
            w.catch_up(&l);
        }
        assert!(!w.screen_behind);
        let screens = screens_in(&seen);
        assert!(
            screens.len() < 20_000,
            "frames were dropped, not queued: {} screens",
            screens.len()
        );
        assert_eq!(
            screens.first(),
            Some(&text(0)),
            "the line took the first ones whole"
        );
    }

    #[test]
    fn every_screen_at_its_largest_fits_the_64_byte_budget() {
        // Link message ids wrap at MAX_LINK_MSG_ID, so the largest id takes 3 bytes.
        for (name, s) in worst_case_screens() {
            let len = show_frame_len(floorhand_protocol::limits::MAX_LINK_MSG_ID, &s);
            println!(
                "worst case Show/{name}: {len} bytes, {:.2} ms at 115200 baud",
                len as f64 * 10.0 / 115_200.0 * 1000.0,
            );
            assert!(
                len <= 64,
                "Show/{name} is {len} bytes, over the 64-byte goal"
            );
        }
    }
}
