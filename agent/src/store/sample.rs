//! Example waves for tests, the crash test's child and the benchmark: realistic task rows
//! without a broker.

use floorhand_protocol::examples;
use floorhand_protocol::oms::{EventKind, Task, Wave, wave_digest};
use rusqlite::params;

use super::{StoreError, sql};

/// `n` example tasks with ids `first_task..first_task + n`, `qty` units each, in walking
/// order, all of order `SO-10042`.
pub fn sample_tasks(first_task: u64, n: usize, qty: u32) -> Vec<Task> {
    (0..n)
        .map(|i| {
            let seq = i as u32;
            let mut t = examples::task(
                first_task + i as u64,
                &format!("A-{:02}-{:02}-{}", seq / 100 % 100, seq % 100, 'A'),
                seq,
            );
            t.qty = qty;
            t
        })
        .collect()
}

/// A wave carrying `tasks`, with a matching task count and digest.
pub fn sample_wave(wave_id: u64, version: u32, tasks: Vec<Task>) -> Wave {
    Wave {
        wave_id,
        version,
        priority: 5,
        cutoff: 1_795_310_000,
        task_count: tasks.len() as u32,
        digest: wave_digest(&tasks),
        tasks,
    }
}

impl super::Db {
    /// Writes `n` events of `kind` to the outbox in one transaction: a device that queued
    /// confirmations through a long outage (benchmark set-up).
    pub fn queue_sample_events(
        &mut self,
        now: u64,
        operator: u32,
        kind: &EventKind,
        n: usize,
    ) -> Result<(), StoreError> {
        self.write(now, |t, _| {
            for _ in 0..n {
                t.event(operator, kind.clone())?;
            }
            Ok(())
        })
    }

    /// Writes `n` audit rows (one scan each) in one transaction: a device's scan history
    /// (benchmark set-up).
    pub fn sample_audit(&mut self, now: u64, n: usize) -> Result<(), StoreError> {
        self.write(now, |t, _| {
            let mut stmt = t.tx.prepare_cached(
                "INSERT INTO audit (at, operator, raw, outcome) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for i in 0..n as u64 {
                let raw = format!("]C10109506000134352{i:08}");
                stmt.execute(params![sql(now), 7, raw.as_bytes(), "ok"])?;
            }
            Ok(())
        })
    }
}
