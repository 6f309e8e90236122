//! Test rigs shared by `tests/`, `floorhand demo` and `floorhand-bench` (feature `sim`):
//! one Mosquitto launcher and one fake Zebra printer. Never in a station's build.

pub mod fake_printer;
pub mod mosquitto;
