//! The `floorhand oms` tools as an integrator runs them, against a real Mosquitto and a
//! real agent link.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use floorhand_tests::mosquitto::{Mosquitto, Options};
use floorhand_tests::sync_support::*;
use floorhand_tests::workspace_bin;

fn example_wave() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/wave.json")
}

#[test]
fn the_readme_example_wave_parses_and_fills_in_count_and_digest() {
    let text = std::fs::read_to_string(example_wave()).unwrap();
    let down = floorhand::sync::oms::down_from_json(&text).unwrap();
    let floorhand_protocol::oms::Down::WaveAssigned(w) = down else {
        panic!("not a wave")
    };
    assert_eq!(w.tasks.len(), 2);
    assert_eq!(w.task_count, 2);
    assert_eq!(w.digest, floorhand_protocol::oms::wave_digest(&w.tasks));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_wave_delivers_the_example_wave_and_tail_prints_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let agent = TestAgent::start_in(dir.path(), "d1", &broker.url()).await;
    wait_until(Duration::from_secs(10), "link up", || agent.is_up()).await;

    let store = dir.path().join("oms.db");
    let out = Command::new(workspace_bin("floorhand"))
        .args(["oms", "push-wave"])
        .arg(example_wave())
        .args(["--device", "d1", "--site", "site1", "--wait", "20"])
        .args(["--broker", &broker.url()])
        .arg("--store")
        .arg(&store)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("1 message(s) applied by d1"), "{err}");
    let stats = agent.sync.stats.clone();
    wait_until(Duration::from_secs(10), "wave applied", || {
        stats.borrow().applied >= 1
    })
    .await;
    let tasks = agent.open_tasks().await;
    assert_eq!(tasks, 2);

    let mut tail = Command::new(workspace_bin("floorhand"))
        .args(["oms", "tail", "--site", "site1", "--broker", &broker.url()])
        .args(["--client-id", "tail-test"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = tail.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Tail subscribes before it can see events; give it a moment, then queue them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    agent.queue_events(5).await;
    let mut seqs = Vec::new();
    while seqs.len() < 5 {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("tail printed an event line");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if let Some(e) = v.get("event") {
            assert_eq!(v["event"]["device"], "d1", "{line}");
            seqs.push(e["event"]["seq"].as_u64().unwrap());
        }
    }
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    // Tail acknowledges: the agent's outbox empties.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while agent.backlog().await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "tail did not ack");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = tail.kill();
    let _ = tail.wait();
    agent.stop().await;
}

#[test]
fn push_with_wait_and_the_broker_down_exits_non_zero_and_names_what_is_unacknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on this port.
    let port = floorhand_tests::mosquitto::free_port();
    let out = Command::new(workspace_bin("floorhand"))
        .args([
            "oms", "push", "--device", "d1", "--site", "site1", "--wait", "2",
        ])
        .args(["--broker", &format!("mqtt://127.0.0.1:{port}")])
        .arg("--store")
        .arg(dir.path().join("oms.db"))
        .arg(example_wave())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("message 1 to d1: Queued"), "{err}");
    assert!(err.contains("not acknowledged by the agent"), "{err}");
}

/// Starts `floorhand oms tail` and a thread that forwards its lines.
fn start_tail(url: &str, id: u64) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut tail = Command::new(workspace_bin("floorhand"))
        .args(["oms", "tail", "--site", "site1", "--broker", url])
        .args(["--client-id", &format!("tail-kills-{id}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = tail.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (tail, rx)
}

/// The event seqs in `lines`.
fn seqs_of(rx: &std::sync::mpsc::Receiver<String>) -> Vec<u64> {
    rx.try_iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .filter_map(|v| v.get("event").and_then(|e| e["event"]["seq"].as_u64()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_killed_again_and_again_loses_no_line_its_output_is_at_least_once() {
    const N: u64 = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let agent = TestAgent::start_in(dir.path(), "d1", &broker.url()).await;
    wait_until(Duration::from_secs(10), "link up", || agent.is_up()).await;
    agent.queue_events(N).await;
    let mut seen = std::collections::BTreeMap::<u64, u32>::new();
    for round in 0..8 {
        let (mut tail, rx) = start_tail(&broker.url(), round);
        tokio::time::sleep(Duration::from_millis(300 + 100 * round)).await;
        tail.kill().unwrap(); // SIGKILL
        tail.wait().unwrap();
        for s in seqs_of(&rx) {
            *seen.entry(s).or_default() += 1;
        }
    }
    // A last tail that is left to finish.
    let (mut tail, rx) = start_tail(&broker.url(), 99);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while agent.backlog().await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "backlog never drained"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = tail.kill();
    let _ = tail.wait();
    for s in seqs_of(&rx) {
        *seen.entry(s).or_default() += 1;
    }
    let missing: Vec<u64> = (1..=N).filter(|s| !seen.contains_key(s)).collect();
    assert!(
        missing.is_empty(),
        "{} events acknowledged but never printed, first {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let printed: u32 = seen.values().sum();
    eprintln!("{N} events, {printed} lines over 9 tails (duplicates are allowed)");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_durable_oms_side_killed_twenty_times_during_a_drain_stores_each_event_once() {
    const N: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let agent = TestAgent::start_in(dir.path(), "d1", &broker.url()).await;
    wait_until(Duration::from_secs(10), "link up", || agent.is_up()).await;
    agent.queue_events(N).await;
    let store = dir.path().join("oms.db");
    let sim = |store: &Path| {
        Command::new(workspace_bin("floorhand"))
            .args([
                "oms",
                "sim",
                "--devices",
                "d1",
                "--waves",
                "0",
                "--site",
                "site1",
            ])
            .args(["--broker", &broker.url(), "--duration", "600", "--store"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    for round in 0..20u64 {
        let mut oms = sim(&store);
        tokio::time::sleep(Duration::from_millis(150 + 15 * round)).await;
        oms.kill().unwrap(); // SIGKILL, anywhere between a receipt, a commit and an ack
        oms.wait().unwrap();
    }
    let mut oms = sim(&store);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while agent.backlog().await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "backlog never drained"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    oms.kill().unwrap();
    oms.wait().unwrap();
    // The agent deleted everything: each event must be in the store exactly once.
    let db = floorhand::store::oms_db::OmsDb::open(&store).unwrap();
    let events = db.events_after(0, 2 * N as usize).unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.event.seq).collect();
    assert_eq!(seqs.len() as u64, N, "stored events");
    assert_eq!(seqs, (1..=N).collect::<Vec<_>>(), "each seq once, in order");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_whose_reader_went_away_stops_with_an_error_and_acks_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let agent = TestAgent::start_in(dir.path(), "d1", &broker.url()).await;
    wait_until(Duration::from_secs(10), "link up", || agent.is_up()).await;
    // `oms tail | head -n1`: the reader takes one line and closes the pipe.
    let (mut tail, rx) = start_tail(&broker.url(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    agent.queue_events(1).await;
    let first = rx.recv_timeout(Duration::from_secs(10)).expect("a line");
    drop(rx); // the forwarding thread exits at its next line, closing the pipe
    assert!(
        first.contains("\"birth\"") || first.contains("\"event\""),
        "{first}"
    );
    agent.queue_events(200).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = tail.try_wait().unwrap() {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tail kept running with no reader"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success(), "a write error is a failure: {status}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        agent.backlog().await > 0,
        "events no line was written for were acknowledged"
    );
    agent.stop().await;
}
