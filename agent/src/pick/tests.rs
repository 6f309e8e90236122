//! Workflow tests: every path of the pick state machine, driven input by input.

use floorhand_protocol::link::{Beep, Key, Level, ScanTarget, Screen, fit};

use super::*;

const WIDGET: &str = "9506000134352"; // GTIN-13 of the each
const WIDGET_CASE: &str = "19506000134359"; // GTIN-14 of a case of 6
const GADGET: &str = "96385074"; // EAN-8

fn task(id: u64, location: &str, seq: u32, prio: u8, qty: u32) -> PickTask {
    PickTask {
        task_id: id,
        location: location.into(),
        location_check: 42,
        pick_seq: seq,
        priority: prio,
        gtins: vec![
            PackGtin {
                gtin: gtin(WIDGET),
                pack_qty: 1,
            },
            PackGtin {
                gtin: gtin(WIDGET_CASE),
                pack_qty: 6,
            },
        ],
        sku: format!("SKU-{id}"),
        description: format!("Widget {id}"),
        qty,
        picked: 0,
        capture: Capture::default(),
        tote_required: false,
        qty_entry: QtyEntry::ScanEach,
        skip_rank: 0,
        undo_allowed: true,
    }
}

fn gtin(s: &str) -> Gtin14 {
    Gtin14::parse(s).expect("test GTIN")
}

/// A device driven by a test, with its own clock.
struct Rig {
    p: Picker,
    now: u64,
}

impl Rig {
    fn logged_in(tasks: Vec<PickTask>) -> Self {
        let mut r = Rig {
            p: Picker::new(PickConfig::default()),
            now: 1_000,
        };
        r.input(Input::Tasks(tasks));
        let e = r.scan("OP7");
        assert_eq!(persisted(&e), Some(&Command::Login { operator: 7 }));
        r.commit(&e);
        r
    }

    fn input(&mut self, input: Input) -> Vec<Effect> {
        self.now += 1_000;
        let effects = self.p.handle(self.now, input);
        let audits = effects
            .iter()
            .filter(|e| matches!(e, Effect::Audit(_)))
            .count();
        assert_eq!(audits, 1, "every input is audited once: {effects:?}");
        effects
    }

    fn scan(&mut self, data: &str) -> Vec<Effect> {
        self.input(Input::scan(data.as_bytes()))
    }

    fn key(&mut self, k: Key) -> Vec<Effect> {
        self.input(Input::Key(k))
    }

    fn keys(&mut self, ks: &[Key]) -> Vec<Effect> {
        ks.iter().map(|k| self.key(*k)).last().unwrap_or_default()
    }

    /// Answers the command persisted in `effects` as committed.
    fn commit(&mut self, effects: &[Effect]) -> Vec<Effect> {
        let id = effects.iter().find_map(|e| match e {
            Effect::Persist { id, .. } => Some(*id),
            _ => None,
        });
        let e = self.input(Input::Committed {
            id: id.expect("a persisted command"),
        });
        assert_eq!(
            beeps(&e).first(),
            Some(&Beep::Ok),
            "ok-beep after the commit: {e:?}"
        );
        e
    }

    /// Scans the location and commits the task start.
    fn arrive(&mut self, location: &str) -> Vec<Effect> {
        let e = self.scan(location);
        assert!(
            matches!(persisted(&e), Some(Command::StartTask { .. })),
            "{e:?}"
        );
        self.commit(&e)
    }
}

fn persisted(effects: &[Effect]) -> Option<&Command> {
    effects.iter().find_map(|e| match e {
        Effect::Persist { command, .. } => Some(command),
        _ => None,
    })
}

fn beeps(effects: &[Effect]) -> Vec<Beep> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Beep(b) => Some(*b),
            _ => None,
        })
        .collect()
}

fn screen(effects: &[Effect]) -> Option<&Screen> {
    effects.iter().rev().find_map(|e| match e {
        Effect::Show(s) => Some(s),
        _ => None,
    })
}

/// The last screen as one line of text.
fn shown(effects: &[Effect]) -> String {
    match screen(effects) {
        Some(Screen::Pick(p)) => format!("pick {} {} x{}", p.location, p.item, p.qty),
        Some(Screen::Scan { target, hint }) => format!("scan {target:?}: {hint}"),
        Some(Screen::Message { level, text }) => format!("{level:?}: {text}"),
        Some(Screen::Quantity { prompt, value, max }) => format!("{prompt} {value}/{max}"),
        Some(Screen::WaveDone { picked, short }) => {
            format!("wave done {picked} picked {short} short")
        }
        Some(s) => format!("{s:?}"),
        None => "-".into(),
    }
}

#[test]
fn login_by_badge_is_saved_before_the_ok_beep_then_the_first_task_shows() {
    let mut r = Rig {
        p: Picker::new(PickConfig::default()),
        now: 0,
    };
    assert_eq!(
        r.p.screen(),
        Screen::Scan {
            target: ScanTarget::Badge,
            hint: fit("Scan your badge")
        }
    );
    r.input(Input::Tasks(vec![task(1, "A-01", 1, 0, 1)]));
    let e = r.scan("OP7");
    assert_eq!(persisted(&e), Some(&Command::Login { operator: 7 }));
    assert_eq!(beeps(&e), [], "no beep before the commit");
    let e = r.commit(&e);
    assert_eq!(shown(&e), "pick A-01 Widget 1 x1");
    assert_eq!(r.p.operator(), Some(7));
}

#[test]
fn one_operator_per_device_and_the_same_badge_logs_out() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 1)]);
    let e = r.scan("OP8");
    assert_eq!(beeps(&e), [Beep::Error]);
    assert_eq!(
        shown(&e),
        "Error: Operator 7 is logged in: log out first (F4)"
    );
    let e = r.scan("OP7");
    assert_eq!(persisted(&e), Some(&Command::Logout { operator: 7 }));
    let e = r.commit(&e);
    assert_eq!(shown(&e), "scan Badge: Scan your badge");
    assert_eq!(r.p.operator(), None);
    let e = r.scan("OP8");
    assert_eq!(persisted(&e), Some(&Command::Login { operator: 8 }));
}

#[test]
fn tasks_come_in_pick_path_order_priority_then_sequence_then_location() {
    let mut r = Rig::logged_in(vec![
        task(1, "C-01", 5, 0, 1),
        task(2, "B-01", 1, 0, 1),
        task(3, "A-01", 9, 3, 1),
        task(4, "A-02", 1, 0, 1),
    ]);
    let mut order = Vec::new();
    for _ in 0..4 {
        let Screen::Pick(p) = r.p.screen() else {
            panic!()
        };
        order.push(p.location.to_string());
        let loc = p.location.to_string();
        r.arrive(&loc);
        let e = r.scan(WIDGET);
        assert_eq!(beeps(&e), [Beep::Ok]);
        let e = r.key(Key::Enter);
        r.commit(&e);
    }
    // Priority 3 first; then sequence 1 (A-02 before B-01 by location code); then 5.
    assert_eq!(order, ["A-01", "A-02", "B-01", "C-01"]);
    assert_eq!(
        shown(&[Effect::Show(r.p.screen())]),
        "wave done 4 picked 0 short"
    );
}

#[test]
fn each_scans_count_and_the_confirmation_beeps_only_after_the_commit() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 3)]);
    let e = r.arrive("A-01");
    assert_eq!(shown(&e), "scan Item: 0/3 Widget 1");
    r.scan(WIDGET);
    let e = r.scan(&format!("0{WIDGET}"));
    assert_eq!(
        shown(&e),
        "scan Item: 2/3 Widget 1",
        "GTIN-14 with a leading 0 is the EAN-13"
    );
    let e = r.scan(&format!("]C101{:0>14}", WIDGET));
    assert_eq!(shown(&e), "Info: Enter: confirm 3 Widget 1");
    let e = r.key(Key::Enter);
    assert_eq!(
        persisted(&e),
        Some(&Command::ConfirmPick {
            task_id: 1,
            units: Units {
                qty: 3,
                ..Units::default()
            }
        })
    );
    assert_eq!(beeps(&e), [], "never beep ok before the commit");
    let e = r.commit(&e);
    assert_eq!(shown(&e), "wave done 1 picked 0 short");
}

#[test]
fn the_check_code_can_be_typed_or_scanned_instead_of_the_location() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 1), task(2, "A-02", 2, 0, 1)]);
    let e = r.keys(&[Key::Digit(4), Key::Digit(2)]);
    assert_eq!(shown(&e), "Check code 42/99");
    let e = r.key(Key::Enter);
    assert_eq!(persisted(&e), Some(&Command::StartTask { task_id: 1 }));
    r.commit(&e);
    r.scan(WIDGET);
    let e = r.key(Key::Enter);
    r.commit(&e);
    let e = r.scan("42");
    assert_eq!(persisted(&e), Some(&Command::StartTask { task_id: 2 }));
}

