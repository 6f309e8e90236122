//! Raw SQLite baselines for the benchmark: the least work SQLite can do for the same
//! durability, with the same pragmas as [`super::Db`]. Kept here because only `store`
//! knows SQL.

use std::path::Path;

use floorhand_protocol::oms::Task;
use rusqlite::{Connection, params};

use super::codec::encode_gtins;
use super::{StoreConfig, StoreError, sql};

/// A bare SQLite file with one table per baseline.
pub struct RawDb {
    conn: Connection,
}

impl RawDb {
    /// Creates the baseline tables in a fresh file, with `cfg`'s journal and sync settings.
    pub fn open(path: &Path, cfg: &StoreConfig) -> Result<RawDb, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(cfg.busy_timeout)?;
        let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", cfg.synchronous.pragma())?;
        conn.pragma_update(None, "cache_size", super::CACHE_SIZE)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS one_row (id INTEGER PRIMARY KEY, task_id INTEGER NOT NULL,
                qty INTEGER NOT NULL, at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS bulk (task_id INTEGER PRIMARY KEY, wave_id INTEGER,
                order_id TEXT, order_line INTEGER, location TEXT, pick_seq INTEGER,
                location_check INTEGER, gtins TEXT, sku TEXT, description TEXT, qty INTEGER,
                capture_lot INTEGER, capture_serial INTEGER, capture_expiry INTEGER,
                tote_required INTEGER);",
        )?;
        Ok(RawDb { conn })
    }

    /// One single-row insert in its own transaction: the floor under a confirmation.
    pub fn commit_one(&mut self, task_id: u64, qty: u32, at: u64) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.prepare_cached("INSERT INTO one_row (task_id, qty, at) VALUES (?1, ?2, ?3)")?
            .execute(params![sql(task_id), qty, sql(at)])?;
        tx.commit()?;
        Ok(())
    }

    /// The same task rows a wave carries, inserted in one transaction with one prepared
    /// statement: the floor under applying a wave.
    pub fn bulk_insert(&mut self, wave_id: u64, tasks: &[Task]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO bulk VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,
                    ?14, ?15)",
            )?;
            for t in tasks {
                stmt.execute(params![
                    sql(t.task_id),
                    sql(wave_id),
                    t.order_id,
                    t.order_line,
                    t.location,
                    t.pick_seq,
                    t.location_check,
                    encode_gtins(&t.gtins),
                    t.sku,
                    t.description,
                    t.qty,
                    t.capture.lot,
                    t.capture.serial,
                    t.capture.expiry,
                    t.tote_required
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
