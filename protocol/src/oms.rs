//! Messages between the OMS and an agent, over MQTT.
//!
//! - [`DownMsg`]: OMS → agent, on `floorhand/v1/{site}/{device}/down`: a [`Down`] with the
//!   incarnation of the OMS-side store that numbered it.
//! - [`UpMsg`]: agent → OMS, on `.../up` (events, acks of down messages, status) and
//!   `.../state` (birth, death): an [`Up`] with the incarnation of the agent's database.
//!
//! One reliable channel design serves both directions (protocol version 2). Each side
//! numbers what it must deliver exactly once with a per-device sequence, contiguous from 1
//! and scoped to the sender's incarnation (a random id made when its store was created):
//! events carry `Event::seq`, sequenced down messages carry the envelope's `msg_id` (the
//! down seq, "dseq"). The receiver applies strictly in order and acknowledges cumulatively
//! at application level (`Down::Ack` for events, `Up::DownAck` for down messages); the
//! sender keeps everything unacknowledged, keeps a bounded window in flight, and re-sends.
//!
//! These are wire types: the agent converts them to and from its own domain and store
//! types at its edges, so that nothing renamed in the agent changes a byte here.
//! Enum variants are only ever appended.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::envelope::{self, DecodeError, EncodeError, Envelope, LimitError};
use crate::limits::{
    MAX_DOWN_BYTES, MAX_PACK_LINES, MAX_PACK_ORDERS_IN_BIRTH, MAX_TASKS_PER_WAVE, MAX_TEXT,
    MAX_UP_BYTES, MAX_WAVES_IN_BIRTH,
};

/// A calendar date as GS1 writes it. `day == 0` means "end of the month", as GS1 allows
/// for expiry and best-before dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Date {
    /// Full year, e.g. 2027.
    pub year: u16,
    /// 1 to 12.
    pub month: u8,
    /// 0 (end of month) to 31.
    pub day: u8,
}

/// A GTIN the item can be scanned by, and how many units one scan of it counts for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GtinPack {
    /// GTIN-14, 14 digits with its check digit (shorter GTINs zero-padded on the left).
    pub gtin: String,
    /// Units in this pack level: 1 for the each, 12 for a case of twelve.
    pub pack_qty: u32,
}

/// What must be captured for each unit picked or packed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capture {
    /// Lot / batch number (GS1 AI 10).
    pub lot: bool,
    /// Serial number (GS1 AI 21).
    pub serial: bool,
    /// Expiry date (GS1 AI 17).
    pub expiry: bool,
}

/// One pick task in a wave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// OMS task id, unique across waves.
    pub task_id: u64,
    /// Order this task fulfils.
    pub order_id: String,
    /// Line of the order.
    pub order_line: u32,
    /// Location code, as printed on the location label, e.g. `A-12-03-B`.
    pub location: String,
    /// Position of the location in the walking path (lower first).
    pub pick_seq: u32,
    /// The location's two-digit check code (0-99), spoken or typed instead of a scan.
    pub location_check: u8,
    /// GTINs the item may be scanned by.
    pub gtins: Vec<GtinPack>,
    /// The OMS's item number.
    pub sku: String,
    /// Short description shown to the picker.
    pub description: String,
    /// Units to pick.
    pub qty: u32,
    /// What must be captured per unit.
    pub capture: Capture,
    /// Whether the picked units must be scanned into a tote.
    pub tote_required: bool,
}

/// A wave of pick tasks for one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wave {
    /// OMS wave id.
    pub wave_id: u64,
    /// Version of this wave; the agent applies a wave only if its version is newer than
    /// the one it has.
    pub version: u32,
    /// Higher is more urgent.
    pub priority: u8,
    /// Unix time (seconds) by which the wave should be picked.
    pub cutoff: u64,
    /// Tasks the OMS meant to send; a mismatch with `tasks.len()` makes the agent ask
    /// for a resync.
    pub task_count: u32,
    /// [`wave_digest`] of `tasks` as the OMS computed it; a mismatch makes the agent ask
    /// for a resync.
    pub digest: u32,
    /// The tasks, the complete set for this wave version.
    pub tasks: Vec<Task>,
}

