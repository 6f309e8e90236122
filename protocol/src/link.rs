//! Messages between the agent and the picker's display terminal, over a serial link.
//!
//! The agent sends compact screen models, not pixels: a 320x240 colour frame takes 13 s at
//! 115200 baud, a [`Screen`] a few milliseconds. Only `heapless` types, so the firmware needs
//! no allocator. Frame these with [`crate::frame`].

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

use crate::limits::MAX_SCAN_BYTES;

/// Which display a terminal drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Display {
    /// The agent's side of the handshake: no display.
    None,
    /// 128x64 monochrome (SSD1306 class).
    Mono128x64,
    /// 320x240 colour (ILI9341 class).
    Color320x240,
}

/// First message on the link, from both sides, and again after every reconnect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`crate::PROTOCOL_VERSION`] of the sender.
    pub protocol: u8,
    /// Software version of the sender, e.g. `0.1.0`.
    pub software: String<16>,
    /// The sender's display.
    pub display: Display,
}

/// What a scan prompt asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScanTarget {
    /// An operator badge, to log in.
    Badge,
    /// A location barcode (or its check code).
    Location,
    /// An item barcode.
    Item,
    /// A tote.
    Tote,
    /// A lot number.
    Lot,
    /// A serial number.
    Serial,
    /// An expiry date.
    Expiry,
    /// An order or tote at a pack station.
    Order,
    /// A carton's SSCC.
    Carton,
}

/// Pick this many of this item here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickPrompt {
    /// Location code, shown large.
    pub location: String<14>,
    /// Item description, cut to fit.
    pub item: String<24>,
    /// Units still to pick for this task.
    pub qty: u16,
    /// Tasks done in the wave.
    pub done: u16,
    /// Tasks in the wave.
    pub total: u16,
}

/// A short-pick reason offered in a menu. The terminal owns the labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MenuReason {
    /// Nothing at the location.
    LocationEmpty,
    /// Damaged units.
    Damaged,
    /// Another item in the location.
    WrongItem,
    /// Not enough units.
    NotEnough,
}

/// How serious a message is; decides colour and buzzer pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Level {
    /// Information.
    Info,
    /// Something succeeded.
    Ok,
    /// Needs attention.
    Warning,
    /// Something was refused; the picker must act.
    Error,
}

/// A screen model. The terminal decides layout, fonts and colours per display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Screen {
    /// Go here, pick this.
    Pick(PickPrompt),
    /// Scan something.
    Scan {
        /// What to scan.
        target: ScanTarget,
        /// A hint, e.g. the expected location or item.
        hint: String<32>,
    },
    /// Type a quantity.
    Quantity {
        /// What the number is for.
        prompt: String<24>,
        /// Value typed so far.
        value: u32,
        /// Largest value allowed.
        max: u32,
    },
    /// Choose a short-pick reason.
    Reasons {
        /// The choices, in order.
        options: Vec<MenuReason, 6>,
        /// Index of the highlighted choice.
        selected: u8,
    },
    /// A message or error.
    Message {
        /// Severity.
        level: Level,
        /// Text, cut to fit.
        text: String<48>,
    },
    /// The agent has no link to the OMS; work goes on and is queued.
    Offline {
        /// Events waiting to be sent.
        backlog: u32,
        /// Seconds since the link was lost.
        since_s: u32,
    },
    /// The wave is complete.
    WaveDone {
        /// Tasks picked in full.
        picked: u16,
        /// Tasks short-picked.
        short: u16,
    },
}

/// Buzzer patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Beep {
    /// One short beep: accepted.
    Ok,
    /// Three low beeps: refused.
    Error,
    /// Two beeps: look at the screen.
    Attention,
}

/// A key on the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Key {
    /// A digit 0-9.
    Digit(u8),
    /// Confirm.
    Enter,
    /// Go back / cancel.
    Back,
    /// Move up in a menu.
    Up,
    /// Move down in a menu.
    Down,
    /// Clear the typed value.
    Clear,
    /// Function key 1-4 (short, skip, undo, ...: the agent's screen says which).
    F(u8),
}

/// A barcode read by a scanner attached to the terminal, raw bytes including GS (0x1D).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scan {
    /// The bytes as the scanner sent them, prefix and suffix removed.
    pub data: Vec<u8, MAX_SCAN_BYTES>,
}

/// Agent → terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToTerminal {
    /// Handshake.
    Hello(Hello),
    /// Show a screen.
    Show(Screen),
    /// Sound the buzzer.
    Beep(Beep),
    /// The agent is alive.
    Heartbeat,
}

/// Terminal → agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromTerminal {
    /// Handshake.
    Hello(Hello),
    /// A key press.
    Key(Key),
    /// A barcode from a scanner on the terminal.
    Scan(Scan),
    /// The terminal is alive.
    Heartbeat,
}

/// The link message id after `id`: counts up to [`crate::limits::MAX_LINK_MSG_ID`], then
/// starts again at 1.
pub fn next_link_msg_id(id: u64) -> u64 {
    if id >= crate::limits::MAX_LINK_MSG_ID {
        1
    } else {
        id + 1
    }
}

/// Copies `s` into a heapless string, cutting it at a character boundary to fit, and
/// marking the cut with `…` so a person sees that text is missing.
pub fn fit<const N: usize>(s: &str) -> String<N> {
    let mut out = String::new();
    if s.len() <= N {
        // Cannot fail: the length was checked.
        let _ = out.push_str(s);
        return out;
    }
    const ELLIPSIS: char = '…';
    let room = N.saturating_sub(ELLIPSIS.len_utf8());
    for c in s.chars() {
        if out.len() + c.len_utf8() > room {
            break;
        }
        let _ = out.push(c);
    }
    let _ = out.push(ELLIPSIS);
    out
}
