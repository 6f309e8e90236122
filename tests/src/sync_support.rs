//! An agent link and an OMS session in one test process, against a real broker.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use floorhand::store::{Store, StoreConfig, Synchronous};
use floorhand::sync::agent::{self, LinkState, SyncConfig, SyncHandle};
use floorhand::sync::mqtt::BrokerSettings;
use floorhand::sync::oms::{OmsSession, OmsSettings, Received};
use floorhand_protocol::oms::EventKind;
use tokio::sync::watch;

use crate::wire_tap::{Tally, WireTap};

/// Waits until `cond` holds, checking every 20 ms; panics with `what` after `timeout`.
pub async fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A store config for tests: `synchronous=NORMAL`, since these tests are about the
/// link, not power loss, and must commit thousands of events quickly.
pub fn fast_store() -> StoreConfig {
    StoreConfig {
        synchronous: Synchronous::Normal,
        ..StoreConfig::default()
    }
}

/// How long [`TestAgent::stop`] waits for the link: its graceful stop polls for at most
/// 2 s after publishing `Death`.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running agent link.
pub struct TestAgent {
    /// Its store.
    pub store: Store,
    /// Its link.
    pub sync: SyncHandle,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Link settings for tests: quick reconnects and re-sends.
pub fn test_sync_config(device: &str, broker: BrokerSettings) -> SyncConfig {
    let mut c = SyncConfig::new(device, "site1", broker);
    c.backoff = (Duration::from_millis(50), Duration::from_millis(500));
    c.resend_after = Duration::from_secs(3);
    c.status_interval = Duration::from_secs(3600);
    c
}

impl TestAgent {
    /// Opens (or reopens) the store at `db` and starts the link.
    pub async fn start(db: &Path, cfg: SyncConfig) -> TestAgent {
        let store = Store::open(db, fast_store()).expect("open store");
        let (stop, rx) = watch::channel(false);
        let (sync, task) = agent::start(cfg, store.clone(), rx)
            .await
            .expect("start link");
        TestAgent {
            store,
            sync,
            stop,
            task,
        }
    }

    /// The tests' usual agent: device `device`, its store at `dir/DEVICE.db`, the test
    /// link settings ([`test_sync_config`], [`test_broker`]) to the broker at `url`.
    pub async fn start_in(dir: &Path, device: &str, url: &str) -> TestAgent {
        TestAgent::start(
            &dir.join(format!("{device}.db")),
            test_sync_config(device, test_broker(url)),
        )
        .await
    }

    /// Commits `n` events (skips of tasks 1..=n) to the outbox, one transaction each.
    pub async fn queue_events(&self, n: u64) {
        self.store
            .call(move |db| {
                for i in 1..=n {
                    db.append_event(1_795_300_000, 7, EventKind::Skipped { task_id: i })
                        .expect("append event");
                }
            })
            .await
            .expect("store");
        self.sync.outbox_changed();
    }

    /// Events not yet acked by the OMS.
    pub async fn backlog(&self) -> u64 {
        self.store
            .call(|db| db.outbox_stats(0).map(|s| s.count))
            .await
            .expect("store")
            .expect("outbox stats")
    }

    /// Waits until the OMS's acks emptied the outbox; panics after `timeout`.
    pub async fn wait_drained(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let backlog = self.backlog().await;
            if backlog == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{backlog} events still in the outbox after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Tasks open in the mirror.
    pub async fn open_tasks(&self) -> usize {
        self.store
            .call(|db| db.open_tasks().map(|t| t.len()))
            .await
            .expect("store")
            .expect("open tasks")
    }

    /// Waits until the agent applied down seqs through `n` and `oms` saw all `n`
    /// acknowledged; panics after `timeout` with both figures.
    pub async fn wait_down_applied(&self, oms: &OmsSession, n: u64, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let p = self
                .store
                .call(|db| db.down_point())
                .await
                .expect("store")
                .expect("down point");
            if p.through == n && oms.counters().down_acked == n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "applied through {}, {} acknowledged, {n} expected",
                p.through,
                oms.counters().down_acked
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the link is up.
    pub fn is_up(&self) -> bool {
        matches!(*self.sync.state.borrow(), LinkState::Up { .. })
    }

    /// Stops the link (publishing `Death`) and waits for it. Fails the test when the link
    /// task panicked or did not end within [`STOP_TIMEOUT`]: a link that cannot stop
    /// cleanly would cut SIGTERM short in `floorhand run`.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        match tokio::time::timeout(STOP_TIMEOUT, self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.is_panic() => {
                std::panic::resume_unwind(e.into_panic());
            }
            Ok(Err(e)) => panic!("the link task did not finish: {e}"),
            Err(_) => panic!("the link task did not stop within {STOP_TIMEOUT:?}"),
        }
    }
}

/// What an OMS session received, in order.
#[derive(Clone, Default)]
pub struct Inbox {
    items: Arc<Mutex<Vec<Received>>>,
}

impl Inbox {
    /// Everything received so far, in order.
    pub fn all(&self) -> Vec<Received> {
        self.lock().clone()
    }

    /// `(device, seq)` of every new event, in the order first received.
    pub fn events(&self) -> Vec<(String, u64)> {
        self.lock()
            .iter()
            .filter_map(|r| match r {
                Received::Event { device, event, .. } => Some((device.clone(), event.seq)),
                _ => None,
            })
            .collect()
    }

