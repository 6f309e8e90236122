//! The agent's `devices::terminal` and the real `floorhand-terminal` binary on a pty
//! pair: a screen goes one way and is drawn to PNG, key presses and scans come back.

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use floorhand::devices::terminal::{self, TerminalConfig, TerminalEvent};
use floorhand_firmware::core::View;
use floorhand_firmware::render::Profile;
use floorhand_firmware::sim::framebuffer::{decode_png, render_rgb8};
use floorhand_protocol::link::{Key, PickPrompt, Screen, fit};
use floorhand_tests::pty::{PtyPair, wait_until};
use floorhand_tests::workspace_bin;

const WAIT: Duration = Duration::from_secs(20);

/// `floorhand-terminal` on `port`, drawing the mono display into `out`; killed on drop.
struct TerminalProcess {
    child: Child,
    stdin: ChildStdin,
}

impl TerminalProcess {
    fn start(port: &Path, out: &Path, log: &Path) -> Self {
        let mut child = Command::new(workspace_bin("floorhand-terminal"))
            .arg("--port")
            .arg(port)
            .arg("--display")
            .arg("mono")
            .arg("--out")
            .arg(out)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start floorhand-terminal");
        let stdin = child.stdin.take().unwrap();
        TerminalProcess { child, stdin }
    }

    fn type_line(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }
}

impl Drop for TerminalProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `dir/current.png` shows exactly `view`.
fn wait_for_picture(dir: &Path, view: &View, what: &str) {
    let want = render_rgb8(view, Profile::Mono128x64);
    wait_until(WAIT, what, || {
        let bytes = std::fs::read(dir.join("current.png")).ok()?;
        let img = decode_png(&bytes).ok()?;
        (img == want).then_some(())
    });
}

#[test]
fn a_pick_prompt_is_drawn_by_the_terminal_and_its_key_presses_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let pty = PtyPair::new(dir.path());
    let screens = dir.path().join("screens");
    let mut term = TerminalProcess::start(&pty.b, &screens, &dir.path().join("terminal.log"));

    let (agent, mut events) = terminal::spawn(&TerminalConfig {
        path: pty.a.to_string_lossy().into_owned(),
        baud: 115_200,
    })
    .unwrap();
    let pick = Screen::Pick(PickPrompt {
        location: fit("A-12-03-B"),
        item: fit("Hex bolt M8x40, zinc"),
        qty: 3,
        done: 4,
        total: 18,
    });
    agent.show(pick.clone()).unwrap();

    wait_for_picture(
        &screens,
        &View::Screen(pick),
        "the pick prompt in current.png",
    );
    let numbered = std::fs::read_dir(&screens)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("screen-")
        })
        .count();
    assert!(numbered >= 2, "connecting and pick screens, got {numbered}");

    term.type_line("7");
    term.type_line("scan 0109506000134352");
    let mut key = None;
    let mut scan = None;
    wait_until(WAIT, "the key and the scan at the agent", || {
        while let Ok(ev) = events.try_recv() {
            match ev {
                TerminalEvent::Key(k) => key = Some(k),
                TerminalEvent::Scan(s) => scan = Some(s.data.to_vec()),
                _ => {}
            }
        }
        (key.is_some() && scan.is_some()).then_some(())
    });
    assert_eq!(key, Some(Key::Digit(7)));
    assert_eq!(scan.as_deref(), Some(&b"0109506000134352"[..]));

    // The agent goes away: the terminal notices the silence and says so.
    agent.stop().unwrap();
    wait_for_picture(&screens, &View::LinkLost, "the link-lost screen");
    term.type_line("q");
    let status = wait_until(WAIT, "floorhand-terminal to quit on q", || {
        term.child.try_wait().unwrap()
    });
    assert!(status.success(), "{status}");
}

#[test]
fn floorhand_terminal_help_explains_the_port_the_output_and_the_keys() {
    let out = Command::new(workspace_bin("floorhand-terminal"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for word in [
        "--port",
        "--out",
        "--display",
        "--ansi",
        "b = back",
        "f1..f4",
    ] {
        assert!(help.contains(word), "{word} missing in:\n{help}");
    }
}

#[test]
fn floorhand_terminal_names_a_port_it_cannot_open() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-tty");
    let out = Command::new(workspace_bin("floorhand-terminal"))
        .arg("--port")
        .arg(&missing)
        .arg("--out")
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot open serial port"), "{err}");
    assert!(err.contains("no-such-tty"), "{err}");
}
