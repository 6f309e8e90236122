//! Applying down messages from the OMS: one transaction each, deduplicated by message id.
//!
//! A wave is applied only if its version is newer than the stored one; its tasks are
//! upserted, and tasks of the wave missing from the new version are revoked. Work taken
//! away is tombstoned, never deleted; if units were already picked the task waits for a
//! put-back and the OMS gets a `Conflict` event. A new version never discards a confirmed
//! unit: for a task with picks it changes only what is still to pick, and a surplus
//! (fewer units asked for than picked) becomes a put-back and a `Conflict` too.

use std::cmp::Ordering;

use floorhand_protocol::oms::{
    ConfigUpdate, Down, DownHeader, EventKind, GtinPack, PackOrder, RejectReason, Task, Wave,
    wave_digest,
};
use rusqlite::{OptionalExtension, params};

use super::DownPoint;
use super::bulk;
use super::codec::encode_gtins;
use super::conditions::WAVE_IS_DONE;
use super::limits;
use super::meta::{
    CFG_ALARM_PCT, CFG_RETENTION_H, CFG_STATUS_INTERVAL_S, DOWN_INCARNATION, DOWN_THROUGH,
    down_point, meta_set,
};
use super::order_map;
use super::{Applied, Db, Settings, StoreError, TaskState, Tx, sql, unsql};
use crate::ledger::{self, Placement};

/// Inserts a task (fresh values for every column the OMS owns).
const INSERT_TASK: &str = "INSERT INTO tasks (task_id, wave_id, wave_version, order_id, order_line,
        location, pick_seq, location_check, gtins, sku, description, qty, capture_lot,
        capture_serial, capture_expiry, tote_required, state, updated_at, priority)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, 'open', ?17,
        ?18)";

/// [`INSERT_TASK`] for a whole wave from `wave_tasks(?1)`, skipping ids already stored
/// (`WHERE true` tells SQLite's parser that `ON CONFLICT` is the upsert clause).
const INSERT_WAVE_TASKS: &str = "INSERT INTO tasks (task_id, wave_id, wave_version, order_id,
        order_line, location, pick_seq, location_check, gtins, sku, description, qty,
        capture_lot, capture_serial, capture_expiry, tote_required, state, updated_at, priority)
     SELECT task_id, ?2, ?3, order_id, order_line, location, pick_seq, location_check, gtins,
        sku, description, qty, capture_lot, capture_serial, capture_expiry, tote_required,
        'open', ?4, ?5
     FROM wave_tasks(?1) WHERE true
     ON CONFLICT (task_id) DO NOTHING";

/// With [`INSERT_TASK`]: an existing task takes every new value only where nothing was
/// ever picked for it (a skipped one stays skipped). A task with picks is left to
/// [`Tx::revise_task`], which keeps every confirmed unit. (`=` joined by `OR`, not an `IN`
/// list: SQLite would build a temporary table for the list on every task.)
const ON_CONFLICT_UPDATE: &str = "ON CONFLICT (task_id) DO UPDATE SET
        wave_id = excluded.wave_id, wave_version = excluded.wave_version,
        order_id = excluded.order_id, order_line = excluded.order_line,
        location = excluded.location, pick_seq = excluded.pick_seq,
        location_check = excluded.location_check, gtins = excluded.gtins,
        sku = excluded.sku, description = excluded.description, qty = excluded.qty,
        capture_lot = excluded.capture_lot, capture_serial = excluded.capture_serial,
        capture_expiry = excluded.capture_expiry, tote_required = excluded.tote_required,
        priority = excluded.priority,
        state = CASE tasks.state WHEN 'skipped' THEN 'skipped' ELSE 'open' END,
        ended = NULL, completed_at = NULL, updated_at = excluded.updated_at
     WHERE tasks.picked_qty = 0
       AND (tasks.state = 'open' OR tasks.state = 'skipped' OR tasks.state = 'revoked'
            OR tasks.state = 'cancelled')";

/// Waves of at least this many tasks have their digest and order map worked out on a
/// second thread beside the insert ([`Tx::apply_wave`]); below it, starting the thread
/// would cost more than it saves (a 10,000-task wave's side work is about 2 ms).
pub(super) const SIDE_THREAD_TASKS: usize = 1000;

/// How work was taken away from the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    Revoked,
    Cancelled,
}

