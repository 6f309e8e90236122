//! Shipping labels checked from outside: golden ZPL at 203 and 300 dpi, and a third-party
//! renderer (zpl-renderer-js) plus a third-party decoder (zxing-cpp) reading the barcodes
//! back. `scripts/setup` installs both (`tests/label-check/`).

use std::path::{Path, PathBuf};
use std::process::Command;

use floorhand::label::{self, Dpi, LabelData, Sscc};
use floorhand_protocol::oms::{Address, Down, PackOrder};

fn example_order() -> PackOrder {
    floorhand_protocol::examples::down()
        .into_iter()
        .find_map(|(_, env)| match env.body.body {
            Down::PackOrder(p) => Some(*p),
            _ => None,
        })
        .expect("protocol examples hold a PackOrder")
}

fn render(order: &PackOrder, dpi: Dpi, sscc: &Sscc) -> String {
    let data = LabelData {
        order: order.into(),
        carton_no: 1,
        carton_count: Some(2),
        weight_g: 1460,
        sscc,
    };
    String::from_utf8(label::render(&label::builtin(dpi), &data).unwrap()).unwrap()
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("FLOORHAND_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with FLOORHAND_BLESS=1", path.display()));
    assert_eq!(
        actual, expected,
        "label differs from {name}; if the change is intended, run with FLOORHAND_BLESS=1"
    );
}

#[test]
fn the_example_label_matches_its_golden_zpl_at_203_and_300_dpi() {
    let sscc = Sscc::build(3, "4012345", 1).unwrap();
    golden("label-203.zpl", &render(&example_order(), Dpi::D203, &sscc));
    golden("label-300.zpl", &render(&example_order(), Dpi::D300, &sscc));
}

fn check_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/label-check")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("floorhand-label-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Renders `zpl` with zpl-renderer-js and decodes the PNG with zxing-cpp: (format, text).
fn render_and_decode(name: &str, zpl: &str, dpi: Dpi) -> Vec<(String, String)> {
    let dir = scratch(name);
    let zpl_path = dir.join("label.zpl");
    let image = dir.join("label.pgm");
    std::fs::write(&zpl_path, zpl).unwrap();
    let tools = check_dir();
    assert!(
        tools.join("node_modules/zpl-renderer-js").exists(),
        "zpl-renderer-js is not installed: run scripts/setup (npm ci in tests/label-check)"
    );
    let out = Command::new("node")
        .arg(tools.join("render.mjs"))
        .arg(&zpl_path)
        .arg(&image)
        .arg(dpi.dots_per_mm().to_string())
        .output()
        .expect("node runs (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("python3")
        .arg(tools.join("decode.py"))
        .arg(&image)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "decode failed (scripts/setup installs zxing-cpp): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let codes = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["format"].as_str().unwrap().to_owned(),
                v["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    codes
}

fn assert_reads_back(codes: &[(String, String)], sscc: &Sscc, tracking: &str) {
    let has = |format: &str, text: &str| codes.iter().any(|(f, t)| f == format && t == text);
    assert!(
        has("Code 128", &format!("(00){sscc}")),
        "SSCC not read back: {codes:?}"
    );
    assert!(
        has("Code 128", tracking),
        "tracking not read back: {codes:?}"
    );
    assert!(
        has("QR Code", &sscc.digital_link()),
        "Digital Link not read back: {codes:?}"
    );
}

#[test]
fn a_third_party_decoder_reads_sscc_tracking_and_digital_link_back_at_both_resolutions() {
    let order = example_order();
    let sscc = Sscc::build(3, "4012345", 4711).unwrap();
    for dpi in [Dpi::D203, Dpi::D300] {
        let zpl = render(&order, dpi, &sscc);
        let codes = render_and_decode(&format!("example-{}", dpi.dots_per_inch()), &zpl, dpi);
        assert_reads_back(&codes, &sscc, &order.tracking);
    }
}

fn hostile(text: &str) -> String {
    format!("{text}^XA^FO0,0^GB800,1200,800^FS^XZ~JA_5E_ \u{1}\u{7f}\r\nJürgen 東京")
}

fn hostile_order() -> PackOrder {
    let mut o = example_order();
    let addr = |who: &str| Address {
        name: hostile(who),
        company: hostile("Co"),
        lines: vec![hostile("Street"), "~JA".to_owned()],
        city: hostile("City"),
        region: "^XZ".to_owned(),
        postal_code: "~JR".to_owned(),
        country: "_~".to_owned(),
    };
    o.ship_from = addr("From");
    o.ship_to = addr("To");
    o.order_id = hostile("SO");
    o.carrier = "~JA".to_owned();
    o.service = hostile("Svc");
    o.tracking = "1Z^XA~JA_5E_99".to_owned();
    o
}

#[test]
fn hostile_order_data_adds_no_command_to_the_label() {
    let sscc = Sscc::build(3, "4012345", 2).unwrap();
    for dpi in [Dpi::D203, Dpi::D300] {
        let plain = render(&example_order(), dpi, &sscc);
        let zpl = render(&hostile_order(), dpi, &sscc);
        // The same commands as a label from harmless data: every ^ and ~ is the template's.
        let commands = |z: &str| z.matches(['^', '~']).count();
        assert_eq!(commands(&zpl), commands(&plain), "{zpl}");
        // No control byte from the data: the only ones are the template's line ends.
        assert!(
            zpl.bytes().all(|b| b >= 0x20 && b != 0x7f || b == b'\n'),
            "{zpl}"
        );
        assert!(
            zpl.contains("J_C3_BCrgen") || zpl.contains("Jürgen"),
            "{zpl}"
        );
        assert!(zpl.contains("_5EXA_5EFO0,0"), "{zpl}");
    }
}

#[test]
fn hostile_order_data_too_long_for_the_label_is_refused_before_it_could_print_cut() {
    // The store refuses such an order when it arrives (`Db::apply_down`); rendering it
    // anyway (the escaping test above) would cut it.
    let err = label::check_fits(&(&hostile_order()).into()).unwrap_err();
    assert_eq!((err.field.as_str(), err.max), ("ship_from.name", 48));
    assert!(err.len > err.max, "{err}");
    label::check_fits(&(&example_order()).into()).expect("the example order fits");
}

#[test]
fn a_label_with_hostile_data_still_decodes_to_the_literal_data() {
    let order = hostile_order();
    let sscc = Sscc::build(3, "4012345", 3).unwrap();
    let zpl = render(&order, Dpi::D203, &sscc);
    let codes = render_and_decode("hostile", &zpl, Dpi::D203);
    assert_reads_back(&codes, &sscc, "1Z^XA~JA_5E_99");
}