#[test]
fn a_wrong_check_code_or_location_is_refused_with_an_error_beep() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 1)]);
    let e = r.keys(&[Key::Digit(1), Key::Digit(3), Key::Enter]);
    assert_eq!(beeps(&e), [Beep::Error]);
    assert_eq!(shown(&e), "Error: Check code 13 is not A-01");
    let e = r.scan("B-07");
    assert_eq!(beeps(&e), [Beep::Error]);
    assert_eq!(shown(&e), "Error: Wrong location B-07: go to A-01");
    let e = r.scan(WIDGET);
    assert_eq!(shown(&e), "Error: Scan the location A-01 first");
    assert_eq!(persisted(&e), None);
}

#[test]
fn a_wrong_item_is_refused_and_nothing_is_counted() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 2)]);
    r.arrive("A-01");
    let e = r.scan(GADGET);
    assert_eq!(beeps(&e), [Beep::Error]);
    assert_eq!(shown(&e), "Error: Wrong item 00000096385074: pick Widget 1");
    let e = r.scan("TOTE-9");
    assert_eq!(shown(&e), "Error: Not Widget 1: scan the item");
    let e = r.scan(WIDGET);
    assert_eq!(shown(&e), "scan Item: 1/2 Widget 1");
}

#[test]
fn a_pack_gtin_adds_its_pack_quantity_and_over_picks_are_refused() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 8)]);
    r.arrive("A-01");
    let e = r.scan(WIDGET_CASE);
    assert_eq!(shown(&e), "scan Item: 6/8 Widget 1");
    let e = r.scan(&format!("]C101{WIDGET_CASE}"));
    assert_eq!(beeps(&e), [Beep::Error]);
    assert_eq!(shown(&e), "Error: Too many: 2 left to pick, this scan is 6");
    r.scan(WIDGET);
    r.scan(&format!("0{WIDGET}"));
    let e = r.scan(WIDGET);
    assert_eq!(shown(&e), "Error: Too many: 0 left to pick, this scan is 1");
    let e = r.key(Key::Enter);
    assert!(matches!(
        persisted(&e),
        Some(Command::ConfirmPick {
            units: Units { qty: 8, .. },
            ..
        })
    ));
}

#[test]
fn a_typed_quantity_is_accepted_where_allowed_and_refused_above_what_is_left() {
    let mut t = task(1, "A-01", 1, 0, 10);
    t.qty_entry = QtyEntry::Typed;
    let mut r = Rig::logged_in(vec![t, task(2, "A-02", 2, 0, 5)]);
    r.arrive("A-01");
    let e = r.key(Key::Digit(5));
    assert_eq!(
        shown(&e),
        "Error: Scan the item once, then type the quantity"
    );
    r.scan(WIDGET);
    let e = r.keys(&[Key::Digit(1), Key::Digit(2), Key::Enter]);
    assert_eq!(shown(&e), "Error: Too many: 10 left to pick, typed 12");
    let e = r.keys(&[Key::Digit(7), Key::Enter]);
    assert_eq!(shown(&e), "scan Item: 7/10 Widget 1");
    let e = r.key(Key::Enter);
    assert!(matches!(
        persisted(&e),
        Some(Command::ConfirmPick {
            units: Units { qty: 7, .. },
            ..
        })
    ));
    let e = r.commit(&e);
    assert_eq!(
        shown(&e),
        "scan Item: 0/3 Widget 1",
        "a partial confirmation stays on the task"
    );
    // The rest of task 1, typed too; then task 2, where typing is off.
    r.scan(WIDGET);
    let e = r.keys(&[Key::Digit(3), Key::Enter]);
    assert_eq!(shown(&e), "Info: Enter: confirm 3 Widget 1");
    let e = r.key(Key::Enter);
    let e = r.commit(&e);
    assert_eq!(shown(&e), "pick A-02 Widget 2 x5");
    r.arrive("A-02");
    let e = r.scan(WIDGET);
    assert_eq!(shown(&e), "scan Item: 1/5 Widget 2");
    let e = r.key(Key::Digit(4));
    assert_eq!(beeps(&e), [Beep::Error]);
    // (The message is cut to the screen's line.)
    assert_eq!(
        shown(&e),
        "Error: Scan each unit: typing a quantity is off for …"
    );
    assert!(persisted(&e).is_none());
    let e = r.scan(WIDGET);
    assert_eq!(
        shown(&e),
        "scan Item: 2/5 Widget 2",
        "the typed digit counted nothing"
    );
}

#[test]
fn lot_and_expiry_come_from_gs1_data_and_what_is_missing_is_asked_for() {
    let mut t = task(1, "A-01", 1, 0, 2);
    t.capture = Capture {
        lot: true,
        serial: false,
        expiry: true,
    };
    let mut r = Rig::logged_in(vec![t]);
    r.arrive("A-01");
    let e = r.scan(&format!("]C101{:0>14}17270600\x1d10L42", WIDGET));
    assert_eq!(shown(&e), "scan Item: 1/2 Widget 1");
    // A plain EAN-13 joins the same lot.
    let e = r.scan(WIDGET);
    assert_eq!(shown(&e), "Info: Enter: confirm 2 Widget 1");
    let e = r.key(Key::Enter);
    let units = Units {
        qty: 2,
        lot: Some("L42".into()),
        expiry: Some(Date {
            year: 2027,
            month: 6,
            day: 0,
        }),
        ..Units::default()
    };
    assert_eq!(
        persisted(&e),
        Some(&Command::ConfirmPick { task_id: 1, units })
    );

    let mut t = task(2, "A-02", 1, 0, 1);
    t.capture = Capture {
        lot: true,
        serial: false,
        expiry: true,
    };
    let mut r = Rig::logged_in(vec![t]);
    r.arrive("A-02");
    let e = r.scan(WIDGET);
    assert_eq!(shown(&e), "scan Lot: Widget 2");
    let e = r.key(Key::Enter);
    assert_eq!(beeps(&e), [Beep::Attention]);
    // A lot label "10D9T" on its own is the lot 10D9T, not AI 10 with lot D9T.
    let e = r.scan("10D9T");
    assert_eq!(shown(&e), "scan Expiry: Widget 2");
    let e = r.scan("270632");
    assert_eq!(shown(&e), "Error: Expiry 270632: day 32 is not a date");
    r.scan("270631"); // June has 30 days.
    let e = r.scan("]C117270630");
    assert_eq!(shown(&e), "Info: Enter: confirm 1 Widget 2");
    let e = r.key(Key::Enter);
    let Some(Command::ConfirmPick { units, .. }) = persisted(&e) else {
        panic!("{e:?}")
    };
    assert_eq!(units.lot.as_deref(), Some("10D9T"));
    assert_eq!(
        units.expiry,
        Some(Date {
            year: 2027,
            month: 6,
            day: 30
        })
    );
}

#[test]
fn a_different_lot_cannot_join_the_units_in_hand() {
    let mut t = task(1, "A-01", 1, 0, 3);
    t.capture.lot = true;
    let mut r = Rig::logged_in(vec![t]);
    r.arrive("A-01");
    r.scan(&format!("]C101{:0>14}10L1", WIDGET));
    let e = r.scan(&format!("]C101{:0>14}10L2", WIDGET));
    assert_eq!(shown(&e), "Error: Other lot L2: confirm these first");
}

#[test]
fn serial_numbered_units_are_confirmed_one_by_one_and_a_serial_only_once() {
    let mut t = task(1, "A-01", 1, 0, 2);
    t.capture.serial = true;
    let mut r = Rig::logged_in(vec![t]);
    r.arrive("A-01");
    let s1 = format!("]C101{:0>14}21S1", WIDGET);
    let e = r.scan(&s1);
    assert_eq!(shown(&e), "Info: Enter: confirm 1 Widget 1");
    let e = r.scan(&format!("]C101{:0>14}21S2", WIDGET));
    assert_eq!(
        shown(&e),
        "Error: Serial-numbered: confirm this unit first (Enter)"
    );
    let e = r.key(Key::Enter);
    assert!(matches!(
        persisted(&e),
        Some(Command::ConfirmPick {
            units: Units { qty: 1, .. },
            ..
        })
    ));
    r.commit(&e);
    let e = r.scan(&s1);
    assert_eq!(shown(&e), "Error: Serial S1 is already picked");
    let e = r.scan(WIDGET_CASE);
    assert_eq!(
        shown(&e),
        "Error: Serial-numbered: scan each unit, not the pack"
    );
}

/// A picker at the one task, which needs a tote, with its one unit scanned; and the
/// effects of that scan.
fn one_unit_of_a_tote_task_in_hand() -> (Rig, Vec<Effect>) {
    let mut t = task(1, "A-01", 1, 0, 1);
    t.tote_required = true;
    let mut r = Rig::logged_in(vec![t]);
    r.arrive("A-01");
    let e = r.scan(WIDGET);
    (r, e)
}

#[test]
fn a_tote_is_asked_for_before_the_confirmation_where_required() {
    let (mut r, e) = one_unit_of_a_tote_task_in_hand();
    assert_eq!(shown(&e), "scan Tote: Widget 1");
    let e = r.key(Key::Enter);
    assert_eq!(beeps(&e), [Beep::Attention]);
    let e = r.scan("T-0042");
    assert_eq!(shown(&e), "Info: Enter: confirm 1 Widget 1");
    let e = r.key(Key::Enter);
    let Some(Command::ConfirmPick { units, .. }) = persisted(&e) else {
        panic!("{e:?}")
    };
    assert_eq!(units.tote.as_deref(), Some("T-0042"));
}

