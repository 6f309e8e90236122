//! The serial receive buffer between the UART interrupt (which pushes) and the main loop
//! (which takes): a ring of fixed size that never overwrites silently. A byte that finds
//! the ring full is dropped and counted, and so is an overrun the UART itself reports;
//! the board shows the count on the screen.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
