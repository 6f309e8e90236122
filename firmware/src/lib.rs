//! Floorhand's display terminal: a `no_std` core, with no allocator, that takes link
//! frames, key presses and timer ticks and returns effects.
//!
//! - [`core`]: the state machine (link bytes, keys, scans, ticks in; effects out).
//! - [`render`]: draws the current view onto any embedded-graphics `DrawTarget`.
//! - [`board`]: the thin seam to hardware: traits a board implements, and the loop glue
//!   that feeds the core and carries out its effects.
//! - [`ssd0323`], [`gamepad`], [`rx_buffer`], [`clock`]: board parts with no registers
//!   in them (a display driver over a command/data bus, debounced buttons, a serial
//!   receive ring, milliseconds from a periodic counter), so they are tested on the host.
//! - `lm3s6965` (feature `lm3s6965`, `thumbv7m-none-eabi`): the TI LM3S6965 board, as
//!   QEMU's `lm3s6965evb` emulates it; the `floorhand-lm3s6965` image runs it.
//! - `sim` (feature `sim`, std): the host runner behind the `floorhand-terminal` binary.
//!
//! The core never touches hardware or reads a clock: board support feeds it bytes, keys
//! and the time, and carries out the effects it returns.
#![cfg_attr(not(feature = "sim"), no_std)]
// Denied, not forbidden: the LM3S6965 board's register module is the one place allowed.
#![deny(unsafe_code)]

// Unit tests use std's Vec; with `sim` the crate has std already.
#[cfg(all(test, not(feature = "sim")))]
extern crate std;

pub mod board;
pub mod clock;
pub mod core;
pub mod gamepad;
pub mod render;
pub mod rx_buffer;
pub mod ssd0323;

#[cfg(feature = "lm3s6965")]
pub mod lm3s6965;

#[cfg(feature = "sim")]
pub mod sim;
