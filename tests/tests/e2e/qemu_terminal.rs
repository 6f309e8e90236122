//! The terminal's real image on an emulated TI LM3S6965 (QEMU's `lm3s6965evb`, booted by
//! `scripts/qemu-terminal`) as the picker's terminal of the real `floorhand run`, against
//! a real Mosquitto: the handshake, screens read back from the OLED pixel for pixel, the
//! terminal replaced mid-task, the gamepad's keys, a short pick from the gamepad, the
//! agent gone and back.
//!
//! The agent's port is a pty whose other end the test joins to QEMU's UART0 (the
//! `LinkTap`), byte for byte, so that the test sees every frame and its size on the wire.

use std::time::{Duration, Instant};

use floorhand_firmware::core::View;
use floorhand_protocol::examples;
use floorhand_protocol::link::{FromTerminal, Key, ScanTarget, Screen, ToTerminal};
use floorhand_protocol::oms::{Capture, Down, EventKind, ShortReason, wave_digest};
use floorhand_tests::mosquitto::{Mosquitto, Options};
use floorhand_tests::qemu::{LinkTap, Log, QemuTerminal};
use floorhand_tests::station_support::{AgentProcess, ScannerWire, station_config};
use floorhand_tests::sync_support::{start_oms, wait_until};

const BOLT: &str = "09506000134352";
const LOCATION: &str = "A-12-03-B";
const WAIT: Duration = Duration::from_secs(20);
/// How long a screen the agent sent may take to show on the OLED.
const DRAW: Duration = Duration::from_secs(5);
/// The limit from stopping the agent to "link lost" on the screen.
const LINK_LOST_WITHIN: Duration = Duration::from_secs(4);
/// The goal for the image's RAM.
const RAM_GOAL: usize = 16 * 1024;
/// The limit on the bytes of one screen update on the link.
const MAX_SCREEN_BYTES: usize = 64;

