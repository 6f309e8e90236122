//! The demo's pack station: for each pack order the OMS sent, one carton is closed, its
//! SSCC label rendered, queued in the store's print queue and printed on the virtual ZPL
//! printer over TCP (with `~HS` before and after), and `CartonClosed` / `LabelPrinted`
//! go to the OMS through the outbox.
//!
//! Seam: the pack workflow (`pack::Packer`, item verification by scan) is driven by
//! `floorhand run` for `role = "pack"` (`station::pack`); this demo station does not run
//! it yet and closes each order's carton as packed complete.

use std::time::{Duration, Instant};

use floorhand_protocol::oms::{EventKind, PackOrder};

use super::{DemoError, Ledger, Progress};
use crate::devices::printer::{PrintJob, Printer, PrinterConfig, Transport};
use crate::label::{self, Dpi, LabelData, Sscc};
use crate::store::Store;
use crate::sync::agent::SyncHandle;

const PACKER: u32 = 21;

/// The pack station.
pub struct PackStation {
    pub(super) store: Store,
    pub(super) sync: SyncHandle,
    pub(super) printer_addr: std::net::SocketAddr,
    pub(super) ledger: Ledger,
    pub(super) progress: Progress,
}

fn agent_err(e: impl std::fmt::Display) -> DemoError {
    DemoError::Agent(format!("pack store: {e}"))
}

impl PackStation {
    async fn record(&self, kind: EventKind) -> Result<u64, DemoError> {
        let now = super::now_s();
        let k = kind.clone();
        let seq = self
            .store
            .call(move |db| db.append_event(now, PACKER, k))
            .await
            .map_err(agent_err)?
            .map_err(agent_err)?;
        self.ledger
            .record(&self.progress.device_pack, seq, PACKER, kind);
        self.sync.outbox_changed();
        Ok(seq)
    }

    /// Ships every order in `orders` that is not `cancelled`, one carton each, waiting
    /// for each order to reach the store. Returns when all are shipped or at `deadline`.
    pub async fn run_shift(
        &mut self,
        orders: &[PackOrder],
        cancelled: &str,
        pace: Duration,
        deadline: Instant,
    ) -> Result<(), DemoError> {
        let mut printer = Printer::new(PrinterConfig {
            transport: Transport::Tcp(self.printer_addr.to_string()),
            timeout: Duration::from_secs(2),
            retry_every: Duration::from_millis(200),
            poll_every: Duration::from_secs(5),
        });
        let template = label::builtin(Dpi::D203);
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
            let serial = self
                .store
                .call(|db| db.next_sscc_serial())
                .await
                .map_err(agent_err)?
                .map_err(agent_err)?;
            let sscc = Sscc::build(0, "9506000", serial)
                .map_err(|e| DemoError::Agent(format!("sscc: {e}")))?;
            let weight_g = 250
                + stored
                    .lines
                    .iter()
                    .map(|l| l.unit_weight_g * l.qty)
                    .sum::<u32>();
            let zpl = label::render(
                &template,
                &LabelData {
                    order: &stored,
                    carton_no: 1,
                    carton_count: Some(1),
                    weight_g,
                    sscc: &sscc,
                },
            )
            .map_err(|e| DemoError::Agent(format!("label for {id}: {e}")))?;
            self.record(EventKind::CartonClosed {
                order_id: id.clone(),
                carton_no: 1,
                sscc: sscc.as_str().to_string(),
                weight_g,
                short_ship: None,
            })
            .await?;
            let (now, s, z) = (super::now_s(), sscc.as_str().to_string(), zpl.clone());
            let job_id = self
                .store
                .call(move |db| db.enqueue_print(now, &s, &z))
                .await
                .map_err(agent_err)?
                .map_err(agent_err)?;
            let q = id.clone();
            let _ = self
                .store
                .call(move |db| db.close_pack_order(super::now_s(), &q))
                .await;
            self.progress.count(|c| c.cartons += 1);
            let job = PrintJob { job_id, zpl };
            let printed = tokio::task::block_in_place(|| printer.print(&job));
            match printed {
                Ok(()) => {
                    let now = super::now_s();
                    let _ = self
                        .store
                        .call(move |db| db.mark_printed(job_id, now))
                        .await;
                    self.record(EventKind::LabelPrinted {
                        sscc: sscc.as_str().to_string(),
                        job_id,
                    })
                    .await?;
                    self.progress.count(|c| c.labels_printed += 1);
                }
                Err(fault) => {
                    return Err(DemoError::Device(format!("label printer: {fault}")));
                }
            }
        }
        Ok(())
    }
}
