//! The terminal's state machine: link frames and ticks in, effects out.

use floorhand_protocol::frame::{FrameDecoder, FrameError};
use floorhand_protocol::limits::MAX_LINK_FRAME;
use floorhand_protocol::link::{Beep, Display, FromTerminal, Hello, Screen, ToTerminal};
use floorhand_protocol::{Envelope, PROTOCOL_VERSION};
use heapless::Vec;

/// What the terminal shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// Waiting for the agent's hello.
    Connecting,
    /// The agent speaks another protocol version.
    VersionMismatch {
        /// The agent's version.
        agent: u8,
    },
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

/// Up to this many effects come out of one input.
pub const MAX_EFFECTS: usize = 8;

/// The terminal core.
pub struct Terminal {
    decoder: FrameDecoder<MAX_LINK_FRAME>,
    display: Display,
    view: View,
    bad_frames: u32,
}

impl Terminal {
    /// A terminal driving `display`, waiting for the agent.
    pub fn new(display: Display) -> Self {
        Terminal {
            decoder: FrameDecoder::new(),
            display,
            view: View::Connecting,
            bad_frames: 0,
        }
    }

    /// What to show now.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// Frames dropped for noise or corruption since start.
    pub fn bad_frames(&self) -> u32 {
        self.bad_frames
    }

    /// The hello this terminal sends on start and after every reconnect.
    pub fn hello(&self) -> FromTerminal {
        FromTerminal::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            software: floorhand_protocol::link::fit(env!("CARGO_PKG_VERSION")),
            display: self.display,
        })
    }

    /// Bytes from the serial link.
    pub fn on_bytes(&mut self, bytes: &[u8]) -> Vec<Effect, MAX_EFFECTS> {
        let mut frames: Vec<Result<Envelope<ToTerminal>, FrameError>, MAX_EFFECTS> = Vec::new();
        let mut effects = Vec::new();
        self.decoder.feed(bytes, |f| {
            let _ = frames.push(f);
        });
        for f in frames {
            match f {
                Ok(env) => self.on_message(env.body, &mut effects),
                Err(_) => self.bad_frames = self.bad_frames.saturating_add(1),
            }
        }
        effects
    }

    fn on_message(&mut self, msg: ToTerminal, effects: &mut Vec<Effect, MAX_EFFECTS>) {
        match msg {
            ToTerminal::Hello(h) if h.protocol != PROTOCOL_VERSION => {
                self.view = View::VersionMismatch { agent: h.protocol };
                let _ = effects.push(Effect::Redraw);
            }
            ToTerminal::Hello(_) => {
                let _ = effects.push(Effect::Send(self.hello()));
            }
            ToTerminal::Show(screen) => {
                self.view = View::Screen(screen);
                let _ = effects.push(Effect::Redraw);
            }
            ToTerminal::Beep(b) => {
                let _ = effects.push(Effect::Beep(b));
            }
            ToTerminal::Heartbeat => {
                let _ = effects.push(Effect::Send(FromTerminal::Heartbeat));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floorhand_protocol::frame;
    use floorhand_protocol::link::{Level, fit};

    fn framed(msg: ToTerminal) -> Vec<u8, MAX_LINK_FRAME> {
        let mut scratch = [0u8; MAX_LINK_FRAME];
        let mut out = [0u8; MAX_LINK_FRAME];
        let bytes = frame::encode(&Envelope::new(1, msg), &mut scratch, &mut out).unwrap();
        Vec::from_slice(bytes).unwrap()
    }

    #[test]
    fn a_screen_after_noise_is_shown() {
        let mut t = Terminal::new(Display::Mono128x64);
        let screen = Screen::Message {
            level: Level::Info,
            text: fit("Scan your badge"),
        };
        let mut bytes: Vec<u8, 512> = Vec::from_slice(&[0x13, 0x37, 0xff, 0x00]).unwrap();
        bytes
            .extend_from_slice(&framed(ToTerminal::Show(screen.clone())))
            .unwrap();
        let effects = t.on_bytes(&bytes);
        assert_eq!(effects.as_slice(), &[Effect::Redraw]);
        assert_eq!(t.view(), &View::Screen(screen));
        assert_eq!(t.bad_frames(), 1);
    }

    #[test]
    fn agent_of_another_protocol_version_shows_mismatch() {
        let mut t = Terminal::new(Display::Mono128x64);
        let hello = ToTerminal::Hello(Hello {
            protocol: PROTOCOL_VERSION + 1,
            software: fit("9.9.9"),
            display: Display::None,
        });
        t.on_bytes(&framed(hello));
        assert_eq!(
            t.view(),
            &View::VersionMismatch {
                agent: PROTOCOL_VERSION + 1
            }
        );
    }
}
