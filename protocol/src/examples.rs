//! One realistic example of every message, named. The golden-byte tests pin their
//! encoding, `floorhand wire-sizes` measures them, and `protocol/README.md` shows their JSON.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use crate::envelope::Envelope;
use crate::link::{
    Beep, Display, FromTerminal, Hello, Key, Level, MenuReason, PickPrompt, Scan, ScanTarget,
    Screen, ToTerminal, fit,
};
use crate::oms::*;

fn s(v: &str) -> String {
    v.to_string()
}

/// A task as a typical wave carries it.
pub fn task(task_id: u64, location: &str, pick_seq: u32) -> Task {
    Task {
        task_id,
        order_id: s("SO-10042"),
        order_line: 1,
        location: s(location),
        pick_seq,
        location_check: 47,
        gtins: vec![
            GtinPack {
                gtin: s("09506000134352"),
                pack_qty: 1,
            },
            GtinPack {
                gtin: s("19506000134359"),
                pack_qty: 12,
            },
        ],
        sku: s("BOLT-M8-40"),
        description: s("Hex bolt M8x40, zinc"),
        qty: 3,
        capture: Capture {
            lot: true,
            serial: false,
            expiry: false,
        },
        tote_required: true,
    }
}

fn address(name: &str, city: &str) -> Address {
    Address {
        name: s(name),
        company: s("Floorhand Demo GmbH"),
        lines: vec![s("Lagerstrasse 5")],
        city: s(city),
        region: String::new(),
        postal_code: s("20457"),
        country: s("DE"),
    }
}

/// The agent incarnation the examples use (a random id in real databases).
pub const AGENT_INCARNATION: u64 = 0x5eed_0000_0000_0001;

/// The OMS-side incarnation the examples use.
pub const OMS_INCARNATION: u64 = 0x0e5_0000_0000_0002;

fn dm(dseq: u64, body: Down) -> Envelope<DownMsg> {
    Envelope::new(
        dseq,
        DownMsg {
            oms_incarnation: OMS_INCARNATION,
            to_incarnation: AGENT_INCARNATION,
            body,
        },
    )
}

fn um(msg_id: u64, body: Up) -> Envelope<UpMsg> {
    Envelope::new(
        msg_id,
        UpMsg {
            incarnation: AGENT_INCARNATION,
            body,
        },
    )
}

/// A typical pick confirmation: a few units of one task, nothing captured, no tote.
/// This is the message the 32-byte goal is about (24 bytes of event, plus the 9-byte
/// agent incarnation that protocol v2 puts on every up message).
pub fn typical_pick() -> Envelope<UpMsg> {
    um(
        48_213,
        Up::Event(Event {
            seq: 48_213,
            at: 1_795_300_000,
            operator: 17,
            kind: EventKind::Picked(Picked {
                task_id: 1_200_345,
                qty: 3,
                lot: None,
                serial: None,
                expiry: None,
                tote: None,
            }),
        }),
    )
}

/// Every down message, named.
pub fn down() -> Vec<(&'static str, Envelope<DownMsg>)> {
    let tasks = vec![task(1_200_345, "A-12-03-B", 1203)];
    vec![
        (
            "WaveAssigned",
            dm(
                9001,
                Down::WaveAssigned(Wave {
                    wave_id: 5150,
                    version: 2,
                    priority: 5,
                    cutoff: 1_795_310_000,
                    task_count: tasks.len() as u32,
                    digest: wave_digest(&tasks),
                    tasks,
                }),
            ),
        ),
        (
            "TasksRevoked",
            dm(
                9002,
                Down::TasksRevoked {
                    wave_id: 5150,
                    task_ids: vec![1_200_346, 1_200_347],
                },
            ),
        ),
        (
            "OrderCancelled",
            dm(
                9003,
                Down::OrderCancelled {
                    order_id: s("SO-10042"),
                },
            ),
        ),
        (
            "PackOrder",
            dm(
                9004,
                Down::PackOrder(alloc::boxed::Box::new(PackOrder {
                    order_id: s("SO-10042"),
                    totes: vec![s("T-0042")],
                    lines: vec![PackLine {
                        order_line: 1,
                        gtins: vec![GtinPack {
                            gtin: s("09506000134352"),
                            pack_qty: 1,
                        }],
                        sku: s("BOLT-M8-40"),
                        description: s("Hex bolt M8x40, zinc"),
                        qty: 3,
                        capture: Capture::default(),
                        unit_weight_g: 120,
                    }],
                    ship_from: address("Warehouse Hamburg", "Hamburg"),
                    ship_to: address("Jane Doe", "Berlin"),
                    carrier: s("DHL"),
                    service: s("Paket"),
                    tracking: s("00340434161094042557"),
                })),
            ),
        ),
        (
            "Ack",
            dm(
                0,
                Down::Ack {
                    incarnation: AGENT_INCARNATION,
                    up_to_seq: 48_213,
                },
            ),
        ),
        ("ResyncRequest", dm(0, Down::ResyncRequest)),
        (
            "ConfigUpdate",
            dm(
                9006,
                Down::ConfigUpdate(ConfigUpdate {
                    status_interval_s: Some(30),
                    retention_hours: None,
                    storage_alarm_pct: Some(80),
                }),
            ),
        ),
    ]
}

