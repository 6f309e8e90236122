//! The TI LM3S6965 board (Cortex-M3, 256 KiB flash, 64 KiB RAM) as QEMU's `lm3s6965evb`
//! emulates it: the terminal core on real start-up code, a real UART and a real display
//! controller.
//!
//! - Clock: the 8 MHz crystal through the PLL to 50 MHz. The terminal's clock is
//!   SysTick: its interrupt counts 100 ms periods and the counter gives the position
//!   in the current one. Not a 1 ms interrupt counted: under QEMU on a busy host the
//!   emulated CPU can be late to the interrupt by more than a period, and pending
//!   interrupts merge, so a 1 ms count fell 0.9 s behind in 3 s (measured); a period
//!   is lost only if the CPU is 100 ms late.
//! - Link: UART0 (PA0/PA1), 115200 8N1. Its interrupt drains the 16-byte FIFO into a
//!   512-byte [`RxBuffer`] that the main loop empties; bytes lost in either are counted and
//!   shown in the bottom-right corner of the screen ("OVR n").
//! - Display: the OSRAM 128x64 OLED's SSD0323 on SSI0 (PA2 clock, PA3 frame = the OLED's
//!   chip select, PA5 data out), data/command on PC7, driven by [`Ssd0323`]; the mono
//!   profile is drawn in grey levels 0 and 15. PD0 (the SD card's chip select) is held
//!   high: the card stays off the bus, and QEMU, which wires PD0 to the OLED's select
//!   as active-high (hw/arm/stellaris.c), selects the OLED.
//! - Keys: the gamepad on PE0..PE3 and PF1, as [`Gamepad`] maps them. Any edge on
//!   them wakes the main loop, which then samples until the lines have settled.
//! - Buzzer: none on this board; beeps are counted.
//!
//! The main loop sleeps (WFI) until the next interrupt (a byte, a button, the 100 ms
//! tick) whenever nothing is waiting, so an idle terminal, and an idle QEMU, uses next to
//! no CPU.

mod regs;

use core::cell::{Cell, RefCell};
use core::convert::Infallible;

use cortex_m::interrupt::{self, Mutex};
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{SCB, SYST};

use crate::board::{Board, Runner};
use crate::clock::PeriodicCounter;
use crate::gamepad::Gamepad;
use crate::render::Profile;
use crate::rx_buffer::{self, RxBuffer};
use crate::ssd0323::{self, Ssd0323};
use regs::{GPIO_A, GPIO_C, GPIO_D, GPIO_E, GPIO_F, ssi0, sysctl, uart0};

/// The system clock the PLL is set up for.
pub const SYSCLK_HZ: u32 = 50_000_000;
/// The link's speed.
pub const BAUD: u32 = 115_200;
/// Bytes the receive ring holds: 44 ms of a busy 115200 line, about three full redraws
/// (render, then 4 KiB to the display at 4.2 MHz: some 15 ms on the chip), the longest
/// the main loop stays away. The UART's interrupt fills it meanwhile.
pub const RX_BYTES: usize = 512;

/// SysTick's period in CPU cycles: 100 ms.
const TICK_CYCLES: u32 = SYSCLK_HZ / 10;

/// SysTick periods since start.
static PERIODS: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));
static RX: Mutex<RefCell<RxBuffer<RX_BYTES>>> = Mutex::new(RefCell::new(RxBuffer::new()));

/// Milliseconds since start.
pub fn now_ms() -> u64 {
    let counter = PeriodicCounter {
        period: TICK_CYCLES,
        hz: SYSCLK_HZ,
    };
    // Read together, interrupts masked: see `PeriodicCounter::millis` for a reload
    // whose interrupt is pending meanwhile.
    interrupt::free(|cs| {
        counter.millis(
            PERIODS.borrow(cs).get(),
            SYST::get_current(),
            SCB::is_pendst_pending(),
        )
    })
}

/// The SysTick handler's work: one more period.
pub fn on_systick() {
    interrupt::free(|cs| {
        let p = PERIODS.borrow(cs);
        p.set(p.get() + 1);
    });
}

