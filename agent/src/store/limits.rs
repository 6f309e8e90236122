//! Storage limits (usage, alarm, refusal), the settings the OMS sets, and the retention
//! purge.

use floorhand_protocol::oms::EventKind;
use rusqlite::{Connection, params};

use super::conditions::WAVE_IS_DONE;
use super::meta::{
    ALARM_RAISED, CFG_ALARM_PCT, CFG_MAX_BYTES, CFG_RETENTION_H, CFG_STATUS_INTERVAL_S,
    acked_through, meta_get, meta_set,
};
use super::{Db, Settings, StoreError, Tx, sql, unsql};

/// Storage use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Bytes in pages that hold data (free pages, reused by SQLite, are not counted, so
    /// a purge lowers the figure without shrinking the file).
    pub bytes: u64,
    /// The configured limit.
    pub max_bytes: u64,
    /// `bytes` as a percentage of `max_bytes` (capped at 255).
    pub pct: u8,
    /// At or above the alarm mark.
    pub alarm: bool,
}

/// Applies the settings the OMS stored (`ConfigUpdate`) over the configured ones.
pub(super) fn load_settings(conn: &Connection, mut s: Settings) -> Result<Settings, StoreError> {
    if let Some(h) = meta_get(conn, CFG_RETENTION_H)? {
        s.retention_s = unsql(h).saturating_mul(3600);
    }
    if let Some(p) = meta_get(conn, CFG_ALARM_PCT)? {
        s.alarm_pct = u8::try_from(p).unwrap_or(u8::MAX);
    }
    Ok(s)
}

pub(super) fn record_limit(conn: &Connection, max_bytes: u64) -> Result<(), StoreError> {
    if meta_get(conn, CFG_MAX_BYTES)? != Some(sql(max_bytes)) {
        meta_set(conn, CFG_MAX_BYTES, sql(max_bytes))?;
    }
    Ok(())
}

pub(super) fn recorded_limit(conn: &Connection) -> Result<Option<u64>, StoreError> {
    Ok(meta_get(conn, CFG_MAX_BYTES)?.map(unsql))
}

fn usage(conn: &Connection, s: &Settings) -> Result<Usage, StoreError> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let bytes = unsql((pages - free).max(0) * size);
    let pct = (u128::from(bytes) * 100 / u128::from(s.max_bytes.max(1))).min(255) as u8;
    Ok(Usage {
        bytes,
        max_bytes: s.max_bytes,
        pct,
        alarm: pct >= s.alarm_pct,
    })
}

/// `Err(Full)` once usage reaches the limit.
pub(super) fn check_room(conn: &Connection, s: &Settings) -> Result<Usage, StoreError> {
    let u = usage(conn, s)?;
    if u.bytes >= u.max_bytes {
        return Err(StoreError::Full {
            used: u.bytes,
            max: u.max_bytes,
        });
    }
    Ok(u)
}

/// Writes a `StorageAlarm` event when usage crosses the alarm mark, either way.
pub(super) fn raise_alarm_if_needed(t: &mut Tx<'_>, s: &Settings) -> Result<Usage, StoreError> {
    let u = usage(&t.tx, s)?;
    let raised = meta_get(&t.tx, ALARM_RAISED)?.unwrap_or(0) != 0;
    if u.alarm != raised {
        t.event(0, EventKind::StorageAlarm { pct: u.pct })?;
        meta_set(&t.tx, ALARM_RAISED, i64::from(u.alarm))?;
    }
    Ok(u)
}

impl Db {
    /// Storage use against the configured limit.
    pub fn usage(&self) -> Result<Usage, StoreError> {
        usage(&self.conn, &self.settings)
    }

    /// Checks the alarm mark and writes a `StorageAlarm` event if usage crossed it (the
    /// agent calls this periodically; waves and purges check it too).
    pub fn check_storage(&mut self, now: u64) -> Result<Usage, StoreError> {
        self.write(now, raise_alarm_if_needed)
    }

    /// The settings the OMS last sent, as stored: status interval in seconds.
    pub fn status_interval_s(&self) -> Result<Option<u32>, StoreError> {
        Ok(meta_get(&self.conn, CFG_STATUS_INTERVAL_S)?.and_then(|v| u32::try_from(v).ok()))
    }

    /// Deletes completed, acknowledged data older than the retention period and returns
    /// how many rows went. Never touches the outbox (only the OMS's ack deletes events),
    /// open work, or a task whose last event the OMS has not acknowledged.
    pub fn purge(&mut self, now: u64) -> Result<usize, StoreError> {
        self.write(now, |t, s| {
            let cutoff = sql(now.saturating_sub(s.retention_s));
            let acked = sql(acked_through(&t.tx)?);
            let done_tasks = "SELECT task_id FROM tasks
                 WHERE state IN ('picked', 'short', 'revoked', 'cancelled')
                   AND completed_at <= ?1 AND last_seq <= ?2";
            let mut n = t.tx.execute(
                &format!("DELETE FROM picks WHERE task_id IN ({done_tasks})"),
                params![cutoff, acked],
            )?;
            n += t.tx.execute(
                &format!("DELETE FROM tasks WHERE task_id IN ({done_tasks})"),
                params![cutoff, acked],
            )?;
            // Confirmations leave `waves.status` alone; settle it here, dating each done
            // wave by its last completed task.
            t.tx.execute(
                &format!(
                    "UPDATE waves SET status = 'done', completed_at = coalesce(
                        (SELECT max(completed_at) FROM tasks WHERE tasks.wave_id = waves.wave_id),
                        ?1)
                     WHERE status = 'open' AND {WAVE_IS_DONE}"
                ),
                [sql(now)],
            )?;
            n += t.tx.execute(
                "DELETE FROM waves WHERE status = 'done' AND completed_at <= ?1
                   AND NOT EXISTS (SELECT 1 FROM tasks WHERE tasks.wave_id = waves.wave_id)",
                [cutoff],
            )?;
            // The order map of a wave that went (a handful of rows per wave; not counted).
            t.tx.execute(
                "DELETE FROM order_tasks WHERE wave_id NOT IN (SELECT wave_id FROM waves)",
                [],
            )?;
            n +=
                t.tx.execute("DELETE FROM inbox WHERE applied_at <= ?1", [cutoff])?;
            n += t.tx.execute(
                "DELETE FROM print_jobs WHERE state <> 'pending' AND done_at <= ?1",
                [cutoff],
            )?;
            n += t.tx.execute(
                "DELETE FROM sessions WHERE logout_at IS NOT NULL AND logout_at <= ?1",
                [cutoff],
            )?;
            n += t.tx.execute("DELETE FROM audit WHERE at <= ?1", [cutoff])?;
            // A carton's contents stay while its order is open (more cartons may follow).
            n += t.tx.execute(
                "DELETE FROM cartons WHERE closed_at <= ?1 AND NOT EXISTS (
                    SELECT 1 FROM pack_orders p
                    WHERE p.order_id = cartons.order_id AND p.status = 'open')",
                [cutoff],
            )?;
            n += t.tx.execute(
                "DELETE FROM pack_orders WHERE status <> 'open' AND updated_at <= ?1",
                [cutoff],
            )?;
            raise_alarm_if_needed(t, s)?;
            Ok(n)
        })
    }
}
