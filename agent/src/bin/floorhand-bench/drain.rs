//! Row 4: draining a backlog of confirmations to Mosquitto (published, acked by the OMS,
//! deleted) beside `mosquitto_pub -q 1 -l` publishing the same payloads to the same broker.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use floorhand::store::{Applied, Db, Store, StoreConfig};
use floorhand::sync::agent::{self, SyncConfig};
use floorhand::sync::mqtt::BrokerSettings;
use floorhand::sync::oms::{OmsSession, OmsSettings};
use floorhand_protocol::examples;
use floorhand_protocol::oms::Up;

use crate::procs::Broker;
use crate::{Ctx, Goal, Row};

/// Time for Floorhand to drain `n` queued confirmations, and the payloads it sent.
fn floorhand_drain(
    ctx: &Ctx,
    broker: &Broker,
    n: usize,
) -> anyhow::Result<(Duration, Vec<Vec<u8>>)> {
    let cfg = StoreConfig::default();
    let path = ctx.file("drain.db")?;
    let Up::Event(pick) = examples::typical_pick().body.body else {
        bail!("the typical pick example is not an event");
    };
    let payloads = {
        let mut db = Db::open(&path, &cfg)?;
        db.queue_sample_events(pick.at, pick.operator, &pick.kind, n)?;
        db.outbox_pending(0, n)?
            .into_iter()
            .map(|r| r.payload)
            .collect::<Vec<_>>()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let elapsed = rt.block_on(async {
        let oms_settings = OmsSettings {
            broker: BrokerSettings::plain(broker.url()),
            site: "site1".into(),
            client_id: "bench-oms".into(),
            ack: floorhand::sync::oms::AckMode::Stored,
            store: std::path::PathBuf::from(":memory:"),
            clean_session: true,
        };
        let (oms, mut received) = OmsSession::start(&oms_settings)?;
        // The OMS consumes everything it receives.
        tokio::spawn(async move { while received.recv().await.is_some() {} });
        // It subscribes after its ConnAck; give it time, or the first events are lost
        // until the agent's re-send timer.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let store = Store::open(&path, cfg)?;
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let started = Instant::now();
        let sync_cfg = SyncConfig::new("bench-01", "site1", BrokerSettings::plain(broker.url()));
        let (handle, task) = agent::start(sync_cfg, store.clone(), stop_rx).await?;
        // Count the rows the OMS's acks delete, without querying the store while it works.
        let mut applied = handle.applied();
        let mut deleted = 0;
        let limit = Duration::from_secs(300);
        while deleted < n {
            match tokio::time::timeout_at((started + limit).into(), applied.recv()).await {
                Ok(Ok(Applied::Acked { deleted: d })) => deleted += d,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => bail!("watching the agent: {e}"),
                Err(_) => bail!("only {deleted} of {n} events acked after {limit:?}"),
            }
        }
        let elapsed = started.elapsed();
        let events = oms.counters().events;
        let left = store.call(|db| db.outbox_stats(0)).await??.count;
        if left != 0 {
            bail!("{left} events still in the outbox after the OMS acked {n}");
        }
        let _ = stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        oms.close().await;
        if events != n as u64 {
            bail!("the OMS received {events} of {n} events");
        }
        anyhow::Ok(elapsed)
    })?;
    Ok((elapsed, payloads))
}

/// Time for `mosquitto_pub -q 1 -l` to publish `lines` (newline-free payloads) on
/// `topic` with a `mosquitto_sub -q 1` receiving all of them.
pub fn mosquitto_pub_drain(
    broker: &Broker,
    topic: &str,
    lines: &[Vec<u8>],
) -> anyhow::Result<Duration> {
    let mut input = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for l in lines {
        input.extend_from_slice(l);
        input.push(b'\n');
    }
    let port = broker.port.to_string();
    let sub_args = |extra: &[&str]| {
        let mut c = Command::new("mosquitto_sub");
        c.args(["-h", "127.0.0.1", "-p", &port, "-t", topic, "-q", "1"])
            .args(["-i", "bench-base-sub", "-c"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    // A persistent session (`-c`) subscribed once (`-E` exits after the SUBACK): the broker
    // queues every message for the subscriber from then on, so none is lost however fast
    // mosquitto_pub starts.
    let st = sub_args(&["-E"])
        .status()
        .context("running mosquitto_sub -E")?;
    if !st.success() {
        bail!("mosquitto_sub -E failed: {st}");
    }
    let mut sub = sub_args(&["-C", &lines.len().to_string()])
        .spawn()
        .context("starting mosquitto_sub")?;
    // mosquitto_pub 2.0 disconnects at the end of its input without sending what it
    // still has queued (measured: 34,485 of 100,000 sent), so its input stays open until
    // the subscriber has every message, as a long-running line feed would.
    let started = Instant::now();
    let mut publish = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port, "-t", topic, "-q", "1", "-l"])
        .args(["-i", "bench-base-pub"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting mosquitto_pub")?;
    let mut stdin = publish.stdin.take().context("mosquitto_pub stdin")?;
    let (done_tx, done) = std::sync::mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        let r = stdin.write_all(&input).and_then(|()| stdin.flush());
        // Hold the pipe open until told the subscriber has everything.
        let _ = done.recv();
        r
    });
    // mosquitto_sub exits after `-C` messages: every message arrived.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(st) = sub.try_wait()? {
            if !st.success() {
                crate::procs::stop(&mut publish);
                bail!("mosquitto_sub failed: {st}");
            }
            break;
        }
        if Instant::now() > deadline {
            crate::procs::stop(&mut sub);
            crate::procs::stop(&mut publish);
            bail!("mosquitto_sub did not receive every message within 120 s");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = started.elapsed();
    drop(done_tx);
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("the mosquitto_pub feeder panicked"))?
        .context("feeding mosquitto_pub")?;
    let st = publish.wait()?;
    if !st.success() {
        bail!("mosquitto_pub failed: {st}");
    }
    Ok(elapsed)
}

/// The payloads as `mosquitto_pub -l` input lines, and how many had to be altered.
/// mosquitto_pub -l reads lines with fgets: it splits at 0x0A and measures each line with
/// strlen, so a 0x00 merges lines. Payloads holding either byte (every pick event has 0x00
/// for its empty options) go to mosquitto_pub with 0x0A as 0x0B and 0x00 as 0x01: same
/// count, same sizes.
pub fn mosquitto_lines(payloads: Vec<Vec<u8>>) -> (Vec<Vec<u8>>, usize) {
    let mut altered = 0;
    let lines = payloads
        .into_iter()
        .map(|mut p| {
            if p.iter().any(|b| matches!(b, b'\n' | 0)) {
                altered += 1;
                for b in p.iter_mut() {
                    *b = match *b {
                        b'\n' => 0x0b,
                        0 => 0x01,
                        other => other,
                    };
                }
            }
            p
        })
        .collect();
    (lines, altered)
}

/// Drains `n` queued confirmations through a real broker and an acking OMS, beside
/// mosquitto_pub with the same payloads.
pub fn drain(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let (n, reps) = if ctx.quick { (2_000, 1) } else { (100_000, 3) };
    // Alternating, fresh brokers each time; the median of each side. One run of each
    // ranged from 0.97x to 1.29x on an idle machine: both sides share two cores with
    // the broker.
    let (mut fh, mut base) = (Vec::new(), Vec::new());
    let (mut bytes, mut altered) = (0, 0);
    for _ in 0..reps {
        let broker = Broker::start(&ctx.dir.join("broker-drain"))?;
        let (took, payloads) = floorhand_drain(ctx, &broker, n)?;
        fh.push(took);
        drop(broker);
        let lines;
        (lines, altered) = mosquitto_lines(payloads);
        bytes = lines.iter().map(Vec::len).sum();
        let broker = Broker::start_unlimited(&ctx.dir.join("broker-drain-base"))?;
        base.push(mosquitto_pub_drain(
            &broker,
            "floorhand/v1/site1/bench-base/up",
            &lines,
        )?);
    }
    fh.sort();
    base.sort();
    let (fh, base) = (fh[reps / 2], base[reps / 2]);
    let (fh_rate, base_rate) = (n as f64 / fh.as_secs_f64(), n as f64 / base.as_secs_f64());
    eprintln!(
        "  drain: {n} events, {bytes} payload bytes; {altered} payloads held 0x0A or 0x00 \
         and went to mosquitto_pub with those bytes replaced (same sizes)"
    );
    Ok(vec![Row::new(
        &format!("drain {n} events to MQTT, OMS-acked, events/s (median of {reps})"),
        format!("{fh_rate:.0}/s"),
        format!("{base_rate:.0}/s"),
        fh_rate / base_rate,
        Some(Goal::AtLeast(1.0)),
    )])
}
