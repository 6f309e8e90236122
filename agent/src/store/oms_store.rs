//! The OMS side's store as a trait, so the durable core ([`crate::sync::oms`]) and the
//! bridge ([`crate::bridge`]) run on any backend: SQLite ([`super::oms_db::OmsDb`], the
//! embedded default) today, PostgreSQL next.
//!
//! A backend keeps, keyed by (site, device, agent incarnation): the received events, each
//! at most once and only in seq order, under a cursor that grows over the whole store; the
//! per-device down outbox with stable message numbers and their states; presence and the
//! last birth and status of each device; alarms. Every method that changes something is
//! one transaction. Methods are synchronous: the core owns one handle on its own task, and
//! readers (the bridge's HTTP handlers) use another handle off the async runtime.
//!
//! The row types here are store types: the bridge converts them to its JSON by hand.

use floorhand_protocol::oms::{Down, Event};

use super::StoreError;

/// Where a down message is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DownState {
    /// Stored, not published yet (the device's incarnation may be unknown yet).
    Queued,
    /// Published at least once, not acknowledged.
    Sent,
    /// The agent applied it.
    Applied,
    /// The agent refused it.
    Rejected {
        /// The agent's reason.
        detail: String,
    },
}

/// A down message to (re)publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownRow {
    /// Its stable number for the device.
    pub msg_no: u64,
    /// The agent incarnation it is addressed to.
    pub stream: u64,
    /// Its seq in that stream.
    pub dseq: u64,
    /// The message.
    pub body: Down,
}

/// What storing an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Stored now, under this cursor. Acknowledge through `through`.
    New {
        /// The event's cursor: grows over the whole store.
        cursor: u64,
        /// The stream's ack point after it.
        through: u64,
    },
    /// Stored before: acknowledge `through` again.
    Duplicate {
        /// The stream's ack point.
        through: u64,
    },
    /// A gap before it (or an incarnation not yet known past seq 1): dropped. The agent
    /// re-sends; a fresh `Birth` tells where the stream starts.
    Ahead {
        /// The stream's ack point, if the stream is known.
        through: Option<u64>,
    },
    /// A gap before it: kept aside, not acknowledged, and stored (with a cursor) once the
    /// gap fills, by this store's next commits or another bridge's; see
    /// [`OmsStore::take_promoted`].
    Held {
        /// The stream's ack point, if the stream is known.
        through: Option<u64>,
    },
}

/// One stored event, for consumers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position in the whole store.
    pub cursor: u64,
    /// Site.
    pub site: String,
    /// Device.
    pub device: String,
    /// Agent incarnation.
    pub incarnation: u64,
    /// The event.
    pub event: Event,
}

/// A device's down stream as the sender needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownStream {
    /// Agent incarnation addressed (0: not known yet; nothing can be sent).
    pub stream: u64,
    /// Highest dseq acknowledged.
    pub acked: u64,
    /// Highest dseq numbered.
    pub high: u64,
}

/// What [`OmsStore::queue_down_keyed`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Queued {
    /// Committed now under this stable number.
    New(u64),
    /// The idempotency key was used before for the same message: its number.
    Again(u64),
    /// The idempotency key was used before for a different message (its number):
    /// nothing was queued.
    KeyReused(u64),
    /// The device has never been heard from at this site: nothing was queued.
    UnknownDevice,
}

/// One down message to queue, for [`OmsStore::queue_down_many`].
#[derive(Debug, Clone, Copy)]
pub struct DownRequest<'a> {
    /// Site.
    pub site: &'a str,
    /// Device.
    pub device: &'a str,
    /// The message.
    pub body: &'a Down,
    /// Its idempotency key, if any.
    pub key: Option<&'a str>,
}

/// A range of a device's down stream to publish, for [`OmsStore::down_ranges`].
#[derive(Debug, Clone, Copy)]
pub struct DownRange<'a> {
    /// Site.
    pub site: &'a str,
    /// Device.
    pub device: &'a str,
    /// The agent incarnation addressed.
    pub stream: u64,
    /// First dseq.
    pub from: u64,
    /// Last dseq.
    pub to: u64,
}

/// A device as the OMS side knows it, for `GET /v1/devices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    /// Site.
    pub site: String,
    /// Device.
    pub device: String,
    /// Its current agent incarnation (0: not known yet).
    pub incarnation: u64,
    /// Online since its last birth, until its death.
    pub online: bool,
    /// The session of its last birth or death.
    pub session: u64,
    /// Unix seconds of the last message from it.
    pub last_seen: u64,
    /// Unix seconds of its last birth, death and status (0: never).
    pub birth_at: u64,
    /// See `birth_at`.
    pub death_at: u64,
    /// See `birth_at`.
    pub status_at: u64,
    /// Its last birth, as stored (JSON of the protocol's `Birth`).
    pub birth: Option<String>,
    /// Its last status, as stored (JSON of the protocol's `Status`).
    pub status: Option<String>,
    /// Highest event seq of the current incarnation seen (stored or not).
    pub high_seen: u64,
    /// Highest event seq of the current incarnation stored without a gap (acknowledged).
    pub through: u64,
    /// The percentage of the agent's last `StorageAlarm` event (it raises one crossing
    /// its alarm mark and another falling back below), if any.
    pub storage_alarm_pct: Option<u8>,
    /// Down messages not yet applied or rejected.
    pub down_unacked: u64,
}

