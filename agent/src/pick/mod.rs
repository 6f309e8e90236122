//! The pick workflow: a pure state machine. Scans, keys, task updates and the store's
//! replies come in through [`Picker::handle`]; screens, beeps, durable commands and audit
//! lines come out as [`Effect`]s. No clock (the runtime passes `now` in milliseconds), no
//! I/O, no SQL, no tokio.
//!
//! Durability rule (docs/dev/field-notes.md, "SQLite on flash": "never acknowledge ... beep
//! to the picker ... before the commit that records it"): a step that changes what the OMS will be told emits
//! [`Effect::Persist`] and no beep; the ok-beep and the next screen follow only when the
//! runtime feeds back [`Input::Committed`] with the same id. While a command is pending,
//! scans and keys are refused with an error beep. Accepting one item scan into the count
//! being built is not durable (nothing is told to the OMS until the confirmation), so it
//! beeps at once; a crash before the confirmation loses only that count, which the picker
//! re-scans.
//!
//! Bounce rule: a scan whose raw bytes equal the previous scan's and that arrives less
//! than [`PickConfig::bounce_ms`] after it is a scanner bounce: it is ignored (audited, no
//! beep, no count). A picker scanning the same each barcode again takes longer than that,
//! so each-scans still count.
//!
//! Runtime hook (the agent's event loop): read the pick path from the store (its first
//! tasks, the put-backs it asks for, and the tasks [`Picker::held`] names), convert it to
//! a [`Path`] and send [`Input::Path`], at start, after every applied down message and
//! after every commit; feed every `devices::scanner::ScannerEvent::Scan(raw)` as
//! [`Input::scan`]`(&raw)` and every terminal key as [`Input::Key`]; for each
//! [`Effect::Persist`] run the command in one store transaction (with its outbox event)
//! and answer [`Input::Committed`] or [`Input::Failed`] with the same id; send `Show` and
//! `Beep` to the terminal in order; write `Audit` lines to the audit log.
//!
//! Refused scans: each scan the workflow refuses (error beep) is also reported to the OMS
//! by class, as [`Effect::ScanRefused`], at most one per class per second with a count
//! (see [`refused`]); refused key presses are not reported. The runtime writes each as one
//! `ScanRefused` event, calls [`Picker::refusals`] for those due every second while any
//! wait, and for all of them when it stops.
//!
//! Memory: the workflow holds a window of the path (the store's next tasks, in path order),
//! the task under the picker, its put-backs and the task it may undo, never every task of
//! the device: a mirror of 100,000 tasks costs it no more than one of 50. It counts the
//! tasks closed on this device, for the screens.

pub mod refused;
mod screens;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use floorhand_protocol::link::{Beep, Key, MenuReason, Screen};

use crate::barcode::{
    self, Barcode, Date, Form, Gtin14, ItemData, LocationMatch, LocationTarget, printable,
};
pub use refused::Refusals;
pub use refused::{Refusal, RefusalReason};

/// A GTIN the task's item may be scanned by, and how many units one scan counts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackGtin {
    /// The GTIN, normalised.
    pub gtin: Gtin14,
    /// Units per scan: 1 for the each, 12 for a case of twelve.
    pub pack_qty: u32,
}

/// What must be captured when picking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capture {
    /// Lot (AI 10).
    pub lot: bool,
    /// Serial (AI 21): one unit per confirmation.
    pub serial: bool,
    /// Expiry (AI 17).
    pub expiry: bool,
}

/// How the picker counts units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum QtyEntry {
    /// Every unit (or pack) is scanned.
    #[default]
    ScanEach,
    /// After one scan of the item, the picker may type the quantity.
    Typed,
}

/// A pick task as the workflow sees it. The runtime converts the store's rows to this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickTask {
    /// OMS task id.
    pub task_id: u64,
    /// Location code, e.g. `A-12-03-B`.
    pub location: String,
    /// The location's check code, 0-99.
    pub location_check: u8,
    /// Position of the location in the walking path.
    pub pick_seq: u32,
    /// The wave's priority: higher first.
    pub priority: u8,
    /// GTINs of the item and its packs.
    pub gtins: Vec<PackGtin>,
    /// OMS item number.
    pub sku: String,
    /// Shown to the picker.
    pub description: String,
    /// Units to pick.
    pub qty: u32,
    /// Units already confirmed (from the store).
    pub picked: u32,
    /// What to capture.
    pub capture: Capture,
    /// Units go into a tote that must be scanned.
    pub tote_required: bool,
    /// How units are counted.
    pub qty_entry: QtyEntry,
    /// 0 for a task at its place on the path. Otherwise the task was skipped: it stays at
    /// the end of the path, across restarts too, after the tasks skipped before it (the
    /// store gives the seq of its `Skipped` event; a skip here ranks after every task
    /// the workflow holds).
    pub skip_rank: u64,
    /// Whether its last pick may still be undone: not once a new wave version made units
    /// of it a put-back (the store refuses that undo).
    pub undo_allowed: bool,
}

impl PickTask {
    fn remaining(&self) -> u32 {
        self.qty.saturating_sub(self.picked)
    }
}

/// Why a task left the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawal {
    /// The OMS took the task back (reassigned).
    Revoked,
    /// Its order was cancelled.
    OrderCancelled,
}

/// Why the store asks for a task's units back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owed {
    /// The task was taken away after units were picked.
    Withdrawn(Withdrawal),
    /// A new wave version asked for fewer units than were picked.
    Surplus,
}

/// What the store says about the pick path, for [`Input::Path`]. Each one is a whole
/// statement, so handing the same one in twice changes nothing.
///
/// A task the workflow holds (the one under the picker) that is in none of the lists
/// left the path in the store: closed there (a new wave version asked for exactly what
/// was picked; units in hand go back) when units of it were confirmed, else revoked.
/// Other tasks missing from `tasks` are only beyond the window, and are forgotten.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Path {
    /// The first tasks of the path (open, in progress or skipped; in any order, the
    /// workflow orders them), and every task [`Picker::held`] names that is on the path.
    pub tasks: Vec<PickTask>,
    /// More tasks follow on the path beyond `tasks`.
    pub more: bool,
    /// How many tasks the path holds, when the store counted them (at start and after a
    /// down message); else the workflow keeps counting from the last count.
    pub len: Option<u32>,
    /// Tasks whose units the store asks back (`picked`: the units the picker holds), and
    /// why: the first few the store has, and every one [`Picker::held`] names.
    pub put_backs: Vec<(PickTask, Owed)>,
    /// Tasks [`Picker::held`] names that the OMS took away with nothing picked.
    pub withdrawn: Vec<(u64, Withdrawal)>,
}

/// Short-pick reasons (mirrors the OMS contract's `ShortReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShortReason {
    /// Nothing at the location.
    LocationEmpty,
    /// Damaged units.
    Damaged,
    /// Another item in the location.
    WrongItem,
    /// Not enough units.
    NotEnough,
}

/// Refused scans of one class are reported at most once per this many milliseconds.
pub const REFUSAL_WINDOW_MS: u64 = 1000;

