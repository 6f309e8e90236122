//! The agent link's pure core, like rumqttc's `state.rs` beside its `eventloop.rs`: every
//! decision of the MQTT link as a state machine, events in, actions out, with no I/O and
//! no clock of its own. [`super::agent`] is the one I/O loop that feeds it what happened
//! (broker packets, store results, the time) and carries its [`Action`]s out.
//!
//! What it decides:
//! - **events up**: which outbox seqs to read and publish, through the pure [`Outflow`]
//!   (window, cumulative acks, re-send from the lowest unacked after a connect and after
//!   a silence); which PUBACK belongs to which event on this connection ([`Pubacks`]);
//!   which seqs to mark as handed to the broker.
//! - **down messages**: each one checked ([`check`]), then applied in arrival order, a
//!   burst in one store transaction; after the commit, a `DownAck` for the batch and the
//!   broker's ack on the connection the message came on only. A failed apply is retried
//!   with backoff and nothing after it is applied first.
//! - **presence**: `Birth` after every connect and on the OMS's request, `Status` every
//!   interval while connected.
//!
//! Time is milliseconds on the caller's monotonic clock; [`Link::deadline`] says when to
//! call again with [`Input::Tick`] if nothing else happens. An idle or offline link has
//! no deadline at all.

use std::collections::VecDeque;
use std::time::Duration;

use floorhand_protocol::limits::MAX_DOWN_BYTES;
use floorhand_protocol::oms::{
    self, Birth, Down, DownHeader, EventKind, RejectReason, Status, Up, UpMsg,
};
use floorhand_protocol::{DecodeError, Envelope, PROTOCOL_VERSION, topics};
use rumqttc::QoS;

use super::backoff::Backoff;
use super::pubacks::{Pubacks, Sent};
use crate::ledger::{Outflow, Timing};
use crate::store::{Applied, BirthSnapshot, DownPoint};

/// Most publishes kept queued in rumqttc's request channel (capacity 1024) or in flight,
/// so a publish never fails for lack of room.
pub const MAX_QUEUED: usize = 600;

/// Most down messages applied in one store transaction (and acknowledged by one
/// `DownAck`): the messages already waiting when the first is taken.
pub const DOWN_BATCH: usize = 256;

/// Most received down messages acknowledged to the broker before they are applied.
/// Mosquitto sends a subscriber at most 20 unacknowledged QoS 1 messages
/// (`max_inflight_messages`), so a broker ack held until the commit made every transaction
/// hold at most 20 messages, one disk sync each. The ack to the broker only ends its
/// redelivery: nothing is lost by giving it early, because the OMS side keeps each message
/// until the agent's `DownAck` and re-sends after a Birth or a timeout. Beyond this many
/// waiting, acks follow the commit again and the broker's limit slows the sender, so the
/// inbox stays bounded whatever a publisher does.
pub const ACK_AHEAD: usize = 1024;

/// Most received down messages kept waiting for their commit. Past it a QoS 0 message is
/// dropped on arrival (nothing else bounds a publisher at QoS 0; the OMS side keeps at
/// most `DOWN_WINDOW` in flight and re-sends what is not acknowledged). QoS 1 messages
/// never reach it: past [`ACK_AHEAD`] their broker acks wait, and the broker sends no more.
pub const MAX_WAITING: usize = 4 * ACK_AHEAD;

/// Wait before retrying a store read that failed.
const STORE_RETRY_MS: u64 = 1000;

/// What the link is, at start.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Site id.
    pub site: String,
    /// Device id.
    pub device: String,
    /// This database's incarnation.
    pub incarnation: u64,
    /// Session number of the first connection.
    pub session: u64,
    /// Highest event seq the OMS acknowledged.
    pub acked: u64,
    /// Highest event seq written.
    pub high: u64,
    /// Events in flight at most.
    pub window: usize,
    /// Re-send timing of unacknowledged events.
    pub timing: Timing,
    /// Time between `Status` messages.
    pub status_interval: Duration,
}

/// Something that happened, fed to [`Link::handle`].
#[derive(Debug)]
pub enum Input {
    /// The broker accepted the connection (the I/O loop dropped rumqttc's replays).
    Connected,
    /// The connection is gone.
    Lost,
    /// The next connection has this session number.
    NewSession(u64),
    /// The broker answered the subscription; `refused` if it failed.
    SubAck {
        /// Whether the broker refused it.
        refused: bool,
    },
    /// A message arrived on the current connection.
    Message {
        /// Its packet id (for the broker's ack).
        pkid: u16,
        /// Its QoS.
        qos: QoS,
        /// Its topic.
        topic: String,
        /// Its bytes.
        payload: Vec<u8>,
    },
    /// rumqttc wrote a QoS 1 publish with this packet id.
    Written(u16),
    /// The broker acknowledged this packet id.
    PubAck(u16),
    /// The outbox holds seqs through this one.
    OutboxHigh(u64),
    /// Rows read for [`Action::ReadOutbox`] of `session`, in seq order.
    Rows {
        /// The session the read was for.
        session: u64,
        /// `(seq, payload)`.
        rows: Vec<(u64, Vec<u8>)>,
    },
    /// [`Action::ReadOutbox`] failed.
    ReadFailed,
    /// [`Action::MarkSent`] is committed through this seq.
    Marked(u64),
    /// [`Action::MarkSent`] failed.
    MarkFailed,
    /// [`Action::Apply`] committed.
    Applied(Outcome),
    /// [`Action::Apply`] failed; nothing of the batch is applied.
    ApplyFailed(String),
    /// [`Action::ReadBirth`]'s answer.
    BirthSnapshot(BirthSnapshot),
    /// [`Action::ReadBirth`] failed.
    BirthFailed,
    /// [`Action::ReadStatus`]'s answer (`None`: the read failed).
    Status(Option<Status>),
    /// Nothing but time passed.
    Tick,
}

/// What [`Action::Apply`] committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// One result per item, in order.
    pub results: Vec<Applied>,
    /// The event ack point after the commit.
    pub acked_through: u64,
    /// The down point after the commit.
    pub down: DownPoint,
}

/// One item of a batch to apply.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A readable message, placed by its header.
    Down(DownHeader, Down),
    /// An unreadable message whose header places it: refused in its place.
    Refuse(DownHeader, RejectReason, String),
    /// An unreadable message without a place: only a `Rejected` event (`msg_id` 0).
    Unplaced(EventKind),
}

/// Something for the I/O loop to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Publish (queue in rumqttc). A QoS 1 publish is already counted for its PUBACK: if
    /// it cannot be queued, the I/O loop must drop the connection.
    Publish {
        /// Topic.
        topic: String,
        /// Bytes.
        payload: Vec<u8>,
        /// QoS.
        qos: QoS,
        /// Retained.
        retain: bool,
    },
    /// Subscribe to this topic at QoS 1.
    Subscribe(String),
    /// Drop the connection (it reconnects and subscribes again).
    Disconnect,
    /// Acknowledge a message to the broker.
    BrokerAck {
        /// Packet id.
        pkid: u16,
        /// Its QoS.
        qos: QoS,
    },
    /// Read outbox rows `from..=to` for `session`; answer [`Input::Rows`].
    ReadOutbox {
        /// The connection the rows are for.
        session: u64,
        /// First seq.
        from: u64,
        /// Last seq.
        to: u64,
    },
    /// Read the highest outbox seq; answer [`Input::OutboxHigh`].
    ReadHigh,
    /// Mark rows through this seq as handed to the broker; answer [`Input::Marked`].
    MarkSent(u64),
    /// Apply these in one transaction; answer [`Input::Applied`] or
    /// [`Input::ApplyFailed`].
    Apply(Vec<Item>),
    /// Read the birth snapshot; answer [`Input::BirthSnapshot`].
    ReadBirth,
    /// Read the status figures; answer [`Input::Status`].
    ReadStatus,
    /// Tell the workflows what a down message did.
    Notify(Applied),
}

