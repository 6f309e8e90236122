//! The OMS side of the contract: a durable core for integrators, the `floorhand oms`
//! tools, tests and the demo. It keeps the ledger of received events and the down outbox
//! in its own SQLite store ([`OmsDb`]), keyed by (site, device, agent incarnation), and
//! runs the same pure channel bookkeeping as the agent ([`crate::ledger`]):
//! - up: an event is stored in seq order and acknowledged (`Down::Ack`) only after the
//!   commit (or, with [`AckMode::Consumed`], after the consumer says it wrote it); a
//!   duplicate is acknowledged again, a gap waits for the agent's re-send;
//! - down: a message is committed with a stable number, then published with its per-device
//!   down seq at QoS 0, at most [`DOWN_WINDOW`] in flight per device, re-sent until the
//!   agent's `DownAck`, after every `Birth` and on a timeout with backoff.
//!
//! One task owns the MQTT event loop and the store; [`OmsSession`] talks to it over a
//! channel. Bad input (a malformed topic or payload) is logged and skipped; acking never
//! stops. The store is any [`OmsStore`] ([`OmsSession::start_on`]); several sessions may
//! share one ([`Sharing`]: a shared subscription, ack points from the store, and each
//! device's down messages published by the session holding its claim).

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use floorhand_protocol::limits::DOWN_WINDOW;
use floorhand_protocol::oms::{self, Down, DownMsg, Up, Wave, wave_digest};
use floorhand_protocol::{Envelope, topics};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::backoff::Backoff;
use super::mqtt::{BrokerSettings, SettingsError};
use crate::ledger::{Outflow, Timing};
use crate::store::StoreError;
pub use crate::store::oms_db::DownState;
use crate::store::oms_db::OmsDb;
use crate::store::oms_store::{DownRange, DownRequest, OmsStore, Queued, Stored, StoredEvent};

/// When the OMS side acknowledges an event to the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// After the event is committed to the store.
    Stored,
    /// After the consumer calls [`OmsSession::consumed`] (for `oms tail`: after its line
    /// is written and flushed).
    Consumed,
    /// Never (watch only).
    Never,
}

/// Where the OMS side connects, which site it serves and where it keeps its store.
#[derive(Debug, Clone)]
pub struct OmsSettings {
    /// Broker.
    pub broker: BrokerSettings,
    /// Site id (`+` for every site when receiving).
    pub site: String,
    /// MQTT client id.
    pub client_id: String,
    /// When events are acknowledged.
    pub ack: AckMode,
    /// The store file; `:memory:` keeps it in memory (lost at exit).
    pub store: PathBuf,
    /// A clean MQTT session (one-shot tools) instead of a persistent one (a long-running
    /// OMS, whose events the broker queues while it is down).
    pub clean_session: bool,
}

impl OmsSettings {
    /// Settings for a long-running, durable OMS side with its store at `store`.
    pub fn durable(broker: BrokerSettings, site: &str, client_id: &str, store: PathBuf) -> Self {
        OmsSettings {
            broker,
            site: site.to_string(),
            client_id: client_id.to_string(),
            ack: AckMode::Stored,
            store,
            clean_session: false,
        }
    }
}

/// Several OMS sides (bridges) on one shared store: they receive through an MQTT shared
/// subscription (`$share/{group}/...`, each message to one of them), so dedupe and ack
/// points come from the store, and each device's down messages are published by one of
/// them at a time, the one holding its claim in the store.
#[derive(Debug, Clone)]
pub struct Sharing {
    /// The shared subscription group.
    pub group: String,
    /// This instance's name in the store's claims (its MQTT client id).
    pub owner: String,
}

/// How long a claim on a device's down stream lasts unless renewed (renewed every
/// [`CLAIM_EVERY_MS`]): a killed bridge's devices move to another within this.
const CLAIM_TTL_MS: u64 = 5_000;
/// How often a sharing session renews its claims and takes over lapsed ones.
const CLAIM_EVERY_MS: u64 = 1_000;

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
    #[error("{id:?} is not a valid site or device id (use {chars})", id = .0, chars = topics::ID_CHARS)]
    BadId(String),
    /// The store failed.
    #[error("OMS store: {0}")]
    Store(#[from] StoreError),
    /// The session's task has ended.
    #[error("the OMS session has stopped")]
    Closed,
}

/// Something the OMS side received.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Received {
    /// An agent event, stored for the first time (in seq order per stream).
    Event {
        /// Device that sent it.
        device: String,
        /// The event.
        event: oms::Event,
        /// Site.
        site: String,
        /// The agent incarnation.
        incarnation: u64,
        /// Its position in the OMS store.
        cursor: u64,
    },
    /// A device (re)connected.
    Birth {
        /// Device.
        device: String,
        /// Its birth message.
        birth: oms::Birth,
        /// Site.
        site: String,
        /// The agent incarnation.
        incarnation: u64,
    },
    /// A device went away (its will) or shut down.
    Death {
        /// Device.
        device: String,
        /// The death message.
        death: oms::Death,
        /// Site.
        site: String,
    },
    /// A device's periodic status.
    Status {
        /// Device.
        device: String,
        /// Its status.
        status: oms::Status,
        /// Site.
        site: String,
    },
    /// Something a person must look at (a replaced device lost events, ...).
    Alarm {
        /// Site.
        site: String,
        /// Device.
        device: String,
        /// What happened.
        detail: String,
    },
    /// Bytes that are not a valid up message, or a topic that is not ours.
    Invalid {
        /// Topic.
        topic: String,
        /// Why.
        error: String,
    },
}

/// Counters a session keeps.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct OmsCounters {
    /// Events stored the first time.
    pub events: u64,
    /// Events received again (acknowledged again, not stored).
    pub duplicates: u64,
    /// Events dropped because an earlier one is missing (the agent re-sends).
    pub ahead: u64,
    /// Acks sent.
    pub acks_sent: u64,
    /// Invalid messages received.
    pub invalid: u64,
    /// Down messages published (re-sends included).
    pub down_published: u64,
    /// Down messages published again (their dseq was published before by this session).
    pub down_resent: u64,
    /// Down messages the agents acknowledged.
    pub down_acked: u64,
    /// Transactions that queued down messages: pushes waiting together share one.
    pub down_commits: u64,
}

