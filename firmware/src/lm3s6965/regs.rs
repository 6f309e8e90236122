//! Every LM3S6965 register the board touches, named, and the only `unsafe` of the crate.
//!
//! There is no maintained register crate for this chip (the `lm3s6965` crate has only its
//! interrupt numbers), so the few registers needed are here, with their addresses and
//! bits from the LM3S6965 data sheet (TI SPMS001), each checked against what QEMU's
//! model of it does (hw/arm/stellaris.c, hw/char/pl011.c, hw/ssi/pl022.c,
//! hw/gpio/pl061.c). Nothing outside this module pokes an address.
#![allow(unsafe_code)]

/// One 32-bit memory-mapped register.
#[derive(Clone, Copy)]
pub struct Reg(usize);

impl Reg {
    /// Reads the register.
    #[inline(always)]
    pub fn read(self) -> u32 {
        // SAFETY: every `Reg` in this module is a valid, aligned peripheral register of
        // the LM3S6965, and a volatile access of one has no effect on Rust-visible memory.
        unsafe { core::ptr::read_volatile(self.0 as *const u32) }
    }

    /// Writes the register.
    #[inline(always)]
    pub fn write(self, value: u32) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile(self.0 as *mut u32, value) }
    }

    /// Sets the bits of `mask`, keeping the others (read, or, write).
    #[inline(always)]
    pub fn set_bits(self, mask: u32) {
        self.write(self.read() | mask);
    }

    /// Clears the bits of `mask`, keeping the others.
    #[inline(always)]
    pub fn clear_bits(self, mask: u32) {
        self.write(self.read() & !mask);
    }
}

/// System control (clocks and gates), base 0x400F_E000.
pub mod sysctl {
    use super::Reg;
    const BASE: usize = 0x400F_E000;
    /// Raw interrupt status; bit 6 PLLLRIS: the PLL has locked.
    pub const RIS: Reg = Reg(BASE + 0x050);
    /// Run-mode clock configuration: oscillator, crystal, PLL, system divider.
    pub const RCC: Reg = Reg(BASE + 0x060);
    /// Run-mode clock gating 1: bit 0 UART0, bit 1 UART1, bit 4 SSI0.
    pub const RCGC1: Reg = Reg(BASE + 0x104);
    /// Run-mode clock gating 2: bits 0..6 GPIO ports A..G.
    pub const RCGC2: Reg = Reg(BASE + 0x108);

    /// RIS: the PLL has locked.
    pub const RIS_PLLLRIS: u32 = 1 << 6;
    /// RCC fields.
    pub const RCC_SYSDIV_SHIFT: u32 = 23;
    /// RCC: use the system clock divider.
    pub const RCC_USESYSDIV: u32 = 1 << 22;
    /// RCC: PLL powered down.
    pub const RCC_PWRDN: u32 = 1 << 13;
    /// RCC: PLL bypassed (the system clock is the oscillator).
    pub const RCC_BYPASS: u32 = 1 << 11;
    /// RCC: crystal value field (bits 9:6); 0xE is 8 MHz, the evaluation board's crystal.
    pub const RCC_XTAL_MASK: u32 = 0xF << 6;
    /// RCC: 8 MHz crystal.
    pub const RCC_XTAL_8MHZ: u32 = 0xE << 6;
    /// RCC: oscillator source field (bits 5:4); 0 is the main oscillator.
    pub const RCC_OSCSRC_MASK: u32 = 0x3 << 4;
    /// RCC: main oscillator disabled.
    pub const RCC_MOSCDIS: u32 = 1 << 0;
    /// RCC: system divider field (bits 26:23).
    pub const RCC_SYSDIV_MASK: u32 = 0xF << RCC_SYSDIV_SHIFT;

    /// RCGC1 bits.
    pub const RCGC1_UART0: u32 = 1 << 0;
    /// RCGC1: SSI0.
    pub const RCGC1_SSI0: u32 = 1 << 4;
}

/// A GPIO port (Luminary PL061).
#[derive(Clone, Copy)]
pub struct Port(usize);

