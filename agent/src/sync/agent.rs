//! The agent's MQTT link: applies down messages through the store, strictly in down-seq
//! order, before acknowledging them, and drains the outbox to the OMS exactly once, in
//! order, through any outage.
//!
//! Tasks (rumqttc's event loop must be polled continuously from one task, and nothing may
//! await a publish inside it: rumqttc #263, #910, #1025):
//! - the **poll task** ([`poll_task`]) owns the event loop and is the only publisher. It
//!   publishes with `try_publish` (never awaits) and only while connected.
//! - the **sender** drives the pure [`Outflow`] of the event stream: at most
//!   [`WINDOW`] events in flight, everything unacknowledged re-sent from the lowest unacked
//!   seq after each ConnAck (rumqttc silently drops in-flight publishes when the broker
//!   has no session, FIELD-NOTES) and when the OMS acknowledges nothing for a while.
//! - the **inbound** task decodes, checks and applies each down message in one store
//!   transaction (the store places it in the down sequence), then acknowledges it at
//!   application level (`DownAck`) and to the broker (manual acks, same connection only).
//! - the **presence** task publishes `Birth` after each connect and `Status` periodically.
//!
//! A PUBACK only marks rows as sent; rows are deleted only by the OMS's `Ack`.

use std::time::Duration;

use floorhand_protocol::limits::{MAX_DOWN_BYTES, WINDOW};
use floorhand_protocol::oms::{
    self, Birth, Death, Down, DownHeader, EventKind, PrinterState, RejectReason, Status, Up, UpMsg,
};
use floorhand_protocol::{DecodeError, Envelope, PROTOCOL_VERSION, topics};
use rumqttc::{AsyncClient, Event, LastWill, Outgoing, Packet, Publish, QoS};
use tokio::sync::{Notify, mpsc, watch};

use super::backoff::Backoff;
use super::mqtt::{self, BrokerSettings, SettingsError};
use super::pubacks::{Pubacks, Sent};
use crate::ledger::{Outflow, Timing};
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
    /// Longest wait between re-sends of unacknowledged events (the first comes after
    /// [`FIRST_RESEND`], doubling up to this).
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
            backoff: (Duration::from_millis(200), Duration::from_secs(5)),
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
    #[error("{id:?} is not a valid device or site id (use {chars})", id = .0, chars = topics::ID_CHARS)]
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
    /// Down messages dropped because an earlier one is missing (the OMS re-sends).
    pub out_of_order: u64,
    /// Application-level acks of down messages published.
    pub down_acks: u64,
    /// Events re-sent (published more than once).
    pub resent: u64,
}

