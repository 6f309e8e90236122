//! The real `floorhand run` process (release build) against a real broker: resident
//! memory with 100,000 tasks mirrored, idle CPU connected and with the broker down, and
//! start to ready-to-scan with a database of 1,000,000 rows.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use floorhand::store::fixtures::{sample_tasks, sample_wave};
use floorhand::store::{Db, SCHEMA_VERSION, StoreConfig};
use floorhand_protocol::examples;
use floorhand_protocol::oms::{Down, Up};

use crate::procs::{self, AgentProc, Broker};
use crate::{Ctx, Goal, Row, median};

/// Logged once the station takes scans: its first screen is up and its path is read.
const READY: &str = "floorhand agent running: ready for scans";
const NOW: u64 = 1_795_300_000;

/// Applies `tasks` tasks to `db` as waves of 20,000 (the protocol's limit).
fn mirror_tasks(db: &mut Db, tasks: usize) -> anyhow::Result<()> {
    for (i, chunk) in sample_tasks(1, tasks, 1).chunks(20_000).enumerate() {
        let wave = sample_wave(i as u64 + 1, 1, chunk.to_vec());
        db.apply_down(db.next_down_header()?, &Down::WaveAssigned(wave), NOW)?;
    }
    Ok(())
}

/// A fresh copy, named `name`, of a database with `tasks` open tasks mirrored (the copy
/// is the caller's to change; the original is built once, see [`cached_db`]).
pub fn mirror_copy(ctx: &Ctx, tasks: usize, name: &str) -> anyhow::Result<PathBuf> {
    let cached = cached_db(ctx, tasks, 0, 0)?;
    let path = ctx.file(name)?;
    std::fs::copy(&cached, &path).with_context(|| format!("copying to {}", path.display()))?;
    Ok(path)
}

