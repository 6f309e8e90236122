//! The agent's MQTT link: the one I/O loop around the pure core in [`super::link`].
//!
//! rumqttc's event loop must be polled continuously from one task, and nothing may await
//! a publish inside it (rumqttc #263, #910, #1025). So one task ([`run`]) owns the event
//! loop and is the only publisher (`try_publish`, never awaiting). Between the event
//! loop's events it feeds the core the answers of store calls (which run on the store's
//! thread, so the loop keeps polling while a burst is applied), outbox changes and the
//! time, and carries out the core's actions: publish, subscribe, ack, read, apply.
//!
//! The core decides everything else: down messages applied strictly in down-seq order,
//! in one transaction per burst, before they are acknowledged (`DownAck`, and the broker's
//! ack on the same connection only); the outbox drained exactly once, in order, through
//! any outage; `Birth` after each connect, `Status` periodically. A PUBACK only marks
//! rows as sent; rows are deleted only by the OMS's `Ack`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use floorhand_protocol::limits::WINDOW;
use floorhand_protocol::oms::{Death, Down, DownHeader, PrinterState, RejectReason, Status, Up};
use floorhand_protocol::topics;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, Outgoing, Packet, Publish, QoS};
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, sleep_until};

use super::backoff::Backoff;
pub use super::link::SyncStats;
use super::link::{Action, Input, Item, Link, Outcome, Setup};
use super::mqtt::{self, BrokerSettings, SettingsError};
use crate::clock::unix_now;
use crate::ledger::Timing;
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

/// The first re-send of unacknowledged events comes after this long without progress.
pub const FIRST_RESEND: Duration = Duration::from_secs(2);

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
    let link = Link::new(Setup {
        site: cfg.site.clone(),
        device: cfg.device.clone(),
        incarnation,
        session,
        acked,
        high,
        window: WINDOW,
        timing: Timing {
            first_ms: FIRST_RESEND.as_millis() as u64,
            max_ms: cfg.resend_after.as_millis().max(1) as u64,
        },
        status_interval: cfg.status_interval,
    });
    opts.set_last_will(will(&link));
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    eventloop.set_network_options(mqtt::network_options(&cfg.broker));

    let (state_tx, state_rx) = watch::channel(LinkState::Down {
        since: unix_now(),
        error: "connecting".into(),
    });
    let (stats_tx, stats_rx) = watch::channel(SyncStats::default());
    let outbox = std::sync::Arc::new(Notify::new());
    let (applied_tx, _) = tokio::sync::broadcast::channel(256);
    let (devices_tx, devices_rx) = watch::channel(DeviceReport::default());
    let handle = SyncHandle {
        state: state_rx,
        stats: stats_rx,
        outbox: outbox.clone(),
        applied: applied_tx.clone(),
        devices: std::sync::Arc::new(devices_tx),
    };
    let io = Io {
        client,
        store,
        ops: FuturesUnordered::new(),
        applied: applied_tx,
        devices: devices_rx,
        stats: stats_tx,
    };
    let task = tokio::spawn(run(cfg, link, io, eventloop, state_tx, outbox, shutdown));
    Ok((handle, task))
}

fn will(link: &Link) -> LastWill {
    let death = Up::Death(Death {
        device: link.device().to_string(),
        session: link.session(),
    });
    LastWill::new(
        topics::state(link.site(), link.device()),
        link.encode(0, death),
        QoS::AtLeastOnce,
        true,
    )
}

/// A store call in flight; it answers with the input it produces.
type Op = Pin<Box<dyn Future<Output = Input> + Send>>;

/// The loop's I/O ends other than rumqttc's event loop (which the pending `poll` borrows).
struct Io {
    client: AsyncClient,
    store: Store,
    ops: FuturesUnordered<Op>,
    applied: tokio::sync::broadcast::Sender<Applied>,
    devices: watch::Receiver<DeviceReport>,
    stats: watch::Sender<SyncStats>,
}

