//! Real pseudo-terminal pairs from `socat`, and waiting for things with a time limit.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Two ptys joined by `socat`: bytes written to one come out of the other, as on a
/// serial cable. The `socat` process is killed when this is dropped.
pub struct PtyPair {
    /// One end, e.g. for the agent.
    pub a: PathBuf,
    /// The other end, e.g. for the terminal.
    pub b: PathBuf,
    socat: Child,
}

impl PtyPair {
    /// Starts `socat` with links `dir/a` and `dir/b` and waits until both exist.
    pub fn new(dir: &Path) -> PtyPair {
        let (a, b) = (dir.join("a"), dir.join("b"));
        let socat = Command::new("socat")
            .arg("-d")
            .arg("-d")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start socat (is it installed? scripts/setup installs it)");
        let pair = PtyPair { a, b, socat };
        wait_until(Duration::from_secs(10), "socat to create both ptys", || {
            (pair.a.exists() && pair.b.exists()).then_some(())
        });
        pair
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.socat.kill();
        let _ = self.socat.wait();
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