/// Waits until a frame after `from` matches `pick`; returns it and the mark after it.
fn wait_frame<T: Clone + std::fmt::Debug, R>(
    log: &Log<T>,
    from: usize,
    what: &str,
    agent: &AgentProcess,
    pick: impl Fn(&T) -> Option<R>,
) -> (R, Instant, usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        {
            let seen = log.lock().unwrap();
            for (i, s) in seen.iter().enumerate().skip(from) {
                if let Some(r) = pick(&s.msg) {
                    return (r, s.at, i + 1);
                }
            }
            if Instant::now() > deadline {
                let msgs: Vec<String> = seen[from..]
                    .iter()
                    .map(|s| format!("{:?}", s.msg))
                    .collect();
                panic!(
                    "no {what} on the link; seen:\n{}\nagent log:\n{}",
                    msgs.join("\n"),
                    agent.log()
                );
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for the agent's next screen matching `matches` and for the OLED to show exactly
/// what the host renderer draws for it; returns the screen, how long the OLED took after
/// the frame passed, and the mark after the frame.
fn shown(
    qemu: &QemuTerminal,
    tap: &LinkTap,
    agent: &AgentProcess,
    from: usize,
    what: &str,
    matches: impl Fn(&Screen) -> bool,
) -> (Screen, Duration, usize) {
    let (screen, at, mark) = wait_frame(&tap.down, from, what, agent, |m| match m {
        ToTerminal::Show(s) if matches(s) => Some(s.clone()),
        _ => None,
    });
    let drawn = qemu.wait_for(&View::Screen(screen.clone()), DRAW);
    (screen, drawn.saturating_duration_since(at), mark)
}

fn is_badge(s: &Screen) -> bool {
    matches!(
        s,
        Screen::Scan {
            target: ScanTarget::Badge,
            ..
        }
    )
}

/// Waits for the gamepad's key to reach the agent's side of the link.
fn key_sent(tap: &LinkTap, agent: &AgentProcess, from: usize, key: Key) -> usize {
    wait_frame(
        &tap.up,
        from,
        &format!("{key:?} from the gamepad"),
        agent,
        |m| (*m == FromTerminal::Key(key)).then_some(()),
    )
    .2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lm3s6965_image_in_qemu_is_a_picker_s_terminal_drawn_pixel_for_pixel() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("broker"), Options::default());
    let (oms, inbox) = start_oms(&broker.url(), "oms-qemu");

    // The image boots and draws its first screen before any agent is there.
    let qemu = QemuTerminal::start(&dir.path().join("qemu"));
    let first_frame = qemu.wait_for(&View::Connecting, DRAW) - qemu.started;
    println!("QEMU start to the first frame on the OLED: {first_frame:?}");

    let tap = LinkTap::new(&dir.path().join("link"), &qemu.uart);
    let mut scanner = ScannerWire::new(&dir.path().join("scanner"));
    let extra = format!(
        "[scanner]\nsource = {{ kind = \"serial\", path = \"{}\", baud = 9600 }}\n[terminal]\nport = \"{}\"\n",
        scanner.port.display(),
        tap.agent_port.display()
    );
    let config = station_config(dir.path(), "hh-1", &broker.url(), &extra);
    let log = dir.path().join("hh-1.log");
    let mut agent = AgentProcess::start(&config, &log);
    agent.wait_log("ready for scans", 1);

    // The handshake: the terminal's hello, the agent's, then the agent's screen drawn.
    let (hello, _, _) = wait_frame(&tap.up, 0, "the terminal's hello", &agent, |m| match m {
        FromTerminal::Hello(h) => Some(h.clone()),
        _ => None,
    });
    assert_eq!(hello.display, floorhand_protocol::link::Display::Mono128x64);
    // The firmware's version reaches the OMS (and so the floor view's device row).
    let firmware = hello.software.to_string();
    assert!(
        !firmware.is_empty(),
        "the firmware's hello names its version"
    );
    wait_until(WAIT, "the terminal's version at the OMS", || {
        inbox.kinds().iter().any(
            |k| matches!(k, EventKind::TerminalConnected { software } if *software == firmware),
        )
    })
    .await;
    wait_frame(&tap.down, 0, "the agent's hello", &agent, |m| {
        matches!(m, ToTerminal::Hello(_)).then_some(())
    });
    let (_, _, m) = shown(&qemu, &tap, &agent, 0, "the badge screen", is_badge);

    // A wave of one task, two bolts (the protocol's example task, without captures);
    // the picker logs in with the scanner.
    let mut task = examples::task(1, LOCATION, 1);
    task.qty = 2;
    task.capture = Capture::default();
    task.tote_required = false;
    let mut wave = examples::down()
        .into_iter()
        .find_map(|(_, env)| match env.body.body {
            Down::WaveAssigned(w) => Some(w),
            _ => None,
        })
        .expect("the examples have a wave");
    wave.tasks = vec![task];
    wave.task_count = 1;
    wave.digest = wave_digest(&wave.tasks);
    oms.send("hh-1", Down::WaveAssigned(wave)).await.unwrap();
    scanner.scan(&["OP42"]);
    let (_, draw_pick, m) = shown(
        &qemu,
        &tap,
        &agent,
        m,
        "the pick screen",
        |s| matches!(s, Screen::Pick(p) if p.location.as_str() == LOCATION),
    );
    let first_pick = qemu.started.elapsed();
    println!(
        "QEMU start to the first pick screen on the OLED: {first_pick:?} (agent start, login and wave included); \
         the pick screen's frame to its pixels: {draw_pick:?}"
    );

    // At the location, one bolt of two scanned.
    scanner.scan(&[LOCATION]);
    let (_, _, m) = shown(
        &qemu,
        &tap,
        &agent,
        m,
        "the item asked for, 0/2",
        |s| matches!(s, Screen::Scan { target: ScanTarget::Item, hint } if hint.starts_with("0/2")),
    );
    scanner.scan(&[BOLT]);
    let one_in_hand = |s: &Screen| matches!(s, Screen::Scan { target: ScanTarget::Item, hint } if hint.starts_with("1/2"));
    let (_, _, m) = shown(&qemu, &tap, &agent, m, "one bolt in hand, 1/2", one_in_hand);

    // The terminal dies mid-task and another boots on the same cable: it says hello and
    // the agent shows it the task where it stood.
    let up = tap.up.lock().unwrap().len();
    let ram_first = qemu.ram_in_use();
    drop(qemu);
    let qemu = QemuTerminal::start(&dir.path().join("qemu-2"));
    tap.attach(&qemu.uart);
    wait_frame(&tap.up, up, "the new terminal's hello", &agent, |m| {
        matches!(m, FromTerminal::Hello(_)).then_some(())
    });
    let (_, _, m) = shown(
        &qemu,
        &tap,
        &agent,
        m,
        "1/2 again on the new terminal",
        one_in_hand,
    );

    // The gamepad: Right is F1 (short pick), Down moves to "Damaged", Select confirms.
    let up_mark = tap.up.lock().unwrap().len();
    qemu.press("right");
    let up_mark = key_sent(&tap, &agent, up_mark, Key::F(1));
    let (_, _, m) = shown(&qemu, &tap, &agent, m, "the reason menu", |s| {
        matches!(s, Screen::Reasons { selected: 0, .. })
    });
    qemu.press("down");
    let up_mark = key_sent(&tap, &agent, up_mark, Key::Down);
    let (_, _, m) = shown(&qemu, &tap, &agent, m, "Damaged selected", |s| {
        matches!(s, Screen::Reasons { selected: 1, .. })
    });
    qemu.press("ctrl");
    key_sent(&tap, &agent, up_mark, Key::Enter);
    wait_until(WAIT, "the short pick at the OMS", || {
        inbox.kinds().iter().any(|k| {
            matches!(
                k,
                EventKind::ShortPicked {
                    task_id: 1,
                    qty: 1,
                    reason: ShortReason::Damaged
                }
            )
        })
    })
    .await;
    let (_, _, _) = shown(
        &qemu,
        &tap,
        &agent,
        m,
        "the wave done with one short",
        |s| {
            matches!(
                s,
                Screen::WaveDone {
                    picked: 0,
                    short: 1
                }
            )
        },
    );

    // The agent stops: within 4 s the terminal says the link is lost.
    let stopped = Instant::now();
    agent.stop();
    let lost_at = qemu.wait_for(&View::LinkLost, LINK_LOST_WITHIN * 2);
    let lost = lost_at - stopped;
    let last = tap
        .down
        .lock()
        .unwrap()
        .last()
        .map(|s| (s.at, format!("{:?}", s.msg)));
    if let Some((at, msg)) = last {
        println!(
            "the agent's last frame ({msg}) {:?} after SIGTERM; LINK LOST on the OLED {:?} after it",
            at.saturating_duration_since(stopped),
            lost_at.saturating_duration_since(at)
        );
    }
    println!("agent stopped to LINK LOST on the OLED: {lost:?}");
    assert!(lost <= LINK_LOST_WITHIN, "link lost shown after {lost:?}");

    // The agent comes back (a restart logs the picker out): the terminal says hello
    // again and the agent's screen returns.
    let (m, up) = (tap.down.lock().unwrap().len(), tap.up.lock().unwrap().len());
    let agent = AgentProcess::start(&config, &log);
    wait_frame(&tap.up, up, "the terminal's hello again", &agent, |m| {
        matches!(m, FromTerminal::Hello(_)).then_some(())
    });
    shown(
        &qemu,
        &tap,
        &agent,
        m,
        "the badge screen after the restart",
        is_badge,
    );

    // The image's RAM, statics and the stack's peak after each terminal's session, is
    // within the goal.
    for ram in [ram_first, qemu.ram_in_use()] {
        println!(
            "RAM in use: {} B statics + {} B stack peak = {} B",
            ram.statics,
            ram.stack_peak,
            ram.total()
        );
        assert!(ram.total() <= RAM_GOAL, "{ram:?} is over {RAM_GOAL} B");
    }

    // Every screen update on the link fits the budget.
    let sizes: Vec<usize> = tap
        .down
        .lock()
        .unwrap()
        .iter()
        .filter(|s| matches!(s.msg, ToTerminal::Show(_)))
        .map(|s| s.bytes)
        .collect();
    println!("bytes per screen update on the link: {sizes:?}");
    assert!(!sizes.is_empty());
    assert!(
        sizes.iter().all(|&b| b <= MAX_SCREEN_BYTES),
        "a screen update over {MAX_SCREEN_BYTES} B: {sizes:?}"
    );
    drop(agent);
}
