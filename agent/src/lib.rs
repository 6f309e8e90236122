//! The Floorhand agent: everything but `main`, so integration tests and benchmarks can
//! drive the same code the binary runs.
//!
//! Code map (see `ARCHITECTURE.md`):
//! - [`barcode`]: pure barcode parsing (GTINs, GS1 AIs, Digital Link, location checks).
//! - [`pick`]: the pick workflow, a pure state machine (scans and keys in, effects out).
//! - [`wire`]: wire-size report over the protocol's example messages.
//! - [`label`]: shipping labels in ZPL (pure); [`label_cli`]: `floorhand label`.
//! - [`pack`]: the pack station workflow (pure state machine).

pub mod barcode;
pub mod devices;
pub mod label;
pub mod label_cli;
pub mod pack;
pub mod pick;
pub mod wire;
