//! The agent's configuration file (TOML). Every key is documented in
//! `examples/floorhand.toml`; unknown keys are errors, and every error names the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::devices::printer::PrinterConfig;
use crate::devices::scale::ScaleConfig;
use crate::devices::scanner::ScannerConfig;
use crate::devices::terminal::TerminalConfig;
use crate::label::{Dpi, Sscc, Template};
use crate::pack::PackConfig;
use crate::pick::PickConfig;
use crate::store::{StoreConfig, Synchronous};
use crate::sync::agent::SyncConfig;
use crate::sync::mqtt::BrokerSettings;

mod devices;

pub use devices::{DeviceSections, Printer, Scale, Scanner, Section, Terminal};

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This device's id: its topic level (the MQTT client id is `site.device`). See [`ID_RULE`].
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
    /// What this device is: a handheld picker or a pack station, and its workflow settings.
    #[serde(default)]
    pub station: Station,
    /// The barcode scanner, if one is attached to the agent's host.
    pub scanner: Option<Scanner>,
    /// The picker's display terminal, if any (else screens go to the log).
    pub terminal: Option<Terminal>,
    /// The label printer (required for a pack station).
    pub printer: Option<Printer>,
    /// A serial shipping scale at a pack station (else the packer types the weight).
    pub scale: Option<Scale>,
    /// Shipping labels (required for a pack station).
    pub label: Option<Label>,
    /// Logging.
    #[serde(default)]
    pub log: Log,
    /// The device sections and the station's settings, worked out (and the label template
    /// parsed) once by [`Config::parse`].
    #[serde(skip)]
    checked: Option<(DeviceSections, StationSettings)>,
}

/// What `floorhand run` takes from the file, worked out once by [`Config::settings`]: each
/// part of the agent gets its own typed settings, so none reads the file's sections again
/// or checks a rule a second time.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This device's id.
    pub device: String,
    /// The site id.
    pub site: String,
    /// The database file.
    pub database: PathBuf,
    /// The store's settings.
    pub store: StoreConfig,
    /// The MQTT link's settings, with the broker's password read.
    pub sync: SyncConfig,
    /// The log format of `[log]`.
    pub log: LogFormat,
    /// The station: its role's workflow settings and its devices.
    pub station: StationSettings,
}

/// What `floorhand doctor` checks, worked out by [`Config::checkup`] from the same parse
/// as [`Settings`]. Not `Settings` itself, for two reasons: the broker's password is read
/// apart (one that cannot be read fails the broker's check, and the other checks still
/// run), and every device section is there, also one the station's role leaves unused
/// (a picker's `[printer]`): the doctor opens every port the file names.
#[derive(Debug)]
pub struct Checkup {
    /// This device's id.
    pub device: String,
    /// The site id.
    pub site: String,
    /// The database file.
    pub database: PathBuf,
    /// The store's settings.
    pub store: StoreConfig,
    /// The broker, with its password read, or why the password could not be read.
    pub broker: Result<BrokerSettings, ConfigError>,
    /// Every device section in the file.
    pub devices: DeviceSections,
}

/// The devices every station may have.
#[derive(Debug, Clone)]
pub struct Devices {
    /// `[scanner]`.
    pub scanner: Option<ScannerConfig>,
    /// `[terminal]`.
    pub terminal: Option<TerminalConfig>,
}

/// The station of `station.role`, with what that role needs.
#[derive(Debug, Clone)]
pub enum StationSettings {
    /// A handheld picker.
    Picker {
        /// The pick workflow's settings.
        pick: PickConfig,
        /// Scanner and terminal.
        devices: Devices,
    },
    /// A pack station: it always has a label printer and label settings.
    Pack {
        /// The pack workflow's settings, with the label template.
        pack: PackConfig,
        /// Badge barcodes' prefix (the packer logs in).
        badge_prefix: String,
        /// `[printer]`.
        printer: PrinterConfig,
        /// `[scale]`, if any.
        scale: Option<ScaleConfig>,
        /// Scanner and terminal.
        devices: Devices,
    },
}

/// `[station]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Station {
    /// `picker` (a handheld) or `pack` (a pack station).
    pub role: Role,
    /// Badge barcodes are this prefix then the operator number, e.g. `OP1234`.
    pub badge_prefix: String,
    /// An identical scan within this many ms is a scanner bounce and is ignored.
    pub bounce_ms: u64,
    /// Pack: empty carton weight in grams.
    pub tare_g: u32,
    /// Pack: allowed weight deviation, percent of the expected weight.
    pub weight_tolerance_pct: u32,
    /// Pack: smallest allowed weight deviation in grams.
    pub weight_tolerance_min_g: u32,
}

impl Default for Station {
    fn default() -> Self {
        let pick = crate::pick::PickConfig::default();
        Station {
            role: Role::Picker,
            badge_prefix: pick.badge_prefix,
            bounce_ms: pick.bounce_ms,
            tare_g: 0,
            weight_tolerance_pct: 10,
            weight_tolerance_min_g: 50,
        }
    }
}

/// `station.role` values.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A handheld: the pick workflow.
    #[default]
    Picker,
    /// A pack station: the pack workflow and a label printer.
    Pack,
}

