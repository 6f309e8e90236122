//! `floorhand`: the agent binary and its tools. `main` alone maps errors to exit codes.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use floorhand::barcode::cli::BarcodeCommand;
use floorhand::label_cli::{self, LabelCommand};
use floorhand::wire;

#[cfg(feature = "sim")]
mod oms_cmd;

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
    /// Run the agent: local store and MQTT sync with the OMS.
    Run {
        /// Configuration file (see examples/floorhand.toml).
        #[arg(long, short)]
        config: std::path::PathBuf,
        /// Log as JSON lines instead of readable text.
        #[arg(long)]
        log_json: bool,
    },
    /// The OMS side as a service: stores every event, re-sends every down message until
    /// applied, and serves both as JSON over HTTP (see examples/bridge.toml).
    #[cfg(feature = "bridge")]
    Bridge {
        /// Configuration file; without it: ./floorhand-bridge.db, mqtt://127.0.0.1:1883,
        /// HTTP on 127.0.0.1:8080, token in ./floorhand-bridge.token.
        #[arg(long, short)]
        config: Option<std::path::PathBuf>,
    },
    /// OMS-side tools for integrators and tests: push waves, tail events, simulate an OMS.
    #[cfg(feature = "sim")]
    #[command(subcommand)]
    Oms(oms_cmd::OmsCommand),
    /// Check this station before a shift: config, database, disk, broker, devices.
    Doctor {
        /// Configuration file, as for `run`.
        #[arg(long, short, default_value = "/etc/floorhand/floorhand.toml")]
        config: std::path::PathBuf,
    },
    /// Print tasks by state, the outbox backlog, storage use and the operator's pace.
    Status {
        /// The agent's SQLite database.
        #[arg(long, value_name = "PATH")]
        db: std::path::PathBuf,
    },
    /// A whole shift on one command: broker, OMS, picker and pack station, virtual
    /// devices and a network outage; exits 0 when the OMS got exactly what was committed.
    #[cfg(feature = "sim")]
    Demo(floorhand::demo::DemoArgs),
}

/// How the OMS tools reach the broker.
#[cfg(feature = "sim")]
#[derive(clap::Args, Clone, Debug)]
pub struct BrokerArgs {
    /// Broker URL: mqtt://host:1883 or mqtts://host:8883.
    #[arg(
        long,
        default_value = "mqtt://127.0.0.1:1883",
        env = "FLOORHAND_BROKER"
    )]
    pub broker: String,
    /// Site id (`+` for every site where receiving).
    #[arg(long, default_value = "site1")]
    pub site: String,
    /// Username.
    #[arg(long)]
    pub username: Option<String>,
    /// Environment variable holding the password.
    #[arg(long)]
    pub password_env: Option<String>,
    /// CA certificate (PEM) for mqtts://.
    #[arg(long)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Client certificate (PEM).
    #[arg(long)]
    pub cert_file: Option<std::path::PathBuf>,
    /// Client key (PEM).
    #[arg(long)]
    pub key_file: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `floorhand run` reads its config file once: the log format comes from it, then the
    // settings (an unreadable file is reported once logging is up).
    let loaded = match &cli.command {
        Command::Run { config, .. } => Some(floorhand::config::Config::load(config)),
        _ => None,
    };
    let log_format = match (&cli.command, &loaded) {
        (Command::Run { log_json, .. }, Some(loaded)) => {
            floorhand::logging::format_for_run(loaded.as_ref().ok(), *log_json)
        }
        _ => floorhand::config::LogFormat::Text,
    };
    // The demo logs to a file under its --out dir, so its progress display stays readable.
    #[cfg(feature = "sim")]
    let demo = matches!(cli.command, Command::Demo(_));
    #[cfg(not(feature = "sim"))]
    let demo = false;
    if !demo {
        floorhand::logging::init(log_format);
    }
    match run(cli, loaded) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("floorhand: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    cli: Cli,
    loaded: Option<Result<floorhand::config::Config, floorhand::config::ConfigError>>,
) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { config, .. } => run_agent(
            &config,
            loaded.unwrap_or_else(|| floorhand::config::Config::load(&config)),
        ),
        #[cfg(feature = "sim")]
        Command::Oms(cmd) => oms_cmd::run(cmd),
        #[cfg(feature = "bridge")]
        Command::Bridge { config } => run_bridge(config.as_deref()),
        Command::Doctor { config } => {
            let report = runtime()?.block_on(floorhand::doctor::run(&config));
            print!("{}", report.render());
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
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
                    "\ntypical pick confirmation: {} bytes postcard, {} bytes JSON, ratio {:.3} (goal: <= 32 bytes, <= 0.15)",
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
        #[cfg(feature = "sim")]
        Command::Demo(args) => Ok(if floorhand::demo::run(&args)? {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }),
        Command::Status { db } => {
            let now = floorhand::clock::unix_now();
            println!("{}", floorhand::cli_status::report(&db, now)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Resolves when SIGTERM or SIGINT arrives.
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

fn run_agent(
    path: &std::path::Path,
    loaded: Result<floorhand::config::Config, floorhand::config::ConfigError>,
) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let cfg = loaded?;
    // A panic anywhere (a store job, one of the link's tasks) stops the agent with a
    // failure, so systemd's Restart=on-failure starts it again.
    floorhand::run::watch_panics();
    runtime()?.block_on(async {
        let started = match cfg.settings(path) {
            Ok(settings) => floorhand::run::Agent::start(&settings).await,
            Err(e) => Err(e.into()),
        };
        let agent =
            started.with_context(|| format!("starting the agent from {}", path.display()))?;
        let stopper = agent.stopper();
        tokio::spawn(async move {
            terminated().await;
            tracing::info!("stopping (signal)");
            stopper.stop();
        });
        agent.wait().await?;
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(feature = "bridge")]
fn run_bridge(path: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    use floorhand::bridge;
    let settings = match path {
        Some(p) => bridge::config::BridgeConfig::load(p)?,
        None => bridge::config::BridgeConfig::default().settings(None)?,
    };
    let (token, made) = bridge::load_or_make_token(&settings.token_file)?;
    if made {
        eprintln!(
            "floorhand bridge: wrote a new API token to {} (send it as `Authorization: Bearer TOKEN`)",
            settings.token_file.display()
        );
    }
    floorhand::run::watch_panics();
    runtime()?.block_on(bridge::run(
        &settings,
        token,
        async {
            terminated().await;
            tracing::info!("bridge: stopping (signal)");
        },
        |addr| eprintln!("floorhand bridge: serving http://{addr}"),
    ))?;
    Ok(ExitCode::SUCCESS)
}