impl Ending {
    fn state(self) -> TaskState {
        match self {
            Ending::Revoked => TaskState::Revoked,
            Ending::Cancelled => TaskState::Cancelled,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Ending::Revoked => "revoked",
            Ending::Cancelled => "cancelled",
        }
    }
}

/// What ending one task did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Tombstoned,
    PutBack,
    Untouched,
}

/// Tallies of tombstoned tasks.
#[derive(Debug, Default)]
struct Tally {
    tasks: usize,
    put_backs: usize,
}

impl Tally {
    fn add(&mut self, e: Ended) {
        match e {
            Ended::Tombstoned => self.tasks += 1,
            Ended::PutBack => {
                self.tasks += 1;
                self.put_backs += 1;
            }
            Ended::Untouched => {}
        }
    }
}

/// Rejects a GTIN the column encoding could not carry; real GTINs are 14 digits.
fn check_gtins(task_id: u64, gtins: &[GtinPack]) -> Result<(), String> {
    match gtins
        .iter()
        .find(|g| g.gtin.is_empty() || !g.gtin.bytes().all(|b| b.is_ascii_digit()))
    {
        Some(g) => Err(format!(
            "task {task_id} has GTIN {:?}; a GTIN is digits only",
            g.gtin
        )),
        None => Ok(()),
    }
}

/// Where a sequenced down message falls in the device's down stream. Pure.
fn place(point: DownPoint, oms_incarnation: u64, dseq: u64) -> Placement {
    if oms_incarnation == point.oms_incarnation {
        ledger::place(point.through, dseq)
    } else {
        // Another OMS-side store numbers from 1: follow it from its first message.
        ledger::place(0, dseq)
    }
}

impl Db {
    /// Applies one down message in one transaction. A sequenced message (see
    /// [`Down::is_sequenced`]) is applied only if `dseq` is the next in the stream of
    /// `oms_incarnation`; its seq is recorded as done in the same transaction, whether it
    /// was applied or refused with a `Rejected` event. Only after this returns `Ok` may the
    /// link acknowledge it. Control messages (`Ack`, `ResyncRequest`) are not numbered.
    pub fn apply_down(
        &mut self,
        head: DownHeader,
        down: &Down,
        now: u64,
    ) -> Result<Applied, StoreError> {
        let mut applied = self.apply_downs(&[(head, down)], now)?;
        Ok(applied.pop().unwrap_or(Applied::Duplicate))
    }

    /// Applies down messages in order, all in one transaction (one disk sync for a burst),
    /// each as [`Db::apply_down`] would. If any fails, none is applied.
    pub fn apply_downs(
        &mut self,
        batch: &[(DownHeader, &Down)],
        now: u64,
    ) -> Result<Vec<Applied>, StoreError> {
        let mut new_settings: Option<Settings> = None;
        // A batch of acks and resync requests only deletes what the OMS holds and asks for
        // a birth: if power is lost before the WAL reaches the disk, the rows come back and
        // are sent again, and the OMS drops them as duplicates. It needs no disk sync, which
        // keeps a burst of acks from costing one sync each.
        let control_only = batch.iter().all(|(_, d)| !d.is_sequenced());
        let mut apply = |db: &mut Db| {
            db.write(now, |t, settings| {
                let mut out = Vec::with_capacity(batch.len());
                for (head, down) in batch {
                    // A ConfigUpdate earlier in the batch is in force for what follows.
                    let current = new_settings.clone().unwrap_or_else(|| settings.clone());
                    out.push(t.apply_one(*head, down, &current, &mut new_settings)?);
                }
                Ok(out)
            })
        };
        let result = if control_only {
            self.unsynced(apply)
        } else {
            apply(self)
        };
        let applied = result?;
        if let Some(s) = new_settings {
            self.settings = s;
        }
        Ok(applied)
    }

    /// Records a sequenced down message that could not be read (its header could) as
    /// refused: a `Rejected` event and its seq done, in one transaction, so the stream
    /// moves on. `Duplicate` or `OutOfOrder` when it is not the next message.
    pub fn reject_down(
        &mut self,
        head: DownHeader,
        reason: RejectReason,
        detail: String,
        now: u64,
    ) -> Result<Applied, StoreError> {
        let DownHeader {
            dseq,
            oms_incarnation,
            to_incarnation,
        } = head;
        self.write(now, |t, _| {
            if to_incarnation != t.incarnation {
                return Ok(Applied::NotForMe { to_incarnation });
            }
            if let Some(skip) = t.next_down(oms_incarnation, dseq)? {
                return Ok(skip);
            }
            let refused = t.refuse(dseq, reason, detail)?;
            t.down_done(oms_incarnation, dseq)?;
            Ok(refused)
        })
    }
}

