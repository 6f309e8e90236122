//! The terminal image for the TI LM3S6965 (QEMU's `lm3s6965evb`): start-up, the
//! interrupt handlers, and a panic that restarts the chip.
#![no_std]
#![no_main]

use ::lm3s6965::interrupt;
use cortex_m_rt::{entry, exception};
use floorhand_firmware::lm3s6965 as board;

#[entry]
fn main() -> ! {
    // `take` succeeds once, and this is the only call.
    let core = cortex_m::Peripherals::take().expect("the core peripherals, taken once");
    board::run(core)
}

#[exception]
fn SysTick() {
    board::on_systick();
}

#[interrupt]
fn UART0() {
    board::on_uart0();
}

#[interrupt]
fn GPIOE() {
    board::on_gamepad_edge();
}

#[interrupt]
fn GPIOF() {
    board::on_gamepad_edge();
}

/// A terminal that panicked starts again (a reset, the link's hello and the agent's
/// screen) rather than freezing on a picker's wrist.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    cortex_m::peripheral::SCB::sys_reset()
}
