//! A TCP fault proxy between an agent and its broker (moved here from the tests so the
//! demo can cut the link): pass bytes, cut every connection, stall (hold bytes) or
//! black-hole (accept connections, swallow bytes, never answer). Runs on its own threads.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    Pass = 0,
    /// Hold all bytes (connections stay open, nothing moves), like a stalled Wi-Fi link.
    Stall = 1,
    /// Accept connections and swallow their bytes without forwarding or answering.
    Blackhole = 2,
    /// One-way link: bytes from the client reach the broker, the broker's replies are
    /// held (the client hears no PUBACK and no OMS ack, so it re-sends).
    Deaf = 3,
}

/// The mode one direction of a connection sees.
fn effective(mode: u8, from_client: bool) -> u8 {
    match (mode, from_client) {
        (m, true) if m == Mode::Deaf as u8 => Mode::Pass as u8,
        (m, false) if m == Mode::Deaf as u8 => Mode::Stall as u8,
        (m, _) => m,
    }
}

struct Shared {
    mode: AtomicU8,
    /// Bumped by `cut`: connections of an older generation close themselves.
    generation: AtomicU64,
    conns: Mutex<Vec<TcpStream>>,
}

/// A running proxy. Dropping it stops accepting; open connections are cut.
pub struct FaultProxy {
    /// Address agents connect to.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Proxies a free local port to `upstream`.
    pub fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            mode: AtomicU8::new(Mode::Pass as u8),
            generation: AtomicU64::new(0),
            conns: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if Arc::strong_count(&s) == 1 {
                    break;
                }
                let s = s.clone();
                std::thread::spawn(move || serve(client, upstream, s));
            }
        });
        Ok(FaultProxy { addr, shared })
    }

    /// `mqtt://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    /// Sets the traffic mode.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Closes every open connection at once (both sides see a reset or EOF).
    pub fn cut(&self) {
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        let mut conns = self.shared.conns.lock().unwrap_or_else(|e| e.into_inner());
        for c in conns.drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.cut();
        // Wake the accept loop so it sees it is the last owner and exits.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(client: TcpStream, upstream: SocketAddr, s: Arc<Shared>) {
    let generation = s.generation.load(Ordering::SeqCst);
    if s.mode.load(Ordering::SeqCst) == Mode::Blackhole as u8 {
        swallow(client, &s, generation);
        return;
    }
    let Ok(server) = TcpStream::connect(upstream) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    {
        let mut conns = s.conns.lock().unwrap_or_else(|e| e.into_inner());
        for c in [&client, &server] {
            if let Ok(c) = c.try_clone() {
                conns.push(c);
            }
        }
    }
    let (c2, s2) = match (client.try_clone(), server.try_clone()) {
        (Ok(c), Ok(sv)) => (c, sv),
        _ => return,
    };
    let s_up = s.clone();
    std::thread::spawn(move || pump(client, server, s_up, generation, true));
    pump(s2, c2, s, generation, false);
}

/// Copies `from` to `to` while the mode allows, until either side closes or a cut.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    s: Arc<Shared>,
    generation: u64,
    from_client: bool,
) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 16 * 1024];
    let mut held: Vec<u8> = Vec::new();
    loop {
        if s.generation.load(Ordering::SeqCst) != generation {
            break;
        }
        let mode = effective(s.mode.load(Ordering::SeqCst), from_client);
        if mode == Mode::Pass as u8 && !held.is_empty() {
            if to.write_all(&held).is_err() {
                break;
            }
            held.clear();
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if mode == Mode::Pass as u8 => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Ok(n) if mode == Mode::Stall as u8 => held.extend_from_slice(&buf[..n]),
            Ok(_) => {} // black hole: swallowed
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

fn swallow(mut client: TcpStream, s: &Shared, generation: u64) {
    if let Ok(c) = client.try_clone() {
        s.conns.lock().unwrap_or_else(|e| e.into_inner()).push(c);
    }
    let _ = client.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 4096];
    while s.generation.load(Ordering::SeqCst) == generation {
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}
