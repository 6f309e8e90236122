//! Size limits shared by every side, so that a sender refuses what a receiver would reject.

/// Largest encoded down message (OMS → agent) an agent accepts, in bytes.
///
/// A 10,000-task wave encodes to roughly 700 KiB; the limit leaves room for longer
/// descriptions. The agent sets its MQTT maximum packet size just above this.
pub const MAX_DOWN_BYTES: usize = 2 * 1024 * 1024;

/// Largest encoded up message (agent → OMS), in bytes. Events are small; a birth
/// message lists the open waves and pack orders, bounded by [`MAX_WAVES_IN_BIRTH`] and
/// [`MAX_PACK_ORDERS_IN_BIRTH`] (at most about 150 KiB together).
pub const MAX_UP_BYTES: usize = 256 * 1024;

/// Largest MQTT message either side accepts from the broker, in bytes, and the most an
/// operator may set the broker's `message_size_limit` to. It is above both protocol limits
/// so that any message a broker delivers can be read and then refused with a `Rejected`
/// (and acknowledged): a message over a client's packet limit is never acknowledged and
/// the broker redelivers it on every reconnect, forever.
pub const MAX_BROKER_MESSAGE: usize = 16 * 1024 * 1024;

/// Most events the agent keeps in flight to the OMS (published, not yet acknowledged).
/// Below Mosquitto's default `max_queued_messages` (1000), so the OMS side's queue holds
/// a device's whole window (a site of devices shares that queue: after a loss each
/// device sends half as many at a time, see the ledger). Two OMS commits' worth: the OMS
/// side acknowledges a burst once it has committed it, and with 256 the agent sat idle
/// for each of those round trips (a backlog drained at 0.94x `mosquitto_pub`; with 512,
/// 1.08x and 1.22x in two runs of `scripts/bench --only drain`).
pub const WINDOW: usize = 512;

/// Most sequenced down messages the OMS side keeps in flight (sent, not yet acknowledged
/// by the agent) per device. They go at QoS 0: the ledger re-sends what is not
/// acknowledged, so the broker's QoS 1 would add only a PUBACK per message, and with a
/// stock Mosquitto (Nagle's algorithm on its sockets) a PUBACK the OMS side has not yet
/// ACKed at TCP level holds the agent's `DownAck` behind it for up to 40 ms. A connected
/// subscriber's QoS 0 messages are never queued or dropped by Mosquitto; an offline one's
/// are dropped and re-sent after its `Birth`. Below `max_queued_messages` all the same,
/// for an OMS side that publishes at QoS 1.
pub const DOWN_WINDOW: usize = 768;

/// Most tasks one wave may carry.
pub const MAX_TASKS_PER_WAVE: usize = 20_000;

/// Most lines one pack order may carry.
pub const MAX_PACK_LINES: usize = 1_000;

/// Most wave versions listed in a birth message (the most recent ones).
pub const MAX_WAVES_IN_BIRTH: usize = 1_000;

/// Most open pack orders listed in a birth message (the most recent ones).
pub const MAX_PACK_ORDERS_IN_BIRTH: usize = 256;

/// Largest serial link frame on the wire, including COBS overhead and the delimiter.
pub const MAX_LINK_FRAME: usize = 256;

/// Message ids on the serial link count from 1 up to this and wrap to 1, so an id always
/// takes at most 3 bytes and every screen update fits the 64-byte budget (link ids only
/// tell frames apart in logs; nothing deduplicates by them).
pub const MAX_LINK_MSG_ID: u64 = (1 << 21) - 1;

/// Longest barcode payload carried in a link `Scan`, in bytes.
pub const MAX_SCAN_BYTES: usize = 128;

/// Longest free-text field accepted in a down message (descriptions, addresses), in bytes.
pub const MAX_TEXT: usize = 512;
