//! Pack workflow tests: every path, through one `Station` helper that feeds inputs and
//! returns the effects.

use floorhand_protocol::link::{Beep, Key, Level, ScanTarget, Screen};
use floorhand_protocol::oms::{Capture, GtinPack, PackLine, PackOrder};

use super::*;
use crate::label::sscc::gs1_check_digit;
use crate::store::PackOrderRow;

/// The workflow's order for `o`, as the runtime hands it over: the store's copy of what
/// the OMS sent, converted at the station's edge.
fn as_stored(o: &PackOrder) -> Order {
    Order::from(&PackOrderRow::from(o))
}

const NOW: u64 = 1_795_300_000;

/// A GTIN-14 with its check digit, from 13 digits.
fn gtin(first13: &str) -> String {
    format!("{first13}{}", gs1_check_digit(first13.as_bytes()))
}

fn bolt() -> String {
    gtin("0950600013435")
}
fn nut() -> String {
    gtin("0950600013436")
}
fn drill() -> String {
    gtin("0950600013437")
}

fn order() -> PackOrder {
    let example = floorhand_protocol::examples::down()
        .into_iter()
        .find_map(|(_, env)| match env.body.body {
            floorhand_protocol::oms::Down::PackOrder(p) => Some(*p),
            _ => None,
        })
        .unwrap();
    let line = |n: u32, g: String, sku: &str, qty: u32, capture: Capture, w: u32| PackLine {
        order_line: n,
        gtins: vec![GtinPack {
            gtin: g,
            pack_qty: 1,
        }],
        sku: sku.into(),
        description: sku.into(),
        qty,
        capture,
        unit_weight_g: w,
    };
    PackOrder {
        lines: vec![
            line(1, bolt(), "BOLT", 2, Capture::default(), 100),
            line(
                2,
                nut(),
                "NUT",
                1,
                Capture {
                    lot: true,
                    serial: false,
                    expiry: false,
                },
                50,
            ),
        ],
        ..example
    }
}

struct Station {
    packer: Packer,
    serial: u64,
    job: u64,
}

impl Station {
    fn new() -> Station {
        Station {
            packer: Packer::new(PackConfig {
                company_prefix: "4012345".into(),
                extension: 3,
                tare_g: 200,
                tolerance_pct: 10,
                tolerance_min_g: 30,
                template: crate::label::builtin(crate::label::Dpi::D203),
            }),
            serial: 0,
            job: 100,
        }
    }

    fn feed(&mut self, input: Input) -> Vec<Effect> {
        self.packer.handle(NOW, input)
    }

    fn scan(&mut self, text: &str) -> Vec<Effect> {
        self.feed(Input::Scan(text.into()))
    }

    fn key(&mut self, k: Key) -> Vec<Effect> {
        self.feed(Input::Key(k))
    }

    fn type_number(&mut self, n: u32) -> Vec<Effect> {
        let mut last = Vec::new();
        for d in n.to_string().bytes() {
            last = self.key(Key::Digit(d - b'0'));
        }
        last
    }

    /// Scans the order and lets the runtime find it.
    fn start(&mut self, o: PackOrder) -> Vec<Effect> {
        let id = o.order_id.clone();
        assert_eq!(self.scan(&id), vec![Effect::LookUpOrder(id)]);
        self.feed(Input::Order(Box::new(as_stored(&o))))
    }

    /// Answers the SSCC allocation the last effects asked for.
    fn allocate(&mut self, effects: &[Effect]) -> Vec<Effect> {
        assert_eq!(effects, [Effect::AllocateSscc], "expected an SSCC request");
        self.serial += 1;
        self.feed(Input::SsccSerial(self.serial))
    }

    /// Commits what the last effects asked for, returning the job id it created.
    fn commit(&mut self) -> (u64, Vec<Effect>) {
        self.job += 1;
        let job = self.job;
        (job, self.feed(Input::Committed { job_id: Some(job) }))
    }

    /// Types `weight` and closes: returns the CartonClosed commit.
    fn close_with_weight(&mut self, weight: u32) -> Commit {
        self.type_number(weight);
        let e = self.key(Key::Enter);
        let e = self.allocate(&e);
        only_commit(&e)
    }
}

