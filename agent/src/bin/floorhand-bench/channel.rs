//! Contract v2's rows: down messages applied and acknowledged end to end beside
//! `mosquitto_pub -q 1` of the same payloads, and a fleet's recovery after an outage.

use std::time::{Duration, Instant};

use anyhow::bail;
use floorhand::store::{Store, StoreConfig, Synchronous};
use floorhand::sync::agent::{self, SyncConfig, SyncHandle};
use floorhand::sync::mqtt::BrokerSettings;
use floorhand::sync::oms::{AckMode, OmsSession, OmsSettings};
use floorhand_protocol::oms::{Down, DownMsg, Wave, encode_down, wave_digest};
use floorhand_protocol::{Envelope, examples};
use tokio::sync::watch;

use crate::procs::Broker;
use crate::{Ctx, Goal, Row};

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// A one-task wave, the typical small down message.
fn wave(i: u64) -> Down {
    let tasks = vec![examples::task(i, "A-12-03-B", 1203)];
    Down::WaveAssigned(Wave {
        wave_id: i,
        version: 1,
        priority: 1,
        cutoff: 0,
        task_count: 1,
        digest: wave_digest(&tasks),
        tasks,
    })
}

fn oms_settings(url: &str, client: &str) -> OmsSettings {
    OmsSettings {
        broker: BrokerSettings::plain(url),
        site: "site1".into(),
        client_id: client.into(),
        ack: AckMode::Stored,
        store: ":memory:".into(),
        clean_session: true,
    }
}