/// A postal address on a shipping label.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// Person or department.
    pub name: String,
    /// Company, may be empty.
    pub company: String,
    /// Street lines.
    pub lines: Vec<String>,
    /// City.
    pub city: String,
    /// State, province or region, may be empty.
    pub region: String,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
}

/// A line a pack station must verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackLine {
    /// Line of the order.
    pub order_line: u32,
    /// GTINs the item may be scanned by.
    pub gtins: Vec<GtinPack>,
    /// The OMS's item number.
    pub sku: String,
    /// Short description shown to the packer.
    pub description: String,
    /// Units to pack.
    pub qty: u32,
    /// What must be captured per unit.
    pub capture: Capture,
    /// Expected weight of one unit in grams, 0 if unknown.
    pub unit_weight_g: u32,
}

/// An order a pack station must verify and ship.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackOrder {
    /// Order id.
    pub order_id: String,
    /// Totes the order was picked into, each scannable to start packing.
    pub totes: Vec<String>,
    /// Lines to verify.
    pub lines: Vec<PackLine>,
    /// Sender.
    pub ship_from: Address,
    /// Recipient.
    pub ship_to: Address,
    /// Carrier, e.g. `DHL`.
    pub carrier: String,
    /// Carrier service, e.g. `Express 12:00`.
    pub service: String,
    /// Carrier tracking number, printed as Code 128.
    pub tracking: String,
}

/// Settings the OMS may change on a running agent. `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigUpdate {
    /// Seconds between `Status` messages.
    pub status_interval_s: Option<u32>,
    /// Hours to keep completed, acknowledged data before it is purged.
    pub retention_hours: Option<u32>,
    /// Storage use (percent of the limit) at which the agent raises an alarm.
    pub storage_alarm_pct: Option<u8>,
}

/// OMS → agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Down {
    /// A new wave, or a newer version of one the agent has.
    WaveAssigned(Wave),
    /// Tasks taken away from this device.
    TasksRevoked {
        /// Wave the tasks belong to.
        wave_id: u64,
        /// The tasks.
        task_ids: Vec<u64>,
    },
    /// An order was cancelled: every task and pack order for it stops.
    OrderCancelled {
        /// The order.
        order_id: String,
    },
    /// An order for a pack station to verify and ship.
    PackOrder(alloc::boxed::Box<PackOrder>),
    /// Cumulative application-level ack: every event of agent incarnation `incarnation`
    /// with `seq <= up_to_seq` is stored by the OMS, and the agent may delete it. An ack
    /// for another incarnation (a replaced device's) is ignored. Not sequenced: sent with
    /// `msg_id` 0.
    Ack {
        /// The agent incarnation the seqs belong to.
        incarnation: u64,
        /// Highest acknowledged event seq.
        up_to_seq: u64,
    },
    /// The OMS asks the agent for a fresh `Birth`, after which it repairs what the birth
    /// shows. Not sequenced: sent with `msg_id` 0.
    ResyncRequest,
    /// New settings.
    ConfigUpdate(ConfigUpdate),
}

impl Down {
    /// Whether this message is numbered in the per-device down sequence (applied exactly
    /// once, in order, and acknowledged by `Up::DownAck`). `Ack` and `ResyncRequest` are
    /// control messages: idempotent, sent with `msg_id` 0, never acknowledged.
    pub fn is_sequenced(&self) -> bool {
        !matches!(self, Down::Ack { .. } | Down::ResyncRequest)
    }
}

/// A down message on the wire: the body of every `Envelope` on a down topic. For a
/// sequenced message the envelope's `msg_id` is its down seq (dseq): from 1, contiguous,
/// never reused within one stream. A stream is one OMS-side store (`oms_incarnation`)
/// talking to one agent database (`to_incarnation`): a replaced device gets a new stream,
/// into which the OMS side moves what the old one never applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownMsg {
    /// Incarnation of the OMS-side store that numbered the message.
    pub oms_incarnation: u64,
    /// Incarnation of the agent database the message is for, as its `Birth` or events
    /// told; an agent ignores a sequenced message for another incarnation. 0 only on
    /// control messages sent before the OMS side knows the device (`ResyncRequest`).
    pub to_incarnation: u64,
    /// The message.
    pub body: Down,
}

