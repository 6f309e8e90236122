//! The Floorhand agent: everything but `main`, so integration tests and benchmarks can
//! drive the same code the binary runs.
//!
//! Code map (see `ARCHITECTURE.md`):
//! - [`wire`]: wire-size report over the protocol's example messages.
//! - [`cli_status`]: `floorhand status`, the store's report for a person.
//! - [`store`]: the local SQLite mirror, the only code that knows SQL.

pub mod cli_status;
pub mod config;
pub mod devices;
pub mod run;
pub mod store;
pub mod sync;
pub mod wire;
