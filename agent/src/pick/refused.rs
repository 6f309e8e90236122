//! Refused scans, reported to the OMS by class and coalesced: shared by the pick and pack
//! workflows (pure, no clock: `now` comes in, in the workflow's own unit).
//!
//! Each refused scan (not a refused key press: a key is the operator's own slip on the
//! device and says nothing about labels, tasks or training that a supervisor can act on)
//! leaves the workflow as a [`Refusal`], which the station writes as one `ScanRefused`
//! event to the outbox. A storm of bad scans (a hostile or stuck scanner: 20,000 in a
//! minute) must not flood the outbox, so [`Refusals`] lets at most one refusal per class
//! through per window (a second): the first after a quiet window goes at once with count
//! 1, later ones in the window are counted and leave with the next refusal of that class
//! after the window, or with [`Refusals::due`] (the station's tick) once the window is
//! over. So each class costs at most one outbox row a second, and every refusal is
//! counted once while the station runs (those counted in the last second before a stop
//! are flushed by the stop).

/// The class of a refused scan (the wire's `oms::RefusalReason`, converted at the edge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// Not the item asked for.
    WrongItem,
    /// Not the task's location.
    WrongLocation,
    /// Not a valid barcode, or data that contradicts itself or the units in hand.
    BadBarcode,
    /// Nobody (or someone else) is logged in.
    NotLoggedIn,
    /// No work for this scan.
    NoTask,
    /// Still saving the previous step.
    Busy,
    /// More units than are left.
    TooMany,
    /// Any other.
    Other,
}

const CLASSES: usize = 8;

impl RefusalReason {
    fn index(self) -> usize {
        self as usize
    }

    const ALL: [RefusalReason; CLASSES] = [
        RefusalReason::WrongItem,
        RefusalReason::WrongLocation,
        RefusalReason::BadBarcode,
        RefusalReason::NotLoggedIn,
        RefusalReason::NoTask,
        RefusalReason::Busy,
        RefusalReason::TooMany,
        RefusalReason::Other,
    ];
}

/// Refused scans of one class to report: one `ScanRefused` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The class.
    pub reason: RefusalReason,
    /// The task the last of them concerned, if any.
    pub task_id: Option<u64>,
    /// How many refusals it stands for, at least 1.
    pub count: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Class {
    /// When the last report of this class left, if one did.
    sent_at: Option<u64>,
    /// Refusals counted since, not yet reported.
    held: u32,
    task_id: Option<u64>,
}

/// The rate limiter: at most one report per class per `window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusals {
    window: u64,
    classes: [Class; CLASSES],
}

impl Refusals {
    /// A limiter letting one report per class through per `window` (in the unit of the
    /// `now` the caller passes: 1000 for milliseconds, 1 for seconds).
    pub fn new(window: u64) -> Self {
        Self {
            window: window.max(1),
            classes: [Class::default(); CLASSES],
        }
    }

    /// Counts one refused scan; returns the report to send now, if the window allows.
    pub fn refused(
        &mut self,
        now: u64,
        reason: RefusalReason,
        task_id: Option<u64>,
    ) -> Option<Refusal> {
        let c = &mut self.classes[reason.index()];
        c.held = c.held.saturating_add(1);
        c.task_id = task_id;
        self.take(now, reason)
    }

    /// Reports of classes whose counted refusals may leave now (their window is over),
    /// as the workflow's effects.
    pub fn due<E: From<Refusal>>(&mut self, now: u64) -> Vec<E> {
        RefusalReason::ALL
            .into_iter()
            .filter_map(|r| self.take(now, r).map(E::from))
            .collect()
    }

    /// Every counted refusal, whatever the window (for a station that stops).
    pub fn flush<E: From<Refusal>>(&mut self) -> Vec<E> {
        RefusalReason::ALL
            .into_iter()
            .filter_map(|r| {
                self.classes[r.index()].sent_at = None;
                self.take(0, r).map(E::from)
            })
            .collect()
    }