/// Port A: UART0 on PA0/PA1, SSI0 clock, frame (the OLED's chip select) and Tx on
/// PA2/PA3/PA5.
pub const GPIO_A: Port = Port(0x4000_4000);
/// Port C: PC7 is the OLED's data/command line.
pub const GPIO_C: Port = Port(0x4000_6000);
/// Port D: PD0 is the SD card's chip select (and, in QEMU, the OLED's, active high).
pub const GPIO_D: Port = Port(0x4000_7000);
/// Port E: the gamepad's up, down, left, right on PE0..PE3.
pub const GPIO_E: Port = Port(0x4002_4000);
/// Port F: the gamepad's select on PF1.
pub const GPIO_F: Port = Port(0x4002_5000);

impl Port {
    /// Data of the pins in `mask`: the PL061 masks accesses with address bits 9:2, so a
    /// write through this address changes only those pins.
    pub fn data(self, mask: u8) -> Reg {
        Reg(self.0 + ((mask as usize) << 2))
    }
    /// Direction: 1 = output.
    pub fn dir(self) -> Reg {
        Reg(self.0 + 0x400)
    }
    /// Interrupt sense: 0 = edge.
    pub fn is(self) -> Reg {
        Reg(self.0 + 0x404)
    }
    /// Interrupt on both edges.
    pub fn ibe(self) -> Reg {
        Reg(self.0 + 0x408)
    }
    /// Interrupt mask: 1 = the pin interrupts.
    pub fn im(self) -> Reg {
        Reg(self.0 + 0x410)
    }
    /// Interrupt clear (write 1s).
    pub fn icr(self) -> Reg {
        Reg(self.0 + 0x41C)
    }
    /// Alternate function select: 1 = the pin belongs to a peripheral (UART, SSI).
    pub fn afsel(self) -> Reg {
        Reg(self.0 + 0x420)
    }
    /// Weak pull-up enable.
    pub fn pur(self) -> Reg {
        Reg(self.0 + 0x510)
    }
    /// Digital enable: a pin reads and drives only with its bit set.
    pub fn den(self) -> Reg {
        Reg(self.0 + 0x51C)
    }
}

/// UART0 (PL011), base 0x4000_C000.
pub mod uart0 {
    use super::Reg;
    const BASE: usize = 0x4000_C000;
    /// Data: bits 7:0 the byte; on reads bit 11 OE (overrun), 10 BE, 9 PE, 8 FE.
    pub const DR: Reg = Reg(BASE);
    /// Receive status / error clear (write anything to clear).
    pub const ECR: Reg = Reg(BASE + 0x004);
    /// Flags: bit 4 RXFE (receive FIFO empty), bit 5 TXFF (transmit FIFO full), bit 3 BUSY.
    pub const FR: Reg = Reg(BASE + 0x018);
    /// Integer baud-rate divisor.
    pub const IBRD: Reg = Reg(BASE + 0x024);
    /// Fractional baud-rate divisor (64ths).
    pub const FBRD: Reg = Reg(BASE + 0x028);
    /// Line control: word length, FIFOs. Writing it latches IBRD/FBRD.
    pub const LCRH: Reg = Reg(BASE + 0x02C);
    /// Control: enable, transmit and receive enable.
    pub const CTL: Reg = Reg(BASE + 0x030);
    /// FIFO interrupt levels.
    pub const IFLS: Reg = Reg(BASE + 0x034);
    /// Interrupt mask: bit 4 RX, bit 6 RT (receive timeout), bit 10 OE.
    pub const IM: Reg = Reg(BASE + 0x038);
    /// Interrupt clear.
    pub const ICR: Reg = Reg(BASE + 0x044);

    /// DR: overrun error (bytes were lost before this one).
    pub const DR_OE: u32 = 1 << 11;
    /// FR: receive FIFO empty.
    pub const FR_RXFE: u32 = 1 << 4;
    /// FR: transmit FIFO full.
    pub const FR_TXFF: u32 = 1 << 5;
    /// LCRH: 8 data bits (WLEN = 3), FIFOs on; no parity, one stop bit: 8N1.
    pub const LCRH_8N1_FIFO: u32 = (0x3 << 5) | (1 << 4);
    /// CTL: UART, transmit and receive enabled.
    pub const CTL_ENABLE: u32 = (1 << 0) | (1 << 8) | (1 << 9);
    /// IFLS: receive interrupt at 1/8 full (2 bytes), transmit at 1/8 empty.
    pub const IFLS_RX_1_8: u32 = 0;
    /// IM/ICR: receive, receive timeout, overrun.
    pub const INT_RX: u32 = 1 << 4;
    /// Receive timeout: bytes sat in the FIFO for 32 bit times.
    pub const INT_RT: u32 = 1 << 6;
    /// Overrun.
    pub const INT_OE: u32 = 1 << 10;
}

