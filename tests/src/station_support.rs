//! Helpers for the station end-to-end tests: the real `floorhand run` process, a scanner
//! on a pty pair, and the test standing in for the display terminal on another pty
//! (reading the agent's frames with the protocol's decoder and sending key and scan
//! frames). Both can be unplugged and plugged in again; the terminal can read as slowly
//! as a real serial line.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floorhand_protocol::Envelope;
use floorhand_protocol::frame::{self, FrameDecoder};
use floorhand_protocol::limits::MAX_LINK_FRAME;
use floorhand_protocol::link::{Display, FromTerminal, Hello, Key, Scan, ToTerminal};

use crate::pty::PtyPair;
use crate::workspace_bin;

/// How long any one step may take before a test fails.
pub const STEP: Duration = Duration::from_secs(30);

/// The real `floorhand run --config` process; SIGKILLed on drop if still running.
pub struct AgentProcess {
    child: Option<Child>,
    log: PathBuf,
}

impl AgentProcess {
    /// Starts `floorhand run --config config`, its log in `log`.
    pub fn start(config: &Path, log: &Path) -> AgentProcess {
        let child = Command::new(workspace_bin("floorhand"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::options().create(true).append(true).open(log).unwrap())
            .spawn()
            .expect("start floorhand run");
        AgentProcess {
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Sends SIGTERM and waits for a clean exit; panics with the log if it does not exit
    /// successfully. Returns how long the exit took after the signal.
    pub fn stop(&mut self) -> Duration {
        let Some(mut child) = self.child.take() else {
            return Duration::ZERO;
        };
        let signalled = Instant::now();
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(s) = child.try_wait().expect("wait for floorhand") {
                assert!(
                    s.success(),
                    "floorhand exited with {s}; log:\n{}",
                    self.log()
                );
                return signalled.elapsed();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("floorhand did not stop on SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log has `text` at least `times` times; panics with the log.
    pub fn wait_log(&self, text: &str, times: usize) {
        let deadline = Instant::now() + STEP;
        while self.log().matches(text).count() < times {
            assert!(
                Instant::now() < deadline,
                "the agent did not log {text:?} {times} time(s); log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A serial cable between the agent and a device the test plays: a pty pair whose agent
/// end stays at one path across unplugs.
struct Cable {
    port: PathBuf,
    dir: PathBuf,
    writer: Option<File>,
    pty: Option<PtyPair>,
}

impl Cable {
    fn new(dir: &Path) -> Cable {
        std::fs::create_dir_all(dir).unwrap();
        Cable {
            port: dir.join("a"),
            dir: dir.to_path_buf(),
            writer: None,
            pty: None,
        }
    }

    /// Pulls the cable: the pty pair goes away (its links too); the agent's reads fail.
    fn unplug(&mut self) {
        self.writer = None;
        self.pty = None;
        let _ = std::fs::remove_file(self.dir.join("a"));
        let _ = std::fs::remove_file(self.dir.join("b"));
    }

    /// Plugs it in again: a new pty pair at the same path. Returns the device's end.
    fn plug_in(&mut self) -> PathBuf {
        let pty = PtyPair::new(&self.dir);
        assert_eq!(pty.a, self.port);
        self.writer = Some(File::options().write(true).open(&pty.b).unwrap());
        let b = pty.b.clone();
        self.pty = Some(pty);
        b
    }

    fn send(&mut self, bytes: &[u8]) {
        let w = self.writer.as_mut().expect("the device is plugged in");
        w.write_all(bytes).unwrap();
        w.flush().unwrap();
    }
}

/// A scanner: the test writes barcodes into one end of a pty pair, the agent reads the
/// other end as its serial scanner. It can be unplugged and plugged in again.
pub struct ScannerWire {
    /// The agent's end.
    pub port: PathBuf,
    cable: Cable,
}

impl ScannerWire {
    /// A pty pair under `dir`.
    pub fn new(dir: &Path) -> ScannerWire {
        let mut cable = Cable::new(dir);
        cable.plug_in();
        ScannerWire {
            port: cable.port.clone(),
            cable,
        }
    }

    /// Pulls the cable: the pty pair goes away (its links too).
    pub fn unplug(&mut self) {
        self.cable.unplug();
    }

    /// Plugs it in again: a new pty pair at the same path.
    pub fn plug_in(&mut self) {
        self.cable.plug_in();
    }

    /// Writes barcodes, each followed by CR (the scanner's suffix), in one write.
    pub fn scan(&mut self, codes: &[&str]) {
        let mut bytes = Vec::new();
        for c in codes {
            bytes.extend_from_slice(c.as_bytes());
            bytes.push(b'\r');
        }
        self.send(&bytes);
    }

    /// Writes raw bytes, e.g. a serial scale's lines (a scale is wired the same way).
    pub fn send(&mut self, bytes: &[u8]) {
        self.cable.send(bytes);
    }
}

/// Read as fast as the pty gives bytes: [`TerminalWire::read_rate`].
pub const FULL_SPEED: u64 = u64::MAX;

/// The test as the display terminal: every frame the agent sends is decoded and kept,
/// across unplugs.
pub struct TerminalWire {
    /// The agent's end.
    pub port: PathBuf,
    cable: Cable,
    frames: Arc<Mutex<Vec<ToTerminal>>>,
    rate: Arc<AtomicU64>,
    next_id: u64,
}

impl TerminalWire {
    /// A pty pair under `dir` and a reader thread on the test's end.
    pub fn new(dir: &Path) -> TerminalWire {
        let cable = Cable::new(dir);
        let mut w = TerminalWire {
            port: cable.port.clone(),
            cable,
            frames: Arc::new(Mutex::new(Vec::new())),
            rate: Arc::new(AtomicU64::new(FULL_SPEED)),
            next_id: 1,
        };
        w.plug_in();
        w
    }

    /// Pulls the cable: the pty pair goes away; the agent's reads fail.
    pub fn unplug(&mut self) {
        self.cable.unplug();
    }

    /// Plugs it in again: a new pty pair at the same path, read by a new thread.
    pub fn plug_in(&mut self) {
        let b = self.cable.plug_in();
        let mut reader = File::options().read(true).open(&b).unwrap();
        let sink = self.frames.clone();
        let rate = self.rate.clone();
        std::thread::spawn(move || {
            let mut decoder = FrameDecoder::<MAX_LINK_FRAME>::new();
            let mut buf = [0u8; 512];
            loop {
                // A slow terminal takes rate/100 bytes every 10 ms; a paused one nothing.
                let r = rate.load(Ordering::Relaxed);
                let want = if r == FULL_SPEED {
                    buf.len()
                } else {
                    usize::try_from(r / 100).unwrap_or(buf.len()).min(buf.len())
                };
                if want == 0 {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                let n = match reader.read(&mut buf[..want]) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                decoder.feed::<ToTerminal>(&buf[..n], |f| {
                    if let Ok(env) = f {
                        sink.lock().unwrap().push(env.body);
                    }
                });
                if r != FULL_SPEED {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
    }

    /// How many bytes a second the terminal reads from now on: [`FULL_SPEED`], 11,520 for a
    /// 115200-baud line, 0 for a terminal that has stopped reading.
    pub fn read_rate(&self, bytes_per_s: u64) {
        self.rate.store(bytes_per_s, Ordering::Relaxed);
    }

    /// Every frame so far.
    pub fn frames(&self) -> Vec<ToTerminal> {
        self.frames.lock().unwrap().clone()
    }

    /// Number of frames so far: a mark for [`TerminalWire::wait_shown`].
    pub fn mark(&self) -> usize {
        self.frames.lock().unwrap().len()
    }

    /// Waits until a screen shown after frame `from` has a `Debug` form containing
    /// `text`; returns the mark after it. Panics with the screens seen and `log`.
    pub fn wait_shown(&self, from: usize, text: &str, log: impl Fn() -> String) -> usize {
        let deadline = Instant::now() + STEP;
        loop {
            {
                let frames = self.frames.lock().unwrap();
                for (i, f) in frames.iter().enumerate().skip(from) {
                    if let ToTerminal::Show(s) = f
                        && format!("{s:?}").contains(text)
                    {
                        return i + 1;
                    }
                }
            }
            if Instant::now() > deadline {
                let seen: Vec<String> = self.frames()[from..]
                    .iter()
                    .filter(|f| !matches!(f, ToTerminal::Heartbeat))
                    .map(|f| format!("{f:?}"))
                    .collect();
                panic!(
                    "no screen with {text:?} after frame {from}; seen:\n{}\nagent log:\n{}",
                    seen.join("\n"),
                    log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends key presses, as the terminal would.
    pub fn keys(&mut self, keys: &[Key]) {
        for k in keys {
            self.send(&FromTerminal::Key(*k));
        }
    }

    /// Sends a scan from the terminal's own scanner.
    pub fn scan(&mut self, code: &str) {
        let data = code.as_bytes().try_into().expect("a short barcode");
        self.send(&FromTerminal::Scan(Scan { data }));
    }

    /// Scans each code from the terminal's scanner and waits for its screen (`Debug`
    /// form containing the text); returns the mark after the last one.
    pub fn scans(
        &mut self,
        steps: &[(&str, &str)],
        from: usize,
        log: impl Fn() -> String,
    ) -> usize {
        let mut m = from;
        for (code, then) in steps {
            self.scan(code);
            m = self.wait_shown(m, then, &log);
        }
        m
    }

    /// Says hello as a terminal whose firmware is `software` (a mono display), as real
    /// firmware does at start and after every reconnect.
    pub fn hello(&mut self, software: &str) {
        self.send(&FromTerminal::Hello(Hello {
            protocol: floorhand_protocol::PROTOCOL_VERSION,
            software: software.try_into().expect("a version of at most 16 bytes"),
            display: Display::Mono128x64,
        }));
    }

    fn send(&mut self, msg: &FromTerminal) {
        let bytes = frame::encode_to_vec(&Envelope::new(self.next_id, msg));
        self.next_id += 1;
        self.cable.send(&bytes);
    }

    /// Screens shown so far (`Debug` form), heartbeats and hellos left out.
    pub fn screens(&self) -> Vec<String> {
        self.frames()
            .iter()
            .filter_map(|f| match f {
                ToTerminal::Show(s) => Some(format!("{s:?}")),
                _ => None,
            })
            .collect()
    }
}

/// The config file of a station for a test, `extra` appended (device sections).
pub fn station_config(dir: &Path, device: &str, broker_url: &str, extra: &str) -> PathBuf {
    let path = dir.join(format!("{device}.toml"));
    let text = format!(
        "device = \"{device}\"\nsite = \"site1\"\n[broker]\nurl = \"{broker_url}\"\nkeep_alive_s = 5\nconnect_timeout_s = 1\n\
         [database]\npath = \"{}\"\nsynchronous = \"normal\"\n[sync]\nstatus_interval_s = 1\nresend_after_s = 2\nmax_backoff_s = 1\n{extra}",
        dir.join(format!("{device}.db")).display()
    );
    std::fs::write(&path, text).unwrap();
    path
}
