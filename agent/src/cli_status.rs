//! `floorhand status --db PATH`: the local mirror's state for a person at the device.

use std::fmt::{self, Write};
use std::path::Path;

use crate::store::{Db, StatusReport, StoreError};

/// Opens the database read-only (never creating it) and renders its status report as of
/// `now` (unix seconds).
pub fn report(db: &Path, now: u64) -> Result<String, StoreError> {
    let db = Db::open_read_only(db)?;
    Ok(render(&db.status(now)?))
}

/// The report as text, one figure per line (no trailing newline).
pub fn render(r: &StatusReport) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_report(&mut out, r);
    out
}

fn write_report(f: &mut impl Write, r: &StatusReport) -> fmt::Result {
    writeln!(f, "tasks")?;
    for (state, n) in &r.tasks {
        writeln!(f, "  {:<12} {n:>8}", state.as_str())?;
    }
    let o = &r.outbox;
    writeln!(
        f,
        "outbox     {} events not yet acknowledged, oldest {} s, highest seq {}",
        o.count, o.oldest_age_s, o.high_seq
    )?;
    let u = &r.usage;
    writeln!(
        f,
        "storage    {:.1} MiB of {:.1} MiB ({}%){}",
        u.bytes as f64 / 1_048_576.0,
        u.max_bytes as f64 / 1_048_576.0,
        u.pct,
        if u.alarm {
            "  ALARM: above the high-water mark"
        } else {
            ""
        }
    )?;
    writeln!(f, "printing   {} labels waiting", r.print_queue)?;
    writeln!(
        f,
        "packed     {} cartons ({} units) kept in the store",
        r.cartons_packed, r.units_packed
    )?;
    match &r.operator {
        None => writeln!(f, "operator   nobody logged in")?,
        Some(op) => writeln!(
            f,
            "operator   {} since {}: {} picks ({} units), {:.1} picks per hour",
            op.operator, op.since, op.picks, op.units, op.picks_per_hour
        )?,
    }
    write!(f, "schema     version {}", r.schema_version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{OutboxStats, TaskState, Usage};

    fn report(alarm: bool) -> StatusReport {
        StatusReport {
            tasks: vec![(TaskState::Open, 3)],
            outbox: OutboxStats {
                count: 2,
                oldest_age_s: 7,
                high_seq: 9,
            },
            usage: Usage {
                bytes: 1_048_576,
                max_bytes: 4_194_304,
                pct: 25,
                alarm,
            },
            operator: None,
            print_queue: 1,
            cartons_packed: 0,
            units_packed: 0,
            schema_version: 5,
        }
    }

    #[test]
    fn the_report_names_each_figure_and_flags_the_storage_alarm() {
        let text = render(&report(true));
        assert!(
            text.starts_with("tasks\n  open                3\n"),
            "{text}"
        );
        assert!(
            text.contains("outbox     2 events not yet acknowledged, oldest 7 s, highest seq 9")
        );
        assert!(
            text.contains("storage    1.0 MiB of 4.0 MiB (25%)  ALARM"),
            "{text}"
        );
        assert!(text.contains("operator   nobody logged in"));
        assert!(text.ends_with("schema     version 5"), "{text}");
        assert!(!render(&report(false)).contains("ALARM"));
    }
}
