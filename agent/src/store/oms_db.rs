//! The OMS side's durable half of the contract, on its own SQLite file: the ledger of
//! received events and the down outbox, keyed by (site, device, agent incarnation).
//!
//! Invariants: an event is stored at most once per (site, device, incarnation, seq), and
//! only in seq order (the ack point `streams.through` moves with each insert, in the same
//! transaction), so an ack sent after a commit never covers an event that is not stored;
//! every down message keeps a stable number (`msg_no`) for its whole life, and a wire seq
//! (`dseq`) in the stream of the agent incarnation it is addressed to; a message is
//! `queued` until first published, `sent` until the agent acknowledges it, then `applied`
//! or `rejected` (the agent's `Rejected` event names its dseq); a replaced device's
//! unapplied messages move to the new incarnation's stream, renumbered from 1.

use std::path::Path;

use floorhand_protocol::oms::{Down, Event, EventKind};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{StoreError, sql, unsql};
use crate::ledger::{self, Placement};

pub use super::oms_store::{
    DeviceRow, DownLogRow, DownRange, DownRequest, DownRow, DownState, DownStream, OmsStore,
    Queued, StoreTotals, Stored, StoredEvent,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
-- One row per (site, device, agent incarnation) whose events were seen.
CREATE TABLE IF NOT EXISTS streams (
    site        TEXT NOT NULL,
    device      TEXT NOT NULL,
    incarnation INTEGER NOT NULL,
    through     INTEGER NOT NULL,
    high_seen   INTEGER NOT NULL DEFAULT 0,
    first_seen  INTEGER NOT NULL,
    PRIMARY KEY (site, device, incarnation)
) WITHOUT ROWID;
-- The device as the OMS side knows it: its current incarnation and presence.
CREATE TABLE IF NOT EXISTS devices (
    site        TEXT NOT NULL,
    device      TEXT NOT NULL,
    incarnation INTEGER NOT NULL DEFAULT 0,
    online      INTEGER NOT NULL DEFAULT 0,
    session     INTEGER NOT NULL DEFAULT 0,
    last_seen   INTEGER NOT NULL DEFAULT 0,
    birth       TEXT,
    status      TEXT,
    PRIMARY KEY (site, device)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    cursor      INTEGER PRIMARY KEY AUTOINCREMENT,
    site        TEXT NOT NULL,
    device      TEXT NOT NULL,
    incarnation INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    operator    INTEGER NOT NULL,
    event       TEXT NOT NULL,
    UNIQUE (site, device, incarnation, seq)
);
CREATE TABLE IF NOT EXISTS down (
    site        TEXT NOT NULL,
    device      TEXT NOT NULL,
    msg_no      INTEGER NOT NULL,
    stream      INTEGER NOT NULL,
    dseq        INTEGER NOT NULL,
    body        TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'applied', 'rejected')),
    detail      TEXT,
    created     INTEGER NOT NULL,
    PRIMARY KEY (site, device, msg_no)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS down_by_stream ON down (site, device, stream, dseq);
CREATE TABLE IF NOT EXISTS alarms (
    alarm_id INTEGER PRIMARY KEY,
    site     TEXT NOT NULL,
    device   TEXT NOT NULL,
    at       INTEGER NOT NULL,
    detail   TEXT NOT NULL
);
";

/// Schema steps after [`SCHEMA`], by `user_version` (append only: a store of any age is
/// brought up to date at open).
const MIGRATIONS: &[&str] = &[
    // 1: when presence last changed and the last storage alarm (`GET /v1/devices`), and
    // the bridge's idempotency keys:
    // a retried POST finds its key and the message's number in the same transaction that
    // queued it.
    "ALTER TABLE devices ADD COLUMN birth_at INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE devices ADD COLUMN death_at INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE devices ADD COLUMN status_at INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE devices ADD COLUMN storage_alarm_pct INTEGER;
     CREATE TABLE idempotency (
         site    TEXT NOT NULL,
         device  TEXT NOT NULL,
         key     TEXT NOT NULL,
         msg_no  INTEGER NOT NULL,
         body    TEXT NOT NULL,
         PRIMARY KEY (site, device, key)
     ) WITHOUT ROWID;",
    // 2: the floor view reads down messages in queue order from a key (`down_log_after`);
    // without an index every read would walk every stored body.
    "CREATE INDEX down_by_created ON down (created, site, device, msg_no);",
    // 3: the messages not yet acknowledged, by stream: an ack, a device's ack point and
    // the devices with pending messages are found without walking every message the
    // device ever applied (an ack of a 10,000-message stream walked all of them).
    "CREATE INDEX down_pending ON down (site, device, stream, dseq)
         WHERE state IN ('queued', 'sent');",
];

