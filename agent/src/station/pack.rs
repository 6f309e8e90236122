//! The pack station: one task owns the [`Packer`]; a printer thread
//! ([`crate::devices::printer::run`]) prints the durable queue.
//!
//! The print queue is the store's `print_jobs` table. At start every pending job is handed
//! to the printer thread (jobs survive a restart and a switched-off printer); each new job
//! (a closed carton, a reprint) is handed over after the commit that created it. A job
//! leaves the queue only on `JobReport::Printed` (`Db::print_done`, with its
//! `LabelPrinted` event in the same transaction); a fault keeps it queued and writes one
//! `PrintFailed` per distinct fault (`Db::print_fault`). Reports for jobs the packer knows
//! go through the workflow (which tells the packer); reports for jobs from before a
//! restart are recorded directly. The printer's state is shown on the station's screen
//! when it changes (a fault with an error beep: never silent) and published in `Status`.
//! A job the printer took but still holds in its buffer is marked sent
//! (`JobReport::Sent`, `Db::print_sent`) and is only confirmed after a restart, never
//! printed twice. The packer logs in with a badge first (`Packer::with_login`): events
//! carry the logged-in operator. A `[scale]`'s settled weights come in as
//! `Input::ScaleWeight`; without a scale (or a scanner, or a terminal) the station works
//! with the devices it has. Shutdown waits for the printer thread to finish the job it is
//! on (4x its timeout and 1 s) and close its connection, then records what it reported;
//! with no job queued it waits at most [`IDLE_PRINTER_STOP`] (an idle printer thread is at
//! most polling the status, which nothing depends on), so an idle station stops within a
//! second.

use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use floorhand_protocol::link::{Beep, Level};
use floorhand_protocol::oms::{EventKind, PrinterState};
use tokio::sync::{mpsc, watch};

use super::{Device, ScaleThread, Shell, StationError, join_within, next};
use crate::clock::unix_now;
use crate::devices::printer::{
    self, JobReport, PrintJob, Printer, PrinterConfig, PrinterView, QueuedJob,
};
use crate::devices::scale::ScaleEvent;
use crate::devices::scanner::ScannerEvent;
use crate::devices::terminal::TerminalEvent;
use crate::pack::{Capture, Commit, Effect, Input, Line, LineGtin, Order, PackConfig, Packer};
use crate::store::{Applied, CartonClose, CartonItem, Db, PackOrderRow, StoreError};
use crate::sync::agent::DeviceReport;

/// How long shutdown waits for the printer to finish the attempt it is on: connect,
/// `~HS`, the job, `~HS` again, each bounded by the printer's timeout, and a margin.
fn printer_stop(cfg: &PrinterConfig) -> Duration {
    cfg.timeout * 4 + Duration::from_secs(1)
}

/// How long shutdown waits for a printer thread with no job queued.
pub const IDLE_PRINTER_STOP: Duration = Duration::from_millis(300);

/// The store's copy of a pack order as the pack workflow's [`Order`]: converted here, at
/// the station's edge, as `pick_task` converts tasks.
impl From<&PackOrderRow> for Order {
    fn from(o: &PackOrderRow) -> Order {
        Order {
            order_id: o.order_id.clone(),
            lines: o
                .lines
                .iter()
                .map(|l| Line {
                    order_line: l.order_line,
                    gtins: l
                        .gtins
                        .iter()
                        .map(|g| LineGtin {
                            gtin: g.gtin.clone(),
                            pack_qty: g.pack_qty,
                        })
                        .collect(),
                    sku: l.sku.clone(),
                    qty: l.qty,
                    capture: Capture {
                        lot: l.capture.lot,
                        serial: l.capture.serial,
                        expiry: l.capture.expiry,
                    },
                    unit_weight_g: l.unit_weight_g,
                })
                .collect(),
            ship_from: o.ship_from.clone(),
            ship_to: o.ship_to.clone(),
            carrier: o.carrier.clone(),
            service: o.service.clone(),
            tracking: o.tracking.clone(),
        }
    }
}

struct Station {
    shell: Shell,
    packer: Packer,
    jobs: Option<std_mpsc::Sender<QueuedJob>>,
    /// Queued job ids and their SSCCs, as handed to the printer thread.
    queue: BTreeMap<u64, String>,
    printer: PrinterView,
    /// The kind (printer state) of the fault in the report being handled.
    fault_kind: String,
    /// The workflow's last screen, shown again when a device warning is over.
    workflow_screen: Option<floorhand_protocol::link::Screen>,
}

