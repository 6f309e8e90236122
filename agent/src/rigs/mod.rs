//! Test rigs shared by `tests/`, `floorhand demo` and `floorhand-bench` (feature `sim`):
//! one Mosquitto launcher, one fake Zebra printer and one pty pair (the serial cable).
//! Never in a station's build.

pub mod fake_printer;
pub mod mosquitto;
pub mod pty;
