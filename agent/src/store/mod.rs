//! The local SQLite mirror: waves, tasks, picks, the outbox and the inbox, committed
//! before anything is acknowledged. This module is the only code in the agent that knows SQL.
//!
//! - [`Db`] is the synchronous API over one `rusqlite::Connection`; every public method that
//!   changes something is one transaction.
//! - [`Store`] is the async handle: the `Db` lives on its own thread, so the tokio runtime
//!   never waits on the disk.
//!
//! Invariants (see `ARCHITECTURE.md`):
//! - a confirmation (domain rows, task state) and its outbox row commit in one transaction;
//! - outbox seqs start at 1, have no gaps and are never reused, even after an ack deleted
//!   every row and the agent restarted;
//! - a down message is applied at most once (inbox keyed by `msg_id`, same transaction);
//! - rows are tombstoned, not deleted, when the OMS takes work away; only the retention
//!   purge deletes, and only completed, acknowledged data;
//! - the store never reads the clock: every `now` is unix seconds passed in by the caller.

mod bulk;
mod cartons;
mod codec;
mod conditions;
#[cfg(any(test, feature = "sim"))]
pub mod fixtures;
mod inbox;
mod limits;
mod meta;
#[cfg(feature = "oms")]
pub mod oms_db;
#[cfg(feature = "bridge")]
pub mod oms_pg;
#[cfg(feature = "oms")]
pub mod oms_store;
mod order_map;
mod outbox;
mod pack_orders;
mod path;
#[cfg(feature = "bridge")]
pub mod pg_tls;
mod picks;
mod print_queue;
mod schema;
mod status;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use floorhand_protocol::envelope::EncodeError;
use floorhand_protocol::oms::{Date, RejectReason};
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

pub use cartons::{Carton, CartonClose, CartonItem};
pub use limits::Usage;
pub use meta::DownPoint;
pub use outbox::{BirthSnapshot, OutboxRow, OutboxStats};
pub use pack_orders::{PackLineRow, PackOrderRow};
pub use path::{Owed, PathTask};
pub use print_queue::PrintJob;
pub use schema::SCHEMA_VERSION;
pub use status::{OperatorStatus, StatusReport};

/// How hard SQLite syncs a commit to the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// `synchronous=FULL`: the WAL is synced on every commit; a commit survives power loss.
    #[default]
    Full,
    /// `synchronous=NORMAL`: consistent after power loss, but the last commits may be
    /// rolled back (docs/dev/field-notes.md, "SQLite on flash"). Survives a process crash
    /// either way.
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// Settings of the store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Commit durability; `Full` unless the device has a battery-backed disk.
    pub synchronous: Synchronous,
    /// Storage limit in bytes (pages in use). New waves are refused at the limit;
    /// confirmations are always accepted, so the limit is soft.
    pub max_bytes: u64,
    /// Percent of `max_bytes` at which the storage alarm is raised.
    pub alarm_pct: u8,
    /// How long completed, acknowledged data is kept before [`Db::purge`] deletes it.
    pub retention: Duration,
    /// How long a statement waits for a lock held by another connection.
    pub busy_timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            synchronous: Synchronous::Full,
            max_bytes: 256 * 1024 * 1024,
            alarm_pct: 80,
            retention: Duration::from_secs(7 * 24 * 3600),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error (I/O, a constraint, a busy database).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The storage limit is reached; new work is refused until acknowledged data is purged.
    #[error(
        "storage full: {used} of {max} bytes in use; new work is refused until the outbox \
         drains and old data is purged"
    )]
    Full {
        /// Bytes in use.
        used: u64,
        /// The configured limit.
        max: u64,
    },
    /// The row asked for does not exist.
    #[error("{what} {id} not found on this device")]
    NotFound {
        /// What was looked for (`task`, `print job`).
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The request breaks a rule (a pick on a cancelled task, an over-pick).
    #[error("{0}")]
    Invalid(String),
    /// The database file was written by a newer agent.
    #[error(
        "database schema version {found} is newer than this agent understands \
         (up to {supported}); run a newer floorhand"
    )]
    SchemaTooNew {
        /// Version found in the file.
        found: u32,
        /// Latest version this build knows.
        supported: u32,
    },
    /// The database is older than this agent and was opened read-only, so it was not
    /// migrated.
    #[error(
        "database schema version {found} is older than this agent's ({supported}); start \
         the agent once to migrate it"
    )]
    SchemaTooOld {
        /// Version found in the file.
        found: u32,
        /// Latest version this build knows.
        supported: u32,
    },
    /// No database file where one was expected.
    #[error("no database at {}; is --db right?", .0.display())]
    NoDatabase(PathBuf),
    /// A stored value this agent cannot read (an unknown state name).
    #[error("database holds a value this agent cannot read: {0}")]
    Corrupt(String),
    /// A network database (the bridge's PostgreSQL store) failed: connection, pool or
    /// statement.
    #[error("database error: {0}")]
    Backend(String),
    /// An event could not be encoded for the outbox.
    #[error("could not encode event {seq}: {source}")]
    Encode {
        /// The seq the event would have had.
        seq: u64,
        /// Why.
        source: EncodeError,
    },
    /// The store thread has stopped (it panicked or every handle was dropped).
    #[error("the store thread has stopped")]
    Closed,
    /// The store thread could not be started.
    #[error("could not start the store thread: {0}")]
    Thread(std::io::Error),
}

