//! The seam between the terminal core and a board: what a board provides (serial out,
//! buzzer, a display), and [`Runner`], which feeds the core and carries out its effects.
//!
//! Reading the UART, the keypad and the clock stays with the board's main loop, which
//! calls the [`Runner`] methods with what it read and the time.

use embedded_graphics::draw_target::DrawTarget;
use floorhand_protocol::frame;
use floorhand_protocol::limits::MAX_LINK_FRAME;
use floorhand_protocol::link::{Beep, FromTerminal, Key};
use floorhand_protocol::{EncodeError, Envelope};

use crate::core::{Effect, Effects, Terminal};
use crate::render::{self, Palette, Profile};

/// The word a board fills its unused stack with at start, so that the stack's peak can
/// be read afterwards (by a debugger, or the QEMU test through the monitor): the deepest
/// word no longer holding it.
pub const STACK_PAINT: u32 = 0xC0FF_EE55;

/// What a board gives the terminal.
pub trait Board {
    /// Error of the serial link or of showing a frame.
    type Error;
    /// The display, drawn through embedded-graphics.
    type Display: DrawTarget;

    /// Writes all of `bytes` to the serial link.
    fn write(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;
    /// Sounds the buzzer (without blocking: the board times the pattern).
    fn beep(&mut self, pattern: Beep);
    /// The display to draw on.
    fn display(&mut self) -> &mut Self::Display;
    /// Shows what was drawn (for buffered displays; a no-op for direct ones).
    fn flush(&mut self) -> Result<(), Self::Error>;
}

/// Why an effect could not be carried out. The core's state is unaffected: the next input
/// is handled as usual.
#[derive(Debug)]
pub enum RunError<B, D> {
    /// The board's serial link or display flush failed.
    Board(B),
    /// Drawing on the display failed.
    Draw(D),
    /// A message did not fit a link frame (a bug: every `FromTerminal` fits).
    Encode(EncodeError),
}

/// Result of one input handed to the [`Runner`].
pub type RunResult<B> =
    Result<(), RunError<<B as Board>::Error, <<B as Board>::Display as DrawTarget>::Error>>;

/// The core wired to a board.
pub struct Runner<B: Board> {
    terminal: Terminal,
    board: B,
    profile: Profile,
    next_msg_id: u64,
}

impl<B> Runner<B>
where
    B: Board,
    <B::Display as DrawTarget>::Color: Palette,
{
    /// A runner for `board`, whose display has `profile`'s layout.
    pub fn new(board: B, profile: Profile) -> Self {
        Runner {
            terminal: Terminal::new(profile.display()),
            board,
            profile,
            next_msg_id: 1,
        }
    }

    /// The core, to look at.
    pub fn terminal(&self) -> &Terminal {
        &self.terminal
    }

    /// The board, to look at.
    pub fn board(&self) -> &B {
        &self.board
    }

    /// The board, to read from its serial link in the main loop.
    pub fn board_mut(&mut self) -> &mut B {
        &mut self.board
    }

    /// Powered on.
    pub fn start(&mut self, now_ms: u64) -> RunResult<B> {
        let fx = self.terminal.start(now_ms);
        self.apply(&fx)
    }

    /// Bytes read from the serial link.
    pub fn on_bytes(&mut self, now_ms: u64, bytes: &[u8]) -> RunResult<B> {
        let fx = self.terminal.on_bytes(now_ms, bytes);
        self.apply(&fx)
    }

    /// A key was pressed.
    pub fn on_key(&mut self, now_ms: u64, key: Key) -> RunResult<B> {
        let fx = self.terminal.on_key(now_ms, key);
        self.apply(&fx)
    }

    /// A barcode was scanned.
    pub fn on_scan(&mut self, now_ms: u64, data: &[u8]) -> RunResult<B> {
        let fx = self.terminal.on_scan(now_ms, data);
        self.apply(&fx)
    }

    /// Time passed.
    pub fn tick(&mut self, now_ms: u64) -> RunResult<B> {
        let fx = self.terminal.tick(now_ms);
        self.apply(&fx)
    }

    // By reference: `Effects` is over a kilobyte (a scan's bytes in each slot), and every
    // move of it is a copy on a microcontroller's stack.
    fn apply(&mut self, fx: &Effects) -> RunResult<B> {
        for e in fx {
            match e {
                Effect::Send(msg) => self.send(msg)?,
                Effect::Beep(b) => self.board.beep(*b),
                Effect::Redraw => {
                    render::draw(self.terminal.view(), self.profile, self.board.display())
                        .map_err(RunError::Draw)?;
                    self.board.flush().map_err(RunError::Board)?;
                }
            }
        }
        Ok(())
    }

    fn send(&mut self, msg: &FromTerminal) -> RunResult<B> {
        let mut scratch = [0u8; MAX_LINK_FRAME];
        let mut out = [0u8; MAX_LINK_FRAME];
        let env = Envelope::new(self.next_msg_id, msg);
        self.next_msg_id = floorhand_protocol::link::next_link_msg_id(self.next_msg_id);
        let bytes = frame::encode(&env, &mut scratch, &mut out).map_err(RunError::Encode)?;
        self.board.write(bytes).map_err(RunError::Board)
    }
}