/// The GPIO handlers' work: the edge only had to wake the main loop.
pub fn on_gamepad_edge() {
    GPIO_E.icr().write(0x0F);
    GPIO_F.icr().write(1 << 1);
}

/// The UART0 handler's work: every byte in the FIFO into the ring.
pub fn on_uart0() {
    drain_uart();
}

/// Moves the UART's FIFO into the ring, counting overruns. Called by the interrupt and,
/// in case a byte's interrupt was missed, by the main loop.
fn drain_uart() {
    interrupt::free(|cs| {
        let mut rx = RX.borrow(cs).borrow_mut();
        while uart0::FR.read() & uart0::FR_RXFE == 0 {
            let d = uart0::DR.read();
            if d & uart0::DR_OE != 0 {
                rx.hardware_overrun();
                uart0::ECR.write(0);
            }
            // The low 8 bits are the byte; the rest are error flags.
            rx.push(d as u8);
        }
        // The receive interrupt clears itself as the FIFO empties; timeout and overrun
        // need a write.
        uart0::ICR.write(uart0::INT_RT | uart0::INT_OE);
    });
}

fn take_rx(out: &mut [u8]) -> usize {
    interrupt::free(|cs| RX.borrow(cs).borrow_mut().take(out))
}

fn overruns() -> u32 {
    interrupt::free(|cs| RX.borrow(cs).borrow().overruns())
}

/// The SSD0323's wires: SSI0 and the data/command line PC7.
pub struct OledBus;

impl OledBus {
    const DC: u8 = 1 << 7;

    fn drain_rx() {
        // Every byte sent clocks one in; the OLED sends nothing, but the receive FIFO
        // must not fill (QEMU's PL022 stalls sending when it is full).
        while ssi0::SR.read() & ssi0::SR_RNE != 0 {
            let _ = ssi0::DR.read();
        }
    }

    fn wait_idle() {
        while ssi0::SR.read() & ssi0::SR_BSY != 0 {
            Self::drain_rx();
        }
        Self::drain_rx();
    }

    fn send(bytes: &[u8], data: bool) {
        // The data/command line may change only between bytes on the wire.
        Self::wait_idle();
        GPIO_C
            .data(Self::DC)
            .write(if data { u32::from(Self::DC) } else { 0 });
        for &b in bytes {
            while ssi0::SR.read() & ssi0::SR_TNF == 0 {
                Self::drain_rx();
            }
            ssi0::DR.write(u32::from(b));
            Self::drain_rx();
        }
        Self::wait_idle();
    }
}

impl ssd0323::Bus for OledBus {
    type Error = Infallible;

    fn command(&mut self, bytes: &[u8]) -> Result<(), Infallible> {
        Self::send(bytes, false);
        Ok(())
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), Infallible> {
        Self::send(bytes, true);
        Ok(())
    }
}

/// The board as the terminal core sees it.
pub struct Lm3s6965 {
    display: Ssd0323<'static, OledBus>,
    beeps: u32,
    last_flush_bytes: usize,
}

impl Lm3s6965 {
    /// Beeps asked for (the board has no buzzer).
    pub fn beeps(&self) -> u32 {
        self.beeps
    }

    /// Display RAM bytes the last flush sent.
    pub fn last_flush_bytes(&self) -> usize {
        self.last_flush_bytes
    }
}

impl Board for Lm3s6965 {
    type Error = Infallible;
    type Display = Ssd0323<'static, OledBus>;

    fn write(&mut self, bytes: &[u8]) -> Result<(), Infallible> {
        // Blocking: a frame is at most 256 bytes, 22 ms at 115200 baud.
        for &b in bytes {
            while uart0::FR.read() & uart0::FR_TXFF != 0 {}
            uart0::DR.write(u32::from(b));
        }
        Ok(())
    }

    fn beep(&mut self, _pattern: floorhand_protocol::link::Beep) {
        self.beeps = self.beeps.wrapping_add(1);
    }

