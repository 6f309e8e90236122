//! The agent's MQTT link: applies down messages through the store before acking them,
//! and drains the outbox to the OMS exactly once, in order, through any outage.
//!
//! Tasks (rumqttc's event loop must be polled continuously from one task, and nothing may
//! await a publish inside it: rumqttc #263, #910, #1025):
//! - the **poll task** ([`run`]) owns the event loop and is the only publisher. It publishes
//!   with `try_publish` (never awaits) and only while connected, so it knows exactly which
//!   publishes rumqttc dropped or moved to its pending queue on a disconnect.
//! - the **feeder** reads unacked outbox rows in seq order and hands them to the poll task;
//!   after every ConnAck it starts again from the lowest unacked row, because rumqttc
//!   silently drops in-flight publishes when the broker has no session (FIELD-NOTES).
//! - the **inbound** task decodes, checks and applies each down message in one store
//!   transaction, and only then acks it to the broker (manual acks, in order received).
//! - the **presence** task publishes `Birth` after each connect and `Status` periodically.
//!
//! A PUBACK only marks rows as sent; rows are deleted only by the OMS's `Ack`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use floorhand_protocol::limits::MAX_DOWN_BYTES;
use floorhand_protocol::oms::{
    self, Birth, Death, Down, EventKind, PrinterState, RejectReason, Status, Up,
};
use floorhand_protocol::{DecodeError, Envelope, PROTOCOL_VERSION, envelope, topics};
use rumqttc::{AsyncClient, Event, LastWill, Outgoing, Packet, Publish, QoS, Request};
use tokio::sync::{Notify, mpsc, watch};

use super::backoff::Backoff;
use super::mqtt::{self, BrokerSettings, SettingsError};
use crate::store::{Applied, Store, StoreError};

/// The agent's MQTT settings.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Device id: the MQTT client id and the device level of its topics.
    pub device: String,
    /// Site id.
    pub site: String,
    /// Broker.
    pub broker: BrokerSettings,
    /// Seconds between `Status` messages.
    pub status_interval: Duration,
    /// Re-send every unacked row when the OMS has acked nothing for this long.
    pub resend_after: Duration,
    /// Reconnect backoff: first delay and cap.
    pub backoff: (Duration, Duration),
}

impl SyncConfig {
    /// Defaults for `device` at `site` on `broker`.
    pub fn new(device: &str, site: &str, broker: BrokerSettings) -> Self {
        SyncConfig {
            device: device.to_string(),
            site: site.to_string(),
            broker,
            status_interval: Duration::from_secs(60),
            resend_after: Duration::from_secs(20),
            backoff: (Duration::from_millis(200), Duration::from_secs(30)),
        }
    }
}

/// Why the link cannot run at all. Broker outages are not errors: they are retried.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Bad settings.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A device or site id that cannot be used in a topic.
    #[error("{0:?} is not a valid device or site id (use A-Z a-z 0-9 - _ ., at most 64)")]
    BadId(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// The link as the rest of the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Not connected yet, or reconnecting. `since` is unix seconds; `error` the last one.
    Down {
        /// When the link was lost (unix seconds).
        since: u64,
        /// Why, for a person.
        error: String,
    },
    /// Connected.
    Up {
        /// Connection number (the session counter).
        session: u64,
    },
}

/// Handle to a running link.
#[derive(Clone)]
pub struct SyncHandle {
    /// Current link state.
    pub state: watch::Receiver<LinkState>,
    /// Counters.
    pub stats: watch::Receiver<SyncStats>,
    outbox: std::sync::Arc<Notify>,
    applied: tokio::sync::broadcast::Sender<Applied>,
    devices: std::sync::Arc<watch::Sender<DeviceReport>>,
}

/// What a station reports about its devices in the `Status` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceReport {
    /// The label printer's state (`None` without a printer).
    pub printer: PrinterState,
    /// Print jobs waiting.
    pub print_queue: u32,
}

impl Default for DeviceReport {
    fn default() -> Self {
        DeviceReport {
            printer: PrinterState::None,
            print_queue: 0,
        }
    }
}

