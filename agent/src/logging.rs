//! Log output for the binary: readable text on a terminal, JSON lines for log shippers,
//! or journald-friendly lines under systemd; `RUST_LOG` filters (default `info`).

use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::registry::LookupSpan;

use crate::config::{Config, LogFormat};

/// The format `floorhand run` logs in: `--log-json` wins, else the config's `[log]
/// format`. No config (it could not be read) gives `Text`; `run` then reports the config
/// error itself.
pub fn format_for_run(config: Option<&Config>, json_flag: bool) -> LogFormat {
    if json_flag {
        return LogFormat::Json;
    }
    config.map_or(LogFormat::Text, |c| c.log.format)
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
        LogFormat::Journald => builder
            .with_ansi(false)
            .event_format(SyslogPrefix(
                tracing_subscriber::fmt::format()
                    .without_time()
                    .with_ansi(false),
            ))
            .init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// The syslog priority of a tracing level, as journald reads it from a `<N>` line prefix
/// (systemd's `SyslogLevelPrefix=`, on by default), so `journalctl -p warning` works.
pub fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Prefixes each line of the inner format with `<priority>`.
struct SyslogPrefix<F>(F);

impl<S, N, F> FormatEvent<S, N> for SyslogPrefix<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", syslog_priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_to_the_syslog_priorities_journald_understands() {
        let check = |level, expected| assert_eq!(syslog_priority(level), expected, "{level}");
        check(Level::ERROR, 3);
        check(Level::WARN, 4);
        check(Level::INFO, 6);
        check(Level::DEBUG, 7);
        check(Level::TRACE, 7);
    }
}
