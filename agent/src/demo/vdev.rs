//! The demo's virtual devices, each on a shared [`PtyPair`] whose agent end the station
//! opens from its config (`[scanner]`, `[terminal]`) as it would a USB device:
//!
//! - [`VirtualScanner`]: the demo types barcodes into the device end.
//! - [`TerminalLine`]: the operator's side of a station's terminal. A tap on the line
//!   decodes every frame the agent sends (the screens and beeps the operator reacts to);
//!   the device end is `floorhand-terminal` (the firmware's host runner, drawing every
//!   screen to PNG) whose keys the operator presses on its stdin, or, where there is
//!   none, the demo standing in for a terminal, sending key frames itself.
//!
//! The label printer is the shared `rigs::fake_printer::FakePrinter`, storing each label
//! as a file.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floorhand_protocol::Envelope;
use floorhand_protocol::frame::{self, FrameDecoder};
use floorhand_protocol::limits::MAX_LINK_FRAME;
use floorhand_protocol::link::{Beep, FromTerminal, Key, Level, Screen, ToTerminal};

use super::DemoError;
use crate::rigs::pty::{PtyPair, Tap};

/// A barcode scanner on a pty: [`VirtualScanner::scan`] types a barcode (CR suffix) into
/// the device end; the station's scanner reader on [`VirtualScanner::agent_port`] reads it.
pub struct VirtualScanner {
    tty: File,
    /// The end the station opens (its `[scanner]`'s serial path).
    pub agent_port: PathBuf,
    _pty: PtyPair,
}

impl VirtualScanner {
    /// A pty pair in `dir` named `name`.
    pub fn start(dir: &Path, name: &str) -> Result<VirtualScanner, DemoError> {
        let pty = PtyPair::new(dir, name).map_err(|e| DemoError::io("the scanner's pty", e))?;
        let tty = pty
            .device_file()
            .map_err(|e| DemoError::io("the scanner's pty", e))?;
        Ok(VirtualScanner {
            tty,
            agent_port: pty.agent.clone(),
            _pty: pty,
        })
    }

    /// Types `data` and the CR suffix, as a serial scanner does.
    pub fn scan(&mut self, data: &[u8]) -> Result<(), DemoError> {
        let mut bytes = data.to_vec();
        bytes.push(b'\r');
        self.tty
            .write_all(&bytes)
            .and_then(|()| self.tty.flush())
            .map_err(|e| DemoError::io("the scanner pty", e))
    }
}

/// How long a terminal line must stay quiet after a frame for the station to count as
/// done with an input: a station sends all it has to say about one input within
/// milliseconds (a commit comes before its screen and beep, never between them).
const QUIET: Duration = Duration::from_millis(150);

/// What the agent sent on a terminal line, heartbeats and hellos left out.
#[derive(Default)]
struct Seen {
    frames: Vec<ToTerminal>,
    error_beeps: u64,
}

/// The operator's side of a station's terminal (see the module doc).
pub struct TerminalLine {
    seen: Arc<Mutex<Seen>>,
    keypad: Keypad,
    /// The end the station opens (its `[terminal]`'s port).
    pub agent_port: PathBuf,
    _pty: PtyPair,
}

/// Where the operator's key presses go in.
enum Keypad {
    /// `floorhand-terminal`'s stdin: it sends each key as the terminal it is.
    Runner(TerminalRunner),
    /// The device end: the demo sends key frames itself.
    StandIn(Arc<StandIn>),
}

/// The demo as a terminal: the device end, and the next frame id.
struct StandIn {
    tty: Mutex<File>,
    next_id: std::sync::atomic::AtomicU64,
}

impl StandIn {
    /// Sends `msg` as one frame, in one write (the line never interleaves two frames).
    fn send(&self, msg: &FromTerminal) -> std::io::Result<()> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let bytes = frame::encode_to_vec(&Envelope::new(id, msg));
        let mut tty = self.tty.lock().unwrap_or_else(|e| e.into_inner());
        tty.write_all(&bytes).and_then(|()| tty.flush())
    }
}

