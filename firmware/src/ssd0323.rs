//! An SSD0323 OLED controller (128x64, 4-bit grey) as an embedded-graphics `DrawTarget`,
//! over any bus that can send command and data bytes (on the LM3S6965: SSI0 with the
//! data/command line on a GPIO).
//!
//! Drawing goes to a 4 KiB framebuffer in RAM (two pixels a byte, as the controller
//! stores them), borrowed rather than owned so that a board can keep it in a static and
//! never copies it; [`Ssd0323::flush`] sends only the rows whose pixels changed, as one
//! window. The renderer draws every pixel of a frame, so a flush after a screen that
//! changed little sends little.
//!
//! Byte layout, as QEMU's `ssd0323` model shows it (hw/display/ssd0323.c): byte
//! `col + row * 64` holds pixels `2 * col` (high nibble) and `2 * col + 1` (low nibble).
//! On the real controller the high nibble is the left pixel with the nibble remap on,
//! which [`INIT`] sets.

use core::convert::Infallible;

use embedded_graphics::pixelcolor::{Gray4, GrayColor};
use embedded_graphics::prelude::*;

/// Panel width in pixels.
pub const WIDTH: usize = 128;
/// Panel height in pixels.
pub const HEIGHT: usize = 64;
/// Bytes of one row: two pixels a byte.
pub const ROW_BYTES: usize = WIDTH / 2;
/// Bytes of a whole frame.
pub const FRAME_BYTES: usize = ROW_BYTES * HEIGHT;

/// Start-up commands, each with its arguments. Only commands QEMU's model knows (it
/// reports any other as unknown); contrast and timing values are the controller's
/// reset values except where said.
pub const INIT: &[&[u8]] = &[
    // Display off while it is set up.
    &[0xAE],
    // Re-map: bit 1 nibble re-map (the high nibble is the left pixel, as the framebuffer
    // is laid out), bit 4 COM re-map and bit 6 odd/even COM split (the OSRAM panel's
    // wiring). QEMU ignores it.
    &[0xA0, 0x52],
    // Display start line 0, display offset 0.
    &[0xA1, 0x00],
    &[0xA2, 0x00],
    // Multiplex ratio 64 (the panel's 64 rows of the controller's 80).
    &[0xA8, 0x3F],
    // Contrast: mid-range.
    &[0x81, 0x40],
    // Normal display (not all on, not inverse), then on.
    &[0xA4],
    &[0xAF],
];

/// What the driver needs from the wires: bytes with the data/command line low
/// (commands) or high (data). A call returns once the bytes are out, so the next call
/// may switch the line.
pub trait Bus {
    /// Why the bytes could not be sent.
    type Error;
    /// Sends command bytes.
    fn command(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;
    /// Sends display RAM bytes.
    fn data(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;
}

/// The controller and its framebuffer.
pub struct Ssd0323<'f, B> {
    bus: B,
    frame: &'f mut [u8; FRAME_BYTES],
    /// One bit per row whose pixels changed since the last flush.
    dirty: u64,
}

impl<'f, B: Bus> Ssd0323<'f, B> {
    /// A driver on `bus` drawing into `frame`, which is cleared to black and wholly
    /// dirty, so the first flush clears the panel's RAM (noise after power-on).
    pub fn new(bus: B, frame: &'f mut [u8; FRAME_BYTES]) -> Self {
        frame.fill(0);
        Ssd0323 {
            bus,
            frame,
            dirty: u64::MAX,
        }
    }

    /// Sends [`INIT`] and the whole (black) framebuffer.
    pub fn init(&mut self) -> Result<(), B::Error> {
        for cmd in INIT {
            self.bus.command(cmd)?;
        }
        self.invalidate();
        self.flush().map(|_| ())
    }

    /// Marks every row changed, so the next flush sends the whole frame.
    pub fn invalidate(&mut self) {
        self.dirty = u64::MAX;
    }

    /// Sends the rows changed since the last flush as one window (the first to the last
    /// changed row); returns the display RAM bytes sent, 0 if nothing changed.
    pub fn flush(&mut self) -> Result<usize, B::Error> {
        if self.dirty == 0 {
            return Ok(0);
        }
        // Row numbers fit a u8: HEIGHT is 64.
        let first = self.dirty.trailing_zeros() as usize;
        let last = 63 - self.dirty.leading_zeros() as usize;
        self.bus.command(&[
            0x15,
            0,
            (ROW_BYTES - 1) as u8,
            0x75,
            first as u8,
            last as u8,
        ])?;
        let bytes = &self.frame[first * ROW_BYTES..(last + 1) * ROW_BYTES];
        self.bus.data(bytes)?;
        self.dirty = 0;
        Ok(bytes.len())
    }

    /// The grey level (0..=15) of pixel (`x`, `y`); 0 outside the panel.
    pub fn pixel(&self, x: usize, y: usize) -> u8 {
        if x >= WIDTH || y >= HEIGHT {
            return 0;
        }
        let b = self.frame[y * ROW_BYTES + x / 2];
        if x.is_multiple_of(2) {
            b >> 4
        } else {
            b & 0x0F
        }
    }

    /// The framebuffer, laid out as the controller's RAM.
    pub fn frame(&self) -> &[u8; FRAME_BYTES] {
        self.frame
    }

    /// The bus, to look at.
    pub fn bus(&self) -> &B {
        &self.bus
    }

