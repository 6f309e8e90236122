//! Contract v2 against a stock Mosquitto (queue limit 1000, persistence off): every down
//! message is applied exactly once and in order however it is sent, and a replaced
//! device is recognised at once.

use std::time::Duration;

use floorhand::sync::oms::{DownState, OmsSession, Received};
use floorhand_protocol::oms::Down;
use floorhand_tests::mosquitto::{Mosquitto, Options};
use floorhand_tests::sync_support::*;

/// `n` down messages: waves, with a cancellation of an earlier wave's order every 10th
/// and a revocation every 7th.
fn burst(n: u64) -> Vec<Down> {
    (1..=n)
        .map(|i| match i {
            i if i % 10 == 0 => Down::OrderCancelled {
                order_id: format!("SO-{}", i - 1),
            },
            i if i % 7 == 0 => Down::TasksRevoked {
                wave_id: i - 1,
                task_ids: vec![(i - 1) * 10],
            },
            i => one_task_wave(i),
        })
        .collect()
}

/// Waits until the agent applied down seq `n` and the OMS side saw every message
/// acknowledged; then checks nothing was applied twice or skipped.
async fn assert_all_applied(oms: &OmsSession, agent: &TestAgent, nos: &[u64], secs: u64) {
    let n = nos.len() as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let point = agent
            .store
            .call(|db| db.down_point())
            .await
            .unwrap()
            .unwrap();
        let acked = oms.counters().down_acked;
        if point.through == n && acked == n {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after {secs} s: agent applied through {}, OMS saw {acked} of {n} acknowledged",
            point.through
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for &no in nos {
        assert_eq!(
            oms.state(None, "d1", no).await.unwrap(),
            Some(DownState::Applied),
            "message {no}"
        );
    }
    let stats = agent.sync.stats.borrow().clone();
    // Each message was applied once: the store's strict order makes a second apply
    // impossible, and the count of applies must equal the messages (acks of events aside).
    assert_eq!(stats.rejected, 0, "{stats:?}");
    let tasks = agent
        .store
        .call(|db| db.open_tasks().map(|t| t.len()))
        .await
        .unwrap()
        .unwrap();
    // Waves not cancelled or revoked afterwards stay open: i not divisible by 7 or 10,
    // and i + 1 not divisible by 7 or 10.
    let open = (1..=n)
        .filter(|i| i % 7 != 0 && i % 10 != 0 && (i + 1) % 7 != 0 && (i + 1) % 10 != 0)
        .count();
    assert_eq!(tasks, open, "open tasks after the burst");
}

const N: u64 = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_down_messages_to_a_connected_agent_on_stock_mosquitto_apply_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let (oms, _inbox) = start_oms(&broker.url(), "oms-burst");
    let agent = TestAgent::start_in(dir.path(), "d1", &broker.url()).await;
    wait_until(Duration::from_secs(10), "link up", || agent.is_up()).await;
    let mut nos = Vec::new();
    for d in burst(N) {
        nos.push(oms.send("d1", d).await.unwrap());
    }
    assert_all_applied(&oms, &agent, &nos, 120).await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_down_messages_sent_while_the_agent_is_offline_apply_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let (oms, _inbox) = start_oms(&broker.url(), "oms-offline");
    // The agent connects once (so the OMS knows its incarnation), then goes away.
    let agent = TestAgent::start_in(dir.path(), "d1", &broker.url()).await;
    wait_until(Duration::from_secs(10), "link up", || agent.is_up()).await;
    agent.stop().await;
    let mut nos = Vec::new();
    for d in burst(N) {
        nos.push(oms.send("d1", d).await.unwrap());
    }
    let agent = TestAgent::start_in(dir.path(), "d1", &broker.url()).await;
    assert_all_applied(&oms, &agent, &nos, 120).await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_down_messages_survive_a_restart_of_a_broker_without_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let (oms, _inbox) = start_oms(&broker.url(), "oms-restart");
    let agent = TestAgent::start_in(dir.path(), "d1", &broker.url()).await;
    wait_until(Duration::from_secs(10), "link up", || agent.is_up()).await;
    let mut nos = Vec::new();
    for (i, d) in burst(N).into_iter().enumerate() {
        nos.push(oms.send("d1", d).await.unwrap());
        if i == 2_000 {
            // Everything the broker held in flight or queued is gone.
            broker.kill();
            broker.start_again();
        }
    }
    assert_all_applied(&oms, &agent, &nos, 180).await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_device_is_recognised_gets_what_the_old_one_never_applied_and_its_events_count()
{
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let (oms, inbox) = start_oms(&broker.url(), "oms-replace");
    let old = TestAgent::start_in(dir.path(), "d1", &broker.url()).await;
    wait_until(Duration::from_secs(10), "link up", || old.is_up()).await;
    old.queue_events(20).await;
    let first = oms.send("d1", one_task_wave(1)).await.unwrap();
    wait_until(Duration::from_secs(20), "20 events stored", || {
        oms.ack_point("d1") == 20
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while oms.state(None, "d1", first).await.unwrap() != Some(DownState::Applied) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "first wave not applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    old.stop().await;
    // Two more messages while the handheld is broken; then a new one, same id, fresh
    // database, starts at seq 1.
    let second = oms.send("d1", one_task_wave(2)).await.unwrap();
    let third = oms.send("d1", one_task_wave(3)).await.unwrap();
    let new = TestAgent::start(
        &dir.path().join("replacement.db"),
        test_sync_config("d1", test_broker(&broker.url())),
    )
    .await;
    wait_until(Duration::from_secs(10), "link up", || new.is_up()).await;
    new.queue_events(5).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let a = oms.state(None, "d1", second).await.unwrap();
        let b = oms.state(None, "d1", third).await.unwrap();
        if a == Some(DownState::Applied) && b == Some(DownState::Applied) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{a:?} {b:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        oms.state(None, "d1", first).await.unwrap(),
        Some(DownState::Applied),
        "the old device applied the first"
    );
    let tasks = new
        .store
        .call(|db| db.open_tasks().map(|t| t.len()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        tasks, 2,
        "the replacement got the two messages the old one never applied"
    );
    // The new device's events are new events of a new incarnation, not duplicates.
    wait_until(
        Duration::from_secs(20),
        "the new device's 5 events stored",
        || oms.ack_point("d1") == 5,
    )
    .await;
    wait_until(
        Duration::from_secs(10),
        "its outbox emptied by acks",
        || futures_lite_backlog(&new) == 0,
    )
    .await;
    assert!(
        inbox.all().iter().any(
            |r| matches!(r, Received::Alarm { detail, .. } if detail.contains("re-addressed"))
        ),
        "the OMS side raises an alarm a person can read"
    );
    new.stop().await;
}

/// The backlog, read synchronously from the store file.
fn futures_lite_backlog(agent: &TestAgent) -> u64 {
    let store = agent.store.clone();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(store.call(|db| db.outbox_stats(0).map(|s| s.count)))
            .unwrap()
            .unwrap()
    })
    .join()
    .unwrap()
}
