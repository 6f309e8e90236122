//! `floorhand label render`, run as an integrator would run it.

use floorhand_tests::floorhand;

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("floorhand-label-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn example_envelope_json() -> String {
    let (_, env) = floorhand_protocol::examples::down()
        .into_iter()
        .find(|(name, _)| *name == "PackOrder")
        .unwrap();
    serde_json::to_string(&env).unwrap()
}

#[test]
fn label_render_prints_the_zpl_of_an_order_file_at_300_dpi() {
    let order = temp_file("order.json", &example_envelope_json());
    let out = floorhand(&[
        "label",
        "render",
        order.to_str().unwrap(),
        "--dpi",
        "300",
        "--carton",
        "2",
        "--of",
        "3",
        "--weight-g",
        "2500",
        "--sscc-serial",
        "42",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let zpl = String::from_utf8(out.stdout).unwrap();
    assert!(zpl.starts_with("^XA\n^CI28\n^PW1200"), "{zpl}");
    assert!(zpl.contains("^FDCarton 2 of 3^FS"), "{zpl}");
    assert!(zpl.contains("^FDWeight 2.50 kg^FS"), "{zpl}");
    assert!(zpl.contains("(00)340123450000000420"), "{zpl}");
    assert!(zpl.trim_end().ends_with("^XZ"), "{zpl}");
}

#[test]
fn label_render_names_the_file_and_the_problem_when_input_is_bad() {
    let order = temp_file("bad.json", "{\"order_id\": 5}");
    let out = floorhand(&["label", "render", order.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.json is not a PackOrder"), "{err}");

    let good = temp_file("good.json", &example_envelope_json());
    let template = temp_file("t.zpl", "^XA^CI28^FO1,1^FH^FD{{nope}}^FS^XZ");
    let out = floorhand(&[
        "label",
        "render",
        good.to_str().unwrap(),
        "--template",
        template.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown placeholder {{nope}}"), "{err}");

    let out = floorhand(&["label", "render", good.to_str().unwrap(), "--dpi", "600"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("use 203 or 300"));
}