#[test]
fn a_short_pick_takes_a_reason_from_the_menu() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 5), task(2, "A-02", 2, 0, 1)]);
    r.arrive("A-01");
    r.scan(WIDGET);
    r.scan(&format!("0{WIDGET}"));
    let e = r.key(Key::F(1));
    assert!(
        matches!(screen(&e), Some(Screen::Reasons { selected: 0, .. })),
        "{e:?}"
    );
    let e = r.keys(&[Key::Down, Key::Down, Key::Down, Key::Up]);
    assert!(
        matches!(screen(&e), Some(Screen::Reasons { selected: 2, .. })),
        "{e:?}"
    );
    let e = r.key(Key::Enter);
    let units = Units {
        qty: 2,
        ..Units::default()
    };
    let expected = Command::ShortPick {
        task_id: 1,
        units,
        reason: ShortReason::WrongItem,
    };
    assert_eq!(persisted(&e), Some(&expected));
    let e = r.commit(&e);
    assert_eq!(shown(&e), "pick A-02 Widget 2 x1");
    // Back leaves the menu without saving anything.
    r.key(Key::F(1));
    let e = r.key(Key::Back);
    assert_eq!(shown(&e), "pick A-02 Widget 2 x1");
    assert_eq!(persisted(&e), None);
}

#[test]
fn skipped_tasks_go_to_the_end_and_must_still_be_done() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 1), task(2, "A-02", 2, 0, 1)]);
    let e = r.key(Key::F(2));
    assert_eq!(persisted(&e), Some(&Command::Skip { task_id: 1 }));
    let e = r.commit(&e);
    assert_eq!(shown(&e), "pick A-02 Widget 2 x1");
    r.arrive("A-02");
    r.scan(WIDGET);
    let e = r.key(Key::Enter);
    let e = r.commit(&e);
    assert_eq!(
        shown(&e),
        "pick A-01 Widget 1 x1",
        "the skipped task is not dropped"
    );
    r.arrive("A-01");
    r.scan(WIDGET);
    let e = r.key(Key::Enter);
    let e = r.commit(&e);
    assert_eq!(shown(&e), "wave done 2 picked 0 short");
}

#[test]
fn undo_reopens_the_last_confirmed_task() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 1), task(2, "A-02", 2, 0, 1)]);
    r.arrive("A-01");
    r.scan(WIDGET);
    let e = r.key(Key::Enter);
    r.commit(&e);
    let e = r.key(Key::F(3));
    assert_eq!(
        persisted(&e),
        Some(&Command::UndoPick { task_id: 1, qty: 1 })
    );
    let e = r.commit(&e);
    assert_eq!(shown(&e), "pick A-01 Widget 1 x1");
    let e = r.key(Key::F(3));
    assert_eq!(shown(&e), "Error: Nothing to undo");
}

#[test]
fn a_pick_whose_units_a_new_version_made_a_put_back_is_not_offered_for_undo() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 2), task(2, "A-02", 2, 0, 1)]);
    r.arrive("A-01");
    r.scan(WIDGET);
    let e = r.key(Key::Enter);
    r.commit(&e);
    // The store says a put-back was made of this task's units (a version asked for fewer,
    // then one asked for more again): it refuses to undo its picks, so the picker must
    // not offer it.
    let mut t1 = with_picked(task(1, "A-01", 1, 0, 2), 1);
    t1.undo_allowed = false;
    r.input(Input::Tasks(vec![t1, task(2, "A-02", 2, 0, 1)]));
    let e = r.key(Key::F(3));
    assert_eq!(persisted(&e), None);
    assert_eq!(shown(&e), "Error: Nothing to undo");
}

#[test]
fn a_bounced_scanner_sending_the_same_scan_twice_counts_once() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 3)]);
    r.arrive("A-01");
    let now = r.now + 1_000;
    let e = r.p.handle(now, Input::scan(WIDGET.as_bytes()));
    assert_eq!(shown(&e), "scan Item: 1/3 Widget 1");
    // The same bytes 40 ms later: a bounce. Ignored: no count, no beep, still audited.
    let e = r.p.handle(now + 40, Input::scan(WIDGET.as_bytes()));
    assert_eq!(beeps(&e), []);
    assert!(
        matches!(&e[..], [Effect::Audit(a)] if a.outcome.starts_with("ignored")),
        "{e:?}"
    );
    // The picker scanning the next unit (after the window) counts.
    let e = r.p.handle(now + 700, Input::scan(WIDGET.as_bytes()));
    assert_eq!(shown(&e), "scan Item: 2/3 Widget 1");
}

#[test]
fn a_cancellation_between_the_item_scan_and_the_confirm_asks_for_a_put_back() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 3), task(2, "B-01", 2, 0, 1)]);
    r.arrive("A-01");
    r.scan(WIDGET);
    r.scan(&format!("0{WIDGET}"));
    let e = r.input(Input::Withdrawn {
        task_id: 1,
        why: Withdrawal::OrderCancelled,
    });
    assert_eq!(beeps(&e), [Beep::Attention]);
    assert_eq!(shown(&e), "Warning: Put back 2 of Widget 1 at A-01");
    let e = r.key(Key::Enter);
    let expected = Command::PutBack {
        task_id: 1,
        qty: 2,
        location: "A-01".into(),
    };
    assert_eq!(
        persisted(&e),
        Some(&expected),
        "no ConfirmPick for a cancelled task"
    );
    let e = r.commit(&e);
    assert_eq!(shown(&e), "pick B-01 Widget 2 x1");
}

#[test]
fn a_revocation_while_the_confirmation_is_saving_puts_back_the_confirmed_units() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 2)]);
    r.arrive("A-01");
    r.scan(WIDGET);
    let confirm = r.key(Key::Enter);
    let e = r.input(Input::Withdrawn {
        task_id: 1,
        why: Withdrawal::Revoked,
    });
    assert_eq!(beeps(&e), [], "decided after the store answers");
    let e = r.commit(&confirm);
    assert_eq!(shown(&e), "Warning: Put back 1 of Widget 1 at A-01");
    let e = r.scan("A-01");
    assert_eq!(
        persisted(&e),
        Some(&Command::PutBack {
            task_id: 1,
            qty: 1,
            location: "A-01".into()
        })
    );
}

#[test]
fn a_task_missing_from_a_task_update_is_treated_as_revoked() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 2), task(2, "A-02", 2, 0, 1)]);
    r.arrive("A-01");
    let e = r.input(Input::Tasks(vec![task(2, "A-02", 2, 0, 1)]));
    assert_eq!(beeps(&e), [Beep::Attention]);
    assert_eq!(
        shown(&e),
        "pick A-02 Widget 2 x1",
        "nothing in hand: straight to the next task"
    );
}

#[test]
fn a_malformed_gs1_scan_is_refused_and_changes_nothing() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 2)]);
    r.arrive("A-01");
    r.scan(WIDGET);
    let e = r.scan(&format!("]C101{:0>14}17271332", WIDGET));
    assert_eq!(beeps(&e), [Beep::Error]);
    assert_eq!(
        shown(&e),
        "Error: Bad label: AI 17: month 13 is not a month"
    );
    let e = r.key(Key::Enter);
    assert!(matches!(
        persisted(&e),
        Some(Command::ConfirmPick {
            units: Units { qty: 1, .. },
            ..
        })
    ));
}

#[test]
fn input_while_saving_is_refused_and_a_failed_save_keeps_the_units_in_hand() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 2)]);
    r.arrive("A-01");
    r.scan(WIDGET);
    let e = r.key(Key::Enter);
    let Some(Effect::Persist { id, .. }) = e.iter().find(|e| matches!(e, Effect::Persist { .. }))
    else {
        panic!("{e:?}")
    };
    let e2 = r.scan(&format!("0{WIDGET}"));
    assert_eq!(
        shown(&e2),
        "Error: Saving... wait for the beep, then scan again"
    );
    let e2 = r.input(Input::Failed {
        id: *id,
        reason: "disk full".into(),
    });
    assert_eq!(beeps(&e2), [Beep::Error]);
    assert_eq!(shown(&e2), "Error: Not saved: disk full");
    let e2 = r.key(Key::Enter);
    assert!(matches!(
        persisted(&e2),
        Some(Command::ConfirmPick {
            units: Units { qty: 1, .. },
            ..
        })
    ));
}

#[test]
fn put_back_text_always_shows_count_and_location() {
    let long = "An extremely long description of a widget that does not fit";
    let t = screens::put_back_text(3, long, "A-12-03-B");
    assert!(t.len() <= 48, "{t}");
    assert!(t.starts_with("Put back 3 of An extremely"), "{t}");
    assert!(t.ends_with("… at A-12-03-B"), "{t}");
    let _ = Level::Info;
}