    fn display(&mut self) -> &mut Ssd0323<'static, OledBus> {
        &mut self.display
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        // A redraw covers the whole screen, the overrun mark included: draw it again.
        let _ = rx_buffer::draw_overruns(&mut self.display, overruns());
        self.last_flush_bytes = self.display.flush()?;
        Ok(())
    }
}

/// Sets the clock to 50 MHz from the 8 MHz crystal through the PLL (data sheet 6.3,
/// "Initialization and Configuration"). QEMU takes the divider from RCC and reports the
/// PLL locked as soon as it is powered up, so the same code runs there.
fn clock_init() {
    use sysctl::*;
    // 1. Run from the raw oscillator while the PLL is changed.
    let mut rcc = RCC.read();
    rcc |= RCC_BYPASS;
    rcc &= !RCC_USESYSDIV;
    RCC.write(rcc);
    // 2. Main oscillator on, 8 MHz crystal, PLL powered up.
    rcc &= !(RCC_MOSCDIS | RCC_OSCSRC_MASK | RCC_XTAL_MASK | RCC_PWRDN);
    rcc |= RCC_XTAL_8MHZ;
    RCC.write(rcc);
    // 3. 200 MHz PLL / 4 = 50 MHz (SYSDIV = 3).
    rcc &= !RCC_SYSDIV_MASK;
    rcc |= (3 << RCC_SYSDIV_SHIFT) | RCC_USESYSDIV;
    RCC.write(rcc);
    // 4. Wait for the lock (bounded: a dead PLL must not hang the start; the chip then
    //    runs from the oscillator and the UART's rate is wrong, which the link shows).
    for _ in 0..1_000_000 {
        if RIS.read() & RIS_PLLLRIS != 0 {
            break;
        }
    }
    // 5. Switch to the PLL.
    RCC.write(rcc & !RCC_BYPASS);
}

fn peripherals_init() {
    use sysctl::*;
    // Port gates A, C, D, E, F; UART0 and SSI0.
    RCGC2.set_bits(0b11_1101);
    RCGC1.set_bits(RCGC1_UART0 | RCGC1_SSI0);
    // A gated peripheral needs a few cycles before its registers answer.
    let _ = RCGC2.read();
    let _ = RCGC1.read();

    // PA0/PA1 UART0, PA2/PA3/PA5 SSI0 clock, frame and Tx.
    let port_a = 0b10_1111;
    GPIO_A.afsel().set_bits(port_a);
    GPIO_A.den().set_bits(port_a);
    // PC7 data/command out; PC0..PC3 are JTAG and are left alone.
    GPIO_C.dir().set_bits(1 << 7);
    GPIO_C.den().set_bits(1 << 7);
    // PD0 out and high: SD card deselected (and the OLED selected in QEMU). A PL061 data
    // write changes only output pins, so the direction comes first.
    GPIO_D.dir().set_bits(1 << 0);
    GPIO_D.den().set_bits(1 << 0);
    GPIO_D.data(1 << 0).write(1);
    // The gamepad: inputs with pull-ups (a press pulls to ground).
    GPIO_E.dir().clear_bits(0x0F);
    GPIO_E.pur().set_bits(0x0F);
    GPIO_E.den().set_bits(0x0F);
    GPIO_F.dir().clear_bits(1 << 1);
    GPIO_F.pur().set_bits(1 << 1);
    GPIO_F.den().set_bits(1 << 1);
    // Both edges of every button interrupt, to wake the main loop.
    for (port, pins) in [(GPIO_E, 0x0F), (GPIO_F, 1 << 1)] {
        port.is().clear_bits(pins);
        port.ibe().set_bits(pins);
        port.icr().write(pins);
        port.im().set_bits(pins);
    }

    // UART0: 115200 8N1. Divisor = 50 MHz / (16 * 115200) = 27.127: 27 + 8/64.
    uart0::CTL.write(0);
    let div64 = (SYSCLK_HZ * 4 + BAUD / 2) / BAUD; // 64ths of the divisor, rounded
    uart0::IBRD.write(div64 / 64);
    uart0::FBRD.write(div64 % 64);
    uart0::LCRH.write(uart0::LCRH_8N1_FIFO);
    uart0::IFLS.write(uart0::IFLS_RX_1_8);
    uart0::IM.write(uart0::INT_RX | uart0::INT_RT | uart0::INT_OE);
    uart0::CTL.write(uart0::CTL_ENABLE);

    // SSI0: master, 8-bit frames, mode 3, 50 MHz / (2 * (1 + 5)) = 4.2 MHz.
    ssi0::CR1.write(0);
    ssi0::CR0.write(ssi0::CR0_8BIT_MODE3_SCR5);
    ssi0::CPSR.write(2);
    ssi0::CR1.write(ssi0::CR1_SSE);
}