impl Io {
    /// Feeds one input to the core and carries out what it says.
    fn feed(&mut self, link: &mut Link, now: u64, input: Input) {
        for action in link.handle(now, input) {
            self.act(action);
        }
        let stats = link.stats();
        self.stats.send_if_modified(|s| {
            let changed = s != stats;
            if changed {
                *s = stats.clone();
            }
            changed
        });
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Publish {
                topic,
                payload,
                qos,
                retain,
            } => {
                if let Err(e) = self.client.try_publish(topic, qos, retain, payload) {
                    // The core counted it for its PUBACK: only a new connection puts the
                    // bookkeeping right (everything unacked is sent again on it).
                    tracing::warn!("sync: could not queue a publish ({e}); reconnecting");
                    let _ = self.client.try_disconnect();
                }
            }
            Action::Subscribe(topic) => {
                if let Err(e) = self.client.try_subscribe(topic, QoS::AtLeastOnce) {
                    tracing::error!("sync: could not subscribe ({e}); reconnecting");
                    let _ = self.client.try_disconnect();
                }
            }
            Action::Disconnect => {
                let _ = self.client.try_disconnect();
            }
            Action::BrokerAck { pkid, qos } => {
                // rumqttc's ack needs only the packet id and QoS of the message.
                let mut p = Publish::new("", qos, Vec::new());
                p.pkid = pkid;
                if let Err(e) = self.client.try_ack(&p) {
                    tracing::warn!("sync: broker ack not sent: {e}");
                }
            }
            Action::ReadOutbox { session, from, to } => {
                self.op(move |db| match db.outbox_range(from, to) {
                    Ok(rows) => Input::Rows {
                        session,
                        rows: rows.into_iter().map(|r| (r.seq, r.payload)).collect(),
                    },
                    Err(e) => {
                        tracing::error!("sync: reading the outbox: {e}");
                        Input::ReadFailed
                    }
                });
            }
            Action::ReadHigh => self.op(|db| Input::OutboxHigh(db.high_seq())),
            Action::MarkSent(through) => self.op(move |db| match db.mark_sent(through) {
                Ok(()) => Input::Marked(through),
                Err(e) => {
                    tracing::warn!("sync: marking events as sent: {e}");
                    Input::MarkFailed
                }
            }),
            Action::Apply(items) => self.op(move |db| match apply(db, items) {
                Ok(outcome) => Input::Applied(outcome),
                Err(e) => Input::ApplyFailed(e.to_string()),
            }),
            Action::ReadBirth => self.op(|db| match db.birth_snapshot() {
                Ok(b) => Input::BirthSnapshot(b),
                Err(e) => {
                    tracing::error!("sync: reading the birth snapshot: {e}");
                    Input::BirthFailed
                }
            }),
            Action::ReadStatus => {
                let d = *self.devices.borrow();
                self.op(move |db| {
                    let (o, u, down) = (db.outbox_stats(unix_now()), db.usage(), db.down_point());
                    let (Ok(o), Ok(u), Ok(down)) = (o, u, down) else {
                        return Input::Status(None);
                    };
                    Input::Status(Some(Status {
                        backlog: o.count as u32,
                        oldest_unacked_s: o.oldest_age_s as u32,
                        printer: d.printer,
                        print_queue: d.print_queue,
                        storage_bytes: u.bytes,
                        storage_pct: u.pct,
                        down_oms_incarnation: down.oms_incarnation,
                        down_applied_seq: down.through,
                    }))
                });
            }
            Action::Notify(applied) => {
                let _ = self.applied.send(applied);
            }
        }
    }

    /// Runs `f` on the store thread; its answer comes back through `ops`.
    fn op(&mut self, f: impl FnOnce(&mut crate::store::Db) -> Input + Send + 'static) {
        let store = self.store.clone();
        self.ops.push(Box::pin(async move {
            match store.call(f).await {
                Ok(input) => input,
                // The store is gone (the agent is stopping): nothing more can be done.
                Err(_) => std::future::pending().await,
            }
        }));
    }
}

/// Applies one batch in one transaction, and reads the ack and down points it left.
fn apply(db: &mut crate::store::Db, items: Vec<Item>) -> Result<Outcome, StoreError> {
    let now = unix_now();
    let results = match items.first() {
        Some(Item::Refuse(head, reason, detail)) => {
            vec![db.reject_down(*head, reason.clone(), detail.clone(), now)?]
        }
        Some(Item::Unplaced(kind)) => {
            // Nothing places it in the down sequence: record the rejection and acknowledge
            // it to the broker, so it is not redelivered forever.
            db.append_event(now, 0, kind.clone())?;
            vec![Applied::Refused {
                reason: RejectReason::Malformed,
                detail: String::new(),
            }]
        }
        _ => {
            let downs: Vec<(DownHeader, &Down)> = items
                .iter()
                .filter_map(|i| match i {
                    Item::Down(h, d) => Some((*h, d)),
                    _ => None,
                })
                .collect();
            db.apply_downs(&downs, now)?
        }
    };
    Ok(Outcome {
        results,
        acked_through: db.acked_through()?,
        down: db.down_point()?,
    })
}

/// Milliseconds on tokio's monotonic clock since `base`.
fn ms_since(base: Instant) -> u64 {
    base.elapsed().as_millis() as u64
}