/// A wave the agent holds, as reported in [`Birth`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveVersion {
    /// Wave id.
    pub wave_id: u64,
    /// Highest applied version.
    pub version: u32,
    /// The wave arrived damaged (its `task_count` or `digest` did not match): the OMS
    /// should send it again, and the agent accepts the same version once more.
    pub needs_repair: bool,
}

/// Where a pack order is in its life on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PackOrderState {
    /// Received, nothing packed yet.
    Open,
    /// At least one carton closed, not finished.
    Packing,
    /// Shipped: every carton closed.
    Done,
    /// Cancelled by the OMS; never served for packing again.
    Cancelled,
}

/// A pack order the agent holds, as reported in [`Birth`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackOrderInfo {
    /// Order id.
    pub order_id: String,
    /// Its state.
    pub state: PackOrderState,
}

/// Sent retained on the state topic after every connect: everything the agent holds, so
/// the OMS can repair any difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Birth {
    /// Device id.
    pub device: String,
    /// Agent software version.
    pub software: String,
    /// [`crate::PROTOCOL_VERSION`] of the agent.
    pub protocol: u8,
    /// Goes up by one per connection; a `Death` with a lower session is stale.
    pub session: u64,
    /// Highest applied version of each open wave, and whether it needs repair.
    pub waves: Vec<WaveVersion>,
    /// Open (not done, not cancelled) pack orders.
    pub pack_orders: Vec<PackOrderInfo>,
    /// Highest event seq the agent has written.
    pub outbox_high_seq: u64,
    /// Highest event seq the OMS has acknowledged (all up to it are deleted).
    pub outbox_acked_seq: u64,
    /// The OMS incarnation whose down sequence the agent follows (0: none yet).
    pub down_oms_incarnation: u64,
    /// Highest down seq of that incarnation applied (or rejected) by the agent.
    pub down_applied_seq: u64,
}

/// The MQTT will, published by the broker when the agent vanishes, or by the agent on a
/// clean shutdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Death {
    /// Device id.
    pub device: String,
    /// The session this death ends; ignore it if a birth with a higher session was seen.
    pub session: u64,
}

/// What the label printer is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrinterState {
    /// No printer configured on this device.
    None,
    /// Ready to print.
    Ready,
    /// Not answering.
    Offline,
    /// Out of paper or labels.
    PaperOut,
    /// Ribbon out.
    RibbonOut,
    /// Print head open.
    HeadOpen,
    /// Paused by the operator.
    Paused,
    /// Another fault (temperature, buffer full).
    Fault,
}

/// Periodic health report. It also repeats the down ack point, so a lost `DownAck` is
/// repaired within one status interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Events not yet acknowledged by the OMS.
    pub backlog: u32,
    /// Age in seconds of the oldest unacknowledged event, 0 if none.
    pub oldest_unacked_s: u32,
    /// Label printer state.
    pub printer: PrinterState,
    /// Print jobs waiting.
    pub print_queue: u32,
    /// Database size in bytes.
    pub storage_bytes: u64,
    /// Database size as a percentage of the configured limit.
    pub storage_pct: u8,
    /// The OMS incarnation whose down sequence the agent follows (0: none yet).
    pub down_oms_incarnation: u64,
    /// Highest down seq of that incarnation applied (or rejected).
    pub down_applied_seq: u64,
}

/// Why a pick came up short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShortReason {
    /// Nothing at the location.
    LocationEmpty,
    /// Units there are damaged.
    Damaged,
    /// Another item is in the location.
    WrongItem,
    /// Fewer units than asked for.
    NotEnough,
}

/// A pick confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Picked {
    /// Task.
    pub task_id: u64,
    /// Units picked.
    pub qty: u32,
    /// Lot, where captured.
    pub lot: Option<String>,
    /// Serial, where captured.
    pub serial: Option<String>,
    /// Expiry, where captured.
    pub expiry: Option<Date>,
    /// Tote the units went into, where required.
    pub tote: Option<String>,
}

