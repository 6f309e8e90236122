//! `floorhand bridge`'s rows (the release binary on SQLite, against a stock Mosquitto):
//! - **ingest**: 50 agent links with queued events drain into the bridge; measured until
//!   every event is committed, acknowledged (every outbox empty) and read back once by
//!   cursor over HTTP; beside `mosquitto_pub` to `mosquitto_sub` of the same payloads.
//! - **memory**: the bridge's peak RSS with 100 devices and 1,000,000 stored events, after
//!   it served them all by cursor.
//! - **HTTP**: `POST .../messages` p99 latency under 100 concurrent clients, beside the p99
//!   of raw SQLite commits of one row each with the same durability (WAL,
//!   `synchronous=FULL`) made by 100 concurrent writers: the same load on the disk without
//!   the bridge. Without a goal, beside one uncontended raw commit, and beside `GET
//!   /healthz` under the same clients: the part of the POST's time that HTTP, the
//!   connections and the machine take, store or no store.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use floorhand::store::fixtures::{timed_concurrent_commits, timed_message_commits};
use floorhand::store::oms_db::OmsDb;
use floorhand::store::oms_store::OmsStore;
use floorhand::store::{Db, Store, StoreConfig, Synchronous};
use floorhand::sync::agent::{self, SyncConfig};
use floorhand::sync::mqtt::BrokerSettings;
use floorhand_protocol::examples;
use floorhand_protocol::oms::{Event, Up};

use crate::procs::{self, Broker};
use crate::{Ctx, Goal, Row};

/// A running `floorhand bridge` and a minimal HTTP/1.1 client for its API.
struct BridgeProc {
    child: Child,
    port: u16,
    token: String,
}

