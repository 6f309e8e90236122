//! The handheld: one task owns the [`Picker`] and feeds it scans (scanner thread and
//! terminal), keys, the pick path as the store has it, and the store's answers to its
//! durable commands.
//!
//! Offline banner: while the sync link is down (for longer than [`OFFLINE_GRACE_S`], so a
//! reconnect does not flicker), idle screens (badge login, no tasks, wave done) are
//! replaced by `Screen::Offline { backlog, since_s }`, refreshed every
//! [`BANNER_REFRESH_S`] (an offline device stays quiet: one store read and one screen
//! then, not every second). Work
//! screens are never covered: picking goes on offline exactly as online, and the next
//! idle screen shows the banner. When the link is back, the workflow's screen returns.
//!
//! An unplugged scanner replaces the screen with a warning until it is back; scans from
//! the terminal's own scanner still work meanwhile. A station without a scanner or a
//! terminal works with the other (see [`super::next`]).
//!
//! The picker works from a window of the pick path, never from every task: the station
//! reads the path's first [`WINDOW`] tasks from the store (through its `tasks_path`
//! index: O(log n) in the tasks mirrored), the put-backs the store asks for and every task
//! the picker holds ([`Picker::held`]), and hands them in as one [`Path`] at start, after
//! every applied down message and after every commit. Each read is a whole statement, so
//! a put-back is handed in on every read until it is done (the picker asks for it once),
//! whenever its task was picked, before a restart too.
//!
//! No applied wave is missed: the station subscribes to the link's notifications before
//! its first read of the path, and every read is whole, so a wave committed between the
//! two is either in the read or announced after it.

use std::collections::VecDeque;
use std::time::Duration;

use floorhand_protocol::link::{Beep, Level, ScanTarget, Screen};
use floorhand_protocol::oms;
use tokio::sync::broadcast::error::RecvError;

use super::{Device, Shell, next};
use crate::barcode::Gtin14;
use crate::clock::unix_now;
use crate::devices::scanner::ScannerEvent;
use crate::devices::terminal::TerminalEvent;
use crate::pick::{
    Audit, Capture, Command, Effect, Input, Owed, PackGtin, Path, PickConfig, PickTask, Picker,
    QtyEntry, ShortReason, Withdrawal,
};
use crate::store::{
    self, Applied, Db, PathTask, PickConfirmation, Store, StoreError, TaskRow, TaskState,
};
use crate::sync::agent::LinkState;

/// Seconds the link may be down before the offline banner shows.
pub const OFFLINE_GRACE_S: u64 = 3;

/// Seconds between refreshes of the offline banner's figures.
pub const BANNER_REFRESH_S: u64 = 5;

/// Tasks of the path the picker is handed at a time: enough to walk on from one commit
/// to the next read, few enough that a read costs next to nothing.
pub const WINDOW: usize = 16;

/// Put-backs handed in at a time besides those the picker holds; the next ones come
/// with the reads after these are done.
const PUT_BACKS: usize = 16;

/// Converts a store row to the workflow's task. GTINs that do not parse (the store
/// checked them when the wave arrived) are left out with a log line. A skipped task ranks
/// 1 (after every task not skipped); [`path_task`] gives skipped tasks their order.
pub fn pick_task(row: &TaskRow) -> PickTask {
    PickTask {
        task_id: row.task_id,
        location: row.location.clone(),
        location_check: row.location_check,
        pick_seq: row.pick_seq,
        priority: row.priority,
        gtins: row
            .gtins
            .iter()
            .filter_map(|g| match Gtin14::parse(&g.gtin) {
                Ok(gtin) => Some(PackGtin {
                    gtin,
                    pack_qty: g.pack_qty,
                }),
                Err(e) => {
                    tracing::warn!(task = row.task_id, "GTIN {:?} left out: {e}", g.gtin);
                    None
                }
            })
            .collect(),
        sku: row.sku.clone(),
        description: row.description.clone(),
        qty: row.qty,
        picked: row.picked_qty,
        capture: Capture {
            lot: row.capture.lot,
            serial: row.capture.serial,
            expiry: row.capture.expiry,
        },
        tote_required: row.tote_required,
        qty_entry: QtyEntry::ScanEach,
        skip_rank: u64::from(row.state == TaskState::Skipped),
        undo_allowed: row.put_back_qty == 0 && row.state != TaskState::Surplus,
    }
}

