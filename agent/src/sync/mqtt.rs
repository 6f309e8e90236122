//! Building rumqttc options from Floorhand's broker settings: URL, credentials, TLS,
//! limits. Pure apart from reading the TLS and password files it is pointed at.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use floorhand_protocol::limits::{MAX_DOWN_BYTES, MAX_UP_BYTES};
use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where and how to reach the broker. Its `Debug` shows the password as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerSettings {
    /// `mqtt://host:port` or `mqtts://host:port` (TLS).
    pub url: String,
    /// Username, if the broker wants one.
    pub username: Option<String>,
    /// Password (already read from its file or environment variable). Never logged.
    pub password: Option<String>,
    /// CA certificate(s) (PEM) that signed the broker's certificate; with `mqtts://` and
    /// no CA file, the connection is refused rather than trusting anything.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for brokers that require one.
    pub cert_file: Option<PathBuf>,
    /// Private key (PEM) of the client certificate.
    pub key_file: Option<PathBuf>,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// How long one connection attempt (TCP, TLS and CONNACK) may take.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for BrokerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerSettings")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("keep_alive", &self.keep_alive)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl BrokerSettings {
    /// Plain MQTT on `url`, no credentials: for tests and the demo.
    pub fn plain(url: impl Into<String>) -> Self {
        BrokerSettings {
            url: url.into(),
            username: None,
            password: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            keep_alive: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A broker URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Whether to speak TLS.
    pub tls: bool,
}

/// Why the broker settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The URL is not `mqtt://host[:port]` or `mqtts://host[:port]`.
    #[error("broker url {url:?}: {why} (expected mqtt://host:1883 or mqtts://host:8883)")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A TLS file could not be read or parsed.
    #[error("{what} {path}: {why}")]
    TlsFile {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// The TLS settings do not fit together.
    #[error("TLS settings: {0}")]
    Tls(String),
}

/// Parses `mqtt://host[:port]` and `mqtts://host[:port]` (IPv6 in brackets).
pub fn parse_url(url: &str) -> Result<BrokerUrl, SettingsError> {
    let err = |why| SettingsError::Url {
        url: url.to_string(),
        why,
    };
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else {
        return Err(err("unknown scheme"));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or(err("unclosed '[' in host"))?;
        match after.strip_prefix(':') {
            Some(p) => (h, p.parse().map_err(|_| err("port is not a number"))?),
            None if after.is_empty() => (h, default_port),
            None => return Err(err("unexpected text after host")),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| err("port is not a number"))?),
            None => (rest, default_port),
        }
    };
    if host.is_empty() || host.contains('/') || host.contains('@') {
        return Err(err("missing or invalid host"));
    }
    Ok(BrokerUrl {
        host: host.to_string(),
        port,
        tls,
    })
}

/// Largest packet the agent accepts from the broker. Larger than the protocol's down
/// limit so that an oversized message reaches the agent and is rejected with a
/// `Rejected` event and acked, instead of killing the connection and being redelivered
/// forever (rumqttc drops the connection on a packet over its limit).
/// It is the most an operator may set the broker's `message_size_limit` to.
pub const MAX_INCOMING_PACKET: usize = floorhand_protocol::limits::MAX_BROKER_MESSAGE + 1024;

/// Options for the OMS side's client `client_id`: like [`options`], but automatic MQTT
/// acks (events are acknowledged to the agent at application level, after the commit),
/// the protocol's own 2 MiB outgoing limit for down messages, and a clean session for
/// one-shot tools, so they leave nothing behind on the broker.
pub fn oms_options(
    client_id: &str,
    s: &BrokerSettings,
    clean_session: bool,
) -> Result<MqttOptions, SettingsError> {
    let mut o = options(client_id, s)?;
    o.set_clean_session(clean_session);
    o.set_manual_acks(false);
    o.set_max_packet_size(MAX_INCOMING_PACKET, MAX_DOWN_BYTES + 1024);
    o.set_request_channel_capacity(1 << 16);
    Ok(o)
}

/// Builds the options for client `client_id`: persistent session (`clean_session=false`),
/// manual acks, our packet limits, credentials and TLS.
pub fn options(client_id: &str, s: &BrokerSettings) -> Result<MqttOptions, SettingsError> {
    let url = parse_url(&s.url)?;
    let mut o = MqttOptions::new(client_id, url.host.clone(), url.port);
    o.set_keep_alive(s.keep_alive.max(Duration::from_secs(5)));
    o.set_clean_session(false);
    o.set_manual_acks(true);
    o.set_max_packet_size(MAX_INCOMING_PACKET, MAX_UP_BYTES + 1024);
    o.set_request_channel_capacity(1024);
    o.set_inflight(100);
    if let Some(user) = &s.username {
        o.set_credentials(user.clone(), s.password.clone().unwrap_or_default());
    }
    if url.tls {
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls_config(s)?),
        )));
    } else if s.ca_file.is_some() || s.cert_file.is_some() {
        return Err(SettingsError::Tls(
            "TLS files are set but the broker url is mqtt://; use mqtts:// to encrypt".into(),
        ));
    }
    Ok(o)
}

