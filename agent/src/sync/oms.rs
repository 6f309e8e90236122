//! The OMS side of the contract, for integrators, tests and the demo: push down messages,
//! receive agent events with dedupe by `(device, seq)`, and acknowledge them cumulatively.
//!
//! `floorhand oms push-wave`, `oms tail` and `oms sim` are thin CLI wrappers around
//! [`OmsSession`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use floorhand_protocol::oms::{self, Down, Up, Wave, wave_digest};
use floorhand_protocol::{Envelope, topics};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde::Serialize;
use tokio::sync::mpsc;

use super::backoff::Backoff;
use super::ledger::{Ledger, Seen};
use super::mqtt::{BrokerSettings, SettingsError};

/// Where the OMS tools connect and which site they serve.
#[derive(Debug, Clone)]
pub struct OmsSettings {
    /// Broker.
    pub broker: BrokerSettings,
    /// Site id (`+` for every site when receiving).
    pub site: String,
    /// MQTT client id. A stable id keeps a persistent session, so events published
    /// while the tool was down are queued by the broker.
    pub client_id: String,
    /// Send cumulative `Ack`s for received events.
    pub ack: bool,
}

/// What went wrong on the OMS side.
#[derive(Debug, thiserror::Error)]
pub enum OmsError {
    /// Bad broker settings.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The message breaks a protocol limit: the agent would reject it.
    #[error("refusing to send: {0}")]
    Encode(#[from] floorhand_protocol::EncodeError),
    /// A file could not be read or parsed.
    #[error("{0}")]
    Input(String),
    /// The broker could not be reached or refused us.
    #[error("broker: {0}")]
    Broker(String),
    /// A site or device id that cannot be used in a topic.
    #[error("{0:?} is not a valid site or device id (use A-Z a-z 0-9 - _ .)")]
    BadId(String),
}

/// Something the OMS received.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Received {
    /// An agent event, first time seen.
    Event {
        /// Device that sent it.
        device: String,
        /// The event.
        event: oms::Event,
    },
    /// A device (re)connected.
    Birth {
        /// Device.
        device: String,
        /// Its birth message.
        birth: oms::Birth,
    },
    /// A device went away (its will) or shut down.
    Death {
        /// Device.
        device: String,
        /// The death message.
        death: oms::Death,
    },
    /// A device's periodic status.
    Status {
        /// Device.
        device: String,
        /// Its status.
        status: oms::Status,
    },
    /// Bytes that are not a valid up message.
    Invalid {
        /// Topic.
        topic: String,
        /// Why.
        error: String,
    },
}

/// Message ids for down messages: microseconds since the epoch, strictly increasing, so
/// ids stay unique across runs of the tools (the agent dedupes by msg id).
#[derive(Debug, Default)]
pub struct MsgIds {
    last: u64,
}

impl MsgIds {
    /// The next id, given the current time in microseconds.
    pub fn next(&mut self, now_us: u64) -> u64 {
        self.last = now_us.max(self.last + 1);
        self.last
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Counters a session keeps.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct OmsCounters {
    /// Events received the first time.
    pub events: u64,
    /// Events received again and dropped.
    pub duplicates: u64,
    /// Acks sent.
    pub acks_sent: u64,
    /// Invalid messages received.
    pub invalid: u64,
}

struct Inner {
    ledger: Ledger,
    acked: HashMap<String, u64>,
    sites: HashMap<String, String>,
    /// Events received above a gap, waiting for the missing ones.
    held: HashMap<String, std::collections::BTreeMap<u64, oms::Event>>,
    counters: OmsCounters,
    ids: MsgIds,
}

/// A connection of the OMS to the broker: send down messages, receive up messages.
#[derive(Clone)]
pub struct OmsSession {
    client: AsyncClient,
    site: String,
    inner: Arc<Mutex<Inner>>,
}

impl OmsSession {
    /// Connects and subscribes to every device's `up` and `state` topics at the site.
    /// Received messages arrive on the returned channel; acks are sent every 50 ms for
    /// devices whose ack point moved.
    pub fn start(
        s: &OmsSettings,
    ) -> Result<(OmsSession, mpsc::UnboundedReceiver<Received>), OmsError> {
        if s.site != "+" && !topics::valid_id(&s.site) {
            return Err(OmsError::BadId(s.site.clone()));
        }
        let mut opts = super::mqtt::options(&s.client_id, &s.broker)?;
        opts.set_manual_acks(false);
        let (client, mut eventloop) = AsyncClient::new(opts, 4096);
        eventloop.set_network_options(super::mqtt::network_options(&s.broker));
        let inner = Arc::new(Mutex::new(Inner {
            ledger: Ledger::new(),
            acked: HashMap::new(),
            sites: HashMap::new(),
            held: HashMap::new(),
            counters: OmsCounters::default(),
            ids: MsgIds::default(),
        }));
        let session = OmsSession {
            client: client.clone(),
            site: s.site.clone(),
            inner: inner.clone(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let site = s.site.clone();
        // The one task that polls the event loop; it never awaits a publish.
        let sub_client = client.clone();
        tokio::spawn(async move {
            let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        backoff.reset();
                        let c = sub_client.clone();
                        let site = site.clone();
                        tokio::spawn(async move {
                            let _ = c
                                .subscribe(topics::oms_up_pattern(&site), QoS::AtLeastOnce)
                                .await;
                            let _ = c
                                .subscribe(topics::oms_state_pattern(&site), QoS::AtLeastOnce)
                                .await;
                        });
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        for r in receive(&inner, &p.topic, &p.payload) {
                            if tx.send(r).is_err() {
                                return;
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if tx.is_closed() {
                            return;
                        }
                        tracing::warn!("oms: broker connection: {e}");
                        tokio::time::sleep(backoff.next_delay(fastrand::f64())).await;
                    }
                }
            }
        });
        if s.ack {
            let acker = session.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if acker.send_acks().await.is_err() {
                        return;
                    }
                }
            });
        }
        Ok((session, rx))
    }