/// What [`Db::apply_down`] did with a down message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The down seq was applied before; nothing changed. Acknowledge it again.
    Duplicate,
    /// The down seq is not the next one (an earlier one is missing, or another OMS
    /// incarnation's stream is mid-way); nothing changed. The OMS re-sends from the ack
    /// point it is told.
    OutOfOrder {
        /// The down seq the agent needs next.
        expected: u64,
    },
    /// An `Ack` for another agent incarnation (a replaced device's); ignored.
    ForeignAck,
    /// A sequenced message for another incarnation of this device (sent before the OMS
    /// saw this database's birth); ignored, the OMS moves it to this incarnation's stream.
    NotForMe {
        /// The incarnation it was for.
        to_incarnation: u64,
    },
    /// A wave (or a newer version of one) was applied.
    WaveApplied {
        /// Wave id.
        wave_id: u64,
        /// The version now stored.
        version: u32,
        /// Tasks in the message.
        tasks: usize,
        /// `task_count` or the digest did not match the tasks: ask the OMS for a resync.
        resync_needed: bool,
    },
    /// The wave's version is not newer than the stored one; nothing changed.
    WaveStale {
        /// The stored version.
        have: u32,
    },
    /// Tasks were revoked.
    Revoked {
        /// Tasks tombstoned (including those waiting for a put-back).
        tasks: usize,
        /// Of those, tasks with picked units that must be put back.
        put_backs: usize,
    },
    /// An order was cancelled.
    Cancelled {
        /// The order.
        order_id: String,
        /// Tasks tombstoned (including those waiting for a put-back).
        tasks: usize,
        /// Of those, tasks with picked units that must be put back.
        put_backs: usize,
    },
    /// A pack order was stored.
    PackOrderStored,
    /// Outbox rows were acknowledged and deleted.
    Acked {
        /// Rows deleted.
        deleted: usize,
    },
    /// The OMS asked for a resync: send a fresh birth.
    Resync,
    /// New settings were stored.
    ConfigApplied,
    /// The message was refused; a `Rejected` event is in the outbox (same transaction)
    /// and its down seq counts as done: the OMS sends a new message to try again.
    Refused {
        /// Why.
        reason: RejectReason,
        /// For a person.
        detail: String,
    },
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskState {
    /// Not started.
    Open,
    /// Started, or partly picked.
    InProgress,
    /// Postponed to the end of the path.
    Skipped,
    /// Every unit picked.
    Picked,
    /// Closed with fewer units than asked for.
    Short,
    /// Taken away by the OMS (tombstone).
    Revoked,
    /// Its order was cancelled (tombstone).
    Cancelled,
    /// Taken away after units were picked: they must be put back.
    PutBackNeeded,
    /// A new wave version asks for fewer units than were picked: the surplus must be put
    /// back, then the task is picked.
    Surplus,
}

impl TaskState {
    /// Every state, in the order reports list them.
    pub const ALL: [TaskState; 9] = [
        TaskState::Open,
        TaskState::InProgress,
        TaskState::Skipped,
        TaskState::Picked,
        TaskState::Short,
        TaskState::Revoked,
        TaskState::Cancelled,
        TaskState::PutBackNeeded,
        TaskState::Surplus,
    ];

    /// The name stored in the database and shown in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Open => "open",
            TaskState::InProgress => "in_progress",
            TaskState::Skipped => "skipped",
            TaskState::Picked => "picked",
            TaskState::Short => "short",
            TaskState::Revoked => "revoked",
            TaskState::Cancelled => "cancelled",
            TaskState::PutBackNeeded => "put_back",
            TaskState::Surplus => "surplus",
        }
    }

    fn parse(s: &str) -> Result<TaskState, StoreError> {
        TaskState::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown task state {s:?}")))
    }

    /// Whether the OMS took the task away (its units, if any, go back or went back).
    pub fn is_taken_away(self) -> bool {
        matches!(
            self,
            TaskState::Revoked | TaskState::Cancelled | TaskState::PutBackNeeded
        )
    }

    /// Whether the task needs nothing more from the picker.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Picked | TaskState::Short | TaskState::Revoked | TaskState::Cancelled
        )
    }
}

