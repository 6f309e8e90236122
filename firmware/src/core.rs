//! The terminal's state machine: link bytes, key presses, scans and timer ticks in,
//! effects out.
//!
//! The core never reads a clock and never touches hardware: every input carries `now_ms`
//! (milliseconds from any fixed start, e.g. boot), and every output is an [`Effect`] that
//! the board carries out.
//!
//! The link, from the terminal's side:
//! - On start, and every [`HELLO_RETRY_MS`] while no agent has answered (or the link was
//!   lost), the terminal sends its [`Hello`].
//! - It answers every agent `Hello` with its own, and every agent `Heartbeat` with one.
//! - Any good frame from the agent proves the link alive. No good frame for
//!   [`LINK_TIMEOUT_MS`] means the agent is gone: the view becomes [`View::LinkLost`].
//! - A good frame after the link was lost, other than a screen, makes the terminal say
//!   `Hello` again, which makes the agent re-send the current screen (resync).
//! - Garbage on the line costs the frame it is in, never the next good one: COBS frames
//!   end at the next zero byte, and the CRC catches corrupt ones.

use floorhand_protocol::envelope::DecodeError;
use floorhand_protocol::frame::{FrameDecoder, FrameError};
use floorhand_protocol::limits::MAX_LINK_FRAME;
use floorhand_protocol::link::{
    Beep, Display, FromTerminal, Hello, Key, Level, Scan, Screen, ToTerminal,
};
use floorhand_protocol::{Envelope, PROTOCOL_VERSION};
use heapless::Vec;

/// How often the terminal repeats its `Hello` while no agent answers.
pub const HELLO_RETRY_MS: u64 = 1_000;

/// Silence from the agent for this long means the link is lost. The agent sends a
/// heartbeat every second, so two can go missing first; and a picker sees "link lost"
/// within 4 s of the agent stopping (issue 19) even when its last heartbeat came just
/// before, with the board's tick (100 ms on the LM3S6965) and the redraw on top.
pub const LINK_TIMEOUT_MS: u64 = 3_000;

/// What the terminal shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// Waiting for the agent's hello or first screen.
    Connecting,
    /// The agent speaks another protocol version.
    VersionMismatch {
        /// The agent's version.
        agent: u8,
    },
    /// The agent stopped answering (no frame within [`LINK_TIMEOUT_MS`]).
    LinkLost,
    /// A screen from the agent.
    Screen(Screen),
}

/// Something the board must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send this message to the agent.
    Send(FromTerminal),
    /// Sound the buzzer.
    Beep(Beep),
    /// The view changed: redraw.
    Redraw,
}

/// Most effects one input can cause. Equal effects are merged, so this holds every
/// distinct effect one call can return (two sends, three beeps, a redraw).
pub const MAX_EFFECTS: usize = 8;

/// The effects of one input, in order.
pub type Effects = Vec<Effect, MAX_EFFECTS>;

/// Where the handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// No agent has answered since start; saying hello every [`HELLO_RETRY_MS`].
    Waiting { next_hello_ms: u64 },
    /// The agent is alive.
    Up,
    /// The agent went silent; saying hello every [`HELLO_RETRY_MS`].
    Lost { next_hello_ms: u64 },
    /// The agent speaks another version; waiting for it to say hello again.
    Incompatible,
}

/// The terminal core.
pub struct Terminal {
    decoder: FrameDecoder<MAX_LINK_FRAME>,
    state: State,
}

/// Everything but the decoder, so frames can be handled while the decoder is borrowed.
struct State {
    display: Display,
    view: View,
    link: Link,
    last_rx_ms: u64,
    bad_frames: u32,
}

impl Terminal {
    /// A terminal driving `display`, waiting for the agent. Call [`Terminal::start`] next.
    pub fn new(display: Display) -> Self {
        Terminal {
            decoder: FrameDecoder::new(),
            state: State {
                display,
                view: View::Connecting,
                link: Link::Waiting { next_hello_ms: 0 },
                last_rx_ms: 0,
                bad_frames: 0,
            },
        }
    }

