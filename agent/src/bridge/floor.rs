//! The supervisor's floor view, derived from what the bridge already stores: the events
//! (operator, picks, shorts, packed orders, labels, exceptions), the down messages it
//! queued (waves, their tasks and cutoffs, cancellations) and each device's presence, last
//! birth and last status. Pure: rows and `now` in, facts and JSON out; no SQL, no clock.
//!
//! Everything counted is over a sliding window, `shift_s` long (a shift): older facts are
//! pruned, so the view's memory stays bounded however long the bridge runs.

use std::collections::{BTreeMap, HashMap, VecDeque};

use floorhand_protocol::oms::{
    Birth, Down, EventKind, PrinterState, RefusalReason, ShortReason, Status,
};
use serde_json::{Value, json};

use crate::store::oms_store::{DeviceRow, StoredEvent};

/// The thresholds of the view (`[floor]` in bridge.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloorSettings {
    /// An offline device turns red after this many seconds offline.
    pub offline_red_s: u64,
    /// A device whose oldest unacknowledged event is older than this turns red.
    pub backlog_red_s: u64,
    /// A wave with open tasks turns red this long before its cutoff (or earlier, when the
    /// site's pick rate of the last 15 minutes would not finish it in time).
    pub cutoff_risk_s: u64,
    /// The window counted as the shift.
    pub shift_s: u64,
    /// Entries kept in the exceptions feed.
    pub feed_len: usize,
}

impl Default for FloorSettings {
    fn default() -> Self {
        FloorSettings {
            offline_red_s: 300,
            backlog_red_s: 120,
            cutoff_risk_s: 1800,
            shift_s: 8 * 3600,
            feed_len: 50,
        }
    }
}

/// The window of the "last 15 minutes" rates.
pub const RECENT_S: u64 = 15 * 60;
/// Minutes of the picks-per-minute series.
pub const MINUTES: u64 = 60;
/// Task facts kept beyond those of the waves in the window.
const MAX_LOOSE_TASKS: usize = 100_000;

/// What a device does, as far as its messages tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Nothing told yet.
    #[default]
    Unknown,
    /// Picks tasks (handheld).
    Pick,
    /// Packs orders (pack station).
    Pack,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Unknown => "",
            Role::Pick => "pick",
            Role::Pack => "pack",
        }
    }
}

type DeviceKey = (String, String);

#[derive(Debug, Default)]
struct DeviceFacts {
    operator: u32,
    role: Role,
    /// `at` of each order's first closed carton (orders packed).
    packed: VecDeque<u64>,
    packed_orders: HashMap<String, u64>,
    /// `at` of each label printed.
    labels: VecDeque<u64>,
    /// The last two storage alarm percentages: a rise means the alarm is on.
    storage_alarm: Option<(u8, bool)>,
    /// The firmware version of the picker's terminal, from its last `TerminalConnected`.
    terminal: Option<String>,
}

#[derive(Debug, Default)]
struct Person {
    /// `at` of each pick (a `Picked`, or a `ShortPicked` with units).
    picks: VecDeque<u64>,
    /// `at` and reason of each short pick.
    shorts: VecDeque<(u64, ShortReason)>,
    /// Refused scans: `at`, class and count, one entry per class and minute at most
    /// (the devices coalesce to one event per class per second; a long scan storm would
    /// otherwise keep a row per second for the whole shift).
    refused: VecDeque<(u64, RefusalReason, u32)>,
    first_at: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct TaskFacts {
    picked: u32,
    short: bool,
    cancelled: bool,
}

#[derive(Debug)]
struct WaveFacts {
    version: u32,
    cutoff: u64,
    /// (device, task id, order id, qty)
    tasks: Vec<(String, u64, String, u32)>,
    assigned_at: u64,
}

/// Where a task is, for its wave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Not finished.
    Open,
    /// Every unit picked.
    Picked,
    /// Short picked.
    Short,
    /// Cancelled or revoked by the OMS.
    Cancelled,
}

/// One exception for the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Exception {
    cursor: u64,
    site: String,
    device: String,
    at: u64,
    operator: u32,
    kind: &'static str,
    text: String,
}

/// The derived facts of the floor. Feed it events (in cursor order) and down messages
/// (in any order), then ask for [`Floor::view`].
#[derive(Debug, Default)]
pub struct Floor {
    settings: FloorSettings,
    devices: HashMap<DeviceKey, DeviceFacts>,
    people: BTreeMap<(String, u32), Person>,
    tasks: HashMap<(String, String, u64), TaskFacts>,
    /// Tasks of orders cancelled on a device: order id per (site, device).
    cancelled_orders: HashMap<(String, String, String), u64>,
    waves: BTreeMap<(String, u64), WaveFacts>,
    /// Per site: picks and units per minute (minute = at / 60).
    minutes: BTreeMap<String, BTreeMap<u64, (u32, u32)>>,
    feed: VecDeque<Exception>,
}

/// A refused scan's class as the page shows it.
pub fn refusal_name(r: RefusalReason) -> &'static str {
    match r {
        RefusalReason::WrongItem => "wrong item",
        RefusalReason::WrongLocation => "wrong location",
        RefusalReason::BadBarcode => "bad barcode",
        RefusalReason::NotLoggedIn => "not logged in",
        RefusalReason::NoTask => "no task",
        RefusalReason::Busy => "busy saving",
        RefusalReason::TooMany => "too many",
        RefusalReason::Other => "other",
    }
}

