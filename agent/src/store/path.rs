//! The pick path, read through indexes (schema v7): the next tasks in path order (a
//! window), the tasks whose units must go back, and single tasks by id. Each read costs
//! O(log n + rows read) in the number of mirrored tasks, so the picker never needs every
//! task in memory, and a scan never costs more with 100,000 tasks than with 50.
//!
//! Path order is the picker's (`pick::Picker`): skipped tasks last, in the order they were
//! skipped; then priority (high first), the walking sequence, the location code and the
//! task id. Here `picked_qty` is what the picker holds: picked, less any units already
//! put back.

use rusqlite::{OptionalExtension, Row};

use super::picks::{TASK_COLUMNS, task_row};
use super::{Db, StoreError, TaskRow, sql, unsql};

/// Pages of SQLite's cache while [`Db::path_len`] walks the path index: enough for the
/// walk (it reads each page once), far less than the index.
const COUNT_CACHE_PAGES: i64 = 16;

/// Why a task's units must go back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owed {
    /// The OMS took the task back after units were picked.
    Revoked,
    /// Its order was cancelled after units were picked.
    Cancelled,
    /// A new wave version asked for fewer units than were picked.
    Surplus,
}

/// One task as the path reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTask {
    /// The task (`picked_qty`: units the picker holds).
    pub row: TaskRow,
    /// Where a skipped task stands at the end of the path: the seq of its `Skipped`
    /// event, so tasks skipped later come later. 0 for a task that is not skipped.
    pub skip_rank: u64,
    /// For a task in state `put_back` or `surplus`: why its units go back.
    pub owed: Option<Owed>,
}

/// The columns of [`TASK_COLUMNS`] with held units, then the skip rank and the ending.
fn columns() -> String {
    format!(
        "{}, CASE t.state WHEN 'skipped' THEN t.last_seq ELSE 0 END, t.ended",
        TASK_COLUMNS.replace("t.picked_qty", "t.picked_qty - t.put_back_qty")
    )
}

/// The window: `tasks_path` in index order. CROSS JOIN keeps `tasks` the outer loop, so
/// the index gives the order (no sort); the WHERE repeats the index's own word for word,
/// so SQLite may use the partial index.
fn window_sql() -> String {
    format!(
        "SELECT {} FROM tasks t CROSS JOIN waves w ON w.wave_id = t.wave_id
         WHERE (t.state = 'open' OR t.state = 'in_progress' OR t.state = 'skipped')
         ORDER BY CASE t.state WHEN 'skipped' THEN t.last_seq ELSE 0 END,
                  t.priority DESC, t.pick_seq, t.location, t.task_id
         LIMIT ?1",
        columns()
    )
}

/// Put-backs through `tasks_put_back`, oldest task first.
fn put_back_sql() -> String {
    format!(
        "SELECT {} FROM tasks t CROSS JOIN waves w ON w.wave_id = t.wave_id
         WHERE (t.state = 'put_back' OR t.state = 'surplus')
         ORDER BY t.task_id
         LIMIT ?1",
        columns()
    )
}

fn path_task(r: &Row<'_>) -> Result<PathTask, StoreError> {
    let row = task_row(r)?;
    let skip_rank = unsql(r.get(21)?);
    let ended: Option<String> = r.get(22)?;
    let owed = match (row.state, ended.as_deref()) {
        (super::TaskState::Surplus, _) => Some(Owed::Surplus),
        (super::TaskState::PutBackNeeded, Some("revoked")) => Some(Owed::Revoked),
        (super::TaskState::PutBackNeeded, _) => Some(Owed::Cancelled),
        _ => None,
    };
    Ok(PathTask {
        row,
        skip_rank,
        owed,
    })
}

/// Reads at most `limit + 1` rows of `query` (its one parameter is the row limit):
/// `limit` rows, and whether there are more.
fn read_limited(db: &Db, query: &str, limit: usize) -> Result<(Vec<PathTask>, bool), StoreError> {
    let mut stmt = db.conn.prepare_cached(query)?;
    let asked = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
    let mut rows = stmt.query([asked])?;
    let mut out = Vec::new();
    let mut more = false;
    while let Some(r) = rows.next()? {
        if out.len() == limit {
            more = true;
            break;
        }
        out.push(path_task(r)?);
    }
    Ok((out, more))
}

impl Db {
    /// The first `limit` tasks of the pick path (open, in progress or skipped), in path
    /// order, and whether more follow. One seek into `tasks_path` and `limit` steps
    /// along it (each with one lookup of its row and its wave).
    pub fn path_window(&self, limit: usize) -> Result<(Vec<PathTask>, bool), StoreError> {
        read_limited(self, &window_sql(), limit)
    }