enum Cmd {
    Push {
        site: Option<String>,
        device: String,
        downs: Vec<Down>,
        reply: oneshot::Sender<Result<Vec<u64>, OmsError>>,
    },
    PushKeyed {
        site: String,
        device: String,
        down: Down,
        key: Option<String>,
        reply: oneshot::Sender<Result<Queued, OmsError>>,
    },
    Raw {
        site: Option<String>,
        device: String,
        bytes: Vec<u8>,
        reply: oneshot::Sender<Result<(), OmsError>>,
    },
    Consumed {
        site: String,
        device: String,
        incarnation: u64,
        seq: u64,
    },
    State {
        site: Option<String>,
        device: String,
        msg_no: u64,
        reply: oneshot::Sender<Result<Option<DownState>, OmsError>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// A running OMS side: send down messages, receive up messages. Cheap to clone.
#[derive(Clone)]
pub struct OmsSession {
    cmds: mpsc::UnboundedSender<Cmd>,
    counters: Arc<Mutex<OmsCounters>>,
    throughs: Arc<Mutex<HashMap<String, u64>>>,
    connected: tokio::sync::watch::Receiver<bool>,
    incarnation: u64,
}

impl OmsSession {
    /// Opens the store, connects and subscribes to every device's `up` and `state` topics
    /// at the site. Received messages arrive on the returned channel, events after they
    /// are committed.
    pub fn start(
        s: &OmsSettings,
    ) -> Result<(OmsSession, mpsc::UnboundedReceiver<Received>), OmsError> {
        if s.site != "+" && !topics::valid_id(&s.site) {
            return Err(OmsError::BadId(s.site.clone()));
        }
        OmsSession::start_on(s, Box::new(OmsDb::open(&s.store)?))
    }

    /// Like [`OmsSession::start`], on a store already open (any backend); `s.store` is
    /// not used.
    pub fn start_on(
        s: &OmsSettings,
        db: Box<dyn OmsStore>,
    ) -> Result<(OmsSession, mpsc::UnboundedReceiver<Received>), OmsError> {
        OmsSession::start_shared(s, db, None)
    }

    /// Like [`OmsSession::start_on`], sharing the store with other sessions when
    /// `sharing` is set (see [`Sharing`]).
    pub fn start_shared(
        s: &OmsSettings,
        db: Box<dyn OmsStore>,
        sharing: Option<Sharing>,
    ) -> Result<(OmsSession, mpsc::UnboundedReceiver<Received>), OmsError> {
        if s.site != "+" && !topics::valid_id(&s.site) {
            return Err(OmsError::BadId(s.site.clone()));
        }
        let incarnation = db.incarnation();
        let opts = super::mqtt::oms_options(&s.client_id, &s.broker, s.clean_session)?;
        let (client, mut eventloop) = AsyncClient::new(opts, 1 << 16);
        eventloop.set_network_options(super::mqtt::network_options(&s.broker));
        let (tx, rx) = mpsc::unbounded_channel();
        let (cmds, cmd_rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Mutex::new(OmsCounters::default()));
        let (conn_tx, conn_rx) = tokio::sync::watch::channel(false);
        let throughs = Arc::new(Mutex::new(HashMap::new()));
        let core = Core {
            throughs: throughs.clone(),
            site: s.site.clone(),
            ack: s.ack,
            db,
            client,
            out: tx,
            counters: counters.clone(),
            flows: HashMap::new(),
            sites: HashMap::new(),
            dirty: HashMap::new(),
            consumed: HashMap::new(),
            asked: HashMap::new(),
            connected: false,
            base: tokio::time::Instant::now(),
            conn: conn_tx,
            sharing,
            owned: std::collections::HashSet::new(),
            incs: HashMap::new(),
            next_claim: 0,
            persistent: !s.clean_session,
        };
        tokio::spawn(core.run(eventloop, cmd_rx));
        Ok((
            OmsSession {
                cmds,
                counters,
                throughs,
                connected: conn_rx,
                incarnation,
            },
            rx,
        ))
    }

    /// Commits `down` for `device` (at the session's site, or where the device was last
    /// heard from) and returns its number once it is durable. A control message
    /// (`Ack`, `ResyncRequest`) is published at once and returns 0.
    pub async fn send(&self, device: &str, down: Down) -> Result<u64, OmsError> {
        self.push(None, device, down).await
    }

    /// Like [`OmsSession::send`], at an explicit site.
    pub async fn push(
        &self,
        site: Option<&str>,
        device: &str,
        down: Down,
    ) -> Result<u64, OmsError> {
        let mut nos = self.push_many(site, device, vec![down]).await?;
        nos.pop().ok_or(OmsError::Closed)
    }

    /// Like [`OmsSession::push`] for many messages to one device: the sequenced ones are
    /// committed in order in one transaction (one disk sync for a whole file of them),
    /// and their numbers come back in the same order (0 for a control message).
    pub async fn push_many(
        &self,
        site: Option<&str>,
        device: &str,
        downs: Vec<Down>,
    ) -> Result<Vec<u64>, OmsError> {
        if !topics::valid_id(device) {
            return Err(OmsError::BadId(device.to_string()));
        }
        for d in &downs {
            check_down(d)?;
        }
        let (reply, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Push {
                site: site.map(str::to_string),
                device: device.to_string(),
                downs,
                reply,
            })
            .map_err(|_| OmsError::Closed)?;
        rx.await.map_err(|_| OmsError::Closed)?
    }

    /// Commits a sequenced down message for a device this store has heard from, at `site`,
    /// under an optional idempotency key (the bridge's `POST .../messages`): the same key
    /// and message again return the first number and queue nothing. Returns once durable.
    pub async fn push_keyed(
        &self,
        site: &str,
        device: &str,
        down: Down,
        key: Option<String>,
    ) -> Result<Queued, OmsError> {
        for id in [site, device] {
            if !topics::valid_id(id) {
                return Err(OmsError::BadId(id.to_string()));
            }
        }
        if !down.is_sequenced() {
            return Err(OmsError::Input(
                "Ack and ResyncRequest are control messages the OMS side sends itself".into(),
            ));
        }
        check_down(&down)?;
        let (reply, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::PushKeyed {
                site: site.to_string(),
                device: device.to_string(),
                down,
                key,
                reply,
            })
            .map_err(|_| OmsError::Closed)?;
        rx.await.map_err(|_| OmsError::Closed)?
    }

    /// Publishes raw bytes on `device`'s down topic, for tests of bad input and of
    /// redelivery.
    pub async fn send_raw(&self, device: &str, bytes: Vec<u8>) -> Result<(), OmsError> {
        if !topics::valid_id(device) {
            return Err(OmsError::BadId(device.to_string()));
        }
        let (reply, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Raw {
                site: None,
                device: device.to_string(),
                bytes,
                reply,
            })
            .map_err(|_| OmsError::Closed)?;
        rx.await.map_err(|_| OmsError::Closed)?
    }

    /// Publishes a ready-made envelope as it is (tests of redelivery and bad input).
    pub async fn send_envelope(
        &self,
        device: &str,
        env: &Envelope<DownMsg>,
    ) -> Result<(), OmsError> {
        self.send_raw(device, oms::encode_down(env)?).await
    }

    /// With [`AckMode::Consumed`]: the consumer has written everything of this stream
    /// through `seq`; it may be acknowledged.
    pub fn consumed(&self, site: &str, device: &str, incarnation: u64, seq: u64) {
        let _ = self.cmds.send(Cmd::Consumed {
            site: site.to_string(),
            device: device.to_string(),
            incarnation,
            seq,
        });
    }

    /// The state of down message `msg_no` of `device`.
    pub async fn state(
        &self,
        site: Option<&str>,
        device: &str,
        msg_no: u64,
    ) -> Result<Option<DownState>, OmsError> {
        let (reply, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::State {
                site: site.map(str::to_string),
                device: device.to_string(),
                msg_no,
                reply,
            })
            .map_err(|_| OmsError::Closed)?;
        rx.await.map_err(|_| OmsError::Closed)?
    }

    /// Counters so far.
    pub fn counters(&self) -> OmsCounters {
        *self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The incarnation of this session's store (its down streams are scoped to it).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Whether the session is connected to the broker.
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Highest seq of `device`'s latest incarnation stored without gaps, as this session
    /// has seen it.
    pub fn ack_point(&self, device: &str) -> u64 {
        self.throughs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(device)
            .copied()
            .unwrap_or(0)
    }

    /// Sends the acks that are due, disconnects from the broker and stops the session.
    pub async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self.cmds.send(Cmd::Close { reply }).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(3), rx).await;
        }
    }
}