/// The first re-send of unacknowledged events comes after this long without progress.
pub const FIRST_RESEND: Duration = Duration::from_secs(2);

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
    // The MQTT client id is `site.device`: the same device id at two sites on one broker
    // are two clients (ids never contain a `.`), and neither takes over the other's
    // connection.
    let mut opts = mqtt::options(&format!("{}.{}", cfg.site, cfg.device), &cfg.broker)?;
    let session = store.call(|db| db.next_session()).await??;
    let (incarnation, acked, high) = store
        .call(|db| {
            db.acked_through()
                .map(|a| (db.incarnation(), a, db.high_seq()))
        })
        .await??;
    let ids = Ids {
        incarnation,
        device: cfg.device.clone(),
        site: cfg.site.clone(),
    };
    opts.set_last_will(will(&ids, session));
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    eventloop.set_network_options(mqtt::network_options(&cfg.broker));

    let (state_tx, state_rx) = watch::channel(LinkState::Down {
        since: now_s(),
        error: "connecting".into(),
    });
    let (stats_tx, stats_rx) = watch::channel(SyncStats::default());
    let (gen_tx, gen_rx) = watch::channel::<Option<u64>>(None);
    let (rows_tx, rows_rx) = mpsc::channel::<Row>(WINDOW);
    let (presence_tx, presence_rx) = mpsc::unbounded_channel::<Presence>();
    let (inbound_tx, inbound_rx) = mpsc::unbounded_channel::<(u64, Publish)>();
    let (sent_tx, sent_rx) = mpsc::unbounded_channel::<u64>();
    let (acked_tx, acked_rx) = watch::channel(acked);
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

    let timing = Timing {
        first_ms: FIRST_RESEND.as_millis() as u64,
        max_ms: cfg.resend_after.as_millis().max(1) as u64,
    };
    tokio::spawn(sender(Sender {
        store: store.clone(),
        generation: gen_rx.clone(),
        rows: rows_tx,
        outbox: outbox.clone(),
        sent: sent_rx,
        acked: acked_rx,
        flow: Outflow::new(acked, high, WINDOW, timing),
        stats: stats_tx.clone(),
    }));
    tokio::spawn(inbound(
        ids.clone(),
        store.clone(),
        client.clone(),
        gen_rx.clone(),
        inbound_rx,
        Feedback {
            outbox: outbox.clone(),
            applied: applied_tx,
            rebirth: rebirth.clone(),
            interval: interval_tx,
            stats: stats_tx.clone(),
            acked: acked_tx,
            presence: presence_tx.clone(),
        },
    ));
    tokio::spawn(presence(
        ids.clone(),
        store.clone(),
        gen_rx,
        presence_tx.clone(),
        rebirth,
        interval_rx,
        devices_rx,
    ));
    let task = tokio::spawn(poll_task(PollTask {
        cfg,
        ids,
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

/// Who this agent is on the wire.
#[derive(Debug, Clone)]
struct Ids {
    incarnation: u64,
    device: String,
    site: String,
}

impl Ids {
    /// Encodes an up message with this agent's incarnation.
    fn encode(&self, msg_id: u64, body: Up) -> Result<Vec<u8>, floorhand_protocol::EncodeError> {
        oms::encode_up(&Envelope::new(
            msg_id,
            UpMsg {
                incarnation: self.incarnation,
                body,
            },
        ))
    }
}

fn will(ids: &Ids, session: u64) -> LastWill {
    let death = Up::Death(Death {
        device: ids.device.clone(),
        session,
    });
    LastWill::new(
        topics::state(&ids.site, &ids.device),
        ids.encode(0, death).unwrap_or_default(),
        QoS::AtLeastOnce,
        true,
    )
}

struct PollTask {
    cfg: SyncConfig,
    ids: Ids,
    store: Store,
    client: AsyncClient,
    eventloop: rumqttc::EventLoop,
    session: u64,
    state: watch::Sender<LinkState>,
    stats: watch::Sender<SyncStats>,
    generation: watch::Sender<Option<u64>>,
    rows: mpsc::Receiver<Row>,
    presence: mpsc::UnboundedReceiver<Presence>,
    inbound: mpsc::UnboundedSender<(u64, Publish)>,
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
    // Which PUBACK belongs to which event on this connection (pure bookkeeping).
    let mut pubacks = Pubacks::default();
    let mut held: Option<Row> = None;
    let mut last_error = String::new();
    loop {
        let event = {
            let poll = t.eventloop.poll();
            tokio::pin!(poll);
            loop {
                let room = connected && pubacks.len() < MAX_QUEUED;
                tokio::select! {
                    ev = &mut poll => break Some(ev),
                    Some(row) = t.rows.recv(), if room && held.is_none() => {
                        held = Some(row);
                    }
                    Some(p) = t.presence.recv(), if room => {
                        if t.client.try_publish(&p.topic, p.qos, p.retain, p.payload).is_ok()
                            && p.qos != QoS::AtMostOnce
                        {
                            pubacks.queued(Sent::Other);
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
                        continue; // stale: the sender starts again for the new connection
                    }
                    match t
                        .client
                        .try_publish(&up_topic, QoS::AtLeastOnce, false, row.payload)
                    {
                        Ok(()) => {
                            pubacks.queued(Sent::Event(row.seq));
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
                // rumqttc replays requests of the last connection from `pending` when the
                // broker kept the session, and silently drops publishes when it did not.
                // The sender re-sends every unacked row and the OMS re-sends every
                // unacknowledged down message, so keep nothing of the old connection: a
                // PUBACK replayed by packet id could ack a different message on this one.
                t.eventloop.pending.clear();
                pubacks.reset();
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
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                use rumqttc::SubscribeReasonCode as R;
                if ack.return_codes.iter().any(|c| matches!(c, R::Failure)) {
                    // Without the subscription no down message arrives: say so loudly and
                    // reconnect, which subscribes again.
                    tracing::error!(
                        "sync: the broker refused the subscription to {} (check its ACL for this device); reconnecting",
                        topics::down(&t.cfg.site, &t.cfg.device)
                    );
                    let _ = t.client.try_disconnect();
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let _ = t.inbound.send((t.session, p));
            }
            // An AwaitAck's publish is written later, with its own Outgoing::Publish.
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) if pkid != 0 => pubacks.written(pkid),
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if let Some(seq) = pubacks.acked(ack.pkid) {
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
                // rumqttc; the sender starts again after the next ConnAck.
                pubacks.reset();
                held = None;
                // A new connection gets a new session number, and the will that goes with it.
                match t.store.call(|db| db.next_session()).await {
                    Ok(Ok(s)) => {
                        t.session = s;
                        t.eventloop.mqtt_options.set_last_will(will(&t.ids, s));
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
        let death = Up::Death(Death {
            device: t.cfg.device.clone(),
            session: t.session,
        });
        let _ = t.client.try_publish(
            topics::state(&t.cfg.site, &t.cfg.device),
            QoS::AtLeastOnce,
            true,
            t.ids.encode(0, death).unwrap_or_default(),
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
pub(crate) fn describe(e: &rumqttc::ConnectionError) -> String {
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

/// The sender's inputs and outputs.
struct Sender {
    store: Store,
    generation: watch::Receiver<Option<u64>>,
    rows: mpsc::Sender<Row>,
    outbox: std::sync::Arc<Notify>,
    sent: mpsc::UnboundedReceiver<u64>,
    acked: watch::Receiver<u64>,
    flow: Outflow,
    stats: watch::Sender<SyncStats>,
}

/// Milliseconds on tokio's monotonic clock since `base`.
fn ms_since(base: tokio::time::Instant) -> u64 {
    base.elapsed().as_millis() as u64
}

/// Drives the event stream's [`Outflow`]: hands the rows it says to send to the poll task,
/// tagged with the connection they are for. It sleeps until something happens: new rows,
/// an ack, a PUBACK to record, a connection change, or the re-send deadline. An idle or
/// offline agent does not wake at all.
async fn sender(mut s: Sender) {
    let base = tokio::time::Instant::now();
    let mut sent_through = 0u64;
    let mut marked = 0u64;
    // Highest seq ever handed to the poll task, to count re-sends.
    let mut handed = s.flow.acked();
    let mut generation = None;
    loop {
        let now = ms_since(base);
        let g = *s.generation.borrow_and_update();
        if g != generation {
            generation = g;
            match g {
                Some(_) => s.flow.connected(now),
                None => s.flow.disconnected(),
            }
        }
        let acked = *s.acked.borrow_and_update();
        s.flow.ack(acked, now);
        if sent_through > marked {
            let up_to = sent_through;
            if let Ok(Ok(())) = s.store.call(move |db| db.mark_sent(up_to)).await {
                marked = up_to;
            }
        }
        if let (Some(g), Some(range)) = (generation, s.flow.poll(now)) {
            let (from, to) = (*range.start(), *range.end());
            let rows = match s.store.call(move |db| db.outbox_range(from, to)).await {
                Ok(Ok(rows)) => rows,
                Ok(Err(e)) => {
                    tracing::error!("sync: reading the outbox: {e}");
                    s.flow.disconnected();
                    generation = None;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(_) => return,
            };
            if from <= handed {
                let again = handed.min(to) - from + 1;
                s.stats.send_modify(|st| st.resent += again);
                if from == s.flow.acked() + 1 {
                    tracing::info!(
                        "sync: re-sending events {from}..={to} (acknowledged through {})",
                        s.flow.acked()
                    );
                }
            }
            handed = handed.max(to);
            for r in rows {
                let row = Row {
                    generation: g,
                    seq: r.seq,
                    payload: r.payload,
                };
                tokio::select! {
                    res = s.rows.send(row) => if res.is_err() { return; },
                    r = s.generation.changed() => {
                        if r.is_err() { return; }
                        break;
                    }
                }
            }
            continue;
        }
        let wake = s.flow.deadline().map(|d| base + Duration::from_millis(d));
        tokio::select! {
            _ = s.outbox.notified() => {
                match s.store.call(|db| db.high_seq()).await {
                    Ok(high) => s.flow.written(high),
                    Err(_) => return,
                }
            }
            r = s.generation.changed() => if r.is_err() { return; },
            r = s.acked.changed() => if r.is_err() { return; },
            Some(seq) = s.sent.recv() => sent_through = sent_through.max(seq),
            _ = async {
                match wake {
                    Some(w) => tokio::time::sleep_until(w).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

struct Feedback {
    outbox: std::sync::Arc<Notify>,
    applied: tokio::sync::broadcast::Sender<Applied>,
    rebirth: std::sync::Arc<Notify>,
    interval: watch::Sender<Duration>,
    stats: watch::Sender<SyncStats>,
    acked: watch::Sender<u64>,
    presence: mpsc::UnboundedSender<Presence>,
}

/// What to do with a received down message, decided before touching the store.
#[derive(Debug)]
enum Check {
    Apply {
        head: DownHeader,
        down: Down,
    },
    /// Not readable as a message. With a readable header the rejection takes the
    /// message's place in the down sequence.
    Reject {
        header: Option<DownHeader>,
        reason: RejectReason,
        detail: String,
    },
}

/// Checks topic, size, version and format. Pure.
fn check(expected_topic: &str, topic: &str, payload: &[u8]) -> Check {
    let header = oms::peek_down_header(payload);
    if topic != expected_topic {
        return Check::Reject {
            header: None,
            reason: RejectReason::WrongDevice,
            detail: format!("message on {topic}, this device listens on {expected_topic}"),
        };
    }
    if payload.len() > MAX_DOWN_BYTES {
        return Check::Reject {
            header,
            reason: RejectReason::TooLarge,
            detail: format!(
                "message is {} bytes, over the {MAX_DOWN_BYTES}-byte limit",
                payload.len()
            ),
        };
    }
    match oms::decode_down(payload) {
        Ok(env) => Check::Apply {
            head: DownHeader {
                dseq: env.msg_id,
                oms_incarnation: env.body.oms_incarnation,
                to_incarnation: env.body.to_incarnation,
            },
            down: env.body.body,
        },
        Err(e) => {
            let reason = match e {
                DecodeError::UnsupportedVersion { .. } => RejectReason::UnsupportedVersion,
                DecodeError::TooLarge { .. } => RejectReason::TooLarge,
                DecodeError::Limit(_) => RejectReason::Invalid,
                _ => RejectReason::Malformed,
            };
            // Another protocol version's header means nothing in ours.
            let header = header.filter(|_| reason != RejectReason::UnsupportedVersion);
            Check::Reject {
                header,
                reason,
                detail: e.to_string(),
            }
        }
    }
}

/// Most down messages applied in one store transaction (and acknowledged by one
/// `DownAck`): the messages already waiting when the first is taken.
const DOWN_BATCH: usize = 256;

/// Applies down messages in the order received, each placed in the down sequence by the
/// store, and acknowledges after the commit: `DownAck` at application level (one per
/// batch), the broker's PUBACK on the same connection only. Messages that are already
/// waiting are applied together in one transaction (one disk sync for a burst). A failed
/// commit is retried with backoff; nothing after it is applied before it.
async fn inbound(
    ids: Ids,
    store: Store,
    client: AsyncClient,
    generation: watch::Receiver<Option<u64>>,
    mut rx: mpsc::UnboundedReceiver<(u64, Publish)>,
    fb: Feedback,
) {
    let expected = topics::down(&ids.site, &ids.device);
    let up_topic = topics::up(&ids.site, &ids.device);
    let mut msg_ids = 0u64;
    let mut next: Option<(u64, Publish)> = None;
    loop {
        let first = match next.take() {
            Some(m) => m,
            None => match rx.recv().await {
                Some(m) => m,
                None => return,
            },
        };
        // A batch: the first message and those already waiting, up to the first that is
        // not a well-formed message (a rejection goes alone).
        let mut batch = vec![(
            first.0,
            check(&expected, &first.1.topic, &first.1.payload),
            first.1,
        )];
        if matches!(batch[0].1, Check::Apply { .. }) {
            while batch.len() < DOWN_BATCH {
                let Ok((conn, p)) = rx.try_recv() else { break };
                let verdict = check(&expected, &p.topic, &p.payload);
                if matches!(verdict, Check::Apply { .. }) {
                    batch.push((conn, verdict, p));
                } else {
                    next = Some((conn, p));
                    break;
                }
            }
        }
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let results = loop {
            let now = now_s();
            let res = match &batch[0].1 {
                Check::Apply { .. } => {
                    let items: Vec<(DownHeader, Down)> = batch
                        .iter()
                        .filter_map(|(_, v, _)| match v {
                            Check::Apply { head, down } => Some((*head, down.clone())),
                            Check::Reject { .. } => None,
                        })
                        .collect();
                    store
                        .call(move |db| {
                            let refs: Vec<(DownHeader, &Down)> =
                                items.iter().map(|(h, d)| (*h, d)).collect();
                            db.apply_downs(&refs, now)
                        })
                        .await
                }
                Check::Reject {
                    header: Some(head),
                    reason,
                    detail,
                } => {
                    let (head, reason, detail) = (*head, reason.clone(), detail.clone());
                    store
                        .call(move |db| db.reject_down(head, reason, detail, now).map(|a| vec![a]))
                        .await
                }
                Check::Reject {
                    header: None,
                    reason,
                    detail,
                } => {
                    // Nothing places it in the down sequence: record the rejection and
                    // acknowledge it to the broker, so it is not redelivered forever.
                    let kind = EventKind::Rejected {
                        msg_id: 0,
                        reason: reason.clone(),
                        detail: detail.clone(),
                    };
                    store
                        .call(move |db| {
                            db.append_event(now, 0, kind).map(|_| {
                                vec![Applied::Refused {
                                    reason: RejectReason::Malformed,
                                    detail: String::new(),
                                }]
                            })
                        })
                        .await
                }
            };
            match res {
                Ok(Ok(applied)) => break Some(applied),
                Ok(Err(e)) => {
                    let delay = backoff.next_delay(fastrand::f64());
                    tracing::error!(
                        "sync: applying {} down message(s) failed: {e}; retrying in {delay:?}",
                        batch.len()
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(_) => break None,
            }
        };
        let Some(results) = results else { return };
        let mut sequenced = false;
        for ((conn, verdict, p), applied) in batch.iter().zip(results) {
            if let Check::Reject { reason, detail, .. } = verdict {
                tracing::warn!(
                    "sync: rejected a message on {}: {reason:?}: {detail}",
                    p.topic
                );
                fb.stats.send_modify(|s| s.rejected += 1);
                fb.outbox.notify_one();
            }
            sequenced |= match verdict {
                Check::Apply { down, .. } => down.is_sequenced(),
                Check::Reject { header, .. } => header.is_some(),
            };
            if let (
                Applied::ConfigApplied,
                Check::Apply {
                    down: Down::ConfigUpdate(c),
                    ..
                },
            ) = (&applied, verdict)
                && let Some(secs) = c.status_interval_s
            {
                fb.interval
                    .send_replace(Duration::from_secs(secs.max(1).into()));
            }
            if let Applied::Acked { .. } = applied
                && let Ok(Ok(a)) = store.call(|db| db.acked_through()).await
            {
                fb.acked.send_replace(a);
            }
            react(&applied, &fb);
            let _ = fb.applied.send(applied);
            // The broker's ack, on the connection the message came on only.
            if *generation.borrow() == Some(*conn)
                && let Err(e) = client.ack(p).await
            {
                tracing::warn!("sync: ack after commit not sent: {e}");
            }
        }
        if sequenced {
            msg_ids += 1;
            send_down_ack(&ids, &store, &up_topic, msg_ids, &fb).await;
        }
    }
}

/// Publishes the device's down ack point (`DownAck`).
async fn send_down_ack(ids: &Ids, store: &Store, up_topic: &str, msg_id: u64, fb: &Feedback) {
    let Ok(Ok(point)) = store.call(|db| db.down_point()).await else {
        return;
    };
    let ack = Up::DownAck {
        oms_incarnation: point.oms_incarnation,
        through: point.through,
    };
    if let Ok(payload) = ids.encode(msg_id, ack) {
        let _ = fb.presence.send(Presence {
            topic: up_topic.to_string(),
            payload,
            qos: QoS::AtLeastOnce,
            retain: false,
        });
        fb.stats.send_modify(|s| s.down_acks += 1);
    }
}

fn react(applied: &Applied, fb: &Feedback) {
    match applied {
        Applied::Duplicate => fb.stats.send_modify(|s| s.duplicates += 1),
        Applied::OutOfOrder { .. } => fb.stats.send_modify(|s| s.out_of_order += 1),
        Applied::ForeignAck => {
            tracing::warn!("sync: ignored an Ack for another incarnation of this device");
        }
        Applied::NotForMe { to_incarnation } => {
            tracing::warn!(
                "sync: ignored a down message for incarnation {to_incarnation:016x} of this device (a replaced database's); the OMS re-addresses it after this birth"
            );
        }
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
                "sync: wave did not match its declared count or digest; asking for a repair"
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
/// periodically while connected. While the link is down it sleeps until it is back.
async fn presence(
    ids: Ids,
    store: Store,
    mut generation: watch::Receiver<Option<u64>>,
    tx: mpsc::UnboundedSender<Presence>,
    rebirth: std::sync::Arc<Notify>,
    mut interval: watch::Receiver<Duration>,
    devices: watch::Receiver<DeviceReport>,
) {
    let state_topic = topics::state(&ids.site, &ids.device);
    let up_topic = topics::up(&ids.site, &ids.device);
    // Up message ids other than events: a counter, far from the inbound task's DownAck ids.
    let mut msg_ids = 1u64 << 40;
    let mut next_status = tokio::time::Instant::now();
    loop {
        let connected = generation.borrow().is_some();
        let birth_due = tokio::select! {
            r = generation.changed() => { if r.is_err() { return; } true }
            _ = rebirth.notified() => true,
            _ = tokio::time::sleep_until(next_status), if connected => false,
            r = interval.changed() => { if r.is_err() { return; } false }
        };
        // Whatever woke us, the next status is one interval away: never a busy loop.
        next_status = tokio::time::Instant::now() + *interval.borrow();
        let Some(session) = *generation.borrow() else {
            continue;
        };
        msg_ids += 1;
        let now = now_s();
        if birth_due {
            let snapshot = store.call(|db| db.birth_snapshot()).await;
            let Ok(Ok(b)) = snapshot else {
                tracing::error!("sync: could not read the birth snapshot");
                continue;
            };
            let birth = Up::Birth(Birth {
                device: ids.device.clone(),
                software: env!("CARGO_PKG_VERSION").into(),
                protocol: PROTOCOL_VERSION,
                session,
                waves: b.waves,
                pack_orders: b.pack_orders,
                outbox_high_seq: b.outbox_high_seq,
                outbox_acked_seq: b.outbox_acked_seq,
                down_oms_incarnation: b.down.oms_incarnation,
                down_applied_seq: b.down.through,
            });
            match ids.encode(msg_ids, birth) {
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
                .call(move |db| (db.outbox_stats(now), db.usage(), db.down_point()))
                .await;
            if let Ok((Ok(o), Ok(u), Ok(down))) = report {
                let d = *devices.borrow();
                let status = Up::Status(Status {
                    backlog: o.count as u32,
                    oldest_unacked_s: o.oldest_age_s as u32,
                    printer: d.printer,
                    print_queue: d.print_queue,
                    storage_bytes: u.bytes,
                    storage_pct: u.pct,
                    down_oms_incarnation: down.oms_incarnation,
                    down_applied_seq: down.through,
                });
                if let Ok(payload) = ids.encode(msg_ids, status) {
                    let _ = tx.send(Presence {
                        topic: up_topic.clone(),
                        payload,
                        qos: QoS::AtMostOnce,
                        retain: false,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floorhand_protocol::envelope::encode_to_vec;
    use floorhand_protocol::examples;

    const TOPIC: &str = "floorhand/v1/s1/d1/down";

    /// What `check` must decide for one payload on one topic.
    fn check_case(topic: &str, payload: &[u8]) -> (Option<RejectReason>, Option<(u64, u64)>) {
        match check(TOPIC, topic, payload) {
            Check::Apply { head, .. } => (None, Some((head.dseq, head.oms_incarnation))),
            Check::Reject { reason, header, .. } => {
                (Some(reason), header.map(|h| (h.dseq, h.oms_incarnation)))
            }
        }
    }

    #[test]
    fn a_valid_message_on_our_topic_is_applied_in_its_place() {
        let env = &examples::down()[0].1;
        match check(TOPIC, TOPIC, &encode_to_vec(env)) {
            Check::Apply { head, down } => assert_eq!(
                (head.oms_incarnation, head.to_incarnation, head.dseq, &down),
                (
                    env.body.oms_incarnation,
                    env.body.to_incarnation,
                    env.msg_id,
                    &env.body.body
                )
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn foreign_garbage_and_other_versions_are_rejected_with_a_reason_and_a_place() {
        let good = encode_to_vec(&examples::down()[0].1);
        let place = Some((9001, examples::OMS_INCARNATION));
        let mut v1 = good.clone();
        v1[0] = 1;
        let mut cut = good.clone();
        cut.truncate(good.len() - 3);
        let huge = vec![floorhand_protocol::PROTOCOL_VERSION; MAX_DOWN_BYTES + 1];
        for (topic, payload, want) in [
            (
                "floorhand/v1/s1/d2/down",
                &good[..],
                (Some(RejectReason::WrongDevice), None),
            ),
            (
                TOPIC,
                &b"\x02\xff\xff\xff"[..],
                (Some(RejectReason::Malformed), None),
            ),
            (
                TOPIC,
                &v1[..],
                (Some(RejectReason::UnsupportedVersion), None),
            ),
            (TOPIC, &b""[..], (Some(RejectReason::Malformed), None)),
            (TOPIC, &cut[..], (Some(RejectReason::Malformed), place)),
            (
                TOPIC,
                &huge[..],
                (Some(RejectReason::TooLarge), Some((2, 2))),
            ),
        ] {
            assert_eq!(
                check_case(topic, payload),
                want,
                "{topic} {} bytes",
                payload.len()
            );
        }
    }
}
