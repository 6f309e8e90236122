//! Property tests of the terminal's link: random bytes interleaved with valid frames never
//! panic, and every valid frame that follows a delimiter is decoded and shown.

use floorhand_firmware::core::{Terminal, View};
use floorhand_protocol::frame::{self, FrameDecoder};
use floorhand_protocol::limits::MAX_LINK_FRAME;
use floorhand_protocol::link::{Display, Level, Screen, ToTerminal, fit};
use floorhand_protocol::{Envelope, PROTOCOL_VERSION};
use proptest::prelude::*;

fn screen(n: u16, text: &str) -> Screen {
    Screen::Message {
        level: Level::Info,
        text: fit(&format!("{n} {text}")),
    }
}

fn framed(id: u64, msg: &ToTerminal) -> Vec<u8> {
    frame::encode_to_vec(&Envelope::new(id, msg))
}

/// Noise, then a zero byte (the line idles or the noise ends), then a frame.
fn segment(noise: &[u8], frame: &[u8]) -> Vec<u8> {
    let mut s = noise.to_vec();
    s.push(0);
    s.extend_from_slice(frame);
    s
}

proptest! {
    #[test]
    fn noise_between_frames_never_panics_and_never_hides_a_frame(
        parts in prop::collection::vec(
            (prop::collection::vec(any::<u8>(), 0..400), "[ -~]{0,40}"),
            1..12,
        ),
        chunk in 1usize..80,
    ) {
        let mut t = Terminal::new(Display::Mono128x64);
        t.start(0);
        let mut decoder = FrameDecoder::<MAX_LINK_FRAME>::new();
        let mut decoded = Vec::new();
        let mut now = 0;
        for (i, (noise, text)) in parts.iter().enumerate() {
            let shown = screen(i as u16, text);
            let msg = ToTerminal::Show(shown.clone());
            let bytes = segment(noise, &framed(i as u64 + 1, &msg));
            for piece in bytes.chunks(chunk) {
                now += 1;
                t.on_bytes(now, piece);
                t.tick(now);
                decoder.feed::<ToTerminal>(piece, |f| {
                    if let Ok(env) = f {
                        decoded.push(env.body);
                    }
                });
            }
            prop_assert_eq!(t.view(), &View::Screen(shown));
        }
        let sent: Vec<ToTerminal> = parts
            .iter()
            .enumerate()
            .map(|(i, (_, text))| ToTerminal::Show(screen(i as u16, text)))
            .collect();
        prop_assert_eq!(decoded, sent);
    }

    #[test]
    fn random_bytes_alone_never_panic_and_never_show_a_screen(
        bytes in prop::collection::vec(any::<u8>(), 0..2000),
        chunk in 1usize..300,
    ) {
        let mut t = Terminal::new(Display::Color320x240);
        t.start(0);
        for (i, piece) in bytes.chunks(chunk).enumerate() {
            t.on_bytes(i as u64, piece);
            t.tick(i as u64);
        }
        prop_assert!(!matches!(t.view(), View::Screen(_)));
    }
}

#[test]
fn a_hello_after_noise_is_answered() {
    let hello = ToTerminal::Hello(floorhand_protocol::link::Hello {
        protocol: PROTOCOL_VERSION,
        software: fit("0.1.0"),
        display: Display::None,
    });
    let mut t = Terminal::new(Display::Mono128x64);
    t.start(0);
    let fx = t.on_bytes(5, &segment(&[0xff; 300], &framed(1, &hello)));
    assert!(t.link_up());
    assert!(!fx.is_empty());
}