/// Converts a task of the path to the workflow's task, skipped tasks in the order they
/// were skipped.
pub fn path_task(t: &PathTask) -> PickTask {
    PickTask {
        skip_rank: t.skip_rank,
        ..pick_task(&t.row)
    }
}

/// Whether a read of the path counts its tasks too (for the screens' totals). Counting
/// walks the whole index, so it is done only when the path changed from outside: at start
/// and after a down message, never after the picker's own commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Count {
    /// Count the tasks on the path.
    Tasks,
    /// The picker counts on from the last count.
    Skip,
}

fn owed(o: store::Owed) -> Owed {
    match o {
        store::Owed::Revoked => Owed::Withdrawn(Withdrawal::Revoked),
        store::Owed::Cancelled => Owed::Withdrawn(Withdrawal::OrderCancelled),
        store::Owed::Surplus => Owed::Surplus,
    }
}

/// Reads the pick path for the picker: the first `window` tasks, the first put-backs,
/// and every task `held` names ([`Picker::held`]) in the state the store has it: on the
/// path, owed back, or taken away with nothing picked; a held task that is closed (or
/// purged) is left out, which tells the picker so. Shared with the store's property tests.
pub(crate) fn read_path(
    db: &Db,
    window: usize,
    held: &[u64],
    count: Count,
) -> Result<Path, StoreError> {
    let (next, more) = db.path_window(window)?;
    let (owed_rows, _) = db.put_backs(PUT_BACKS)?;
    let mut path = Path {
        tasks: next.iter().map(path_task).collect(),
        more,
        len: None,
        put_backs: owed_rows
            .iter()
            .filter_map(|t| Some((path_task(t), owed(t.owed?))))
            .collect(),
        withdrawn: Vec::new(),
    };
    for &id in held {
        let listed = path.tasks.iter().any(|t| t.task_id == id)
            || path.put_backs.iter().any(|(t, _)| t.task_id == id);
        if listed {
            continue;
        }
        let Some(t) = db.path_task(id)? else {
            continue;
        };
        match (t.row.state, t.owed) {
            (_, Some(o)) => path.put_backs.push((path_task(&t), owed(o))),
            (TaskState::Open | TaskState::InProgress | TaskState::Skipped, _) => {
                path.tasks.push(path_task(&t));
            }
            (TaskState::Revoked, _) => path.withdrawn.push((id, Withdrawal::Revoked)),
            (TaskState::Cancelled, _) => path.withdrawn.push((id, Withdrawal::OrderCancelled)),
            _ => {}
        }
    }
    if count == Count::Tasks {
        path.len = Some(u32::try_from(db.path_len()?).unwrap_or(u32::MAX));
    }
    Ok(path)
}

fn short_reason(r: ShortReason) -> oms::ShortReason {
    match r {
        ShortReason::LocationEmpty => oms::ShortReason::LocationEmpty,
        ShortReason::Damaged => oms::ShortReason::Damaged,
        ShortReason::WrongItem => oms::ShortReason::WrongItem,
        ShortReason::NotEnough => oms::ShortReason::NotEnough,
    }
}

