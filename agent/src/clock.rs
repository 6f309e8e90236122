//! The wall clock, read in one place. Pure code never calls it: workflows and the store
//! take `now` as an argument, so only the shell (runtime, link, CLI) reads the time.

/// Unix seconds now; 0 if the system clock is set before 1970.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Unix milliseconds now; 0 if the system clock is set before 1970.
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
