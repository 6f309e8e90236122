//! A pack station end to end with real parts: Mosquitto, the real `floorhand run` process
//! with its SQLite file, a scanner and the terminal link on pty pairs, a fake printer on
//! a real TCP port, and an OMS session that pushes the pack orders and acks.
//! Every carton gets exactly one label; a label queued while the printer is off survives
//! an agent restart and prints exactly once when the printer is back. The packer logs in
//! with a badge first; one carton's weight comes from a serial scale on a pty; each
//! carton's contents are stored under its SSCC. A label the printer still holds in its
//! buffer at a restart is confirmed afterwards, not printed twice.

use std::path::Path;
use std::time::Duration;

use floorhand::sync::oms::OmsSession;
use floorhand_protocol::examples;
use floorhand_protocol::link::Key;
use floorhand_protocol::oms::{Down, EventKind, PackOrder, PrinterState};
use floorhand_tests::fake_printer::{FakePrinter, Mode};
use floorhand_tests::mosquitto::{Mosquitto, Options};
use floorhand_tests::station_support::{AgentProcess, ScannerWire, TerminalWire, station_config};
use floorhand_tests::sync_support::{
    Inbox, assert_oms_got_each_once, assert_on_wire, start_oms, wait_until,
};
use floorhand_tests::wire_tap::WireTap;

const BOLT: &str = "09506000134352";
const WAIT: Duration = Duration::from_secs(30);

/// The protocol's example pack order (3 bolts of 120 g) under another order id.
fn order(order_id: &str, qty: u32) -> PackOrder {
    let mut o = examples::down()
        .into_iter()
        .find_map(|(_, env)| match env.body.body {
            Down::PackOrder(p) => Some(*p),
            _ => None,
        })
        .expect("the examples have a pack order");
    o.order_id = order_id.into();
    o.totes = vec![format!("T-{order_id}")];
    o.lines[0].qty = qty;
    o
}

/// The OMS sends a pack order; returns once the agent has stored it.
async fn push_order(oms: &OmsSession, dir: &Path, order_id: &str, qty: u32) {
    oms.send("pack-1", Down::PackOrder(Box::new(order(order_id, qty))))
        .await
        .unwrap();
    wait_until(WAIT, &format!("pack order {order_id} to be stored"), || {
        floorhand::store::Db::open_read_only(&dir.join("pack-1.db"))
            .and_then(|db| db.pack_order(order_id))
            .is_ok_and(|o| o.is_some())
    })
    .await;
}

/// Scans `code` (order or tote of the one-bolt order `order_id`), packs the bolt and
/// closes the carton at a typed 120 g; returns the terminal mark after that.
fn pack_one_bolt(
    scanner: &mut ScannerWire,
    term: &mut TerminalWire,
    code: &str,
    order_id: &str,
    m: usize,
    log: impl Fn() -> String + Copy,
) -> usize {
    scanner.scan(&[code]);
    let m = term.wait_shown(m, &format!("{order_id} carton 1"), log);
    scanner.scan(&[BOLT]);
    let m = term.wait_shown(m, "All packed", log);
    term.keys(&[Key::F(1)]);
    let m = term.wait_shown(m, "Carton weight", log);
    term.keys(&[Key::Digit(1), Key::Digit(2), Key::Digit(0), Key::Enter]);
    m
}

/// The pack station's events not yet acknowledged by the OMS (read after a stop, these
/// are all a restart may publish again).
fn unacked(dir: &Path) -> u64 {
    floorhand::store::Db::open_read_only(&dir.join("pack-1.db"))
        .and_then(|db| db.outbox_stats(0))
        .map(|s| s.count)
        .expect("read the pack station's database")
}

/// The pack station's highest event seq.
fn high_seq(dir: &Path) -> u64 {
    floorhand::store::Db::open_read_only(&dir.join("pack-1.db"))
        .and_then(|db| db.outbox_stats(0))
        .map(|s| s.high_seq)
        .expect("read the pack station's database")
}

fn count(inbox: &Inbox, f: impl Fn(&EventKind) -> bool) -> usize {
    inbox.kinds().iter().filter(|k| f(k)).count()
}