/// A device's down sender.
struct Flow {
    stream: u64,
    flow: Outflow,
    /// Highest dseq this session published: one at or below it again is a re-send.
    max_sent: u64,
    /// The connection (`Birth::session`) of the last birth that rewound the window.
    birth_session: Option<u64>,
}

/// The session's task: owns the event loop, the store and every ledger.
struct Core {
    site: String,
    ack: AckMode,
    db: Box<dyn OmsStore>,
    client: AsyncClient,
    out: mpsc::UnboundedSender<Received>,
    counters: Arc<Mutex<OmsCounters>>,
    /// Down senders per (site, device) whose incarnation is known.
    flows: HashMap<(String, String), Flow>,
    /// Where each device was last heard from.
    sites: HashMap<String, String>,
    /// Streams whose ack point moved (or must be repeated): (site, device) -> (inc, through).
    dirty: HashMap<(String, String), (u64, u64)>,
    /// With `AckMode::Consumed`: consumed points per stream.
    consumed: HashMap<(String, String, u64), u64>,
    /// When a device with queued messages and no known incarnation was last asked for
    /// a birth.
    asked: HashMap<(String, String), u64>,
    connected: bool,
    base: tokio::time::Instant,
    conn: tokio::sync::watch::Sender<bool>,
    throughs: Arc<Mutex<HashMap<String, u64>>>,
    /// Set when other sessions share the store.
    sharing: Option<Sharing>,
    /// With sharing: the devices whose down messages this session publishes.
    owned: std::collections::HashSet<(String, String)>,
    /// Each device's incarnation as recorded in the store by this session.
    incs: HashMap<(String, String), u64>,
    /// With sharing: when claims are renewed next (ms on `base`).
    next_claim: u64,
    /// The broker keeps this session while it is away (not a clean session).
    persistent: bool,
}

/// The first re-send of an unacknowledged down message after this long, doubling to 20 s.
const DOWN_TIMING: Timing = Timing {
    first_ms: 2_000,
    max_ms: 20_000,
};

/// Most events committed in one transaction while messages keep streaming in (a pause
/// in the stream commits what has come at once).
const MAX_EVENT_BATCH: usize = 512;

/// Most keyed pushes committed in one transaction.
const MAX_PUSH_GROUP: usize = 256;

