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
//! - [`vdev`]: the scanner and the firmware terminal host runner, each on a pty pair
//!   (`rigs::pty`).
//! - [`picker`], [`packer`]: the stations (the seam to the station runtime).
//! - [`summary`]: the exactly-once check (pure) and the report.

pub mod broker;
pub mod oms;
pub mod packer;
pub mod picker;
pub mod proxy;
pub mod summary;
pub mod vdev;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use floorhand_protocol::oms::{Address, Down, EventKind, PackLine, PackOrder, Wave};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::store::Store;
use crate::sync::agent::{LinkState, SyncHandle};
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

/// The shift, step by step: the parts start, the OMS pushes the work, the stations work
/// through it while [`watch`] shows progress and runs the outage, the backlog drains, and
/// [`report`] sets what the OMS received against what the agents committed.
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

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let agents = start_agents(&out, &proxies, &stop_rx).await?;
    let progress = Progress {
        counters: Arc::default(),
        device_picker: PICKER.into(),
        device_pack: PACK.into(),
    };
    let ledger = CommitLog::default();
    let mut devices = Devices::start(&out)?;
    let work = Work::plan(plan);
    let stations = start_stations(&agents, &mut devices, &work, plan, &ledger, &progress);

    wait_for_births(&oms).await?;
    push_work(&oms, &work).await?;
    let display = Display::new(&work);
    let watched = watch(
        &oms, &proxies, plan, &work, &progress, &agents, &display, stations,
    )
    .await?;
    drain(&oms, &agents, &display).await?;
    display.bars.clear().ok();
    drop(watched.pick_station);

    let agent_side = agent_sides(&agents, &work).await?;
    let _ = stop_tx.send(true);
    let acked = ack_points(&oms).await?;
    let duplicates = oms.metric("event_duplicates_total").await?;
    for link in agents.links {
        let _ = tokio::time::timeout(Duration::from_secs(2), link).await;
    }
    // What the OMS received: every event the bridge stored, read back from its store.
    let received = oms.events().await?;
    let mut problems = summary::exactly_once(&received, &ledger.snapshot(), &agent_side);
    problems.extend(watched.failures);
    let files = files_left(&out, devices);
    let events_sent: u64 = agent_side.iter().map(|a| a.high_seq).sum();
    let summary = Summary {
        broker: broker.kind.clone(),
        counters: progress.get(),
        events_sent,
        events_acked: acked.values().sum(),
        oms_events_received: received.len() as u64,
        duplicates_suppressed: duplicates,
        outage_s: watched.outage.map(|d| d.as_secs_f64()).unwrap_or(0.0),
        max_backlog: watched.max_backlog.iter().sum(),
        cancelled_order: work.cancelled,
        problems,
        screens: files.screens,
        labels: files.labels,
        label_previews: files.label_previews,
        notes: files.notes,
        elapsed_s: started.elapsed().as_secs_f64(),
        exactly_once: false,
    }
    .finish();
    Ok((summary, oms))
}

