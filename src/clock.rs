//! The wall clock as Unix time. Only for what is written down or compared with other
//! machines' clocks (heartbeat payloads, record timestamps, exported timestamps); durations are
//! always measured with the monotonic clock (`Instant`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as i64)
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch, as Kafka record timestamps are written.
pub fn unix_millis() -> i64 {
    unix_micros() / 1000
}

/// Seconds since the Unix epoch, as Prometheus timestamps are exported.
pub fn unix_seconds() -> f64 {
    unix_micros() as f64 / 1e6
}