/// A received message waiting to be applied.
#[derive(Debug)]
struct Received {
    /// The session it came on.
    session: u64,
    pkid: u16,
    qos: QoS,
    topic: String,
    check: Verdict,
    /// Acknowledged to the broker on receipt (see [`ACK_AHEAD`]).
    broker_acked: bool,
}

/// What to do with a received down message, decided before touching the store.
#[derive(Debug)]
pub enum Verdict {
    /// Readable.
    Apply {
        /// Its place.
        head: DownHeader,
        /// The message.
        down: Down,
    },
    /// Not readable as a message. With a readable header the rejection takes the
    /// message's place in the down sequence.
    Reject {
        /// Its place, if the header could be read.
        header: Option<DownHeader>,
        /// Why.
        reason: RejectReason,
        /// For a person.
        detail: String,
    },
}

/// Checks topic, size, version and format.
pub fn check(expected_topic: &str, topic: &str, payload: &[u8]) -> Verdict {
    let header = oms::peek_down_header(payload);
    if topic != expected_topic {
        return Verdict::Reject {
            header: None,
            reason: RejectReason::WrongDevice,
            detail: format!("message on {topic}, this device listens on {expected_topic}"),
        };
    }
    if payload.len() > MAX_DOWN_BYTES {
        return Verdict::Reject {
            header,
            reason: RejectReason::TooLarge,
            detail: format!(
                "message is {} bytes, over the {MAX_DOWN_BYTES}-byte limit",
                payload.len()
            ),
        };
    }
    match oms::decode_down(payload) {
        Ok(env) => Verdict::Apply {
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
            Verdict::Reject {
                header,
                reason,
                detail: e.to_string(),
            }
        }
    }
}

impl Verdict {
    fn item(&self) -> Item {
        match self {
            Verdict::Apply { head, down } => Item::Down(*head, down.clone()),
            Verdict::Reject {
                header: Some(head),
                reason,
                detail,
            } => Item::Refuse(*head, reason.clone(), detail.clone()),
            Verdict::Reject {
                header: None,
                reason,
                detail,
            } => Item::Unplaced(EventKind::Rejected {
                msg_id: 0,
                reason: reason.clone(),
                detail: detail.clone(),
            }),
        }
    }

    /// Whether it takes a place in the down sequence (so a `DownAck` follows).
    fn sequenced(&self) -> bool {
        match self {
            Verdict::Apply { down, .. } => down.is_sequenced(),
            Verdict::Reject { header, .. } => header.is_some(),
        }
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
    /// QoS 0 down messages dropped on arrival because [`MAX_WAITING`] were waiting (the
    /// OMS side re-sends what is not acknowledged).
    pub dropped: u64,
}

/// The link's state. See the module documentation.
#[derive(Debug)]
pub struct Link {
    site: String,
    device: String,
    incarnation: u64,
    up_topic: String,
    state_topic: String,
    down_topic: String,
    session: u64,
    connected: bool,
    pubacks: Pubacks,
    flow: Outflow,
    /// Highest seq ever handed out for publishing, to count re-sends.
    handed: u64,
    /// Rows read for this connection, waiting for room.
    rows: VecDeque<(u64, Vec<u8>)>,
    /// Presence and down acks waiting for room: `(topic, payload, qos, retain)`.
    control: VecDeque<(String, Vec<u8>, QoS, bool)>,
    reading: bool,
    read_retry_at: Option<u64>,
    sent_through: u64,
    marked: u64,
    marking: bool,
    mark_retry_at: Option<u64>,
    inbox: VecDeque<Received>,
    /// The batch being applied (or waiting for its retry).
    batch: Vec<Received>,
    /// Messages of this session waiting for their broker ack until their commit: while
    /// any does, later ones wait too (MQTT wants PUBACKs in the order of receipt).
    deferred_acks: usize,
    /// [`SyncStats::dropped`] when a message was last taken in: a drop after it starts a
    /// new run of drops, logged once.
    dropped_logged: u64,
    applying: bool,
    apply_backoff: Backoff,
    apply_retry_at: Option<u64>,
    birth_due: bool,
    birth_reading: bool,
    birth_retry_at: Option<u64>,
    status_interval_ms: u64,
    next_status: u64,
    status_reading: bool,
    /// Up message ids of down acks, and of births and statuses (far apart).
    down_ack_ids: u64,
    presence_ids: u64,
    stats: SyncStats,
}

impl Link {
    /// A link that is not connected yet.
    pub fn new(s: Setup) -> Self {
        Link {
            up_topic: topics::up(&s.site, &s.device),
            state_topic: topics::state(&s.site, &s.device),
            down_topic: topics::down(&s.site, &s.device),
            site: s.site,
            device: s.device,
            incarnation: s.incarnation,
            session: s.session,
            connected: false,
            pubacks: Pubacks::default(),
            flow: Outflow::new(s.acked, s.high, s.window, s.timing),
            handed: s.acked,
            rows: VecDeque::new(),
            control: VecDeque::new(),
            reading: false,
            read_retry_at: None,
            sent_through: 0,
            marked: 0,
            marking: false,
            mark_retry_at: None,
            inbox: VecDeque::new(),
            batch: Vec::new(),
            deferred_acks: 0,
            dropped_logged: 0,
            applying: false,
            apply_backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            apply_retry_at: None,
            birth_due: false,
            birth_reading: false,
            birth_retry_at: None,
            status_interval_ms: s.status_interval.as_millis().max(1) as u64,
            next_status: 0,
            status_reading: false,
            down_ack_ids: 0,
            presence_ids: 1 << 40,
            stats: SyncStats::default(),
        }
    }

    /// The current (or next) connection's session number.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// Whether a connection is up.
    pub fn connected(&self) -> bool {
        self.connected
    }

    /// Counters.
    pub fn stats(&self) -> &SyncStats {
        &self.stats
    }

    /// Site id.
    pub fn site(&self) -> &str {
        &self.site
    }

    /// Device id.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Encodes an up message with this agent's incarnation.
    pub fn encode(&self, msg_id: u64, body: Up) -> Vec<u8> {
        // Every up message the agent builds is far below the protocol's limits.
        oms::encode_up(&Envelope::new(
            msg_id,
            UpMsg {
                incarnation: self.incarnation,
                body,
            },
        ))
        .unwrap_or_default()
    }

    /// When to feed [`Input::Tick`] if nothing else happens, if ever.
    pub fn deadline(&self) -> Option<u64> {
        let mut d = [
            self.read_retry_at,
            self.mark_retry_at,
            self.apply_retry_at,
            self.birth_retry_at,
        ]
        .into_iter()
        .flatten()
        .min();
        if self.connected {
            let status = (!self.status_reading).then_some(self.next_status);
            for t in [self.flow.deadline(), status].into_iter().flatten() {
                d = Some(d.map_or(t, |d: u64| d.min(t)));
            }
        }
        d
    }

    /// Whether received messages wait for [`Input::Tick`] to be applied. The I/O loop
    /// feeds that tick once rumqttc has no more packets ready, so the messages of one
    /// network read go into one transaction, and those that arrive during a commit go
    /// into the next (with the broker acked on receipt, see [`ACK_AHEAD`], a burst is
    /// not held to Mosquitto's 20 in flight per transaction).
    pub fn apply_waiting(&self) -> bool {
        !self.applying
            && self.apply_retry_at.is_none()
            && (!self.batch.is_empty() || !self.inbox.is_empty())
    }

