//! The store survives SIGKILL at any moment: no corruption, no gap or duplicate in the
//! outbox seqs, and every confirmation the child reported as committed is still there.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use floorhand::store::{Db, StoreConfig};

/// Kills in the test; the issue asks for at least 50.
const KILLS: usize = 60;

/// A small xorshift generator: the kill moments only need to vary, and the seed is printed
/// so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn confirmations_survive_sigkill_at_random_moments() {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("floorhand.db");
    let mut reported: Vec<u64> = Vec::new();
    let mut rounds_with_commits = 0;

    for round in 0..KILLS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_store_crash_child"))
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the child");
        std::thread::sleep(Duration::from_micros(rng.below(60_000)));
        // Child::kill sends SIGKILL on Unix: no destructor, no flush, no clean close.
        child.kill().expect("kill the child");
        child.wait().expect("reap the child");
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        // A line cut by the kill has no newline; it does not count as reported.
        let complete = out.rsplit_once('\n').map(|(c, _)| c).unwrap_or("");
        let before = reported.len();
        reported.extend(complete.lines().map(|l| l.parse::<u64>().unwrap()));
        if reported.len() > before {
            rounds_with_commits += 1;
        }

        // Reopen as the restarted agent would.
        let db = Db::open(&path, &StoreConfig::default()).unwrap();
        assert_eq!(db.integrity_check().unwrap(), ["ok"], "round {round}");
        let seqs: Vec<u64> = db
            .outbox_pending(0, usize::MAX)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect();
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(
            seqs, expected,
            "round {round}: gap or duplicate in the outbox"
        );
        if let Some(&last) = reported.last() {
            assert!(
                last <= seqs.len() as u64,
                "round {round}: seq {last} was reported committed but the outbox ends at {}",
                seqs.len()
            );
        }
    }
    println!(
        "{KILLS} kills, {rounds_with_commits} with commits, {} confirmations reported",
        reported.len()
    );
    let mut sorted = reported.clone();
    sorted.dedup();
    assert_eq!(sorted, reported, "a seq was reported twice");
    assert!(
        reported.windows(2).all(|w| w[0] < w[1]),
        "seqs went backwards"
    );
    assert!(
        rounds_with_commits >= KILLS / 4,
        "only {rounds_with_commits} of {KILLS} children committed anything; the test \
         is not exercising the store"
    );
}