impl TerminalLine {
    /// A tapped pty pair in `pty_dir` named `name`, and on its device end
    /// `floorhand-terminal` drawing into `screens` (logging to `log`) when `screens` is
    /// given and the runner is built, else the demo standing in. The note says why there
    /// is no runner, when one was wanted.
    pub fn start(
        pty_dir: &Path,
        name: &str,
        screens: Option<(&Path, &Path)>,
    ) -> Result<(TerminalLine, Option<String>), DemoError> {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let pty = PtyPair::tapped(pty_dir, name, tap(seen.clone()))
            .map_err(|e| DemoError::io("the terminal's pty", e))?;
        let runner = screens.map(|(png_dir, log)| TerminalRunner::start(&pty.device, png_dir, log));
        let (keypad, note) = match runner {
            Some(Ok(r)) => (Keypad::Runner(r), None),
            other => {
                let note = match other {
                    Some(Err(e)) => Some(e.to_string()),
                    _ => None,
                };
                (stand_in(&pty)?, note)
            }
        };
        Ok((
            TerminalLine {
                seen,
                keypad,
                agent_port: pty.agent.clone(),
                _pty: pty,
            },
            note,
        ))
    }

    /// Presses `key` on the terminal.
    pub fn press(&mut self, key: Key) -> Result<(), DemoError> {
        match &mut self.keypad {
            Keypad::Runner(r) => r.press(key),
            Keypad::StandIn(t) => t
                .send(&FromTerminal::Key(key))
                .map_err(|e| DemoError::io("the terminal's pty", e)),
        }
    }

    /// Frames seen so far: a mark for [`TerminalLine::settle`].
    pub fn mark(&self) -> usize {
        self.lock().frames.len()
    }

    /// Waits at most `within` for a frame after `mark`; once one came, until the line has
    /// been quiet for a moment (the station is done with the input). False if none came.
    pub async fn settle(&self, mark: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut last = (mark, Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let n = self.mark();
            if n != last.0 {
                last = (n, Instant::now());
            } else if n > mark && last.1.elapsed() >= QUIET {
                return true;
            }
            if n == mark && Instant::now() > deadline {
                return false;
            }
        }
    }

    /// The prompt shown last: the last screen that is not an error message (a refusal's
    /// message stands over the prompt, which still asks the same).
    pub fn prompt(&self) -> Option<Screen> {
        self.lock().frames.iter().rev().find_map(|f| match f {
            ToTerminal::Show(Screen::Message {
                level: Level::Error,
                ..
            }) => None,
            ToTerminal::Show(s) => Some(s.clone()),
            _ => None,
        })
    }

    /// The text of the last error message shown after `mark`, if any.
    pub fn error_since(&self, mark: usize) -> Option<String> {
        self.lock()
            .frames
            .iter()
            .skip(mark)
            .rev()
            .find_map(|f| match f {
                ToTerminal::Show(Screen::Message {
                    level: Level::Error,
                    text,
                }) => Some(text.to_string()),
                _ => None,
            })
    }

    /// A count of the line's error beeps (each a scan or key the station refused) that
    /// can be read while the operator works.
    pub fn error_beeps(&self) -> ErrorBeeps {
        ErrorBeeps(self.seen.clone())
    }

