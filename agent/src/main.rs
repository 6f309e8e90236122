//! `floorhand`: the agent binary and its tools. `main` alone maps errors to exit codes.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use floorhand::wire;

/// Floorhand: an offline-first warehouse fulfilment agent.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print every protocol message's postcard size beside its JSON size.
    WireSizes {
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print tasks by state, the outbox backlog, storage use and the operator's pace.
    Status {
        /// The agent's SQLite database.
        #[arg(long, value_name = "PATH")]
        db: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("floorhand: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::WireSizes { json } => {
            let rows = wire::rows();
            if json {
                for r in &rows {
                    println!("{}", serde_json::to_string(r)?);
                }
            } else {
                print!("{}", wire::table(&rows));
                let pick = wire::typical_pick();
                println!(
                    "\ntypical pick confirmation: {} bytes postcard, {} bytes JSON, ratio {:.3} (goal: <= 24 bytes, <= 0.15)",
                    pick.postcard,
                    pick.json,
                    pick.ratio()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { db } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            println!("{}", floorhand::cli_status::report(&db, now)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
