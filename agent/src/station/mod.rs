//! The station runtime: the imperative shell around the pure workflows. It owns the
//! devices (scanner thread, terminal link, printer thread), feeds their events, the sync
//! link's applied messages and a clock tick into [`crate::pick::Picker`] (a handheld) or
//! [`crate::pack::Packer`] (a pack station), and carries out their effects through the
//! store (one transaction per durable command, its outbox event inside it) before the
//! workflow hears `Committed` and beeps.
//!
//! Every device is optional: a station without a scanner, a terminal or a scale (or whose
//! device's reader ended, e.g. a keyboard wedge on standard input at its end) says so in
//! the log and goes on handling every other input; [`next`] never waits on a device that
//! is not there. Devices unplugged during a shift are reopened by their own threads.
//!
//! Refused scans: the workflows report them by class, coalesced to at most one report per
//! class per second ([`crate::pick::refused`]); each report becomes one `ScanRefused`
//! event through [`record_refusal`] after the refusal's screen and beep went out, and the
//! stations tick the workflows each second while counted refusals wait, and flush them
//! when they stop.
//!
//! Invariants: one task owns the workflow, so inputs are handled strictly one at a time;
//! a durable effect is committed before its answer is fed back; after each commit that
//! wrote an outbox event the sync link is told (`outbox_changed`); device threads stop
//! when the shutdown watch turns true; the station says it is ready (`Shell::ready`) only
//! once its first screen is up and the next input will be handled.

pub mod pack;
pub mod pick;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use floorhand_protocol::link::{Beep, Level, Screen, fit};
use floorhand_protocol::oms::{self, EventKind};
use tokio::sync::{mpsc, oneshot, watch};

use crate::clock::unix_now;
use crate::config::{ConfigError, Devices, StationSettings};
use crate::devices::scale::{self, ScaleConfig, ScaleEvent};
use crate::devices::scanner::{self, ScannerConfig, ScannerEvent};
use crate::devices::terminal::{self, TerminalError, TerminalEvent, TerminalHandle};
use crate::pick::{Refusal, RefusalReason};
use crate::store::{Db, Store, StoreError};
use crate::sync::agent::SyncHandle;

