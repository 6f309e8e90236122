//! The OMS side's store rules (`store::oms_store`), checked through the public `OmsStore`
//! trait on both backends: every rule is one function over a `Backend`, run as its own
//! test on a real SQLite file (`sqlite::...`), and all of them on a real PostgreSQL
//! cluster of the test's own, each rule in a database of its own
//! (`every_rule_holds_on_postgresql`). Mutation testing found these rules guarded only by
//! the end-to-end bridge tests (docs/dev/mutants.md).
//!
//! Where the backends differ on purpose, the rule says so: SQLite drops an event that
//! arrives after a gap (the agent sends it again), PostgreSQL holds it and stores it when
//! the gap fills (several bridges share a device's events); only PostgreSQL grants claims
//! to one bridge at a time.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};

use floorhand::store::oms_db::OmsDb;
use floorhand::store::oms_pg::PgStore;
use floorhand::store::oms_store::{
    DownLogRow, DownRange, DownRequest, DownRow, DownState, DownStream, OmsStore, Queued,
    StoreTotals, Stored, StoredEvent,
};
use floorhand_protocol::oms::{Down, Event, EventKind, RejectReason};

#[path = "support/postgres.rs"]
mod postgres;

const T0: u64 = 1_795_300_000;

/// Opens (or opens again) the store named by its argument, new and empty for each rule.
type Opener<'a> = Box<dyn Fn(&str) -> Box<dyn OmsStore> + 'a>;

/// A backend under test.
struct Backend<'a> {
    open: Opener<'a>,
    /// PostgreSQL: events after a gap are held, claims are exclusive.
    shared: bool,
}

impl Backend<'_> {
    fn open(&self, name: &str) -> Box<dyn OmsStore> {
        (self.open)(name)
    }
}

fn sqlite(dir: &std::path::Path) -> Backend<'_> {
    Backend {
        open: Box::new(move |name| Box::new(OmsDb::open(&dir.join(format!("{name}.db"))).unwrap())),
        shared: false,
    }
}

fn skipped(seq: u64) -> Event {
    Event {
        seq,
        at: T0 + seq,
        operator: 7,
        kind: EventKind::Skipped { task_id: seq },
    }
}

/// An event with text, a number and an optional field, to read back whole.
fn closed(seq: u64) -> Event {
    Event {
        seq,
        at: T0 + seq,
        operator: 12,
        kind: EventKind::CartonClosed {
            order_id: "ORD-\"7\"".into(),
            carton_no: 2,
            sscc: "003456789012345675".into(),
            weight_g: 1250,
            short_ship: Some("damaged".into()),
        },
    }
}

fn rejected(seq: u64, dseq: u64, detail: &str) -> Event {
    Event {
        seq,
        at: T0 + seq,
        operator: 0,
        kind: EventKind::Rejected {
            msg_id: dseq,
            reason: RejectReason::Invalid,
            detail: detail.into(),
        },
    }
}

fn row(site: &str, device: &str, inc: u64, event: Event) -> (String, String, u64, Event) {
    (site.into(), device.into(), inc, event)
}

fn cancel(order: &str) -> Down {
    Down::OrderCancelled {
        order_id: order.into(),
    }
}

/// Stores one event of `s1/d1` and checks the answer's ack point is the stored one.
fn store_one(db: &mut dyn OmsStore, inc: u64, event: Event) -> Stored {
    let got = db
        .store_events(&[row("s1", "d1", inc, event)], T0)
        .unwrap()
        .remove(0);
    let through = db.through("s1", "d1", inc).unwrap();
    match got {
        Stored::New { through: t, .. } | Stored::Duplicate { through: t } => {
            assert_eq!(Some(t), through, "the answer's ack point is the stored one")
        }
        Stored::Ahead { through: t } | Stored::Held { through: t } => {
            assert_eq!(t, through, "the answer's ack point is the stored one")
        }
    }
    got
}

/// A down stream: its incarnation, ack point and highest number.
fn stream(stream: u64, acked: u64, high: u64) -> DownStream {
    DownStream {
        stream,
        acked,
        high,
    }
}

fn seqs(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|e| e.event.seq).collect()
}

fn cursors(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|e| e.cursor).collect()
}

/// Dropped (SQLite) or held (PostgreSQL) behind a gap, with this ack point.
fn behind_a_gap(got: &Stored, through: Option<u64>) -> bool {
    matches!(got, Stored::Ahead { through: t } | Stored::Held { through: t } if *t == through)
}