#[test]
fn a_refused_task_start_names_the_keys_that_lead_on_and_audits_the_reason() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 2), task(2, "A-02", 2, 0, 1)]);
    let e = r.scan("A-01");
    let Some(Effect::Persist { id, .. }) = e.iter().find(|e| matches!(e, Effect::Persist { .. }))
    else {
        panic!("{e:?}")
    };
    let reason = "task 1 is revoked; it cannot be picked any more";
    let e = r.input(Input::Failed {
        id: *id,
        reason: reason.into(),
    });
    assert_eq!(beeps(&e), [Beep::Error]);
    let text = shown(&e);
    assert!(
        text.contains("F2 skip") && text.contains("F1 short"),
        "{text}"
    );
    assert!(
        matches!(screen(&e), Some(Screen::Message { text, .. }) if !text.ends_with('…')),
        "the whole text fits the screen: {e:?}"
    );
    let audited = e.iter().find_map(|e| match e {
        Effect::Audit(a) => Some(a.outcome.clone()),
        _ => None,
    });
    assert_eq!(audited, Some(format!("refused: not saved: {reason}")));
    let e = r.key(Key::F(2));
    assert_eq!(persisted(&e), Some(&Command::Skip { task_id: 1 }));
}

#[test]
fn a_task_the_store_has_as_skipped_stays_at_the_end_of_the_path_after_a_restart() {
    let mut skipped = task(1, "A-01", 1, 0, 1);
    skipped.skip_rank = 1;
    // A fresh workflow, as after a restart: task 1 comes first by path, but it was skipped.
    let mut r = Rig::logged_in(vec![skipped.clone(), task(2, "A-02", 2, 0, 1)]);
    assert_eq!(
        shown(&[Effect::Show(r.p.screen())]),
        "pick A-02 Widget 2 x1"
    );
    r.input(Input::Tasks(vec![skipped, task(2, "A-02", 2, 0, 1)]));
    r.arrive("A-02");
    r.scan(WIDGET);
    let e = r.key(Key::Enter);
    let e = r.commit(&e);
    assert_eq!(
        shown(&e),
        "pick A-01 Widget 1 x1",
        "and it is still offered"
    );
}

/// `t` as the store has it after `picked` units were confirmed.
fn with_picked(mut t: PickTask, picked: u32) -> PickTask {
    t.picked = picked;
    t
}

#[test]
fn a_new_version_asking_for_fewer_units_than_picked_asks_to_put_the_surplus_back() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 5), task(2, "A-02", 2, 0, 1)]);
    r.arrive("A-01");
    for _ in 0..4 {
        r.now += 1_000;
        r.scan(WIDGET);
    }
    let confirm = r.key(Key::Enter);
    // The new version arrives while the confirmation is saving: taken in after it.
    let e = r.input(Input::Tasks(vec![
        with_picked(task(1, "A-01", 1, 0, 3), 4),
        task(2, "A-02", 2, 0, 1),
    ]));
    assert_eq!(beeps(&e), [], "decided after the store answers");
    let e = r.commit(&confirm);
    assert_eq!(shown(&e), "Warning: Put back 1 of Widget 1 at A-01");
    assert_eq!(beeps(&e), [Beep::Ok, Beep::Attention]);
    let e = r.key(Key::F(3));
    assert_eq!(persisted(&e), None, "the surplus is no longer undoable");
    let e = r.scan("A-01");
    let expected = Command::PutBack {
        task_id: 1,
        qty: 1,
        location: "A-01".into(),
    };
    assert_eq!(persisted(&e), Some(&expected));
    let e = r.commit(&e);
    assert_eq!(shown(&e), "pick A-02 Widget 2 x1");
}

#[test]
fn units_in_hand_beyond_a_smaller_new_quantity_go_back_without_a_save() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 5)]);
    r.arrive("A-01");
    r.scan(WIDGET);
    r.scan(&format!("0{WIDGET}"));
    r.now += 1_000;
    r.scan(WIDGET);
    let e = r.input(Input::Tasks(vec![task(1, "A-01", 1, 0, 2)]));
    assert_eq!(shown(&e), "Warning: Put back 3 of Widget 1 at A-01");
    let e = r.key(Key::Enter);
    assert_eq!(persisted(&e), None, "the OMS never heard of these units");
    assert_eq!(beeps(&e), [Beep::Ok]);
    assert_eq!(shown(&e), "pick A-01 Widget 1 x2");
    r.arrive("A-01");
    r.scan(WIDGET);
    r.scan(&format!("0{WIDGET}"));
    let e = r.key(Key::Enter);
    assert!(matches!(
        persisted(&e),
        Some(Command::ConfirmPick {
            units: Units { qty: 2, .. },
            ..
        })
    ));
}

#[test]
fn a_task_the_store_closed_at_exactly_its_picked_units_leaves_the_path_without_a_put_back() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 5), task(2, "A-02", 2, 0, 1)]);
    r.arrive("A-01");
    r.scan(WIDGET);
    let e = r.key(Key::Enter);
    r.commit(&e);
    r.scan(WIDGET);
    // A new version asks for the 1 unit already confirmed: the store closed the task.
    let e = r.input(Input::Tasks(vec![task(2, "A-02", 2, 0, 1)]));
    assert_eq!(shown(&e), "Warning: Put back 1 of Widget 1 at A-01");
    let e = r.key(Key::Enter);
    assert_eq!(persisted(&e), None, "only the unit in hand goes back");
    assert_eq!(shown(&e), "pick A-02 Widget 2 x1");
    r.arrive("A-02");
    r.scan(WIDGET);
    let e = r.key(Key::Enter);
    let e = r.commit(&e);
    assert_eq!(shown(&e), "wave done 2 picked 0 short");
}

#[test]
fn a_closed_task_a_new_version_asks_more_of_is_offered_again_and_counted_once_when_done() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 1)]);
    r.arrive("A-01");
    r.scan(WIDGET);
    let e = r.key(Key::Enter);
    let e = r.commit(&e);
    assert_eq!(shown(&e), "wave done 1 picked 0 short");
    let e = r.input(Input::Tasks(vec![with_picked(task(1, "A-01", 1, 0, 3), 1)]));
    assert_eq!(shown(&e), "pick A-01 Widget 1 x2");
    r.arrive("A-01");
    r.scan(WIDGET);
    r.scan(&format!("0{WIDGET}"));
    let e = r.key(Key::Enter);
    let e = r.commit(&e);
    assert_eq!(
        shown(&e),
        "wave done 1 picked 0 short",
        "one task, done once"
    );
}

#[test]
fn a_short_pick_with_every_unit_still_to_pick_in_hand_is_refused_as_a_full_pick() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 2)]);
    r.arrive("A-01");
    r.scan(WIDGET);
    r.scan(&format!("0{WIDGET}"));
    let e = r.key(Key::F(1));
    assert_eq!(shown(&e), "Error: All 2 in hand: Enter to confirm");
    let e = r.key(Key::Enter);
    assert!(matches!(
        persisted(&e),
        Some(Command::ConfirmPick {
            units: Units { qty: 2, .. },
            ..
        })
    ));
}

#[test]
fn a_scan_with_control_bytes_or_bytes_that_are_not_text_is_refused_as_a_bad_label() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 2)]);
    let e = r.input(Input::scan(b"A-01\x00"));
    assert_eq!(
        shown(&e),
        "Error: Bad label: control character U+0000 not allowed"
    );
    assert_eq!(persisted(&e), None);
    let e = r.input(Input::scan(b"A-01\xff"));
    assert_eq!(shown(&e), "Error: Bad label: bytes that are not UTF-8 text");
    assert_eq!(persisted(&e), None);
    r.arrive("A-01");
}

/// A window of the path as the store reads it: `tasks`, `more` beyond, counted `len`.
fn window(tasks: Vec<PickTask>, more: bool, len: Option<u32>) -> Input {
    Input::Path(Path {
        tasks,
        more,
        len,
        ..Path::default()
    })
}

/// The pick prompt's progress, `done/total`.
fn progress(r: &Rig) -> (u16, u16) {
    match r.p.screen() {
        Screen::Pick(p) => (p.done, p.total),
        s => panic!("not a pick prompt: {s:?}"),
    }
}

#[test]
fn the_picker_walks_a_window_of_the_path_and_counts_against_the_whole_path() {
    let mut r = Rig::logged_in(vec![]);
    r.input(window(
        vec![task(2, "A-02", 2, 0, 1), task(1, "A-01", 1, 0, 1)],
        true,
        Some(100_000),
    ));
    assert_eq!(
        shown(&[Effect::Show(r.p.screen())]),
        "pick A-01 Widget 1 x1"
    );
    assert_eq!(
        progress(&r),
        (0, u16::MAX),
        "100,000 tasks: the screen's most"
    );
    r.arrive("A-01");
    r.scan(WIDGET);
    let e = r.key(Key::Enter);
    let e = r.commit(&e);
    assert_eq!(shown(&e), "pick A-02 Widget 2 x1", "the next in the window");
    // The store's next window, read after the commit (not counted again).
    r.input(window(
        vec![task(2, "A-02", 2, 0, 1), task(3, "A-03", 3, 0, 1)],
        false,
        None,
    ));
    assert_eq!(progress(&r), (1, 3), "1 done here, 2 left on the path");
    assert_eq!(r.p.open.len(), 2, "only the window is held");
}