fn texts(jobs: &[Vec<u8>]) -> Vec<String> {
    jobs.iter()
        .map(|j| String::from_utf8_lossy(j).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_carton_prints_one_label_and_a_queued_label_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let (oms, inbox) = start_oms(&broker.url(), "oms-pack");
    let tap = WireTap::start(broker.port);
    let printer = FakePrinter::start();
    let mut scanner = ScannerWire::new(&dir.path().join("scanner"));
    let mut term = TerminalWire::new(&dir.path().join("terminal"));
    // A serial scale is wired like the scanner: the test writes its lines.
    let mut scale = ScannerWire::new(&dir.path().join("scale"));
    let extra = format!(
        "[station]\nrole = \"pack\"\ntare_g = 0\n\
         [scanner]\nsource = {{ kind = \"serial\", path = \"{}\", baud = 9600 }}\n\
         [terminal]\nport = \"{}\"\n\
         [printer]\ntcp = \"{}\"\ntimeout_ms = 500\nretry_ms = 100\n\
         [scale]\nport = \"{}\"\n\
         [label]\ncompany_prefix = \"0614141\"\n",
        scanner.port.display(),
        term.port.display(),
        printer.addr(),
        scale.port.display()
    );
    let config = station_config(dir.path(), "pack-1", &broker.url(), &extra);
    let log_path = dir.path().join("agent.log");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let mut agent = AgentProcess::start(&config, &log_path);

    // Nothing is packed before the packer logs in with a badge.
    let m = term.wait_shown(0, "Scan your badge", log);
    scanner.scan(&["SO-1"]);
    let m = term.wait_shown(m, "Scan your badge to log in", log);
    scanner.scan(&["OP7"]);
    let m = term.wait_shown(m, "Scan order or tote", log);
    wait_until(WAIT, "the agent's birth", || inbox.births() > 0).await;
    wait_until(WAIT, "the login reported", || {
        count(&inbox, |k| matches!(k, EventKind::LoggedIn)) == 1
    })
    .await;
    push_order(&oms, dir.path(), "SO-1", 3).await;

    // Two cartons: two bolts, then the last one.
    scanner.scan(&["SO-1"]);
    let m = term.wait_shown(m, "SO-1 carton 1", log);
    scanner.scan(&[BOLT]);
    let m = term.wait_shown(m, "1/3", log);
    scanner.scan(&[BOLT]);
    let m = term.wait_shown(m, "2/3", log);
    term.keys(&[Key::F(1)]);
    let m = term.wait_shown(m, "Carton weight", log);
    term.keys(&[Key::Digit(2), Key::Digit(4), Key::Digit(0), Key::Enter]);
    let m = term.wait_shown(m, "SO-1 carton 2", log);
    scanner.scan(&[BOLT]);
    let m = term.wait_shown(m, "All packed", log);
    term.keys(&[Key::F(1)]);
    let m = term.wait_shown(m, "Carton weight", log);
    // This carton's weight comes from the scale: moving, then settled at 120 g.
    scale.send(b"US,GS,+  0.090kg\r\nUS,GS,+  0.118kg\r\nST,GS,+  0.120kg\r\n");
    let m = term.wait_shown(m, "Scan order or tote", log);
    wait_until(WAIT, "two labels printed and reported", || {
        count(&inbox, |k| matches!(k, EventKind::LabelPrinted { .. })) == 2
    })
    .await;
    assert_eq!(printer.jobs().len(), 2, "one label per carton");
    assert_eq!(
        tap.tally("pack-1").duplicates,
        0,
        "an event published twice on a link without faults"
    );

    // The printer is switched off; a third carton's label waits and fails once.
    printer.switch_off();
    push_order(&oms, dir.path(), "SO-2", 1).await;
    // By its tote this time.
    let m = pack_one_bolt(&mut scanner, &mut term, "T-SO-2", "SO-2", m, log);
    term.wait_shown(m, "NOT printed", log);
    wait_until(WAIT, "the print failure reported", || {
        count(&inbox, |k| matches!(k, EventKind::PrintFailed { .. })) == 1
    })
    .await;

    // The fault and the waiting label are in the device's `Status` too.
    wait_until(
        WAIT,
        "a Status with the printer offline and one label queued",
        || {
            inbox
                .statuses()
                .iter()
                .any(|s| s.printer == PrinterState::Offline && s.print_queue == 1)
        },
    )
    .await;

    // Restart the agent while the printer is still off; then the printer comes back.
    // The restart may publish again what was not acknowledged at the stop, nothing more.
    agent.stop();
    let mut resendable = unacked(dir.path());
    let mut agent = AgentProcess::start(&config, &log_path);
    wait_until(WAIT, "the restarted agent's birth", || inbox.births() > 1).await;
    printer.switch_on();
    wait_until(WAIT, "the queued label printed and reported", || {
        count(&inbox, |k| matches!(k, EventKind::LabelPrinted { .. })) == 3
    })
    .await;
    wait_until(WAIT, "every event acked", || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        floorhand::store::Db::open_read_only(&dir.path().join("pack-1.db"))
            .and_then(|db| db.outbox_stats(now))
            .is_ok_and(|s| s.count == 0)
    })
    .await;
    agent.stop();
    resendable += unacked(dir.path());

    // What went into each carton is stored with it, under the packer who packed it.
    let db = floorhand::store::Db::open_read_only(&dir.path().join("pack-1.db")).unwrap();
    let cartons = db.cartons_of("SO-1").unwrap();
    assert_eq!(cartons.len(), 2);
    let second = db.carton(&cartons[1]).unwrap().unwrap();
    assert_eq!(
        (second.weight_g, second.operator),
        (120, 7),
        "the scale's weight"
    );
    let units: u32 = cartons
        .iter()
        .map(|c| {
            db.carton(c)
                .unwrap()
                .unwrap()
                .items
                .iter()
                .map(|(i, _)| i.qty)
                .sum::<u32>()
        })
        .sum();
    assert_eq!(units, 3, "all three bolts, across the two cartons");
    drop(db);

    let jobs = printer.jobs();
    assert_eq!(
        jobs.len(),
        3,
        "exactly one label per carton, the queued one once"
    );
    let labels = texts(&jobs);
    assert!(labels[2].contains("SO-2"), "the third label is SO-2's");
    for kind in inbox.kinds() {
        if let EventKind::CartonClosed { sscc, .. } = kind {
            let n = labels.iter().filter(|l| l.contains(&sscc)).count();
            assert_eq!(n, 1, "carton {sscc} has exactly one label");
        }
    }
    assert_eq!(
        count(&inbox, |k| matches!(k, EventKind::CartonClosed { .. })),
        3
    );
    assert_eq!(
        count(&inbox, |k| matches!(k, EventKind::PackVerified { .. })),
        2
    );
    assert_eq!(
        count(&inbox, |k| matches!(k, EventKind::PrintFailed { .. })),
        1,
        "the fault is reported once, across the restart: {:?}\n{}",
        inbox.kinds(),
        log()
    );
    let high = high_seq(dir.path());
    assert_on_wire(&tap, "pack-1", high, resendable).await;
    assert_oms_got_each_once(&inbox, "pack-1", high).await;

    // A label the printer took but still holds in its buffer when the agent stops is not
    // sent again after the restart: the station only confirms it.
    let mut agent = AgentProcess::start(&config, &log_path);
    let m = term.mark();
    let m = term.wait_shown(m, "Scan your badge", log);
    printer.set_mode(Mode::Buffered(1));
    push_order(&oms, dir.path(), "SO-3", 1).await;
    scanner.scan(&["OP7"]);
    let m = term.wait_shown(m, "Scan order or tote", log);
    let m = pack_one_bolt(&mut scanner, &mut term, "SO-3", "SO-3", m, log);
    term.wait_shown(m, "Scan order or tote", log);
    wait_until(WAIT, "the label marked as taken by the printer", || {
        floorhand::store::Db::open_read_only(&dir.path().join("pack-1.db"))
            .and_then(|db| db.pending_prints())
            .is_ok_and(|p| p.len() == 1 && p[0].sent)
    })
    .await;
    assert_eq!(printer.jobs().len(), 4);
    agent.stop();
    resendable += unacked(dir.path());
    printer.set_mode(Mode::Ready);
    let mut agent = AgentProcess::start(&config, &log_path);
    wait_until(WAIT, "the buffered label confirmed as printed", || {
        count(&inbox, |k| matches!(k, EventKind::LabelPrinted { .. })) == 4
    })
    .await;
    agent.stop();
    assert_on_wire(&tap, "pack-1", high_seq(dir.path()), resendable).await;
    let labels = texts(&printer.jobs());
    assert_eq!(labels.len(), 4, "the buffered label was not sent twice");
    assert_eq!(labels.iter().filter(|l| l.contains("SO-3")).count(), 1);
}
