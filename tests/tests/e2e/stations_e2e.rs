//! Stations with some of their devices, end to end with real parts: Mosquitto, the real
//! `floorhand run` process and its SQLite file, scanners, scales and terminals on pty
//! pairs, a fake printer on TCP. Every device is optional: a station without one handles
//! every input of the others, and SIGTERM stops it within a second. A terminal unplugged
//! mid-shift comes back with its screen; a scan burst against a terminal reading at
//! 115200 baud leaves the station answering.

use std::time::Duration;

use floorhand::store::TaskState;
use floorhand::sync::oms::OmsSession;
use floorhand_protocol::examples;
use floorhand_protocol::link::Key;
use floorhand_protocol::oms::{
    Capture, Down, EventKind, GtinPack, PackOrder, Task, Wave, wave_digest,
};
use floorhand_tests::fake_printer::FakePrinter;
use floorhand_tests::mosquitto::{Mosquitto, Options};
use floorhand_tests::station_support::{
    AgentProcess, FULL_SPEED, ScannerWire, TerminalWire, station_config,
};
use floorhand_tests::sync_support::{Inbox, start_oms, wait_until};

const BOLT: &str = "09506000134352";
const WAIT: Duration = Duration::from_secs(30);
/// SIGTERM must stop any station within this.
const STOP_LIMIT: Duration = Duration::from_secs(1);

/// A broker, an OMS and the agent's files in one temporary directory.
struct Site {
    dir: tempfile::TempDir,
    _broker: Mosquitto,
    url: String,
    oms: OmsSession,
    inbox: Inbox,
}

