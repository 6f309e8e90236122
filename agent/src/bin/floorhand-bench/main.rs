//! `floorhand-bench`: Floorhand's benchmarks, each beside a baseline measured in the same
//! run, printed as one table. `scripts/bench` runs it in release mode.
//!
//! Adding a figure: write a `fn(&Ctx) -> anyhow::Result<Vec<Row>>` and list it in
//! [`BENCHES`]. A row says what was measured for Floorhand and for the baseline, their
//! ratio, and the goal. `--quick` makes every benchmark small, to check the harness runs;
//! `--check` makes the run fail (exit 1) when a goal row is missed.

mod bridge;
mod channel;
mod daemon;
mod drain;
mod procs;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use floorhand::store::fixtures::{RawDb, sample_tasks, sample_wave};
use floorhand::store::{Db, PickConfirmation, StoreConfig, Synchronous};
use floorhand::wire;
use floorhand_protocol::oms::Down;
use serde::Serialize;

/// Runs Floorhand's benchmarks and prints one table.
#[derive(Parser)]
#[command(about, long_about = None)]
struct Opts {
    /// Every benchmark small: checks the harness, not the goals.
    #[arg(long)]
    quick: bool,
    /// Also write the rows as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Scratch directory for database files; use the device's real disk (a tmpfs makes
    /// every sync free). Default: target/floorhand-bench.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Run only the benchmarks whose name contains TEXT (e.g. `wave`), for profiling one.
    #[arg(long, value_name = "TEXT")]
    only: Option<String>,
    /// Exit 1 when any row misses its goal (after printing the whole table).
    #[arg(long)]
    check: bool,
}

/// What every benchmark gets.
struct Ctx {
    quick: bool,
    dir: PathBuf,
}

impl Ctx {
    /// A fresh file path in the scratch directory.
    fn file(&self, name: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(name);
        for suffix in ["", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", path.display()));
            if p.exists() {
                std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            }
        }
        Ok(path)
    }
}

/// Whether a ratio must stay at or below, or at or above, its goal; or whether
/// Floorhand's own figure must stay at or below a limit (in the unit named).
#[derive(Debug, Clone, Copy, Serialize)]
enum Goal {
    AtMost(f64),
    AtLeast(f64),
    ValueAtMost(f64, &'static str),
}

/// One line of the table.
#[derive(Debug, Serialize)]
struct Row {
    figure: String,
    floorhand: String,
    baseline: String,
    /// Floorhand's figure divided by the baseline's.
    ratio: Option<f64>,
    goal: Option<Goal>,
    /// Whether the ratio (or, for `ValueAtMost`, Floorhand's figure) meets the goal.
    met: Option<bool>,
}

impl Row {
    fn new(
        figure: &str,
        floorhand: String,
        baseline: String,
        ratio: f64,
        goal: Option<Goal>,
    ) -> Row {
        let met = goal.and_then(|g| match g {
            Goal::AtMost(x) => Some(ratio <= x),
            Goal::AtLeast(x) => Some(ratio >= x),
            Goal::ValueAtMost(..) => None,
        });
        Row {
            figure: figure.to_string(),
            floorhand,
            baseline,
            ratio: Some(ratio),
            goal,
            met,
        }
    }

