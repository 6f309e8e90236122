//! Test rigs shared by `tests/`, `floorhand demo` and `floorhand-bench` (feature `sim`):
//! one Mosquitto launcher. Never in a station's build.

pub mod mosquitto;
