//! A one-off broker check for `floorhand doctor`: connect with the station's URL, TLS and
//! credentials, wait for the CONNACK, disconnect. Here so that only `sync` knows rumqttc.

use std::time::Duration;

use super::mqtt::{self, BrokerSettings, SettingsError};

/// Why the broker check failed, sorted by what a technician does about it.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The settings cannot be turned into a connection (URL, CA, certificate, key).
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The broker refused the connection (credentials or ACL).
    #[error("{0}")]
    Refused(String),
    /// The TLS handshake failed.
    #[error("{0}")]
    Tls(String),
    /// Anything else on the way: host, port, network, a broker that does not run.
    #[error("{0}")]
    Unreachable(String),
    /// No CONNACK within the timeout.
    #[error("no answer within {}s", .0.as_secs())]
    Timeout(Duration),
}

/// Connects under `client_id` with a clean session (so a running agent's session is not
/// touched), waits up to `settings.connect_timeout` (at least 1 s) for the CONNACK, and
/// disconnects. Error texts do not repeat the URL; the caller adds it.
pub async fn probe(client_id: &str, settings: &BrokerSettings) -> Result<(), ProbeError> {
    let mut opts = mqtt::options(client_id, settings)?;
    opts.set_clean_session(true);
    let (client, mut events) = rumqttc::AsyncClient::new(opts, 10);
    let timeout = settings.connect_timeout.max(Duration::from_secs(1));
    let connected = tokio::time::timeout(timeout, async {
        loop {
            match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    match connected {
        Ok(Ok(())) => {
            let _ = client.try_disconnect();
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while events.poll().await.is_ok() {}
            })
            .await;
            Ok(())
        }
        Ok(Err(e)) => {
            use rumqttc::ConnectionError as E;
            let text = super::agent::describe(&e);
            Err(match e {
                E::ConnectionRefused(_) => ProbeError::Refused(text),
                E::Tls(_) => ProbeError::Tls(text),
                _ => ProbeError::Unreachable(text),
            })
        }
        Err(_) => Err(ProbeError::Timeout(timeout)),
    }
}
