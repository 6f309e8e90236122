//! Floorhand's display terminal: a `no_std` core, with no allocator, that takes link
//! frames, key presses and timer ticks and returns effects.
//!
//! The core never touches hardware: board support feeds it bytes and ticks and carries
//! out the effects it returns (send these bytes, sound this beep, redraw).
#![no_std]
#![forbid(unsafe_code)]

pub mod core;