#[test]
fn tasks_beyond_the_window_are_forgotten_and_a_skipped_task_goes_after_them() {
    let mut r = Rig::logged_in(vec![]);
    r.input(window(
        vec![task(1, "A-01", 1, 0, 1), task(2, "A-02", 2, 0, 1)],
        true,
        Some(3),
    ));
    let e = r.key(Key::F(2));
    let e = r.commit(&e);
    assert_eq!(shown(&e), "pick A-02 Widget 2 x1");
    // The store has task 1 at the end of the path now: beyond the next window.
    let mut third = task(3, "A-03", 3, 0, 1);
    third.skip_rank = 0;
    let e = r.input(window(vec![task(2, "A-02", 2, 0, 1), third], true, None));
    assert_eq!(beeps(&e), [], "the picker's step does not move");
    assert_eq!(r.p.held(), [2]);
    assert!(r.p.task(1).is_none(), "task 1 is not held any more");
    assert_eq!(progress(&r), (0, 3));
}

#[test]
fn a_put_back_handed_in_with_every_read_is_asked_for_once() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 1)]);
    // Task 9 was picked before a restart; its order was cancelled after it.
    let owed = with_picked(task(9, "C-09", 9, 0, 3), 2);
    let read = |tasks| {
        Input::Path(Path {
            tasks,
            put_backs: vec![(owed.clone(), Owed::Withdrawn(Withdrawal::OrderCancelled))],
            ..Path::default()
        })
    };
    let e = r.input(read(vec![task(1, "A-01", 1, 0, 1)]));
    assert_eq!(beeps(&e), [Beep::Attention]);
    assert_eq!(shown(&e), "Warning: Put back 2 of Widget 9 at C-09");
    let e = r.input(read(vec![task(1, "A-01", 1, 0, 1)]));
    assert_eq!(
        e.len(),
        1,
        "asked once: the second read changes nothing: {e:?}"
    );
    assert_eq!(r.p.held(), [9]);
    let e = r.scan("C-09");
    let expected = Command::PutBack {
        task_id: 9,
        qty: 2,
        location: "C-09".into(),
    };
    assert_eq!(persisted(&e), Some(&expected));
    let e = r.commit(&e);
    assert_eq!(shown(&e), "pick A-01 Widget 1 x1");
    // The next read no longer lists it: nothing more to put back.
    let e = r.input(window(vec![task(1, "A-01", 1, 0, 1)], false, None));
    assert_eq!(beeps(&e), []);
}

#[test]
fn a_held_task_the_oms_took_away_with_nothing_picked_leaves_the_picker() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 1), task(2, "A-02", 2, 0, 1)]);
    assert_eq!(r.p.held(), [1]);
    let e = r.input(Input::Path(Path {
        tasks: vec![task(2, "A-02", 2, 0, 1)],
        withdrawn: vec![(1, Withdrawal::OrderCancelled)],
        ..Path::default()
    }));
    assert_eq!(beeps(&e), [Beep::Attention]);
    assert!(
        e.iter()
            .any(|e| matches!(e, Effect::Show(Screen::Message { text, .. })
            if text.as_str() == "Order cancelled: Widget 1")),
        "{e:?}"
    );
    assert_eq!(shown(&e), "pick A-02 Widget 2 x1");
}

#[test]
fn the_picker_names_the_tasks_it_holds_the_task_under_it_its_put_backs_and_its_undo() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 2), task(2, "A-02", 2, 0, 1)]);
    r.arrive("A-01");
    r.scan(WIDGET);
    let e = r.key(Key::Enter);
    r.commit(&e);
    assert_eq!(r.p.held(), [1]);
    let e = r.key(Key::F(2));
    r.commit(&e);
    assert_eq!(
        r.p.held(),
        [1, 2],
        "task 2 under the picker, task 1 to undo"
    );
    // Task 1 is held, so the store lists it (at the end of the path, after its skip).
    let mut skipped = with_picked(task(1, "A-01", 1, 0, 2), 1);
    skipped.skip_rank = 7;
    let surplus = (with_picked(task(5, "E-05", 5, 0, 1), 2), Owed::Surplus);
    r.input(Input::Path(Path {
        tasks: vec![task(2, "A-02", 2, 0, 1), skipped],
        put_backs: vec![surplus.clone()],
        ..Path::default()
    }));
    assert_eq!(r.p.held(), [1, 2, 5]);
    // Once the store no longer has task 1 on the path, there is nothing to undo.
    r.input(Input::Path(Path {
        tasks: vec![task(2, "A-02", 2, 0, 1)],
        put_backs: vec![surplus],
        ..Path::default()
    }));
    assert_eq!(r.p.held(), [2, 5]);
    // Nor a surplus the store no longer asks back.
    r.input(window(vec![task(2, "A-02", 2, 0, 1)], false, None));
    assert_eq!(r.p.held(), [2]);
}

#[test]
fn a_check_code_of_99_a_digit_chosen_reason_and_a_skip_with_units_in_hand_are_handled() {
    let mut t = task(1, "A-01", 1, 0, 3);
    t.location_check = 99;
    let mut r = Rig::logged_in(vec![t, task(2, "A-02", 2, 0, 1)]);
    // 99 is the highest check code there is.
    let e = r.keys(&[Key::Digit(9), Key::Digit(9)]);
    assert_eq!(shown(&e), "Check code 99/99");
    let e = r.key(Key::Enter);
    assert_eq!(persisted(&e), Some(&Command::StartTask { task_id: 1 }));
    r.commit(&e);
    // Units in hand are confirmed or shorted, never skipped away.
    r.scan(WIDGET);
    let e = r.key(Key::F(2));
    assert_eq!(beeps(&e), [Beep::Error]);
    assert!(persisted(&e).is_none());
    // A reason can be chosen by its number.
    r.key(Key::F(1));
    let e = r.key(Key::Digit(3));
    assert!(
        matches!(screen(&e), Some(Screen::Reasons { selected: 2, .. })),
        "{e:?}"
    );
}

#[test]
fn a_badge_of_ten_digits_or_no_digits_is_not_a_badge() {
    for raw in ["OP1234567890", "OP", "OP12A"] {
        let bc = crate::barcode::parse(raw.as_bytes());
        assert_eq!(badge_operator("OP", &bc), None, "{raw}");
    }
    let bc = crate::barcode::parse(b"OP123456789");
    assert_eq!(badge_operator("OP", &bc), Some(123_456_789));
}

/// The audit line of one input's effects.
fn audit(effects: &[Effect]) -> &Audit {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Audit(a) => Some(a),
            _ => None,
        })
        .expect("every input is audited")
}

#[test]
fn a_key_pressed_on_the_put_back_screen_is_audited_against_the_task_being_put_back() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 3), task(2, "B-01", 2, 0, 1)]);
    r.arrive("A-01");
    r.scan(WIDGET);
    r.input(Input::Withdrawn {
        task_id: 1,
        why: Withdrawal::OrderCancelled,
    });
    let e = r.key(Key::Digit(5));
    assert_eq!(shown(&e), "Error: Put back 1 at A-01, then Enter");
    assert_eq!(audit(&e).task_id, Some(1), "{:?}", audit(&e));
}

#[test]
fn an_item_of_the_task_scanned_at_the_location_prompt_asks_for_the_location_and_another_is_a_wrong_location()
 {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 1)]);
    let e = r.scan(WIDGET);
    assert_eq!(shown(&e), "Error: Scan the location A-01 first");
    let e = r.scan(GADGET);
    assert_eq!(shown(&e), "Error: Wrong location 96385074: go to A-01");
}

#[test]
fn a_serial_typed_as_text_for_a_serial_numbered_task_is_captured_and_only_once() {
    let mut t = task(1, "A-01", 1, 0, 2);
    t.capture.serial = true;
    let mut r = Rig::logged_in(vec![t]);
    r.arrive("A-01");
    let e = r.scan(WIDGET);
    assert_eq!(beeps(&e), [Beep::Ok]);
    let e = r.scan("SN-9");
    assert_eq!(beeps(&e), [Beep::Ok], "{e:?}");
    let e = r.key(Key::Enter);
    let Some(Command::ConfirmPick { units, .. }) = persisted(&e) else {
        panic!("{e:?}")
    };
    assert_eq!((units.qty, units.serial.as_deref()), (1, Some("SN-9")));
    r.commit(&e);
    r.scan(WIDGET);
    let e = r.scan("SN-9");
    assert_eq!(shown(&e), "Error: Serial SN-9 is already picked");
}