fn event(seq: u64, kind: EventKind) -> Envelope<UpMsg> {
    um(
        seq,
        Up::Event(Event {
            seq,
            at: 1_795_300_000,
            operator: 17,
            kind,
        }),
    )
}

/// Every up message and every event kind, named.
pub fn up() -> Vec<(&'static str, Envelope<UpMsg>)> {
    vec![
        (
            "Birth",
            um(
                1,
                Up::Birth(Birth {
                    device: s("hh-07"),
                    software: s("0.1.0"),
                    protocol: crate::PROTOCOL_VERSION,
                    session: 12,
                    waves: vec![WaveVersion {
                        wave_id: 5150,
                        version: 2,
                        needs_repair: false,
                    }],
                    pack_orders: vec![PackOrderInfo {
                        order_id: s("SO-10042"),
                        state: PackOrderState::Packing,
                    }],
                    outbox_high_seq: 48_213,
                    outbox_acked_seq: 48_190,
                    down_oms_incarnation: OMS_INCARNATION,
                    down_applied_seq: 9004,
                }),
            ),
        ),
        (
            "Death",
            um(
                0,
                Up::Death(Death {
                    device: s("hh-07"),
                    session: 12,
                }),
            ),
        ),
        (
            "Status",
            um(
                2,
                Up::Status(Status {
                    backlog: 3,
                    oldest_unacked_s: 41,
                    printer: PrinterState::Ready,
                    print_queue: 0,
                    storage_bytes: 4_194_304,
                    storage_pct: 2,
                    down_oms_incarnation: OMS_INCARNATION,
                    down_applied_seq: 9004,
                }),
            ),
        ),
        (
            "DownAck",
            um(
                3,
                Up::DownAck {
                    oms_incarnation: OMS_INCARNATION,
                    through: 9004,
                },
            ),
        ),
        (
            "Event/TaskStarted",
            event(48_212, EventKind::TaskStarted { task_id: 1_200_345 }),
        ),
        ("Event/Picked (typical)", typical_pick()),
        (
            "Event/Picked (lot, expiry, tote)",
            event(
                48_214,
                EventKind::Picked(Picked {
                    task_id: 1_200_345,
                    qty: 3,
                    lot: Some(s("L2311A")),
                    serial: None,
                    expiry: Some(Date {
                        year: 2027,
                        month: 6,
                        day: 0,
                    }),
                    tote: Some(s("T-0042")),
                }),
            ),
        ),
        (
            "Event/ShortPicked",
            event(
                48_215,
                EventKind::ShortPicked {
                    task_id: 1_200_346,
                    qty: 1,
                    reason: ShortReason::NotEnough,
                },
            ),
        ),
        (
            "Event/Skipped",
            event(48_216, EventKind::Skipped { task_id: 1_200_347 }),
        ),
        (
            "Event/PutBack",
            event(
                48_217,
                EventKind::PutBack {
                    task_id: 1_200_345,
                    qty: 3,
                    location: s("A-12-03-B"),
                },
            ),
        ),
        (
            "Event/PackVerified",
            event(
                48_218,
                EventKind::PackVerified {
                    order_id: s("SO-10042"),
                },
            ),
        ),
        (
            "Event/CartonClosed",
            event(
                48_219,
                EventKind::CartonClosed {
                    order_id: s("SO-10042"),
                    carton_no: 1,
                    sscc: s("340123450000000017"),
                    weight_g: 1_460,
                    short_ship: None,
                },
            ),
        ),
        (
            "Event/LabelPrinted",
            event(
                48_220,
                EventKind::LabelPrinted {
                    sscc: s("340123450000000017"),
                    job_id: 77,
                },
            ),
        ),
        (
            "Event/PrintFailed",
            event(
                48_221,
                EventKind::PrintFailed {
                    sscc: s("340123450000000017"),
                    job_id: 78,
                    fault: s("paper out"),
                },
            ),
        ),
        (
            "Event/Conflict",
            event(
                48_222,
                EventKind::Conflict {
                    task_id: 1_200_345,
                    detail: s("order cancelled after 3 picked; put-back task created"),
                },
            ),
        ),
        (
            "Event/Rejected",
            event(
                48_223,
                EventKind::Rejected {
                    msg_id: 9010,
                    reason: RejectReason::UnsupportedVersion,
                    detail: s("protocol version 9 is not supported"),
                },
            ),
        ),
        (
            "Event/PickUndone",
            event(
                48_224,
                EventKind::PickUndone {
                    task_id: 1_200_345,
                    qty: 3,
                },
            ),
        ),
        ("Event/LoggedIn", event(48_225, EventKind::LoggedIn)),
        ("Event/LoggedOut", event(48_226, EventKind::LoggedOut)),
        (
            "Event/StorageAlarm",
            event(48_227, EventKind::StorageAlarm { pct: 85 }),
        ),
        (
            "Event/ScanRefused",
            event(
                48_228,
                EventKind::ScanRefused {
                    reason: RefusalReason::WrongItem,
                    task_id: Some(1_200_345),
                    count: 1,
                },
            ),
        ),
        (
            "Event/TerminalConnected",
            event(
                48_229,
                EventKind::TerminalConnected {
                    software: "0.1.0".into(),
                },
            ),
        ),
    ]
}