/// Runs the pack station until shutdown.
pub(crate) async fn run(
    shell: Shell,
    config: PackConfig,
    badge_prefix: String,
    printer_cfg: PrinterConfig,
    scale: Option<ScaleThread>,
) -> Result<(), StationError> {
    let (mut scale_events, scale_thread) = match scale {
        Some((rx, t)) => (Some(rx), Some(t)),
        None => (None, None),
    };
    let (jobs_tx, jobs_rx) = std_mpsc::channel::<QueuedJob>();
    let (reports_std, reports_rx_std) = std_mpsc::channel::<JobReport>();
    let stop_wait = printer_stop(&printer_cfg);
    let (view_tx, mut view_rx) = watch::channel(PrinterView {
        state: PrinterState::Offline,
        fault: None,
    });
    let printer_thread = std::thread::Builder::new()
        .name("printer".into())
        .spawn({
            let stop = shell.stop.clone();
            move || {
                printer::run_until(
                    Printer::new(printer_cfg),
                    jobs_rx,
                    reports_std,
                    view_tx,
                    &stop,
                );
            }
        })
        .map_err(StationError::Thread)?;
    // The printer thread reports on a std channel; this thread carries them to the task.
    let (reports_tx, mut reports) = mpsc::unbounded_channel::<JobReport>();
    std::thread::Builder::new()
        .name("printer-reports".into())
        .spawn(move || {
            for r in reports_rx_std {
                if reports_tx.send(r).is_err() {
                    return;
                }
            }
        })
        .map_err(StationError::Thread)?;

    let mut st = Station {
        packer: Packer::new(config).with_login(badge_prefix),
        shell,
        jobs: Some(jobs_tx),
        queue: BTreeMap::new(),
        printer: view_rx.borrow().clone(),
        fault_kind: String::new(),
        workflow_screen: None,
    };
    let mut applied = st.shell.sync.applied();
    st.feed_printer().await?;
    let start = st.packer.start();
    st.apply(start).await;
    let mut shutdown = st.shell.shutdown.clone();
    // Wakes the station only while refused scans wait to be reported.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    st.shell.ready();
    loop {
        tokio::select! {
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() { break; }
            }
            _ = tick.tick(), if st.packer.refusals().holding() => {
                let effects = st.packer.refusals().due(unix_now());
                st.apply(effects).await;
            }
            ev = next(&mut st.shell.scanner) => match ev {
                Some(ev) => st.on_scanner(ev).await,
                None => st.shell.ended(Device::Scanner),
            },
            ev = next(&mut st.shell.terminal_events) => match ev {
                Some(TerminalEvent::Key(k)) => st.input(Input::Key(k)).await,
                Some(TerminalEvent::Scan(s)) => {
                    st.input(Input::Scan(s.data.to_vec())).await;
                }
                Some(TerminalEvent::Disconnected(why)) => {
                    tracing::warn!("terminal unplugged ({why}): reopening it; the scanner still works");
                }
                Some(TerminalEvent::Reconnected) => tracing::info!("terminal back"),
                Some(_) => {}
                None => st.shell.ended(Device::Terminal),
            },
            ev = next(&mut scale_events) => match ev {
                Some(ev) => st.on_scale(ev).await,
                None => {
                    scale_events = None;
                    tracing::warn!("the scale's reader has ended: type carton weights");
                }
            },
            r = reports.recv() => match r {
                Some(r) => st.on_report(r).await,
                None => {
                    tracing::error!("printer thread stopped");
                    break;
                }
            },
            r = view_rx.changed() => {
                if r.is_err() { break; }
                let v = view_rx.borrow_and_update().clone();
                st.on_printer(v);
            }
            a = applied.recv() => match a {
                Ok(Applied::Cancelled { order_id, .. }) => st.input(Input::OrderCancelled(order_id)).await,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => break,
            },
        }
    }
    // The stop flag (set by `shell.stop`) ends the printer thread after the attempt it is
    // in, closing its connection; a job cut short by the exit stays queued in the store.
    let counted = st.packer.refusals().flush();
    st.apply(counted).await;
    st.jobs = None;
    st.shell.stop().await;
    if let Some(t) = scale_thread
        && !join_within(t, Duration::from_secs(1)).await
    {
        tracing::warn!("the scale's thread did not stop within 1 s");
    }
    let stop_wait = if st.queue.is_empty() {
        IDLE_PRINTER_STOP
    } else {
        stop_wait
    };
    let finished = join_within(printer_thread, stop_wait).await;
    if !finished && !st.queue.is_empty() {
        tracing::warn!("the printer did not finish its job within {stop_wait:?}");
    }
    // What the printer reported in its last attempt (taken, printed, faulted) is recorded
    // before the exit: a label the printer took must not be sent again after a restart.
    // The forwarding thread ends once the printer thread has dropped its sender; a thread
    // still running is not waited for again.
    loop {
        let report = if finished {
            tokio::time::timeout(Duration::from_millis(500), reports.recv())
                .await
                .ok()
                .flatten()
        } else {
            reports.try_recv().ok()
        };
        let Some(r) = report else { break };
        st.on_report(r).await;
    }
    Ok(())
}

