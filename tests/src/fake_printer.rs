//! A fake Zebra printer on a real TCP port, with a power switch: it stores the `^XA...^XZ`
//! jobs it receives and answers `~HS` as a ready printer. Switched off, it closes its port
//! and every connection (connections are refused, as with a printer that is off); switched
//! on again, it listens on the same port. (The printer module's own tests in
//! `agent/tests/printer.rs` script paper-out and head-open states on a similar fake.)

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Shared {
    on: AtomicBool,
    stop: AtomicBool,
    jobs: Mutex<Vec<Vec<u8>>>,
}

/// The fake printer; its threads end when it is dropped.
pub struct FakePrinter {
    addr: String,
    shared: Arc<Shared>,
}

const STATUS: &str = "\x02030,0,0,1245,000,0,0,0,000,0,0,0\x03\r\n\
                      \x02000,0,0,0,1,2,4,0,00000000,1,000\x03\r\n\x021234,0\x03\r\n";

impl FakePrinter {
    /// A printer, switched on, on a free port of 127.0.0.1.
    pub fn start() -> FakePrinter {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake printer");
        let addr = listener.local_addr().expect("its address").to_string();
        let shared = Arc::new(Shared {
            on: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            jobs: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let a = addr.clone();
        std::thread::spawn(move || accept_loop(&a, Some(listener), &s));
        FakePrinter { addr, shared }
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
                let s = s.clone();
                std::thread::spawn(move || serve(stream, &s));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn serve(mut io: TcpStream, s: &Shared) {
    let _ = io.set_nonblocking(false);
    let _ = io.set_read_timeout(Some(Duration::from_millis(20)));
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
                if io.write_all(STATUS.as_bytes()).is_err() {
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
