//! The outbox (events waiting for the OMS's ack) and the birth snapshot.
//!
//! Seqs: the next event gets `high + 1`, where `high` is the larger of the highest seq in
//! the outbox and the highest seq ever acknowledged (`meta.acked_through`). An ack deletes
//! rows but raises `acked_through` in the same transaction, so a seq is never reused, even
//! when an ack emptied the outbox and the agent restarted.

use floorhand_protocol::Envelope;
use floorhand_protocol::limits::{MAX_PACK_ORDERS_IN_BIRTH, MAX_WAVES_IN_BIRTH};
use floorhand_protocol::oms::{
    Event, EventKind, PackOrderInfo, PackOrderState, Up, UpMsg, WaveVersion, encode_up,
};
use rusqlite::{Connection, params};

use super::conditions::WAVE_IS_DONE;
use super::meta::{ACKED_THROUGH, SESSION, acked_through, down_point, meta_next, meta_set};
use super::{Db, DownPoint, StoreError, Tx, sql, unsql};

/// One outbox row: the exact bytes to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Event seq, also the envelope's `msg_id`.
    pub seq: u64,
    /// `encode_up(Envelope::new(seq, UpMsg { incarnation, body: Up::Event(..) }))`.
    pub payload: Vec<u8>,
    /// Whether the broker acknowledged it (PUBACK); it stays until the OMS's `Ack`.
    pub sent: bool,
    /// Unix seconds it was written.
    pub created: u64,
}

/// The outbox backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxStats {
    /// Events not yet acknowledged by the OMS.
    pub count: u64,
    /// Age of the oldest of them in seconds, 0 if none.
    pub oldest_age_s: u64,
    /// Highest seq ever written.
    pub high_seq: u64,
}

/// What a birth message reports: everything the agent holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BirthSnapshot {
    /// Open waves, most recent first, with their versions and repair flags.
    pub waves: Vec<WaveVersion>,
    /// Open and packing pack orders, most recent first.
    pub pack_orders: Vec<PackOrderInfo>,
    /// Highest event seq written.
    pub outbox_high_seq: u64,
    /// Highest event seq the OMS acknowledged.
    pub outbox_acked_seq: u64,
    /// The down stream this device follows.
    pub down: DownPoint,
}

pub(super) fn load_high_seq(conn: &Connection) -> Result<u64, StoreError> {
    let max: Option<i64> = conn.query_row("SELECT max(seq) FROM outbox", [], |r| r.get(0))?;
    Ok(max.map(unsql).unwrap_or(0).max(acked_through(conn)?))
}

impl Tx<'_> {
    /// Writes an event to the outbox in this transaction and returns its seq.
    pub(super) fn event(&mut self, operator: u32, kind: EventKind) -> Result<u64, StoreError> {
        let seq = self.high + 1;
        let event = Event {
            seq,
            at: self.now,
            operator,
            kind,
        };
        let payload = encode_up(&Envelope::new(
            seq,
            UpMsg {
                incarnation: self.incarnation,
                body: Up::Event(event),
            },
        ))
        .map_err(|source| StoreError::Encode { seq, source })?;
        self.tx
            .prepare_cached("INSERT INTO outbox (seq, created, payload) VALUES (?1, ?2, ?3)")?
            .execute(params![sql(seq), sql(self.now), payload])?;
        self.high = seq;
        Ok(seq)
    }

    /// Deletes outbox rows up to `up_to_seq` (clamped to the highest seq written, so a
    /// confused OMS cannot make the device skip seqs) and records the ack.
    pub(super) fn ack(&mut self, up_to_seq: u64) -> Result<usize, StoreError> {
        let up_to = up_to_seq.min(self.high);
        let deleted = self
            .tx
            .prepare_cached("DELETE FROM outbox WHERE seq <= ?1")?
            .execute([sql(up_to)])?;
        if up_to > acked_through(&self.tx)? {
            meta_set(&self.tx, ACKED_THROUGH, sql(up_to))?;
        }
        Ok(deleted)
    }
}

impl Db {
    /// Writes an event that goes with no other change (a print result, a pack event).
    pub fn append_event(
        &mut self,
        now: u64,
        operator: u32,
        kind: EventKind,
    ) -> Result<u64, StoreError> {
        self.write(now, |t, _| t.event(operator, kind))
    }