/// Why a down message was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectReason {
    /// Another protocol version.
    UnsupportedVersion,
    /// Over the size limit.
    TooLarge,
    /// Not a valid message.
    Malformed,
    /// Addressed to another device.
    WrongDevice,
    /// The agent's storage is full; it refuses new waves until the backlog drains.
    StorageFull,
    /// Valid bytes, but the content breaks a rule (limit, unknown wave, ...).
    Invalid,
}

/// Why the device refused a scan, by class (the operator's screen shows the details).
/// A supervisor counts these per operator and per class to find who needs training, a
/// label that does not scan, or a device whose work ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalReason {
    /// An item that is not the one asked for (not on the task, not in the order).
    WrongItem,
    /// A location that is not the task's.
    WrongLocation,
    /// The barcode does not read as valid GS1 data, or what it holds contradicts itself
    /// or what was scanned before (a bad check digit, a lot that differs, a bad expiry).
    BadBarcode,
    /// Nobody is logged in (or another operator is).
    NotLoggedIn,
    /// No work for this scan: no task to pick, no open order or tote of that code.
    NoTask,
    /// The device was still saving the previous step.
    Busy,
    /// More units than are left to pick or pack.
    TooMany,
    /// Any other refusal (a scan at the wrong step, a serial already taken, ...).
    Other,
}

/// What happened, in an [`Event`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// The picker arrived at a task's location.
    TaskStarted {
        /// Task.
        task_id: u64,
    },
    /// Units picked.
    Picked(Picked),
    /// Fewer units picked than asked for, with a reason. `qty` is what was picked.
    ShortPicked {
        /// Task.
        task_id: u64,
        /// Units actually picked.
        qty: u32,
        /// Why.
        reason: ShortReason,
    },
    /// The picker postponed a task to the end of the path.
    Skipped {
        /// Task.
        task_id: u64,
    },
    /// Units of a cancelled or revoked task were put back.
    PutBack {
        /// Task.
        task_id: u64,
        /// Units put back.
        qty: u32,
        /// Where.
        location: String,
    },
    /// Every line of an order was scanned into cartons at a pack station.
    PackVerified {
        /// Order.
        order_id: String,
    },
    /// A carton was closed.
    CartonClosed {
        /// Order.
        order_id: String,
        /// Carton number within the order, from 1.
        carton_no: u16,
        /// The carton's SSCC, 18 digits.
        sscc: String,
        /// Weight in grams.
        weight_g: u32,
        /// Set when the order ships incomplete: why.
        short_ship: Option<String>,
    },
    /// A label printed and the printer reported no fault.
    LabelPrinted {
        /// SSCC of the carton.
        sscc: String,
        /// Print job id.
        job_id: u64,
    },
    /// A label could not be printed.
    PrintFailed {
        /// SSCC of the carton.
        sscc: String,
        /// Print job id.
        job_id: u64,
        /// What the printer or transport reported.
        fault: String,
    },
    /// Something the OMS must look at: a cancellation after a pick, a mismatch.
    Conflict {
        /// Task concerned, 0 if none.
        task_id: u64,
        /// What happened, for a person.
        detail: String,
    },
    /// A down message the agent could not accept.
    Rejected {
        /// Its message id, 0 if unreadable.
        msg_id: u64,
        /// Why.
        reason: RejectReason,
        /// Details for a person.
        detail: String,
    },
    /// The last confirmation of a task was undone on the device.
    PickUndone {
        /// Task.
        task_id: u64,
        /// Units taken back out of the confirmation.
        qty: u32,
    },
    /// An operator logged in.
    LoggedIn,
    /// The operator logged out.
    LoggedOut,
    /// Storage crossed its alarm mark (or fell back below it: `pct` tells).
    StorageAlarm {
        /// Storage use in percent of the limit.
        pct: u8,
    },
    /// The device refused scans of one class (with an error beep and a screen telling
    /// why). Coalesced on the device: at most one such event per class per second; `count`
    /// is how many refusals of that class it stands for (the first refusal after a quiet
    /// second is sent at once with `count` 1; those within the second are counted into
    /// the next one), so a storm of bad scans cannot flood the outbox.
    ScanRefused {
        /// The class.
        reason: RefusalReason,
        /// The task the last of them concerned, if any.
        task_id: Option<u64>,
        /// Refusals this event stands for, at least 1.
        count: u32,
    },
    /// A picker's display terminal said hello with this firmware version: sent once per
    /// agent run for the first terminal, and again whenever a terminal with another
    /// version connects (a swapped or re-flashed terminal), so the OMS always knows what
    /// runs at the picker's hand.
    TerminalConnected {
        /// The terminal firmware's software version, as its link `Hello` gave it
        /// (at most 16 bytes).
        software: String,
    },
}