#[test]
fn the_tote_scanned_again_once_it_is_taken_is_refused_not_counted_as_news() {
    let mut t = task(1, "A-01", 1, 0, 1);
    t.tote_required = true;
    let mut r = Rig::logged_in(vec![t]);
    r.arrive("A-01");
    r.scan(WIDGET);
    let e = r.scan("T-0042");
    assert_eq!(shown(&e), "Info: Enter: confirm 1 Widget 1");
    let e = r.scan("T-0042");
    assert_eq!(beeps(&e), [Beep::Error], "{e:?}");
    assert_eq!(shown(&e), "Error: Not Widget 1: scan the item");
}

#[test]
fn a_withdrawal_counts_only_its_own_put_back_and_an_idle_picker_is_not_disturbed_for_nothing() {
    let mut r = Rig::logged_in(vec![
        task(1, "A-01", 1, 0, 3),
        task(2, "B-01", 2, 0, 1),
        task(3, "C-01", 3, 0, 1),
    ]);
    // Nothing picked of task 3 and the picker idle at the location prompt: no beep, no
    // screen, nothing to put back.
    let e = r.input(Input::Withdrawn {
        task_id: 3,
        why: Withdrawal::Revoked,
    });
    assert_eq!(beeps(&e), [], "{e:?}");
    assert_eq!(screen(&e), None, "{e:?}");
    assert_eq!(audit(&e).outcome, "task 3 Revoked: 0 to put back");
    // One unit of task 1 confirmed, then task 1 taken away: one unit to put back.
    r.arrive("A-01");
    r.scan(WIDGET);
    let e = r.key(Key::Enter);
    r.commit(&e);
    let e = r.input(Input::Withdrawn {
        task_id: 1,
        why: Withdrawal::Revoked,
    });
    assert_eq!(shown(&e), "Warning: Put back 1 of Widget 1 at A-01");
    // Task 2, with nothing picked, is taken away while task 1's put-back waits: it has
    // nothing to put back of its own.
    let e = r.input(Input::Withdrawn {
        task_id: 2,
        why: Withdrawal::Revoked,
    });
    assert_eq!(audit(&e).outcome, "task 2 Revoked: 0 to put back");
    // Task 1's units go back.
    let e = r.scan("A-01");
    assert!(
        matches!(
            persisted(&e),
            Some(Command::PutBack {
                task_id: 1,
                qty: 1,
                ..
            })
        ),
        "{e:?}"
    );
}

#[test]
fn a_put_back_text_cut_to_fit_uses_every_byte_the_line_leaves() {
    // "Put back 3 of  at A-12-03-B" leaves 21 of 48 bytes: 18 characters and the
    // three-byte ellipsis fill them exactly.
    let long = "Widget with an extremely long name";
    let t = screens::put_back_text(3, long, "A-12-03-B");
    assert_eq!(t, "Put back 3 of Widget with an ext… at A-12-03-B");
    assert_eq!(t.len(), 48);
}

/// The refusal reports among `effects`.
fn refusals(effects: &[Effect]) -> Vec<Refusal> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::ScanRefused(r) => Some(*r),
            _ => None,
        })
        .collect()
}

fn check_refused(r: &mut Rig, data: &str, reason: RefusalReason, task_id: Option<u64>) {
    let e = r.scan(data);
    assert_eq!(beeps(&e), [Beep::Error], "{data:?}: {e:?}");
    assert_eq!(
        refusals(&e),
        [Refusal {
            reason,
            task_id,
            count: 1
        }],
        "{data:?}"
    );
}

#[test]
fn each_refused_scan_is_reported_with_its_class_and_task() {
    let mut r = Rig {
        p: Picker::new(PickConfig::default()),
        now: 0,
    };
    r.input(Input::Tasks(vec![task(1, "A-01", 1, 0, 2)]));
    check_refused(&mut r, WIDGET, RefusalReason::NotLoggedIn, None);
    let e = r.scan("OP7");
    r.commit(&e);
    check_refused(&mut r, "OP8", RefusalReason::NotLoggedIn, Some(1));
    check_refused(&mut r, "B-07", RefusalReason::WrongLocation, Some(1));
    r.arrive("A-01");
    check_refused(&mut r, GADGET, RefusalReason::WrongItem, Some(1));
    // A GS1 element string whose GTIN's check digit is wrong.
    check_refused(
        &mut r,
        "]C10109506000134353",
        RefusalReason::BadBarcode,
        Some(1),
    );
    check_refused(&mut r, "NOT-AN-ITEM", RefusalReason::WrongItem, Some(1));
    check_refused(&mut r, WIDGET_CASE, RefusalReason::TooMany, Some(1));
    r.scan(WIDGET);
    r.scan(&format!("0{WIDGET}"));
    let e = r.key(Key::Enter);
    // While the confirmation is saving, a scan is refused as busy.
    check_refused(&mut r, "A-01", RefusalReason::Busy, Some(1));
    r.commit(&e);
    check_refused(&mut r, WIDGET, RefusalReason::NoTask, None);
}

#[test]
fn a_refused_key_press_or_an_accepted_scan_is_not_reported() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 2)]);
    let e = r.key(Key::F(9));
    assert_eq!(beeps(&e), [Beep::Error]);
    assert_eq!(refusals(&e), []);
    let e = r.scan("A-01");
    assert_eq!(refusals(&e), []);
    // A scanner bounce is ignored, not refused.
    let e = r.p.handle(r.now + 10, Input::scan(b"A-01"));
    assert_eq!(beeps(&e), []);
    assert_eq!(refusals(&e), []);
}

#[test]
fn a_scan_storm_leaves_one_report_per_class_per_second_carrying_every_refusal() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 2)]);
    r.arrive("A-01");
    let start = r.now + 1_000;
    let mut reports = Vec::new();
    // 20,000 hostile scans over 10 s: a wrong item and a wrong check digit in turn
    // (different bytes each time, so none is a bounce).
    for i in 0..20_000u64 {
        let now = start + i / 2;
        let data = if i % 2 == 0 {
            GADGET.to_string()
        } else {
            format!("]C10109506000134353\x1d10L{i}")
        };
        // A bounce is an identical scan; these alternate, so every one is handled.
        let e = r.p.handle(now, Input::scan(data.as_bytes()));
        assert_eq!(beeps(&e), [Beep::Error]);
        reports.extend(refusals(&e));
    }
    assert!(r.p.refusals().holding());
    assert_eq!(
        refusals(&r.p.refusals().due::<Effect>(start + 10_000 - 1)),
        []
    );
    let tail = r.p.refusals().due::<Effect>(start + 20_000);
    reports.extend(refusals(&tail));
    assert!(!r.p.refusals().holding());
    assert!(reports.len() <= 2 * 11, "{} reports", reports.len());
    for reason in [RefusalReason::WrongItem, RefusalReason::BadBarcode] {
        let n: u32 = reports
            .iter()
            .filter(|r| r.reason == reason)
            .map(|r| r.count)
            .sum();
        assert_eq!(n, 10_000, "{reason:?}");
    }
    // A stop flushes what waits; nothing waits now.
    assert_eq!(r.p.refusals().flush::<Effect>(), []);
}

#[test]
fn the_same_scan_once_the_bounce_window_has_passed_counts_again() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 3)]);
    r.arrive("A-01");
    let now = r.now + 1_000;
    r.p.handle(now, Input::scan(WIDGET.as_bytes()));
    let window = PickConfig::default().bounce_ms;
    let e = r.p.handle(now + window - 1, Input::scan(WIDGET.as_bytes()));
    assert_eq!(beeps(&e), [], "a bounce inside the window");
    // The window is open at its end: a scan exactly `bounce_ms` later is the next unit.
    let e = r.p.handle(now + window, Input::scan(WIDGET.as_bytes()));
    assert_eq!(shown(&e), "scan Item: 2/3 Widget 1");
}

#[test]
fn with_units_in_hand_the_picker_can_neither_log_out_nor_undo() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 3)]);
    r.arrive("A-01");
    r.scan(WIDGET);
    for (what, e) in [("badge", r.scan("OP7")), ("F4", r.key(Key::F(4)))] {
        assert_eq!(persisted(&e), None, "{what}");
        // "... before logging out", cut to the screen's width.
        assert!(
            shown(&e).starts_with("Error: Confirm or short the units in hand before log"),
            "{what}: {e:?}"
        );
    }
    let e = r.key(Key::F(3));
    assert_eq!(persisted(&e), None);
    assert_eq!(shown(&e), "Error: Confirm the units in hand first");
    // The unit is still in hand and confirms.
    let e = r.key(Key::Enter);
    assert!(
        matches!(persisted(&e), Some(Command::ConfirmPick { units, .. }) if units.qty == 1),
        "{e:?}"
    );
}

#[test]
fn only_a_plain_code_or_an_sscc_is_taken_for_the_tote() {
    let (mut r, _) = one_unit_of_a_tote_task_in_hand();
    // A GS1 label with no SSCC (here a customer's order number, AI 400) is no tote.
    let e = r.scan("]C1400PO-77");
    assert_eq!(beeps(&e), [Beep::Error]);
    let e = r.key(Key::Enter);
    assert_eq!(shown(&e), "scan Tote: Widget 1", "still asked for a tote");
    // An SSCC label is: the tote is its 18 digits.
    r.scan("]C100003401234567890125");
    let e = r.key(Key::Enter);
    let Some(Command::ConfirmPick { units, .. }) = persisted(&e) else {
        panic!("{e:?}")
    };
    assert_eq!(units.tote.as_deref(), Some("003401234567890125"));
}