fn an_event_is_stored_once_per_site_device_incarnation_and_seq(b: &Backend) {
    let mut db = b.open("a");
    let got = db
        .store_events(
            &[
                row("s1", "d1", 5, closed(1)),
                row("s1", "d1", 5, skipped(2)),
                row("s1", "d1", 5, skipped(2)),
                row("s1", "d1", 6, skipped(1)),
                row("s1", "d2", 5, skipped(1)),
                row("s2", "d1", 5, skipped(1)),
            ],
            T0,
        )
        .unwrap();
    assert_eq!(
        got,
        [
            Stored::New {
                cursor: 1,
                through: 1
            },
            Stored::New {
                cursor: 2,
                through: 2
            },
            Stored::Duplicate { through: 2 },
            Stored::New {
                cursor: 3,
                through: 1
            },
            Stored::New {
                cursor: 4,
                through: 1
            },
            Stored::New {
                cursor: 5,
                through: 1
            },
        ]
    );
    assert_eq!(
        store_one(&mut *db, 5, closed(1)),
        Stored::Duplicate { through: 2 }
    );
    let all = db.events_after(0, 100).unwrap();
    let key = |e: &StoredEvent| (e.cursor, e.site.clone(), e.device.clone(), e.incarnation);
    assert_eq!(
        all.iter().map(key).collect::<Vec<_>>(),
        [
            (1, "s1".into(), "d1".into(), 5),
            (2, "s1".into(), "d1".into(), 5),
            (3, "s1".into(), "d1".into(), 6),
            (4, "s1".into(), "d2".into(), 5),
            (5, "s2".into(), "d1".into(), 5),
        ]
    );
    assert_eq!(all[0].event, closed(1), "the event is read back whole");
    assert_eq!(all[1].event, skipped(2));
    assert_eq!(db.through("s1", "d1", 5).unwrap(), Some(2));
    assert_eq!(db.through("s1", "d1", 7).unwrap(), None);
    assert_eq!(db.totals().unwrap().events, 5);
}

fn events_after_pages_in_cursor_order_from_any_cursor(b: &Backend) {
    let mut db = b.open("a");
    for seq in 1..=3 {
        db.store_events(
            &[
                row("s1", "d1", 5, skipped(seq)),
                row("s1", "d2", 9, skipped(seq)),
            ],
            T0,
        )
        .unwrap();
    }
    let page = |after, limit| cursors(&db.events_after(after, limit).unwrap());
    assert_eq!(page(0, 2), [1, 2]);
    assert_eq!(page(2, 3), [3, 4, 5]);
    assert_eq!(page(5, 10), [6]);
    assert!(page(6, 10).is_empty());
    assert!(page(0, 0).is_empty());
    let d2: Vec<_> = db
        .events_after(0, 10)
        .unwrap()
        .into_iter()
        .filter(|e| e.device == "d2")
        .collect();
    assert_eq!(seqs(&d2), [1, 2, 3], "each stream in seq order");
}

fn the_ack_point_never_passes_a_gap_and_each_event_is_stored_once_when_it_fills(b: &Backend) {
    let mut db = b.open("a");
    db.set_incarnation("s1", "d1", 5, None, T0).unwrap();
    // Every cursor a consumer is told of: the answers, and what a filled gap promoted.
    let mut told = Vec::new();
    fn tell(told: &mut Vec<u64>, db: &mut dyn OmsStore, got: &Stored) {
        if let Stored::New { cursor, .. } = got {
            told.push(*cursor);
        }
        told.extend(cursors(&db.take_promoted()));
    }
    let got = store_one(&mut *db, 5, skipped(1));
    tell(&mut told, &mut *db, &got);
    for seq in [3, 4] {
        let got = store_one(&mut *db, 5, skipped(seq));
        assert!(behind_a_gap(&got, Some(1)), "seq {seq}: {got:?}");
        tell(&mut told, &mut *db, &got);
    }
    assert_eq!(
        db.through("s1", "d1", 5).unwrap(),
        Some(1),
        "no ack past the gap"
    );
    assert_eq!(db.devices().unwrap()[0].high_seen, 4, "seen, not stored");
    let got = store_one(&mut *db, 5, skipped(2));
    // PostgreSQL stores what it held as soon as the gap fills; SQLite dropped it.
    let through = if b.shared { 4 } else { 2 };
    assert_eq!(got, Stored::New { cursor: 2, through });
    let promoted = db.take_promoted();
    assert_eq!(seqs(&promoted), if b.shared { vec![3, 4] } else { vec![] });
    told.extend(cursors(&promoted));
    tell(&mut told, &mut *db, &got);
    // The agent sends what was not acknowledged again.
    for seq in [3, 4] {
        let got = store_one(&mut *db, 5, skipped(seq));
        assert!(
            matches!(got, Stored::New { .. } | Stored::Duplicate { through: 4 }),
            "seq {seq}: {got:?}"
        );
        tell(&mut told, &mut *db, &got);
    }
    let all = db.events_after(0, 100).unwrap();
    assert_eq!(seqs(&all), [1, 2, 3, 4], "each once, in order");
    told.sort_unstable();
    assert_eq!(told, cursors(&all), "every stored event told once");
    assert_eq!(db.through("s1", "d1", 5).unwrap(), Some(4));
}

fn a_stream_unknown_here_starts_at_the_floor_its_birth_tells(b: &Backend) {
    let mut db = b.open("a");
    db.set_incarnation("s1", "d1", 5, None, T0).unwrap();
    let got = store_one(&mut *db, 5, skipped(5));
    assert!(behind_a_gap(&got, None), "{got:?}");
    assert_eq!(db.through("s1", "d1", 5).unwrap(), None);
    // Events 1..=4 were acknowledged by another consumer: no alarm for a stream new here.
    assert_eq!(db.birth_floor("s1", "d1", 5, (4, 6), T0).unwrap(), None);
    let promoted = seqs(&db.take_promoted());
    let got = store_one(&mut *db, 5, skipped(5));
    if b.shared {
        assert_eq!(promoted, [5], "the held event is stored at the floor");
        assert_eq!(got, Stored::Duplicate { through: 5 });
    } else {
        assert!(promoted.is_empty());
        assert!(matches!(got, Stored::New { through: 5, .. }), "{got:?}");
    }
    assert!(matches!(
        store_one(&mut *db, 5, skipped(6)),
        Stored::New { through: 6, .. }
    ));
    assert_eq!(seqs(&db.events_after(0, 10).unwrap()), [5, 6]);
    assert_eq!(db.devices().unwrap()[0].high_seen, 6);
}

