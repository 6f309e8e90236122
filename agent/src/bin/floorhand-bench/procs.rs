//! Real processes for the benchmarks: a Mosquitto broker on a free port, the release
//! `floorhand run` agent watched through its log, and what `/proc` says about a process.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use floorhand::rigs::mosquitto::{Mosquitto, Options};

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(floorhand::rigs::mosquitto::try_free_port()?)
}

/// Stops a child we started: SIGTERM by its pid, then SIGKILL after two seconds.
pub fn stop(child: &mut Child) {
    floorhand::rigs::mosquitto::stop_child(child, Duration::from_secs(2));
}

/// A Mosquitto broker with its own config and directory (the shared launcher,
/// `floorhand::rigs::mosquitto`); killed on drop.
pub struct Broker {
    inner: Mosquitto,
    /// Port on 127.0.0.1.
    pub port: u16,
}

impl Broker {
    /// Starts Mosquitto with its default limits (a queue of 1000 messages per client, 20
    /// in flight, no persistence) on a free port with its files under `dir`: what
    /// Floorhand's figures are measured against.
    pub fn start(dir: &Path) -> anyhow::Result<Broker> {
        Broker::launch(dir, Options::default())
    }

    /// Starts Mosquitto on `port` with its default limits (a broker's return after an
    /// outage).
    pub fn start_on(dir: &Path, port: u16) -> anyhow::Result<Broker> {
        Broker::launch(
            dir,
            Options {
                port: Some(port),
                ..Options::default()
            },
        )
    }

    /// Starts Mosquitto for a `mosquitto_pub` to `mosquitto_sub` baseline: with the
    /// default queue of 1000 the broker drops what a subscriber has not taken yet (it has
    /// no flow control), and a baseline that lost messages would time nothing. Only
    /// baselines use it.
    pub fn start_unlimited(dir: &Path) -> anyhow::Result<Broker> {
        Broker::launch(
            dir,
            Options {
                extra_conf: "max_queued_messages 0\n".into(),
                ..Options::default()
            },
        )
    }

    fn launch(dir: &Path, opts: Options) -> anyhow::Result<Broker> {
        let inner = Mosquitto::try_start(dir, opts)?;
        Ok(Broker {
            port: inner.port,
            inner,
        })
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.inner.url()
    }

    /// Stops the broker (SIGKILL by its pid, as a crash would); its clients see the link
    /// drop.
    pub fn stop(&mut self) {
        self.inner.kill();
    }
}

/// The release `floorhand` binary, built beside this benchmark by `scripts/bench`.
pub fn floorhand_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("floorhand");
    if !bin.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release -p floorhand --bins` \
             (scripts/bench does)",
            bin.display()
        );
    }
    Ok(bin)
}

/// The agent binary for the station rows: `floorhand-station`, the station package's build
/// (no default features: no demo, simulator or bridge), which `scripts/bench` builds beside
/// this benchmark. Without it (a harness check run on the test build's binaries) the full
/// `floorhand`, said once on stderr; its figures are then a larger binary's.
pub fn station_bin() -> anyhow::Result<PathBuf> {
    static SAID: std::sync::Once = std::sync::Once::new();
    let station = std::env::current_exe()?.with_file_name("floorhand-station");
    if station.is_file() {
        return Ok(station);
    }
    let full = floorhand_bin()?;
    SAID.call_once(|| {
        eprintln!(
            "floorhand-bench: no {} (scripts/bench builds it); the agent rows run {}, \
             the full build with the demo and the bridge",
            station.display(),
            full.display()
        );
    });
    Ok(full)
}

/// Writes an agent config for `db` and `broker_url` into `dir` and returns its path. The
/// agent has no devices, and sends its status every 10 s (a link down for 30 s is then
/// down for longer than the status interval).
pub fn agent_config(dir: &Path, db: &Path, broker_url: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join("bench-agent.toml");
    std::fs::write(
        &path,
        format!(
            "device = \"bench-01\"\nsite = \"site1\"\n[broker]\nurl = \"{broker_url}\"\n\
             [database]\npath = \"{}\"\n[sync]\nstatus_interval_s = 10\n",
            db.display()
        ),
    )?;
    Ok(path)
}

/// A running `floorhand run`, its stderr log read line by line.
pub struct AgentProc {
    /// The process.
    pub child: Child,
    spawned: Instant,
    lines: mpsc::Receiver<String>,
}

impl AgentProc {
    /// Spawns `floorhand run --config CONFIG`.
    pub fn spawn(config: &Path) -> anyhow::Result<AgentProc> {
        let spawned = Instant::now();
        let mut child = Command::new(station_bin()?)
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting floorhand run")?;
        let stderr = child.stderr.take().context("agent stderr")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(AgentProc {
            child,
            spawned,
            lines,
        })
    }

    /// Waits for a log line containing `text`; returns the time since spawn.
    pub fn wait_for(&mut self, text: &str, timeout: Duration) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return Ok(self.spawned.elapsed()),
                Ok(line) => seen.push(line),
                Err(_) => bail!(
                    "floorhand run did not log {text:?} within {timeout:?}; its log:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A `/proc/PID/status` field in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// CPU time and context switches of a process, summed over its threads.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    /// Nanoseconds on a CPU (`/proc/PID/task/*/schedstat`).
    pub cpu_ns: u64,
    /// Voluntary plus involuntary context switches: how often its threads woke up.
    pub switches: u64,
}

/// Samples `pid`'s CPU time and wakeups.
pub fn cpu_sample(pid: u32) -> anyhow::Result<CpuSample> {
    let mut s = CpuSample {
        cpu_ns: 0,
        switches: 0,
    };
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?.path();
        let sched = std::fs::read_to_string(task.join("schedstat")).unwrap_or_default();
        s.cpu_ns += sched
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let status = std::fs::read_to_string(task.join("status")).unwrap_or_default();
        for l in status.lines() {
            if let Some(v) = l
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                s.switches += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    Ok(s)
}

/// An idle `mosquitto_sub` connected to `port`: the baseline MQTT client.
pub fn idle_subscriber(port: u16) -> anyhow::Result<Child> {
    Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", "bench/idle", "-q", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting mosquitto_sub")
}