/// Runs one workflow commit in its one store transaction (its outbox events inside it);
/// returns the print job it created, if any. `fault_kind` is the printer state of the
/// fault a `PrintFailed` reports. The demo's outbox copy test runs it too.
pub(crate) fn execute(
    db: &mut Db,
    operator: u32,
    fault_kind: &str,
    c: Commit,
) -> Result<Option<u64>, StoreError> {
    match c {
        Commit::CartonClosed {
            at,
            order_id,
            carton_no,
            sscc,
            weight_g,
            short_ship,
            order_complete,
            contents,
            label,
        } => {
            let items: Vec<CartonItem> = contents
                .into_iter()
                .map(|p| CartonItem {
                    order_line: p.order_line,
                    gtin: p.gtin,
                    qty: p.qty,
                    lot: p.lot,
                    serial: p.serial,
                    expiry: p.expiry,
                })
                .collect();
            let carton = CartonClose {
                order_id,
                carton_no,
                sscc,
                weight_g,
                short_ship,
                order_complete,
                label,
            };
            db.close_carton(at, operator, &carton, &items).map(Some)
        }
        Commit::ShortShipped {
            at,
            order_id,
            detail,
        } => {
            let kind = EventKind::Conflict {
                task_id: 0,
                detail: format!("order {order_id} shipped short: {detail}"),
            };
            db.append_event(at, operator, kind).map(|_| None)
        }
        Commit::LoggedIn {
            at,
            operator,
            badge,
        } => db.login(at, operator, &badge).map(|_| None),
        Commit::LoggedOut { at, operator } => db.logout(at, operator).map(|_| None),
        Commit::Reprint { at, sscc } => db.reprint(at, &sscc).map(Some),
        Commit::LabelPrinted { at, job_id, .. } => {
            db.print_done(at, operator, job_id).map(|_| None)
        }
        Commit::PrintFailed {
            at, job_id, fault, ..
        } => db
            .print_fault(at, operator, job_id, fault_kind, &fault)
            .map(|_| None),
    }
}

impl Station {
    /// Who the events are from: the logged-in packer (0 between logins, e.g. a label
    /// from before a restart printing while nobody is logged in).
    fn operator(&self) -> u32 {
        self.packer.operator().unwrap_or(0)
    }

    async fn input(&mut self, input: Input) {
        let effects = self.packer.handle(unix_now(), input);
        self.apply(effects).await;
    }