impl Core {
    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    fn count(&self, f: impl FnOnce(&mut OmsCounters)) {
        f(&mut self.counters.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// `filter`, as a shared subscription when other sessions share the store.
    fn shared(&self, filter: String) -> String {
        match &self.sharing {
            Some(s) => format!("$share/{}/{filter}", s.group),
            None => filter,
        }
    }

    /// The subscription to every device's events at the site.
    fn up_filter(&self) -> String {
        self.shared(topics::oms_up_pattern(&self.site))
    }

    fn site_of(&self, site: Option<String>, device: &str) -> String {
        site.or_else(|| self.sites.get(device).cloned())
            .unwrap_or_else(|| self.site.clone())
    }

    async fn run(
        mut self,
        mut eventloop: rumqttc::EventLoop,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
    ) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        // Pending down messages of earlier runs start their senders now.
        if self.sharing.is_some() {
            self.claim_tick();
        } else if let Ok(pending) = self.db.devices_with_pending_down() {
            for (site, device) in pending {
                self.sites.entry(device.clone()).or_insert(site.clone());
                self.load_flow(&site, &device);
            }
        }
        let mut batch: Vec<(String, String, u64, oms::Event)> = Vec::new();
        // A command taken off the channel while grouping pushes, handled next.
        let mut held: Option<Cmd> = None;
        let closing = 'run: loop {
            let event = {
                let poll = eventloop.poll();
                tokio::pin!(poll);
                loop {
                    let wake = self
                        .next_deadline()
                        .map(|d| self.base + Duration::from_millis(d));
                    tokio::select! {
                        biased;
                        ev = &mut poll => break ev,
                        _ = std::future::ready(()), if !batch.is_empty() => {
                            self.commit(std::mem::take(&mut batch));
                        }
                        cmd = async {
                            match held.take() {
                                Some(c) => Some(c),
                                None => cmds.recv().await,
                            }
                        } => match cmd {
                            Some(cmd) => {
                                if let Some(reply) = self.serve(cmd, &mut cmds, &mut held) {
                                    break 'run Some(reply);
                                }
                            }
                            None => break 'run None,
                        },
                        _ = async {
                            match wake {
                                Some(w) => tokio::time::sleep_until(w).await,
                                None => std::future::pending().await,
                            }
                        } => {}
                    }
                    self.claim_tick();
                    self.flush_acks();
                    self.send_due();
                }
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff.reset();
                    self.connected = true;
                    self.conn.send_replace(true);
                    // Events at QoS 0: receipt promises nothing (the ack after the commit
                    // does, and the agent re-sends whatever is not acknowledged). At QoS 1
                    // Mosquitto keeps 20 in flight and 1000 queued per client and drops
                    // the rest: a site's devices sending their windows at once (after an
                    // outage) overran that queue, and each device stalled until its
                    // re-send timer (measured: 50 devices, 9,400 events/s at QoS 1, 25,000
                    // at QoS 0). At QoS 0 a connected client's messages are written
                    // straight out, never queued; Debian's 2.0.11 does not drop them, later
                    // 2.0 releases only while 1000 packets wait for the client's socket
                    // (docs/dev/field-notes.md), and a drop costs one re-send timer, never
                    // an event. A persistent session subscribes at QoS 1 again as it stops,
                    // so the broker keeps what comes while it is away.
                    let _ = self.client.try_subscribe(self.up_filter(), QoS::AtMostOnce);
                    let _ = self.client.try_subscribe(
                        self.shared(topics::oms_state_pattern(&self.site)),
                        QoS::AtLeastOnce,
                    );
                    let now = self.now_ms();
                    for f in self.flows.values_mut() {
                        f.flow.connected(now);
                    }
                    self.send_due();
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    {
                        tracing::error!(
                            "oms: the broker refused a subscription (check the ACL of the OMS user)"
                        );
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Some(ev) = self.receive(&p.topic, &p.payload) {
                        batch.push(ev);
                        if batch.len() >= MAX_EVENT_BATCH {
                            self.commit(std::mem::take(&mut batch));
                        }
                    }
                    // A DownAck or Birth may have opened a window.
                    self.send_due();
                    // While messages stream in, the select above takes its first branch
                    // every time and never gets to its others: acks of what this stream
                    // committed go now (not when the broker pauses, by which time the
                    // agents' re-send timers have fired), and commands waiting are served
                    // between messages (a POST does not wait for the burst to end).
                    self.flush_acks();
                    let mut served = false;
                    while let Some(cmd) = held.take().or_else(|| cmds.try_recv().ok()) {
                        served = true;
                        if let Some(reply) = self.serve(cmd, &mut cmds, &mut held) {
                            break 'run Some(reply);
                        }
                    }
                    // A push just served may have given a sender something to send, and
                    // nothing else would wake this loop for it: an idle sender has no
                    // deadline, so a message pushed while the device's birth was being
                    // handled waited for the device's next message (its status, a minute
                    // later by default).
                    if served {
                        self.send_due();
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if self.out.is_closed() && cmds.is_closed() {
                        return;
                    }
                    if self.connected {
                        tracing::warn!("oms: broker connection: {e}");
                    }
                    self.connected = false;
                    self.conn.send_replace(false);
                    for f in self.flows.values_mut() {
                        f.flow.disconnected();
                    }
                    if !batch.is_empty() {
                        self.commit(std::mem::take(&mut batch));
                    }
                    // Commands are served while the broker is away: a push is committed
                    // (and answered) at once, and a close does not wait out the backoff.
                    let pause = tokio::time::sleep(backoff.next_delay(fastrand::f64()));
                    tokio::pin!(pause);
                    loop {
                        let cmd = match held.take() {
                            Some(c) => Some(c),
                            None => tokio::select! {
                                _ = &mut pause => break,
                                c = cmds.recv() => c,
                            },
                        };
                        match cmd {
                            Some(cmd) => {
                                if let Some(reply) = self.serve(cmd, &mut cmds, &mut held) {
                                    // Nothing to say goodbye to.
                                    let _ = reply.send(());
                                    return;
                                }
                            }
                            None => return,
                        }
                    }
                }
            }
        };
        let Some(reply) = closing else {
            return;
        };
        if !batch.is_empty() {
            self.commit(std::mem::take(&mut batch));
        }
        self.flush_acks();
        if self.connected && self.persistent {
            // The broker keeps events that arrive while this session is away only for a
            // QoS 1 subscription (up to its queue limit); the agents re-send the rest.
            let _ = self
                .client
                .try_subscribe(self.up_filter(), QoS::AtLeastOnce);
        }
        let _ = self.client.try_disconnect();
        // Let the event loop write the acks, the subscription and the disconnect.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while eventloop.poll().await.is_ok() {}
        })
        .await;
        let _ = reply.send(());
    }

    /// Serves one command; a push takes every push already waiting into its group (one
    /// commit for all of them). Returns the reply of a `Close`, for the caller to close.
    fn serve(
        &mut self,
        cmd: Cmd,
        cmds: &mut mpsc::UnboundedReceiver<Cmd>,
        held: &mut Option<Cmd>,
    ) -> Option<oneshot::Sender<()>> {
        match cmd {
            first @ Cmd::PushKeyed { .. } => {
                // Every push already waiting goes into one commit: one disk sync for all
                // of them (100 clients do not queue behind 100 syncs). A command of
                // another kind ends the group and is served next.
                let mut group = vec![first];
                while group.len() < MAX_PUSH_GROUP {
                    match cmds.try_recv() {
                        Ok(c @ Cmd::PushKeyed { .. }) => group.push(c),
                        Ok(other) => {
                            *held = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                self.push_group(group);
                None
            }
            Cmd::Close { reply } => Some(reply),
            cmd => {
                self.command(cmd);
                None
            }
        }
    }

    /// Decodes one publish. Events are returned for the batch; everything else is handled
    /// here. Bad input is logged, counted and skipped.
    fn receive(
        &mut self,
        topic: &str,
        payload: &[u8],
    ) -> Option<(String, String, u64, oms::Event)> {
        let invalid = |this: &mut Core, error: String| {
            tracing::warn!("oms: skipped a message on {topic}: {error}");
            this.count(|c| c.invalid += 1);
            let _ = this.out.send(Received::Invalid {
                topic: topic.to_string(),
                error,
            });
        };
        let Some(t) = topics::parse(topic) else {
            invalid(self, "not a Floorhand topic".into());
            return None;
        };
        let (site, device) = (t.site.to_string(), t.device.to_string());
        let env = match oms::decode_up(payload) {
            Ok(env) => env,
            // An empty retained message clears presence; nothing to report.
            Err(_) if payload.is_empty() => return None,
            Err(e) => {
                invalid(self, e.to_string());
                return None;
            }
        };
        self.sites.insert(device.clone(), site.clone());
        let inc = env.body.incarnation;
        let now = crate::clock::unix_now();
        match env.body.body {
            Up::Event(event) => {
                self.learn_incarnation(&site, &device, inc, None);
                return Some((site, device, inc, event));
            }
            Up::Birth(birth) => {
                self.learn_incarnation(&site, &device, inc, None);
                match self.db.birth_floor(
                    &site,
                    &device,
                    inc,
                    (birth.outbox_acked_seq, birth.outbox_high_seq),
                    now,
                ) {
                    Ok(Some(alarm)) => self.raise(&site, &device, alarm),
                    Ok(None) => {}
                    Err(e) => tracing::error!("oms: store: {e}"),
                }
                // Events held past the floor the birth told are stored now.
                let promoted = self.db.take_promoted();
                self.hand_on(promoted);
                if let Ok(Some(t)) = self.db.through(&site, &device, inc) {
                    self.dirty.insert((site.clone(), device.clone()), (inc, t));
                }
                if birth.down_oms_incarnation == self.db.incarnation() {
                    self.down_ack(&site, &device, inc, birth.down_applied_seq);
                }
                // A birth after a (re)connect is the agent saying "resend what I lack": the
                // window goes again. A second birth of the same connection (asked for by a
                // resync, or after a repair) lost nothing in flight: a re-send would only
                // duplicate the window.
                let now_ms = self.now_ms();
                if let Some(f) = self.flows.get_mut(&(site.clone(), device.clone()))
                    && f.birth_session != Some(birth.session)
                {
                    f.birth_session = Some(birth.session);
                    f.flow.disconnected();
                    if self.connected {
                        f.flow.connected(now_ms);
                    }
                }
                let json = serde_json::to_string(&birth).ok();
                let _ = self.db.presence(
                    &site,
                    &device,
                    Some((true, birth.session)),
                    json.as_deref(),
                    None,
                    now,
                );
                let _ = self.out.send(Received::Birth {
                    device,
                    birth,
                    site,
                    incarnation: inc,
                });
            }
            Up::Death(death) => {
                let _ = self.db.presence(
                    &site,
                    &device,
                    Some((false, death.session)),
                    None,
                    None,
                    now,
                );
                let _ = self.out.send(Received::Death {
                    device,
                    death,
                    site,
                });
            }
            Up::Status(status) => {
                if status.down_oms_incarnation == self.db.incarnation() {
                    self.down_ack(&site, &device, inc, status.down_applied_seq);
                }
                let json = serde_json::to_string(&status).ok();
                let _ = self
                    .db
                    .presence(&site, &device, None, None, json.as_deref(), now);
                let _ = self.out.send(Received::Status {
                    device,
                    status,
                    site,
                });
            }
            Up::DownAck {
                oms_incarnation,
                through,
            } => {
                if oms_incarnation == self.db.incarnation() {
                    self.down_ack(&site, &device, inc, through);
                }
            }
        }
        None
    }

    fn raise(&mut self, site: &str, device: &str, detail: String) {
        tracing::error!("oms: {site}/{device}: {detail}");
        let _ = self.out.send(Received::Alarm {
            site: site.to_string(),
            device: device.to_string(),
            detail,
        });
    }

    /// The device speaks from incarnation `inc`: a new one re-addresses its unapplied
    /// down messages and restarts its down sender.
    fn learn_incarnation(&mut self, site: &str, device: &str, inc: u64, high: Option<u64>) {
        let key = (site.to_string(), device.to_string());
        if self.flows.get(&key).is_some_and(|f| f.stream == inc)
            || self.incs.get(&key) == Some(&inc)
        {
            return;
        }
        match self
            .db
            .set_incarnation(site, device, inc, high, crate::clock::unix_now())
        {
            Ok(alarms) => {
                self.incs.insert(key, inc);
                for a in alarms {
                    self.raise(site, device, a);
                }
            }
            Err(e) => {
                tracing::error!("oms: store: {e}");
                return;
            }
        }
        self.load_flow(site, device);
    }

    /// (Re)builds a device's down sender from the store.
    fn load_flow(&mut self, site: &str, device: &str) {
        let key = (site.to_string(), device.to_string());
        if self.sharing.is_some() && !self.owned.contains(&key) {
            // Another session publishes this device's messages.
            self.flows.remove(&key);
            return;
        }
        let Ok(ds) = self.db.down_stream(site, device) else {
            return;
        };
        if ds.stream == 0 {
            self.flows.remove(&key);
            return;
        }
        let mut flow = Outflow::new(ds.acked, ds.high, DOWN_WINDOW, DOWN_TIMING);
        if self.connected {
            flow.connected(self.now_ms());
        }
        self.flows.insert(
            key,
            Flow {
                stream: ds.stream,
                flow,
                max_sent: 0,
                birth_session: None,
            },
        );
    }

    fn down_ack(&mut self, site: &str, device: &str, inc: u64, through: u64) {
        let key = (site.to_string(), device.to_string());
        let now = self.now_ms();
        let Some(f) = self.flows.get_mut(&key) else {
            if self.sharing.is_some() {
                // The session that publishes this device learns it from the store.
                match self.db.down_acked(site, device, inc, through) {
                    Ok(n) => self.count(|c| c.down_acked += n as u64),
                    Err(e) => tracing::error!("oms: store: {e}"),
                }
            }
            return;
        };
        if f.stream != inc {
            return;
        }
        if let crate::ledger::AckEffect::Advanced { from, to } = f.flow.ack(through, now) {
            match self.db.down_acked(site, device, inc, to) {
                Ok(_) => self.count(|c| c.down_acked += to - from),
                Err(e) => tracing::error!("oms: store: {e}"),
            }
        }
    }

    /// Commits a batch of events (one disk sync), then hands the new ones on and marks
    /// their streams for an ack.
    fn commit(&mut self, batch: Vec<(String, String, u64, oms::Event)>) {
        let now = crate::clock::unix_now();
        let results = match on_disk(|| self.db.store_events(&batch, now)) {
            Ok(r) => r,
            Err(e) => {
                // Nothing was stored and nothing is acknowledged; the agent re-sends.
                tracing::error!("oms: storing {} events failed: {e}", batch.len());
                return;
            }
        };
        let mut want_birth = Vec::new();
        let mut stored_now = Vec::new();
        for ((site, device, inc, event), stored) in batch.into_iter().zip(results) {
            tracing::debug!(
                "oms: {site}/{device} event {} of {inc:016x}: {stored:?}",
                event.seq
            );
            let key = (site.clone(), device.clone());
            match stored {
                Stored::New { cursor, through } => {
                    self.dirty.insert(key, (inc, through));
                    stored_now.push(StoredEvent {
                        cursor,
                        site,
                        device,
                        incarnation: inc,
                        event,
                    });
                }
                Stored::Duplicate { through } => {
                    self.count(|c| c.duplicates += 1);
                    self.dirty.insert(key, (inc, through));
                }
                Stored::Held { through } => {
                    // Another bridge (or the agent's re-send) fills the gap.
                    self.count(|c| c.ahead += 1);
                    match through {
                        Some(t) => {
                            self.dirty.insert(key, (inc, t));
                        }
                        None => want_birth.push(key),
                    }
                }
                Stored::Ahead { through } => {
                    self.count(|c| c.ahead += 1);
                    if let Some(t) = through {
                        self.dirty.insert(key.clone(), (inc, t));
                    }
                    // Either a gap the agent's re-send fills, or a floor we do not know
                    // (the agent deleted what another consumer acknowledged): a fresh
                    // birth tells which.
                    want_birth.push(key);
                }
            }
        }
        stored_now.extend(self.db.take_promoted());
        self.hand_on(stored_now);
        // A stream that starts past what we hold needs the agent's birth to say where.
        for (site, device) in want_birth {
            self.ask_birth(&site, &device);
        }
    }

    /// Hands newly stored events on in cursor order (which is seq order per stream), and
    /// marks their streams for an ack.
    fn hand_on(&mut self, mut events: Vec<StoredEvent>) {
        events.sort_by_key(|e| e.cursor);
        for e in events {
            self.count(|c| c.events += 1);
            self.throughs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(e.device.clone(), e.event.seq);
            let key = (e.site.clone(), e.device.clone());
            let through = match self.dirty.get(&key) {
                Some(&(inc, t)) if inc == e.incarnation => t.max(e.event.seq),
                _ => e.event.seq,
            };
            self.dirty.insert(key, (e.incarnation, through));
            let _ = self.out.send(Received::Event {
                device: e.device,
                event: e.event,
                site: e.site,
                incarnation: e.incarnation,
                cursor: e.cursor,
            });
        }
    }

    /// Sends `ResyncRequest` (at most every 10 s per device).
    fn ask_birth(&mut self, site: &str, device: &str) {
        let now = self.now_ms();
        let key = (site.to_string(), device.to_string());
        if self
            .asked
            .get(&key)
            .is_some_and(|&t| now.saturating_sub(t) < 10_000)
        {
            return;
        }
        self.asked.insert(key, now);
        self.control(site, device, 0, Down::ResyncRequest);
    }

    /// Publishes an unsequenced control message.
    fn control(&mut self, site: &str, device: &str, to_incarnation: u64, body: Down) {
        let env = Envelope::new(
            0,
            DownMsg {
                oms_incarnation: self.db.incarnation(),
                to_incarnation,
                body,
            },
        );
        if let Ok(bytes) = oms::encode_down(&env) {
            let _ =
                self.client
                    .try_publish(topics::down(site, device), QoS::AtLeastOnce, false, bytes);
        }
    }

    /// Sends the acks that are due.
    fn flush_acks(&mut self) {
        if !self.connected || self.dirty.is_empty() {
            return;
        }
        for ((site, device), (inc, through)) in std::mem::take(&mut self.dirty) {
            let up_to_seq = match self.ack {
                AckMode::Stored => through,
                AckMode::Never => continue,
                AckMode::Consumed => {
                    match self.consumed.get(&(site.clone(), device.clone(), inc)) {
                        Some(&c) => c.min(through),
                        None => continue,
                    }
                }
            };
            if up_to_seq == 0 {
                continue;
            }
            self.control(
                &site,
                &device,
                inc,
                Down::Ack {
                    incarnation: inc,
                    up_to_seq,
                },
            );
            self.count(|c| c.acks_sent += 1);
        }
    }

    /// Publishes what the down senders say is due.
    fn send_due(&mut self) {
        if !self.connected {
            return;
        }
        let now = self.now_ms();
        // Only the senders with something due are named (this runs after every message
        // received, and most of the time nothing is).
        let due: Vec<((String, String), u64, RangeInclusive<u64>)> = self
            .flows
            .iter_mut()
            .filter_map(|(key, f)| f.flow.poll(now).map(|r| (key.clone(), f.stream, r)))
            .collect();
        if due.is_empty() {
            return;
        }
        let ranges: Vec<DownRange<'_>> = due
            .iter()
            .map(|((site, device), stream, r)| DownRange {
                site,
                device,
                stream: *stream,
                from: *r.start(),
                to: *r.end(),
            })
            .collect();
        // Every device's range read (and marked sent) in one transaction.
        let rows = self.db.down_ranges(&ranges);
        drop(ranges);
        let rows = match rows {
            Ok(r) => r,
            Err(e) => {
                // Published nothing: the senders' timers send them again.
                tracing::error!("oms: store: {e}");
                return;
            }
        };
        let oms_inc = self.db.incarnation();
        for ((key, stream, _), rows) in due.into_iter().zip(rows) {
            for r in rows {
                let env = Envelope::new(
                    r.dseq,
                    DownMsg {
                        oms_incarnation: oms_inc,
                        to_incarnation: stream,
                        body: r.body,
                    },
                );
                match oms::encode_down(&env) {
                    Ok(bytes) => {
                        if self
                            .client
                            // QoS 0: see DOWN_WINDOW.
                            .try_publish(
                                topics::down(&key.0, &key.1),
                                QoS::AtMostOnce,
                                false,
                                bytes,
                            )
                            .is_ok()
                        {
                            let again = match self.flows.get_mut(&key) {
                                Some(f) if r.dseq <= f.max_sent => true,
                                Some(f) => {
                                    f.max_sent = r.dseq;
                                    false
                                }
                                None => false,
                            };
                            self.count(|c| {
                                c.down_published += 1;
                                c.down_resent += u64::from(again);
                            });
                        }
                    }
                    Err(e) => tracing::error!("oms: down message {} not sent: {e}", r.msg_no),
                }
            }
        }
    }

    /// Commits a group of keyed pushes in one transaction, then answers each.
    fn push_group(&mut self, group: Vec<Cmd>) {
        let mut items = Vec::with_capacity(group.len());
        for cmd in group {
            if let Cmd::PushKeyed {
                site,
                device,
                down,
                key,
                reply,
            } = cmd
            {
                items.push((site, device, down, key, reply));
            }
        }
        let reqs: Vec<DownRequest<'_>> = items
            .iter()
            .map(|(site, device, down, key, _)| DownRequest {
                site,
                device,
                body: down,
                key: key.as_deref(),
            })
            .collect();
        let now = crate::clock::unix_now();
        let results = on_disk(|| self.db.queue_down_many(&reqs, now));
        drop(reqs);
        match results {
            Ok(results) => {
                self.count(|c| c.down_commits += 1);
                for ((site, device, _, _, reply), r) in items.into_iter().zip(results) {
                    if let Queued::New(_) = r {
                        self.sites.entry(device.clone()).or_insert(site.clone());
                        self.queued(&site, &device, 1);
                    }
                    let _ = reply.send(Ok(r));
                }
            }
            Err(e) => {
                // Nothing of the group was committed: each caller hears so.
                tracing::error!("oms: queueing {} messages failed: {e}", items.len());
                for (.., reply) in items {
                    let _ = reply.send(Err(OmsError::Store(StoreError::Backend(e.to_string()))));
                }
            }
        }
    }

    /// `n` messages were queued for the device: its sender learns the new high seq (or
    /// is loaded, or the device is asked for the birth that tells its incarnation).
    fn queued(&mut self, site: &str, device: &str, n: u64) {
        let key = (site.to_string(), device.to_string());
        if let Some(owner) = self.sharing.as_ref().map(|s| s.owner.clone()) {
            // Publish it from here if no other session holds the device.
            match self
                .db
                .claim(&owner, std::slice::from_ref(&key), CLAIM_TTL_MS)
            {
                Ok(m) if !m.is_empty() => {
                    self.owned.insert(key);
                    self.refresh_flow(site, device);
                }
                Ok(_) => {}
                Err(e) => tracing::error!("oms: store: {e}"),
            }
            return;
        }
        match self.flows.get_mut(&key) {
            Some(f) => f.flow.written(f.flow.high() + n),
            None => {
                self.load_flow(site, device);
                if !self.flows.contains_key(&key) {
                    self.ask_birth(site, device);
                }
            }
        }
    }

    /// When the next re-send is due.
    fn next_deadline(&self) -> Option<u64> {
        let claim = self.sharing.as_ref().map(|_| self.next_claim);
        self.flows
            .values()
            .filter_map(|f| f.flow.deadline())
            .chain(claim)
            .min()
    }

    /// With sharing, when due: renews this session's claims on the devices with down
    /// messages pending, takes over lapsed ones, and brings each owned device's sender up
    /// to date with the store (messages queued and acks received by other sessions).
    fn claim_tick(&mut self) {
        let Some(owner) = self.sharing.as_ref().map(|s| s.owner.clone()) else {
            return;
        };
        let now = self.now_ms();
        if now < self.next_claim {
            return;
        }
        self.next_claim = now + CLAIM_EVERY_MS;
        let pending = match self.db.devices_with_pending_down() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("oms: store: {e}");
                return;
            }
        };
        let mine = match self.db.claim(&owner, &pending, CLAIM_TTL_MS) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!("oms: store: {e}");
                return;
            }
        };
        self.owned = mine.into_iter().collect();
        let owned: Vec<(String, String)> = self.owned.iter().cloned().collect();
        self.flows.retain(|k, _| owned.contains(k));
        for (site, device) in owned {
            self.sites.entry(device.clone()).or_insert(site.clone());
            self.refresh_flow(&site, &device);
        }
    }

    /// Brings a device's sender up to date with the store, or builds it.
    fn refresh_flow(&mut self, site: &str, device: &str) {
        let key = (site.to_string(), device.to_string());
        let Ok(ds) = self.db.down_stream(site, device) else {
            return;
        };
        let now = self.now_ms();
        match self.flows.get_mut(&key) {
            Some(f) if f.stream == ds.stream => {
                f.flow.written(ds.high);
                f.flow.ack(ds.acked, now);
            }
            _ => self.load_flow(site, device),
        }
    }

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Push {
                site,
                device,
                downs,
                reply,
            } => {
                let site = self.site_of(site, &device);
                if site == "+" || !topics::valid_id(&site) {
                    let _ = reply.send(Err(OmsError::BadId(site)));
                    return;
                }
                // Control messages are published at once (numbered 0); the sequenced ones
                // are committed together, in order.
                let mut sequenced = Vec::with_capacity(downs.len());
                let mut is_control = Vec::with_capacity(downs.len());
                for down in downs {
                    is_control.push(!down.is_sequenced());
                    if down.is_sequenced() {
                        sequenced.push(down);
                    } else {
                        let inc = self.db.device_incarnation(&site, &device).unwrap_or(0);
                        self.control(&site, &device, inc, down);
                    }
                }
                let nos = if sequenced.is_empty() {
                    Ok(Vec::new())
                } else {
                    let now = crate::clock::unix_now();
                    on_disk(|| self.db.queue_downs(&site, &device, &sequenced, now))
                };
                let r = nos.map(|nos| {
                    if !sequenced.is_empty() {
                        self.count(|c| c.down_commits += 1);
                        self.queued(&site, &device, sequenced.len() as u64);
                    }
                    let mut nos = nos.into_iter();
                    is_control
                        .iter()
                        .map(|&c| if c { 0 } else { nos.next().unwrap_or(0) })
                        .collect()
                });
                let _ = reply.send(r.map_err(OmsError::from));
            }
            Cmd::Raw {
                site,
                device,
                bytes,
                reply,
            } => {
                let site = self.site_of(site, &device);
                let r = self
                    .client
                    .try_publish(topics::down(&site, &device), QoS::AtLeastOnce, false, bytes)
                    .map_err(|e| OmsError::Broker(e.to_string()));
                let _ = reply.send(r);
            }
            Cmd::Consumed {
                site,
                device,
                incarnation,
                seq,
            } => {
                let c = self
                    .consumed
                    .entry((site.clone(), device.clone(), incarnation))
                    .or_insert(0);
                *c = (*c).max(seq);
                let through = self
                    .db
                    .through(&site, &device, incarnation)
                    .ok()
                    .flatten()
                    .unwrap_or(seq);
                self.dirty.insert((site, device), (incarnation, through));
            }
            Cmd::State {
                site,
                device,
                msg_no,
                reply,
            } => {
                let site = self.site_of(site, &device);
                let _ = reply.send(
                    self.db
                        .down_state(&site, &device, msg_no)
                        .map_err(OmsError::from),
                );
            }
            // `serve` groups pushes and closes; a lone one is still served here.
            cmd @ Cmd::PushKeyed { .. } => self.push_group(vec![cmd]),
            Cmd::Close { reply } => {
                let _ = reply.send(());
            }
        }
    }
}

