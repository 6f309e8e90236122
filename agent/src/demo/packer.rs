//! The demo's pack station: the pack workflow ([`Packer`]) wired to the agent's store, a
//! virtual scanner on a pty and the virtual ZPL printer, with a scripted packer who, for
//! each pack order the OMS sent, scans the order, scans every item, types the carton's
//! weight and closes it; the label prints over TCP (with `~HS` before and after).
//!
//! Every commit goes through `station::pack::execute`, the hook `floorhand run` uses for
//! `role = "pack"`: the closed carton, its `CartonClosed` and `PackVerified` events and
//! its print job in one transaction (`Db::close_carton`), `LabelPrinted` with the job's
//! end in another (`Db::print_done`). Unlike `station::pack::run`, the label is printed
//! here, in line, rather than by a printer thread reading the queue.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use floorhand_protocol::link::{Key, Level, Screen};
use floorhand_protocol::oms::PackOrder;

use super::vdev::VirtualScanner;
use super::{CommitLog, DemoError, Progress};
use crate::devices::printer::{PrintJob, Printer, PrinterConfig, Transport};
use crate::label::{self, Dpi};
use crate::pack::{Commit, Effect, Input, Order, PackConfig, Packer, keys};
use crate::station::pack::execute;
use crate::station::record_refusal;
use crate::store::Store;
use crate::sync::agent::SyncHandle;

/// As `station::pack`: the pack station has no operator login, its events carry 0.
const OPERATOR: u32 = 0;
/// The carton's own weight, added to its items'.
const TARE_G: u32 = 250;
/// How long one scan may take through the pty.
const SCAN_WAIT: Duration = Duration::from_secs(5);

/// The pack station.
pub struct PackStation {
    pub(super) store: Store,
    pub(super) sync: SyncHandle,
    pub(super) scanner: VirtualScanner,
    pub(super) printer_addr: String,
    pub(super) ledger: CommitLog,
    pub(super) progress: Progress,
}

fn agent_err(e: impl std::fmt::Display) -> DemoError {
    DemoError::Agent(format!("pack store: {e}"))
}

/// What the workflow asked for that the station still has to carry out.
#[derive(Default)]
struct Outcome {
    /// The last screen shown.
    screen: Option<Screen>,
    /// Labels committed and not yet printed: job id and ZPL.
    to_print: VecDeque<(u64, Vec<u8>)>,
}

impl PackStation {
    /// Feeds `input` and carries out every effect, answering lookups and commits through
    /// the store, until the workflow asks for nothing more.
    async fn feed(
        &mut self,
        packer: &mut Packer,
        input: Input,
        out: &mut Outcome,
    ) -> Result<(), DemoError> {
        let mut queue: VecDeque<Effect> = packer.handle(crate::clock::unix_now(), input).into();
        while let Some(effect) = queue.pop_front() {
            let answer = match effect {
                Effect::Show(s) => {
                    out.screen = Some(s);
                    continue;
                }
                Effect::Beep(_) => continue,
                Effect::LookUpOrder(code) => {
                    let key = code.clone();
                    match self
                        .store
                        .call(move |db| db.pack_order(&key))
                        .await
                        .map_err(agent_err)?
                        .map_err(agent_err)?
                    {
                        Some(order) => Input::Order(Box::new(Order::from(&order))),
                        None => Input::OrderNotFound(code),
                    }
                }
                Effect::AllocateSscc => Input::SsccSerial(
                    self.store
                        .call(|db| db.next_sscc_serial())
                        .await
                        .map_err(agent_err)?
                        .map_err(agent_err)?,
                ),
                Effect::Commit(c) => {
                    let label = match &c {
                        Commit::CartonClosed { label, .. } => Some(label.clone()),
                        _ => None,
                    };
                    let r = self
                        .store
                        .call(move |db| super::with_events(db, |db| execute(db, OPERATOR, "", c)))
                        .await
                        .map_err(agent_err)?;
                    match r {
                        Ok((job_id, events)) => {
                            self.sync.outbox_changed();
                            self.ledger.record(&self.progress.device_pack, events);
                            if let (Some(id), Some(zpl)) = (job_id, label) {
                                out.to_print.push_back((id, zpl));
                                self.progress.count(|c| c.cartons += 1);
                            }
                            Input::Committed { job_id }
                        }
                        Err(e) => Input::CommitFailed(e.to_string()),
                    }
                }
                Effect::ScanRefused(r) => {
                    let now = crate::clock::unix_now();
                    let (_, events) = self
                        .store
                        .call(move |db| {
                            super::with_events(db, |db| record_refusal(db, now, OPERATOR, r))
                        })
                        .await
                        .map_err(agent_err)?
                        .map_err(agent_err)?;
                    self.sync.outbox_changed();
                    self.ledger.record(&self.progress.device_pack, events);
                    continue;
                }
            };
            queue.extend(packer.handle(crate::clock::unix_now(), answer));
        }
        Ok(())
    }

