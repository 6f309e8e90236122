//! Five gamepad buttons on GPIO lines as terminal [`Key`]s: debounced, and a press counts
//! when the button is let go.
//!
//! Why on release: the lines are active-low (pulled up, a press pulls them to ground),
//! and QEMU's `lm3s6965evb` gamepad sets no level at reset, so its lines read low
//! ("pressed") until each button is first pressed and let go (hw/input/stellaris_input.c
//! only drives a line on a key event). A key on the rising edge works the same on both:
//! on the real board the first release follows a real press; under QEMU the first
//! `sendkey` press changes nothing and its release counts.
//!
//! The mapping follows the pick screens: Up and Down move through a menu, Select is
//! Enter, Left is Back (leave a menu, clear what was typed), Right is F1 (short pick).

use floorhand_protocol::link::Key;
use heapless::Vec;

/// A button, numbered as its bit in a [`Gamepad::sample`] reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Button {
    /// Bit 0.
    Up,
    /// Bit 1.
    Down,
    /// Bit 2.
    Left,
    /// Bit 3.
    Right,
    /// Bit 4.
    Select,
}

impl Button {
    /// Every button, in bit order.
    pub const ALL: [Button; 5] = [
        Button::Up,
        Button::Down,
        Button::Left,
        Button::Right,
        Button::Select,
    ];

    /// The key a release of this button sends.
    pub fn key(self) -> Key {
        match self {
            Button::Up => Key::Up,
            Button::Down => Key::Down,
            Button::Left => Key::Back,
            Button::Right => Key::F(1),
            Button::Select => Key::Enter,
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A line must read the same for this long before a change counts: longer than a
/// switch's bounce, far shorter than a press.
pub const DEBOUNCE_MS: u64 = 10;

/// The buttons' debounced state.
pub struct Gamepad {
    /// Accepted levels, one bit per button (1 = high = up).
    stable: u8,
    /// The last reading and when it began.
    raw: u8,
    raw_since_ms: u64,
}

impl Gamepad {
    /// Starts from the levels read now (bits as [`Button`]), so buttons already up or
    /// down at start send nothing.
    pub fn new(now_ms: u64, levels: u8) -> Self {
        let levels = levels & 0x1F;
        Gamepad {
            stable: levels,
            raw: levels,
            raw_since_ms: now_ms,
        }
    }

    /// Whether a line changed and has not held long enough to count yet: the caller
    /// samples again soon rather than sleeping.
    pub fn settling(&self) -> bool {
        self.raw != self.stable
    }

    /// Feeds a reading of the lines (bit set = high); returns the keys of the buttons
    /// let go, once the reading has held for [`DEBOUNCE_MS`].
    pub fn sample(&mut self, now_ms: u64, levels: u8) -> Vec<Key, 5> {
        let levels = levels & 0x1F;
        let mut keys = Vec::new();
        if levels != self.raw {
            self.raw = levels;
            self.raw_since_ms = now_ms;
            return keys;
        }
        if levels == self.stable || now_ms.saturating_sub(self.raw_since_ms) < DEBOUNCE_MS {
            return keys;
        }
        let released = levels & !self.stable;
        self.stable = levels;
        for b in Button::ALL {
            if released & b.bit() != 0 {
                // At most five buttons: the Vec holds them all.
                let _ = keys.push(b.key());
            }
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_UP: u8 = 0x1F;

    /// Feeds `(ms, levels)` readings; returns every key with the time it came.
    fn check(start: u8, readings: &[(u64, u8)], expected: &[(u64, Key)]) {
        let mut pad = Gamepad::new(0, start);
        let mut got = std::vec::Vec::new();
        for &(t, l) in readings {
            for k in pad.sample(t, l) {
                got.push((t, k));
            }
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn a_press_counts_when_the_button_is_let_go_and_has_settled() {
        let down = ALL_UP & !Button::Down.bit();
        check(
            ALL_UP,
            &[
                (1, down),
                (20, down),
                (100, ALL_UP),
                (105, ALL_UP),
                (110, ALL_UP),
                (200, ALL_UP),
            ],
            &[(110, Key::Down)],
        );
    }

    #[test]
    fn bounces_shorter_than_the_debounce_time_send_nothing() {
        let sel = ALL_UP & !Button::Select.bit();
        check(
            ALL_UP,
            &[
                (1, sel),
                (3, ALL_UP),
                (5, sel),
                (7, ALL_UP),
                (9, sel),
                (12, ALL_UP),
            ],
            &[],
        );
    }

    #[test]
    fn qemu_s_lines_read_low_until_first_used_and_the_first_release_counts() {
        // QEMU: every line low at reset; a sendkey press keeps it low, its release raises it.
        let right_up = Button::Right.bit();
        check(
            0,
            &[(0, 0), (50, 0), (150, right_up), (161, right_up)],
            &[(161, Key::F(1))],
        );
    }

    #[test]
    fn a_line_is_settling_from_its_change_until_it_counts() {
        let mut pad = Gamepad::new(0, ALL_UP);
        assert!(!pad.settling());
        let up = ALL_UP & !Button::Up.bit();
        pad.sample(1, up);
        assert!(pad.settling());
        pad.sample(5, up);
        assert!(pad.settling());
        pad.sample(11, up);
        assert!(!pad.settling());
    }

    #[test]
    fn buttons_held_at_start_send_nothing_until_let_go() {
        check(0, &[(0, 0), (100, 0)], &[]);
    }

    #[test]
    fn each_button_sends_its_key() {
        for b in Button::ALL {
            let pressed = ALL_UP & !b.bit();
            check(
                ALL_UP,
                &[(0, pressed), (20, pressed), (40, ALL_UP), (60, ALL_UP)],
                &[(60, b.key())],
            );
        }
        assert_eq!(
            Button::ALL.map(Button::key),
            [Key::Up, Key::Down, Key::Back, Key::F(1), Key::Enter]
        );
    }
}
