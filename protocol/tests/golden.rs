//! Wire stability: the exact bytes of every example message are pinned in
//! `tests/golden.txt`, and `README.md` shows the JSON of each one.
//!
//! A change that alters a byte fails here. If the change is intended (a new appended
//! variant, a new example), regenerate with `FLOORHAND_BLESS=1 cargo test -p
//! floorhand-protocol --test golden` and review the diff: an existing line must never change.

use std::fmt::Write;
use std::path::Path;

use floorhand_protocol::envelope::encode_to_vec;
use floorhand_protocol::{examples, frame};
use serde::Serialize;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

struct Item {
    channel: &'static str,
    name: &'static str,
    wire: Vec<u8>,
    json: String,
}

fn item<T: Serialize>(channel: &'static str, name: &'static str, wire: Vec<u8>, v: &T) -> Item {
    Item {
        channel,
        name,
        wire,
        json: serde_json::to_string_pretty(v).unwrap(),
    }
}

fn items() -> Vec<Item> {
    let mut v = Vec::new();
    for (n, e) in examples::down() {
        v.push(item("down", n, encode_to_vec(&e), &e));
    }
    for (n, e) in examples::up() {
        v.push(item("up", n, encode_to_vec(&e), &e));
    }
    for (n, e) in examples::to_terminal() {
        v.push(item("to-terminal", n, frame::encode_to_vec(&e), &e));
    }
    for (n, e) in examples::from_terminal() {
        v.push(item("from-terminal", n, frame::encode_to_vec(&e), &e));
    }
    v
}

fn bless() -> bool {
    std::env::var_os("FLOORHAND_BLESS").is_some()
}

fn compare(path: &Path, expected: &str) {
    if bless() {
        std::fs::write(path, expected).unwrap();
        return;
    }
    let actual = std::fs::read_to_string(path).unwrap_or_default();
    if actual != expected {
        let first = actual
            .lines()
            .zip(expected.lines())
            .find(|(a, e)| a != e)
            .map(|(a, e)| format!("\n  stored: {a}\n  now:    {e}"))
            .unwrap_or_else(|| "\n  (line count differs)".into());
        panic!(
            "{} is out of date; first difference:{first}\nIf intended, run with FLOORHAND_BLESS=1 and review the diff.",
            path.display()
        );
    }
}

#[test]
fn every_message_encodes_to_its_pinned_bytes() {
    let mut expected = String::from(
        "# channel | message | wire bytes (hex): postcard envelope; serial frames include COBS, CRC and 0x00\n",
    );
    for i in items() {
        let _ = writeln!(expected, "{} | {} | {}", i.channel, i.name, hex(&i.wire));
    }
    compare(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden.txt"),
        &expected,
    );
}

const BEGIN: &str = "<!-- BEGIN GENERATED EXAMPLES -->\n";
const END: &str = "<!-- END GENERATED EXAMPLES -->\n";

#[test]
fn readme_shows_the_json_of_every_message() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let (head, rest) = readme
        .split_once(BEGIN)
        .expect("README has the BEGIN marker");
    let (_, tail) = rest.split_once(END).expect("README has the END marker");
    let mut generated = String::new();
    for i in items() {
        let _ = write!(
            generated,
            "\n### {} `{}`\n\n{} bytes on the wire, {} bytes as compact JSON.\n\n```json\n{}\n```\n\n",
            i.channel,
            i.name,
            i.wire.len(),
            serde_json::to_string(&serde_json::from_str::<serde_json::Value>(&i.json).unwrap())
                .unwrap()
                .len(),
            i.json
        );
    }
    let expected = format!("{head}{BEGIN}{generated}{END}{tail}");
    compare(&path, &expected);
}