    /// What to show now.
    pub fn view(&self) -> &View {
        &self.state.view
    }

    /// The display this terminal drives.
    pub fn display(&self) -> Display {
        self.state.display
    }

    /// Frames dropped for noise or corruption since start.
    pub fn bad_frames(&self) -> u32 {
        self.state.bad_frames
    }

    /// Whether the agent is answering.
    pub fn link_up(&self) -> bool {
        self.state.link == Link::Up
    }

    /// The hello this terminal sends on start and after every reconnect.
    pub fn hello(&self) -> FromTerminal {
        self.state.hello()
    }

    /// Powered on: say hello and draw the first view.
    pub fn start(&mut self, now_ms: u64) -> Effects {
        let mut fx = Effects::new();
        self.state.link = Link::Waiting {
            next_hello_ms: now_ms + HELLO_RETRY_MS,
        };
        self.state.last_rx_ms = now_ms;
        push(&mut fx, Effect::Send(self.state.hello()));
        push(&mut fx, Effect::Redraw);
        fx
    }

    /// Bytes from the serial link, any amount, frames split or joined anywhere.
    pub fn on_bytes(&mut self, now_ms: u64, bytes: &[u8]) -> Effects {
        let mut fx = Effects::new();
        let state = &mut self.state;
        self.decoder
            .feed::<ToTerminal>(bytes, |frame| state.on_frame(now_ms, frame, &mut fx));
        fx
    }

    /// A key was pressed. Keys go to the agent only while it answers; otherwise the
    /// buzzer says that nobody is listening.
    pub fn on_key(&mut self, _now_ms: u64, key: Key) -> Effects {
        let mut fx = Effects::new();
        if self.state.accepts_input() {
            push(&mut fx, Effect::Send(FromTerminal::Key(key)));
        } else {
            push(&mut fx, Effect::Beep(Beep::Error));
        }
        fx
    }

    /// A scanner attached to the terminal read `data`. Too long a barcode is refused with
    /// the error beep rather than sent cut.
    pub fn on_scan(&mut self, _now_ms: u64, data: &[u8]) -> Effects {
        let mut fx = Effects::new();
        match Vec::from_slice(data) {
            Ok(data) if self.state.accepts_input() => {
                push(&mut fx, Effect::Send(FromTerminal::Scan(Scan { data })));
            }
            _ => push(&mut fx, Effect::Beep(Beep::Error)),
        }
        fx
    }

    /// Time passed. Call at least every few hundred milliseconds.
    pub fn tick(&mut self, now_ms: u64) -> Effects {
        let mut fx = Effects::new();
        let s = &mut self.state;
        match s.link {
            Link::Up if now_ms.saturating_sub(s.last_rx_ms) >= LINK_TIMEOUT_MS => {
                s.link = Link::Lost {
                    next_hello_ms: now_ms + HELLO_RETRY_MS,
                };
                s.set_view(View::LinkLost, &mut fx);
                push(&mut fx, Effect::Beep(Beep::Attention));
                push(&mut fx, Effect::Send(s.hello()));
            }
            Link::Waiting { next_hello_ms } if now_ms >= next_hello_ms => {
                s.link = Link::Waiting {
                    next_hello_ms: now_ms + HELLO_RETRY_MS,
                };
                push(&mut fx, Effect::Send(s.hello()));
            }
            Link::Lost { next_hello_ms } if now_ms >= next_hello_ms => {
                s.link = Link::Lost {
                    next_hello_ms: now_ms + HELLO_RETRY_MS,
                };
                push(&mut fx, Effect::Send(s.hello()));
            }
            _ => {}
        }
        fx
    }
}

