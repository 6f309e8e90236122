//! `floorhand oms ...`: CLI glue for the OMS-side tools in `floorhand::sync::tools`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use floorhand::sync::mqtt::BrokerSettings;
use floorhand::sync::oms::OmsSettings;
use floorhand::sync::tools;

use crate::BrokerArgs;

#[derive(Subcommand)]
pub enum OmsCommand {
    /// Publish a wave (or any down message) from a JSON file to one device.
    PushWave {
        /// JSON file: a wave (task_count and digest may be left out) or a down message.
        file: PathBuf,
        /// Device id.
        #[arg(long)]
        device: String,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Print every agent event as one JSON line; drop duplicates; send cumulative acks.
    Tail {
        #[command(flatten)]
        broker: BrokerArgs,
        /// Do not acknowledge events (watch only).
        #[arg(long)]
        no_ack: bool,
        /// MQTT client id; keep it stable so the broker queues events while tail is down.
        #[arg(long, default_value = "floorhand-oms-tail")]
        client_id: String,
    },
    /// Simulate an OMS: push waves to devices and acknowledge their events.
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
    },
}

fn settings(b: &BrokerArgs, client_id: String, ack: bool) -> anyhow::Result<OmsSettings> {
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
    })
}

pub fn run(cmd: OmsCommand) -> anyhow::Result<ExitCode> {
    let rt = crate::runtime()?;
    match cmd {
        OmsCommand::PushWave {
            file,
            device,
            broker,
        } => {
            let s = settings(
                &broker,
                format!("floorhand-oms-push-{}", std::process::id()),
                false,
            )?;
            let id = rt.block_on(tools::push_wave(&s, &file, &device))?;
            eprintln!("published {} to {device} as message {id}", file.display());
        }
        OmsCommand::Tail {
            broker,
            no_ack,
            client_id,
        } => {
            let s = settings(&broker, client_id, !no_ack)?;
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
        } => {
            let s = settings(&broker, format!("floorhand-oms-sim-{}", broker.site), true)?;
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