    /// Ends `floorhand-terminal` (see [`TerminalRunner::stop`]); `Err` says why it had
    /// stopped on its own. The line stays up until this is dropped.
    pub fn stop(&mut self) -> Result<(), String> {
        match &mut self.keypad {
            Keypad::Runner(r) => r.stop(),
            Keypad::StandIn(_) => Ok(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// See [`TerminalLine::error_beeps`].
#[derive(Clone)]
pub struct ErrorBeeps(Arc<Mutex<Seen>>);

impl ErrorBeeps {
    /// Error beeps so far.
    pub fn get(&self) -> u64 {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).error_beeps
    }
}

/// The tap that decodes the agent's frames into `seen`.
fn tap(seen: Arc<Mutex<Seen>>) -> Tap {
    let mut decoder = FrameDecoder::<MAX_LINK_FRAME>::new();
    Box::new(move |bytes| {
        decoder.feed::<ToTerminal>(bytes, |f| {
            let Ok(env) = f else { return };
            let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
            match env.body {
                ToTerminal::Heartbeat | ToTerminal::Hello(_) => {}
                ToTerminal::Beep(b) => {
                    if b == Beep::Error {
                        s.error_beeps += 1;
                    }
                    s.frames.push(ToTerminal::Beep(b));
                }
                f => s.frames.push(f),
            }
        });
    })
}

/// The demo as the terminal on `pty`'s device end: it sends key frames there, and a thread
/// takes every frame off the line and answers the agent's heartbeats, as the firmware
/// does, so the agent sees a live terminal (the tap has decoded the frames already).
fn stand_in(pty: &PtyPair) -> Result<Keypad, DemoError> {
    let tty = pty
        .device_file()
        .map_err(|e| DemoError::io("the terminal's pty", e))?;
    let mut reader = tty
        .try_clone()
        .map_err(|e| DemoError::io("the terminal's pty", e))?;
    let t = Arc::new(StandIn {
        tty: Mutex::new(tty),
        next_id: std::sync::atomic::AtomicU64::new(1),
    });
    let answering = t.clone();
    std::thread::Builder::new()
        .name("terminal-stand-in".into())
        .spawn(move || {
            let mut decoder = FrameDecoder::<MAX_LINK_FRAME>::new();
            let mut buf = [0u8; 512];
            // Ends when the pair goes away (a hang-up) with the line.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                let mut beats = 0;
                decoder.feed::<ToTerminal>(&buf[..n], |f| {
                    if matches!(
                        f,
                        Ok(Envelope {
                            body: ToTerminal::Heartbeat,
                            ..
                        })
                    ) {
                        beats += 1;
                    }
                });
                for _ in 0..beats {
                    let _ = answering.send(&FromTerminal::Heartbeat);
                }
            }
        })
        .map_err(|e| DemoError::io("the terminal thread", e))?;
    Ok(Keypad::StandIn(t))
}

/// `floorhand-terminal` (the firmware crate's host runner, feature `sim`), found next to
/// this binary and run as a child process on the device end of a terminal line, drawing
/// every screen it receives over the serial link into its PNG directory; the operator's
/// keys go in on its stdin. Killed on drop.
pub struct TerminalRunner {
    child: Child,
    stdin: Option<ChildStdin>,
}

/// The build that puts `floorhand-terminal` next to `floorhand` in `target/<profile>/`.
const TERMINAL_BUILD: &str = "cargo build --locked -p floorhand -p floorhand-firmware --features floorhand-firmware/sim --bins";

/// Why there are no screens when `floorhand-terminal` is not in `dir` (the directory of
/// the running `floorhand`), and exactly how to get it.
fn terminal_missing(dir: &Path) -> String {
    let release = if dir.ends_with("release") {
        " --release"
    } else {
        ""
    };
    let build = TERMINAL_BUILD.replacen("cargo build", &format!("cargo build{release}"), 1);
    format!(
        "no terminal screens: floorhand-terminal is not built next to floorhand (in {}); \
         run the demo with `scripts/demo`, which builds both, or build it with `{build}`",
        dir.display()
    )
}

impl TerminalRunner {
    /// Starts `floorhand-terminal` (next to this binary) on `port`; its PNGs go to
    /// `png_dir`, its stderr (beeps, errors) to `log`.
    pub fn start(port: &Path, png_dir: &Path, log: &Path) -> Result<TerminalRunner, DemoError> {
        let dir = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf))
            .ok_or_else(|| DemoError::Device("cannot locate the floorhand executable".into()))?;
        let bin = dir.join("floorhand-terminal");
        if !bin.exists() {
            return Err(DemoError::Device(terminal_missing(&dir)));
        }
        let log = std::fs::File::create(log).map_err(|e| DemoError::io("terminal log", e))?;
        let mut child = Command::new(bin)
            .arg("--port")
            .arg(port)
            .arg("--display")
            .arg("mono")
            .arg("--out")
            .arg(png_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| DemoError::io("floorhand-terminal", e))?;
        let stdin = child.stdin.take();
        Ok(TerminalRunner { child, stdin })
    }

