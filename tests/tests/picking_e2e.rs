//! A shift on a handheld, end to end with real parts: Mosquitto, the real `floorhand run`
//! process with its SQLite file, a scanner on a socat pty, the terminal link on another
//! (the test reads the agent's frames and presses keys), and an OMS session that pushes
//! the wave and acks. Every confirmation reaches the OMS exactly once.

use std::path::Path;
use std::time::Duration;

use floorhand::store::Db;
use floorhand_protocol::link::{Key, ToTerminal};
use floorhand_protocol::oms::{
    Capture, Down, EventKind, GtinPack, Picked, ShortReason, Task, Wave, wave_digest,
};
use floorhand_tests::mosquitto::{Mosquitto, Options};
use floorhand_tests::station_support::{AgentProcess, ScannerWire, TerminalWire, station_config};
use floorhand_tests::sync_support::{start_oms, wait_until};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shift_of_scans_lands_at_the_oms_exactly_once_per_confirmation() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let (oms, inbox) = start_oms(&broker.url(), "oms-picking");
    let mut scanner = ScannerWire::new(&dir.path().join("scanner"));
    let mut term = TerminalWire::new(&dir.path().join("terminal"));
    let extra = format!(
        "[station]\nrole = \"picker\"\nbounce_ms = 5000\n\
         [scanner]\nsource = {{ kind = \"serial\", path = \"{}\", baud = 9600 }}\n\
         [terminal]\nport = \"{}\"\n",
        scanner.port.display(),
        term.port.display()
    );
    let config = station_config(dir.path(), "hh-1", &broker.url(), &extra);
    let log_path = dir.path().join("agent.log");
    let mut agent = AgentProcess::start(&config, &log_path);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let m = term.wait_shown(0, "Badge", log);
    wait_until(Duration::from_secs(30), "the agent's birth", || {
        inbox.births() > 0
    })
    .await;
    let tasks = vec![
        task(1, "A-01-01-A", 1, 2),
        task(2, "A-01-02-A", 2, 3),
        task(3, "A-01-03-A", 3, 1),
    ];
    let wave = Wave {
        wave_id: 7,
        version: 1,
        priority: 1,
        cutoff: 0,
        task_count: 3,
        digest: wave_digest(&tasks),
        tasks,
    };
    oms.send("hh-1", Down::WaveAssigned(wave)).await.unwrap();

    // Log in; the first task's location shows once the wave is in.
    scanner.scan(&["OP42"]);
    let m = term.wait_shown(m, "A-01-01-A", log);
    // Task 1: location, one unit, the same scan bounced, a second unit by its EAN-13.
    scanner.scan(&["A-01-01-A"]);
    let m = term.wait_shown(m, "0/2", log);
    scanner.scan(&[BOLT, BOLT]);
    let m = term.wait_shown(m, "1/2", log);
    scanner.scan(&[BOLT_13]);
    let m = term.wait_shown(m, "confirm 2", log);
    term.keys(&[Key::Enter]);
    let m = term.wait_shown(m, "A-01-02-A", log);
    // Task 2: one unit, then a short pick for "not enough" (the fourth reason).
    scanner.scan(&["A-01-02-A"]);
    let m = term.wait_shown(m, "0/3", log);
    scanner.scan(&[BOLT]);
    let m = term.wait_shown(m, "1/3", log);
    term.keys(&[Key::F(1)]);
    let m = term.wait_shown(m, "selected: 0", log);
    term.keys(&[Key::Down, Key::Down, Key::Down]);
    let m = term.wait_shown(m, "selected: 3", log);
    term.keys(&[Key::Enter]);
    let m = term.wait_shown(m, "A-01-03-A", log);
    // Task 3: a wrong item is refused, then the right one.
    scanner.scan(&["A-01-03-A"]);
    let m = term.wait_shown(m, "0/1", log);
    scanner.scan(&[OTHER]);
    let m = term.wait_shown(m, "Error", log);
    scanner.scan(&[BOLT]);
    let m = term.wait_shown(m, "confirm 1", log);
    term.keys(&[Key::Enter]);
    term.wait_shown(m, "WaveDone", log);

    let db = dir.path().join("hh-1.db");
    wait_until(
        Duration::from_secs(30),
        "the OMS to ack every event",
        || outbox_count(&db) == 0,
    )
    .await;
    let confirmations: Vec<EventKind> = inbox
        .kinds()
        .into_iter()
        .filter(|k| matches!(k, EventKind::Picked(_) | EventKind::ShortPicked { .. }))
        .collect();
    let picked = |task_id, qty| {
        EventKind::Picked(Picked {
            task_id,
            qty,
            lot: None,
            serial: None,
            expiry: None,
            tote: None,
        })
    };
    assert_eq!(
        confirmations,
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
        agent.log()
    );
    let seqs: Vec<u64> = inbox.events().into_iter().map(|(_, s)| s).collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "every seq exactly once, in order");
    // Login, three task starts, three confirmations.
    assert_eq!(seqs.len(), 7, "{:?}", inbox.kinds());
    // The bounce was ignored: the only refusal on screen is the wrong item's.
    let errors = term
        .screens()
        .iter()
        .filter(|s| s.contains("level: Error"))
        .count();
    assert_eq!(errors, 1, "{:#?}", term.screens());
    assert!(
        term.frames()
            .iter()
            .any(|f| matches!(f, ToTerminal::Beep(_))),
        "beeps reach the terminal"
    );
    // Offline: with the broker gone, the idle wave-done screen gives way to the banner;
    // once the link is back, the workflow's screen returns.
    let m = term.mark();
    broker.kill();
    let m = term.wait_shown(m, "Offline", log);
    broker.start_again();
    term.wait_shown(m, "WaveDone", log);
    // A graceful stop: SIGTERM ends the station, the link and the process with success.
    agent.stop();
}