fn a_birth_floor_at_or_behind_the_ack_point_changes_nothing_and_one_ahead_raises_an_alarm(
    b: &Backend,
) {
    let mut db = b.open("a");
    db.set_incarnation("s1", "d1", 5, None, T0).unwrap();
    db.store_events(&[1, 2, 3].map(|s| row("s1", "d1", 5, skipped(s))), T0)
        .unwrap();
    assert_eq!(db.birth_floor("s1", "d1", 5, (3, 3), T0).unwrap(), None);
    assert_eq!(db.birth_floor("s1", "d1", 5, (1, 3), T0).unwrap(), None);
    assert_eq!(
        db.through("s1", "d1", 5).unwrap(),
        Some(3),
        "never moves back"
    );
    assert_eq!(
        db.birth_floor("s1", "d1", 5, (7, 9), T0)
            .unwrap()
            .as_deref(),
        Some(
            "events 4..=7 of incarnation 0000000000000005 were acknowledged by another \
             consumer and are not in this store"
        )
    );
    assert_eq!(db.through("s1", "d1", 5).unwrap(), Some(7));
    assert!(matches!(
        store_one(&mut *db, 5, skipped(8)),
        Stored::New { through: 8, .. }
    ));
    let d = &db.devices().unwrap()[0];
    assert_eq!((d.through, d.high_seen), (8, 9));
}

fn messages_queued_before_a_device_is_known_go_to_its_first_incarnation(b: &Backend) {
    let mut db = b.open("a");
    let nos = db
        .queue_downs("s1", "d1", &[cancel("A"), cancel("B")], T0)
        .unwrap();
    assert_eq!(nos, [1, 2]);
    assert_eq!(db.device_incarnation("s1", "d1").unwrap(), 0);
    assert_eq!(db.down_stream("s1", "d1").unwrap(), stream(0, 0, 2));
    assert!(
        db.set_incarnation("s1", "d1", 5, None, T0)
            .unwrap()
            .is_empty()
    );
    assert_eq!(db.device_incarnation("s1", "d1").unwrap(), 5);
    assert_eq!(db.down_stream("s1", "d1").unwrap(), stream(5, 0, 2));
    assert_eq!(db.queue_down("s1", "d1", &cancel("C"), T0).unwrap(), 3);
    assert_eq!(
        db.down_range("s1", "d1", 5, 1, 3).unwrap(),
        [
            DownRow {
                msg_no: 1,
                stream: 5,
                dseq: 1,
                body: cancel("A")
            },
            DownRow {
                msg_no: 2,
                stream: 5,
                dseq: 2,
                body: cancel("B")
            },
            DownRow {
                msg_no: 3,
                stream: 5,
                dseq: 3,
                body: cancel("C")
            },
        ]
    );
    assert!(db.alarms().unwrap().is_empty());
}

fn down_messages_are_numbered_contiguously_per_device_and_stream(b: &Backend) {
    let mut db = b.open("a");
    db.set_incarnation("s1", "d1", 5, None, T0).unwrap();
    db.set_incarnation("s1", "d2", 6, None, T0).unwrap();
    let abc = [cancel("A"), cancel("B"), cancel("C")];
    assert_eq!(db.queue_downs("s1", "d1", &abc, T0).unwrap(), [1, 2, 3]);
    assert_eq!(db.queue_down("s1", "d2", &cancel("X"), T0).unwrap(), 1);
    assert_eq!(db.queue_down("s1", "d1", &cancel("D"), T0).unwrap(), 4);
    assert!(db.queue_downs("s1", "d1", &[], T0).unwrap().is_empty());
    let of = |db: &dyn OmsStore, d| db.down_stream("s1", d).unwrap();
    assert_eq!(of(&*db, "d1"), stream(5, 0, 4));
    assert_eq!(of(&*db, "d2"), stream(6, 0, 1));
    let range = db.down_range("s1", "d1", 5, 2, 3).unwrap();
    assert_eq!(
        range.iter().map(|r| (r.msg_no, r.dseq)).collect::<Vec<_>>(),
        [(2, 2), (3, 3)]
    );
    assert_eq!(range[1].body, cancel("C"));
    assert!(db.down_range("s1", "d1", 6, 1, 4).unwrap().is_empty());
    assert_eq!(
        db.down_range("s1", "d2", 6, 1, 9).unwrap()[0].body,
        cancel("X")
    );
}