fn short_reason(r: ShortReason) -> &'static str {
    match r {
        ShortReason::LocationEmpty => "location empty",
        ShortReason::Damaged => "damaged",
        ShortReason::WrongItem => "wrong item",
        ShortReason::NotEnough => "not enough",
    }
}

/// The printer state as the page shows it.
pub fn printer_name(p: PrinterState) -> &'static str {
    match p {
        PrinterState::None => "none",
        PrinterState::Ready => "ready",
        PrinterState::Offline => "offline",
        PrinterState::PaperOut => "paper out",
        PrinterState::RibbonOut => "ribbon out",
        PrinterState::HeadOpen => "head open",
        PrinterState::Paused => "paused",
        PrinterState::Fault => "fault",
    }
}

impl Floor {
    /// An empty floor with these thresholds.
    pub fn new(settings: FloorSettings) -> Floor {
        Floor {
            settings,
            ..Floor::default()
        }
    }

    fn device(&mut self, site: &str, device: &str) -> &mut DeviceFacts {
        self.devices
            .entry((site.to_string(), device.to_string()))
            .or_default()
    }

    /// Takes one stored event into account. Events of one device come in seq order.
    pub fn apply_event(&mut self, e: &StoredEvent) {
        let (site, dev, at, op) = (&e.site, &e.device, e.event.at, e.event.operator);
        // Events carry the logged-in operator (0 between logins), but the device's own
        // reports (a conflict, a refused message, storage) say nothing about who is there.
        match e.event.kind {
            EventKind::LoggedOut => self.device(site, dev).operator = 0,
            EventKind::Conflict { .. }
            | EventKind::Rejected { .. }
            | EventKind::StorageAlarm { .. } => {}
            _ => self.device(site, dev).operator = op,
        }
        let pick_role = |f: &mut Floor| f.device(site, dev).role = Role::Pick;
        let pack_role = |f: &mut Floor| f.device(site, dev).role = Role::Pack;
        match &e.event.kind {
            EventKind::Picked(p) => {
                pick_role(self);
                self.task(site, dev, p.task_id).picked += p.qty;
                self.count_pick(site, op, at, p.qty);
            }
            EventKind::ShortPicked {
                task_id,
                qty,
                reason,
            } => {
                pick_role(self);
                let t = self.task(site, dev, *task_id);
                t.picked += qty;
                t.short = true;
                if *qty > 0 {
                    self.count_pick(site, op, at, *qty);
                }
                self.person(site, op, at).shorts.push_back((at, *reason));
            }
            EventKind::PickUndone { task_id, qty } => {
                let t = self.task(site, dev, *task_id);
                t.picked = t.picked.saturating_sub(*qty);
                t.short = false;
            }
            EventKind::TaskStarted { .. } | EventKind::Skipped { .. } => pick_role(self),
            EventKind::PutBack { .. } => pick_role(self),
            EventKind::CartonClosed { order_id, .. } => {
                pack_role(self);
                let d = self.device(site, dev);
                if !d.packed_orders.contains_key(order_id) {
                    d.packed_orders.insert(order_id.clone(), at);
                    d.packed.push_back(at);
                }
            }
            EventKind::PackVerified { .. } => pack_role(self),
            EventKind::LabelPrinted { .. } => {
                pack_role(self);
                self.device(site, dev).labels.push_back(at);
            }
            EventKind::PrintFailed { sscc, fault, .. } => {
                pack_role(self);
                self.exception(e, "print failed", format!("label {sscc}: {fault}"));
            }
            EventKind::Conflict { task_id, detail } => {
                let text = if *task_id == 0 {
                    detail.clone()
                } else {
                    format!("task {task_id}: {detail}")
                };
                self.exception(e, "conflict", text);
            }
            EventKind::Rejected {
                msg_id,
                reason,
                detail,
            } => {
                self.exception(
                    e,
                    "rejected",
                    format!("message {msg_id} ({reason:?}): {detail}"),
                );
            }
            EventKind::StorageAlarm { pct } => {
                let d = self.device(site, dev);
                let rising = d.storage_alarm.is_none_or(|(last, _)| *pct > last);
                d.storage_alarm = Some((*pct, rising));
                let text = if rising {
                    format!("storage at {pct}% of its limit")
                } else {
                    format!("storage back down to {pct}%")
                };
                self.exception(e, "storage", text);
            }
            EventKind::ScanRefused { reason, count, .. } => {
                // Into this minute's entry of the class (a minute holds at most one entry
                // per class, so the walk back is short).
                let refused = &mut self.person(site, op, at).refused;
                let same = refused
                    .iter_mut()
                    .rev()
                    .take_while(|(t, _, _)| *t / 60 == at / 60)
                    .find(|(_, r, _)| r == reason);
                match same {
                    Some((t, _, n)) => {
                        *n = n.saturating_add(*count);
                        *t = (*t).max(at);
                    }
                    None => refused.push_back((at, *reason, *count)),
                }
            }
            EventKind::TerminalConnected { software } => {
                pick_role(self);
                self.device(site, dev).terminal = Some(software.clone());
            }
            EventKind::LoggedIn | EventKind::LoggedOut => {}
        }
    }