#[test]
fn in_the_reasons_menu_the_task_is_held_and_each_key_is_audited_against_it() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 3), task(2, "B-01", 2, 0, 1)]);
    r.arrive("A-01");
    r.scan(WIDGET);
    let e = r.key(Key::F(1));
    assert!(matches!(screen(&e), Some(Screen::Reasons { .. })), "{e:?}");
    let e = r.key(Key::Down);
    assert_eq!(audit(&e).task_id, Some(1), "{:?}", audit(&e));
    assert_eq!(r.p.held(), [1], "its fate must reach the picker");
}

#[test]
fn a_commit_answer_for_an_earlier_command_never_completes_the_pending_one() {
    let mut r = Rig {
        p: Picker::new(PickConfig::default()),
        now: 0,
    };
    r.input(Input::Tasks(vec![task(1, "A-01", 1, 0, 1)]));
    let login = r.scan("OP7");
    r.commit(&login);
    let login_id = login.iter().find_map(|e| match e {
        Effect::Persist { id, .. } => Some(*id),
        _ => None,
    });
    let start = r.scan("A-01");
    assert!(
        matches!(persisted(&start), Some(Command::StartTask { task_id: 1 })),
        "{start:?}"
    );
    // The login's answer again (a late or repeated one): not the start's.
    let e = r.input(Input::Committed {
        id: login_id.unwrap(),
    });
    assert_eq!(beeps(&e), [], "no ok-beep for a save that did not happen");
    assert!(audit(&e).outcome.contains("ignored"), "{:?}", audit(&e));
    let e = r.scan(WIDGET);
    assert_eq!(beeps(&e), [Beep::Error], "still saving the start");
    r.commit(&start);
    let e = r.scan(WIDGET);
    assert_eq!(shown(&e), "Info: Enter: confirm 1 Widget 1");
}

#[test]
fn units_in_hand_of_a_closed_task_the_oms_then_takes_away_go_back_through_the_store() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 5), task(2, "A-02", 2, 0, 1)]);
    r.arrive("A-01");
    r.scan(WIDGET);
    let e = r.key(Key::Enter);
    r.commit(&e);
    r.scan(WIDGET);
    r.scan(&format!("0{WIDGET}"));
    // A new version asks for the 1 unit confirmed: the 2 in hand go back, the store
    // need not hear of them.
    let e = r.input(Input::Tasks(vec![task(2, "A-02", 2, 0, 1)]));
    assert_eq!(shown(&e), "Warning: Put back 2 of Widget 1 at A-01");
    // Before they are back, the OMS revokes the task: its confirmed unit goes back too,
    // and the store must record that put-back.
    let e = r.input(Input::Withdrawn {
        task_id: 1,
        why: Withdrawal::Revoked,
    });
    assert_eq!(shown(&e), "Warning: Put back 3 of Widget 1 at A-01");
    let e = r.key(Key::Enter);
    let expected = Command::PutBack {
        task_id: 1,
        qty: 3,
        location: "A-01".into(),
    };
    assert_eq!(persisted(&e), Some(&expected));
}

#[test]
fn down_from_the_last_reason_wraps_to_the_first() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 3), task(2, "A-02", 2, 0, 1)]);
    r.arrive("A-01");
    r.scan(WIDGET);
    r.key(Key::F(1));
    let e = r.keys(&[Key::Down; 3]);
    assert!(
        matches!(screen(&e), Some(Screen::Reasons { selected: 3, .. })),
        "{e:?}"
    );
    let e = r.key(Key::Down);
    assert!(
        matches!(screen(&e), Some(Screen::Reasons { selected: 0, .. })),
        "{e:?}"
    );
    let e = r.key(Key::Enter);
    assert!(
        matches!(
            persisted(&e),
            Some(Command::ShortPick { reason, .. }) if *reason == REASONS[0].0
        ),
        "{e:?}"
    );
}

#[test]
fn a_surplus_put_back_the_store_stops_asking_for_is_dropped_though_another_task_has_one() {
    let mut r = Rig::logged_in(vec![]);
    let surplus = |id: u64, loc: &str| {
        (
            with_picked(task(id, loc, id as u32, 0, 1), 2),
            Owed::Surplus,
        )
    };
    let read = |owed| {
        Input::Path(Path {
            put_backs: vec![owed],
            ..Path::default()
        })
    };
    let e = r.input(read(surplus(5, "E-05")));
    assert_eq!(shown(&e), "Warning: Put back 1 of Widget 5 at E-05");
    // The next read asks for task 6's surplus only: task 5's is no longer wanted.
    let e = r.input(read(surplus(6, "F-06")));
    assert_eq!(r.p.held(), [6]);
    assert_eq!(shown(&e), "Warning: Put back 1 of Widget 6 at F-06");
}

#[test]
fn the_task_under_the_picker_leaving_the_path_with_nothing_picked_is_withdrawn_not_done() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 1), task(2, "A-02", 2, 0, 1)]);
    // The store's next window no longer has task 1, and nothing of it was picked.
    let e = r.input(window(vec![task(2, "A-02", 2, 0, 1)], false, None));
    assert!(
        e.iter()
            .any(|e| matches!(e, Effect::Show(Screen::Message { text, .. })
            if text.as_str() == "Task withdrawn: Widget 1")),
        "{e:?}"
    );
    assert_eq!(shown(&e), "pick A-02 Widget 2 x1");
    r.arrive("A-02");
    r.scan(WIDGET);
    let e = r.key(Key::Enter);
    let e = r.commit(&e);
    assert_eq!(
        shown(&e),
        "wave done 1 picked 0 short",
        "task 1 was not done"
    );
}

#[test]
fn a_surplus_of_the_last_closed_task_goes_back_and_a_later_revocation_asks_only_what_is_left() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 3)]);
    r.arrive("A-01");
    r.scan(WIDGET);
    r.scan(&format!("0{WIDGET}"));
    r.now += 1_000;
    r.scan(WIDGET);
    let e = r.key(Key::Enter);
    let e = r.commit(&e);
    assert_eq!(shown(&e), "wave done 1 picked 0 short");
    // A new version asks for 2 of the 3 picked: the store lists the surplus.
    let e = r.input(Input::Path(Path {
        put_backs: vec![(with_picked(task(1, "A-01", 1, 0, 2), 3), Owed::Surplus)],
        ..Path::default()
    }));
    assert_eq!(shown(&e), "Warning: Put back 1 of Widget 1 at A-01");
    let e = r.scan("A-01");
    let back = |qty| Command::PutBack {
        task_id: 1,
        qty,
        location: "A-01".into(),
    };
    assert_eq!(persisted(&e), Some(&back(1)));
    r.commit(&e);
    // Then the OMS takes the task away: the 2 units the picker still holds go back.
    let e = r.input(Input::Withdrawn {
        task_id: 1,
        why: Withdrawal::Revoked,
    });
    assert_eq!(shown(&e), "Warning: Put back 2 of Widget 1 at A-01");
    let e = r.scan("A-01");
    assert_eq!(persisted(&e), Some(&back(2)));
}

#[test]
fn units_in_hand_count_only_against_their_own_task_in_a_store_update_or_a_withdrawal() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 3), task(2, "A-02", 2, 0, 1)]);
    r.arrive("A-01");
    r.scan(WIDGET);
    r.scan(&format!("0{WIDGET}"));
    // Task 2 (1 unit) is read again: the 2 units in hand are task 1's, not its.
    let e = r.input(window(
        vec![task(1, "A-01", 1, 0, 3), task(2, "A-02", 2, 0, 1)],
        false,
        None,
    ));
    assert_eq!(beeps(&e), [], "{e:?}");
    assert!(r.p.put_backs.is_empty(), "{:?}", r.p.put_backs);
    // Task 2 is taken away with nothing picked: nothing to put back, the picker goes on.
    let e = r.input(Input::Withdrawn {
        task_id: 2,
        why: Withdrawal::OrderCancelled,
    });
    assert_eq!(beeps(&e), [], "{e:?}");
    assert!(r.p.put_backs.is_empty(), "{:?}", r.p.put_backs);
    let e = r.key(Key::Enter);
    assert!(
        matches!(persisted(&e), Some(Command::ConfirmPick { task_id: 1, units }) if units.qty == 2),
        "{e:?}"
    );
}

#[test]
fn a_second_unit_of_the_same_expiry_joins_the_first_and_another_expiry_is_refused() {
    let mut t = task(1, "A-01", 1, 0, 3);
    t.capture.expiry = true;
    let mut r = Rig::logged_in(vec![t]);
    r.arrive("A-01");
    let label = |expiry: &str| format!("]C101{:0>14}17{expiry}", WIDGET);
    let e = r.scan(&label("270630"));
    assert_eq!(shown(&e), "scan Item: 1/3 Widget 1");
    r.now += 1_000;
    let e = r.scan(&label("270630"));
    assert_eq!(shown(&e), "scan Item: 2/3 Widget 1");
    let e = r.scan(&label("270731"));
    assert_eq!(
        shown(&e),
        "Error: Other expiry 2027-07-31: confirm these first"
    );
}

