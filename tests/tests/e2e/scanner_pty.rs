//! The scanner reader over a real pseudo-terminal pair (the shared
//! `PtyPair`): scans arrive with their GS bytes, and a scanner that goes away and comes
//! back is reported and reopened.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use floorhand::devices::scanner::{self, ScannerConfig, ScannerEvent};
use floorhand_tests::pty::PtyPair;

/// Types `bytes` into the pair's `a` end; the scanner module reads `b`.
fn write(pty: &PtyPair, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&pty.a)
        .expect("open pty a");
    f.write_all(bytes).expect("write pty a");
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("floorhand-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn next(rx: &mpsc::Receiver<ScannerEvent>) -> ScannerEvent {
    // A deadline so a broken reader fails the test instead of hanging it.
    rx.recv_timeout(Duration::from_secs(20))
        .expect("a scanner event")
}

#[test]
fn serial_scanner_on_a_pty_delivers_scans_with_gs_and_reconnects_after_unplug() {
    let dir = temp_dir("scanner");
    let pty = PtyPair::new(&dir);
    let config = ScannerConfig {
        reopen_ms: 100,
        ..ScannerConfig::serial(&pty.b, 115_200)
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || scanner::run(&config, &stop, |ev| tx.send(ev).is_ok()))
    };
    // The reader opens b asynchronously; bytes written before that would be lost, so the
    // first scan is repeated until it arrives.
    let first = b"]C10109506000134352\x1d10ABC\x1d17270630\r";
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        write(&pty, first);
        if let Ok(ev) = rx.recv_timeout(Duration::from_millis(300)) {
            break ev;
        }
        assert!(Instant::now() < deadline, "no scan from the pty");
    };
    assert_eq!(got, ScannerEvent::Scan(first[..first.len() - 1].to_vec()));
    write(&pty, b"OP7\rA-12-03-B\r");
    // Earlier copies of the first scan may still be queued in the pty: skip those.
    let mut ev = next(&rx);
    while ev == got {
        ev = next(&rx);
    }
    assert_eq!(ev, ScannerEvent::Scan(b"OP7".to_vec()));
    assert_eq!(next(&rx), ScannerEvent::Scan(b"A-12-03-B".to_vec()));

    // Unplug: the pair goes away with both ptys.
    drop(pty);
    assert!(matches!(next(&rx), ScannerEvent::Disconnected(_)));

    // Plug back in: the same names, new ptys.
    let pty = PtyPair::new(&dir);
    assert_eq!(next(&rx), ScannerEvent::Reconnected);
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        write(&pty, b"9506000134352\r");
        if let Ok(ev) = rx.recv_timeout(Duration::from_millis(300)) {
            break ev;
        }
        assert!(Instant::now() < deadline, "no scan after reconnect");
    };
    assert_eq!(got, ScannerEvent::Scan(b"9506000134352".to_vec()));

    stop.store(true, Ordering::Relaxed);
    reader.join().expect("reader thread").expect("valid config");
    drop(pty);
    let _ = std::fs::remove_dir_all(&dir);
}
