//! Child process of the store crash test: confirms picks in a loop on a real database
//! file and prints each event seq to stdout after its commit, until it is killed.
//!
//! Usage: `store_crash_child DB_PATH`

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use floorhand::store::fixtures::{sample_tasks, sample_wave};
use floorhand::store::{Db, PickConfirmation, StoreConfig};
use floorhand_protocol::oms::Down;

/// Tasks in the child's wave; picks go round them, one unit at a time.
const TASKS: u64 = 10;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: store_crash_child DB_PATH");
        return ExitCode::FAILURE;
    };
    match run(&path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("store_crash_child: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut db = Db::open(path, &StoreConfig::default())?;
    // Every run delivers the same wave; after the first it is a duplicate.
    let wave = sample_wave(1, 1, sample_tasks(1, TASKS as usize, u32::MAX));
    db.apply_down(db.next_down_header()?, &Down::WaveAssigned(wave), 1)?;
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        let pick = PickConfirmation {
            task_id: 1 + i % TASKS,
            qty: 1,
            lot: None,
            serial: None,
            expiry: None,
            tote: None,
        };
        let seq = db.confirm_pick(1_795_300_000 + i, 7, &pick)?;
        // Reported only after the commit returned: the parent checks each one survived.
        writeln!(out, "{seq}")?;
        out.flush()?;
    }
    Ok(())
}
