//! `floorhand bridge`'s configuration file (TOML). Every key is documented, with its range,
//! in `examples/bridge.toml`; unknown keys are errors naming the key. With no file, every
//! default applies: SQLite `./floorhand-bridge.db`, the broker at `mqtt://127.0.0.1:1883`,
//! HTTP on `127.0.0.1:8080`, the token in `./floorhand-bridge.token`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{Broker, ConfigError, ID_RULE, Number};
use crate::sync::mqtt::BrokerSettings;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// Where the bridge keeps its durable state.
    #[serde(default)]
    pub store: Store,
    /// The MQTT broker (the same keys as the agent's `[broker]`); the default is plain
    /// MQTT on 127.0.0.1:1883.
    pub broker: Option<Broker>,
    /// How the bridge appears on the broker.
    #[serde(default)]
    pub mqtt: Mqtt,
    /// The HTTP API.
    #[serde(default)]
    pub http: Http,
    /// The floor view's thresholds (`GET /`).
    #[serde(default)]
    pub floor: Floor,
}

/// `[floor]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Floor {
    /// Seconds offline before a device turns red.
    pub offline_red_s: u64,
    /// Age in seconds of a device's oldest unacknowledged event that turns it red.
    pub backlog_red_s: u64,
    /// Seconds before a wave's cutoff when open tasks turn it red.
    pub cutoff_risk_s: u64,
    /// Hours counted as the shift (picks per hour, orders packed, labels).
    pub shift_hours: u64,
}

impl Default for Floor {
    fn default() -> Self {
        let d = super::floor::FloorSettings::default();
        Floor {
            offline_red_s: d.offline_red_s,
            backlog_red_s: d.backlog_red_s,
            cutoff_risk_s: d.cutoff_risk_s,
            shift_hours: d.shift_s / 3600,
        }
    }
}

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Store {
    /// `sqlite` or `postgres`.
    pub backend: Backend,
    /// The SQLite file.
    pub path: PathBuf,
    /// PostgreSQL: `postgres://user@host:port/db` (or the key=value form).
    pub url: Option<String>,
    /// PostgreSQL: a file whose first line is the password.
    pub password_file: Option<PathBuf>,
    /// PostgreSQL: connections in the pool.
    pub pool_size: u64,
    /// PostgreSQL over TLS: the CA that signed the server's certificate.
    pub ca_file: Option<PathBuf>,
    /// PostgreSQL over TLS: a client certificate, if the server asks for one.
    pub cert_file: Option<PathBuf>,
    /// PostgreSQL over TLS: the client certificate's key.
    pub key_file: Option<PathBuf>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            backend: Backend::Sqlite,
            path: PathBuf::from("floorhand-bridge.db"),
            url: None,
            password_file: None,
            pool_size: 4,
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }
}

/// Store backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One SQLite file, nothing to install.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// Where the store is, checked.
#[derive(Clone)]
pub enum StoreSpec {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres {
        /// Connection URL.
        url: String,
        /// Password from `password_file`.
        password: Option<String>,
        /// Pool size.
        pool_size: usize,
        /// TLS to the server (`ca_file`), or plain.
        tls: Option<Arc<rustls::ClientConfig>>,
    },
}

impl std::fmt::Debug for StoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreSpec::Sqlite(p) => write!(f, "sqlite {}", p.display()),
            // The URL may hold a password: only its host part is shown.
            StoreSpec::Postgres { url, tls, .. } => {
                let tls = if tls.is_some() { " (TLS)" } else { "" };
                write!(f, "postgres {}{tls}", url.rsplit('@').next().unwrap_or(""))
            }
        }
    }
}

/// `[mqtt]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mqtt {
    /// MQTT client id; the broker keeps its session (events queue while the bridge is
    /// down), so two bridges must not share one.
    pub client_id: String,
    /// The site served, or `+` for every site.
    pub site: String,
    /// Several bridges on one PostgreSQL store: the MQTT shared subscription group they
    /// receive through (each message reaches one of them). Unset: this bridge alone.
    pub shared_group: Option<String>,
}

impl Default for Mqtt {
    fn default() -> Self {
        Mqtt {
            client_id: "floorhand-bridge".into(),
            site: "+".into(),
            shared_group: None,
        }
    }
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Address and port to listen on.
    pub listen: String,
    /// File holding the bearer token (first line); made with a random token at the first
    /// start when missing.
    pub token_file: PathBuf,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: u64,
    /// Longest `wait` a long poll may ask for, in seconds.
    pub max_wait_s: u64,
    /// Most events one `GET /v1/events` returns (and the default `limit`).
    pub max_events: u64,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: "127.0.0.1:8080".into(),
            token_file: PathBuf::from("floorhand-bridge.token"),
            max_body_bytes: 16 * 1024 * 1024,
            max_wait_s: 60,
            max_events: 1000,
        }
    }
}