    /// The first `limit` tasks whose units must go back (taken away after a pick, or a
    /// surplus), oldest task first, and whether more follow. Through `tasks_put_back`.
    pub fn put_backs(&self, limit: usize) -> Result<(Vec<PathTask>, bool), StoreError> {
        read_limited(self, &put_back_sql(), limit)
    }

    /// One task in any state, as the path reads it; `None` when there is no such task
    /// (never received, or purged).
    pub fn path_task(&self, task_id: u64) -> Result<Option<PathTask>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {} FROM tasks t JOIN waves w ON w.wave_id = t.wave_id
             WHERE t.task_id = ?1",
            columns()
        ))?;
        stmt.query_row([sql(task_id)], |r| Ok(path_task(r)))
            .optional()?
            .transpose()
    }

    /// How many tasks are on the pick path. This one walks the whole of `tasks_path`
    /// (O(n), a few milliseconds per 100,000 tasks): the station asks only when the path
    /// changed from outside (at start and when a down message was applied), never per
    /// scan. It walks through a page cache of [`COUNT_CACHE_PAGES`], so the count never
    /// grows the agent's memory by the size of the index (2.8 MiB at 100,000 tasks).
    pub fn path_len(&self) -> Result<u64, StoreError> {
        self.conn
            .pragma_update(None, "cache_size", COUNT_CACHE_PAGES)?;
        let n: Result<i64, rusqlite::Error> = self
            .conn
            .prepare_cached(
                "SELECT COUNT(*) FROM tasks INDEXED BY tasks_path
                 WHERE state = 'open' OR state = 'in_progress' OR state = 'skipped'",
            )
            .and_then(|mut stmt| stmt.query_row([], |r| r.get(0)));
        // Back to the usual cache whatever the count did.
        self.conn
            .pragma_update(None, "cache_size", super::CACHE_SIZE)?;
        Ok(unsql(n?))
    }
}

#[cfg(test)]
mod tests {
    use floorhand_protocol::oms::{Down, ShortReason, Task};

    use super::*;
    use crate::store::fixtures::{sample_tasks, sample_wave};
    use crate::store::{PickConfirmation, StoreConfig, Synchronous, TaskState};

    const NOW: u64 = 1_795_300_000;

