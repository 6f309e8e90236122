//! The agent's configuration file (TOML). Every key is documented in
//! `examples/floorhand.toml`; unknown keys are errors, and every error names the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::store::{StoreConfig, Synchronous};
use crate::sync::agent::SyncConfig;
use crate::sync::mqtt::BrokerSettings;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This device's id: MQTT client id and topic level. `A-Z a-z 0-9 - _ .`
    pub device: String,
    /// The site (warehouse) id.
    pub site: String,
    /// The MQTT broker.
    pub broker: Broker,
    /// The local database.
    pub database: Database,
    /// Sync timing.
    #[serde(default)]
    pub sync: Sync,
    /// Logging.
    #[serde(default)]
    pub log: Log,
}

/// `[log]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// How log lines look on stderr.
    #[serde(default)]
    pub format: LogFormat,
}

/// `[log] format` values.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines with timestamps; colours only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
    /// For systemd's journal: no colours and no timestamp (the journal adds its own).
    Journald,
}

/// `[broker]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Broker {
    /// `mqtt://host:1883` or `mqtts://host:8883`.
    pub url: String,
    /// Username, if the broker wants one.
    pub username: Option<String>,
    /// File holding the password (first line). Preferred over `password_env`.
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// CA certificate (PEM) for `mqtts://`.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), if the broker requires one.
    pub cert_file: Option<PathBuf>,
    /// Client key (PEM).
    pub key_file: Option<PathBuf>,
    /// MQTT keep-alive in seconds.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u64,
    /// Seconds one connection attempt may take.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_s: u64,
}

fn default_connect_timeout() -> u64 {
    5
}

fn default_keep_alive() -> u64 {
    15
}

/// `[database]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// SQLite file.
    pub path: PathBuf,
    /// `full` (default) or `normal` (may lose the last commits on power loss).
    #[serde(default)]
    pub synchronous: SyncMode,
    /// Storage limit in MiB.
    #[serde(default = "default_max_mb")]
    pub max_mb: u64,
    /// Storage alarm at this percentage of the limit.
    #[serde(default = "default_alarm_pct")]
    pub alarm_pct: u8,
    /// Hours to keep completed, acknowledged data.
    #[serde(default = "default_retention_h")]
    pub retention_hours: u64,
}

fn default_max_mb() -> u64 {
    256
}
fn default_alarm_pct() -> u8 {
    80
}
fn default_retention_h() -> u64 {
    168
}

/// `synchronous` values.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Every commit synced.
    #[default]
    Full,
    /// WAL synced at checkpoints only.
    Normal,
}

/// `[sync]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sync {
    /// Seconds between status messages.
    pub status_interval_s: u64,
    /// Re-send unacked events when the OMS has acked nothing for this many seconds.
    pub resend_after_s: u64,
    /// Longest reconnect delay in seconds.
    pub max_backoff_s: u64,
}

impl Default for Sync {
    fn default() -> Self {
        Sync {
            status_interval_s: 60,
            resend_after_s: 20,
            max_backoff_s: 30,
        }
    }
}

/// A configuration problem, naming the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax, a wrong type, a missing or unknown key.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, which names the key and line.
        message: String,
    },
    /// A value that parses but cannot be used.
    #[error("{path}: `{key}`: {why}")]
    Value {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// What is wrong and what to do.
        why: String,
    },
}

