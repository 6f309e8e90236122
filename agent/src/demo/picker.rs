//! The demo's picker station: the pick workflow ([`Picker`]) wired to the agent's store,
//! a virtual scanner on a pty and the terminal, with a scripted operator who makes the
//! usual mistakes (a bounced double scan, a wrong item, a malformed GS1 code, a short
//! pick).
//!
//! Each durable command goes through `station::pick::execute`, the hook `floorhand run`
//! uses for `role = "picker"` (same store calls, one transaction each). The demo runs the
//! workflow in-process rather than `station::pick::run`, because its scripted operator
//! reads the workflow's screen to decide the next scan; driving `floorhand run` children
//! instead (the operator then reading the terminal link) is the next step.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use floorhand_protocol::link::{Beep, Key, Level, ScanTarget, Screen};
use floorhand_protocol::oms::Wave;

use super::vdev::VirtualScanner;
use super::{CommitLog, DemoError, Progress};
use crate::devices::terminal::TerminalHandle;
use crate::pick::{Command, Effect, Input, PickTask, Picker, Refusal};
use crate::station::pick::{audit, execute};
use crate::station::record_refusal;
use crate::store::Store;
use crate::sync::agent::SyncHandle;

/// The operator's badge number.
const OPERATOR: u32 = 7;
/// How long one scan may take through the pty.
const SCAN_WAIT: Duration = Duration::from_secs(5);

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

/// The picker's station.
pub struct PickStation {
    pub(super) picker: Picker,
    /// The badge prefix of the picker's config (`OP` in `OP7`).
    pub(super) badge_prefix: String,
    pub(super) store: Store,
    pub(super) sync: SyncHandle,
    pub(super) scanner: VirtualScanner,
    pub(super) terminal: Option<TerminalHandle>,
    pub(super) started: Instant,
    pub(super) ledger: CommitLog,
    pub(super) progress: Progress,
}

