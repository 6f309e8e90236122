//! The schema as a list of migration steps, tracked in `PRAGMA user_version`.
//!
//! Step `n` takes a database from version `n` to `n + 1`. Steps are never edited once
//! released, only appended, so every historical schema can be rebuilt by running the first
//! `n` steps ([`migrate_to`]), which is what the migration tests do. Two were edited after
//! their release (v6 and v7, see [`v8`]); the frozen databases in `agent/tests/fixtures`
//! hold a file of each released form, and a new step repairs what the old forms wrote.

use rusqlite::{Connection, Transaction};

use super::StoreError;

/// Version 1: the picking core: waves, tasks, picks, outbox, inbox and counters.
const V1: &str = "
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE waves (
    wave_id      INTEGER PRIMARY KEY,
    version      INTEGER NOT NULL,
    priority     INTEGER NOT NULL,
    cutoff       INTEGER NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('open', 'done')),
    received_at  INTEGER NOT NULL,
    completed_at INTEGER
);

CREATE TABLE tasks (
    task_id        INTEGER PRIMARY KEY,
    wave_id        INTEGER NOT NULL,
    wave_version   INTEGER NOT NULL,
    order_id       TEXT NOT NULL,
    order_line     INTEGER NOT NULL,
    location       TEXT NOT NULL,
    pick_seq       INTEGER NOT NULL,
    location_check INTEGER NOT NULL,
    gtins          TEXT NOT NULL,
    sku            TEXT NOT NULL,
    description    TEXT NOT NULL,
    qty            INTEGER NOT NULL,
    capture_lot    INTEGER NOT NULL,
    capture_serial INTEGER NOT NULL,
    capture_expiry INTEGER NOT NULL,
    tote_required  INTEGER NOT NULL,
    state          TEXT NOT NULL,
    picked_qty     INTEGER NOT NULL DEFAULT 0,
    ended          TEXT CHECK (ended IN ('revoked', 'cancelled')),
    last_seq       INTEGER NOT NULL DEFAULT 0,
    updated_at     INTEGER NOT NULL,
    completed_at   INTEGER
);
-- Not on state: a confirmation then changes no index entry of its task.
CREATE INDEX tasks_by_wave ON tasks (wave_id, wave_version);
CREATE INDEX tasks_by_order ON tasks (order_id);