const REASONS: [(ShortReason, MenuReason); 4] = [
    (ShortReason::LocationEmpty, MenuReason::LocationEmpty),
    (ShortReason::Damaged, MenuReason::Damaged),
    (ShortReason::WrongItem, MenuReason::WrongItem),
    (ShortReason::NotEnough, MenuReason::NotEnough),
];

/// What was picked in one confirmation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Units {
    /// Units.
    pub qty: u32,
    /// Lot, where captured.
    pub lot: Option<String>,
    /// Serial, where captured.
    pub serial: Option<String>,
    /// Expiry, where captured.
    pub expiry: Option<Date>,
    /// Tote, where required.
    pub tote: Option<String>,
}

/// A durable command: the runtime executes it through the store (one transaction, with its
/// outbox event) and answers [`Input::Committed`] or [`Input::Failed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// An operator logged in.
    Login {
        /// Operator number from the badge.
        operator: u32,
    },
    /// The operator logged out.
    Logout {
        /// Operator number.
        operator: u32,
    },
    /// The picker proved arrival at the task's location.
    StartTask {
        /// Task.
        task_id: u64,
    },
    /// Units picked.
    ConfirmPick {
        /// Task.
        task_id: u64,
        /// What was picked.
        units: Units,
    },
    /// The task closes with fewer units than asked.
    ShortPick {
        /// Task.
        task_id: u64,
        /// Units picked in this last confirmation (may be 0).
        units: Units,
        /// Why.
        reason: ShortReason,
    },
    /// The task goes to the end of the path.
    Skip {
        /// Task.
        task_id: u64,
    },
    /// The last confirmation is undone.
    UndoPick {
        /// Task.
        task_id: u64,
        /// Units taken back out of the confirmation.
        qty: u32,
    },
    /// Units of a withdrawn task were put back.
    PutBack {
        /// Task.
        task_id: u64,
        /// Units.
        qty: u32,
        /// Where.
        location: String,
    },
}

/// One audit line: what came in and what the workflow made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// Operator, 0 when nobody is logged in.
    pub operator: u32,
    /// The task concerned, if any.
    pub task_id: Option<u64>,
    /// The input, e.g. the scan's raw bytes printable (`\x1d` for GS) or `key Enter`.
    pub input: String,
    /// The outcome, for a person.
    pub outcome: String,
}

/// What the workflow asks the runtime to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Show a screen on the terminal.
    Show(Screen),
    /// Sound the buzzer.
    Beep(Beep),
    /// Execute this command durably, then answer with its id.
    Persist {
        /// Matches the answer to the command.
        id: u64,
        /// The command.
        command: Command,
    },
    /// Append to the audit log (need not be committed before the beep).
    Audit(Audit),
    /// Report refused scans to the OMS: one `ScanRefused` event in the outbox. Not
    /// durable before the beep (the beep is the refusal itself); at most one per class
    /// per second ([`refused`]).
    ScanRefused(Refusal),
}

impl From<Refusal> for Effect {
    fn from(r: Refusal) -> Self {
        Effect::ScanRefused(r)
    }
}

/// Inputs to the workflow.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A scan: raw bytes (prefix and suffix stripped) and their parse.
    Scan {
        /// As the scanner sent it.
        raw: Vec<u8>,
        /// [`barcode::parse`] of `raw`.
        barcode: Barcode,
    },
    /// A key on the terminal.
    Key(Key),
    /// Every open task for this device, as the store now has them: the same as a
    /// [`Path`] with nothing beyond these tasks (`more: false`) and nothing else to say.
    /// For tools and tests that hold few tasks; the station sends [`Input::Path`].
    Tasks(Vec<PickTask>),
    /// The pick path as the store now has it (the truth for what is asked and picked;
    /// applied after a pending save). See [`Path`].
    Path(Path),
    /// A task left the device.
    Withdrawn {
        /// Task.
        task_id: u64,
        /// Why.
        why: Withdrawal,
    },
    /// The store committed the command with this id.
    Committed {
        /// Command id.
        id: u64,
    },
    /// The store refused or failed the command with this id.
    Failed {
        /// Command id.
        id: u64,
        /// Why, for the picker.
        reason: String,
    },
}

impl Input {
    /// A scan input, parsing `raw`.
    pub fn scan(raw: &[u8]) -> Self {
        Self::Scan {
            raw: raw.to_vec(),
            barcode: barcode::parse(raw),
        }
    }
}

/// Workflow settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickConfig {
    /// Badge barcodes are this prefix then the operator number, e.g. `OP1234`.
    pub badge_prefix: String,
    /// Window in which an identical scan counts as a scanner bounce, milliseconds.
    pub bounce_ms: u64,
}

impl Default for PickConfig {
    fn default() -> Self {
        Self {
            badge_prefix: "OP".into(),
            bounce_ms: 300,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Open {
    task: PickTask,
    tote: Option<String>,
    serials: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Closed {
    open: Open,
    short: bool,
}

/// Units being counted for one confirmation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Batch {
    count: u32,
    lot: Option<String>,
    serial: Option<String>,
    expiry: Option<Date>,
    item: ItemData,
}

/// Why units go back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PutBackKind {
    /// The OMS took the task away: everything picked and in hand.
    Withdrawn,
    /// A new wave version asked for fewer units than were picked.
    Surplus,
    /// Units only in the picker's hand, of a task that stays this device's (a new
    /// version asked for fewer): the OMS never heard of them, the store is not told.
    InHand,
}

/// Units to take back to a location.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PutBackJob {
    task_id: u64,
    kind: PutBackKind,
    /// Units the store has as picked and wants back (it records their put-back).
    confirmed: u32,
    /// Units only in the picker's hand (never confirmed: no event).
    in_hand: u32,
    location: String,
    description: String,
}

impl PutBackJob {
    fn qty(&self) -> u32 {
        self.confirmed + self.in_hand
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    LoggedOut,
    NoTasks,
    WaveDone,
    GoTo {
        task_id: u64,
        typed: Option<u32>,
    },
    Pick {
        task_id: u64,
        batch: Batch,
        typed: Option<u32>,
    },
    Reasons {
        task_id: u64,
        batch: Batch,
        selected: usize,
        at_location: bool,
    },
    PutBack(PutBackJob),
}

impl Step {
    fn task_id(&self) -> Option<u64> {
        match self {
            Step::GoTo { task_id, .. } | Step::Pick { task_id, .. } => Some(*task_id),
            Step::Reasons { task_id, .. } => Some(*task_id),
            Step::PutBack(job) => Some(job.task_id),
            _ => None,
        }
    }

