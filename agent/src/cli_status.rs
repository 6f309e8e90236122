//! `floorhand status --db PATH`: the local mirror's state for a person at the device.

use std::path::Path;

use crate::store::{Db, StoreError};

/// Opens the database read-only (never creating it) and renders its status report as of
/// `now` (unix seconds).
pub fn report(db: &Path, now: u64) -> Result<String, StoreError> {
    let db = Db::open_read_only(db)?;
    Ok(db.status(now)?.to_string())
}
