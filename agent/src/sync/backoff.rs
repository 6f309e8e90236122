//! Reconnect backoff: exponential with full jitter. rumqttc's `poll()` returns errors at
//! once and has no delay of its own (rumqttc #703, #918), so the backoff is ours.

use std::time::Duration;

/// Exponential backoff with jitter; pure, the random source is passed in.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at about `base`, doubles per failure, never above `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The delay before the next attempt. `unit` is a random number in `[0, 1)`: the delay
    /// is uniform between half and all of the exponential step, so many agents that lost
    /// the broker together do not reconnect in lockstep.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let step = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        step.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
    }

    /// Call after a connection was established.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_within_bounds() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let maxes: Vec<u128> = (0..8).map(|_| b.next_delay(1.0).as_millis()).collect();
        assert_eq!(maxes, vec![100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        b.reset();
        assert_eq!(b.next_delay(0.0), Duration::from_millis(50));
        assert_eq!(b.next_delay(0.5), Duration::from_millis(150));
    }
}