    /// Takes one down message the bridge queued into account (`created`: when).
    pub fn apply_down(&mut self, site: &str, device: &str, down: &Down, created: u64) {
        match down {
            Down::WaveAssigned(w) => {
                self.device(site, device).role = Role::Pick;
                let key = (site.to_string(), w.wave_id);
                let tasks: Vec<_> = w
                    .tasks
                    .iter()
                    .map(|t| (device.to_string(), t.task_id, t.order_id.clone(), t.qty))
                    .collect();
                match self.waves.get_mut(&key) {
                    Some(old) if old.version > w.version => {}
                    Some(old) if old.version == w.version => {
                        // The same wave split over several devices: one task list.
                        for t in tasks {
                            if !old.tasks.iter().any(|o| o.0 == t.0 && o.1 == t.1) {
                                old.tasks.push(t);
                            }
                        }
                    }
                    _ => {
                        self.waves.insert(
                            key,
                            WaveFacts {
                                version: w.version,
                                cutoff: w.cutoff,
                                tasks,
                                assigned_at: created,
                            },
                        );
                    }
                }
            }
            Down::TasksRevoked { task_ids, .. } => {
                for id in task_ids {
                    self.task(site, device, *id).cancelled = true;
                }
            }
            Down::OrderCancelled { order_id } => {
                self.cancelled_orders.insert(
                    (site.to_string(), device.to_string(), order_id.clone()),
                    created,
                );
            }
            Down::PackOrder(_) => self.device(site, device).role = Role::Pack,
            Down::Ack { .. } | Down::ResyncRequest | Down::ConfigUpdate(_) => {}
        }
    }

    fn task(&mut self, site: &str, device: &str, id: u64) -> &mut TaskFacts {
        self.tasks
            .entry((site.to_string(), device.to_string(), id))
            .or_default()
    }

    fn person(&mut self, site: &str, op: u32, at: u64) -> &mut Person {
        let p = self.people.entry((site.to_string(), op)).or_default();
        if p.first_at == 0 || at < p.first_at {
            p.first_at = at;
        }
        p
    }

    fn count_pick(&mut self, site: &str, op: u32, at: u64, qty: u32) {
        self.person(site, op, at).picks.push_back(at);
        let m = self
            .minutes
            .entry(site.to_string())
            .or_default()
            .entry(at / 60)
            .or_default();
        m.0 += 1;
        m.1 += qty;
    }

    fn exception(&mut self, e: &StoredEvent, kind: &'static str, text: String) {
        self.feed.push_front(Exception {
            cursor: e.cursor,
            site: e.site.clone(),
            device: e.device.clone(),
            at: e.event.at,
            operator: e.event.operator,
            kind,
            text,
        });
        // Newest first by the device's time, then by arrival.
        self.feed
            .make_contiguous()
            .sort_by_key(|x| std::cmp::Reverse((x.at, x.cursor)));
        self.feed.truncate(self.settings.feed_len);
    }

    /// Forgets what is older than the shift window.
    pub fn prune(&mut self, now: u64) {
        let from = now.saturating_sub(self.settings.shift_s);
        for d in self.devices.values_mut() {
            while d.packed.front().is_some_and(|&t| t < from) {
                d.packed.pop_front();
            }
            while d.labels.front().is_some_and(|&t| t < from) {
                d.labels.pop_front();
            }
            d.packed_orders.retain(|_, t| *t >= from);
        }
        self.people.retain(|_, p| {
            while p.picks.front().is_some_and(|&t| t < from) {
                p.picks.pop_front();
            }
            while p.shorts.front().is_some_and(|&(t, _)| t < from) {
                p.shorts.pop_front();
            }
            while p.refused.front().is_some_and(|&(t, _, _)| t < from) {
                p.refused.pop_front();
            }
            p.first_at = p.first_at.max(from);
            !p.picks.is_empty() || !p.shorts.is_empty() || !p.refused.is_empty()
        });
        // A device whose clock runs far ahead would otherwise leave minutes that never
        // age out.
        let first_minute = now.saturating_sub(MINUTES * 60) / 60;
        let last_minute = now / 60 + MINUTES;
        for m in self.minutes.values_mut() {
            m.retain(|&minute, _| (first_minute..=last_minute).contains(&minute));
        }
        self.waves.retain(|_, w| w.assigned_at >= from);
        self.cancelled_orders.retain(|_, t| *t >= from);
        // A task's facts go with its wave. Ones with no wave yet are kept (their wave may
        // be read a moment after their events) until there are too many.
        if self.tasks.len() > MAX_LOOSE_TASKS {
            let known: std::collections::HashSet<(&str, &str, u64)> = self
                .waves
                .iter()
                .flat_map(|((site, _), w)| {
                    w.tasks
                        .iter()
                        .map(move |t| (site.as_str(), t.0.as_str(), t.1))
                })
                .collect();
            self.tasks
                .retain(|(site, dev, id), _| known.contains(&(site.as_str(), dev.as_str(), *id)));
        }
    }

    /// A task's state as its wave shows it.
    pub fn task_state(
        &self,
        site: &str,
        device: &str,
        id: u64,
        order: &str,
        qty: u32,
    ) -> TaskState {
        let key = (site.to_string(), device.to_string(), id);
        let f = self.tasks.get(&key).copied().unwrap_or_default();
        let order_cancelled = self.cancelled_orders.contains_key(&(
            site.to_string(),
            device.to_string(),
            order.to_string(),
        ));
        if f.cancelled || order_cancelled {
            TaskState::Cancelled
        } else if f.short {
            TaskState::Short
        } else if f.picked >= qty {
            TaskState::Picked
        } else {
            TaskState::Open
        }
    }

