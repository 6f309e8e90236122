//! The label print queue: jobs wait here until the printer took them without a fault,
//! and every report (sent, printed, fault) is recorded.

use floorhand_protocol::oms::EventKind;
use rusqlite::{OptionalExtension, params};

use super::{Db, StoreError, sql, unsql};

/// A label waiting for (or done with) the printer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrintJob {
    /// Job id, never reused.
    pub job_id: u64,
    /// SSCC of the carton.
    pub sscc: String,
    /// The label, ZPL bytes.
    pub zpl: Vec<u8>,
    /// Unix seconds it was queued.
    pub created: u64,
    /// The printer already took it (still in its buffer at the last look): confirm it,
    /// never send it again.
    pub sent: bool,
}

impl Db {
    /// Queues a label; returns its job id.
    pub fn enqueue_print(&mut self, now: u64, sscc: &str, zpl: &[u8]) -> Result<u64, StoreError> {
        self.write(now, |t, _| {
            let id: i64 =
                t.tx.prepare_cached(
                    "INSERT INTO print_jobs (sscc, zpl, created, state)
                     VALUES (?1, ?2, ?3, 'pending') RETURNING job_id",
                )?
                .query_row(params![sscc, zpl, sql(now)], |r| r.get(0))?;
            Ok(unsql(id))
        })
    }

    /// Jobs not yet printed, oldest first.
    pub fn pending_prints(&self) -> Result<Vec<PrintJob>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT job_id, sscc, zpl, created, sent_at IS NOT NULL FROM print_jobs
             WHERE state = 'pending' ORDER BY job_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(PrintJob {
                job_id: unsql(r.get(0)?),
                sscc: r.get(1)?,
                zpl: r.get(2)?,
                created: unsql(r.get(3)?),
                sent: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The printer took job `job_id` and holds it in its buffer: it stays queued until
    /// printed, but is never sent to the printer again (after a restart it is only
    /// confirmed). No event: `LabelPrinted` follows when it is printed.
    pub fn print_sent(&mut self, now: u64, job_id: u64) -> Result<(), StoreError> {
        self.write(now, |t, _| {
            t.tx.prepare_cached(
                "UPDATE print_jobs SET sent_at = coalesce(sent_at, ?2)
                 WHERE job_id = ?1 AND state = 'pending'",
            )?
            .execute(params![sql(job_id), sql(now)])?;
            Ok(())
        })
    }

    /// The printer took the label and reported no fault.
    pub fn mark_printed(&mut self, job_id: u64, now: u64) -> Result<(), StoreError> {
        self.finish_print(job_id, now, "printed", None)
    }

    /// The label could not be printed; `fault` says what the printer or transport said.
    pub fn mark_print_failed(
        &mut self,
        job_id: u64,
        now: u64,
        fault: &str,
    ) -> Result<(), StoreError> {
        self.finish_print(job_id, now, "failed", Some(fault))
    }

    fn finish_print(
        &mut self,
        job_id: u64,
        now: u64,
        state: &str,
        fault: Option<&str>,
    ) -> Result<(), StoreError> {
        self.write(now, |t, _| {
            let n =
                t.tx.prepare_cached(
                    "UPDATE print_jobs SET state = ?2, fault = ?3, done_at = ?4 WHERE job_id = ?1",
                )?
                .execute(params![sql(job_id), state, fault, sql(now)])?;
            if n == 0 {
                return Err(StoreError::NotFound {
                    what: "print job",
                    id: job_id.to_string(),
                });
            }
            Ok(())
        })
    }
    /// A new print job with the latest label stored for the carton `sscc`.
    pub fn reprint(&mut self, now: u64, sscc: &str) -> Result<u64, StoreError> {
        self.write(now, |t, _| {
            let id: Option<i64> =
                t.tx.prepare_cached(
                    "INSERT INTO print_jobs (sscc, zpl, created, state)
                     SELECT sscc, zpl, ?2, 'pending' FROM print_jobs WHERE sscc = ?1
                     ORDER BY job_id DESC LIMIT 1
                     RETURNING job_id",
                )?
                .query_row(params![sscc, sql(now)], |r| r.get(0))
                .optional()?;
            id.map(unsql).ok_or_else(|| StoreError::NotFound {
                what: "label for carton",
                id: sscc.to_string(),
            })
        })
    }

    /// The printer took job `job_id` and reported no fault: the job is done and a
    /// `LabelPrinted` event is written, in one transaction. A job already printed is
    /// left alone (`None`), so a repeated report never makes a second event.
    pub fn print_done(
        &mut self,
        now: u64,
        operator: u32,
        job_id: u64,
    ) -> Result<Option<u64>, StoreError> {
        self.write(now, |t, _| {
            let sscc: Option<String> =
                t.tx.prepare_cached(
                    "UPDATE print_jobs SET state = 'printed', fault = NULL, done_at = ?2
                     WHERE job_id = ?1 AND state = 'pending' RETURNING sscc",
                )?
                .query_row(params![sql(job_id), sql(now)], |r| r.get(0))
                .optional()?;
            let Some(sscc) = sscc else { return Ok(None) };
            t.event(operator, EventKind::LabelPrinted { sscc, job_id })
                .map(Some)
        })
    }

    /// The printer could not print job `job_id` (yet): the job stays queued with the
    /// fault's `kind` (e.g. `Offline`, `PaperOut`) noted, and a `PrintFailed` event with
    /// the `fault` text is written only when the kind differs from the one already noted,
    /// so a fault is reported once, across restarts too (an unreachable printer's message
    /// changes from "closed the connection" to "connection refused"; it is one fault).
    pub fn print_fault(
        &mut self,
        now: u64,
        operator: u32,
        job_id: u64,
        kind: &str,
        fault: &str,
    ) -> Result<Option<u64>, StoreError> {
        self.write(now, |t, _| {
            let sscc: Option<String> =
                t.tx.prepare_cached(
                    "UPDATE print_jobs SET fault = ?2
                     WHERE job_id = ?1 AND state = 'pending' AND fault IS NOT ?2
                     RETURNING sscc",
                )?
                .query_row(params![sql(job_id), kind], |r| r.get(0))
                .optional()?;
            let Some(sscc) = sscc else { return Ok(None) };
            t.event(
                operator,
                EventKind::PrintFailed {
                    sscc,
                    job_id,
                    fault: fault.to_string(),
                },
            )
            .map(Some)
        })
    }
}