/// Why a station could not start.
#[derive(Debug, thiserror::Error)]
pub enum StationError {
    /// Configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The terminal's port.
    #[error(transparent)]
    Terminal(#[from] TerminalError),
    /// The store.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// A device thread could not be started.
    #[error("could not start a device thread: {0}")]
    Thread(std::io::Error),
    /// Settings that a role needs are missing.
    #[error("{0}")]
    Missing(&'static str),
}

/// What every station has: the store, the link, the screen, the scanner, the clock.
pub(crate) struct Shell {
    pub store: Store,
    pub sync: SyncHandle,
    pub display: Display,
    /// The terminal's events; `None` without a terminal.
    pub terminal_events: Option<mpsc::UnboundedReceiver<TerminalEvent>>,
    /// The scanner's events; `None` without a scanner, or once its reader has ended.
    pub scanner: Option<mpsc::UnboundedReceiver<ScannerEvent>>,
    pub shutdown: watch::Receiver<bool>,
    started: Instant,
    stop: Arc<AtomicBool>,
    scanner_thread: Option<std::thread::JoinHandle<()>>,
    ready: Option<oneshot::Sender<()>>,
}

/// The next event from a device's channel, or never when the station has no such device:
/// a missing device must not stop the others. `None` means the device's reader ended;
/// the caller then drops the channel (see [`Shell::ended`]).
pub(crate) async fn next<T>(rx: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// Which device's reader ended, for [`Shell::ended`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Device {
    Scanner,
    Terminal,
}

/// The wire's class of a refused scan.
fn refusal_reason(r: RefusalReason) -> oms::RefusalReason {
    match r {
        RefusalReason::WrongItem => oms::RefusalReason::WrongItem,
        RefusalReason::WrongLocation => oms::RefusalReason::WrongLocation,
        RefusalReason::BadBarcode => oms::RefusalReason::BadBarcode,
        RefusalReason::NotLoggedIn => oms::RefusalReason::NotLoggedIn,
        RefusalReason::NoTask => oms::RefusalReason::NoTask,
        RefusalReason::Busy => oms::RefusalReason::Busy,
        RefusalReason::TooMany => oms::RefusalReason::TooMany,
        RefusalReason::Other => oms::RefusalReason::Other,
    }
}

/// Writes an event that is information, not work (a report of refused scans, a
/// terminal's firmware version), in one transaction like any event, and returns its seq.
/// Nothing is written once the database has reached its storage limit (`Ok(None)`):
/// information must not take the room a pick needs.
fn record_info(
    db: &mut Db,
    now: u64,
    operator: u32,
    kind: EventKind,
) -> Result<Option<u64>, StoreError> {
    let usage = db.usage()?;
    if usage.bytes >= usage.max_bytes {
        return Ok(None);
    }
    db.append_event(now, operator, kind).map(Some)
}

/// Writes a report of refused scans as one `ScanRefused` event (see [`record_info`]).
/// Shared by both stations.
pub(crate) fn record_refusal(
    db: &mut Db,
    now: u64,
    operator: u32,
    r: Refusal,
) -> Result<Option<u64>, StoreError> {
    let kind = EventKind::ScanRefused {
        reason: refusal_reason(r.reason),
        task_id: r.task_id,
        count: r.count,
    };
    record_info(db, now, operator, kind)
}

impl Shell {
    /// Reports refused scans to the OMS (see [`record_refusal`]); a failure is logged,
    /// never fatal: the refusal itself was shown and beeped already.
    pub async fn report_refusal(&self, operator: u32, r: Refusal) {
        let now = unix_now();
        let written = self
            .store
            .call(move |db| record_refusal(db, now, operator, r))
            .await;
        self.reported(
            written,
            &format!("refused scans ({:?}, {})", r.reason, r.count),
        );
    }

    /// Reports the firmware version of the terminal that said hello as a
    /// `TerminalConnected` event (see [`record_info`]). False when it was not written: a
    /// failure is logged, never fatal, and the caller may try again.
    pub async fn report_terminal(&self, operator: u32, software: String) -> bool {
        let now = unix_now();
        let what = format!("the terminal's version ({software})");
        let kind = EventKind::TerminalConnected { software };
        let written = self
            .store
            .call(move |db| record_info(db, now, operator, kind))
            .await;
        self.reported(written, &what)
    }

    /// Logs a report that was not written; true when it was (and the outbox told).
    fn reported(
        &self,
        written: Result<Result<Option<u64>, StoreError>, StoreError>,
        what: &str,
    ) -> bool {
        match written {
            Ok(Ok(Some(_))) => {
                self.sync.outbox_changed();
                return true;
            }
            Ok(Ok(None)) => {
                tracing::warn!("{what} not reported: the database is at its storage limit")
            }
            Ok(Err(e)) | Err(e) => tracing::error!("{what} not reported: {e}"),
        }
        false
    }

    /// Milliseconds since the station started: the workflows' clock.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The station handles inputs from now on: logged once as "ready".
    pub fn ready(&mut self) {
        if let Some(tx) = self.ready.take() {
            let _ = tx.send(());
        }
    }

    /// A device's reader ended (its thread stopped): the station goes on without it.
    pub fn ended(&mut self, device: Device) {
        match device {
            Device::Scanner => {
                self.scanner = None;
                let rest = if self.terminal_events.is_some() {
                    "scans come only from the terminal now"
                } else {
                    "this station takes no more scans"
                };
                tracing::warn!("the scanner's reader has ended (end of its input): {rest}");
            }
            Device::Terminal => {
                self.terminal_events = None;
                tracing::warn!("the terminal link has stopped: its keys and scans are not read");
            }
        }
    }

    /// Tells the device threads to stop and waits up to a second for the scanner's (each
    /// of its reads waits at most 100 ms), then stops the terminal link.
    pub async fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.scanner_thread.take()
            && !join_within(t, std::time::Duration::from_secs(1)).await
        {
            tracing::warn!("the scanner's thread did not stop within 1 s");
        }
        self.display.stop();
    }
}

/// Waits up to `limit` for `thread` to end and joins it; false if it is still running
/// (it is left to the process exit). Polls, so the task's worker thread stays free.
pub(crate) async fn join_within(
    thread: std::thread::JoinHandle<()>,
    limit: std::time::Duration,
) -> bool {
    let deadline = Instant::now() + limit;
    while !thread.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    if thread.is_finished() {
        let _ = thread.join();
        true
    } else {
        false
    }
}

/// The terminal, or the log when the station has none.
pub(crate) struct Display {
    terminal: Option<TerminalHandle>,
    /// The screen shown last.
    pub current: Option<Screen>,
}

impl Display {
    /// Shows `screen` (logged when there is no terminal).
    pub fn show(&mut self, screen: Screen) {
        if self.current.as_ref() == Some(&screen) {
            return;
        }
        match &self.terminal {
            Some(t) => {
                if let Err(e) = t.show(screen.clone()) {
                    tracing::error!("terminal: {e}");
                }
            }
            None => tracing::info!(?screen, "screen"),
        }
        self.current = Some(screen);
    }