/// Something that happened on the device, sent exactly once in `seq` order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Per-device sequence number: starts at 1, never reused, no gaps.
    pub seq: u64,
    /// Unix time in seconds.
    pub at: u64,
    /// Operator number, 0 if nobody is logged in.
    pub operator: u32,
    /// What happened.
    pub kind: EventKind,
}

/// Agent → OMS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Up {
    /// Sent retained on the state topic after every connect.
    Birth(Birth),
    /// The MQTT will.
    Death(Death),
    /// Periodic health report.
    Status(Status),
    /// An event from the outbox.
    Event(Event),
    /// Cumulative application-level ack of down messages: every down message of
    /// `oms_incarnation` with dseq `<= through` is applied or rejected (with a `Rejected`
    /// event) and committed. Sent promptly after applying, and repeated whenever a
    /// duplicate arrives.
    DownAck {
        /// The OMS incarnation the dseqs belong to.
        oms_incarnation: u64,
        /// Highest down seq applied.
        through: u64,
    },
}

/// An up message on the wire: the body of every `Envelope` on an up or state topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpMsg {
    /// Incarnation of the agent's database: a random id made when the database was
    /// created. Event seqs are scoped to it, so a replaced or restored device is told
    /// apart at once.
    pub incarnation: u64,
    /// The message.
    pub body: Up,
}

/// CRC-32 (ISO-HDLC) of the postcard encoding of `tasks`, in order: the digest a wave
/// declares so the agent can tell a complete wave from a damaged one.
pub fn wave_digest(tasks: &[Task]) -> u32 {
    // The frame's CRC-32, computed 16 bytes a step (a 16 KiB table instead of 1 KiB):
    // a 10,000-task wave is about a megabyte. Only `alloc` builds (the agent, the OMS)
    // link it, never the firmware.
    const DIGEST: crc::Crc<u32, crc::Table<16>> =
        crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISO_HDLC);
    let mut digest = DIGEST.digest();
    // One buffer reused for every task: a 10,000-task wave would otherwise allocate
    // 10,000 vectors. Serialising into a Vec cannot fail for these types.
    let mut buf = Vec::new();
    for task in tasks {
        buf.clear();
        buf = postcard::to_extend(task, buf).unwrap_or_default();
        digest.update(&buf);
    }
    digest.finalize()
}

fn check_len(what: &'static str, len: usize, max: usize) -> Result<(), LimitError> {
    if len > max {
        Err(LimitError::TooMany { what, len, max })
    } else {
        Ok(())
    }
}

fn check_text(what: &'static str, s: &str) -> Result<(), LimitError> {
    if s.len() > MAX_TEXT {
        Err(LimitError::TooLong {
            what,
            len: s.len(),
            max: MAX_TEXT,
        })
    } else {
        Ok(())
    }
}

fn check_gtins(gtins: &[GtinPack]) -> Result<(), LimitError> {
    check_len("gtins", gtins.len(), 16)?;
    gtins.iter().try_for_each(|g| check_text("gtin", &g.gtin))
}

fn check_address(a: &Address) -> Result<(), LimitError> {
    check_len("address lines", a.lines.len(), 4)?;
    for s in [
        &a.name,
        &a.company,
        &a.city,
        &a.region,
        &a.postal_code,
        &a.country,
    ] {
        check_text("address", s)?;
    }
    a.lines.iter().try_for_each(|l| check_text("address", l))
}