fn only_commit(effects: &[Effect]) -> Commit {
    match effects {
        [Effect::Commit(c)] => c.clone(),
        other => panic!("expected one commit, got {other:?}"),
    }
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

fn message_text(effects: &[Effect]) -> Option<(Level, String)> {
    effects.iter().find_map(|e| match e {
        Effect::Show(Screen::Message { level, text }) => Some((*level, text.to_string())),
        _ => None,
    })
}

/// Asserts the effects refuse with an error beep and a message containing `text`.
fn check_refused(effects: &[Effect], text: &str) {
    assert_eq!(beeps(effects), [Beep::Error], "{effects:?}");
    let (level, msg) = message_text(effects).expect("a message");
    assert_eq!(level, Level::Error);
    assert!(msg.contains(text), "{msg:?} should contain {text:?}");
}

#[test]
fn packing_a_whole_order_commits_the_carton_and_label_before_the_ok_beep() {
    let mut s = Station::new();
    let e = s.start(order());
    assert_eq!(beeps(&e), [Beep::Ok]);
    assert_eq!(beeps(&s.scan(&bolt())), [Beep::Ok]);
    assert_eq!(beeps(&s.scan(&format!("]C101{}10L-77", nut()))), [Beep::Ok]);
    assert_eq!(beeps(&s.scan(&bolt())), [Beep::Ok]);
    assert_eq!(
        message_text(&s.key(Key::F(keys::CLOSE))),
        None,
        "F1 asks for the weight"
    );
    // 200 tare + 2 x 100 + 50 = 450 g expected.
    let commit = s.close_with_weight(455);
    let Commit::CartonClosed {
        at,
        order_id,
        carton_no,
        sscc,
        weight_g,
        short_ship,
        order_complete,
        contents,
        label,
    } = commit
    else {
        panic!("expected CartonClosed, got {commit:?}");
    };
    assert_eq!((at, order_id.as_str(), carton_no), (NOW, "SO-10042", 1));
    assert_eq!(sscc, "340123450000000017");
    assert_eq!((weight_g, short_ship, order_complete), (455, None, true));
    assert_eq!(contents.len(), 3);
    assert_eq!(contents[1].lot.as_deref(), Some("L-77"));
    let zpl = String::from_utf8(label).unwrap();
    assert!(zpl.contains("(00)340123450000000017") && zpl.contains("Carton 1 of 1"));
    // The ok-beep comes only with the commit; then the station waits for the next order.
    let (_, e) = s.commit();
    assert_eq!(beeps(&e), [Beep::Ok]);
    assert!(e.contains(&Effect::Show(Screen::Scan {
        target: ScanTarget::Order,
        hint: fit("Scan order or tote"),
    })));
}

#[test]
fn an_item_not_in_the_order_is_refused_with_an_error_beep() {
    let mut s = Station::new();
    s.start(order());
    check_refused(&s.scan(&drill()), "Not in this order");
}

#[test]
fn one_unit_too_many_is_refused() {
    let mut s = Station::new();
    s.start(order());
    s.scan(&bolt());
    s.scan(&bolt());
    check_refused(&s.scan(&bolt()), "Too many BOLT: 2/2");
}

#[test]
fn a_barcode_that_is_not_an_item_is_refused_as_wrong_item() {
    let mut s = Station::new();
    s.start(order());
    check_refused(&s.scan("A-12-03-B"), "Wrong item");
    let mut bad = bolt();
    bad.replace_range(13.., if bad.ends_with('0') { "1" } else { "0" });
    check_refused(&s.scan(&bad), "check digit");
}

#[test]
fn a_line_that_needs_a_lot_asks_for_it_and_keeps_it() {
    let mut s = Station::new();
    s.start(order());
    let e = s.scan(&nut());
    assert!(e.contains(&Effect::Show(Screen::Scan {
        target: ScanTarget::Lot,
        hint: fit("Scan lot"),
    })));
    assert_eq!(beeps(&s.scan("LOT-9")), [Beep::Ok]);
    s.scan(&bolt());
    s.scan(&bolt());
    s.key(Key::F(keys::CLOSE));
    let Commit::CartonClosed { contents, .. } = s.close_with_weight(450) else {
        panic!()
    };
    assert_eq!(contents[0].lot.as_deref(), Some("LOT-9"));
}

#[test]
fn a_serial_scanned_twice_in_an_order_is_refused() {
    let mut o = order();
    o.lines[0].capture.serial = true;
    let mut s = Station::new();
    s.start(o);
    assert_eq!(beeps(&s.scan(&format!("]C101{}21SN1", bolt()))), [Beep::Ok]);
    check_refused(
        &s.scan(&format!("]C101{}21SN1", bolt())),
        "Serial SN1 already",
    );
    s.scan(&bolt());
    assert_eq!(beeps(&s.scan("SN2")), [Beep::Ok]);
}

#[test]
fn a_carton_outside_the_weight_tolerance_asks_for_a_recheck() {
    let mut s = Station::new();
    s.start(order());
    s.scan(&bolt());
    s.key(Key::F(keys::CLOSE));
    // Expected 300 g, tolerance max(30, 30) g.
    s.type_number(400);
    let e = s.key(Key::Enter);
    assert_eq!(beeps(&e), [Beep::Attention]);
    let (level, text) = message_text(&e).unwrap();
    assert_eq!(level, Level::Warning);
    assert!(text.contains("Recheck: 400 g, expected 300"), "{text}");
    // Re-weighed right: closes.
    s.type_number(310);
    let e = s.key(Key::Enter);
    assert!(matches!(
        only_commit(&s.allocate(&e)),
        Commit::CartonClosed { weight_g: 310, .. }
    ));
}

#[test]
fn a_recheck_confirmed_with_enter_keeps_the_weight() {
    let mut s = Station::new();
    s.start(order());
    s.scan(&bolt());
    s.key(Key::F(keys::CLOSE));
    s.type_number(900);
    s.key(Key::Enter);
    let e = s.key(Key::Enter);
    assert!(matches!(
        only_commit(&s.allocate(&e)),
        Commit::CartonClosed { weight_g: 900, .. }
    ));
}

#[test]
fn a_scale_reading_closes_without_typing() {
    let mut s = Station::new();
    s.start(order());
    s.scan(&bolt());
    s.key(Key::F(keys::CLOSE));
    let e = s.feed(Input::ScaleWeight(305));
    assert!(matches!(
        only_commit(&s.allocate(&e)),
        Commit::CartonClosed { weight_g: 305, .. }
    ));
}

#[test]
fn a_carton_weighed_while_packed_closes_with_the_scale_weight_and_the_next_needs_its_own() {
    let mut s = Station::new();
    s.start(order());
    s.scan(&bolt());
    assert_eq!(
        s.feed(Input::ScaleWeight(298)),
        vec![],
        "packing: only remembered"
    );
    let e = s.key(Key::F(keys::CLOSE));
    assert!(matches!(
        only_commit(&s.allocate(&e)),
        Commit::CartonClosed { weight_g: 298, .. }
    ));
    s.commit();
    // Carton 2: the old reading is not reused; an empty scale (0 g) is not a weight.
    s.scan(&bolt());
    assert_eq!(s.feed(Input::ScaleWeight(0)), vec![]);
    let e = s.key(Key::F(keys::CLOSE));
    assert!(
        matches!(e.as_slice(), [Effect::Show(Screen::Quantity { .. })]),
        "{e:?}"
    );
    assert_eq!(s.feed(Input::ScaleWeight(0)), vec![], "0 g never closes");
}

#[test]
fn a_recheck_ignores_the_same_scale_weight_and_checks_a_new_one() {
    let mut s = Station::new();
    s.start(order());
    s.scan(&bolt());
    s.key(Key::F(keys::CLOSE));
    let e = s.feed(Input::ScaleWeight(500));
    assert_eq!(
        beeps(&e),
        [Beep::Attention],
        "500 g is outside 300±30: recheck"
    );
    assert_eq!(s.feed(Input::ScaleWeight(500)), vec![], "no beep storm");
    let e = s.feed(Input::ScaleWeight(305));
    assert!(matches!(
        only_commit(&s.allocate(&e)),
        Commit::CartonClosed { weight_g: 305, .. }
    ));
}

#[test]
fn every_carton_of_an_order_gets_its_own_sscc_and_label() {
    let mut s = Station::new();
    s.start(order());
    check_refused(&s.key(Key::F(keys::CLOSE)), "Carton is empty");
    s.scan(&bolt());
    s.key(Key::F(keys::CLOSE));
    let first = s.close_with_weight(300);
    let (_, e) = s.commit();
    assert_eq!(beeps(&e), [Beep::Ok]);
    assert!(e.contains(&Effect::Show(Screen::Scan {
        target: ScanTarget::Item,
        hint: fit("SO-10042 carton 2"),
    })));
    s.scan(&bolt());
    s.scan(&format!("]C101{}10L1", nut()));
    s.key(Key::F(keys::CLOSE));
    let second = s.close_with_weight(350);
    match (first, second) {
        (
            Commit::CartonClosed {
                carton_no: 1,
                sscc: a,
                order_complete: false,
                label: la,
                ..
            },
            Commit::CartonClosed {
                carton_no: 2,
                sscc: b,
                order_complete: true,
                label: lb,
                ..
            },
        ) => {
            assert_ne!(a, b);
            let (la, lb) = (
                String::from_utf8(la).unwrap(),
                String::from_utf8(lb).unwrap(),
            );
            assert!(la.contains(&format!("(00){a}")) && la.contains("Carton 1^FS"));
            assert!(lb.contains(&format!("(00){b}")) && lb.contains("Carton 2 of 2"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_incomplete_order_closes_only_with_a_reason_which_is_reported() {
    let mut s = Station::new();
    s.start(order());
    s.scan(&bolt());
    s.key(Key::F(keys::CLOSE));
    // Closing the carton alone does not end the order: it starts carton 2.
    s.close_with_weight(300);
    s.commit();
    s.scan(&bolt());
    let e = s.key(Key::F(keys::SHORT));
    assert!(matches!(
        e.as_slice(),
        [Effect::Show(Screen::Reasons { selected: 0, .. })]
    ));
    s.key(Key::Down);
    s.key(Key::Enter); // "damaged"
    let commit = s.close_with_weight(300);
    let Commit::CartonClosed {
        short_ship,
        order_complete,
        label,
        ..
    } = commit
    else {
        panic!("{commit:?}")
    };
    assert_eq!(short_ship.as_deref(), Some("damaged: NUT 0/1"));
    assert!(!order_complete);
    assert!(String::from_utf8(label).unwrap().contains("Carton 2 of 2"));
    let (_, e) = s.commit();
    assert!(e.contains(&Effect::Show(Screen::Scan {
        target: ScanTarget::Order,
        hint: fit("Scan order or tote"),
    })));
}

#[test]
fn a_short_ship_with_an_empty_carton_is_reported_on_its_own() {
    let mut s = Station::new();
    s.start(order());
    s.key(Key::F(keys::SHORT));
    let e = s.key(Key::Enter);
    assert_eq!(
        only_commit(&e),
        Commit::ShortShipped {
            at: NOW,
            order_id: "SO-10042".into(),
            detail: "not enough: BOLT 0/2, NUT 0/1".into(),
        }
    );
    let e = s.feed(Input::Committed { job_id: None });
    assert_eq!(beeps(&e), [Beep::Ok]);
}

#[test]
fn a_complete_order_is_not_closed_short() {
    let mut s = Station::new();
    s.start(order());
    s.scan(&bolt());
    s.scan(&bolt());
    s.scan(&nut());
    s.scan("L1");
    check_refused(&s.key(Key::F(keys::SHORT)), "F1 closes");
}

#[test]
fn the_last_label_and_any_scanned_carton_label_can_be_reprinted() {
    let mut s = Station::new();
    check_refused(&s.key(Key::F(keys::REPRINT)), "No label printed yet");
    s.start(order());
    s.scan(&bolt());
    s.key(Key::F(keys::CLOSE));
    let Commit::CartonClosed { sscc, .. } = s.close_with_weight(300) else {
        panic!()
    };
    s.commit();
    let e = s.key(Key::F(keys::REPRINT));
    assert_eq!(
        only_commit(&e),
        Commit::Reprint {
            at: NOW,
            sscc: sscc.clone()
        }
    );
    let (_, e) = s.commit();
    assert_eq!(beeps(&e), [Beep::Ok]);
    // Any carton's SSCC, scanned from its label (GS1-128 with AI 00).
    let other = "]C100106141411234567897";
    assert_eq!(
        only_commit(&s.scan(other)),
        Commit::Reprint {
            at: NOW,
            sscc: "106141411234567897".into()
        }
    );
    check_refused(
        &s.feed(Input::CommitFailed("no label stored".into())),
        "No reprint",
    );
}

#[test]
fn a_print_fault_is_reported_and_shown_then_the_retry_is_recorded() {
    let mut s = Station::new();
    s.start(order());
    s.scan(&bolt());
    s.key(Key::F(keys::CLOSE));
    let Commit::CartonClosed { sscc, .. } = s.close_with_weight(300) else {
        panic!()
    };
    let (job_id, _) = s.commit();
    let e = s.feed(Input::PrintReport {
        job_id,
        fault: Some("paper out".into()),
    });
    assert_eq!(
        e[0],
        Effect::Commit(Commit::PrintFailed {
            at: NOW,
            sscc: sscc.clone(),
            job_id,
            fault: "paper out".into()
        })
    );
    check_refused(&e, "Label NOT printed: paper out");
    assert!(s.feed(Input::Committed { job_id: None }).is_empty());
    let e = s.feed(Input::PrintReport {
        job_id,
        fault: None,
    });
    assert_eq!(
        e,
        [Effect::Commit(Commit::LabelPrinted {
            at: NOW,
            sscc,
            job_id
        })]
    );
    // A job this station does not know is ignored.
    assert!(
        s.feed(Input::PrintReport {
            job_id: 9999,
            fault: None
        })
        .is_empty()
    );
}

#[test]
fn a_cancellation_mid_pack_stops_and_asks_to_set_the_carton_aside() {
    let mut s = Station::new();
    s.start(order());
    s.scan(&bolt());
    assert!(s.feed(Input::OrderCancelled("SO-OTHER".into())).is_empty());
    let e = s.feed(Input::OrderCancelled("SO-10042".into()));
    check_refused(&e, "CANCELLED: set carton aside");
    check_refused(&s.scan(&bolt()), "Order cancelled");
    assert!(s.key(Key::F(keys::CLOSE)).is_empty());
    let e = s.key(Key::Enter);
    assert!(e.contains(&Effect::Show(Screen::Scan {
        target: ScanTarget::Order,
        hint: fit("Scan order or tote"),
    })));
    // Scanned again later, the cancelled order is refused.
    s.scan("SO-10042");
    check_refused(
        &s.feed(Input::Order(Box::new(as_stored(&order())))),
        "cancelled",
    );
}

#[test]
fn a_cancellation_while_a_carton_is_saving_keeps_the_packer_stopped() {
    let mut s = Station::new();
    s.start(order());
    s.scan(&bolt());
    s.key(Key::F(keys::CLOSE));
    s.close_with_weight(300);
    check_refused(
        &s.feed(Input::OrderCancelled("SO-10042".into())),
        "CANCELLED: set carton aside",
    );
    let (_, e) = s.commit();
    assert_eq!(beeps(&e), [Beep::Ok]);
    assert!(
        !e.iter()
            .any(|x| matches!(x, Effect::Show(Screen::Scan { .. })))
    );
    check_refused(&s.scan(&bolt()), "Order cancelled");
}

#[test]
fn an_unknown_order_is_refused_and_the_station_waits_again() {
    let mut s = Station::new();
    s.scan("T-9999");
    let e = s.feed(Input::OrderNotFound("T-9999".into()));
    check_refused(&e, "No open order or tote T-9999");
    check_refused(&s.scan(&bolt()), "Scan an order or tote first");
}

#[test]
fn a_failed_commit_keeps_the_carton_open_to_close_again() {
    let mut s = Station::new();
    s.start(order());
    s.scan(&bolt());
    s.key(Key::F(keys::CLOSE));
    s.close_with_weight(300);
    check_refused(&s.scan(&bolt()), "Saving");
    check_refused(
        &s.feed(Input::CommitFailed("disk full".into())),
        "disk full",
    );
    s.key(Key::F(keys::CLOSE));
    let Commit::CartonClosed { contents, sscc, .. } = s.close_with_weight(300) else {
        panic!()
    };
    assert_eq!(contents.len(), 1);
    // A new serial: an SSCC is never reused, even for a failed commit.
    assert_eq!(sscc, "340123450000000024");
}

#[test]
fn a_tracking_number_that_cannot_print_stops_the_close_with_a_clear_error() {
    let mut o = order();
    o.tracking = "BAD>1".into();
    let mut s = Station::new();
    s.start(o);
    s.scan(&bolt());
    s.key(Key::F(keys::CLOSE));
    s.type_number(300);
    let e = s.key(Key::Enter);
    let e = s.allocate(&e);
    assert_eq!(beeps(&e), [Beep::Error]);
    assert!(!e.iter().any(|x| matches!(x, Effect::Commit(_))));
}

fn badge_prompt() -> Effect {
    Effect::Show(Screen::Scan {
        target: ScanTarget::Badge,
        hint: fit("Scan your badge"),
    })
}

#[test]
fn with_login_nothing_is_packed_before_a_badge_scan_and_the_operator_is_known_after() {
    let mut s = Station::new();
    s.packer = Packer::new(s.packer.config.clone()).with_login("OP");
    assert_eq!(s.packer.start(), vec![badge_prompt()]);
    for e in [
        s.scan("SO-10042"),
        s.scan(&bolt()),
        s.key(Key::F(keys::REPRINT)),
    ] {
        check_refused(&e, "Scan your badge to log in");
        assert_eq!(e.last(), Some(&badge_prompt()), "the badge prompt again");
    }
    assert_eq!(s.packer.operator(), None);
    let e = s.scan("OP0042");
    assert_eq!(
        only_commit(&e),
        Commit::LoggedIn {
            at: NOW,
            operator: 42,
            badge: "OP0042".into()
        }
    );
    assert_eq!(s.packer.operator(), None, "not before the commit");
    let (_, e) = s.commit();
    assert_eq!(beeps(&e), [Beep::Ok]);
    assert_eq!(s.packer.operator(), Some(42));
    assert!(matches!(
        e.last(),
        Some(Effect::Show(Screen::Scan {
            target: ScanTarget::Order,
            ..
        }))
    ));
    // Another badge while logged in is refused; the own badge logs out only between orders.
    check_refused(&s.scan("OP7"), "Operator 42 is logged in");
    s.start(order());
    check_refused(&s.scan("OP42"), "Finish this order");
}

#[test]
fn the_same_badge_logs_out_between_orders_and_a_failed_login_asks_again() {
    let mut s = Station::new();
    s.packer = Packer::new(s.packer.config.clone()).with_login("OP");
    s.scan("OP5");
    let e = s.feed(Input::CommitFailed("disk full".into()));
    check_refused(&e, "scan badge again");
    assert_eq!(s.packer.operator(), None);
    s.scan("OP5");
    s.commit();
    assert_eq!(
        only_commit(&s.scan("OP5")),
        Commit::LoggedOut {
            at: NOW,
            operator: 5
        }
    );
    let (_, e) = s.commit();
    assert_eq!(s.packer.operator(), None);
    assert_eq!(e.last(), Some(&badge_prompt()));
    // A GS1 item is never mistaken for a badge, whatever the prefix.
    let mut s = Station::new();
    s.packer = Packer::new(s.packer.config.clone()).with_login("0");
    check_refused(&s.scan(&bolt()), "Scan your badge");
}

#[test]
fn without_login_badges_are_not_special_and_packing_works_as_before() {
    let mut s = Station::new();
    assert_eq!(s.packer.operator(), None);
    assert_eq!(s.scan("OP5"), vec![Effect::LookUpOrder("OP5".into())]);
}

#[test]
fn a_lot_after_a_weight_ai_is_packed_as_the_lot_the_barcode_carries() {
    // Issue 16: the pack station's own parser let AI 3103 swallow the lot.
    let mut s = Station::new();
    s.start(order());
    let e = s.scan(&format!("]C101{}310300125010L1", nut()));
    assert_eq!(beeps(&e), [Beep::Ok], "the lot is in the barcode: {e:?}");
    s.scan(&bolt());
    s.scan(&bolt());
    s.key(Key::F(keys::CLOSE));
    let Commit::CartonClosed { contents, .. } = s.close_with_weight(450) else {
        panic!()
    };
    assert_eq!(contents[0].lot.as_deref(), Some("L1"));
}

#[test]
fn a_lot_label_answers_the_lot_prompt_and_an_item_barcode_without_one_does_not() {
    let mut s = Station::new();
    s.start(order());
    s.scan(&nut());
    check_refused(&s.scan(&bolt()), "No lot in this barcode");
    check_refused(&s.scan("]C110L\u{0}9"), "Bad label: AI 10");
    assert_eq!(beeps(&s.scan("]C110L-9")), [Beep::Ok]);
    s.scan(&bolt());
    s.scan(&bolt());
    s.key(Key::F(keys::CLOSE));
    let Commit::CartonClosed { contents, .. } = s.close_with_weight(450) else {
        panic!()
    };
    assert_eq!(contents[0].lot.as_deref(), Some("L-9"));
}

#[test]
fn a_label_that_cannot_be_read_is_refused_naming_what_is_wrong() {
    let mut s = Station::new();
    check_refused(
        &s.scan("SO-1\u{0}"),
        "Bad label: control character U+0000 not allowed",
    );
    s.start(order());
    check_refused(
        &s.scan(&format!("]C101{}17271332", bolt())),
        "Bad label: AI 17",
    );
    check_refused(&s.scan("]C110L-9"), "Wrong item: no GTIN");
}

#[test]
fn a_scan_of_bytes_that_are_not_text_is_refused_and_never_read_as_text() {
    let mut s = Station::new();
    // As the scanner sent them: no lossy text with a replacement character in between.
    let e = s.feed(Input::Scan(b"SO-\xff10042".to_vec()));
    check_refused(&e, "Bad label: bytes that are not UTF-8 text");
    assert!(
        !e.iter().any(|e| matches!(e, Effect::LookUpOrder(_))),
        "no order looked up: {e:?}"
    );
    // CR and LF around a scan are the scanner's, not the barcode's.
    let e = s.feed(Input::Scan(b"SO-10042\r\n".to_vec()));
    assert_eq!(e, [Effect::LookUpOrder("SO-10042".into())]);
}

/// The selected reason of a reasons screen among `effects`.
fn selected_reason(effects: &[Effect]) -> Option<u8> {
    effects.iter().find_map(|e| match e {
        Effect::Show(Screen::Reasons { selected, .. }) => Some(*selected),
        _ => None,
    })
}

#[test]
fn a_typed_weight_can_be_cleared_or_left_and_the_reason_menu_wraps_both_ways() {
    let mut s = Station::new();
    s.start(order());
    s.scan(&bolt());
    s.key(Key::F(keys::CLOSE));
    // Back from the weight: packing goes on.
    let e = s.key(Key::Back);
    assert!(e.contains(&Effect::Show(Screen::Scan {
        target: ScanTarget::Item,
        hint: fit("Scan item"),
    })));
    s.key(Key::F(keys::CLOSE));
    // A mistyped weight is cleared and typed again.
    s.type_number(999);
    s.key(Key::Clear);
    assert!(matches!(
        s.close_with_weight(300),
        Commit::CartonClosed { weight_g: 300, .. }
    ));
    s.commit();
    s.scan(&bolt());
    assert_eq!(selected_reason(&s.key(Key::F(keys::SHORT))), Some(0));
    assert_eq!(
        selected_reason(&s.key(Key::Up)),
        Some(3),
        "up from the first"
    );
    assert_eq!(
        selected_reason(&s.key(Key::Down)),
        Some(0),
        "down from the last"
    );
}

#[test]
fn a_heavy_carton_gets_its_percentage_tolerance_and_a_typed_expiry_needs_six_digits() {
    let mut o = order();
    // Expected 200 g tare + 1000 g: 10 % is 100 g, more than the 30 g minimum.
    o.lines[0].unit_weight_g = 1000;
    o.lines[0].capture.expiry = true;
    let mut s = Station::new();
    s.start(o);
    s.scan(&bolt());
    check_refused(&s.scan("2712"), "Expiry must be 6 digits YYMMDD");
    assert_eq!(beeps(&s.scan("271231")), [Beep::Ok]);
    s.key(Key::F(keys::CLOSE));
    assert!(matches!(
        s.close_with_weight(1290),
        Commit::CartonClosed { weight_g: 1290, .. }
    ));
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

fn report(reason: RefusalReason) -> Vec<Refusal> {
    vec![Refusal {
        reason,
        task_id: None,
        count: 1,
    }]
}

#[test]
fn refused_scans_are_reported_by_class_once_a_second_and_refused_keys_are_not() {
    let mut s = Station::new();
    s.packer = Packer::new(s.packer.config.clone()).with_login("OP");
    let at = |s: &mut Station, now: u64, text: &str| s.packer.handle(now, Input::Scan(text.into()));
    assert_eq!(
        refusals(&at(&mut s, NOW, &bolt())),
        report(RefusalReason::NotLoggedIn)
    );
    // A refused key is not reported.
    assert_eq!(refusals(&s.key(Key::F(keys::CLOSE))), []);
    s.scan("OP0042");
    s.commit();
    // An item before any order: no work for it.
    assert_eq!(
        refusals(&at(&mut s, NOW + 1, &bolt())),
        report(RefusalReason::NoTask)
    );
    // An order code that is not found, answered by the lookup.
    assert_eq!(
        s.scan("SO-NOPE"),
        vec![Effect::LookUpOrder("SO-NOPE".into())]
    );
    let e = s
        .packer
        .handle(NOW + 2, Input::OrderNotFound("SO-NOPE".into()));
    assert_eq!(refusals(&e), report(RefusalReason::NoTask));
    let o = order();
    let id = o.order_id.clone();
    s.scan(&id);
    s.feed(Input::Order(Box::new(as_stored(&o))));
    assert_eq!(
        refusals(&at(&mut s, NOW + 3, &drill())),
        report(RefusalReason::WrongItem)
    );
    // The next wrong item within the same second is counted, not reported yet.
    assert_eq!(refusals(&at(&mut s, NOW + 3, &drill())), []);
    assert!(s.packer.refusals().holding());
    assert_eq!(refusals(&s.packer.refusals().due::<Effect>(NOW + 3)), []);
    let due = refusals(&s.packer.refusals().due::<Effect>(NOW + 4));
    assert_eq!(due, report(RefusalReason::WrongItem));
    assert!(!s.packer.refusals().holding());
    at(&mut s, NOW + 5, &bolt());
    at(&mut s, NOW + 5, &bolt());
    let e = at(&mut s, NOW + 5, &bolt());
    assert_eq!(refusals(&e), report(RefusalReason::TooMany));
    // A GTIN with a wrong check digit.
    let e = at(&mut s, NOW + 5, "09506000134353");
    assert_eq!(refusals(&e), report(RefusalReason::BadBarcode));
    assert_eq!(s.packer.refusals().flush::<Effect>(), vec![]);
}

#[test]
fn a_weight_exactly_at_the_edge_of_the_tolerance_closes_without_a_recheck() {
    // Expected 200 g tare + 100 g, tolerance max(10 %, 30 g) = 30 g: 330 g is inside.
    let mut s = Station::new();
    s.start(order());
    s.scan(&bolt());
    s.key(Key::F(keys::CLOSE));
    s.type_number(330);
    assert_eq!(s.key(Key::Enter), [Effect::AllocateSscc]);
}

#[test]
fn on_the_recheck_screen_an_emptied_scale_or_a_key_code_beyond_nine_changes_nothing() {
    let mut s = Station::new();
    s.start(order());
    s.scan(&bolt());
    s.key(Key::F(keys::CLOSE));
    s.type_number(900);
    assert_eq!(beeps(&s.key(Key::Enter)), [Beep::Attention]);
    // The carton lifted off the scale (0 g) is not a new weight to check.
    assert_eq!(s.feed(Input::ScaleWeight(0)), []);
    // A terminal sending a digit key with a code beyond 9 types no weight.
    assert_eq!(s.key(Key::Digit(12)), []);
    // The recheck still stands: Enter confirms the 900 g.
    let e = s.key(Key::Enter);
    assert!(matches!(
        only_commit(&s.allocate(&e)),
        Commit::CartonClosed { weight_g: 900, .. }
    ));
}

#[test]
fn a_refused_scan_is_reported_right_after_its_error_beep_and_before_the_screen_that_follows() {
    let mut s = Station::new();
    assert_eq!(
        s.scan("SO-NOPE"),
        vec![Effect::LookUpOrder("SO-NOPE".into())]
    );
    let e = s.feed(Input::OrderNotFound("SO-NOPE".into()));
    assert_eq!(
        e,
        [
            message(Level::Error, "No open order or tote SO-NOPE"),
            Effect::Beep(Beep::Error),
            Effect::ScanRefused(report(RefusalReason::NoTask)[0]),
            scan_prompt(ScanTarget::Order, "Scan order or tote"),
        ]
    );
}

#[test]
fn the_own_badge_scanned_while_an_order_is_being_looked_up_does_not_log_out() {
    let mut s = Station::new();
    s.packer = Packer::new(s.packer.config.clone()).with_login("OP");
    s.scan("OP42");
    s.commit();
    let o = order();
    let id = o.order_id.clone();
    assert_eq!(s.scan(&id), vec![Effect::LookUpOrder(id)]);
    check_refused(&s.scan("OP42"), "Finish this order");
    assert_eq!(s.packer.operator(), Some(42));
    // The order the lookup finds is packed by the operator still logged in.
    let e = s.feed(Input::Order(Box::new(as_stored(&o))));
    assert_eq!(beeps(&e), [Beep::Ok]);
}

#[test]
fn on_the_weight_screen_enter_with_nothing_typed_or_a_key_code_beyond_nine_weighs_nothing() {
    let mut s = Station::new();
    s.start(order());
    s.scan(&bolt());
    s.key(Key::F(keys::CLOSE));
    check_refused(&s.key(Key::Enter), "Type the carton weight");
    assert_eq!(s.key(Key::Digit(12)), []);
    // Still nothing typed: the weight is typed as the packer means it.
    assert!(matches!(
        s.close_with_weight(300),
        Commit::CartonClosed { weight_g: 300, .. }
    ));
}

#[test]
fn back_from_the_lot_prompt_or_the_reason_menu_returns_to_packing_with_nothing_packed() {
    let mut s = Station::new();
    s.start(order());
    s.scan(&nut());
    let item_prompt = || scan_prompt(ScanTarget::Item, "Scan item");
    assert_eq!(s.key(Key::Back), [item_prompt()]);
    // The nut was not packed: scanned again, it asks for its lot again.
    assert_eq!(
        s.scan(&nut()),
        [
            Effect::Beep(Beep::Attention),
            scan_prompt(ScanTarget::Lot, "Scan lot")
        ]
    );
    s.key(Key::Back);
    s.key(Key::F(keys::SHORT));
    assert_eq!(s.key(Key::Back), [item_prompt()]);
    // Packing goes on: the bolt is taken.
    assert_eq!(beeps(&s.scan(&bolt())), [Beep::Ok]);
}

#[test]
fn a_cancellation_after_a_closed_carton_asks_to_set_every_carton_aside() {
    let mut s = Station::new();
    s.start(order());
    s.scan(&bolt());
    s.key(Key::F(keys::CLOSE));
    s.close_with_weight(300);
    s.commit();
    check_refused(
        &s.feed(Input::OrderCancelled("SO-10042".into())),
        "CANCELLED: set all 2 cartons aside",
    );
}

#[test]
fn every_recent_cancellation_is_remembered_not_only_the_last() {
    let mut s = Station::new();
    s.feed(Input::OrderCancelled("SO-10042".into()));
    s.feed(Input::OrderCancelled("SO-OTHER".into()));
    // A late lookup answer for the first cancelled order is refused.
    s.scan("SO-10042");
    check_refused(
        &s.feed(Input::Order(Box::new(as_stored(&order())))),
        "SO-10042 is cancelled",
    );
}

#[test]
fn a_printed_label_forgets_only_its_own_job_and_the_other_cartons_still_report() {
    let mut s = Station::new();
    s.start(order());
    s.scan(&bolt());
    s.key(Key::F(keys::CLOSE));
    let Commit::CartonClosed { sscc: first, .. } = s.close_with_weight(300) else {
        panic!()
    };
    let (first_job, _) = s.commit();
    s.scan(&bolt());
    s.key(Key::F(keys::CLOSE));
    let Commit::CartonClosed { sscc: second, .. } = s.close_with_weight(300) else {
        panic!()
    };
    let (second_job, _) = s.commit();
    let printed = |job_id, sscc| {
        [Effect::Commit(Commit::LabelPrinted {
            at: NOW,
            sscc,
            job_id,
        })]
    };
    let e = s.feed(Input::PrintReport {
        job_id: first_job,
        fault: None,
    });
    assert_eq!(e, printed(first_job, first));
    s.feed(Input::Committed { job_id: None });
    let e = s.feed(Input::PrintReport {
        job_id: second_job,
        fault: None,
    });
    assert_eq!(e, printed(second_job, second));
    s.feed(Input::Committed { job_id: None });
    // The first job's report again is no news: its job is done.
    assert_eq!(
        s.feed(Input::PrintReport {
            job_id: first_job,
            fault: None,
        }),
        []
    );
}

#[test]
fn at_the_last_carton_number_an_incomplete_order_closes_no_more_cartons_and_a_complete_one_does() {
    let mut s = Station::new();
    s.start(order());
    s.scan(&bolt());
    // As if 65,534 cartons of this order were closed already.
    s.packer.active.as_mut().unwrap().carton_no = u16::MAX;
    check_refused(
        &s.key(Key::F(keys::CLOSE)),
        "Too many cartons for one order",
    );
    s.scan(&bolt());
    s.scan(&nut());
    s.scan("LOT-9");
    s.key(Key::F(keys::CLOSE));
    assert!(matches!(
        s.close_with_weight(450),
        Commit::CartonClosed {
            carton_no: u16::MAX,
            order_complete: true,
            ..
        }
    ));
}
