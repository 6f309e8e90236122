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

/// Where a down message is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DownState {
    /// Stored, not published yet (the device's incarnation may be unknown yet).
    Queued,
    /// Published at least once, not acknowledged.
    Sent,
    /// The agent applied it.
    Applied,
    /// The agent refused it.
    Rejected {
        /// The agent's reason.
        detail: String,
    },
}

/// A down message to (re)publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownRow {
    /// Its stable number for the device.
    pub msg_no: u64,
    /// The agent incarnation it is addressed to.
    pub stream: u64,
    /// Its seq in that stream.
    pub dseq: u64,
    /// The message.
    pub body: Down,
}

/// What storing an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Stored now, under this cursor. Acknowledge through `through`.
    New {
        /// The event's cursor: grows over the whole store.
        cursor: u64,
        /// The stream's ack point after it.
        through: u64,
    },
    /// Stored before: acknowledge `through` again.
    Duplicate {
        /// The stream's ack point.
        through: u64,
    },
    /// A gap before it (or an incarnation not yet known past seq 1): dropped. The agent
    /// re-sends; a fresh `Birth` tells where the stream starts.
    Ahead {
        /// The stream's ack point, if the stream is known.
        through: Option<u64>,
    },
}

/// One stored event, for consumers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position in the whole store.
    pub cursor: u64,
    /// Site.
    pub site: String,
    /// Device.
    pub device: String,
    /// Agent incarnation.
    pub incarnation: u64,
    /// The event.
    pub event: Event,
}