/// The OMS side's store.
pub struct OmsDb {
    conn: Connection,
    incarnation: u64,
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("json: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("json {s:?}: {e}")))
}

impl OmsDb {
    /// Opens (or creates) the store at `path` (`:memory:` for a throwaway one):
    /// WAL, `synchronous=FULL` (an ack tells the agent to delete its copy).
    pub fn open(path: &Path) -> Result<OmsDb, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let _: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        super::stable_plans(&conn)?;
        conn.execute_batch(SCHEMA)?;
        migrate(&mut conn)?;
        let incarnation = super::meta::load_or_make_incarnation(&conn)?;
        Ok(OmsDb { conn, incarnation })
    }

    /// This store's incarnation: down streams it numbers are scoped to it.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Stored events with a cursor above `after`, oldest first, at most `limit`.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT cursor, site, device, incarnation, event FROM events
             WHERE cursor > ?1 ORDER BY cursor LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![sql(after), limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(cursor, site, device, inc, ev)| {
                Ok(StoredEvent {
                    cursor: unsql(cursor),
                    site,
                    device,
                    incarnation: unsql(inc),
                    event: from_json(&ev)?,
                })
            })
            .collect()
    }
}

impl OmsStore for OmsDb {
    fn incarnation(&self) -> u64 {
        self.incarnation
    }

    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        OmsDb::events_after(self, after, limit)
    }

    /// The device's current agent incarnation (0 if unknown).
    fn device_incarnation(&self, site: &str, device: &str) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT incarnation FROM devices WHERE site = ?1 AND device = ?2")?
            .query_row([site, device], |r| r.get::<_, i64>(0))
            .optional()?
            .map(unsql)
            .unwrap_or(0))
    }

    /// The stream's ack point, if the stream is known.
    fn through(
        &self,
        site: &str,
        device: &str,
        incarnation: u64,
    ) -> Result<Option<u64>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT through FROM streams WHERE site = ?1 AND device = ?2 AND incarnation = ?3",
            )?
            .query_row(params![site, device, sql(incarnation)], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .map(unsql))
    }

    /// Stores events in seq order, in one transaction with their streams' ack points
    /// (one disk sync for the whole batch). A `Rejected` event also marks the down
    /// message it names. Returns what happened to each, in order.
    fn store_events(
        &mut self,
        batch: &[(String, String, u64, Event)],
        now: u64,
    ) -> Result<Vec<Stored>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(batch.len());
        for (site, device, incarnation, event) in batch {
            out.push(store_event(&tx, site, device, *incarnation, event, now)?);
        }
        tx.commit()?;
        Ok(out)
    }

    /// A `Birth` said the agent's acknowledged seq is `acked` and its highest written seq
    /// is `high`. Every event up to `acked` was stored by some OMS-side consumer: a stream
    /// that is behind jumps there (and, unless the stream is new here, returns an alarm
    /// naming what this store never had). `high` is kept, so that a replaced device's lost
    /// events can be named.
    fn birth_floor(
        &mut self,
        site: &str,
        device: &str,
        incarnation: u64,
        (acked, high): (u64, u64),
        now: u64,
    ) -> Result<Option<String>, StoreError> {
        let through = self.through(site, device, incarnation)?;
        self.conn
            .prepare_cached(
                "INSERT INTO streams (site, device, incarnation, through, high_seen, first_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (site, device, incarnation) DO UPDATE SET
                    through = max(through, excluded.through),
                    high_seen = max(high_seen, excluded.high_seen)",
            )?
            .execute(params![
                site,
                device,
                sql(incarnation),
                sql(acked),
                sql(high.max(acked)),
                sql(now)
            ])?;
        Ok(match through {
            Some(t) if t < acked => {
                Some(super::oms_store::acked_elsewhere(t + 1, acked, incarnation))
            }
            _ => None,
        })
    }

    /// Records the device's current incarnation. When it changed, the old incarnation's
    /// unapplied down messages move to the new stream (renumbered from 1), and an alarm
    /// names events of the old incarnation that never arrived. Returns the alarms raised.
    fn set_incarnation(
        &mut self,
        site: &str,
        device: &str,
        incarnation: u64,
        old_high: Option<u64>,
        now: u64,
    ) -> Result<Vec<String>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let old: Option<u64> = tx
            .prepare_cached("SELECT incarnation FROM devices WHERE site = ?1 AND device = ?2")?
            .query_row([site, device], |r| r.get::<_, i64>(0))
            .optional()?
            .map(unsql);
        let mut alarms = Vec::new();
        if old == Some(incarnation) {
            return Ok(alarms);
        }
        // A message of an incarnation this device had before (a late copy from a
        // replaced database) never switches it back: its stream exists already.
        let seen_before: bool = tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM streams
                 WHERE site = ?1 AND device = ?2 AND incarnation = ?3)",
            )?
            .query_row(params![site, device, sql(incarnation)], |r| r.get(0))?;
        if old.is_some_and(|o| o != 0) && seen_before {
            return Ok(alarms);
        }
        tx.prepare_cached(
            "INSERT INTO devices (site, device, incarnation, last_seen) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (site, device) DO UPDATE SET incarnation = excluded.incarnation",
        )?
        .execute(params![site, device, sql(incarnation), sql(now)])?;
        if let Some(old) = old.filter(|&o| o != 0) {
            let (through, high): (i64, i64) = tx
                .prepare_cached(
                    "SELECT through, high_seen FROM streams
                     WHERE site = ?1 AND device = ?2 AND incarnation = ?3",
                )?
                .query_row(params![site, device, sql(old)], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?
                .unwrap_or((0, 0));
            let high = unsql(high).max(old_high.unwrap_or(0));
            if high > unsql(through) {
                alarms.push(super::oms_store::events_lost(unsql(through) + 1, high, old));
            }
            // Unapplied messages follow the device to its new database, in order.
            let mut stmt = tx.prepare_cached(
                "SELECT msg_no FROM down WHERE site = ?1 AND device = ?2
                   AND state IN ('queued', 'sent') ORDER BY msg_no",
            )?;
            let nos = stmt
                .query_map([site, device], |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            drop(stmt);
            for (i, no) in nos.iter().enumerate() {
                tx.prepare_cached(
                    "UPDATE down SET stream = ?4, dseq = ?5, state = 'queued'
                     WHERE site = ?1 AND device = ?2 AND msg_no = ?3",
                )?
                .execute(params![
                    site,
                    device,
                    no,
                    sql(incarnation),
                    i as i64 + 1
                ])?;
            }
            if !nos.is_empty() {
                alarms.push(super::oms_store::readdressed(nos.len(), incarnation));
            }
        } else {
            // First incarnation known: messages queued for "whoever" are addressed to it.
            let mut stmt = tx.prepare_cached(
                "SELECT msg_no FROM down WHERE site = ?1 AND device = ?2 AND stream = 0
                 ORDER BY msg_no",
            )?;
            let nos = stmt
                .query_map([site, device], |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            drop(stmt);
            for (i, no) in nos.iter().enumerate() {
                tx.prepare_cached(
                    "UPDATE down SET stream = ?4, dseq = ?5
                     WHERE site = ?1 AND device = ?2 AND msg_no = ?3",
                )?
                .execute(params![
                    site,
                    device,
                    no,
                    sql(incarnation),
                    i as i64 + 1
                ])?;
            }
        }
        for a in &alarms {
            tx.prepare_cached(
                "INSERT INTO alarms (site, device, at, detail) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![site, device, sql(now), a])?;
        }
        tx.commit()?;
        Ok(alarms)
    }

    /// Records an alarm for a person to look at.
    fn alarm(
        &mut self,
        site: &str,
        device: &str,
        detail: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO alarms (site, device, at, detail) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![site, device, sql(now), detail])?;
        Ok(())
    }

    /// Alarms, oldest first: `(site, device, detail)`.
    fn alarms(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT site, device, detail FROM alarms ORDER BY alarm_id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Commits a down message for `device` and returns its stable number. It is addressed
    /// to the device's current incarnation (or to whichever comes first, when unknown).
    fn queue_downs(
        &mut self,
        site: &str,
        device: &str,
        bodies: &[Down],
        now: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stream: u64 = tx
            .prepare_cached("SELECT incarnation FROM devices WHERE site = ?1 AND device = ?2")?
            .query_row([site, device], |r| r.get::<_, i64>(0))
            .optional()?
            .map(unsql)
            .unwrap_or(0);
        let mut nos = Vec::with_capacity(bodies.len());
        for body in bodies {
            nos.push(insert_down(
                &tx,
                site,
                device,
                stream,
                &to_json(body)?,
                now,
            )?);
        }
        tx.commit()?;
        Ok(nos)
    }

    /// The device's down stream for its current incarnation.
    fn down_stream(&self, site: &str, device: &str) -> Result<DownStream, StoreError> {
        let stream = self.device_incarnation(site, device)?;
        // Acks are cumulative: everything below the lowest unacknowledged message is
        // acknowledged.
        let (pending, high): (Option<i64>, i64) = self
            .conn
            .prepare_cached(
                "SELECT (SELECT min(dseq) FROM down
                         WHERE site = ?1 AND device = ?2 AND stream = ?3
                           AND state IN ('queued', 'sent')),
                        (SELECT coalesce(max(dseq), 0) FROM down
                         WHERE site = ?1 AND device = ?2 AND stream = ?3)",
            )?
            .query_row(params![site, device, sql(stream)], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        Ok(DownStream {
            stream,
            acked: pending.map_or(unsql(high), |p| unsql(p) - 1),
            high: unsql(high),
        })
    }

    fn down_ranges(&mut self, ranges: &[DownRange<'_>]) -> Result<Vec<Vec<DownRow>>, StoreError> {
        // "Sent" is bookkeeping for the message-state API, not a promise: if a power loss
        // takes it back, the message reads "queued" and is sent again, as it would be
        // anyway. So it commits without a disk sync; the next synced commit carries it.
        // And every device's range in one transaction: one write of the pages they share,
        // not one per device whose window opened.
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let out = (|| {
            let tx = self.conn.transaction()?;
            let out = ranges
                .iter()
                .map(|r| read_and_mark_sent(&tx, r))
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit()?;
            Ok(out)
        })();
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        out
    }

    /// The agent acknowledged (applied or rejected) every message of `stream` through
    /// `through`. Returns how many changed state.
    fn down_acked(
        &mut self,
        site: &str,
        device: &str,
        stream: u64,
        through: u64,
    ) -> Result<usize, StoreError> {
        // Like "sent", "applied" needs no disk sync: if a power loss takes it back, the
        // message is sent again and the agent acknowledges it again (and every birth and
        // status carries its ack point).
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let acked = self
            .conn
            .prepare_cached(
                "UPDATE down SET state = 'applied'
                 WHERE site = ?1 AND device = ?2 AND stream = ?3 AND dseq <= ?4
                   AND state IN ('queued', 'sent')",
            )
            .and_then(|mut st| st.execute(params![site, device, sql(stream), sql(through)]));
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(acked?)
    }

    /// The state of down message `msg_no` of `device`.
    fn down_state(
        &self,
        site: &str,
        device: &str,
        msg_no: u64,
    ) -> Result<Option<DownState>, StoreError> {
        let row: Option<(String, Option<String>)> = self
            .conn
            .prepare_cached(
                "SELECT state, detail FROM down WHERE site = ?1 AND device = ?2 AND msg_no = ?3",
            )?
            .query_row(params![site, device, sql(msg_no)], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        Ok(row.map(|(state, detail)| super::oms_store::down_state(&state, detail)))
    }

    /// Every (site, device) with down messages not yet acknowledged.
    fn devices_with_pending_down(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT site, device FROM down WHERE state IN ('queued', 'sent')",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Records presence and the latest status or birth, for `GET /v1/devices`.
    fn presence(
        &mut self,
        site: &str,
        device: &str,
        online: Option<(bool, u64)>,
        birth: Option<&str>,
        status: Option<&str>,
        now: u64,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached(
            "INSERT INTO devices (site, device, last_seen) VALUES (?1, ?2, ?3)
             ON CONFLICT (site, device) DO UPDATE SET last_seen = excluded.last_seen",
        )?
        .execute(params![site, device, sql(now)])?;
        if let Some((on, session)) = online {
            // A death older than the latest birth (a will delivered late) changes nothing.
            tx.prepare_cached(
                "UPDATE devices SET online = ?3, session = ?4,
                    death_at = CASE WHEN ?3 THEN death_at ELSE ?5 END
                 WHERE site = ?1 AND device = ?2 AND (?3 OR session <= ?4)",
            )?
            .execute(params![site, device, on, sql(session), sql(now)])?;
        }
        if let Some(b) = birth {
            tx.prepare_cached(
                "UPDATE devices SET birth = ?3, birth_at = ?4 WHERE site = ?1 AND device = ?2",
            )?
            .execute(params![site, device, b, sql(now)])?;
        }
        if let Some(st) = status {
            tx.prepare_cached(
                "UPDATE devices SET status = ?3, status_at = ?4 WHERE site = ?1 AND device = ?2",
            )?
            .execute(params![site, device, st, sql(now)])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn queue_down_many(
        &mut self,
        reqs: &[DownRequest<'_>],
        now: u64,
    ) -> Result<Vec<Queued>, StoreError> {
        // One transaction, so one disk sync, for every request waiting.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(reqs.len());
        for r in reqs {
            out.push(queue_keyed_in(&tx, r, now)?);
        }
        tx.commit()?;
        Ok(out)
    }

    fn down_log_after(
        &self,
        after: (u64, &str, &str, u64),
        limit: usize,
    ) -> Result<Vec<DownLogRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT site, device, msg_no, created, body FROM down
             WHERE (created, site, device, msg_no) > (?1, ?2, ?3, ?4)
             ORDER BY created, site, device, msg_no LIMIT ?5",
        )?;
        let rows = stmt
            .query_map(
                params![sql(after.0), after.1, after.2, sql(after.3), limit as i64],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(site, device, no, created, body)| {
                Ok(DownLogRow {
                    site,
                    device,
                    msg_no: unsql(no),
                    created: unsql(created),
                    body: from_json(&body)?,
                })
            })
            .collect()
    }

    fn devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT d.site, d.device, d.incarnation, d.online, d.session, d.last_seen,
                    d.birth_at, d.death_at, d.status_at, d.birth, d.status,
                    coalesce(s.high_seen, 0), coalesce(s.through, 0), d.storage_alarm_pct,
                        (SELECT count(*) FROM down w WHERE w.site = d.site AND w.device = d.device
                        AND w.state IN ('queued', 'sent'))
             FROM devices d
             LEFT JOIN streams s ON s.site = d.site AND s.device = d.device
                 AND s.incarnation = d.incarnation
             ORDER BY d.site, d.device",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(DeviceRow {
                site: r.get(0)?,
                device: r.get(1)?,
                incarnation: unsql(r.get(2)?),
                online: r.get(3)?,
                session: unsql(r.get(4)?),
                last_seen: unsql(r.get(5)?),
                birth_at: unsql(r.get(6)?),
                death_at: unsql(r.get(7)?),
                status_at: unsql(r.get(8)?),
                birth: r.get(9)?,
                status: r.get(10)?,
                high_seen: unsql(r.get(11)?),
                through: unsql(r.get(12)?),
                storage_alarm_pct: r.get(13)?,
                down_unacked: unsql(r.get(14)?),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn totals(&self) -> Result<StoreTotals, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT (SELECT coalesce(max(cursor), 0) FROM events),
                    (SELECT count(*) FROM down WHERE state IN ('queued', 'sent')),
                    (SELECT count(*) FROM devices WHERE online),
                    (SELECT count(*) FROM devices),
                    (SELECT count(*) FROM alarms)",
            )?
            .query_row([], |r| {
                Ok(StoreTotals {
                    events: unsql(r.get(0)?),
                    down_pending: unsql(r.get(1)?),
                    devices_online: unsql(r.get(2)?),
                    devices: unsql(r.get(3)?),
                    alarms: unsql(r.get(4)?),
                })
            })?)
    }
}

/// Reads a range of a device's down messages in `tx` and marks the queued ones sent (see
/// [`OmsStore::down_range`]).
fn read_and_mark_sent(
    tx: &rusqlite::Transaction<'_>,
    r: &DownRange<'_>,
) -> Result<Vec<DownRow>, StoreError> {
    let args = params![r.site, r.device, sql(r.stream), sql(r.from), sql(r.to)];
    let mut stmt = tx.prepare_cached(
        "SELECT msg_no, dseq, body FROM down
         WHERE site = ?1 AND device = ?2 AND stream = ?3 AND dseq BETWEEN ?4 AND ?5
         ORDER BY dseq",
    )?;
    let rows = stmt
        .query_map(args, |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    drop(stmt);
    tx.prepare_cached(
        "UPDATE down SET state = 'sent'
         WHERE site = ?1 AND device = ?2 AND stream = ?3 AND dseq BETWEEN ?4 AND ?5
           AND state = 'queued'",
    )?
    .execute(args)?;
    rows.into_iter()
        .map(|(no, dseq, body)| {
            Ok(DownRow {
                msg_no: unsql(no),
                stream: r.stream,
                dseq: unsql(dseq),
                body: from_json(&body)?,
            })
        })
        .collect()
}

/// Queues one keyed message in `tx` (see [`OmsStore::queue_down_keyed`]).
fn queue_keyed_in(
    tx: &rusqlite::Transaction<'_>,
    r: &DownRequest<'_>,
    now: u64,
) -> Result<Queued, StoreError> {
    let (site, device) = (r.site, r.device);
    let json = to_json(r.body)?;
    if let Some(key) = r.key {
        let seen: Option<(i64, String)> = tx
            .prepare_cached(
                "SELECT msg_no, body FROM idempotency
                 WHERE site = ?1 AND device = ?2 AND key = ?3",
            )?
            .query_row(params![site, device, key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((no, seen_body)) = seen {
            return Ok(if seen_body == json {
                Queued::Again(unsql(no))
            } else {
                Queued::KeyReused(unsql(no))
            });
        }
    }
    let known: Option<i64> = tx
        .prepare_cached("SELECT incarnation FROM devices WHERE site = ?1 AND device = ?2")?
        .query_row([site, device], |r| r.get(0))
        .optional()?;
    let Some(stream) = known.map(unsql) else {
        return Ok(Queued::UnknownDevice);
    };
    let no = insert_down(tx, site, device, stream, &json, now)?;
    if let Some(key) = r.key {
        tx.prepare_cached(
            "INSERT INTO idempotency (site, device, key, msg_no, body)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![site, device, key, sql(no), json])?;
    }
    Ok(Queued::New(no))
}

/// Brings the schema up to date (see [`MIGRATIONS`]), each step in one transaction.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// Inserts a down message in `tx` under the device's next number, addressed to `stream`
/// (its next dseq there), and returns the number.
fn insert_down(
    tx: &rusqlite::Transaction<'_>,
    site: &str,
    device: &str,
    stream: u64,
    body_json: &str,
    now: u64,
) -> Result<u64, StoreError> {
    let (no, dseq): (i64, i64) = tx
        .prepare_cached(
            "SELECT (SELECT coalesce(max(msg_no), 0) + 1 FROM down
                     WHERE site = ?1 AND device = ?2),
                    (SELECT coalesce(max(dseq), 0) + 1 FROM down
                     WHERE site = ?1 AND device = ?2 AND stream = ?3)",
        )?
        .query_row(params![site, device, sql(stream)], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    tx.prepare_cached(
        "INSERT INTO down (site, device, msg_no, stream, dseq, body, state, created)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7)",
    )?
    .execute(params![
        site,
        device,
        no,
        sql(stream),
        dseq,
        body_json,
        sql(now)
    ])?;
    Ok(unsql(no))
}

/// Stores one event in `tx` (see [`OmsDb::store_events`]).
fn store_event(
    tx: &rusqlite::Transaction<'_>,
    site: &str,
    device: &str,
    incarnation: u64,
    event: &Event,
    now: u64,
) -> Result<Stored, StoreError> {
    let through: Option<u64> = tx
        .prepare_cached(
            "SELECT through FROM streams WHERE site = ?1 AND device = ?2 AND incarnation = ?3",
        )?
        .query_row(params![site, device, sql(incarnation)], |r| {
            r.get::<_, i64>(0)
        })
        .optional()?
        .map(unsql);
    // An incarnation never seen starts at seq 1; one that starts later must be told
    // by a Birth where it starts (what is below was acknowledged elsewhere).
    let base = match through {
        Some(t) => t,
        None if event.seq == 1 => 0,
        None => return Ok(Stored::Ahead { through: None }),
    };
    match ledger::place(base, event.seq) {
        Placement::Duplicate => return Ok(Stored::Duplicate { through: base }),
        Placement::Ahead => {
            tx.prepare_cached(
                "UPDATE streams SET high_seen = max(high_seen, ?4)
                 WHERE site = ?1 AND device = ?2 AND incarnation = ?3",
            )?
            .execute(params![site, device, sql(incarnation), sql(event.seq)])?;
            return Ok(Stored::Ahead {
                through: Some(base),
            });
        }
        Placement::Next => {}
    }
    tx.prepare_cached(
        "INSERT INTO streams (site, device, incarnation, through, high_seen, first_seen)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5)
         ON CONFLICT (site, device, incarnation) DO UPDATE SET
            through = excluded.through, high_seen = max(high_seen, excluded.through)",
    )?
    .execute(params![
        site,
        device,
        sql(incarnation),
        sql(event.seq),
        sql(now)
    ])?;
    tx.prepare_cached(
        "INSERT INTO events (site, device, incarnation, seq, at, operator, event)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        site,
        device,
        sql(incarnation),
        sql(event.seq),
        sql(event.at),
        event.operator,
        to_json(event)?
    ])?;
    let cursor = unsql(tx.last_insert_rowid());
    if let EventKind::Rejected { msg_id, detail, .. } = &event.kind {
        tx.prepare_cached(
            "UPDATE down SET state = 'rejected', detail = ?5
             WHERE site = ?1 AND device = ?2 AND stream = ?3 AND dseq = ?4
               AND state IN ('queued', 'sent', 'applied')",
        )?
        .execute(params![
            site,
            device,
            sql(incarnation),
            sql(*msg_id),
            detail
        ])?;
    }
    if let EventKind::StorageAlarm { pct } = &event.kind {
        tx.prepare_cached(
            "UPDATE devices SET storage_alarm_pct = ?3 WHERE site = ?1 AND device = ?2",
        )?
        .execute(params![site, device, pct])?;
    }
    Ok(Stored::New {
        cursor,
        through: event.seq,
    })
}

/// Test rig (unit tests and feature `sim`, never a station): from now on, inserting a down
/// message whose JSON body contains `needle` fails inside its transaction (an SQLite
/// trigger raising an abort), as a full disk or an I/O error would part-way through a
/// group of messages. Made through a connection of its own, so the store under test sees
/// it as another process's schema change.
#[cfg(any(test, feature = "sim"))]
pub fn fail_down_inserts_containing(path: &Path, needle: &str) -> Result<(), StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let quoted = needle.replace('\'', "''");
    conn.execute_batch(&format!(
        "CREATE TRIGGER IF NOT EXISTS rig_fail_down BEFORE INSERT ON down
         WHEN instr(NEW.body, '{quoted}') > 0
         BEGIN SELECT RAISE(ABORT, 'rig: insert refused'); END;"
    ))?;
    Ok(())
}

/// Test rig (unit tests and feature `sim`): another connection's write transaction on
/// the store at `path`, held until dropped, as another process would hold it. Commits
/// on the store wait for it (up to its 5 s busy timeout), then fail.
#[cfg(any(test, feature = "sim"))]
pub struct WriteLock {
    _conn: Connection,
}

#[cfg(any(test, feature = "sim"))]
impl WriteLock {
    /// Takes the write lock (`BEGIN IMMEDIATE`).
    pub fn hold(path: &Path) -> Result<WriteLock, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(WriteLock { _conn: conn })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floorhand_protocol::oms::Down;

    fn cancel(order: &str) -> Down {
        Down::OrderCancelled {
            order_id: order.into(),
        }
    }

    #[test]
    fn a_store_of_the_first_schema_is_migrated_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute(
                "INSERT INTO devices (site, device, incarnation) VALUES ('s1', 'd1', 9)",
                [],
            )
            .unwrap();
        }
        let mut db = OmsDb::open(&path).unwrap();
        assert_eq!(db.device_incarnation("s1", "d1").unwrap(), 9);
        assert_eq!(
            db.queue_down_keyed("s1", "d1", &cancel("A"), Some("k"), 1)
                .unwrap(),
            Queued::New(1)
        );
        drop(db);
        // Opening again runs nothing twice.
        let db = OmsDb::open(&path).unwrap();
        assert_eq!(db.devices().unwrap()[0].down_unacked, 1);
    }
}