    /// Picks of `site` in `[from, now]`.
    fn site_picks(&self, site: &str, from: u64) -> u32 {
        self.minutes.get(site).map_or(0, |m| {
            m.range(from / 60..)
                .filter(|(minute, _)| **minute * 60 >= from)
                .map(|(_, v)| v.0)
                .sum()
        })
    }

    /// The picks-per-minute series of every site: the last [`MINUTES`] whole minutes
    /// before `now`'s minute and that minute itself, zeros included.
    pub fn kpis(&self, now: u64) -> Value {
        let last = now / 60;
        let first = last + 1 - MINUTES;
        let mut sites: Vec<&String> = self.minutes.keys().collect();
        for (site, _) in self.devices.keys() {
            if !sites.contains(&site) {
                sites.push(site);
            }
        }
        sites.sort();
        let sites: Vec<Value> = sites
            .into_iter()
            .map(|site| {
                let m = self.minutes.get(site);
                let per_minute: Vec<Value> = (first..=last)
                    .map(|minute| {
                        let (picks, units) =
                            m.and_then(|m| m.get(&minute)).copied().unwrap_or_default();
                        json!({ "minute": minute * 60, "picks": picks, "units": units })
                    })
                    .collect();
                json!({
                    "site": site,
                    "picks_last_15_min": self.site_picks(site, now.saturating_sub(RECENT_S)),
                    "picks_per_minute": per_minute,
                })
            })
            .collect();
        json!({ "at": now, "minutes": MINUTES, "sites": sites })
    }

    /// The whole view for the page: devices, waves, pack stations, people, exceptions
    /// and the picks-per-minute series.
    pub fn view(&self, now: u64, devices: &[DeviceRow]) -> Value {
        let s = &self.settings;
        let mut device_rows = Vec::with_capacity(devices.len());
        let mut stations = Vec::new();
        for d in devices {
            let key = (d.site.clone(), d.device.clone());
            let facts = self.devices.get(&key);
            let birth: Option<Birth> = d
                .birth
                .as_deref()
                .and_then(|b| serde_json::from_str(b).ok());
            let status: Option<Status> = d
                .status
                .as_deref()
                .and_then(|t| serde_json::from_str(t).ok());
            let mut role = facts.map(|f| f.role).unwrap_or_default();
            if role == Role::Unknown {
                if let Some(b) = &birth {
                    if !b.pack_orders.is_empty() {
                        role = Role::Pack;
                    } else if !b.waves.is_empty() {
                        role = Role::Pick;
                    }
                }
                if status
                    .as_ref()
                    .is_some_and(|s| s.printer != PrinterState::None)
                {
                    role = Role::Pack;
                }
            }
            let state = device_state(s, now, d, status.as_ref());
            let storage_alarm = facts
                .and_then(|f| f.storage_alarm)
                .filter(|(_, rising)| *rising)
                .map(|(pct, _)| pct);
            device_rows.push(json!({
                "site": d.site,
                "device": d.device,
                "role": role.name(),
                "online": d.online,
                "state": state.0,
                "why": state.1,
                "last_seen": d.last_seen,
                "operator": facts.map_or(0, |f| f.operator),
                "backlog": status.as_ref().map(|s| s.backlog),
                "backlog_age_s": status.as_ref().map(|st| backlog_age(now, d, st)),
                "down_unapplied": d.down_unacked,
                "printer": status.as_ref().map(|s| printer_name(s.printer)),
                "print_queue": status.as_ref().map(|s| s.print_queue),
                "storage_pct": status.as_ref().map(|s| s.storage_pct),
                "storage_alarm_pct": storage_alarm,
                "software": birth.as_ref().map(|b| b.software.clone()),
                "terminal": facts.and_then(|f| f.terminal.clone()),
            }));
            if role == Role::Pack {
                stations.push(json!({
                    "site": d.site,
                    "device": d.device,
                    "orders_packed": facts.map_or(0, |f| f.packed.len()),
                    "labels_printed": facts.map_or(0, |f| f.labels.len()),
                    "print_queue": status.as_ref().map(|s| s.print_queue),
                }));
            }
        }
        json!({
            "thresholds": {
                "offline_red_s": s.offline_red_s,
                "backlog_red_s": s.backlog_red_s,
                "cutoff_risk_s": s.cutoff_risk_s,
                "shift_s": s.shift_s,
            },
            "devices": device_rows,
            "waves": self.waves_view(now),
            "stations": stations,
            "people": self.people_view(now),
            "exceptions": self.feed.iter().map(|x| json!({
                "site": x.site, "device": x.device, "at": x.at, "operator": x.operator,
                "kind": x.kind, "text": x.text,
            })).collect::<Vec<_>>(),
            "kpis": self.kpis(now),
        })
    }

