//! Two pseudo-terminals joined like a null-modem cable, made with `openpty(3)` and a relay
//! thread: the one serial cable of the tests and the demo's virtual devices, needing
//! nothing but Rust (no `socat`).
//!
//! Each pty's slave end is a real tty (`/dev/pts/N`) that `serialport` opens like a USB
//! serial device; the relay copies bytes between the two master ends. Both slaves are held
//! open for the pair's lifetime: a master whose slave has no open file reports a hang-up
//! on every `poll`. An end can be closed and opened again, as an agent restarting does:
//! serialport takes its exclusive mode (`TIOCEXCL`) back when it closes a port, and bytes
//! sent meanwhile wait in the tty, as with nobody reading a real cable's UART. (A process
//! killed while it holds an end leaves `TIOCEXCL` set, with or without the held slave:
//! only root may open that end again, as with any pty.)
//! Dropping the pair (pulling the cable) stops the relay (it polls with a short timeout),
//! closes every fd, so whoever has an end open reads a hang-up, and removes the links.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// What a tap on the line is handed: each run of bytes from the agent's end.
pub type Tap = Box<dyn FnMut(&[u8]) + Send>;

/// How long the relay waits in `poll` before looking at the stop flag.
const POLL_MS: libc::c_int = 50;

/// Two ptys joined back to back: bytes written to the `device` end come out of the
/// `agent` end and back, as on a serial cable.
pub struct PtyPair {
    /// `dir/NAME-device`, a link to the device side's tty (what the virtual device opens).
    pub device: PathBuf,
    /// `dir/NAME-agent`, a link to the agent side's tty (what `devices::*` opens).
    pub agent: PathBuf,
    /// The device side's slave, held open (see the module doc); also the virtual device's
    /// own handle when it writes directly.
    device_tty: OwnedFd,
    _agent_tty: OwnedFd,
    stop: Arc<AtomicBool>,
    relay: Option<JoinHandle<()>>,
}

/// One pty: its master, its slave and the slave's path.
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
    path: PathBuf,
}

/// Turns a libc return value (`-1` on failure) into the `errno` error.
fn check(ret: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if ret == -1 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(ret)
    }
}

fn open_pty() -> io::Result<Pty> {
    let (mut master, mut slave): (libc::c_int, libc::c_int) = (-1, -1);
    // SAFETY: both out-pointers point at live c_ints; `name`, `termp` and `winp` are null,
    // which openpty(3) accepts (no name copied, default termios and window size).
    let ret = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    check(ret, "openpty")?;
    // SAFETY: openpty succeeded, so both fds are open and owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&master, &slave] {
        // SAFETY: `fd` is open for the duration of the call; FD_CLOEXEC keeps the ptys out
        // of child processes (the label renderer, a Mosquitto fallback).
        check(
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) },
            "fcntl(FD_CLOEXEC)",
        )?;
    }
    make_raw(&slave)?;
    // The relay must never block on one side while the other has bytes waiting.
    // SAFETY: `master` is open; F_GETFL/F_SETFL only change its status flags.
    let flags = check(
        unsafe { libc::fcntl(master.as_raw_fd(), libc::F_GETFL) },
        "fcntl(F_GETFL)",
    )?;
    check(
        // SAFETY: as above.
        unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) },
        "fcntl(O_NONBLOCK)",
    )?;
    let path = tty_name(&slave)?;
    Ok(Pty {
        master,
        slave,
        path,
    })
}

/// Raw mode (no echo, no line editing, no CR/LF translation), as `socat`'s `raw,echo=0`.
fn make_raw(tty: &OwnedFd) -> io::Result<()> {
    // SAFETY: termios is plain old data; an all-zero value is valid and tcgetattr fills it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `tty` is open and `t` is a live termios for the duration of each call.
    check(
        unsafe { libc::tcgetattr(tty.as_raw_fd(), &mut t) },
        "tcgetattr",
    )?;
    // SAFETY: cfmakeraw only writes the fields of the termios it is given.
    unsafe { libc::cfmakeraw(&mut t) };
    // SAFETY: as for tcgetattr.
    check(
        unsafe { libc::tcsetattr(tty.as_raw_fd(), libc::TCSANOW, &t) },
        "tcsetattr",
    )?;
    Ok(())
}

