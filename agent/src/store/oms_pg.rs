//! The OMS side's store on PostgreSQL (`[store] backend = "postgres"` in the bridge): the
//! same rows and rules as [`super::oms_db::OmsDb`], for teams that run Postgres already.
//!
//! tokio-postgres behind a deadpool pool, on a runtime of its own (one worker) so the
//! connections make progress whoever calls. [`OmsStore`] is synchronous, as the OMS core
//! calls it inline on its task (as it does SQLite): each call blocks in
//! `tokio::task::block_in_place`, so callers must be on a multi-thread runtime or on a
//! blocking thread.
//!
//! Invariants beyond SQLite's: cursors come from a counter row updated in the inserting
//! transaction, so they commit in order (a sequence could commit 11 before 10, and a
//! reader past 11 would never see 10); a device's down numbering runs under a per-device
//! advisory lock; the schema is created under an advisory lock, by version.

use std::future::Future;
use std::sync::Arc;

use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Transaction,
};
use floorhand_protocol::oms::{Down, Event, EventKind};
use tokio_postgres::Row;
use tokio_postgres::config::SslMode;

use super::StoreError;
use super::oms_store::{
    DeviceRow, DownLogRow, DownRange, DownRequest, DownRow, DownState, DownStream, OmsStore,
    Queued, StoreTotals, Stored, StoredEvent,
};
use super::pg_tls::RustlsConnect;
use crate::ledger::{self, Placement};

/// Schema steps by version (append only); version 1 is the whole of OmsDb's schema;
/// version 2 holds events that arrived before a gap was filled (several bridges share a
/// device's events, each getting some) and the claims of who publishes a device's down
/// messages.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE fh_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE fh_streams (
    site TEXT NOT NULL, device TEXT NOT NULL, incarnation BIGINT NOT NULL,
    through BIGINT NOT NULL, high_seen BIGINT NOT NULL DEFAULT 0, first_seen BIGINT NOT NULL,
    PRIMARY KEY (site, device, incarnation));
CREATE TABLE fh_devices (
    site TEXT NOT NULL, device TEXT NOT NULL, incarnation BIGINT NOT NULL DEFAULT 0,
    online BOOLEAN NOT NULL DEFAULT FALSE, session BIGINT NOT NULL DEFAULT 0,
    last_seen BIGINT NOT NULL DEFAULT 0, birth TEXT, status TEXT,
    birth_at BIGINT NOT NULL DEFAULT 0, death_at BIGINT NOT NULL DEFAULT 0,
    status_at BIGINT NOT NULL DEFAULT 0, storage_alarm_pct SMALLINT,
    PRIMARY KEY (site, device));
CREATE TABLE fh_events (
    cursor BIGINT PRIMARY KEY, site TEXT NOT NULL, device TEXT NOT NULL,
    incarnation BIGINT NOT NULL, seq BIGINT NOT NULL, at BIGINT NOT NULL,
    operator BIGINT NOT NULL, event TEXT NOT NULL,
    UNIQUE (site, device, incarnation, seq));
CREATE TABLE fh_down (
    site TEXT NOT NULL, device TEXT NOT NULL, msg_no BIGINT NOT NULL,
    stream BIGINT NOT NULL, dseq BIGINT NOT NULL, body TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'applied', 'rejected')),
    detail TEXT, created BIGINT NOT NULL,
    PRIMARY KEY (site, device, msg_no));
CREATE INDEX fh_down_by_stream ON fh_down (site, device, stream, dseq);
CREATE INDEX fh_down_pending ON fh_down (state) WHERE state IN ('queued', 'sent');
CREATE TABLE fh_alarms (
    alarm_id BIGSERIAL PRIMARY KEY, site TEXT NOT NULL, device TEXT NOT NULL,
    at BIGINT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE fh_idempotency (
    site TEXT NOT NULL, device TEXT NOT NULL, key TEXT NOT NULL,
    msg_no BIGINT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (site, device, key));
INSERT INTO fh_meta (key, value) VALUES ('cursor', 0);
",
    "
CREATE TABLE fh_pending (
    site TEXT NOT NULL, device TEXT NOT NULL, incarnation BIGINT NOT NULL,
    seq BIGINT NOT NULL, event TEXT NOT NULL,
    PRIMARY KEY (site, device, incarnation, seq));
CREATE TABLE fh_claims (
    site TEXT NOT NULL, device TEXT NOT NULL, owner TEXT NOT NULL, until_ms BIGINT NOT NULL,
    PRIMARY KEY (site, device));
",
    // The floor view reads down messages in queue order from a key (`down_log_after`).
    "
CREATE INDEX fh_down_by_created ON fh_down (created, site, device, msg_no);
",
    // 2: the messages not yet acknowledged, by stream (see the SQLite store's step 3).
    "
DROP INDEX fh_down_pending;
CREATE INDEX fh_down_pending ON fh_down (site, device, stream, dseq)
    WHERE state IN ('queued', 'sent');
",
];