    fn waves_view(&self, now: u64) -> Vec<Value> {
        let mut out = Vec::new();
        for ((site, wave_id), w) in &self.waves {
            let mut counts = [0u32; 4];
            for (dev, id, order, qty) in &w.tasks {
                let i = match self.task_state(site, dev, *id, order, *qty) {
                    TaskState::Open => 0,
                    TaskState::Picked => 1,
                    TaskState::Short => 2,
                    TaskState::Cancelled => 3,
                };
                counts[i] += 1;
            }
            let rate = self.site_picks(site, now.saturating_sub(RECENT_S)) as u64;
            let risk = cutoff_risk(&self.settings, now, w.cutoff, counts[0] as u64, rate);
            out.push(json!({
                "site": site,
                "wave_id": wave_id,
                "version": w.version,
                "open": counts[0],
                "picked": counts[1],
                "short": counts[2],
                "cancelled": counts[3],
                "cutoff": (w.cutoff != 0).then_some(w.cutoff),
                "at_risk": risk,
            }));
        }
        out
    }

    fn people_view(&self, now: u64) -> Vec<Value> {
        let recent_from = now.saturating_sub(RECENT_S);
        self.people
            .iter()
            .map(|((site, op), p)| {
                let recent = p.picks.iter().filter(|&&t| t >= recent_from).count() as u64;
                let shift = p.picks.len() as u64;
                // At least 15 minutes, so one pick a minute into a shift is not 60 an hour.
                let span = now.saturating_sub(p.first_at).max(RECENT_S);
                let mut reasons: BTreeMap<&str, u32> = BTreeMap::new();
                for (_, r) in &p.shorts {
                    *reasons.entry(short_reason(*r)).or_default() += 1;
                }
                let mut refused: BTreeMap<&str, u64> = BTreeMap::new();
                for (_, r, n) in &p.refused {
                    *refused.entry(refusal_name(*r)).or_default() += u64::from(*n);
                }
                json!({
                    "site": site,
                    "operator": op,
                    "picks_per_hour_15_min": recent * 3600 / RECENT_S,
                    "picks_per_hour_shift": shift * 3600 / span,
                    "picks_shift": shift,
                    "short_picks": p.shorts.len(),
                    "short_by_reason": reasons,
                    "refused_scans": refused.values().sum::<u64>(),
                    "refused_by_reason": refused,
                })
            })
            .collect()
    }
}

/// Age at `now` of the device's oldest unacknowledged event, as its last status tells
/// (it has aged since the status was sent).
fn backlog_age(now: u64, d: &DeviceRow, st: &Status) -> u64 {
    if st.backlog == 0 {
        0
    } else {
        st.oldest_unacked_s as u64 + now.saturating_sub(d.status_at)
    }
}

/// `("online" | "offline" | "alert", reasons)`: grey when offline, red when offline longer
/// than the threshold or holding a backlog older than one.
fn device_state(
    s: &FloorSettings,
    now: u64,
    d: &DeviceRow,
    status: Option<&Status>,
) -> (&'static str, Vec<String>) {
    let mut why = Vec::new();
    if !d.online {
        let since = d.death_at.max(d.last_seen);
        let off = now.saturating_sub(since);
        if off > s.offline_red_s {
            why.push(format!("offline for {off} s"));
        }
    }
    if let Some(st) = status {
        // A dead device's backlog still ages: nothing of it can arrive.
        let age = backlog_age(now, d, st);
        if age > s.backlog_red_s {
            why.push(format!("{} events waiting, the oldest {age} s", st.backlog));
        }
    }
    let state = if !why.is_empty() {
        "alert"
    } else if d.online {
        "online"
    } else {
        "offline"
    };
    (state, why)
}

/// Whether a wave with `open` tasks and a cutoff (0: none) is at risk at `now`, given
/// `recent` picks at its site in the last 15 minutes.
fn cutoff_risk(s: &FloorSettings, now: u64, cutoff: u64, open: u64, recent: u64) -> bool {
    if cutoff == 0 || open == 0 {
        return false;
    }
    if now + s.cutoff_risk_s >= cutoff {
        return true;
    }
    // At the site's recent rate, the open tasks would take this long.
    recent > 0 && now + open * RECENT_S / recent > cutoff
}

#[cfg(test)]
mod tests {
    use super::*;
    use floorhand_protocol::oms::{Capture, Event, Picked, Task, Wave};

    fn ev(cursor: u64, device: &str, at: u64, operator: u32, kind: EventKind) -> StoredEvent {
        StoredEvent {
            cursor,
            site: "s1".into(),
            device: device.into(),
            incarnation: 1,
            event: Event {
                seq: cursor,
                at,
                operator,
                kind,
            },
        }
    }

    fn picked(task_id: u64, qty: u32) -> EventKind {
        EventKind::Picked(Picked {
            task_id,
            qty,
            lot: None,
            serial: None,
            expiry: None,
            tote: None,
        })
    }

    fn wave(wave_id: u64, cutoff: u64, tasks: &[(u64, &str, u32)]) -> Down {
        let tasks: Vec<Task> = tasks
            .iter()
            .map(|&(task_id, order, qty)| Task {
                task_id,
                order_id: order.into(),
                order_line: 1,
                location: "A-01".into(),
                pick_seq: task_id as u32,
                location_check: 11,
                gtins: vec![],
                sku: "S".into(),
                description: "D".into(),
                qty,
                capture: Capture::default(),
                tote_required: false,
            })
            .collect();
        Down::WaveAssigned(Wave {
            wave_id,
            version: 1,
            priority: 1,
            cutoff,
            task_count: tasks.len() as u32,
            digest: 0,
            tasks,
        })
    }