impl Down {
    /// Checks the protocol limits: list lengths and text lengths.
    pub fn check_limits(&self) -> Result<(), LimitError> {
        match self {
            Down::WaveAssigned(w) => {
                check_len("wave tasks", w.tasks.len(), MAX_TASKS_PER_WAVE)?;
                for t in &w.tasks {
                    check_gtins(&t.gtins)?;
                    for s in [&t.order_id, &t.location, &t.sku, &t.description] {
                        check_text("task", s)?;
                    }
                }
                Ok(())
            }
            Down::TasksRevoked { task_ids, .. } => {
                check_len("revoked tasks", task_ids.len(), MAX_TASKS_PER_WAVE)
            }
            Down::OrderCancelled { order_id } => check_text("order_id", order_id),
            Down::PackOrder(p) => {
                check_len("pack lines", p.lines.len(), MAX_PACK_LINES)?;
                check_len("totes", p.totes.len(), 64)?;
                for l in &p.lines {
                    check_gtins(&l.gtins)?;
                    check_text("sku", &l.sku)?;
                    check_text("description", &l.description)?;
                }
                for s in [&p.order_id, &p.carrier, &p.service, &p.tracking] {
                    check_text("pack order", s)?;
                }
                p.totes.iter().try_for_each(|t| check_text("tote", t))?;
                check_address(&p.ship_from)?;
                check_address(&p.ship_to)
            }
            Down::Ack { .. } | Down::ResyncRequest | Down::ConfigUpdate(_) => Ok(()),
        }
    }
}

/// Encodes a down message, refusing one the agent would reject for its size.
pub fn encode_down(env: &Envelope<DownMsg>) -> Result<Vec<u8>, EncodeError> {
    env.body.body.check_limits()?;
    let bytes = envelope::encode_to_vec(env);
    if bytes.len() > MAX_DOWN_BYTES {
        return Err(EncodeError::TooLarge {
            size: bytes.len(),
            limit: MAX_DOWN_BYTES,
        });
    }
    Ok(bytes)
}

/// Decodes a down message: version, size, format and protocol limits.
pub fn decode_down(bytes: &[u8]) -> Result<Envelope<DownMsg>, DecodeError> {
    let env: Envelope<DownMsg> = envelope::decode(bytes, MAX_DOWN_BYTES)?;
    env.body.body.check_limits()?;
    Ok(env)
}

/// The readable start of a down message whose body may not decode, so that a rejection
/// can be placed in the down sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownHeader {
    /// The envelope's `msg_id` (the dseq of a sequenced message).
    pub dseq: u64,
    /// [`DownMsg::oms_incarnation`].
    pub oms_incarnation: u64,
    /// [`DownMsg::to_incarnation`].
    pub to_incarnation: u64,
}

/// Reads the header of a down message whose body may not decode. `None` when even the
/// header is unreadable.
pub fn peek_down_header(bytes: &[u8]) -> Option<DownHeader> {
    postcard::take_from_bytes::<(u8, u64, u64, u64)>(bytes)
        .ok()
        .map(
            |((_, dseq, oms_incarnation, to_incarnation), _)| DownHeader {
                dseq,
                oms_incarnation,
                to_incarnation,
            },
        )
}

/// Encodes an up message.
pub fn encode_up(env: &Envelope<UpMsg>) -> Result<Vec<u8>, EncodeError> {
    if let Up::Birth(b) = &env.body.body {
        check_len("birth waves", b.waves.len(), MAX_WAVES_IN_BIRTH)?;
        check_len(
            "birth pack orders",
            b.pack_orders.len(),
            MAX_PACK_ORDERS_IN_BIRTH,
        )?;
    }
    let bytes = envelope::encode_to_vec(env);
    if bytes.len() > MAX_UP_BYTES {
        return Err(EncodeError::TooLarge {
            size: bytes.len(),
            limit: MAX_UP_BYTES,
        });
    }
    Ok(bytes)
}

/// Decodes an up message (the OMS side).
pub fn decode_up(bytes: &[u8]) -> Result<Envelope<UpMsg>, DecodeError> {
    envelope::decode(bytes, MAX_UP_BYTES)
}