fn read_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, SettingsError> {
    let err = |why: String| SettingsError::TlsFile {
        what,
        path: path.to_path_buf(),
        why,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// Network options: the connection timeout (whole seconds, at least one) and
/// `TCP_NODELAY`. rumqttc leaves Nagle's algorithm on; then a small publish or ack written
/// while an earlier one is unacknowledged waits for the peer's delayed ACK (40 ms on
/// Linux), and a window of 256 messages took 40-55 ms per round trip (measured with
/// `scripts/bench --only drain`: 6,300 events/s with Nagle, see the commit that set this).
pub fn network_options(s: &BrokerSettings) -> rumqttc::NetworkOptions {
    let mut n = rumqttc::NetworkOptions::new();
    n.set_connection_timeout(s.connect_timeout.as_secs().max(1));
    n.set_tcp_nodelay(true);
    n
}

/// A rustls client config with the ring provider, the configured CA as the only root,
/// and the client certificate if one is set.
pub fn tls_config(s: &BrokerSettings) -> Result<rustls::ClientConfig, SettingsError> {
    let ca = s.ca_file.as_deref().ok_or_else(|| {
        SettingsError::Tls(
            "mqtts:// needs ca_file: the CA certificate that signed the broker's certificate"
                .into(),
        )
    })?;
    rustls_config(ca, s.cert_file.as_deref(), s.key_file.as_deref())
}

/// A rustls client config with the ring provider, `ca` (PEM) as the only root, and a
/// client certificate when `cert` and `key` are both given: the broker's TLS, and the
/// bridge's to PostgreSQL.
pub fn rustls_config(
    ca: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<rustls::ClientConfig, SettingsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs("ca_file", ca)? {
        roots.add(c).map_err(|e| SettingsError::TlsFile {
            what: "ca_file",
            path: ca.to_path_buf(),
            why: e.to_string(),
        })?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| SettingsError::Tls(e.to_string()))?
    .with_root_certificates(roots);
    match (cert, key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = read_certs("cert_file", cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| SettingsError::TlsFile {
                what: "key_file",
                path: key.to_path_buf(),
                why: e.to_string(),
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| SettingsError::Tls(format!("client certificate and key: {e}")))
        }
        _ => Err(SettingsError::Tls(
            "cert_file and key_file go together: set both or neither".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, expected: Result<(&str, u16, bool), &str>) {
        match (parse_url(url), expected) {
            (Ok(u), Ok((h, p, t))) => {
                assert_eq!((u.host.as_str(), u.port, u.tls), (h, p, t), "{url}")
            }
            (Err(e), Err(why)) => assert!(e.to_string().contains(why), "{url}: {e}"),
            (got, want) => panic!("{url}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn broker_urls_parse_with_default_ports_and_ipv6() {
        check("mqtt://127.0.0.1:18830", Ok(("127.0.0.1", 18830, false)));
        check("mqtt://broker.local", Ok(("broker.local", 1883, false)));
        check("mqtts://broker.local", Ok(("broker.local", 8883, true)));
        check("mqtts://[::1]:8884/", Ok(("::1", 8884, true)));
        check("mqtt://[::1]", Ok(("::1", 1883, false)));
        check("tcp://x:1", Err("unknown scheme"));
        check("mqtt://:1883", Err("missing or invalid host"));
        check("mqtt://h:port", Err("port is not a number"));
        check("mqtt://user@h:1", Err("missing or invalid host"));
    }

    #[test]
    fn tls_without_a_ca_is_refused_with_a_clear_error() {
        let s = BrokerSettings::plain("mqtts://h:8883");
        let e = options("d1", &s).unwrap_err().to_string();
        assert!(e.contains("needs ca_file"), "{e}");
    }

    #[test]
    fn tls_files_on_a_plain_url_are_refused() {
        let mut s = BrokerSettings::plain("mqtt://h:1883");
        s.ca_file = Some("/tmp/ca.pem".into());
        assert!(
            options("d1", &s)
                .unwrap_err()
                .to_string()
                .contains("use mqtts://")
        );
    }

    #[test]
    fn a_missing_ca_file_names_the_file() {
        let mut s = BrokerSettings::plain("mqtts://h:8883");
        s.ca_file = Some("/nonexistent/ca.pem".into());
        let e = options("d1", &s).unwrap_err().to_string();
        assert!(e.contains("ca_file /nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let mut s = BrokerSettings::plain("mqtt://h:1883");
        s.username = Some("station7".into());
        s.password = Some("hunter2-secret".into());
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("station7"),
            "{shown}"
        );
    }
}