    /// Publishes `down` to `device` (QoS 1) and returns its message id.
    pub async fn send(&self, device: &str, down: Down) -> Result<u64, OmsError> {
        let id = self.lock().ids.next(now_us());
        self.send_envelope(device, &Envelope::new(id, down)).await?;
        Ok(id)
    }

    /// The site of `device`: where it was last heard from, or the session's site.
    fn site_for_send(&self, device: &str) -> String {
        self.lock()
            .sites
            .get(device)
            .cloned()
            .unwrap_or_else(|| self.site.clone())
    }

    /// Publishes a ready-made envelope to `device` as it is: for tests of redelivery,
    /// which need the same message id twice.
    pub async fn send_envelope(&self, device: &str, env: &Envelope<Down>) -> Result<(), OmsError> {
        let bytes = oms::encode_down(env)?;
        self.send_raw(device, bytes).await
    }

    /// Publishes raw bytes on `device`'s down topic (the others end here; also for tests of
    /// bad input).
    pub async fn send_raw(&self, device: &str, bytes: Vec<u8>) -> Result<(), OmsError> {
        if !topics::valid_id(device) {
            return Err(OmsError::BadId(device.to_string()));
        }
        self.client
            .publish(
                topics::down(&self.site_for_send(device), device),
                QoS::AtLeastOnce,
                false,
                bytes,
            )
            .await
            .map_err(|e| OmsError::Broker(e.to_string()))
    }

    /// Sends an `Ack` to every device whose ack point moved since the last one.
    pub async fn send_acks(&self) -> Result<(), OmsError> {
        let due: Vec<(String, u64)> = {
            let g = self.lock();
            g.ledger
                .devices()
                .filter(|(d, through)| *through > g.acked.get(*d).copied().unwrap_or(0))
                .map(|(d, t)| (d.to_string(), t))
                .collect()
        };
        for (device, up_to_seq) in due {
            self.send(&device, Down::Ack { up_to_seq }).await?;
            let mut g = self.lock();
            g.acked.insert(device, up_to_seq);
            g.counters.acks_sent += 1;
        }
        Ok(())
    }

    /// Counters so far.
    pub fn counters(&self) -> OmsCounters {
        self.lock().counters
    }

    /// Expects `device`'s events from seq 1 (a new device, or one whose acknowledged seq
    /// the OMS keeps elsewhere: pass it as `through`). Without this a device's first
    /// event received sets where it starts, as `oms tail` needs when joining mid-stream.
    pub fn expect_from(&self, device: &str, through: u64) {
        self.lock().ledger.restore(device, through);
    }

    /// Highest seq of `device` received without gaps.
    pub fn ack_point(&self, device: &str) -> u64 {
        self.lock().ledger.ack_point(device)
    }

