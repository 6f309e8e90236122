//! Config numbers outside their documented range, and a database path that is a
//! directory, through the real binary: `floorhand run` refuses to start and `floorhand
//! doctor` fails the station, each naming the key and (for a number) its range.

use std::process::Command;

use floorhand_tests::mosquitto::free_port;
use floorhand_tests::station_support::station_config;
use floorhand_tests::workspace_bin;

/// Runs `floorhand ARGS --config CONFIG`; returns the exit code and stdout + stderr.
fn floorhand_with(args: &[&str], config: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(workspace_bin("floorhand"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run floorhand");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn run_and_doctor_refuse_each_out_of_range_number_naming_the_key_and_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("mqtt://127.0.0.1:{}", free_port());
    // (section text, key, its range as the message says it): the offenders.
    let cases = [
        (
            "[sync]\nresend_after_s = 9223372036854775807\n",
            "sync.resend_after_s",
            "use 1 to 3600 seconds",
        ),
        (
            "[sync]\nstatus_interval_s = 9223372036854775807\n",
            "sync.status_interval_s",
            "use 1 to 86400 seconds",
        ),
        (
            "[terminal]\nport = \"/dev/null\"\nbaud = 4294967295\n",
            "terminal.baud",
            "use 50 to 4000000 baud",
        ),
    ];
    for (i, (section, key, range)) in cases.iter().enumerate() {
        // station_config writes its own [sync]; a second one would be a TOML error, so
        // the [sync] cases replace its numbers instead.
        let config = station_config(dir.path(), &format!("hh-{i}"), &url, "");
        let mut text = std::fs::read_to_string(&config).unwrap();
        if let Some(rest) = section.strip_prefix("[sync]\n") {
            let (name, _) = rest.split_once(" = ").unwrap();
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("{name} = ")))
                .map(|l| format!("{l}\n"))
                .unwrap_or_default();
            text = text.replace(&line, "").replace("[sync]\n", section);
        } else {
            text.push_str(section);
        }
        std::fs::write(&config, text).unwrap();
        let want = format!("`{key}`: ");
        let (code, out) = floorhand_with(&["run"], &config);
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains(&want) && out.contains(range), "{out}");
        let (code, out) = floorhand_with(&["doctor"], &config);
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains("FAIL  config"), "{out}");
        assert!(out.contains(&want) && out.contains(range), "{out}");
    }
}

#[test]
fn doctor_refuses_a_database_path_that_is_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("mqtt://127.0.0.1:{}", free_port());
    let config = station_config(dir.path(), "hh-1", &url, "");
    let text = std::fs::read_to_string(&config).unwrap();
    let db_line = text.lines().find(|l| l.starts_with("path = ")).unwrap();
    let text = text.replace(
        db_line,
        &format!("path = {:?}", dir.path().display().to_string()),
    );
    std::fs::write(&config, text).unwrap();
    let (code, out) = floorhand_with(&["doctor"], &config);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL  database  `database.path`") && out.contains("is a directory"),
        "{out}"
    );
}
