//! The Floorhand agent: everything but `main`, so integration tests and benchmarks can
//! drive the same code the binary runs.
//!
//! Code map (see `ARCHITECTURE.md`):
//! - [`barcode`]: pure barcode parsing (GTINs, GS1 AIs, Digital Link, location checks).
//! - [`pick`]: the pick workflow, a pure state machine (scans and keys in, effects out).
//! - [`pack`]: the pack station workflow (pure state machine).
//! - [`label`]: shipping labels in ZPL (pure); [`label_cli`]: `floorhand label`.
//! - [`ledger`]: the reliable channel's pure bookkeeping (windows, acks, re-sends), both
//!   directions.
//! - [`store`]: the local SQLite mirror, the only code that knows SQL.
//! - [`cli_status`]: `floorhand status`, the store's report for a person.
//! - [`devices`]: scanners, printers and terminals, the only code that opens ports.
//! - [`sync`]: MQTT sync with the OMS, the only code that knows MQTT; [`run`]: the daemon;
//!   [`config`]: its configuration file.
//! - [`station`]: the station runtime (devices + workflow + store), started by [`run`].
//!   [`config`]: its configuration file; [`logging`]: its log output; [`doctor`]: the
//!   pre-shift station check.
//! - [`clock`]: the wall clock, `clock::unix_now()`, read only by the shell.
//! - [`wire`]: wire-size report over the protocol's example messages.
//! - [`demo`] (feature `sim`): `floorhand demo`, a whole shift with an outage on one command.
//! - [`rigs`] (feature `sim`): test rigs shared by the tests, the demo and the bench.
//! - [`bridge`] (feature `bridge`): `floorhand bridge`, the OMS side as a service with an
//!   HTTP API.
//!
//! Features `sim` and `bridge` (on by default) hold the test rigs and the OMS side; the
//! station's package builds without them.

pub mod barcode;
#[cfg(feature = "bridge")]
pub mod bridge;
pub mod cli_status;
pub mod clock;
pub mod config;
#[cfg(feature = "sim")]
pub mod demo;
pub mod devices;
pub mod doctor;
pub mod label;
pub mod label_cli;
pub mod ledger;
pub mod logging;
pub mod pack;
pub mod pick;
#[cfg(feature = "sim")]
pub mod rigs;
pub mod run;
pub mod station;
pub mod store;
pub mod sync;
pub mod wire;
