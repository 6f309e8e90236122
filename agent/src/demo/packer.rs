//! The demo's packer: a scripted operator at a real pack station (`floorhand run`'s
//! station runtime, `role = "pack"`, in the demo's process). They log in with their badge
//! and, for each pack order the OMS sent, scan the order, scan every item, and close the
//! carton on the terminal with its weight typed; the station commits the carton and its
//! printer thread prints the label on the virtual ZPL printer (TCP, `~HS` before and
//! after) and records it. The packer waits for each label before the next order.

use std::time::{Duration, Instant};

use floorhand_protocol::link::Key;
use floorhand_protocol::oms::{EventKind, PackOrder};

use super::DemoError;
use super::commits::Commits;
use super::vdev::{TerminalLine, VirtualScanner};
use crate::pack::keys;

/// The packer's badge: the station's badge prefix and the operator number.
const BADGE: &str = "OP8";
/// The carton's own weight, added to its items' (the station's `tare_g`).
pub const TARE_G: u32 = 250;
/// How long the station may take to answer a scan or a key.
const ANSWER: Duration = Duration::from_secs(5);
/// How long a label may take to print.
const LABEL_WAIT: Duration = Duration::from_secs(10);

/// The operator at the pack station.
pub struct PackOperator {
    pub(super) scanner: VirtualScanner,
    pub(super) terminal: TerminalLine,
    /// What the station committed: each carton closed and each label printed.
    pub(super) commits: Commits,
}

impl PackOperator {
    /// Scans `data`; an error screen in answer is a script bug: stop there.
    async fn scan(&mut self, data: &str) -> Result<(), DemoError> {
        let mark = self.terminal.mark();
        self.scanner.scan(data.as_bytes())?;
        if !self.terminal.settle(mark, ANSWER).await {
            return Err(DemoError::Agent(format!(
                "the pack station did not answer the scan of {data} within {ANSWER:?}"
            )));
        }
        self.refused(mark, data)
    }

    /// Presses `key`; an error screen in answer is a script bug: stop there.
    async fn key(&mut self, key: Key) -> Result<(), DemoError> {
        let mark = self.terminal.mark();
        self.terminal.press(key)?;
        self.terminal.settle(mark, ANSWER).await;
        self.refused(mark, &format!("{key:?}"))
    }

    fn refused(&self, mark: usize, what: &str) -> Result<(), DemoError> {
        match self.terminal.error_since(mark) {
            Some(text) => Err(DemoError::Agent(format!(
                "pack station refused {what}: {text}"
            ))),
            None => Ok(()),
        }
    }

    /// Waits until the station has committed an event `wanted` picks, or `within` passed.
    async fn wait_for(
        &mut self,
        within: Duration,
        wanted: impl Fn(&EventKind) -> bool,
    ) -> Result<bool, DemoError> {
        let deadline = Instant::now() + within;
        loop {
            self.commits.read().await?;
            if self.commits.count(&wanted) > 0 {
                return Ok(true);
            }
            if Instant::now() > deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Packs every order in `orders` that is not `cancelled`, one carton each, waiting
    /// for each order to reach the station and each label to print. Returns when all are
    /// shipped or at `deadline`.
    pub async fn run_shift(
        &mut self,
        orders: &[PackOrder],
        cancelled: &str,
        pace: Duration,
        deadline: Instant,
    ) -> Result<(), DemoError> {
        self.scan(BADGE).await?;
        for order in orders.iter().filter(|o| o.order_id != cancelled) {
            let id = order.order_id.clone();
            // The order is in the station's store once its apply was acknowledged.
            let left = deadline.saturating_duration_since(Instant::now());
            let here = self.order_stored(&id, left).await?;
            if !here {
                return Err(DemoError::Agent(format!(
                    "pack order {id} never reached the pack station"
                )));
            }
            tokio::time::sleep(pace).await;
            self.scan(&id).await?;
            for line in &order.lines {
                let Some(g) = line.gtins.first() else {
                    continue;
                };
                for _ in 0..line.qty / g.pack_qty.max(1) {
                    self.scan(&g.gtin).await?;
                }
            }
            // Close the carton: F1, then the weight the scale shows, typed, and Enter.
            let weight_g = TARE_G
                + order
                    .lines
                    .iter()
                    .map(|l| l.unit_weight_g * l.qty)
                    .sum::<u32>();
            let mut keys = vec![Key::F(keys::CLOSE)];
            keys.extend(weight_g.to_string().bytes().map(|d| Key::Digit(d - b'0')));
            keys.push(Key::Enter);
            for k in keys {
                self.key(k).await?;
            }
            let closed = |k: &EventKind| matches!(k, EventKind::CartonClosed { order_id, .. } if *order_id == id);
            if !self.wait_for(ANSWER, closed).await? {
                return Err(DemoError::Agent(format!(
                    "carton of {id} did not close: {:?}",
                    self.terminal.prompt()
                )));
            }
            let sscc = self
                .commits
                .events()
                .iter()
                .rev()
                .find_map(|(_, _, k)| match k {
                    EventKind::CartonClosed { order_id, sscc, .. } if *order_id == id => {
                        Some(sscc.clone())
                    }
                    _ => None,
                });
            let printed = |k: &EventKind| matches!(k, EventKind::LabelPrinted { sscc: s, .. } if Some(s) == sscc.as_ref());
            if !self.wait_for(LABEL_WAIT, printed).await? {
                return Err(DemoError::Device(format!(
                    "the label of {id}'s carton was not printed within {LABEL_WAIT:?}"
                )));
            }
        }
        Ok(())
    }

    /// Whether pack order `id` reaches the station's store within `within`.
    async fn order_stored(&self, id: &str, within: Duration) -> Result<bool, DemoError> {
        let deadline = Instant::now() + within;
        loop {
            let q = id.to_string();
            let got = self
                .commits
                .store()
                .call(move |db| db.pack_order(&q).map(|o| o.is_some()))
                .await
                .map_err(|e| DemoError::Agent(format!("pack store: {e}")))?
                .map_err(|e| DemoError::Agent(format!("pack store: {e}")))?;
            if got {
                return Ok(true);
            }
            if Instant::now() > deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