    /// A row whose goal is a limit on Floorhand's own figure (`value`, in the goal's
    /// unit); the baseline is shown for scale, and the ratio where it means something.
    fn absolute(
        figure: &str,
        value: f64,
        floorhand: String,
        baseline: String,
        ratio: Option<f64>,
        goal: Goal,
    ) -> Row {
        let met = match goal {
            Goal::ValueAtMost(limit, _) => value <= limit,
            Goal::AtMost(x) => ratio.is_some_and(|r| r <= x),
            Goal::AtLeast(x) => ratio.is_some_and(|r| r >= x),
        };
        Row {
            figure: figure.to_string(),
            floorhand,
            baseline,
            ratio,
            goal: Some(goal),
            met: Some(met),
        }
    }
}

type Bench = fn(&Ctx) -> anyhow::Result<Vec<Row>>;

/// Every benchmark, in table order.
const BENCHES: &[(&str, Bench)] = &[
    ("wire sizes", wire_sizes),
    ("scan to durable confirmation", scan_to_durable),
    ("wave apply", wave_apply),
    ("drain to mqtt", drain::drain),
    ("down messages", channel::down),
    ("fleet recovery", channel::fleet),
    ("bridge ingest", bridge::ingest),
    ("bridge memory", bridge::memory),
    ("bridge http", bridge::http_post),
    ("memory and idle cpu", daemon::memory_and_idle),
    ("start to ready", daemon::start_to_ready),
    ("terminal screen", terminal_screen),
];

fn main() -> anyhow::Result<()> {
    let opts = Opts::parse();
    let dir = opts
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/floorhand-bench"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Absolute: the agent processes some benchmarks start read it from their config files.
    let dir = std::fs::canonicalize(&dir)?;
    let ctx = Ctx {
        quick: opts.quick,
        dir,
    };
    let mut rows = Vec::new();
    let selected = BENCHES
        .iter()
        .filter(|(name, _)| opts.only.as_deref().is_none_or(|o| name.contains(o)));
    for (name, bench) in selected {
        eprintln!("floorhand-bench: {name} ...");
        rows.extend(bench(&ctx).with_context(|| format!("benchmark {name:?}"))?);
    }
    print!("{}", table(&rows));
    println!(
        "\n{} run; database files in {}",
        if ctx.quick {
            "quick (harness check, goals not meaningful)"
        } else {
            "full"
        },
        ctx.dir.display()
    );
    if let Some(path) = &opts.json {
        let doc = serde_json::json!({ "quick": ctx.quick, "rows": rows });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let missed = missed(&rows);
    if opts.check && !missed.is_empty() {
        eprintln!(
            "floorhand-bench: {} goal(s) missed: {}",
            missed.len(),
            missed.join("; ")
        );
        std::process::exit(1);
    }
    Ok(())
}

/// The figures of the rows that miss their goal.
fn missed(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .filter(|r| r.met == Some(false))
        .map(|r| format!("{} ({})", r.figure, r.floorhand))
        .collect()
}

fn table(rows: &[Row]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<60} {:>16} {:>16} {:>7}  {:<11} met",
        "figure", "Floorhand", "baseline", "ratio", "goal"
    );
    for r in rows {
        let ratio = r.ratio.map_or("-".into(), |x| format!("{x:.2}"));
        let goal = match r.goal {
            Some(Goal::AtMost(x)) => format!("<= {x}"),
            Some(Goal::AtLeast(x)) => format!(">= {x}"),
            Some(Goal::ValueAtMost(x, unit)) => format!("<= {x} {unit}"),
            None => "-".into(),
        };
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "-",
        };
        let _ = writeln!(
            out,
            "{:<60} {:>16} {:>16} {:>7}  {:<11} {met}",
            r.figure, r.floorhand, r.baseline, ratio, goal
        );
    }
    out
}

