//! The OMS side's bookkeeping of agent events, pure: which `(device, seq)` pairs were
//! seen, and up to which seq each device may be acknowledged (cumulatively).

use std::collections::{BTreeSet, HashMap};

/// Whether an event is new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time: process it.
    New,
    /// Already processed (a resend after a reconnect): drop it.
    Duplicate,
}

#[derive(Debug, Default, Clone)]
struct Device {
    /// Every seq up to and including this one was seen.
    through: u64,
    /// Seen seqs above `through + 1`, waiting for the gap to fill.
    ahead: BTreeSet<u64>,
}

/// Per-device dedupe and cumulative ack point.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    devices: HashMap<String, Device>,
}

impl Ledger {
    /// An empty ledger: the first event seen from a device sets where it starts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Restores a device's ack point (from the OMS's own storage).
    pub fn restore(&mut self, device: &str, through: u64) {
        self.devices.entry(device.to_string()).or_default().through = through;
    }

    /// Records event `seq` of `device`. A device never seen before starts at its first
    /// event: earlier events were acknowledged by an earlier OMS run.
    pub fn record(&mut self, device: &str, seq: u64) -> Seen {
        let d = self
            .devices
            .entry(device.to_string())
            .or_insert_with(|| Device {
                through: seq.saturating_sub(1),
                ahead: BTreeSet::new(),
            });
        if seq <= d.through || !d.ahead.insert(seq) {
            return Seen::Duplicate;
        }
        while d.ahead.remove(&(d.through + 1)) {
            d.through += 1;
        }
        Seen::New
    }

    /// The highest seq that may be acknowledged for `device` (all up to it were seen).
    pub fn ack_point(&self, device: &str) -> u64 {
        self.devices.get(device).map_or(0, |d| d.through)
    }

    /// Events seen above a gap (waiting for an earlier seq), for diagnostics.
    pub fn waiting(&self, device: &str) -> usize {
        self.devices.get(device).map_or(0, |d| d.ahead.len())
    }

    /// Devices known to the ledger.
    pub fn devices(&self) -> impl Iterator<Item = (&str, u64)> {
        self.devices.iter().map(|(k, d)| (k.as_str(), d.through))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_dropped_and_acks_are_cumulative_over_gaps() {
        let mut l = Ledger::new();
        assert_eq!(l.record("d1", 1), Seen::New);
        assert_eq!(l.record("d1", 2), Seen::New);
        assert_eq!(l.record("d1", 2), Seen::Duplicate);
        assert_eq!(l.record("d1", 4), Seen::New);
        assert_eq!(l.ack_point("d1"), 2, "3 is missing: ack stops at 2");
        assert_eq!(l.waiting("d1"), 1);
        assert_eq!(l.record("d1", 4), Seen::Duplicate);
        assert_eq!(l.record("d1", 3), Seen::New);
        assert_eq!(l.ack_point("d1"), 4);
        assert_eq!(l.record("d1", 1), Seen::Duplicate);
        assert_eq!(l.ack_point("d2"), 0);
    }

    #[test]
    fn a_device_first_seen_mid_stream_starts_there_unless_restored() {
        let mut l = Ledger::new();
        assert_eq!(l.record("d1", 500), Seen::New);
        assert_eq!(l.ack_point("d1"), 500);
        let mut r = Ledger::new();
        r.restore("d1", 100);
        assert_eq!(r.record("d1", 500), Seen::New);
        assert_eq!(r.ack_point("d1"), 100, "101..499 still missing");
    }
}
