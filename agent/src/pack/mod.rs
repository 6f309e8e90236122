//! The pack station workflow: a pure state machine, `handle(now, input) -> effects`.
//!
//! The packer scans an order or tote; the runtime looks the order up and feeds it in.
//! Every item scan is checked against the order (not in the order, too many, a barcode that
//! is not an item are refused with an error screen and beep); lot, serial and expiry are
//! captured where the order line asks. Closing a carton asks for its weight (typed, or from
//! a scale) and checks it against the expected weight; then the runtime allocates an SSCC
//! serial from its counter, and the carton is committed together with its label job. An
//! incomplete order closes only with a reason (short ship). A cancellation stops the
//! packer and tells them to set the carton aside. A station built
//! [`Packer::with_login`] refuses packing until a badge scan logs the packer in.
//!
//! Refused scans (an error beep answering a scan, or the lookup a scan started) are also
//! reported to the OMS by class as [`Effect::ScanRefused`], at most one per class per
//! second with a count ([`crate::pick::refused`]); refused key presses are not. The runtime
//! asks [`Packer::refusals`] for those due every second while any wait, and for all of
//! them when it stops.
//!
//! Invariants: no clock (time comes in as `now`), no I/O, no SQL, no tokio. Every durable
//! fact leaves as [`Effect::Commit`]; the ok-beep for it comes only after the runtime feeds
//! back [`Input::Committed`]. The runtime answers commits in the order they were emitted.
//! Item scans are held in memory until the carton closes: after a restart the open carton
//! is packed again (closed cartons, their SSCCs and labels are in the store).

pub mod scan;

use std::collections::VecDeque;

use floorhand_protocol::link::{Beep, Key, Level, MenuReason, ScanTarget, Screen, fit};
use floorhand_protocol::oms::Address;

use crate::label::{self, LabelData, Shipment, Sscc, Template};
pub use crate::pick::Capture;
use crate::pick::refused::{Refusal, RefusalReason, Refusals};
use scan::Scanned;

/// Station settings.
#[derive(Debug, Clone)]
pub struct PackConfig {
    /// The site's GS1 company prefix.
    pub company_prefix: String,
    /// SSCC extension digit.
    pub extension: u8,
    /// Empty carton weight in grams, added to the expected weight.
    pub tare_g: u32,
    /// Allowed weight deviation, percent of the expected weight.
    pub tolerance_pct: u32,
    /// Smallest allowed deviation in grams (light cartons, scale resolution).
    pub tolerance_min_g: u32,
    /// The label template (built-in or the site's file).
    pub template: Template,
}

/// An order to pack, as the workflow needs it. The runtime converts the store's copy at
/// the station's edge (`station::pack`), as it does `pick::PickTask`; the addresses keep
/// the contract's `Address`, which the label prints field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Order id.
    pub order_id: String,
    /// Lines to verify.
    pub lines: Vec<Line>,
    /// Sender.
    pub ship_from: Address,
    /// Recipient.
    pub ship_to: Address,
    /// Carrier, e.g. `DHL`.
    pub carrier: String,
    /// Carrier service.
    pub service: String,
    /// Carrier tracking number.
    pub tracking: String,
}

impl Order {
    /// What the label prints of this order.
    pub fn shipment(&self) -> Shipment<'_> {
        Shipment {
            order_id: &self.order_id,
            ship_from: &self.ship_from,
            ship_to: &self.ship_to,
            carrier: &self.carrier,
            service: &self.service,
            tracking: &self.tracking,
        }
    }
}

/// A line of an [`Order`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Line of the order.
    pub order_line: u32,
    /// GTINs the item may be scanned by.
    pub gtins: Vec<LineGtin>,
    /// The OMS's item number, shown to the packer.
    pub sku: String,
    /// Units to pack.
    pub qty: u32,
    /// What must be captured per unit.
    pub capture: Capture,
    /// Expected weight of one unit in grams, 0 if unknown.
    pub unit_weight_g: u32,
}

/// A GTIN a line's item may be scanned by, as the OMS wrote it (matched byte for byte),
/// and how many units one scan counts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineGtin {
    /// The GTIN.
    pub gtin: String,
    /// Units per scan: 1 for the each, 12 for a case of twelve.
    pub pack_qty: u32,
}

/// One unit (or pack of units) scanned into a carton.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    /// Order line.
    pub order_line: u32,
    /// GTIN scanned.
    pub gtin: String,
    /// Units this scan counted for.
    pub qty: u32,
    /// Lot, where captured.
    pub lot: Option<String>,
    /// Serial, where captured.
    pub serial: Option<String>,
    /// Expiry (YYMMDD), where captured.
    pub expiry: Option<String>,
}

