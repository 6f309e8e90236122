//! Property tests: round trips, garbage never panics, noise on the serial link is caught.

use floorhand_protocol::envelope::{self, encode_to_vec};
use floorhand_protocol::frame::{self, FrameDecoder, FrameError};
use floorhand_protocol::limits::MAX_LINK_FRAME;
use floorhand_protocol::link::*;
use floorhand_protocol::oms::*;
use floorhand_protocol::{DecodeError, Envelope, PROTOCOL_VERSION, examples};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::string::string_regex;

fn text() -> impl Strategy<Value = String> {
    string_regex("[ -~äöüé€\\^_~]{0,24}").unwrap()
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text())
}

fn date() -> impl Strategy<Value = Date> {
    (2000u16..2100, 1u8..=12, 0u8..=31).prop_map(|(year, month, day)| Date { year, month, day })
}

fn gtins() -> impl Strategy<Value = Vec<GtinPack>> {
    vec(
        ("[0-9]{14}", 1u32..100).prop_map(|(gtin, pack_qty)| GtinPack { gtin, pack_qty }),
        0..3,
    )
}

fn capture() -> impl Strategy<Value = Capture> {
    any::<(bool, bool, bool)>().prop_map(|(lot, serial, expiry)| Capture {
        lot,
        serial,
        expiry,
    })
}