    fn row(device: &str, online: bool, last_seen: u64, status: Option<Status>) -> DeviceRow {
        DeviceRow {
            site: "s1".into(),
            device: device.into(),
            incarnation: 1,
            online,
            session: 1,
            last_seen,
            birth_at: 0,
            death_at: if online { 0 } else { last_seen },
            status_at: last_seen,
            birth: None,
            status: status.map(|s| serde_json::to_string(&s).unwrap()),
            high_seen: 0,
            through: 0,
            storage_alarm_pct: None,
            down_unacked: 0,
        }
    }

    fn status(backlog: u32, oldest: u32, printer: PrinterState) -> Status {
        Status {
            backlog,
            oldest_unacked_s: oldest,
            printer,
            print_queue: 2,
            storage_bytes: 1000,
            storage_pct: 3,
            down_oms_incarnation: 0,
            down_applied_seq: 0,
        }
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_wave_counts_its_tasks_open_picked_short_and_cancelled() {
        let mut f = Floor::new(FloorSettings::default());
        f.apply_down(
            "s1",
            "hh1",
            &wave(
                7,
                NOW + 7200,
                &[
                    (1, "A", 2),
                    (2, "A", 1),
                    (3, "B", 1),
                    (4, "C", 5),
                    (5, "D", 1),
                ],
            ),
            NOW - 100,
        );
        // Events may be read before the wave: the facts wait for it.
        f.apply_event(&ev(1, "hh1", NOW - 90, 42, picked(1, 2)));
        f.apply_event(&ev(
            2,
            "hh1",
            NOW - 80,
            42,
            EventKind::ShortPicked {
                task_id: 2,
                qty: 0,
                reason: ShortReason::LocationEmpty,
            },
        ));
        f.apply_event(&ev(3, "hh1", NOW - 70, 42, picked(4, 2)));
        f.apply_down(
            "s1",
            "hh1",
            &Down::OrderCancelled {
                order_id: "B".into(),
            },
            NOW - 60,
        );
        f.apply_down(
            "s1",
            "hh1",
            &Down::TasksRevoked {
                wave_id: 7,
                task_ids: vec![5],
            },
            NOW - 60,
        );
        let v = f.view(NOW, &[]);
        let w = &v["waves"][0];
        assert_eq!(
            (
                w["open"].clone(),
                w["picked"].clone(),
                w["short"].clone(),
                w["cancelled"].clone()
            ),
            (json!(1), json!(1), json!(1), json!(2)),
            "{w}"
        );
        assert_eq!(w["at_risk"], false, "two hours left at a fine rate: {w}");
        // An undo reopens a picked task.
        f.apply_event(&ev(
            4,
            "hh1",
            NOW - 50,
            42,
            EventKind::PickUndone { task_id: 1, qty: 1 },
        ));
        assert_eq!(f.view(NOW, &[])["waves"][0]["open"], 2);
    }

    #[test]
    fn a_cutoff_is_at_risk_inside_its_margin_past_it_or_when_the_rate_is_too_slow() {
        let s = FloorSettings {
            cutoff_risk_s: 600,
            ..FloorSettings::default()
        };
        assert!(!cutoff_risk(&s, NOW, 0, 10, 0), "no cutoff");
        assert!(!cutoff_risk(&s, NOW, NOW - 10, 0, 0), "nothing open");
        assert!(cutoff_risk(&s, NOW, NOW - 10, 1, 100), "late");
        assert!(cutoff_risk(&s, NOW, NOW + 600, 1, 100), "inside the margin");
        assert!(
            !cutoff_risk(&s, NOW, NOW + 601, 1, 0),
            "outside it, no rate"
        );
        // 30 picks in 15 min: 100 open tasks take 50 min; 40 min left.
        assert!(cutoff_risk(&s, NOW, NOW + 2400, 100, 30));
        assert!(!cutoff_risk(&s, NOW, NOW + 3600, 100, 30));
    }

    #[test]
    fn an_offline_device_is_grey_then_red_after_the_threshold_and_an_old_backlog_is_red() {
        let s = FloorSettings {
            offline_red_s: 60,
            backlog_red_s: 30,
            ..FloorSettings::default()
        };
        let check = |d: DeviceRow, expected: &str| {
            let st: Option<Status> = d
                .status
                .as_deref()
                .map(|t| serde_json::from_str(t).unwrap());
            assert_eq!(device_state(&s, NOW, &d, st.as_ref()).0, expected, "{d:?}");
        };
        check(
            row("a", true, NOW - 1, Some(status(0, 0, PrinterState::None))),
            "online",
        );
        check(row("a", false, NOW - 60, None), "offline");
        check(row("a", false, NOW - 61, None), "alert");
        // 20 s old when sent 5 s ago: 25 s, under 30.
        check(
            row("a", true, NOW - 5, Some(status(3, 20, PrinterState::None))),
            "online",
        );
        check(
            row("a", true, NOW - 11, Some(status(3, 20, PrinterState::None))),
            "alert",
        );
        check(
            row(
                "a",
                false,
                NOW - 11,
                Some(status(3, 20, PrinterState::None)),
            ),
            "alert",
        );
    }

    #[test]
    fn operators_picks_per_hour_count_the_last_15_minutes_and_the_shift() {
        let mut f = Floor::new(FloorSettings::default());
        f.apply_event(&ev(1, "hh1", NOW - 3600, 0, EventKind::LoggedIn));
        // Operator 42: 10 picks an hour ago, 5 in the last 15 minutes.
        for i in 0..10 {
            f.apply_event(&ev(2 + i, "hh1", NOW - 3600 + i, 42, picked(i, 1)));
        }
        for i in 0..5 {
            f.apply_event(&ev(20 + i, "hh1", NOW - 60 + i, 42, picked(100 + i, 3)));
        }
        f.apply_event(&ev(
            30,
            "hh1",
            NOW - 10,
            42,
            EventKind::ShortPicked {
                task_id: 200,
                qty: 1,
                reason: ShortReason::Damaged,
            },
        ));
        f.apply_event(&ev(
            31,
            "hh1",
            NOW - 9,
            42,
            EventKind::ShortPicked {
                task_id: 201,
                qty: 0,
                reason: ShortReason::Damaged,
            },
        ));
        let v = f.view(NOW, &[]);
        let p = &v["people"][0];
        assert_eq!(p["operator"], 42);
        // 6 picks (the short one with a unit counts) in 15 min: 24 an hour.
        assert_eq!(p["picks_per_hour_15_min"], 24, "{p}");
        // 16 picks over the hour since the first: 16 an hour.
        assert_eq!(p["picks_shift"], 16, "{p}");
        assert_eq!(p["picks_per_hour_shift"], 16, "{p}");
        assert_eq!(p["short_picks"], 2);
        assert_eq!(p["short_by_reason"]["damaged"], 2);
        // The site's series: this minute's picks and units.
        let k = f.kpis(NOW);
        let minutes = k["sites"][0]["picks_per_minute"].as_array().unwrap();
        assert_eq!(minutes.len(), MINUTES as usize);
        let sum: u64 = minutes.iter().map(|m| m["picks"].as_u64().unwrap()).sum();
        assert_eq!(sum, 6, "the hour-old picks are outside the last 60 minutes");
        assert_eq!(k["sites"][0]["picks_last_15_min"], 6);
        // A pick stamped by a clock two hours ahead is gone at the next prune.
        f.apply_event(&ev(40, "hh1", NOW + 7200, 42, picked(300, 1)));
        f.prune(NOW);
        assert_eq!(f.minutes["s1"].keys().max(), Some(&(NOW / 60 - 1)));
        // Pruned after the shift, nothing is left of them.
        f.prune(NOW + 11 * 3600);
        assert!(
            f.view(NOW + 11 * 3600, &[])["people"]
                .as_array()
                .unwrap()
                .is_empty()
        );
    }

    fn refused(reason: RefusalReason, count: u32) -> EventKind {
        EventKind::ScanRefused {
            reason,
            task_id: Some(9),
            count,
        }
    }

    #[test]
    fn refused_scans_are_counted_per_operator_and_per_reason_with_their_counts() {
        let mut f = Floor::new(FloorSettings::default());
        f.apply_event(&ev(1, "hh1", NOW - 100, 42, picked(1, 1)));
        f.apply_event(&ev(
            2,
            "hh1",
            NOW - 90,
            42,
            refused(RefusalReason::WrongItem, 1),
        ));
        // A coalesced report stands for 5 refusals.
        f.apply_event(&ev(
            3,
            "hh1",
            NOW - 89,
            42,
            refused(RefusalReason::WrongItem, 5),
        ));
        f.apply_event(&ev(
            4,
            "hh1",
            NOW - 80,
            42,
            refused(RefusalReason::BadBarcode, 1),
        ));
        f.apply_event(&ev(
            5,
            "hh2",
            NOW - 70,
            7,
            refused(RefusalReason::TooMany, 2),
        ));
        // Nobody logged in: operator 0's row.
        f.apply_event(&ev(
            6,
            "hh2",
            NOW - 60,
            0,
            refused(RefusalReason::NotLoggedIn, 1),
        ));
        let v = f.view(NOW, &[]);
        let people = v["people"].as_array().unwrap();
        let of = |op: u64| people.iter().find(|p| p["operator"] == op).unwrap();
        assert_eq!(of(42)["refused_scans"], 7, "{v}");
        assert_eq!(of(42)["refused_by_reason"]["wrong item"], 6);
        assert_eq!(of(42)["refused_by_reason"]["bad barcode"], 1);
        assert_eq!(of(42)["picks_shift"], 1, "a refusal is not a pick");
        assert_eq!(of(7)["refused_scans"], 2);
        assert_eq!(of(7)["refused_by_reason"]["too many"], 2);
        assert_eq!(of(0)["refused_by_reason"]["not logged in"], 1);
        assert_eq!(of(0)["picks_shift"], 0);
        // The device's operator is the one on the refusal.
        let rows = [row("hh2", true, NOW, None)];
        assert_eq!(f.view(NOW, &rows)["devices"][0]["operator"], 0);
        // Gone with the shift.
        f.prune(NOW + 9 * 3600);
        assert!(
            f.view(NOW + 9 * 3600, &[])["people"]
                .as_array()
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_storm_of_refusal_reports_keeps_one_entry_per_reason_and_minute() {
        let mut f = Floor::new(FloorSettings::default());
        // A device reporting one event a second for an hour, two classes in turn.
        for i in 0..3600u64 {
            let reason = if i % 2 == 0 {
                RefusalReason::BadBarcode
            } else {
                RefusalReason::WrongItem
            };
            f.apply_event(&ev(i + 1, "hh1", NOW - 3600 + i, 42, refused(reason, 3)));
        }
        let p = &f.people[&("s1".to_string(), 42)];
        assert_eq!(p.refused.len(), 2 * 60, "two classes a minute for an hour");
        let v = f.view(NOW, &[]);
        assert_eq!(v["people"][0]["refused_scans"], 3600 * 3);
        assert_eq!(v["people"][0]["refused_by_reason"]["bad barcode"], 1800 * 3);
    }

    #[test]
    fn the_operator_is_the_one_on_the_latest_event_and_none_after_a_logout() {
        let mut f = Floor::new(FloorSettings::default());
        let d = [row("hh1", true, NOW, None)];
        f.apply_event(&ev(1, "hh1", NOW, 42, EventKind::LoggedIn));
        assert_eq!(f.view(NOW, &d)["devices"][0]["operator"], 42);
        f.apply_event(&ev(2, "hh1", NOW, 42, EventKind::LoggedOut));
        assert_eq!(f.view(NOW, &d)["devices"][0]["operator"], 0);
        f.apply_event(&ev(3, "hh1", NOW, 7, picked(1, 1)));
        // A conflict the device raised on its own keeps the operator.
        f.apply_event(&ev(
            4,
            "hh1",
            NOW,
            0,
            EventKind::Conflict {
                task_id: 1,
                detail: "cancelled after pick".into(),
            },
        ));
        let v = f.view(NOW, &d);
        assert_eq!(v["devices"][0]["operator"], 7);
        assert_eq!(v["devices"][0]["role"], "pick");
    }

    #[test]
    fn a_picker_row_shows_its_terminals_latest_firmware_version() {
        let mut f = Floor::new(FloorSettings::default());
        let d = [row("hh1", true, NOW, None)];
        assert_eq!(f.view(NOW, &d)["devices"][0]["terminal"], Value::Null);
        let hello = |v: &str| EventKind::TerminalConnected { software: v.into() };
        f.apply_event(&ev(1, "hh1", NOW, 0, hello("1.2.0")));
        f.apply_event(&ev(2, "hh1", NOW, 0, hello("1.3.0")));
        let v = f.view(NOW, &d);
        assert_eq!(v["devices"][0]["terminal"], "1.3.0");
        assert_eq!(v["devices"][0]["role"], "pick");
    }

    #[test]
    fn pack_stations_count_orders_once_and_labels_and_show_their_printer() {
        let mut f = Floor::new(FloorSettings::default());
        let closed = |order: &str, no: u16| EventKind::CartonClosed {
            order_id: order.into(),
            carton_no: no,
            sscc: "1".into(),
            weight_g: 1,
            short_ship: None,
        };
        f.apply_event(&ev(1, "p1", NOW, 3, closed("A", 1)));
        f.apply_event(&ev(2, "p1", NOW, 3, closed("A", 2)));
        f.apply_event(&ev(3, "p1", NOW, 3, closed("B", 1)));
        for i in 0..3 {
            f.apply_event(&ev(
                4 + i,
                "p1",
                NOW,
                3,
                EventKind::LabelPrinted {
                    sscc: "1".into(),
                    job_id: i,
                },
            ));
        }
        let v = f.view(
            NOW,
            &[row(
                "p1",
                true,
                NOW,
                Some(status(0, 0, PrinterState::PaperOut)),
            )],
        );
        assert_eq!(v["stations"][0]["orders_packed"], 2, "{v}");
        assert_eq!(v["stations"][0]["labels_printed"], 3);
        assert_eq!(v["devices"][0]["printer"], "paper out");
        assert_eq!(v["devices"][0]["print_queue"], 2);
        assert_eq!(v["devices"][0]["role"], "pack");
    }

    #[test]
    fn the_exceptions_feed_is_newest_first_and_bounded() {
        let mut f = Floor::new(FloorSettings {
            feed_len: 3,
            ..FloorSettings::default()
        });
        let conflict = |t: u64| EventKind::Conflict {
            task_id: t,
            detail: "cancelled after pick".into(),
        };
        f.apply_event(&ev(1, "hh1", NOW - 30, 1, conflict(1)));
        f.apply_event(&ev(
            2,
            "p1",
            NOW - 10,
            1,
            EventKind::StorageAlarm { pct: 91 },
        ));
        f.apply_event(&ev(
            3,
            "p1",
            NOW - 20,
            1,
            EventKind::PrintFailed {
                sscc: "0061414".into(),
                job_id: 1,
                fault: "paper out".into(),
            },
        ));
        f.apply_event(&ev(4, "hh1", NOW - 40, 1, conflict(2)));
        let v = f.view(NOW, &[row("p1", true, NOW, None)]);
        let kinds: Vec<&str> = v["exceptions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["storage", "print failed", "conflict"]);
        assert_eq!(v["exceptions"][2]["text"], "task 1: cancelled after pick");
        assert_eq!(v["devices"][0]["storage_alarm_pct"], 91);
        // Back below: the alarm is off, and the feed says so.
        f.apply_event(&ev(
            5,
            "p1",
            NOW - 5,
            1,
            EventKind::StorageAlarm { pct: 70 },
        ));
        let v = f.view(NOW, &[row("p1", true, NOW, None)]);
        assert_eq!(v["devices"][0]["storage_alarm_pct"], Value::Null);
        assert_eq!(v["exceptions"][0]["text"], "storage back down to 70%");
    }
}
