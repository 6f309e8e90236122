//! The Floorhand agent: everything but `main`, so integration tests and benchmarks can
//! drive the same code the binary runs.
//!
//! Code map (see `ARCHITECTURE.md`):
//! - [`wire`]: wire-size report over the protocol's example messages.

pub mod config;
pub mod devices;
pub mod run;
pub mod sync;
pub mod wire;
