//! The reliable channel's bookkeeping, pure and shared by both directions: the agent sends
//! events and receives down messages; the OMS side sends down messages and receives events.
//!
//! - [`Outflow`], the sender of one stream: contiguous seqs from 1, a cumulative ack point,
//!   at most `window` seqs in flight (so no broker queue limit can drop anything: Mosquitto
//!   keeps 1000 per client by default, docs/dev/field-notes.md), and a re-send of everything
//!   in flight, from the lowest unacked seq, when no ack moves for a while, with backoff. The
//!   window in use shrinks by half at each such silence (to [`MIN_WINDOW`]) and grows by one
//!   seq per ack that moves, up to `window` (a new connection starts at `window` again):
//!   many devices sharing one receiver's broker queue
//!   (a bridge subscribed to a whole site) settle below that queue instead of overrunning
//!   it again after every loss.
//! - [`place`], the receiver: the next seq is applied, an old one is a duplicate to
//!   acknowledge again (its ack was lost), a later one waits for the sender's re-send.
//!
//! Time is a monotonic millisecond count passed in; nothing here reads a clock.

use std::ops::RangeInclusive;

/// Where a received seq falls, given the receiver's cumulative ack point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// `through + 1`: apply it, then acknowledge.
    Next,
    /// Already applied: acknowledge `through` again, change nothing.
    Duplicate,
    /// A gap: an earlier seq is missing. Drop it and acknowledge `through`; the sender
    /// re-sends from its lowest unacked seq.
    Ahead,
}

/// Places `seq` against the receiver's ack point `through`.
pub fn place(through: u64, seq: u64) -> Placement {
    match seq.cmp(&through.saturating_add(1)) {
        std::cmp::Ordering::Less => Placement::Duplicate,
        std::cmp::Ordering::Equal => Placement::Next,
        std::cmp::Ordering::Greater => Placement::Ahead,
    }
}

/// The smallest window in use after losses.
pub const MIN_WINDOW: u64 = 16;

/// Re-send timing: the first re-send after `first_ms` without progress, doubling up to
/// `max_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Wait before the first re-send, in milliseconds.
    pub first_ms: u64,
    /// Longest wait between re-sends, in milliseconds.
    pub max_ms: u64,
}

/// What an ack did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckEffect {
    /// The ack point moved from `from` to `to`: seqs `from + 1 ..= to` may be deleted.
    Advanced {
        /// The old ack point.
        from: u64,
        /// The new one.
        to: u64,
    },
    /// Nothing new (a repeated ack).
    Stale,
    /// The ack names a seq never written; it is clamped to the highest written seq.
    Beyond {
        /// What the receiver claimed.
        claimed: u64,
    },
}

/// The sender side of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outflow {
    acked: u64,
    high: u64,
    /// Highest seq handed out for sending since the last rewind.
    sent: u64,
    window: u64,
    /// The window in use: halved by a silence, grown by one per ack that moves.
    cwnd: u64,
    timing: Timing,
    /// Current re-send delay.
    delay_ms: u64,
    /// When to re-send if nothing moves; `None` while nothing is in flight.
    deadline: Option<u64>,
    connected: bool,
}

impl Outflow {
    /// A stream whose receiver acknowledged through `acked` and whose sender has written
    /// through `high`. Nothing is sent until [`Outflow::connected`].
    pub fn new(acked: u64, high: u64, window: usize, timing: Timing) -> Self {
        Outflow {
            acked,
            high: high.max(acked),
            sent: acked,
            window: window.max(1) as u64,
            cwnd: window.max(1) as u64,
            timing,
            delay_ms: timing.first_ms,
            deadline: None,
            connected: false,
        }
    }

    /// The cumulative ack point.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The highest seq written.
    pub fn high(&self) -> u64 {
        self.high
    }

    /// Seqs written but not yet acknowledged.
    pub fn backlog(&self) -> u64 {
        self.high - self.acked
    }

    /// The window in use (at most the one given to [`Outflow::new`]).
    pub fn window_in_use(&self) -> u64 {
        self.cwnd
    }