impl State {
    fn hello(&self) -> FromTerminal {
        FromTerminal::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            software: floorhand_protocol::link::fit(env!("CARGO_PKG_VERSION")),
            display: self.display,
        })
    }

    fn accepts_input(&self) -> bool {
        self.link == Link::Up && matches!(self.view, View::Screen(_))
    }

    fn set_view(&mut self, view: View, fx: &mut Effects) {
        if self.view != view {
            self.view = view;
            push(fx, Effect::Redraw);
        }
    }

    fn on_frame(
        &mut self,
        now_ms: u64,
        frame: Result<Envelope<ToTerminal>, FrameError>,
        fx: &mut Effects,
    ) {
        let msg = match frame {
            Ok(env) => env.body,
            Err(FrameError::Decode(DecodeError::UnsupportedVersion { got, .. })) => {
                // A well-formed frame from an agent of another version: say so on screen
                // instead of silently dropping everything it sends.
                self.link = Link::Incompatible;
                self.set_view(View::VersionMismatch { agent: got }, fx);
                return;
            }
            Err(_) => {
                self.bad_frames = self.bad_frames.saturating_add(1);
                return;
            }
        };
        self.last_rx_ms = now_ms;
        let was = self.link;
        match msg {
            ToTerminal::Hello(h) if h.protocol != PROTOCOL_VERSION => {
                self.link = Link::Incompatible;
                self.set_view(View::VersionMismatch { agent: h.protocol }, fx);
            }
            ToTerminal::Hello(_) => {
                self.link = Link::Up;
                if !matches!(self.view, View::Screen(_)) {
                    self.set_view(View::Connecting, fx);
                }
                push(fx, Effect::Send(self.hello()));
            }
            ToTerminal::Show(screen) => {
                self.link = Link::Up;
                let new = View::Screen(screen);
                if let View::Screen(Screen::Message { level, .. }) = &new
                    && self.view != new
                {
                    match level {
                        Level::Error => push(fx, Effect::Beep(Beep::Error)),
                        Level::Warning => push(fx, Effect::Beep(Beep::Attention)),
                        Level::Info | Level::Ok => {}
                    }
                }
                self.set_view(new, fx);
            }
            ToTerminal::Beep(b) => {
                self.resync(was, fx);
                push(fx, Effect::Beep(b));
            }
            ToTerminal::Heartbeat => {
                self.resync(was, fx);
                push(fx, Effect::Send(FromTerminal::Heartbeat));
            }
        }
    }

    /// A frame other than hello or a screen came from an agent we had no handshake with
    /// (after start or a lost link): say hello so it re-sends the current screen.
    fn resync(&mut self, was: Link, fx: &mut Effects) {
        match was {
            Link::Up => {}
            Link::Incompatible => {}
            Link::Waiting { .. } | Link::Lost { .. } => {
                self.link = Link::Up;
                if self.view == View::LinkLost {
                    self.set_view(View::Connecting, fx);
                }
                push(fx, Effect::Send(self.hello()));
            }
        }
    }
}

