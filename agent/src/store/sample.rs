//! Example waves for tests, the crash test's child and the benchmark: realistic task rows
//! without a broker.

use floorhand_protocol::examples;
use floorhand_protocol::oms::{Task, Wave, wave_digest};

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