CREATE TABLE picks (
    pick_id  INTEGER PRIMARY KEY,
    task_id  INTEGER NOT NULL,
    qty      INTEGER NOT NULL,
    lot      TEXT,
    serial   TEXT,
    expiry   INTEGER,
    tote     TEXT,
    operator INTEGER NOT NULL,
    at       INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    undone   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX picks_by_task ON picks (task_id);

CREATE TABLE outbox (
    seq     INTEGER PRIMARY KEY,
    created INTEGER NOT NULL,
    sent    INTEGER NOT NULL DEFAULT 0,
    payload BLOB NOT NULL
);

CREATE TABLE inbox (
    msg_id     INTEGER PRIMARY KEY,
    applied_at INTEGER NOT NULL
);
";

/// Version 2: operator sessions and the audit log of every scan.
const V2: &str = "
CREATE TABLE sessions (
    session_id INTEGER PRIMARY KEY,
    operator   INTEGER NOT NULL,
    badge      TEXT NOT NULL,
    login_at   INTEGER NOT NULL,
    logout_at  INTEGER
);

CREATE TABLE audit (
    audit_id INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    operator INTEGER NOT NULL,
    raw      BLOB NOT NULL,
    outcome  TEXT NOT NULL
);
CREATE INDEX audit_by_time ON audit (at);
";

/// Version 3: pack stations: pack orders, their totes and lines, and label print jobs.
const V3: &str = "
CREATE TABLE pack_orders (
    order_id    TEXT PRIMARY KEY,
    carrier     TEXT NOT NULL,
    service     TEXT NOT NULL,
    tracking    TEXT NOT NULL,
    ship_from   TEXT NOT NULL,
    ship_to     TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('open', 'done', 'cancelled')),
    received_at INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE pack_totes (
    tote     TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES pack_orders (order_id) ON DELETE CASCADE
);

CREATE TABLE pack_lines (
    order_id       TEXT NOT NULL REFERENCES pack_orders (order_id) ON DELETE CASCADE,
    line_no        INTEGER NOT NULL,
    order_line     INTEGER NOT NULL,
    gtins          TEXT NOT NULL,
    sku            TEXT NOT NULL,
    description    TEXT NOT NULL,
    qty            INTEGER NOT NULL,
    capture_lot    INTEGER NOT NULL,
    capture_serial INTEGER NOT NULL,
    capture_expiry INTEGER NOT NULL,
    unit_weight_g  INTEGER NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

CREATE TABLE print_jobs (
    job_id  INTEGER PRIMARY KEY AUTOINCREMENT,
    sscc    TEXT NOT NULL,
    zpl     BLOB NOT NULL,
    created INTEGER NOT NULL,
    state   TEXT NOT NULL CHECK (state IN ('pending', 'printed', 'failed')),
    fault   TEXT,
    done_at INTEGER
);
";

/// Version 4: one index on tasks instead of two. `(wave_id, order_id)` serves a wave's
/// tasks (its prefix) and an order's tasks (one seek per wave, see `cancel_order`), so
/// applying a wave writes one index entry per task, not two.
const V4: &str = "
DROP INDEX tasks_by_wave;
DROP INDEX tasks_by_order;
CREATE INDEX tasks_by_wave_order ON tasks (wave_id, order_id);
";

/// Version 5: what went into each closed carton (SSCC), written with its `CartonClosed`;
/// and when the printer took a label it still held in its buffer (never sent twice).
const V5: &str = "
ALTER TABLE print_jobs ADD COLUMN sent_at INTEGER;

CREATE TABLE cartons (
    sscc       TEXT PRIMARY KEY,
    order_id   TEXT NOT NULL,
    carton_no  INTEGER NOT NULL,
    weight_g   INTEGER NOT NULL,
    short_ship TEXT,
    operator   INTEGER NOT NULL,
    closed_at  INTEGER NOT NULL
);
CREATE INDEX cartons_by_order ON cartons (order_id);

CREATE TABLE carton_items (
    sscc       TEXT NOT NULL REFERENCES cartons (sscc) ON DELETE CASCADE,
    item_no    INTEGER NOT NULL,
    order_line INTEGER NOT NULL,
    gtin       TEXT NOT NULL,
    sku        TEXT NOT NULL,
    qty        INTEGER NOT NULL,
    lot        TEXT,
    serial     TEXT,
    expiry     TEXT,
    PRIMARY KEY (sscc, item_no)
);
";

/// Version 6.
/// - Protocol v2: a wave that arrived damaged is marked for repair, and the same version
///   is accepted once more. Down messages are deduplicated by their per-device down seq
///   (kept in `meta`), so the inbox of message ids is no longer written.
/// - Units of a task already put back. A task keeps every pick row (its `picked_qty` is
///   what the OMS was told), so what the picker still holds is `picked_qty - put_back_qty`;
///   a new wave version asking for fewer units than that makes the surplus a put-back
///   (state `surplus`) without forgetting a pick.
const V6: &str = "
ALTER TABLE waves ADD COLUMN needs_repair INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN put_back_qty INTEGER NOT NULL DEFAULT 0;
";

/// Version 7: the pick path through an index, so the picker reads the next tasks of its
/// path (a window) instead of holding every task in memory (issue 15).
/// - `tasks.priority`: the wave's priority, copied to each task so one index can order
///   the whole path (an index cannot reach into `waves`). Kept equal to the wave's by every
///   wave apply; filled here for the tasks still on a path.
/// - `tasks_path`: the path order, as `pick::Picker` orders it: skipped tasks last, in the
///   order they were skipped (a skipped task's last event is its `Skipped`, so its
///   `last_seq` says when), then priority (high first), the walking sequence and the
///   location (and the task id, the rowid every index entry ends with). Partial: only
///   tasks on the path are in it, so a window never steps over closed work.
/// - `tasks_put_back`: the few tasks whose units must go back (taken away after a pick,
///   or a surplus), so finding them is no scan of the table.
///
/// The partial indexes' conditions are written as `=` joined by `OR`, not `IN (...)`:
/// SQLite evaluates them on every insert and update of a task, and it builds a temporary
/// table for an `IN` list of three values each time (measured: it made applying a wave
/// and every confirmation markedly slower).
const V7: &str = "
ALTER TABLE tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
UPDATE tasks SET priority = COALESCE(
        (SELECT w.priority FROM waves w WHERE w.wave_id = tasks.wave_id), 0)
    WHERE state IN ('open', 'in_progress', 'skipped', 'put_back', 'surplus');
CREATE INDEX tasks_path ON tasks (
        (CASE state WHEN 'skipped' THEN last_seq ELSE 0 END), priority DESC, pick_seq, location)
    WHERE state = 'open' OR state = 'in_progress' OR state = 'skipped';
CREATE INDEX tasks_put_back ON tasks (task_id) WHERE state = 'put_back' OR state = 'surplus';
";

/// The partial indexes of the pick path as [`V7`] writes them today, built again by [`v8`].
const V8_INDEXES: &str = "
DROP INDEX tasks_path;
DROP INDEX tasks_put_back;
CREATE INDEX tasks_path ON tasks (
        (CASE state WHEN 'skipped' THEN last_seq ELSE 0 END), priority DESC, pick_seq, location)
    WHERE state = 'open' OR state = 'in_progress' OR state = 'skipped';
CREATE INDEX tasks_put_back ON tasks (task_id) WHERE state = 'put_back' OR state = 'surplus';
";

/// Version 8: one schema for every file at version 8, whichever form of v6 and v7 wrote
/// it. Two released steps were changed after their release by merges:
/// - v6 as first released (91b9d2b, protocol v2) added only `waves.needs_repair`; the
///   merge of the picktruth branch (01b7472) added `tasks.put_back_qty` to the same step,
///   so a file written at v6 before that merge has no `put_back_qty`, and every read of a
///   task failed on it ("no such column");
/// - v7 as first released (036e171) wrote the partial indexes' conditions as `IN (...)`;
///   97033f6 changed the step to `=` joined by `OR` (cheaper on every write of a task).
///
/// The column is added where it is missing, and the two partial indexes are built again
/// as [`V7`] writes them today (the whole index from the table: tens of milliseconds for
/// 100,000 tasks, once). No data changes.
fn v8(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let has_put_back: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info('tasks') WHERE name = 'put_back_qty')",
        [],
        |r| r.get(0),
    )?;
    if !has_put_back {
        tx.execute_batch("ALTER TABLE tasks ADD COLUMN put_back_qty INTEGER NOT NULL DEFAULT 0;")?;
    }
    tx.execute_batch(V8_INDEXES)?;
    Ok(())
}

