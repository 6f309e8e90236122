//! A fake Zebra printer on a real TCP port, with a power switch: it stores the `^XA...^XZ`
//! jobs it receives and answers `~HS` as a ready printer. Switched off, it closes its port
//! and every connection (connections are refused, as with a printer that is off); switched
//! on again, it listens on the same port. Its [`Mode`] scripts the `~HS` answer (paper
//! out; a silent printer, as with its head open). [`FakePrinter::on_serial`] serves the
//! same printer on a pty instead of a port.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the printer answers `~HS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Ready to print.
    Ready,
    /// Out of labels: it answers, with the paper-out flag set.
    PaperOut,
    /// Says nothing, as a Zebra with its head open does.
    Silent,
}

struct Shared {
    mode: Mutex<Mode>,
    on: AtomicBool,
    stop: AtomicBool,
    jobs: Mutex<Vec<Vec<u8>>>,
}

/// The fake printer; its threads end when it is dropped.
pub struct FakePrinter {
    addr: String,
    shared: Arc<Shared>,
}

/// The `~HS` answer in `mode`; none when silent.
fn status(mode: Mode) -> Option<String> {
    let paper = match mode {
        Mode::Ready => 0,
        Mode::PaperOut => 1,
        Mode::Silent => return None,
    };
    Some(format!(
        "\x02030,{paper},0,1245,000,0,0,0,000,0,0,0\x03\r\n\
         \x02000,0,0,0,1,2,4,0,00000000,1,000\x03\r\n\x021234,0\x03\r\n"
    ))
}

impl FakePrinter {
    /// A printer, switched on, on a free port of 127.0.0.1.
    pub fn start() -> FakePrinter {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake printer");
        let addr = listener.local_addr().expect("its address").to_string();
        let shared = Shared::new();
        let s = shared.clone();
        let a = addr.clone();
        std::thread::spawn(move || accept_loop(&a, Some(listener), &s));
        FakePrinter { addr, shared }
    }

    /// A printer, switched on, on the pty at `path` (one end of a
    /// [`PtyPair`](crate::pty::PtyPair)); it serves until the pty goes away. `addr` is the
    /// path.
    pub fn on_serial(path: &Path) -> FakePrinter {
        let io = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open the fake printer's pty");
        let shared = Shared::new();
        let s = shared.clone();
        std::thread::spawn(move || serve(io, &s));
        FakePrinter {
            addr: path.display().to_string(),
            shared,
        }
    }

    /// Sets how it answers `~HS` from now on.
    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// `host:port`, for `[printer] tcp`.
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

impl Shared {
    fn new() -> Arc<Shared> {
        Arc::new(Shared {
            mode: Mutex::new(Mode::Ready),
            on: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            jobs: Mutex::new(Vec::new()),
        })
    }
}

impl Drop for FakePrinter {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
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
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
                let s = s.clone();
                std::thread::spawn(move || serve(stream, &s));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn serve(mut io: impl Read + Write, s: &Shared) {
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
                let answer = status(*s.mode.lock().unwrap());
                if let Some(answer) = answer
                    && io.write_all(answer.as_bytes()).is_err()
                {
                    return;
                }
            } else if buf.starts_with(b"^XA") {
                let Some(end) = buf.windows(3).position(|w| w == b"^XZ") else {
                    break;
                };
                let job: Vec<u8> = buf.drain(..end + 3).collect();
                s.jobs.lock().unwrap().push(job);
            } else if buf.len() < 3 {
                break;
            } else {
                // Anything else (another command): skip a byte and look again.
                buf.drain(..1);
            }
        }
    }
}
