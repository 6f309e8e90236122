//! `floorhand demo --quick`: the whole shift (embedded broker, OMS, picker and pack
//! station, virtual scanner, printer and terminal, a link outage) run as the real binary;
//! its JSON summary must show the exactly-once check holding, and the terminal's PNG
//! screens must be there.

use std::process::Command;

use floorhand_tests::workspace_bin;

#[test]
fn a_quick_demo_shift_delivers_every_event_exactly_once_through_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo-out");
    let json = dir.path().join("summary.json");
    // The demo starts it from next to `floorhand`; this says how to build it if it is not.
    workspace_bin("floorhand-terminal");
    let run = Command::new(workspace_bin("floorhand"))
        .arg("demo")
        .arg("--quick")
        .arg("--out")
        .arg(&out)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run floorhand demo");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    let log = std::fs::read_to_string(out.join("demo.log")).unwrap_or_default();
    assert!(
        run.status.success(),
        "demo failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}\nlog:\n{log}",
        run.status
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
