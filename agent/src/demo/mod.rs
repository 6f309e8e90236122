//! `floorhand demo`: a whole shift on one command. An embedded broker, the OMS side as a
//! real `floorhand bridge` (whose floor view the demo prints the URL of), a picker and a
//! pack station with their own SQLite files, virtual devices on real ptys and sockets,
//! and a network outage in the middle; at the end a summary and the exactly-once check
//! (what the OMS received equals what the agents committed). The floor view stays up
//! after the summary until Enter (or end of input); `--quick` exits at once.
//!
//! - [`broker`]: rumqttd embedded (Mosquitto fallback, or `--broker`).
//! - [`oms`]: the bridge in the demo's process, its API and its store.
//! - [`proxy`]: the TCP fault proxy that cuts the agents' broker link.
//! - [`pty`]: two ptys joined by a relay thread (`openpty`), the virtual devices' cable.
//! - [`vdev`]: scanner pty, ZPL printer on TCP, the firmware terminal host runner.
//! - [`picker`], [`packer`]: the stations (the seam to the station runtime).
//! - [`summary`]: the exactly-once check (pure) and the report.

pub mod broker;
pub mod oms;
pub mod packer;
pub mod picker;
pub mod proxy;
pub mod pty;
pub mod summary;
pub mod vdev;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floorhand_protocol::oms::{Address, Down, EventKind, PackLine, PackOrder, Wave};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::sync::agent::LinkState;
use crate::sync::tools::{SimPlan, sim_waves};
use oms::DemoBridge;
use summary::{AgentSide, Counters, Summary};

/// `floorhand demo` options.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Directory for the databases, configs, screens, labels and the summary.
    #[arg(long, default_value = "demo-out")]
    pub out: PathBuf,
    /// Use this broker (mqtt://host:port) instead of the embedded one.
    #[arg(long)]
    pub broker: Option<String>,
    /// A short shift (for tests): fewer tasks, a shorter outage; exits after the summary
    /// instead of keeping the floor view up until Enter.
    #[arg(long)]
    pub quick: bool,
    /// Write the summary as JSON here (default: OUT/summary.json).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A file or socket.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The broker.
    #[error("broker: {0}")]
    Broker(String),
    /// A virtual device.
    #[error("device: {0}")]
    Device(String),
    /// An agent or station.
    #[error("agent: {0}")]
    Agent(String),
}

impl DemoError {
    fn io(what: &str, source: std::io::Error) -> DemoError {
        DemoError::Io {
            what: what.to_string(),
            source,
        }
    }
}

/// Every event an agent committed through the demo's stations: `(seq, operator, kind)`
/// per device, to compare with what the OMS received.
#[derive(Clone, Default)]
pub struct CommitLog(Arc<Mutex<Committed>>);

/// Per device, `(seq, operator, kind)` of each committed event.
pub type Committed = BTreeMap<String, Written>;

/// `(seq, operator, kind)` of events one transaction wrote.
pub type Written = Vec<(u64, u32, EventKind)>;