/// A down message as queued, for the floor view (`GET /`): which waves went where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownLogRow {
    /// Site.
    pub site: String,
    /// Device.
    pub device: String,
    /// Its stable number for the device.
    pub msg_no: u64,
    /// Unix seconds when it was queued.
    pub created: u64,
    /// The message.
    pub body: Down,
}

/// Totals for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreTotals {
    /// Events stored.
    pub events: u64,
    /// Down messages queued or sent, not yet acknowledged.
    pub down_pending: u64,
    /// Devices online.
    pub devices_online: u64,
    /// Devices known.
    pub devices: u64,
    /// Alarms raised.
    pub alarms: u64,
}

/// The OMS side's durable store. See the module documentation for what every backend
/// keeps; [`super::oms_db::OmsDb`] documents the invariants.
pub trait OmsStore: Send {
    /// This store's incarnation: down streams it numbers are scoped to it.
    fn incarnation(&self) -> u64;

    /// The device's current agent incarnation (0 if unknown).
    fn device_incarnation(&self, site: &str, device: &str) -> Result<u64, StoreError>;

    /// The stream's ack point, if the stream is known.
    fn through(
        &self,
        site: &str,
        device: &str,
        incarnation: u64,
    ) -> Result<Option<u64>, StoreError>;

    /// Stores events in seq order, in one transaction with their streams' ack points. A
    /// `Rejected` event also marks the down message it names. Returns what happened to
    /// each, in order.
    fn store_events(
        &mut self,
        batch: &[(String, String, u64, Event)],
        now: u64,
    ) -> Result<Vec<Stored>, StoreError>;

    /// A `Birth` said the agent's acknowledged seq is `acked` and its highest written seq
    /// is `high`: a stream that is behind jumps to `acked`, with an alarm unless new here.
    fn birth_floor(
        &mut self,
        site: &str,
        device: &str,
        incarnation: u64,
        acked_high: (u64, u64),
        now: u64,
    ) -> Result<Option<String>, StoreError>;

    /// Records the device's current incarnation; on a change, re-addresses unapplied down
    /// messages to the new stream. Returns the alarms raised.
    fn set_incarnation(
        &mut self,
        site: &str,
        device: &str,
        incarnation: u64,
        old_high: Option<u64>,
        now: u64,
    ) -> Result<Vec<String>, StoreError>;

    /// Records an alarm for a person to look at.
    fn alarm(&mut self, site: &str, device: &str, detail: &str, now: u64)
    -> Result<(), StoreError>;

    /// Alarms, oldest first: `(site, device, detail)`.
    fn alarms(&self) -> Result<Vec<(String, String, String)>, StoreError>;

    /// Commits a down message for `device` and returns its stable number.
    fn queue_down(
        &mut self,
        site: &str,
        device: &str,
        body: &Down,
        now: u64,
    ) -> Result<u64, StoreError> {
        let mut nos = self.queue_downs(site, device, std::slice::from_ref(body), now)?;
        nos.pop()
            .ok_or_else(|| StoreError::Invalid("no number for a queued message".into()))
    }

    /// Commits down messages for `device`, in order, in one transaction (one disk sync),
    /// and returns their stable numbers: all are committed, or none.
    fn queue_downs(
        &mut self,
        site: &str,
        device: &str,
        bodies: &[Down],
        now: u64,
    ) -> Result<Vec<u64>, StoreError>;

    /// Commits a down message for a device that has been heard from, under an optional
    /// idempotency key: the key is stored in the same transaction, so a retried request
    /// with the same key and message gets the same number and queues nothing.
    fn queue_down_keyed(
        &mut self,
        site: &str,
        device: &str,
        body: &Down,
        key: Option<&str>,
        now: u64,
    ) -> Result<Queued, StoreError> {
        let req = DownRequest {
            site,
            device,
            body,
            key,
        };
        self.queue_down_many(std::slice::from_ref(&req), now)?
            .pop()
            .ok_or_else(|| StoreError::Invalid("no answer for a queued message".into()))
    }