    fn units_in_hand(&self) -> u32 {
        match self {
            Step::Pick { batch, .. } | Step::Reasons { batch, .. } => batch.count,
            _ => 0,
        }
    }
}

/// What the picker still has to provide for the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Item,
    Lot,
    Serial,
    Expiry,
    Tote,
    More,
    Confirm,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    id: u64,
    command: Command,
}

/// Effects being built for one input, and the outcome for its audit line.
struct Out {
    effects: Vec<Effect>,
    outcome: String,
    /// The input was refused: the class, for a scan's report.
    refusal: Option<RefusalReason>,
}

impl Out {
    fn show(&mut self, s: Screen) {
        self.effects.push(Effect::Show(s));
    }
    fn refuse(&mut self, text: &str) {
        self.show(screens::message(
            floorhand_protocol::link::Level::Error,
            text,
        ));
        self.effects.push(Effect::Beep(Beep::Error));
        self.outcome = format!("refused: {text}");
        self.refusal.get_or_insert(RefusalReason::Other);
    }
    /// Refuses, naming the class a refused scan is reported under.
    fn refuse_as(&mut self, reason: RefusalReason, text: &str) {
        self.refuse(text);
        self.refusal = Some(reason);
    }
    fn attention(&mut self, s: Screen, outcome: &str) {
        self.show(s);
        self.effects.push(Effect::Beep(Beep::Attention));
        self.outcome = outcome.to_string();
    }
}

/// Tasks closed on this device since it started, for the screens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Done {
    picked: u32,
    short: u32,
}

impl Done {
    fn total(self) -> u32 {
        self.picked.saturating_add(self.short)
    }

    fn add(&mut self, short: bool, n: i32) {
        let c = if short {
            &mut self.short
        } else {
            &mut self.picked
        };
        *c = c.saturating_add_signed(n);
    }
}

/// The pick workflow for one device.
#[derive(Debug, Clone)]
pub struct Picker {
    config: PickConfig,
    operator: Option<u32>,
    /// The window of the path, and the task under the picker.
    open: Vec<Open>,
    /// More tasks follow on the path beyond `open`.
    more: bool,
    /// Tasks on the path, as last counted by the store and counted on since.
    path_len: u32,
    /// The task closed last: an undo reopens it, a put-back of its surplus trims it.
    last_closed: Option<Closed>,
    done: Done,
    step: Step,
    pending: Option<Pending>,
    deferred: Vec<(u64, Withdrawal)>,
    deferred_path: Option<Path>,
    put_backs: VecDeque<PutBackJob>,
    next_id: u64,
    last_scan: Option<(Vec<u8>, u64)>,
    last_confirm: Option<(u64, u32)>,
    refusals: Refusals,
}