/// The path of the tty open on `tty`, e.g. `/dev/pts/3`.
fn tty_name(tty: &OwnedFd) -> io::Result<PathBuf> {
    let mut buf = [0u8; 128];
    // SAFETY: `buf` is writable for `buf.len()` bytes; ttyname_r writes at most that many,
    // NUL included, and returns an error number (not -1) when it cannot.
    let ret = unsafe { libc::ttyname_r(tty.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if ret != 0 {
        let e = io::Error::from_raw_os_error(ret);
        return Err(io::Error::new(e.kind(), format!("ttyname_r: {e}")));
    }
    let len = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = std::str::from_utf8(&buf[..len])
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "tty name is not UTF-8"))?;
    Ok(PathBuf::from(name))
}

fn link(target: &Path, at: &Path) -> io::Result<()> {
    match std::fs::remove_file(at) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", at.display()))),
    }
    std::os::unix::fs::symlink(target, at)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", at.display())))
}

impl PtyPair {
    /// Opens two ptys, links their ttys as `dir/NAME-device` and `dir/NAME-agent`, and
    /// starts the relay between them.
    pub fn new(dir: &Path, name: &str) -> io::Result<PtyPair> {
        std::fs::create_dir_all(dir)?;
        PtyPair::start(
            dir.join(format!("{name}-agent")),
            dir.join(format!("{name}-device")),
            None,
        )
    }

    /// Opens two ptys, links their ttys at `agent` and `device` (replacing what is there:
    /// a cable plugged in again at the same names), and starts the relay between them.
    pub fn linked_at(agent: PathBuf, device: PathBuf) -> io::Result<PtyPair> {
        PtyPair::start(agent, device, None)
    }

    /// As [`PtyPair::new`], with a tap on the line: `tap` sees every byte the agent's end
    /// sends, in order, before the device's end gets it (a line monitor on the cable).
    pub fn tapped(dir: &Path, name: &str, tap: Tap) -> io::Result<PtyPair> {
        std::fs::create_dir_all(dir)?;
        PtyPair::start(
            dir.join(format!("{name}-agent")),
            dir.join(format!("{name}-device")),
            Some(tap),
        )
    }

    fn start(agent: PathBuf, device: PathBuf, tap: Option<Tap>) -> io::Result<PtyPair> {
        let (dev, agent_pty) = (open_pty()?, open_pty()?);
        link(&dev.path, &device)?;
        link(&agent_pty.path, &agent)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (a, b) = (File::from(dev.master), File::from(agent_pty.master));
        let s = stop.clone();
        let name = device
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let relay = std::thread::Builder::new()
            .name(format!("pty-{name}"))
            .spawn(move || relay(a, b, tap, &s))?;
        Ok(PtyPair {
            device,
            agent,
            device_tty: dev.slave,
            _agent_tty: agent_pty.slave,
            stop,
            relay: Some(relay),
        })
    }

    /// A handle on the device side's tty, for a virtual device that writes or reads
    /// directly instead of opening [`PtyPair::device`].
    pub fn device_file(&self) -> io::Result<File> {
        Ok(File::from(self.device_tty.try_clone()?))
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.relay.take() {
            // Ends within one poll timeout (or one write retry): joining cannot hang.
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.device);
        let _ = std::fs::remove_file(&self.agent);
    }
}

/// Copies bytes between the two masters (`a` the device side's, `b` the agent side's)
/// until `stop`; `tap` sees what goes from `b` to `a`. Bytes arrive in order on each
/// direction. One thread serves both directions: while one side's input queue is full
/// (nobody has read that end for a while), the other direction waits too; a device that
/// talks only when spoken to is never held up by it.
fn relay(a: File, b: File, mut tap: Option<Tap>, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [
            libc::pollfd {
                fd: a.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: b.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a live array of two pollfds, and the length passed is 2.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, POLL_MS) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            tracing::error!("pty relay: poll: {}", io::Error::last_os_error());
            return;
        }
        if n == 0 {
            continue;
        }
        for (i, (mut from, to)) in [(&a, &b), (&b, &a)].into_iter().enumerate() {
            let ev = fds[i].revents;
            if ev & libc::POLLIN != 0 {
                match from.read(&mut buf) {
                    Ok(n) if n > 0 => {
                        if i == 1
                            && let Some(t) = tap.as_mut()
                        {
                            t(&buf[..n]);
                        }
                        if let Err(e) = write_all(to, &buf[..n], stop) {
                            tracing::error!("pty relay: {e}");
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::error!("pty relay: read: {e}");
                        return;
                    }
                }
            } else if ev & (libc::POLLHUP | libc::POLLERR) != 0 {
                // Not expected while the slaves are held open; do not spin on it.
                std::thread::sleep(Duration::from_millis(POLL_MS as u64));
            }
        }
    }
}