fn hello(display: Display) -> Hello {
    Hello {
        protocol: crate::PROTOCOL_VERSION,
        software: fit("0.1.0"),
        display,
    }
}

/// Every agent → terminal message and every screen, named.
pub fn to_terminal() -> Vec<(&'static str, Envelope<ToTerminal>)> {
    let show = |id, screen| Envelope::new(id, ToTerminal::Show(screen));
    vec![
        (
            "Hello",
            Envelope::new(1, ToTerminal::Hello(hello(Display::None))),
        ),
        (
            "Show/Pick",
            show(
                2,
                Screen::Pick(PickPrompt {
                    location: fit("A-12-03-B"),
                    item: fit("Hex bolt M8x40, zinc"),
                    qty: 3,
                    done: 4,
                    total: 18,
                }),
            ),
        ),
        (
            "Show/Scan",
            show(
                3,
                Screen::Scan {
                    target: ScanTarget::Item,
                    hint: fit("BOLT-M8-40"),
                },
            ),
        ),
        (
            "Show/Quantity",
            show(
                4,
                Screen::Quantity {
                    prompt: fit("Units picked"),
                    value: 2,
                    max: 3,
                },
            ),
        ),
        (
            "Show/Reasons",
            show(
                5,
                Screen::Reasons {
                    options: heapless::Vec::from_slice(&[
                        MenuReason::LocationEmpty,
                        MenuReason::Damaged,
                        MenuReason::WrongItem,
                        MenuReason::NotEnough,
                    ])
                    .unwrap_or_default(),
                    selected: 0,
                },
            ),
        ),
        (
            "Show/Message",
            show(
                6,
                Screen::Message {
                    level: Level::Error,
                    text: fit("Wrong item: expected BOLT-M8-40"),
                },
            ),
        ),
        (
            "Show/Offline",
            show(
                7,
                Screen::Offline {
                    backlog: 37,
                    since_s: 95,
                },
            ),
        ),
        (
            "Show/WaveDone",
            show(
                8,
                Screen::WaveDone {
                    picked: 17,
                    short: 1,
                },
            ),
        ),
        ("Beep", Envelope::new(9, ToTerminal::Beep(Beep::Error))),
        ("Heartbeat", Envelope::new(10, ToTerminal::Heartbeat)),
    ]
}

/// Every terminal → agent message, named.
pub fn from_terminal() -> Vec<(&'static str, Envelope<FromTerminal>)> {
    vec![
        (
            "Hello",
            Envelope::new(1, FromTerminal::Hello(hello(Display::Mono128x64))),
        ),
        ("Key", Envelope::new(2, FromTerminal::Key(Key::Enter))),
        (
            "Scan",
            Envelope::new(
                3,
                FromTerminal::Scan(Scan {
                    data: heapless::Vec::from_slice(b"]C101095060001343521710063010L2311A")
                        .unwrap_or_default(),
                }),
            ),
        ),
        ("Heartbeat", Envelope::new(4, FromTerminal::Heartbeat)),
    ]
}
