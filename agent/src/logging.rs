//! Log output for the binary: readable text on a terminal, JSON lines for log shippers,
//! or journald-friendly lines under systemd; `RUST_LOG` filters (default `info`).

use std::io::IsTerminal;
use std::path::Path;

use crate::config::{Config, LogFormat};

/// The format `floorhand run` logs in: `--log-json` wins, else the config's `[log]
/// format`. An unreadable config gives `Text`; `run` then reports the config error itself.
pub fn format_for_run(config: &Path, json_flag: bool) -> LogFormat {
    if json_flag {
        return LogFormat::Json;
    }
    Config::load(config)
        .map(|c| c.log.format)
        .unwrap_or(LogFormat::Text)
}

/// Installs the global subscriber, writing to stderr.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        // The journal stamps every line itself and shows escape codes as garbage.
        LogFormat::Journald => builder.with_ansi(false).without_time().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}