    fn set(&mut self, x: usize, y: usize, level: u8) {
        let i = y * ROW_BYTES + x / 2;
        let old = self.frame[i];
        let new = if x.is_multiple_of(2) {
            (old & 0x0F) | (level << 4)
        } else {
            (old & 0xF0) | (level & 0x0F)
        };
        if new != old {
            self.frame[i] = new;
            self.dirty |= 1 << y;
        }
    }
}

impl<B> OriginDimensions for Ssd0323<'_, B> {
    fn size(&self) -> Size {
        Size::new(WIDTH as u32, HEIGHT as u32)
    }
}

impl<B: Bus> DrawTarget for Ssd0323<'_, B> {
    type Color = Gray4;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        for Pixel(p, c) in pixels {
            // Off-panel pixels are dropped, as DrawTarget asks.
            if let (Ok(x), Ok(y)) = (usize::try_from(p.x), usize::try_from(p.y))
                && x < WIDTH
                && y < HEIGHT
            {
                self.set(x, y, c.luma());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};

    /// Records what the driver sends: (is_command, bytes) per call.
    #[derive(Default)]
    struct Wire {
        sent: std::vec::Vec<(bool, std::vec::Vec<u8>)>,
    }

    impl Bus for Wire {
        type Error = Infallible;
        fn command(&mut self, bytes: &[u8]) -> Result<(), Infallible> {
            self.sent.push((true, bytes.to_vec()));
            Ok(())
        }
        fn data(&mut self, bytes: &[u8]) -> Result<(), Infallible> {
            self.sent.push((false, bytes.to_vec()));
            Ok(())
        }
    }

    fn driver(frame: &mut [u8; FRAME_BYTES]) -> Ssd0323<'_, Wire> {
        let mut d = Ssd0323::new(Wire::default(), frame);
        d.init().unwrap();
        d.bus.sent.clear();
        d
    }

    #[test]
    fn init_sends_the_set_up_commands_then_the_whole_black_frame() {
        let mut frame = [0xFF; FRAME_BYTES];
        let mut d = Ssd0323::new(Wire::default(), &mut frame);
        d.init().unwrap();
        let sent = &d.bus().sent;
        assert_eq!(sent.len(), INIT.len() + 2);
        for (i, cmd) in INIT.iter().enumerate() {
            assert_eq!(sent[i], (true, cmd.to_vec()));
        }
        assert_eq!(
            sent[INIT.len()],
            (true, std::vec![0x15, 0, 63, 0x75, 0, 63])
        );
        assert_eq!(sent[INIT.len() + 1], (false, std::vec![0; FRAME_BYTES]));
    }

    #[test]
    fn an_even_pixel_is_the_high_nibble_and_an_odd_one_the_low_nibble() {
        let mut frame = [0; FRAME_BYTES];
        let mut d = driver(&mut frame);
        Pixel(Point::new(4, 2), Gray4::new(0xA))
            .draw(&mut d)
            .unwrap();
        Pixel(Point::new(5, 2), Gray4::new(0x3))
            .draw(&mut d)
            .unwrap();
        assert_eq!(d.frame()[2 * ROW_BYTES + 2], 0xA3);
        assert_eq!((d.pixel(4, 2), d.pixel(5, 2), d.pixel(6, 2)), (0xA, 0x3, 0));
    }

    #[test]
    fn a_flush_sends_only_the_window_of_changed_rows() {
        let mut frame = [0; FRAME_BYTES];
        let mut d = driver(&mut frame);
        Rectangle::new(Point::new(10, 5), Size::new(3, 4))
            .into_styled(PrimitiveStyle::with_fill(Gray4::WHITE))
            .draw(&mut d)
            .unwrap();
        assert_eq!(d.flush().unwrap(), 4 * ROW_BYTES);
        let sent = &d.bus().sent;
        assert_eq!(sent[0], (true, std::vec![0x15, 0, 63, 0x75, 5, 8]));
        assert_eq!(sent[1].1, d.frame()[5 * ROW_BYTES..9 * ROW_BYTES].to_vec());
        // Nothing changed since: nothing is sent.
        assert_eq!(d.flush().unwrap(), 0);
        assert_eq!(d.bus().sent.len(), 2);
    }

    #[test]
    fn drawing_the_same_pixels_again_leaves_nothing_to_send() {
        let mut frame = [0; FRAME_BYTES];
        let mut d = driver(&mut frame);
        Pixel(Point::new(0, 0), Gray4::WHITE).draw(&mut d).unwrap();
        d.flush().unwrap();
        Pixel(Point::new(0, 0), Gray4::WHITE).draw(&mut d).unwrap();
        assert_eq!(d.flush().unwrap(), 0);
    }

    #[test]
    fn pixels_off_the_panel_are_dropped() {
        let mut frame = [0; FRAME_BYTES];
        let mut d = driver(&mut frame);
        for p in [
            Point::new(-1, 0),
            Point::new(0, -1),
            Point::new(128, 0),
            Point::new(0, 64),
        ] {
            Pixel(p, Gray4::WHITE).draw(&mut d).unwrap();
        }
        assert_eq!(d.flush().unwrap(), 0);
        assert!(d.frame().iter().all(|&b| b == 0));
    }

    #[test]
    fn invalidate_makes_the_next_flush_send_the_whole_frame() {
        let mut frame = [0; FRAME_BYTES];
        let mut d = driver(&mut frame);
        d.invalidate();
        assert_eq!(d.flush().unwrap(), FRAME_BYTES);
    }
}