impl SyncHandle {
    /// Call after committing new outbox rows: the feeder sends them at once.
    pub fn outbox_changed(&self) {
        self.outbox.notify_one();
    }

    /// Every down message the store applied, for workflows that must react.
    pub fn applied(&self) -> tokio::sync::broadcast::Receiver<Applied> {
        self.applied.subscribe()
    }

    /// Sets the printer state and print queue length the next `Status` carries.
    pub fn report_devices(&self, report: DeviceReport) {
        self.devices.send_replace(report);
    }
}

/// What the link has done, for status displays and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Connections made.
    pub connects: u64,
    /// Event publishes handed to the broker (re-sends included).
    pub published: u64,
    /// Highest seq the broker PUBACKed.
    pub sent_through: u64,
    /// Down messages applied.
    pub applied: u64,
    /// Down messages seen before (redelivered) and skipped.
    pub duplicates: u64,
    /// Down messages rejected.
    pub rejected: u64,
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An outbox row on its way to the poll task, tagged with the connection it is for.
struct Row {
    generation: u64,
    seq: u64,
    payload: Vec<u8>,
}

/// A non-event publish (birth, status, death).
struct Presence {
    topic: String,
    payload: Vec<u8>,
    qos: QoS,
    retain: bool,
}

/// Starts the link. It runs until `shutdown` turns true, then publishes `Death`,
/// disconnects and returns.
pub async fn start(
    cfg: SyncConfig,
    store: Store,
    shutdown: watch::Receiver<bool>,
) -> Result<(SyncHandle, tokio::task::JoinHandle<()>), SyncError> {
    for id in [&cfg.device, &cfg.site] {
        if !topics::valid_id(id) {
            return Err(SyncError::BadId(id.clone()));
        }
    }
    let mut opts = mqtt::options(&cfg.device, &cfg.broker)?;
    let session = store.call(|db| db.next_session()).await??;
    opts.set_last_will(will(&cfg, session));
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    eventloop.set_network_options(mqtt::network_options(&cfg.broker));

    let (state_tx, state_rx) = watch::channel(LinkState::Down {
        since: now_s(),
        error: "connecting".into(),
    });
    let (stats_tx, stats_rx) = watch::channel(SyncStats::default());
    let (gen_tx, gen_rx) = watch::channel::<Option<u64>>(None);
    let (rows_tx, rows_rx) = mpsc::channel::<Row>(512);
    let (presence_tx, presence_rx) = mpsc::unbounded_channel::<Presence>();
    let (inbound_tx, inbound_rx) = mpsc::unbounded_channel::<Publish>();
    let (sent_tx, sent_rx) = mpsc::unbounded_channel::<u64>();
    let outbox = std::sync::Arc::new(Notify::new());
    let (applied_tx, _) = tokio::sync::broadcast::channel(256);
    let rebirth = std::sync::Arc::new(Notify::new());
    let (interval_tx, interval_rx) = watch::channel(cfg.status_interval);
    let (devices_tx, devices_rx) = watch::channel(DeviceReport::default());

    let handle = SyncHandle {
        state: state_rx.clone(),
        stats: stats_rx,
        outbox: outbox.clone(),
        applied: applied_tx.clone(),
        devices: std::sync::Arc::new(devices_tx),
    };

    tokio::spawn(feeder(
        store.clone(),
        gen_rx.clone(),
        rows_tx,
        outbox.clone(),
        sent_rx,
        cfg.resend_after,
    ));
    tokio::spawn(inbound(
        cfg.clone(),
        store.clone(),
        client.clone(),
        inbound_rx,
        Feedback {
            outbox: outbox.clone(),
            applied: applied_tx,
            rebirth: rebirth.clone(),
            interval: interval_tx,
            stats: stats_tx.clone(),
        },
    ));
    tokio::spawn(presence(
        cfg.clone(),
        store.clone(),
        gen_rx,
        presence_tx.clone(),
        rebirth,
        interval_rx,
        devices_rx,
    ));
    let task = tokio::spawn(poll_task(PollTask {
        cfg,
        store,
        client,
        eventloop,
        session,
        state: state_tx,
        stats: stats_tx,
        generation: gen_tx,
        rows: rows_rx,
        presence: presence_rx,
        inbound: inbound_tx,
        sent: sent_tx,
        shutdown,
    }));
    Ok((handle, task))
}