fn down_states_go_from_queued_to_sent_to_applied_or_rejected(b: &Backend) {
    let mut db = b.open("a");
    db.set_incarnation("s1", "d1", 5, None, T0).unwrap();
    let four = [cancel("A"), cancel("B"), cancel("C"), cancel("D")];
    db.queue_downs("s1", "d1", &four, T0).unwrap();
    let state = |db: &dyn OmsStore, no| db.down_state("s1", "d1", no).unwrap();
    assert_eq!(state(&*db, 1), Some(DownState::Queued));
    assert_eq!(state(&*db, 5), None);
    assert_eq!(db.down_state("s1", "d9", 1).unwrap(), None);
    db.down_range("s1", "d1", 5, 1, 2).unwrap();
    assert_eq!(state(&*db, 2), Some(DownState::Sent));
    assert_eq!(state(&*db, 3), Some(DownState::Queued));
    // The agent refused dseq 2 (a Rejected event of the stream it was addressed to); a
    // Rejected of another incarnation names another stream's message.
    db.store_events(
        &[
            row("s1", "d1", 5, rejected(1, 2, "wave 9 unknown")),
            row("s1", "d1", 4, rejected(1, 1, "old stream")),
        ],
        T0,
    )
    .unwrap();
    let refused = Some(DownState::Rejected {
        detail: "wave 9 unknown".into(),
    });
    assert_eq!(state(&*db, 2), refused);
    assert_eq!(state(&*db, 1), Some(DownState::Sent));
    assert_eq!(
        db.down_acked("s1", "d1", 5, 3).unwrap(),
        2,
        "1 and 3, not 2"
    );
    assert_eq!(state(&*db, 1), Some(DownState::Applied));
    assert_eq!(state(&*db, 3), Some(DownState::Applied));
    assert_eq!(state(&*db, 2), refused, "a refusal stays one");
    // A refusal whose event arrives after the ack that covers it.
    assert_eq!(db.down_acked("s1", "d1", 5, 4).unwrap(), 1);
    db.store_events(&[row("s1", "d1", 5, rejected(2, 4, "late"))], T0)
        .unwrap();
    assert_eq!(
        state(&*db, 4),
        Some(DownState::Rejected {
            detail: "late".into()
        })
    );
}

fn ranges_of_several_devices_are_read_in_order_and_marked_sent_together(b: &Backend) {
    let mut db = b.open("a");
    for (d, inc) in [("d1", 5), ("d2", 6)] {
        db.set_incarnation("s1", d, inc, None, T0).unwrap();
        db.queue_downs("s1", d, &[cancel("A"), cancel("B"), cancel("C")], T0)
            .unwrap();
    }
    let got = db
        .down_ranges(&[
            DownRange {
                site: "s1",
                device: "d2",
                stream: 6,
                from: 2,
                to: 3,
            },
            DownRange {
                site: "s1",
                device: "d1",
                stream: 5,
                from: 1,
                to: 1,
            },
            // Another device's stream number: nothing.
            DownRange {
                site: "s1",
                device: "d1",
                stream: 6,
                from: 1,
                to: 3,
            },
        ])
        .unwrap();
    let dseqs: Vec<Vec<(u64, u64)>> = got
        .iter()
        .map(|rows| rows.iter().map(|r| (r.stream, r.dseq)).collect())
        .collect();
    assert_eq!(dseqs, vec![vec![(6, 2), (6, 3)], vec![(5, 1)], vec![]]);
    assert_eq!(got[0][1].body, cancel("C"));
    let state = |d: &str, no| db.down_state("s1", d, no).unwrap();
    assert_eq!(state("d2", 1), Some(DownState::Queued));
    assert_eq!(state("d2", 3), Some(DownState::Sent));
    assert_eq!(state("d1", 1), Some(DownState::Sent));
    assert_eq!(state("d1", 2), Some(DownState::Queued));
}

fn a_down_ack_counts_what_it_releases_and_the_ack_point_is_below_the_first_unacknowledged(
    b: &Backend,
) {
    let mut db = b.open("a");
    db.set_incarnation("s1", "d1", 5, None, T0).unwrap();
    let four = [cancel("A"), cancel("B"), cancel("C"), cancel("D")];
    db.queue_downs("s1", "d1", &four, T0).unwrap();
    db.down_range("s1", "d1", 5, 1, 4).unwrap();
    let acked = |db: &dyn OmsStore| db.down_stream("s1", "d1").unwrap().acked;
    assert_eq!(db.down_acked("s1", "d1", 5, 0).unwrap(), 0);
    // A refusal ahead of the ack point acknowledges nothing before it.
    db.store_events(&[row("s1", "d1", 5, rejected(1, 3, "no"))], T0)
        .unwrap();
    assert_eq!(acked(&*db), 0);
    assert_eq!(db.down_acked("s1", "d1", 5, 2).unwrap(), 2);
    assert_eq!(acked(&*db), 3, "1, 2 applied and 3 refused");
    assert_eq!(
        db.down_acked("s1", "d1", 5, 2).unwrap(),
        0,
        "a repeated ack"
    );
    assert_eq!(
        db.down_acked("s1", "d1", 6, 4).unwrap(),
        0,
        "another stream"
    );
    assert_eq!(
        db.down_acked("s1", "d2", 5, 4).unwrap(),
        0,
        "another device"
    );
    assert_eq!(
        db.devices_with_pending_down().unwrap(),
        [("s1".into(), "d1".into())]
    );
    assert_eq!(db.down_acked("s1", "d1", 5, 4).unwrap(), 1);
    assert_eq!(db.down_stream("s1", "d1").unwrap(), stream(5, 4, 4));
    assert_eq!(db.totals().unwrap().down_pending, 0);
    assert!(db.devices_with_pending_down().unwrap().is_empty());
}

const LOST_5: &str =
    "device replaced: events 4..=7 of incarnation 0000000000000005 never arrived and are gone";
const READDRESSED_2_TO_6: &str = "device replaced: 2 unapplied down messages re-addressed to \
     incarnation 0000000000000006; messages it had applied are not on the new database, \
     resend the device's open work";

