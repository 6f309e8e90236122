//! Internal failures of a running agent (`floorhand::run::Agent`, in process, with a real
//! Mosquitto and a real SQLite file): the store thread dying, or a panic on any thread,
//! stop the agent with `AgentError::Failed` naming what failed, so `floorhand run` exits
//! non-zero and systemd restarts it; a clean stop is `Ok`.

use std::time::{Duration, Instant};

use floorhand::config::Config;
use floorhand::run::{self, Agent, AgentError};
use floorhand_tests::mosquitto::{Mosquitto, Options};
use floorhand_tests::station_support::station_config;

/// Starts an agent (a picker without devices) on a fresh broker and database.
async fn start(dir: &std::path::Path, broker: &Mosquitto) -> Agent {
    let path = station_config(dir, "hh-1", &broker.url(), "");
    Agent::start(&Config::load_settings(&path).unwrap())
        .await
        .unwrap()
}

/// The agent's `wait`, running (as in `floorhand run`) while the test breaks something.
type Waiting = tokio::task::JoinHandle<Result<(), AgentError>>;

/// Runs `agent.wait()` on a task, past its first store probe.
async fn running(agent: Agent) -> Waiting {
    let waiting = tokio::spawn(agent.wait());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the agent stopped by itself");
    waiting
}

/// Waits for the agent to stop on its own; returns its result and how long it took.
async fn outcome(waiting: Waiting, since: Instant) -> (Result<(), AgentError>, Duration) {
    let r = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the agent stopped by itself")
        .expect("wait did not panic");
    (r, since.elapsed())
}

fn failure(r: Result<(), AgentError>) -> String {
    match r {
        Err(AgentError::Failed(why)) => why,
        other => panic!("expected an internal failure, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_store_thread_or_a_panic_anywhere_stops_the_agent_with_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());

    // A clean stop is no failure.
    let agent = start(dir.path(), &broker).await;
    let stopper = agent.stopper();
    let waiting = running(agent).await;
    stopper.stop();
    let (r, _) = outcome(waiting, Instant::now()).await;
    assert!(r.is_ok(), "{r:?}");

    // A job that panics ends the store thread; the agent notices within its probe.
    let agent = start(dir.path(), &broker).await;
    let store = agent.store.clone();
    let waiting = running(agent).await;
    let killed = Instant::now();
    assert!(
        store
            .call(|_| -> () { panic!("test: a store job panics") })
            .await
            .is_err()
    );
    let (r, took) = outcome(waiting, killed).await;
    let why = failure(r);
    assert!(why.contains("the store thread has stopped"), "{why}");
    println!("store thread killed: the agent stopped with a failure after {took:?}");
    assert!(
        took < run::STORE_PROBE + Duration::from_secs(2),
        "took {took:?}"
    );

    // With the panic watch `floorhand run` installs, a panic on a thread the agent does
    // not join (as the link's helper tasks are) stops it too. Last in this test: the
    // hook stays for the rest of the process.
    run::watch_panics();
    let waiting = running(start(dir.path(), &broker).await).await;
    let panicked = Instant::now();
    let helper = std::thread::Builder::new()
        .name("test-helper".into())
        .spawn(|| panic!("test: a helper thread panics"))
        .unwrap();
    assert!(helper.join().is_err());
    let (r, took) = outcome(waiting, panicked).await;
    let why = failure(r);
    assert!(
        why.contains("test-helper") && why.contains("test: a helper thread panics"),
        "{why}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
}
