//! The display terminal's real image in QEMU, as `scripts/qemu-terminal` boots it: its
//! UART0 on a pty, its OLED read through the monitor's `screendump`, its gamepad pressed
//! with `sendkey`; and a tap on the serial line that records every frame both ways with
//! its size on the wire.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floorhand_firmware::board::STACK_PAINT;
use floorhand_firmware::core::View;
use floorhand_firmware::render::Profile;
use floorhand_firmware::sim::framebuffer::render_rgb8;
use floorhand_protocol::frame::FrameDecoder;
use floorhand_protocol::limits::MAX_LINK_FRAME;
use floorhand_protocol::link::{FromTerminal, ToTerminal};

use crate::pty::PtyPair;

/// The OLED's size in pixels.
pub const WIDTH: usize = 128;
/// The OLED's height in pixels.
pub const HEIGHT: usize = 64;
/// QEMU draws each panel pixel as a square of this many screen pixels.
const MAGNIFY: usize = 4;

/// The workspace's root directory.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace")
        .to_path_buf()
}

/// The OLED's picture: one grey level (0..=15) a pixel, row by row.
#[derive(Clone, PartialEq, Eq)]
pub struct Oled(pub Vec<u8>);

impl Oled {
    /// What the host renderer draws for `view` on the mono profile, in the levels the
    /// LM3S6965 board maps it to: on is 15, off is 0.
    pub fn expected(view: &View) -> Oled {
        let img = render_rgb8(view, Profile::Mono128x64);
        assert_eq!((img.width, img.height), (WIDTH as u32, HEIGHT as u32));
        Oled(
            img.rgb
                .chunks(3)
                .map(|p| match p {
                    [0, 0, 0] => 0,
                    [255, 255, 255] => 15,
                    other => panic!("the mono renderer drew {other:?}"),
                })
                .collect(),
        )
    }

    /// How many pixels differ from `other`, and the first that does.
    pub fn diff(&self, other: &Oled) -> (usize, Option<(usize, usize)>) {
        let mut first = None;
        let mut n = 0;
        for (i, (a, b)) in self.0.iter().zip(&other.0).enumerate() {
            if a != b {
                n += 1;
                first.get_or_insert((i % WIDTH, i / WIDTH));
            }
        }
        (n, first)
    }
}

/// RAM in use on the emulated board, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct RamUse {
    /// Statics (data, bss): the framebuffer, the receive ring, the terminal's state.
    pub statics: usize,
    /// The deepest the stack has been.
    pub stack_peak: usize,
}

impl RamUse {
    /// Everything: statics and the stack's peak.
    pub fn total(&self) -> usize {
        self.statics + self.stack_peak
    }
}

/// `scripts/qemu-terminal --no-build` running the image; stopped on drop.
pub struct QemuTerminal {
    script: Child,
    qemu_pid: u32,
    /// UART0's pty.
    pub uart: PathBuf,
    dir: PathBuf,
    monitor: Mutex<UnixStream>,
    dumps: Mutex<u32>,
    /// When the script was started.
    pub started: Instant,
}

impl QemuTerminal {
    /// The image `scripts/qemu-terminal --build-only` builds.
    pub fn image() -> PathBuf {
        let target =
            std::env::var_os("CARGO_TARGET_DIR").map_or(root().join("target"), |d| root().join(d));
        target.join("thumbv7m-none-eabi/release/floorhand-lm3s6965")
    }