/// A database with `tasks` tasks, `events` queued events and `audits` audit rows, built
/// once and kept in the scratch directory (the name carries the sizes and the schema).
fn cached_db(ctx: &Ctx, tasks: usize, events: usize, audits: usize) -> anyhow::Result<PathBuf> {
    let name = format!("start-{tasks}t-{events}e-{audits}a-v{SCHEMA_VERSION}.db");
    let path = ctx.dir.join(&name);
    if path.is_file() {
        return Ok(path);
    }
    eprintln!("  building {name} (once) ...");
    let tmp = ctx.file(&format!("{name}.tmp"))?;
    {
        let mut db = Db::open(&tmp, &StoreConfig::default())?;
        mirror_tasks(&mut db, tasks)?;
        let Up::Event(pick) = examples::typical_pick().body.body else {
            anyhow::bail!("the typical pick example is not an event");
        };
        db.queue_sample_events(NOW, pick.operator, &pick.kind, events)?;
        db.sample_audit(NOW, audits)?;
    }
    // Closed: the WAL was checkpointed into the file, which can be renamed alone.
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(path)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn file_mib(path: &Path) -> anyhow::Result<f64> {
    Ok(std::fs::metadata(path)?.len() as f64 / (1024.0 * 1024.0))
}

/// Resident memory with 100,000 tasks mirrored, the binary's size, and idle CPU, from one
/// agent process beside an idle `mosquitto_sub`: connected, over a window that starts when
/// the agent logs "ready" (its link comes up within it); then with the broker stopped,
/// over a window that starts when the agent logs "link down". The agent sends its status
/// every 10 s, so the second window covers a link down for longer than the status
/// interval (the case that busy-looped, issue 15).
pub fn memory_and_idle(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let (tasks, window) = if ctx.quick {
        (2_000, Duration::from_secs(3))
    } else {
        (100_000, Duration::from_secs(30))
    };
    let db_path = mirror_copy(ctx, tasks, "mirror.db")?;
    let mut broker = Broker::start(&ctx.dir.join("broker-idle"))?;
    let config = procs::agent_config(&ctx.dir, &db_path, &broker.url())?;
    let mut agent = AgentProc::spawn(&config)?;
    let mut sub = procs::idle_subscriber(broker.port)?;
    agent.wait_for(READY, Duration::from_secs(10))?;
    let pid = agent.pid();
    let (a0, s0) = (procs::cpu_sample(pid)?, procs::cpu_sample(sub.id())?);
    let t0 = Instant::now();
    agent.wait_for("link up", Duration::from_secs(10))?;
    std::thread::sleep(window.saturating_sub(t0.elapsed()));
    let (a1, s1) = (procs::cpu_sample(pid)?, procs::cpu_sample(sub.id())?);
    let secs = t0.elapsed().as_secs_f64();
    let (rss, hwm) = (
        procs::status_kib(pid, "VmRSS")?,
        procs::status_kib(pid, "VmHWM")?,
    );
    let sub_rss = procs::status_kib(sub.id(), "VmRSS")?;

    broker.stop();
    agent.wait_for("link down", Duration::from_secs(10))?;
    let (d0, b0) = (procs::cpu_sample(pid)?, procs::cpu_sample(sub.id()).ok());
    let t1 = Instant::now();
    std::thread::sleep(window);
    let (d1, b1) = (procs::cpu_sample(pid)?, procs::cpu_sample(sub.id()).ok());
    let down_secs = t1.elapsed().as_secs_f64();
    procs::stop(&mut sub);
    drop(agent);

    let pct = |a: procs::CpuSample, b: procs::CpuSample, secs: f64| {
        (b.cpu_ns - a.cpu_ns) as f64 / 1e9 / secs * 100.0
    };
    let wakeups =
        |a: procs::CpuSample, b: procs::CpuSample| (b.switches - a.switches) as f64 / secs;
    let (fh_pct, base_pct) = (pct(a0, a1, secs), pct(s0, s1, secs));
    let down_pct = pct(d0, d1, down_secs);
    // mosquitto_sub retries its broker too; a sub that gave up shows as "-".
    let sub_down = b0.zip(b1).map(|(a, b)| pct(a, b, down_secs));
    let bin = procs::station_bin()?;
    let bin_name = bin
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let pub_bin = which("mosquitto_pub")?;
    let bin_mib = file_mib(&bin)?;
    // mosquitto_pub is linked dynamically: count the MQTT library it loads too.
    let pub_mib = file_mib(&pub_bin)? + libmosquitto_mib(&pub_bin);
    let w = window.as_secs_f64();
    Ok(vec![
        Row::absolute(
            &format!("agent RSS, {tasks} tasks mirrored (VmHWM, {bin_name})"),
            mib(hwm),
            format!("{:.1} MiB", mib(hwm)),
            format!("{:.1} MiB", mib(sub_rss)),
            Some(mib(hwm) / mib(sub_rss)),
            Goal::ValueAtMost(12.0, "MiB"),
        ),
        Row::new(
            "agent RSS after the idle window (VmRSS)",
            format!("{:.1} MiB", mib(rss)),
            format!("{:.1} MiB", mib(sub_rss)),
            mib(rss) / mib(sub_rss),
            None,
        ),
        Row::new(
            &format!("{bin_name} binary size (mosquitto_pub+libmosquitto)"),
            format!("{bin_mib:.1} MiB"),
            format!("{pub_mib:.2} MiB"),
            bin_mib / pub_mib,
            None,
        ),
        Row::absolute(
            &format!("idle CPU, connected, {w:.0} s from ready, % of a core"),
            fh_pct,
            format!("{fh_pct:.3}%"),
            format!("{base_pct:.3}%"),
            (base_pct > 0.0).then(|| fh_pct / base_pct),
            Goal::ValueAtMost(0.1, "%"),
        ),
        Row::new(
            "idle wakeups (context switches)/s, connected",
            format!("{:.1}/s", wakeups(a0, a1)),
            format!("{:.1}/s", wakeups(s0, s1)),
            wakeups(a0, a1) / wakeups(s0, s1).max(0.01),
            None,
        ),
        Row::absolute(
            &format!("idle CPU, broker down, {w:.0} s, % of a core"),
            down_pct,
            format!("{down_pct:.3}%"),
            sub_down.map_or("-".into(), |p| format!("{p:.3}%")),
            sub_down.filter(|p| *p > 0.0).map(|p| down_pct / p),
            Goal::ValueAtMost(0.1, "%"),
        ),
    ])
}

/// Size of the libmosquitto `bin` loads, from `ldd`; 0 if it cannot be found.
fn libmosquitto_mib(bin: &Path) -> f64 {
    let out = std::process::Command::new("ldd").arg(bin).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    text.unwrap_or_default()
        .lines()
        .filter(|l| l.contains("libmosquitto"))
        .filter_map(|l| {
            l.split("=>")
                .nth(1)?
                .split_whitespace()
                .next()
                .map(PathBuf::from)
        })
        .filter_map(|p| file_mib(&p).ok())
        .sum()
}

fn which(name: &str) -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} is not on PATH"))
}

/// Spawn to the "ready for scans" log line (the station's first screen is up and its
/// pick path read) with a database of 1,000,000 rows, 100,000 of them open tasks, beside
/// spawn to exit of `floorhand --version` (what starting the process costs at all).
pub fn start_to_ready(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let (tasks, events, audits, reps) = if ctx.quick {
        (1_000, 2_000, 7_000, 3)
    } else {
        (100_000, 200_000, 700_000, 7)
    };
    let rows = tasks + events + audits;
    let db_path = cached_db(ctx, tasks, events, audits)?;
    let broker = Broker::start(&ctx.dir.join("broker-start"))?;
    let config = procs::agent_config(&ctx.dir, &db_path, &broker.url())?;
    // Once unmeasured, so the file is in the page cache for every measured start.
    AgentProc::spawn(&config)?.wait_for(READY, Duration::from_secs(30))?;
    let fh = median(reps, |_| {
        let mut agent = AgentProc::spawn(&config)?;
        agent.wait_for(READY, Duration::from_secs(30))
    })?;
    let bin = procs::station_bin()?;
    let base = median(reps, |_| {
        let t = Instant::now();
        let st = std::process::Command::new(&bin)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(st.success(), "floorhand --version failed: {st}");
        Ok(t.elapsed())
    })?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(vec![Row::absolute(
        &format!("start to ready-to-scan, {rows} rows (median of {reps})"),
        ms(fh),
        format!("{:.1} ms", ms(fh)),
        format!("{:.1} ms", ms(base)),
        Some(ms(fh) / ms(base)),
        Goal::ValueAtMost(150.0, "ms"),
    )])
}
