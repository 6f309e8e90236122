//! A shift on a handheld, end to end with real parts: Mosquitto, the real `floorhand run`
//! process with its SQLite file, a scanner on a pty pair, the terminal link on another
//! (the test reads the agent's frames and presses keys), and an OMS session that pushes
//! the wave and acks. Every confirmation reaches the OMS exactly once.

use std::path::Path;
use std::time::Duration;

use floorhand::store::Db;
use floorhand::sync::oms::OmsSession;
use floorhand_protocol::link::{Key, ToTerminal};
use floorhand_protocol::oms::{
    Capture, Down, EventKind, GtinPack, Picked, RefusalReason, ShortReason, Task, Wave, wave_digest,
};
use floorhand_tests::mosquitto::{Mosquitto, Options};
use floorhand_tests::station_support::{AgentProcess, ScannerWire, TerminalWire, station_config};
use floorhand_tests::sync_support::{
    Inbox, assert_all_in_order, assert_oms_got_each_once, start_oms, wait_until,
};
use floorhand_tests::wire_tap::WireTap;

const BOLT: &str = "09506000134352";
const BOLT_13: &str = "9506000134352"; // the same item as its EAN-13: other raw bytes
const OTHER: &str = "96385074"; // an item that is in no task

fn task(task_id: u64, location: &str, seq: u32, qty: u32) -> Task {
    Task {
        task_id,
        order_id: "SO-1".into(),
        order_line: seq,
        location: location.into(),
        pick_seq: seq,
        location_check: 10 + seq as u8,
        gtins: vec![GtinPack {
            gtin: BOLT.into(),
            pack_qty: 1,
        }],
        sku: "BOLT-M8".into(),
        description: "Hex bolt M8".into(),
        qty,
        capture: Capture::default(),
        tote_required: false,
    }
}

fn outbox_count(db: &Path) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Db::open_read_only(db)
        .and_then(|d| d.outbox_stats(now))
        .map(|s| s.count)
        .unwrap_or(u64::MAX)
}

/// A running handheld with its broker, OMS, scanner and terminal.
struct Rig {
    dir: tempfile::TempDir,
    broker: Mosquitto,
    oms: OmsSession,
    inbox: Inbox,
    tap: WireTap,
    scanner: ScannerWire,
    term: TerminalWire,
    agent: AgentProcess,
}

impl Rig {
    /// Starts everything and waits for the login screen and the agent's birth.
    async fn start(oms_id: &str) -> (Rig, usize) {
        let dir = tempfile::tempdir().unwrap();
        let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
        let (oms, inbox) = start_oms(&broker.url(), oms_id);
        let tap = WireTap::start(broker.port);
        let scanner = ScannerWire::new(&dir.path().join("scanner"));
        let term = TerminalWire::new(&dir.path().join("terminal"));
        let extra = format!(
            "[station]\nrole = \"picker\"\nbounce_ms = 5000\n\
             [scanner]\nsource = {{ kind = \"serial\", path = \"{}\", baud = 9600 }}\n\
             [terminal]\nport = \"{}\"\n",
            scanner.port.display(),
            term.port.display()
        );
        let config = station_config(dir.path(), "hh-1", &broker.url(), &extra);
        let agent = AgentProcess::start(&config, &dir.path().join("agent.log"));
        let rig = Rig {
            dir,
            broker,
            oms,
            inbox,
            tap,
            scanner,
            term,
            agent,
        };
        let m = rig.term.wait_shown(0, "Badge", || rig.agent.log());
        wait_until(Duration::from_secs(30), "the agent's birth", || {
            rig.inbox.births() > 0
        })
        .await;
        (rig, m)
    }

    async fn send_wave(&self, tasks: Vec<Task>) {
        let wave = Wave {
            wave_id: 7,
            version: 1,
            priority: 1,
            cutoff: 0,
            task_count: tasks.len() as u32,
            digest: wave_digest(&tasks),
            tasks,
        };
        self.oms
            .send("hh-1", Down::WaveAssigned(wave))
            .await
            .unwrap();
    }