fn systick_init(syst: &mut SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(TICK_CYCLES - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// The gamepad's lines as [`Gamepad::sample`] reads them: bits 0..3 PE0..PE3 (up,
/// down, left, right), bit 4 PF1 (select).
fn read_pad() -> u8 {
    let e = GPIO_E.data(0x0F).read() as u8 & 0x0F;
    let f = GPIO_F.data(1 << 1).read() as u8 & (1 << 1);
    e | (f << 3)
}

/// Starts the board and runs the terminal forever.
pub fn run(mut core: cortex_m::Peripherals) -> ! {
    // First, while the stack is shallow: the rest of RAM is painted so that its peak
    // can be read later (about 1 ms at 50 MHz).
    regs::stack::paint_stack();
    clock_init();
    peripherals_init();
    systick_init(&mut core.SYST);
    regs::unmask(::lm3s6965::Interrupt::UART0);
    regs::unmask(::lm3s6965::Interrupt::GPIOE);
    regs::unmask(::lm3s6965::Interrupt::GPIOF);

    // The framebuffer and the runner live in statics, built in place: on the stack they
    // would be copied as they move (a 4 KiB frame each time), and the image's size
    // report would not count them. `run` is entered once, so both `singleton!`s succeed.
    let Some(frame) =
        cortex_m::singleton!(: [u8; ssd0323::FRAME_BYTES] = [0; ssd0323::FRAME_BYTES])
    else {
        cortex_m::peripheral::SCB::sys_reset()
    };
    let mut display = Ssd0323::new(OledBus, frame);
    let _ = display.init();
    let board = Lm3s6965 {
        display,
        beeps: 0,
        last_flush_bytes: 0,
    };
    let Some(runner) =
        cortex_m::singleton!(: Runner<Lm3s6965> = Runner::new(board, Profile::Mono128x64))
    else {
        cortex_m::peripheral::SCB::sys_reset()
    };

    #[cfg(feature = "redraw-bench")]
    bench::run(runner);

    let start = now_ms();
    let mut pad = Gamepad::new(start, read_pad());
    // Errors of the board are impossible (Infallible); an encode error would be a bug
    // in the protocol's limits. Neither stops the terminal.
    let _ = runner.start(start);
    let mut last_ms = start;
    let mut shown_overruns = 0;
    let mut chunk = [0u8; 64];
    loop {
        let now = now_ms();
        drain_uart();
        loop {
            let n = take_rx(&mut chunk);
            if n == 0 {
                break;
            }
            let _ = runner.on_bytes(now, &chunk[..n]);
        }
        for key in pad.sample(now, read_pad()) {
            let _ = runner.on_key(now, key);
        }
        // A button that moved is sampled until it settles: no interrupt comes for that.
        let settling = pad.settling();
        if now != last_ms {
            last_ms = now;
            let _ = runner.tick(now);
        }
        let lost = overruns();
        if lost != shown_overruns {
            shown_overruns = lost;
            let _ = runner.board_mut().flush();
        }
        // Sleep until the next interrupt (the tick within 100 ms, a byte, a button),
        // unless a byte came in since the ring was emptied or a button is settling.
        // WFI wakes on a pending interrupt even with interrupts masked, so none is
        // missed.
        interrupt::free(|cs| {
            if !settling && RX.borrow(cs).borrow().is_empty() {
                cortex_m::asm::wfi();
            }
        });
    }
}

/// The redraw benchmark of `scripts/qemu-terminal --bench`, and the stack's peak.
#[cfg(feature = "redraw-bench")]
mod bench {
    use super::*;
    use crate::core::View;
    use crate::render;
    use core::fmt::Write;
    use floorhand_protocol::link::{
        Level, MenuReason, PickPrompt, ScanTarget, Screen, ToTerminal, fit,
    };
    use floorhand_protocol::{Envelope, frame, limits::MAX_LINK_FRAME};

    /// Full redraws timed.
    const FRAMES: u32 = 200;

    /// Draws [`FRAMES`] screens, alternating two, each sent whole to the controller;
    /// then takes every kind of screen through the link's decoder; prints the time and the
    /// stack's peak on UART0.
    pub fn run(runner: &mut Runner<Lm3s6965>) {
        // QEMU drops what a pty's UART sends while nobody has the pty open: start when
        // the reader says so (any byte).
        let mut go = [0u8; 1];
        while take_rx(&mut go) == 0 {
            drain_uart();
        }
        // Painted again: the measure starts here, not at boot.
        regs::stack::paint_stack();
        let views = [View::Connecting, View::LinkLost];
        let start = now_ms();
        let mut bytes = 0;
        for i in 0..FRAMES {
            let board = runner.board_mut();
            let _ = render::draw(
                &views[(i % 2) as usize],
                Profile::Mono128x64,
                board.display(),
            );
            board.display.invalidate();
            let _ = board.flush();
            bytes += board.last_flush_bytes();
        }
        let ms = now_ms() - start;
        let draw_stack = regs::stack::stack_peak();
        // The running terminal's paths: a frame decoded and its screen drawn, for
        // each kind of screen, with the longest texts (wrapped, cut).
        let screens = [
            Screen::Pick(PickPrompt {
                location: fit("A-12-03-B-LONGER-NAME"),
                item: fit("Hex bolt M8x40, zinc plated, box of two hundred"),
                qty: 65_535,
                done: 65_535,
                total: 65_535,
            }),
            Screen::Scan {
                target: ScanTarget::Item,
                hint: fit("0/2 Hex bolt M8x40, zinc plated, box"),
            },
            Screen::Quantity {
                prompt: fit("Quantity of hex bolts M8x40"),
                value: u32::MAX,
                max: u32::MAX,
            },
            Screen::Reasons {
                options: [
                    MenuReason::LocationEmpty,
                    MenuReason::Damaged,
                    MenuReason::WrongItem,
                    MenuReason::NotEnough,
                ]
                .into_iter()
                .collect(),
                selected: 3,
            },
            Screen::Message {
                level: Level::Error,
                text: fit("Averyveryverylongwordthatcannotbewrappedanywhere at all"),
            },
            Screen::Offline {
                backlog: u32::MAX,
                since_s: u32::MAX,
            },
            Screen::WaveDone {
                picked: u16::MAX,
                short: u16::MAX,
            },
        ];
        let (mut scratch, mut out) = ([0u8; MAX_LINK_FRAME], [0u8; MAX_LINK_FRAME]);
        for (id, screen) in screens.into_iter().enumerate() {
            let msg = ToTerminal::Show(screen);
            if let Ok(f) =
                frame::encode(&Envelope::new(id as u64 + 1, &msg), &mut scratch, &mut out)
            {
                let _ = runner.on_bytes(now_ms(), f);
            }
        }
        let stack = regs::stack::stack_peak();
        let mut line: heapless::String<200> = heapless::String::new();
        let fps_x10 = u64::from(FRAMES) * 10_000 / ms.max(1);
        let _ = write!(
            line,
            "redraw-bench: {FRAMES} full redraws, {} B each to the SSD0323, in {ms} ms: {}.{} fps; stack peak {stack} B (drawing alone {draw_stack} B)\r\n",
            bytes / FRAMES as usize,
            fps_x10 / 10,
            fps_x10 % 10
        );
        let _ = runner.board_mut().write(line.as_bytes());
    }
}