/// The checked configuration, paths resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The store.
    pub store: StoreSpec,
    /// Broker connection.
    pub broker: BrokerSettings,
    /// MQTT client id.
    pub client_id: String,
    /// Site served (`+`: all).
    pub site: String,
    /// The shared subscription group, when several bridges share the store.
    pub shared_group: Option<String>,
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Token file.
    pub token_file: PathBuf,
    /// Request body limit.
    pub max_body_bytes: usize,
    /// Longest long poll.
    pub max_wait: Duration,
    /// Largest page of events.
    pub max_events: usize,
    /// The floor view's thresholds.
    pub floor: super::floor::FloorSettings,
}

const DEFAULT_BROKER: &str = "mqtt://127.0.0.1:1883";

impl BridgeConfig {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)?.settings(Some(path))
    }

    /// Parses `text` (read from `path`, for messages).
    pub fn parse(path: &Path, text: &str) -> Result<BridgeConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// Every number of the file with its range (`examples/bridge.toml` says the same).
    pub fn numbers(&self) -> Vec<Number> {
        let h = &self.http;
        let n = |key, value: u64, range, unit| Number {
            key,
            value,
            range,
            unit,
        };
        let mut v = vec![
            // At least 1 KiB (a small message); at most 64 MiB, well over the JSON of the
            // largest message the protocol allows (2 MiB of postcard).
            n(
                "http.max_body_bytes",
                h.max_body_bytes,
                1024..=64 << 20,
                "bytes",
            ),
            n("http.max_wait_s", h.max_wait_s, 0..=300, "seconds"),
            n("http.max_events", h.max_events, 1..=10_000, "events"),
            n(
                "store.pool_size",
                self.store.pool_size,
                1..=64,
                "connections",
            ),
        ];
        let f = &self.floor;
        v.extend([
            n(
                "floor.offline_red_s",
                f.offline_red_s,
                10..=86_400,
                "seconds",
            ),
            n(
                "floor.backlog_red_s",
                f.backlog_red_s,
                10..=86_400,
                "seconds",
            ),
            n(
                "floor.cutoff_risk_s",
                f.cutoff_risk_s,
                0..=86_400,
                "seconds",
            ),
            n("floor.shift_hours", f.shift_hours, 1..=24, "hours"),
        ]);
        if let Some(b) = &self.broker {
            v.push(n(
                "broker.keep_alive_s",
                b.keep_alive_s,
                5..=3600,
                "seconds",
            ));
            v.push(n(
                "broker.connect_timeout_s",
                b.connect_timeout_s,
                1..=300,
                "seconds",
            ));
        }
        v
    }

    /// Checks the values and resolves paths: relative paths in a file are relative to
    /// the file's directory; without a file, to the working directory.
    pub fn settings(&self, path: Option<&Path>) -> Result<Settings, ConfigError> {
        let file = path.unwrap_or(Path::new("(defaults)")).to_path_buf();
        let bad = |key, why: String| ConfigError::Value {
            path: file.clone(),
            key,
            why,
        };
        for n in self.numbers() {
            if !n.range.contains(&n.value) {
                return Err(bad(n.key, n.out_of_range()));
            }
        }
        let base = path
            .and_then(Path::parent)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let m = &self.mqtt;
        if m.site != "+" && !floorhand_protocol::topics::valid_id(&m.site) {
            return Err(bad(
                "mqtt.site",
                format!("{:?} is not a valid site id: {ID_RULE}, or `+`", m.site),
            ));
        }
        if m.client_id.is_empty() || m.client_id.len() > 64 {
            return Err(bad(
                "mqtt.client_id",
                "use 1 to 64 characters, unique per bridge".into(),
            ));
        }
        let broker = match &self.broker {
            Some(b) => {
                if let Err(e) = crate::sync::mqtt::parse_url(&b.url) {
                    return Err(bad("broker.url", e.to_string()));
                }
                if b.password_file.is_some() && b.password_env.is_some() {
                    return Err(bad(
                        "broker.password_file",
                        "set password_file or password_env, not both".into(),
                    ));
                }
                let mut b = b.clone();
                for f in [
                    &mut b.password_file,
                    &mut b.ca_file,
                    &mut b.cert_file,
                    &mut b.key_file,
                ]
                .into_iter()
                .flatten()
                {
                    *f = resolve(f);
                }
                b.settings(&file)?
            }
            None => BrokerSettings::plain(DEFAULT_BROKER),
        };
        let listen = self.http.listen.parse().map_err(|e| {
            bad(
                "http.listen",
                format!("{:?}: {e} (use ADDRESS:PORT)", self.http.listen),
            )
        })?;
        let st = &self.store;
        let store = match st.backend {
            Backend::Sqlite => {
                if st.ca_file.is_some() || st.cert_file.is_some() || st.key_file.is_some() {
                    return Err(bad(
                        "store.ca_file",
                        "TLS files are for backend = \"postgres\"; a SQLite file needs none".into(),
                    ));
                }
                StoreSpec::Sqlite(resolve(&st.path))
            }
            Backend::Postgres => {
                let url = self.store.url.clone().ok_or_else(|| {
                    bad(
                        "store.url",
                        "backend \"postgres\" needs url = \"postgres://user@host:5432/db\"".into(),
                    )
                })?;
                let parsed = url
                    .parse::<tokio_postgres::Config>()
                    .map_err(|e| bad("store.url", e.to_string()))?;
                let tls = match &st.ca_file {
                    Some(ca) => {
                        let (cert, key) = (st.cert_file.as_deref(), st.key_file.as_deref());
                        let (cert, key) = (cert.map(resolve), key.map(resolve));
                        let tls = crate::sync::mqtt::rustls_config(
                            &resolve(ca),
                            cert.as_deref(),
                            key.as_deref(),
                        )
                        .map_err(|e| {
                            use crate::sync::mqtt::SettingsError::{Tls, TlsFile};
                            let key = match &e {
                                TlsFile {
                                    what: "cert_file", ..
                                }
                                | Tls(_) => "store.cert_file",
                                TlsFile {
                                    what: "key_file", ..
                                } => "store.key_file",
                                _ => "store.ca_file",
                            };
                            bad(key, e.to_string())
                        })?;
                        Some(Arc::new(tls))
                    }
                    None if st.cert_file.is_some() || st.key_file.is_some() => {
                        return Err(bad(
                            "store.cert_file",
                            "a client certificate needs TLS: set store.ca_file too".into(),
                        ));
                    }
                    None => {
                        if parsed.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
                            return Err(bad(
                                "store.ca_file",
                                "the url asks for sslmode=require: set ca_file to the CA that \
                                 signed the server's certificate, so it can be checked"
                                    .into(),
                            ));
                        }
                        None
                    }
                };
                let password = match &self.store.password_file {
                    Some(f) => {
                        let f = resolve(f);
                        let text = std::fs::read_to_string(&f).map_err(|e| {
                            bad("store.password_file", format!("{}: {e}", f.display()))
                        })?;
                        Some(text.lines().next().unwrap_or("").to_string())
                    }
                    None => None,
                };
                StoreSpec::Postgres {
                    url,
                    password,
                    pool_size: st.pool_size as usize,
                    tls,
                }
            }
        };
        if let Some(g) = &m.shared_group {
            if !floorhand_protocol::topics::valid_id(g) {
                return Err(bad(
                    "mqtt.shared_group",
                    format!("{g:?} is not a valid group name: {ID_RULE}"),
                ));
            }
            if !matches!(store, StoreSpec::Postgres { .. }) {
                return Err(bad(
                    "mqtt.shared_group",
                    "several bridges share one PostgreSQL store: set [store] backend = \"postgres\"".into(),
                ));
            }
        }
        Ok(Settings {
            store,
            shared_group: m.shared_group.clone(),
            broker,
            client_id: m.client_id.clone(),
            site: m.site.clone(),
            listen,
            token_file: resolve(&self.http.token_file),
            max_body_bytes: self.http.max_body_bytes as usize,
            max_wait: Duration::from_secs(self.http.max_wait_s),
            max_events: self.http.max_events as usize,
            floor: super::floor::FloorSettings {
                offline_red_s: self.floor.offline_red_s,
                backlog_red_s: self.floor.backlog_red_s,
                cutoff_risk_s: self.floor.cutoff_risk_s,
                shift_s: self.floor.shift_hours * 3600,
                ..super::floor::FloorSettings::default()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Settings, String> {
        let path = Path::new("/etc/floorhand/bridge.toml");
        BridgeConfig::parse(path, text)
            .and_then(|c| c.settings(Some(path)))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_example_file_parses_and_documents_every_key_with_its_range() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bridge.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let cfg = BridgeConfig::parse(&path, &text).unwrap();
        let s = cfg.settings(Some(&path)).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        for n in cfg.numbers() {
            let key = n.key.rsplit('.').next().unwrap();
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("{key} =")))
                .unwrap_or_else(|| panic!("{key} is not in the example"));
            let range = format!("{} to {}", n.range.start(), n.range.end());
            let doc = text.split(line).next().unwrap();
            let doc = doc.lines().last().unwrap_or("");
            assert!(
                doc.contains(&range),
                "{key}: the line above must say {range}"
            );
        }
    }

    #[test]
    fn the_packaged_config_keeps_the_store_and_token_in_the_service_s_state_directory() {
        // packaging/bridge/bridge.toml, installed as /etc/floorhand-bridge/bridge.toml: the
        // unit's ProtectSystem=strict leaves only /var/lib/floorhand-bridge writable.
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/bridge/bridge.toml");
        let s = BridgeConfig::load(&path).unwrap();
        let state = Path::new("/var/lib/floorhand-bridge");
        assert!(matches!(&s.store, StoreSpec::Sqlite(p) if p.parent() == Some(state)));
        assert_eq!(s.token_file.parent(), Some(state));
        let defaults = BridgeConfig::default().settings(None).unwrap();
        assert_eq!(s.listen, defaults.listen);
        assert_eq!(s.broker.url, defaults.broker.url);
    }

    #[test]
    fn no_file_means_the_embedded_defaults() {
        let s = BridgeConfig::default().settings(None).unwrap();
        assert!(
            matches!(&s.store, StoreSpec::Sqlite(p) if p == Path::new("./floorhand-bridge.db"))
        );
        assert_eq!(s.token_file, Path::new("./floorhand-bridge.token"));
        assert_eq!(s.broker.url, "mqtt://127.0.0.1:1883");
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(
            (s.site.as_str(), s.client_id.as_str()),
            ("+", "floorhand-bridge")
        );
    }

    #[test]
    fn relative_paths_are_relative_to_the_file() {
        let s = check("[store]\npath = \"b.db\"\n[http]\ntoken_file = \"/run/t\"\n").unwrap();
        assert!(matches!(&s.store, StoreSpec::Sqlite(p) if p == Path::new("/etc/floorhand/b.db")));
        assert_eq!(s.token_file, Path::new("/run/t"));
    }

    #[test]
    fn every_error_names_its_key() {
        for (text, key) in [
            ("[http]\nlisten_on = \"x\"\n", "listen_on"),
            ("colour = 1\n", "colour"),
            ("[store]\nbackend = \"oracle\"\n", "oracle"),
            ("[http]\nmax_body_bytes = 10\n", "http.max_body_bytes"),
            ("[http]\nmax_wait_s = 301\n", "http.max_wait_s"),
            ("[http]\nmax_events = 0\n", "http.max_events"),
            ("[http]\nlisten = \"localhost\"\n", "http.listen"),
            ("[mqtt]\nsite = \"ham.burg\"\n", "mqtt.site"),
            ("[store]\nbackend = \"postgres\"\n", "store.url"),
            (
                "[store]\nbackend = \"postgres\"\nurl = \"x://\"\n",
                "store.url",
            ),
            ("[store]\npool_size = 0\n", "store.pool_size"),
            ("[mqtt]\nshared_group = \"g\"\n", "mqtt.shared_group"),
            (
                "[store]\nbackend = \"postgres\"\nurl = \"postgres://h/db\"\n[mqtt]\nshared_group = \"a/b\"\n",
                "mqtt.shared_group",
            ),
            (
                "[store]\nbackend = \"postgres\"\nurl = \"postgres://h/db\"\npassword_file = \"/nonexistent/pw\"\n",
                "store.password_file",
            ),
            (
                "[store]\nbackend = \"postgres\"\nurl = \"postgres://h/db?sslmode=require\"\n",
                "store.ca_file",
            ),
            (
                "[store]\nbackend = \"postgres\"\nurl = \"postgres://h/db\"\nca_file = \"/nonexistent/ca.pem\"\n",
                "store.ca_file",
            ),
            (
                "[store]\nbackend = \"postgres\"\nurl = \"postgres://h/db\"\ncert_file = \"c.pem\"\nkey_file = \"c.key\"\n",
                "store.cert_file",
            ),
            ("[store]\nca_file = \"ca.pem\"\n", "store.ca_file"),
            ("[mqtt]\nclient_id = \"\"\n", "mqtt.client_id"),
            ("[broker]\nurl = \"http://x\"\n", "broker.url"),
            (
                "[broker]\nurl = \"mqtt://x\"\nkeep_alive_s = 1\n",
                "broker.keep_alive_s",
            ),
        ] {
            let e = check(text).unwrap_err();
            assert!(e.contains(key), "{text:?}: {e}");
        }
    }
}