    /// Disconnects from the broker.
    pub async fn close(&self) {
        let _ = self.client.disconnect().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Turns one received publish into what the OMS should process: events strictly in seq
/// order per device (an event after a gap is held until the gap fills), each once.
fn receive(inner: &Mutex<Inner>, topic: &str, payload: &[u8]) -> Vec<Received> {
    let mut g = inner.lock().unwrap_or_else(|e| e.into_inner());
    let Some(t) = topics::parse(topic) else {
        g.counters.invalid += 1;
        return vec![Received::Invalid {
            topic: topic.to_string(),
            error: "not a Floorhand topic".into(),
        }];
    };
    let device = t.device.to_string();
    if !g.sites.contains_key(&device) {
        g.sites.insert(device.clone(), t.site.to_string());
    }
    let env = match oms::decode_up(payload) {
        Ok(env) => env,
        // An empty retained message clears presence; nothing to report.
        Err(_) if payload.is_empty() => return vec![],
        Err(e) => {
            g.counters.invalid += 1;
            return vec![Received::Invalid {
                topic: topic.to_string(),
                error: e.to_string(),
            }];
        }
    };
    match env.body {
        Up::Event(event) => match g.ledger.record(&device, event.seq) {
            Seen::New => {
                g.counters.events += 1;
                let through = g.ledger.ack_point(&device);
                let held = g.held.entry(device.clone()).or_default();
                held.insert(event.seq, event);
                // Everything up to the ack point has no gap below it: release it in order.
                let rest = held.split_off(&(through + 1));
                let ready = std::mem::replace(held, rest);
                ready
                    .into_values()
                    .map(|event| Received::Event {
                        device: device.clone(),
                        event,
                    })
                    .collect()
            }
            Seen::Duplicate => {
                g.counters.duplicates += 1;
                vec![]
            }
        },
        Up::Birth(birth) => vec![Received::Birth { device, birth }],
        Up::Death(death) => vec![Received::Death { device, death }],
        Up::Status(status) => vec![Received::Status { device, status }],
    }
}

/// Reads a wave or any down message from JSON. A bare wave may leave out `task_count`
/// and `digest`; they are computed from its tasks.
pub fn down_from_json(text: &str) -> Result<Down, OmsError> {
    let mut v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| OmsError::Input(format!("not JSON: {e}")))?;
    let is_down = v.as_object().is_some_and(|o| {
        o.len() == 1
            && o.keys()
                .all(|k| k.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
    }) || v.is_string();
    if is_down {
        return serde_json::from_value(v)
            .map_err(|e| OmsError::Input(format!("not a down message: {e}")));
    }
    if let Some(o) = v.as_object_mut() {
        let tasks: Vec<oms::Task> =
            serde_json::from_value(o.get("tasks").cloned().unwrap_or(serde_json::Value::Null))
                .map_err(|e| OmsError::Input(format!("wave tasks: {e}")))?;
        o.entry("task_count").or_insert(tasks.len().into());
        o.entry("digest").or_insert(wave_digest(&tasks).into());
    }
    let wave: Wave =
        serde_json::from_value(v).map_err(|e| OmsError::Input(format!("not a wave: {e}")))?;
    Ok(Down::WaveAssigned(wave))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_ids_increase_even_when_the_clock_does_not() {
        let mut ids = MsgIds::default();
        assert_eq!(ids.next(100), 100);
        assert_eq!(ids.next(100), 101);
        assert_eq!(ids.next(50), 102);
        assert_eq!(ids.next(500), 500);
    }

    #[test]
    fn a_bare_wave_gets_its_count_and_digest() {
        let ex = floorhand_protocol::examples::down();
        let Down::WaveAssigned(w) = &ex[0].1.body else {
            panic!("first example is a wave")
        };
        let mut v = serde_json::to_value(w).unwrap();
        v.as_object_mut().unwrap().remove("digest");
        v.as_object_mut().unwrap().remove("task_count");
        let got = down_from_json(&v.to_string()).unwrap();
        assert_eq!(got, Down::WaveAssigned(w.clone()));
        let whole = serde_json::to_string(&ex[2].1.body).unwrap();
        assert_eq!(down_from_json(&whole).unwrap(), ex[2].1.body);
        assert_eq!(
            down_from_json("\"ResyncRequest\"").unwrap(),
            Down::ResyncRequest
        );
    }

    #[test]
    fn bad_wave_json_says_what_is_wrong() {
        let e = down_from_json("{\"wave_id\": 1}").unwrap_err().to_string();
        assert!(e.contains("wave tasks"), "{e}");
        let e = down_from_json("nope").unwrap_err().to_string();
        assert!(e.contains("not JSON"), "{e}");
    }
}
