//! Which PUBACK belongs to which event, pure: the link core's bookkeeping of the QoS 1
//! publishes it handed to rumqttc on the current connection.
//!
//! rumqttc's `publish` returns no packet id (docs/dev/field-notes.md): ids are learnt from
//! the event loop's `Outgoing::Publish(pkid)` events, which come in the order the publishes were
//! queued. An `Outgoing::AwaitAck(pkid)` says the publish waits for that id to be acked
//! (the broker acked out of order); its `Outgoing::Publish` comes later, so it does not
//! take a queued entry. A new connection starts from nothing: an id of the last one means
//! nothing on this one.

use std::collections::{HashMap, VecDeque};

/// What a QoS 1 publish was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// An outbox event with this seq.
    Event(u64),
    /// A birth, status or down ack (nothing to record on its PUBACK).
    Other,
}

/// The QoS 1 publishes of one connection.
#[derive(Debug, Default)]
pub struct Pubacks {
    /// Handed to rumqttc, no packet id yet, in order.
    queued: VecDeque<Sent>,
    /// Packet id -> what it carries.
    inflight: HashMap<u16, Sent>,
}

impl Pubacks {
    /// Publishes handed over and not yet acknowledged by the broker.
    pub fn len(&self) -> usize {
        self.queued.len() + self.inflight.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A QoS 1 publish was handed to rumqttc.
    pub fn queued(&mut self, what: Sent) {
        self.queued.push_back(what);
    }

    /// rumqttc wrote the oldest queued publish with packet id `pkid`.
    pub fn written(&mut self, pkid: u16) {
        if let Some(what) = self.queued.pop_front() {
            self.inflight.insert(pkid, what);
        }
    }

    /// The broker acknowledged `pkid`: the event seq it carried, if it was an event.
    pub fn acked(&mut self, pkid: u16) -> Option<u64> {
        match self.inflight.remove(&pkid) {
            Some(Sent::Event(seq)) => Some(seq),
            _ => None,
        }
    }

    /// The connection is gone: rumqttc dropped or will replay what was pending, and the
    /// sender re-sends every unacknowledged event anyway.
    pub fn reset(&mut self) {
        self.queued.clear();
        self.inflight.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    enum Step {
        Queue(Sent),
        Written(u16),
        Ack(u16, Option<u64>),
        Reset,
        Len(usize),
    }

    fn check(steps: &[Step]) {
        let mut p = Pubacks::default();
        for (i, s) in steps.iter().enumerate() {
            match s {
                Step::Queue(w) => p.queued(*w),
                Step::Written(id) => p.written(*id),
                Step::Ack(id, want) => assert_eq!(p.acked(*id), *want, "step {i}"),
                Step::Reset => p.reset(),
                Step::Len(n) => assert_eq!(p.len(), *n, "step {i}"),
            }
        }
    }

    #[test]
    fn ids_are_learnt_in_queue_order_and_acks_name_the_event() {
        use Step::*;
        check(&[
            Queue(Sent::Event(7)),
            Queue(Sent::Other),
            Queue(Sent::Event(8)),
            Len(3),
            Written(1),
            Written(2),
            Written(3),
            Ack(3, Some(8)),
            Ack(2, None),
            Ack(1, Some(7)),
            Ack(1, None),
            Len(0),
        ]);
    }

    #[test]
    fn an_id_of_the_last_connection_acks_nothing_on_the_next() {
        use Step::*;
        check(&[
            Queue(Sent::Event(1)),
            Written(5),
            Reset,
            Queue(Sent::Event(2)),
            Ack(5, None),
            Written(5),
            Ack(5, Some(2)),
        ]);
    }
}