/// Writes all of `bytes` to a non-blocking master, waiting while the other side's input
/// queue is full; gives up when `stop` is set.
fn write_all(mut to: &File, mut bytes: &[u8], stop: &AtomicBool) -> io::Result<()> {
    while !bytes.is_empty() {
        match to.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("write: {e}"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const LONG: Duration = Duration::from_secs(5);

    /// Reads from `port` until `want` bytes came or `within` passed.
    fn read_n(port: &mut dyn Read, want: usize, within: Duration) -> Vec<u8> {
        let mut got = Vec::new();
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 256];
        while got.len() < want && Instant::now() < deadline {
            match port.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("read: {e}"),
            }
        }
        got
    }

    fn open(path: &Path) -> Box<dyn serialport::SerialPort> {
        serialport::new(path.to_string_lossy(), 115_200)
            .timeout(Duration::from_millis(50))
            .open()
            .unwrap_or_else(|e| panic!("serialport opens {}: {e}", path.display()))
    }

    #[test]
    fn bytes_cross_an_openpty_pair_both_ways_through_serialport_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let pair = PtyPair::new(dir.path(), "t").unwrap();
        assert!(
            std::fs::read_link(&pair.device)
                .unwrap()
                .starts_with("/dev/")
        );
        let (mut dev, mut agent) = (open(&pair.device), open(&pair.agent));
        // Every byte value, CR and LF included: raw mode translates nothing, echoes nothing.
        let all: Vec<u8> = (0..=255u8).cycle().take(2000).collect();
        dev.write_all(&all).unwrap();
        assert_eq!(read_n(&mut agent, all.len(), LONG), all);
        agent.write_all(b"ack\r\n").unwrap();
        assert_eq!(read_n(&mut dev, 5, LONG), b"ack\r\n");
        // No echo back to the writer (anything echoed would be here well within this).
        assert_eq!(read_n(&mut agent, 1, Duration::from_millis(300)), b"");
    }

    #[test]
    fn an_end_closed_and_opened_again_gets_what_was_sent_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let pair = PtyPair::linked_at(dir.path().join("a"), dir.path().join("b")).unwrap();
        let mut dev = open(&pair.device);
        let agent = open(&pair.agent);
        // The agent stops: its exclusive open ends with it.
        drop(agent);
        dev.write_all(b"while away\r").unwrap();
        let mut agent = open(&pair.agent);
        assert_eq!(read_n(&mut agent, 11, LONG), b"while away\r");
        agent.write_all(b"back").unwrap();
        assert_eq!(read_n(&mut dev, 4, LONG), b"back");
    }

    #[test]
    fn a_tap_sees_what_the_agent_sends_and_not_what_the_device_sends() {
        let dir = tempfile::tempdir().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let tap: Tap = Box::new(move |b| s.lock().unwrap().extend_from_slice(b));
        let pair = PtyPair::tapped(dir.path(), "t", tap).unwrap();
        let (mut dev, mut agent) = (open(&pair.device), open(&pair.agent));
        dev.write_all(b"from the device").unwrap();
        assert_eq!(read_n(&mut agent, 15, LONG), b"from the device");
        agent.write_all(b"to the device").unwrap();
        assert_eq!(read_n(&mut dev, 13, LONG), b"to the device");
        assert_eq!(seen.lock().unwrap().as_slice(), b"to the device");
    }

    #[test]
    fn pulling_the_cable_hangs_up_an_open_end() {
        let dir = tempfile::tempdir().unwrap();
        let pair = PtyPair::new(dir.path(), "t").unwrap();
        let mut agent = open(&pair.agent);
        drop(pair);
        let deadline = Instant::now() + LONG;
        let mut buf = [0u8; 16];
        let hung_up = loop {
            match agent.read(&mut buf) {
                Ok(0) => break true,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                Err(_) => break true,
                Ok(_) => {}
            }
            if Instant::now() > deadline {
                break false;
            }
        };
        assert!(
            hung_up,
            "the open end reads a hang-up once the cable is pulled"
        );
    }

    #[test]
    fn the_device_handle_writes_into_the_agent_end_and_drop_removes_the_links() {
        let dir = tempfile::tempdir().unwrap();
        let pair = PtyPair::new(dir.path(), "scan").unwrap();
        let mut agent = open(&pair.agent);
        let mut dev = pair.device_file().unwrap();
        dev.write_all(b"09506000134352\r").unwrap();
        assert_eq!(read_n(&mut agent, 15, LONG), b"09506000134352\r");
        let (d, a) = (pair.device.clone(), pair.agent.clone());
        drop(agent);
        drop(pair);
        assert!(!d.exists() && !a.exists(), "links removed on drop");
    }
}
