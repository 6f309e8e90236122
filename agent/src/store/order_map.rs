//! Each wave's orders and their tasks (schema v9): what a cancellation looks up, kept as a
//! few rows per wave instead of an index entry per task.
//!
//! Why not an index on `(wave_id, order_id)`, as schema v4 to v8 had: an order's lines are
//! scattered along the walk, so its keys landed all over the index, and writing them was
//! the largest single cost of applying a wave. Here a wave's `(order, task)` pairs go into
//! [`BUCKETS`] rows by a hash of the order id: at most 64 rows for a wave of any size,
//! and no sort of the ids. A lookup is one seek per wave, as before, and reads one row.
//!
//! The map may list more than is true (a task since moved to another wave, or purged), so
//! readers check each listed task against its row. It never lists less: only applying
//! wave W gives a task wave W or a new order, and that apply writes W's map, either from
//! the wave itself (every task new) or from the tasks table.

use rusqlite::{Connection, params};

use super::{StoreError, sql, unsql};

/// Rows per wave at most. Stored data depends on it and on [`bucket`]: never change
/// either without a migration that rebuilds every map.
const BUCKETS: u64 = 64;

/// FNV-1a (64-bit) of `order_id`'s bytes. Fixed forever, unlike std's hasher, which may
/// change between Rust releases.
fn hash(order_id: &str) -> u64 {
    order_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The row of `hash` among a wave's [`BUCKETS`].
fn bucket(hash: u64) -> i64 {
    (hash % BUCKETS) as i64
}

/// A wave's map rows for `pairs` (order id, task id): `(bucket, encoded entries)`. Pure.
///
/// Within a row, an order's tasks are stored together: a third of the bytes of one pair
/// per task. They are brought together by sorting on the hash (integers, far cheaper to
/// compare than the ids); two orders with the same hash may then alternate, which only
/// splits an order into several entries, and [`candidates`] reads them all.
pub(super) fn rows<'a>(pairs: impl IntoIterator<Item = (&'a str, u64)>) -> Vec<(i64, Vec<u8>)> {
    let mut buckets: Vec<Vec<(u64, u64, &str)>> = vec![Vec::new(); BUCKETS as usize];
    for (order, task) in pairs {
        let h = hash(order);
        buckets[bucket(h) as usize].push((h, task, order));
    }
    let mut rows = Vec::new();
    for (b, row) in buckets.iter_mut().enumerate() {
        if row.is_empty() {
            continue;
        }
        row.sort_unstable_by_key(|&(h, task, _)| (h, task));
        let ids: Vec<u64> = row.iter().map(|&(_, task, _)| task).collect();
        let mut entries: Vec<(&str, &[u64])> = Vec::new();
        let mut start = 0;
        for (i, &(_, _, order)) in row.iter().enumerate() {
            if row.get(i + 1).is_none_or(|&(_, _, next)| next != order) {
                entries.push((order, &ids[start..=i]));
                start = i + 1;
            }
        }
        // Strings and integers only: encoding into a Vec cannot fail.
        rows.push((
            b as i64,
            postcard::to_allocvec(&entries).unwrap_or_default(),
        ));
    }
    rows
}

/// Replaces wave `wave_id`'s map with `rows` (from [`rows`]).
pub(super) fn store(
    conn: &Connection,
    wave_id: u64,
    rows: &[(i64, Vec<u8>)],
) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM order_tasks WHERE wave_id = ?1")?
        .execute([sql(wave_id)])?;
    let mut insert = conn
        .prepare_cached("INSERT INTO order_tasks (wave_id, bucket, tasks) VALUES (?1, ?2, ?3)")?;
    for (b, bytes) in rows {
        insert.execute(params![sql(wave_id), b, bytes])?;
    }
    Ok(())
}

/// Writes wave `wave_id`'s map again from the tasks table: after a new version, or when a
/// new wave took over tasks that were already stored.
pub(super) fn rebuild(conn: &Connection, wave_id: u64) -> Result<(), StoreError> {
    let pairs: Vec<(String, u64)> = conn
        .prepare_cached("SELECT order_id, task_id FROM tasks WHERE wave_id = ?1")?
        .query_map([sql(wave_id)], |r| Ok((r.get(0)?, unsql(r.get(1)?))))?
        .collect::<Result<_, _>>()?;
    store(
        conn,
        wave_id,
        &rows(pairs.iter().map(|(o, t)| (o.as_str(), *t))),
    )
}

/// Per wave, the one row of bucket `?1`, where an order hashed to it is listed: one seek
/// per wave (CROSS JOIN keeps `waves` the outer loop; otherwise SQLite may scan the map).
pub(super) const CANDIDATES: &str = "
    SELECT w.wave_id, m.tasks FROM waves w
    CROSS JOIN order_tasks m ON m.wave_id = w.wave_id AND m.bucket = ?1";

/// Every task the maps list for `order_id`, in any wave: candidates, to be checked
/// against their rows.
pub(super) fn candidates(conn: &Connection, order_id: &str) -> Result<Vec<u64>, StoreError> {
    let mut stmt = conn.prepare_cached(CANDIDATES)?;
    let mut rows = stmt.query([bucket(hash(order_id))])?;
    let mut found = Vec::new();
    while let Some(r) = rows.next()? {
        let bytes: Vec<u8> = r.get(1)?;
        let entries: Vec<(&str, Vec<u64>)> = postcard::from_bytes(&bytes).map_err(|e| {
            let wave_id = r.get::<_, i64>(0).map_or(0, unsql);
            StoreError::Corrupt(format!("order map of wave {wave_id}: {e}"))
        })?;
        for (_, tasks) in entries.into_iter().filter(|(o, _)| *o == order_id) {
            found.extend(tasks);
        }
    }
    Ok(found)
}