/// A durable fact for the runtime to commit, then answer with [`Input::Committed`] (or
/// [`Input::CommitFailed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commit {
    /// In one transaction: the carton with its contents, a `CartonClosed` event, a
    /// `PackVerified` event when `order_complete`, and a print job for `label`. Answer
    /// `Committed { job_id: Some(id) }`.
    CartonClosed {
        /// Time.
        at: u64,
        /// Order.
        order_id: String,
        /// Carton number, from 1.
        carton_no: u16,
        /// The carton's SSCC.
        sscc: String,
        /// Weight in grams.
        weight_g: u32,
        /// Why the order ships incomplete, on its last carton.
        short_ship: Option<String>,
        /// Every line of the order is packed.
        order_complete: bool,
        /// What is in the carton.
        contents: Vec<Packed>,
        /// The label's ZPL.
        label: Vec<u8>,
    },
    /// An incomplete order closed with no open carton to carry the reason: report it (as
    /// a `Conflict` event with task 0).
    ShortShipped {
        /// Time.
        at: u64,
        /// Order.
        order_id: String,
        /// Reason and what is missing.
        detail: String,
    },
    /// A new print job with the stored label of the carton `sscc`. Answer
    /// `Committed { job_id: Some(id) }`, or `CommitFailed` if no label is stored for it.
    Reprint {
        /// Time.
        at: u64,
        /// The carton.
        sscc: String,
    },
    /// A `LabelPrinted` event.
    LabelPrinted {
        /// Time.
        at: u64,
        /// The carton.
        sscc: String,
        /// The job.
        job_id: u64,
    },
    /// The operator logged in with their badge: a session and a `LoggedIn` event.
    LoggedIn {
        /// Time.
        at: u64,
        /// Operator number from the badge.
        operator: u32,
        /// The badge as scanned.
        badge: String,
    },
    /// The operator logged out (scanned their badge again): a `LoggedOut` event.
    LoggedOut {
        /// Time.
        at: u64,
        /// Operator number.
        operator: u32,
    },
    /// A `PrintFailed` event.
    PrintFailed {
        /// Time.
        at: u64,
        /// The carton.
        sscc: String,
        /// The job.
        job_id: u64,
        /// What the printer reported.
        fault: String,
    },
}

/// What comes in: the packer's scans and keys, and the runtime's answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A barcode's bytes as the scanner sent them (AIM prefix and GS bytes kept), read
    /// with `barcode::parse` as the pick station reads them: bytes that are not text are
    /// an unreadable label, never text with replacement characters.
    Scan(Vec<u8>),
    /// A key on the station's keypad.
    Key(Key),
    /// A stable reading from the scale, in grams.
    ScaleWeight(u32),
    /// Answer to [`Effect::LookUpOrder`].
    Order(Box<Order>),
    /// Answer to [`Effect::LookUpOrder`]: no open order for that code.
    OrderNotFound(String),
    /// Answer to [`Effect::AllocateSscc`]: the next value of the never-repeating counter.
    SsccSerial(u64),
    /// The oldest outstanding [`Effect::Commit`] is committed.
    Committed {
        /// The print job it created, if any.
        job_id: Option<u64>,
    },
    /// The oldest outstanding [`Effect::Commit`] failed; nothing of it is stored.
    CommitFailed(String),
    /// The printer finished a job: `fault` is `None` when it printed.
    PrintReport {
        /// The job.
        job_id: u64,
        /// What the printer reported, if it failed.
        fault: Option<String>,
    },
    /// The OMS cancelled an order.
    OrderCancelled(String),
}

/// What the runtime must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Show a screen.
    Show(Screen),
    /// Sound the buzzer.
    Beep(Beep),
    /// Find the open pack order by order id or tote, answer with `Order`/`OrderNotFound`.
    LookUpOrder(String),
    /// Take the next SSCC serial from the store's counter (committed before answering),
    /// answer with `SsccSerial`.
    AllocateSscc,
    /// Commit this, then answer `Committed`/`CommitFailed`.
    Commit(Commit),
    /// Report refused scans to the OMS: one `ScanRefused` event in the outbox (not
    /// answered; at most one per class per second).
    ScanRefused(Refusal),
}

impl From<Refusal> for Effect {
    fn from(r: Refusal) -> Self {
        Effect::ScanRefused(r)
    }
}

/// Keys on the pack station.
pub mod keys {
    /// Close the carton.
    pub const CLOSE: u8 = 1;
    /// Close the order incomplete (short ship).
    pub const SHORT: u8 = 2;
    /// Reprint the last label.
    pub const REPRINT: u8 = 3;
}

const REASONS: [MenuReason; 4] = [
    MenuReason::NotEnough,
    MenuReason::Damaged,
    MenuReason::WrongItem,
    MenuReason::LocationEmpty,
];

fn reason_text(r: MenuReason) -> &'static str {
    match r {
        MenuReason::NotEnough => "not enough",
        MenuReason::Damaged => "damaged",
        MenuReason::WrongItem => "wrong item",
        MenuReason::LocationEmpty => "missing",
    }
}

