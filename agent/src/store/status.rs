//! The status report `floorhand status` prints (rendered by `cli_status`): tasks by
//! state, outbox backlog, storage, printing, packing and the operator's pace.

use rusqlite::params;

use super::{Db, OutboxStats, StoreError, TaskState, Usage, unsql};

/// The current operator's session, for the status report.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorStatus {
    /// Operator number.
    pub operator: u32,
    /// Login time, unix seconds.
    pub since: u64,
    /// Pick confirmations in this session (undone ones excluded).
    pub picks: u64,
    /// Units picked in this session.
    pub units: u64,
    /// Pick confirmations per hour since login (over at least one minute).
    pub picks_per_hour: f64,
}

/// What `floorhand status` prints.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    /// Task count per state, every state listed.
    pub tasks: Vec<(TaskState, u64)>,
    /// Outbox backlog.
    pub outbox: OutboxStats,
    /// Storage use.
    pub usage: Usage,
    /// The logged-in operator, if any.
    pub operator: Option<OperatorStatus>,
    /// Labels waiting for the printer.
    pub print_queue: u64,
    /// Closed cartons whose contents are kept (until the retention purge).
    pub cartons_packed: u64,
    /// Units in those cartons.
    pub units_packed: u64,
    /// Schema version of the file.
    pub schema_version: u32,
}

impl Db {
    /// Tasks by state, outbox backlog, storage and the current operator's pace.
    pub fn status(&self, now: u64) -> Result<StatusReport, StoreError> {
        let mut counts = std::collections::HashMap::new();
        {
            let mut stmt = self
                .conn
                .prepare("SELECT state, count(*) FROM tasks GROUP BY state")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let state: String = r.get(0)?;
                let n: i64 = r.get(1)?;
                counts.insert(TaskState::parse(&state)?, unsql(n));
            }
        }
        let tasks = TaskState::ALL
            .into_iter()
            .map(|s| (s, counts.get(&s).copied().unwrap_or(0)))
            .collect();
        let session: Option<(u32, i64)> = self
            .conn
            .query_row(
                "SELECT operator, login_at FROM sessions WHERE logout_at IS NULL
                 ORDER BY session_id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        let operator = match session {
            None => None,
            Some((operator, since)) => {
                let (picks, units): (i64, Option<i64>) = self.conn.query_row(
                    "SELECT count(*), sum(qty) FROM picks
                     WHERE operator = ?1 AND at >= ?2 AND undone = 0",
                    params![operator, since],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                let since = unsql(since);
                let hours = now.saturating_sub(since).max(60) as f64 / 3600.0;
                Some(OperatorStatus {
                    operator,
                    since,
                    picks: unsql(picks),
                    units: units.map(unsql).unwrap_or(0),
                    picks_per_hour: picks as f64 / hours,
                })
            }
        };
        let print_queue: i64 = self.conn.query_row(
            "SELECT count(*) FROM print_jobs WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?;
        let (cartons, units): (i64, i64) = self.conn.query_row(
            "SELECT (SELECT count(*) FROM cartons),
                    (SELECT coalesce(sum(qty), 0) FROM carton_items)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(StatusReport {
            cartons_packed: unsql(cartons),
            units_packed: unsql(units),
            tasks,
            outbox: self.outbox_stats(now)?,
            usage: self.usage()?,
            operator,
            print_queue: unsql(print_queue),
            schema_version: self.schema_version()?,
        })
    }
}