/// The two agents' stores and MQTT links, as `run::Agent` opens them (without its
/// station runtime: the demo's stations drive the workflows), and the links' tasks.
struct Agents {
    picker: (Store, SyncHandle),
    pack: (Store, SyncHandle),
    links: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts the agents from generated config files, each through its own fault proxy.
async fn start_agents(
    out: &Path,
    proxies: &[proxy::FaultProxy; 2],
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<Agents, DemoError> {
    let mut opened = Vec::new();
    let mut links = Vec::new();
    for (device, proxy) in [PICKER, PACK].iter().zip(proxies) {
        let path = out.join(format!("{device}.toml"));
        std::fs::write(&path, agent_config(out, device, &proxy.url()))
            .map_err(|e| DemoError::io(&path.display().to_string(), e))?;
        let fail = |e: &dyn std::fmt::Display| DemoError::Agent(format!("{device}: {e}"));
        let settings = Config::load_settings(&path).map_err(|e| fail(&e))?;
        let store = Store::open(&settings.database, settings.store).map_err(|e| fail(&e))?;
        let (sync, task) = crate::sync::agent::start(settings.sync, store.clone(), stop.clone())
            .await
            .map_err(|e| fail(&e))?;
        opened.push((store, sync));
        links.push(task);
    }
    let pack = opened.pop().expect("two agents");
    let picker = opened.pop().expect("two agents");
    Ok(Agents {
        picker,
        pack,
        links,
    })
}

/// The virtual devices: a scanner per station on a pty (each taken by its station), the
/// label printer on TCP, and the terminal (`floorhand-terminal` on a pty) when it is
/// built, with the picker's link to it.
struct Devices {
    scanner: Option<vdev::VirtualScanner>,
    pack_scanner: Option<vdev::VirtualScanner>,
    printer: crate::rigs::fake_printer::FakePrinter,
    terminal: Option<crate::devices::terminal::TerminalHandle>,
    terminal_runner: Result<vdev::TerminalRunner, DemoError>,
    /// Why there is no terminal link, if there is none.
    terminal_note: Option<String>,
}

impl Devices {
    fn start(out: &Path) -> Result<Devices, DemoError> {
        let pty_dir = out.join("pty");
        let scanner = vdev::VirtualScanner::start(&pty_dir, "scanner")?;
        let pack_scanner = vdev::VirtualScanner::start(&pty_dir, "pack-scanner")?;
        let labels_dir = out.join("labels");
        let printer = crate::rigs::fake_printer::FakePrinter::storing(&labels_dir)
            .map_err(|e| DemoError::io(&labels_dir.display().to_string(), e))?;
        let terminal_runner =
            vdev::TerminalRunner::start(&pty_dir, &out.join("screens"), &out.join("terminal.log"));
        // The terminal's own key and scan events are not used: the scripted operator's
        // keys go to the workflow directly (see `picker`), its scans through the scanner pty.
        let (terminal, terminal_note) = match &terminal_runner {
            Ok(t) => {
                match crate::devices::terminal::spawn(&crate::devices::terminal::TerminalConfig {
                    path: t.agent_port.to_string_lossy().into_owned(),
                    baud: 115_200,
                }) {
                    Ok((h, _events)) => (Some(h), None),
                    Err(e) => (None, Some(format!("terminal link: {e}"))),
                }
            }
            Err(e) => (None, Some(e.to_string())),
        };
        Ok(Devices {
            scanner: Some(scanner),
            pack_scanner: Some(pack_scanner),
            printer,
            terminal,
            terminal_runner,
            terminal_note,
        })
    }
}

/// The OMS's plan: waves for the handheld, a pack order per order for the pack station,
/// and the order it cancels mid-shift.
struct Work {
    waves: Vec<Wave>,
    orders: Vec<PackOrder>,
    cancelled: String,
    total_tasks: usize,
}

impl Work {
    fn plan(plan: &Plan) -> Work {
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
        let total_tasks = waves.iter().map(|w| w.tasks.len()).sum();
        Work {
            waves,
            orders,
            cancelled,
            total_tasks,
        }
    }
}

/// The two stations at work, each on its own task, handing itself back at the end.
struct Stations {
    picking: tokio::task::JoinHandle<(Result<(), DemoError>, picker::PickStation)>,
    packing: tokio::task::JoinHandle<(Result<(), DemoError>, packer::PackStation)>,
}

/// Starts the picker and the pack station on their shifts (they wait for their work),
/// each taking its scanner from `devices`.
fn start_stations(
    agents: &Agents,
    devices: &mut Devices,
    work: &Work,
    plan: &Plan,
    ledger: &CommitLog,
    progress: &Progress,
) -> Stations {
    let taken = "each scanner is taken once";
    let mut pick_station = picker::PickStation {
        badge_prefix: crate::pick::PickConfig::default().badge_prefix,
        picker: crate::pick::Picker::new(crate::pick::PickConfig::default()),
        store: agents.picker.0.clone(),
        sync: agents.picker.1.clone(),
        scanner: devices.scanner.take().expect(taken),
        terminal: devices.terminal.take(),
        started: Instant::now(),
        ledger: ledger.clone(),
        progress: progress.clone(),
    };
    let mut pack_station = packer::PackStation {
        store: agents.pack.0.clone(),
        sync: agents.pack.1.clone(),
        scanner: devices.pack_scanner.take().expect(taken),
        printer_addr: devices.printer.addr().to_string(),
        ledger: ledger.clone(),
        progress: progress.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(45);
    let pace = plan.pace;
    let waves = work.waves.clone();
    let picking = tokio::spawn(async move {
        let r = pick_station.run_shift(&waves, pace, deadline).await;
        (r, pick_station)
    });
    let (orders, cancelled) = (work.orders.clone(), work.cancelled.clone());
    let packing = tokio::spawn(async move {
        let r = pack_station
            .run_shift(&orders, &cancelled, pace * 4, deadline)
            .await;
        (r, pack_station)
    });
    Stations { picking, packing }
}

/// Waits until the bridge has seen both agents' births: an agent publishes it after its
/// subscribe on the same connection, so from then on a message sent to it is not lost.
async fn wait_for_births(oms: &DemoBridge) -> Result<(), DemoError> {
    let listening = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = oms.devices().await?;
        let born = |d: &str| rows.iter().any(|r| r.device == d && r.birth_at > 0);
        if born(PICKER) && born(PACK) {
            return Ok(());
        }
        if Instant::now() > listening {
            return Err(DemoError::Broker(
                "the agents did not come online within 10 s (see demo.log)".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The OMS pushes the shift: the waves, a pack order per order (the cancellation comes
/// later, from [`watch`]).
async fn push_work(oms: &DemoBridge, work: &Work) -> Result<(), DemoError> {
    for w in &work.waves {
        oms.send(SITE, PICKER, &Down::WaveAssigned(w.clone()))
            .await?;
    }
    for o in &work.orders {
        oms.send(SITE, PACK, &Down::PackOrder(Box::new(o.clone())))
            .await?;
    }
    Ok(())
}

/// The live display: picks, cartons and the link.
struct Display {
    bars: MultiProgress,
    picks: ProgressBar,
    cartons: ProgressBar,
    link: ProgressBar,
}

impl Display {
    fn new(work: &Work) -> Display {
        let bars = MultiProgress::new();
        let style = ProgressStyle::with_template("{prefix:>10} {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        let picks = bars.add(ProgressBar::new(work.total_tasks as u64));
        picks.set_style(style.clone());
        picks.set_prefix("picks");
        let cartons = bars.add(ProgressBar::new(
            work.orders.len().saturating_sub(1).max(1) as u64
        ));
        cartons.set_style(style);
        cartons.set_prefix("cartons");
        let link = bars.add(ProgressBar::new_spinner());
        Display {
            bars,
            picks,
            cartons,
            link,
        }
    }
}

/// What [`watch`] saw: how long the link was cut, the largest backlogs, and each
/// station's failure; and the stations, handed back.
struct Watched {
    outage: Option<Duration>,
    max_backlog: [u64; 2],
    failures: Vec<String>,
    pick_station: picker::PickStation,
    _pack_station: packer::PackStation,
}

/// The network outage on the agents' links, a third of the way through the shift: first
/// one-way (the agents' events reach the OMS but they hear no acks, so they re-send and
/// the OMS drops the copies), then a black hole with every connection cut; then the link
/// comes back.
struct Outage<'a> {
    proxies: &'a [proxy::FaultProxy; 2],
    /// When it began, and how long it lasted once it is over.
    cut: Option<(Instant, Option<Duration>)>,
    blackholed: bool,
}

impl Outage<'_> {
    /// Starts, deepens or ends the outage as the shift goes on.
    fn step(&mut self, plan: &Plan, third_done: bool) {
        match self.cut {
            None if third_done => {
                self.set(proxy::Mode::Deaf);
                self.cut = Some((Instant::now(), None));
            }
            Some((t0, None)) if t0.elapsed() >= plan.outage => self.end(),
            Some((t0, None)) if !self.blackholed && t0.elapsed() >= plan.deaf => {
                self.blackholed = true;
                for p in self.proxies {
                    p.set_mode(proxy::Mode::Blackhole);
                    p.cut();
                }
            }
            _ => {}
        }
    }

    /// Lets the link through again, if it is cut.
    fn end(&mut self) {
        if let Some((t0, None)) = self.cut {
            self.set(proxy::Mode::Pass);
            self.cut = Some((t0, Some(t0.elapsed())));
        }
    }

    fn set(&self, mode: proxy::Mode) {
        for p in self.proxies {
            p.set_mode(mode);
        }
    }

    fn ongoing(&self) -> bool {
        matches!(self.cut, Some((_, None)))
    }

    fn over(&self) -> bool {
        matches!(self.cut, Some((_, Some(_))))
    }
}

impl Display {
    /// Shows the counters, the link's state and each agent's backlog.
    fn show(&self, c: &Counters, link: &LinkState, outage: bool, backlog: [u64; 2]) {
        self.picks.set_position(c.tasks_picked + c.tasks_short);
        self.picks.set_message(format!(
            "{} short, {} exceptions",
            c.tasks_short, c.exceptions
        ));
        self.cartons.set_position(c.cartons);
        self.cartons
            .set_message(format!("{} labels printed", c.labels_printed));
        let link_state = match (outage, link) {
            (true, _) => "OUTAGE (link cut)".to_string(),
            (_, LinkState::Up { .. }) => "up".to_string(),
            (_, LinkState::Down { error, .. }) => format!("down: {error}"),
        };
        self.link.set_message(format!(
            "link: {link_state}; backlog {PICKER}: {}, {PACK}: {}",
            backlog[0], backlog[1]
        ));
        self.link.tick();
    }
}

/// Shows progress until both stations are done and the [`Outage`] has run its full
/// length; sends the cancellation once two tasks are done.
#[allow(clippy::too_many_arguments)]
async fn watch(
    oms: &DemoBridge,
    proxies: &[proxy::FaultProxy; 2],
    plan: &Plan,
    work: &Work,
    progress: &Progress,
    agents: &Agents,
    display: &Display,
    stations: Stations,
) -> Result<Watched, DemoError> {
    let Stations { picking, packing } = stations;
    let mut cancel_sent = false;
    let mut outage = Outage {
        proxies,
        cut: None,
        blackholed: false,
    };
    let mut max_backlog = [0u64; 2];
    while !(picking.is_finished() && packing.is_finished() && outage.over()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let c = progress.get();
        let done = (c.tasks_picked + c.tasks_short) as usize;
        if !cancel_sent && done >= 2 {
            cancel_sent = true;
            let cancel = Down::OrderCancelled {
                order_id: work.cancelled.clone(),
            };
            oms.send(SITE, PICKER, &cancel).await?;
            oms.send(SITE, PACK, &cancel).await?;
        }
        outage.step(plan, done >= work.total_tasks / 3 || picking.is_finished());
        let backlog = [
            backlog(&agents.picker.0).await,
            backlog(&agents.pack.0).await,
        ];
        for (m, b) in max_backlog.iter_mut().zip(backlog) {
            *m = (*m).max(b);
        }
        let link = agents.picker.1.state.borrow().clone();
        display.show(&c, &link, outage.ongoing(), backlog);
    }
    let (pick_result, pick_station) = picking
        .await
        .map_err(|e| DemoError::Agent(format!("picker task: {e}")))?;
    let (pack_result, pack_station) = packing
        .await
        .map_err(|e| DemoError::Agent(format!("pack task: {e}")))?;
    outage.end();
    let mut failures = Vec::new();
    if let Err(e) = pick_result {
        failures.push(format!("picker: {e}"));
    }
    if let Err(e) = pack_result {
        failures.push(format!("pack station: {e}"));
    }
    Ok(Watched {
        outage: outage.cut.and_then(|(_, d)| d),
        max_backlog,
        failures,
        pick_station,
        _pack_station: pack_station,
    })
}

/// The backlog drains: waits (at most 20 s) until the OMS has acked everything each
/// agent wrote.
async fn drain(oms: &DemoBridge, agents: &Agents, display: &Display) -> Result<(), DemoError> {
    let drain_deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut drained = true;
        let acked = ack_points(oms).await?;
        for (device, store) in [(PICKER, &agents.picker.0), (PACK, &agents.pack.0)] {
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
            return Ok(());
        }
        display
            .link
            .set_message("link: up; draining the backlog".to_string());
        display.link.tick();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each agent's side, straight from its store: its highest seq, what is unacked, and
/// the picker's units per task.
async fn agent_sides(agents: &Agents, work: &Work) -> Result<Vec<AgentSide>, DemoError> {
    let mut sides = Vec::new();
    for (device, store) in [(PICKER, &agents.picker.0), (PACK, &agents.pack.0)] {
        let ids: Vec<u64> = if device == PICKER {
            work.waves
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
        sides.push(side);
    }
    Ok(sides)
}

/// What the shift left on disk, listed once the terminal has drawn its last screen.
struct Files {
    screens: Vec<String>,
    labels: Vec<String>,
    label_previews: Vec<String>,
    /// Why a device or a preview is missing.
    notes: Vec<String>,
}

/// Stops the terminal (so its last PNG is complete) and lists the labels, their previews
/// (or why there are none) and the screens.
fn files_left(out: &Path, devices: Devices) -> Files {
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
    let mut notes: Vec<String> = devices.terminal_note.into_iter().collect();
    if let Ok(t) = devices.terminal_runner
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
    Files {
        screens: files(&out.join("screens"), "png"),
        labels,
        label_previews,
        notes,
    }
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