/// Adds `e` unless an equal effect is already there: one redraw, one hello, one
/// heartbeat answer per input is enough however many frames arrived.
fn push(fx: &mut Effects, e: Effect) {
    if !fx.contains(&e) {
        // Cannot fail: there are fewer distinct effects than MAX_EFFECTS, see its doc.
        let _ = fx.push(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floorhand_protocol::frame;
    use floorhand_protocol::link::{Level, fit};

    fn framed_with(version: u8, msg: ToTerminal) -> Vec<u8, MAX_LINK_FRAME> {
        let mut scratch = [0u8; MAX_LINK_FRAME];
        let mut out = [0u8; MAX_LINK_FRAME];
        let mut env = Envelope::new(1, msg);
        env.version = version;
        let bytes = frame::encode(&env, &mut scratch, &mut out).unwrap();
        Vec::from_slice(bytes).unwrap()
    }

    fn framed(msg: ToTerminal) -> Vec<u8, MAX_LINK_FRAME> {
        framed_with(PROTOCOL_VERSION, msg)
    }

    fn agent_hello(protocol: u8) -> ToTerminal {
        ToTerminal::Hello(Hello {
            protocol,
            software: fit("0.1.0"),
            display: Display::None,
        })
    }

    fn message(level: Level, text: &str) -> Screen {
        Screen::Message {
            level,
            text: fit(text),
        }
    }

    /// A terminal that has shaken hands and shows `screen`.
    fn linked(now: u64, screen: &Screen) -> Terminal {
        let mut t = Terminal::new(Display::Mono128x64);
        t.start(0);
        t.on_bytes(now, &framed(agent_hello(PROTOCOL_VERSION)));
        t.on_bytes(now, &framed(ToTerminal::Show(screen.clone())));
        assert!(t.link_up());
        t
    }

    fn sent(fx: &Effects) -> impl Iterator<Item = &FromTerminal> {
        fx.iter().filter_map(|e| match e {
            Effect::Send(m) => Some(m),
            _ => None,
        })
    }

    fn says_hello(fx: &Effects) -> bool {
        sent(fx).any(|m| matches!(m, FromTerminal::Hello(_)))
    }

    #[test]
    fn start_says_hello_and_draws_connecting() {
        let mut t = Terminal::new(Display::Color320x240);
        let fx = t.start(0);
        assert!(says_hello(&fx));
        assert!(fx.contains(&Effect::Redraw));
        assert_eq!(t.view(), &View::Connecting);
    }

    #[test]
    fn hello_is_repeated_until_the_agent_answers() {
        let mut t = Terminal::new(Display::Mono128x64);
        t.start(0);
        assert!(t.tick(500).is_empty());
        assert!(says_hello(&t.tick(HELLO_RETRY_MS)));
        assert!(t.tick(HELLO_RETRY_MS + 10).is_empty());
        t.on_bytes(1_500, &framed(agent_hello(PROTOCOL_VERSION)));
        assert!(t.link_up());
        assert!(!says_hello(&t.tick(2 * HELLO_RETRY_MS + 10)));
    }

    #[test]
    fn a_screen_after_noise_is_shown() {
        let mut t = Terminal::new(Display::Mono128x64);
        let screen = message(Level::Info, "Scan your badge");
        let mut bytes: Vec<u8, 512> = Vec::from_slice(&[0x13, 0x37, 0xff, 0x00]).unwrap();
        bytes
            .extend_from_slice(&framed(ToTerminal::Show(screen.clone())))
            .unwrap();
        let fx = t.on_bytes(0, &bytes);
        assert_eq!(fx.as_slice(), &[Effect::Redraw]);
        assert_eq!(t.view(), &View::Screen(screen));
        assert_eq!(t.bad_frames(), 1);
    }

    #[test]
    fn the_same_screen_twice_redraws_once() {
        let screen = message(Level::Info, "Scan your badge");
        let mut t = linked(0, &screen);
        assert!(t.on_bytes(10, &framed(ToTerminal::Show(screen))).is_empty());
    }

    #[test]
    fn an_error_message_sounds_the_error_beep() {
        let mut t = linked(0, &message(Level::Info, "Hi"));
        let fx = t.on_bytes(10, &framed(ToTerminal::Show(message(Level::Error, "No"))));
        assert!(fx.contains(&Effect::Beep(Beep::Error)));
        assert!(fx.contains(&Effect::Redraw));
    }

    #[test]
    fn agent_of_another_protocol_version_shows_mismatch() {
        let mut t = Terminal::new(Display::Mono128x64);
        t.on_bytes(0, &framed(agent_hello(PROTOCOL_VERSION + 1)));
        assert_eq!(
            t.view(),
            &View::VersionMismatch {
                agent: PROTOCOL_VERSION + 1
            }
        );
    }

    #[test]
    fn an_envelope_of_another_version_shows_mismatch_instead_of_silence() {
        let mut t = Terminal::new(Display::Mono128x64);
        t.on_bytes(0, &framed_with(PROTOCOL_VERSION + 1, agent_hello(9)));
        assert_eq!(
            t.view(),
            &View::VersionMismatch {
                agent: PROTOCOL_VERSION + 1
            }
        );
        assert!(!t.link_up());
    }

    #[test]
    fn heartbeats_are_answered_and_keep_the_link_up() {
        let screen = message(Level::Info, "Hi");
        let mut t = linked(0, &screen);
        for s in 1..10u64 {
            let fx = t.on_bytes(s * 1_000, &framed(ToTerminal::Heartbeat));
            assert_eq!(fx.as_slice(), &[Effect::Send(FromTerminal::Heartbeat)]);
            assert!(t.tick(s * 1_000 + 900).is_empty());
        }
        assert_eq!(t.view(), &View::Screen(screen));
    }

    #[test]
    fn silence_past_the_timeout_shows_link_lost_and_keys_are_refused() {
        let mut t = linked(0, &message(Level::Info, "Hi"));
        assert!(t.tick(LINK_TIMEOUT_MS - 1).is_empty());
        let fx = t.tick(LINK_TIMEOUT_MS);
        assert_eq!(t.view(), &View::LinkLost);
        assert!(fx.contains(&Effect::Redraw));
        assert!(says_hello(&fx));
        let fx = t.on_key(LINK_TIMEOUT_MS + 1, Key::Enter);
        assert_eq!(fx.as_slice(), &[Effect::Beep(Beep::Error)]);
    }

    #[test]
    fn a_heartbeat_after_a_lost_link_makes_the_terminal_say_hello_again() {
        let mut t = linked(0, &message(Level::Info, "Hi"));
        t.tick(LINK_TIMEOUT_MS);
        assert!(says_hello(&t.tick(LINK_TIMEOUT_MS + HELLO_RETRY_MS)));
        let fx = t.on_bytes(9_000, &framed(ToTerminal::Heartbeat));
        assert!(says_hello(&fx));
        assert!(fx.contains(&Effect::Send(FromTerminal::Heartbeat)));
        assert_eq!(t.view(), &View::Connecting);
        let screen = message(Level::Ok, "Back");
        t.on_bytes(9_010, &framed(ToTerminal::Show(screen.clone())));
        assert_eq!(t.view(), &View::Screen(screen));
        assert_eq!(
            t.on_key(9_020, Key::Digit(4)).as_slice(),
            &[Effect::Send(FromTerminal::Key(Key::Digit(4)))]
        );
    }

    #[test]
    fn keys_and_scans_go_to_the_agent_while_a_screen_is_shown() {
        let mut t = linked(0, &message(Level::Info, "Hi"));
        assert_eq!(
            t.on_key(1, Key::F(2)).as_slice(),
            &[Effect::Send(FromTerminal::Key(Key::F(2)))]
        );
        let fx = t.on_scan(2, b"0109506000134352");
        assert!(matches!(
            fx.as_slice(),
            [Effect::Send(FromTerminal::Scan(s))] if s.data.as_slice() == b"0109506000134352"
        ));
        let too_long = [b'9'; 200];
        assert_eq!(
            t.on_scan(3, &too_long).as_slice(),
            &[Effect::Beep(Beep::Error)]
        );
    }

    #[test]
    fn many_frames_in_one_read_merge_their_effects() {
        let mut t = linked(0, &message(Level::Info, "Hi"));
        let mut bytes: Vec<u8, 4096> = Vec::new();
        for _ in 0..20 {
            bytes
                .extend_from_slice(&framed(ToTerminal::Heartbeat))
                .unwrap();
        }
        let fx = t.on_bytes(5, &bytes);
        assert_eq!(fx.as_slice(), &[Effect::Send(FromTerminal::Heartbeat)]);
    }
}