    fn open() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            synchronous: Synchronous::Normal,
            ..StoreConfig::default()
        };
        let db = Db::open(&dir.path().join("floorhand.db"), &cfg).unwrap();
        (dir, db)
    }

    fn apply(db: &mut Db, down: Down) {
        let head = db.next_down_header().unwrap();
        db.apply_down(head, &down, NOW).unwrap();
    }

    fn wave(wave_id: u64, version: u32, priority: u8, tasks: Vec<Task>) -> Down {
        let mut w = sample_wave(wave_id, version, tasks);
        w.priority = priority;
        Down::WaveAssigned(w)
    }

    fn ids(tasks: &[PathTask]) -> Vec<u64> {
        tasks.iter().map(|t| t.row.task_id).collect()
    }

    fn confirm(db: &mut Db, task_id: u64, qty: u32) {
        let pick = PickConfirmation {
            task_id,
            qty,
            lot: None,
            serial: None,
            expiry: None,
            tote: None,
        };
        db.confirm_pick(NOW, 7, &pick).unwrap();
    }

    #[test]
    fn the_window_lists_the_path_by_priority_then_walking_order_and_skipped_tasks_last() {
        let (_dir, mut db) = open();
        // Wave 1 (priority 5): tasks 1-4 in walking order; wave 2 (priority 9): 11-12,
        // the second one early in the walk.
        apply(&mut db, wave(1, 1, 5, sample_tasks(1, 4, 2)));
        let mut urgent = sample_tasks(11, 2, 2);
        urgent[1].pick_seq = 0;
        urgent[1].location = "A-00-00-A".into();
        apply(&mut db, wave(2, 1, 9, urgent));
        db.skip_task(NOW, 7, 2).unwrap();
        db.skip_task(NOW, 7, 12).unwrap();
        db.skip_task(NOW, 7, 1).unwrap();
        db.start_task(NOW, 7, 3).unwrap();

        let (all, more) = db.path_window(10).unwrap();
        // Skipped last, in the order they were skipped, whatever their priority.
        assert_eq!(ids(&all), [11, 3, 4, 2, 12, 1]);
        assert!(!more);
        assert_eq!(all[0].row.priority, 9);
        assert_eq!(all[0].skip_rank, 0);
        assert!(all[3].skip_rank > 0 && all[3].skip_rank < all[4].skip_rank);
        assert_eq!(all[1].row.state, TaskState::InProgress);

        let (first, more) = db.path_window(2).unwrap();
        assert_eq!((ids(&first), more), (vec![11, 3], true));
        let (none, more) = db.path_window(0).unwrap();
        assert_eq!((none.len(), more), (0, true));
        assert_eq!(db.path_len().unwrap(), 6);

        // A skipped task the picker starts is back on the path at its place.
        db.start_task(NOW, 7, 2).unwrap();
        assert_eq!(ids(&db.path_window(10).unwrap().0), [11, 2, 3, 4, 12, 1]);
        // Closed work leaves the path.
        confirm(&mut db, 11, 2);
        db.short_pick(NOW, 7, 3, 0, ShortReason::NotEnough).unwrap();
        assert_eq!(ids(&db.path_window(10).unwrap().0), [2, 4, 12, 1]);
        assert_eq!(db.path_len().unwrap(), 4);
    }

    #[test]
    fn a_new_wave_version_moves_its_tasks_to_its_new_priority() {
        let (_dir, mut db) = open();
        apply(&mut db, wave(1, 1, 5, sample_tasks(1, 2, 2)));
        apply(&mut db, wave(2, 1, 6, sample_tasks(11, 2, 2)));
        confirm(&mut db, 2, 1);
        assert_eq!(ids(&db.path_window(10).unwrap().0), [11, 12, 1, 2]);
        // Version 2 raises wave 1 above wave 2, for a task with picks too.
        apply(&mut db, wave(1, 2, 7, sample_tasks(1, 2, 2)));
        let (w, _) = db.path_window(10).unwrap();
        assert_eq!(ids(&w), [1, 2, 11, 12]);
        assert_eq!(w[1].row.picked_qty, 1);
    }

    #[test]
    fn put_backs_list_work_taken_away_after_a_pick_and_surpluses_with_why() {
        let (_dir, mut db) = open();
        let mut tasks = sample_tasks(1, 4, 3);
        tasks[0].order_id = "SO-CANCEL".into();
        apply(&mut db, wave(1, 1, 5, tasks.clone()));
        confirm(&mut db, 1, 2);
        confirm(&mut db, 2, 1);
        confirm(&mut db, 3, 3);
        assert_eq!(db.put_backs(10).unwrap().0, []);
        apply(
            &mut db,
            Down::OrderCancelled {
                order_id: "SO-CANCEL".into(),
            },
        );
        apply(
            &mut db,
            Down::TasksRevoked {
                wave_id: 1,
                task_ids: vec![2],
            },
        );
        // Version 2 asks for 1 unit of task 3, of which 3 are picked; task 4 is untouched.
        let mut v2 = tasks[2..].to_vec();
        v2[0].qty = 1;
        apply(&mut db, wave(1, 2, 5, v2));
        let (owed, more) = db.put_backs(10).unwrap();
        let got: Vec<_> = owed
            .iter()
            .map(|t| (t.row.task_id, t.owed, t.row.picked_qty))
            .collect();
        assert_eq!(
            got,
            [
                (1, Some(Owed::Cancelled), 2),
                (2, Some(Owed::Revoked), 1),
                (3, Some(Owed::Surplus), 3),
            ]
        );
        assert!(!more);
        assert_eq!(
            (db.put_backs(2).unwrap().0.len(), db.put_backs(2).unwrap().1),
            (2, true)
        );
        // Once back, a task is no put-back any more, and holds what it asks for.
        db.confirm_put_back(NOW, 7, 3).unwrap();
        assert_eq!(ids(&db.put_backs(10).unwrap().0), [1, 2]);
        let t = db.path_task(3).unwrap().unwrap();
        assert_eq!(
            (t.row.state, t.row.picked_qty, t.owed),
            (TaskState::Picked, 1, None)
        );
        assert_eq!(db.path_task(99).unwrap(), None);
        assert_eq!(ids(&db.path_window(10).unwrap().0), [4]);
    }

    /// The plan SQLite chooses for `sql`, one line per step.
    fn plan(db: &Db, sql: &str) -> String {
        let mut stmt = db
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let rows = stmt
            .query_map([16], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        rows.join("\n")
    }

    #[test]
    fn every_path_read_goes_through_an_index_and_never_sorts() {
        let (_dir, mut db) = open();
        apply(&mut db, wave(1, 1, 5, sample_tasks(1, 50, 2)));
        let p = plan(&db, &window_sql());
        assert!(p.contains("USING INDEX tasks_path"), "{p}");
        assert!(!p.contains("TEMP B-TREE") && !p.contains("SCAN w"), "{p}");
        let p = plan(&db, &put_back_sql());
        assert!(p.contains("USING INDEX tasks_put_back"), "{p}");
        assert!(!p.contains("TEMP B-TREE"), "{p}");
    }
}