/// Runs `commit`, which waits for the disk (a synced commit: 0.2 to 5 ms here, more on
/// an SD card), without holding up the tasks queued on this worker. On a multi-thread
/// runtime the worker's queue moves to another thread meanwhile: the HTTP handlers the
/// last commit answered (a task woken from this worker waits in its queue, one of them in
/// a slot no other worker takes) and the requests coming in go on while this one waits.
fn on_disk<T>(commit: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(commit)
        }
        _ => commit(),
    }
}

/// Checks that `down` can be sent: the protocol's limits and, encoded with the largest
/// ids, the down message size limit. A message refused here is never queued (one queued
/// could never be published, and would hold its device's down stream forever).
pub fn check_down(down: &Down) -> Result<(), OmsError> {
    let env = Envelope::new(
        u64::MAX,
        DownMsg {
            oms_incarnation: u64::MAX,
            to_incarnation: u64::MAX,
            body: down.clone(),
        },
    );
    oms::encode_down(&env).map(|_| ()).map_err(OmsError::from)
}

/// A down message that is not valid JSON of the protocol's form, with the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// Where: `tasks[0].qty`, `WaveAssigned.tasks`, or `body` for the document itself.
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Deserializes `v` as `T`, naming the field of the first error (serde's own message
/// names a missing field but not where its parent is).
fn from_value_at<T: serde::de::DeserializeOwned>(
    v: serde_json::Value,
    prefix: &str,
) -> Result<T, JsonError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        let mut field = match (prefix, path.as_str()) {
            (p, ".") => p.to_string(),
            ("", p) => p.to_string(),
            (pre, p) if p.starts_with('[') => format!("{pre}{p}"),
            (pre, p) => format!("{pre}.{p}"),
        };
        // "missing field `qty`": the field is a child of the path.
        if let Some(name) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
        {
            field = if field.is_empty() {
                name.to_string()
            } else {
                format!("{field}.{name}")
            };
        }
        if field.is_empty() {
            field = "body".into();
        }
        JsonError { field, message }
    })
}