fn a_new_incarnation_readdresses_unapplied_messages_from_1_and_names_the_events_lost(b: &Backend) {
    let mut db = b.open("a");
    db.set_incarnation("s1", "d1", 5, None, T0).unwrap();
    db.store_events(&[1, 2, 3, 5].map(|s| row("s1", "d1", 5, skipped(s))), T0)
        .unwrap();
    let four = [cancel("A"), cancel("B"), cancel("C"), cancel("D")];
    db.queue_downs("s1", "d1", &four, T0).unwrap();
    db.down_range("s1", "d1", 5, 1, 4).unwrap();
    db.down_acked("s1", "d1", 5, 2).unwrap();
    // The device's database was replaced; its last birth said it had written seq 7.
    let alarms = db.set_incarnation("s1", "d1", 6, Some(7), T0 + 1).unwrap();
    assert_eq!(alarms, [LOST_5, READDRESSED_2_TO_6]);
    let listed: Vec<_> = db.alarms().unwrap().into_iter().map(|a| a.2).collect();
    assert_eq!(listed, alarms, "raised and recorded");
    assert_eq!(db.device_incarnation("s1", "d1").unwrap(), 6);
    let state = |db: &dyn OmsStore, no| db.down_state("s1", "d1", no).unwrap();
    assert_eq!(state(&*db, 3), Some(DownState::Queued), "to be sent again");
    assert_eq!(state(&*db, 1), Some(DownState::Applied));
    assert_eq!(db.down_stream("s1", "d1").unwrap(), stream(6, 0, 2));
    let moved = db.down_range("s1", "d1", 6, 1, 9).unwrap();
    assert_eq!(
        moved
            .iter()
            .map(|r| (r.msg_no, r.stream, r.dseq))
            .collect::<Vec<_>>(),
        [(3, 6, 1), (4, 6, 2)]
    );
    assert_eq!(moved[1].body, cancel("D"));
    assert_eq!(db.queue_down("s1", "d1", &cancel("E"), T0).unwrap(), 5);
    assert_eq!(db.down_stream("s1", "d1").unwrap().high, 3);
    // The same incarnation again, and a late copy from the replaced database: nothing.
    assert!(
        db.set_incarnation("s1", "d1", 6, Some(9), T0)
            .unwrap()
            .is_empty()
    );
    assert!(
        db.set_incarnation("s1", "d1", 5, Some(9), T0)
            .unwrap()
            .is_empty()
    );
    assert_eq!(db.device_incarnation("s1", "d1").unwrap(), 6);
    assert_eq!(db.down_stream("s1", "d1").unwrap().high, 3);
    assert_eq!(db.alarms().unwrap().len(), 2);
}

fn a_new_incarnation_with_nothing_lost_or_waiting_raises_no_alarm(b: &Backend) {
    let mut db = b.open("a");
    db.set_incarnation("s1", "d1", 5, None, T0).unwrap();
    db.store_events(&[1, 2].map(|s| row("s1", "d1", 5, skipped(s))), T0)
        .unwrap();
    db.queue_down("s1", "d1", &cancel("A"), T0).unwrap();
    db.down_acked("s1", "d1", 5, 1).unwrap();
    assert!(
        db.set_incarnation("s1", "d1", 6, Some(2), T0)
            .unwrap()
            .is_empty()
    );
    assert_eq!(db.device_incarnation("s1", "d1").unwrap(), 6);
    // An old incarnation this store never had events of: what its birth said is lost.
    db.set_incarnation("s1", "d2", 8, None, T0).unwrap();
    assert_eq!(
        db.set_incarnation("s1", "d2", 9, Some(3), T0).unwrap(),
        [
            "device replaced: events 1..=3 of incarnation 0000000000000008 never arrived and \
          are gone"
        ]
    );
    assert_eq!(db.alarms().unwrap().len(), 1);
}

fn a_device_first_heard_through_its_will_takes_the_incarnation_it_speaks_from(b: &Backend) {
    let mut db = b.open("a");
    db.presence("s1", "d1", Some((false, 1)), None, None, T0)
        .unwrap();
    assert_eq!(db.queue_down("s1", "d1", &cancel("A"), T0).unwrap(), 1);
    db.store_events(&[row("s1", "d1", 5, skipped(1))], T0)
        .unwrap();
    assert!(
        db.set_incarnation("s1", "d1", 5, None, T0)
            .unwrap()
            .is_empty()
    );
    assert_eq!(db.device_incarnation("s1", "d1").unwrap(), 5);
    assert_eq!(db.down_stream("s1", "d1").unwrap(), stream(5, 0, 1));
}

fn a_retried_key_gets_the_first_number_and_queues_nothing_more(b: &Backend) {
    let mut db = b.open("a");
    db.set_incarnation("s1", "d1", 5, None, T0).unwrap();
    let mut q = |key, order| {
        db.queue_down_keyed("s1", "d1", &cancel(order), key, T0)
            .unwrap()
    };
    assert_eq!(q(Some("k1"), "A"), Queued::New(1));
    assert_eq!(q(Some("k1"), "A"), Queued::Again(1));
    assert_eq!(q(Some("k1"), "B"), Queued::KeyReused(1));
    assert_eq!(q(None, "A"), Queued::New(2));
    assert_eq!(q(Some("k2"), "A"), Queued::New(3));
    // The same key for another device is another key.
    db.set_incarnation("s1", "d2", 6, None, T0).unwrap();
    assert_eq!(
        db.queue_down_keyed("s1", "d2", &cancel("A"), Some("k1"), T0)
            .unwrap(),
        Queued::New(1)
    );
    assert_eq!(db.down_stream("s1", "d1").unwrap().high, 3);
    assert_eq!(
        db.down_range("s1", "d1", 5, 1, 1).unwrap()[0].body,
        cancel("A")
    );
    assert_eq!(db.totals().unwrap().down_pending, 4);
}