    /// Sounds the buzzer (logged when there is no terminal).
    pub fn beep(&mut self, beep: Beep) {
        match &self.terminal {
            Some(t) => {
                if let Err(e) = t.beep(beep) {
                    tracing::error!("terminal: {e}");
                }
            }
            None => tracing::info!(?beep, "beep"),
        }
    }

    /// A one-line message screen.
    pub fn message(&mut self, level: Level, text: &str) {
        self.show(Screen::Message {
            level,
            text: fit(text),
        });
    }

    fn stop(&mut self) {
        if let Some(t) = self.terminal.take()
            && let Err(e) = t.stop()
        {
            tracing::warn!("terminal: {e}");
        }
    }
}

/// Starts the station's scanner thread and terminal link; says in the log which ones it
/// has not.
fn shell(
    devices: &Devices,
    store: Store,
    sync: SyncHandle,
    shutdown: watch::Receiver<bool>,
    ready: oneshot::Sender<()>,
) -> Result<Shell, StationError> {
    let (terminal, terminal_events) = match &devices.terminal {
        Some(t) => {
            let (handle, events) = terminal::spawn(t)?;
            (Some(handle), Some(events))
        }
        None => (None, None),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (scanner, scanner_thread) = match &devices.scanner {
        Some(s) => {
            let (rx, thread) = spawn_scanner(s.clone(), stop.clone())?;
            (Some(rx), Some(thread))
        }
        None => (None, None),
    };
    match (terminal.is_some(), scanner.is_some()) {
        (true, true) => {}
        (false, true) => tracing::info!("no [terminal]: screens and beeps go to this log"),
        (true, false) => tracing::info!("no [scanner]: scans come from the terminal only"),
        (false, false) => tracing::warn!(
            "neither a [scanner] nor a [terminal]: this station can take no input; it keeps \
             its link and its database, and its screens go to this log"
        ),
    }
    Ok(Shell {
        store,
        sync,
        display: Display {
            terminal,
            current: None,
        },
        terminal_events,
        scanner,
        shutdown,
        started: Instant::now(),
        stop,
        scanner_thread,
        ready: Some(ready),
    })
}

/// Runs the scanner's blocking reader loop on its own thread.
fn spawn_scanner(
    config: ScannerConfig,
    stop: Arc<AtomicBool>,
) -> Result<
    (
        mpsc::UnboundedReceiver<ScannerEvent>,
        std::thread::JoinHandle<()>,
    ),
    StationError,
> {
    let (tx, rx) = mpsc::unbounded_channel();
    let thread = std::thread::Builder::new()
        .name("scanner".into())
        .spawn(move || {
            if let Err(e) = scanner::run(&config, &stop, |ev| tx.send(ev).is_ok()) {
                tracing::error!("scanner: {e}");
            }
        })
        .map_err(StationError::Thread)?;
    Ok((rx, thread))
}

/// A scale's reader thread and its events.
pub(crate) type ScaleThread = (
    mpsc::UnboundedReceiver<ScaleEvent>,
    std::thread::JoinHandle<()>,
);

/// Runs the scale's blocking reader loop on its own thread; it ends when `stop` is set.
fn spawn_scale(config: ScaleConfig, stop: Arc<AtomicBool>) -> Result<ScaleThread, StationError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let thread = std::thread::Builder::new()
        .name("scale".into())
        .spawn(move || scale::run(&config, &stop, |ev| tx.send(ev).is_ok()))
        .map_err(StationError::Thread)?;
    Ok((rx, thread))
}

/// A running station: its task, and the signal that it takes scans.
pub struct Running {
    /// The workflow's task; it ends after shutdown, or with the error that stopped it.
    pub task: tokio::task::JoinHandle<Result<(), StationError>>,
    /// Resolves once the station handles inputs (its first screen is up).
    pub ready: oneshot::Receiver<()>,
}

/// Starts the station `settings` describe: opens its devices now (so a wrong port is an
/// error at start) and runs its role's workflow on a task until `shutdown`.
pub fn start(
    settings: &StationSettings,
    store: Store,
    sync: SyncHandle,
    shutdown: watch::Receiver<bool>,
) -> Result<Running, StationError> {
    let (ready_tx, ready) = oneshot::channel();
    let task = match settings {
        StationSettings::Picker { pick, devices } => {
            let shell = shell(devices, store, sync, shutdown, ready_tx)?;
            let config = pick.clone();
            tokio::spawn(async move {
                pick::run(shell, config).await;
                Ok(())
            })
        }
        StationSettings::Pack {
            pack,
            badge_prefix,
            printer,
            scale,
            devices,
        } => {
            let shell = shell(devices, store, sync, shutdown, ready_tx)?;
            let scale = match scale {
                Some(s) => Some(spawn_scale(s.clone(), shell.stop.clone())?),
                None => {
                    tracing::info!("no [scale]: the packer types each carton's weight");
                    None
                }
            };
            tokio::spawn(pack::run(
                shell,
                pack.clone(),
                badge_prefix.clone(),
                printer.clone(),
                scale,
            ))
        }
    };
    Ok(Running { task, ready })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;

    fn outbox_kinds(db: &Db) -> Vec<EventKind> {
        db.outbox_pending(0, usize::MAX)
            .unwrap()
            .iter()
            .map(
                |row| match oms::decode_up(&row.payload).unwrap().body.body {
                    oms::Up::Event(e) => e.kind,
                    other => panic!("not an event: {other:?}"),
                },
            )
            .collect()
    }

    #[test]
    fn a_refusal_report_is_one_event_and_none_once_storage_is_at_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.db");
        let mut db = Db::open(&path, &StoreConfig::default()).unwrap();
        let r = Refusal {
            reason: RefusalReason::BadBarcode,
            task_id: Some(12),
            count: 4,
        };
        let seq = record_refusal(&mut db, 1_000, 42, r).unwrap();
        assert_eq!(seq, Some(1));
        assert_eq!(
            outbox_kinds(&db),
            [EventKind::ScanRefused {
                reason: oms::RefusalReason::BadBarcode,
                task_id: Some(12),
                count: 4
            }]
        );
        let used = db.usage().unwrap().bytes;
        drop(db);
        let full = StoreConfig {
            max_bytes: used,
            ..StoreConfig::default()
        };
        let mut db = Db::open(&path, &full).unwrap();
        assert_eq!(record_refusal(&mut db, 1_001, 42, r).unwrap(), None);
        assert_eq!(outbox_kinds(&db).len(), 1, "nothing written at the limit");
    }
}
