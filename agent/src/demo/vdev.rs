//! The demo's virtual devices on real ptys: a scanner (a shared [`PtyPair`]: the demo types
//! barcodes into one end, `devices::scanner` reads the other) and the firmware terminal host
//! runner (`floorhand-terminal`, a child process on a pty) drawing every screen to PNG. Its
//! printer is the shared `rigs::fake_printer::FakePrinter`, storing each label as a file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use super::DemoError;
use crate::devices::scanner::{self, ScannerConfig, ScannerEvent};
use crate::rigs::pty::PtyPair;

/// A barcode scanner on a pty: [`VirtualScanner::scan`] types a barcode (CR suffix) into
/// the device end; the agent's `devices::scanner` reader on the other end delivers it.
pub struct VirtualScanner {
    tty: std::fs::File,
    /// Scans as the agent's scanner reader framed them.
    pub events: mpsc::UnboundedReceiver<ScannerEvent>,
    stop: Arc<AtomicBool>,
    _pty: PtyPair,
}

impl VirtualScanner {
    /// A pty pair in `dir` and the agent's reader thread on it.
    pub fn start(dir: &Path, name: &str) -> Result<VirtualScanner, DemoError> {
        let pty = PtyPair::new(dir, name).map_err(|e| DemoError::io("the scanner's pty", e))?;
        let tty = pty
            .device_file()
            .map_err(|e| DemoError::io("the scanner's pty", e))?;
        let (tx, events) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let cfg = ScannerConfig::serial(&pty.agent, 9600);
        let s = stop.clone();
        std::thread::Builder::new()
            .name(format!("{name}-reader"))
            .spawn(move || {
                let _ = scanner::run(&cfg, &s, |ev| tx.send(ev).is_ok());
            })
            .map_err(|e| DemoError::io("the scanner thread", e))?;
        Ok(VirtualScanner {
            tty,
            events,
            stop,
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

    /// The next scan the agent's reader delivered, waiting at most `within`.
    pub async fn next(&mut self, within: Duration) -> Result<Vec<u8>, DemoError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ScannerEvent::Scan(raw))) => return Ok(raw),
                Ok(Some(_)) => continue,
                Ok(None) => return Err(DemoError::Device("the scanner reader stopped".into())),
                Err(_) => {
                    return Err(DemoError::Device(format!(
                        "no scan arrived through the pty within {within:?}"
                    )));
                }
            }
        }
    }
}

impl Drop for VirtualScanner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `floorhand-terminal` (the firmware crate's host runner, feature `sim`), found next to
/// this binary and run as a child process on the device end of a pty pair, drawing every
/// screen it receives over the serial link into `dir`. Killed on drop.
pub struct TerminalRunner {
    child: Child,
    /// Where its PNGs go.
    pub dir: PathBuf,
    /// The pty end the agent's `devices::terminal` opens.
    pub agent_port: PathBuf,
    _pty: PtyPair,
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
    /// Starts `floorhand-terminal` (next to this binary) on a new pty pair in `pty_dir`;
    /// its stderr (beeps, errors) goes to `log`.
    pub fn start(pty_dir: &Path, png_dir: &Path, log: &Path) -> Result<TerminalRunner, DemoError> {
        let dir = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf))
            .ok_or_else(|| DemoError::Device("cannot locate the floorhand executable".into()))?;
        let bin = dir.join("floorhand-terminal");
        if !bin.exists() {
            return Err(DemoError::Device(terminal_missing(&dir)));
        }
        let pty = PtyPair::new(pty_dir, "terminal")
            .map_err(|e| DemoError::io("the terminal's pty", e))?;
        let log = std::fs::File::create(log).map_err(|e| DemoError::io("terminal log", e))?;
        let child = Command::new(bin)
            .arg("--port")
            .arg(&pty.device)
            .arg("--display")
            .arg("mono")
            .arg("--out")
            .arg(png_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| DemoError::io("floorhand-terminal", e))?;
        Ok(TerminalRunner {
            child,
            dir: png_dir.to_path_buf(),
            agent_port: pty.agent.clone(),
            _pty: pty,
        })
    }

    /// Asks the terminal to quit (`q` on its stdin) so its last PNG is complete, and kills
    /// it if it has not within a second. `Err` says why it had stopped on its own.
    pub fn stop(mut self) -> Result<(), String> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Err(format!(
                "floorhand-terminal stopped early ({status}); see terminal.log"
            ));
        }
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = stdin.write_all(b"q\n");
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
