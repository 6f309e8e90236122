//! Device checks for `floorhand doctor`: one [`Check`] per configured scanner, printer
//! and terminal port (open it; for the printer, query its status).
//!
//! This is the extension point for the device sections of the configuration: each
//! configured device adds its checks here, named after its config key (`scanner`,
//! `printer`, `terminal`), with a fix a technician can act on. With no device sections
//! configured there is nothing to check.

use super::Check;
use crate::config::Config;

/// The checks for every device `cfg` configures, in config order.
pub async fn checks(cfg: &Config) -> Vec<Check> {
    let _ = cfg;
    Vec::new()
}