impl BridgeProc {
    /// Starts the release bridge on the SQLite file `db` and waits until it is connected.
    fn spawn(dir: &Path, db: &Path, broker_url: &str) -> anyhow::Result<BridgeProc> {
        std::fs::create_dir_all(dir)?;
        let port = procs::free_port()?;
        let config = dir.join("bridge.toml");
        std::fs::write(
            &config,
            format!(
                "[store]\npath = \"{}\"\n[broker]\nurl = \"{broker_url}\"\n\
                 [mqtt]\nclient_id = \"bench-bridge\"\n\
                 [http]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"bench-bridge.token\"\n",
                db.display()
            ),
        )?;
        let log = std::fs::File::create(dir.join("bridge.log"))?;
        let child = Command::new(procs::floorhand_bin()?)
            .args(["bridge", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting floorhand bridge")?;
        let mut b = BridgeProc {
            child,
            port,
            token: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, body)) = b.request("GET", "/healthz", None)
                && body.contains("\"broker_connected\":true")
            {
                break;
            }
            if let Ok(Some(st)) = b.child.try_wait() {
                bail!(
                    "the bridge exited with {st}; see {}/bridge.log",
                    dir.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the bridge was not up within 60 s; see {}/bridge.log",
                    dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        b.token = std::fs::read_to_string(dir.join("bench-bridge.token"))?
            .trim()
            .to_string();
        Ok(b)
    }

    /// One request on a new connection; the status and the body.
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> anyhow::Result<(u16, String)> {
        http(self.port, &self.token, method, path, body)
    }
}

impl Drop for BridgeProc {
    fn drop(&mut self) {
        procs::stop(&mut self.child);
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port` with a bearer token, `Connection: close`.
fn http(
    port: u16,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.set_nodelay(true)?;
    let body = body.unwrap_or("");
    // One write: a request in several small segments waits on Nagle's algorithm and the
    // server's delayed ACK (40 ms a request), which would time the client, not the bridge.
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes())?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad status line {line:?}"))?;
    let mut chunked = false;
    loop {
        line.clear();
        r.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        let l = line.to_ascii_lowercase();
        chunked |= l.starts_with("transfer-encoding:") && l.contains("chunked");
    }
    let mut out = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim(), 16).context("chunk size")?;
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk)?;
            out.extend_from_slice(&chunk[..size]);
        }
    } else {
        r.read_to_end(&mut out)?;
    }
    Ok((status, String::from_utf8_lossy(&out).into_owned()))
}

/// Reads every event after cursor `after` until `want` distinct (device, seq) pairs
/// arrived; fails on a duplicate. Returns the number of requests made.
fn read_by_cursor(b: &BridgeProc, want: usize, limit: Duration) -> anyhow::Result<usize> {
    let started = Instant::now();
    let mut seen = HashSet::with_capacity(want);
    let mut cursor = String::new();
    let mut requests = 0;
    while seen.len() < want {
        if started.elapsed() > limit {
            bail!(
                "only {} of {want} events readable after {limit:?}",
                seen.len()
            );
        }
        let path = if cursor.is_empty() {
            "/v1/events?limit=1000&wait=5".to_string()
        } else {
            format!("/v1/events?after={cursor}&limit=1000&wait=5")
        };
        let (status, body) = b.request("GET", &path, None)?;
        requests += 1;
        if status != 200 {
            bail!("GET {path}: {status} {body}");
        }
        let v: serde_json::Value = serde_json::from_str(&body)?;
        for e in v["events"].as_array().context("events")? {
            let key = (
                e["device"].as_str().unwrap_or_default().to_string(),
                e["incarnation"].to_string(),
                e["seq"].as_u64().unwrap_or(0),
            );
            if !seen.insert(key.clone()) {
                bail!("event {key:?} was read twice");
            }
        }
        cursor = v["next"].as_str().context("next")?.to_string();
    }
    Ok(requests)
}

/// Events from 50 devices, committed, acknowledged and read by cursor, per second.
pub fn ingest(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let (devices, per) = if ctx.quick { (5, 20) } else { (50, 2_000) };
    let n = devices * per;
    let broker = Broker::start(&ctx.dir.join("broker-bridge"))?;
    let Up::Event(pick) = examples::typical_pick().body.body else {
        bail!("the typical pick example is not an event");
    };
    // Every device's outbox filled before the clock starts.
    let mut stores = Vec::new();
    let mut payloads = Vec::new();
    let cfg = StoreConfig {
        synchronous: Synchronous::Normal,
        ..StoreConfig::default()
    };
    for i in 0..devices {
        let path = ctx.file(&format!("bridge-dev-{i:02}.db"))?;
        let mut db = Db::open(&path, &cfg)?;
        db.queue_sample_events(pick.at, pick.operator, &pick.kind, per)?;
        payloads.extend(db.outbox_pending(0, per)?.into_iter().map(|r| r.payload));
        drop(db);
        stores.push(path);
    }
    let bridge_db = ctx.file("bridge-ingest.db")?;
    let bridge = BridgeProc::spawn(&ctx.dir.join("bridge-ingest"), &bridge_db, &broker.url())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let mut fleet = Vec::new();
    for (i, path) in stores.iter().enumerate() {
        let store = Store::open(path, cfg.clone())?;
        let sync = SyncConfig::new(
            &format!("dev-{i:02}"),
            "site1",
            BrokerSettings::plain(broker.url()),
        );
        let (_h, task) = rt.block_on(agent::start(sync, store.clone(), stop_rx.clone()))?;
        fleet.push((store, task));
    }
    let requests = read_by_cursor(&bridge, n, Duration::from_secs(300))?;
    let limit = Duration::from_secs(300);
    loop {
        let mut left = 0;
        for (store, _) in &fleet {
            left += rt.block_on(store.call(|db| db.outbox_stats(0).map(|s| s.count)))??;
        }
        if left == 0 {
            break;
        }
        if started.elapsed() > limit {
            bail!("{left} events still unacknowledged after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let fh = started.elapsed();
    let _ = stop.send(true);
    for (_, task) in fleet {
        let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await });
    }
    drop(bridge);
    drop(broker);
    eprintln!("  bridge ingest: {n} events read in {requests} cursor requests");
    let (lines, _) = crate::drain::mosquitto_lines(payloads);
    let base_broker = Broker::start_unlimited(&ctx.dir.join("broker-bridge-base"))?;
    let base = crate::drain::mosquitto_pub_drain(
        &base_broker,
        "floorhand/v1/site1/bench-base/up",
        &lines,
    )?;
    let (fh_rate, base_rate) = (n as f64 / fh.as_secs_f64(), n as f64 / base.as_secs_f64());
    Ok(vec![Row::new(
        &format!(
            "bridge: {n} events from {devices} devices stored, acked, read by cursor, events/s"
        ),
        format!("{fh_rate:.0}/s"),
        format!("{base_rate:.0}/s"),
        fh_rate / base_rate,
        Some(Goal::AtLeast(0.5)),
    )])
}

/// A bridge store holding `per` events of each of `devices` devices, built once and kept
/// in the scratch directory (a marker file names what it holds).
fn big_store(ctx: &Ctx, devices: usize, per: usize) -> anyhow::Result<PathBuf> {
    let path = ctx.dir.join(format!("bridge-{devices}x{per}.db"));
    let marker = ctx.dir.join(format!("bridge-{devices}x{per}.done"));
    if path.exists() && marker.exists() {
        return Ok(path);
    }
    let path = ctx.file(&format!("bridge-{devices}x{per}.db"))?;
    let Up::Event(pick) = examples::typical_pick().body.body else {
        bail!("the typical pick example is not an event");
    };
    eprintln!("  building a bridge store of {devices} x {per} events (once) ...");
    let mut db = OmsDb::open(&path)?;
    for d in 0..devices {
        let device = format!("dev-{d:03}");
        db.set_incarnation("site1", &device, 1000 + d as u64, None, pick.at)?;
        for chunk in (1..=per as u64).collect::<Vec<_>>().chunks(10_000) {
            let batch: Vec<(String, String, u64, Event)> = chunk
                .iter()
                .map(|&seq| {
                    let ev = Event {
                        seq,
                        at: pick.at,
                        operator: pick.operator,
                        kind: pick.kind.clone(),
                    };
                    ("site1".to_string(), device.clone(), 1000 + d as u64, ev)
                })
                .collect();
            db.store_events(&batch, pick.at)?;
        }
    }
    drop(db);
    std::fs::write(&marker, b"")?;
    Ok(path)
}

/// The bridge's peak RSS with 100 devices and 1,000,000 stored events, all served by cursor.
pub fn memory(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let (devices, per) = if ctx.quick { (10, 100) } else { (100, 10_000) };
    let n = devices * per;
    let db = big_store(ctx, devices, per)?;
    let broker = Broker::start(&ctx.dir.join("broker-bridge-mem"))?;
    let bridge = BridgeProc::spawn(&ctx.dir.join("bridge-mem"), &db, &broker.url())?;
    let (status, body) = bridge.request("GET", "/v1/devices", None)?;
    if status != 200 {
        bail!("GET /v1/devices: {status} {body}");
    }
    let started = Instant::now();
    read_by_cursor(&bridge, n, Duration::from_secs(600))?;
    let read = started.elapsed();
    let hwm = procs::status_kib(bridge.child.id(), "VmHWM")? as f64 / 1024.0;
    eprintln!(
        "  bridge memory: {n} events read by cursor in {:.1} s ({:.0}/s)",
        read.as_secs_f64(),
        n as f64 / read.as_secs_f64()
    );
    Ok(vec![Row::absolute(
        &format!("bridge peak RSS (VmHWM), {devices} devices, {n} events served"),
        hwm,
        format!("{hwm:.1} MiB"),
        "-".into(),
        None,
        Goal::ValueAtMost(64.0, "MiB"),
    )])
}

/// Index `q` (0..=1) of sorted durations.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// What one client asks for its `i`th request: method, path, body, and the status that
/// must come back.
type Ask = fn(usize, usize) -> (&'static str, String, Option<String>, u16);

/// `clients` threads, released together, each making `each` requests (a new connection
/// each) one after the other; every request's time, sorted.
fn concurrent(
    port: u16,
    token: &str,
    clients: usize,
    each: usize,
    ask: Ask,
) -> anyhow::Result<Vec<Duration>> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(clients));
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (token, barrier) = (token.to_string(), barrier.clone());
            std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
                barrier.wait();
                let mut times = Vec::with_capacity(each);
                for i in 0..each {
                    let (method, path, body, want) = ask(c, i);
                    let t = Instant::now();
                    let (status, answer) = http(port, &token, method, &path, body.as_deref())?;
                    times.push(t.elapsed());
                    if status != want {
                        bail!("{method} {path}: {status} {answer}");
                    }
                }
                Ok(times)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(clients * each);
    for t in threads {
        all.extend(
            t.join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))??,
        );
    }
    all.sort();
    Ok(all)
}

/// `POST .../messages` p99 under 100 concurrent clients, beside a raw SQLite commit; and,
/// for scale, beside `GET /healthz` (no store, no session) under the same clients: what
/// HTTP and the machine alone cost at that concurrency.
pub fn http_post(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let (clients, each) = if ctx.quick { (10, 5) } else { (100, 20) };
    let db = ctx.file("bridge-http.db")?;
    {
        // The devices have been heard from (a message for an unknown device is refused).
        let mut store = OmsDb::open(&db)?;
        for c in 0..clients {
            store.set_incarnation("site1", &format!("dev-{c:03}"), 7 + c as u64, None, 1)?;
        }
    }
    let broker = Broker::start(&ctx.dir.join("broker-bridge-http"))?;
    let bridge = BridgeProc::spawn(&ctx.dir.join("bridge-http"), &db, &broker.url())?;
    let fh = concurrent(bridge.port, &bridge.token, clients, each, |c, i| {
        (
            "POST",
            format!("/v1/devices/site1/dev-{c:03}/messages"),
            Some(format!(
                "{{\"OrderCancelled\":{{\"order_id\":\"SO-{c}-{i}\"}}}}"
            )),
            202,
        )
    })?;
    let health = concurrent(bridge.port, &bridge.token, clients, each, |_, _| {
        ("GET", "/healthz".to_string(), None, 200)
    })?;
    drop(bridge);
    // The baseline: the same number of one-row commits (WAL, synchronous=FULL) by as many
    // concurrent writers, each commit timed with its wait for its turn.
    let mut loaded = timed_concurrent_commits(&ctx.file("bridge-http-load.db")?, clients, each)?;
    loaded.sort();
    // And one writer alone: a commit's own cost.
    let mut base = timed_message_commits(
        &ctx.file("bridge-http-base.db")?,
        (0..fh.len()).map(|i| format!("{{\"OrderCancelled\":{{\"order_id\":\"SO-{i}\"}}}}")),
    )?;
    base.sort();
    let (p99, base_p99) = (quantile(&fh, 0.99), quantile(&base, 0.99));
    let (health_p99, loaded_p99) = (quantile(&health, 0.99), quantile(&loaded, 0.99));
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    eprintln!(
        "  bridge http: {} POSTs, p50 {}, p99 {}; GET /healthz p50 {}, p99 {}; \
         raw commits by {clients} writers p50 {}, p99 {}; one raw commit p50 {}",
        fh.len(),
        ms(quantile(&fh, 0.5)),
        ms(p99),
        ms(quantile(&health, 0.5)),
        ms(health_p99),
        ms(quantile(&loaded, 0.5)),
        ms(loaded_p99),
        ms(quantile(&base, 0.5))
    );
    Ok(vec![
        Row::new(
            &format!(
                "bridge: POST message p99 vs raw SQLite commit p99, {clients} concurrent each"
            ),
            ms(p99),
            ms(loaded_p99),
            p99.as_secs_f64() / loaded_p99.as_secs_f64(),
            Some(Goal::AtMost(3.0)),
        ),
        Row::new(
            &format!("bridge: POST message p99, {clients} concurrent clients vs one SQLite commit"),
            ms(p99),
            ms(base_p99),
            p99.as_secs_f64() / base_p99.as_secs_f64(),
            None,
        ),
        Row::new(
            &format!("bridge: POST message p99 vs GET /healthz p99, {clients} concurrent clients"),
            ms(p99),
            ms(health_p99),
            p99.as_secs_f64() / health_p99.as_secs_f64(),
            None,
        ),
    ])
}