    /// Presses `key`: one line on its stdin (`floorhand-terminal --help` lists them).
    fn press(&mut self, key: Key) -> Result<(), DemoError> {
        let line = match key {
            Key::Digit(d) => d.to_string(),
            Key::Enter => "enter".into(),
            Key::Back => "b".into(),
            Key::Up => "u".into(),
            Key::Down => "d".into(),
            Key::Clear => "c".into(),
            Key::F(n) => format!("f{n}"),
        };
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| DemoError::Device("floorhand-terminal has stopped".into()))?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| DemoError::io("floorhand-terminal's stdin", e))
    }

    /// Asks the terminal to quit (`q` on its stdin) so its last PNG is complete, and kills
    /// it if it has not within a second. `Err` says why it had stopped on its own.
    pub fn stop(&mut self) -> Result<(), String> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Err(format!(
                "floorhand-terminal stopped early ({status}); see terminal.log"
            ));
        }
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = stdin.write_all(b"q\n");
            let _ = stdin.flush();
        }
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for TerminalRunner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// PNG previews of `labels` (ZPL files) drawn by the label tests' renderer
/// (`tests/label-check/render.mjs`, zpl-renderer-js under node), when this is run from a
/// checkout where `npm ci` was run there. Returns the PNGs made, or why there are none.
pub fn label_previews(labels: &[String]) -> Result<Vec<String>, String> {
    let dir = Path::new("tests/label-check");
    if !dir.join("node_modules").exists() {
        return Err(
            "no label previews: run from the repository after `npm ci` in tests/label-check".into(),
        );
    }
    // One node process per label, all at once: each spends most of its time starting up.
    let mut running = Vec::new();
    for zpl in labels {
        let png = Path::new(zpl).with_extension("png");
        let child = Command::new("node")
            .arg(dir.join("render.mjs"))
            .arg(zpl)
            .arg(&png)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("no label previews: node: {e}"))?;
        running.push((zpl, png, child));
    }
    let mut made = Vec::new();
    let mut failed = None;
    for (zpl, png, mut child) in running {
        match child.wait() {
            Ok(s) if s.success() => made.push(png.display().to_string()),
            _ => failed = Some(format!("no preview for {zpl}: render.mjs failed")),
        }
    }
    match failed {
        Some(why) if made.is_empty() => Err(why),
        _ => Ok(made),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(dir: &str, expected_build: &str) {
        let note = terminal_missing(Path::new(dir));
        assert!(note.contains("`scripts/demo`"), "{note}");
        assert!(note.contains(&format!("`{expected_build}`")), "{note}");
        assert!(note.contains(dir), "{note}");
    }

    #[test]
    fn a_missing_terminal_note_gives_the_script_and_the_release_build_line() {
        check(
            "/src/floorhand/target/release",
            "cargo build --release --locked -p floorhand -p floorhand-firmware \
             --features floorhand-firmware/sim --bins",
        );
    }

    #[test]
    fn a_missing_terminal_note_for_a_dev_build_gives_the_dev_build_line() {
        check(
            "/src/floorhand/target/debug",
            "cargo build --locked -p floorhand -p floorhand-firmware \
             --features floorhand-firmware/sim --bins",
        );
    }
}