    /// Feeds one input; returns what to do, in order. A received message is only queued
    /// (see [`Link::apply_waiting`]), unless a whole batch is waiting.
    pub fn handle(&mut self, now: u64, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        let mut start_apply = true;
        match input {
            Input::Connected => {
                self.connected = true;
                self.deferred_acks = 0;
                self.pubacks.reset();
                self.rows.clear();
                self.control.clear();
                self.flow.connected(now);
                self.stats.connects += 1;
                self.birth_due = true;
                self.birth_retry_at = None;
                self.next_status = now + self.status_interval_ms;
                out.push(Action::Subscribe(self.down_topic.clone()));
            }
            Input::Lost => {
                self.connected = false;
                self.deferred_acks = 0;
                self.pubacks.reset();
                self.rows.clear();
                self.control.clear();
                self.flow.disconnected();
            }
            Input::NewSession(s) => self.session = s,
            Input::SubAck { refused } => {
                if refused {
                    // Without the subscription no down message arrives: say so loudly
                    // and reconnect, which subscribes again.
                    tracing::error!(
                        "sync: the broker refused the subscription to {} (check its ACL for this device); reconnecting",
                        self.down_topic
                    );
                    out.push(Action::Disconnect);
                }
            }
            Input::Message {
                pkid,
                qos,
                topic,
                payload,
            } => {
                let waiting = self.inbox.len() + self.batch.len();
                if qos == QoS::AtMostOnce && waiting >= MAX_WAITING {
                    if self.stats.dropped == self.dropped_logged {
                        tracing::warn!(
                            "sync: {waiting} down messages wait for the store; dropping QoS 0 \
                             ones until there is room (the OMS side re-sends them)"
                        );
                    }
                    self.stats.dropped += 1;
                    self.pump(now, &mut out, true);
                    return out;
                }
                self.dropped_logged = self.stats.dropped;
                let check = check(&self.down_topic, &topic, &payload);
                let broker_acked = self.connected && self.deferred_acks == 0 && waiting < ACK_AHEAD;
                if broker_acked {
                    out.push(Action::BrokerAck { pkid, qos });
                } else {
                    self.deferred_acks += 1;
                }
                self.inbox.push_back(Received {
                    session: self.session,
                    pkid,
                    qos,
                    topic,
                    check,
                    broker_acked,
                });
                start_apply = self.inbox.len() >= DOWN_BATCH;
            }
            Input::Written(pkid) => self.pubacks.written(pkid),
            Input::PubAck(pkid) => {
                if let Some(seq) = self.pubacks.acked(pkid) {
                    self.sent_through = self.sent_through.max(seq);
                    self.stats.sent_through = self.stats.sent_through.max(seq);
                }
            }
            Input::OutboxHigh(high) => self.flow.written(high),
            Input::Rows { session, rows } => {
                self.reading = false;
                // Rows of an earlier connection: the flow was rewound when it was lost.
                if self.connected && session == self.session {
                    self.rows.extend(rows);
                }
            }
            Input::ReadFailed => {
                self.reading = false;
                // Read the same seqs again in a moment.
                self.flow.connected(now);
                self.read_retry_at = Some(now + STORE_RETRY_MS);
            }
            Input::Marked(through) => {
                self.marking = false;
                self.marked = self.marked.max(through);
            }
            Input::MarkFailed => {
                self.marking = false;
                self.mark_retry_at = Some(now + STORE_RETRY_MS);
            }
            Input::Applied(outcome) => self.applied(now, outcome, &mut out),
            Input::ApplyFailed(e) => {
                self.applying = false;
                let delay = self.apply_backoff.next_delay(0.5);
                tracing::error!(
                    "sync: applying {} down message(s) failed: {e}; retrying in {delay:?}",
                    self.batch.len()
                );
                self.apply_retry_at = Some(now + delay.as_millis() as u64);
            }
            Input::BirthSnapshot(b) => {
                self.birth_reading = false;
                if self.connected {
                    self.birth(now, b);
                }
            }
            Input::BirthFailed => {
                tracing::error!("sync: could not read the birth snapshot; trying again");
                self.birth_reading = false;
                self.birth_due = true;
                self.birth_retry_at = Some(now + STORE_RETRY_MS);
            }
            Input::Status(status) => {
                self.status_reading = false;
                if let (Some(status), true) = (status, self.connected) {
                    self.presence_ids += 1;
                    let payload = self.encode(self.presence_ids, Up::Status(status));
                    let topic = self.up_topic.clone();
                    self.control
                        .push_back((topic, payload, QoS::AtMostOnce, false));
                }
            }
            Input::Tick => {}
        }
        self.pump(now, &mut out, start_apply);
        out
    }

    /// Starts whatever work is due: store reads and writes, applies, publishes.
    fn pump(&mut self, now: u64, out: &mut Vec<Action>, start_apply: bool) {
        for at in [
            &mut self.read_retry_at,
            &mut self.mark_retry_at,
            &mut self.apply_retry_at,
            &mut self.birth_retry_at,
        ] {
            if at.is_some_and(|t| now >= t) {
                *at = None;
            }
        }
        // Down messages: one batch at a time, in arrival order.
        if start_apply && !self.applying && self.apply_retry_at.is_none() {
            if self.batch.is_empty() {
                self.take_batch();
            }
            if !self.batch.is_empty() {
                self.applying = true;
                out.push(Action::Apply(
                    self.batch.iter().map(|r| r.check.item()).collect(),
                ));
            }
        }
        if self.sent_through > self.marked && !self.marking && self.mark_retry_at.is_none() {
            self.marking = true;
            out.push(Action::MarkSent(self.sent_through));
        }
        if !self.connected {
            return;
        }
        if self.birth_due && !self.birth_reading && self.birth_retry_at.is_none() {
            self.birth_due = false;
            self.birth_reading = true;
            out.push(Action::ReadBirth);
        }
        if now >= self.next_status && !self.status_reading {
            // Whatever happens, the next status is one interval away: never a busy loop.
            self.next_status = now + self.status_interval_ms;
            self.status_reading = true;
            out.push(Action::ReadStatus);
        }
        if !self.reading
            && self.rows.is_empty()
            && self.read_retry_at.is_none()
            && let Some(range) = self.flow.poll(now)
        {
            let (from, to) = (*range.start(), *range.end());
            if from <= self.handed {
                self.stats.resent += self.handed.min(to) - from + 1;
                if from == self.flow.acked() + 1 {
                    tracing::info!(
                        "sync: re-sending events {from}..={to} (acknowledged through {})",
                        self.flow.acked()
                    );
                }
            }
            self.handed = self.handed.max(to);
            self.reading = true;
            out.push(Action::ReadOutbox {
                session: self.session,
                from,
                to,
            });
        }
        // Publish what waits, control first, while rumqttc has room.
        while self.pubacks.len() < MAX_QUEUED {
            if let Some((topic, payload, qos, retain)) = self.control.pop_front() {
                if qos != QoS::AtMostOnce {
                    self.pubacks.queued(Sent::Other);
                }
                out.push(Action::Publish {
                    topic,
                    payload,
                    qos,
                    retain,
                });
            } else if let Some((seq, payload)) = self.rows.pop_front() {
                self.pubacks.queued(Sent::Event(seq));
                self.stats.published += 1;
                out.push(Action::Publish {
                    topic: self.up_topic.clone(),
                    payload,
                    qos: QoS::AtLeastOnce,
                    retain: false,
                });
            } else {
                break;
            }
        }
    }

    /// The next batch: the first waiting message and those behind it, up to the first that
    /// is not a well-formed message (a rejection goes alone).
    fn take_batch(&mut self) {
        let Some(first) = self.inbox.pop_front() else {
            return;
        };
        let readable = matches!(first.check, Verdict::Apply { .. });
        self.batch.push(first);
        while readable
            && self.batch.len() < DOWN_BATCH
            && self
                .inbox
                .front()
                .is_some_and(|r| matches!(r.check, Verdict::Apply { .. }))
        {
            self.batch.extend(self.inbox.pop_front());
        }
    }