impl Tx<'_> {
    /// Applies one down message in this transaction (see [`Db::apply_down`]).
    fn apply_one(
        &mut self,
        head: DownHeader,
        down: &Down,
        settings: &Settings,
        new_settings: &mut Option<Settings>,
    ) -> Result<Applied, StoreError> {
        let DownHeader {
            dseq,
            oms_incarnation,
            to_incarnation,
        } = head;
        match down {
            Down::Ack {
                incarnation,
                up_to_seq,
            } => {
                return Ok(if *incarnation == self.incarnation {
                    Applied::Acked {
                        deleted: self.ack(*up_to_seq)?,
                    }
                } else {
                    Applied::ForeignAck
                });
            }
            Down::ResyncRequest => return Ok(Applied::Resync),
            _ if to_incarnation != self.incarnation => {
                return Ok(Applied::NotForMe { to_incarnation });
            }
            _ => {
                if let Some(skip) = self.next_down(oms_incarnation, dseq)? {
                    return Ok(skip);
                }
            }
        }
        let applied = match down {
            Down::WaveAssigned(wave) => self.apply_wave(dseq, wave, settings)?,
            Down::TasksRevoked { wave_id, task_ids } => {
                let mut tally = Tally::default();
                for &task_id in task_ids {
                    tally.add(self.end_task(task_id, Some(*wave_id), Ending::Revoked)?);
                }
                self.close_wave_if_done(*wave_id)?;
                Applied::Revoked {
                    tasks: tally.tasks,
                    put_backs: tally.put_backs,
                }
            }
            Down::OrderCancelled { order_id } => self.cancel_order(order_id)?,
            Down::PackOrder(order) => self.store_pack_order(dseq, order, settings)?,
            Down::ConfigUpdate(update) => {
                *new_settings = Some(self.store_config(update, settings)?);
                Applied::ConfigApplied
            }
            // Handled above: control messages are not numbered.
            Down::Ack { .. } => Applied::ForeignAck,
            Down::ResyncRequest => Applied::Resync,
        };
        self.down_done(oms_incarnation, dseq)?;
        Ok(applied)
    }

    /// `None` when `dseq` is the next down message to apply; otherwise what to report.
    fn next_down(
        &mut self,
        oms_incarnation: u64,
        dseq: u64,
    ) -> Result<Option<Applied>, StoreError> {
        let point = down_point(&self.tx)?;
        Ok(match place(point, oms_incarnation, dseq) {
            Placement::Next => None,
            Placement::Duplicate => Some(Applied::Duplicate),
            Placement::Ahead => Some(Applied::OutOfOrder {
                expected: if oms_incarnation == point.oms_incarnation {
                    point.through + 1
                } else {
                    1
                },
            }),
        })
    }

    /// Records `dseq` of `oms_incarnation` as applied (or refused).
    fn down_done(&mut self, oms_incarnation: u64, dseq: u64) -> Result<(), StoreError> {
        meta_set(&self.tx, DOWN_INCARNATION, sql(oms_incarnation))?;
        meta_set(&self.tx, DOWN_THROUGH, sql(dseq))
    }

    /// Writes the `Rejected` event for a refused message and says so.
    fn refuse(
        &mut self,
        msg_id: u64,
        reason: RejectReason,
        detail: String,
    ) -> Result<Applied, StoreError> {
        self.event(
            0,
            EventKind::Rejected {
                msg_id,
                reason: reason.clone(),
                detail: detail.clone(),
            },
        )?;
        Ok(Applied::Refused { reason, detail })
    }

    /// Refuses new work when storage is full; `None` when there is room.
    pub(super) fn refuse_if_full(
        &mut self,
        msg_id: u64,
        settings: &Settings,
    ) -> Result<Option<Applied>, StoreError> {
        match limits::check_room(&self.tx, settings) {
            Ok(_) => Ok(None),
            Err(e @ StoreError::Full { .. }) => Ok(Some(self.refuse(
                msg_id,
                RejectReason::StorageFull,
                e.to_string(),
            )?)),
            Err(e) => Err(e),
        }
    }

    fn apply_wave(
        &mut self,
        msg_id: u64,
        wave: &Wave,
        settings: &Settings,
    ) -> Result<Applied, StoreError> {
        let stored: Option<(u32, bool)> = self
            .tx
            .prepare_cached("SELECT version, needs_repair FROM waves WHERE wave_id = ?1")?
            .query_row([sql(wave.wave_id)], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        // A newer version replaces the stored one; the same version replaces a copy that
        // arrived damaged (its repair).
        if let Some((have, repair)) = stored
            && (have > wave.version || (have == wave.version && !repair))
        {
            return Ok(Applied::WaveStale { have });
        }
        let have = stored.map(|(v, _)| v);
        if let Some(refused) = self.refuse_if_full(msg_id, settings)? {
            return Ok(refused);
        }
        if let Err(detail) = wave
            .tasks
            .iter()
            .try_for_each(|t| check_gtins(t.task_id, &t.gtins))
        {
            return self.refuse(msg_id, RejectReason::Invalid, detail);
        }
        let first_time = have.is_none();
        // The digest, and a new wave's order map, depend on the message alone. For a large
        // wave a second thread works them out while SQLite inserts the tasks (they were a
        // tenth of the apply); a small one is not worth a thread. Either way the wave's
        // row, which records the digest check, is written after its tasks.
        let side = || {
            let complete = wave.task_count as usize == wave.tasks.len()
                && wave_digest(&wave.tasks) == wave.digest;
            let pairs = wave.tasks.iter().map(|t| (t.order_id.as_str(), t.task_id));
            (complete, first_time.then(|| order_map::rows(pairs)))
        };
        let (all_new, (complete, map_rows)) = if wave.tasks.len() < SIDE_THREAD_TASKS {
            let all_new = self.upsert_tasks(wave, first_time)?;
            (all_new, side())
        } else {
            std::thread::scope(|scope| {
                let side = scope.spawn(side);
                let all_new = self.upsert_tasks(wave, first_time);
                let side = side.join().map_err(|_| {
                    StoreError::Corrupt("checking the wave's digest panicked".into())
                })?;
                Ok::<_, StoreError>((all_new?, side))
            })?
        };
        let resync_needed = !complete;
        let now = sql(self.now);
        self.tx
            .prepare_cached(
                "INSERT INTO waves (wave_id, version, priority, cutoff, status, received_at,
                    needs_repair)
                 VALUES (?1, ?2, ?3, ?4, 'open', ?5, ?6)
                 ON CONFLICT (wave_id) DO UPDATE SET
                    version = excluded.version, priority = excluded.priority,
                    cutoff = excluded.cutoff, status = 'open', completed_at = NULL,
                    needs_repair = excluded.needs_repair",
            )?
            .execute(params![
                sql(wave.wave_id),
                wave.version,
                wave.priority,
                sql(wave.cutoff),
                now,
                resync_needed
            ])?;
        // The wave carries its complete task set: what a new version left out is revoked.
        // (A wave seen for the first time has no other tasks: skip the scan.)
        let missing: Vec<u64> = if first_time {
            Vec::new()
        } else {
            let wanted: std::collections::HashSet<u64> =
                wave.tasks.iter().map(|t| t.task_id).collect();
            let mut stmt = self.tx.prepare_cached(
                "SELECT task_id FROM tasks
                 WHERE wave_id = ?1 AND state NOT IN ('revoked', 'cancelled', 'put_back')",
            )?;
            let rows = stmt.query_map(params![sql(wave.wave_id)], |r| r.get::<_, i64>(0))?;
            rows.map(|r| r.map(unsql))
                .filter(|r| r.as_ref().map_or(true, |id| !wanted.contains(id)))
                .collect::<Result<Vec<_>, rusqlite::Error>>()?
        };
        for task_id in missing {
            self.end_task(task_id, Some(wave.wave_id), Ending::Revoked)?;
        }
        // Every task new: the wave's own pairs are what the table holds. Otherwise some
        // tasks kept an order of an earlier version (those with picks), so read the table.
        match map_rows {
            Some(rows) if all_new => order_map::store(&self.tx, wave.wave_id, &rows)?,
            _ => order_map::rebuild(&self.tx, wave.wave_id)?,
        }
        self.close_wave_if_done(wave.wave_id)?;
        limits::raise_alarm_if_needed(self, settings)?;
        Ok(Applied::WaveApplied {
            wave_id: wave.wave_id,
            version: wave.version,
            tasks: wave.tasks.len(),
            resync_needed,
        })
    }

    /// Inserts the wave's tasks, or updates those nothing was picked for (or that were
    /// taken away before anything was picked). A task with picks keeps the device's work
    /// and takes only the new quantity ([`Tx::revise_task`]); its wave version moves in
    /// any case, so it is not mistaken for a task the OMS dropped.
    ///
    /// For a wave seen for the first time almost every task is new: one insert of the
    /// whole wave that skips existing ids is tried first. Only if some id existed (a task
    /// moved from another wave) does every task take the upsert, one statement each.
    /// True when the first insert stored every task.
    fn upsert_tasks(&mut self, wave: &Wave, first_time: bool) -> Result<bool, StoreError> {
        // A new wave whose task ids are all new: one statement for the whole wave.
        if first_time && self.insert_new_tasks(wave)? == wave.tasks.len() {
            return Ok(true);
        }
        // Otherwise each task on its own. After a partial bulk insert this runs the upsert
        // on tasks just inserted too, which writes the same values again.
        let mut upsert = self
            .tx
            .prepare_cached(&format!("{INSERT_TASK} {ON_CONFLICT_UPDATE}"))?;
        let now = sql(self.now);
        let mut revise = Vec::new();
        for task in &wave.tasks {
            let gtins = encode_gtins(&task.gtins);
            let values = params![
                sql(task.task_id),
                sql(wave.wave_id),
                wave.version,
                task.order_id,
                task.order_line,
                task.location,
                task.pick_seq,
                task.location_check,
                gtins,
                task.sku,
                task.description,
                task.qty,
                task.capture.lot,
                task.capture.serial,
                task.capture.expiry,
                task.tote_required,
                now,
                wave.priority,
            ];
            if upsert.execute(values)? == 0 {
                revise.push(task);
            }
        }
        drop(upsert);
        for task in revise {
            self.revise_task(wave, task)?;
        }
        Ok(false)
    }

    /// Inserts the wave's tasks whose ids are not stored yet, in one statement
    /// ([`super::bulk`]), and returns how many it inserted.
    fn insert_new_tasks(&mut self, wave: &Wave) -> Result<usize, StoreError> {
        let mut stmt = self.tx.prepare_cached(INSERT_WAVE_TASKS)?;
        let rest = params![
            sql(wave.wave_id),
            wave.version,
            sql(self.now),
            wave.priority
        ];
        Ok(bulk::insert(&mut stmt, &wave.tasks, rest)?)
    }

    /// A new wave version for a task with picks. Confirmed units are never discarded: the
    /// new quantity changes only what is still to pick. Fewer units than the picker holds
    /// make the surplus a put-back (state `surplus`, a `Conflict` for the OMS); exactly
    /// as many complete the task; more reopen a picked one. A task closed short, taken
    /// away, or with units already put back is not reopened: the OMS gets a `Conflict`
    /// when the version asks for something else.
    fn revise_task(&mut self, wave: &Wave, task: &Task) -> Result<(), StoreError> {
        let task_id = task.task_id;
        let (state, qty, picked, put_back, location): (String, u32, u32, u32, String) = self
            .tx
            .prepare_cached(
                "SELECT state, qty, picked_qty, put_back_qty, location FROM tasks
                 WHERE task_id = ?1",
            )?
            .query_row([sql(task_id)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?;
        let state = TaskState::parse(&state)?;
        let held = picked.saturating_sub(put_back);
        let want = task.qty;
        let next = if put_back > 0 || state.is_taken_away() {
            None
        } else {
            match (state, want.cmp(&held)) {
                (_, Ordering::Less) => Some(TaskState::Surplus),
                (_, Ordering::Equal) => Some(TaskState::Picked),
                (TaskState::Short, Ordering::Greater) => None,
                (TaskState::Picked | TaskState::Surplus, Ordering::Greater) => {
                    Some(TaskState::InProgress)
                }
                (other, Ordering::Greater) => Some(other),
            }
        };
        let detail = match next {
            Some(_) => {
                let surplus_before = if state == TaskState::Surplus {
                    held.saturating_sub(qty)
                } else {
                    0
                };
                let surplus = held.saturating_sub(want);
                (surplus != surplus_before).then(|| {
                    let what = if surplus > 0 {
                        format!("{surplus} are to be put back at {location}")
                    } else {
                        "nothing is to be put back any more".to_string()
                    };
                    format!(
                        "task {task_id}: wave {} version {} asks for {want} units; {held} \
                         were picked: {what}",
                        wave.wave_id, wave.version
                    )
                })
            }
            None => (want != qty || state.is_taken_away()).then(|| {
                format!(
                    "task {task_id} is {} with {held} of {qty} units picked; wave {} version \
                     {} asks for {want}: not reopened on this device",
                    state.as_str(),
                    wave.wave_id,
                    wave.version
                )
            }),
        };
        let seq = match detail {
            Some(detail) => Some(self.event(0, EventKind::Conflict { task_id, detail })?),
            None => None,
        };
        let (next, want) = match next {
            Some(next) => (next, want),
            None => (state, qty),
        };
        let completed = next.is_final().then_some(sql(self.now));
        self.tx
            .prepare_cached(
                "UPDATE tasks SET wave_id = ?2, wave_version = ?3, qty = ?4, state = ?5,
                    last_seq = COALESCE(?6, last_seq), updated_at = ?7,
                    completed_at = CASE WHEN ?5 = state THEN completed_at ELSE ?8 END,
                    priority = ?9
                 WHERE task_id = ?1",
            )?
            .execute(params![
                sql(task_id),
                sql(wave.wave_id),
                wave.version,
                want,
                next.as_str(),
                seq.map(sql),
                sql(self.now),
                completed,
                wave.priority
            ])?;
        Ok(())
    }

    /// Takes one task away. Unstarted work becomes a tombstone; picked units keep their
    /// pick rows, the task waits for a put-back, and the OMS gets a `Conflict` event.
    /// `wave`: when given, a task of another wave is left alone.
    fn end_task(
        &mut self,
        task_id: u64,
        wave: Option<u64>,
        how: Ending,
    ) -> Result<Ended, StoreError> {
        let row: Option<(i64, String, u32, String)> = self
            .tx
            .prepare_cached(
                "SELECT wave_id, state, picked_qty - put_back_qty, location FROM tasks
                 WHERE task_id = ?1",
            )?
            .query_row([sql(task_id)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        // `held`: units the picker still has (picked, less any already put back).
        let Some((wave_id, state, held, location)) = row else {
            return Ok(Ended::Untouched);
        };
        let wave_id = unsql(wave_id);
        if wave.is_some_and(|w| w != wave_id) {
            return Ok(Ended::Untouched);
        }
        let state = TaskState::parse(&state)?;
        if state.is_taken_away() {
            return Ok(Ended::Untouched);
        }
        let ended = if held > 0 {
            let seq = self.event(
                0,
                EventKind::Conflict {
                    task_id,
                    detail: format!(
                        "task {task_id} was {} after {held} units were picked; \
                         they are to be put back at {location}",
                        how.verb()
                    ),
                },
            )?;
            self.tx
                .prepare_cached(
                    "UPDATE tasks SET state = 'put_back', ended = ?2, last_seq = ?3,
                        updated_at = ?4, completed_at = NULL
                     WHERE task_id = ?1",
                )?
                .execute(params![sql(task_id), how.verb(), sql(seq), sql(self.now)])?;
            Ended::PutBack
        } else {
            self.tx
                .prepare_cached(
                    "UPDATE tasks SET state = ?2, ended = ?2, updated_at = ?3, completed_at = ?3
                     WHERE task_id = ?1",
                )?
                .execute(params![sql(task_id), how.state().as_str(), sql(self.now)])?;
            Ended::Tombstoned
        };
        Ok(ended)
    }

    fn cancel_order(&mut self, order_id: &str) -> Result<Applied, StoreError> {
        let tasks = self.order_tasks(order_id)?;
        let mut tally = Tally::default();
        for &(task_id, _) in &tasks {
            tally.add(self.end_task(task_id, None, Ending::Cancelled)?);
        }
        let mut waves: Vec<u64> = tasks.iter().map(|&(_, w)| w).collect();
        waves.sort_unstable();
        waves.dedup();
        for wave_id in waves {
            self.close_wave_if_done(wave_id)?;
        }
        self.tx
            .prepare_cached(
                "UPDATE pack_orders SET status = 'cancelled', updated_at = ?2
                 WHERE order_id = ?1 AND status = 'open'",
            )?
            .execute(params![order_id, sql(self.now)])?;
        Ok(Applied::Cancelled {
            order_id: order_id.to_string(),
            tasks: tally.tasks,
            put_backs: tally.put_backs,
        })
    }

    /// The order's tasks as `(task_id, wave_id)`, by wave then task id: the order map's
    /// candidates that still belong to the order.
    fn order_tasks(&mut self, order_id: &str) -> Result<Vec<(u64, u64)>, StoreError> {
        let candidates = order_map::candidates(&self.tx, order_id)?;
        let mut check = self
            .tx
            .prepare_cached("SELECT wave_id FROM tasks WHERE task_id = ?1 AND order_id = ?2")?;
        let mut tasks = Vec::new();
        for task_id in candidates {
            if let Some(wave_id) = check
                .query_row(params![sql(task_id), order_id], |r| r.get::<_, i64>(0))
                .optional()?
            {
                tasks.push((task_id, unsql(wave_id)));
            }
        }
        tasks.sort_unstable_by_key(|&(t, w)| (w, t));
        tasks.dedup();
        Ok(tasks)
    }

    /// Marks a wave done once none of its tasks needs the picker any more.
    fn close_wave_if_done(&mut self, wave_id: u64) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(&format!(
                "UPDATE waves SET status = 'done', completed_at = ?2
                 WHERE wave_id = ?1 AND status = 'open' AND {WAVE_IS_DONE}"
            ))?
            .execute(params![sql(wave_id), sql(self.now)])?;
        Ok(())
    }

    fn store_config(
        &mut self,
        update: &ConfigUpdate,
        settings: &Settings,
    ) -> Result<Settings, StoreError> {
        let mut s = settings.clone();
        if let Some(v) = update.status_interval_s {
            meta_set(&self.tx, CFG_STATUS_INTERVAL_S, i64::from(v))?;
        }
        if let Some(h) = update.retention_hours {
            meta_set(&self.tx, CFG_RETENTION_H, i64::from(h))?;
            s.retention_s = u64::from(h) * 3600;
        }
        if let Some(p) = update.storage_alarm_pct {
            meta_set(&self.tx, CFG_ALARM_PCT, i64::from(p))?;
            s.alarm_pct = p;
        }
        Ok(s)
    }

    fn store_pack_order(
        &mut self,
        msg_id: u64,
        order: &PackOrder,
        settings: &Settings,
    ) -> Result<Applied, StoreError> {
        if let Some(refused) = self.refuse_if_full(msg_id, settings)? {
            return Ok(refused);
        }
        if let Err(detail) = order
            .lines
            .iter()
            .try_for_each(|l| check_gtins(0, &l.gtins))
        {
            return self.refuse(msg_id, RejectReason::Invalid, detail);
        }
        // A pack order's life only moves forward: a shipped or cancelled order is never
        // reopened, and one being packed is not replaced under the packer.
        let stored: Option<(String, bool)> = self
            .tx
            .prepare_cached(
                "SELECT status, EXISTS (SELECT 1 FROM cartons c WHERE c.order_id = p.order_id)
                 FROM pack_orders p WHERE order_id = ?1",
            )?
            .query_row([&order.order_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match stored {
            Some((status, _)) if status != "open" => {
                return self.refuse(
                    msg_id,
                    RejectReason::Invalid,
                    format!(
                        "pack order {} is {status} on this device; it is not reopened",
                        order.order_id
                    ),
                );
            }
            Some((_, true)) => {
                return self.refuse(
                    msg_id,
                    RejectReason::Invalid,
                    format!(
                        "pack order {} is being packed (a carton is closed); it is not replaced",
                        order.order_id
                    ),
                );
            }
            _ => {}
        }
        // A value the label would cut is refused now, never printed cut.
        if let Err(e) = crate::label::check_fits(&order.into()) {
            return self.refuse(msg_id, RejectReason::Invalid, e.to_string());
        }
        super::pack_orders::insert_pack_order(&self.tx, order, self.now)?;
        limits::raise_alarm_if_needed(self, settings)?;
        Ok(Applied::PackOrderStored)
    }
}