#[test]
fn clear_at_the_location_prompt_drops_the_typed_check_code() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 1)]);
    let e = r.keys(&[Key::Digit(4), Key::Digit(4)]);
    assert_eq!(shown(&e), "Check code 44/99");
    let e = r.key(Key::Clear);
    assert_eq!(shown(&e), "pick A-01 Widget 1 x1");
    let e = r.keys(&[Key::Digit(4), Key::Digit(2), Key::Enter]);
    assert_eq!(persisted(&e), Some(&Command::StartTask { task_id: 1 }));
}

#[test]
fn every_unit_still_to_pick_in_hand_after_a_smaller_new_quantity_is_kept_for_the_confirmation() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 5)]);
    r.arrive("A-01");
    r.scan(WIDGET);
    r.scan(&format!("0{WIDGET}"));
    // A new version asks for exactly the 2 units in hand: none goes back.
    let e = r.input(Input::Tasks(vec![task(1, "A-01", 1, 0, 2)]));
    assert_eq!(beeps(&e), [], "{e:?}");
    let e = r.key(Key::Enter);
    assert!(
        matches!(persisted(&e), Some(Command::ConfirmPick { units, .. }) if units.qty == 2),
        "{e:?}"
    );
}

#[test]
fn units_short_picked_go_back_when_the_order_is_then_cancelled() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 5), task(2, "A-02", 2, 0, 1)]);
    r.arrive("A-01");
    r.scan(WIDGET);
    r.scan(&format!("0{WIDGET}"));
    r.key(Key::F(1));
    let e = r.key(Key::Enter);
    assert!(
        matches!(persisted(&e), Some(Command::ShortPick { units, .. }) if units.qty == 2),
        "{e:?}"
    );
    let e = r.commit(&e);
    assert_eq!(shown(&e), "pick A-02 Widget 2 x1");
    let e = r.input(Input::Withdrawn {
        task_id: 1,
        why: Withdrawal::OrderCancelled,
    });
    assert_eq!(shown(&e), "Warning: Put back 2 of Widget 1 at A-01");
}

#[test]
fn the_audit_names_every_kind_of_input() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 2)]);
    let input = |e: &[Effect]| audit(e).input.clone();
    let e = r.scan("]C101095060001343521\x1d10L7");
    assert_eq!(input(&e), "scan ]C101095060001343521\\x1d10L7");
    assert_eq!(input(&r.key(Key::F(2))), "key F(2)");
    assert_eq!(input(&r.input(Input::Committed { id: 99 })), "committed 99");
    let e = r.input(Input::Failed {
        id: 98,
        reason: "disk full".into(),
    });
    assert_eq!(input(&e), "failed 98: disk full");
    let e = r.input(Input::Tasks(vec![task(1, "A-01", 1, 0, 2)]));
    assert_eq!(input(&e), "tasks (1)");
    let e = r.input(Input::Path(Path {
        tasks: vec![task(1, "A-01", 1, 0, 2)],
        more: true,
        put_backs: vec![(with_picked(task(5, "E-05", 5, 0, 1), 2), Owed::Surplus)],
        withdrawn: vec![(7, Withdrawal::Revoked)],
        ..Path::default()
    }));
    assert_eq!(
        input(&e),
        "path (1 tasks and more, 1 put-backs, 1 withdrawn)"
    );
    let e = r.input(Input::Withdrawn {
        task_id: 3,
        why: Withdrawal::OrderCancelled,
    });
    assert_eq!(input(&e), "task 3 OrderCancelled");
}

#[test]
fn f1_at_the_location_prompt_short_picks_nothing_and_back_returns_to_the_prompt() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 3), task(2, "A-02", 2, 0, 1)]);
    let e = r.key(Key::F(1));
    assert!(
        matches!(screen(&e), Some(Screen::Reasons { selected: 0, .. })),
        "{e:?}"
    );
    let e = r.key(Key::Back);
    assert_eq!(shown(&e), "pick A-01 Widget 1 x3");
    r.key(Key::F(1));
    let e = r.key(Key::Enter);
    let expected = Command::ShortPick {
        task_id: 1,
        units: Units::default(),
        reason: ShortReason::LocationEmpty,
    };
    assert_eq!(persisted(&e), Some(&expected));
}

#[test]
fn clear_drops_a_typed_quantity_and_keeps_the_units_scanned() {
    let mut t = task(1, "A-01", 1, 0, 10);
    t.qty_entry = QtyEntry::Typed;
    let mut r = Rig::logged_in(vec![t]);
    r.arrive("A-01");
    r.scan(WIDGET);
    let e = r.keys(&[Key::Digit(7), Key::Clear]);
    assert_eq!(shown(&e), "scan Item: 1/10 Widget 1");
    let e = r.keys(&[Key::Digit(3), Key::Enter]);
    assert_eq!(shown(&e), "scan Item: 3/10 Widget 1");
}

#[test]
fn a_digit_beyond_the_reasons_menu_chooses_nothing() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 3), task(2, "A-02", 2, 0, 1)]);
    r.arrive("A-01");
    r.scan(WIDGET);
    r.keys(&[Key::F(1), Key::Digit(2)]);
    for d in [0, 5, 9] {
        let e = r.key(Key::Digit(d));
        assert_eq!(beeps(&e), [Beep::Error], "digit {d}");
    }
    let e = r.key(Key::Enter);
    assert!(
        matches!(
            persisted(&e),
            Some(Command::ShortPick { reason, .. }) if *reason == REASONS[1].0
        ),
        "{e:?}"
    );
}

#[test]
fn a_store_update_listing_a_closed_task_as_it_closed_changes_nothing() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 1)]);
    r.arrive("A-01");
    r.scan(WIDGET);
    let e = r.key(Key::Enter);
    r.commit(&e);
    let e = r.input(Input::Tasks(vec![with_picked(task(1, "A-01", 1, 0, 1), 1)]));
    assert_eq!(beeps(&e), [], "{e:?}");
    assert_eq!(
        shown(&[Effect::Show(r.p.screen())]),
        "wave done 1 picked 0 short"
    );
}

#[test]
fn a_stale_surplus_read_after_a_withdrawal_still_puts_back_everything_picked() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 5), task(2, "A-02", 2, 0, 1)]);
    r.arrive("A-01");
    r.scan(WIDGET);
    r.scan(&format!("0{WIDGET}"));
    let e = r.key(Key::Enter);
    r.commit(&e);
    let e = r.input(Input::Withdrawn {
        task_id: 1,
        why: Withdrawal::Revoked,
    });
    assert_eq!(shown(&e), "Warning: Put back 2 of Widget 1 at A-01");
    // A read from before the revocation reached the store: task 1 as a surplus of 1.
    r.input(Input::Path(Path {
        tasks: vec![task(2, "A-02", 2, 0, 1)],
        put_backs: vec![(with_picked(task(1, "A-01", 1, 0, 1), 2), Owed::Surplus)],
        ..Path::default()
    }));
    let e = r.scan("A-01");
    let expected = Command::PutBack {
        task_id: 1,
        qty: 2,
        location: "A-01".into(),
    };
    assert_eq!(persisted(&e), Some(&expected));
}

#[test]
fn an_undone_task_counts_once_when_it_is_done_again() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 1)]);
    r.arrive("A-01");
    r.scan(WIDGET);
    let e = r.key(Key::Enter);
    let e = r.commit(&e);
    assert_eq!(shown(&e), "wave done 1 picked 0 short");
    let e = r.key(Key::F(3));
    assert!(
        matches!(persisted(&e), Some(Command::UndoPick { task_id: 1, .. })),
        "{e:?}"
    );
    r.commit(&e);
    r.arrive("A-01");
    r.scan(WIDGET);
    let e = r.key(Key::Enter);
    let e = r.commit(&e);
    assert_eq!(
        shown(&e),
        "wave done 1 picked 0 short",
        "one task, done once"
    );
}

#[test]
fn a_picker_with_nothing_done_and_no_tasks_is_told_to_wait_not_that_a_wave_is_done() {
    let r = Rig::logged_in(vec![]);
    assert_eq!(
        shown(&[Effect::Show(r.p.screen())]),
        "Info: No tasks: wait for the next wave"
    );
}

#[test]
fn a_serial_on_the_label_of_an_item_that_does_not_capture_serials_is_not_recorded() {
    let mut r = Rig::logged_in(vec![task(1, "A-01", 1, 0, 1)]);
    r.arrive("A-01");
    r.scan(&format!("]C101{:0>14}21S1", WIDGET));
    let e = r.key(Key::Enter);
    let Some(Command::ConfirmPick { units, .. }) = persisted(&e) else {
        panic!("{e:?}")
    };
    assert_eq!((units.qty, units.serial.as_deref()), (1, None));
}