/// Where the packer is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    /// Waiting for an order or tote scan.
    Idle,
    /// The runtime is looking up `code`.
    LookingUp(String),
    /// Scanning items into the open carton.
    Packing,
    /// An item scanned; its lot/serial/expiry still to capture.
    Capture(Packed, Need),
    /// Typing the carton weight.
    Weight { typed: u32, short: Option<String> },
    /// The weight is outside the tolerance: recheck.
    Recheck {
        weight_g: u32,
        short: Option<String>,
    },
    /// Choosing the short-ship reason.
    ShortReason { selected: u8 },
    /// Waiting for an SSCC serial.
    Allocating {
        weight_g: u32,
        short: Option<String>,
    },
    /// Waiting for a commit that ends or advances the order.
    Saving,
    /// The order was cancelled: the packer sets it aside and presses Enter.
    Cancelled,
}

/// What a capture prompt still needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Lot,
    Serial,
    Expiry,
}

/// The order being packed.
#[derive(Debug, Clone)]
struct Active {
    order: Order,
    /// Units packed per line, over all cartons.
    packed: Vec<u32>,
    /// The open carton.
    carton: Vec<Packed>,
    carton_no: u16,
    /// Serials packed in this order, to refuse a duplicate.
    serials: Vec<String>,
}

impl Active {
    fn complete(&self) -> bool {
        self.order
            .lines
            .iter()
            .zip(&self.packed)
            .all(|(l, p)| *p >= l.qty)
    }

    fn missing(&self) -> String {
        self.order
            .lines
            .iter()
            .zip(&self.packed)
            .filter(|(l, p)| **p < l.qty)
            .map(|(l, p)| format!("{} {}/{}", l.sku, p, l.qty))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Expected carton weight, or `None` if an item's weight is unknown.
    fn expected_weight(&self, tare_g: u32) -> Option<u32> {
        let mut total = tare_g;
        for p in &self.carton {
            let line = self
                .order
                .lines
                .iter()
                .find(|l| l.order_line == p.order_line)?;
            if line.unit_weight_g == 0 {
                return None;
            }
            total = total.saturating_add(line.unit_weight_g.saturating_mul(p.qty));
        }
        Some(total)
    }
}

/// What an outstanding commit was for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Carton {
        sscc: String,
        carton_no: u16,
        ends_order: bool,
    },
    ShortShipped,
    Reprint(String),
    Report,
    Login(u32),
    Logout,
}

/// The pack station's state.
#[derive(Debug)]
pub struct Packer {
    config: PackConfig,
    stage: Stage,
    active: Option<Active>,
    pending: VecDeque<Pending>,
    /// Print jobs of this station: job id and SSCC.
    jobs: Vec<(u64, String)>,
    last_sscc: Option<String>,
    /// Orders cancelled recently, so a late lookup answer for one is refused.
    cancelled: VecDeque<String>,
    /// The scale's last stable weight, while something is on it.
    scale_g: Option<u32>,
    /// Badge prefix, when packing needs a login ([`Packer::with_login`]).
    badge_prefix: Option<String>,
    /// The logged-in operator.
    operator: Option<u32>,
    /// The class of the refusal the input being handled met, for a scan's report.
    refusal: Option<RefusalReason>,
    refusals: Refusals,
}

fn show(screen: Screen) -> Effect {
    Effect::Show(screen)
}

fn message(level: Level, text: &str) -> Effect {
    show(Screen::Message {
        level,
        text: fit(text),
    })
}

fn refuse(text: &str) -> Vec<Effect> {
    vec![message(Level::Error, text), Effect::Beep(Beep::Error)]
}

/// Refuses a label that cannot be read: the AI and the problem fit the screen; the byte
/// offset is left out, as at the pick station.
fn refuse_label(e: crate::barcode::BarcodeError) -> Vec<Effect> {
    let short = crate::barcode::BarcodeError { pos: None, ..e };
    refuse(&format!("Bad label: {short}"))
}

fn scan_prompt(target: ScanTarget, hint: &str) -> Effect {
    show(Screen::Scan {
        target,
        hint: fit(hint),
    })
}

impl Packer {
    /// A station waiting for its first order.
    pub fn new(config: PackConfig) -> Packer {
        Packer {
            config,
            stage: Stage::Idle,
            active: None,
            pending: VecDeque::new(),
            jobs: Vec::new(),
            last_sscc: None,
            cancelled: VecDeque::new(),
            scale_g: None,
            badge_prefix: None,
            operator: None,
            refusal: None,
            refusals: Refusals::new(1),
        }
    }

    /// Refuses, naming the class a refused scan is reported under.
    fn refuse_as(&mut self, reason: RefusalReason, text: &str) -> Vec<Effect> {
        self.refusal = Some(reason);
        refuse(text)
    }

    /// Refuses a label that cannot be read ([`refuse_label`]) as a bad barcode.
    fn refuse_bad_label(&mut self, e: crate::barcode::BarcodeError) -> Vec<Effect> {
        self.refusal = Some(RefusalReason::BadBarcode);
        refuse_label(e)
    }

