//! The agent as a service: `floorhand run` stopped by SIGTERM mid-drain loses nothing and
//! resumes on restart; `floorhand doctor` passes a working station and names each problem
//! of a broken one, devices included (fake printers on a real TCP port and on a real pty).
//! Real Mosquitto, real SQLite files, real ptys, the real binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use floorhand::store::{Db, StoreConfig, Synchronous};
use floorhand_protocol::limits::WINDOW;
use floorhand_protocol::oms::EventKind;
use floorhand_tests::fake_printer::{FakePrinter, Mode};
use floorhand_tests::mosquitto::{Mosquitto, Options, free_port};
use floorhand_tests::pty::PtyPair;
use floorhand_tests::sync_support::*;
use floorhand_tests::wire_tap::WireTap;
use floorhand_tests::workspace_bin;

/// A config for device `device` on `url`, with the database at `db`.
fn config(dir: &Path, device: &str, url: &str, db: &Path, broker_extra: &str) -> PathBuf {
    let path = dir.join(format!("{device}.toml"));
    let text = format!(
        "device = \"{device}\"\nsite = \"site1\"\n\
         [broker]\nurl = \"{url}\"\nconnect_timeout_s = 2\nkeep_alive_s = 5\n{broker_extra}\n\
         [database]\npath = \"{}\"\nsynchronous = \"normal\"\nmax_mb = 1\n\
         [sync]\nresend_after_s = 2\nmax_backoff_s = 1\n\
         [log]\nformat = \"journald\"\n",
        db.display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn start_agent(config: &Path, log: &Path) -> Child {
    Command::new(workspace_bin("floorhand"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("start floorhand run")
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM failed");
}

async fn wait_exit(child: &mut Child, log: &Path) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait for floorhand") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "floorhand did not exit after SIGTERM; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const N: u64 = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_drain_exits_cleanly_and_a_restart_delivers_the_rest_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let (oms, inbox) = start_oms(&broker.url(), "oms-sigterm");
    let tap = WireTap::start(broker.port);
    let db_path = dir.path().join("station.db");
    {
        let cfg = StoreConfig {
            synchronous: Synchronous::Normal,
            ..StoreConfig::default()
        };
        let mut db = Db::open(&db_path, &cfg).expect("open db");
        for i in 1..=N {
            db.append_event(1_795_300_000, 7, EventKind::Skipped { task_id: i })
                .expect("append event");
        }
    }
    let cfg = config(dir.path(), "st-term", &broker.url(), &db_path, "");
    let log1 = dir.path().join("run1.log");
    let mut agent = start_agent(&cfg, &log1);
    wait_until(Duration::from_secs(20), "the drain to start", || {
        !inbox.events().is_empty()
    })
    .await;
    sigterm(&agent);
    let status = wait_exit(&mut agent, &log1).await;
    let log = std::fs::read_to_string(&log1).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "exit status {status}; log:\n{log}");
    let first_run = inbox.events().len() as u64;
    let first_acked = Db::open_read_only(&db_path)
        .and_then(|db| db.acked_through())
        .expect("read the acked point");
    eprintln!("the first run delivered {first_run} of {N} events before SIGTERM");
    assert!(
        first_run < N,
        "the drain finished before SIGTERM arrived, so this test proved nothing; raise N"
    );
    wait_until(Duration::from_secs(5), "Death on the state topic", || {
        inbox.deaths() == ["st-term"]
    })
    .await;
    // Journald format: a priority prefix, no timestamps and no colour codes.
    assert!(log.contains("stopping (signal)"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a journald log:\n{log}"
    );
    assert!(
        log.lines()
            .all(|l| l.starts_with("<6>") || l.starts_with("<4>")),
        "journald lines start with their priority, not a timestamp:\n{log}"
    );

    let log2 = dir.path().join("run2.log");
    let mut agent = start_agent(&cfg, &log2);
    wait_until(Duration::from_secs(60), "all events acked", || {
        oms.ack_point("st-term") == N
    })
    .await;
    assert_oms_got_each_once(&inbox, "st-term", N).await;
    // The restart re-sends what the first run left unacknowledged: published, perhaps
    // delivered, at most a window of it (and a window again if the OMS's acks were late).
    let unacked = N - first_acked;
    let t = assert_on_wire(&tap, "st-term", N, unacked.min(2 * WINDOW as u64)).await;
    eprintln!(
        "{} publishes on the wire for {N} events ({} duplicates, {unacked} unacked at SIGTERM)",
        t.publishes, t.duplicates
    );
    // The agent deletes acked rows; then stop it again, cleanly.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let db = Db::open_read_only(&db_path).expect("read db");
        if db.outbox_stats(0).expect("outbox").count == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "acked events stay in the outbox");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sigterm(&agent);
    assert_eq!(wait_exit(&mut agent, &log2).await.code(), Some(0));
    assert_eq!(
        tap.tally("st-term").publishes,
        t.publishes,
        "published after the drain"
    );
}

/// Runs `floorhand doctor` with `env` set; its exit code and report.
fn doctor(config: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(workspace_bin("floorhand"))
        .args(["doctor", "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .output()
        .expect("run floorhand doctor");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A broker that admits user `station` with password `right-password` only.
fn broker_with_a_user(dir: &Path) -> Mosquitto {
    Mosquitto::start(
        &dir.join("broker"),
        Options {
            users: vec![("station".into(), "right-password".into())],
            ..Options::default()
        },
    )
}

#[test]
fn doctor_passes_a_working_station() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with_a_user(dir.path());
    let db_path = dir.path().join("station.db");
    drop(Db::open(&db_path, &StoreConfig::default()).expect("create db"));
    let pw = dir.path().join("password");
    std::fs::write(&pw, "right-password\n").unwrap();
    let extra = format!(
        "username = \"station\"\npassword_file = \"{}\"",
        pw.display()
    );
    let cfg = config(dir.path(), "st-ok", &broker.url(), &db_path, &extra);
    let (code, out) = doctor(&cfg, &[]);
    assert_eq!(code, Some(0), "doctor failed a working station:\n{out}");
    for line in [
        "PASS  config    ",
        "PASS  database  ",
        "integrity ok, schema v",
        "PASS  disk      ",
        "PASS  broker    connected to mqtt://127.0.0.1:",
        "all 4 checks passed: ready",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
}

#[test]
fn doctor_names_each_problem_of_a_broken_station_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_with_a_user(dir.path());
    // Wrong password, and a database directory that does not exist.
    let missing = dir.path().join("no-such-dir").join("station.db");
    let extra = "username = \"station\"\npassword_env = \"FLOORHAND_TEST_DOCTOR_PW\"";
    let cfg = config(dir.path(), "st-bad", &broker.url(), &missing, extra);
    let (code, text) = doctor(&cfg, &[("FLOORHAND_TEST_DOCTOR_PW", "wrong-password")]);
    assert_eq!(code, Some(1), "{text}");
    for line in [
        "PASS  config",
        "FAIL  database  cannot write in",
        "-> create ",
        "FAIL  broker ",
        "-> check broker.username and the password",
        "2 of 3 checks failed: not ready",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    assert!(
        text.contains("username or password") || text.contains("not authorised"),
        "{text}"
    );
    assert!(
        !text.contains("wrong-password"),
        "the password was printed:\n{text}"
    );

    // Nothing listens on the broker port.
    let db_path = dir.path().join("station.db");
    let url = format!("mqtt://127.0.0.1:{}", free_port());
    let cfg = config(dir.path(), "st-port", &url, &db_path, "");
    let (code, text) = doctor(&cfg, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("FAIL  broker    mqtt://127.0.0.1:"), "{text}");
    assert!(text.contains("-> check broker.url"), "{text}");
    assert!(text.contains("PASS  database  "), "{text}");

    // A config error stops there, naming the key.
    std::fs::write(&cfg, "device = \"st 1\"\n").unwrap();
    let (code, text) = doctor(&cfg, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("FAIL  config"), "{text}");
    assert!(text.contains("missing field `site`"), "{text}");
}

/// Appends device sections to the config at `cfg`.
fn add_devices(cfg: &Path, sections: &str) {
    let mut text = std::fs::read_to_string(cfg).expect("read config");
    text.push_str(sections);
    std::fs::write(cfg, text).expect("write config");
}

/// A station config with a working broker and database, and `sections` for its devices.
fn station_with(dir: &Path, broker: &Mosquitto, device: &str, sections: &str) -> PathBuf {
    let db_path = dir.join(format!("{device}.db"));
    let cfg = config(dir, device, &broker.url(), &db_path, "");
    add_devices(&cfg, sections);
    cfg
}

/// Runs `floorhand doctor` on `cfg` and checks its exit code and that its report has
/// each of `lines`.
fn expect_doctor(cfg: &Path, code: i32, lines: &[&str]) {
    let (got, text) = doctor(cfg, &[]);
    assert_eq!(got, Some(code), "{text}");
    for line in lines {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
}

#[test]
fn doctor_opens_each_device_port_and_asks_a_network_printer_for_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    std::fs::create_dir(dir.path().join("scanner")).unwrap();
    std::fs::create_dir(dir.path().join("terminal")).unwrap();
    let scanner = PtyPair::new(&dir.path().join("scanner"));
    let terminal = PtyPair::new(&dir.path().join("terminal"));
    let printer = FakePrinter::start();
    let sections = format!(
        "[scanner]\nsource = {{ kind = \"serial\", path = \"{}\", baud = 9600 }}\n\
         [printer]\ntcp = \"{}\"\ntimeout_ms = 500\n\
         [terminal]\nport = \"{}\"\n",
        scanner.a.display(),
        printer.addr(),
        terminal.a.display()
    );
    let cfg = station_with(dir.path(), &broker, "st-dev", &sections);
    expect_doctor(
        &cfg,
        0,
        &[
            &format!(
                "PASS  scanner   serial port {} opened at 9600 baud",
                scanner.a.display()
            ),
            &format!("PASS  printer   {}: ready", printer.addr()),
            &format!(
                "PASS  terminal  serial port {} opened at 115200 baud",
                terminal.a.display()
            ),
            "all 7 checks passed: ready",
        ],
    );

    // The same printer out of labels, then silent (its head open): each a failure with
    // what to do, and a non-zero exit.
    printer.set_mode(Mode::PaperOut);
    expect_doctor(
        &cfg,
        1,
        &[
            &format!("FAIL  printer   {}: paper out", printer.addr()),
            "-> load labels",
            "PASS  scanner",
            "1 of 7 checks failed: not ready",
        ],
    );
    printer.set_mode(Mode::HeadOpen);
    expect_doctor(
        &cfg,
        1,
        &[
            &format!(
                "FAIL  printer   {}: no answer to ~HS within 500 ms",
                printer.addr()
            ),
            "-> close the print head and load labels",
            "check printer.tcp",
        ],
    );

    // Switched off: nothing listens on its port.
    printer.switch_off();
    expect_doctor(
        &cfg,
        1,
        &[
            &format!("FAIL  printer   printer unreachable: {}", printer.addr()),
            "ping it",
        ],
    );
}

#[test]
fn doctor_asks_a_serial_printer_for_its_status_on_its_port() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let pty = PtyPair::new(dir.path());
    let printer = FakePrinter::on_serial(&pty.b);
    let sections = format!(
        "[printer]\nserial = \"{}\"\nbaud = 9600\ntimeout_ms = 500\n",
        pty.a.display()
    );
    let cfg = station_with(dir.path(), &broker, "st-serial", &sections);
    expect_doctor(
        &cfg,
        0,
        &[
            &format!("PASS  printer   {}: ready", pty.a.display()),
            "all 5 checks passed: ready",
        ],
    );

    printer.set_mode(Mode::PaperOut);
    expect_doctor(
        &cfg,
        1,
        &[
            &format!("FAIL  printer   {}: paper out", pty.a.display()),
            "-> load labels",
        ],
    );

    printer.set_mode(Mode::HeadOpen);
    expect_doctor(
        &cfg,
        1,
        &[
            &format!(
                "FAIL  printer   {}: no answer to ~HS within 500 ms",
                pty.a.display()
            ),
            "-> close the print head and load labels",
            "/dev/floorhand-printer",
        ],
    );
}

#[test]
fn doctor_names_a_missing_or_busy_device_port_and_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let pty = PtyPair::new(dir.path());
    // Another program holds the terminal's port, as a running agent would.
    let _held = floorhand::devices::open_serial(
        &pty.a.to_string_lossy(),
        115_200,
        Duration::from_millis(20),
    )
    .expect("hold the terminal port");
    let sections = format!(
        "[scanner]\nsource = {{ kind = \"serial\", path = \"/dev/floorhand-no-scanner\" }}\n\
         [printer]\nserial = \"/dev/floorhand-no-printer\"\n\
         [terminal]\nport = \"{}\"\n",
        pty.a.display()
    );
    let cfg = station_with(dir.path(), &broker, "st-missing", &sections);
    expect_doctor(
        &cfg,
        1,
        &[
            "FAIL  scanner   /dev/floorhand-no-scanner does not exist",
            "-> plug the scanner in and check its cable; check that the path in \
             scanner.source names it",
            "FAIL  printer   /dev/floorhand-no-printer does not exist",
            "check that printer.serial names it and that the udev rule \
             (/etc/udev/rules.d/99-floorhand.rules) creates /dev/floorhand-printer",
            &format!(
                "FAIL  terminal  {} is in use by another program",
                pty.a.display()
            ),
            "sudo systemctl stop floorhand",
            "3 of 7 checks failed: not ready",
        ],
    );
}

#[test]
fn doctor_opens_a_pack_stations_scale_port_and_names_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let pty = PtyPair::new(dir.path());
    let printer = FakePrinter::start();
    let pack = |device: &str, port: &str| {
        station_with(
            dir.path(),
            &broker,
            device,
            &format!(
                "[station]\nrole = \"pack\"\n[printer]\ntcp = \"{}\"\n\
                 [label]\ncompany_prefix = \"0614141\"\n[scale]\nport = \"{port}\"\n",
                printer.addr()
            ),
        )
    };
    let good = pack("st-scale", &pty.a.to_string_lossy());
    expect_doctor(
        &good,
        0,
        &[
            &format!(
                "PASS  scale     serial port {} opened at 9600 baud",
                pty.a.display()
            ),
            "all 6 checks passed: ready",
        ],
    );
    let missing = pack("st-no-scale", "/dev/floorhand-no-scale");
    expect_doctor(
        &missing,
        1,
        &[
            "FAIL  scale     /dev/floorhand-no-scale does not exist",
            "check that scale.port names it",
            "creates /dev/floorhand-scale",
        ],
    );
}