    /// Whether refusals wait for their window to end (the station ticks while they do).
    pub fn holding(&self) -> bool {
        self.classes.iter().any(|c| c.held > 0)
    }

    fn take(&mut self, now: u64, reason: RefusalReason) -> Option<Refusal> {
        let window = self.window;
        let c = &mut self.classes[reason.index()];
        let open = c.sent_at.is_none_or(|at| now.saturating_sub(at) >= window);
        if c.held == 0 || !open {
            return None;
        }
        let report = Refusal {
            reason,
            task_id: c.task_id,
            count: c.held,
        };
        c.held = 0;
        c.sent_at = Some(now);
        Some(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(reason: RefusalReason, task_id: Option<u64>, count: u32) -> Refusal {
        Refusal {
            reason,
            task_id,
            count,
        }
    }

    #[test]
    fn the_first_refusal_of_a_class_is_reported_at_once() {
        let mut l = Refusals::new(1000);
        assert_eq!(
            l.refused(5, RefusalReason::WrongItem, Some(7)),
            Some(r(RefusalReason::WrongItem, Some(7), 1))
        );
        assert!(!l.holding());
        // Another class has its own window.
        assert_eq!(
            l.refused(6, RefusalReason::BadBarcode, None),
            Some(r(RefusalReason::BadBarcode, None, 1))
        );
    }

    #[test]
    fn refusals_within_the_window_are_counted_into_the_next_report() {
        let mut l = Refusals::new(1000);
        assert!(l.refused(0, RefusalReason::WrongItem, Some(1)).is_some());
        assert_eq!(l.refused(10, RefusalReason::WrongItem, Some(1)), None);
        assert_eq!(l.refused(999, RefusalReason::WrongItem, Some(2)), None);
        assert!(l.holding());
        assert_eq!(l.due::<Refusal>(998), vec![]);
        assert_eq!(
            l.refused(1000, RefusalReason::WrongItem, Some(3)),
            Some(r(RefusalReason::WrongItem, Some(3), 3))
        );
        assert!(!l.holding());
    }

    #[test]
    fn counted_refusals_leave_with_the_tick_after_the_window() {
        let mut l = Refusals::new(1000);
        l.refused(0, RefusalReason::Busy, None);
        l.refused(1, RefusalReason::Busy, None);
        l.refused(2, RefusalReason::NoTask, None);
        assert_eq!(l.due::<Refusal>(500), vec![]);
        assert_eq!(
            l.due::<Refusal>(1001),
            vec![r(RefusalReason::Busy, None, 1)]
        );
        assert_eq!(l.due::<Refusal>(5000), vec![]);
    }

    #[test]
    fn a_storm_of_scans_costs_one_report_per_class_per_window_and_loses_no_count() {
        let mut l = Refusals::new(1000);
        let mut reports = Vec::new();
        // 20,000 bad scans in 10 s, alternating two classes.
        for i in 0..20_000u64 {
            let reason = if i % 2 == 0 {
                RefusalReason::BadBarcode
            } else {
                RefusalReason::WrongItem
            };
            reports.extend(l.refused(i / 2, reason, None));
        }
        reports.extend(l.flush::<Refusal>());
        assert!(reports.len() <= 2 * 11, "{} reports", reports.len());
        let total: u32 = reports.iter().map(|r| r.count).sum();
        assert_eq!(total, 20_000);
        assert!(!l.holding());
    }

    #[test]
    fn flush_reports_everything_counted_whatever_the_window() {
        let mut l = Refusals::new(1000);
        l.refused(0, RefusalReason::Other, Some(4));
        l.refused(1, RefusalReason::Other, Some(5));
        assert_eq!(
            l.flush::<Refusal>(),
            vec![r(RefusalReason::Other, Some(5), 1)]
        );
        assert_eq!(l.flush::<Refusal>(), vec![]);
    }
}
