//! The `meta` table: one integer per key, for the store's counters, cursors and the
//! settings the OMS sends. Every key is named here, so no two files can reuse one.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreError, sql, unsql};

/// Highest event seq the OMS acknowledged; seqs are never reused below it.
pub(super) const ACKED_THROUGH: &str = "acked_through";
/// The MQTT session counter (`Db::next_session`).
pub(super) const SESSION: &str = "session";
/// This database's incarnation, random, made at creation.
pub(super) const INCARNATION: &str = "incarnation";
/// The OMS incarnation whose down sequence this device follows.
pub(super) const DOWN_INCARNATION: &str = "down_incarnation";
/// Highest down seq of that incarnation applied or rejected.
pub(super) const DOWN_THROUGH: &str = "down_through";
/// The last SSCC serial handed out.
pub(super) const SSCC_SERIAL: &str = "sscc_serial";
/// `Status` interval the OMS set (`Down::Config`).
pub(super) const CFG_STATUS_INTERVAL_S: &str = "cfg_status_interval_s";
/// Retention of completed data in hours, as the OMS set it.
pub(super) const CFG_RETENTION_H: &str = "cfg_retention_hours";
/// Storage alarm threshold in percent, as the OMS set it.
pub(super) const CFG_ALARM_PCT: &str = "cfg_alarm_pct";
/// The storage limit the agent last ran with (read by read-only views such as the doctor).
pub(super) const CFG_MAX_BYTES: &str = "cfg_max_bytes";
/// Whether usage is above the alarm mark as last reported (an event at each crossing).
pub(super) const ALARM_RAISED: &str = "alarm_raised";

/// Where the device is in the OMS's down sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DownPoint {
    /// The OMS incarnation (0: no sequenced message applied yet).
    pub oms_incarnation: u64,
    /// Highest down seq applied or rejected.
    pub through: u64,
}

/// The down point as stored (0, 0 before the first sequenced down message).
pub(super) fn down_point(conn: &Connection) -> Result<DownPoint, StoreError> {
    Ok(DownPoint {
        oms_incarnation: meta_get(conn, DOWN_INCARNATION)?.map(unsql).unwrap_or(0),
        through: meta_get(conn, DOWN_THROUGH)?.map(unsql).unwrap_or(0),
    })
}

/// A random non-zero id from the operating system's randomness (std's hasher keys are
/// seeded from it per thread, and each `RandomState` takes the next key), so no two
/// databases share one. The store reads no clock for it.
fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let id = h.finish();
        if id != 0 {
            return id;
        }
    }
}

/// The database's incarnation; 0 for a read-only view of a file that has none yet.
pub(super) fn incarnation(conn: &Connection) -> Result<u64, StoreError> {
    Ok(meta_get(conn, INCARNATION)?.map(unsql).unwrap_or(0))
}

/// The database's incarnation, made (and committed) on first open.
pub(super) fn load_or_make_incarnation(conn: &Connection) -> Result<u64, StoreError> {
    match incarnation(conn)? {
        0 => {
            let id = random_id();
            meta_set(conn, INCARNATION, sql(id))?;
            Ok(id)
        }
        id => Ok(id),
    }
}

/// A value of the `meta` table, `None` if the key was never set.
pub(super) fn meta_get(conn: &Connection, key: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

/// Sets a value of the `meta` table (in the caller's transaction, if any).
pub(super) fn meta_set(conn: &Connection, key: &str, value: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

/// Adds one to a counter (starting from 0) and returns the new value.
pub(super) fn meta_next(conn: &Connection, key: &str) -> Result<u64, StoreError> {
    let v: i64 = conn
        .prepare_cached(
            "INSERT INTO meta (key, value) VALUES (?1, 1)
             ON CONFLICT (key) DO UPDATE SET value = value + 1
             RETURNING value",
        )?
        .query_row([key], |r| r.get(0))?;
    Ok(unsql(v))
}

/// Highest event seq the OMS acknowledged (0: none yet).
pub(super) fn acked_through(conn: &Connection) -> Result<u64, StoreError> {
    Ok(meta_get(conn, ACKED_THROUGH)?.map(unsql).unwrap_or(0))
}