fn task() -> impl Strategy<Value = Task> {
    (
        (
            any::<u64>(),
            text(),
            any::<u32>(),
            text(),
            any::<u32>(),
            0u8..100,
        ),
        (
            gtins(),
            text(),
            text(),
            any::<u32>(),
            capture(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (task_id, order_id, order_line, location, pick_seq, location_check),
                (gtins, sku, description, qty, capture, tote_required),
            )| Task {
                task_id,
                order_id,
                order_line,
                location,
                pick_seq,
                location_check,
                gtins,
                sku,
                description,
                qty,
                capture,
                tote_required,
            },
        )
}

fn address() -> impl Strategy<Value = Address> {
    (text(), text(), vec(text(), 0..3), text(), text(), text()).prop_map(
        |(name, company, lines, city, postal_code, country)| Address {
            name,
            company,
            lines,
            city,
            region: String::new(),
            postal_code,
            country,
        },
    )
}

fn down() -> impl Strategy<Value = Down> {
    prop_oneof![
        (any::<(u64, u32, u8, u64)>(), vec(task(), 0..4)).prop_map(
            |((wave_id, version, priority, cutoff), tasks)| {
                Down::WaveAssigned(Wave {
                    wave_id,
                    version,
                    priority,
                    cutoff,
                    task_count: tasks.len() as u32,
                    digest: wave_digest(&tasks),
                    tasks,
                })
            }
        ),
        (any::<u64>(), vec(any::<u64>(), 0..10))
            .prop_map(|(wave_id, task_ids)| Down::TasksRevoked { wave_id, task_ids }),
        text().prop_map(|order_id| Down::OrderCancelled { order_id }),
        (
            text(),
            vec(text(), 0..3),
            address(),
            address(),
            text(),
            text()
        )
            .prop_map(|(order_id, totes, ship_from, ship_to, carrier, tracking)| {
                Down::PackOrder(Box::new(PackOrder {
                    order_id,
                    totes,
                    lines: vec![],
                    ship_from,
                    ship_to,
                    carrier,
                    service: String::new(),
                    tracking,
                }))
            }),
        any::<(u64, u64)>().prop_map(|(incarnation, up_to_seq)| Down::Ack {
            incarnation,
            up_to_seq
        }),
        Just(Down::ResyncRequest),
        any::<(Option<u32>, Option<u32>, Option<u8>)>().prop_map(|(a, b, c)| {
            Down::ConfigUpdate(ConfigUpdate {
                status_interval_s: a,
                retention_hours: b,
                storage_alarm_pct: c,
            })
        }),
    ]
}

fn short_reason() -> impl Strategy<Value = ShortReason> {
    prop_oneof![
        Just(ShortReason::LocationEmpty),
        Just(ShortReason::Damaged),
        Just(ShortReason::WrongItem),
        Just(ShortReason::NotEnough),
    ]
}

fn refusal_reason() -> impl Strategy<Value = RefusalReason> {
    prop_oneof![
        Just(RefusalReason::WrongItem),
        Just(RefusalReason::WrongLocation),
        Just(RefusalReason::BadBarcode),
        Just(RefusalReason::NotLoggedIn),
        Just(RefusalReason::NoTask),
        Just(RefusalReason::Busy),
        Just(RefusalReason::TooMany),
        Just(RefusalReason::Other),
    ]
}

fn event_kind() -> impl Strategy<Value = EventKind> {
    prop_oneof![
        any::<u64>().prop_map(|task_id| EventKind::TaskStarted { task_id }),
        (
            any::<(u64, u32)>(),
            opt_text(),
            opt_text(),
            proptest::option::of(date()),
            opt_text()
        )
            .prop_map(|((task_id, qty), lot, serial, expiry, tote)| {
                EventKind::Picked(Picked {
                    task_id,
                    qty,
                    lot,
                    serial,
                    expiry,
                    tote,
                })
            }),
        (any::<(u64, u32)>(), short_reason()).prop_map(|((task_id, qty), reason)| {
            EventKind::ShortPicked {
                task_id,
                qty,
                reason,
            }
        }),
        any::<u64>().prop_map(|task_id| EventKind::Skipped { task_id }),
        (any::<(u64, u32)>(), text()).prop_map(|((task_id, qty), location)| {
            EventKind::PutBack {
                task_id,
                qty,
                location,
            }
        }),
        text().prop_map(|order_id| EventKind::PackVerified { order_id }),
        (text(), any::<(u16, u32)>(), "[0-9]{18}", opt_text()).prop_map(
            |(order_id, (carton_no, weight_g), sscc, short_ship)| EventKind::CartonClosed {
                order_id,
                carton_no,
                sscc,
                weight_g,
                short_ship
            }
        ),
        ("[0-9]{18}", any::<u64>())
            .prop_map(|(sscc, job_id)| EventKind::LabelPrinted { sscc, job_id }),
        ("[0-9]{18}", any::<u64>(), text()).prop_map(|(sscc, job_id, fault)| {
            EventKind::PrintFailed {
                sscc,
                job_id,
                fault,
            }
        }),
        (any::<u64>(), text())
            .prop_map(|(task_id, detail)| EventKind::Conflict { task_id, detail }),
        (any::<u64>(), text()).prop_map(|(msg_id, detail)| EventKind::Rejected {
            msg_id,
            reason: RejectReason::Malformed,
            detail
        }),
        any::<(u64, u32)>().prop_map(|(task_id, qty)| EventKind::PickUndone { task_id, qty }),
        Just(EventKind::LoggedIn),
        Just(EventKind::LoggedOut),
        any::<u8>().prop_map(|pct| EventKind::StorageAlarm { pct }),
        (refusal_reason(), any::<Option<u64>>(), any::<u32>()).prop_map(
            |(reason, task_id, count)| EventKind::ScanRefused {
                reason,
                task_id,
                count
            }
        ),
    ]
}

fn up() -> impl Strategy<Value = Up> {
    prop_oneof![
        (
            text(),
            any::<(u64, u64, u64, u64, u64)>(),
            vec(any::<(u64, u32, bool)>(), 0..5),
            vec((text(), 0u8..4), 0..4)
        )
            .prop_map(
                |(device, (session, outbox_high_seq, acked, oms_inc, applied), waves, orders)| {
                    Up::Birth(Birth {
                        device,
                        software: "0.1.0".into(),
                        protocol: PROTOCOL_VERSION,
                        session,
                        waves: waves
                            .into_iter()
                            .map(|(wave_id, version, needs_repair)| WaveVersion {
                                wave_id,
                                version,
                                needs_repair,
                            })
                            .collect(),
                        pack_orders: orders
                            .into_iter()
                            .map(|(order_id, st)| PackOrderInfo {
                                order_id,
                                state: [
                                    PackOrderState::Open,
                                    PackOrderState::Packing,
                                    PackOrderState::Done,
                                    PackOrderState::Cancelled,
                                ][usize::from(st)],
                            })
                            .collect(),
                        outbox_high_seq,
                        outbox_acked_seq: acked,
                        down_oms_incarnation: oms_inc,
                        down_applied_seq: applied,
                    })
                }
            ),
        any::<(u64, u64)>().prop_map(|(oms_incarnation, through)| Up::DownAck {
            oms_incarnation,
            through
        }),
        (text(), any::<u64>()).prop_map(|(device, session)| Up::Death(Death { device, session })),
        (any::<(u32, u32, u32, u64, u8)>()).prop_map(|(a, b, c, d, e)| Up::Status(Status {
            backlog: a,
            oldest_unacked_s: b,
            printer: PrinterState::PaperOut,
            print_queue: c,
            storage_bytes: d,
            storage_pct: e,
            down_oms_incarnation: d ^ 0x55,
            down_applied_seq: u64::from(a),
        })),
        (any::<(u64, u64, u32)>(), event_kind()).prop_map(|((seq, at, operator), kind)| {
            Up::Event(Event {
                seq,
                at,
                operator,
                kind,
            })
        }),
    ]
}

fn screen() -> impl Strategy<Value = Screen> {
    prop_oneof![
        (text(), text(), any::<(u16, u16, u16)>()).prop_map(|(l, i, (qty, done, total))| {
            Screen::Pick(PickPrompt {
                location: fit(&l),
                item: fit(&i),
                qty,
                done,
                total,
            })
        }),
        text().prop_map(|h| Screen::Scan {
            target: ScanTarget::Lot,
            hint: fit(&h)
        }),
        (text(), any::<(u32, u32)>()).prop_map(|(p, (value, max))| Screen::Quantity {
            prompt: fit(&p),
            value,
            max
        }),
        (0usize..=4, any::<u8>()).prop_map(|(n, selected)| Screen::Reasons {
            options: heapless::Vec::from_slice(&[MenuReason::Damaged; 4][..n]).unwrap(),
            selected
        }),
        text().prop_map(|t| Screen::Message {
            level: Level::Warning,
            text: fit(&t)
        }),
        any::<(u32, u32)>().prop_map(|(backlog, since_s)| Screen::Offline { backlog, since_s }),
        any::<(u16, u16)>().prop_map(|(picked, short)| Screen::WaveDone { picked, short }),
    ]
}

fn to_terminal() -> impl Strategy<Value = ToTerminal> {
    prop_oneof![
        screen().prop_map(ToTerminal::Show),
        Just(ToTerminal::Beep(Beep::Attention)),
        Just(ToTerminal::Heartbeat),
    ]
}

fn from_terminal() -> impl Strategy<Value = FromTerminal> {
    prop_oneof![
        (0u8..10).prop_map(|d| FromTerminal::Key(Key::Digit(d))),
        vec(any::<u8>(), 0..128).prop_map(|d| FromTerminal::Scan(Scan {
            data: heapless::Vec::from_slice(&d).unwrap()
        })),
        Just(FromTerminal::Heartbeat),
    ]
}

/// Feeds `bytes` to a fresh link decoder and collects what came out.
fn decode_frames<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Vec<Result<Envelope<T>, FrameError>> {
    let mut dec = FrameDecoder::<MAX_LINK_FRAME>::new();
    let mut out = Vec::new();
    dec.feed(bytes, |f| out.push(f));
    out
}

proptest! {
    #[test]
    fn down_messages_round_trip(id in any::<u64>(), inc in any::<(u64, u64)>(), body in down()) {
        let env = Envelope::new(id, DownMsg { oms_incarnation: inc.0, to_incarnation: inc.1, body });
        let bytes = encode_down(&env).unwrap();
        prop_assert_eq!(decode_down(&bytes).unwrap(), env);
    }

    #[test]
    fn up_messages_round_trip(id in any::<u64>(), incarnation in any::<u64>(), body in up()) {
        let env = Envelope::new(id, UpMsg { incarnation, body });
        let bytes = encode_up(&env).unwrap();
        prop_assert_eq!(decode_up(&bytes).unwrap(), env);
    }

    #[test]
    fn link_messages_round_trip_through_frames(id in any::<u64>(), a in to_terminal(), b in from_terminal()) {
        let ea = Envelope::new(id, a);
        let eb = Envelope::new(id, b);
        let fa = frame::encode_to_vec(&ea);
        let fb = frame::encode_to_vec(&eb);
        prop_assert!(fa.len() <= MAX_LINK_FRAME && fb.len() <= MAX_LINK_FRAME);
        prop_assert_eq!(decode_frames::<ToTerminal>(&fa), vec![Ok(ea)]);
        prop_assert_eq!(decode_frames::<FromTerminal>(&fb), vec![Ok(eb)]);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in vec(any::<u8>(), 0..2048)) {
        let _ = decode_down(&bytes);
        let _ = decode_up(&bytes);
        let _ = envelope::peek_msg_id(&bytes);
        let _ = decode_frames::<ToTerminal>(&bytes);
        let _ = decode_frames::<FromTerminal>(&bytes);
    }

    #[test]
    fn decoding_bytes_after_a_valid_version_never_panics(bytes in vec(any::<u8>(), 0..512)) {
        let mut v = vec![PROTOCOL_VERSION];
        v.extend_from_slice(&bytes);
        let _ = decode_down(&v);
        let _ = decode_up(&v);
    }

    #[test]
    fn noise_between_frames_never_hides_a_good_frame(
        noise in vec(vec(any::<u8>(), 0..300), 1..5),
        msgs in vec(to_terminal(), 1..5),
    ) {
        // Noise may end inside a frame; a delimiter after it resynchronises the decoder.
        let mut stream = Vec::new();
        for (n, m) in noise.iter().zip(&msgs) {
            stream.extend_from_slice(n);
            stream.push(0);
            stream.extend_from_slice(&frame::encode_to_vec(&Envelope::new(7, m.clone())));
        }
        let good: Vec<ToTerminal> = decode_frames::<ToTerminal>(&stream)
            .into_iter()
            .filter_map(|r| r.ok().map(|e| e.body))
            .collect();
        let sent: Vec<ToTerminal> = msgs.into_iter().take(noise.len()).collect();
        // Every frame sent arrives, in order; noise may at worst add nothing that passes the CRC.
        prop_assert_eq!(good, sent);
    }

    #[test]
    fn any_single_flipped_bit_in_a_screen_frame_is_rejected(id in any::<u64>(), s in screen(), bit in any::<proptest::sample::Index>()) {
        let env = Envelope::new(id, ToTerminal::Show(s));
        let mut f = frame::encode_to_vec(&env);
        let i = bit.index(f.len() * 8);
        f[i / 8] ^= 1 << (i % 8);
        let got = decode_frames::<ToTerminal>(&f);
        prop_assert!(got.iter().all(|r| r.is_err()), "flipped bit {} was accepted: {:?}", i, got);
    }
}

#[test]
fn every_single_flipped_bit_in_every_example_frame_is_rejected() {
    let frames: Vec<Vec<u8>> = examples::to_terminal()
        .iter()
        .map(|(_, e)| frame::encode_to_vec(e))
        .chain(
            examples::from_terminal()
                .iter()
                .map(|(_, e)| frame::encode_to_vec(e)),
        )
        .collect();
    let mut flips = 0;
    for f in frames {
        for i in 0..f.len() * 8 {
            let mut g = f.clone();
            g[i / 8] ^= 1 << (i % 8);
            let a = decode_frames::<ToTerminal>(&g);
            let b = decode_frames::<FromTerminal>(&g);
            assert!(a.iter().all(|r| r.is_err()), "bit {i}: {a:?}");
            assert!(b.iter().all(|r| r.is_err()), "bit {i}: {b:?}");
            flips += 1;
        }
    }
    assert!(flips > 1000, "only {flips} flips checked");
}

#[test]
fn unknown_protocol_version_is_a_clear_error() {
    let mut bytes = encode_to_vec(&examples::down()[0].1);
    bytes[0] = PROTOCOL_VERSION + 1;
    let err = decode_down(&bytes).unwrap_err();
    assert_eq!(
        err,
        DecodeError::UnsupportedVersion {
            got: PROTOCOL_VERSION + 1,
            supported: PROTOCOL_VERSION
        }
    );
    assert!(err.to_string().contains("version 3 is not supported"));
}

#[test]
fn a_version_1_peer_gets_a_clear_version_error() {
    let mut bytes = encode_to_vec(&examples::down()[0].1);
    bytes[0] = 1;
    let err = decode_down(&bytes).unwrap_err().to_string();
    assert!(
        err.contains("protocol version 1 is not supported") && err.contains("speaks version 2"),
        "{err}"
    );
    let mut up = encode_to_vec(&examples::up()[0].1);
    up[0] = 1;
    assert!(matches!(
        decode_up(&up),
        Err(DecodeError::UnsupportedVersion {
            got: 1,
            supported: 2
        })
    ));
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = encode_to_vec(&examples::down()[4].1);
    bytes.push(0);
    assert_eq!(decode_down(&bytes), Err(DecodeError::TrailingBytes(1)));
}

#[test]
fn oversized_down_message_is_refused_before_decoding() {
    let bytes = vec![PROTOCOL_VERSION; floorhand_protocol::limits::MAX_DOWN_BYTES + 1];
    assert!(matches!(
        decode_down(&bytes),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn a_wave_over_the_task_limit_is_refused_by_sender_and_receiver() {
    let t = examples::task(1, "A-01", 1);
    let tasks = vec![t; floorhand_protocol::limits::MAX_TASKS_PER_WAVE + 1];
    let env = Envelope::new(
        1,
        DownMsg {
            oms_incarnation: 7,
            to_incarnation: 8,
            body: Down::WaveAssigned(Wave {
                wave_id: 1,
                version: 1,
                priority: 1,
                cutoff: 0,
                task_count: tasks.len() as u32,
                digest: 0,
                tasks,
            }),
        },
    );
    assert!(encode_down(&env).is_err());
    let bytes = encode_to_vec(&env);
    assert!(matches!(decode_down(&bytes), Err(DecodeError::Limit(_))));
}

#[test]
fn msg_id_is_readable_from_a_message_whose_body_is_garbage() {
    let mut bytes = encode_to_vec(&Envelope::new(4242u64, ()));
    bytes.extend_from_slice(&[0xff; 8]);
    assert_eq!(envelope::peek_msg_id(&bytes), Some(4242));
    assert!(decode_down(&bytes).is_err());
    let mut down = encode_to_vec(&Envelope::new(4243u64, (99u64, 98u64)));
    down.extend_from_slice(&[0xff; 8]);
    assert_eq!(
        peek_down_header(&down),
        Some(DownHeader {
            dseq: 4243,
            oms_incarnation: 99,
            to_incarnation: 98
        })
    );
    assert!(decode_down(&down).is_err());
}

#[test]
fn text_that_does_not_fit_is_cut_with_a_visible_mark() {
    let s: heapless::String<8> = fit("Hex bolt M8x40");
    assert_eq!(s.as_str(), "Hex b…");
    let t: heapless::String<8> = fit("short");
    assert_eq!(t.as_str(), "short");
    let u: heapless::String<4> = fit("äöüäöü");
    assert_eq!(u.as_str(), "…");
}

#[test]
fn topics_are_per_device_and_parse_back() {
    use floorhand_protocol::topics;
    assert_eq!(topics::down("hh", "d1"), "floorhand/v1/hh/d1/down");
    assert_eq!(topics::up("hh", "d1"), "floorhand/v1/hh/d1/up");
    assert_eq!(topics::state("hh", "d1"), "floorhand/v1/hh/d1/state");
    assert_eq!(topics::oms_up_pattern("+"), "floorhand/v1/+/+/up");
    let p = topics::parse("floorhand/v1/hh/d1/up").unwrap();
    assert_eq!((p.site, p.device, p.kind), ("hh", "d1", topics::Kind::Up));
    assert!(topics::parse("floorhand/v1/hh/d1/up/x").is_none());
    assert!(topics::parse("floorhand/v1/hh//up").is_none());
    assert!(topics::valid_id("hh-07_b2"));
    assert!(
        !topics::valid_id("hh.07"),
        "a dot is a topic level on RabbitMQ"
    );
    assert!(!topics::valid_id("hh/+"));
    assert!(!topics::valid_id(""));
}
