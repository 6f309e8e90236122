//! An observer of the raw MQTT stream that shares no code with the OMS side under test:
//! `mosquitto_sub` prints every publish on `floorhand/v1/+/+/up` as hex, and the tap
//! decodes it with the protocol crate and counts copies itself. The OMS session dedupes
//! and reorders what it hands on, so only a check made here can see an agent that
//! publishes an event twice, or out of order.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floorhand_protocol::oms::{EventKind, Up, decode_up};

/// The topic the tap's readiness probe is published on (no device uses it).
const PROBE_TOPIC: &str = "floorhand/v1/wiretap/probe/up";

/// One event as published on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireEvent {
    /// The device level of the topic.
    pub device: String,
    /// The agent incarnation in the message.
    pub incarnation: u64,
    /// The event seq.
    pub seq: u64,
    /// The event.
    pub kind: EventKind,
    /// The exact payload.
    pub payload: Vec<u8>,
    /// The packet id the broker gave this delivery to the tap: a broker that re-sends an
    /// unacknowledged delivery on session resume keeps its id (MQTT 3.1.1, 4.4), while
    /// a publish the agent sent again gets a new one.
    pub mid: u16,
}

/// What the tap saw of one device's events, counted by the tap alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Event publishes seen, copies included.
    pub publishes: u64,
    /// Distinct `(incarnation, seq)`, in the order first seen.
    pub distinct: Vec<(u64, u64)>,
    /// Publishes of a `(incarnation, seq)` seen before under another packet id: copies
    /// the agent published.
    pub duplicates: u64,
    /// Publishes of a `(incarnation, seq)` seen before under the same packet id: the
    /// broker delivering its own copy to the tap again after a restart, not the agent.
    pub redelivered: u64,
    /// Seqs published again with other bytes than the first time (never allowed).
    pub changed: Vec<u64>,
}

impl Tally {
    /// The distinct seqs in the order first seen.
    pub fn seqs(&self) -> Vec<u64> {
        self.distinct.iter().map(|&(_, s)| s).collect()
    }
}

#[derive(Default)]
struct Seen {
    events: Vec<WireEvent>,
    /// Up publishes that did not decode, with the reason.
    invalid: Vec<String>,
    probes: u64,
}

/// A running `mosquitto_sub` on every device's up topic; killed on drop.
pub struct WireTap {
    child: Child,
    seen: Arc<Mutex<Seen>>,
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl WireTap {
    /// Subscribes (QoS 1, a persistent session, so a broker restarted with persistence
    /// keeps what it queued for the tap) to `floorhand/v1/+/+/up` on the broker at
    /// 127.0.0.1:`port`, and returns once the subscription is in place (a probe it
    /// published came back).
    pub fn start(port: u16) -> WireTap {
        let id = format!("wiretap-{}-{}", std::process::id(), port);
        let mut child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
            .args([
                "-c",
                "-i",
                &id,
                "-t",
                "floorhand/v1/+/+/up",
                "-F",
                "%t %m %x",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub (package mosquitto-clients; run scripts/setup)");
        let stdout = child.stdout.take().expect("mosquitto_sub's stdout");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let sink = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut fields = line.splitn(3, ' ');
                let topic = fields.next().unwrap_or("");
                let mid = fields.next().unwrap_or("");
                let hex = fields.next().unwrap_or("");
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                if topic == PROBE_TOPIC {
                    s.probes += 1;
                    continue;
                }
                let device = topic.split('/').nth(3).unwrap_or("").to_string();
                let Ok(mid) = mid.parse::<u16>() else {
                    s.invalid.push(format!("{topic}: not a packet id: {mid}"));
                    continue;
                };
                let Some(payload) = unhex(hex) else {
                    s.invalid.push(format!("{topic}: not hex: {hex}"));
                    continue;
                };
                match decode_up(&payload) {
                    Ok(env) => {
                        if let Up::Event(e) = env.body.body {
                            s.events.push(WireEvent {
                                device,
                                incarnation: env.body.incarnation,
                                seq: e.seq,
                                kind: e.kind,
                                payload,
                                mid,
                            });
                        }
                    }
                    Err(e) => s.invalid.push(format!("{topic}: {e}")),
                }
            }
        });
        let tap = WireTap { child, seen };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tap.lock().probes == 0 {
            assert!(
                Instant::now() < deadline,
                "the wire tap did not see its own probe within 10 s"
            );
            let _ = Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
                .args(["-t", PROBE_TOPIC, "-n"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(100));
        }
        tap
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every event publish of `device` seen so far, copies included, in arrival order.
    pub fn events(&self, device: &str) -> Vec<WireEvent> {
        self.lock()
            .events
            .iter()
            .filter(|e| e.device == device)
            .cloned()
            .collect()
    }

    /// Each distinct event of `device`, in the order first seen.
    pub fn distinct_events(&self, device: &str) -> Vec<WireEvent> {
        let mut seen = std::collections::HashSet::new();
        self.events(device)
            .into_iter()
            .filter(|e| seen.insert((e.incarnation, e.seq)))
            .collect()
    }

    /// Up publishes that were not valid up messages.
    pub fn invalid(&self) -> Vec<String> {
        self.lock().invalid.clone()
    }

    /// The tap's own count of `device`'s events.
    pub fn tally(&self, device: &str) -> Tally {
        let mut t = Tally::default();
        let mut first: HashMap<(u64, u64), (Vec<u8>, Vec<u16>)> = HashMap::new();
        for e in self.events(device) {
            t.publishes += 1;
            match first.get_mut(&(e.incarnation, e.seq)) {
                Some((bytes, mids)) => {
                    if mids.contains(&e.mid) {
                        t.redelivered += 1;
                    } else {
                        t.duplicates += 1;
                        mids.push(e.mid);
                    }
                    if *bytes != e.payload {
                        t.changed.push(e.seq);
                    }
                }
                None => {
                    first.insert((e.incarnation, e.seq), (e.payload, vec![e.mid]));
                    t.distinct.push((e.incarnation, e.seq));
                }
            }
        }
        t
    }

    /// How many times each seq of `device` was published, for failure messages.
    pub fn copies(&self, device: &str) -> BTreeMap<u64, u32> {
        let mut m = BTreeMap::new();
        for e in self.events(device) {
            *m.entry(e.seq).or_default() += 1;
        }
        m
    }

    /// Waits until `n` distinct events of `device` were seen; panics after `timeout`.
    pub async fn wait_distinct(&self, device: &str, n: usize, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let have = self.tally(device).distinct.len();
            if have >= n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the wire tap saw {have} of {n} distinct events of {device} in {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for WireTap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::unhex;

    #[test]
    fn hex_from_mosquitto_sub_decodes_and_odd_or_foreign_text_does_not() {
        assert_eq!(unhex("00010aff"), Some(vec![0, 1, 10, 255]));
        assert_eq!(unhex(""), Some(vec![]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }
}