    /// Every new event's kind, in order.
    pub fn kinds(&self) -> Vec<EventKind> {
        self.lock()
            .iter()
            .filter_map(|r| match r {
                Received::Event { event, .. } => Some(event.kind.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every status received, in order.
    pub fn statuses(&self) -> Vec<floorhand_protocol::oms::Status> {
        self.lock()
            .iter()
            .filter_map(|r| match r {
                Received::Status { status, .. } => Some(status.clone()),
                _ => None,
            })
            .collect()
    }

    /// Number of births received.
    pub fn births(&self) -> usize {
        self.lock()
            .iter()
            .filter(|r| matches!(r, Received::Birth { .. }))
            .count()
    }

    /// Devices whose `Death` (clean stop) arrived, in order.
    pub fn deaths(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter_map(|r| match r {
                Received::Death { device, .. } => Some(device.clone()),
                _ => None,
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Received>> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Starts an acking OMS session on `url` and collects what it receives.
pub fn start_oms(url: &str, client_id: &str) -> (OmsSession, Inbox) {
    let mut broker = BrokerSettings::plain(url);
    broker.connect_timeout = Duration::from_secs(1);
    let s = OmsSettings {
        broker,
        site: "site1".into(),
        client_id: client_id.into(),
        ack: floorhand::sync::oms::AckMode::Stored,
        store: std::path::PathBuf::from(":memory:"),
        clean_session: false,
    };
    let (session, mut rx) = OmsSession::start(&s).expect("oms session");
    let inbox = Inbox::default();
    let sink = inbox.clone();
    tokio::spawn(async move {
        while let Some(r) = rx.recv().await {
            sink.lock().push(r);
        }
    });
    (session, inbox)
}

/// Plain broker settings for an agent in a test: short timeouts.
pub fn test_broker(url: &str) -> BrokerSettings {
    let mut b = BrokerSettings::plain(url);
    b.keep_alive = Duration::from_secs(5);
    b.connect_timeout = Duration::from_secs(1);
    b
}

/// Every seq 1..=n of `device` was published on the wire, first seen in seq order, by one
/// incarnation, each copy with the same bytes, and no more than `max_duplicates` copies
/// in all; returns the tap's tally. Waits up to 10 s for the tap to see all `n`. The
/// tap counts by itself, so an agent that publishes an event twice fails here even though
/// the OMS session drops the copy.
pub async fn assert_on_wire(tap: &WireTap, device: &str, n: u64, max_duplicates: u64) -> Tally {
    tap.wait_distinct(device, n as usize, Duration::from_secs(10))
        .await;
    let t = tap.tally(device);
    assert_eq!(tap.invalid(), Vec::<String>::new(), "invalid up messages");
    let seqs = t.seqs();
    let expected: Vec<u64> = (1..=n).collect();
    if seqs != expected {
        let first_bad = seqs
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(seqs.len().min(expected.len()));
        panic!(
            "{} distinct events on the wire, {n} expected; first difference at index \
             {first_bad}: {:?}",
            seqs.len(),
            &seqs[first_bad.saturating_sub(2)..(first_bad + 3).min(seqs.len())]
        );
    }
    let incarnations: std::collections::BTreeSet<u64> =
        t.distinct.iter().map(|&(i, _)| i).collect();
    assert_eq!(incarnations.len(), 1, "events of several incarnations");
    assert!(
        t.changed.is_empty(),
        "seqs re-sent with other bytes: {:?}",
        t.changed
    );
    if t.duplicates > max_duplicates {
        let copies = tap.copies(device);
        let twice: Vec<_> = copies.iter().filter(|(_, c)| **c > 1).take(10).collect();
        panic!(
            "{} event publishes on the wire for {n} events: {} duplicates, at most \
             {max_duplicates} allowed; seqs with copies: {twice:?}",
            t.publishes, t.duplicates
        );
    }
    t
}

/// Every seq 1..=n of `device` was published exactly once, in seq order: what a run
/// without faults must show on the wire.
pub async fn assert_all_in_order(tap: &WireTap, device: &str, n: u64) {
    assert_on_wire(tap, device, n, 0).await;
}

/// The OMS session handed on every seq 1..=n of `device` once, in order (end to end,
/// after its own dedupe). Waits up to 5 s for the inbox's collector task.
pub async fn assert_oms_got_each_once(inbox: &Inbox, device: &str, n: u64) {
    let count = || inbox.events().iter().filter(|(d, _)| d == device).count() as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while count() < n && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seqs: Vec<u64> = inbox
        .events()
        .into_iter()
        .filter(|(d, _)| d == device)
        .map(|(_, s)| s)
        .collect();
    assert!(
        seqs == (1..=n).collect::<Vec<_>>(),
        "the OMS handed on {} events of {device}, {n} expected, first {:?}",
        seqs.len(),
        &seqs[..seqs.len().min(5)]
    );
}

/// A one-task wave (version 1) whose task is for order `SO-{wave_id}`.
pub fn one_task_wave(wave_id: u64) -> floorhand_protocol::oms::Down {
    let mut t = floorhand_protocol::examples::task(wave_id * 10, "A-01", 1);
    t.order_id = format!("SO-{wave_id}");
    let tasks = vec![t];
    floorhand_protocol::oms::Down::WaveAssigned(floorhand_protocol::oms::Wave {
        wave_id,
        version: 1,
        priority: 1,
        cutoff: 0,
        task_count: 1,
        digest: floorhand_protocol::oms::wave_digest(&tasks),
        tasks,
    })
}
