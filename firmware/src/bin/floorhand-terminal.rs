//! `floorhand-terminal`: the display terminal's firmware core on a Linux host, against a
//! serial port or pty. `main` alone maps errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use floorhand_firmware::sim::runner::{self, Args};

fn main() -> ExitCode {
    let args = Args::parse();
    match runner::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floorhand-terminal: error: {e}");
            ExitCode::FAILURE
        }
    }
}