/// The one I/O loop: polls rumqttc's event loop without ever dropping a pending `poll`
/// (rumqttc #263, #910, #1025), and between its events feeds the core the answers of
/// store calls, outbox changes and the time. It sleeps until something happens; an idle
/// or offline agent does not wake at all.
async fn run(
    cfg: SyncConfig,
    mut link: Link,
    mut io: Io,
    mut eventloop: EventLoop,
    state: watch::Sender<LinkState>,
    outbox: std::sync::Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let base = Instant::now();
    let mut backoff = Backoff::new(cfg.backoff.0, cfg.backoff.1);
    let mut reconnect_at: Option<Instant> = None;
    let mut last_error = String::new();
    loop {
        let event = {
            let poll = eventloop.poll();
            tokio::pin!(poll);
            loop {
                let wake = link.deadline().map(|d| base + Duration::from_millis(d));
                let polling = reconnect_at.is_none();
                tokio::select! {
                    // The event loop first: the received messages of one network read
                    // are all queued before the core is told to apply them (below).
                    biased;
                    ev = &mut poll, if polling => break Some(ev),
                    _ = std::future::ready(()), if link.apply_waiting() => {
                        io.feed(&mut link, ms_since(base), Input::Tick);
                    }
                    _ = sleep_until(reconnect_at.unwrap_or(base)), if !polling => {
                        reconnect_at = None;
                    }
                    Some(input) = io.ops.next(), if !io.ops.is_empty() => {
                        io.feed(&mut link, ms_since(base), input);
                    }
                    _ = outbox.notified() => {
                        io.act(Action::ReadHigh);
                    }
                    _ = sleep_until(wake.unwrap_or(base)), if wake.is_some() => {
                        io.feed(&mut link, ms_since(base), Input::Tick);
                    }
                    r = shutdown.changed() => {
                        if r.is_err() || *shutdown.borrow() {
                            break None;
                        }
                    }
                }
            }
        };
        let Some(event) = event else {
            graceful_stop(&cfg, &link, &io.client, &mut eventloop, &state).await;
            return;
        };
        let now = ms_since(base);
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff.reset();
                // rumqttc replays requests of the last connection from `pending` when the
                // broker kept the session, and silently drops publishes when it did not.
                // The core re-sends every unacked event and the OMS every unacknowledged
                // down message, so keep nothing of the old connection: a PUBACK replayed
                // by packet id could ack a different message on this one.
                eventloop.pending.clear();
                tracing::info!(
                    session = link.session(),
                    session_present = ack.session_present,
                    "sync: connected to {}",
                    cfg.broker.url
                );
                io.feed(&mut link, now, Input::Connected);
                state.send_replace(LinkState::Up {
                    session: link.session(),
                });
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                use rumqttc::SubscribeReasonCode as R;
                let refused = ack.return_codes.iter().any(|c| matches!(c, R::Failure));
                io.feed(&mut link, now, Input::SubAck { refused });
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let input = Input::Message {
                    pkid: p.pkid,
                    qos: p.qos,
                    topic: p.topic.clone(),
                    payload: p.payload.to_vec(),
                };
                io.feed(&mut link, now, input);
            }
            // An AwaitAck's publish is written later, with its own Outgoing::Publish.
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) if pkid != 0 => {
                io.feed(&mut link, now, Input::Written(pkid));
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                io.feed(&mut link, now, Input::PubAck(ack.pkid));
            }
            Ok(_) => {}
            Err(e) => {
                let msg = describe(&e);
                let was_up = link.connected();
                if was_up || msg != last_error {
                    tracing::warn!("sync: broker link down: {msg}");
                }
                last_error = msg.clone();
                if was_up {
                    state.send_replace(LinkState::Down {
                        since: unix_now(),
                        error: msg,
                    });
                } else {
                    // Only a new reason is news: an agent offline for hours does not
                    // wake its watchers (and their logs) at every attempt.
                    state.send_if_modified(|s| match s {
                        LinkState::Down { error, .. } if *error != msg => {
                            *error = msg;
                            true
                        }
                        _ => false,
                    });
                }
                io.feed(&mut link, now, Input::Lost);
                // After a connection that was up, the next one gets a new session number
                // and the will that goes with it. An attempt that never got its ConnAck
                // used its number nowhere (no birth, no will registered): the next attempt
                // keeps it, so an agent offline for hours commits nothing per attempt.
                if was_up {
                    match io.store.call(|db| db.next_session()).await {
                        Ok(Ok(s)) => {
                            io.feed(&mut link, ms_since(base), Input::NewSession(s));
                            eventloop.mqtt_options.set_last_will(will(&link));
                        }
                        Ok(Err(e)) => tracing::error!("sync: session counter: {e}"),
                        Err(e) => tracing::error!("sync: store gone: {e}"),
                    }
                }
                reconnect_at = Some(Instant::now() + backoff.next_delay(fastrand::f64()));
            }
        }
    }
}

/// Publishes `Death` (so the OMS knows this was a clean stop), disconnects, and polls
/// until the broker has it or two seconds pass.
async fn graceful_stop(
    cfg: &SyncConfig,
    link: &Link,
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    state: &watch::Sender<LinkState>,
) {
    if link.connected() {
        let death = Up::Death(Death {
            device: cfg.device.clone(),
            session: link.session(),
        });
        let _ = client.try_publish(
            topics::state(&cfg.site, &cfg.device),
            QoS::AtLeastOnce,
            true,
            link.encode(0, death),
        );
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while eventloop.poll().await.is_ok() {}
        })
        .await;
    }
    state.send_replace(LinkState::Down {
        since: unix_now(),
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
