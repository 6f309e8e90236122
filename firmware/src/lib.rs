//! Floorhand's display terminal: a `no_std` core, with no allocator, that takes link
//! frames, key presses and timer ticks and returns effects.
//!
//! - [`core`]: the state machine (link bytes, keys, scans, ticks in; effects out).
//! - [`render`]: draws the current view onto any embedded-graphics `DrawTarget`.
//! - [`board`]: the thin seam to hardware: traits a board implements, and the loop glue
//!   that feeds the core and carries out its effects.
//! - `sim` (feature `sim`, std): the host runner behind the `floorhand-terminal` binary.
//!
//! The core never touches hardware or reads a clock: board support feeds it bytes, keys
//! and the time, and carries out the effects it returns.
#![cfg_attr(not(feature = "sim"), no_std)]
#![forbid(unsafe_code)]

pub mod board;
pub mod core;
pub mod render;

#[cfg(feature = "sim")]
pub mod sim;
