//! Workflow confirmations: each writes its domain rows, the task's new state and the
//! outbox event in one transaction and returns the event's seq, so the picker's beep can
//! wait for exactly one commit.

use floorhand_protocol::oms::{Date, EventKind, Picked, ShortReason};
use rusqlite::{OptionalExtension, Row, params};

use super::codec::decode_gtins;
use super::{CaptureFlags, Db, PickConfirmation, StoreError, TaskRow, TaskState, Tx, sql, unsql};

/// Columns [`task_row`] reads, in order.
pub(super) const TASK_COLUMNS: &str = "t.task_id, t.wave_id, w.priority, w.cutoff, t.order_id,
    t.order_line, t.location, t.pick_seq, t.location_check, t.gtins, t.sku, t.description,
    t.qty, t.picked_qty, t.capture_lot, t.capture_serial, t.capture_expiry, t.tote_required,
    t.state, t.updated_at, t.put_back_qty";

pub(super) fn task_row(r: &Row<'_>) -> Result<TaskRow, StoreError> {
    let gtins: String = r.get(9)?;
    let state: String = r.get(18)?;
    Ok(TaskRow {
        task_id: unsql(r.get(0)?),
        wave_id: unsql(r.get(1)?),
        priority: r.get(2)?,
        cutoff: unsql(r.get(3)?),
        order_id: r.get(4)?,
        order_line: r.get(5)?,
        location: r.get(6)?,
        pick_seq: r.get(7)?,
        location_check: r.get(8)?,
        gtins: decode_gtins(&gtins)?,
        sku: r.get(10)?,
        description: r.get(11)?,
        qty: r.get(12)?,
        picked_qty: r.get(13)?,
        capture: CaptureFlags {
            lot: r.get(14)?,
            serial: r.get(15)?,
            expiry: r.get(16)?,
        },
        tote_required: r.get(17)?,
        state: TaskState::parse(&state)?,
        updated_at: unsql(r.get(19)?),
        put_back_qty: r.get(20)?,
    })
}

/// GS1 dates are stored as one integer, `YYYYMMDD`.
fn date_to_sql(d: Date) -> i64 {
    i64::from(d.year) * 10_000 + i64::from(d.month) * 100 + i64::from(d.day)
}

/// The state, quantities and wave of a task, read inside a transaction.
struct TaskProgress {
    state: TaskState,
    qty: u32,
    picked: u32,
    /// Of `picked`, units already put back (a surplus a new wave version left over).
    put_back: u32,
    wave_id: u64,
    location: String,
}

impl TaskProgress {
    /// Units the picker holds: picked and not put back.
    fn held(&self) -> u32 {
        self.picked.saturating_sub(self.put_back)
    }
}

impl Tx<'_> {
    fn progress(&self, task_id: u64) -> Result<TaskProgress, StoreError> {
        let row: Option<(String, u32, u32, u32, i64, String)> = self
            .tx
            .prepare_cached(
                "SELECT state, qty, picked_qty, put_back_qty, wave_id, location FROM tasks
                 WHERE task_id = ?1",
            )?
            .query_row([sql(task_id)], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .optional()?;
        let (state, qty, picked, put_back, wave_id, location) =
            row.ok_or(StoreError::NotFound {
                what: "task",
                id: task_id.to_string(),
            })?;
        Ok(TaskProgress {
            state: TaskState::parse(&state)?,
            qty,
            picked,
            put_back,
            wave_id: unsql(wave_id),
            location,
        })
    }

    /// Sets a task's state, picked quantity and last event. (The wave's `status` is
    /// settled later, by the purge: the hot path stays at one row per table.)
    fn set_task(
        &mut self,
        task_id: u64,
        state: TaskState,
        picked: u32,
        seq: u64,
    ) -> Result<(), StoreError> {
        let completed = state.is_final().then_some(sql(self.now));
        self.tx
            .prepare_cached(
                "UPDATE tasks SET state = ?2, picked_qty = ?3, last_seq = ?4, updated_at = ?5,
                    completed_at = ?6
                 WHERE task_id = ?1",
            )?
            .execute(params![
                sql(task_id),
                state.as_str(),
                picked,
                sql(seq),
                sql(self.now),
                completed
            ])?;
        Ok(())
    }
}

/// Refuses work on a task the picker can no longer work on.
fn workable(task_id: u64, p: &TaskProgress) -> Result<(), StoreError> {
    match p.state {
        TaskState::Open | TaskState::InProgress | TaskState::Skipped => Ok(()),
        other => Err(StoreError::Invalid(format!(
            "task {task_id} is {}; it cannot be picked any more",
            other.as_str()
        ))),
    }
}

impl Db {
    /// The picker arrived at the task's location. A task already in progress (left so by
    /// an undo, a crash or a restart) is resumed the same way: the picker is sent back to
    /// its location, so scanning it must always work. Each arrival is a `TaskStarted`.
    pub fn start_task(&mut self, now: u64, operator: u32, task_id: u64) -> Result<u64, StoreError> {
        self.write(now, |t, _| {
            let p = t.progress(task_id)?;
            workable(task_id, &p)?;
            let seq = t.event(operator, EventKind::TaskStarted { task_id })?;
            t.set_task(task_id, TaskState::InProgress, p.picked, seq)?;
            Ok(seq)
        })
    }