    fn applied(&mut self, now: u64, outcome: Outcome, out: &mut Vec<Action>) {
        self.applying = false;
        self.apply_backoff.reset();
        let batch = std::mem::take(&mut self.batch);
        let mut sequenced = false;
        let mut outbox_changed = false;
        for (r, applied) in batch.iter().zip(outcome.results) {
            if let Verdict::Reject { reason, detail, .. } = &r.check {
                tracing::warn!(
                    "sync: rejected a message on {}: {reason:?}: {detail}",
                    r.topic
                );
                self.stats.rejected += 1;
                outbox_changed = true;
            }
            sequenced |= r.check.sequenced();
            if let (
                Applied::ConfigApplied,
                Verdict::Apply {
                    down: Down::ConfigUpdate(c),
                    ..
                },
            ) = (&applied, &r.check)
                && let Some(secs) = c.status_interval_s
            {
                self.status_interval_ms = u64::from(secs.max(1)) * 1000;
                self.next_status = now + self.status_interval_ms;
            }
            outbox_changed |= self.count(&applied);
            out.push(Action::Notify(applied));
            // A deferred broker ack, on the connection the message came on only: a packet
            // id means nothing on another.
            if !r.broker_acked && self.connected && r.session == self.session {
                self.deferred_acks = self.deferred_acks.saturating_sub(1);
                out.push(Action::BrokerAck {
                    pkid: r.pkid,
                    qos: r.qos,
                });
            }
        }
        self.flow.ack(outcome.acked_through, now);
        if outbox_changed {
            out.push(Action::ReadHigh);
        }
        if sequenced && self.connected {
            self.down_ack_ids += 1;
            let ack = Up::DownAck {
                oms_incarnation: outcome.down.oms_incarnation,
                through: outcome.down.through,
            };
            let payload = self.encode(self.down_ack_ids, ack);
            self.control
                .push_back((self.up_topic.clone(), payload, QoS::AtLeastOnce, false));
            self.stats.down_acks += 1;
        }
    }

    /// Counts what a down message did; whether it wrote to the outbox.
    fn count(&mut self, applied: &Applied) -> bool {
        let s = &mut self.stats;
        match applied {
            Applied::Duplicate => s.duplicates += 1,
            Applied::OutOfOrder { .. } => s.out_of_order += 1,
            Applied::ForeignAck => {
                tracing::warn!("sync: ignored an Ack for another incarnation of this device");
            }
            Applied::NotForMe { to_incarnation } => {
                tracing::warn!(
                    "sync: ignored a down message for incarnation {to_incarnation:016x} of this device (a replaced database's); the OMS re-addresses it after this birth"
                );
            }
            Applied::Resync => {
                s.applied += 1;
                self.birth_due = true;
            }
            Applied::WaveApplied {
                resync_needed: true,
                ..
            } => {
                tracing::warn!(
                    "sync: wave did not match its declared count or digest; asking for a repair"
                );
                s.applied += 1;
                self.birth_due = true;
                return true;
            }
            Applied::ConfigApplied => s.applied += 1,
            Applied::Refused { .. } => {
                s.rejected += 1;
                return true;
            }
            _ => {
                s.applied += 1;
                return true;
            }
        }
        false
    }

    fn birth(&mut self, now: u64, b: BirthSnapshot) {
        self.presence_ids += 1;
        let birth = Up::Birth(Birth {
            device: self.device.clone(),
            software: env!("CARGO_PKG_VERSION").into(),
            protocol: PROTOCOL_VERSION,
            session: self.session,
            waves: b.waves,
            pack_orders: b.pack_orders,
            outbox_high_seq: b.outbox_high_seq,
            outbox_acked_seq: b.outbox_acked_seq,
            down_oms_incarnation: b.down.oms_incarnation,
            down_applied_seq: b.down.through,
        });
        let payload = self.encode(self.presence_ids, birth);
        self.control
            .push_back((self.state_topic.clone(), payload, QoS::AtLeastOnce, true));
        // A status right after a birth would say nothing new.
        self.next_status = now + self.status_interval_ms;
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
            Verdict::Apply { head, .. } => (None, Some((head.dseq, head.oms_incarnation))),
            Verdict::Reject { reason, header, .. } => {
                (Some(reason), header.map(|h| (h.dseq, h.oms_incarnation)))
            }
        }
    }

    #[test]
    fn a_valid_message_on_our_topic_is_applied_in_its_place() {
        let env = &examples::down()[0].1;
        match check(TOPIC, TOPIC, &encode_to_vec(env)) {
            Verdict::Apply { head, down } => assert_eq!(
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
        // Well-formed, but over a protocol limit (an order id far longer than allowed).
        let over_limit = encode_to_vec(&Envelope::new(
            9,
            floorhand_protocol::oms::DownMsg {
                oms_incarnation: examples::OMS_INCARNATION,
                to_incarnation: examples::AGENT_INCARNATION,
                body: Down::OrderCancelled {
                    order_id: "SO-".repeat(10_000),
                },
            },
        ));
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
            (
                TOPIC,
                &over_limit[..],
                (
                    Some(RejectReason::Invalid),
                    Some((9, examples::OMS_INCARNATION)),
                ),
            ),
        ] {
            assert_eq!(
                check_case(topic, payload),
                want,
                "{topic} {} bytes",
                payload.len()
            );
        }
        // The size limit is inclusive: a message of exactly the limit is read (and here
        // found malformed), not refused for its size.
        let at_limit = vec![floorhand_protocol::PROTOCOL_VERSION; MAX_DOWN_BYTES];
        assert_ne!(check_case(TOPIC, &at_limit).0, Some(RejectReason::TooLarge));
    }

    // ---- The link as a state machine: one table-driven helper ----

    const SITE: &str = "s1";
    const DEVICE: &str = "d1";

    fn link(acked: u64, high: u64) -> Link {
        Link::new(setup(acked, high))
    }

    fn setup(acked: u64, high: u64) -> Setup {
        Setup {
            site: SITE.into(),
            device: DEVICE.into(),
            incarnation: examples::AGENT_INCARNATION,
            session: 1,
            acked,
            high,
            window: floorhand_protocol::limits::WINDOW,
            timing: Timing {
                first_ms: 2000,
                max_ms: 8000,
            },
            status_interval: Duration::from_secs(60),
        }
    }

    /// A down message with this down seq and body.
    fn down_msg(dseq: u64, body: Down) -> Input {
        let env = Envelope::new(
            dseq,
            floorhand_protocol::oms::DownMsg {
                oms_incarnation: examples::OMS_INCARNATION,
                to_incarnation: examples::AGENT_INCARNATION,
                body,
            },
        );
        Input::Message {
            pkid: dseq as u16,
            qos: QoS::AtLeastOnce,
            topic: TOPIC.into(),
            payload: encode_to_vec(&env),
        }
    }

    /// A cancellation with down seq `dseq` (packet id `dseq` too).
    fn cancel(dseq: u64) -> Input {
        down_msg(
            dseq,
            Down::OrderCancelled {
                order_id: format!("SO-{dseq}"),
            },
        )
    }

    /// The OMS's ack of events through `seq` (unsequenced; packet id 0).
    fn oms_ack(seq: u64) -> Input {
        down_msg(
            0,
            Down::Ack {
                incarnation: examples::AGENT_INCARNATION,
                up_to_seq: seq,
            },
        )
    }

    fn rows(session: u64, seqs: std::ops::RangeInclusive<u64>) -> Input {
        Input::Rows {
            session,
            rows: seqs
                .map(|s| (s, format!("event {s}").into_bytes()))
                .collect(),
        }
    }

    fn applied(results: Vec<Applied>, acked: u64, through: u64) -> Input {
        Input::Applied(Outcome {
            results,
            acked_through: acked,
            down: DownPoint {
                oms_incarnation: examples::OMS_INCARNATION,
                through,
            },
        })
    }

    fn cancelled() -> Applied {
        Applied::Cancelled {
            order_id: "SO".into(),
            tasks: 1,
            put_backs: 0,
        }
    }

    fn snapshot() -> Input {
        Input::BirthSnapshot(BirthSnapshot {
            waves: vec![],
            pack_orders: vec![],
            outbox_high_seq: 0,
            outbox_acked_seq: 0,
            down: DownPoint::default(),
        })
    }

    fn status() -> Input {
        Input::Status(Some(Status {
            backlog: 0,
            oldest_unacked_s: 0,
            printer: floorhand_protocol::oms::PrinterState::None,
            print_queue: 0,
            storage_bytes: 0,
            storage_pct: 0,
            down_oms_incarnation: 0,
            down_applied_seq: 0,
        }))
    }

    /// An action in a few words, for the tables.
    fn brief(a: &Action) -> String {
        match a {
            Action::Publish { payload, qos, .. } => match oms::decode_up(payload) {
                Ok(env) => match env.body.body {
                    Up::Birth(_) => "birth".into(),
                    Up::Status(_) => format!("status qos{}", *qos as u8),
                    Up::DownAck { through, .. } => format!("downack {through}"),
                    other => format!("{other:?}"),
                },
                Err(_) => String::from_utf8_lossy(payload).into_owned(),
            },
            Action::Subscribe(t) => format!("subscribe {t}"),
            Action::Disconnect => "disconnect".into(),
            Action::BrokerAck { pkid, .. } => format!("broker ack {pkid}"),
            Action::ReadOutbox { session, from, to } => format!("read {from}..={to} s{session}"),
            Action::ReadHigh => "read high".into(),
            Action::MarkSent(n) => format!("mark {n}"),
            Action::Apply(items) => format!("apply {}", items.len()),
            Action::ReadBirth => "read birth".into(),
            Action::ReadStatus => "read status".into(),
            Action::Notify(_) => "notify".into(),
        }
    }

    /// Feeds each step's input at its time and checks the actions, in order. `deadline`
    /// steps check [`Link::deadline`] instead.
    enum Step {
        At(u64, Input, &'static [&'static str]),
        Deadline(Option<u64>),
        /// [`Link::apply_waiting`].
        Waiting(bool),
        /// `(session, connected, connects)`: what the I/O loop and status displays read.
        State(u64, bool, u64),
    }