    /// Scans, then waits for a screen containing `then` after mark `m`.
    fn scan(&mut self, codes: &[&str], m: usize, then: &str) -> usize {
        self.scanner.scan(codes);
        self.term.wait_shown(m, then, || self.agent.log())
    }

    /// Presses keys, then waits for a screen containing `then` after mark `m`.
    fn keys(&mut self, keys: &[Key], m: usize, then: &str) -> usize {
        self.term.keys(keys);
        self.term.wait_shown(m, then, || self.agent.log())
    }

    /// The wave's last unit: scan it, confirm, wave done.
    fn last_unit(&mut self, m: usize) {
        let m = self.scan(&[BOLT], m, "confirm 1");
        self.keys(&[Key::Enter], m, "WaveDone");
    }

    /// Waits until the OMS acked everything; checks on the raw MQTT stream that every
    /// event was published exactly once, in seq order, and that the OMS handed each on
    /// once; returns the confirmations as published.
    async fn confirmations(&self) -> Vec<EventKind> {
        let db = self.dir.path().join("hh-1.db");
        wait_until(
            Duration::from_secs(30),
            "the OMS to ack every event",
            || outbox_count(&db) == 0,
        )
        .await;
        let high = Db::open_read_only(&db)
            .and_then(|d| d.outbox_stats(0))
            .map(|s| s.high_seq)
            .expect("read the agent's database");
        assert_all_in_order(&self.tap, "hh-1", high).await;
        assert_oms_got_each_once(&self.inbox, "hh-1", high).await;
        self.tap
            .distinct_events("hh-1")
            .into_iter()
            .map(|e| e.kind)
            .filter(|k| {
                matches!(
                    k,
                    EventKind::Picked(_)
                        | EventKind::ShortPicked { .. }
                        | EventKind::PutBack { .. }
                )
            })
            .collect()
    }
}