/// A GTIN a task's item may be scanned by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gtin {
    /// GTIN-14.
    pub gtin: String,
    /// Units one scan counts for.
    pub pack_qty: u32,
}

/// What must be captured per unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureFlags {
    /// Lot (AI 10).
    pub lot: bool,
    /// Serial (AI 21).
    pub serial: bool,
    /// Expiry (AI 17).
    pub expiry: bool,
}

/// A task as the pick workflow works from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    /// OMS task id.
    pub task_id: u64,
    /// Wave it belongs to.
    pub wave_id: u64,
    /// The wave's priority (higher first).
    pub priority: u8,
    /// The wave's cutoff, unix seconds.
    pub cutoff: u64,
    /// Order.
    pub order_id: String,
    /// Order line.
    pub order_line: u32,
    /// Location code.
    pub location: String,
    /// Position in the walking path.
    pub pick_seq: u32,
    /// The location's check code.
    pub location_check: u8,
    /// GTINs the item may be scanned by.
    pub gtins: Vec<Gtin>,
    /// Item number.
    pub sku: String,
    /// Description.
    pub description: String,
    /// Units to pick.
    pub qty: u32,
    /// Units picked so far (undone picks excluded).
    pub picked_qty: u32,
    /// What to capture per unit.
    pub capture: CaptureFlags,
    /// Whether the units go into a tote.
    pub tote_required: bool,
    /// Where the task is.
    pub state: TaskState,
    /// Unix seconds of the last change.
    pub updated_at: u64,
    /// Units put back after a new wave version asked for fewer than were picked: once
    /// any are, the task's picks can no longer be undone.
    pub put_back_qty: u32,
}

impl TaskRow {
    /// Units still to pick.
    pub fn remaining(&self) -> u32 {
        self.qty.saturating_sub(self.picked_qty)
    }
}

/// One pick confirmation from the workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickConfirmation {
    /// Task.
    pub task_id: u64,
    /// Units picked in this confirmation.
    pub qty: u32,
    /// Lot, where captured.
    pub lot: Option<String>,
    /// Serial, where captured.
    pub serial: Option<String>,
    /// Expiry, where captured.
    pub expiry: Option<Date>,
    /// Tote, where required.
    pub tote: Option<String>,
}

/// Settings that change at run time (from [`StoreConfig`] and the OMS's `ConfigUpdate`).
#[derive(Debug, Clone)]
struct Settings {
    max_bytes: u64,
    alarm_pct: u8,
    retention_s: u64,
}

/// The synchronous store: one SQLite connection. Exactly one `Db` writes a file at a
/// time (the agent's store thread); others may open it to read.
pub struct Db {
    conn: Connection,
    settings: Settings,
    /// Highest outbox seq ever written; the next event gets `high_seq + 1`. Advanced only
    /// after a commit, so a failed transaction never burns a seq.
    high_seq: u64,
    /// This database's incarnation: a random id made when the file was created (or first
    /// opened by a build that knows incarnations). Event seqs are scoped to it.
    incarnation: u64,
    /// The configured durability, restored after a commit that does not need it.
    synchronous: Synchronous,
}

/// An open write transaction with the outbox seq it has reached.
pub(crate) struct Tx<'c> {
    tx: Transaction<'c>,
    high: u64,
    now: u64,
    incarnation: u64,
}

/// SQLite page cache, in KiB when negative: 8 MiB holds a 10,000-task wave's pages, so
/// applying one does not spill to the WAL before its commit (the default is 2 MiB).
const CACHE_SIZE: i64 = -8192;

/// u64 ids (OMS ids may use all 64 bits) are stored bit-for-bit as SQLite's i64.
fn sql(v: u64) -> i64 {
    v as i64
}

/// The inverse of [`sql`].
fn unsql(v: i64) -> u64 {
    v as u64
}

/// Turns on SQLite's query planner stability guarantee for `conn`. Without it, a cached
/// statement whose plan looked at a bound value (any `max()`, `ORDER BY .. LIMIT`, `LIMIT ?`)
/// is compiled again on every use: rusqlite clears the bindings when a statement goes back
/// to its cache, and binding after that expires the plan. That recompiling was a quarter of
/// the OMS side's time in `scripts/bench --only down`. The plans do not depend on
/// statistics either way (nothing runs `ANALYZE`).
pub(crate) fn stable_plans(conn: &Connection) -> Result<(), StoreError> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

