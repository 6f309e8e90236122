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

    let out = Command::new(workspace_bin("floorhand"))
        .args(["oms", "push-wave"])
        .arg(example_wave())
        .args([
            "--device",
            "d1",
            "--site",
            "site1",
            "--broker",
            &broker.url(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("published"));
    let stats = agent.sync.stats.clone();
    wait_until(Duration::from_secs(10), "wave applied", || {
        stats.borrow().applied >= 1
    })
    .await;
    let tasks = agent
        .store
        .call(|db| db.open_tasks().map(|t| t.len()))
        .await
        .unwrap()
        .unwrap();
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
