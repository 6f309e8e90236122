//! The serial cable of the end-to-end tests (the shared `floorhand::rigs::pty::PtyPair`,
//! the demo's too), and waiting for things with a time limit.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Two ptys joined back to back at `dir/a` and `dir/b`: bytes written to one come out of
/// the other, as on a serial cable. Dropping it pulls the cable: both ptys go away, an
/// end still open reads a hang-up, and the links are removed.
pub struct PtyPair {
    /// One end, e.g. for the agent.
    pub a: PathBuf,
    /// The other end, e.g. for the terminal.
    pub b: PathBuf,
    _cable: floorhand::rigs::pty::PtyPair,
}

impl PtyPair {
    /// Opens the pair with links `dir/a` and `dir/b` (replacing any there).
    pub fn new(dir: &Path) -> PtyPair {
        let (a, b) = (dir.join("a"), dir.join("b"));
        let cable = floorhand::rigs::pty::PtyPair::linked_at(a.clone(), b.clone())
            .unwrap_or_else(|e| panic!("a pty pair in {}: {e}", dir.display()));
        PtyPair {
            a,
            b,
            _cable: cable,
        }
    }
}

/// Calls `check` every 20 ms until it returns `Some`, and returns that; panics naming
/// `what` after `timeout`.
pub fn wait_until<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