    /// Scans `data` through the pty and feeds what the agent's scanner reader delivered.
    async fn scan(
        &mut self,
        packer: &mut Packer,
        data: &str,
        out: &mut Outcome,
    ) -> Result<(), DemoError> {
        self.scanner.scan(data.as_bytes())?;
        let raw = self.scanner.next(SCAN_WAIT).await?;
        self.feed(packer, Input::Scan(raw), out).await?;
        refused(out, data)
    }

    /// Packs every order in `orders` that is not `cancelled`, one carton each, waiting
    /// for each order to reach the store. Returns when all are shipped or at `deadline`.
    pub async fn run_shift(
        &mut self,
        orders: &[PackOrder],
        cancelled: &str,
        pace: Duration,
        deadline: Instant,
    ) -> Result<(), DemoError> {
        let mut printer = Printer::new(PrinterConfig {
            transport: Transport::Tcp(self.printer_addr.clone()),
            timeout: Duration::from_secs(2),
            retry_every: Duration::from_millis(200),
            poll_every: Duration::from_secs(5),
        });
        let mut packer = Packer::new(PackConfig {
            company_prefix: "9506000".into(),
            extension: 0,
            tare_g: TARE_G,
            tolerance_pct: 5,
            tolerance_min_g: 20,
            template: label::builtin(Dpi::D203),
        });
        let mut out = Outcome::default();
        for order in orders.iter().filter(|o| o.order_id != cancelled) {
            let id = order.order_id.clone();
            let stored = loop {
                let q = id.clone();
                let got = self
                    .store
                    .call(move |db| db.pack_order(&q))
                    .await
                    .map_err(agent_err)?
                    .map_err(agent_err)?;
                if let Some(o) = got {
                    break o;
                }
                if Instant::now() > deadline {
                    return Err(DemoError::Agent(format!(
                        "pack order {id} never reached the pack station"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            tokio::time::sleep(pace).await;
            self.scan(&mut packer, &id, &mut out).await?;
            for line in &stored.lines {
                let Some(g) = line.gtins.first() else {
                    continue;
                };
                for _ in 0..line.qty / g.pack_qty.max(1) {
                    self.scan(&mut packer, &g.gtin, &mut out).await?;
                }
            }
            // Close the carton: F1, then the weight the scale shows, typed, and Enter.
            let weight_g = TARE_G
                + stored
                    .lines
                    .iter()
                    .map(|l| l.unit_weight_g * l.qty)
                    .sum::<u32>();
            let mut keys = vec![Key::F(keys::CLOSE)];
            keys.extend(weight_g.to_string().bytes().map(|d| Key::Digit(d - b'0')));
            keys.push(Key::Enter);
            for k in keys {
                self.feed(&mut packer, Input::Key(k), &mut out).await?;
                refused(&out, &format!("{k:?}"))?;
            }
            if out.to_print.is_empty() {
                return Err(DemoError::Agent(format!(
                    "carton of {id} did not close: {:?}",
                    out.screen
                )));
            }
            while let Some((job_id, zpl)) = out.to_print.pop_front() {
                let job = PrintJob { job_id, zpl };
                let fault = tokio::task::block_in_place(|| printer.print(&job))
                    .err()
                    .map(|f| f.to_string());
                if let Some(f) = &fault {
                    return Err(DemoError::Device(format!("label printer: {f}")));
                }
                let report = Input::PrintReport { job_id, fault };
                self.feed(&mut packer, report, &mut out).await?;
                self.progress.count(|c| c.labels_printed += 1);
            }
        }
        Ok(())
    }
}

/// An error screen after the scripted packer's step `what` is a script bug: stop there.
fn refused(out: &Outcome, what: &str) -> Result<(), DemoError> {
    match &out.screen {
        Some(Screen::Message {
            level: Level::Error,
            text,
        }) => Err(DemoError::Agent(format!(
            "pack station refused {what}: {text}"
        ))),
        _ => Ok(()),
    }
}