impl Config {
    /// Reads and checks the file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and checks `text` (read from `path`, for messages).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let bad = |key, why: &str| ConfigError::Value {
            path: path.to_path_buf(),
            key,
            why: why.to_string(),
        };
        if !floorhand_protocol::topics::valid_id(&cfg.device) {
            return Err(bad("device", "use 1-64 of A-Z a-z 0-9 - _ ."));
        }
        if !floorhand_protocol::topics::valid_id(&cfg.site) {
            return Err(bad("site", "use 1-64 of A-Z a-z 0-9 - _ ."));
        }
        if let Err(e) = crate::sync::mqtt::parse_url(&cfg.broker.url) {
            return Err(bad("broker.url", &e.to_string()));
        }
        if cfg.database.alarm_pct == 0 || cfg.database.alarm_pct > 100 {
            return Err(bad("database.alarm_pct", "must be 1 to 100"));
        }
        if cfg.database.max_mb == 0 {
            return Err(bad("database.max_mb", "must be at least 1"));
        }
        if cfg.broker.password_file.is_some() && cfg.broker.password_env.is_some() {
            return Err(bad(
                "broker.password_file",
                "set password_file or password_env, not both",
            ));
        }
        Ok(cfg)
    }

    /// The broker settings, with the password read from its file or variable.
    pub fn broker_settings(&self, path: &Path) -> Result<BrokerSettings, ConfigError> {
        let b = &self.broker;
        let password = if let Some(f) = &b.password_file {
            let text = std::fs::read_to_string(f).map_err(|e| ConfigError::Value {
                path: path.to_path_buf(),
                key: "broker.password_file",
                why: format!("{}: {e}", f.display()),
            })?;
            Some(text.lines().next().unwrap_or("").to_string())
        } else if let Some(v) = &b.password_env {
            Some(std::env::var(v).map_err(|_| ConfigError::Value {
                path: path.to_path_buf(),
                key: "broker.password_env",
                why: format!("environment variable {v} is not set"),
            })?)
        } else {
            None
        };
        Ok(BrokerSettings {
            url: b.url.clone(),
            username: b.username.clone(),
            password,
            ca_file: b.ca_file.clone(),
            cert_file: b.cert_file.clone(),
            key_file: b.key_file.clone(),
            keep_alive: Duration::from_secs(b.keep_alive_s),
            connect_timeout: Duration::from_secs(b.connect_timeout_s.max(1)),
        })
    }

    /// The store settings.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            synchronous: match self.database.synchronous {
                SyncMode::Full => Synchronous::Full,
                SyncMode::Normal => Synchronous::Normal,
            },
            max_bytes: self.database.max_mb * 1024 * 1024,
            alarm_pct: self.database.alarm_pct,
            retention: Duration::from_secs(self.database.retention_hours * 3600),
            ..StoreConfig::default()
        }
    }

    /// The sync settings.
    pub fn sync_config(&self, broker: BrokerSettings) -> SyncConfig {
        let mut s = SyncConfig::new(&self.device, &self.site, broker);
        s.status_interval = Duration::from_secs(self.sync.status_interval_s.max(1));
        s.resend_after = Duration::from_secs(self.sync.resend_after_s.max(1));
        s.backoff.1 = Duration::from_secs(self.sync.max_backoff_s.max(1));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
device = "hh-07"
site = "hamburg"
[broker]
url = "mqtt://127.0.0.1:1883"
[database]
path = "/var/lib/floorhand/floorhand.db"
"#;

    fn check(text: &str, expected: Result<(), &str>) {
        match (Config::parse(Path::new("f.toml"), text), expected) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(want)) => {
                let e = e.to_string();
                assert!(e.contains(want), "error {e:?} should mention {want:?}");
            }
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn a_minimal_config_parses_with_defaults() {
        check(GOOD, Ok(()));
        let c = Config::parse(Path::new("f.toml"), GOOD).unwrap();
        assert_eq!(c.database.synchronous, SyncMode::Full);
        assert_eq!(c.sync.resend_after_s, 20);
    }

    #[test]
    fn every_error_names_the_key() {
        check(
            &format!("{GOOD}\ncolour = 1"),
            Err("unknown field `colour`"),
        );
        check(
            &GOOD.replace("site = \"hamburg\"\n", ""),
            Err("missing field `site`"),
        );
        check(&GOOD.replace("hh-07", "hh/07"), Err("`device`"));
        check(&GOOD.replace("mqtt://", "http://"), Err("`broker.url`"));
        check(
            &format!("{GOOD}synchronous = \"sometimes\""),
            Err("synchronous"),
        );
        check(&format!("{GOOD}alarm_pct = 0"), Err("`database.alarm_pct`"));
        check(
            &GOOD.replace(
                "[broker]\n",
                "[broker]\npassword_file = \"a\"\npassword_env = \"B\"\n",
            ),
            Err("`broker.password_file`"),
        );
    }

    #[test]
    fn a_missing_password_variable_is_named() {
        let text = GOOD.replace(
            "[broker]\n",
            "[broker]\npassword_env = \"FLOORHAND_TEST_UNSET_PW\"\n",
        );
        let c = Config::parse(Path::new("f.toml"), &text).unwrap();
        let e = c
            .broker_settings(Path::new("f.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("FLOORHAND_TEST_UNSET_PW is not set"), "{e}");
    }

    #[test]
    fn the_example_config_parses_and_sets_every_section() {
        let text = include_str!("../../examples/floorhand.toml");
        let c = Config::parse(Path::new("examples/floorhand.toml"), text)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.log.format, LogFormat::Journald);
        assert_eq!(c.database.synchronous, SyncMode::Full);
        assert_eq!(c.broker.username.as_deref(), Some("station-01"));
        // Every key of every section is written out (commented keys are the optional
        // alternatives), so the example documents them all.
        for key in [
            "device",
            "site",
            "[broker]",
            "url",
            "username",
            "password_file",
            "password_env",
            "ca_file",
            "cert_file",
            "key_file",
            "keep_alive_s",
            "connect_timeout_s",
            "[database]",
            "path",
            "synchronous",
            "max_mb",
            "alarm_pct",
            "retention_hours",
            "[sync]",
            "status_interval_s",
            "resend_after_s",
            "max_backoff_s",
            "[log]",
            "format",
        ] {
            assert!(
                text.contains(key),
                "examples/floorhand.toml does not mention {key}"
            );
        }
    }

    #[test]
    fn an_unknown_log_format_is_named() {
        check(
            &format!("{GOOD}[log]\nformat = \"xml\""),
            Err("unknown variant `xml`"),
        );
        let c = Config::parse(Path::new("f.toml"), GOOD).unwrap();
        assert_eq!(c.log.format, LogFormat::Text);
    }
}
