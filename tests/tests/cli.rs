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
    assert!(pick["postcard"].as_u64().unwrap() <= 24);
}

#[test]
fn help_names_every_command() {
    let out = floorhand(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("wire-sizes"), "{help}");
}