impl Site {
    fn new(oms_id: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
        let url = broker.url();
        let (oms, inbox) = start_oms(&url, oms_id);
        Site {
            dir,
            _broker: broker,
            url,
            oms,
            inbox,
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// Starts `floorhand run` for `device` with the device sections `extra`; waits until
    /// it logs that it is ready for scans and the OMS has its birth.
    async fn agent(&self, device: &str, extra: &str) -> AgentProcess {
        let births = self.inbox.births();
        let config = station_config(self.dir.path(), device, &self.url, extra);
        let agent = AgentProcess::start(&config, &self.path(&format!("{device}.log")));
        agent.wait_log("ready for scans", 1);
        wait_until(WAIT, "the agent's birth", || self.inbox.births() > births).await;
        agent
    }

    async fn send_wave(&self, device: &str, wave_id: u64, location: &str) {
        let tasks = vec![Task {
            task_id: wave_id,
            order_id: format!("SO-{wave_id}"),
            order_line: 1,
            location: location.into(),
            pick_seq: 1,
            location_check: 11,
            gtins: vec![GtinPack {
                gtin: BOLT.into(),
                pack_qty: 1,
            }],
            sku: "BOLT-M8".into(),
            description: "Hex bolt M8".into(),
            qty: 2,
            capture: Capture::default(),
            tote_required: false,
        }];
        let wave = Wave {
            wave_id,
            version: 1,
            priority: 1,
            cutoff: 0,
            task_count: 1,
            digest: wave_digest(&tasks),
            tasks,
        };
        self.oms
            .send(device, Down::WaveAssigned(wave))
            .await
            .unwrap();
    }

    /// Sends the wave and waits until the agent stored it.
    async fn wave_stored(&self, device: &str, wave_id: u64, location: &str) {
        self.send_wave(device, wave_id, location).await;
        let db = self.path(&format!("{device}.db"));
        wait_until(WAIT, "the wave to be stored", || {
            floorhand::store::Db::open_read_only(&db)
                .and_then(|db| db.open_tasks())
                .is_ok_and(|t| t.iter().any(|t| t.task_id == wave_id))
        })
        .await;
    }

    /// The OMS sends a one-bolt pack order; returns once the agent stored it.
    async fn pack_order_stored(&self, device: &str, order_id: &str) {
        let mut o: PackOrder = examples::down()
            .into_iter()
            .find_map(|(_, env)| match env.body.body {
                Down::PackOrder(p) => Some(*p),
                _ => None,
            })
            .expect("the examples have a pack order");
        o.order_id = order_id.into();
        o.totes = vec![format!("T-{order_id}")];
        o.lines[0].qty = 1;
        self.oms
            .send(device, Down::PackOrder(Box::new(o)))
            .await
            .unwrap();
        let db = self.path(&format!("{device}.db"));
        wait_until(WAIT, "the pack order to be stored", || {
            floorhand::store::Db::open_read_only(&db)
                .and_then(|db| db.pack_order(order_id))
                .is_ok_and(|o| o.is_some())
        })
        .await;
    }

    /// A scanner and a terminal on ptys, and their config sections.
    fn scanner_and_terminal(&self) -> (ScannerWire, TerminalWire, String) {
        let scanner = ScannerWire::new(&self.path("scanner"));
        let term = TerminalWire::new(&self.path("terminal"));
        let devices = format!("{}{}", scanner_section(&scanner), terminal_section(&term));
        (scanner, term, devices)
    }

    fn logins(&self) -> usize {
        self.inbox
            .kinds()
            .iter()
            .filter(|k| matches!(k, EventKind::LoggedIn))
            .count()
    }
}

fn scanner_section(s: &ScannerWire) -> String {
    format!(
        "[scanner]\nsource = {{ kind = \"serial\", path = \"{}\", baud = 9600 }}\n",
        s.port.display()
    )
}

fn terminal_section(t: &TerminalWire) -> String {
    format!("[terminal]\nport = \"{}\"\n", t.port.display())
}

/// Starts pack station `pack-1` with a fake printer and the device sections `devices`;
/// checks it logged `missing` (the device it has not).
async fn pack_station(site: &Site, devices: &str, missing: &str) -> (FakePrinter, AgentProcess) {
    let printer = FakePrinter::start();
    let extra = format!(
        "[station]\nrole = \"pack\"\n\
         [printer]\ntcp = \"{}\"\ntimeout_ms = 500\nretry_ms = 100\n\
         [label]\ncompany_prefix = \"0614141\"\n{devices}",
        printer.addr()
    );
    let agent = site.agent("pack-1", &extra).await;
    agent.wait_log(missing, 1);
    (printer, agent)
}

/// SIGTERMs the agent and checks it stopped cleanly within [`STOP_LIMIT`].
fn stop_within_a_second(agent: &mut AgentProcess) {
    let took = agent.stop();
    println!("SIGTERM to exit: {took:?}");
    assert!(
        took < STOP_LIMIT,
        "SIGTERM took {took:?}; log:\n{}",
        agent.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picker_without_a_terminal_takes_a_badge_and_a_task_from_its_scanner() {
    let site = Site::new("oms-no-terminal");
    let mut scanner = ScannerWire::new(&site.path("scanner"));
    let extra = scanner_section(&scanner);
    let mut agent = site.agent("hh-1", &extra).await;
    agent.wait_log("no [terminal]: screens and beeps go to this log", 1);
    site.wave_stored("hh-1", 1, "A-01-01-A").await;
    // The screens go to the log.
    scanner.scan(&["OP42"]);
    agent.wait_log("A-01-01-A", 1);
    scanner.scan(&["A-01-01-A"]);
    agent.wait_log("0/2", 1);
    scanner.scan(&[BOLT]);
    agent.wait_log("1/2", 1);
    wait_until(WAIT, "the login at the OMS", || site.logins() == 1).await;
    stop_within_a_second(&mut agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picker_without_a_scanner_takes_a_badge_and_a_task_from_its_terminal() {
    let site = Site::new("oms-no-scanner");
    let mut term = TerminalWire::new(&site.path("terminal"));
    let extra = terminal_section(&term);
    let mut agent = site.agent("hh-1", &extra).await;
    agent.wait_log("no [scanner]: scans come from the terminal only", 1);
    let log = || agent.log();
    let m = term.wait_shown(0, "Badge", log);
    site.wave_stored("hh-1", 1, "A-01-01-A").await;
    term.scans(
        &[("OP42", "A-01-01-A"), ("A-01-01-A", "0/2"), (BOLT, "1/2")],
        m,
        log,
    );
    stop_within_a_second(&mut agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyboard_wedge_at_the_end_of_its_input_leaves_the_terminal_working() {
    let site = Site::new("oms-wedge-eof");
    let mut term = TerminalWire::new(&site.path("terminal"));
    // The wedge reads the agent's standard input, which is /dev/null: it ends at once.
    let extra = format!(
        "[scanner]\nsource = {{ kind = \"wedge\" }}\n{}",
        terminal_section(&term)
    );
    let mut agent = site.agent("hh-1", &extra).await;
    agent.wait_log("the scanner's reader has ended (end of its input)", 1);
    let log = || agent.log();
    let m = term.wait_shown(0, "Badge", log);
    site.wave_stored("hh-1", 1, "A-01-01-A").await;
    term.scans(&[("OP42", "A-01-01-A"), ("A-01-01-A", "0/2")], m, log);
    stop_within_a_second(&mut agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picker_with_no_device_at_all_keeps_its_link_and_stops_within_a_second() {
    let site = Site::new("oms-no-devices");
    let mut agent = site.agent("hh-1", "").await;
    agent.wait_log("neither a [scanner] nor a [terminal]", 1);
    // The link works: a wave is stored and the station reloads its tasks (to the log).
    site.wave_stored("hh-1", 1, "A-01-01-A").await;
    stop_within_a_second(&mut agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_station_without_a_scale_packs_a_carton_at_a_typed_weight() {
    let site = Site::new("oms-no-scale");
    let (mut scanner, mut term, devices) = site.scanner_and_terminal();
    let (printer, mut agent) = pack_station(
        &site,
        &devices,
        "no [scale]: the packer types each carton's weight",
    )
    .await;
    let log = || agent.log();
    let m = term.wait_shown(0, "Scan your badge", log);
    site.pack_order_stored("pack-1", "SO-1").await;
    scanner.scan(&["OP7"]);
    let m = term.wait_shown(m, "Scan order or tote", log);
    scanner.scan(&["SO-1"]);
    let m = term.wait_shown(m, "SO-1 carton 1", log);
    scanner.scan(&[BOLT]);
    let m = term.wait_shown(m, "All packed", log);
    term.keys(&[Key::F(1)]);
    let m = term.wait_shown(m, "Carton weight", log);
    term.keys(&[Key::Digit(1), Key::Digit(2), Key::Digit(0), Key::Enter]);
    term.wait_shown(m, "Scan order or tote", log);
    wait_until(WAIT, "the label printed", || printer.jobs().len() == 1).await;
    stop_within_a_second(&mut agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_station_without_a_terminal_logs_in_from_its_scanner_and_reads_its_scale() {
    let site = Site::new("oms-pack-no-terminal");
    let mut scanner = ScannerWire::new(&site.path("scanner"));
    let mut scale = ScannerWire::new(&site.path("scale"));
    let devices = format!(
        "{}[scale]\nport = \"{}\"\n",
        scanner_section(&scanner),
        scale.port.display()
    );
    let (_printer, mut agent) = pack_station(&site, &devices, "no [terminal]").await;
    scanner.scan(&["OP7"]);
    wait_until(WAIT, "the login at the OMS", || site.logins() == 1).await;
    scale.send(b"ST,GS,+  0.120kg\r\n");
    agent.wait_log("scale settled grams=120", 1);
    stop_within_a_second(&mut agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_station_without_a_scanner_packs_from_the_terminal_s_scans() {
    let site = Site::new("oms-pack-no-scanner");
    let mut term = TerminalWire::new(&site.path("terminal"));
    let (_printer, mut agent) = pack_station(&site, &terminal_section(&term), "no [scanner]").await;
    let log = || agent.log();
    let m = term.wait_shown(0, "Scan your badge", log);
    site.pack_order_stored("pack-1", "SO-1").await;
    term.scans(
        &[
            ("OP7", "Scan order or tote"),
            ("T-SO-1", "SO-1 carton 1"),
            (BOLT, "All packed"),
        ],
        m,
        log,
    );
    stop_within_a_second(&mut agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_unplugged_mid_shift_is_reopened_and_shows_the_current_screen_again() {
    let site = Site::new("oms-terminal-unplug");
    let (mut scanner, mut term, devices) = site.scanner_and_terminal();
    let mut agent = site.agent("hh-1", &devices).await;
    let log = || agent.log();
    let m = term.wait_shown(0, "Badge", log);
    scanner.scan(&["OP42"]);
    let m = term.wait_shown(m, "No tasks", log);

    term.unplug();
    agent.wait_log("terminal unplugged", 1);
    // The station goes on meanwhile: a wave comes in and changes the screen.
    site.wave_stored("hh-1", 1, "A-01-01-A").await;
    term.plug_in();
    agent.wait_log("terminal back", 1);
    let m = term.wait_shown(m, "A-01-01-A", log);
    // Both ways work again.
    term.scan("A-01-01-A");
    let m = term.wait_shown(m, "0/2", log);
    scanner.scan(&[BOLT]);
    term.wait_shown(m, "1/2", log);
    stop_within_a_second(&mut agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminals_firmware_version_reaches_the_oms_once_per_run_and_again_when_it_changes() {
    let site = Site::new("oms-terminal-version");
    let (_scanner, mut term, devices) = site.scanner_and_terminal();
    let mut agent = site.agent("hh-1", &devices).await;
    let log = || agent.log();
    let m = term.wait_shown(0, "Badge", log);
    term.hello("1.2.0");
    agent.wait_log("terminal connected (firmware 1.2.0)", 1);
    // The same terminal again, then unplugged and back: no news for the OMS.
    term.hello("1.2.0");
    agent.wait_log("terminal connected (firmware 1.2.0)", 2);
    term.unplug();
    agent.wait_log("terminal unplugged", 1);
    term.plug_in();
    agent.wait_log("terminal back", 1);
    term.hello("1.2.0");
    agent.wait_log("terminal connected (firmware 1.2.0)", 3);
    // A terminal re-flashed (or swapped) mid-shift is news.
    term.hello("1.3.0");
    // The badge comes after the hellos on the same line, so its event is written after
    // theirs: once the login is at the OMS, every version event before it is too.
    term.scans(&[("OP42", "No tasks")], m, log);
    wait_until(WAIT, "the login at the OMS", || site.logins() == 1).await;
    let versions: Vec<String> = site
        .inbox
        .kinds()
        .into_iter()
        .filter_map(|k| match k {
            EventKind::TerminalConnected { software } => Some(software),
            _ => None,
        })
        .collect();
    assert_eq!(versions, ["1.2.0", "1.3.0"]);
    stop_within_a_second(&mut agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_burst_against_a_terminal_read_at_115200_baud_leaves_the_station_answering() {
    const BURST: usize = 5_000;
    let site = Site::new("oms-burst");
    let (mut scanner, mut term, devices) = site.scanner_and_terminal();
    let mut agent = site.agent("hh-1", &devices).await;
    let log = || agent.log();
    let m = term.wait_shown(0, "Badge", log);
    site.wave_stored("hh-1", 1, "A-01-01-A").await;
    scanner.scan(&["OP42"]);
    let m = term.wait_shown(m, "A-01-01-A", log);
    // 115200 baud, 8N1: 11,520 bytes a second. Each junk scan is refused with its own
    // screen ("Wrong location JUNK-00042: go to A-01-01-A") and a beep: about 70 bytes,
    // so the burst is far more than the line carries.
    term.read_rate(11_520);
    let junk: Vec<String> = (0..BURST).map(|i| format!("JUNK-{i:05}")).collect();
    let junk: Vec<&str> = junk.iter().map(String::as_str).collect();
    let sent = std::time::Instant::now();
    scanner.scan(&junk);
    scanner.scan(&["A-01-01-A"]);
    // The scan after the burst is handled (the task is started in the store) while the
    // terminal is still reading at 115200 baud.
    let db = site.path("hh-1.db");
    wait_until(WAIT, "the location scan after the burst", || {
        floorhand::store::Db::open_read_only(&db)
            .and_then(|db| db.task(1))
            .is_ok_and(|t| t.is_some_and(|t| t.state == TaskState::InProgress))
    })
    .await;
    let answered = sent.elapsed();
    assert!(
        agent
            .log()
            .contains("the line is slower than the screens: dropping frames"),
        "the burst did not fill the line, so this test proves nothing; log:\n{}",
        agent.log()
    );
    // Once the terminal reads at full speed again, the latest screen is there, and the
    // link works both ways.
    term.read_rate(FULL_SPEED);
    let m = term.wait_shown(m, "0/2", log);
    term.scan(BOLT);
    term.wait_shown(m, "1/2", log);
    let frames = term.frames().len();
    println!(
        "{BURST} scans then a location: started in the store after {answered:?}; {frames} frames reached the terminal"
    );
    assert!(
        !agent.log().contains("terminal unplugged"),
        "a slow line is not a lost one; log:\n{}",
        agent.log()
    );
    stop_within_a_second(&mut agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wave_that_arrives_as_the_picker_starts_is_offered_after_every_restart() {
    let site = Site::new("oms-restarts");
    for i in 1..=3u64 {
        let device = format!("hh-{i}");
        let dir = site.path(&device);
        std::fs::create_dir_all(&dir).unwrap();
        let mut term = TerminalWire::new(&dir.join("terminal"));
        let extra = terminal_section(&term);
        // A first run makes the broker keep the device's session ...
        let mut agent = site.agent(&device, &extra).await;
        agent.stop();
        // ... so a wave sent while it is down is delivered the moment it connects,
        // racing the station's first load of its tasks.
        let location = format!("B-0{i}-01-A");
        site.send_wave(&device, i, &location).await;
        let m = term.mark();
        let mut agent = site.agent(&device, &extra).await;
        let log = || agent.log();
        let m = term.wait_shown(m, "Badge", log);
        term.scan("OP42");
        term.wait_shown(m, &location, log);
        agent.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_picked_before_a_restart_and_cancelled_after_it_is_asked_back_at_once() {
    let site = Site::new("oms-put-back");
    let device = "hh-1";
    let mut term = TerminalWire::new(&site.path("terminal"));
    let extra = terminal_section(&term);
    let mut agent = site.agent(device, &extra).await;
    site.wave_stored(device, 1, "B-01-01-A").await;
    let log = |agent: &AgentProcess| agent.log();
    let m = term.mark();
    let m = term.scans(
        &[
            ("OP42", "B-01-01-A"),
            ("B-01-01-A", "0/2"),
            (BOLT, "1/2"),
            // The EAN-13 of the same item: other bytes, so no bounce.
            ("9506000134352", "confirm 2"),
        ],
        m,
        || log(&agent),
    );
    term.keys(&[Key::Enter]);
    term.wait_shown(m, "WaveDone", || log(&agent));
    agent.stop();

    let m = term.mark();
    let mut agent = site.agent(device, &extra).await;
    let m = term.wait_shown(m, "Badge", || log(&agent));
    term.scan("OP42");
    let m = term.wait_shown(m, "No tasks", || log(&agent));
    site.oms
        .send(
            device,
            Down::OrderCancelled {
                order_id: "SO-1".into(),
            },
        )
        .await
        .unwrap();
    // Asked at the cancellation, not after the next restart.
    let m = term.wait_shown(m, "Put back 2 of Hex bolt M8 at B-01-01-A", || log(&agent));
    term.scan("B-01-01-A");
    term.wait_shown(m, "No tasks", || log(&agent));
    let db = site.path(&format!("{device}.db"));
    wait_until(WAIT, "the put-back to be stored", || {
        floorhand::store::Db::open_read_only(&db)
            .and_then(|db| db.task(1))
            .is_ok_and(|t| t.is_some_and(|t| t.state == TaskState::Cancelled))
    })
    .await;
    agent.stop();
}