/// SSI0 (PL022), base 0x4000_8000.
pub mod ssi0 {
    use super::Reg;
    const BASE: usize = 0x4000_8000;
    /// Control 0: data size (bits 3:0, size - 1), frame format, clock phase/polarity,
    /// serial clock rate (bits 15:8).
    pub const CR0: Reg = Reg(BASE);
    /// Control 1: bit 1 SSE (enable), bit 2 MS (0 = master).
    pub const CR1: Reg = Reg(BASE + 0x004);
    /// Data: a write queues a frame; a read takes a received one.
    pub const DR: Reg = Reg(BASE + 0x008);
    /// Status: bit 1 TNF (transmit FIFO not full), bit 2 RNE (receive FIFO not empty),
    /// bit 4 BSY (busy).
    pub const SR: Reg = Reg(BASE + 0x00C);
    /// Clock prescale divisor (even, 2..254).
    pub const CPSR: Reg = Reg(BASE + 0x010);

    /// CR0: 8-bit frames, Freescale SPI, SPO = 1, SPH = 1 (mode 3: the SSD0323 samples on
    /// the rising edge), SCR = 5.
    pub const CR0_8BIT_MODE3_SCR5: u32 = 0x7 | (1 << 6) | (1 << 7) | (5 << 8);
    /// CR1: enabled, master.
    pub const CR1_SSE: u32 = 1 << 1;
    /// SR: transmit FIFO not full.
    pub const SR_TNF: u32 = 1 << 1;
    /// SR: receive FIFO not empty.
    pub const SR_RNE: u32 = 1 << 2;
    /// SR: busy sending.
    pub const SR_BSY: u32 = 1 << 4;
}

/// Lets the NVIC deliver `irq`.
pub fn unmask(irq: ::lm3s6965::Interrupt) {
    // SAFETY: the board's handlers share state with the main loop only through
    // `cortex_m::interrupt::Mutex` (critical sections), so unmasking breaks no
    // critical section.
    unsafe { cortex_m::peripheral::NVIC::unmask(irq) }
}

/// The stack's peak: unused stack is painted at start, and what is still painted was
/// never used (the bench image reads it; the QEMU test reads the RAM through the monitor).
pub mod stack {
    use crate::board::STACK_PAINT as PAINT;

    unsafe extern "C" {
        // cortex-m-rt's linker script: the end of the statics (the stack may grow down to
        // it) and the top of the stack.
        static __sheap: u32;
        static _stack_start: u32;
    }

    fn stack_bounds() -> (usize, usize) {
        // Only the symbols' addresses are taken, never their contents.
        (
            core::ptr::addr_of!(__sheap) as usize,
            core::ptr::addr_of!(_stack_start) as usize,
        )
    }

    /// Fills the stack below the current frame with a pattern, for [`stack_peak`].
    pub fn paint_stack() {
        let (bottom, _) = stack_bounds();
        // A margin below the stack pointer for this function's own calls.
        let below = cortex_m::register::msp::read() as usize - 64;
        let mut a = bottom;
        while a < below {
            // SAFETY: between the end of the statics and the stack pointer nothing lives:
            // it is stack not in use (the margin covers this function).
            unsafe { core::ptr::write_volatile(a as *mut u32, PAINT) };
            a += 4;
        }
    }

    /// The deepest the stack has been since [`paint_stack`], in bytes.
    #[cfg(feature = "redraw-bench")]
    pub fn stack_peak() -> usize {
        let (bottom, top) = stack_bounds();
        let mut a = bottom;
        // SAFETY: reads of RAM between the statics and the stack's top.
        while a < top && unsafe { core::ptr::read_volatile(a as *const u32) } == PAINT {
            a += 4;
        }
        top - a
    }
}
