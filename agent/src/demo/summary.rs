//! The demo's report: counters, the exactly-once check (pure: the OMS's received events
//! against the agents' committed ones and their stores) and the summary table.

use std::collections::{BTreeMap, BTreeSet};

use floorhand_protocol::oms::{Event, EventKind};
use serde::Serialize;

/// What the stations counted.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Counters {
    /// Tasks confirmed in full.
    pub tasks_picked: u64,
    /// Tasks closed short.
    pub tasks_short: u64,
    /// Scans or keys the workflow refused (error beeps).
    pub exceptions: u64,
    /// Scanner bounces the workflow ignored.
    pub bounces_ignored: u64,
    /// Cartons closed.
    pub cartons: u64,
    /// Labels the printer took without a fault.
    pub labels_printed: u64,
}

/// One agent's side, read from its store at the end.
#[derive(Debug, Clone)]
pub struct AgentSide {
    /// Device id.
    pub device: String,
    /// Highest event seq it wrote.
    pub high_seq: u64,
    /// Outbox rows the OMS has not acked.
    pub unacked: u64,
    /// Units picked per task, as the store has them.
    pub picked: BTreeMap<u64, u32>,
}

/// Checks that the OMS received every committed event exactly once, with the same
/// contents, and that its pick totals equal the agents' stores. Returns the problems.
///
/// - per device, the OMS's seqs are exactly `1..=high_seq` (nothing lost, nothing twice);
/// - every event a station committed arrived with the same operator and contents;
/// - per task, the units the OMS was told (`Picked` + `ShortPicked` - `PickUndone`)
///   equal the store's `picked_qty`;
/// - nothing is left unacked in any outbox.
pub fn exactly_once(
    received: &[(String, Event)],
    committed: &super::Committed,
    agents: &[AgentSide],
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut by_device: BTreeMap<&str, BTreeMap<u64, &Event>> = BTreeMap::new();
    for (device, e) in received {
        if by_device
            .entry(device)
            .or_default()
            .insert(e.seq, e)
            .is_some()
        {
            problems.push(format!("{device}: seq {} delivered twice", e.seq));
        }
    }
    let empty = BTreeMap::new();
    for a in agents {
        let got = by_device.get(a.device.as_str()).unwrap_or(&empty);
        let seqs: BTreeSet<u64> = got.keys().copied().collect();
        let want: BTreeSet<u64> = (1..=a.high_seq).collect();
        let missing: Vec<u64> = want.difference(&seqs).copied().collect();
        let extra: Vec<u64> = seqs.difference(&want).copied().collect();
        if !missing.is_empty() {
            problems.push(format!("{}: OMS never received seqs {missing:?}", a.device));
        }
        if !extra.is_empty() {
            problems.push(format!(
                "{}: OMS received seqs {extra:?} the agent never wrote",
                a.device
            ));
        }
        if a.unacked > 0 {
            problems.push(format!("{}: {} events still unacked", a.device, a.unacked));
        }
        for (seq, operator, kind) in committed.get(&a.device).into_iter().flatten() {
            match got.get(seq) {
                Some(e) if e.kind == *kind && e.operator == *operator => {}
                Some(e) => problems.push(format!(
                    "{}: seq {seq}: committed {kind:?} by {operator}, OMS got {:?} by {}",
                    a.device, e.kind, e.operator
                )),
                None => {} // already reported as missing
            }
        }
        let mut told: BTreeMap<u64, i64> = BTreeMap::new();
        for e in got.values() {
            match &e.kind {
                EventKind::Picked(p) => *told.entry(p.task_id).or_default() += i64::from(p.qty),
                EventKind::ShortPicked { task_id, qty, .. } => {
                    *told.entry(*task_id).or_default() += i64::from(*qty)
                }
                EventKind::PickUndone { task_id, qty } => {
                    *told.entry(*task_id).or_default() -= i64::from(*qty)
                }
                _ => {}
            }
        }
        for (task, units) in &a.picked {
            let oms = told.get(task).copied().unwrap_or(0);
            if oms != i64::from(*units) {
                problems.push(format!(
                    "{}: task {task}: store has {units} units picked, OMS was told {oms}",
                    a.device
                ));
            }
        }
    }
    problems
}

/// The demo's result, also written as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Which broker ran.
    pub broker: String,
    /// What the stations counted.
    #[serde(flatten)]
    pub counters: Counters,
    /// Events the agents wrote (sum of their highest seqs).
    pub events_sent: u64,
    /// Events the OMS acknowledged (sum of its ack points).
    pub events_acked: u64,
    /// Events the OMS received the first time.
    pub oms_events_received: u64,
    /// Re-sent events the OMS dropped as duplicates.
    pub duplicates_suppressed: u64,
    /// How long the link was cut, seconds.
    pub outage_s: f64,
    /// Largest backlog seen (both devices), events.
    pub max_backlog: u64,
    /// The order the OMS cancelled mid-shift.
    pub cancelled_order: String,
    /// Whether the exactly-once check holds: set by [`Summary::finish`].
    pub exactly_once: bool,
    /// Exactly-once problems (empty when the check holds).
    pub problems: Vec<String>,
    /// Terminal screens drawn (PNG).
    pub screens: Vec<String>,
    /// Labels the printer received (ZPL).
    pub labels: Vec<String>,
    /// PNG previews of the labels, when the label tests' renderer is installed.
    pub label_previews: Vec<String>,
    /// Remarks (a device that could not run).
    pub notes: Vec<String>,
    /// Wall time of the shift, seconds.
    pub elapsed_s: f64,
}

