//! The core of contract v2 on RabbitMQ's MQTT plugin, the clusterable broker we test on:
//! a `.` is a topic level there, retained messages do not reach wildcard subscriptions
//! (the OMS side asks for a birth instead), and its queues have their own limits.

use std::time::Duration;

use floorhand::sync::oms::DownState;
use floorhand_protocol::oms::Down;
use floorhand_tests::rabbitmq::RabbitMq;
use floorhand_tests::sync_support::*;
use floorhand_tests::wire_tap::WireTap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_rabbitmq_events_go_up_once_and_a_down_burst_applies_once_in_order() {
    const EVENTS: u64 = 1_000;
    const DOWN: u64 = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let broker = RabbitMq::start(&dir.path().join("rabbit"));
    let tap = WireTap::start(broker.mqtt_port);
    let (oms, _inbox) = start_oms(&broker.url(), "oms-rabbit");
    let agent = TestAgent::start_in(dir.path(), "d1", &broker.url()).await;
    wait_until(Duration::from_secs(20), "link up", || agent.is_up()).await;

    // Up: every event stored once, in order, and the agent's outbox emptied by acks.
    agent.queue_events(EVENTS).await;
    wait_until(Duration::from_secs(60), "events stored", || {
        oms.ack_point("d1") == EVENTS
    })
    .await;
    assert_all_in_order(&tap, "d1", EVENTS).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while agent.backlog().await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "outbox not emptied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Down: a burst, applied exactly once and in order.
    let mut nos = Vec::new();
    for i in 1..=DOWN {
        nos.push(oms.send("d1", one_task_wave(i)).await.unwrap());
    }
    agent
        .wait_down_applied(&oms, DOWN, Duration::from_secs(120))
        .await;
    for no in [nos[0], nos[nos.len() / 2], nos[nos.len() - 1]] {
        assert_eq!(
            oms.state(None, "d1", no).await.unwrap(),
            Some(DownState::Applied)
        );
    }
    let tasks = agent.open_tasks().await;
    assert_eq!(tasks as u64, DOWN, "one task per wave, none twice");
    agent.stop().await;
    oms.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_rabbitmq_a_burst_to_an_offline_agent_and_a_node_crash_mid_drain_lose_nothing() {
    const DOWN: u64 = 1_000;
    const EVENTS: u64 = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let mut broker = RabbitMq::start(&dir.path().join("rabbit"));
    let (oms, inbox) = start_oms(&broker.url(), "oms-rabbit-restart");
    // The agent is born once (the OMS learns its incarnation), then goes offline.
    let agent = TestAgent::start_in(dir.path(), "d1", &broker.url()).await;
    wait_until(Duration::from_secs(20), "link up", || agent.is_up()).await;
    // RabbitMQ does not deliver a retained message to a wildcard subscription: a birth
    // published before the OMS side's subscription took effect is never seen. Ask again
    // (a resync request answers with a fresh birth) until one is.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while inbox.births() < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no birth seen in 30 s"
        );
        oms.send("d1", Down::ResyncRequest).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    agent.stop().await;

    // Down: a burst while it is offline, applied once and in order when it is back.
    for i in 1..=DOWN {
        oms.send("d1", one_task_wave(i)).await.unwrap();
    }
    let agent = TestAgent::start_in(dir.path(), "d1", &broker.url()).await;
    agent
        .wait_down_applied(&oms, DOWN, Duration::from_secs(120))
        .await;
    let tasks = agent.open_tasks().await;
    assert_eq!(tasks as u64, DOWN, "one task per wave, none twice");

    // Up: a drain cut by a crash of the node, with events in flight.
    agent.queue_events(EVENTS).await;
    wait_until(Duration::from_secs(60), "a third of the events", || {
        inbox.events().len() as u64 >= EVENTS / 3
    })
    .await;
    assert!(
        oms.ack_point("d1") < EVENTS,
        "the restart must cut a drain in progress"
    );
    tokio::task::block_in_place(|| broker.crash_and_restart());
    wait_until(
        Duration::from_secs(60),
        "the agent back on the new node",
        || agent.is_up() && agent.sync.stats.borrow().connects >= 2,
    )
    .await;
    wait_until(Duration::from_secs(180), "every event acked", || {
        oms.ack_point("d1") == EVENTS
    })
    .await;
    assert_oms_got_each_once(&inbox, "d1", EVENTS).await;
    agent.wait_drained(Duration::from_secs(30)).await;
    assert_eq!(oms.counters().events, EVENTS, "each event stored once");
    agent.stop().await;
    oms.close().await;
}
