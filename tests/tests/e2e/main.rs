//! Floorhand's integration tests across crates, with real parts: a real Mosquitto, real
//! ptys, real SQLite files, the real `floorhand` and `floorhand-terminal` binaries.
//!
//! One test binary with a module per area, not one binary per file: each binary links the
//! whole agent, and their tests run one binary after another; here they share one link
//! and run side by side. Run one area with `cargo test -p floorhand-tests --test e2e sync::`.

mod acl;
mod agent_failures;
mod barcode_cli;
mod bridge;
mod cli;
mod config_cli;
mod contract;
mod dashboard;
mod demo;
mod label_cli;
mod oms_cli;
mod pack_e2e;
mod picking_e2e;
mod printer;
mod qemu_terminal;
mod rabbitmq;
mod scale_pty;
mod scanner_pty;
mod service;
mod stations_e2e;
mod store_crash;
mod sync;
mod terminal_e2e;