impl Summary {
    /// Sets the verdict from the problems found.
    pub fn finish(mut self) -> Summary {
        self.exactly_once = self.problems.is_empty();
        self
    }

    /// The table printed at the end.
    pub fn table(&self) -> String {
        let rows: Vec<(&str, String)> = vec![
            ("broker", self.broker.clone()),
            ("tasks picked", self.counters.tasks_picked.to_string()),
            ("tasks short", self.counters.tasks_short.to_string()),
            (
                "exceptions (refused scans)",
                self.counters.exceptions.to_string(),
            ),
            (
                "scanner bounces ignored",
                self.counters.bounces_ignored.to_string(),
            ),
            ("order cancelled mid-shift", self.cancelled_order.clone()),
            ("cartons closed", self.counters.cartons.to_string()),
            ("labels printed", self.counters.labels_printed.to_string()),
            ("events sent by agents", self.events_sent.to_string()),
            ("events acked by the OMS", self.events_acked.to_string()),
            (
                "events received by the OMS",
                self.oms_events_received.to_string(),
            ),
            (
                "duplicates suppressed",
                self.duplicates_suppressed.to_string(),
            ),
            ("outage", format!("{:.1} s", self.outage_s)),
            ("largest backlog", format!("{} events", self.max_backlog)),
            (
                "exactly-once check",
                if self.exactly_once {
                    "HOLDS: the OMS received exactly what the agents committed".into()
                } else {
                    "FAILED".into()
                },
            ),
            ("shift took", format!("{:.1} s", self.elapsed_s)),
        ];
        let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut s = String::new();
        for (k, v) in rows {
            s.push_str(&format!("  {k:<w$}  {v}\n"));
        }
        for p in &self.problems {
            s.push_str(&format!("  problem: {p}\n"));
        }
        for n in &self.notes {
            s.push_str(&format!("  note: {n}\n"));
        }
        let list = |title: &str, v: &[String]| -> String {
            match v {
                [] => format!("{title}: none\n"),
                [one] => format!("{title}: {one}\n"),
                [first, .., last] => {
                    format!("{title} ({}): {first} ... {last}\n", v.len())
                }
            }
        };
        s.push_str(&list("terminal screens (PNG)", &self.screens));
        s.push_str(&list("labels (ZPL)", &self.labels));
        if !self.label_previews.is_empty() {
            s.push_str(&list("label previews (PNG)", &self.label_previews));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floorhand_protocol::oms::Picked;

    fn ev(seq: u64, kind: EventKind) -> Event {
        Event {
            seq,
            at: 0,
            operator: 7,
            kind,
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

    fn check(received: Vec<(u64, EventKind)>, high_seq: u64, expected: &[&str]) {
        let received: Vec<(String, Event)> = received
            .into_iter()
            .map(|(s, k)| ("hh".to_string(), ev(s, k)))
            .collect();
        let committed = BTreeMap::from([(
            "hh".to_string(),
            vec![(1, 7, EventKind::LoggedIn), (2, 7, picked(10, 2))],
        )]);
        let agents = [AgentSide {
            device: "hh".into(),
            high_seq,
            unacked: 0,
            picked: BTreeMap::from([(10, 2)]),
        }];
        let problems = exactly_once(&received, &committed, &agents);
        assert_eq!(problems.len(), expected.len(), "{problems:?}");
        for (p, want) in problems.iter().zip(expected) {
            assert!(p.contains(want), "{p:?} should mention {want:?}");
        }
    }

    #[test]
    fn the_check_holds_when_the_oms_got_every_committed_event_once() {
        check(vec![(1, EventKind::LoggedIn), (2, picked(10, 2))], 2, &[]);
    }

    #[test]
    fn a_lost_event_a_duplicate_and_changed_contents_each_break_the_check() {
        check(
            vec![(1, EventKind::LoggedIn)],
            2,
            &["never received seqs [2]", "OMS was told 0"],
        );
        check(
            vec![
                (1, EventKind::LoggedIn),
                (2, picked(10, 2)),
                (2, picked(10, 2)),
            ],
            2,
            &["seq 2 delivered twice"],
        );
        check(
            vec![(1, EventKind::LoggedIn), (2, picked(10, 3))],
            2,
            &["seq 2: committed", "OMS was told 3"],
        );
    }
}