fn will(cfg: &SyncConfig, session: u64) -> LastWill {
    let death = Envelope::new(
        0,
        Up::Death(Death {
            device: cfg.device.clone(),
            session,
        }),
    );
    LastWill::new(
        topics::state(&cfg.site, &cfg.device),
        oms::encode_up(&death).unwrap_or_default(),
        QoS::AtLeastOnce,
        true,
    )
}

struct PollTask {
    cfg: SyncConfig,
    store: Store,
    client: AsyncClient,
    eventloop: rumqttc::EventLoop,
    session: u64,
    state: watch::Sender<LinkState>,
    stats: watch::Sender<SyncStats>,
    generation: watch::Sender<Option<u64>>,
    rows: mpsc::Receiver<Row>,
    presence: mpsc::UnboundedReceiver<Presence>,
    inbound: mpsc::UnboundedSender<Publish>,
    sent: mpsc::UnboundedSender<u64>,
    shutdown: watch::Receiver<bool>,
}

/// Most publishes the poll task keeps queued in rumqttc's request channel (capacity 1024)
/// or in flight, so `try_publish` never fails for lack of room.
const MAX_QUEUED: usize = 600;

async fn poll_task(mut t: PollTask) {
    let up_topic = topics::up(&t.cfg.site, &t.cfg.device);
    let mut backoff = Backoff::new(t.cfg.backoff.0, t.cfg.backoff.1);
    let mut connected = false;
    // Event seqs of QoS 1 publishes handed to rumqttc, in order, not yet given a packet
    // id (`None` for presence messages), and packet id -> seq of those in flight.
    let mut queued: VecDeque<Option<u64>> = VecDeque::new();
    let mut inflight: HashMap<u16, Option<u64>> = HashMap::new();
    let mut held: Option<Row> = None;
    let mut last_error = String::new();
    loop {
        let event = {
            let poll = t.eventloop.poll();
            tokio::pin!(poll);
            loop {
                let room = connected && queued.len() + inflight.len() < MAX_QUEUED;
                tokio::select! {
                    ev = &mut poll => break Some(ev),
                    Some(row) = t.rows.recv(), if room && held.is_none() => {
                        held = Some(row);
                    }
                    Some(p) = t.presence.recv(), if room => {
                        if t.client.try_publish(&p.topic, p.qos, p.retain, p.payload).is_ok()
                            && p.qos != QoS::AtMostOnce
                        {
                            queued.push_back(None);
                        }
                    }
                    _ = t.shutdown.changed() => {
                        if *t.shutdown.borrow() {
                            break None;
                        }
                    }
                }
                // Publish the held row if it is for this connection.
                if let Some(row) = held.take() {
                    if Some(row.generation) != *t.generation.borrow() || !connected {
                        continue; // stale: the feeder starts again for the new connection
                    }
                    match t
                        .client
                        .try_publish(&up_topic, QoS::AtLeastOnce, false, row.payload)
                    {
                        Ok(()) => {
                            queued.push_back(Some(row.seq));
                            t.stats.send_modify(|s| s.published += 1);
                        }
                        Err(e) => tracing::warn!("sync: could not queue seq {}: {e}", row.seq),
                    }
                }
            }
        };
        let Some(event) = event else {
            graceful_stop(&mut t, connected).await;
            return;
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                connected = true;
                backoff.reset();
                // rumqttc replays publishes of the last connection from `pending` when the
                // broker kept the session, and silently drops them when it did not. Either
                // way the feeder re-sends every unacked row, so drop rumqttc's copies to keep
                // one source of truth (acks and subscribes stay).
                t.eventloop
                    .pending
                    .retain(|r| !matches!(r, Request::Publish(_)));
                queued.clear();
                inflight.clear();
                tracing::info!(
                    session = t.session,
                    session_present = ack.session_present,
                    "sync: connected to {}",
                    t.cfg.broker.url
                );
                let down = topics::down(&t.cfg.site, &t.cfg.device);
                if let Err(e) = t.client.try_subscribe(down, QoS::AtLeastOnce) {
                    tracing::error!("sync: could not subscribe: {e}");
                }
                t.state.send_replace(LinkState::Up { session: t.session });
                t.stats.send_modify(|s| s.connects += 1);
                t.generation.send_replace(Some(t.session));
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let _ = t.inbound.send(p);
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid) | Outgoing::AwaitAck(pkid)))
                if pkid != 0 =>
            {
                if let Some(seq) = queued.pop_front() {
                    inflight.insert(pkid, seq);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if let Some(Some(seq)) = inflight.remove(&ack.pkid) {
                    t.stats
                        .send_modify(|s| s.sent_through = s.sent_through.max(seq));
                    let _ = t.sent.send(seq);
                }
            }
            Ok(_) => {}
            Err(e) => {
                let msg = describe(&e);
                if connected || msg != last_error {
                    tracing::warn!("sync: broker link down: {msg}");
                }
                last_error = msg.clone();
                if connected {
                    t.state.send_replace(LinkState::Down {
                        since: now_s(),
                        error: msg,
                    });
                } else {
                    t.state.send_modify(|s| {
                        if let LinkState::Down { error, .. } = s {
                            *error = msg;
                        }
                    });
                }
                connected = false;
                t.generation.send_replace(None);
                // Everything queued or in flight was dropped or moved to `pending` by
                // rumqttc; the feeder starts again after the next ConnAck.
                queued.clear();
                inflight.clear();
                held = None;
                // A new connection gets a new session number, and the will that goes with it.
                match t.store.call(|db| db.next_session()).await {
                    Ok(Ok(s)) => {
                        t.session = s;
                        t.eventloop.mqtt_options.set_last_will(will(&t.cfg, s));
                    }
                    Ok(Err(e)) => tracing::error!("sync: session counter: {e}"),
                    Err(e) => tracing::error!("sync: store gone: {e}"),
                }
                let delay = backoff.next_delay(fastrand::f64());
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = t.shutdown.changed() => {
                        if *t.shutdown.borrow() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Publishes `Death` (so the OMS knows this was a clean stop), disconnects, and polls
/// until the broker has it or two seconds pass.
async fn graceful_stop(t: &mut PollTask, connected: bool) {
    if connected {
        let death = Envelope::new(
            0,
            Up::Death(Death {
                device: t.cfg.device.clone(),
                session: t.session,
            }),
        );
        let _ = t.client.try_publish(
            topics::state(&t.cfg.site, &t.cfg.device),
            QoS::AtLeastOnce,
            true,
            oms::encode_up(&death).unwrap_or_default(),
        );
        let _ = t.client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while t.eventloop.poll().await.is_ok() {}
        })
        .await;
    }
    t.state.send_replace(LinkState::Down {
        since: now_s(),
        error: "stopped".into(),
    });
    tracing::info!("sync: stopped");
}

/// A person-readable reason for a connection error, with what to do about it.
fn describe(e: &rumqttc::ConnectionError) -> String {
    use rumqttc::{ConnectReturnCode as C, ConnectionError as E};
    match e {
        E::ConnectionRefused(C::BadUserNamePassword) => {
            "broker refused the connection: bad username or password (check broker.username and the password file or variable)".into()
        }
        E::ConnectionRefused(C::NotAuthorized) => {
            "broker refused the connection: not authorised (check credentials and the broker's ACL for this device)".into()
        }
        E::ConnectionRefused(code) => format!("broker refused the connection: {code:?}"),
        E::Tls(t) => format!("TLS: {t} (check broker.ca_file and the broker's certificate name)"),
        E::Io(io) => format!("network: {io}"),
        other => other.to_string(),
    }
}

/// Reads unacked outbox rows in seq order and hands them to the poll task; starts again
/// from the lowest unacked row after every (re)connect and when acks stall.
async fn feeder(
    store: Store,
    mut generation: watch::Receiver<Option<u64>>,
    rows: mpsc::Sender<Row>,
    outbox: std::sync::Arc<Notify>,
    mut sent: mpsc::UnboundedReceiver<u64>,
    resend_after: Duration,
) {
    let mut sent_through = 0u64;
    let mut marked = 0u64;
    loop {
        // Wait for a connection.
        let g = loop {
            if let Some(g) = *generation.borrow_and_update() {
                break g;
            }
            if generation.changed().await.is_err() {
                return;
            }
        };
        let mut cursor = 0u64;
        let mut lowest_seen = 0u64;
        let mut last_progress = Instant::now();
        'conn: loop {
            while let Ok(s) = sent.try_recv() {
                sent_through = sent_through.max(s);
            }
            if sent_through > marked {
                let up_to = sent_through;
                if let Ok(Ok(())) = store.call(move |db| db.mark_sent(up_to)).await {
                    marked = up_to;
                }
            }
            let batch = match store.call(move |db| db.outbox_pending(cursor, 256)).await {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    tracing::error!("sync: reading the outbox: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(_) => return,
            };
            if batch.is_empty() {
                // All unacked rows are handed over. Re-send them if the OMS acks nothing
                // for `resend_after`: a message the OMS never got (its broker session
                // overflowed, say) must not wait for our next reconnect.
                let lowest = match store.call(|db| db.outbox_pending(0, 1)).await {
                    Ok(Ok(r)) => r.first().map(|r| r.seq),
                    _ => None,
                };
                match lowest {
                    None => last_progress = Instant::now(),
                    Some(l) if l != lowest_seen => {
                        lowest_seen = l;
                        last_progress = Instant::now();
                    }
                    Some(_) if last_progress.elapsed() >= resend_after => {
                        tracing::info!(
                            "sync: no ack for {resend_after:?}; re-sending unacked events"
                        );
                        cursor = 0;
                        last_progress = Instant::now();
                        continue;
                    }
                    Some(_) => {}
                }
                tokio::select! {
                    _ = outbox.notified() => {}
                    r = generation.changed() => {
                        if r.is_err() { return; }
                        break 'conn;
                    }
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
            for r in batch {
                cursor = r.seq;
                let row = Row {
                    generation: g,
                    seq: r.seq,
                    payload: r.payload,
                };
                tokio::select! {
                    res = rows.send(row) => if res.is_err() { return; },
                    r = generation.changed() => {
                        if r.is_err() { return; }
                        break 'conn;
                    }
                }
            }
            if *generation.borrow() != Some(g) {
                break 'conn;
            }
        }
    }
}

struct Feedback {
    outbox: std::sync::Arc<Notify>,
    applied: tokio::sync::broadcast::Sender<Applied>,
    rebirth: std::sync::Arc<Notify>,
    interval: watch::Sender<Duration>,
    stats: watch::Sender<SyncStats>,
}

/// What to do with a received down message, decided before touching the store.
#[derive(Debug)]
enum Check {
    Apply(u64, Down),
    Reject {
        msg_id: u64,
        reason: RejectReason,
        detail: String,
    },
}

/// Checks topic, size, version and format. Pure.
fn check(expected_topic: &str, topic: &str, payload: &[u8]) -> Check {
    let msg_id = envelope::peek_msg_id(payload).unwrap_or(0);
    if topic != expected_topic {
        return Check::Reject {
            msg_id,
            reason: RejectReason::WrongDevice,
            detail: format!("message on {topic}, this device listens on {expected_topic}"),
        };
    }
    match oms::decode_down(payload) {
        Ok(env) => Check::Apply(env.msg_id, env.body),
        Err(e) => {
            let reason = match e {
                DecodeError::UnsupportedVersion { .. } => RejectReason::UnsupportedVersion,
                DecodeError::TooLarge { .. } => RejectReason::TooLarge,
                DecodeError::Limit(_) => RejectReason::Invalid,
                _ => RejectReason::Malformed,
            };
            Check::Reject {
                msg_id,
                reason,
                detail: e.to_string(),
            }
        }
    }
}

/// Applies down messages in the order received, each in one store transaction, and acks
/// each to the broker only after its commit.
async fn inbound(
    cfg: SyncConfig,
    store: Store,
    client: AsyncClient,
    mut rx: mpsc::UnboundedReceiver<Publish>,
    fb: Feedback,
) {
    let expected = topics::down(&cfg.site, &cfg.device);
    while let Some(p) = rx.recv().await {
        let verdict = if p.payload.len() > MAX_DOWN_BYTES {
            Check::Reject {
                msg_id: envelope::peek_msg_id(&p.payload).unwrap_or(0),
                reason: RejectReason::TooLarge,
                detail: format!(
                    "message is {} bytes, over the {MAX_DOWN_BYTES}-byte limit",
                    p.payload.len()
                ),
            }
        } else {
            check(&expected, &p.topic, &p.payload)
        };
        let committed = match verdict {
            Check::Apply(msg_id, down) => {
                let now = now_s();
                let interval = match &down {
                    Down::ConfigUpdate(c) => c.status_interval_s,
                    _ => None,
                };
                match store
                    .call(move |db| db.apply_down(msg_id, &down, now))
                    .await
                {
                    Ok(Ok(applied)) => {
                        react(&applied, &fb);
                        if let (Applied::ConfigApplied, Some(secs)) = (&applied, interval) {
                            fb.interval
                                .send_replace(Duration::from_secs(secs.max(1).into()));
                        }
                        let _ = fb.applied.send(applied);
                        true
                    }
                    Ok(Err(e)) => {
                        // Not acked: the broker delivers it again after a reconnect.
                        tracing::error!(
                            "sync: applying message {msg_id} failed: {e}; not acknowledged"
                        );
                        false
                    }
                    Err(_) => return,
                }
            }
            Check::Reject {
                msg_id,
                reason,
                detail,
            } => {
                tracing::warn!("sync: rejected message {msg_id} on {}: {detail}", p.topic);
                fb.stats.send_modify(|s| s.rejected += 1);
                let now = now_s();
                let kind = EventKind::Rejected {
                    msg_id,
                    reason,
                    detail,
                };
                match store.call(move |db| db.append_event(now, 0, kind)).await {
                    Ok(Ok(_)) => {
                        fb.outbox.notify_one();
                        true
                    }
                    Ok(Err(e)) => {
                        tracing::error!("sync: recording a rejection failed: {e}");
                        false
                    }
                    Err(_) => return,
                }
            }
        };
        if committed && let Err(e) = client.ack(&p).await {
            tracing::warn!("sync: ack after commit not sent: {e}");
        }
    }
}

fn react(applied: &Applied, fb: &Feedback) {
    match applied {
        Applied::Duplicate => fb.stats.send_modify(|s| s.duplicates += 1),
        Applied::Acked { .. } => {
            fb.stats.send_modify(|s| s.applied += 1);
            fb.outbox.notify_one();
        }
        Applied::Resync => {
            fb.stats.send_modify(|s| s.applied += 1);
            fb.rebirth.notify_one();
        }
        Applied::WaveApplied {
            resync_needed: true,
            ..
        } => {
            tracing::warn!(
                "sync: wave did not match its declared count or digest; asking for a snapshot"
            );
            fb.stats.send_modify(|s| s.applied += 1);
            fb.rebirth.notify_one();
            fb.outbox.notify_one();
        }
        Applied::ConfigApplied => fb.stats.send_modify(|s| s.applied += 1),
        Applied::Refused { .. } => {
            fb.stats.send_modify(|s| s.rejected += 1);
            fb.outbox.notify_one();
        }
        _ => {
            fb.stats.send_modify(|s| s.applied += 1);
            fb.outbox.notify_one();
        }
    }
}

/// Publishes `Birth` after every connect and on request (resync), and `Status`
/// periodically.
async fn presence(
    cfg: SyncConfig,
    store: Store,
    mut generation: watch::Receiver<Option<u64>>,
    tx: mpsc::UnboundedSender<Presence>,
    rebirth: std::sync::Arc<Notify>,
    mut interval: watch::Receiver<Duration>,
    devices: watch::Receiver<DeviceReport>,
) {
    let state_topic = topics::state(&cfg.site, &cfg.device);
    let up_topic = topics::up(&cfg.site, &cfg.device);
    let mut msg_ids = 0u64;
    let mut next_status = tokio::time::Instant::now();
    loop {
        let birth_due = tokio::select! {
            r = generation.changed() => { if r.is_err() { return; } true }
            _ = rebirth.notified() => true,
            _ = tokio::time::sleep_until(next_status) => false,
            r = interval.changed() => { if r.is_err() { return; } false }
        };
        let Some(session) = *generation.borrow() else {
            continue;
        };
        msg_ids += 1;
        let now = now_s();
        if birth_due {
            let snapshot = store.call(|db| db.birth_snapshot()).await;
            let Ok(Ok((waves, outbox_high_seq))) = snapshot else {
                tracing::error!("sync: could not read the birth snapshot");
                continue;
            };
            let birth = Envelope::new(
                msg_ids,
                Up::Birth(Birth {
                    device: cfg.device.clone(),
                    software: env!("CARGO_PKG_VERSION").into(),
                    protocol: PROTOCOL_VERSION,
                    session,
                    waves,
                    outbox_high_seq,
                }),
            );
            match oms::encode_up(&birth) {
                Ok(payload) => {
                    let _ = tx.send(Presence {
                        topic: state_topic.clone(),
                        payload,
                        qos: QoS::AtLeastOnce,
                        retain: true,
                    });
                }
                Err(e) => tracing::error!("sync: birth message: {e}"),
            }
        } else {
            let report = store
                .call(move |db| (db.outbox_stats(now), db.usage()))
                .await;
            if let Ok((Ok(o), Ok(u))) = report {
                let d = *devices.borrow();
                let status = Envelope::new(
                    msg_ids,
                    Up::Status(Status {
                        backlog: o.count as u32,
                        oldest_unacked_s: o.oldest_age_s as u32,
                        printer: d.printer,
                        print_queue: d.print_queue,
                        storage_bytes: u.bytes,
                        storage_pct: u.pct,
                    }),
                );
                if let Ok(payload) = oms::encode_up(&status) {
                    let _ = tx.send(Presence {
                        topic: up_topic.clone(),
                        payload,
                        qos: QoS::AtMostOnce,
                        retain: false,
                    });
                }
            }
            next_status = tokio::time::Instant::now() + *interval.borrow();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floorhand_protocol::envelope::encode_to_vec;
    use floorhand_protocol::examples;

    const TOPIC: &str = "floorhand/v1/s1/d1/down";

    fn reject_reason(c: Check) -> RejectReason {
        match c {
            Check::Reject { reason, .. } => reason,
            Check::Apply(..) => panic!("accepted"),
        }
    }

    #[test]
    fn a_valid_message_on_our_topic_is_applied() {
        let env = &examples::down()[0].1;
        match check(TOPIC, TOPIC, &encode_to_vec(env)) {
            Check::Apply(id, body) => assert_eq!((id, &body), (env.msg_id, &env.body)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn foreign_garbage_and_other_versions_are_rejected_with_a_reason() {
        let good = encode_to_vec(&examples::down()[0].1);
        assert_eq!(
            reject_reason(check(TOPIC, "floorhand/v1/s1/d2/down", &good)),
            RejectReason::WrongDevice
        );
        assert_eq!(
            reject_reason(check(TOPIC, TOPIC, b"\x01\xff\xff\xff")),
            RejectReason::Malformed
        );
        let mut v2 = good.clone();
        v2[0] = 2;
        assert_eq!(
            reject_reason(check(TOPIC, TOPIC, &v2)),
            RejectReason::UnsupportedVersion
        );
        assert_eq!(
            reject_reason(check(TOPIC, TOPIC, b"")),
            RejectReason::Malformed
        );
    }

    #[test]
    fn a_rejection_names_the_message_id_when_the_header_is_readable() {
        let mut bytes = encode_to_vec(&Envelope::new(77u64, ()));
        bytes.push(0xee);
        match check(TOPIC, TOPIC, &bytes) {
            Check::Reject { msg_id, .. } => assert_eq!(msg_id, 77),
            other => panic!("{other:?}"),
        }
    }
}