/// Advisory lock key of schema changes ("FLOORHAN" in ASCII).
const SCHEMA_LOCK: i64 = 0x464c_4f4f_5248_414e;

fn sql(v: u64) -> i64 {
    v as i64
}

fn unsql(v: i64) -> u64 {
    v as u64
}

fn pg(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("postgres: {e}"))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("json: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("json {s:?}: {e}")))
}

/// The OMS side's store on PostgreSQL.
pub struct PgStore {
    pool: Pool,
    rt: Option<tokio::runtime::Runtime>,
    incarnation: u64,
    /// Held events stored by the last calls, for [`OmsStore::take_promoted`].
    promoted: Vec<StoredEvent>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed inside async code.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db`, or the key=value form), with
    /// `password` when given, with a pool of `pool_size`; creates or upgrades the schema,
    /// and loads or makes the store's incarnation. With `tls`, every connection is TLS
    /// (never a plain fallback) and the server's certificate is checked by that config;
    /// without it, a URL asking for `sslmode=require` is refused here.
    pub fn open(
        url: &str,
        password: Option<&str>,
        pool_size: usize,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<PgStore, StoreError> {
        let mut cfg: tokio_postgres::Config = url.parse().map_err(pg)?;
        if let Some(p) = password {
            cfg.password(p);
        }
        if tls.is_some() {
            cfg.ssl_mode(SslMode::Require);
        } else if cfg.get_ssl_mode() == SslMode::Require {
            return Err(pg(
                "the url asks for sslmode=require: give the CA that signed the server's \
                 certificate ([store] ca_file in the bridge's config)",
            ));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("oms-pg")
            .enable_all()
            .build()
            .map_err(pg)?;
        let mgr_cfg = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let mgr = match tls {
            Some(tls) => Manager::from_config(cfg, RustlsConnect(tls), mgr_cfg),
            None => Manager::from_config(cfg, tokio_postgres::NoTls, mgr_cfg),
        };
        let pool = {
            let _guard = rt.enter();
            Pool::builder(mgr)
                .max_size(pool_size.max(1))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .build()
                .map_err(pg)?
        };
        let mut store = PgStore {
            pool,
            rt: Some(rt),
            incarnation: 0,
            promoted: Vec::new(),
        };
        store.incarnation = store.block(migrate_and_incarnation(store.pool.clone()))?;
        Ok(store)
    }

    /// Runs `f` to completion on the store's runtime.
    fn block<T>(&self, f: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        let rt = self.rt.as_ref().ok_or(StoreError::Closed)?;
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::task::block_in_place(|| rt.block_on(f))
        } else {
            rt.block_on(f)
        }
    }

    /// A pooled connection. A failed connect says why, its causes included (the pool's
    /// and tokio-postgres's messages alone end at "error performing TLS handshake").
    async fn client(pool: &Pool) -> Result<deadpool_postgres::Object, StoreError> {
        pool.get().await.map_err(|e| {
            let mut why = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                let text = c.to_string();
                if !why.contains(&text) {
                    why = format!("{why}: {text}");
                }
                cause = c.source();
            }
            pg(why)
        })
    }
}

async fn migrate_and_incarnation(pool: Pool) -> Result<u64, StoreError> {
    let mut c = PgStore::client(&pool).await?;
    let tx = c.transaction().await.map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(pg)?;
    let exists: bool = tx
        .query_one("SELECT to_regclass('fh_meta') IS NOT NULL", &[])
        .await
        .map_err(pg)?
        .get(0);
    let version: i64 = if exists {
        tx.query_opt("SELECT value FROM fh_meta WHERE key = 'schema'", &[])
            .await
            .map_err(pg)?
            .map_or(0, |r| r.get(0))
    } else {
        0
    };
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.batch_execute(step).await.map_err(pg)?;
        tx.execute(
            "INSERT INTO fh_meta (key, value) VALUES ('schema', $1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&(i as i64 + 1)],
        )
        .await
        .map_err(pg)?;
    }
    let inc = tx
        .query_opt("SELECT value FROM fh_meta WHERE key = 'incarnation'", &[])
        .await
        .map_err(pg)?
        .map(|r| unsql(r.get(0)));
    let inc = match inc {
        Some(i) => i,
        None => {
            let i = random_id()?;
            tx.execute(
                "INSERT INTO fh_meta (key, value) VALUES ('incarnation', $1)",
                &[&sql(i)],
            )
            .await
            .map_err(pg)?;
            i
        }
    };
    tx.commit().await.map_err(pg)?;
    Ok(inc)
}

/// A random, non-zero id from the kernel's generator.
fn random_id() -> Result<u64, StoreError> {
    use std::io::Read;
    let mut b = [0u8; 8];
    loop {
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut b))
            .map_err(pg)?;
        let id = u64::from_le_bytes(b);
        if id != 0 {
            return Ok(id);
        }
    }
}

async fn device_lock(tx: &Transaction<'_>, site: &str, device: &str) -> Result<(), StoreError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&format!("{site}/{device}")],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

async fn device_inc(
    c: &impl GenericClient,
    site: &str,
    device: &str,
) -> Result<Option<u64>, StoreError> {
    Ok(c.query_opt(
        "SELECT incarnation FROM fh_devices WHERE site = $1 AND device = $2",
        &[&site, &device],
    )
    .await
    .map_err(pg)?
    .map(|r| unsql(r.get(0))))
}

async fn stream_through(
    c: &impl GenericClient,
    site: &str,
    device: &str,
    inc: u64,
) -> Result<Option<u64>, StoreError> {
    Ok(c.query_opt(
        "SELECT through FROM fh_streams WHERE site = $1 AND device = $2 AND incarnation = $3",
        &[&site, &device, &sql(inc)],
    )
    .await
    .map_err(pg)?
    .map(|r| unsql(r.get(0))))
}

async fn insert_down(
    tx: &Transaction<'_>,
    site: &str,
    device: &str,
    stream: u64,
    body: &str,
    now: u64,
) -> Result<u64, StoreError> {
    let r = tx
        .query_one(
            "SELECT (SELECT coalesce(max(msg_no), 0) + 1 FROM fh_down
                     WHERE site = $1 AND device = $2),
                    (SELECT coalesce(max(dseq), 0) + 1 FROM fh_down
                     WHERE site = $1 AND device = $2 AND stream = $3)",
            &[&site, &device, &sql(stream)],
        )
        .await
        .map_err(pg)?;
    let (no, dseq): (i64, i64) = (r.get(0), r.get(1));
    tx.execute(
        "INSERT INTO fh_down (site, device, msg_no, stream, dseq, body, state, created)
         VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7)",
        &[&site, &device, &no, &sql(stream), &dseq, &body, &sql(now)],
    )
    .await
    .map_err(pg)?;
    Ok(unsql(no))
}

/// Reads a range of a device's down messages in `tx` and marks the queued ones sent (see
/// [`OmsStore::down_range`]).
async fn read_and_mark_sent(
    tx: &Transaction<'_>,
    r: &DownRange<'_>,
) -> Result<Vec<DownRow>, StoreError> {
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
        [&r.site, &r.device, &sql(r.stream), &sql(r.from), &sql(r.to)];
    let rows = tx
        .query(
            "SELECT msg_no, dseq, body FROM fh_down
             WHERE site = $1 AND device = $2 AND stream = $3 AND dseq BETWEEN $4 AND $5
             ORDER BY dseq",
            &params,
        )
        .await
        .map_err(pg)?;
    let out = rows
        .iter()
        .map(|row| {
            Ok(DownRow {
                msg_no: unsql(row.get(0)),
                stream: r.stream,
                dseq: unsql(row.get(1)),
                body: from_json(row.get::<_, &str>(2))?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    tx.execute(
        "UPDATE fh_down SET state = 'sent'
         WHERE site = $1 AND device = $2 AND stream = $3 AND dseq BETWEEN $4 AND $5
           AND state = 'queued'",
        &params,
    )
    .await
    .map_err(pg)?;
    Ok(out)
}

/// Queues one keyed message in `tx`, its device locked (see
/// [`OmsStore::queue_down_keyed`]): a key seen before answers with its number, a device
/// never heard from gets nothing queued.
async fn queue_keyed_in(
    tx: &Transaction<'_>,
    r: &DownRequest<'_>,
    json: &str,
    now: u64,
) -> Result<Queued, StoreError> {
    let (site, device) = (r.site, r.device);
    if let Some(key) = r.key {
        let seen = tx
            .query_opt(
                "SELECT msg_no, body FROM fh_idempotency
                 WHERE site = $1 AND device = $2 AND key = $3",
                &[&site, &device, &key],
            )
            .await
            .map_err(pg)?;
        if let Some(row) = seen {
            let no = unsql(row.get(0));
            return Ok(if row.get::<_, &str>(1) == json {
                Queued::Again(no)
            } else {
                Queued::KeyReused(no)
            });
        }
    }
    let Some(stream) = device_inc(tx, site, device).await? else {
        return Ok(Queued::UnknownDevice);
    };
    let no = insert_down(tx, site, device, stream, json, now).await?;
    if let Some(key) = r.key {
        tx.execute(
            "INSERT INTO fh_idempotency (site, device, key, msg_no, body)
             VALUES ($1, $2, $3, $4, $5)",
            &[&site, &device, &key, &sql(no), &json],
        )
        .await
        .map_err(pg)?;
    }
    Ok(Queued::New(no))
}

async fn renumber(
    tx: &Transaction<'_>,
    site: &str,
    device: &str,
    nos: &[i64],
    incarnation: u64,
    requeue: bool,
) -> Result<(), StoreError> {
    for (i, no) in nos.iter().enumerate() {
        tx.execute(
            "UPDATE fh_down SET stream = $4, dseq = $5,
                state = CASE WHEN $6 THEN 'queued' ELSE state END
             WHERE site = $1 AND device = $2 AND msg_no = $3",
            &[
                &site,
                &device,
                no,
                &sql(incarnation),
                &(i as i64 + 1),
                &requeue,
            ],
        )
        .await
        .map_err(pg)?;
    }
    Ok(())
}

/// Stores one event in `tx`, the device already locked: the next seq is inserted (with
/// any held events it makes contiguous), an old one is a duplicate, a later one is held
/// until the gap fills.
async fn store_event(
    tx: &Transaction<'_>,
    site: &str,
    device: &str,
    incarnation: u64,
    event: &Event,
    now: u64,
    promoted: &mut Vec<StoredEvent>,
) -> Result<Stored, StoreError> {
    let known = stream_through(tx, site, device, incarnation).await?;
    let base = match known {
        Some(t) => t,
        None if event.seq == 1 => 0,
        None => {
            hold(tx, site, device, incarnation, event).await?;
            return Ok(Stored::Held { through: None });
        }
    };
    match ledger::place(base, event.seq) {
        Placement::Duplicate => return Ok(Stored::Duplicate { through: base }),
        Placement::Ahead => {
            tx.execute(
                "UPDATE fh_streams SET high_seen = greatest(high_seen, $4)
                 WHERE site = $1 AND device = $2 AND incarnation = $3",
                &[&site, &device, &sql(incarnation), &sql(event.seq)],
            )
            .await
            .map_err(pg)?;
            hold(tx, site, device, incarnation, event).await?;
            return Ok(Stored::Held {
                through: Some(base),
            });
        }
        Placement::Next => {}
    }
    let cursor = insert_next(tx, site, device, incarnation, event, now).await?;
    let through = promote(tx, site, device, incarnation, event.seq, now, promoted).await?;
    Ok(Stored::New { cursor, through })
}

/// Keeps an event that arrived before the one it follows.
async fn hold(
    tx: &Transaction<'_>,
    site: &str,
    device: &str,
    incarnation: u64,
    event: &Event,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO fh_pending (site, device, incarnation, seq, event)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        &[
            &site,
            &device,
            &sql(incarnation),
            &sql(event.seq),
            &to_json(event)?,
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

/// Moves held events that now follow `through` without a gap into the store, and drops
/// held ones at or below the new ack point. Returns the new ack point.
async fn promote(
    tx: &Transaction<'_>,
    site: &str,
    device: &str,
    incarnation: u64,
    mut through: u64,
    now: u64,
    promoted: &mut Vec<StoredEvent>,
) -> Result<u64, StoreError> {
    let held = tx
        .query(
            "SELECT seq, event FROM fh_pending
             WHERE site = $1 AND device = $2 AND incarnation = $3 AND seq > $4 ORDER BY seq",
            &[&site, &device, &sql(incarnation), &sql(through)],
        )
        .await
        .map_err(pg)?;
    for r in &held {
        if unsql(r.get(0)) != through + 1 {
            break;
        }
        let event: Event = from_json(r.get::<_, &str>(1))?;
        let cursor = insert_next(tx, site, device, incarnation, &event, now).await?;
        through = event.seq;
        promoted.push(StoredEvent {
            cursor,
            site: site.to_string(),
            device: device.to_string(),
            incarnation,
            event,
        });
    }
    tx.execute(
        "DELETE FROM fh_pending WHERE site = $1 AND device = $2 AND incarnation = $3 AND seq <= $4",
        &[&site, &device, &sql(incarnation), &sql(through)],
    )
    .await
    .map_err(pg)?;
    Ok(through)
}

/// Inserts the stream's next event under the next cursor and moves its ack point.
async fn insert_next(
    tx: &Transaction<'_>,
    site: &str,
    device: &str,
    incarnation: u64,
    event: &Event,
    now: u64,
) -> Result<u64, StoreError> {
    tx.execute(
        "INSERT INTO fh_streams (site, device, incarnation, through, high_seen, first_seen)
         VALUES ($1, $2, $3, $4, $4, $5)
         ON CONFLICT (site, device, incarnation) DO UPDATE SET
            through = excluded.through,
            high_seen = greatest(fh_streams.high_seen, excluded.through)",
        &[
            &site,
            &device,
            &sql(incarnation),
            &sql(event.seq),
            &sql(now),
        ],
    )
    .await
    .map_err(pg)?;
    // The counter row stays locked until the commit: cursors commit in order.
    let cursor: i64 = tx
        .query_one(
            "UPDATE fh_meta SET value = value + 1 WHERE key = 'cursor' RETURNING value",
            &[],
        )
        .await
        .map_err(pg)?
        .get(0);
    tx.execute(
        "INSERT INTO fh_events (cursor, site, device, incarnation, seq, at, operator, event)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &cursor,
            &site,
            &device,
            &sql(incarnation),
            &sql(event.seq),
            &sql(event.at),
            &i64::from(event.operator),
            &to_json(event)?,
        ],
    )
    .await
    .map_err(pg)?;
    match &event.kind {
        EventKind::Rejected { msg_id, detail, .. } => {
            tx.execute(
                "UPDATE fh_down SET state = 'rejected', detail = $5
                 WHERE site = $1 AND device = $2 AND stream = $3 AND dseq = $4
                   AND state IN ('queued', 'sent', 'applied')",
                &[&site, &device, &sql(incarnation), &sql(*msg_id), detail],
            )
            .await
            .map_err(pg)?;
        }
        EventKind::StorageAlarm { pct } => {
            tx.execute(
                "UPDATE fh_devices SET storage_alarm_pct = $3 WHERE site = $1 AND device = $2",
                &[&site, &device, &i16::from(*pct)],
            )
            .await
            .map_err(pg)?;
        }
        _ => {}
    }
    Ok(unsql(cursor))
}

fn stored_event(r: &Row) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        cursor: unsql(r.get(0)),
        site: r.get(1),
        device: r.get(2),
        incarnation: unsql(r.get(3)),
        event: from_json(r.get::<_, &str>(4))?,
    })
}

impl OmsStore for PgStore {
    fn incarnation(&self) -> u64 {
        self.incarnation
    }

    fn device_incarnation(&self, site: &str, device: &str) -> Result<u64, StoreError> {
        self.block(async {
            let c = Self::client(&self.pool).await?;
            Ok(device_inc(&c, site, device).await?.unwrap_or(0))
        })
    }

    fn through(
        &self,
        site: &str,
        device: &str,
        incarnation: u64,
    ) -> Result<Option<u64>, StoreError> {
        self.block(async {
            let c = Self::client(&self.pool).await?;
            stream_through(&c, site, device, incarnation).await
        })
    }

    fn store_events(
        &mut self,
        batch: &[(String, String, u64, Event)],
        now: u64,
    ) -> Result<Vec<Stored>, StoreError> {
        let (out, promoted) = self.block(async {
            let mut c = Self::client(&self.pool).await?;
            let tx = c.transaction().await.map_err(pg)?;
            // Each device of the batch locked, in one order for every bridge (no
            // deadlock), so bridges sharing a device's events place them one at a time.
            let devices: std::collections::BTreeSet<(&str, &str)> = batch
                .iter()
                .map(|(s, d, _, _)| (s.as_str(), d.as_str()))
                .collect();
            for (site, device) in devices {
                device_lock(&tx, site, device).await?;
            }
            let mut out = Vec::with_capacity(batch.len());
            let mut promoted = Vec::new();
            for (site, device, inc, event) in batch {
                out.push(store_event(&tx, site, device, *inc, event, now, &mut promoted).await?);
            }
            tx.commit().await.map_err(pg)?;
            Ok((out, promoted))
        })?;
        self.promoted.extend(promoted);
        Ok(out)
    }

    fn birth_floor(
        &mut self,
        site: &str,
        device: &str,
        incarnation: u64,
        (acked, high): (u64, u64),
        now: u64,
    ) -> Result<Option<String>, StoreError> {
        let (alarm, promoted) = self.block(async {
            let mut c = Self::client(&self.pool).await?;
            let tx = c.transaction().await.map_err(pg)?;
            device_lock(&tx, site, device).await?;
            let through = stream_through(&tx, site, device, incarnation).await?;
            tx.execute(
                "INSERT INTO fh_streams (site, device, incarnation, through, high_seen, first_seen)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (site, device, incarnation) DO UPDATE SET
                    through = greatest(fh_streams.through, excluded.through),
                    high_seen = greatest(fh_streams.high_seen, excluded.high_seen)",
                &[
                    &site,
                    &device,
                    &sql(incarnation),
                    &sql(acked),
                    &sql(high.max(acked)),
                    &sql(now),
                ],
            )
            .await
            .map_err(pg)?;
            // Held events after the floor the birth tells become contiguous.
            let floor = through.unwrap_or(0).max(acked);
            let mut promoted = Vec::new();
            promote(&tx, site, device, incarnation, floor, now, &mut promoted).await?;
            tx.commit().await.map_err(pg)?;
            let alarm = match through {
                Some(t) if t < acked => {
                    Some(super::oms_store::acked_elsewhere(t + 1, acked, incarnation))
                }
                _ => None,
            };
            Ok((alarm, promoted))
        })?;
        self.promoted.extend(promoted);
        Ok(alarm)
    }

    fn set_incarnation(
        &mut self,
        site: &str,
        device: &str,
        incarnation: u64,
        old_high: Option<u64>,
        now: u64,
    ) -> Result<Vec<String>, StoreError> {
        self.block(async {
            let mut c = Self::client(&self.pool).await?;
            let tx = c.transaction().await.map_err(pg)?;
            device_lock(&tx, site, device).await?;
            let old = device_inc(&tx, site, device).await?;
            let mut alarms = Vec::new();
            if old == Some(incarnation) {
                return Ok(alarms);
            }
            // A late copy from a replaced database never switches the device back.
            let seen_before = tx
                .query_opt(
                    "SELECT 1 FROM fh_streams WHERE site = $1 AND device = $2 AND incarnation = $3",
                    &[&site, &device, &sql(incarnation)],
                )
                .await
                .map_err(pg)?
                .is_some();
            if old.is_some_and(|o| o != 0) && seen_before {
                return Ok(alarms);
            }
            tx.execute(
                "INSERT INTO fh_devices (site, device, incarnation, last_seen) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (site, device) DO UPDATE SET incarnation = excluded.incarnation",
                &[&site, &device, &sql(incarnation), &sql(now)],
            )
            .await
            .map_err(pg)?;
            if let Some(old) = old.filter(|&o| o != 0) {
                let (through, high) = tx
                    .query_opt(
                        "SELECT through, high_seen FROM fh_streams
                         WHERE site = $1 AND device = $2 AND incarnation = $3",
                        &[&site, &device, &sql(old)],
                    )
                    .await
                    .map_err(pg)?
                    .map_or((0, 0), |r| (unsql(r.get(0)), unsql(r.get(1))));
                let high = high.max(old_high.unwrap_or(0));
                if high > through {
                    alarms.push(super::oms_store::events_lost(through + 1, high, old));
                }
                let nos: Vec<i64> = tx
                    .query(
                        "SELECT msg_no FROM fh_down WHERE site = $1 AND device = $2
                           AND state IN ('queued', 'sent') ORDER BY msg_no",
                        &[&site, &device],
                    )
                    .await
                    .map_err(pg)?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                renumber(&tx, site, device, &nos, incarnation, true).await?;
                if !nos.is_empty() {
                    alarms.push(super::oms_store::readdressed(nos.len(), incarnation));
                }
            } else {
                let nos: Vec<i64> = tx
                    .query(
                        "SELECT msg_no FROM fh_down WHERE site = $1 AND device = $2 AND stream = 0
                         ORDER BY msg_no",
                        &[&site, &device],
                    )
                    .await
                    .map_err(pg)?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                renumber(&tx, site, device, &nos, incarnation, false).await?;
            }
            for a in &alarms {
                tx.execute(
                    "INSERT INTO fh_alarms (site, device, at, detail) VALUES ($1, $2, $3, $4)",
                    &[&site, &device, &sql(now), a],
                )
                .await
                .map_err(pg)?;
            }
            tx.commit().await.map_err(pg)?;
            Ok(alarms)
        })
    }

    fn alarm(
        &mut self,
        site: &str,
        device: &str,
        detail: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        self.block(async {
            let c = Self::client(&self.pool).await?;
            c.execute(
                "INSERT INTO fh_alarms (site, device, at, detail) VALUES ($1, $2, $3, $4)",
                &[&site, &device, &sql(now), &detail],
            )
            .await
            .map_err(pg)?;
            Ok(())
        })
    }

    fn alarms(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        self.block(async {
            let c = Self::client(&self.pool).await?;
            Ok(c.query(
                "SELECT site, device, detail FROM fh_alarms ORDER BY alarm_id",
                &[],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
        })
    }

    fn queue_downs(
        &mut self,
        site: &str,
        device: &str,
        bodies: &[Down],
        now: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let jsons = bodies.iter().map(to_json).collect::<Result<Vec<_>, _>>()?;
        self.block(async {
            let mut c = Self::client(&self.pool).await?;
            let tx = c.transaction().await.map_err(pg)?;
            device_lock(&tx, site, device).await?;
            let stream = device_inc(&tx, site, device).await?.unwrap_or(0);
            let mut nos = Vec::with_capacity(jsons.len());
            for json in &jsons {
                nos.push(insert_down(&tx, site, device, stream, json, now).await?);
            }
            tx.commit().await.map_err(pg)?;
            Ok(nos)
        })
    }

    fn queue_down_many(
        &mut self,
        reqs: &[DownRequest<'_>],
        now: u64,
    ) -> Result<Vec<Queued>, StoreError> {
        let jsons = reqs
            .iter()
            .map(|r| to_json(r.body))
            .collect::<Result<Vec<_>, _>>()?;
        self.block(async {
            let mut c = Self::client(&self.pool).await?;
            // One transaction for the whole group: one commit (one WAL flush) for every
            // request waiting, and all are committed or none (an error aborts it).
            let tx = c.transaction().await.map_err(pg)?;
            // Every device of the group locked first, in one order for every bridge (no
            // deadlock between bridges queueing to the same devices).
            let devices: std::collections::BTreeSet<(&str, &str)> =
                reqs.iter().map(|r| (r.site, r.device)).collect();
            for (site, device) in devices {
                device_lock(&tx, site, device).await?;
            }
            let mut out = Vec::with_capacity(reqs.len());
            for (r, json) in reqs.iter().zip(&jsons) {
                out.push(queue_keyed_in(&tx, r, json, now).await?);
            }
            tx.commit().await.map_err(pg)?;
            Ok(out)
        })
    }

    fn down_stream(&self, site: &str, device: &str) -> Result<DownStream, StoreError> {
        self.block(async {
            let c = Self::client(&self.pool).await?;
            let stream = device_inc(&c, site, device).await?.unwrap_or(0);
            // Acks are cumulative: everything below the lowest unacknowledged message is
            // acknowledged.
            let r = c
                .query_one(
                    "SELECT (SELECT min(dseq) FROM fh_down
                             WHERE site = $1 AND device = $2 AND stream = $3
                               AND state IN ('queued', 'sent')),
                            (SELECT coalesce(max(dseq), 0) FROM fh_down
                             WHERE site = $1 AND device = $2 AND stream = $3)",
                    &[&site, &device, &sql(stream)],
                )
                .await
                .map_err(pg)?;
            let pending: Option<i64> = r.get(0);
            let high = unsql(r.get(1));
            Ok(DownStream {
                stream,
                acked: pending.map_or(high, |p| unsql(p) - 1),
                high,
            })
        })
    }

    fn down_ranges(&mut self, ranges: &[DownRange<'_>]) -> Result<Vec<Vec<DownRow>>, StoreError> {
        self.block(async {
            let mut c = Self::client(&self.pool).await?;
            let tx = c.transaction().await.map_err(pg)?;
            // "Sent" is bookkeeping (see the SQLite store): no wait for the WAL flush.
            tx.batch_execute("SET LOCAL synchronous_commit TO off")
                .await
                .map_err(pg)?;
            let mut out = Vec::with_capacity(ranges.len());
            for r in ranges {
                out.push(read_and_mark_sent(&tx, r).await?);
            }
            tx.commit().await.map_err(pg)?;
            Ok(out)
        })
    }

    fn down_acked(
        &mut self,
        site: &str,
        device: &str,
        stream: u64,
        through: u64,
    ) -> Result<usize, StoreError> {
        self.block(async {
            let c = Self::client(&self.pool).await?;
            Ok(c.execute(
                "UPDATE fh_down SET state = 'applied'
                 WHERE site = $1 AND device = $2 AND stream = $3 AND dseq <= $4
                   AND state IN ('queued', 'sent')",
                &[&site, &device, &sql(stream), &sql(through)],
            )
            .await
            .map_err(pg)? as usize)
        })
    }

    fn down_state(
        &self,
        site: &str,
        device: &str,
        msg_no: u64,
    ) -> Result<Option<DownState>, StoreError> {
        self.block(async {
            let c = Self::client(&self.pool).await?;
            let row = c
                .query_opt(
                    "SELECT state, detail FROM fh_down
                     WHERE site = $1 AND device = $2 AND msg_no = $3",
                    &[&site, &device, &sql(msg_no)],
                )
                .await
                .map_err(pg)?;
            Ok(row.map(|r| super::oms_store::down_state(r.get(0), r.get(1))))
        })
    }

    fn devices_with_pending_down(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.block(async {
            let c = Self::client(&self.pool).await?;
            Ok(c.query(
                "SELECT DISTINCT site, device FROM fh_down WHERE state IN ('queued', 'sent')",
                &[],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.block(async {
            let c = Self::client(&self.pool).await?;
            c.query(
                "SELECT cursor, site, device, incarnation, event FROM fh_events
                 WHERE cursor > $1 ORDER BY cursor LIMIT $2",
                &[&sql(after), &(limit as i64)],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(stored_event)
            .collect()
        })
    }

    fn presence(
        &mut self,
        site: &str,
        device: &str,
        online: Option<(bool, u64)>,
        birth: Option<&str>,
        status: Option<&str>,
        now: u64,
    ) -> Result<(), StoreError> {
        self.block(async {
            let mut c = Self::client(&self.pool).await?;
            let tx = c.transaction().await.map_err(pg)?;
            tx.execute(
                "INSERT INTO fh_devices (site, device, last_seen) VALUES ($1, $2, $3)
                 ON CONFLICT (site, device) DO UPDATE SET last_seen = excluded.last_seen",
                &[&site, &device, &sql(now)],
            )
            .await
            .map_err(pg)?;
            if let Some((on, session)) = online {
                tx.execute(
                    "UPDATE fh_devices SET online = $3, session = $4,
                        death_at = CASE WHEN $3 THEN death_at ELSE $5 END
                     WHERE site = $1 AND device = $2 AND ($3 OR session <= $4)",
                    &[&site, &device, &on, &sql(session), &sql(now)],
                )
                .await
                .map_err(pg)?;
            }
            if let Some(b) = birth {
                tx.execute(
                    "UPDATE fh_devices SET birth = $3, birth_at = $4 WHERE site = $1 AND device = $2",
                    &[&site, &device, &b, &sql(now)],
                )
                .await
                .map_err(pg)?;
            }
            if let Some(s) = status {
                tx.execute(
                    "UPDATE fh_devices SET status = $3, status_at = $4 WHERE site = $1 AND device = $2",
                    &[&site, &device, &s, &sql(now)],
                )
                .await
                .map_err(pg)?;
            }
            tx.commit().await.map_err(pg)?;
            Ok(())
        })
    }

    fn down_log_after(
        &self,
        after: (u64, &str, &str, u64),
        limit: usize,
    ) -> Result<Vec<DownLogRow>, StoreError> {
        self.block(async {
            let c = Self::client(&self.pool).await?;
            let rows = c
                .query(
                    "SELECT site, device, msg_no, created, body FROM fh_down
                     WHERE (created, site, device, msg_no) > ($1, $2, $3, $4)
                     ORDER BY created, site, device, msg_no LIMIT $5",
                    &[
                        &sql(after.0),
                        &after.1,
                        &after.2,
                        &sql(after.3),
                        &(limit as i64),
                    ],
                )
                .await
                .map_err(pg)?;
            rows.iter()
                .map(|r| {
                    Ok(DownLogRow {
                        site: r.get(0),
                        device: r.get(1),
                        msg_no: unsql(r.get(2)),
                        created: unsql(r.get(3)),
                        body: from_json(r.get::<_, &str>(4))?,
                    })
                })
                .collect()
        })
    }

    fn devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
        self.block(async {
            let c = Self::client(&self.pool).await?;
            let rows = c
                .query(
                    "SELECT d.site, d.device, d.incarnation, d.online, d.session, d.last_seen,
                            d.birth_at, d.death_at, d.status_at, d.birth, d.status,
                            coalesce(s.high_seen, 0), coalesce(s.through, 0), d.storage_alarm_pct,
                            (SELECT count(*) FROM fh_down w WHERE w.site = d.site
                                AND w.device = d.device AND w.state IN ('queued', 'sent'))
                     FROM fh_devices d
                     LEFT JOIN fh_streams s ON s.site = d.site AND s.device = d.device
                         AND s.incarnation = d.incarnation
                     ORDER BY d.site, d.device",
                    &[],
                )
                .await
                .map_err(pg)?;
            Ok(rows
                .iter()
                .map(|r| DeviceRow {
                    site: r.get(0),
                    device: r.get(1),
                    incarnation: unsql(r.get(2)),
                    online: r.get(3),
                    session: unsql(r.get(4)),
                    last_seen: unsql(r.get(5)),
                    birth_at: unsql(r.get(6)),
                    death_at: unsql(r.get(7)),
                    status_at: unsql(r.get(8)),
                    birth: r.get(9),
                    status: r.get(10),
                    high_seen: unsql(r.get(11)),
                    through: unsql(r.get(12)),
                    storage_alarm_pct: r.get::<_, Option<i16>>(13).map(|p| p.clamp(0, 255) as u8),
                    down_unacked: unsql(r.get(14)),
                })
                .collect())
        })
    }

    fn totals(&self) -> Result<StoreTotals, StoreError> {
        self.block(async {
            let c = Self::client(&self.pool).await?;
            let r = c
                .query_one(
                    "SELECT (SELECT value FROM fh_meta WHERE key = 'cursor'),
                            (SELECT count(*) FROM fh_down WHERE state IN ('queued', 'sent')),
                            (SELECT count(*) FROM fh_devices WHERE online),
                            (SELECT count(*) FROM fh_devices),
                            (SELECT count(*) FROM fh_alarms)",
                    &[],
                )
                .await
                .map_err(pg)?;
            Ok(StoreTotals {
                events: unsql(r.get(0)),
                down_pending: unsql(r.get(1)),
                devices_online: unsql(r.get(2)),
                devices: unsql(r.get(3)),
                alarms: unsql(r.get(4)),
            })
        })
    }

    fn take_promoted(&mut self) -> Vec<StoredEvent> {
        std::mem::take(&mut self.promoted)
    }

    fn claim(
        &mut self,
        owner: &str,
        devices: &[(String, String)],
        ttl_ms: u64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.block(async {
            let c = Self::client(&self.pool).await?;
            let mut mine = Vec::new();
            // The database's clock decides, so the bridges' clocks need not agree.
            for (site, device) in devices {
                let won = c
                    .query_opt(
                        "INSERT INTO fh_claims (site, device, owner, until_ms)
                         VALUES ($1, $2, $3,
                            (extract(epoch FROM clock_timestamp()) * 1000)::bigint + $4)
                         ON CONFLICT (site, device) DO UPDATE SET
                            owner = excluded.owner, until_ms = excluded.until_ms
                         WHERE fh_claims.owner = excluded.owner
                            OR fh_claims.until_ms < (extract(epoch FROM clock_timestamp()) * 1000)::bigint
                         RETURNING owner",
                        &[site, device, &owner, &sql(ttl_ms)],
                    )
                    .await
                    .map_err(pg)?;
                if won.is_some() {
                    mine.push((site.clone(), device.clone()));
                }
            }
            Ok(mine)
        })
    }
}