    /// Up to `limit` outbox rows with `seq > after_seq`, in seq order, sent or not.
    pub fn outbox_pending(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, payload, sent, created FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![sql(after_seq), limit], |r| {
            Ok(OutboxRow {
                seq: unsql(r.get(0)?),
                payload: r.get(1)?,
                sent: r.get(2)?,
                created: unsql(r.get(3)?),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Marks rows up to `up_to_seq` as accepted by the broker. They stay in the outbox
    /// until the OMS acknowledges them: a broker without a session forgets publishes.
    /// The mark is for status figures only and needs no disk sync (after a power loss a
    /// row may read unsent again; it is re-sent either way until acknowledged).
    pub fn mark_sent(&mut self, up_to_seq: u64) -> Result<(), StoreError> {
        let through = sql(up_to_seq.min(self.high_seq));
        self.unsynced(|db| {
            db.conn
                .prepare_cached("UPDATE outbox SET sent = 1 WHERE seq <= ?1 AND sent = 0")?
                .execute([through])?;
            Ok(())
        })
    }

    /// Applies the OMS's cumulative ack: deletes rows with `seq <= up_to_seq`.
    pub fn ack(&mut self, up_to_seq: u64) -> Result<usize, StoreError> {
        self.write(0, |t, _| t.ack(up_to_seq))
    }

    /// Highest event seq written.
    pub fn high_seq(&self) -> u64 {
        self.high_seq
    }

    /// This database's incarnation (event seqs are scoped to it).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Highest event seq the OMS has acknowledged.
    pub fn acked_through(&self) -> Result<u64, StoreError> {
        acked_through(&self.conn)
    }

    /// Where the device is in the OMS's down sequence.
    pub fn down_point(&self) -> Result<DownPoint, StoreError> {
        down_point(&self.conn)
    }

    /// The header the next sequenced down message of the current stream must carry (of
    /// OMS incarnation 1 when none was followed yet): for tools and benchmarks that feed
    /// the store directly.
    pub fn next_down_header(&self) -> Result<floorhand_protocol::oms::DownHeader, StoreError> {
        let p = down_point(&self.conn)?;
        Ok(floorhand_protocol::oms::DownHeader {
            dseq: p.through + 1,
            oms_incarnation: if p.oms_incarnation == 0 {
                1
            } else {
                p.oms_incarnation
            },
            to_incarnation: self.incarnation,
        })
    }

    /// Outbox rows with `from <= seq <= to`, in seq order (the link's send window).
    pub fn outbox_range(&self, from: u64, to: u64) -> Result<Vec<OutboxRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, payload, sent, created FROM outbox WHERE seq BETWEEN ?1 AND ?2
             ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![sql(from), sql(to)], |r| {
            Ok(OutboxRow {
                seq: unsql(r.get(0)?),
                payload: r.get(1)?,
                sent: r.get(2)?,
                created: unsql(r.get(3)?),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The backlog: rows waiting for the OMS's ack and the age of the oldest.
    pub fn outbox_stats(&self, now: u64) -> Result<OutboxStats, StoreError> {
        let (count, oldest): (i64, Option<i64>) = self
            .conn
            .prepare_cached("SELECT count(*), min(created) FROM outbox")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(OutboxStats {
            count: unsql(count),
            oldest_age_s: oldest.map(|c| now.saturating_sub(unsql(c))).unwrap_or(0),
            high_seq: self.high_seq,
        })
    }

    /// The next MQTT session number (Sparkplug's bdSeq): one more than the last, persisted
    /// before it is used, so a restart never repeats one.
    pub fn next_session(&mut self) -> Result<u64, StoreError> {
        self.write(0, |t, _| meta_next(&t.tx, SESSION))
    }

    /// What a birth message reports: the open waves (most recent first, at most
    /// [`MAX_WAVES_IN_BIRTH`]) with their repair flags, the open pack orders (at most
    /// [`MAX_PACK_ORDERS_IN_BIRTH`]), the outbox's high and acked seqs and the down point.
    pub fn birth_snapshot(&self) -> Result<BirthSnapshot, StoreError> {
        // Whether a wave is done is decided here, not read from `waves.status`, which
        // confirmations leave for the purge to settle. A wave that needs repair is listed
        // even when no task is open: the OMS must resend it.
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT wave_id, version, needs_repair FROM waves
             WHERE needs_repair OR NOT {WAVE_IS_DONE}
             ORDER BY received_at DESC, wave_id DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map([MAX_WAVES_IN_BIRTH as i64], |r| {
            Ok(WaveVersion {
                wave_id: unsql(r.get(0)?),
                version: r.get(1)?,
                needs_repair: r.get(2)?,
            })
        })?;
        let waves = rows.collect::<Result<Vec<_>, _>>()?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT order_id, EXISTS (SELECT 1 FROM cartons c WHERE c.order_id = p.order_id)
             FROM pack_orders p WHERE status = 'open'
             ORDER BY received_at DESC, order_id LIMIT ?1",
        )?;
        let rows = stmt.query_map([MAX_PACK_ORDERS_IN_BIRTH as i64], |r| {
            Ok(PackOrderInfo {
                order_id: r.get(0)?,
                state: if r.get(1)? {
                    PackOrderState::Packing
                } else {
                    PackOrderState::Open
                },
            })
        })?;
        let pack_orders = rows.collect::<Result<Vec<_>, _>>()?;
        Ok(BirthSnapshot {
            waves,
            pack_orders,
            outbox_high_seq: self.high_seq,
            outbox_acked_seq: acked_through(&self.conn)?,
            down: down_point(&self.conn)?,
        })
    }
}
