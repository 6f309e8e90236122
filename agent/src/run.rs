//! `floorhand run`: the agent daemon. Opens the store, starts the MQTT link, starts the
//! station (handheld or pack station, see [`crate::station`]), keeps storage in bounds,
//! and stops cleanly when told to.

use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{Config, ConfigError};
use crate::station::{self, StationError};
use crate::store::{Store, StoreError};
use crate::sync::agent::{self, LinkState, SyncError, SyncHandle};

/// Why the agent could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
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
}

/// A running agent.
pub struct Agent {
    /// The store.
    pub store: Store,
    /// The MQTT link.
    pub sync: SyncHandle,
    task: tokio::task::JoinHandle<()>,
    station: tokio::task::JoinHandle<()>,
}

impl Agent {
    /// Opens the database and starts the link.
    pub async fn start(
        cfg: &Config,
        cfg_path: &Path,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Agent, RunError> {
        let store = Store::open(&cfg.database.path, cfg.store_config())?;
        let broker = cfg.broker_settings(cfg_path)?;
        let (sync, task) =
            agent::start(cfg.sync_config(broker), store.clone(), shutdown.clone()).await?;
        let station = station::start(cfg, cfg_path, store.clone(), sync.clone(), shutdown)?;
        Ok(Agent {
            store,
            sync,
            task,
            station,
        })
    }

    /// Runs housekeeping until the link task ends (after shutdown).
    pub async fn wait(self) {
        let Agent {
            store,
            sync,
            task,
            mut station,
        } = self;
        let mut state = sync.state.clone();
        let housekeeping = async {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let now = now_s();
                match store
                    .call(move |db| (db.check_storage(now), db.purge(now)))
                    .await
                {
                    Ok((Ok(u), Ok(purged))) => {
                        if u.alarm {
                            tracing::warn!("storage at {}% of its limit", u.pct);
                        }
                        if purged > 0 {
                            tracing::info!("purged {purged} completed, acknowledged rows");
                        }
                    }
                    Ok((Err(e), _)) | Ok((_, Err(e))) => tracing::error!("housekeeping: {e}"),
                    Err(_) => return,
                }
            }
        };
        let log_link = async {
            while state.changed().await.is_ok() {
                let s = state.borrow().clone();
                match s {
                    LinkState::Up { session } => tracing::info!(session, "link up"),
                    LinkState::Down { error, .. } => tracing::info!("link down: {error}"),
                }
            }
        };
        let station_done = tokio::select! {
            _ = task => false,
            _ = &mut station => true,
            _ = housekeeping => false,
            _ = log_link => false,
        };
        // The station watches the same shutdown signal; give it time to stop its devices.
        if !station_done
            && tokio::time::timeout(Duration::from_secs(5), station)
                .await
                .is_err()
        {
            tracing::warn!("station did not stop within 5 s");
        }
    }
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