/// `[label]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Label {
    /// Printer resolution: 203 or 300.
    #[serde(default = "default_dpi")]
    pub dpi: u16,
    /// The site's GS1 company prefix (digits), for SSCCs.
    pub company_prefix: String,
    /// SSCC extension digit, 0-9.
    #[serde(default)]
    pub extension: u8,
    /// A ZPL template file with `{{placeholders}}`; the built-in label if absent.
    pub template: Option<PathBuf>,
}

fn default_dpi() -> u16 {
    203
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

impl Broker {
    /// The broker settings, with the password read from its file or variable.
    pub fn settings(&self, path: &Path) -> Result<BrokerSettings, ConfigError> {
        let b = self;
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
    /// Longest wait, in seconds, between re-sends of unacknowledged events (the first
    /// comes after 2 s without progress, doubling up to this).
    pub resend_after_s: u64,
    /// Longest reconnect delay in seconds.
    pub max_backoff_s: u64,
}

impl Default for Sync {
    fn default() -> Self {
        Sync {
            status_interval_s: 60,
            resend_after_s: 20,
            // A fleet that lost the broker is back within about 5 s of its return, its
            // reconnects spread by jitter (2.5 to 5 s).
            max_backoff_s: 5,
        }
    }
}

/// What a site or device id may hold, for error messages. The rule itself is
/// [`floorhand_protocol::topics::valid_id`].
pub const ID_RULE: &str = "use 1 to 64 of A-Z a-z 0-9 - _ (no `.`: RabbitMQ's MQTT plugin \
     turns a `.` into a topic level of its own)";

/// Fastest baud rate accepted: above what common USB serial adapters (FTDI, CP210x) do.
pub(crate) const MAX_BAUD: u64 = 4_000_000;

/// One number of the file, with the values it may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Number {
    /// The key, e.g. `sync.resend_after_s`.
    pub key: &'static str,
    /// Its value in the file (or its default).
    pub value: u64,
    /// The documented range (`examples/floorhand.toml` says the same next to the key).
    pub range: std::ops::RangeInclusive<u64>,
    /// What it counts, for messages.
    pub unit: &'static str,
}

impl Number {
    fn new(
        key: &'static str,
        value: impl TryInto<u64>,
        range: std::ops::RangeInclusive<u64>,
        unit: &'static str,
    ) -> Number {
        Number {
            key,
            value: value.try_into().unwrap_or(u64::MAX),
            range,
            unit,
        }
    }

    /// The message for a value outside the range: names the range and the unit.
    pub fn out_of_range(&self) -> String {
        format!(
            "{} is out of range: use {} to {} {}",
            self.value,
            self.range.start(),
            self.range.end(),
            self.unit
        )
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
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let bad = |key, why: &str| ConfigError::Value {
            path: path.to_path_buf(),
            key,
            why: why.to_string(),
        };
        for (key, id) in [("device", &cfg.device), ("site", &cfg.site)] {
            if !floorhand_protocol::topics::valid_id(id) {
                return Err(bad(key, &format!("{id:?} is not a valid id: {ID_RULE}")));
            }
        }
        if let Err(e) = crate::sync::mqtt::parse_url(&cfg.broker.url) {
            return Err(bad("broker.url", &e.to_string()));
        }
        for n in cfg.numbers() {
            if !n.range.contains(&n.value) {
                return Err(ConfigError::Value {
                    path: path.to_path_buf(),
                    key: n.key,
                    why: n.out_of_range(),
                });
            }
        }
        if cfg.broker.password_file.is_some() && cfg.broker.password_env.is_some() {
            return Err(bad(
                "broker.password_file",
                "set password_file or password_env, not both",
            ));
        }
        cfg.checked = Some(cfg.check_station(path)?);
        Ok(cfg)
    }

    /// Reads and checks the file, then works out every setting `floorhand run` takes.
    pub fn load_settings(path: &Path) -> Result<Settings, ConfigError> {
        Self::load(path)?.settings(path)
    }

    /// Every setting `floorhand run` takes; reads the broker's password (file or variable),
    /// the one thing not read by [`Config::parse`].
    pub fn settings(&self, path: &Path) -> Result<Settings, ConfigError> {
        let broker = self.broker.settings(path)?;
        let mut sync = SyncConfig::new(&self.device, &self.site, broker);
        sync.status_interval = Duration::from_secs(self.sync.status_interval_s.max(1));
        sync.resend_after = Duration::from_secs(self.sync.resend_after_s.max(1));
        sync.backoff.1 = Duration::from_secs(self.sync.max_backoff_s.max(1));
        let (_, station) = self.checked(path)?;
        Ok(Settings {
            device: self.device.clone(),
            site: self.site.clone(),
            database: self.database.path.clone(),
            store: self.store_config(),
            sync,
            log: self.log.format,
            station,
        })
    }

    /// Reads and checks the file, then works out what `floorhand doctor` checks.
    pub fn load_checkup(path: &Path) -> Result<Checkup, ConfigError> {
        Self::load(path)?.checkup(path)
    }

    /// What `floorhand doctor` checks: the settings `floorhand run` would take, every
    /// device section, and the broker's password read apart.
    pub fn checkup(&self, path: &Path) -> Result<Checkup, ConfigError> {
        let (devices, _) = self.checked(path)?;
        Ok(Checkup {
            device: self.device.clone(),
            site: self.site.clone(),
            database: self.database.path.clone(),
            store: self.store_config(),
            broker: self.broker.settings(path),
            devices,
        })
    }

    /// The device sections and station settings [`Config::parse`] worked out; a `Config`
    /// not made by `parse` (built in code) is checked now.
    fn checked(&self, path: &Path) -> Result<(DeviceSections, StationSettings), ConfigError> {
        match &self.checked {
            Some(c) => Ok(c.clone()),
            None => self.check_station(path),
        }
    }

    /// Every number in the file (optional sections only when present) with its range. The
    /// ranges keep each value where the code using it cannot overflow or misbehave (a
    /// timer past `Instant`'s range, a byte count that wraps to 0, a baud rate no adapter
    /// has) and where a station still works; `examples/floorhand.toml` documents them.
    pub fn numbers(&self) -> Vec<Number> {
        let (b, d, s, st) = (&self.broker, &self.database, &self.sync, &self.station);
        let mut n = vec![
            Number::new("broker.keep_alive_s", b.keep_alive_s, 5..=3600, "seconds"),
            Number::new(
                "broker.connect_timeout_s",
                b.connect_timeout_s,
                1..=300,
                "seconds",
            ),
            Number::new("database.max_mb", d.max_mb, 1..=1_048_576, "MiB"),
            Number::new("database.alarm_pct", d.alarm_pct, 1..=100, "percent"),
            Number::new(
                "database.retention_hours",
                d.retention_hours,
                1..=8760,
                "hours",
            ),
            Number::new(
                "sync.status_interval_s",
                s.status_interval_s,
                1..=86_400,
                "seconds",
            ),
            Number::new("sync.resend_after_s", s.resend_after_s, 1..=3600, "seconds"),
            Number::new("sync.max_backoff_s", s.max_backoff_s, 1..=3600, "seconds"),
            Number::new("station.bounce_ms", st.bounce_ms, 0..=10_000, "ms"),
            Number::new("station.tare_g", st.tare_g, 0..=999_999, "grams"),
            Number::new(
                "station.weight_tolerance_pct",
                st.weight_tolerance_pct,
                0..=100,
                "percent",
            ),
            Number::new(
                "station.weight_tolerance_min_g",
                st.weight_tolerance_min_g,
                0..=999_999,
                "grams",
            ),
        ];
        self.written().numbers(&mut n);
        if let Some(l) = &self.label {
            n.push(Number::new(
                "label.extension",
                l.extension,
                0..=9,
                "(one digit)",
            ));
        }
        self.written().scale_numbers(&mut n);
        n
    }

    /// The device sections as the file has them.
    fn written(&self) -> devices::Written<'_> {
        devices::Written {
            scanner: self.scanner.as_ref(),
            terminal: self.terminal.as_ref(),
            printer: self.printer.as_ref(),
            scale: self.scale.as_ref(),
        }
    }

    /// Checks the station, device and label sections, and works out the device sections'
    /// and the station's settings (the label template is read and parsed here, once).
    fn check_station(&self, path: &Path) -> Result<(DeviceSections, StationSettings), ConfigError> {
        let bad = |key, why: String| ConfigError::Value {
            path: path.to_path_buf(),
            key,
            why,
        };
        if self.station.badge_prefix.is_empty() {
            return Err(bad(
                "station.badge_prefix",
                "must not be empty: set it to what badge barcodes start with, e.g. \"OP\"".into(),
            ));
        }
        if self.scale.is_some() && self.station.role != Role::Pack {
            return Err(bad(
                "scale",
                "only a pack station (station.role = \"pack\") reads a scale: remove \
                 the [scale] section"
                    .into(),
            ));
        }
        let sections = self
            .written()
            .sections()
            .map_err(|(key, why)| bad(key, why))?;
        let mut template = None;
        if let Some(l) = &self.label {
            let Some(dpi) = Dpi::from_number(l.dpi) else {
                return Err(bad("label.dpi", format!("{} is not 203 or 300", l.dpi)));
            };
            if let Err(e) = Sscc::build(l.extension, &l.company_prefix, 0) {
                return Err(bad("label.company_prefix", e.to_string()));
            }
            template = Some(match &l.template {
                Some(t) => self.label_template_at(path, t)?,
                None => crate::label::builtin(dpi),
            });
        }
        let devices = Devices {
            scanner: sections.scanner.as_ref().map(|s| s.settings.clone()),
            terminal: sections.terminal.as_ref().map(|s| s.settings.clone()),
        };
        let station = match self.station.role {
            Role::Picker => StationSettings::Picker {
                pick: PickConfig {
                    badge_prefix: self.station.badge_prefix.clone(),
                    bounce_ms: self.station.bounce_ms,
                },
                devices,
            },
            Role::Pack => {
                let Some(printer) = sections.printer.as_ref().map(|p| p.settings.clone()) else {
                    return Err(bad(
                        "printer",
                        "a pack station (station.role = \"pack\") needs a [printer] section: \
                         its labels print by themselves"
                            .into(),
                    ));
                };
                let (Some(l), Some(template)) = (&self.label, template) else {
                    return Err(bad(
                        "label",
                        "a pack station (station.role = \"pack\") needs a [label] section with \
                         the site's company_prefix"
                            .into(),
                    ));
                };
                StationSettings::Pack {
                    pack: PackConfig {
                        company_prefix: l.company_prefix.clone(),
                        extension: l.extension,
                        tare_g: self.station.tare_g,
                        tolerance_pct: self.station.weight_tolerance_pct,
                        tolerance_min_g: self.station.weight_tolerance_min_g,
                        template,
                    },
                    badge_prefix: self.station.badge_prefix.clone(),
                    printer,
                    scale: sections.scale.as_ref().map(|s| s.settings.clone()),
                    devices,
                }
            }
        };
        Ok((sections, station))
    }

    fn label_template_at(&self, path: &Path, t: &Path) -> Result<Template, ConfigError> {
        let bad = |why: String| ConfigError::Value {
            path: path.to_path_buf(),
            key: "label.template",
            why,
        };
        let src = std::fs::read_to_string(t).map_err(|e| bad(format!("{}: {e}", t.display())))?;
        Template::parse(&src).map_err(|e| bad(format!("{}: {e}", t.display())))
    }

    /// The broker settings, with the password read from its file or variable.
    pub fn broker_settings(&self, path: &Path) -> Result<BrokerSettings, ConfigError> {
        self.broker.settings(path)
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
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::devices::printer::Transport;
    use crate::devices::scanner::Source;

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

    const PACK: &str = r#"
[station]
role = "pack"
[printer]
tcp = "127.0.0.1:9100"
[label]
company_prefix = "0614141"
"#;

    #[test]
    fn device_sections_are_checked_and_name_their_key() {
        check(&format!("{GOOD}{PACK}"), Ok(()));
        check(
            &format!("{GOOD}[station]\nrole = \"pack\"\n[label]\ncompany_prefix = \"0614141\"\n"),
            Err("`printer`: a pack station"),
        );
        check(
            &format!(
                "{GOOD}{}",
                PACK.replace(
                    "tcp = \"127.0.0.1:9100\"",
                    "tcp = \"a:1\"\nserial = \"/dev/x\""
                )
            ),
            Err("`printer.tcp`: set printer.tcp or printer.serial, not both"),
        );
        check(
            &format!("{GOOD}{}", PACK.replace("0614141", "06x")),
            Err("`label.company_prefix`"),
        );
        check(
            &format!("{GOOD}{PACK}dpi = 250\n"),
            Err("`label.dpi`: 250 is not 203 or 300"),
        );
        check(
            &format!("{GOOD}{PACK}speed = 3\n"),
            Err("unknown field `speed`"),
        );
        check(
            &format!("{GOOD}[station]\nrole = \"forklift\"\n"),
            Err("role"),
        );
        check(
            &format!(
                "{GOOD}[scanner]\nsuffix = \"\"\nsource = {{ kind = \"serial\", path = \"/dev/x\" }}\n"
            ),
            Err("`scanner`: scanner suffix is empty"),
        );
        check(
            &format!("{GOOD}[terminal]\nport = \"\"\n"),
            Err("`terminal.port`"),
        );
        check(
            &format!("{GOOD}{PACK}[scale]\nport = \"/dev/ttyUSB2\"\n"),
            Ok(()),
        );
        check(
            &format!("{GOOD}[scale]\nport = \"/dev/ttyUSB2\"\n"),
            Err("`scale`: only a pack station"),
        );
        check(
            &format!("{GOOD}{PACK}[scale]\nport = \"\"\n"),
            Err("`scale.port`: must name a serial port"),
        );
        check(
            &format!("{GOOD}{PACK}[scale]\nport = \"/dev/x\"\nbaud = 0\n"),
            Err("`scale.baud`"),
        );
        check(
            &format!("{GOOD}{PACK}[scale]\nport = \"/dev/x\"\nunit = \"kg\"\n"),
            Err("unknown field `unit`"),
        );
    }

    /// The doctor's view of `text`'s device sections.
    fn sections(text: &str) -> DeviceSections {
        let path = Path::new("f.toml");
        Config::parse(path, text)
            .unwrap_or_else(|e| panic!("{e}"))
            .checkup(path)
            .unwrap()
            .devices
    }

    #[test]
    fn every_device_section_names_its_connection_by_kind_and_older_files_still_load() {
        // One style: the connection is one key named for its kind.
        let new = sections(&format!(
            "{GOOD}{PACK}[scanner]\nserial = \"/dev/s\"\nbaud = 19200\n\
             [terminal]\nserial = \"/dev/t\"\n[scale]\nserial = \"/dev/w\"\n"
        ));
        // The older forms: the scanner's source table, the terminal's and scale's port.
        let old = sections(&format!(
            "{GOOD}{PACK}[scanner]\nsource = {{ kind = \"serial\", path = \"/dev/s\", baud = 19200 }}\n\
             [terminal]\nport = \"/dev/t\"\n[scale]\nport = \"/dev/w\"\n"
        ));
        for (s, keys) in [
            (&new, ["scanner.serial", "terminal.serial", "scale.serial"]),
            (
                &old,
                ["the path in scanner.source", "terminal.port", "scale.port"],
            ),
        ] {
            let (scanner, terminal, scale) = (
                s.scanner.as_ref().unwrap(),
                s.terminal.as_ref().unwrap(),
                s.scale.as_ref().unwrap(),
            );
            assert_eq!(
                scanner.settings,
                ScannerConfig::serial("/dev/s", 19_200),
                "the scanner module's defaults for the rest"
            );
            assert_eq!(terminal.settings.path, "/dev/t");
            assert_eq!(scale.settings.port, Path::new("/dev/w"));
            assert_eq!(
                [scanner.port_key, terminal.port_key, scale.port_key],
                keys,
                "messages name the key the file used"
            );
        }
        // A keyboard wedge ("-": standard input) and an input device.
        let wedge = |line: &str| {
            sections(&format!("{GOOD}[scanner]\n{line}\n"))
                .scanner
                .unwrap()
                .settings
                .source
        };
        assert_eq!(wedge("wedge = \"-\""), Source::Wedge { path: None });
        assert_eq!(
            wedge("wedge = \"/dev/tty2\""),
            Source::Wedge {
                path: Some("/dev/tty2".into())
            }
        );
        assert_eq!(
            wedge("input_device = \"/dev/input/event3\""),
            Source::InputDevice {
                path: "/dev/input/event3".into()
            }
        );
        // None, two, or a form of each: refused, naming the key to fix.
        for (section, want) in [
            (
                "[scanner]\nsuffix = \"\\r\"\n",
                "`scanner`: set one of scanner.serial",
            ),
            (
                "[scanner]\nserial = \"/dev/a\"\nwedge = \"/dev/b\"\n",
                "`scanner.wedge`: set only one of",
            ),
            (
                "[scanner]\nserial = \"/dev/a\"\nsource = { kind = \"wedge\" }\n",
                "`scanner.source`: set only one of",
            ),
            (
                "[scanner]\nwedge = \"/dev/a\"\nbaud = 9600\n",
                "`scanner.baud`: only a serial scanner",
            ),
            (
                "[terminal]\nbaud = 9600\n",
                "`terminal`: set terminal.serial",
            ),
            (
                "[terminal]\nserial = \"/dev/a\"\nport = \"/dev/b\"\n",
                "`terminal.port`: set only one of",
            ),
            (
                "[terminal]\nserial = \"\"\n",
                "`terminal.serial`: must name",
            ),
        ] {
            check(&format!("{GOOD}{section}"), Err(want));
        }
        check(
            &format!("{GOOD}{PACK}[scale]\nbaud = 9600\n"),
            Err("`scale`: set scale.serial"),
        );
        // The older scanner baud is range-checked under its own key.
        check(
            &format!(
                "{GOOD}[scanner]\nsource = {{ kind = \"serial\", path = \"/dev/a\", baud = 0 }}\n"
            ),
            Err("`scanner.source.baud`: 0 is out of range"),
        );
    }

    #[test]
    fn a_bad_label_template_is_refused_at_load_naming_key_and_line() {
        let dir = std::env::temp_dir().join(format!("fh-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = dir.join("label.zpl");
        std::fs::write(
            &t,
            "^XA^CI28\n^FO10,10^FH^FD{{order_id}}^FS\n^FO10,60^FH^FD{{nonsense}}^FS\n^XZ\n",
        )
        .unwrap();
        let text = format!("{GOOD}{PACK}template = {:?}\n", t.display().to_string());
        check(&text, Err("`label.template`"));
        check(&text, Err("line 3"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_pack_stations_settings_hold_its_printer_and_the_template_read_once_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("label.zpl");
        let src = "^XA^CI28\n^FO10,10^FH^FD{{order_id}}^FS\n^XZ\n";
        std::fs::write(&t, src).unwrap();
        let text = format!("{GOOD}{PACK}template = {:?}\n", t.display().to_string());
        let cfg = Config::parse(Path::new("f.toml"), &text).unwrap();
        // Parsed at load: the file is not read again when the settings are worked out.
        std::fs::remove_file(&t).unwrap();
        let settings = cfg.settings(Path::new("f.toml")).unwrap();
        let StationSettings::Pack { pack, printer, .. } = settings.station else {
            panic!("a pack station's settings are Pack: {:?}", settings.station);
        };
        assert_eq!(pack.company_prefix, "0614141");
        assert_eq!(pack.template, Template::parse(src).unwrap());
        assert!(matches!(printer.transport, Transport::Tcp(ref a) if a == "127.0.0.1:9100"));
        assert_eq!(settings.device, "hh-07");
        assert_eq!(settings.sync.device, "hh-07");
    }

    #[test]
    fn a_pickers_settings_hold_its_workflow_settings_and_no_printer() {
        let cfg = Config::parse(Path::new("f.toml"), GOOD).unwrap();
        let settings = cfg.settings(Path::new("f.toml")).unwrap();
        let StationSettings::Picker { pick, devices } = settings.station else {
            panic!("the default role is a picker: {:?}", settings.station);
        };
        assert_eq!(pick.badge_prefix, cfg.station.badge_prefix);
        assert!(devices.scanner.is_none() && devices.terminal.is_none());
    }

    #[test]
    fn the_doctors_checkup_holds_every_device_section_and_keeps_an_unreadable_password_apart() {
        let text = format!(
            "{}[printer]\nserial = \"/dev/x\"\n[terminal]\nport = \"/dev/y\"\n",
            GOOD.replace(
                "[broker]\n",
                "[broker]\npassword_env = \"FLOORHAND_TEST_UNSET_PW\"\n",
            )
        );
        let path = Path::new("f.toml");
        let cfg = Config::parse(path, &text).unwrap();
        // `floorhand run` cannot start without the password; the doctor still checks the rest.
        assert!(cfg.settings(path).is_err());
        let c = cfg.checkup(path).unwrap();
        let e = c.broker.unwrap_err().to_string();
        assert!(e.contains("`broker.password_env`"), "{e}");
        assert_eq!(c.database, Path::new("/var/lib/floorhand/floorhand.db"));
        assert_eq!(c.store.max_bytes, cfg.database.max_mb * 1024 * 1024);
        // A picker leaves its [printer] unused; the doctor opens it all the same.
        let printer = c.devices.printer.expect("the printer section");
        assert_eq!(printer.port_key, "printer.serial");
        let terminal = c.devices.terminal.expect("the terminal section");
        assert_eq!(
            (terminal.settings.path.as_str(), terminal.port_key),
            ("/dev/y", "terminal.port")
        );
        assert!(c.devices.scanner.is_none() && c.devices.scale.is_none());
    }

    #[test]
    fn the_example_configs_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        for name in ["handheld.toml", "pack-station.toml"] {
            let path = root.join(name);
            let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                c.station.role == Role::Pack,
                name.starts_with("pack"),
                "{name}"
            );
            assert!(c.scanner.is_some(), "{name} shows the scanner section");
            assert_eq!(
                c.scale.is_some(),
                name.starts_with("pack"),
                "{name} shows the scale section"
            );
        }
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

    /// `examples/floorhand.toml` with its commented-out settings switched on: a `# key =`
    /// or `# [section]` line loses its `# ` (prose comments stay) unless it starts with
    /// one of `keep` (the alternatives of another variant). `edit` then rewrites lines.
    fn example_with(keep: &[&str], edit: &[(&str, &str)]) -> String {
        let text = include_str!("../../../examples/floorhand.toml");
        let is_setting = |l: &str| {
            let l = l.trim();
            (l.starts_with('[') && l.ends_with(']'))
                || l.split_once(" = ").is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                })
        };
        // `keep` entries are line starts, anywhere or (`section/start`) in one section.
        let kept = |section: &str, rest: &str| {
            keep.iter().any(|k| match k.split_once('/') {
                Some((s, start)) => s == section && rest.starts_with(start),
                None => rest.starts_with(k),
            })
        };
        let mut section = String::new();
        let mut out = String::new();
        for line in text.lines() {
            let bare = line.strip_prefix("# ").unwrap_or(line).trim();
            if bare.starts_with('[') && bare.ends_with(']') {
                section = bare.trim_matches(['[', ']']).to_string();
            }
            let line = match line.strip_prefix("# ") {
                Some(rest) if is_setting(rest) && !kept(&section, rest) => rest,
                _ => line,
            };
            let line = edit
                .iter()
                .find(|(from, _)| line.starts_with(from))
                .map_or(line, |(_, to)| to);
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    /// serde's own list of a struct's fields or an enum's variants: a derived
    /// `Deserialize` hands it to `deserialize_struct` or `deserialize_enum`, where this
    /// deserializer keeps it (and stops).
    struct Names(Option<&'static [&'static str]>);

    impl<'de> serde::Deserializer<'de> for &mut Names {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct or an enum"))
        }

        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = Some(fields);
            Err(serde::de::Error::custom("names read"))
        }

        fn deserialize_enum<V: serde::de::Visitor<'de>>(
            self,
            name: &'static str,
            variants: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Self::Error> {
            self.deserialize_struct(name, variants, visitor)
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            identifier ignored_any
        }
    }

    /// The fields of struct `T` or the variants of enum `T`, as serde names them.
    pub(crate) fn serde_names<T: serde::de::DeserializeOwned>() -> Vec<String> {
        let mut n = Names(None);
        let _ = T::deserialize(&mut n);
        n.0.expect("a struct or an enum")
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn fields<T: serde::de::DeserializeOwned>() -> std::collections::BTreeSet<String> {
        serde_names::<T>().into_iter().collect()
    }

    #[test]
    fn the_example_config_with_its_commented_settings_on_parses_and_names_every_key() {
        use crate::devices::scanner::Source;
        use std::collections::{BTreeMap, BTreeSet};
        // A pack station with every setting on, and the alternatives each in a variant of
        // their own: another scanner source, another printer port, the other password.
        let variants = [
            example_with(
                &[
                    "password_env",
                    "scanner/wedge = ",
                    "scanner/input_device = ",
                    "printer/serial = ",
                    "template = ",
                ],
                &[("role = ", "role = \"pack\"")],
            ),
            example_with(
                &[
                    "scanner/serial = ",
                    "scanner/baud = ",
                    "scanner/input_device = ",
                    "tcp = ",
                    "template = ",
                ],
                &[
                    ("role = ", "role = \"pack\""),
                    ("password_file = ", "# (password_env instead)"),
                ],
            ),
            example_with(
                &[
                    "password_env",
                    "scanner/serial = ",
                    "scanner/baud = ",
                    "scanner/wedge = ",
                    "printer/serial = ",
                    "template = ",
                ],
                &[("role = ", "role = \"pack\"")],
            ),
        ];
        // Every key written in any variant, per section ("" for the top level).
        let mut written: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut kinds = BTreeSet::new();
        for (i, text) in variants.iter().enumerate() {
            let c = Config::parse(Path::new("examples/floorhand.toml"), text)
                .unwrap_or_else(|e| panic!("variant {i}: {e}\n{text}"));
            assert_eq!(c.database.synchronous, SyncMode::Full);
            let checkup = c.checkup(Path::new("examples/floorhand.toml")).unwrap();
            if let Some(s) = &checkup.devices.scanner {
                // No wildcard: a new kind of source must be added to the example too.
                kinds.insert(match s.settings.source {
                    Source::Serial { .. } => "serial",
                    Source::Wedge { .. } => "wedge",
                    Source::InputDevice { .. } => "input_device",
                });
            }
            let table: toml::Table = text.parse().unwrap();
            for (key, value) in &table {
                written
                    .entry(String::new())
                    .or_default()
                    .insert(key.clone());
                if let toml::Value::Table(t) = value {
                    let keys = written.entry(key.clone()).or_default();
                    keys.extend(t.keys().cloned());
                }
            }
        }
        assert_eq!(
            kinds,
            BTreeSet::from(["serial", "wedge", "input_device"]),
            "every scanner source kind is shown"
        );
        // The template line is left out above (the file does not exist here); it is there.
        assert!(
            include_str!("../../../examples/floorhand.toml").contains("\n# template = \""),
            "label.template is documented"
        );
        written
            .entry("label".into())
            .or_default()
            .insert("template".into());
        let expected: BTreeMap<String, BTreeSet<String>> = [
            ("", fields::<Config>()),
            ("broker", fields::<Broker>()),
            ("database", fields::<Database>()),
            ("sync", fields::<Sync>()),
            ("station", fields::<Station>()),
            ("scanner", without(fields::<Scanner>(), "source")),
            ("terminal", without(fields::<Terminal>(), "port")),
            ("printer", fields::<Printer>()),
            ("scale", without(fields::<Scale>(), "port")),
            ("label", fields::<Label>()),
            ("log", fields::<Log>()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(
            written, expected,
            "keys in the example vs keys the agent reads"
        );
        // The older keys still load; the example says so in its prose, not as settings.
        let example = include_str!("../../../examples/floorhand.toml");
        assert!(example.contains("source = { kind = \"serial\", path ="));
        assert_eq!(example.matches("older name, port, still loads").count(), 2);
    }

    /// `keys` without `key`: a key the agent reads but the example shows only in prose.
    fn without(
        mut keys: std::collections::BTreeSet<String>,
        key: &str,
    ) -> std::collections::BTreeSet<String> {
        assert!(keys.remove(key), "{key} is a key");
        keys
    }

    /// A pack station with every section and every number written out.
    const FULL: &str = r#"
device = "pack-01"
site = "hamburg"
[broker]
url = "mqtt://127.0.0.1:1883"
keep_alive_s = 15
connect_timeout_s = 5
[database]
path = "/var/lib/floorhand/floorhand.db"
max_mb = 256
alarm_pct = 80
retention_hours = 168
[sync]
status_interval_s = 60
resend_after_s = 20
max_backoff_s = 30
[station]
role = "pack"
bounce_ms = 300
tare_g = 0
weight_tolerance_pct = 10
weight_tolerance_min_g = 50
[scanner]
serial = "/dev/x"
baud = 9600
max_len = 128
bounce_ms = 0
reopen_ms = 1000
[printer]
tcp = "127.0.0.1:9100"
baud = 9600
timeout_ms = 2000
retry_ms = 2000
[terminal]
serial = "/dev/y"
baud = 115200
[label]
company_prefix = "0614141"
extension = 0
[scale]
serial = "/dev/z"
baud = 9600
reopen_ms = 1000
"#;

    /// `text` with `key` (`section.name`, or `scanner.source.baud`) set to `value`: the
    /// first `name = ` after the section's header.
    fn set(text: &str, key: &str, value: &str) -> String {
        let (section, rest) = key.split_once('.').unwrap();
        let name = rest.rsplit('.').next().unwrap();
        let start = text
            .find(&format!("[{section}]\n"))
            .unwrap_or_else(|| panic!("no [{section}] in the test config"));
        let at = start
            + text[start..]
                .find(&format!("{name} = "))
                .unwrap_or_else(|| panic!("no {key} in the test config"))
            + name.len()
            + 3;
        let end = at + text[at..].find(['\n', ' ', ','].as_slice()).unwrap();
        format!("{}{value}{}", &text[..at], &text[end..])
    }

    #[test]
    fn every_number_out_of_its_range_is_refused_naming_the_key_and_the_range() {
        check(FULL, Ok(()));
        let huge = "9223372036854775807";
        // (key, a value outside its range): every number of the file, each end.
        let bad = [
            ("broker.keep_alive_s", "4"),
            ("broker.keep_alive_s", huge),
            ("broker.connect_timeout_s", "0"),
            ("broker.connect_timeout_s", huge),
            ("database.max_mb", "0"),
            ("database.max_mb", "17592186044416"),
            ("database.alarm_pct", "0"),
            ("database.alarm_pct", "101"),
            ("database.retention_hours", "0"),
            ("database.retention_hours", huge),
            ("sync.status_interval_s", "0"),
            ("sync.status_interval_s", huge),
            ("sync.resend_after_s", "0"),
            ("sync.resend_after_s", huge),
            ("sync.max_backoff_s", "0"),
            ("sync.max_backoff_s", huge),
            ("station.bounce_ms", huge),
            ("station.tare_g", "1000000"),
            ("station.weight_tolerance_pct", "101"),
            ("station.weight_tolerance_min_g", "4294967295"),
            ("scanner.baud", "0"),
            ("scanner.baud", "4294967295"),
            ("scanner.max_len", "0"),
            ("scanner.max_len", "129"),
            ("scanner.bounce_ms", huge),
            ("scanner.reopen_ms", "0"),
            ("scanner.reopen_ms", huge),
            ("printer.baud", "4294967295"),
            ("printer.timeout_ms", "0"),
            ("printer.timeout_ms", huge),
            ("printer.retry_ms", "0"),
            ("printer.retry_ms", huge),
            ("terminal.baud", "0"),
            ("terminal.baud", "4294967295"),
            ("label.extension", "10"),
            ("scale.baud", "0"),
            ("scale.baud", "4294967295"),
            ("scale.reopen_ms", "0"),
            ("scale.reopen_ms", huge),
        ];
        let full = Config::parse(Path::new("f.toml"), FULL).unwrap();
        for n in full.numbers() {
            assert!(
                bad.iter().any(|(k, _)| *k == n.key),
                "{} has no out-of-range case here",
                n.key
            );
            let range = format!("use {} to {} ", n.range.start(), n.range.end());
            for (_, value) in bad.iter().filter(|(k, _)| *k == n.key) {
                let text = set(FULL, n.key, value);
                check(
                    &text,
                    Err(&format!("`{}`: {value} is out of range: {range}", n.key)),
                );
            }
            // Both ends of the range are accepted.
            for end in [n.range.start(), n.range.end()] {
                check(&set(FULL, n.key, &end.to_string()), Ok(()));
            }
        }
    }

    #[test]
    fn the_example_documents_the_range_of_every_number_next_to_its_key() {
        let text = include_str!("../../../examples/floorhand.toml");
        let full = Config::parse(Path::new("f.toml"), FULL).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for n in full.numbers() {
            let (section, name) = n.key.split_once('.').unwrap();
            let name = name.rsplit('.').next().unwrap();
            let header = lines
                .iter()
                .position(|l| l.trim_start_matches("# ") == format!("[{section}]"))
                .unwrap_or_else(|| panic!("examples/floorhand.toml has no [{section}]"));
            let at = header
                + lines[header..]
                    .iter()
                    .position(|l| l.contains(&format!("{name} = ")))
                    .unwrap_or_else(|| panic!("examples/floorhand.toml has no {}", n.key));
            // The key's line and the comment block right above it.
            let mut doc = lines[at].to_string();
            for l in lines[header + 1..at].iter().rev() {
                if !l.starts_with('#') || l.contains(" = ") {
                    break;
                }
                doc += l;
            }
            let range = format!("{} to {}", n.range.start(), n.range.end());
            assert!(
                doc.contains(&range),
                "examples/floorhand.toml does not say {range} next to {}: {doc:?}",
                n.key
            );
        }
    }

    #[test]
    fn ids_outside_the_allowed_characters_are_refused_naming_the_key() {
        let check_id = |key: &str, id: &str, ok: bool| {
            let text = GOOD
                .replace(
                    "\"hh-07\"",
                    &format!("{:?}", if key == "device" { id } else { "hh-07" }),
                )
                .replace(
                    "\"hamburg\"",
                    &format!("{:?}", if key == "site" { id } else { "hamburg" }),
                );
            if ok {
                check(&text, Ok(()));
            } else {
                check(
                    &text,
                    Err(&format!("`{key}`: {id:?} is not a valid id: {ID_RULE}")),
                );
            }
        };
        for key in ["device", "site"] {
            check_id(key, "hh-07_B9", true);
            check_id(key, &"a".repeat(64), true);
            check_id(key, &"a".repeat(65), false);
            check_id(key, "", false);
            check_id(key, "hh/07", false);
            check_id(key, "hh+", false);
            check_id(key, "hh 07", false);
            check_id(key, "hé", false);
        }
    }

    #[test]
    fn an_id_with_a_dot_is_refused_as_rabbitmq_would_split_it_into_topic_levels() {
        // Passes once `topics::valid_id` drops `.` (the protocol's side of this rule).
        for key in ["device", "site"] {
            let text = GOOD.replace(if key == "device" { "hh-07" } else { "hamburg" }, "hh.07");
            check(
                &text,
                Err(&format!("`{key}`: \"hh.07\" is not a valid id: {ID_RULE}")),
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