    /// Seqs sent (or being sent) and not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.sent - self.acked
    }

    /// A (new) connection is up: everything unacknowledged is sent again from the lowest
    /// unacked seq, because a broker without a session forgets what was in flight.
    pub fn connected(&mut self, now_ms: u64) {
        self.connected = true;
        self.sent = self.acked;
        // A new connection (or the receiver's birth) starts at the whole window again:
        // what shrank it was a silence of the last one, often only the receiver being away.
        self.cwnd = self.window;
        self.delay_ms = self.timing.first_ms;
        self.deadline = None;
        let _ = now_ms;
    }

    /// The connection is gone: nothing is sent until the next one.
    pub fn disconnected(&mut self) {
        self.connected = false;
        self.sent = self.acked;
        self.deadline = None;
    }

    /// The sender wrote seqs through `high`.
    pub fn written(&mut self, high: u64) {
        self.high = self.high.max(high);
    }

    /// The receiver acknowledged everything through `through`.
    pub fn ack(&mut self, through: u64, now_ms: u64) -> AckEffect {
        let claimed = through;
        let through = through.min(self.high);
        if through <= self.acked {
            return if claimed > self.high {
                AckEffect::Beyond { claimed }
            } else {
                AckEffect::Stale
            };
        }
        let from = self.acked;
        self.acked = through;
        self.sent = self.sent.max(through);
        self.cwnd = (self.cwnd + 1).min(self.window);
        self.delay_ms = self.timing.first_ms;
        self.deadline = (self.sent > self.acked).then(|| now_ms + self.delay_ms);
        if claimed > self.high {
            return AckEffect::Beyond { claimed };
        }
        AckEffect::Advanced { from, to: through }
    }

    /// The seqs to publish now, if any: new ones inside the window, or, once the deadline
    /// passed without progress, everything in flight again (backing off). The caller
    /// publishes them in order.
    pub fn poll(&mut self, now_ms: u64) -> Option<RangeInclusive<u64>> {
        if !self.connected {
            return None;
        }
        if let Some(d) = self.deadline
            && now_ms >= d
            && self.sent > self.acked
        {
            // No ack moved for a whole delay: re-send the window from the lowest unacked,
            // and send less at a time (what was lost may have overrun a queue).
            self.sent = self.acked;
            self.cwnd = (self.cwnd / 2).max(MIN_WINDOW).min(self.window);
            self.delay_ms = (self.delay_ms * 2).min(self.timing.max_ms.max(self.timing.first_ms));
            self.deadline = None;
        }
        let limit = self.high.min(self.acked + self.cwnd);
        if limit <= self.sent {
            return None;
        }
        let range = self.sent + 1..=limit;
        self.sent = limit;
        if self.deadline.is_none() {
            self.deadline = Some(now_ms + self.delay_ms);
        }
        Some(range)
    }

    /// When [`Outflow::poll`] should be called again without any other input (the re-send
    /// deadline), if ever.
    pub fn deadline(&self) -> Option<u64> {
        if self.connected && self.sent > self.acked {
            self.deadline
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        first_ms: 1000,
        max_ms: 8000,
    };

    /// One step of a scenario and what `poll` must return after it.
    enum Step {
        Connect(u64),
        Disconnect,
        Write(u64),
        Ack(u64, u64),
        Poll(u64, Option<(u64, u64)>),
    }

    /// Runs steps against an outflow built with `new(acked, high, window)`.
    fn check(start: (u64, u64, usize), steps: &[Step]) -> Outflow {
        let mut o = Outflow::new(start.0, start.1, start.2, T);
        for (i, s) in steps.iter().enumerate() {
            match s {
                Step::Connect(now) => o.connected(*now),
                Step::Disconnect => o.disconnected(),
                Step::Write(h) => o.written(*h),
                Step::Ack(through, now) => {
                    o.ack(*through, *now);
                }
                Step::Poll(now, want) => {
                    let got = o.poll(*now).map(|r| (*r.start(), *r.end()));
                    assert_eq!(got, *want, "step {i}");
                }
            }
        }
        o
    }

    #[test]
    fn nothing_is_sent_before_a_connection_and_everything_unacked_after_one() {
        use Step::*;
        check(
            (10, 15, 100),
            &[
                Poll(0, None),
                Connect(0),
                Poll(0, Some((11, 15))),
                Poll(1, None),
            ],
        );
    }

    #[test]
    fn the_window_bounds_what_is_in_flight_and_acks_open_it() {
        use Step::*;
        let o = check(
            (0, 1000, 256),
            &[
                Connect(0),
                Poll(0, Some((1, 256))),
                Poll(1, None),
                Ack(100, 2),
                Poll(2, Some((257, 356))),
                Ack(356, 3),
                Poll(3, Some((357, 612))),
            ],
        );
        assert_eq!(
            (o.acked(), o.in_flight(), o.backlog(), o.high()),
            (356, 256, 644, 1000)
        );
    }

    #[test]
    fn without_progress_the_window_is_resent_from_the_lowest_unacked_with_backoff() {
        use Step::*;
        check(
            (0, 10, 256),
            &[
                Connect(0),
                Poll(0, Some((1, 10))),
                Poll(999, None),
                Poll(1000, Some((1, 10))),
                Poll(2999, None),
                Poll(3000, Some((1, 10))),
                Ack(4, 3100),
                Poll(4099, None),
                Poll(4100, Some((5, 10))),
            ],
        );
    }

    #[test]
    fn a_silence_halves_the_window_down_to_its_minimum_and_each_moving_ack_grows_it_by_one() {
        use Step::*;
        let o = check(
            (0, 1000, 256),
            &[
                Connect(0),
                Poll(0, Some((1, 256))),
                // Lost: after the delay, half the window again from the lowest unacked.
                Poll(1000, Some((1, 128))),
                Poll(3000, Some((1, 64))),
                Poll(7000, Some((1, 32))),
                Poll(15_000, Some((1, 16))),
                Poll(23_000, Some((1, 16))),
                // Each ack that moves opens one more.
                Ack(10, 23_001),
                Poll(23_001, Some((17, 27))),
                Ack(10, 23_002),
                Poll(23_002, None),
                Ack(11, 23_003),
                Poll(23_003, Some((28, 29))),
            ],
        );
        assert_eq!(o.window_in_use(), 18);
        // A new connection starts at the whole window again.
        let mut o = o;
        o.disconnected();
        o.connected(24_000);
        assert_eq!(o.window_in_use(), 256);
        assert_eq!(o.poll(24_000), Some(12..=267));
        // Never above the window it was given.
        let mut o = Outflow::new(0, 1000, 4, T);
        o.connected(0);
        o.poll(0);
        o.ack(2, 1);
        assert_eq!(o.window_in_use(), 4);
    }

    #[test]
    fn backoff_stops_at_its_maximum() {
        let mut o = Outflow::new(0, 1, 8, T);
        o.connected(0);
        let mut now = 0;
        let mut gaps = Vec::new();
        let mut last = 0;
        // Bounded, so a stream that never sends fails here instead of hanging.
        while gaps.len() < 6 && now < 60_000 {
            if o.poll(now).is_some() {
                gaps.push(now - last);
                last = now;
            }
            now += 100;
        }
        assert_eq!(gaps, [0, 1000, 2000, 4000, 8000, 8000]);
    }

    #[test]
    fn a_reconnect_resends_everything_unacked_and_a_disconnect_sends_nothing() {
        use Step::*;
        check(
            (0, 5, 256),
            &[
                Connect(0),
                Poll(0, Some((1, 5))),
                Ack(2, 1),
                Disconnect,
                Write(7),
                Poll(5000, None),
                Connect(6000),
                Poll(6000, Some((3, 7))),
            ],
        );
    }

    #[test]
    fn acks_are_cumulative_clamped_and_never_go_back() {
        let mut o = Outflow::new(0, 10, 256, T);
        o.connected(0);
        assert_eq!(o.poll(0), Some(1..=10));
        assert_eq!(o.ack(4, 1), AckEffect::Advanced { from: 0, to: 4 });
        assert_eq!(o.ack(3, 2), AckEffect::Stale);
        assert_eq!(o.ack(4, 2), AckEffect::Stale);
        assert_eq!(o.ack(50, 3), AckEffect::Beyond { claimed: 50 });
        assert_eq!(o.acked(), 10, "clamped to the highest written seq");
        assert_eq!(o.deadline(), None, "nothing in flight: no timer");
        // With everything acknowledged: the same point again is stale, a point past the
        // highest written seq is still called out.
        assert_eq!(o.ack(10, 4), AckEffect::Stale);
        assert_eq!(o.ack(11, 5), AckEffect::Beyond { claimed: 11 });
    }

    #[test]
    fn an_idle_stream_has_no_deadline() {
        let mut o = Outflow::new(3, 3, 256, T);
        o.connected(0);
        assert_eq!(o.poll(0), None);
        assert_eq!(o.deadline(), None);
        o.written(4);
        assert_eq!(o.poll(10), Some(4..=4));
        assert_eq!(o.deadline(), Some(1010));
        // An ack of exactly everything written advances; it leaves no timer behind, so
        // events written much later get a whole delay before their first re-send.
        assert_eq!(o.ack(4, 20), AckEffect::Advanced { from: 3, to: 4 });
        o.written(5);
        assert_eq!(o.poll(5000), Some(5..=5));
        assert_eq!(o.poll(5001), None, "re-sent at once by a stale timer");
        assert_eq!(o.deadline(), Some(6000));
    }

    #[test]
    fn receivers_place_seqs_against_their_ack_point() {
        for (through, seq, want) in [
            (0, 1, Placement::Next),
            (0, 2, Placement::Ahead),
            (5, 5, Placement::Duplicate),
            (5, 1, Placement::Duplicate),
            (5, 6, Placement::Next),
            (u64::MAX, 1, Placement::Duplicate),
        ] {
            assert_eq!(place(through, seq), want, "through {through}, seq {seq}");
        }
    }
}
