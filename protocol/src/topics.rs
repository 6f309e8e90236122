//! MQTT topic names, defined once for the agent and the OMS tools.
//!
//! Every device has its own three topics under `floorhand/v1/{site}/{device}/`, so a broker
//! ACL can confine each device to its own subtree:
//! - `down`: OMS → agent (waves, acks, ...), QoS 1.
//! - `up`: agent → OMS (events, status), QoS 1.
//! - `state`: retained birth; also the will topic, so the broker publishes `Death` there.

use alloc::format;
use alloc::string::String;

/// First topic level, shared by every Floorhand topic.
pub const ROOT: &str = "floorhand/v1";

/// OMS → agent topic of one device.
pub fn down(site: &str, device: &str) -> String {
    format!("{ROOT}/{site}/{device}/down")
}

/// Agent → OMS topic of one device.
pub fn up(site: &str, device: &str) -> String {
    format!("{ROOT}/{site}/{device}/up")
}

/// Retained presence topic of one device; also its will topic.
pub fn state(site: &str, device: &str) -> String {
    format!("{ROOT}/{site}/{device}/state")
}

/// The OMS's subscription to every device's events at a site (`+` for all sites).
pub fn oms_up_pattern(site: &str) -> String {
    format!("{ROOT}/{site}/+/up")
}

/// The OMS's subscription to every device's presence at a site (`+` for all sites).
pub fn oms_state_pattern(site: &str) -> String {
    format!("{ROOT}/{site}/+/state")
}

/// Which topic of which device a topic name is, if it is a Floorhand topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// Site.
    pub site: &'a str,
    /// Device.
    pub device: &'a str,
    /// Last level: `down`, `up` or `state`.
    pub kind: Kind,
}

/// The three per-device topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// OMS → agent.
    Down,
    /// Agent → OMS.
    Up,
    /// Presence.
    State,
}

/// Splits a topic name into site, device and kind.
pub fn parse(topic: &str) -> Option<Parsed<'_>> {
    let rest = topic.strip_prefix(ROOT)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let (site, device, last) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || site.is_empty() || device.is_empty() {
        return None;
    }
    let kind = match last {
        "down" => Kind::Down,
        "up" => Kind::Up,
        "state" => Kind::State,
        _ => return None,
    };
    Some(Parsed { site, device, kind })
}

/// Characters allowed in a site or device id, for error messages.
pub const ID_CHARS: &str = "A-Z a-z 0-9 - _ (1 to 64 of them)";

/// Whether `name` may be used as a site or device id: non-empty, at most 64 bytes of
/// `A-Z a-z 0-9 - _`, so that it is one topic level on every broker: no MQTT wildcard or
/// separator, and no `.`, which RabbitMQ's MQTT plugin turns into a level of its own.
pub fn valid_id(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}