/// Runs one durable command in its one store transaction; returns the outbox seq.
pub(crate) fn execute(
    db: &mut Db,
    now: u64,
    operator: u32,
    badge_prefix: &str,
    command: &Command,
) -> Result<u64, StoreError> {
    match command {
        Command::Login { operator } => {
            db.login(now, *operator, &format!("{badge_prefix}{operator}"))
        }
        Command::Logout { operator } => db.logout(now, *operator),
        Command::StartTask { task_id } => db.start_task(now, operator, *task_id),
        Command::ConfirmPick { task_id, units } => db.confirm_pick(
            now,
            operator,
            &PickConfirmation {
                task_id: *task_id,
                qty: units.qty,
                lot: units.lot.clone(),
                serial: units.serial.clone(),
                expiry: units.expiry.map(|d| oms::Date {
                    year: d.year,
                    month: d.month,
                    day: d.day,
                }),
                tote: units.tote.clone(),
            },
        ),
        Command::ShortPick {
            task_id,
            units,
            reason,
        } => db.short_pick(now, operator, *task_id, units.qty, short_reason(*reason)),
        Command::Skip { task_id } => db.skip_task(now, operator, *task_id),
        Command::UndoPick { task_id, .. } => db.undo_pick(now, operator, *task_id),
        Command::PutBack { task_id, .. } => {
            // Units that were only in the picker's hand (never confirmed) go back with no
            // event: the OMS never heard of them. Seq 0 stands for "nothing written".
            let stored = db.task(*task_id)?;
            if stored.is_some_and(|t| t.state != TaskState::PutBackNeeded && t.picked_qty == 0) {
                return Ok(0);
            }
            db.confirm_put_back(now, operator, *task_id)
        }
    }
}

/// Writes the workflow's scan audit line; a failure is logged, never fatal (the scan
/// itself was handled).
pub(crate) async fn audit(store: &Store, a: Audit) {
    let now = unix_now();
    let r = store
        .call(move |db| db.audit_scan(now, a.operator, a.input.as_bytes(), &a.outcome))
        .await;
    if let Err(e) | Ok(Err(e)) = r {
        tracing::error!("audit log: {e}");
    }
}

struct Station {
    shell: Shell,
    picker: Picker,
    badge_prefix: String,
    scanner_down: Option<String>,
    /// The last read of the path failed: the tick reads it again.
    stale: bool,
    /// Unix seconds the link went down, while it is down.
    offline_since: Option<u64>,
    banner: bool,
    /// Unix seconds the banner's figures were last filled in, while it is up.
    banner_at: Option<u64>,
    /// The terminal firmware version last reported to the OMS in this run.
    terminal_reported: Option<String>,
}

/// Runs the handheld until shutdown.
pub(crate) async fn run(shell: Shell, config: PickConfig) {
    let mut st = Station {
        badge_prefix: config.badge_prefix.clone(),
        picker: Picker::new(config),
        shell,
        scanner_down: None,
        stale: false,
        offline_since: None,
        banner: false,
        banner_at: None,
        terminal_reported: None,
    };
    // Subscribed before the first load: a wave applied meanwhile is announced afterwards.
    let mut applied = st.shell.sync.applied();
    st.shell.display.show(st.picker.screen());
    st.read_path(Count::Tasks).await;
    let mut link = st.shell.sync.state.clone();
    let mut shutdown = st.shell.shutdown.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // The tick matters only while the link is down or a read of the path failed; an idle
    // station online does not wake up for it, and a missed tick is not made up.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    st.on_link(&link.borrow_and_update().clone());
    st.shell.ready();
    loop {
        tokio::select! {
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() { break; }
            }
            ev = next(&mut st.shell.scanner) => match ev {
                Some(ev) => st.on_scanner(ev).await,
                None => st.shell.ended(Device::Scanner),
            },
            ev = next(&mut st.shell.terminal_events) => match ev {
                Some(ev) => st.on_terminal(ev).await,
                None => st.shell.ended(Device::Terminal),
            },
            a = applied.recv() => match a {
                Ok(Applied::WaveApplied { .. } | Applied::Revoked { .. } | Applied::Cancelled { .. })
                | Err(RecvError::Lagged(_)) => {
                    // One read for every change already announced: a burst of 5,000
                    // cancellations after an outage costs one count of the path, not 5,000.
                    drain(&mut applied);
                    st.read_path(Count::Tasks).await;
                }
                Ok(_) => {}
                Err(RecvError::Closed) => break,
            },
            r = link.changed() => {
                if r.is_err() { break; }
                let s = link.borrow_and_update().clone();
                st.on_link(&s);
            }
            _ = tick.tick(), if st.ticking() => st.on_tick().await,
        }
    }
    let counted = st.picker.refusals().flush();
    st.apply(counted).await;
    st.shell.stop().await;
}

