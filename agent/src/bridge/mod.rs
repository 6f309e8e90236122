//! `floorhand bridge`: the OMS side of the contract as a long-running service, with JSON
//! over HTTP in front of it, so an OMS in any language connects without MQTT or postcard.
//!
//! - [`config`]: the TOML file and its defaults.
//! - [`http`]: the axum routes (token check, body limits, JSON errors naming the field).
//! - [`json`]: the API's JSON forms of store rows and events, written by hand.
//! - [`openapi`]: the OpenAPI 3 document of the routes.
//! - [`dashboard`], [`floor`], [`chart`]: the supervisor's floor view at `/`.
//!
//! The core is [`crate::sync::oms::OmsSession`] on an [`crate::store::oms_store::OmsStore`]:
//! one task owns the MQTT link and the store, commits events before acknowledging them and
//! re-sends down messages until the device applied them. The HTTP side writes only through
//! that session (a message is committed before `202`), and reads through a second store
//! handle, off the async runtime. Invariants: nothing is answered as accepted before it is
//! committed; the cursor of an event is its position in the whole store, and readers see
//! cursors in commit order, so a consumer that keeps its cursor gets each event once.

pub mod chart;
pub mod config;
pub mod dashboard;
pub mod floor;
pub mod http;
pub mod json;
pub mod openapi;

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::store::StoreError;
use crate::store::oms_db::OmsDb;
use crate::store::oms_pg::PgStore;
use crate::store::oms_store::OmsStore;
use crate::sync::oms::{AckMode, OmsError, OmsSession, OmsSettings, Received, Sharing};
use config::{Settings, StoreSpec};

/// Request limits from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Longest long poll.
    pub max_wait: Duration,
    /// Largest page of events.
    pub max_events: usize,
}

/// What every handler shares, behind one `Arc`: axum clones the state for every request
/// (per route, per middleware), and cloning each of these fields cost about 5 % of the
/// bridge's time under a burst of POSTs.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// Wraps what the handlers share.
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The fields of [`AppState`].
pub struct Shared {
    /// The OMS session: every write goes through it.
    pub session: OmsSession,
    /// A store handle of its own for reads, used off the async runtime.
    pub reader: Arc<Mutex<Box<dyn OmsStore>>>,
    /// The bearer token.
    pub token: Arc<str>,
    /// The highest cursor committed, to wake long polls and streams.
    pub latest: watch::Receiver<u64>,
    /// Request limits.
    pub limits: Limits,
    /// The store's incarnation (cursors carry it).
    pub incarnation: u64,
    /// Becomes true when the bridge stops: long polls answer, streams end.
    pub stopping: watch::Receiver<bool>,
    /// The floor view (`GET /`).
    pub floor: dashboard::Live,
}