    /// The refused scans counted and not reported yet: the runtime takes those due
    /// ([`Refusals::due`], `now` in Unix seconds) every second while any wait
    /// ([`Refusals::holding`]), and all of them ([`Refusals::flush`]) when it stops.
    pub fn refusals(&mut self) -> &mut Refusals {
        &mut self.refusals
    }

    /// A station where the packer logs in with a badge (`badge_prefix` then the operator
    /// number, read as the pick station reads it: [`crate::pick::badge_operator`]) before
    /// any packing scan; the same badge again logs out between orders. Without this, the
    /// station packs without a login and its events carry operator 0.
    pub fn with_login(mut self, badge_prefix: impl Into<String>) -> Packer {
        self.badge_prefix = Some(badge_prefix.into());
        self
    }

    /// The logged-in operator (`None` without a login).
    pub fn operator(&self) -> Option<u32> {
        self.operator
    }

    fn logged_out(&self) -> bool {
        self.badge_prefix.is_some() && self.operator.is_none()
    }

    /// The screen to show when the station starts.
    pub fn start(&self) -> Vec<Effect> {
        if self.logged_out() {
            return vec![scan_prompt(ScanTarget::Badge, "Scan your badge")];
        }
        vec![scan_prompt(ScanTarget::Order, "Scan order or tote")]
    }

    fn refuse_logged_out(&mut self) -> Vec<Effect> {
        let mut e = self.refuse_as(
            RefusalReason::NotLoggedIn,
            "Scan your badge to log in first",
        );
        e.extend(self.start());
        e
    }

    /// A badge scan: logs in, logs out (same badge, between orders), or is refused.
    fn badge(&mut self, now: u64, badge: &str, operator: u32) -> Vec<Effect> {
        if self
            .pending
            .iter()
            .any(|p| matches!(p, Pending::Login(_) | Pending::Logout))
        {
            return self.refuse_as(RefusalReason::Busy, "Saving... scan again");
        }
        match self.operator {
            None => {
                self.pending.push_back(Pending::Login(operator));
                vec![Effect::Commit(Commit::LoggedIn {
                    at: now,
                    operator,
                    badge: badge.to_string(),
                })]
            }
            Some(me) if me == operator => {
                if self.active.is_some() || self.stage != Stage::Idle {
                    return refuse("Finish this order before logging out");
                }
                self.pending.push_back(Pending::Logout);
                vec![Effect::Commit(Commit::LoggedOut { at: now, operator })]
            }
            Some(me) => self.refuse_as(
                RefusalReason::NotLoggedIn,
                &format!("Operator {me} is logged in: log out first"),
            ),
        }
    }

    /// Handles one input at time `now` (Unix seconds) and returns what to do.
    pub fn handle(&mut self, now: u64, input: Input) -> Vec<Effect> {
        // A scan, or the answer to the lookup a scan started.
        let scan = matches!(
            input,
            Input::Scan(_) | Input::Order(_) | Input::OrderNotFound(_)
        );
        self.refusal = None;
        let mut effects = self.on_input(now, input);
        let beep = effects.iter().position(|e| *e == Effect::Beep(Beep::Error));
        if scan && let Some(beep) = beep {
            let reason = self.refusal.take().unwrap_or(RefusalReason::Other);
            if let Some(r) = self.refusals.refused(now, reason, None) {
                // Right after the error beep: the screens that follow stay last.
                effects.insert(beep + 1, Effect::ScanRefused(r));
            }
        }
        effects.extend(self.refusals.due::<Effect>(now));
        effects
    }

    fn on_input(&mut self, now: u64, input: Input) -> Vec<Effect> {
        match input {
            Input::OrderCancelled(id) => self.cancel(id),
            Input::Committed { job_id } => self.committed(job_id),
            Input::CommitFailed(why) => self.commit_failed(&why),
            Input::PrintReport { job_id, fault } => self.print_report(now, job_id, fault),
            Input::Order(order) => self.order_found(*order),
            Input::OrderNotFound(code) => {
                if self.stage != Stage::LookingUp(code.clone()) {
                    return Vec::new();
                }
                self.stage = Stage::Idle;
                let mut e = self.refuse_as(
                    RefusalReason::NoTask,
                    &format!("No open order or tote {code}"),
                );
                e.push(scan_prompt(ScanTarget::Order, "Scan order or tote"));
                e
            }
            Input::SsccSerial(serial) => self.close_with_serial(now, serial),
            Input::Scan(raw) => self.scan(now, &raw),
            Input::Key(key) => self.key(now, key),
            Input::ScaleWeight(g) => {
                // Remembered in every stage: a carton weighed while it is packed is
                // weighed already when the packer closes it. 0 g: the scale is empty.
                self.scale_g = (g > 0).then_some(g);
                match &self.stage {
                    Stage::Weight { short, .. } if g > 0 => {
                        let short = short.clone();
                        self.check_weight(g, short)
                    }
                    // The same weight again is no news: only a new one is checked again.
                    Stage::Recheck { weight_g, short } if g > 0 && g != *weight_g => {
                        let short = short.clone();
                        self.check_weight(g, short)
                    }
                    _ => Vec::new(),
                }
            }
        }
    }

