//! The shipped Mosquitto ACL (`packaging/mosquitto/floorhand.acl`) on a real broker: a
//! device reads only its own down topic and writes only its own up and state topics.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use floorhand::sync::oms::{AckMode, OmsSession, OmsSettings};
use floorhand_tests::mosquitto::{Mosquitto, Options};
use floorhand_tests::sync_support::*;

fn acl_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../packaging/mosquitto/floorhand.acl")
}

/// `mosquitto_pub` as `user`; returns whether it exited 0.
fn publish(port: u16, user: &str, password: &str, topic: &str, payload: &[u8]) -> bool {
    Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
        .args(["-u", user, "-P", password, "-t", topic, "-s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(payload)?;
            c.wait()
        })
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A `mosquitto_sub` on `#` as `user`, for `secs` seconds; its output lines (topics).
fn spy(port: u16, user: &str, password: &str, secs: u64) -> std::process::Child {
    Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
        .args(["-u", user, "-P", password, "-t", "#", "-F", "%t"])
        .args(["-W", &secs.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub (package mosquitto-clients)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_shipped_acl_a_device_reads_only_its_own_down_topic_and_writes_only_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let users = [("oms", "oms-pw"), ("d1", "d1-pw"), ("d2", "d2-pw")];
    let broker = Mosquitto::start(
        &dir.path().join("broker"),
        Options {
            users: users
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            acl_file: Some(acl_file()),
            ..Options::default()
        },
    );
    let with = |user: &str, pw: &str| {
        let mut b = test_broker(&broker.url());
        b.username = Some(user.into());
        b.password = Some(pw.into());
        b
    };
    let (oms, rx) = OmsSession::start(&OmsSettings {
        ack: AckMode::Stored,
        ..OmsSettings::durable(with("oms", "oms-pw"), "site1", "oms", ":memory:".into())
    })
    .unwrap();
    drop(rx);
    let d1 = TestAgent::start(
        &dir.path().join("d1.db"),
        test_sync_config("d1", with("d1", "d1-pw")),
    )
    .await;
    let d2 = TestAgent::start(
        &dir.path().join("d2.db"),
        test_sync_config("d2", with("d2", "d2-pw")),
    )
    .await;
    wait_until(Duration::from_secs(10), "both links up", || {
        d1.is_up() && d2.is_up()
    })
    .await;

    // d1 listens to everything it may.
    let spy = spy(broker.port, "d1", "d1-pw", 6);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The channel works for both devices under the ACL.
    oms.send("d2", one_task_wave(2)).await.unwrap();
    oms.send("d1", one_task_wave(1)).await.unwrap();
    d2.queue_events(3).await;
    wait_until(Duration::from_secs(20), "d2's events stored", || {
        oms.ack_point("d2") == 3
    })
    .await;
    wait_until(Duration::from_secs(20), "d1's wave applied", || {
        d1.sync.stats.borrow().applied >= 1
    })
    .await;

    // d1 forges an Ack on d2's down topic and an event on d2's up topic: the broker drops
    // both (MQTT 3.1.1 has no error for it), so nothing changes.
    let rejected_before = d2.sync.stats.borrow().rejected;
    let forged = [0x02, 0x00, 0x00, 0x00, 0x04, 0x00, 0x10];
    publish(
        broker.port,
        "d1",
        "d1-pw",
        "floorhand/v1/site1/d2/down",
        &forged,
    );
    publish(
        broker.port,
        "d1",
        "d1-pw",
        "floorhand/v1/site1/d2/up",
        b"forged",
    );
    publish(
        broker.port,
        "d1",
        "d1-pw",
        "floorhand/v1/site1/d2/state",
        b"forged",
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        d2.sync.stats.borrow().rejected,
        rejected_before,
        "d2 never saw d1's forged message"
    );
    assert_eq!(
        oms.counters().invalid,
        0,
        "the OMS never saw d1's forged messages"
    );

    let out = spy.wait_with_output().unwrap();
    let topics = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        topics.lines().any(|t| t == "floorhand/v1/site1/d1/down"),
        "d1 reads its own down topic: {topics:?}"
    );
    assert!(
        topics.lines().all(|t| t == "floorhand/v1/site1/d1/down"),
        "d1 saw another device's or the OMS's traffic through '#': {topics:?}"
    );

    // Bad credentials are refused.
    let bad = TestAgent::start(
        &dir.path().join("d3.db"),
        test_sync_config("d1", with("d1", "wrong")),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!bad.is_up(), "a wrong password is refused");
    assert!(
        !publish(broker.port, "d1", "wrong", "floorhand/v1/site1/d1/up", b"x"),
        "mosquitto_pub with a wrong password fails"
    );
    bad.stop().await;
    d1.stop().await;
    d2.stop().await;
    oms.close().await;
}