impl CommitLog {
    fn record(&self, device: &str, events: Written) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.entry(device.to_string()).or_default().extend(events);
    }

    fn snapshot(&self) -> Committed {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Runs `f`, one station command's store transaction, and reads back the outbox events it
/// wrote, `(seq, operator, kind)`. The store thread runs one job at a time, so no ack can
/// delete them in between: this is what the agent committed, as the OMS must receive it.
fn with_events<R>(
    db: &mut crate::store::Db,
    f: impl FnOnce(&mut crate::store::Db) -> Result<R, crate::store::StoreError>,
) -> Result<(R, Written), crate::store::StoreError> {
    let before = db.outbox_stats(0)?.high_seq;
    let r = f(db)?;
    let events = db
        .outbox_pending(before, usize::MAX)?
        .into_iter()
        .filter_map(
            |row| match floorhand_protocol::oms::decode_up(&row.payload) {
                Ok(env) => match env.body.body {
                    floorhand_protocol::oms::Up::Event(e) => Some((row.seq, e.operator, e.kind)),
                    _ => None,
                },
                Err(e) => {
                    tracing::error!(seq = row.seq, "outbox row does not decode: {e}");
                    None
                }
            },
        )
        .collect();
    Ok((r, events))
}

/// Shared counters the stations bump and the display reads.
#[derive(Clone)]
pub struct Progress {
    counters: Arc<Mutex<Counters>>,
    device_picker: String,
    device_pack: String,
}

impl Progress {
    fn count(&self, f: impl FnOnce(&mut Counters)) {
        f(&mut self.counters.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn get(&self) -> Counters {
        *self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Shift sizes.
struct Plan {
    waves: u32,
    tasks: u32,
    outage: Duration,
    /// The first part of the outage, when the link is one-way.
    deaf: Duration,
    pace: Duration,
}

const SITE: &str = "demo";
const PICKER: &str = "handheld-1";
const PACK: &str = "pack-1";

fn agent_config(out: &Path, device: &str, broker_url: &str) -> String {
    format!(
        r#"# Generated by `floorhand demo`; `floorhand run --config` accepts it as it is.
device = "{device}"
site = "{SITE}"
[broker]
url = "{broker_url}"
keep_alive_s = 5
connect_timeout_s = 2
[database]
path = "{db}"
synchronous = "normal"
[sync]
status_interval_s = 5
resend_after_s = 2
max_backoff_s = 1
"#,
        db = out.join(format!("{device}.db")).display()
    )
}

/// One pack order per order in the waves: its lines are the order's tasks.
fn pack_orders(waves: &[Wave]) -> Vec<PackOrder> {
    let mut by_order: BTreeMap<String, Vec<PackLine>> = BTreeMap::new();
    for t in waves.iter().flat_map(|w| &w.tasks) {
        by_order
            .entry(t.order_id.clone())
            .or_default()
            .push(PackLine {
                order_line: t.order_line,
                gtins: t.gtins.clone(),
                sku: t.sku.clone(),
                description: t.description.clone(),
                qty: t.qty,
                capture: t.capture,
                unit_weight_g: 180,
            });
    }
    let addr = |name: &str, city: &str| Address {
        name: name.into(),
        company: String::new(),
        lines: vec!["1 Dock Road".into()],
        city: city.into(),
        region: String::new(),
        postal_code: "20457".into(),
        country: "DE".into(),
    };
    by_order
        .into_iter()
        .enumerate()
        .map(|(i, (order_id, lines))| PackOrder {
            totes: vec![format!("T-{:04}", i + 1)],
            lines,
            ship_from: addr("Floorhand Demo DC", "Hamburg"),
            ship_to: addr(&format!("Customer {}", i + 1), "Berlin"),
            carrier: "DHL".into(),
            service: "Paket".into(),
            tracking: format!("JJD0001{:08}", i + 1),
            order_id,
        })
        .collect()
}

/// Runs the demo; `Ok(true)` when the exactly-once check holds.
pub fn run(args: &DemoArgs) -> Result<bool, DemoError> {
    let out = &args.out;
    for d in ["", "screens", "labels", "pty"] {
        std::fs::create_dir_all(out.join(d))
            .map_err(|e| DemoError::io(&out.join(d).display().to_string(), e))?;
    }
    for device in [PICKER, PACK] {
        for ext in ["db", "db-wal", "db-shm"] {
            let _ = std::fs::remove_file(out.join(format!("{device}.{ext}")));
        }
    }
    let log =
        std::fs::File::create(out.join("demo.log")).map_err(|e| DemoError::io("demo.log", e))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=warn")),
        )
        .with_writer(Mutex::new(log))
        .with_ansi(false)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| DemoError::io("the runtime", e))?;
    let plan = if args.quick {
        Plan {
            waves: 2,
            tasks: 6,
            outage: Duration::from_secs(5),
            deaf: Duration::from_millis(3500),
            pace: Duration::from_millis(40),
        }
    } else {
        Plan {
            waves: 3,
            tasks: 9,
            outage: Duration::from_secs(8),
            deaf: Duration::from_millis(3500),
            pace: Duration::from_millis(90),
        }
    };
    let (summary, bridge) = rt.block_on(shift(args, &plan))?;
    let json_path = args
        .json
        .clone()
        .unwrap_or_else(|| out.join("summary.json"));
    let json = serde_json::to_string_pretty(&summary)
        .map_err(|e| DemoError::Agent(format!("summary: {e}")))?;
    std::fs::write(&json_path, json)
        .map_err(|e| DemoError::io(&json_path.display().to_string(), e))?;
    println!("{}", summary.table());
    println!("summary (JSON): {}", json_path.display());
    if !args.quick {
        println!(
            "the floor view stays up at {} : press Enter to end",
            bridge.floor_url()
        );
        // End of input (no terminal) ends it too.
        let _ = std::io::stdin().read_line(&mut String::new());
    }
    rt.block_on(bridge.stop());
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(summary.exactly_once)
}

async fn shift(args: &DemoArgs, plan: &Plan) -> Result<(Summary, DemoBridge), DemoError> {
    let started = Instant::now();
    let out = args.out.clone();
    let broker = match &args.broker {
        Some(url) => broker::external(url)?,
        None => broker::start_embedded(&out)?,
    };
    let proxies = [
        proxy::FaultProxy::start(broker.addr).map_err(|e| DemoError::io("the fault proxy", e))?,
        proxy::FaultProxy::start(broker.addr).map_err(|e| DemoError::io("the fault proxy", e))?,
    ];

    // The OMS side, a real bridge, talks to the broker directly; only the agents' link
    // is cut.
    let oms = DemoBridge::start(&out, broker.addr, SITE).await?;
    let url = oms.floor_url();
    println!("floor view (live while the shift runs): {url}");
    tracing::info!("floor view at http://{}/", oms.addr);

    // The agents, from generated config files.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut agents = Vec::new();
    for (device, proxy) in [PICKER, PACK].iter().zip(&proxies) {
        let path = out.join(format!("{device}.toml"));
        std::fs::write(&path, agent_config(&out, device, &proxy.url()))
            .map_err(|e| DemoError::io(&path.display().to_string(), e))?;
        let cfg = Config::load(&path).map_err(|e| DemoError::Agent(e.to_string()))?;
        // The store and the MQTT link, as `run::Agent` opens them, without its station
        // runtime: the demo's stations (`picker`, `packer`) drive the workflows.
        let fail = |e: &dyn std::fmt::Display| DemoError::Agent(format!("{device}: {e}"));
        let store = crate::store::Store::open(&cfg.database.path, cfg.store_config())
            .map_err(|e| fail(&e))?;
        let settings = cfg.settings(&path).map_err(|e| fail(&e))?;
        let (sync, task) = crate::sync::agent::start(settings.sync, store.clone(), stop_rx.clone())
            .await
            .map_err(|e| fail(&e))?;
        agents.push((store, sync, task));
    }
    let (picker_store, picker_sync) = (agents[0].0.clone(), agents[0].1.clone());
    let (pack_store, pack_sync) = (agents[1].0.clone(), agents[1].1.clone());

    let progress = Progress {
        counters: Arc::default(),
        device_picker: PICKER.into(),
        device_pack: PACK.into(),
    };
    let ledger = CommitLog::default();

    // Devices.
    let pty_dir = out.join("pty");
    let scanner = vdev::VirtualScanner::start(&pty_dir, "scanner")?;
    let pack_scanner = vdev::VirtualScanner::start(&pty_dir, "pack-scanner")?;
    let labels_dir = out.join("labels");
    let printer = crate::rigs::fake_printer::FakePrinter::storing(&labels_dir)
        .map_err(|e| DemoError::io(&labels_dir.display().to_string(), e))?;
    let screens_dir = out.join("screens");
    let terminal_runner =
        vdev::TerminalRunner::start(&pty_dir, &screens_dir, &out.join("terminal.log"));
    // The terminal's own key and scan events are not used: the scripted operator's
    // keys go to the workflow directly (see `picker`), its scans through the scanner pty.
    let (terminal, _terminal_events, terminal_note) = match &terminal_runner {
        Ok(t) => match crate::devices::terminal::spawn(&crate::devices::terminal::TerminalConfig {
            path: t.agent_port.to_string_lossy().into_owned(),
            baud: 115_200,
        }) {
            Ok((h, events)) => (Some(h), Some(events), None),
            Err(e) => (None, None, Some(format!("terminal link: {e}"))),
        },
        Err(e) => (None, None, Some(e.to_string())),
    };

    // The OMS's plan: waves for the handheld, a pack order per order for the pack station.
    let waves = sim_waves(
        &SimPlan {
            devices: vec![PICKER.into()],
            waves: plan.waves,
            tasks: plan.tasks,
        },
        0,
    );
    let orders = pack_orders(&waves);
    let cancelled = waves
        .last()
        .and_then(|w| w.tasks.last())
        .map(|t| t.order_id.clone())
        .unwrap_or_default();
    let total_tasks: usize = waves.iter().map(|w| w.tasks.len()).sum();

    let mut pick_station = picker::PickStation {
        badge_prefix: crate::pick::PickConfig::default().badge_prefix,
        picker: crate::pick::Picker::new(crate::pick::PickConfig::default()),
        store: picker_store.clone(),
        sync: picker_sync.clone(),
        scanner,
        terminal,
        started: Instant::now(),
        ledger: ledger.clone(),
        progress: progress.clone(),
    };
    let mut pack_station = packer::PackStation {
        store: pack_store.clone(),
        sync: pack_sync.clone(),
        scanner: pack_scanner,
        printer_addr: printer.addr().to_string(),
        ledger: ledger.clone(),
        progress: progress.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(45);
    let pace = plan.pace;
    let (w2, c2) = (waves.clone(), cancelled.clone());
    let picking = tokio::spawn(async move {
        let r = pick_station.run_shift(&w2, pace, deadline).await;
        (r, pick_station)
    });
    let o2 = orders.clone();
    let packing = tokio::spawn(async move {
        let r = pack_station.run_shift(&o2, &c2, pace * 4, deadline).await;
        (r, pack_station)
    });

    // Push the shift once the bridge has seen both agents' births (an agent publishes it
    // after its subscribe on the same connection, so from then on a message sent to it
    // is not lost): the waves, a pack order per order (the cancellation comes later).
    let listening = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = oms.devices().await?;
        let born = |d: &str| rows.iter().any(|r| r.device == d && r.birth_at > 0);
        if born(PICKER) && born(PACK) {
            break;
        }
        if Instant::now() > listening {
            return Err(DemoError::Broker(
                "the agents did not come online within 10 s (see demo.log)".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for w in &waves {
        oms.send(SITE, PICKER, &Down::WaveAssigned(w.clone()))
            .await?;
    }
    for o in &orders {
        oms.send(SITE, PACK, &Down::PackOrder(Box::new(o.clone())))
            .await?;
    }

    // The display, the cancellation and the outage.
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>10} {bar:30} {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let picks = bars.add(ProgressBar::new(total_tasks as u64));
    picks.set_style(style.clone());
    picks.set_prefix("picks");
    let cartons = bars.add(ProgressBar::new(
        orders.len().saturating_sub(1).max(1) as u64
    ));
    cartons.set_style(style);
    cartons.set_prefix("cartons");
    let link = bars.add(ProgressBar::new_spinner());
    let mut cancel_sent = false;
    let mut blackholed = false;
    let mut outage: Option<(Instant, Option<Duration>)> = None;
    let mut max_backlog = [0u64; 2];
    // Until both stations are done and the outage has run its full length.
    while !(picking.is_finished() && packing.is_finished() && matches!(outage, Some((_, Some(_)))))
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let c = progress.get();
        let done = (c.tasks_picked + c.tasks_short) as usize;
        if !cancel_sent && done >= 2 {
            cancel_sent = true;
            let cancel = Down::OrderCancelled {
                order_id: cancelled.clone(),
            };
            oms.send(SITE, PICKER, &cancel).await?;
            oms.send(SITE, PACK, &cancel).await?;
        }
        // The outage: first one-way (the agents' events reach the OMS but they hear
        // no acks, so they re-send and the OMS drops the copies), then a black hole with
        // every connection cut; then the link comes back.
        match outage {
            None if done >= total_tasks / 3 || picking.is_finished() => {
                for p in &proxies {
                    p.set_mode(proxy::Mode::Deaf);
                }
                outage = Some((Instant::now(), None));
            }
            Some((t0, None)) if t0.elapsed() >= plan.outage => {
                for p in &proxies {
                    p.set_mode(proxy::Mode::Pass);
                }
                outage = Some((t0, Some(t0.elapsed())));
            }
            Some((t0, None)) if !blackholed && t0.elapsed() >= plan.deaf => {
                blackholed = true;
                for p in &proxies {
                    p.set_mode(proxy::Mode::Blackhole);
                    p.cut();
                }
            }
            _ => {}
        }
        let backlog = [backlog(&picker_store).await, backlog(&pack_store).await];
        for (m, b) in max_backlog.iter_mut().zip(backlog) {
            *m = (*m).max(b);
        }
        picks.set_position(done as u64);
        picks.set_message(format!(
            "{} short, {} exceptions",
            c.tasks_short, c.exceptions
        ));
        cartons.set_position(c.cartons);
        cartons.set_message(format!("{} labels printed", c.labels_printed));
        let link_state = match (outage, &*picker_sync.state.borrow()) {
            (Some((_, None)), _) => "OUTAGE (link cut)".to_string(),
            (_, LinkState::Up { .. }) => "up".to_string(),
            (_, LinkState::Down { error, .. }) => format!("down: {error}"),
        };
        link.set_message(format!(
            "link: {link_state}; backlog {PICKER}: {}, {PACK}: {}",
            backlog[0], backlog[1]
        ));
        link.tick();
    }
    let (pick_result, pick_station) = picking
        .await
        .map_err(|e| DemoError::Agent(format!("picker task: {e}")))?;
    let (pack_result, _pack_station) = packing
        .await
        .map_err(|e| DemoError::Agent(format!("pack task: {e}")))?;
    if let Some((t0, None)) = outage {
        for p in &proxies {
            p.set_mode(proxy::Mode::Pass);
        }
        outage = Some((t0, Some(t0.elapsed())));
    }

    // The backlog drains: wait until the OMS has acked everything each agent wrote.
    let drain_deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut drained = true;
        let acked = ack_points(&oms).await?;
        for (device, store) in [(PICKER, &picker_store), (PACK, &pack_store)] {
            let high = store
                .call(move |db| db.outbox_stats(0).map(|s| (s.count, s.high_seq)))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or((1, 0));
            if high.0 > 0 || acked.get(device).copied().unwrap_or(0) < high.1 {
                drained = false;
            }
        }
        if drained || Instant::now() > drain_deadline {
            break;
        }
        link.set_message("link: up; draining the backlog".to_string());
        link.tick();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bars.clear().ok();
    drop(pick_station);

    // Agent side facts, straight from each store.
    let mut agent_side = Vec::new();
    for (device, store) in [(PICKER, &picker_store), (PACK, &pack_store)] {
        let ids: Vec<u64> = if device == PICKER {
            waves
                .iter()
                .flat_map(|w| w.tasks.iter().map(|t| t.task_id))
                .collect()
        } else {
            Vec::new()
        };
        let side = store
            .call(move |db| -> Result<AgentSide, crate::store::StoreError> {
                let stats = db.outbox_stats(0)?;
                let mut picked = BTreeMap::new();
                for id in ids {
                    if let Some(t) = db.task(id)? {
                        picked.insert(id, t.picked_qty);
                    }
                }
                Ok(AgentSide {
                    device: device.to_string(),
                    high_seq: stats.high_seq,
                    unacked: stats.count,
                    picked,
                })
            })
            .await
            .map_err(|e| DemoError::Agent(e.to_string()))?
            .map_err(|e| DemoError::Agent(e.to_string()))?;
        agent_side.push(side);
    }
    let _ = stop_tx.send(true);
    let acked = ack_points(&oms).await?;
    let duplicates = oms.metric("event_duplicates_total").await?;
    for (_, _, link) in agents {
        let _ = tokio::time::timeout(Duration::from_secs(2), link).await;
    }
    // What the OMS received: every event the bridge stored, read back from its store.
    let received = oms.events().await?;
    let mut problems = summary::exactly_once(&received, &ledger.snapshot(), &agent_side);
    if let Err(e) = pick_result {
        problems.push(format!("picker: {e}"));
    }
    if let Err(e) = pack_result {
        problems.push(format!("pack station: {e}"));
    }
    let files = |dir: &Path, ext: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == ext))
                    .map(|p| p.display().to_string())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let labels = files(&out.join("labels"), "zpl");
    let mut notes: Vec<String> = terminal_note.into_iter().collect();
    if let Ok(t) = terminal_runner
        && let Err(why) = t.stop()
    {
        notes.push(why);
    }
    let label_previews = match vdev::label_previews(&labels) {
        Ok(v) => v,
        Err(why) => {
            notes.push(why);
            Vec::new()
        }
    };
    let c = progress.get();
    let events_sent: u64 = agent_side.iter().map(|a| a.high_seq).sum();
    let summary = Summary {
        broker: broker.kind.clone(),
        counters: c,
        events_sent,
        events_acked: acked.values().sum(),
        oms_events_received: received.len() as u64,
        duplicates_suppressed: duplicates,
        outage_s: outage
            .and_then(|(_, d)| d)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
        max_backlog: max_backlog.iter().sum(),
        cancelled_order: cancelled,
        problems,
        screens: files(&screens_dir, "png"),
        labels,
        label_previews,
        notes,
        elapsed_s: started.elapsed().as_secs_f64(),
        exactly_once: false,
    }
    .finish();
    Ok((summary, oms))
}

/// Each device's ack point: the highest event seq the bridge acknowledged.
async fn ack_points(oms: &DemoBridge) -> Result<BTreeMap<String, u64>, DemoError> {
    Ok(oms
        .devices()
        .await?
        .into_iter()
        .map(|d| (d.device, d.through))
        .collect())
}

async fn backlog(store: &crate::store::Store) -> u64 {
    store
        .call(|db| db.outbox_stats(0).map(|s| s.count))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::Commit;
    use crate::store::{Db, StoreConfig};

    #[test]
    fn the_demo_pack_station_closes_a_carton_as_the_runtime_does_and_ledgers_only_its_events() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("pack.db"), &StoreConfig::default()).unwrap();
        // An older unacked event is in the outbox already: not part of the next commit.
        db.append_event(1, 0, EventKind::LoggedIn).unwrap();
        let close = Commit::CartonClosed {
            at: 2,
            order_id: "SO-1".into(),
            carton_no: 1,
            sscc: "095060000000000017".into(),
            weight_g: 610,
            short_ship: None,
            order_complete: true,
            contents: Vec::new(),
            label: b"^XA^XZ".to_vec(),
        };
        let (job, events) = with_events(&mut db, |db| {
            crate::station::pack::execute(db, 0, "", close)
        })
        .unwrap();
        let job = job.expect("closing a carton queues its label");
        let kinds: Vec<_> = events
            .iter()
            .map(|(seq, op, k)| (*seq, *op, k.clone()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (
                    2,
                    0,
                    EventKind::CartonClosed {
                        order_id: "SO-1".into(),
                        carton_no: 1,
                        sscc: "095060000000000017".into(),
                        weight_g: 610,
                        short_ship: None,
                    }
                ),
                (
                    3,
                    0,
                    EventKind::PackVerified {
                        order_id: "SO-1".into()
                    }
                ),
            ]
        );
        let pending = db.pending_prints().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(
            (pending[0].job_id, pending[0].zpl.as_slice()),
            (job, &b"^XA^XZ"[..])
        );
        // The printed label: its LabelPrinted event, through the same hook.
        let printed = Commit::LabelPrinted {
            at: 3,
            sscc: "095060000000000017".into(),
            job_id: job,
        };
        let (_, events) = with_events(&mut db, |db| {
            crate::station::pack::execute(db, 0, "", printed)
        })
        .unwrap();
        assert_eq!(
            events,
            vec![(
                4,
                0,
                EventKind::LabelPrinted {
                    sscc: "095060000000000017".into(),
                    job_id: job
                }
            )]
        );
        assert!(db.pending_prints().unwrap().is_empty());
    }
}