fn a_group_of_requests_commits_together_and_sees_its_own_keys(b: &Backend) {
    let mut db = b.open("a");
    db.set_incarnation("s1", "d1", 5, None, T0).unwrap();
    let (a, c) = (cancel("A"), cancel("C"));
    let req = |device, body, key| DownRequest {
        site: "s1",
        device,
        body,
        key,
    };
    let got = db
        .queue_down_many(
            &[
                req("d1", &a, Some("k")),
                req("d9", &a, None),
                req("d1", &a, Some("k")),
                req("d1", &c, Some("k")),
                req("d1", &c, None),
            ],
            T0,
        )
        .unwrap();
    assert_eq!(
        got,
        [
            Queued::New(1),
            Queued::UnknownDevice,
            Queued::Again(1),
            Queued::KeyReused(1),
            Queued::New(2)
        ]
    );
    assert_eq!(db.down_stream("s1", "d1").unwrap().high, 2);
    assert_eq!(db.down_range("s1", "d1", 5, 2, 2).unwrap()[0].body, c);
    assert!(db.queue_down_many(&[], T0).unwrap().is_empty());
}

fn a_device_never_heard_from_gets_nothing_queued_and_its_key_is_not_spent(b: &Backend) {
    let mut db = b.open("a");
    db.set_incarnation("s1", "d1", 5, None, T0).unwrap();
    assert_eq!(
        db.queue_down_keyed("s2", "d1", &cancel("A"), Some("k"), T0)
            .unwrap(),
        Queued::UnknownDevice
    );
    assert_eq!(db.totals().unwrap().down_pending, 0);
    assert_eq!(
        db.queue_down_keyed("s1", "d1", &cancel("A"), Some("k"), T0)
            .unwrap(),
        Queued::New(1)
    );
}

fn the_down_log_pages_in_queue_order_across_devices_from_a_key(b: &Backend) {
    let mut db = b.open("a");
    db.set_incarnation("s1", "d1", 5, None, T0).unwrap();
    db.set_incarnation("s1", "d2", 6, None, T0).unwrap();
    // Two devices, the same second, then a later one.
    db.queue_down("s1", "d2", &cancel("A"), 200).unwrap();
    db.queue_downs("s1", "d1", &[cancel("B"), cancel("C")], 200)
        .unwrap();
    db.queue_down("s1", "d1", &cancel("D"), 300).unwrap();
    let order = |rows: &[DownLogRow]| -> Vec<(String, String, u64, u64)> {
        rows.iter()
            .map(|r| (r.site.clone(), r.device.clone(), r.msg_no, r.created))
            .collect()
    };
    let page = db.down_log_after((0, "", "", 0), 2).unwrap();
    assert_eq!(
        order(&page),
        [
            ("s1".into(), "d1".into(), 1, 200),
            ("s1".into(), "d1".into(), 2, 200)
        ]
    );
    assert_eq!(page[1].body, cancel("C"));
    let last = &page[1];
    let next = db
        .down_log_after((last.created, &last.site, &last.device, last.msg_no), 10)
        .unwrap();
    assert_eq!(
        order(&next),
        [
            ("s1".into(), "d2".into(), 1, 200),
            ("s1".into(), "d1".into(), 3, 300)
        ]
    );
    assert_eq!(next[0].body, cancel("A"));
    assert!(
        db.down_log_after((300, "s1", "d1", 3), 10)
            .unwrap()
            .is_empty()
    );
}

fn devices_show_presence_backlog_storage_alarm_and_unacknowledged_down_messages(b: &Backend) {
    let mut db = b.open("a");
    db.set_incarnation("s1", "d1", 5, None, 100).unwrap();
    db.presence("s1", "d1", Some((true, 3)), Some("{\"b\":1}"), None, 200)
        .unwrap();
    let storage = Event {
        seq: 2,
        at: T0,
        operator: 0,
        kind: EventKind::StorageAlarm { pct: 85 },
    };
    let stored = db
        .store_events(
            &[
                row("s1", "d1", 5, skipped(1)),
                row("s1", "d1", 5, storage),
                row("s1", "d1", 5, skipped(4)),
            ],
            201,
        )
        .unwrap();
    assert!(behind_a_gap(&stored[2], Some(2)), "{:?}", stored[2]);
    db.queue_down("s1", "d1", &cancel("A"), 202).unwrap();
    db.presence("s1", "d1", None, None, Some("{\"backlog\":1}"), 203)
        .unwrap();
    // A late will of an older session changes nothing.
    db.presence("s1", "d1", Some((false, 2)), None, None, 204)
        .unwrap();
    let d = &db.devices().unwrap()[0];
    assert_eq!((d.site.as_str(), d.device.as_str()), ("s1", "d1"));
    assert!(d.online);
    assert_eq!((d.incarnation, d.session, d.last_seen), (5, 3, 204));
    assert_eq!((d.through, d.high_seen, d.down_unacked), (2, 4, 1));
    assert_eq!((d.birth_at, d.status_at, d.death_at), (200, 203, 0));
    assert_eq!(d.birth.as_deref(), Some("{\"b\":1}"));
    assert_eq!(d.status.as_deref(), Some("{\"backlog\":1}"));
    assert_eq!(d.storage_alarm_pct, Some(85));
    db.presence("s1", "d1", Some((false, 3)), None, None, 205)
        .unwrap();
    let d = &db.devices().unwrap()[0];
    assert!(!d.online);
    assert_eq!(d.death_at, 205);
    db.presence("s0", "d7", None, None, None, 206).unwrap();
    let ids: Vec<_> = db
        .devices()
        .unwrap()
        .into_iter()
        .map(|d| (d.site, d.device, d.incarnation, d.storage_alarm_pct))
        .collect();
    assert_eq!(
        ids,
        [
            ("s0".into(), "d7".into(), 0, None),
            ("s1".into(), "d1".into(), 5, Some(85))
        ],
        "by site and id"
    );
}

