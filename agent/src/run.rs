//! `floorhand run`: the agent daemon. Opens the store, starts the MQTT link, starts the
//! station (handheld or pack station, see [`crate::station`]), keeps storage in bounds,
//! and stops cleanly when told to.
//!
//! An internal failure stops it too, but as a failure: the MQTT link's task or the station's
//! task ending on its own (a panic, an error), the store thread gone, or (with
//! [`watch_panics`], which `floorhand run` installs) a panic on any thread, such as one of
//! the link's helper tasks. [`Agent::wait`] then logs it, stops the rest as a SIGTERM would,
//! and returns [`AgentError::Failed`], so `floorhand run` exits non-zero and systemd's
//! `Restart=on-failure` starts it again.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::{JoinError, JoinHandle};

use crate::config::{ConfigError, Settings};
use crate::station::{self, StationError};
use crate::store::{Store, StoreError};
use crate::sync::agent::{self, LinkState, SyncError, SyncHandle};

/// How often the agent checks that the store thread still runs.
pub const STORE_PROBE: Duration = Duration::from_secs(2);

/// How long a stop waits for the station and for the link to finish.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Why the agent could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// The MQTT link.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// The station's devices.
    #[error(transparent)]
    Station(#[from] StationError),
    /// A part of the running agent failed; the rest was stopped.
    #[error("internal failure: {0}")]
    Failed(String),
}

/// Stops a running agent (SIGTERM's job); cheap to clone.
#[derive(Clone)]
pub struct Stopper(Arc<watch::Sender<bool>>);

impl Stopper {
    /// Asks every part of the agent to stop.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

/// A running agent.
pub struct Agent {
    /// The store.
    pub store: Store,
    /// The MQTT link.
    pub sync: SyncHandle,
    stop: Stopper,
    task: JoinHandle<()>,
    station: JoinHandle<Result<(), StationError>>,
    ready: oneshot::Receiver<()>,
    device: String,
    site: String,
}

impl Agent {
    /// Opens the database and starts the link and the station.
    pub async fn start(settings: &Settings) -> Result<Agent, AgentError> {
        let (stop_tx, shutdown) = watch::channel(false);
        let store = Store::open(&settings.database, settings.store.clone())?;
        let (sync, task) =
            agent::start(settings.sync.clone(), store.clone(), shutdown.clone()).await?;
        let station = match station::start(&settings.station, store.clone(), sync.clone(), shutdown)
        {
            Ok(s) => s,
            Err(e) => {
                // The link is running: let it say goodbye before the error is reported.
                stop_tx.send_replace(true);
                let _ = tokio::time::timeout(STOP_WAIT, task).await;
                return Err(e.into());
            }
        };
        Ok(Agent {
            store,
            sync,
            stop: Stopper(Arc::new(stop_tx)),
            task,
            station: station.task,
            ready: station.ready,
            device: settings.device.clone(),
            site: settings.site.clone(),
        })
    }

    /// What stops this agent.
    pub fn stopper(&self) -> Stopper {
        self.stop.clone()
    }