/// Version 9: the `(wave_id, order_id)` index gives way to a `wave_id` index and the
/// order map ([`super::order_map`]), filled here from the tasks table. The index entry a
/// new wave writes per task is then a `wave_id`, appended in order, where an order id
/// landed anywhere in the index. No data changes.
fn v9(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute_batch(
        "DROP INDEX tasks_by_wave_order;
         CREATE INDEX tasks_by_wave ON tasks (wave_id);
         CREATE TABLE order_tasks (
             wave_id INTEGER NOT NULL,
             bucket  INTEGER NOT NULL,
             tasks   BLOB NOT NULL,
             PRIMARY KEY (wave_id, bucket)
         ) WITHOUT ROWID;",
    )?;
    let waves: Vec<i64> = tx
        .prepare("SELECT DISTINCT wave_id FROM tasks")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for wave_id in waves {
        super::order_map::rebuild(tx, super::unsql(wave_id))?;
    }
    Ok(())
}

/// One migration step: SQL, or code for a step that must look at the file first.
enum Step {
    Sql(&'static str),
    Code(fn(&Transaction<'_>) -> Result<(), StoreError>),
}

/// Every migration step, oldest first. Append only.
const STEPS: &[Step] = &[
    Step::Sql(V1),
    Step::Sql(V2),
    Step::Sql(V3),
    Step::Sql(V4),
    Step::Sql(V5),
    Step::Sql(V6),
    Step::Sql(V7),
    Step::Code(v8),
    Step::Code(v9),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = STEPS.len() as u32;

/// The file's `user_version`.
pub(super) fn version(conn: &Connection) -> Result<u32, StoreError> {
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("schema version {v}")))
}

/// Brings the database to [`SCHEMA_VERSION`], one transaction per step.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// Brings the database to `target` (at most [`SCHEMA_VERSION`]). Tests use it to build
/// every older schema.
pub(super) fn migrate_to(conn: &mut Connection, target: u32) -> Result<(), StoreError> {
    let found = version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for step in found..target.min(SCHEMA_VERSION) {
        let tx = conn.transaction()?;
        match STEPS[step as usize] {
            Step::Sql(sql) => tx.execute_batch(sql)?,
            Step::Code(f) => f(&tx)?,
        }
        tx.pragma_update(None, "user_version", step + 1)?;
        tx.commit()?;
    }
    Ok(())
}
