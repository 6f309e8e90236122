//! The demo's MQTT broker: rumqttd embedded on a free loopback port, Mosquitto as a
//! fallback when rumqttd will not start, or an external broker given by `--broker`.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use super::DemoError;
use crate::rigs::mosquitto::{Mosquitto, Options};

/// A running broker; a Mosquitto child is killed on drop. The embedded broker runs on its
/// own threads until the process ends (rumqttd has no stop call).
pub struct RunningBroker {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Which broker ran, for the summary.
    pub kind: String,
    /// A Mosquitto child, held to be killed on drop.
    _mosquitto: Option<Mosquitto>,
}

fn wait_listening(addr: SocketAddr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    false
}

#[cfg(feature = "embedded-broker")]
/// rumqttd's settings: MQTT 3.1.1 on `addr` only; payloads up to 20 KiB (a full wave
/// is at most 10 KiB, docs/dev/field-notes.md); no console, no metrics listener.
fn rumqttd_config(addr: SocketAddr) -> Result<rumqttd::Config, DemoError> {
    let text = format!(
        r#"
id = 0
[router]
id = 0
max_connections = 64
max_outgoing_packet_count = 200
max_segment_size = 10485760
max_segment_count = 10
[v4.1]
name = "demo"
listen = "{addr}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 5000
max_payload_size = 20480
max_inflight_count = 100
dynamic_filters = true
"#
    );
    toml::from_str(&text).map_err(|e| DemoError::Broker(format!("rumqttd settings: {e}")))
}

/// Starts rumqttd in this process; Mosquitto if rumqttd does not listen within 5 s.
#[cfg(feature = "embedded-broker")]
pub fn start_embedded(out: &Path) -> Result<RunningBroker, DemoError> {
    let port =
        crate::rigs::mosquitto::try_free_port().map_err(|e| DemoError::io("a free port", e))?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let config = rumqttd_config(addr)?;
    std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!("rumqttd stopped: {e}");
            }
        })
        .map_err(|e| DemoError::io("the broker thread", e))?;
    if wait_listening(addr, Duration::from_secs(5)) {
        return Ok(RunningBroker {
            addr,
            kind: format!("rumqttd (embedded) on {addr}"),
            _mosquitto: None,
        });
    }
    tracing::warn!("rumqttd did not start; trying mosquitto");
    start_mosquitto(out)
}

/// Without the `embedded-broker` feature: Mosquitto.
#[cfg(not(feature = "embedded-broker"))]
pub fn start_embedded(out: &Path) -> Result<RunningBroker, DemoError> {
    start_mosquitto(out)
}

/// Starts `mosquitto` on a free loopback port with its config and log in `out` (the
/// shared launcher, `crate::rigs::mosquitto`).
pub fn start_mosquitto(out: &Path) -> Result<RunningBroker, DemoError> {
    let m = Mosquitto::try_start(out, Options::default()).map_err(|e| {
        DemoError::Broker(format!(
            "neither rumqttd nor mosquitto started (mosquitto: {e}); pass --broker URL"
        ))
    })?;
    let addr: SocketAddr = ([127, 0, 0, 1], m.port).into();
    Ok(RunningBroker {
        addr,
        kind: format!("mosquitto on {addr}"),
        _mosquitto: Some(m),
    })
}

/// An external broker from `--broker mqtt://host:port`.
pub fn external(url: &str) -> Result<RunningBroker, DemoError> {
    let hostport = url
        .strip_prefix("mqtt://")
        .ok_or_else(|| DemoError::Broker(format!("--broker {url}: use mqtt://host:port")))?;
    let addr = std::net::ToSocketAddrs::to_socket_addrs(hostport)
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| DemoError::Broker(format!("--broker {url}: cannot resolve {hostport}")))?;
    if !wait_listening(addr, Duration::from_secs(3)) {
        return Err(DemoError::Broker(format!(
            "--broker {url}: nothing listens at {addr}"
        )));
    }
    Ok(RunningBroker {
        addr,
        kind: format!("external broker {url}"),
        _mosquitto: None,
    })
}