fn picked(task_id: u64, qty: u32) -> EventKind {
    EventKind::Picked(Picked {
        task_id,
        qty,
        lot: None,
        serial: None,
        expiry: None,
        tote: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shift_of_scans_lands_at_the_oms_exactly_once_per_confirmation() {
    let (mut r, m) = Rig::start("oms-picking").await;
    r.send_wave(vec![
        task(1, "A-01-01-A", 1, 2),
        task(2, "A-01-02-A", 2, 3),
        task(3, "A-01-03-A", 3, 1),
    ])
    .await;

    // Log in; the first task's location shows once the wave is in.
    let m = r.scan(&["OP42"], m, "A-01-01-A");
    // Task 1: location, one unit, the same scan bounced, a second unit by its EAN-13.
    let m = r.scan(&["A-01-01-A"], m, "0/2");
    let m = r.scan(&[BOLT, BOLT], m, "1/2");
    let m = r.scan(&[BOLT_13], m, "confirm 2");
    let m = r.keys(&[Key::Enter], m, "A-01-02-A");
    // Task 2: one unit, then a short pick for "not enough" (the fourth reason).
    let m = r.scan(&["A-01-02-A"], m, "0/3");
    let m = r.scan(&[BOLT], m, "1/3");
    let m = r.keys(&[Key::F(1)], m, "selected: 0");
    let m = r.keys(&[Key::Down, Key::Down, Key::Down], m, "selected: 3");
    let m = r.keys(&[Key::Enter], m, "A-01-03-A");
    // Task 3: a wrong item is refused, then the right one.
    let m = r.scan(&["A-01-03-A"], m, "0/1");
    let m = r.scan(&[OTHER], m, "Error");
    r.last_unit(m);

    assert_eq!(
        r.confirmations().await,
        vec![
            picked(1, 2),
            EventKind::ShortPicked {
                task_id: 2,
                qty: 1,
                reason: ShortReason::NotEnough
            },
            picked(3, 1),
        ],
        "agent log:\n{}",
        r.agent.log()
    );
    // Login, three task starts, three confirmations, and the wrong item's refusal.
    assert_eq!(r.tap.tally("hh-1").publishes, 8, "{:?}", r.inbox.kinds());
    let refused: Vec<EventKind> = r
        .inbox
        .kinds()
        .into_iter()
        .filter(|k| matches!(k, EventKind::ScanRefused { .. }))
        .collect();
    assert_eq!(
        refused,
        [EventKind::ScanRefused {
            reason: RefusalReason::WrongItem,
            task_id: Some(3),
            count: 1
        }]
    );
    // The bounce was ignored: the only refusal on screen is the wrong item's.
    let errors = r
        .term
        .screens()
        .iter()
        .filter(|s| s.contains("level: Error"))
        .count();
    assert_eq!(errors, 1, "{:#?}", r.term.screens());
    assert!(
        r.term
            .frames()
            .iter()
            .any(|f| matches!(f, ToTerminal::Beep(_))),
        "beeps reach the terminal"
    );

    // Offline: with the broker gone, the idle wave-done screen gives way to the banner;
    // once the link is back, the workflow's screen returns.
    let m = r.term.mark();
    r.broker.kill();
    let m = r.term.wait_shown(m, "Offline", || r.agent.log());
    r.broker.start_again();
    r.term.wait_shown(m, "WaveDone", || r.agent.log());
    // A graceful stop: SIGTERM ends the station, the link and the process with success.
    r.agent.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_cancelled_mid_pick_asks_for_put_backs_and_reports_the_confirmed_units() {
    let (mut r, m) = Rig::start("oms-cancel").await;
    let mut other = task(3, "B-03", 3, 1);
    other.order_id = "SO-8".into();
    r.send_wave(vec![task(1, "B-01", 1, 2), task(2, "B-02", 2, 2), other])
        .await;
    let m = r.scan(&["OP42"], m, "B-01");
    // Task 1 is picked and confirmed; task 2 has one unit in hand, not yet confirmed.
    let m = r.scan(&["B-01"], m, "0/2");
    let m = r.scan(&[BOLT, BOLT_13], m, "confirm 2");
    let m = r.keys(&[Key::Enter], m, "B-02");
    let m = r.scan(&["B-02"], m, "0/2");
    let m = r.scan(&[BOLT], m, "1/2");
    r.oms
        .send(
            "hh-1",
            Down::OrderCancelled {
                order_id: "SO-1".into(),
            },
        )
        .await
        .unwrap();
    // Both go back: the confirmed two at B-01, the one in hand at B-02.
    let m = r.term.wait_shown(m, "Put back 2", || r.agent.log());
    let m = r.scan(&["B-01"], m, "Put back 1");
    let m = r.scan(&["B-02"], m, "B-03");
    let m = r.scan(&["B-03"], m, "0/1");
    r.last_unit(m);
    assert_eq!(
        r.confirmations().await,
        vec![
            picked(1, 2),
            EventKind::PutBack {
                task_id: 1,
                qty: 2,
                location: "B-01".into()
            },
            picked(3, 1),
        ],
        "only confirmed units are put back at the OMS; agent log:\n{}",
        r.agent.log()
    );
    r.agent.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unplugged_scanner_is_shown_and_works_again_when_plugged_back_in() {
    let (mut r, m) = Rig::start("oms-unplug").await;
    r.scanner.unplug();
    let m = r.term.wait_shown(m, "Scanner unplugged", || r.agent.log());
    r.scanner.plug_in();
    let m = r.term.wait_shown(m, "Badge", || r.agent.log());
    r.scan(&["OP42"], m, "No tasks");
    r.agent.stop();
}

#[test]
fn floorhand_run_with_a_missing_terminal_port_stops_at_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = floorhand_tests::mosquitto::free_port();
    let config = station_config(
        dir.path(),
        "hh-2",
        &format!("mqtt://127.0.0.1:{port}"),
        "[terminal]\nport = \"/dev/floorhand-no-such-tty\"\n",
    );
    let out = std::process::Command::new(floorhand_tests::workspace_bin("floorhand"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot open terminal port /dev/floorhand-no-such-tty"),
        "{stderr}"
    );
}