    fn cancel(&mut self, id: String) -> Vec<Effect> {
        if self.cancelled.len() >= 64 {
            self.cancelled.pop_front();
        }
        self.cancelled.push_back(id.clone());
        let Some(active) = &self.active else {
            return Vec::new();
        };
        if active.order.order_id != id {
            return Vec::new();
        }
        let closed = active.carton_no - 1;
        self.stage = Stage::Cancelled;
        self.scale_g = None;
        let text = if closed > 0 {
            format!("{id} CANCELLED: set all {} cartons aside", closed + 1)
        } else {
            format!("{id} CANCELLED: set carton aside")
        };
        vec![message(Level::Error, &text), Effect::Beep(Beep::Error)]
    }

    fn order_found(&mut self, order: Order) -> Vec<Effect> {
        if !matches!(self.stage, Stage::LookingUp(_)) {
            return Vec::new();
        }
        // A weight read before this order belongs to another carton.
        self.scale_g = None;
        if self.cancelled.contains(&order.order_id) {
            self.stage = Stage::Idle;
            let mut e = refuse(&format!("{} is cancelled: set it aside", order.order_id));
            e.push(scan_prompt(ScanTarget::Order, "Scan order or tote"));
            return e;
        }
        if order.lines.is_empty() {
            self.stage = Stage::Idle;
            return self.refuse_as(
                RefusalReason::NoTask,
                &format!("{} has nothing to pack", order.order_id),
            );
        }
        let packed = vec![0; order.lines.len()];
        let hint = format!("{} carton 1", order.order_id);
        self.active = Some(Active {
            order,
            packed,
            carton: Vec::new(),
            carton_no: 1,
            serials: Vec::new(),
        });
        self.stage = Stage::Packing;
        vec![Effect::Beep(Beep::Ok), scan_prompt(ScanTarget::Item, &hint)]
    }

    fn scan(&mut self, now: u64, raw: &[u8]) -> Vec<Effect> {
        let bc = scan::parse(raw);
        if let Some(prefix) = &self.badge_prefix {
            if let Some(op) = crate::pick::badge_operator(prefix, &bc) {
                return self.badge(now, &bc.text, op);
            }
            if self.operator.is_none() {
                return self.refuse_logged_out();
            }
        }
        let scanned = scan::of(&bc);
        match (&self.stage, scanned) {
            (Stage::Cancelled, _) => refuse("Order cancelled: set aside, press Enter"),
            (Stage::Saving | Stage::Allocating { .. } | Stage::LookingUp(_), _) => {
                self.refuse_as(RefusalReason::Busy, "Saving... scan again")
            }
            (Stage::Capture(..), s) => self.capture(s),
            (_, Scanned::Invalid(e)) => self.refuse_bad_label(e),
            (_, Scanned::Sscc(sscc)) => self.reprint(now, sscc),
            (Stage::Idle, Scanned::Text(code)) => {
                self.stage = Stage::LookingUp(code.clone());
                vec![Effect::LookUpOrder(code)]
            }
            (Stage::Idle, _) => {
                self.refuse_as(RefusalReason::NoTask, "Scan an order or tote first")
            }
            (
                Stage::Packing,
                Scanned::Item {
                    gtin,
                    lot,
                    serial,
                    expiry,
                },
            ) => self.item(gtin, lot, serial, expiry),
            (Stage::Packing, Scanned::BadCheckDigit(d)) => self.refuse_as(
                RefusalReason::BadBarcode,
                &format!("Bad barcode {d}: check digit wrong"),
            ),
            (Stage::Packing, Scanned::Text(t)) => self.refuse_as(
                RefusalReason::WrongItem,
                &format!("Wrong item: {t} is not an item"),
            ),
            (Stage::Packing, Scanned::Data { .. }) => self.refuse_as(
                RefusalReason::WrongItem,
                "Wrong item: no GTIN in this barcode, scan the item",
            ),
            _ => refuse("Finish this step first"),
        }
    }

    fn item(
        &mut self,
        gtin: String,
        lot: Option<String>,
        serial: Option<String>,
        expiry: Option<String>,
    ) -> Vec<Effect> {
        let Some(active) = &mut self.active else {
            return self.refuse_as(RefusalReason::NoTask, "Scan an order or tote first");
        };
        let found = active.order.lines.iter().enumerate().find_map(|(i, l)| {
            l.gtins
                .iter()
                .find(|g| g.gtin == gtin)
                .map(|g| (i, g.pack_qty.max(1)))
        });
        let Some((i, qty)) = found else {
            return self.refuse_as(
                RefusalReason::WrongItem,
                &format!("Not in this order: {gtin}"),
            );
        };
        let line = &active.order.lines[i];
        if active.packed[i].saturating_add(qty) > line.qty {
            let text = format!(
                "Too many {}: {}/{} packed",
                line.sku, active.packed[i], line.qty
            );
            return self.refuse_as(RefusalReason::TooMany, &text);
        }
        let packed = Packed {
            order_line: line.order_line,
            gtin,
            qty,
            lot,
            serial,
            expiry,
        };
        self.next_capture(packed)
    }

