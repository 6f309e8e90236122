//! The demo's picker: a scripted operator at a real handheld station (`floorhand run`'s
//! station runtime, `role = "picker"`, in the demo's process). They scan through the
//! station's scanner pty, read each screen off its terminal line and press its keys
//! ([`TerminalLine`]), and make the usual mistakes (a bounced double scan, a wrong item,
//! a malformed GS1 code, a short pick). The station decides everything: what is asked,
//! what is refused, what is committed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use floorhand_protocol::link::{Key, Level, ScanTarget, Screen};
use floorhand_protocol::oms::Wave;

use super::DemoError;
use super::vdev::{TerminalLine, VirtualScanner};
use crate::store::Store;

/// The operator's badge: the station's badge prefix and the operator number.
const BADGE: &str = "OP7";
/// How long the station may take to answer a scan or a key.
const ANSWER: Duration = Duration::from_secs(5);
/// Time between two scans of the same item: more than the workflow's bounce window.
const UNIT_GAP: Duration = Duration::from_millis(350);

/// `(scanned, asked)` from an item prompt's hint such as `1/3 Hex bolt`.
fn counted(hint: &str) -> Option<(u32, u32)> {
    let (frac, _) = hint.split_once(' ')?;
    let (a, b) = frac.split_once('/')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Which mistake the operator makes on the n-th task they pick (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mistake {
    /// The scanner sends the first item scan twice within a few ms.
    Bounce,
    /// A neighbouring item is scanned first.
    WrongItem,
    /// A truncated GS1-128 code is scanned first.
    Malformed,
    /// One unit is missing: short pick, reason "location empty".
    Short,
}

fn mistake_for(nth: usize) -> Option<Mistake> {
    match nth {
        0 => Some(Mistake::Bounce),
        1 => Some(Mistake::WrongItem),
        3 => Some(Mistake::Malformed),
        4 => Some(Mistake::Short),
        _ => None,
    }
}

/// What the operator knows from the shelf labels: each location's item.
#[derive(Debug, Clone)]
struct Shelf {
    gtin: String,
    qty: u32,
}

/// The operator at the handheld.
pub struct PickOperator {
    pub(super) scanner: VirtualScanner,
    pub(super) terminal: TerminalLine,
    /// The station's store, read to know when every task of the shift is final.
    pub(super) store: Store,
}

impl PickOperator {
    /// Scans `data` and waits for the station's answer.
    async fn scan(&mut self, data: &[u8]) -> Result<(), DemoError> {
        let mark = self.terminal.mark();
        self.scanner.scan(data)?;
        self.answered(mark, "a scan").await
    }

    /// Presses `key` and waits for the station's answer.
    async fn key(&mut self, key: Key) -> Result<(), DemoError> {
        let mark = self.terminal.mark();
        self.terminal.press(key)?;
        self.answered(mark, "a key").await
    }

    async fn answered(&self, mark: usize, what: &str) -> Result<(), DemoError> {
        if self.terminal.settle(mark, ANSWER).await {
            Ok(())
        } else {
            Err(DemoError::Agent(format!(
                "the picker's station did not answer {what} within {ANSWER:?}"
            )))
        }
    }

    async fn all_final(&self, ids: &[u64]) -> Result<bool, DemoError> {
        let ids = ids.to_vec();
        self.store
            .call(move |db| {
                ids.iter().all(|id| {
                    db.task(*id)
                        .ok()
                        .flatten()
                        .is_some_and(|t| t.state.is_final())
                })
            })
            .await
            .map_err(|e| DemoError::Agent(format!("picker store: {e}")))
    }

    /// Logs in and works through every wave in `waves` until each task is picked, short
    /// or withdrawn (`cancelled` tasks never come back), or `deadline` passes.
    pub async fn run_shift(
        &mut self,
        waves: &[Wave],
        pace: Duration,
        deadline: Instant,
    ) -> Result<(), DemoError> {
        let shelf: HashMap<String, Shelf> = waves
            .iter()
            .flat_map(|w| &w.tasks)
            .map(|t| {
                (
                    t.location.clone(),
                    Shelf {
                        gtin: t.gtins.first().map(|g| g.gtin.clone()).unwrap_or_default(),
                        qty: t.qty,
                    },
                )
            })
            .collect();
        let ids: Vec<u64> = waves
            .iter()
            .flat_map(|w| w.tasks.iter().map(|t| t.task_id))
            .collect();
        let mut nth = 0usize;
        let mut at: Option<(String, Option<Mistake>)> = None;
        loop {
            if Instant::now() > deadline {
                return Err(DemoError::Agent(
                    "the picker did not finish the shift in time".into(),
                ));
            }
            tokio::time::sleep(pace).await;
            // What the station asks; a refusal's message stands over the prompt until the
            // next scan, as on a real terminal.
            let screen = self.terminal.prompt();
            tracing::debug!(?screen, ?at, "picker");
            match screen {
                Some(Screen::Scan {
                    target: ScanTarget::Badge,
                    ..
                }) => self.scan(BADGE.as_bytes()).await?,
                Some(Screen::Pick(p)) => {
                    let loc = p.location.to_string();
                    let mistake = mistake_for(nth);
                    nth += 1;
                    at = Some((loc.clone(), mistake));
                    self.scan(loc.as_bytes()).await?;
                }
                Some(Screen::Scan {
                    target: ScanTarget::Item,
                    hint,
                }) => {
                    let Some((loc, mistake)) = at.clone() else {
                        continue;
                    };
                    let Some(item) = shelf.get(&loc).cloned() else {
                        continue;
                    };
                    // The station's count, as the picker reads it: "scanned/asked item".
                    let (done, asked) = counted(&hint).unwrap_or((0, item.qty));
                    let target = if mistake == Some(Mistake::Short) {
                        asked.saturating_sub(1)
                    } else {
                        asked
                    };
                    match mistake {
                        Some(Mistake::WrongItem) => {
                            at = Some((loc, None));
                            self.scan(b"09506000134352").await?;
                        }
                        Some(Mistake::Malformed) => {
                            at = Some((loc, None));
                            self.scan(b"]C1010950600013").await?;
                        }
                        Some(Mistake::Bounce) => {
                            at = Some((loc, None));
                            // Both copies go through the pty at once; the station counts
                            // the first and drops the second without a word.
                            let mark = self.terminal.mark();
                            let data = item.gtin.as_bytes();
                            self.scanner.scan(data)?;
                            self.scanner.scan(data)?;
                            self.answered(mark, "a scan").await?;
                        }
                        _ if done < target => {
                            if done > 0 {
                                // A person takes longer than the bounce window per unit.
                                tokio::time::sleep(UNIT_GAP).await;
                            }
                            self.scan(item.gtin.as_bytes()).await?;
                        }
                        Some(Mistake::Short) => {
                            at = None;
                            self.key(Key::F(1)).await?;
                            self.key(Key::Enter).await?;
                        }
                        None => self.key(Key::Enter).await?,
                    }
                }
                Some(Screen::Message {
                    level: Level::Info,
                    text,
                }) if !text.starts_with("No tasks") => self.key(Key::Enter).await?,
                Some(Screen::Reasons { .. }) => self.key(Key::Enter).await?,
                _ => {
                    // Nothing to pick on screen: done when every task of the shift is
                    // final in the store; otherwise the station shows the next task
                    // once the wave it is in has arrived.
                    if self.all_final(&ids).await? {
                        return Ok(());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}
