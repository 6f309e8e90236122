//! `floorhand`: the agent binary and its tools. `main` alone maps errors to exit codes.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use floorhand::barcode::cli::BarcodeCommand;
use floorhand::label_cli::{self, LabelCommand};
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
    /// Shipping labels: render a carton's ZPL for integrators.
    #[command(subcommand)]
    Label(LabelCommand),
    /// Barcode tools: `barcode parse DATA` shows what Floorhand reads from a label.
    #[command(subcommand)]
    Barcode(BarcodeCommand),
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
        Command::Label(LabelCommand::Render(args)) => {
            std::io::Write::write_all(&mut std::io::stdout(), &label_cli::render(&args)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Barcode(cmd) => {
            let (json, valid) = floorhand::barcode::cli::run(&cmd)?;
            println!("{json}");
            Ok(if valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
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