/// Reads a wave or any down message from JSON, naming the field of an error. A bare wave
/// may leave out `task_count` and `digest`; they are computed from its tasks.
pub fn parse_down(text: &str) -> Result<Down, JsonError> {
    let mut v: serde_json::Value = serde_json::from_str(text).map_err(|e| JsonError {
        field: "body".into(),
        message: format!("not JSON: {e}"),
    })?;
    let is_down = v.as_object().is_some_and(|o| {
        o.len() == 1
            && o.keys()
                .all(|k| k.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
    }) || v.is_string();
    if is_down {
        return from_value_at(v, "").map_err(|e| JsonError {
            message: format!("not a down message: {}", e.message),
            ..e
        });
    }
    let Some(o) = v.as_object_mut() else {
        return Err(JsonError {
            field: "body".into(),
            message: "not a wave: expected a JSON object".into(),
        });
    };
    let tasks: Vec<oms::Task> = from_value_at(
        o.get("tasks").cloned().unwrap_or(serde_json::Value::Null),
        "tasks",
    )
    .map_err(|e| JsonError {
        message: format!("wave tasks: {}", e.message),
        ..e
    })?;
    o.entry("task_count").or_insert(tasks.len().into());
    o.entry("digest").or_insert(wave_digest(&tasks).into());
    let wave: Wave = from_value_at(v, "").map_err(|e| JsonError {
        message: format!("not a wave: {}", e.message),
        ..e
    })?;
    Ok(Down::WaveAssigned(wave))
}

/// Reads a wave or any down message from JSON ([`parse_down`]), as `floorhand oms push`
/// does.
pub fn down_from_json(text: &str) -> Result<Down, OmsError> {
    parse_down(text).map_err(|e| OmsError::Input(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_wave_gets_its_count_and_digest() {
        let ex = floorhand_protocol::examples::down();
        let Down::WaveAssigned(w) = &ex[0].1.body.body else {
            panic!("first example is a wave")
        };
        let mut v = serde_json::to_value(w).unwrap();
        v.as_object_mut().unwrap().remove("digest");
        v.as_object_mut().unwrap().remove("task_count");
        let got = down_from_json(&v.to_string()).unwrap();
        assert_eq!(got, Down::WaveAssigned(w.clone()));
        let whole = serde_json::to_string(&ex[2].1.body.body).unwrap();
        assert_eq!(down_from_json(&whole).unwrap(), ex[2].1.body.body);
        assert_eq!(
            down_from_json("\"ResyncRequest\"").unwrap(),
            Down::ResyncRequest
        );
    }

    #[test]
    fn a_bad_field_is_named_with_its_path() {
        let check = |text: &str, field: &str| {
            let e = parse_down(text).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        };
        let ex = floorhand_protocol::examples::down();
        let Down::WaveAssigned(w) = &ex[0].1.body.body else {
            panic!("first example is a wave")
        };
        let mut v = serde_json::to_value(w).unwrap();
        v["tasks"][0]["qty"] = "many".into();
        check(&v.to_string(), "tasks[0].qty");
        v["tasks"][0].as_object_mut().unwrap().remove("qty");
        check(&v.to_string(), "tasks[0].qty");
        let mut v = serde_json::to_value(w).unwrap();
        v["version"] = (-1).into();
        check(&v.to_string(), "version");
        check("{\"OrderCancelled\": {}}", "OrderCancelled.order_id");
        check(
            "{\"OrderCancelled\": {\"order_id\": 5}}",
            "OrderCancelled.order_id",
        );
        check("[1]", "body");
        check("{\"tasks\": [", "body");
    }

    #[test]
    fn bad_wave_json_says_what_is_wrong() {
        let e = down_from_json("{\"wave_id\": 1}").unwrap_err().to_string();
        assert!(e.contains("wave tasks"), "{e}");
        let e = down_from_json("nope").unwrap_err().to_string();
        assert!(e.contains("not JSON"), "{e}");
    }
}

/// The keyed pushes' group commit (the bridge's `POST .../messages`), against a real
/// Mosquitto and a real SQLite file; another connection's write lock holds the commit
/// back, so what is answered before the commit can be seen.
#[cfg(all(test, feature = "sim"))]
mod group_commit {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::rigs::mosquitto::{Mosquitto, Options};
    use crate::store::oms_db::{WriteLock, fail_down_inserts_containing};
    use crate::store::oms_store::DownState;

    const DEVICES: usize = 12;

    fn device(d: usize) -> String {
        format!("d{d:02}")
    }

    fn cancel(order: &str) -> Down {
        Down::OrderCancelled {
            order_id: order.into(),
        }
    }

    /// A broker; a store at `dir` whose devices d00..d11 at s1 have been heard from; a
    /// session on it, connected.
    async fn start(
        dir: &Path,
    ) -> (
        Mosquitto,
        OmsSession,
        mpsc::UnboundedReceiver<Received>,
        PathBuf,
    ) {
        let broker = Mosquitto::start(&dir.join("broker"), Options::default());
        let path = dir.join("oms.db");
        let mut db = OmsDb::open(&path).unwrap();
        for d in 0..DEVICES {
            db.set_incarnation("s1", &device(d), 100 + d as u64, None, 1)
                .unwrap();
        }
        drop(db);
        let s = OmsSettings::durable(
            super::super::mqtt::BrokerSettings::plain(broker.url()),
            "s1",
            "group-commit-test",
            path.clone(),
        );
        let (session, rx) = OmsSession::start(&s).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !session.is_connected() {
            assert!(Instant::now() < deadline, "the session did not connect");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (broker, session, rx, path)
    }

    /// Pushes `order` to device `d` on a task of its own.
    fn push(
        session: &OmsSession,
        d: usize,
        order: &str,
    ) -> tokio::task::JoinHandle<Result<Queued, OmsError>> {
        let (session, order) = (session.clone(), order.to_string());
        tokio::spawn(async move {
            session
                .push_keyed("s1", &device(d), cancel(&order), Some(order.clone()))
                .await
        })
    }

    /// The state of device `d`'s message 1 as another connection reads it.
    fn stored(reader: &OmsDb, d: usize) -> Option<DownState> {
        reader.down_state("s1", &device(d), 1).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pushes_waiting_together_share_one_commit_and_each_is_answered_only_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (_broker, session, _rx, path) = start(dir.path()).await;
        let reader = OmsDb::open(&path).unwrap();
        let commits = session.counters().down_commits;
        let lock = WriteLock::hold(&path).unwrap();
        // The first push's commit waits for the lock; the others queue behind it.
        let first = push(&session, 0, "SO-0");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rest: Vec<_> = (1..DEVICES)
            .map(|d| push(&session, d, &format!("SO-{d}")))
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !first.is_finished() && rest.iter().all(|h| !h.is_finished()),
            "a push was answered before its commit could be made"
        );
        assert_eq!(stored(&reader, 0), None);
        drop(lock);
        assert_eq!(first.await.unwrap().unwrap(), Queued::New(1));
        assert!(stored(&reader, 0).is_some());
        for (i, h) in rest.into_iter().enumerate() {
            assert_eq!(
                h.await.unwrap().unwrap(),
                Queued::New(1),
                "{}",
                device(i + 1)
            );
            assert!(
                stored(&reader, i + 1).is_some(),
                "{} answered, not stored",
                device(i + 1)
            );
        }
        assert_eq!(
            session.counters().down_commits - commits,
            2,
            "the first push alone, then the eleven that waited behind it together"
        );
        session.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_whose_commit_fails_fails_every_push_in_it_and_queues_none_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let (_broker, session, _rx, path) = start(dir.path()).await;
        let reader = OmsDb::open(&path).unwrap();
        // One message of the second group fails to insert, part-way through the group.
        fail_down_inserts_containing(&path, "POISON").unwrap();
        let lock = WriteLock::hold(&path).unwrap();
        let first = push(&session, 0, "SO-0");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let order = |d: usize| {
            if d == DEVICES / 2 {
                "POISON".to_string()
            } else {
                format!("SO-{d}")
            }
        };
        let rest: Vec<_> = (1..DEVICES).map(|d| push(&session, d, &order(d))).collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(lock);
        assert_eq!(first.await.unwrap().unwrap(), Queued::New(1));
        for (i, h) in rest.into_iter().enumerate() {
            let d = i + 1;
            match h.await.unwrap() {
                Err(OmsError::Store(_)) => {}
                other => panic!("{}: {other:?}, not the group's store error", device(d)),
            }
            assert_eq!(stored(&reader, d), None, "{} half-queued", device(d));
        }
        let unacked: u64 = reader
            .devices()
            .unwrap()
            .iter()
            .map(|r| r.down_unacked)
            .sum();
        assert_eq!(unacked, 1, "only the first group's message is queued");
        // The session goes on, and the failed group used up no numbers or keys.
        for d in (1..DEVICES).filter(|&d| d != DEVICES / 2) {
            let again = session
                .push_keyed("s1", &device(d), cancel(&order(d)), Some(order(d)))
                .await;
            assert_eq!(again.unwrap(), Queued::New(1), "{}", device(d));
        }
        session.close().await;
    }
}