    fn run(mut l: Link, steps: Vec<Step>) -> Link {
        for (i, step) in steps.into_iter().enumerate() {
            match step {
                Step::At(now, input, want) => {
                    let what = format!("{input:?}");
                    let got: Vec<String> = l.handle(now, input).iter().map(brief).collect();
                    assert_eq!(got, want, "step {i} at {now} ms: {what:.80}");
                }
                Step::Deadline(want) => assert_eq!(l.deadline(), want, "step {i}: deadline"),
                Step::Waiting(want) => assert_eq!(l.apply_waiting(), want, "step {i}: waiting"),
                Step::State(session, connected, connects) => assert_eq!(
                    (l.session(), l.connected(), l.stats().connects),
                    (session, connected, connects),
                    "step {i}: session, connected, connects"
                ),
            }
        }
        l
    }

    const SUB: &str = "subscribe floorhand/v1/s1/d1/down";

    /// Expected actions made at run time, for [`Step::At`].
    fn leak(v: Vec<String>) -> &'static [&'static str] {
        Vec::leak(v.into_iter().map(|s| &*String::leak(s)).collect())
    }

    #[test]
    fn offline_the_link_has_no_deadline_and_nothing_to_do_but_apply() {
        use Step::*;
        run(
            link(0, 5),
            vec![
                Deadline(None),
                At(0, Input::Tick, &[]),
                At(0, Input::OutboxHigh(9), &[]),
                Deadline(None),
                // A message already received is still applied (and acknowledged when it
                // can be: never to the broker on another connection).
                At(0, cancel(1), &[]),
                At(0, Input::Tick, &["apply 1"]),
                At(
                    5,
                    applied(vec![cancelled()], 0, 1),
                    &["notify", "read high"],
                ),
                Deadline(None),
            ],
        );
    }

    #[test]
    fn a_connect_subscribes_sends_a_birth_and_the_unacked_events_in_order() {
        use Step::*;
        run(
            link(2, 5),
            vec![
                At(0, Input::Connected, &[SUB, "read birth", "read 3..=5 s1"]),
                At(1, snapshot(), &["birth"]),
                At(2, rows(1, 3..=5), &["event 3", "event 4", "event 5"]),
                // The re-send deadline is armed from the read; the status one is later.
                Deadline(Some(2000)),
            ],
        );
    }

    #[test]
    fn pubacks_mark_events_sent_and_only_the_oms_ack_moves_the_window() {
        use Step::*;
        let l = run(
            link(0, 2),
            vec![
                At(0, Input::Connected, &[SUB, "read birth", "read 1..=2 s1"]),
                At(1, rows(1, 1..=2), &["event 1", "event 2"]),
                At(2, Input::Written(7), &[]),
                At(2, Input::Written(8), &[]),
                At(3, Input::PubAck(8), &["mark 2"]),
                // Seq 1's PUBACK comes while the mark is in flight: one at a time.
                At(3, Input::PubAck(7), &[]),
                At(4, Input::Marked(2), &[]),
                // No OMS ack yet: nothing new to read, the re-send deadline stands.
                Deadline(Some(2000)),
                At(5, oms_ack(2), &["broker ack 0"]),
                At(5, Input::Tick, &["apply 1"]),
                At(
                    6,
                    applied(vec![Applied::Acked { deleted: 2 }], 2, 0),
                    &["notify", "read high"],
                ),
                // Everything acknowledged: no re-send deadline, only the status one.
                Deadline(Some(60_000)),
                // A new event is read at once.
                At(7, Input::OutboxHigh(3), &["read 3..=3 s1"]),
            ],
        );
        assert_eq!((l.stats().published, l.stats().sent_through), (2, 2));
    }

    #[test]
    fn a_burst_of_down_messages_is_applied_in_one_transaction_and_down_acked_after_the_commit() {
        use Step::*;
        let l = run(
            link(0, 0),
            vec![
                At(0, Input::Connected, &[SUB, "read birth"]),
                At(1, snapshot(), &["birth"]),
                // The broker's ack goes on receipt (see ACK_AHEAD); the OMS's after the
                // commit.
                At(2, cancel(1), &["broker ack 1"]),
                At(2, cancel(2), &["broker ack 2"]),
                At(2, cancel(3), &["broker ack 3"]),
                // rumqttc has nothing more ready: the messages of one read go together.
                At(2, Input::Tick, &["apply 3"]),
                // One that comes during the commit waits for it.
                At(2, cancel(4), &["broker ack 4"]),
                At(2, Input::Tick, &[]),
                At(
                    3,
                    applied(vec![cancelled(); 3], 0, 3),
                    &[
                        "notify",
                        "notify",
                        "notify",
                        "read high",
                        "apply 1",
                        "downack 3",
                    ],
                ),
            ],
        );
        let mut l = l;
        let got: Vec<String> = l
            .handle(4, applied(vec![cancelled()], 0, 4))
            .iter()
            .map(brief)
            .collect();
        assert_eq!(got, ["notify", "read high", "downack 4"]);
        assert_eq!((l.stats().applied, l.stats().down_acks), (4, 2));
    }

    #[test]
    fn a_full_batch_is_applied_without_waiting_for_the_read_to_end() {
        let mut steps = vec![Step::At(0, Input::Connected, &[SUB, "read birth"])];
        for dseq in 1..DOWN_BATCH as u64 {
            steps.push(Step::At(
                1,
                cancel(dseq),
                leak(vec![format!("broker ack {dseq}")]),
            ));
        }
        steps.push(Step::At(
            1,
            cancel(DOWN_BATCH as u64),
            &["broker ack 256", "apply 256"],
        ));
        let l = run(link(0, 0), steps);
        assert!(!l.apply_waiting());
    }

    #[test]
    fn a_failed_apply_is_retried_with_backoff_and_nothing_behind_it_goes_first() {
        use Step::*;
        run(
            link(0, 0),
            vec![
                Waiting(false),
                At(0, Input::Connected, &[SUB, "read birth"]),
                At(1, cancel(1), &["broker ack 1"]),
                // Received: it waits for the end of the network read (the tick).
                Waiting(true),
                At(1, Input::Tick, &["apply 1"]),
                // Applying: what comes now waits for the commit, not for a tick.
                Waiting(false),
                At(1, cancel(2), &["broker ack 2"]),
                Waiting(false),
                At(10, Input::ApplyFailed("disk I/O error".into()), &[]),
                // Waiting for the retry, not for the read.
                Waiting(false),
                // 100 ms, jittered to 75: the status deadline is later.
                Deadline(Some(85)),
                At(50, Input::Tick, &[]),
                At(85, Input::Tick, &["apply 1"]),
                At(90, Input::ApplyFailed("disk I/O error".into()), &[]),
                Deadline(Some(240)),
                At(240, Input::Tick, &["apply 1"]),
                At(
                    250,
                    applied(vec![cancelled()], 0, 1),
                    &["notify", "read high", "apply 1", "downack 1"],
                ),
            ],
        );
    }

    #[test]
    fn a_message_of_a_lost_connection_is_applied_and_down_acked_on_the_next() {
        use Step::*;
        run(
            link(0, 0),
            vec![
                At(0, Input::Connected, &[SUB, "read birth"]),
                At(1, cancel(1), &["broker ack 1"]),
                At(1, Input::Tick, &["apply 1"]),
                At(2, Input::Lost, &[]),
                At(2, Input::NewSession(2), &[]),
                // The first birth read is still out: its answer goes first, then a
                // fresh one for this connection.
                At(3, Input::Connected, &[SUB]),
                At(3, snapshot(), &["read birth", "birth"]),
                // The DownAck tells the OMS.
                At(
                    4,
                    applied(vec![cancelled()], 0, 1),
                    &["notify", "read high", "downack 1"],
                ),
            ],
        );
    }

    #[test]
    fn rows_read_for_a_lost_connection_are_dropped_whenever_they_arrive_and_read_again() {
        use Step::*;
        run(
            link(0, 3),
            vec![
                At(0, Input::Connected, &[SUB, "read birth", "read 1..=3 s1"]),
                At(1, Input::Lost, &[]),
                At(1, Input::NewSession(2), &[]),
                // The read for session 1 is still out: no second read yet.
                At(2, Input::Connected, &[SUB]),
                // Its rows arrive on session 2's connection: dropped, read again.
                At(3, rows(1, 1..=3), &["read 1..=3 s2"]),
                At(4, Input::Lost, &[]),
                At(4, Input::NewSession(3), &[]),
                // Session 2's rows arrive offline: dropped.
                At(5, rows(2, 1..=3), &[]),
                At(6, Input::Connected, &[SUB, "read 1..=3 s3"]),
                At(7, rows(3, 1..=3), &["event 1", "event 2", "event 3"]),
            ],
        );
    }

    #[test]
    fn silence_re_sends_from_the_lowest_unacked_seq_backing_off_and_counts_it() {
        use Step::*;
        // A window of 256 (the numbers below follow from it).
        let l = run(
            Link::new(Setup {
                window: 256,
                ..setup(0, 300)
            }),
            vec![
                // The window: 256 in flight at most.
                At(0, Input::Connected, &[SUB, "read birth", "read 1..=256 s1"]),
                At(1, Input::Tick, &[]),
                At(2000, Input::Tick, &[]),
                At(2000, rows(1, 1..=1), &["event 1"]),
                // Nothing acknowledged for 2 s: from the lowest unacked again, half as
                // many at a time.
                At(2000, Input::Tick, &["read 1..=128 s1"]),
                At(2001, rows(1, 1..=1), &["event 1"]),
                Deadline(Some(6000)),
                At(3000, oms_ack(100), &["broker ack 0"]),
                At(3000, Input::Tick, &["apply 1"]),
                At(
                    3001,
                    applied(vec![Applied::Acked { deleted: 100 }], 100, 0),
                    // The window moves with the ack and grows by one: 129..=229 next
                    // (re-sends up to 256, then new ones).
                    &["notify", "read high", "read 129..=229 s1"],
                ),
                At(3002, Input::Tick, &[]),
            ],
        );
        assert_eq!(l.stats().resent, 128 + 101);
    }

    #[test]
    fn a_refused_subscription_drops_the_connection_to_subscribe_again() {
        use Step::*;
        run(
            link(0, 0),
            vec![
                At(0, Input::Connected, &[SUB, "read birth"]),
                At(1, Input::SubAck { refused: false }, &[]),
                At(2, Input::SubAck { refused: true }, &["disconnect"]),
            ],
        );
    }

    #[test]
    fn a_status_goes_every_interval_at_qos_0_and_a_config_update_changes_the_interval() {
        use Step::*;
        let config = down_msg(
            1,
            Down::ConfigUpdate(floorhand_protocol::oms::ConfigUpdate {
                status_interval_s: Some(10),
                ..Default::default()
            }),
        );
        run(
            link(0, 0),
            vec![
                At(0, Input::Connected, &[SUB, "read birth"]),
                Deadline(Some(60_000)),
                At(30_000, snapshot(), &["birth"]),
                // A birth counts as news: the next status is an interval after it.
                Deadline(Some(90_000)),
                At(90_000, Input::Tick, &["read status"]),
                At(90_001, status(), &["status qos0"]),
                Deadline(Some(150_000)),
                At(100_000, config, &["broker ack 1"]),
                At(100_000, Input::Tick, &["apply 1"]),
                At(
                    100_001,
                    applied(vec![Applied::ConfigApplied], 0, 1),
                    &["notify", "downack 1"],
                ),
                Deadline(Some(110_001)),
                // Offline, no status at all.
                At(100_002, Input::Lost, &[]),
                Deadline(None),
            ],
        );
    }

    #[test]
    fn a_resync_request_or_a_wave_that_needs_repair_sends_a_fresh_birth() {
        use Step::*;
        run(
            link(0, 0),
            vec![
                At(0, Input::Connected, &[SUB, "read birth"]),
                At(1, snapshot(), &["birth"]),
                At(2, down_msg(0, Down::ResyncRequest), &["broker ack 0"]),
                At(2, Input::Tick, &["apply 1"]),
                At(
                    3,
                    applied(vec![Applied::Resync], 0, 0),
                    &["notify", "read birth"],
                ),
                At(4, snapshot(), &["birth"]),
                At(5, cancel(1), &["broker ack 1"]),
                At(5, Input::Tick, &["apply 1"]),
                At(
                    6,
                    applied(
                        vec![Applied::WaveApplied {
                            wave_id: 1,
                            version: 1,
                            tasks: 1,
                            resync_needed: true,
                        }],
                        0,
                        1,
                    ),
                    &["notify", "read high", "read birth", "downack 1"],
                ),
                // A failed snapshot read is tried again a second later, not forgotten.
                At(7, Input::BirthFailed, &[]),
                Deadline(Some(1007)),
                At(1007, Input::Tick, &["read birth"]),
            ],
        );
    }

    #[test]
    fn an_unreadable_message_goes_alone_and_the_good_ones_around_it_are_batched() {
        use Step::*;
        let garbage = Input::Message {
            pkid: 2,
            qos: QoS::AtLeastOnce,
            topic: TOPIC.into(),
            payload: b"\x02\xff\xff\xff".to_vec(),
        };
        let mut l = run(
            link(0, 0),
            vec![
                At(0, Input::Connected, &[SUB, "read birth"]),
                At(1, cancel(1), &["broker ack 1"]),
                At(1, Input::Tick, &["apply 1"]),
                At(1, garbage, &["broker ack 2"]),
                At(1, cancel(3), &["broker ack 3"]),
                At(1, cancel(4), &["broker ack 4"]),
                At(
                    2,
                    applied(vec![cancelled()], 0, 1),
                    &["notify", "read high", "apply 1", "downack 1"],
                ),
            ],
        );
        match l
            .handle(3, applied(vec![Applied::Duplicate], 0, 1))
            .as_slice()
        {
            [Action::Notify(_), Action::ReadHigh, Action::Apply(items)] => {
                assert!(matches!(items.as_slice(), [Item::Down(..), Item::Down(..)]))
            }
            other => panic!("{:?}", other.iter().map(brief).collect::<Vec<_>>()),
        }
        assert_eq!(l.stats().rejected, 1);
    }

    #[test]
    fn a_read_that_fails_is_tried_again_a_second_later_from_the_same_seq() {
        use Step::*;
        run(
            link(0, 2),
            vec![
                At(0, Input::Connected, &[SUB, "read birth", "read 1..=2 s1"]),
                At(5, Input::ReadFailed, &[]),
                Deadline(Some(1005)),
                At(1005, Input::Tick, &["read 1..=2 s1"]),
                At(1006, Input::MarkFailed, &[]),
            ],
        );
    }

    #[test]
    fn the_session_the_connection_and_the_connect_count_are_what_the_io_loop_reads() {
        use Step::*;
        let l = run(
            link(0, 0),
            vec![
                State(1, false, 0),
                At(0, Input::Connected, &[SUB, "read birth"]),
                State(1, true, 1),
                At(1, Input::Lost, &[]),
                At(1, Input::NewSession(2), &[]),
                State(2, false, 1),
                // The first birth read is still out.
                At(2, Input::Connected, &[SUB]),
                State(2, true, 2),
            ],
        );
        assert_eq!((l.site(), l.device()), (SITE, DEVICE));
    }

    #[test]
    fn a_mark_that_fails_is_tried_again_a_second_later() {
        use Step::*;
        run(
            link(0, 1),
            vec![
                At(0, Input::Connected, &[SUB, "read birth", "read 1..=1 s1"]),
                At(1, rows(1, 1..=1), &["event 1"]),
                At(2, Input::Written(7), &[]),
                At(3, Input::PubAck(7), &["mark 1"]),
                At(4, Input::MarkFailed, &[]),
                Deadline(Some(1004)),
                At(500, Input::Tick, &[]),
                At(1004, Input::Tick, &["mark 1"]),
                At(1005, Input::Marked(1), &[]),
            ],
        );
    }

    #[test]
    fn each_result_is_counted_and_only_one_that_wrote_an_event_reads_the_outbox_high_again() {
        use Step::*;
        const QUIET: &[&str] = &["notify", "downack 1"];
        const WROTE: &[&str] = &["notify", "read high", "downack 1"];
        let refused = Applied::Refused {
            reason: RejectReason::Invalid,
            detail: "no".into(),
        };
        // (applied, duplicates, out of order, rejected) after one result.
        for (result, want, counts) in [
            (Applied::Duplicate, QUIET, (0, 1, 0, 0)),
            (Applied::OutOfOrder { expected: 1 }, QUIET, (0, 0, 1, 0)),
            (Applied::ForeignAck, QUIET, (0, 0, 0, 0)),
            (Applied::NotForMe { to_incarnation: 7 }, QUIET, (0, 0, 0, 0)),
            (Applied::ConfigApplied, QUIET, (1, 0, 0, 0)),
            // A resync asks for a birth; the first birth read is still out here.
            (Applied::Resync, QUIET, (1, 0, 0, 0)),
            (
                Applied::WaveApplied {
                    wave_id: 1,
                    version: 1,
                    tasks: 1,
                    resync_needed: true,
                },
                WROTE,
                (1, 0, 0, 0),
            ),
            (refused, WROTE, (0, 0, 0, 1)),
            (cancelled(), WROTE, (1, 0, 0, 0)),
        ] {
            let what = format!("{result:?}");
            let l = run(
                link(0, 0),
                vec![
                    At(0, Input::Connected, &[SUB, "read birth"]),
                    At(1, cancel(1), &["broker ack 1"]),
                    At(1, Input::Tick, &["apply 1"]),
                    At(2, applied(vec![result], 0, 1), want),
                ],
            );
            let s = l.stats();
            assert_eq!(
                (s.applied, s.duplicates, s.out_of_order, s.rejected),
                counts,
                "{what}"
            );
        }
    }

    /// The message ids of the publishes among `actions`.
    fn ids(actions: &[Action]) -> Vec<u64> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Publish { payload, .. } => Some(oms::decode_up(payload).unwrap().msg_id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn births_statuses_and_down_acks_carry_message_ids_that_never_repeat() {
        let mut l = link(0, 0);
        let presence = 1 << 40;
        let mut got = Vec::new();
        l.handle(0, Input::Connected);
        got.extend(ids(&l.handle(1, snapshot())));
        assert_eq!(
            l.handle(60_001, Input::Tick)
                .iter()
                .map(brief)
                .collect::<Vec<_>>(),
            ["read status"]
        );
        got.extend(ids(&l.handle(60_002, status())));
        for dseq in 1..=2 {
            l.handle(60_003, cancel(dseq));
            l.handle(60_003, Input::Tick);
            got.extend(ids(&l.handle(60_004, applied(vec![cancelled()], 0, dseq))));
        }
        l.handle(60_005, Input::Lost);
        l.handle(60_006, Input::Connected);
        got.extend(ids(&l.handle(60_007, snapshot())));
        assert_eq!(got, [presence + 1, presence + 2, 1, 2, presence + 3]);
    }

    #[test]
    fn a_pubacked_birth_marks_no_event_sent_and_the_event_behind_it_is_marked_by_its_own() {
        use Step::*;
        run(
            link(0, 1),
            vec![
                At(0, Input::Connected, &[SUB, "read birth", "read 1..=1 s1"]),
                At(1, snapshot(), &["birth"]),
                At(2, rows(1, 1..=1), &["event 1"]),
                // rumqttc writes them in the order they were queued.
                At(3, Input::Written(1), &[]),
                At(3, Input::Written(2), &[]),
                At(4, Input::PubAck(1), &[]),
                At(5, Input::PubAck(2), &["mark 1"]),
            ],
        );
    }

    #[test]
    fn at_most_max_queued_publishes_wait_for_their_puback_and_each_puback_lets_one_more_go() {
        let mut l = Link::new(Setup {
            window: 1000,
            ..setup(0, 0)
        });
        l.handle(0, Input::OutboxHigh(1000));
        let read = l.handle(0, Input::Connected);
        assert_eq!(brief(read.last().unwrap()), "read 1..=1000 s1");
        let out = l.handle(1, rows(1, 1..=1000));
        assert_eq!(out.len(), MAX_QUEUED);
        l.handle(2, Input::Written(1));
        let out = l.handle(3, Input::PubAck(1));
        assert_eq!(
            out.iter().map(brief).collect::<Vec<_>>(),
            ["mark 1".to_string(), format!("event {}", MAX_QUEUED + 1)]
        );
    }

    #[test]
    fn a_backlog_of_down_messages_is_applied_in_batches_of_at_most_down_batch() {
        let mut steps = vec![
            Step::At(0, Input::Connected, &[SUB, "read birth"]),
            Step::At(1, cancel(1), &["broker ack 1"]),
            Step::At(1, Input::Tick, &["apply 1"]),
        ];
        // While the first commits, a backlog of more than a batch arrives.
        let last = DOWN_BATCH as u64 + 10;
        for dseq in 2..=last {
            steps.push(Step::At(
                2,
                cancel(dseq),
                leak(vec![format!("broker ack {dseq}")]),
            ));
        }
        let mut l = run(link(0, 0), steps);
        let sizes = |out: Vec<Action>| -> Vec<usize> {
            out.iter()
                .filter_map(|a| match a {
                    Action::Apply(items) => Some(items.len()),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(
            sizes(l.handle(3, applied(vec![cancelled()], 0, 1))),
            [DOWN_BATCH]
        );
        let results = vec![cancelled(); DOWN_BATCH];
        let through = 1 + DOWN_BATCH as u64;
        assert_eq!(sizes(l.handle(4, applied(results, 0, through))), [9]);
    }

    /// Commits the apply in `out` (if any) and every one it leads to, each batch of
    /// cancellations up to `through`; returns every action, in brief.
    fn settle(l: &mut Link, now: u64, mut out: Vec<Action>, through: &mut u64) -> Vec<String> {
        let mut all = Vec::new();
        loop {
            let batch = out.iter().find_map(|a| match a {
                Action::Apply(items) => Some(items.len()),
                _ => None,
            });
            all.extend(out.iter().map(brief));
            let Some(n) = batch else { return all };
            *through += n as u64;
            out = l.handle(now, applied(vec![cancelled(); n], 0, *through));
        }
    }

    fn broker_acks(briefs: &[String]) -> Vec<String> {
        briefs
            .iter()
            .filter(|a| a.starts_with("broker ack"))
            .cloned()
            .collect()
    }

    #[test]
    fn past_ack_ahead_waiting_broker_acks_follow_the_commit_in_order_and_only_on_their_connection()
    {
        let briefs = |out: Vec<Action>| out.iter().map(brief).collect::<Vec<_>>();
        let acks = |r: std::ops::RangeInclusive<u64>| {
            r.map(|d| format!("broker ack {d}")).collect::<Vec<_>>()
        };
        let none = Vec::<String>::new();
        // The cancellations' packet ids are their dseqs.
        let mut l = link(0, 0);
        l.handle(0, Input::Connected);
        assert_eq!(briefs(l.handle(1, cancel(1))), ["broker ack 1"]);
        assert_eq!(briefs(l.handle(1, Input::Tick)), ["apply 1"]);
        // While the first commits, the inbox fills: ACK_AHEAD waiting (the batch being
        // applied counts) are acked on receipt, the rest wait for their commit.
        let full = ACK_AHEAD as u64;
        for dseq in 2..=full {
            assert_eq!(briefs(l.handle(2, cancel(dseq))), acks(dseq..=dseq));
        }
        for dseq in full + 1..=full + 3 {
            assert_eq!(briefs(l.handle(2, cancel(dseq))), none);
        }
        // The first commit frees room, but a later message may not be acked before the
        // deferred ones (MQTT wants PUBACKs in the order of receipt).
        let out = l.handle(3, applied(vec![cancelled()], 0, 1));
        assert_eq!(briefs(l.handle(3, cancel(full + 4))), none);
        let mut through = 1;
        let done = settle(&mut l, 4, out, &mut through);
        assert_eq!(through, full + 4);
        assert_eq!(broker_acks(&done), acks(full + 1..=full + 4));
        // Nothing is deferred any more: the next is acked on receipt.
        assert_eq!(
            briefs(l.handle(5, cancel(full + 5))),
            acks(full + 5..=full + 5)
        );
        // A deferred ack is never sent on a later connection.
        let mut pending = Vec::new();
        let mut deferred = 0;
        for dseq in full + 6..=2 * full + 6 {
            let out = l.handle(6, cancel(dseq));
            if broker_acks(&briefs_of(&out)).is_empty() {
                deferred += 1;
            }
            pending.extend(out.into_iter().filter(|a| matches!(a, Action::Apply(_))));
        }
        assert_eq!(deferred, 2);
        l.handle(7, Input::Lost);
        l.handle(7, Input::NewSession(2));
        l.handle(7, Input::Connected);
        let done = settle(&mut l, 8, pending, &mut through);
        assert_eq!(through, 2 * full + 6);
        assert_eq!(broker_acks(&done), none);
    }

    fn briefs_of(out: &[Action]) -> Vec<String> {
        out.iter().map(brief).collect()
    }

    #[test]
    fn past_max_waiting_a_qos_0_message_is_dropped_and_counted_and_the_rest_still_applies() {
        let qos0 = |dseq: u64| match cancel(dseq) {
            Input::Message {
                pkid,
                topic,
                payload,
                ..
            } => Input::Message {
                pkid,
                qos: QoS::AtMostOnce,
                topic,
                payload,
            },
            other => other,
        };
        let mut l = link(0, 0);
        l.handle(0, Input::Connected);
        l.handle(1, qos0(1));
        assert_eq!(briefs_of(&l.handle(1, Input::Tick)), ["apply 1"]);
        let full = MAX_WAITING as u64;
        let mut pending = Vec::new();
        for dseq in 2..=full {
            pending.extend(
                l.handle(2, qos0(dseq))
                    .into_iter()
                    .filter(|a| matches!(a, Action::Apply(_))),
            );
        }
        // One commit in progress, the rest waiting: the next two are dropped.
        assert_eq!(
            briefs_of(&l.handle(2, qos0(full + 1))),
            Vec::<String>::new()
        );
        assert_eq!(
            briefs_of(&l.handle(2, qos0(full + 2))),
            Vec::<String>::new()
        );
        assert_eq!(l.stats().dropped, 2);
        let out = l.handle(3, applied(vec![cancelled()], 0, 1));
        let mut through = 1;
        settle(&mut l, 4, out, &mut through);
        assert_eq!(through, full);
        // Room again: the OMS side's re-send is taken in.
        l.handle(5, qos0(full + 1));
        assert_eq!(briefs_of(&l.handle(5, Input::Tick)), ["apply 1"]);
        assert_eq!(l.stats().dropped, 2);
    }

    #[test]
    fn qos_0_messages_past_ack_ahead_still_wait_and_only_four_times_ack_ahead_drop_one() {
        let at_most_once = |dseq: u64| {
            let mut m = cancel(dseq);
            if let Input::Message { qos, .. } = &mut m {
                *qos = QoS::AtMostOnce;
            }
            m
        };
        let mut l = link(0, 0);
        l.handle(0, Input::Connected);
        l.handle(1, at_most_once(1));
        assert_eq!(briefs_of(&l.handle(1, Input::Tick)), ["apply 1"]);
        // ACK_AHEAD bounds the broker acks given on receipt, not what waits: while the
        // first commits, four times ACK_AHEAD may wait (the batch being applied counts),
        // far more than the OMS side's window of QoS 0 messages in flight.
        let limit = 4 * ACK_AHEAD as u64;
        for dseq in 2..=limit {
            l.handle(2, at_most_once(dseq));
        }
        assert_eq!(l.stats().dropped, 0, "dropped below {limit} waiting");
        l.handle(2, at_most_once(limit + 1));
        assert_eq!(l.stats().dropped, 1, "not dropped at {limit} waiting");
    }

    #[test]
    fn once_commits_make_room_a_new_message_still_waits_for_the_deferred_broker_acks_before_it() {
        let briefs = |out: Vec<Action>| out.iter().map(brief).collect::<Vec<_>>();
        let none = Vec::<String>::new();
        let mut l = link(0, 0);
        l.handle(0, Input::Connected);
        l.handle(1, cancel(1));
        assert_eq!(briefs(l.handle(1, Input::Tick)), ["apply 1"]);
        // While the first commits, ACK_AHEAD are acked on receipt and three are deferred.
        let full = ACK_AHEAD as u64;
        for dseq in 2..=full + 3 {
            l.handle(2, cancel(dseq));
        }
        // Two commits later fewer than ACK_AHEAD wait, the deferred three among them,
        // not yet applied: a new message is still not acked before them.
        let out = l.handle(3, applied(vec![cancelled()], 0, 1));
        let first = out.iter().find_map(|a| match a {
            Action::Apply(items) => Some(items.len() as u64),
            _ => None,
        });
        assert_eq!(first, Some(DOWN_BATCH as u64));
        let mut through = 1 + DOWN_BATCH as u64;
        let out = l.handle(4, applied(vec![cancelled(); DOWN_BATCH], 0, through));
        let waiting = full + 3 - through;
        assert!(waiting < full, "{waiting} wait");
        assert_eq!(broker_acks(&briefs_of(&out)), none);
        assert_eq!(briefs(l.handle(5, cancel(full + 4))), none);
        // Every deferred ack, and then the new one's, follows its commit in order.
        let done = settle(&mut l, 6, out, &mut through);
        assert_eq!(through, full + 4);
        let acks: Vec<String> = (full + 1..=full + 4)
            .map(|d| format!("broker ack {d}"))
            .collect();
        assert_eq!(broker_acks(&done), acks);
    }
}