impl PickStation {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Feeds one input and runs every effect, answering persisted commands through the
    /// store, until the workflow asks for nothing more.
    async fn feed(&mut self, input: Input) -> Result<(), DemoError> {
        let mut queue = std::collections::VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            let now = self.now_ms();
            for effect in self.picker.handle(now, input) {
                match effect {
                    Effect::Show(s) => {
                        if let Some(t) = &self.terminal {
                            let _ = t.show(s);
                        }
                    }
                    Effect::Beep(b) => {
                        if b == Beep::Error {
                            self.progress.count(|c| c.exceptions += 1);
                        }
                        if let Some(t) = &self.terminal {
                            let _ = t.beep(b);
                        }
                    }
                    Effect::Audit(a) => {
                        if a.outcome.starts_with("ignored: same scan again") {
                            self.progress.count(|c| c.bounces_ignored += 1);
                        }
                        audit(&self.store, a).await;
                    }
                    Effect::Persist { id, command } => {
                        queue.push_back(self.persist(id, command).await?);
                    }
                    Effect::ScanRefused(r) => self.report_refusal(r).await?,
                }
            }
        }
        Ok(())
    }

    /// Runs one command through `station::pick::execute`, the runtime's own hook (one
    /// store transaction), and records the events it wrote for the exactly-once check.
    async fn persist(&mut self, id: u64, command: Command) -> Result<Input, DemoError> {
        let now = crate::clock::unix_now();
        let operator = self.picker.operator().unwrap_or(0);
        let prefix = self.badge_prefix.clone();
        let c = command.clone();
        let result = self
            .store
            .call(move |db| super::with_events(db, |db| execute(db, now, operator, &prefix, &c)))
            .await;
        match result {
            Ok(Ok((_seq, events))) => {
                self.sync.outbox_changed();
                self.ledger.record(&self.progress.device_picker, events);
                match &command {
                    Command::ConfirmPick { .. } => self.progress.count(|c| c.tasks_picked += 1),
                    Command::ShortPick { .. } => self.progress.count(|c| c.tasks_short += 1),
                    _ => {}
                }
                Ok(Input::Committed { id })
            }
            Ok(Err(e)) => Ok(Input::Failed {
                id,
                reason: e.to_string(),
            }),
            Err(e) => Err(DemoError::Agent(format!("picker store: {e}"))),
        }
    }

    /// Writes refused scans through `station::record_refusal`, the runtime's own hook,
    /// and records the event for the exactly-once check.
    async fn report_refusal(&mut self, r: Refusal) -> Result<(), DemoError> {
        let now = crate::clock::unix_now();
        let operator = self.picker.operator().unwrap_or(0);
        let result = self
            .store
            .call(move |db| super::with_events(db, |db| record_refusal(db, now, operator, r)))
            .await;
        match result {
            Ok(Ok((_, events))) => {
                self.sync.outbox_changed();
                self.ledger.record(&self.progress.device_picker, events);
                Ok(())
            }
            Ok(Err(e)) | Err(e) => Err(DemoError::Agent(format!("picker store: {e}"))),
        }
    }

    async fn reload_tasks(&mut self) -> Result<usize, DemoError> {
        let rows = self
            .store
            .call(|db| db.open_tasks())
            .await
            .map_err(|e| DemoError::Agent(format!("picker store: {e}")))?
            .map_err(|e| DemoError::Agent(format!("picker store: {e}")))?;
        let tasks: Vec<PickTask> = rows.iter().map(crate::station::pick::pick_task).collect();
        let n = tasks.len();
        self.feed(Input::Tasks(tasks)).await?;
        Ok(n)
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

    async fn scan(&mut self, data: &[u8]) -> Result<(), DemoError> {
        self.scanner.scan(data)?;
        let raw = self.scanner.next(SCAN_WAIT).await?;
        self.feed(Input::scan(&raw)).await
    }

    /// Works through every wave in `waves` until each task is picked, short or withdrawn
    /// (`cancelled` tasks never come back), or `deadline` passes.
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
        let mut applied = self.sync.applied();
        let mut open = self.reload_tasks().await?;
        let badge = format!("{}{OPERATOR}", self.badge_prefix);
        self.scan(badge.as_bytes()).await?;
        let mut nth = 0usize;
        let mut at: Option<(String, Option<Mistake>)> = None;
        loop {
            if Instant::now() > deadline {
                return Err(DemoError::Agent(
                    "the picker did not finish the shift in time".into(),
                ));
            }
            // New waves, cancellations: the store changed under the workflow.
            let mut changed = false;
            while applied.try_recv().is_ok() {
                changed = true;
            }
            if changed {
                open = self.reload_tasks().await?;
            }
            tokio::time::sleep(pace).await;
            let screen = self.picker.screen();
            tracing::debug!(?screen, ?at, "picker");
            match screen {
                Screen::Pick(p) => {
                    let loc = p.location.to_string();
                    let mistake = mistake_for(nth);
                    nth += 1;
                    at = Some((loc.clone(), mistake));
                    self.scan(loc.as_bytes()).await?;
                }
                Screen::Scan {
                    target: ScanTarget::Item,
                    hint,
                } => {
                    let Some((loc, mistake)) = at.clone() else {
                        continue;
                    };
                    let Some(item) = shelf.get(&loc).cloned() else {
                        continue;
                    };
                    // The workflow's count, as the picker reads it: "scanned/asked item".
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
                            // Both copies go through the pty; the workflow drops the second.
                            let data = item.gtin.as_bytes();
                            self.scanner.scan(data)?;
                            self.scanner.scan(data)?;
                            for _ in 0..2 {
                                let raw = self.scanner.next(SCAN_WAIT).await?;
                                self.feed(Input::scan(&raw)).await?;
                            }
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
                            self.feed(Input::Key(Key::F(1))).await?;
                            self.feed(Input::Key(Key::Enter)).await?;
                        }
                        None => self.feed(Input::Key(Key::Enter)).await?,
                    }
                }
                Screen::Message {
                    level: Level::Info, ..
                }
                | Screen::Reasons { .. } => self.feed(Input::Key(Key::Enter)).await?,
                _ => {
                    // Nothing to pick on screen: done when every task of the shift is
                    // final in the store; otherwise look for work again (a wave may have
                    // arrived before this station subscribed to the store's changes).
                    if open == 0 && self.all_final(&ids).await? {
                        // Refused scans counted within their second are reported too.
                        for effect in self.picker.refusals().flush::<Effect>() {
                            if let Effect::ScanRefused(r) = effect {
                                self.report_refusal(r).await?;
                            }
                        }
                        return Ok(());
                    }
                    open = self.reload_tasks().await?;
                }
            }
        }
    }
}