/// The typical pick confirmation: postcard beside JSON.
fn wire_sizes(_: &Ctx) -> anyhow::Result<Vec<Row>> {
    let pick = wire::typical_pick();
    Ok(vec![Row::new(
        "wire: typical pick, postcard vs JSON",
        format!("{} B", pick.postcard),
        format!("{} B", pick.json),
        pick.ratio(),
        Some(Goal::AtMost(0.15)),
    )])
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// `confirm_pick` (task state, pick row, outbox row, the task leaving the path index,
/// one commit) with 100,000 tasks mirrored, beside a raw one-row commit with the same
/// `synchronous`, interleaved in blocks so both see the same disk.
fn scan_to_durable(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let (n, mirrored): (usize, usize) = if ctx.quick {
        (60, 2_000)
    } else {
        (3000, 100_000)
    };
    let cfg = StoreConfig {
        synchronous: Synchronous::Full,
        ..StoreConfig::default()
    };
    let warmup = 20;
    let mut db = Db::open(&daemon::mirror_copy(ctx, mirrored, "confirm.db")?, &cfg)?;
    let mut raw = RawDb::open(&ctx.file("raw-commit.db")?, &cfg)?;
    let mut confirm = |task_id: u64| -> anyhow::Result<Duration> {
        let pick = PickConfirmation {
            task_id,
            qty: 1,
            lot: None,
            serial: None,
            expiry: None,
            tote: None,
        };
        let t = Instant::now();
        db.confirm_pick(1_795_300_000, 7, &pick)?;
        Ok(t.elapsed())
    };
    let mut commit = |i: u64| -> anyhow::Result<Duration> {
        let t = Instant::now();
        raw.commit_one(i, 1, 1_795_300_000)?;
        Ok(t.elapsed())
    };
    for i in 0..warmup as u64 {
        confirm(n as u64 + 1 + i)?;
        commit(i)?;
    }
    let (mut fh, mut base) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let block = 50;
    for start in (0..n).step_by(block) {
        for i in start..(start + block).min(n) {
            fh.push(confirm(i as u64 + 1)?);
        }
        for i in start..(start + block).min(n) {
            base.push(commit(i as u64)?);
        }
    }
    let rate = |v: &[Duration]| v.len() as f64 / v.iter().sum::<Duration>().as_secs_f64();
    let (fh_rate, base_rate) = (rate(&fh), rate(&base));
    fh.sort();
    base.sort();
    let (fh50, b50) = (percentile(&fh, 0.5), percentile(&base, 0.5));
    let (fh99, b99) = (percentile(&fh, 0.99), percentile(&base, 0.99));
    let f = |d: Duration| d.as_secs_f64();
    Ok(vec![
        Row::new(
            &format!("scan→durable p50, sync=FULL, {mirrored} tasks (n={n})"),
            ms(fh50),
            ms(b50),
            f(fh50) / f(b50),
            None,
        ),
        Row::new(
            &format!("scan→durable p99, sync=FULL, {mirrored} tasks (n={n})"),
            ms(fh99),
            ms(b99),
            f(fh99) / f(b99),
            Some(Goal::AtMost(1.5)),
        ),
        Row::new(
            "scan→durable rate, sync=FULL",
            format!("{fh_rate:.0}/s"),
            format!("{base_rate:.0}/s"),
            fh_rate / base_rate,
            Some(Goal::AtLeast(0.7)),
        ),
    ])
}

/// Median of `reps` timings of `f`.
fn median(
    reps: usize,
    mut f: impl FnMut(usize) -> anyhow::Result<Duration>,
) -> anyhow::Result<Duration> {
    let mut v = (0..reps).map(&mut f).collect::<anyhow::Result<Vec<_>>>()?;
    v.sort();
    Ok(v[v.len() / 2])
}

/// Applying a wave (inbox check, wave row, task upserts, dropped-task scan, inbox row, one
/// commit) beside a raw bulk insert of the same rows in one transaction.
fn wave_apply(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let (n, reps) = if ctx.quick { (500, 1) } else { (10_000, 9) };
    let cfg = StoreConfig::default();
    // Orders of about three lines each, scattered along the walking order as in a real
    // wave, so the store's order index sees the inserts it sees on the floor.
    let mut tasks = sample_tasks(1, n, 3);
    let orders = (n / 3).max(1);
    for (i, t) in tasks.iter_mut().enumerate() {
        t.order_id = format!("SO-{:06}", (i * 7919) % orders);
    }
    let down = Down::WaveAssigned(sample_wave(1, 1, tasks.clone()));
    // Alternating, so both see the same moments of a noisy machine.
    let (mut fh, mut base) = (Vec::new(), Vec::new());
    for i in 0..reps {
        let mut db = Db::open(&ctx.file(&format!("wave-{i}.db"))?, &cfg)?;
        let t = Instant::now();
        db.apply_down(db.next_down_header()?, &down, 1)?;
        fh.push(t.elapsed());
        let mut raw = RawDb::open(&ctx.file(&format!("bulk-{i}.db"))?, &cfg)?;
        let t = Instant::now();
        raw.bulk_insert(1, &tasks)?;
        base.push(t.elapsed());
    }
    fh.sort();
    base.sort();
    let (fh, base) = (fh[reps / 2], base[reps / 2]);
    let (fh_rate, base_rate) = (n as f64 / fh.as_secs_f64(), n as f64 / base.as_secs_f64());
    Ok(vec![Row::new(
        &format!("apply a {n}-task wave, tasks/s (median of {reps})"),
        format!("{fh_rate:.0}/s"),
        format!("{base_rate:.0}/s"),
        fh_rate / base_rate,
        Some(Goal::AtLeast(0.5)),
    )])
}

/// Bytes on the serial link for one screen update (COBS, CRC, delimiter) and their time
/// at 115200 baud (10 bits a byte), beside the same screen as a JSON line.
fn terminal_screen(_: &Ctx) -> anyhow::Result<Vec<Row>> {
    use floorhand::devices::terminal::{show_frame_len, worst_case_screens};
    use floorhand_protocol::examples;
    use floorhand_protocol::limits;
    use floorhand_protocol::link::{ToTerminal, next_link_msg_id};
    let at_baud = |bytes: usize| bytes as f64 * 10.0 / 115_200.0 * 1000.0;
    let row = |what: String, msg_id: u64, screen: &floorhand_protocol::link::Screen| {
        let bytes = show_frame_len(msg_id, screen);
        let json = serde_json::to_vec(screen).map_or(0, |j| j.len() + 1);
        Row::absolute(
            &what,
            bytes as f64,
            format!("{bytes} B {:.2} ms", at_baud(bytes)),
            format!("{json} B {:.2} ms", at_baud(json)),
            Some(bytes as f64 / json as f64),
            Goal::ValueAtMost(64.0, "B"),
        )
    };
    let largest_example = examples::to_terminal()
        .into_iter()
        .filter_map(|(name, env)| match env.body {
            ToTerminal::Show(s) => Some((name, env.msg_id, s)),
            _ => None,
        })
        .max_by_key(|(_, id, s)| show_frame_len(*id, s))
        .context("no Show example")?;
    // The worst case: every text at its longest, every number at its widest, at the
    // largest message id the link sends: ids count up to MAX_LINK_MSG_ID and wrap to 1,
    // and a varint grows with its value, so that id bounds every other one.
    let max_id = limits::MAX_LINK_MSG_ID;
    anyhow::ensure!(
        next_link_msg_id(max_id) == 1,
        "link message ids no longer wrap at {max_id}: measure the largest id they reach"
    );
    let worst = worst_case_screens()
        .into_iter()
        .max_by_key(|(_, s)| show_frame_len(max_id, s))
        .context("no worst-case screen")?;
    Ok(vec![
        row(
            format!("screen update, largest example ({})", largest_example.0),
            largest_example.1,
            &largest_example.2,
        ),
        row(
            format!(
                "screen update, every screen at every msg id (Show/{})",
                worst.0
            ),
            max_id,
            &worst.1,
        ),
    ])
}