    /// Boots the image with `scripts/qemu-terminal --no-build`, its files under `dir`;
    /// returns once UART0's pty and the monitor are there.
    pub fn start(dir: &Path) -> QemuTerminal {
        std::fs::create_dir_all(dir).unwrap();
        assert!(
            Self::image().exists(),
            "{} is not built: run scripts/qemu-terminal --build-only (scripts/test does)",
            Self::image().display()
        );
        let sock = dir.join("monitor.sock");
        let started = Instant::now();
        let mut script = Command::new(root().join("scripts/qemu-terminal"))
            .arg("--no-build")
            .arg("--monitor")
            .arg(&sock)
            .current_dir(root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(dir.join("qemu-terminal.log")).unwrap())
            .spawn()
            .expect("start scripts/qemu-terminal");
        let lines = BufReader::new(script.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let (mut uart, mut qemu_pid) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(20);
        while uart.is_none() || qemu_pid.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "scripts/qemu-terminal did not print UART0's pty; its log:\n{}",
                    std::fs::read_to_string(dir.join("qemu-terminal.log")).unwrap_or_default()
                )
            });
            if let Some(p) = line.strip_prefix("qemu-terminal: UART0 on ") {
                uart = Some(PathBuf::from(p.trim()));
            }
            if let Some(p) = line.strip_prefix("qemu-terminal: qemu pid ") {
                qemu_pid = Some(p.trim().parse().expect("a pid"));
            }
        }
        let monitor = UnixStream::connect(&sock).expect("connect to QEMU's monitor");
        monitor
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let q = QemuTerminal {
            script,
            qemu_pid: qemu_pid.unwrap(),
            uart: uart.unwrap(),
            dir: dir.to_path_buf(),
            monitor: Mutex::new(monitor),
            dumps: Mutex::new(0),
            started,
        };
        q.read_prompt(&mut q.monitor.lock().unwrap());
        q
    }

    /// Reads the monitor's output up to its next prompt.
    fn read_prompt(&self, m: &mut UnixStream) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        while !out.ends_with(b"(qemu) ") {
            let n = m.read(&mut buf).expect("read QEMU's monitor");
            assert!(n > 0, "QEMU's monitor closed");
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Runs a monitor command; returns what it printed.
    pub fn monitor(&self, cmd: &str) -> String {
        let mut m = self.monitor.lock().unwrap();
        writeln!(m, "{cmd}").expect("write to QEMU's monitor");
        self.read_prompt(&mut m)
    }

    /// Presses and lets go of a gamepad button: `up`, `down`, `left`, `right`, or `ctrl`
    /// (select). QEMU holds it 100 ms.
    pub fn press(&self, key: &str) {
        self.monitor(&format!("sendkey {key}"));
    }

    /// The OLED now, from a `screendump` (512x256: each panel pixel a 4x4 square of one
    /// grey `(level << 4) | level`, hw/display/ssd0323.c).
    pub fn oled(&self) -> Oled {
        let n = {
            let mut d = self.dumps.lock().unwrap();
            *d += 1;
            *d
        };
        let path = self.dir.join(format!("screen-{n}.ppm"));
        let out = self.monitor(&format!("screendump {}", path.display()));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!("no screendump at {} ({e}); monitor: {out}", path.display())
        });
        let _ = std::fs::remove_file(&path);
        let (w, h, pixels) = parse_ppm(&bytes);
        assert_eq!(
            (w, h),
            (WIDTH * MAGNIFY, HEIGHT * MAGNIFY),
            "screendump size"
        );
        let mut levels = Vec::with_capacity(WIDTH * HEIGHT);
        for y in 0..HEIGHT {
            for x in 0..WIDTH {
                let at = |dx: usize, dy: usize| {
                    let i = ((y * MAGNIFY + dy) * w + x * MAGNIFY + dx) * 3;
                    &pixels[i..i + 3]
                };
                let p = at(0, 0);
                for (dx, dy) in [(3, 0), (0, 3), (3, 3), (1, 2)] {
                    assert_eq!(at(dx, dy), p, "panel pixel ({x}, {y}) is not one square");
                }
                assert!(
                    p[0] == p[1] && p[1] == p[2] && p[0] >> 4 == p[0] & 0x0F,
                    "panel pixel ({x}, {y}) is {p:?}, not one of the 16 greys"
                );
                levels.push(p[0] & 0x0F);
            }
        }
        Oled(levels)
    }

    /// RAM the image has used since it booted: its statics, and the deepest its stack
    /// went. The image paints the RAM between its statics and its stack with
    /// [`STACK_PAINT`] at start; the monitor's `pmemsave` reads the 64 KiB back.
    pub fn ram_in_use(&self) -> RamUse {
        const RAM: u32 = 0x2000_0000;
        const SIZE: usize = 64 * 1024;
        let path = self.dir.join("ram.bin");
        // The file name is quoted: unquoted, "65536 /tmp/..." parses as a division.
        let out = self.monitor(&format!("pmemsave {RAM:#x} {SIZE} \"{}\"", path.display()));
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("no RAM dump at {} ({e}); monitor: {out}", path.display()));
        assert_eq!(bytes.len(), SIZE, "a whole RAM dump");
        let words: Vec<u32> = bytes
            .chunks(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let painted_from = words
            .iter()
            .position(|&w| w == STACK_PAINT)
            .expect("the image paints its unused stack");
        let used_from = painted_from
            + words[painted_from..]
                .iter()
                .position(|&w| w != STACK_PAINT)
                .expect("the stack is in use");
        RamUse {
            statics: painted_from * 4,
            stack_peak: SIZE - used_from * 4,
        }
    }

    /// Waits until the OLED shows exactly what the host renderer draws for `view`;
    /// returns when it first did. Panics after `timeout` with the difference.
    pub fn wait_for(&self, view: &View, timeout: Duration) -> Instant {
        let want = Oled::expected(view);
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.oled();
            if got == want {
                return Instant::now();
            }
            if Instant::now() > deadline {
                let (n, first) = got.diff(&want);
                panic!(
                    "after {timeout:?} the OLED is not {view:?}: {n} pixels differ, the first at {first:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for QemuTerminal {
    fn drop(&mut self) {
        // The script stops QEMU on SIGTERM; QEMU is killed by its own pid as well in case
        // the script is gone first.
        for pid in [self.script.id(), self.qemu_pid] {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.script.wait();
    }
}

/// Splits a binary PPM (P6, maxval 255) into width, height and pixels.
fn parse_ppm(bytes: &[u8]) -> (usize, usize, &[u8]) {
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        fields.push(std::str::from_utf8(&bytes[start..i]).unwrap().to_string());
    }
    assert_eq!((fields[0].as_str(), fields[3].as_str()), ("P6", "255"));
    let (w, h): (usize, usize) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    let pixels = &bytes[i + 1..];
    assert_eq!(pixels.len(), w * h * 3, "a whole PPM");
    (w, h, pixels)
}

/// A frame seen on the wire, and its size there (COBS and CRC included, and the zero
/// that ends it).
#[derive(Debug, Clone)]
pub struct Seen<T> {
    /// The message.
    pub msg: T,
    /// Bytes on the wire.
    pub bytes: usize,
    /// When it passed.
    pub at: Instant,
}

/// Frames that passed one way.
pub type Log<T> = Arc<Mutex<Vec<Seen<T>>>>;

/// The agent's serial port joined to QEMU's UART0 through the test: a pty pair
/// (the agent opens one end) and relay threads, which copy every byte unchanged and
/// record each frame both ways. The terminal's end can be moved to another QEMU, as a
/// terminal swapped mid-shift: bytes the agent sends while none is attached are lost,
/// as on a cable with nothing at its end.
pub struct LinkTap {
    /// The port the agent opens.
    pub agent_port: PathBuf,
    /// Agent to terminal.
    pub down: Log<ToTerminal>,
    /// Terminal to agent.
    pub up: Log<FromTerminal>,
    agent_side: File,
    terminal: Arc<Mutex<Option<File>>>,
    _pty: PtyPair,
}

impl LinkTap {
    /// Joins a new pty pair under `dir` to `uart`.
    pub fn new(dir: &Path, uart: &Path) -> LinkTap {
        std::fs::create_dir_all(dir).unwrap();
        let pty = PtyPair::new(dir);
        let agent_side = File::options().read(true).write(true).open(&pty.b).unwrap();
        let tap = LinkTap {
            agent_port: pty.a.clone(),
            down: Log::default(),
            up: Log::default(),
            agent_side,
            terminal: Arc::default(),
            _pty: pty,
        };
        let terminal = tap.terminal.clone();
        relay(
            tap.agent_side.try_clone().unwrap(),
            move |bytes| {
                // Nothing attached, or the terminal gone: the bytes are lost.
                let mut t = terminal.lock().unwrap();
                if t.as_mut().is_some_and(|f| f.write_all(bytes).is_err()) {
                    *t = None;
                }
                true
            },
            tap.down.clone(),
            |f| {
                let mut msg = None;
                FrameDecoder::<MAX_LINK_FRAME>::new()
                    .feed::<ToTerminal>(f, |r| msg = r.ok().map(|e| e.body));
                msg
            },
        );
        tap.attach(uart);
        tap
    }

    /// Moves the terminal's end to `uart` (another QEMU's UART0).
    pub fn attach(&self, uart: &Path) {
        let t = File::options().read(true).write(true).open(uart).unwrap();
        let mut to_agent = self.agent_side.try_clone().unwrap();
        relay(
            t.try_clone().unwrap(),
            move |bytes| to_agent.write_all(bytes).is_ok(),
            self.up.clone(),
            |f| {
                let mut msg = None;
                FrameDecoder::<MAX_LINK_FRAME>::new()
                    .feed::<FromTerminal>(f, |r| msg = r.ok().map(|e| e.body));
                msg
            },
        );
        *self.terminal.lock().unwrap() = Some(t);
    }
}

/// Copies `from` into `to` (which says whether to go on) until `from` closes, recording
/// each frame `decode` reads in `log` (frames end at a zero byte: COBS).
fn relay<T: Send + 'static>(
    mut from: File,
    mut to: impl FnMut(&[u8]) -> bool + Send + 'static,
    log: Log<T>,
    decode: impl Fn(&[u8]) -> Option<T> + Send + 'static,
) {
    std::thread::spawn(move || {
        let mut frame = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if !to(&buf[..n]) {
                return;
            }
            for &b in &buf[..n] {
                frame.push(b);
                if b != 0 {
                    continue;
                }
                if let Some(msg) = decode(&frame) {
                    log.lock().unwrap().push(Seen {
                        msg,
                        bytes: frame.len(),
                        at: Instant::now(),
                    });
                }
                frame.clear();
            }
        }
    });
}
