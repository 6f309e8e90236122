//! The host runner's loop: serial bytes, stdin lines and the clock in; the core's effects
//! out as serial bytes, PNG files, ANSI art and beep lines on stderr.

use std::io::{self, BufRead, Read, Write};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use embedded_graphics::pixelcolor::{BinaryColor, Rgb565, Rgb888};
use embedded_graphics::prelude::*;
use floorhand_protocol::link::Beep;

use crate::board::{Board, RunError, Runner};
use crate::render::{Palette, Profile};
use crate::sim::framebuffer::Framebuffer;
use crate::sim::keys::{self, Input};

/// Which display to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DisplayArg {
    /// 128x64 monochrome (SSD1306 class).
    Mono,
    /// 320x240 colour (ILI9341 class).
    Color,
}

/// Options of `floorhand-terminal`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "floorhand-terminal",
    version,
    about = "Floorhand's display terminal on a Linux host: the firmware's core against a \
             serial port or pty, drawing each new screen to a PNG file.",
    after_help = keys::KEYS_HELP
)]
pub struct Args {
    /// Serial port or pty to talk to the agent on, e.g. /dev/ttyUSB0 or a socat pty link.
    #[arg(long)]
    pub port: PathBuf,
    /// Baud rate (ignored by ptys).
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
    /// Display to simulate.
    #[arg(long, value_enum, default_value_t = DisplayArg::Mono)]
    pub display: DisplayArg,
    /// Directory for the PNG files: `screen-NNNN.png` for every new screen, and
    /// `current.png`, always the latest. Created if missing.
    #[arg(long, default_value = "terminal-screens")]
    pub out: PathBuf,
    /// Also print every new screen as ANSI art on stdout.
    #[arg(long)]
    pub ansi: bool,
}

/// Why the runner stopped.
#[derive(Debug)]
pub enum SimError {
    /// The serial port could not be opened.
    Open(PathBuf, serialport::Error),
    /// The output directory could not be created or written.
    Output(PathBuf, io::Error),
    /// The serial link failed while running.
    Serial(io::Error),
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimError::Open(p, e) => write!(
                f,
                "cannot open serial port {}: {e} (check the path, and that no other program holds it)",
                p.display()
            ),
            SimError::Output(p, e) => write!(
                f,
                "cannot write screens to {}: {e} (pass a writable --out directory)",
                p.display()
            ),
            SimError::Serial(e) => write!(f, "serial link failed: {e}"),
        }
    }
}

impl std::error::Error for SimError {}

struct SimBoard<C> {
    port: Box<dyn serialport::SerialPort>,
    fb: Framebuffer<C>,
    out: PathBuf,
    frames: u32,
    ansi_step: Option<u32>,
}

impl<C> Board for SimBoard<C>
where
    C: PixelColor + Default + Into<Rgb888>,
{
    type Error = SimError;
    type Display = Framebuffer<C>;

    fn write(&mut self, bytes: &[u8]) -> Result<(), SimError> {
        self.port.write_all(bytes).map_err(SimError::Serial)?;
        self.port.flush().map_err(SimError::Serial)
    }

    fn beep(&mut self, pattern: Beep) {
        eprintln!("floorhand-terminal: beep {pattern:?}");
    }

    fn display(&mut self) -> &mut Framebuffer<C> {
        &mut self.fb
    }

    fn flush(&mut self) -> Result<(), SimError> {
        self.frames += 1;
        let numbered = self.out.join(format!("screen-{:04}.png", self.frames));
        let current = self.out.join("current.png");
        for p in [&numbered, &current] {
            self.fb
                .save_png(p)
                .map_err(|e| SimError::Output(p.clone(), e))?;
        }
        if let Some(step) = self.ansi_step {
            let mut out = io::stdout().lock();
            let _ = write!(out, "{}", self.fb.ansi(step));
            let _ = out.flush();
        }
        Ok(())
    }
}

/// Runs the terminal until `q` is typed. Stdin closing does not stop it, so it can run
/// headless with `< /dev/null`.
pub fn run(args: &Args) -> Result<(), SimError> {
    match args.display {
        DisplayArg::Mono => run_with::<BinaryColor>(args, Profile::Mono128x64, 1),
        DisplayArg::Color => run_with::<Rgb565>(args, Profile::Color320x240, 2),
    }
}

fn run_with<C>(args: &Args, profile: Profile, ansi_step: u32) -> Result<(), SimError>
where
    C: PixelColor + Default + Into<Rgb888> + Palette,
{
    std::fs::create_dir_all(&args.out).map_err(|e| SimError::Output(args.out.clone(), e))?;
    let port = serialport::new(args.port.to_string_lossy(), args.baud)
        .timeout(Duration::from_millis(20))
        .open()
        .map_err(|e| SimError::Open(args.port.clone(), e))?;
    let board = SimBoard {
        port,
        fb: Framebuffer::<C>::new(profile.size()),
        out: args.out.clone(),
        frames: 0,
        ansi_step: args.ansi.then_some(ansi_step),
    };
    let mut runner = Runner::new(board, profile);
    let lines = stdin_lines();
    let start = Instant::now();
    let now = || start.elapsed().as_millis() as u64;
    check(runner.start(now()))?;
    let mut buf = [0u8; 256];
    loop {
        let read = runner.board_mut().port.read(&mut buf);
        match read {
            Ok(0) => {}
            Ok(n) => check(runner.on_bytes(now(), &buf[..n]))?,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(SimError::Serial(e)),
        }
        while let Ok(line) = lines.try_recv() {
            match keys::parse(&line) {
                Ok(Input::Quit) => return Ok(()),
                Ok(Input::Keys(keys)) => {
                    for k in keys {
                        check(runner.on_key(now(), k))?;
                    }
                }
                Ok(Input::Scan(data)) => check(runner.on_scan(now(), &data))?,
                Err(msg) => eprintln!("floorhand-terminal: {msg}"),
            }
        }
        check(runner.tick(now()))?;
    }
}

/// Keeps going after an effect failed unless the link itself is gone.
fn check(r: Result<(), RunError<SimError, std::convert::Infallible>>) -> Result<(), SimError> {
    match r {
        Ok(()) => Ok(()),
        Err(RunError::Board(e @ SimError::Serial(_))) => Err(e),
        Err(RunError::Board(e)) => {
            eprintln!("floorhand-terminal: {e}");
            Ok(())
        }
        Err(RunError::Draw(never)) => match never {},
        Err(RunError::Encode(e)) => {
            eprintln!("floorhand-terminal: {e}");
            Ok(())
        }
    }
}

/// Lines from stdin, read on their own thread so the loop never blocks on the keyboard.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
