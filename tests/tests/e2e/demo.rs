//! `floorhand demo --quick`: the whole shift (embedded broker, OMS, picker and pack
//! station, virtual scanner, printer and terminal, a link outage) run as the real binary;
//! its JSON summary must show the exactly-once check holding, and the terminal's PNG
//! screens must be there. The OMS side is a bridge: the floor view's URL it prints while
//! the shift runs answers with the page, and its data with the token in the URL only;
//! without `--quick` the page stays up after the shift until Enter.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use floorhand_tests::http::Client;
use floorhand_tests::workspace_bin;

/// Starts `floorhand demo ARGS` with its output piped; the lines of its stdout come on
/// the receiver as they are printed.
fn demo(args: &[&std::ffi::OsStr]) -> (Child, mpsc::Receiver<String>) {
    // The demo starts it from next to `floorhand`; this says how to build it if it is not.
    workspace_bin("floorhand-terminal");
    let mut child = Command::new(workspace_bin("floorhand"))
        .arg("demo")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run floorhand demo");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Drained so the demo never blocks on a full stderr pipe (its progress bars).
    let mut stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    (child, rx)
}

/// Waits for the line holding the floor view's URL (`http://ADDR/#token=TOKEN`) and
/// returns the address and the token; `seen` gets every line read.
fn floor_url(
    lines: &mpsc::Receiver<String>,
    seen: &mut String,
    after: &str,
) -> (SocketAddr, String) {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!("no line with {after:?} and the URL; stdout so far:\n{seen}")
            });
        seen.push_str(&line);
        seen.push('\n');
        if !line.contains(after) {
            continue;
        }
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"));
        let (addr, token) = url
            .trim_start_matches("http://")
            .split_once("/#token=")
            .unwrap_or_else(|| panic!("no token in {url:?}"));
        return (addr.parse().unwrap(), token.to_string());
    }
}

/// The URL answers with the page, and the page's data needs the URL's token.
fn check_floor_view(addr: SocketAddr, token: &str) {
    let open = Client::new(addr, None);
    let page = open.get("/").unwrap();
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.text().contains("Floorhand floor"), "{}", page.text());
    assert_eq!(open.get("/v1/floor").unwrap().status, 401);
    let floor = Client::new(addr, Some(token)).get("/v1/floor").unwrap();
    assert_eq!(floor.status, 200, "{}", floor.text());
    assert!(floor.json()["devices"].is_array(), "{}", floor.text());
}

#[test]
fn a_quick_demo_shift_delivers_every_event_exactly_once_through_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo-out");
    let json = dir.path().join("summary.json");
    let (mut child, lines) = demo(&[
        "--quick".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
        "--json".as_ref(),
        json.as_os_str(),
    ]);
    // While the shift runs, the URL it printed answers.
    let mut stdout = String::new();
    let (addr, token) = floor_url(&lines, &mut stdout, "floor view");
    check_floor_view(addr, &token);
    let status = child.wait().unwrap();
    stdout.extend(lines.iter().map(|l| l + "\n"));
    let log = std::fs::read_to_string(out.join("demo.log")).unwrap_or_default();
    assert!(
        status.success(),
        "demo failed: {status}\nstdout:\n{stdout}\nlog:\n{log}"
    );
    // `--quick` exits after the summary: the page is gone with the process.
    assert!(
        Client::new(addr, None).get("/").is_err(),
        "the bridge stopped"
    );
    let text = std::fs::read_to_string(&json).expect("the demo writes its JSON summary");
    let s: serde_json::Value = serde_json::from_str(&text).unwrap();
    let num = |k: &str| {
        s[k].as_f64()
            .unwrap_or_else(|| panic!("{k} missing in {text}"))
    };
    assert_eq!(s["exactly_once"], true, "{text}");
    assert_eq!(s["problems"].as_array().map(Vec::len), Some(0), "{text}");
    assert!(num("events_sent") > 0.0, "{text}");
    assert_eq!(num("events_sent"), num("events_acked"), "{text}");
    assert_eq!(num("events_sent"), num("oms_events_received"), "{text}");
    assert!(num("outage_s") > 0.0, "{text}");
    assert!(
        num("duplicates_suppressed") > 0.0,
        "the one-way part of the outage makes the agents re-send what the OMS has: {text}"
    );
    assert!(num("tasks_picked") >= 1.0, "{text}");
    assert!(num("tasks_short") >= 1.0, "the scripted short pick: {text}");
    assert!(
        num("exceptions") >= 2.0,
        "wrong item and malformed code: {text}"
    );
    assert!(num("labels_printed") >= 1.0, "{text}");
    // Each carton the pack workflow closed (scan order, scan items, type weight) had its
    // label printed and reported through the workflow.
    assert_eq!(num("cartons"), num("labels_printed"), "{text}");
    let labels = s["labels"].as_array().unwrap();
    assert_eq!(labels.len() as f64, num("labels_printed"), "{text}");
    for l in labels {
        let zpl = std::fs::read_to_string(l.as_str().unwrap()).unwrap();
        assert!(zpl.starts_with("^XA") && zpl.ends_with("^XZ"), "{zpl}");
    }
    // `floorhand-terminal`, the firmware's host runner (built next to `floorhand` by
    // `cargo test --workspace`, through this crate's dependency on the firmware's `sim`
    // feature), started by the demo on a pty, drew one PNG per screen the picker saw.
    let screens = s["screens"].as_array().unwrap();
    assert!(
        screens.len() as f64 > num("tasks_picked"),
        "at least a screen per picked task: {text}"
    );
    for p in screens {
        let bytes = std::fs::read(p.as_str().unwrap()).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{p} is a PNG");
    }
    assert!(out.join("screens/screen-0001.png").exists(), "{text}");
    assert!(
        stdout.contains("exactly-once check") && stdout.contains("HOLDS"),
        "{stdout}"
    );
}

#[test]
fn without_quick_the_floor_view_stays_up_after_the_shift_until_enter() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo-out");
    let (mut child, lines) = demo(&["--out".as_ref(), out.as_os_str()]);
    let mut stdout = String::new();
    floor_url(&lines, &mut stdout, "floor view (live");
    // After the summary the demo says where the page stays, and waits.
    let (addr, token) = floor_url(&lines, &mut stdout, "press Enter");
    assert!(stdout.contains("HOLDS"), "{stdout}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the demo waits for Enter"
    );
    check_floor_view(addr, &token);
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let status = child.wait().unwrap();
    let mut log = String::new();
    let _ = std::fs::File::open(out.join("demo.log")).and_then(|mut f| f.read_to_string(&mut log));
    assert!(status.success(), "{status}\n{stdout}\n{log}");
    assert!(
        Client::new(addr, None).get("/").is_err(),
        "the bridge stopped after Enter"
    );
}