fn totals_count_events_pending_messages_devices_and_alarms(b: &Backend) {
    let mut db = b.open("a");
    assert_eq!(db.totals().unwrap(), StoreTotals::default());
    db.set_incarnation("s1", "d1", 5, None, T0).unwrap();
    db.set_incarnation("s1", "d2", 6, None, T0).unwrap();
    db.presence("s1", "d1", Some((true, 1)), None, None, T0)
        .unwrap();
    db.store_events(&[1, 2, 3].map(|s| row("s1", "d1", 5, skipped(s))), T0)
        .unwrap();
    db.queue_downs("s1", "d1", &[cancel("A"), cancel("B"), cancel("C")], T0)
        .unwrap();
    db.queue_down("s1", "d2", &cancel("X"), T0).unwrap();
    db.down_range("s1", "d1", 5, 1, 1).unwrap();
    db.down_acked("s1", "d2", 6, 1).unwrap();
    db.alarm("s1", "d1", "one", T0).unwrap();
    db.alarm("s1", "d2", "two", T0).unwrap();
    assert_eq!(
        db.totals().unwrap(),
        StoreTotals {
            events: 3,
            down_pending: 3,
            devices_online: 1,
            devices: 2,
            alarms: 2
        }
    );
}

fn alarms_are_listed_oldest_first_with_site_device_and_detail(b: &Backend) {
    let mut db = b.open("a");
    assert!(db.alarms().unwrap().is_empty());
    db.alarm("s2", "d9", "first", T0 + 5).unwrap();
    db.alarm("s1", "d1", "second", T0).unwrap();
    assert_eq!(
        db.alarms().unwrap(),
        [
            ("s2".into(), "d9".into(), "first".into()),
            ("s1".into(), "d1".into(), "second".into())
        ]
    );
}

fn devices_with_pending_down_names_exactly_the_devices_waiting(b: &Backend) {
    let mut db = b.open("a");
    for (site, device) in [("s1", "d1"), ("s1", "d2"), ("s2", "d1"), ("s2", "d3")] {
        db.set_incarnation(site, device, 5, None, T0).unwrap();
    }
    db.queue_downs("s1", "d1", &[cancel("A"), cancel("B")], T0)
        .unwrap();
    db.queue_down("s1", "d2", &cancel("A"), T0).unwrap();
    db.queue_down("s2", "d1", &cancel("A"), T0).unwrap();
    db.down_range("s2", "d1", 5, 1, 1).unwrap();
    db.down_acked("s1", "d2", 5, 1).unwrap();
    let mut pending = db.devices_with_pending_down().unwrap();
    pending.sort();
    assert_eq!(
        pending,
        [("s1".into(), "d1".into()), ("s2".into(), "d1".into())]
    );
}

fn a_store_keeps_its_incarnation_and_rows_when_opened_again_and_another_has_its_own(b: &Backend) {
    let mut db = b.open("a");
    let inc = db.incarnation();
    assert_ne!(inc, 0);
    db.set_incarnation("s1", "d1", 5, None, T0).unwrap();
    db.store_events(&[row("s1", "d1", 5, skipped(1))], T0)
        .unwrap();
    db.queue_down("s1", "d1", &cancel("A"), T0).unwrap();
    drop(db);
    let db = b.open("a");
    assert_eq!(db.incarnation(), inc);
    assert_eq!(db.events_after(0, 10).unwrap().len(), 1);
    assert_eq!(db.down_stream("s1", "d1").unwrap().high, 1);
    assert_ne!(b.open("b").incarnation(), inc, "each store its own");
}

