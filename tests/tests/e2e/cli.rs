//! The `floorhand` binary's tools, run as a user would run them.

use floorhand_tests::floorhand;

#[test]
fn wire_sizes_lists_every_message_and_meets_the_pick_goal() {
    let out = floorhand(&["wire-sizes", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected = floorhand_protocol::examples::down().len()
        + floorhand_protocol::examples::up().len()
        + floorhand_protocol::examples::to_terminal().len()
        + floorhand_protocol::examples::from_terminal().len();
    assert_eq!(rows.len(), expected);
    let pick = rows
        .iter()
        .find(|r| r["name"] == "Event/Picked (typical)")
        .expect("typical pick row");
    assert!(pick["postcard"].as_u64().unwrap() <= 32);
}

#[test]
fn help_names_every_command() {
    let out = floorhand(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("wire-sizes"), "{help}");
}

#[test]
fn status_without_a_database_says_so_and_creates_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.db");
    let out = floorhand(&["status", "--db", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "no database at {}; is --db right?",
            path.display()
        )),
        "{err}"
    );
    assert!(!path.exists());
}

#[test]
fn status_prints_tasks_backlog_storage_and_operator() {
    use floorhand::store::fixtures::{sample_tasks, sample_wave};
    use floorhand::store::{Db, PickConfirmation, StoreConfig};
    use floorhand_protocol::oms::Down;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("floorhand.db");
    let mut db = Db::open(&path, &StoreConfig::default()).unwrap();
    let wave = sample_wave(1, 1, sample_tasks(1, 3, 2));
    db.apply_down(db.next_down_header().unwrap(), &Down::WaveAssigned(wave), 1)
        .unwrap();
    db.login(1, 17, "BADGE-17").unwrap();
    let pick = PickConfirmation {
        task_id: 1,
        qty: 2,
        lot: None,
        serial: None,
        expiry: None,
        tote: None,
    };
    db.confirm_pick(2, 17, &pick).unwrap();
    let out = floorhand(&["status", "--db", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for expected in [
        "open                2",
        "picked              1",
        "outbox     2 events not yet acknowledged",
        "storage    ",
        "operator   17 since 1: 1 picks (2 units)",
    ] {
        assert!(text.contains(expected), "{expected:?} missing in:\n{text}");
    }
}