    async fn apply(&mut self, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            let answer = match effect {
                Effect::Show(s) => {
                    self.workflow_screen = Some(s.clone());
                    self.shell.display.show(s);
                    continue;
                }
                Effect::Beep(b) => {
                    self.shell.display.beep(b);
                    continue;
                }
                Effect::LookUpOrder(code) => {
                    let key = code.clone();
                    match self.shell.store.call(move |db| db.pack_order(&key)).await {
                        Ok(Ok(Some(order))) => Input::Order(Box::new(Order::from(&order))),
                        Ok(Ok(None)) => Input::OrderNotFound(code),
                        Ok(Err(e)) | Err(e) => {
                            tracing::error!("pack order {code:?}: {e}");
                            Input::OrderNotFound(code)
                        }
                    }
                }
                Effect::AllocateSscc => {
                    match self.shell.store.call(|db| db.next_sscc_serial()).await {
                        Ok(Ok(serial)) => Input::SsccSerial(serial),
                        Ok(Err(e)) | Err(e) => {
                            tracing::error!("SSCC serial: {e}");
                            self.shell
                                .display
                                .message(Level::Error, "Database error: call the supervisor");
                            self.shell.display.beep(Beep::Error);
                            continue;
                        }
                    }
                }
                Effect::Commit(c) => self.commit(c).await,
                Effect::ScanRefused(r) => {
                    self.shell.report_refusal(self.operator(), r).await;
                    continue;
                }
            };
            queue.extend(self.packer.handle(unix_now(), answer));
        }
    }

    /// Runs one commit in its store transaction and returns the workflow's answer.
    async fn commit(&mut self, c: Commit) -> Input {
        let operator = self.operator();
        let creates_job = matches!(c, Commit::CartonClosed { .. } | Commit::Reprint { .. });
        let kind = self.fault_kind.clone();
        let r = self
            .shell
            .store
            .call(move |db| execute(db, operator, &kind, c))
            .await;
        match r {
            Ok(Ok(job_id)) => {
                self.shell.sync.outbox_changed();
                if creates_job && let Err(e) = self.feed_printer().await {
                    tracing::error!("print queue: {e}");
                }
                Input::Committed { job_id }
            }
            Ok(Err(e)) | Err(e) => {
                tracing::warn!("pack commit failed: {e}");
                Input::CommitFailed(e.to_string())
            }
        }
    }

    /// Hands every pending job not yet handed over to the printer thread.
    async fn feed_printer(&mut self) -> Result<(), StoreError> {
        let pending = self.shell.store.call(|db| db.pending_prints()).await??;
        for job in pending {
            if self.queue.contains_key(&job.job_id) {
                continue;
            }
            self.queue.insert(job.job_id, job.sscc.clone());
            if let Some(tx) = &self.jobs
                && tx
                    .send(QueuedJob {
                        job: PrintJob {
                            job_id: job.job_id,
                            zpl: job.zpl,
                        },
                        sent: job.sent,
                    })
                    .is_err()
            {
                tracing::error!("printer thread gone: job {} stays queued", job.job_id);
            }
        }
        self.publish();
        Ok(())
    }

    async fn on_report(&mut self, report: JobReport) {
        let (job_id, fault) = match &report {
            JobReport::Sent { job_id } => {
                // Recorded so that a restart confirms the job instead of sending it again.
                let (job_id, at) = (*job_id, unix_now());
                match self
                    .shell
                    .store
                    .call(move |db| db.print_sent(at, job_id))
                    .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) | Err(e) => tracing::error!("print job {job_id}: {e}"),
                }
                return;
            }
            JobReport::Printed { job_id } => (*job_id, None),
            JobReport::Failed { job_id, fault } => {
                self.fault_kind = format!("{:?}", fault.state());
                (*job_id, Some(fault.to_string()))
            }
        };
        let effects = self.packer.handle(
            unix_now(),
            Input::PrintReport {
                job_id,
                fault: fault.clone(),
            },
        );
        if effects.is_empty() {
            // A job from before a restart: the packer does not know it; record it here.
            let at = unix_now();
            let operator = self.operator();
            let r = match fault.clone() {
                None => {
                    self.shell
                        .store
                        .call(move |db| db.print_done(at, operator, job_id))
                        .await
                }
                Some(f) => {
                    let kind = self.fault_kind.clone();
                    self.shell
                        .store
                        .call(move |db| db.print_fault(at, operator, job_id, &kind, &f))
                        .await
                }
            };
            match r {
                Ok(Ok(_)) => self.shell.sync.outbox_changed(),
                Ok(Err(e)) | Err(e) => tracing::error!("print job {job_id}: {e}"),
            }
            if let Some(f) = &fault {
                self.shell
                    .display
                    .message(Level::Error, &format!("Label NOT printed: {f}"));
                self.shell.display.beep(Beep::Error);
            }
        } else {
            self.apply(effects).await;
        }
        if fault.is_none() {
            self.queue.remove(&job_id);
            tracing::info!(job_id, "label printed");
        }
        self.publish();
    }

    fn on_printer(&mut self, v: PrinterView) {
        if v == self.printer {
            return;
        }
        match &v.fault {
            Some(f) => {
                tracing::warn!("printer: {f}");
                let text = format!("Printer: {f} ({} waiting)", self.queue.len());
                self.shell.display.message(Level::Error, &text);
                self.shell.display.beep(Beep::Error);
            }
            None => {
                tracing::info!("printer ready");
                if self.printer.fault.is_some() {
                    self.restore_screen();
                }
            }
        }
        self.printer = v;
        self.publish();
    }

    fn publish(&self) {
        self.shell.sync.report_devices(DeviceReport {
            printer: self.printer.state,
            print_queue: u32::try_from(self.queue.len()).unwrap_or(u32::MAX),
        });
    }

    async fn on_scanner(&mut self, ev: ScannerEvent) {
        match ev {
            ScannerEvent::Scan(raw) => {
                self.input(Input::Scan(raw)).await;
            }
            ScannerEvent::Rejected(why) => {
                tracing::warn!("scanner: {why}");
                self.shell
                    .display
                    .message(Level::Error, "Scan not read: try again");
                self.shell.display.beep(Beep::Error);
            }
            ScannerEvent::Disconnected(why) => {
                tracing::warn!("scanner unplugged: {why}");
                self.shell
                    .display
                    .message(Level::Error, &format!("Scanner unplugged: {why}"));
                self.shell.display.beep(Beep::Attention);
            }
            ScannerEvent::Reconnected => {
                tracing::info!("scanner back");
                self.restore_screen();
            }
        }
    }

    async fn on_scale(&mut self, ev: ScaleEvent) {
        match ev {
            ScaleEvent::Weight(g) => {
                tracing::info!(grams = g, "scale settled");
                self.input(Input::ScaleWeight(g)).await;
            }
            ScaleEvent::Disconnected(why) => {
                // Not a stop: the packer can type the weight.
                tracing::warn!("scale unplugged: {why}");
                self.input(Input::ScaleWeight(0)).await;
                self.shell
                    .display
                    .message(Level::Warning, "Scale unplugged: type the weight");
                self.shell.display.beep(Beep::Attention);
            }
            ScaleEvent::Reconnected => {
                tracing::info!("scale back");
                self.restore_screen();
            }
        }
    }

    /// Shows the workflow's screen again after a device warning.
    fn restore_screen(&mut self) {
        if let Some(s) = self.workflow_screen.clone() {
            self.shell.display.show(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use floorhand_protocol::oms::{Capture as WireCapture, Down, GtinPack, PackLine};

    use super::*;

    fn example() -> floorhand_protocol::oms::PackOrder {
        floorhand_protocol::examples::down()
            .into_iter()
            .find_map(|(_, env)| match env.body.body {
                Down::PackOrder(p) => Some(*p),
                _ => None,
            })
            .expect("the protocol's examples hold a PackOrder")
    }

    #[test]
    fn a_stored_pack_order_becomes_the_workflows_order_field_for_field() {
        let mut o = example();
        o.lines.push(PackLine {
            order_line: 9,
            gtins: vec![GtinPack {
                gtin: "00012345678905".into(),
                pack_qty: 12,
            }],
            sku: "SKU-9".into(),
            description: "a case".into(),
            qty: 24,
            capture: WireCapture {
                lot: true,
                serial: false,
                expiry: true,
            },
            unit_weight_g: 350,
        });
        let order = Order::from(&PackOrderRow::from(&o));
        assert_eq!(order.order_id, o.order_id);
        assert_eq!(
            (&order.ship_from, &order.ship_to),
            (&o.ship_from, &o.ship_to)
        );
        assert_eq!(
            (&order.carrier, &order.service, &order.tracking),
            (&o.carrier, &o.service, &o.tracking)
        );
        assert_eq!(order.lines.len(), o.lines.len());
        let last = order.lines.last().unwrap();
        assert_eq!(
            (
                last.order_line,
                last.sku.as_str(),
                last.qty,
                last.unit_weight_g
            ),
            (9, "SKU-9", 24, 350)
        );
        assert_eq!(
            last.gtins,
            vec![LineGtin {
                gtin: "00012345678905".into(),
                pack_qty: 12
            }]
        );
        assert_eq!(
            last.capture,
            Capture {
                lot: true,
                serial: false,
                expiry: true
            }
        );
    }
}