fn claims_go_to_one_bridge_at_a_time_and_lapse_unless_renewed(b: &Backend) {
    let mut db = b.open("a");
    let dev = |d: &str| ("s1".to_string(), d.to_string());
    let mine = db.claim("A", &[dev("d1"), dev("d2")], 60_000).unwrap();
    assert_eq!(mine, [dev("d1"), dev("d2")]);
    let theirs = db.claim("B", &[dev("d1"), dev("d3")], 60_000).unwrap();
    if !b.shared {
        // One bridge per SQLite file: every claim is granted.
        assert_eq!(theirs, [dev("d1"), dev("d3")]);
        return;
    }
    assert_eq!(theirs, [dev("d3")], "d1 is A's");
    assert_eq!(db.claim("A", &[dev("d1")], 60_000).unwrap(), [dev("d1")]);
    // A claim not renewed lapses: another bridge takes the device over.
    assert_eq!(db.claim("A", &[dev("d4")], 0).unwrap(), [dev("d4")]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(db.claim("B", &[dev("d4")], 60_000).unwrap(), [dev("d4")]);
    assert!(db.claim("A", &[dev("d4")], 60_000).unwrap().is_empty());
}

fn two_handles_queueing_to_one_device_at_once_never_share_a_number(b: &Backend) {
    let mut db = b.open("a");
    db.set_incarnation("s1", "d1", 5, None, T0).unwrap();
    // Two bridges on one store, each with its own connection.
    let handles = [b.open("a"), b.open("a")];
    std::thread::scope(|s| {
        for (h, mut handle) in handles.into_iter().enumerate() {
            s.spawn(move || {
                for i in 0..40 {
                    let order = format!("{h}-{i}");
                    handle.queue_down("s1", "d1", &cancel(&order), T0).unwrap();
                }
            });
        }
    });
    let rows = db.down_range("s1", "d1", 5, 1, 1000).unwrap();
    let numbers: Vec<_> = rows.iter().map(|r| (r.msg_no, r.dseq)).collect();
    assert_eq!(numbers, (1..=80).map(|n| (n, n)).collect::<Vec<_>>());
}

fn a_store_is_used_and_dropped_on_an_async_runtimes_worker(b: &Backend) {
    // The bridge calls the store inline on its async tasks and drops it there.
    let db = b.open("a");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        tokio::spawn(async move {
            let mut db = db;
            db.set_incarnation("s1", "d1", 5, None, T0).unwrap();
            assert_eq!(db.queue_down("s1", "d1", &cancel("A"), T0).unwrap(), 1);
            drop(db);
        })
        .await
        .unwrap();
    });
}

/// Each rule as a test on SQLite, and the list of them for PostgreSQL.
macro_rules! rules {
    ($($rule:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[test]
                fn $rule() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$rule(&super::sqlite(dir.path()));
                }
            )*
        }

        const RULES: &[(&str, fn(&Backend))] = &[$((stringify!($rule), $rule)),*];
    };
}

rules!(
    an_event_is_stored_once_per_site_device_incarnation_and_seq,
    events_after_pages_in_cursor_order_from_any_cursor,
    the_ack_point_never_passes_a_gap_and_each_event_is_stored_once_when_it_fills,
    a_stream_unknown_here_starts_at_the_floor_its_birth_tells,
    a_birth_floor_at_or_behind_the_ack_point_changes_nothing_and_one_ahead_raises_an_alarm,
    messages_queued_before_a_device_is_known_go_to_its_first_incarnation,
    down_messages_are_numbered_contiguously_per_device_and_stream,
    down_states_go_from_queued_to_sent_to_applied_or_rejected,
    ranges_of_several_devices_are_read_in_order_and_marked_sent_together,
    a_down_ack_counts_what_it_releases_and_the_ack_point_is_below_the_first_unacknowledged,
    a_new_incarnation_readdresses_unapplied_messages_from_1_and_names_the_events_lost,
    a_new_incarnation_with_nothing_lost_or_waiting_raises_no_alarm,
    a_device_first_heard_through_its_will_takes_the_incarnation_it_speaks_from,
    a_retried_key_gets_the_first_number_and_queues_nothing_more,
    a_group_of_requests_commits_together_and_sees_its_own_keys,
    a_device_never_heard_from_gets_nothing_queued_and_its_key_is_not_spent,
    the_down_log_pages_in_queue_order_across_devices_from_a_key,
    devices_show_presence_backlog_storage_alarm_and_unacknowledged_down_messages,
    totals_count_events_pending_messages_devices_and_alarms,
    alarms_are_listed_oldest_first_with_site_device_and_detail,
    devices_with_pending_down_names_exactly_the_devices_waiting,
    a_store_keeps_its_incarnation_and_rows_when_opened_again_and_another_has_its_own,
    claims_go_to_one_bridge_at_a_time_and_lapse_unless_renewed,
    two_handles_queueing_to_one_device_at_once_never_share_a_number,
    a_store_is_used_and_dropped_on_an_async_runtimes_worker,
);

/// The SQLite store's own `incarnation` (public, for a caller holding an `OmsDb`) is the
/// one the trait gives.
#[test]
fn an_oms_db_has_one_incarnation_by_either_name_and_another_has_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let a = OmsDb::open(&dir.path().join("a.db")).unwrap();
    let b = OmsDb::open(&dir.path().join("b.db")).unwrap();
    assert_eq!(OmsDb::incarnation(&a), OmsStore::incarnation(&a));
    assert_ne!(OmsDb::incarnation(&a), 0);
    assert_ne!(OmsDb::incarnation(&a), OmsDb::incarnation(&b));
}

/// Every rule on one PostgreSQL cluster (starting one takes seconds), each rule in
/// databases of its own; every failing rule is named.
#[test]
fn every_rule_holds_on_postgresql() {
    let pg = postgres::Postgres::start();
    let mut failed = Vec::new();
    for (i, (name, rule)) in RULES.iter().enumerate() {
        let made = RefCell::new(std::collections::BTreeMap::new());
        let backend = Backend {
            open: Box::new(|store: &str| {
                let url = made
                    .borrow_mut()
                    .entry(store.to_string())
                    .or_insert_with(|| pg.database(&format!("r{i}_{store}")))
                    .clone();
                Box::new(PgStore::open(&url, None, 2, None).unwrap())
            }),
            shared: true,
        };
        if catch_unwind(AssertUnwindSafe(|| rule(&backend))).is_err() {
            failed.push(*name);
        }
    }
    assert!(failed.is_empty(), "rules broken on PostgreSQL: {failed:?}");
}
