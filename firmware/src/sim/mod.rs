//! The host runner (feature `sim`, std): the same terminal core on Linux, against a serial
//! port or a pty, drawing into a framebuffer that is saved as PNG files and optionally
//! printed as ANSI art. `floorhand-terminal` is a thin `main` around [`runner::run`].

pub mod framebuffer;
pub mod keys;
pub mod runner;