    /// Asks for the next missing capture of `packed`, or packs it.
    fn next_capture(&mut self, packed: Packed) -> Vec<Effect> {
        let Some(active) = &mut self.active else {
            return Vec::new();
        };
        let Some(line) = active
            .order
            .lines
            .iter()
            .position(|l| l.order_line == packed.order_line)
        else {
            return Vec::new();
        };
        let capture = active.order.lines[line].capture;
        let need = if capture.lot && packed.lot.is_none() {
            Some((Need::Lot, ScanTarget::Lot, "Scan lot"))
        } else if capture.serial && packed.serial.is_none() {
            Some((Need::Serial, ScanTarget::Serial, "Scan serial"))
        } else if capture.expiry && packed.expiry.is_none() {
            Some((Need::Expiry, ScanTarget::Expiry, "Scan expiry YYMMDD"))
        } else {
            None
        };
        if let Some((need, target, hint)) = need {
            self.stage = Stage::Capture(packed, need);
            return vec![Effect::Beep(Beep::Attention), scan_prompt(target, hint)];
        }
        if let Some(serial) = &packed.serial {
            if active.serials.contains(serial) {
                self.stage = Stage::Packing;
                return refuse(&format!("Serial {serial} already packed"));
            }
            active.serials.push(serial.clone());
        }
        active.packed[line] += packed.qty;
        active.carton.push(packed);
        self.stage = Stage::Packing;
        let l = &active.order.lines[line];
        let mut e = vec![Effect::Beep(Beep::Ok)];
        if active.complete() {
            e.push(message(Level::Ok, "All packed: F1 closes the carton"));
        } else {
            let hint = format!("{} {}/{}", l.sku, active.packed[line], l.qty);
            e.push(scan_prompt(ScanTarget::Item, &hint));
        }
        e
    }

