//! `floorhand barcode parse`, run as an integrator would run it.

use floorhand_tests::floorhand;

fn parse(data: &str) -> (bool, serde_json::Value) {
    let out = floorhand(&["barcode", "parse", data]);
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.success(), json)
}

#[test]
fn barcode_parse_prints_gtin_and_ais_for_a_gs1_128_scan() {
    let (ok, json) = parse(r"]C10109506000134352\x1d10ABC\x1d17270630");
    assert!(ok, "{json}");
    assert_eq!(json["gtin14"], "09506000134352");
    assert_eq!(json["elements"][1]["data"], "ABC");
    assert_eq!(json["elements"][2]["meaning"], "2027-06-30");
}

#[test]
fn barcode_parse_exits_nonzero_but_still_prints_json_for_a_bad_label() {
    let (ok, json) = parse("(01)09506000134353(17)270632");
    assert!(!ok);
    assert_eq!(json["valid"], false);
    assert_eq!(
        json["errors"][0],
        "AI 01 at byte 4: check digit 3 should be 2"
    );
    assert_eq!(json["errors"][1], "AI 17 at byte 22: day 32 is not a date");
}

#[test]
fn barcode_parse_reads_a_digital_link_uri() {
    let (ok, json) = parse("https://id.gs1.org/01/09506000134352/10/L%2F1?17=270630");
    assert!(ok, "{json}");
    assert_eq!(json["form"], "DigitalLink");
    assert_eq!(json["elements"][1]["data"], "L/1");
}

#[test]
fn barcode_parse_refuses_a_bad_escape_with_a_clear_message() {
    let out = floorhand(&["barcode", "parse", r"01\q"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(r"unknown escape \q"), "{err}");
}
