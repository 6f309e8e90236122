//! The serial receive buffer between the UART interrupt (which pushes) and the main loop
//! (which takes): a ring of fixed size that never overwrites silently. A byte that finds
//! the ring full is dropped and counted, and so is an overrun the UART itself reports;
//! the board shows the count on the screen ([`draw_overruns`]).

use core::fmt::Write;

use embedded_graphics::mono_font::MonoTextStyleBuilder;
use embedded_graphics::mono_font::ascii::FONT_4X6;
use embedded_graphics::pixelcolor::Gray4;
use embedded_graphics::prelude::*;
use embedded_graphics::text::{Baseline, Text};

/// A ring of `N` bytes with overrun counters.
pub struct RxBuffer<const N: usize> {
    bytes: [u8; N],
    /// Index of the oldest byte.
    head: usize,
    len: usize,
    dropped: u32,
    hardware_overruns: u32,
}

impl<const N: usize> RxBuffer<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        RxBuffer {
            bytes: [0; N],
            head: 0,
            len: 0,
            dropped: 0,
            hardware_overruns: 0,
        }
    }

    /// Stores a received byte; if the ring is full the byte is dropped, counted, and
    /// `false` returned.
    pub fn push(&mut self, byte: u8) -> bool {
        if self.len == N {
            self.dropped = self.dropped.saturating_add(1);
            return false;
        }
        self.bytes[(self.head + self.len) % N] = byte;
        self.len += 1;
        true
    }

    /// Counts an overrun the UART reported (bytes lost in its own FIFO).
    pub fn hardware_overrun(&mut self) {
        self.hardware_overruns = self.hardware_overruns.saturating_add(1);
    }

    /// Moves the oldest bytes into `out`; returns how many.
    pub fn take(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.len);
        for slot in &mut out[..n] {
            *slot = self.bytes[self.head];
            self.head = (self.head + 1) % N;
        }
        self.len -= n;
        n
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no byte is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every loss so far: bytes dropped on a full ring plus the UART's own overruns.
    pub fn overruns(&self) -> u32 {
        self.dropped.saturating_add(self.hardware_overruns)
    }
}

impl<const N: usize> Default for RxBuffer<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Draws "OVR n" in the bottom-right corner of a grey-scale display, dark on mid grey,
/// when bytes were lost (`n` > 0); draws nothing otherwise. A board calls it after each
/// redraw (which covers the corner) and when the count changes.
pub fn draw_overruns<D>(display: &mut D, n: u32) -> Result<(), D::Error>
where
    D: DrawTarget<Color = Gray4>,
{
    if n == 0 {
        return Ok(());
    }
    let mut text: heapless::String<16> = heapless::String::new();
    // "OVR " and at most ten digits: fits.
    let _ = write!(text, "OVR {n}");
    let style = MonoTextStyleBuilder::new()
        .font(&FONT_4X6)
        .text_color(Gray4::BLACK)
        .background_color(Gray4::new(10))
        .build();
    let size = display.bounding_box().size;
    let width = 4 * text.len() as i32;
    let at = Point::new(size.width as i32 - width, size.height as i32 - 6);
    Text::with_baseline(&text, at, style, Baseline::Top)
        .draw(display)
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::mock_display::MockDisplay;

    #[test]
    fn bytes_come_out_in_order_across_the_wrap() {
        let mut r = RxBuffer::<4>::new();
        let mut out = [0u8; 3];
        for round in 0..5u8 {
            for i in 0..3 {
                assert!(r.push(round * 10 + i));
            }
            assert_eq!(r.take(&mut out), 3);
            assert_eq!(out, [round * 10, round * 10 + 1, round * 10 + 2]);
        }
        assert!(r.is_empty());
        assert_eq!(r.overruns(), 0);
    }

    #[test]
    fn a_full_ring_drops_new_bytes_counts_them_and_keeps_the_old_ones() {
        let mut r = RxBuffer::<3>::new();
        assert!(r.push(1) && r.push(2) && r.push(3));
        assert!(!r.push(4));
        assert!(!r.push(5));
        assert_eq!(r.overruns(), 2);
        let mut out = [0u8; 8];
        assert_eq!(r.take(&mut out), 3);
        assert_eq!(&out[..3], &[1, 2, 3]);
    }

    #[test]
    fn the_uart_s_own_overruns_are_counted_too() {
        let mut r = RxBuffer::<3>::new();
        r.hardware_overrun();
        r.push(1);
        r.push(2);
        r.push(3);
        r.push(4);
        assert_eq!(r.overruns(), 2);
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn taking_into_a_short_slice_leaves_the_rest() {
        let mut r = RxBuffer::<8>::new();
        for b in 1..=5 {
            r.push(b);
        }
        let mut out = [0u8; 2];
        assert_eq!(r.take(&mut out), 2);
        assert_eq!(out, [1, 2]);
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn no_loss_draws_no_mark() {
        let mut d = MockDisplay::<Gray4>::new();
        draw_overruns(&mut d, 0).unwrap();
        assert_eq!(d.affected_area().size, Size::zero());
    }

    #[test]
    fn losses_draw_the_count_in_the_bottom_right_corner() {
        // MockDisplay is 64x64: "OVR 12" is 24x6 at its bottom-right.
        let mut d = MockDisplay::<Gray4>::new();
        draw_overruns(&mut d, 12).unwrap();
        let area = d.affected_area();
        assert_eq!(area.top_left, Point::new(64 - 24, 64 - 6));
        assert_eq!(area.size, Size::new(24, 6));
        // Dark text on mid grey: both levels are there.
        let levels: std::vec::Vec<u8> = (40..64)
            .flat_map(|x| (58..64).map(move |y| Point::new(x, y)))
            .filter_map(|p| d.get_pixel(p))
            .map(|c| c.luma())
            .collect();
        assert!(levels.contains(&0) && levels.contains(&10), "{levels:?}");
    }
}