/// Takes every notification already waiting: a read of the path after them sees them all.
/// A closed channel is left for the next `recv` to report.
fn drain(applied: &mut tokio::sync::broadcast::Receiver<Applied>) {
    use tokio::sync::broadcast::error::TryRecvError;
    while matches!(applied.try_recv(), Ok(_) | Err(TryRecvError::Lagged(_))) {}
}

fn idle(screen: &Screen) -> bool {
    matches!(
        screen,
        Screen::Scan {
            target: ScanTarget::Badge,
            ..
        } | Screen::WaveDone { .. }
    ) || matches!(screen, Screen::Message { level: Level::Info, text } if text.starts_with("No tasks"))
}

impl Station {
    /// Feeds one input; after a commit the picker gets the path as the store now has it.
    async fn input(&mut self, input: Input) {
        let now = self.shell.now_ms();
        let effects = self.picker.handle(now, input);
        if self.apply(effects).await {
            self.read_path(Count::Skip).await;
        }
    }

    /// Carries out the effects in order; true when a command was committed.
    async fn apply(&mut self, effects: Vec<Effect>) -> bool {
        let mut committed = false;
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::Show(screen) => self.show(screen),
                Effect::Beep(b) => self.shell.display.beep(b),
                Effect::Audit(a) => audit(&self.shell.store, a).await,
                Effect::ScanRefused(r) => {
                    let operator = self.picker.operator().unwrap_or(0);
                    self.shell.report_refusal(operator, r).await;
                }
                Effect::Persist { id, command } => {
                    let operator = self.picker.operator().unwrap_or(0);
                    let prefix = self.badge_prefix.clone();
                    let now = unix_now();
                    let result = self
                        .shell
                        .store
                        .call(move |db| execute(db, now, operator, &prefix, &command))
                        .await;
                    let answer = match result {
                        Ok(Ok(_seq)) => {
                            self.shell.sync.outbox_changed();
                            committed = true;
                            Input::Committed { id }
                        }
                        Ok(Err(e)) | Err(e) => {
                            tracing::warn!("command {id} not saved: {e}");
                            Input::Failed {
                                id,
                                reason: e.to_string(),
                            }
                        }
                    };
                    let now = self.shell.now_ms();
                    queue.extend(self.picker.handle(now, answer));
                }
            }
        }
        committed
    }

    /// Shows a workflow screen, unless the scanner warning or the offline banner covers it.
    fn show(&mut self, screen: Screen) {
        if let Some(why) = &self.scanner_down {
            let text = format!("Scanner unplugged: {why}");
            self.shell.display.message(Level::Error, &text);
            return;
        }
        if self.offline_since.is_some() && self.banner_due() && idle(&screen) {
            // The tick fills in the figures; show the banner at once with what we know.
            self.shell.display.show(Screen::Offline {
                backlog: 0,
                since_s: 0,
            });
            self.banner = true;
            self.banner_at = None;
            return;
        }
        self.banner = false;
        self.banner_at = None;
        self.shell.display.show(screen);
    }

    fn banner_due(&self) -> bool {
        self.offline_since
            .is_some_and(|since| unix_now().saturating_sub(since) >= OFFLINE_GRACE_S)
    }

    /// Hands the picker the path as the store has it now (see [`read_path`]). A read
    /// that changes nothing on the screen is not written to the audit log (it is no scan,
    /// and the station reads the path after every commit).
    async fn read_path(&mut self, count: Count) {
        let held = self.picker.held();
        let r = self
            .shell
            .store
            .call(move |db| read_path(db, WINDOW, &held, count))
            .await;
        let path = match r {
            Ok(Ok(path)) => path,
            Ok(Err(e)) | Err(e) => {
                tracing::error!("could not read the pick path: {e}; trying again in a second");
                self.stale = true;
                return;
            }
        };
        self.stale = false;
        let now = self.shell.now_ms();
        let effects = self.picker.handle(now, Input::Path(path));
        if let [Effect::Audit(a)] = &effects[..] {
            tracing::debug!(outcome = %a.outcome, "pick path read");
            return;
        }
        // A path never makes the picker persist anything: nothing to read again after.
        self.apply(effects).await;
    }

    async fn on_scanner(&mut self, ev: ScannerEvent) {
        match ev {
            ScannerEvent::Scan(raw) => self.input(Input::scan(&raw)).await,
            ScannerEvent::Rejected(why) => {
                tracing::warn!("scanner: {why}");
                self.shell
                    .display
                    .message(Level::Error, "Scan not read: try again");
                self.shell.display.beep(Beep::Error);
            }
            ScannerEvent::Disconnected(why) => {
                tracing::warn!("scanner unplugged: {why}");
                self.scanner_down = Some(why);
                self.show(self.picker.screen());
                self.shell.display.beep(Beep::Attention);
            }
            ScannerEvent::Reconnected => {
                tracing::info!("scanner back");
                self.scanner_down = None;
                self.show(self.picker.screen());
            }
        }
    }

    async fn on_terminal(&mut self, ev: TerminalEvent) {
        match ev {
            TerminalEvent::Key(k) => self.input(Input::Key(k)).await,
            TerminalEvent::Scan(s) => self.input(Input::scan(&s.data)).await,
            TerminalEvent::Connected(hello) => {
                let software = hello.software.to_string();
                tracing::info!("terminal connected (firmware {software})");
                // Once per run, and again when a terminal with another version connects:
                // a flapping adapter does not fill the outbox.
                // A report that was not written (storage full, a database error) is tried
                // again at the terminal's next hello.
                if self.terminal_reported.as_deref() != Some(software.as_str()) {
                    let operator = self.picker.operator().unwrap_or(0);
                    if self.shell.report_terminal(operator, software.clone()).await {
                        self.terminal_reported = Some(software);
                    }
                }
            }
            TerminalEvent::LinkLost => tracing::warn!("terminal link lost"),
            TerminalEvent::VersionMismatch { terminal } => {
                tracing::error!(
                    "terminal speaks protocol {terminal}: update the terminal or the agent"
                );
            }
            TerminalEvent::Disconnected(why) => {
                tracing::warn!("terminal unplugged ({why}): reopening it; the scanner still works");
            }
            TerminalEvent::Reconnected => tracing::info!("terminal back"),
            TerminalEvent::BadFrame(_) => {}
        }
    }

    fn on_link(&mut self, s: &LinkState) {
        match s {
            LinkState::Up { .. } => {
                self.offline_since = None;
                if self.banner {
                    self.show(self.picker.screen());
                }
            }
            LinkState::Down { since, .. } => {
                if self.offline_since.is_none() {
                    self.offline_since = Some(*since);
                }
            }
        }
    }

    /// Whether the tick has anything to do: the offline banner, a path to read again, or
    /// refused scans to report.
    fn ticking(&mut self) -> bool {
        self.offline_since.is_some() || self.stale || self.picker.refusals().holding()
    }

    async fn on_tick(&mut self) {
        if self.picker.refusals().holding() {
            let now = self.shell.now_ms();
            let effects = self.picker.refusals().due(now);
            self.apply(effects).await;
        }
        if self.stale {
            self.read_path(Count::Tasks).await;
        }
        let Some(since) = self.offline_since else {
            return;
        };
        if !self.banner_due() || self.scanner_down.is_some() || !idle(&self.picker.screen()) {
            return;
        }
        let now = unix_now();
        let fresh = self
            .banner_at
            .is_some_and(|at| now.saturating_sub(at) < BANNER_REFRESH_S);
        if self.banner && fresh {
            return;
        }
        let backlog = match self.shell.store.call(move |db| db.outbox_stats(now)).await {
            Ok(Ok(s)) => u32::try_from(s.count).unwrap_or(u32::MAX),
            _ => 0,
        };
        self.banner = true;
        self.banner_at = Some(now);
        self.shell.display.show(Screen::Offline {
            backlog,
            since_s: u32::try_from(now.saturating_sub(since)).unwrap_or(u32::MAX),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CaptureFlags, Gtin};
    use floorhand_protocol::link::fit;

    #[test]
    fn the_offline_banner_covers_only_idle_screens() {
        let check = |screen: Screen, expected: bool| {
            assert_eq!(idle(&screen), expected, "{screen:?}");
        };
        check(
            Screen::Scan {
                target: ScanTarget::Badge,
                hint: fit("Scan your badge"),
            },
            true,
        );
        check(
            Screen::WaveDone {
                picked: 3,
                short: 1,
            },
            true,
        );
        check(
            Screen::Message {
                level: Level::Info,
                text: fit("No tasks: wait for the next wave"),
            },
            true,
        );
        check(
            Screen::Message {
                level: Level::Info,
                text: fit("Enter: confirm 2 Hex bolt"),
            },
            false,
        );
        check(
            Screen::Scan {
                target: ScanTarget::Item,
                hint: fit("0/2 Hex bolt"),
            },
            false,
        );
    }

    #[test]
    fn draining_takes_every_waiting_notification_and_leaves_a_close_for_recv() {
        use tokio::sync::broadcast::error::TryRecvError;
        let (tx, mut rx) = tokio::sync::broadcast::channel(2);
        // More than the channel holds: the receiver has lagged, too.
        for _ in 0..5 {
            tx.send(Applied::Resync).unwrap();
        }
        drain(&mut rx);
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
        tx.send(Applied::Resync).unwrap();
        drop(tx);
        drain(&mut rx);
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Closed)));
    }

    #[test]
    fn a_store_row_becomes_a_pick_task_and_a_bad_gtin_is_left_out() {
        let row = TaskRow {
            task_id: 9,
            wave_id: 1,
            priority: 4,
            cutoff: 0,
            order_id: "SO-1".into(),
            order_line: 1,
            location: "A-01".into(),
            pick_seq: 3,
            location_check: 47,
            gtins: vec![
                Gtin {
                    gtin: "09506000134352".into(),
                    pack_qty: 1,
                },
                Gtin {
                    gtin: "not a gtin".into(),
                    pack_qty: 6,
                },
            ],
            sku: "BOLT".into(),
            description: "Hex bolt".into(),
            qty: 5,
            picked_qty: 2,
            capture: CaptureFlags {
                lot: true,
                serial: false,
                expiry: true,
            },
            tote_required: true,
            state: TaskState::InProgress,
            updated_at: 0,
            put_back_qty: 0,
        };
        let t = pick_task(&row);
        assert!(t.undo_allowed);
        // Once units of it were put back, its picks cannot be undone (the store refuses).
        assert!(
            !pick_task(&TaskRow {
                put_back_qty: 1,
                ..row.clone()
            })
            .undo_allowed
        );
        assert_eq!(
            (t.task_id, t.priority, t.pick_seq, t.qty, t.picked),
            (9, 4, 3, 5, 2)
        );
        assert_eq!(t.gtins.len(), 1);
        assert_eq!(t.gtins[0].gtin, Gtin14::parse("9506000134352").unwrap());
        assert!(t.capture.lot && t.capture.expiry && !t.capture.serial && t.tote_required);
    }
}
