//! The one fake Zebra printer of the tests and the demo, on a real TCP port or a real
//! serial pty: it stores the `^XA...^XZ` jobs it receives (the demo's also as files) and answers `~HS` per its scripted [`Mode`]
//! (ready, paper out, head open = no answer at all, as real printers do, or labels still
//! in its buffer). On TCP it has a power switch: switched off, it closes its port and every
//! connection (connections are refused, as with a printer that is off); switched on again,
//! it listens on the same port.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the fake answers to `~HS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Ready, nothing in the buffer.
    Ready,
    /// The paper-out flag.
    PaperOut,
    /// Silent: no answer to `~HS`.
    HeadOpen,
    /// Ready, with this many labels still in the buffer (printing, not done yet).
    Buffered(u32),
}

struct Shared {
    on: AtomicBool,
    stop: AtomicBool,
    mode: Mutex<Mode>,
    jobs: Mutex<Vec<Vec<u8>>>,
    /// Each job is also written here as `label-NNN.zpl` (the demo's labels).
    store_in: Option<PathBuf>,
}

/// The fake printer; its threads end when it is dropped.
pub struct FakePrinter {
    addr: String,
    shared: Arc<Shared>,
}

/// The `~HS` answer for `mode`; `None` for a silent printer.
fn status(mode: Mode) -> Option<String> {
    let (paper, buffered) = match mode {
        Mode::HeadOpen => return None,
        Mode::Ready => (0, 0),
        Mode::PaperOut => (1, 0),
        Mode::Buffered(n) => (0, n),
    };
    Some(format!(
        "\x02030,{paper},0,1245,{buffered:03},0,0,0,000,0,0,0\x03\r\n\
         \x02000,0,0,0,1,2,4,0,00000000,1,000\x03\r\n\x021234,0\x03\r\n"
    ))
}

impl FakePrinter {
    /// A printer, switched on, on a free port of 127.0.0.1.
    pub fn start() -> FakePrinter {
        FakePrinter::listen(None).expect("bind the fake printer")
    }

    /// A printer on a free port of 127.0.0.1 that also writes each job to `dir` as
    /// `label-001.zpl`, `label-002.zpl`, ... (the demo's labels).
    pub fn storing(dir: &Path) -> std::io::Result<FakePrinter> {
        std::fs::create_dir_all(dir)?;
        FakePrinter::listen(Some(dir.to_path_buf()))
    }

    fn listen(store_in: Option<PathBuf>) -> std::io::Result<FakePrinter> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        let shared = Shared::new(store_in);
        let s = shared.clone();
        let a = addr.clone();
        std::thread::spawn(move || accept_loop(&a, Some(listener), &s));
        Ok(FakePrinter { addr, shared })
    }

    /// A printer on the serial pty `path` (the other end of a tests' `PtyPair`).
    pub fn on_serial(path: &Path) -> FakePrinter {
        let mut port = File::options()
            .read(true)
            .write(true)
            .open(path)
            .expect("open the fake printer's pty");
        let shared = Shared::new(None);
        let s = shared.clone();
        std::thread::spawn(move || serve(&mut port, &s));
        FakePrinter {
            addr: path.display().to_string(),
            shared,
        }
    }

    /// Scripts the answer to `~HS` from now on.
    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// `host:port`, for `[printer] tcp` (the pty's path for a serial one).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Power off: the port closes and open connections are dropped.
    pub fn switch_off(&self) {
        self.shared.on.store(false, Ordering::SeqCst);
    }

    /// Power on: the port listens again.
    pub fn switch_on(&self) {
        self.shared.on.store(true, Ordering::SeqCst);
    }

    /// Every job received, in order.
    pub fn jobs(&self) -> Vec<Vec<u8>> {
        self.shared.jobs.lock().unwrap().clone()
    }
}

impl Drop for FakePrinter {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

impl Shared {
    fn new(store_in: Option<PathBuf>) -> Arc<Shared> {
        Arc::new(Shared {
            on: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            mode: Mutex::new(Mode::Ready),
            jobs: Mutex::new(Vec::new()),
            store_in,
        })
    }
}

fn accept_loop(addr: &str, mut listener: Option<TcpListener>, s: &Arc<Shared>) {
    while !s.stop.load(Ordering::SeqCst) {
        if !s.on.load(Ordering::SeqCst) {
            listener = None;
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        if listener.is_none() {
            listener = TcpListener::bind(addr).ok();
        }
        let Some(l) = &listener else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let _ = l.set_nonblocking(true);
        match l.accept() {
            Ok((mut stream, _)) => {
                let s = s.clone();
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
                std::thread::spawn(move || serve(&mut stream, &s));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Reads commands from `io` until switched off, dropped or closed: stores jobs and
/// answers `~HS` per the mode.
fn serve(io: &mut (impl Read + Write), s: &Shared) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while s.on.load(Ordering::SeqCst) && !s.stop.load(Ordering::SeqCst) {
        match io.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                ) =>
            {
                continue;
            }
            Err(_) => return,
        }
        loop {
            let start = buf
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(buf.len());
            buf.drain(..start);
            if buf.starts_with(b"~HS") {
                buf.drain(..3);
                let mode = *s.mode.lock().unwrap();
                if let Some(answer) = status(mode)
                    && io.write_all(answer.as_bytes()).is_err()
                {
                    return;
                }
            } else if buf.starts_with(b"^XA") {
                let Some(end) = buf.windows(3).position(|w| w == b"^XZ") else {
                    break;
                };
                let job: Vec<u8> = buf.drain(..end + 3).collect();
                let mut jobs = s.jobs.lock().unwrap();
                if let Some(dir) = &s.store_in {
                    let _ =
                        std::fs::write(dir.join(format!("label-{:03}.zpl", jobs.len() + 1)), &job);
                }
                jobs.push(job);
            } else if buf.len() < 3 {
                break;
            } else {
                // Anything else (another command): skip a byte and look again.
                buf.drain(..1);
            }
        }
    }
}
