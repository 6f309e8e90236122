//! Wire-size report: every protocol message's postcard size beside its JSON size.

use floorhand_protocol::envelope::encode_to_vec;
use floorhand_protocol::{Envelope, examples, frame};
use serde::Serialize;

/// Which channel a message travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Channel {
    /// OMS → agent over MQTT.
    Down,
    /// Agent → OMS over MQTT.
    Up,
    /// Agent → terminal, COBS frame on the serial link.
    ToTerminal,
    /// Terminal → agent, COBS frame on the serial link.
    FromTerminal,
}

/// Sizes of one example message.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Channel.
    pub channel: Channel,
    /// Message name.
    pub name: &'static str,
    /// Bytes on the wire: the postcard envelope for MQTT, the whole frame (COBS, CRC,
    /// delimiter) for the serial link.
    pub postcard: usize,
    /// The same message as serde_json.
    pub json: usize,
}

impl Row {
    /// postcard bytes as a fraction of JSON bytes.
    pub fn ratio(&self) -> f64 {
        self.postcard as f64 / self.json as f64
    }

    /// Seconds to send `postcard` bytes over a UART at `baud` with 8N1 (10 bits a byte).
    pub fn seconds_at(&self, baud: u32) -> f64 {
        self.postcard as f64 * 10.0 / baud as f64
    }
}

fn mqtt_row<T: Serialize>(channel: Channel, name: &'static str, env: &Envelope<T>) -> Row {
    Row {
        channel,
        name,
        postcard: encode_to_vec(env).len(),
        json: json_len(env),
    }
}

fn link_row<T: Serialize>(channel: Channel, name: &'static str, env: &Envelope<T>) -> Row {
    Row {
        channel,
        name,
        postcard: frame::encode_to_vec(env).len(),
        json: json_len(env),
    }
}

fn json_len<T: Serialize>(v: &T) -> usize {
    serde_json::to_vec(v).map(|b| b.len()).unwrap_or(0)
}

/// Sizes of every example message of the protocol.
pub fn rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for (name, env) in examples::down() {
        rows.push(mqtt_row(Channel::Down, name, &env));
    }
    for (name, env) in examples::up() {
        rows.push(mqtt_row(Channel::Up, name, &env));
    }
    for (name, env) in examples::to_terminal() {
        rows.push(link_row(Channel::ToTerminal, name, &env));
    }
    for (name, env) in examples::from_terminal() {
        rows.push(link_row(Channel::FromTerminal, name, &env));
    }
    rows
}

/// The typical pick confirmation, the message with a size goal.
pub fn typical_pick() -> Row {
    mqtt_row(
        Channel::Up,
        "Event/Picked (typical)",
        &examples::typical_pick(),
    )
}

/// Renders the rows as a table for a terminal.
pub fn table(rows: &[Row]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<13} {:<34} {:>8} {:>6} {:>6} {:>11}",
        "channel", "message", "postcard", "json", "ratio", "@115200 baud"
    );
    for r in rows {
        let baud = match r.channel {
            Channel::ToTerminal | Channel::FromTerminal => {
                format!("{:.2} ms", r.seconds_at(115_200) * 1000.0)
            }
            _ => String::from("-"),
        };
        let _ = writeln!(
            out,
            "{:<13} {:<34} {:>8} {:>6} {:>6.3} {:>11}",
            format!("{:?}", r.channel),
            r.name,
            r.postcard,
            r.json,
            r.ratio(),
            baud
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typical_pick_confirmation_meets_size_goal() {
        let r = typical_pick();
        assert!(r.postcard <= 32, "{} bytes", r.postcard);
        assert!(r.ratio() <= 0.15, "ratio {}", r.ratio());
    }

    #[test]
    fn every_screen_update_fits_in_64_bytes() {
        for r in rows()
            .iter()
            .filter(|r| r.channel == Channel::ToTerminal && r.name.starts_with("Show/"))
        {
            assert!(r.postcard <= 64, "{} is {} bytes", r.name, r.postcard);
        }
    }

    fn variants<T: serde::de::DeserializeOwned>() -> Vec<String> {
        crate::config::tests::serde_names::<T>()
    }

    /// The variant a value serialized as (serde's external tag).
    fn tag(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(m) if m.len() == 1 => {
                m.keys().next().cloned().unwrap_or_default()
            }
            other => panic!("not an enum value: {other}"),
        }
    }

    /// `Outer` or `Outer/Inner` for a message whose variant `nested` holds another enum
    /// (at `field`, or the variant's whole value).
    fn path(v: &serde_json::Value, nested: &str, field: Option<&str>) -> String {
        let outer = tag(v);
        if outer != nested {
            return outer;
        }
        let inner = &v[nested];
        let inner = field.map_or(inner, |f| &inner[f]);
        format!("{outer}/{}", tag(inner))
    }

    fn json<T: Serialize>(v: &T) -> serde_json::Value {
        serde_json::to_value(v).expect("serializes")
    }

    fn with_inner(outer: Vec<String>, nested: &str, inner: Vec<String>) -> Vec<String> {
        let mut all: Vec<String> = outer.into_iter().filter(|v| v != nested).collect();
        all.extend(inner.into_iter().map(|i| format!("{nested}/{i}")));
        all.sort();
        all
    }

    #[test]
    fn every_message_variant_has_a_row_named_after_what_it_encodes() {
        use floorhand_protocol::link::{FromTerminal, Screen, ToTerminal};
        use floorhand_protocol::oms::{Down, EventKind, Up};
        // Each row's message, by the variant it really is.
        let mut shown: Vec<(Channel, String)> = Vec::new();
        for (_, env) in examples::down() {
            shown.push((Channel::Down, path(&json(&env.body.body), "", None)));
        }
        for (_, env) in examples::up() {
            shown.push((
                Channel::Up,
                path(&json(&env.body.body), "Event", Some("kind")),
            ));
        }
        for (_, env) in examples::to_terminal() {
            shown.push((Channel::ToTerminal, path(&json(&env.body), "Show", None)));
        }
        for (_, env) in examples::from_terminal() {
            shown.push((Channel::FromTerminal, path(&json(&env.body), "", None)));
        }
        let rows = rows();
        assert_eq!(rows.len(), shown.len());
        for (row, (channel, variant)) in rows.iter().zip(&shown) {
            let name = row.name.split(" (").next().unwrap_or(row.name);
            assert_eq!(
                (row.channel, name),
                (*channel, variant.as_str()),
                "{}",
                row.name
            );
        }
        // Every variant of every message has at least one row.
        let have = |c: Channel| {
            let mut v: Vec<String> = shown
                .iter()
                .filter(|(ch, _)| *ch == c)
                .map(|(_, n)| n.clone())
                .collect();
            v.sort();
            v.dedup();
            v
        };
        let mut down = variants::<Down>();
        down.sort();
        let mut from = variants::<FromTerminal>();
        from.sort();
        for (channel, all) in [
            (Channel::Down, down),
            (
                Channel::Up,
                with_inner(variants::<Up>(), "Event", variants::<EventKind>()),
            ),
            (
                Channel::ToTerminal,
                with_inner(variants::<ToTerminal>(), "Show", variants::<Screen>()),
            ),
            (Channel::FromTerminal, from),
        ] {
            assert_eq!(have(channel), all, "{channel:?}");
        }
    }
}