    /// Logs "ready" once the station takes scans, runs housekeeping, and watches every
    /// part until a stop (`Ok`) or an internal failure (`Err`, after stopping the rest).
    /// Returns once the station and the link have finished (each within 5 s) and the store
    /// thread has run every job queued before.
    pub async fn wait(self) -> Result<(), AgentError> {
        let Agent {
            store,
            sync,
            stop,
            mut task,
            mut station,
            ready,
            device,
            site,
        } = self;
        let mut stopping = stop.0.subscribe();
        let mut panics = PANICS.get().map(watch::Sender::subscribe);
        let mut state = sync.state.clone();
        let mut link_open = true;
        let mut ready = Some(ready);
        let mut probe = tokio::time::interval(STORE_PROBE);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let minute = Duration::from_secs(60);
        let mut housekeeping =
            tokio::time::interval_at(tokio::time::Instant::now() + minute, minute);
        let (mut task_done, mut station_done) = (false, false);
        let failure = loop {
            tokio::select! {
                r = stopping.changed() => {
                    if r.is_err() || *stopping.borrow() {
                        break None;
                    }
                }
                // Each also watches the stop, and may see it first: ending cleanly after a
                // stop is no failure.
                r = &mut task => {
                    task_done = true;
                    let r = r.map(Ok::<(), StationError>);
                    break (!(stop_asked(&stopping) && matches!(r, Ok(Ok(())))))
                        .then(|| ended("the MQTT link task", r));
                }
                r = &mut station => {
                    station_done = true;
                    break (!(stop_asked(&stopping) && matches!(r, Ok(Ok(())))))
                        .then(|| ended("the station task", r));
                }
                r = async {
                    match ready.as_mut() {
                        Some(r) => r.await,
                        None => std::future::pending().await,
                    }
                } => {
                    ready = None;
                    if r.is_ok() {
                        tracing::info!(%device, %site, "floorhand agent running: ready for scans");
                    }
                }
                _ = probe.tick() => {
                    if store.call(|_| ()).await.is_err() {
                        break Some("the store thread has stopped".to_string());
                    }
                }
                _ = housekeeping.tick() => {
                    if let Err(e) = housekeep(&store).await {
                        break Some(format!("housekeeping: {e}"));
                    }
                }
                p = next_panic(&mut panics) => break Some(p),
                // Link changes are logged once "ready" is: tools that read the log (the
                // benchmark) wait for "ready", then for "link up".
                r = state.changed(), if link_open && ready.is_none() => {
                    if r.is_err() {
                        // The link task is gone; its branch above says why.
                        link_open = false;
                        continue;
                    }
                    let s = state.borrow_and_update().clone();
                    match s {
                        LinkState::Up { session } => tracing::info!(session, "link up"),
                        LinkState::Down { error, .. } => tracing::info!("link down: {error}"),
                    }
                }
            }
        };
        if let Some(f) = &failure {
            tracing::error!("internal failure: {f}; stopping");
        }
        stop.stop();
        let station_stop = async {
            if station_done {
                return None;
            }
            match tokio::time::timeout(STOP_WAIT, &mut station).await {
                Err(_) => {
                    tracing::warn!("station did not stop within {STOP_WAIT:?}");
                    None
                }
                Ok(Ok(Ok(()))) => None,
                Ok(r) => Some(ended("the station task", r)),
            }
        };
        let link_stop = async {
            if !task_done && tokio::time::timeout(STOP_WAIT, &mut task).await.is_err() {
                tracing::warn!("the MQTT link did not stop within {STOP_WAIT:?}");
            }
        };
        let (station_failure, ()) = tokio::join!(station_stop, link_stop);
        if let Some(f) = &station_failure {
            tracing::error!("internal failure while stopping: {f}");
        }
        // The store thread runs jobs in order: once this empty job has run, every commit
        // queued before the stop is on disk, so the process may exit.
        let store_failure = store
            .call(|_| ())
            .await
            .err()
            .map(|_| "the store thread had stopped".to_string());
        match failure.or(station_failure).or(store_failure) {
            Some(f) => Err(AgentError::Failed(f)),
            None => Ok(()),
        }
    }
}

fn stop_asked(stopping: &watch::Receiver<bool>) -> bool {
    *stopping.borrow()
}

/// What it means that `what` ended on its own with `result`: a sentence for the log.
pub fn ended(what: &str, result: Result<Result<(), StationError>, JoinError>) -> String {
    match result {
        Ok(Ok(())) => format!("{what} ended on its own"),
        Ok(Err(e)) => format!("{what} failed: {e}"),
        Err(e) if e.is_panic() => {
            let p = e.into_panic();
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            format!("{what} panicked: {msg}")
        }
        Err(e) => format!("{what} was cancelled: {e}"),
    }
}

/// Checks the storage limit and purges what may go; an error only if the store is gone.
async fn housekeep(store: &Store) -> Result<(), StoreError> {
    let now = crate::clock::unix_now();
    match store
        .call(move |db| (db.check_storage(now), db.purge(now)))
        .await?
    {
        (Ok(u), Ok(purged)) => {
            if u.alarm {
                tracing::warn!("storage at {}% of its limit", u.pct);
            }
            if purged > 0 {
                tracing::info!("purged {purged} completed, acknowledged rows");
            }
        }
        (Err(e), _) | (_, Err(e)) => tracing::error!("housekeeping: {e}"),
    }
    Ok(())
}

/// The first panic of the process, once [`watch_panics`] is installed.
static PANICS: OnceLock<watch::Sender<Option<String>>> = OnceLock::new();

/// Makes a panic on any thread of this process an internal failure that stops a running
/// [`Agent`] (after the usual panic message). For `floorhand run`, whose threads and tasks
/// (the link's helpers among them) must never panic; tests keep the default hook.
pub fn watch_panics() {
    let tx = PANICS.get_or_init(|| watch::channel(None).0);
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let what = format!(
            "a panic on thread {}: {info}",
            std::thread::current().name().unwrap_or("(unnamed)")
        );
        tx.send_if_modified(|first| {
            let new = first.is_none();
            if new {
                *first = Some(what.clone());
            }
            new
        });
    }));
}

/// The first panic, once there is one; never without [`watch_panics`].
async fn next_panic(panics: &mut Option<watch::Receiver<Option<String>>>) -> String {
    let Some(rx) = panics else {
        return std::future::pending().await;
    };
    // The value is copied out at once: a watch guard must not live across an await.
    let first = rx.wait_for(Option::is_some).await.map(|p| p.clone());
    match first {
        Ok(p) => p.unwrap_or_default(),
        Err(_) => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_panics_or_fails_or_just_ends_is_a_failure_that_says_so() {
        let check = |result, expected: &str| {
            let got = ended("the station task", result);
            assert_eq!(got, expected);
        };
        let panicked = tokio::spawn(async { panic!("test: bad input") }).await;
        check(
            panicked.map(|()| Ok(())),
            "the station task panicked: test: bad input",
        );
        let formatted = tokio::spawn(async { panic!("test: {}", 7) }).await;
        check(
            formatted.map(|()| Ok(())),
            "the station task panicked: test: 7",
        );
        check(
            Ok(Err(StationError::Missing("a [label] section"))),
            "the station task failed: a [label] section",
        );
        check(Ok(Ok(())), "the station task ended on its own");
    }
}
