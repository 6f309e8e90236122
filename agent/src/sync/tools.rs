//! The `floorhand oms ...` commands: push a wave, tail events, simulate an OMS.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use floorhand_protocol::oms::{Capture, Down, GtinPack, Task, Wave, wave_digest};

use super::oms::{OmsError, OmsSession, OmsSettings, Received, down_from_json};

/// `oms push-wave FILE --device D`: reads a wave (or any down message) as JSON, checks it
/// against the protocol limits, publishes it and waits until the broker has it.
pub async fn push_wave(s: &OmsSettings, file: &Path, device: &str) -> Result<u64, OmsError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| OmsError::Input(format!("{}: {e}", file.display())))?;
    let down =
        down_from_json(&text).map_err(|e| OmsError::Input(format!("{}: {e}", file.display())))?;
    let (session, _rx) = OmsSession::start(s)?;
    let id = session.send(device, down).await?;
    session.close().await;
    // Give the event loop a moment to flush the publish and the disconnect.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(id)
}

/// One line of `oms tail` output.
pub fn json_line(r: &Received) -> String {
    serde_json::to_string(r).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// `oms tail`: prints every new agent event (and births, deaths, statuses) as one JSON line,
/// drops duplicates by `(device, seq)` and acks cumulatively. Runs until `stop` resolves.
pub async fn tail(
    s: &OmsSettings,
    out: &mut (dyn Write + Send),
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), OmsError> {
    let (session, mut rx) = OmsSession::start(s)?;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            r = rx.recv() => match r {
                Some(r) => {
                    let _ = writeln!(out, "{}", json_line(&r));
                    let _ = out.flush();
                }
                None => break,
            },
            _ = &mut stop => break,
        }
    }
    let _ = session.send_acks().await;
    let c = session.counters();
    tracing::info!(
        "oms tail: {} events, {} duplicates dropped, {} acks sent",
        c.events,
        c.duplicates,
        c.acks_sent
    );
    session.close().await;
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
                if let Received::Birth { device, .. } = &r
                    && plan.devices.contains(device)
                {
                    push_all(device.clone()).await?;
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
    let _ = session.send_acks().await;
    let c = session.counters();
    session.close().await;
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
