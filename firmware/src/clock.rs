//! Milliseconds from a periodic down-counter and a count of its periods, as a board's
//! timer interrupt keeps them (SysTick on the LM3S6965): pure, so the one subtle case,
//! a reload whose interrupt has not run yet, is tested on the host.

/// A down-counter that reloads to `period - 1` every `period` cycles of a `hz` clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodicCounter {
    /// Cycles per period.
    pub period: u32,
    /// Cycles per second.
    pub hz: u32,
}

impl PeriodicCounter {
    /// Milliseconds since the counter started, from the `periods` the interrupt counted,
    /// the counter's value `left`, and whether its interrupt is pending. Read with
    /// interrupts masked, a reload whose interrupt has not run yet shows as a pending
    /// interrupt and a counter that jumped back up: that period is added here. (A
    /// pending interrupt with the counter low is an old reload read late, after almost a
    /// whole period with interrupts masked, which a board must not do.)
    pub fn millis(self, periods: u64, left: u32, pending: bool) -> u64 {
        let mut periods = periods;
        if pending && left > self.period / 2 {
            periods += 1;
        }
        let cycles = periods * u64::from(self.period)
            + u64::from(self.period - 1 - left.min(self.period - 1));
        cycles / u64::from(self.hz / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SysTick at 50 MHz with a 100 ms period.
    const C: PeriodicCounter = PeriodicCounter {
        period: 5_000_000,
        hz: 50_000_000,
    };

    #[test]
    fn the_counter_s_position_adds_to_the_counted_periods() {
        assert_eq!(C.millis(0, C.period - 1, false), 0);
        assert_eq!(C.millis(0, C.period - 1 - 50_000, false), 1);
        assert_eq!(C.millis(3, C.period / 2 - 1, false), 350);
        assert_eq!(C.millis(3, 0, false), 399);
    }

    #[test]
    fn a_reload_whose_interrupt_has_not_run_is_counted_once() {
        // Just after the reload: the counter is high again, the interrupt pending.
        assert_eq!(C.millis(3, C.period - 1 - 50_000, true), 401);
        // Without the correction the clock would go back by a period.
        assert!(C.millis(3, C.period - 1 - 50_000, true) > C.millis(3, 0, false));
    }

    #[test]
    fn a_counter_read_out_of_range_is_taken_as_the_period_s_start() {
        assert_eq!(C.millis(1, u32::MAX, false), 100);
    }
}
