//! Store rules that mutation testing found unguarded (docs/dev/mutants.md), checked through
//! the store's public API on a real SQLite file, and read back with plain SQL where the
//! rule is about what is on disk.

use floorhand::store::fixtures::{sample_tasks, sample_wave};
use floorhand::store::{Applied, Db, PickConfirmation, StoreConfig};
use floorhand_protocol::examples;
use floorhand_protocol::oms::{Date, Down, DownHeader, EventKind, ShortReason, Up, decode_up};
use rusqlite::Connection;

const T0: u64 = 1_795_300_000;

fn open(cfg: &StoreConfig) -> (tempfile::TempDir, std::path::PathBuf, Db) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("floorhand.db");
    let db = Db::open(&path, cfg).unwrap();
    (dir, path, db)
}

/// Down message `dseq` of OMS incarnation `oms`, addressed to `db`.
fn apply(db: &mut Db, oms: u64, dseq: u64, down: &Down) -> Applied {
    let head = DownHeader {
        dseq,
        oms_incarnation: oms,
        to_incarnation: db.incarnation(),
    };
    db.apply_down(head, down, T0).unwrap()
}

fn event_kinds(db: &Db) -> Vec<EventKind> {
    db.outbox_pending(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|row| match decode_up(&row.payload).unwrap().body.body {
            Up::Event(e) => e.kind,
            other => panic!("outbox holds a non-event: {other:?}"),
        })
        .collect()
}

#[test]
fn logging_out_closes_the_session_and_writes_a_logged_out_event() {
    let (_dir, path, mut db) = open(&StoreConfig::default());
    assert_eq!(db.login(T0, 7, "OP7").unwrap(), 1);
    assert_eq!(db.logout(T0 + 60, 7).unwrap(), 2);
    let kinds = event_kinds(&db);
    assert!(
        matches!(kinds[..], [EventKind::LoggedIn, EventKind::LoggedOut]),
        "{kinds:?}"
    );
    let open: i64 = Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM sessions WHERE logout_at IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(open, 0, "the session is closed");
}

#[test]
fn a_task_picked_in_part_has_no_completion_time_and_its_expiry_is_stored_as_yyyymmdd() {
    let (_dir, path, mut db) = open(&StoreConfig::default());
    let wave = Down::WaveAssigned(sample_wave(1, 1, sample_tasks(100, 1, 3)));
    apply(&mut db, 1, 1, &wave);
    db.start_task(T0, 7, 100).unwrap();
    let pick = PickConfirmation {
        task_id: 100,
        qty: 1,
        lot: None,
        serial: None,
        expiry: Some(Date {
            year: 2027,
            month: 6,
            day: 30,
        }),
        tote: None,
    };
    db.confirm_pick(T0 + 1, 7, &pick).unwrap();
    let conn = Connection::open(&path).unwrap();
    let completed: Option<i64> = conn
        .query_row(
            "SELECT completed_at FROM tasks WHERE task_id = 100",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(completed, None, "1 of 3 picked: not complete");
    let expiry: i64 = conn
        .query_row("SELECT expiry FROM picks WHERE task_id = 100", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(expiry, 20_270_630);
}

#[test]
fn the_next_down_header_follows_the_oms_incarnation_the_store_follows() {
    let (_dir, _path, mut db) = open(&StoreConfig::default());
    let h = db.next_down_header().unwrap();
    assert_eq!((h.dseq, h.oms_incarnation), (1, 1), "none followed yet");
    let cancel = Down::OrderCancelled {
        order_id: "SO-1".into(),
    };
    apply(&mut db, 7, 1, &cancel);
    let h = db.next_down_header().unwrap();
    assert_eq!(
        (h.dseq, h.oms_incarnation, h.to_incarnation),
        (2, 7, db.incarnation())
    );
}

#[test]
fn a_read_only_open_reports_the_storage_limit_the_agent_recorded() {
    let cfg = StoreConfig {
        max_bytes: 5_000_000,
        ..StoreConfig::default()
    };
    let (_dir, path, db) = open(&cfg);
    drop(db);
    let ro = Db::open_read_only(&path).unwrap();
    assert_eq!(ro.status(T0).unwrap().usage.max_bytes, 5_000_000);
}

#[test]
fn a_pack_order_sent_again_while_it_is_open_is_stored_again() {
    let (_dir, _path, mut db) = open(&StoreConfig::default());
    let order = examples::down()
        .into_iter()
        .find_map(|(_, env)| match env.body.body {
            Down::PackOrder(p) => Some(p),
            _ => None,
        })
        .expect("an example pack order");
    assert_eq!(
        apply(&mut db, 1, 1, &Down::PackOrder(order.clone())),
        Applied::PackOrderStored
    );
    // The OMS corrects the order before any carton is closed: the new copy is stored.
    let mut corrected = order.clone();
    corrected.service = "EXPRESS".into();
    assert_eq!(
        apply(&mut db, 1, 2, &Down::PackOrder(corrected)),
        Applied::PackOrderStored
    );
    let stored = db.pack_order(&order.order_id).unwrap().unwrap();
    assert_eq!(stored.service, "EXPRESS");
}

#[test]
fn a_short_pick_of_nothing_writes_no_pick_row_and_one_of_units_writes_one() {
    let (_dir, path, mut db) = open(&StoreConfig::default());
    let wave = Down::WaveAssigned(sample_wave(1, 1, sample_tasks(100, 2, 3)));
    apply(&mut db, 1, 1, &wave);
    db.start_task(T0, 7, 100).unwrap();
    db.short_pick(T0 + 1, 7, 100, 0, ShortReason::LocationEmpty)
        .unwrap();
    db.start_task(T0 + 2, 7, 101).unwrap();
    db.short_pick(T0 + 3, 7, 101, 2, ShortReason::Damaged)
        .unwrap();
    let rows: Vec<(i64, i64)> = Connection::open(&path)
        .unwrap()
        .prepare("SELECT task_id, qty FROM picks ORDER BY task_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows, [(101, 2)]);
}

#[test]
fn a_pick_a_new_wave_version_made_a_put_back_cannot_be_undone() {
    let (_dir, _path, mut db) = open(&StoreConfig::default());
    apply(
        &mut db,
        1,
        1,
        &Down::WaveAssigned(sample_wave(1, 1, sample_tasks(100, 1, 3))),
    );
    db.start_task(T0, 7, 100).unwrap();
    db.confirm_pick(
        T0 + 1,
        7,
        &PickConfirmation {
            task_id: 100,
            qty: 2,
            lot: None,
            serial: None,
            expiry: None,
            tote: None,
        },
    )
    .unwrap();
    // Version 2 asks for 1 unit of task 100: one of the two picked goes back, and is put
    // back; version 3 asks for 3 again, so the task is open with a unit put back.
    let version = |v, qty| Down::WaveAssigned(sample_wave(1, v, sample_tasks(100, 1, qty)));
    apply(&mut db, 1, 2, &version(2, 1));
    db.confirm_put_back(T0 + 2, 7, 100).unwrap();
    apply(&mut db, 1, 3, &version(3, 3));
    let err = db.undo_pick(T0 + 3, 7, 100).unwrap_err();
    assert!(err.to_string().contains("can no longer be undone"), "{err}");
}