/// A device's down stream as the sender needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownStream {
    /// Agent incarnation addressed (0: not known yet; nothing can be sent).
    pub stream: u64,
    /// Highest dseq acknowledged.
    pub acked: u64,
    /// Highest dseq numbered.
    pub high: u64,
}

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
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let _: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        let incarnation = super::outbox::load_or_make_incarnation(&conn)?;
        Ok(OmsDb { conn, incarnation })
    }

    /// This store's incarnation: down streams it numbers are scoped to it.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The device's current agent incarnation (0 if unknown).
    pub fn device_incarnation(&self, site: &str, device: &str) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT incarnation FROM devices WHERE site = ?1 AND device = ?2")?
            .query_row([site, device], |r| r.get::<_, i64>(0))
            .optional()?
            .map(unsql)
            .unwrap_or(0))
    }

    /// The stream's ack point, if the stream is known.
    pub fn through(
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
    pub fn store_events(
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
    pub fn birth_floor(
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
            Some(t) if t < acked => Some(format!(
                "events {}..={acked} of incarnation {incarnation:016x} were acknowledged by another consumer and are not in this store",
                t + 1
            )),
            _ => None,
        })
    }

    /// Records the device's current incarnation. When it changed, the old incarnation's
    /// unapplied down messages move to the new stream (renumbered from 1), and an alarm
    /// names events of the old incarnation that never arrived. Returns the alarms raised.
    pub fn set_incarnation(
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
                alarms.push(format!(
                    "device replaced: events {}..={high} of incarnation {old:016x} never arrived and are gone",
                    unsql(through) + 1
                ));
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
                alarms.push(format!(
                    "device replaced: {} unapplied down messages re-addressed to incarnation {incarnation:016x}; messages it had applied are not on the new database, resend the device's open work",
                    nos.len()
                ));
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
    pub fn alarm(
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
    pub fn alarms(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT site, device, detail FROM alarms ORDER BY alarm_id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Commits a down message for `device` and returns its stable number. It is addressed
    /// to the device's current incarnation (or to whichever comes first, when unknown).
    pub fn queue_down(
        &mut self,
        site: &str,
        device: &str,
        body: &Down,
        now: u64,
    ) -> Result<u64, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stream: u64 = tx
            .prepare_cached("SELECT incarnation FROM devices WHERE site = ?1 AND device = ?2")?
            .query_row([site, device], |r| r.get::<_, i64>(0))
            .optional()?
            .map(unsql)
            .unwrap_or(0);
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
            to_json(body)?,
            sql(now)
        ])?;
        tx.commit()?;
        Ok(unsql(no))
    }

    /// The device's down stream for its current incarnation.
    pub fn down_stream(&self, site: &str, device: &str) -> Result<DownStream, StoreError> {
        let stream = self.device_incarnation(site, device)?;
        let (acked, high): (i64, i64) = self
            .conn
            .prepare_cached(
                "SELECT coalesce(max(CASE WHEN state IN ('applied', 'rejected') THEN dseq END), 0),
                        coalesce(max(dseq), 0)
                 FROM down WHERE site = ?1 AND device = ?2 AND stream = ?3",
            )?
            .query_row(params![site, device, sql(stream)], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        Ok(DownStream {
            stream,
            acked: unsql(acked),
            high: unsql(high),
        })
    }

    /// Down messages of `stream` with `from <= dseq <= to`, in order; marks queued ones
    /// sent.
    pub fn down_range(
        &mut self,
        site: &str,
        device: &str,
        stream: u64,
        from: u64,
        to: u64,
    ) -> Result<Vec<DownRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT msg_no, dseq, body FROM down
             WHERE site = ?1 AND device = ?2 AND stream = ?3 AND dseq BETWEEN ?4 AND ?5
             ORDER BY dseq",
        )?;
        let rows = stmt
            .query_map(
                params![site, device, sql(stream), sql(from), sql(to)],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        let out = rows
            .into_iter()
            .map(|(no, dseq, body)| {
                Ok(DownRow {
                    msg_no: unsql(no),
                    stream,
                    dseq: unsql(dseq),
                    body: from_json(&body)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.conn
            .prepare_cached(
                "UPDATE down SET state = 'sent'
                 WHERE site = ?1 AND device = ?2 AND stream = ?3 AND dseq BETWEEN ?4 AND ?5
                   AND state = 'queued'",
            )?
            .execute(params![site, device, sql(stream), sql(from), sql(to)])?;
        Ok(out)
    }

    /// The agent acknowledged (applied or rejected) every message of `stream` through
    /// `through`. Returns how many changed state.
    pub fn down_acked(
        &mut self,
        site: &str,
        device: &str,
        stream: u64,
        through: u64,
    ) -> Result<usize, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "UPDATE down SET state = 'applied'
                 WHERE site = ?1 AND device = ?2 AND stream = ?3 AND dseq <= ?4
                   AND state IN ('queued', 'sent')",
            )?
            .execute(params![site, device, sql(stream), sql(through)])?)
    }

    /// The state of down message `msg_no` of `device`.
    pub fn down_state(
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
        Ok(row.map(|(state, detail)| match state.as_str() {
            "queued" => DownState::Queued,
            "sent" => DownState::Sent,
            "applied" => DownState::Applied,
            _ => DownState::Rejected {
                detail: detail.unwrap_or_default(),
            },
        }))
    }

    /// Every (site, device) with down messages not yet acknowledged.
    pub fn devices_with_pending_down(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT site, device FROM down WHERE state IN ('queued', 'sent')",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
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

    /// Records presence and the latest status or birth, for `GET /v1/devices`.
    pub fn presence(
        &mut self,
        site: &str,
        device: &str,
        online: Option<(bool, u64)>,
        birth: Option<&str>,
        status: Option<&str>,
        now: u64,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO devices (site, device, last_seen) VALUES (?1, ?2, ?3)
                 ON CONFLICT (site, device) DO UPDATE SET last_seen = excluded.last_seen",
            )?
            .execute(params![site, device, sql(now)])?;
        if let Some((on, session)) = online {
            self.conn
                .prepare_cached(
                    "UPDATE devices SET online = ?3, session = ?4
                     WHERE site = ?1 AND device = ?2 AND (?3 OR session <= ?4)",
                )?
                .execute(params![site, device, on, sql(session)])?;
        }
        if let Some(b) = birth {
            self.conn
                .prepare_cached("UPDATE devices SET birth = ?3 WHERE site = ?1 AND device = ?2")?
                .execute(params![site, device, b])?;
        }
        if let Some(s) = status {
            self.conn
                .prepare_cached("UPDATE devices SET status = ?3 WHERE site = ?1 AND device = ?2")?
                .execute(params![site, device, s])?;
        }
        Ok(())
    }
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
    Ok(Stored::New {
        cursor,
        through: event.seq,
    })
}