/// An agent link on a store with the default durability.
async fn start_agent(
    ctx: &Ctx,
    device: &str,
    url: &str,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(Store, SyncHandle, tokio::task::JoinHandle<()>)> {
    let store = Store::open(&ctx.file(&format!("{device}.db"))?, StoreConfig::default())?;
    let cfg = SyncConfig::new(device, "site1", BrokerSettings::plain(url));
    let (h, task) = agent::start(cfg, store.clone(), stop).await?;
    Ok((store, h, task))
}

/// `n` down messages: pushed to the OMS side, applied by the agent, acknowledged back.
fn floorhand_down(ctx: &Ctx, broker: &Broker, n: u64) -> anyhow::Result<Duration> {
    runtime()?.block_on(async {
        let (oms, rx) = OmsSession::start(&oms_settings(&broker.url(), "bench-oms-down"))?;
        drop(rx);
        let (stop, stop_rx) = watch::channel(false);
        let (_store, h, task) = start_agent(ctx, "bench-down", &broker.url(), stop_rx).await?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !matches!(*h.state.borrow(), agent::LinkState::Up { .. }) {
            if Instant::now() > deadline {
                bail!("the agent did not connect");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The OMS side learns the agent's incarnation from its birth first.
        // Like `oms push FILE` (and mosquitto_pub -l): every message handed over at once,
        // committed in one transaction, then sent within the window.
        let started = Instant::now();
        oms.push_many(None, "bench-down", (1..=n).map(wave).collect())
            .await?;
        let limit = Duration::from_secs(300);
        while oms.counters().down_acked < n {
            if started.elapsed() > limit {
                bail!(
                    "{} of {n} acknowledged after {limit:?}",
                    oms.counters().down_acked
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let elapsed = started.elapsed();
        let st = h.stats.borrow().clone();
        eprintln!(
            "  down: the agent applied {} in {} down acks; {} duplicates, {} out of order",
            st.applied, st.down_acks, st.duplicates, st.out_of_order
        );
        let _ = stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        oms.close().await;
        anyhow::Ok(elapsed)
    })
}

/// `mosquitto_pub -q 1 -l` publishing `n` down payloads of the same sizes to a
/// `mosquitto_sub -q 1` that has all of them (on a broker of its own: see
/// [`Broker::start_unlimited`]).
fn mosquitto_down(ctx: &Ctx, n: u64) -> anyhow::Result<Duration> {
    let mut payloads = Vec::new();
    for i in 1..=n {
        let env = Envelope::new(
            i,
            DownMsg {
                oms_incarnation: u64::MAX / 3,
                to_incarnation: u64::MAX / 5,
                body: wave(i),
            },
        );
        payloads.push(encode_down(&env)?);
    }
    let (lines, _) = crate::drain::mosquitto_lines(payloads);
    let broker = Broker::start_unlimited(&ctx.dir.join("broker-down-base"))?;
    crate::drain::mosquitto_pub_drain(&broker, "floorhand/v1/site1/bench-base/down", &lines)
}

/// Down messages applied and acknowledged per second, beside mosquitto_pub.
pub fn down(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let n = if ctx.quick { 500 } else { 10_000 };
    let broker = Broker::start(&ctx.dir.join("broker-down"))?;
    let fh = floorhand_down(ctx, &broker, n)?;
    drop(broker);
    let base = mosquitto_down(ctx, n)?;
    let (fh_rate, base_rate) = (n as f64 / fh.as_secs_f64(), n as f64 / base.as_secs_f64());
    Ok(vec![Row::new(
        &format!("{n} down messages applied and acked, msgs/s"),
        format!("{fh_rate:.0}/s"),
        format!("{base_rate:.0}/s"),
        fh_rate / base_rate,
        Some(Goal::AtLeast(0.5)),
    )])
}

/// A fleet's recovery: every agent queues events while the broker is down; measured from
/// the broker's return until every outbox is empty.
pub fn fleet(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let (agents, events, outage) = if ctx.quick {
        (10, 10, Duration::from_secs(2))
    } else {
        (100, 100, Duration::from_secs(30))
    };
    let dir = ctx.dir.join("broker-fleet");
    let broker = Broker::start(&dir)?;
    let port = broker.port;
    let url = broker.url();
    let recovery = runtime()?.block_on(async {
        let (oms, rx) = OmsSession::start(&oms_settings(&url, "bench-oms-fleet"))?;
        drop(rx);
        let (stop, stop_rx) = watch::channel(false);
        let mut fleet = Vec::new();
        for i in 0..agents {
            // A hundred agents on one disk: the commit cost is not what this row is about.
            let store_cfg = StoreConfig {
                synchronous: Synchronous::Normal,
                ..StoreConfig::default()
            };
            let device = format!("fleet-{i:03}");
            let store = Store::open(&ctx.file(&format!("{device}.db"))?, store_cfg)?;
            let cfg = SyncConfig::new(&device, "site1", BrokerSettings::plain(&url));
            let (h, task) = agent::start(cfg, store.clone(), stop_rx.clone()).await?;
            fleet.push((store, h, task));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while fleet
            .iter()
            .any(|(_, h, _)| !matches!(*h.state.borrow(), agent::LinkState::Up { .. }))
        {
            if Instant::now() > deadline {
                bail!("the fleet did not connect");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(broker);
        for (store, h, _) in &fleet {
            store
                .call(move |db| {
                    for t in 0..events {
                        db.append_event(
                            0,
                            1,
                            floorhand_protocol::oms::EventKind::Skipped { task_id: t },
                        )?;
                    }
                    Ok::<_, floorhand::store::StoreError>(())
                })
                .await??;
            h.outbox_changed();
        }
        tokio::time::sleep(outage).await;
        let broker = Broker::start_on(&dir, port)?;
        let back = Instant::now();
        let limit = Duration::from_secs(120);
        loop {
            let mut left = 0;
            for (store, _, _) in &fleet {
                left += store
                    .call(|db| db.outbox_stats(0).map(|s| s.count))
                    .await??;
            }
            if left == 0 {
                break;
            }
            if back.elapsed() > limit {
                bail!("{left} events still queued {limit:?} after the broker's return");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let recovery = back.elapsed();
        let _ = stop.send(true);
        for (_, _, task) in fleet {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        oms.close().await;
        drop(broker);
        anyhow::Ok(recovery)
    })?;
    let secs = recovery.as_secs_f64();
    Ok(vec![Row::absolute(
        &format!(
            "{agents} agents x {events} events after a {}s outage: drained in",
            outage.as_secs()
        ),
        secs,
        format!("{secs:.1} s"),
        "-".into(),
        None,
        Goal::ValueAtMost(10.0, "s"),
    )])
}