/// The operator number of a badge barcode: `prefix` then 1-9 digits, as plain text (a
/// GS1 or retail barcode is never a badge). Shared by the pick and pack stations.
pub fn badge_operator(prefix: &str, bc: &Barcode) -> Option<u32> {
    if bc.form != Form::Text {
        return None;
    }
    let digits = bc.text.strip_prefix(prefix)?;
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl Picker {
    /// A device with nobody logged in and no tasks.
    pub fn new(config: PickConfig) -> Self {
        Self {
            config,
            operator: None,
            open: Vec::new(),
            more: false,
            path_len: 0,
            last_closed: None,
            done: Done::default(),
            step: Step::LoggedOut,
            pending: None,
            deferred: Vec::new(),
            deferred_path: None,
            put_backs: VecDeque::new(),
            next_id: 1,
            last_scan: None,
            last_confirm: None,
            refusals: Refusals::new(REFUSAL_WINDOW_MS),
        }
    }

    /// The screen to show now (on start, or after the terminal reconnects).
    pub fn screen(&self) -> Screen {
        self.step_screen()
    }

    /// The logged-in operator.
    pub fn operator(&self) -> Option<u32> {
        self.operator
    }

    /// The tasks whose fate the workflow must hear of in every [`Path`], whether or not
    /// they are in the window: the task under the picker, the tasks of its put-backs, and
    /// the task it may undo. At most a handful, in ascending order.
    pub fn held(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .step
            .task_id()
            .into_iter()
            .chain(self.put_backs.iter().map(|j| j.task_id))
            .chain(self.last_confirm.map(|(id, _)| id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The refused scans counted and not reported yet: the runtime takes those due
    /// ([`Refusals::due`], `now` in milliseconds) every second while any wait
    /// ([`Refusals::holding`]), and all of them ([`Refusals::flush`]) when it stops.
    pub fn refusals(&mut self) -> &mut Refusals {
        &mut self.refusals
    }

    /// Handles one input at time `now` (milliseconds; only differences are used).
    pub fn handle(&mut self, now: u64, input: Input) -> Vec<Effect> {
        let mut out = Out {
            effects: Vec::new(),
            outcome: String::new(),
            refusal: None,
        };
        let described = describe(&input);
        let scan = matches!(input, Input::Scan { .. });
        let task_before = self.step.task_id();
        match input {
            Input::Scan { raw, barcode } => self.on_scan(now, raw, &barcode, &mut out),
            Input::Key(key) => self.on_key(key, &mut out),
            Input::Tasks(tasks) => self.on_path(
                Path {
                    tasks,
                    ..Path::default()
                },
                &mut out,
            ),
            Input::Path(path) => self.on_path(path, &mut out),
            Input::Withdrawn { task_id, why } => self.on_withdrawn(task_id, why, &mut out),
            Input::Committed { id } => self.on_committed(id, &mut out),
            Input::Failed { id, reason } => self.on_failed(id, &reason, &mut out),
        }
        if scan && let Some(reason) = out.refusal {
            let task = task_before.or(self.step.task_id());
            out.effects.extend(
                self.refusals
                    .refused(now, reason, task)
                    .map(Effect::ScanRefused),
            );
        }
        out.effects.extend(self.refusals.due::<Effect>(now));
        out.effects.push(Effect::Audit(Audit {
            operator: self.operator.unwrap_or(0),
            task_id: task_before.or(self.step.task_id()),
            input: described,
            outcome: out.outcome,
        }));
        out.effects
    }

    fn persist(&mut self, command: Command, out: &mut Out) {
        let id = self.next_id;
        self.next_id += 1;
        out.outcome = format!("saving: {command:?}");
        out.effects.push(Effect::Persist {
            id,
            command: command.clone(),
        });
        self.pending = Some(Pending { id, command });
    }

    // ----- scans -----

    fn on_scan(&mut self, now: u64, raw: Vec<u8>, bc: &Barcode, out: &mut Out) {
        if let Some((last, at)) = &self.last_scan
            && *last == raw
            && now.saturating_sub(*at) < self.config.bounce_ms
        {
            out.outcome = format!(
                "ignored: same scan again within {} ms",
                self.config.bounce_ms
            );
            return;
        }
        self.last_scan = Some((raw, now));
        if self.pending.is_some() {
            return out.refuse_as(
                RefusalReason::Busy,
                "Saving... wait for the beep, then scan again",
            );
        }
        if let Some(e) = bc.errors.first() {
            // The picker sees the AI and the problem; the audit line keeps the byte too.
            let short = barcode::BarcodeError {
                pos: None,
                ..e.clone()
            };
            out.refuse_as(RefusalReason::BadBarcode, &format!("Bad label: {short}"));
            out.outcome = format!("refused: bad barcode: {e}");
            return;
        }
        if let Some(op) = self.badge(bc) {
            return self.on_badge(op, out);
        }
        match self.step.clone() {
            Step::LoggedOut => {
                out.refuse_as(RefusalReason::NotLoggedIn, "Scan your badge to log in")
            }
            Step::NoTasks | Step::WaveDone => {
                out.refuse_as(RefusalReason::NoTask, "No task to pick now")
            }
            Step::GoTo { task_id, .. } => self.scan_location(task_id, bc, out),
            Step::Pick { task_id, batch, .. } => self.scan_in_pick(task_id, batch, bc, out),
            Step::Reasons { .. } => out.refuse("Choose a reason, or Back"),
            Step::PutBack(job) => {
                let target = LocationTarget {
                    code: &job.location,
                    check: 0,
                };
                if target.matches(&bc.text) == LocationMatch::Code {
                    self.put_back_done(&job, out);
                } else {
                    out.refuse_as(
                        RefusalReason::WrongLocation,
                        &format!("Put the units back at {} first", job.location),
                    );
                }
            }
        }
    }

    fn badge(&self, bc: &Barcode) -> Option<u32> {
        badge_operator(&self.config.badge_prefix, bc)
    }

    fn on_badge(&mut self, op: u32, out: &mut Out) {
        match self.operator {
            None => self.persist(Command::Login { operator: op }, out),
            Some(me) if me == op => self.logout(out),
            Some(me) => out.refuse_as(
                RefusalReason::NotLoggedIn,
                &format!("Operator {me} is logged in: log out first (F4)"),
            ),
        }
    }

    fn logout(&mut self, out: &mut Out) {
        let Some(operator) = self.operator else {
            return out.refuse("Nobody is logged in");
        };
        if self.step.units_in_hand() > 0 {
            return out.refuse("Confirm or short the units in hand before logging out");
        }
        if matches!(self.step, Step::PutBack(_)) {
            return out.refuse("Put the units back before logging out");
        }
        self.persist(Command::Logout { operator }, out);
    }

    fn scan_location(&mut self, task_id: u64, bc: &Barcode, out: &mut Out) {
        let Some(t) = self.task(task_id) else { return };
        let target = LocationTarget {
            code: &t.task.location,
            check: t.task.location_check,
        };
        if target.matches(&bc.text) != LocationMatch::No {
            return self.persist(Command::StartTask { task_id }, out);
        }
        let text = if bc
            .gtin
            .as_ref()
            .is_some_and(|g| t.task.gtins.iter().any(|p| p.gtin == *g))
        {
            format!("Scan the location {} first", t.task.location)
        } else {
            format!("Wrong location {}: go to {}", bc.text, t.task.location)
        };
        out.refuse_as(RefusalReason::WrongLocation, &text);
    }

    fn scan_in_pick(&mut self, task_id: u64, mut batch: Batch, bc: &Barcode, out: &mut Out) {
        let Some(t) = self.task(task_id).cloned() else {
            return;
        };
        let task = &t.task;
        let gtin = bc.gtin.clone().map(|g| (g, 1)).or_else(|| bc.content());
        let mut item = batch.item.clone();
        item.add(bc);
        let conflict = item
            .conflicts()
            .first()
            .map(|e| format!("Label conflict: {e}"));
        if let Some((gtin, count)) = gtin {
            let Some(pack) = task.gtins.iter().find(|p| p.gtin == gtin) else {
                return out.refuse_as(
                    RefusalReason::WrongItem,
                    &format!("Wrong item {gtin}: pick {}", task.description),
                );
            };
            let units = pack.pack_qty.saturating_mul(count);
            if let Some(text) = capture_conflict(&batch, bc) {
                return out.refuse_as(RefusalReason::BadBarcode, &text);
            }
            if task.capture.serial {
                if batch.count > 0 {
                    return out.refuse("Serial-numbered: confirm this unit first (Enter)");
                }
                if units > 1 {
                    return out.refuse("Serial-numbered: scan each unit, not the pack");
                }
            }
            if let Some(s) = bc.serial()
                && t.serials.iter().any(|p| p == s)
            {
                return out.refuse(&format!("Serial {s} is already picked"));
            }
            if let Some(text) = conflict {
                return out.refuse_as(RefusalReason::BadBarcode, &text);
            }
            let left = task.remaining().saturating_sub(batch.count);
            if units > left {
                return out.refuse_as(
                    RefusalReason::TooMany,
                    &format!("Too many: {left} left to pick, this scan is {units}"),
                );
            }
            batch.count += units;
            take_captures(&mut batch, bc, task.capture);
            batch.item = item;
            let outcome = format!("counted {units}: {} of {}", batch.count, task.remaining());
            return self.accept(task_id, batch, outcome, out);
        }
        // Not an item: capture data, a tote, or a mistake.
        let need = self.need(&t, &batch);
        let before = batch.clone();
        take_captures(&mut batch, bc, task.capture);
        if let Some(text) = capture_conflict(&before, bc) {
            return out.refuse_as(RefusalReason::BadBarcode, &text);
        }
        if let Some(text) = conflict {
            return out.refuse_as(RefusalReason::BadBarcode, &text);
        }
        let plain = (bc.form == Form::Text).then_some(bc.text.as_str());
        match (need, plain) {
            (Need::Lot, Some(text)) => batch.lot = Some(text.to_string()),
            (Need::Serial, Some(text)) => {
                if t.serials.iter().any(|p| p == text) {
                    return out.refuse(&format!("Serial {text} is already picked"));
                }
                batch.serial = Some(text.to_string());
            }
            (Need::Expiry, Some(text)) => match barcode::parse_yymmdd(text) {
                Ok(d) => batch.expiry = Some(d),
                Err(e) => {
                    return out.refuse_as(
                        RefusalReason::BadBarcode,
                        &format!("Expiry {text}: {}", e.problem),
                    );
                }
            },
            (Need::Tote, _) if plain.is_some() || bc.ai("00").is_some() => {
                let tote = bc.ai("00").map_or(bc.text.clone(), |e| e.data.clone());
                if let Some(o) = self.task_mut(task_id) {
                    o.tote = Some(tote);
                }
            }
            _ => {}
        }
        let tote_taken = need == Need::Tote && self.task(task_id).is_some_and(|o| o.tote.is_some());
        if batch == before && !tote_taken {
            let target = LocationTarget {
                code: &task.location,
                check: task.location_check,
            };
            if target.matches(&bc.text) == LocationMatch::Code {
                out.outcome = "location scanned again".into();
                out.show(self.step_screen());
                return;
            }
            return out.refuse_as(
                RefusalReason::WrongItem,
                &format!("Not {}: scan the item", task.description),
            );
        }
        batch.item = item;
        self.accept(task_id, batch, format!("captured {need:?}"), out);
    }

    /// A scan or typed value joined the batch: not durable yet, so it beeps at once.
    fn accept(&mut self, task_id: u64, batch: Batch, outcome: String, out: &mut Out) {
        out.outcome = outcome;
        out.effects.push(Effect::Beep(Beep::Ok));
        self.step = Step::Pick {
            task_id,
            batch,
            typed: None,
        };
        out.show(self.step_screen());
    }

    fn need(&self, t: &Open, batch: &Batch) -> Need {
        let c = t.task.capture;
        if batch.count == 0 {
            Need::Item
        } else if c.lot && batch.lot.is_none() {
            Need::Lot
        } else if c.serial && batch.serial.is_none() {
            Need::Serial
        } else if c.expiry && batch.expiry.is_none() {
            Need::Expiry
        } else if t.task.tote_required && t.tote.is_none() {
            Need::Tote
        } else if batch.count < t.task.remaining() && !c.serial {
            Need::More
        } else {
            Need::Confirm
        }
    }

    // ----- keys -----

    fn on_key(&mut self, key: Key, out: &mut Out) {
        if self.pending.is_some() {
            return out.refuse("Saving... wait for the beep");
        }
        match (self.step.clone(), key) {
            (Step::LoggedOut, _) => out.refuse("Scan your badge to log in"),
            (_, Key::F(4)) => self.logout(out),
            (Step::GoTo { task_id, typed }, k) => self.key_goto(task_id, typed, k, out),
            (
                Step::Pick {
                    task_id,
                    batch,
                    typed,
                },
                k,
            ) => self.key_pick(task_id, batch, typed, k, out),
            (
                Step::Reasons {
                    task_id,
                    batch,
                    selected,
                    at_location,
                },
                k,
            ) => self.key_reasons(task_id, batch, selected, at_location, k, out),
            (Step::PutBack(job), Key::Enter) => self.put_back_done(&job, out),
            (Step::PutBack(job), _) => out.refuse(&format!(
                "Put back {} at {}, then Enter",
                job.qty(),
                job.location
            )),
            (Step::NoTasks | Step::WaveDone, Key::F(3)) => self.undo(out),
            (Step::NoTasks | Step::WaveDone, _) => {
                out.outcome = "nothing to do".into();
                out.show(self.step_screen());
            }
        }
    }

    fn key_goto(&mut self, task_id: u64, typed: Option<u32>, key: Key, out: &mut Out) {
        match key {
            Key::Digit(d) => {
                let v = typed
                    .unwrap_or(0)
                    .saturating_mul(10)
                    .saturating_add(u32::from(d % 10));
                if v > 99 {
                    return out.refuse("A check code has two digits: Clear and type again");
                }
                self.step = Step::GoTo {
                    task_id,
                    typed: Some(v),
                };
                out.outcome = "typing check code".into();
                out.show(screens::quantity("Check code", v, 99));
            }
            Key::Enter => {
                let Some(v) = typed else {
                    return out.attention(self.step_screen(), "asked to scan the location");
                };
                let Some(t) = self.task(task_id) else { return };
                let (check, location) = (t.task.location_check, t.task.location.clone());
                if u32::from(check) == v {
                    self.persist(Command::StartTask { task_id }, out);
                } else {
                    self.step = Step::GoTo {
                        task_id,
                        typed: None,
                    };
                    out.refuse(&format!("Check code {v:02} is not {location}"));
                }
            }
            Key::Clear | Key::Back => {
                self.step = Step::GoTo {
                    task_id,
                    typed: None,
                };
                out.outcome = "cleared".into();
                out.show(self.step_screen());
            }
            Key::F(1) => self.open_reasons(task_id, Batch::default(), false, out),
            Key::F(2) => self.persist(Command::Skip { task_id }, out),
            Key::F(3) => self.undo(out),
            _ => out.refuse("Scan the location, or type its check code"),
        }
    }

    fn key_pick(
        &mut self,
        task_id: u64,
        batch: Batch,
        typed: Option<u32>,
        key: Key,
        out: &mut Out,
    ) {
        let Some(t) = self.task(task_id).cloned() else {
            return;
        };
        let remaining = t.task.remaining();
        match key {
            Key::Digit(d) => {
                if t.task.qty_entry != QtyEntry::Typed || t.task.capture.serial {
                    return out.refuse("Scan each unit: typing a quantity is off for this item");
                }
                if batch.count == 0 && typed.is_none() {
                    return out.refuse("Scan the item once, then type the quantity");
                }
                let v = typed
                    .unwrap_or(0)
                    .saturating_mul(10)
                    .saturating_add(u32::from(d % 10));
                self.step = Step::Pick {
                    task_id,
                    batch,
                    typed: Some(v),
                };
                out.outcome = "typing quantity".into();
                out.show(screens::quantity("Quantity", v, remaining));
            }
            Key::Enter => match typed {
                Some(v) if v > remaining => {
                    self.step = Step::Pick {
                        task_id,
                        batch,
                        typed: None,
                    };
                    out.refuse(&format!("Too many: {remaining} left to pick, typed {v}"));
                }
                Some(0) => {
                    self.step = Step::Pick {
                        task_id,
                        batch,
                        typed: None,
                    };
                    out.refuse("Quantity 0: use F1 to short-pick");
                }
                Some(v) => {
                    let batch = Batch { count: v, ..batch };
                    self.accept(task_id, batch, format!("typed quantity {v}"), out);
                }
                None => self.confirm(&t, batch, out),
            },
            Key::Clear | Key::Back => {
                self.step = Step::Pick {
                    task_id,
                    batch,
                    typed: None,
                };
                out.outcome = "cleared".into();
                out.show(self.step_screen());
            }
            // Every unit still to pick is in hand: that is a pick, not a short one (the
            // store would refuse it as short).
            Key::F(1) if batch.count >= remaining => {
                out.refuse(&format!("All {remaining} in hand: Enter to confirm"))
            }
            Key::F(1) => self.open_reasons(task_id, batch, true, out),
            Key::F(2) if batch.count > 0 => {
                out.refuse("Confirm or short the units in hand before skipping")
            }
            Key::F(2) => self.persist(Command::Skip { task_id }, out),
            Key::F(3) if batch.count > 0 => out.refuse("Confirm the units in hand first"),
            Key::F(3) => self.undo(out),
            _ => out.refuse("Scan the item, Enter to confirm, F1 short, F2 skip"),
        }
    }

    fn confirm(&mut self, t: &Open, batch: Batch, out: &mut Out) {
        let need = self.need(t, &batch);
        let task_id = t.task.task_id;
        let screen = screens::need(need, t, &batch);
        match need {
            Need::Item => out.attention(screen, "asked to scan the item"),
            Need::Lot | Need::Serial | Need::Expiry | Need::Tote => {
                out.attention(screen, &format!("asked for {need:?}"))
            }
            Need::More | Need::Confirm => {
                let missing = batch.item.check();
                if let Some(e) = missing.first() {
                    return out.refuse(&format!("Label incomplete: {e}"));
                }
                self.step = Step::Pick {
                    task_id,
                    batch: batch.clone(),
                    typed: None,
                };
                let units = units_of(t, &batch);
                self.persist(Command::ConfirmPick { task_id, units }, out);
            }
        }
    }

    fn open_reasons(&mut self, task_id: u64, batch: Batch, at_location: bool, out: &mut Out) {
        self.step = Step::Reasons {
            task_id,
            batch,
            selected: 0,
            at_location,
        };
        out.outcome = "short-pick reasons shown".into();
        out.show(self.step_screen());
    }

    fn key_reasons(
        &mut self,
        task_id: u64,
        batch: Batch,
        selected: usize,
        at_location: bool,
        key: Key,
        out: &mut Out,
    ) {
        let n = REASONS.len();
        let selected = match key {
            Key::Up => (selected + n - 1) % n,
            Key::Down => (selected + 1) % n,
            Key::Digit(d) if (1..=n).contains(&usize::from(d)) => usize::from(d) - 1,
            Key::Enter => {
                let Some(t) = self.task(task_id).cloned() else {
                    return;
                };
                let remaining = t.task.remaining();
                if batch.count >= remaining {
                    // A new wave version left no more to pick than is in hand.
                    self.step = Step::Pick {
                        task_id,
                        batch,
                        typed: None,
                    };
                    return out.refuse(&format!("All {remaining} in hand: Enter to confirm"));
                }
                let reason = REASONS[selected.min(n - 1)].0;
                let units = units_of(&t, &batch);
                return self.persist(
                    Command::ShortPick {
                        task_id,
                        units,
                        reason,
                    },
                    out,
                );
            }
            Key::Back => {
                self.step = if at_location {
                    Step::Pick {
                        task_id,
                        batch,
                        typed: None,
                    }
                } else {
                    Step::GoTo {
                        task_id,
                        typed: None,
                    }
                };
                out.outcome = "short-pick cancelled".into();
                out.show(self.step_screen());
                return;
            }
            _ => return out.refuse("Up/Down to choose a reason, Enter to short-pick, Back"),
        };
        self.step = Step::Reasons {
            task_id,
            batch,
            selected,
            at_location,
        };
        out.outcome = format!("reason {selected} highlighted");
        out.show(self.step_screen());
    }

    fn undo(&mut self, out: &mut Out) {
        match self.last_confirm {
            Some((task_id, qty)) => self.persist(Command::UndoPick { task_id, qty }, out),
            None => out.refuse("Nothing to undo"),
        }
    }

    // ----- task updates -----

    /// The store's pick path. The store is the truth for what is picked and asked for:
    /// a task whose picked units reach what is asked closes (a new wave version asked
    /// for no more), and any surplus goes back; a closed task the store asks more of
    /// reopens; units in hand beyond what is still to pick go back (no event); a put-back
    /// the store asks for is asked of the picker once, however often it is handed in.
    fn on_path(&mut self, path: Path, out: &mut Out) {
        if self.pending.is_some() {
            // The pending command may change the same tasks: applied once it is answered.
            self.deferred_path = Some(path);
            out.outcome = "task update: after the pending save".into();
            return;
        }
        let Path {
            tasks,
            more,
            len,
            put_backs,
            withdrawn,
        } = path;
        // Work taken away, with or without units to put back, in task order (the order
        // the put-backs are then asked in).
        let mut surpluses = Vec::new();
        let mut taken: Vec<(u64, Withdrawal, Option<PickTask>)> = withdrawn
            .into_iter()
            .map(|(task_id, why)| (task_id, why, None))
            .collect();
        for (task, owed) in put_backs {
            match owed {
                Owed::Withdrawn(why) => taken.push((task.task_id, why, Some(task))),
                Owed::Surplus => surpluses.push(task),
            }
        }
        taken.sort_by_key(|(task_id, ..)| *task_id);
        let mut notes = Vec::new();
        for (task_id, why, task) in taken {
            self.withdraw(task_id, why, task.as_ref(), out);
            notes.push(std::mem::take(&mut out.outcome));
        }
        let listed: Vec<&PickTask> = tasks.iter().chain(&surpluses).collect();
        let gone: Vec<u64> = self
            .open
            .iter()
            .map(|o| o.task.task_id)
            .filter(|id| !listed.iter().any(|t| t.task_id == *id))
            .collect();
        // A surplus the store no longer asks for is not put back (units in hand still are).
        for job in &mut self.put_backs {
            let surplus = listed
                .iter()
                .find(|t| t.task_id == job.task_id)
                .map_or(0, |t| t.picked.saturating_sub(t.qty));
            if job.kind == PutBackKind::Surplus && surplus == 0 {
                job.kind = PutBackKind::InHand;
                job.confirmed = 0;
            }
        }
        self.put_backs.retain(|j| j.qty() > 0);
        let mut moved = false;
        for task in tasks.into_iter().chain(surpluses) {
            moved |= self.update_task(task);
        }
        self.more = more;
        notes.push(format!("{} open tasks", self.open.len()));
        out.outcome = notes.join("; ");
        let current = self
            .step
            .task_id()
            .filter(|_| !matches!(self.step, Step::PutBack(_)));
        for id in gone {
            if current != Some(id) {
                // Beyond the window, or off the path: nothing the picker must hear of.
                self.open.retain(|o| o.task.task_id != id);
                self.forget_undo(id);
            } else if self.task(id).is_some_and(|o| o.task.picked > 0) {
                moved |= self.finish(id);
            } else {
                self.withdraw(id, Withdrawal::Revoked, None, out);
            }
        }
        // The store's count already leaves out what closed or left the path above.
        if let Some(n) = len {
            self.path_len = n;
        }
        let idle = matches!(self.step, Step::NoTasks | Step::WaveDone | Step::PutBack(_));
        if self.operator.is_some() && (moved || idle) {
            let before = self.step.clone();
            self.step = self.next_step();
            if moved || self.step != before {
                out.attention(self.step_screen(), &out.outcome.clone());
            }
        }
    }

    /// Takes one task of a store update in; true when the task under the picker closed
    /// or its units in hand had to go back (the step moves on).
    fn update_task(&mut self, task: PickTask) -> bool {
        let id = task.task_id;
        if !task.undo_allowed {
            self.forget_undo(id);
        }
        let surplus = task.picked.saturating_sub(task.qty);
        if let Some(closed) = self.last_closed.take_if(|c| c.open.task.task_id == id) {
            if surplus > 0 {
                let mut closed = closed;
                closed.open.task = task.clone();
                self.last_closed = Some(closed);
                self.queue_put_back(&task, PutBackKind::Surplus, surplus, 0);
                self.forget_undo(id);
            } else if task.remaining() > 0 {
                self.done.add(closed.short, -1);
                let mut open = closed.open;
                open.task = task;
                self.enter_path(open);
            } else {
                self.last_closed = Some(closed);
            }
            return false;
        }
        let current = self.step.task_id() == Some(id) && !matches!(self.step, Step::PutBack(_));
        let in_hand = if current {
            self.step.units_in_hand()
        } else {
            0
        };
        let Some(i) = self.open.iter().position(|o| o.task.task_id == id) else {
            if task.remaining() == 0 {
                // Closed in the store with units over: only the surplus is the picker's.
                self.queue_put_back(&task, PutBackKind::Surplus, surplus, 0);
            } else {
                self.open.push(Open {
                    task,
                    tote: None,
                    serials: Vec::new(),
                });
            }
            return false;
        };
        if task.remaining() == 0 {
            let mut open = self.open.remove(i);
            open.task = task.clone();
            self.close(open, false);
            self.queue_put_back(&task, PutBackKind::Surplus, surplus, in_hand);
            self.forget_undo(id);
            return current;
        }
        self.open[i].task = task.clone();
        if in_hand > task.remaining() {
            self.queue_put_back(&task, PutBackKind::InHand, 0, in_hand);
            return true;
        }
        false
    }

    /// A task the store no longer lists although it was not taken away: it closed there
    /// (a new wave version asked for exactly what was picked). Units in hand go back.
    fn finish(&mut self, task_id: u64) -> bool {
        let current = self.step.task_id() == Some(task_id);
        let in_hand = if current {
            self.step.units_in_hand()
        } else {
            0
        };
        let Some(i) = self.open.iter().position(|o| o.task.task_id == task_id) else {
            return false;
        };
        let open = self.open.remove(i);
        self.queue_put_back(&open.task, PutBackKind::InHand, 0, in_hand);
        self.close(open, false);
        self.forget_undo(task_id);
        current
    }

    /// A task left the path, done on this device: counted, and kept for an undo.
    fn close(&mut self, open: Open, short: bool) {
        self.done.add(short, 1);
        self.path_len = self.path_len.saturating_sub(1);
        self.last_closed = Some(Closed { open, short });
    }

    /// A closed task is back on the path (an undo, or a new version asking more).
    fn enter_path(&mut self, open: Open) {
        self.path_len = self.path_len.saturating_add(1);
        self.open.push(open);
    }

    /// Tasks on the path now: the window when nothing follows it, else the last count.
    fn path_left(&self) -> u32 {
        let window = u32::try_from(self.open.len()).unwrap_or(u32::MAX);
        if self.more {
            self.path_len.max(window)
        } else {
            window
        }
    }

    /// Queues a put-back for a task, merged with any it had: units in hand add up; the
    /// store's units are what it asks for now (units in hand alone change nothing there).
    fn queue_put_back(&mut self, task: &PickTask, kind: PutBackKind, confirmed: u32, in_hand: u32) {
        let mut job = PutBackJob {
            task_id: task.task_id,
            kind,
            confirmed,
            in_hand,
            location: task.location.clone(),
            description: task.description.clone(),
        };
        if let Some(i) = self
            .put_backs
            .iter()
            .position(|j| j.task_id == task.task_id)
            && let Some(old) = self.put_backs.remove(i)
        {
            job.in_hand += old.in_hand;
            if kind == PutBackKind::InHand || old.kind == PutBackKind::Withdrawn {
                job.kind = old.kind;
                job.confirmed = old.confirmed;
            }
        }
        if job.qty() > 0 {
            self.put_backs.push_back(job);
        }
    }

    fn forget_undo(&mut self, task_id: u64) {
        if self.last_confirm.is_some_and(|(id, _)| id == task_id) {
            self.last_confirm = None;
        }
    }

    /// The picker says the units are back: the store records it where the OMS is told,
    /// else it is done at once.
    fn put_back_done(&mut self, job: &PutBackJob, out: &mut Out) {
        if job.kind != PutBackKind::InHand {
            return self.persist(put_back_command(job), out);
        }
        self.put_backs.retain(|j| j.task_id != job.task_id);
        self.step = self.next_step();
        out.outcome = format!("put back {} units in hand", job.in_hand);
        out.effects.push(Effect::Beep(Beep::Ok));
        out.show(self.step_screen());
    }

    fn on_withdrawn(&mut self, task_id: u64, why: Withdrawal, out: &mut Out) {
        self.withdraw(task_id, why, None, out);
    }

    /// Takes a task away: its units go back, those the store has as picked (`store`: the
    /// task as the store lists it for the put-back, when it does) and those in hand. A
    /// task the workflow does not hold is asked back once, when the store lists it.
    fn withdraw(&mut self, task_id: u64, why: Withdrawal, store: Option<&PickTask>, out: &mut Out) {
        if self.pending.is_some() {
            // Decided once the store has answered: the pending command may add units.
            self.deferred.push((task_id, why));
            out.outcome = format!("task {task_id} {why:?}: after the pending save");
            return;
        }
        let held = if let Some(i) = self.open.iter().position(|o| o.task.task_id == task_id) {
            self.path_len = self.path_len.saturating_sub(1);
            Some(self.open.remove(i).task)
        } else {
            self.last_closed
                .take_if(|c| c.open.task.task_id == task_id)
                .map(|c| c.open.task)
        };
        let asked = self.put_backs.iter().any(|j| j.task_id == task_id);
        let task = match (held, store) {
            (Some(t), _) => t,
            (None, Some(t)) if !asked => t.clone(),
            (None, Some(_)) => {
                out.outcome = format!("task {task_id} {why:?}: put-back already asked for");
                return;
            }
            (None, None) => {
                out.outcome = format!("task {task_id} {why:?}: not on this device");
                return;
            }
        };
        self.forget_undo(task_id);
        let current = self.step.task_id() == Some(task_id);
        let units = if current {
            self.step.units_in_hand()
        } else {
            0
        };
        let confirmed = store.map_or(task.picked, |t| t.picked);
        self.queue_put_back(&task, PutBackKind::Withdrawn, confirmed, units);
        let in_hand = self
            .put_backs
            .iter()
            .find(|j| j.task_id == task_id)
            .map_or(0, PutBackJob::qty);
        out.outcome = format!("task {task_id} {why:?}: {in_hand} to put back");
        let idle = matches!(
            self.step,
            Step::NoTasks | Step::WaveDone | Step::GoTo { typed: None, .. }
        );
        if self.operator.is_some() && (current || (idle && in_hand > 0)) {
            self.step = self.next_step();
            let why_text = match why {
                Withdrawal::Revoked => "Task withdrawn",
                Withdrawal::OrderCancelled => "Order cancelled",
            };
            if in_hand == 0 {
                out.show(screens::message(
                    floorhand_protocol::link::Level::Warning,
                    &format!("{why_text}: {}", task.description),
                ));
            }
            out.attention(self.step_screen(), &out.outcome.clone());
        }
    }

    // ----- store answers -----

    fn on_committed(&mut self, id: u64, out: &mut Out) {
        let Some(pending) = self.pending.take_if(|p| p.id == id) else {
            out.outcome = format!("commit {id} ignored: not the pending command");
            return;
        };
        out.outcome = format!("committed: {:?}", pending.command);
        match pending.command {
            Command::Login { operator } => {
                self.operator = Some(operator);
                self.step = self.next_step();
            }
            Command::Logout { .. } => {
                self.operator = None;
                self.step = Step::LoggedOut;
            }
            Command::StartTask { task_id } => {
                self.step = Step::Pick {
                    task_id,
                    batch: Batch::default(),
                    typed: None,
                };
            }
            Command::ConfirmPick { task_id, units } => {
                self.last_confirm = Some((task_id, units.qty));
                if let Some(o) = self.task_mut(task_id) {
                    o.task.picked += units.qty;
                    o.serials.extend(units.serial);
                }
                self.close_if_done(task_id);
            }
            Command::ShortPick { task_id, units, .. } => {
                self.last_confirm = None;
                if let Some(i) = self.open.iter().position(|o| o.task.task_id == task_id) {
                    let mut open = self.open.remove(i);
                    open.task.picked += units.qty;
                    self.close(open, true);
                }
                self.step = self.next_step();
            }
            Command::Skip { task_id } => {
                // After every task held, as the store puts it after every task skipped
                // before (a task beyond the window comes before it too, and the next
                // window will say so).
                let rank = self.open.iter().map(|o| o.task.skip_rank).max();
                if let Some(o) = self.task_mut(task_id) {
                    o.task.skip_rank = rank.unwrap_or(0).saturating_add(1);
                }
                self.step = self.next_step();
            }
            Command::UndoPick { task_id, qty } => {
                self.last_confirm = None;
                if let Some(closed) = self.last_closed.take_if(|c| c.open.task.task_id == task_id) {
                    self.done.add(closed.short, -1);
                    self.enter_path(closed.open);
                }
                if let Some(o) = self.task_mut(task_id) {
                    o.task.picked = o.task.picked.saturating_sub(qty);
                }
                self.step = Step::GoTo {
                    task_id,
                    typed: None,
                };
            }
            Command::PutBack { task_id, .. } => {
                self.put_backs.retain(|j| j.task_id != task_id);
                // A surplus went back: the closed task now holds what was asked.
                if let Some(c) = self
                    .last_closed
                    .as_mut()
                    .filter(|c| c.open.task.task_id == task_id)
                {
                    c.open.task.picked = c.open.task.picked.min(c.open.task.qty);
                }
                self.step = self.next_step();
            }
        }
        out.effects.push(Effect::Beep(Beep::Ok));
        out.show(self.step_screen());
        self.settle(out);
    }

    fn close_if_done(&mut self, task_id: u64) {
        let Some(i) = self.open.iter().position(|o| o.task.task_id == task_id) else {
            return;
        };
        if self.open[i].task.remaining() == 0 {
            let open = self.open.remove(i);
            self.close(open, false);
            self.step = self.next_step();
        } else {
            self.step = Step::Pick {
                task_id,
                batch: Batch::default(),
                typed: None,
            };
        }
    }

    fn on_failed(&mut self, id: u64, reason: &str, out: &mut Out) {
        let Some(pending) = self.pending.take_if(|p| p.id == id) else {
            out.outcome = format!("failure {id} ignored: not the pending command");
            return;
        };
        match pending.command {
            // The picker is left at the location prompt: the screen (48 characters) names
            // the keys that lead on; the store's reason goes to the audit line.
            Command::StartTask { .. } => out.refuse("Not started: F2 skip, F1 short, or rescan"),
            _ => out.refuse(&format!("Not saved: {reason}")),
        }
        out.outcome = format!("refused: not saved: {reason}");
        self.settle(out);
    }

    /// Applies withdrawals that arrived while a command was pending.
    fn settle(&mut self, out: &mut Out) {
        for (task_id, why) in std::mem::take(&mut self.deferred) {
            self.withdraw(task_id, why, None, out);
        }
        if let Some(path) = self.deferred_path.take() {
            self.on_path(path, out);
        }
    }

    // ----- ordering -----

    /// Pick-path order (the store's `tasks_path` index orders the same): skipped tasks
    /// last, in the order they were skipped, then priority (high first), the location's
    /// pick sequence, the location code, and the task id for a stable order.
    fn next_step(&self) -> Step {
        if let Some(job) = self.put_backs.front() {
            return Step::PutBack(job.clone());
        }
        let next = self.open.iter().min_by(|a, b| {
            let key = |o: &Open| {
                (
                    o.task.skip_rank,
                    std::cmp::Reverse(o.task.priority),
                    o.task.pick_seq,
                    o.task.task_id,
                )
            };
            key(a)
                .0
                .cmp(&key(b).0)
                .then(key(a).1.cmp(&key(b).1))
                .then(key(a).2.cmp(&key(b).2))
                .then(a.task.location.cmp(&b.task.location))
                .then(key(a).3.cmp(&key(b).3))
        });
        match next {
            Some(o) => Step::GoTo {
                task_id: o.task.task_id,
                typed: None,
            },
            None if self.done.total() == 0 => Step::NoTasks,
            None => Step::WaveDone,
        }
    }

    fn task(&self, task_id: u64) -> Option<&Open> {
        self.open.iter().find(|o| o.task.task_id == task_id)
    }

    fn task_mut(&mut self, task_id: u64) -> Option<&mut Open> {
        self.open.iter_mut().find(|o| o.task.task_id == task_id)
    }
}

fn put_back_command(job: &PutBackJob) -> Command {
    Command::PutBack {
        task_id: job.task_id,
        qty: job.qty(),
        location: job.location.clone(),
    }
}

fn units_of(t: &Open, batch: &Batch) -> Units {
    Units {
        qty: batch.count,
        lot: batch.lot.clone(),
        serial: batch.serial.clone(),
        expiry: batch.expiry,
        tote: t.tote.clone(),
    }
}

/// Takes lot, serial and expiry from a GS1 scan where the task asks for them and the batch
/// has none yet.
fn take_captures(batch: &mut Batch, bc: &Barcode, capture: Capture) {
    if capture.lot && batch.lot.is_none() {
        batch.lot = bc.lot().map(str::to_string);
    }
    if capture.serial && batch.serial.is_none() {
        batch.serial = bc.serial().map(str::to_string);
    }
    if capture.expiry && batch.expiry.is_none() {
        batch.expiry = bc.expiry();
    }
}

/// A scan whose lot or expiry differs from the units already counted cannot join them.
fn capture_conflict(batch: &Batch, bc: &Barcode) -> Option<String> {
    if batch.count == 0 {
        return None;
    }
    if let (Some(a), Some(b)) = (batch.lot.as_deref(), bc.lot())
        && a != b
    {
        // Kept within the screen's 48 characters; the batch's own lot is in the audit.
        return Some(format!("Other lot {b}: confirm these first"));
    }
    if let (Some(a), Some(b)) = (batch.expiry, bc.expiry())
        && a != b
    {
        return Some(format!("Other expiry {}: confirm these first", b.iso()));
    }
    None
}

fn describe(input: &Input) -> String {
    match input {
        Input::Scan { raw, .. } => format!("scan {}", printable(raw)),
        Input::Key(k) => format!("key {k:?}"),
        Input::Tasks(t) => format!("tasks ({})", t.len()),
        Input::Path(p) => format!(
            "path ({} tasks{}, {} put-backs, {} withdrawn)",
            p.tasks.len(),
            if p.more { " and more" } else { "" },
            p.put_backs.len(),
            p.withdrawn.len()
        ),
        Input::Withdrawn { task_id, why } => format!("task {task_id} {why:?}"),
        Input::Committed { id } => format!("committed {id}"),
        Input::Failed { id, reason } => format!("failed {id}: {reason}"),
    }
}