    /// [`OmsStore::queue_down_keyed`] for several requests in one transaction (one disk
    /// sync for every request waiting: the bridge's group commit), in order, so a key
    /// used twice in one group answers the second with the first's number. All are
    /// committed, or none (an error leaves the store as it was).
    fn queue_down_many(
        &mut self,
        reqs: &[DownRequest<'_>],
        now: u64,
    ) -> Result<Vec<Queued>, StoreError>;

    /// The device's down stream for its current incarnation.
    fn down_stream(&self, site: &str, device: &str) -> Result<DownStream, StoreError>;

    /// Down messages of `stream` with `from <= dseq <= to`, in order; marks queued ones
    /// sent.
    fn down_range(
        &mut self,
        site: &str,
        device: &str,
        stream: u64,
        from: u64,
        to: u64,
    ) -> Result<Vec<DownRow>, StoreError> {
        let range = DownRange {
            site,
            device,
            stream,
            from,
            to,
        };
        Ok(self
            .down_ranges(std::slice::from_ref(&range))?
            .pop()
            .unwrap_or_default())
    }

    /// [`OmsStore::down_range`] for several devices at once, answered in the same order,
    /// in one transaction: the sender writes once for every device whose window opened,
    /// not once per device.
    fn down_ranges(&mut self, ranges: &[DownRange<'_>]) -> Result<Vec<Vec<DownRow>>, StoreError>;

    /// The agent acknowledged every message of `stream` through `through`.
    fn down_acked(
        &mut self,
        site: &str,
        device: &str,
        stream: u64,
        through: u64,
    ) -> Result<usize, StoreError>;

    /// The state of down message `msg_no` of `device`.
    fn down_state(
        &self,
        site: &str,
        device: &str,
        msg_no: u64,
    ) -> Result<Option<DownState>, StoreError>;

    /// Every (site, device) with down messages not yet acknowledged.
    fn devices_with_pending_down(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// Stored events with a cursor above `after`, oldest first, at most `limit`. Cursors
    /// become visible in order: a reader never sees a cursor before a lower one commits.
    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError>;

    /// Records presence and the latest status or birth.
    fn presence(
        &mut self,
        site: &str,
        device: &str,
        online: Option<(bool, u64)>,
        birth: Option<&str>,
        status: Option<&str>,
        now: u64,
    ) -> Result<(), StoreError>;

    /// Down messages queued after `after` = (created, site, device, msg_no), in that
    /// order, at most `limit`: the floor view reads waves and cancellations with it.
    fn down_log_after(
        &self,
        after: (u64, &str, &str, u64),
        limit: usize,
    ) -> Result<Vec<DownLogRow>, StoreError>;

    /// Every device known, by site and id.
    fn devices(&self) -> Result<Vec<DeviceRow>, StoreError>;

    /// Totals for monitoring.
    fn totals(&self) -> Result<StoreTotals, StoreError>;

    /// Held events that the calls since the last take stored (a gap filled): they were
    /// not in any call's answer. A backend that never holds has none.
    fn take_promoted(&mut self) -> Vec<StoredEvent> {
        Vec::new()
    }

    /// Claims the right to publish these devices' down messages for `ttl_ms`, as
    /// `owner`; returns those `owner` holds now. Several bridges on one store publish
    /// each device from one of them at a time; a claim not renewed lapses, so another
    /// bridge takes over a killed one's devices. A store only one bridge can use grants
    /// every claim.
    fn claim(
        &mut self,
        owner: &str,
        devices: &[(String, String)],
        ttl_ms: u64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let _ = (owner, ttl_ms);
        Ok(devices.to_vec())
    }
}

/// The alarm when a birth shows events acknowledged by another consumer that this store
/// never had (every backend raises the same words).
pub(super) fn acked_elsewhere(first: u64, acked: u64, incarnation: u64) -> String {
    format!(
        "events {first}..={acked} of incarnation {incarnation:016x} were acknowledged by \
         another consumer and are not in this store"
    )
}

/// The alarm when a replaced device's old incarnation had events that never arrived.
pub(super) fn events_lost(first: u64, high: u64, old: u64) -> String {
    format!(
        "device replaced: events {first}..={high} of incarnation {old:016x} never arrived \
         and are gone"
    )
}

/// The alarm when a replaced device's unapplied down messages move to its new stream.
pub(super) fn readdressed(count: usize, incarnation: u64) -> String {
    format!(
        "device replaced: {count} unapplied down messages re-addressed to incarnation \
         {incarnation:016x}; messages it had applied are not on the new database, resend the \
         device's open work"
    )
}

/// A stored state name and detail as a [`DownState`].
pub(super) fn down_state(state: &str, detail: Option<String>) -> DownState {
    match state {
        "queued" => DownState::Queued,
        "sent" => DownState::Sent,
        "applied" => DownState::Applied,
        _ => DownState::Rejected {
            detail: detail.unwrap_or_default(),
        },
    }
}