impl Db {
    /// Opens (creating if needed) the database at `path`, sets the pragmas (WAL, the
    /// configured `synchronous`, busy timeout, foreign keys) and runs the migrations.
    pub fn open(path: &Path, cfg: &StoreConfig) -> Result<Db, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(cfg.busy_timeout)?;
        // journal_mode returns the mode it set; WAL lets `floorhand status` read while the
        // agent writes, and makes each commit one append plus one sync.
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Invalid(format!(
                "{} cannot use write-ahead logging (journal_mode is {mode}); put the \
                 database on a local disk",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", cfg.synchronous.pragma())?;
        conn.pragma_update(None, "cache_size", CACHE_SIZE)?;
        conn.pragma_update(None, "foreign_keys", true)?;
        stable_plans(&conn)?;
        bulk::register(&conn)?;
        schema::migrate(&mut conn)?;
        let mut db = Db {
            conn,
            settings: Settings {
                max_bytes: cfg.max_bytes,
                alarm_pct: cfg.alarm_pct,
                retention_s: cfg.retention.as_secs(),
            },
            high_seq: 0,
            incarnation: 0,
            synchronous: cfg.synchronous,
        };
        db.high_seq = outbox::load_high_seq(&db.conn)?;
        db.incarnation = meta::load_or_make_incarnation(&db.conn)?;
        db.settings = limits::load_settings(&db.conn, db.settings.clone())?;
        // Recorded so that `floorhand status` (which has no config) reports the same
        // percentage the agent acts on.
        limits::record_limit(&db.conn, cfg.max_bytes)?;
        Ok(db)
    }

    /// Opens an existing database read-only, for reports. Never creates a file and never
    /// migrates.
    pub fn open_read_only(path: &Path) -> Result<Db, StoreError> {
        if !path.is_file() {
            return Err(StoreError::NoDatabase(path.to_path_buf()));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        stable_plans(&conn)?;
        let found = schema::version(&conn)?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if found < SCHEMA_VERSION {
            return Err(StoreError::SchemaTooOld {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let defaults = StoreConfig::default();
        let mut db = Db {
            settings: Settings {
                max_bytes: limits::recorded_limit(&conn)?.unwrap_or(defaults.max_bytes),
                alarm_pct: defaults.alarm_pct,
                retention_s: defaults.retention.as_secs(),
            },
            conn,
            high_seq: 0,
            incarnation: 0,
            synchronous: defaults.synchronous,
        };
        db.high_seq = outbox::load_high_seq(&db.conn)?;
        db.incarnation = meta::incarnation(&db.conn)?;
        db.settings = limits::load_settings(&db.conn, db.settings.clone())?;
        Ok(db)
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction and commits. The outbox seq advances
    /// only when the commit succeeded.
    fn write<R>(
        &mut self,
        now: u64,
        f: impl FnOnce(&mut Tx<'_>, &Settings) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut t = Tx {
            tx,
            high: self.high_seq,
            now,
            incarnation: self.incarnation,
        };
        let r = f(&mut t, &self.settings)?;
        let high = t.high;
        t.tx.commit()?;
        self.high_seq = high;
        Ok(r)
    }

    /// Runs `f` with no disk sync at its commits, then restores the configured durability.
    /// For writes a power loss may undo without harm: what they record is done again
    /// (an acked row comes back and is re-sent, then dropped by the OMS as a duplicate; a
    /// row marked sent is marked again). With WAL, the next synced commit syncs these too.
    fn unsynced<R>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let relax = self.synchronous == Synchronous::Full;
        if relax {
            self.conn
                .pragma_update(None, "synchronous", Synchronous::Normal.pragma())?;
        }
        let result = f(self);
        if relax {
            self.conn
                .pragma_update(None, "synchronous", self.synchronous.pragma())?;
        }
        result
    }

    /// `PRAGMA integrity_check`: `["ok"]` for a sound file, else SQLite's findings.
    pub fn integrity_check(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        schema::version(&self.conn)
    }
}

/// A job for the store thread.
type Job = Box<dyn FnOnce(&mut Db) + Send>;

/// The async handle: the [`Db`] runs on its own thread and jobs reach it over a channel,
/// so no tokio worker ever blocks on a disk sync. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl Store {
    /// Opens the database (on the calling thread, so open errors come back here) and
    /// starts the store thread. The thread ends when the last handle is dropped.
    pub fn open(path: &Path, cfg: StoreConfig) -> Result<Store, StoreError> {
        let mut db = Db::open(path, &cfg)?;
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("floorhand-store".into())
            .spawn(move || {
                for job in rx {
                    job(&mut db);
                }
            })
            .map_err(StoreError::Thread)?;
        Ok(Store { jobs })
    }

    /// Runs `f` on the store thread and returns its result. `Err` only if the store
    /// thread is gone; `f`'s own errors are inside `R`.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Db) -> R + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |db| {
                // The caller may have given up waiting; its result is then dropped.
                let _ = tx.send(f(db));
            }))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)
    }
}