/// Why the bridge could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The store could not be opened. (`why`, not `source`: as a source the cause was
    /// printed twice by `{:#}`.)
    #[error("store {path}: {why}")]
    Store {
        /// The file.
        path: String,
        /// Why.
        why: StoreError,
    },
    /// The token file could not be read or made.
    #[error("token file {path}: {why}")]
    Token {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// The OMS session could not start.
    #[error(transparent)]
    Oms(#[from] OmsError),
    /// The HTTP listener could not be bound or failed.
    #[error("HTTP on {addr}: {source}")]
    Http {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Reads the token from `path`, or writes a new random one there (mode 0600) when the file
/// does not exist. Returns the token and whether it was made now.
pub fn load_or_make_token(path: &Path) -> Result<(String, bool), BridgeError> {
    let err = |why: String| BridgeError::Token {
        path: path.display().to_string(),
        why,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.lines().next().unwrap_or("").trim().to_string();
            if token.len() < 16 {
                return Err(err(
                    "the first line must hold a token of at least 16 characters".into(),
                ));
            }
            Ok((token, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut bytes))
                .map_err(|e| err(format!("reading /dev/urandom: {e}")))?;
            let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .and_then(|mut f| {
                    writeln!(f, "{token}")?;
                    f.sync_all()
                })
                .map_err(|e| err(e.to_string()))?;
            Ok((token, true))
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// Opens the store the settings name (a handle of its own each call).
pub fn open_store(s: &Settings) -> Result<Box<dyn OmsStore>, BridgeError> {
    let opened = match &s.store {
        StoreSpec::Sqlite(path) => OmsDb::open(path).map(|db| Box::new(db) as Box<dyn OmsStore>),
        StoreSpec::Postgres {
            url,
            password,
            pool_size,
            tls,
        } => PgStore::open(url, password.as_deref(), *pool_size, tls.clone())
            .map(|db| Box::new(db) as Box<dyn OmsStore>),
    };
    opened.map_err(|why| BridgeError::Store {
        path: format!("{:?}", s.store),
        why,
    })
}

/// Runs the bridge until `stop` resolves: opens the store, starts the OMS session, serves
/// HTTP. `ready` is called with the bound address once requests are served.
pub async fn run(
    s: &Settings,
    token: String,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(std::net::SocketAddr),
) -> Result<(), BridgeError> {
    let writer = open_store(s)?;
    let reader = open_store(s)?;
    let oms = OmsSettings {
        broker: s.broker.clone(),
        site: s.site.clone(),
        client_id: s.client_id.clone(),
        ack: AckMode::Stored,
        // Not used: the session runs on the store opened above.
        store: std::path::PathBuf::new(),
        // Alone, a persistent session: the broker keeps what comes while the bridge is
        // stopped. Sharing, a clean one: Mosquitto hands a shared subscription's messages
        // round robin to every member whose session exists, connected or not, so a killed
        // bridge's persistent session would take every other event for good (a device's
        // re-sends of an even-sized window met the dead member at the same seq every
        // time). A clean session ends when its connection does, and the others get all.
        clean_session: s.shared_group.is_some(),
    };
    let sharing = s.shared_group.as_ref().map(|group| Sharing {
        group: group.clone(),
        owner: s.client_id.clone(),
    });
    let (session, mut received) = OmsSession::start_shared(&oms, writer, sharing)?;
    let (latest_tx, latest) = watch::channel(0u64);
    let (stop_tx, stopping) = watch::channel(false);
    // Wakes long polls and streams when an event is committed; everything else the
    // session reports is in the store already (presence) or in the log (alarms).
    tokio::spawn(async move {
        while let Some(r) = received.recv().await {
            if let Received::Event { cursor, .. } = r {
                latest_tx.send_if_modified(|c| {
                    let newer = cursor > *c;
                    *c = (*c).max(cursor);
                    newer
                });
            }
        }
    });
    let reader = Arc::new(Mutex::new(reader));
    // The floor view reads through the same handle as the API (one more connection, or
    // a PostgreSQL pool, would buy nothing: its reads are few and short).
    let floor = dashboard::spawn(reader.clone(), latest.clone(), stopping.clone(), s.floor);
    let state = http::AppState::new(Shared {
        session: session.clone(),
        reader,
        token: Arc::from(token),
        latest,
        limits: http::Limits {
            max_body_bytes: s.max_body_bytes,
            max_wait: s.max_wait,
            max_events: s.max_events,
        },
        incarnation: session.incarnation(),
        stopping: stopping.clone(),
        floor,
    });
    let listener = tokio::net::TcpListener::bind(s.listen)
        .await
        .map_err(|source| BridgeError::Http {
            addr: s.listen.to_string(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| BridgeError::Http {
        addr: s.listen.to_string(),
        source,
    })?;
    tracing::info!(
        "bridge: HTTP on {addr}, store {:?}, broker {}",
        s.store,
        s.broker.url
    );
    ready(addr);
    // Streams and long polls end when told, so the graceful shutdown does not wait for
    // clients that never hang up.
    tokio::spawn(async move {
        stop.await;
        let _ = stop_tx.send(true);
    });
    let mut stopped = stopping;
    let served = axum::serve(listener, http::router(state).0)
        .with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
        .await;
    session.close().await;
    served.map_err(|source| BridgeError::Http {
        addr: addr.to_string(),
        source,
    })
}