    fn capture(&mut self, scanned: Scanned) -> Vec<Effect> {
        let Stage::Capture(mut packed, need) = self.stage.clone() else {
            return Vec::new();
        };
        // A GS1 barcode carries the value under its AI; a plain label is the value.
        let (lot, serial, expiry, text) = match scanned {
            Scanned::Item {
                lot,
                serial,
                expiry,
                ..
            }
            | Scanned::Data {
                lot,
                serial,
                expiry,
            } => (lot, serial, expiry, None),
            Scanned::Text(t) | Scanned::Sscc(t) | Scanned::BadCheckDigit(t) => {
                (None, None, None, Some(t))
            }
            Scanned::Invalid(e) => return self.refuse_bad_label(e),
        };
        let (value, what) = match need {
            Need::Lot => (lot, "lot"),
            Need::Serial => (serial, "serial"),
            Need::Expiry => (expiry, "expiry"),
        };
        let Some(text) = value.or(text) else {
            return self.refuse_as(
                RefusalReason::BadBarcode,
                &format!("No {what} in this barcode: scan the {what}"),
            );
        };
        match need {
            Need::Lot => packed.lot = Some(text),
            Need::Serial => packed.serial = Some(text),
            Need::Expiry => {
                let value = text;
                if value.len() != 6 || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return self
                        .refuse_as(RefusalReason::BadBarcode, "Expiry must be 6 digits YYMMDD");
                }
                packed.expiry = Some(value);
            }
        }
        self.next_capture(packed)
    }

    fn key(&mut self, now: u64, key: Key) -> Vec<Effect> {
        if self.logged_out() {
            return self.refuse_logged_out();
        }
        match (self.stage.clone(), key) {
            (Stage::Cancelled, Key::Enter) => {
                self.active = None;
                self.stage = Stage::Idle;
                self.start()
            }
            (Stage::Packing, Key::F(keys::CLOSE)) => {
                let Some(active) = &self.active else {
                    return Vec::new();
                };
                if active.carton.is_empty() {
                    return refuse("Carton is empty: scan items first");
                }
                if !active.complete() && active.carton_no == u16::MAX {
                    return refuse("Too many cartons for one order");
                }
                self.weigh(None)
            }
            (Stage::Packing, Key::F(keys::SHORT)) => {
                if self.active.as_ref().is_some_and(Active::complete) {
                    return refuse("All packed: F1 closes the carton");
                }
                self.stage = Stage::ShortReason { selected: 0 };
                vec![self.reasons_screen(0)]
            }
            (Stage::Idle | Stage::Packing, Key::F(keys::REPRINT)) => match self.last_sscc.clone() {
                Some(sscc) => self.reprint(now, sscc),
                None => refuse("No label printed yet"),
            },
            (Stage::Capture(..) | Stage::ShortReason { .. }, Key::Back) => {
                self.stage = Stage::Packing;
                vec![scan_prompt(ScanTarget::Item, "Scan item")]
            }
            (Stage::ShortReason { selected }, Key::Up | Key::Down) => {
                let n = REASONS.len() as u8;
                let selected = if key == Key::Up {
                    (selected + n - 1) % n
                } else {
                    (selected + 1) % n
                };
                self.stage = Stage::ShortReason { selected };
                vec![self.reasons_screen(selected)]
            }
            (Stage::ShortReason { selected }, Key::Enter) => self.short_chosen(now, selected),
            (Stage::Weight { typed, short }, Key::Digit(d)) if d <= 9 => {
                let typed = typed
                    .saturating_mul(10)
                    .saturating_add(u32::from(d))
                    .min(999_999);
                self.ask_weight(typed, short)
            }
            (Stage::Recheck { short, .. }, Key::Digit(d)) if d <= 9 => {
                self.ask_weight(u32::from(d), short)
            }
            (Stage::Weight { short, .. }, Key::Clear) => self.ask_weight(0, short),
            (Stage::Weight { typed: 0, .. }, Key::Enter) => refuse("Type the carton weight"),
            (Stage::Weight { typed, short }, Key::Enter) => self.check_weight(typed, short),
            (Stage::Recheck { weight_g, short }, Key::Enter) => {
                // The packer checked the carton and confirms the weight.
                self.allocate(weight_g, short)
            }
            (Stage::Weight { .. } | Stage::Recheck { .. }, Key::Back) => {
                self.stage = Stage::Packing;
                vec![scan_prompt(ScanTarget::Item, "Scan item")]
            }
            _ => Vec::new(),
        }
    }

    fn reasons_screen(&self, selected: u8) -> Effect {
        // Four reasons fit the screen's six slots.
        let options = REASONS.iter().copied().collect();
        show(Screen::Reasons { options, selected })
    }

    fn short_chosen(&mut self, now: u64, selected: u8) -> Vec<Effect> {
        let Some(active) = &self.active else {
            return Vec::new();
        };
        let reason = REASONS[usize::from(selected) % REASONS.len()];
        let detail = format!("{}: {}", reason_text(reason), active.missing());
        if !active.carton.is_empty() {
            return self.weigh(Some(detail));
        }
        // No open carton to carry the reason: report it on its own.
        let order_id = active.order.order_id.clone();
        self.stage = Stage::Saving;
        self.pending.push_back(Pending::ShortShipped);
        vec![Effect::Commit(Commit::ShortShipped {
            at: now,
            order_id,
            detail,
        })]
    }

    /// Closing a carton: the scale's weight if it has one, else the packer types it.
    fn weigh(&mut self, short: Option<String>) -> Vec<Effect> {
        match self.scale_g {
            Some(g) => self.check_weight(g, short),
            None => self.ask_weight(0, short),
        }
    }

    fn ask_weight(&mut self, typed: u32, short: Option<String>) -> Vec<Effect> {
        self.stage = Stage::Weight { typed, short };
        vec![show(Screen::Quantity {
            prompt: fit("Carton weight (g)"),
            value: typed,
            max: 999_999,
        })]
    }

    fn check_weight(&mut self, weight_g: u32, short: Option<String>) -> Vec<Effect> {
        let Some(active) = &self.active else {
            return Vec::new();
        };
        if let Some(expected) = active.expected_weight(self.config.tare_g) {
            let tolerance = (u64::from(expected) * u64::from(self.config.tolerance_pct) / 100)
                .max(u64::from(self.config.tolerance_min_g));
            if u64::from(weight_g.abs_diff(expected)) > tolerance {
                self.stage = Stage::Recheck { weight_g, short };
                let text = format!("Recheck: {weight_g} g, expected {expected}±{tolerance} g");
                return vec![
                    message(Level::Warning, &text),
                    Effect::Beep(Beep::Attention),
                ];
            }
        }
        self.allocate(weight_g, short)
    }

    fn allocate(&mut self, weight_g: u32, short: Option<String>) -> Vec<Effect> {
        self.stage = Stage::Allocating { weight_g, short };
        vec![Effect::AllocateSscc]
    }

    fn close_with_serial(&mut self, now: u64, serial: u64) -> Vec<Effect> {
        let Stage::Allocating { weight_g, short } = self.stage.clone() else {
            return Vec::new();
        };
        let Some(active) = &self.active else {
            return Vec::new();
        };
        let sscc = match Sscc::build(self.config.extension, &self.config.company_prefix, serial) {
            Ok(s) => s,
            Err(e) => {
                self.stage = Stage::Packing;
                let mut r = refuse("SSCC range used up: call the office");
                r.insert(0, message(Level::Error, &e.to_string()));
                return r;
            }
        };
        let complete = active.complete();
        let ends_order = complete || short.is_some();
        let data = LabelData {
            order: active.order.shipment(),
            carton_no: active.carton_no,
            carton_count: ends_order.then_some(active.carton_no),
            weight_g,
            sscc: &sscc,
        };
        let label = match label::render(&self.config.template, &data) {
            Ok(l) => l,
            Err(e) => {
                self.stage = Stage::Packing;
                let mut r = refuse("No label: bad tracking no. Call office");
                r.insert(0, message(Level::Error, &e.to_string()));
                return r;
            }
        };
        self.stage = Stage::Saving;
        // The next carton needs a weight of its own.
        self.scale_g = None;
        self.pending.push_back(Pending::Carton {
            sscc: sscc.to_string(),
            carton_no: active.carton_no,
            ends_order,
        });
        vec![Effect::Commit(Commit::CartonClosed {
            at: now,
            order_id: active.order.order_id.clone(),
            carton_no: active.carton_no,
            sscc: sscc.to_string(),
            weight_g,
            short_ship: short,
            order_complete: complete,
            contents: active.carton.clone(),
            label,
        })]
    }

    fn reprint(&mut self, now: u64, sscc: String) -> Vec<Effect> {
        self.pending.push_back(Pending::Reprint(sscc.clone()));
        vec![Effect::Commit(Commit::Reprint { at: now, sscc })]
    }

    fn print_report(&mut self, now: u64, job_id: u64, fault: Option<String>) -> Vec<Effect> {
        let Some(sscc) = self
            .jobs
            .iter()
            .find(|(id, _)| *id == job_id)
            .map(|(_, s)| s.clone())
        else {
            return Vec::new();
        };
        self.pending.push_back(Pending::Report);
        match fault {
            None => {
                self.jobs.retain(|(id, _)| *id != job_id);
                vec![Effect::Commit(Commit::LabelPrinted {
                    at: now,
                    sscc,
                    job_id,
                })]
            }
            Some(fault) => {
                let text = format!("Label NOT printed: {fault}");
                vec![
                    Effect::Commit(Commit::PrintFailed {
                        at: now,
                        sscc,
                        job_id,
                        fault,
                    }),
                    message(Level::Error, &text),
                    Effect::Beep(Beep::Error),
                ]
            }
        }
    }

    fn committed(&mut self, job_id: Option<u64>) -> Vec<Effect> {
        let Some(pending) = self.pending.pop_front() else {
            return Vec::new();
        };
        match pending {
            Pending::Report => Vec::new(),
            Pending::Login(operator) => {
                self.operator = Some(operator);
                let mut e = vec![Effect::Beep(Beep::Ok)];
                e.extend(self.start());
                e
            }
            Pending::Logout => {
                self.operator = None;
                let mut e = vec![Effect::Beep(Beep::Ok)];
                e.extend(self.start());
                e
            }
            Pending::Reprint(sscc) => {
                if let Some(id) = job_id {
                    self.jobs.push((id, sscc.clone()));
                }
                self.last_sscc = Some(sscc.clone());
                vec![
                    Effect::Beep(Beep::Ok),
                    message(Level::Ok, &format!("Reprinting {sscc}")),
                ]
            }
            Pending::ShortShipped => {
                if self.stage == Stage::Cancelled {
                    return Vec::new();
                }
                self.active = None;
                self.stage = Stage::Idle;
                let mut e = vec![
                    Effect::Beep(Beep::Ok),
                    message(Level::Warning, "Order closed short"),
                ];
                e.extend(self.start());
                e
            }
            Pending::Carton {
                sscc,
                carton_no,
                ends_order,
            } => {
                if let Some(id) = job_id {
                    self.jobs.push((id, sscc.clone()));
                }
                self.last_sscc = Some(sscc);
                let mut e = vec![
                    Effect::Beep(Beep::Ok),
                    message(
                        Level::Ok,
                        &format!("Carton {carton_no} closed, label printing"),
                    ),
                ];
                if self.stage == Stage::Cancelled {
                    return e;
                }
                if ends_order {
                    self.active = None;
                    self.stage = Stage::Idle;
                    e.extend(self.start());
                } else if let Some(active) = &mut self.active {
                    active.carton.clear();
                    active.carton_no += 1;
                    self.stage = Stage::Packing;
                    let hint = format!("{} carton {}", active.order.order_id, active.carton_no);
                    e.push(scan_prompt(ScanTarget::Item, &hint));
                }
                e
            }
        }
    }

    fn commit_failed(&mut self, why: &str) -> Vec<Effect> {
        let Some(pending) = self.pending.pop_front() else {
            return Vec::new();
        };
        let text = match pending {
            Pending::Report => return Vec::new(),
            Pending::Login(_) | Pending::Logout => format!("Not saved, scan badge again: {why}"),
            Pending::Reprint(_) => format!("No reprint: {why}"),
            Pending::ShortShipped | Pending::Carton { .. } => {
                if self.stage != Stage::Cancelled {
                    self.stage = Stage::Packing;
                }
                format!("Not saved, close again: {why}")
            }
        };
        refuse(&text)
    }
}

#[cfg(test)]
mod tests;
