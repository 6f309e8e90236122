//! `floorhand oms ...`: CLI glue for the OMS-side tools in `floorhand::sync::tools`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use floorhand::sync::mqtt::BrokerSettings;
use floorhand::sync::oms::{AckMode, DownState, OmsSettings};
use floorhand::sync::tools;

use crate::BrokerArgs;

#[derive(Subcommand)]
pub enum OmsCommand {
    /// Queue down messages for one device in the OMS store and send them. Exits 0 once each
    /// is stored and sent on a live broker connection; with --wait, only once the agent
    /// applied every one (a rejection or a timeout exits 1 and lists what is missing).
    #[command(alias = "push-wave")]
    Push {
        /// JSON: one wave (task_count and digest may be left out) or down message, or one
        /// message per line; `-` or nothing reads standard input.
        file: Option<PathBuf>,
        /// Device id.
        #[arg(long)]
        device: String,
        /// Wait up to SECS for the agent to acknowledge every message at application
        /// level; exit 1 and list what it did not acknowledge.
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
        /// The OMS store (SQLite) that numbers and keeps down messages. Use the same store
        /// for every push to a device: its down sequence lives there.
        #[arg(long, default_value = "floorhand-oms.db")]
        store: PathBuf,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Print every agent event as one JSON line. An event is acknowledged only after its
    /// line is written and flushed, so the output is at-least-once: after a crash or kill,
    /// lines written but not yet acknowledged are printed again. Deduplicate by
    /// (site, device, incarnation, seq).
    Tail {
        #[command(flatten)]
        broker: BrokerArgs,
        /// Do not acknowledge events (watch only).
        #[arg(long)]
        no_ack: bool,
        /// MQTT client id.
        #[arg(long, default_value = "floorhand-oms-tail")]
        client_id: String,
    },
    /// Simulate an OMS: push waves to devices and acknowledge their events (durable: its
    /// store keeps the events and the down outbox).
    Sim {
        #[command(flatten)]
        broker: BrokerArgs,
        /// Device ids, comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        devices: Vec<String>,
        /// Waves per device.
        #[arg(long, default_value_t = 2)]
        waves: u32,
        /// Tasks per wave.
        #[arg(long, default_value_t = 20)]
        tasks: u32,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration: Option<u64>,
        /// Print every received message as a JSON line on stdout.
        #[arg(long)]
        print: bool,
        /// The OMS store (SQLite); `:memory:` for none.
        #[arg(long, default_value = "floorhand-oms-sim.db")]
        store: PathBuf,
    },
}

fn settings(
    b: &BrokerArgs,
    client_id: String,
    ack: AckMode,
    store: PathBuf,
    clean_session: bool,
) -> anyhow::Result<OmsSettings> {
    let password = match &b.password_env {
        Some(v) => Some(std::env::var(v).map_err(|_| {
            anyhow::anyhow!("--password-env {v}: the environment variable is not set")
        })?),
        None => None,
    };
    Ok(OmsSettings {
        broker: BrokerSettings {
            username: b.username.clone(),
            password,
            ca_file: b.ca_file.clone(),
            cert_file: b.cert_file.clone(),
            key_file: b.key_file.clone(),
            ..BrokerSettings::plain(b.broker.clone())
        },
        site: b.site.clone(),
        client_id,
        ack,
        store,
        clean_session,
    })
}

pub fn run(cmd: OmsCommand) -> anyhow::Result<ExitCode> {
    let rt = crate::runtime()?;
    match cmd {
        OmsCommand::Push {
            file,
            device,
            wait,
            store,
            broker,
        } => {
            let text = match file.as_deref() {
                None => std::io::read_to_string(std::io::stdin())?,
                Some(p) if p.as_os_str() == "-" => std::io::read_to_string(std::io::stdin())?,
                Some(p) => std::fs::read_to_string(p)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
            };
            let downs = tools::downs_from_text(&text)?;
            let s = settings(
                &broker,
                format!("floorhand-oms-push-{}", std::process::id()),
                AckMode::Never,
                store,
                true,
            )?;
            let n = downs.len();
            let site = (broker.site != "+").then_some(broker.site.as_str());
            let results = rt.block_on(tools::push(
                &s,
                downs,
                site,
                &device,
                wait.map(Duration::from_secs),
            ))?;
            let mut missing = Vec::new();
            for p in &results {
                let ok = match wait {
                    Some(_) => p.msg_no == 0 || matches!(p.state, DownState::Applied),
                    None => !matches!(p.state, DownState::Queued),
                };
                if !ok {
                    missing.push(p);
                }
            }
            if missing.is_empty() {
                let what = if wait.is_some() {
                    "applied by"
                } else {
                    "published to"
                };
                eprintln!("{n} message(s) {what} {device}");
            } else {
                for p in &missing {
                    eprintln!("message {} to {device}: {:?}", p.msg_no, p.state);
                }
                let why = if wait.is_some() {
                    "not acknowledged by the agent in time (or rejected)"
                } else {
                    "not handed to the broker (is it up, and has the device ever connected?)"
                };
                eprintln!(
                    "{} of {n} message(s) {why}; they stay queued in the OMS store and are sent again by the next push or sim using it",
                    missing.len()
                );
                return Ok(ExitCode::from(1));
            }
        }
        OmsCommand::Tail {
            broker,
            no_ack,
            client_id,
        } => {
            let ack = if no_ack {
                AckMode::Never
            } else {
                AckMode::Consumed
            };
            let s = settings(&broker, client_id, ack, PathBuf::from(":memory:"), true)?;
            let mut out = std::io::stdout();
            rt.block_on(tools::tail(&s, &mut out, crate::terminated()))?;
        }
        OmsCommand::Sim {
            broker,
            devices,
            waves,
            tasks,
            duration,
            print,
            store,
        } => {
            let s = settings(
                &broker,
                format!("floorhand-oms-sim-{}", broker.site),
                AckMode::Stored,
                store,
                false,
            )?;
            let plan = tools::SimPlan {
                devices,
                waves,
                tasks,
            };
            let mut stdout = std::io::stdout();
            let out: Option<&mut (dyn std::io::Write + Send)> =
                if print { Some(&mut stdout) } else { None };
            let c = rt.block_on(tools::sim(
                &s,
                &plan,
                duration.map(Duration::from_secs),
                out,
                crate::terminated(),
            ))?;
            eprintln!(
                "oms sim: {} events, {} duplicates dropped, {} acks sent",
                c.events, c.duplicates, c.acks_sent
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