    /// Units picked: the pick row, the task's new state and the `Picked` event, one commit.
    pub fn confirm_pick(
        &mut self,
        now: u64,
        operator: u32,
        pick: &PickConfirmation,
    ) -> Result<u64, StoreError> {
        self.write(now, |t, _| {
            let task_id = pick.task_id;
            let p = t.progress(task_id)?;
            workable(task_id, &p)?;
            let picked = p
                .picked
                .checked_add(pick.qty)
                .filter(|&n| pick.qty > 0 && n <= p.qty)
                .ok_or_else(|| {
                    StoreError::Invalid(format!(
                        "task {task_id}: {} units picked of {}; {} more is not allowed",
                        p.picked, p.qty, pick.qty
                    ))
                })?;
            let seq = t.event(
                operator,
                EventKind::Picked(Picked {
                    task_id,
                    qty: pick.qty,
                    lot: pick.lot.clone(),
                    serial: pick.serial.clone(),
                    expiry: pick.expiry,
                    tote: pick.tote.clone(),
                }),
            )?;
            t.tx.prepare_cached(
                "INSERT INTO picks (task_id, qty, lot, serial, expiry, tote, operator, at, seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                sql(task_id),
                pick.qty,
                pick.lot,
                pick.serial,
                pick.expiry.map(date_to_sql),
                pick.tote,
                operator,
                sql(now),
                sql(seq)
            ])?;
            let state = if picked == p.qty {
                TaskState::Picked
            } else {
                TaskState::InProgress
            };
            t.set_task(task_id, state, picked, seq)?;
            Ok(seq)
        })
    }

    /// Closes a task with fewer units than asked for. `qty` is what was picked in this
    /// last step (0 or more; it gets a pick row); the `ShortPicked` event carries the same
    /// `qty`, so the OMS's total is the sum of a task's `Picked` and `ShortPicked` units.
    pub fn short_pick(
        &mut self,
        now: u64,
        operator: u32,
        task_id: u64,
        qty: u32,
        reason: ShortReason,
    ) -> Result<u64, StoreError> {
        self.write(now, |t, _| {
            let p = t.progress(task_id)?;
            workable(task_id, &p)?;
            let picked = p
                .picked
                .checked_add(qty)
                .filter(|&n| n < p.qty)
                .ok_or_else(|| {
                    StoreError::Invalid(format!(
                        "task {task_id}: {} of {} units picked; {qty} more is not short; \
                         confirm it as a pick",
                        p.picked, p.qty
                    ))
                })?;
            let seq = t.event(
                operator,
                EventKind::ShortPicked {
                    task_id,
                    qty,
                    reason,
                },
            )?;
            if qty > 0 {
                t.tx.prepare_cached(
                    "INSERT INTO picks (task_id, qty, operator, at, seq)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    sql(task_id),
                    qty,
                    operator,
                    sql(now),
                    sql(seq)
                ])?;
            }
            t.set_task(task_id, TaskState::Short, picked, seq)?;
            Ok(seq)
        })
    }

    /// Postpones a task to the end of the path.
    pub fn skip_task(&mut self, now: u64, operator: u32, task_id: u64) -> Result<u64, StoreError> {
        self.write(now, |t, _| {
            let p = t.progress(task_id)?;
            workable(task_id, &p)?;
            let seq = t.event(operator, EventKind::Skipped { task_id })?;
            t.set_task(task_id, TaskState::Skipped, p.picked, seq)?;
            Ok(seq)
        })
    }

    /// Takes back the task's last pick confirmation, while the task is still this
    /// device's work (not revoked or cancelled).
    pub fn undo_pick(&mut self, now: u64, operator: u32, task_id: u64) -> Result<u64, StoreError> {
        self.write(now, |t, _| {
            let p = t.progress(task_id)?;
            if p.state.is_taken_away() {
                return Err(StoreError::Invalid(format!(
                    "task {task_id} is {}; it is no longer this device's to undo",
                    p.state.as_str()
                )));
            }
            // Units already on their way back (or back) cannot be un-picked as well.
            if p.state == TaskState::Surplus || p.put_back > 0 {
                return Err(StoreError::Invalid(format!(
                    "task {task_id}: a new wave version made units of it a put-back; \
                     its picks can no longer be undone"
                )));
            }
            let last: Option<(i64, u32)> =
                t.tx.prepare_cached(
                    "SELECT pick_id, qty FROM picks WHERE task_id = ?1 AND undone = 0
                     ORDER BY pick_id DESC LIMIT 1",
                )?
                .query_row([sql(task_id)], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let (pick_id, qty) = last.ok_or_else(|| {
                StoreError::Invalid(format!("task {task_id} has no pick to undo"))
            })?;
            t.tx.prepare_cached("UPDATE picks SET undone = 1 WHERE pick_id = ?1")?
                .execute([pick_id])?;
            let seq = t.event(operator, EventKind::PickUndone { task_id, qty })?;
            let picked = p.picked.saturating_sub(qty);
            let state = if picked == 0 {
                TaskState::Open
            } else {
                TaskState::InProgress
            };
            // A task closed by its last pick reopens, and so does its wave.
            t.tx.prepare_cached(
                "UPDATE waves SET status = 'open', completed_at = NULL WHERE wave_id = ?1",
            )?
            .execute([sql(p.wave_id)])?;
            t.set_task(task_id, state, picked, seq)?;
            Ok(seq)
        })
    }

    /// The picker put back the units of a task taken away after it was picked (all it
    /// holds), or the surplus a new wave version left over (the task is then picked).
    /// The picks stay: `picked_qty` is what the OMS was told; the units go to
    /// `put_back_qty`, as the `PutBack` event tells the OMS.
    pub fn confirm_put_back(
        &mut self,
        now: u64,
        operator: u32,
        task_id: u64,
    ) -> Result<u64, StoreError> {
        self.write(now, |t, _| {
            let p = t.progress(task_id)?;
            let (qty, state) = match p.state {
                TaskState::PutBackNeeded => {
                    let ended: Option<String> =
                        t.tx.prepare_cached("SELECT ended FROM tasks WHERE task_id = ?1")?
                            .query_row([sql(task_id)], |r| r.get(0))?;
                    let state = match ended.as_deref() {
                        Some("revoked") => TaskState::Revoked,
                        _ => TaskState::Cancelled,
                    };
                    (p.held(), state)
                }
                TaskState::Surplus => (p.held().saturating_sub(p.qty), TaskState::Picked),
                other => {
                    return Err(StoreError::Invalid(format!(
                        "task {task_id} is {}; it has nothing to put back",
                        other.as_str()
                    )));
                }
            };
            let seq = t.event(
                operator,
                EventKind::PutBack {
                    task_id,
                    qty,
                    location: p.location.clone(),
                },
            )?;
            t.tx.prepare_cached(
                "UPDATE tasks SET put_back_qty = put_back_qty + ?2 WHERE task_id = ?1",
            )?
            .execute(params![sql(task_id), qty])?;
            t.set_task(task_id, state, p.picked, seq)?;
            Ok(seq)
        })
    }

    /// An operator logged in: closes any open session and opens theirs.
    pub fn login(&mut self, now: u64, operator: u32, badge: &str) -> Result<u64, StoreError> {
        self.write(now, |t, _| {
            t.tx.prepare_cached("UPDATE sessions SET logout_at = ?1 WHERE logout_at IS NULL")?
                .execute([sql(now)])?;
            t.tx.prepare_cached(
                "INSERT INTO sessions (operator, badge, login_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![operator, badge, sql(now)])?;
            t.event(operator, EventKind::LoggedIn)
        })
    }

    /// The operator logged out.
    pub fn logout(&mut self, now: u64, operator: u32) -> Result<u64, StoreError> {
        self.write(now, |t, _| {
            t.tx.prepare_cached(
                "UPDATE sessions SET logout_at = ?2 WHERE operator = ?1 AND logout_at IS NULL",
            )?
            .execute(params![operator, sql(now)])?;
            t.event(operator, EventKind::LoggedOut)
        })
    }

    /// Records a scan and what became of it, for the audit log (no event).
    pub fn audit_scan(
        &mut self,
        now: u64,
        operator: u32,
        raw: &[u8],
        outcome: &str,
    ) -> Result<(), StoreError> {
        self.write(now, |t, _| {
            t.tx.prepare_cached(
                "INSERT INTO audit (at, operator, raw, outcome) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![sql(now), operator, raw, outcome])?;
            Ok(())
        })
    }

    /// Tasks the picker still has work on: in progress first, then open ones by wave
    /// priority, cutoff and walking path, then skipped ones, then put-backs (taken away,
    /// or a surplus). Here `picked_qty` is what the picker holds: for a task taken away
    /// after part of it was put back as a surplus, that is less than was picked.
    pub fn open_tasks(&self) -> Result<Vec<TaskRow>, StoreError> {
        let columns = TASK_COLUMNS.replace("t.picked_qty", "t.picked_qty - t.put_back_qty");
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {columns} FROM tasks t JOIN waves w ON w.wave_id = t.wave_id
             WHERE t.state IN ('open', 'in_progress', 'skipped', 'put_back', 'surplus')
             ORDER BY CASE t.state WHEN 'in_progress' THEN 0 WHEN 'open' THEN 1
                                   WHEN 'skipped' THEN 2 ELSE 3 END,
                      w.priority DESC, w.cutoff, t.pick_seq, t.task_id"
        ))?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(task_row(r)?);
        }
        Ok(out)
    }

    /// One task in any state, tombstones included.
    pub fn task(&self, task_id: u64) -> Result<Option<TaskRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks t JOIN waves w ON w.wave_id = t.wave_id
             WHERE t.task_id = ?1"
        ))?;
        let mut rows = stmt.query([sql(task_id)])?;
        rows.next()?.map(task_row).transpose()
    }
}
