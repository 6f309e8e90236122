//! The `floorhand oms ...` commands: push a wave, tail events, simulate an OMS.

use std::io::Write;
use std::time::{Duration, Instant};

use floorhand_protocol::oms::{Capture, Down, GtinPack, Task, Wave, wave_digest};

use super::oms::{DownState, OmsError, OmsSession, OmsSettings, Received, down_from_json};

/// Reads one or many down messages: one JSON document (a wave, perhaps pretty-printed, or
/// any down message), or one message per line.
pub fn downs_from_text(text: &str) -> Result<Vec<Down>, OmsError> {
    if let Ok(one) = down_from_json(text) {
        return Ok(vec![one]);
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            down_from_json(l).map_err(|e| OmsError::Input(format!("line {}: {e}", n + 1)))
        })
        .collect()
}

/// What `oms push` achieved for each message, by its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The message's number for the device.
    pub msg_no: u64,
    /// Where it is.
    pub state: DownState,
}

/// `oms push --device D [FILE|-]`: commits each message to the OMS store and sends it.
/// With `wait`, returns once the agent has acknowledged every message at application level
/// or the time is up; without, once each message was handed to the broker (or 5 s).
/// The caller decides the exit code from the states.
pub async fn push(
    s: &OmsSettings,
    downs: Vec<Down>,
    site: Option<&str>,
    device: &str,
    wait: Option<Duration>,
) -> Result<Vec<Pushed>, OmsError> {
    let (session, _rx) = OmsSession::start(s)?;
    let nos = session.push_many(site, device, downs).await?;
    let deadline = Instant::now() + wait.unwrap_or(Duration::from_secs(5));
    let done = |st: &DownState| match wait {
        Some(_) => matches!(st, DownState::Applied | DownState::Rejected { .. }),
        None => !matches!(st, DownState::Queued),
    };
    let mut out = Vec::new();
    loop {
        out.clear();
        for &no in &nos {
            // A control message (numbered 0) is published at once and never acknowledged.
            let state = if no == 0 {
                DownState::Sent
            } else {
                session
                    .state(site, device, no)
                    .await?
                    .unwrap_or(DownState::Queued)
            };
            out.push(Pushed { msg_no: no, state });
        }
        if out.iter().all(|p| p.msg_no == 0 || done(&p.state)) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    session.close().await;
    Ok(out)
}

/// One line of `oms tail` output.
pub fn json_line(r: &Received) -> String {
    serde_json::to_string(r).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// `oms tail`: prints every new agent event (and births, deaths, statuses, alarms) as one
/// JSON line. With acks on, an event is acknowledged only after its line was written and
/// flushed: the output is at-least-once (a line written just before a crash is printed
/// again after a restart). A write error stops the tail with an error and acknowledges
/// nothing more. At `stop`, what was already received is printed before exiting.
pub async fn tail(
    s: &OmsSettings,
    out: &mut (dyn Write + Send),
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), OmsError> {
    let (session, mut rx) = OmsSession::start(s)?;
    tokio::pin!(stop);
    // Writes a burst of received items with one flush, then lets them be acknowledged:
    // nothing is acknowledged before the flush that wrote it.
    let mut write = |burst: &[Received]| -> Result<(), OmsError> {
        let written = burst
            .iter()
            .try_for_each(|r| writeln!(out, "{}", json_line(r)))
            .and_then(|_| out.flush());
        written.map_err(|e| OmsError::Input(format!("writing the output: {e}")))?;
        for r in burst {
            if let Received::Event {
                site,
                device,
                incarnation,
                event,
                ..
            } = r
            {
                session.consumed(site, device, *incarnation, event.seq);
            }
        }
        Ok(())
    };
    // What is waiting behind `first`, up to a burst's worth.
    let burst = |first: Received, rx: &mut tokio::sync::mpsc::UnboundedReceiver<Received>| {
        let mut b = vec![first];
        while b.len() < 1024
            && let Ok(r) = rx.try_recv()
        {
            b.push(r);
        }
        b
    };
    let result = loop {
        tokio::select! {
            r = rx.recv() => match r {
                Some(r) => {
                    let b = burst(r, &mut rx);
                    if let Err(e) = write(&b) { break Err(e) }
                }
                None => break Ok(()),
            },
            _ = &mut stop => {
                // Print what already arrived; it may be acknowledged too.
                let mut res = Ok(());
                while let Ok(r) = rx.try_recv() {
                    let b = burst(r, &mut rx);
                    if let Err(e) = write(&b) { res = Err(e); break; }
                }
                break res;
            }
        }
    };
    if result.is_err() {
        // Nothing more may be acknowledged: drop the session without its last acks.
        drop(session);
        return result;
    }
    session.close().await;
    let c = session.counters();
    tracing::info!(
        "oms tail: {} events, {} duplicates, {} acks sent",
        c.events,
        c.duplicates,
        c.acks_sent
    );
    Ok(())
}

/// What `oms sim` pushes.
#[derive(Debug, Clone)]
pub struct SimPlan {
    /// Devices to serve.
    pub devices: Vec<String>,
    /// Waves per device.
    pub waves: u32,
    /// Tasks per wave.
    pub tasks: u32,
}

/// GTIN-14 check digit (GS1 mod 10, weights 3,1,3,... from the right).
fn gtin14(body13: u64) -> String {
    let digits = format!("{body13:013}");
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    format!("{digits}{}", (10 - sum % 10) % 10)
}

/// The waves the simulator sends to `device`, deterministic for a given plan.
pub fn sim_waves(plan: &SimPlan, device_index: usize) -> Vec<Wave> {
    (0..plan.waves)
        .map(|w| {
            let wave_id = 1000 * (device_index as u64 + 1) + u64::from(w) + 1;
            let tasks: Vec<Task> = (0..plan.tasks)
                .map(|t| {
                    let n = u64::from(w) * u64::from(plan.tasks) + u64::from(t);
                    let aisle = (n / 20) % 26;
                    Task {
                        task_id: wave_id * 100_000 + u64::from(t) + 1,
                        order_id: format!("SO-{}", 10_000 + wave_id * 10 + u64::from(t) / 3),
                        order_line: t % 3 + 1,
                        location: format!(
                            "{}-{:02}-{:02}",
                            (b'A' + aisle as u8) as char,
                            n % 20 + 1,
                            t % 4 + 1
                        ),
                        pick_seq: (n * 10) as u32,
                        location_check: ((n * 37) % 100) as u8,
                        gtins: vec![GtinPack {
                            gtin: gtin14(950_600_013_000 + n % 997),
                            pack_qty: 1,
                        }],
                        sku: format!("SKU-{:05}", n % 997),
                        description: format!("Demo item {}", n % 997),
                        qty: (t % 3) + 1,
                        capture: Capture::default(),
                        tote_required: false,
                    }
                })
                .collect();
            Wave {
                wave_id,
                version: 1,
                priority: 5,
                cutoff: 0,
                task_count: tasks.len() as u32,
                digest: wave_digest(&tasks),
                tasks,
            }
        })
        .collect()
}

/// `oms sim`: pushes the plan's waves to each device, re-pushes them when a device is
/// born again (it skips versions it has), prints events as JSON lines if asked, acks
/// everything, and reports progress on stderr every second. Runs for `duration`, or until
/// `stop` resolves.
pub async fn sim(
    s: &OmsSettings,
    plan: &SimPlan,
    duration: Option<Duration>,
    mut out: Option<&mut (dyn Write + Send)>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<super::oms::OmsCounters, OmsError> {
    let (session, mut rx) = OmsSession::start(s)?;
    let push_all = |device: String| {
        let session = session.clone();
        let waves = plan
            .devices
            .iter()
            .position(|d| *d == device)
            .map(|i| sim_waves(plan, i))
            .unwrap_or_default();
        async move {
            for w in waves {
                session.send(&device, Down::WaveAssigned(w)).await?;
            }
            Ok::<(), OmsError>(())
        }
    };
    for d in &plan.devices {
        push_all(d.clone()).await?;
    }
    let started = Instant::now();
    let mut last_report = Instant::now();
    tokio::pin!(stop);
    loop {
        if duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        tokio::select! {
            r = rx.recv() => {
                let Some(r) = r else { break };
                // A wave that arrived damaged is sent again: the agent accepts its repair.
                if let Received::Birth { device, birth, .. } = &r
                    && let Some(i) = plan.devices.iter().position(|d| d == device)
                {
                    for w in sim_waves(plan, i) {
                        if birth.waves.iter().any(|v| v.wave_id == w.wave_id && v.needs_repair) {
                            session.send(device, Down::WaveAssigned(w)).await?;
                        }
                    }
                }
                if let Some(o) = out.as_mut() {
                    let _ = writeln!(o, "{}", json_line(&r));
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = &mut stop => break,
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            let c = session.counters();
            let points: Vec<String> = plan
                .devices
                .iter()
                .map(|d| format!("{d}: acked through {}", session.ack_point(d)))
                .collect();
            eprintln!(
                "oms sim: {} events, {} duplicates, {} acks; {}",
                c.events,
                c.duplicates,
                c.acks_sent,
                points.join(", ")
            );
        }
    }
    session.close().await;
    let c = session.counters();
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_gtins_have_valid_check_digits() {
        // 0950600013435 is the body of the GS1 example GTIN 09506000134352.
        assert_eq!(gtin14(950_600_013_435), "09506000134352");
    }

    #[test]
    fn simulated_waves_are_deterministic_and_declare_their_digest() {
        let plan = SimPlan {
            devices: vec!["a".into(), "b".into()],
            waves: 2,
            tasks: 5,
        };
        let w = sim_waves(&plan, 1);
        assert_eq!(w, sim_waves(&plan, 1));
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].digest, wave_digest(&w[0].tasks));
        assert_ne!(w[0].wave_id, sim_waves(&plan, 0)[0].wave_id);
    }
}
