//! Helpers for Floorhand's cross-crate integration tests: locating the built binaries,
//! running them, and (as the issues land) starting real brokers and pseudo-terminals.

pub mod browser;
/// The shared fake printer (`floorhand::rigs::fake_printer`).
pub use floorhand::rigs::fake_printer;
pub mod http;
/// The shared Mosquitto launcher (`floorhand::rigs::mosquitto`).
pub use floorhand::rigs::mosquitto;
pub mod proxy;
pub mod pty;
pub mod qemu;
pub mod rabbitmq;
pub mod station_support;
pub mod sync_support;
pub mod wire_tap;

use std::path::PathBuf;
use std::process::{Command, Output};

/// Path of a binary built from this workspace (`floorhand`, `floorhand-terminal`).
///
/// Integration tests live in `target/<profile>/deps/`; the binaries one level up.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target profile dir");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is not built; run the tests with `cargo test --workspace`",
        bin.display()
    );
    bin
}

/// Runs `floorhand` with `args` and returns its output.
pub fn floorhand(args: &[&str]) -> Output {
    Command::new(workspace_bin("floorhand"))
        .args(args)
        .output()
        .expect("run floorhand")
}
