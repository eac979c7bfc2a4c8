//! Log set-up (`tracing`, human or JSON) and the throttle that keeps repeated errors from
//! flooding the log.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::sync::lock;

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `level`.
pub fn init(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true);
    // A second initialisation (tests, embedding) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// How often a repeated message is logged again, with the count of what was held back.
pub(crate) const REPEAT_SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// Decides which of many identical log messages to write: the first, then one summary per
/// [`REPEAT_SUMMARY_INTERVAL`] saying how many were held back.
#[derive(Debug, Default)]
pub(crate) struct LogThrottle {
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

/// Cap on distinct keys remembered; beyond it the memory is cleared (bounded, never grows).
const MAX_KEYS: usize = 1024;

impl LogThrottle {
    /// `Some(held_back)` when a message with this key should be written now, where
    /// `held_back` is how many were suppressed since the last one; `None` to stay quiet.
    pub(crate) fn admit(&self, key: &str) -> Option<u64> {
        self.admit_at(key, Instant::now())
    }

    fn admit_at(&self, key: &str, now: Instant) -> Option<u64> {
        let mut seen = lock(&self.seen);
        if seen.len() >= MAX_KEYS && !seen.contains_key(key) {
            seen.clear();
        }
        match seen.get_mut(key) {
            Some((last, held_back))
                if now.saturating_duration_since(*last) < REPEAT_SUMMARY_INTERVAL =>
            {
                *held_back += 1;
                None
            }
            Some((last, held_back)) => {
                let count = *held_back;
                *last = now;
                *held_back = 0;
                Some(count)
            }
            None => {
                seen.insert(key.to_string(), (now, 0));
                Some(0)
            }
        }
    }

    /// Forgets a key, so the next occurrence is logged at once (a state changed back).
    pub(crate) fn reset(&self, key: &str) {
        let mut seen = lock(&self.seen);
        seen.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_summarised() {
        let throttle = LogThrottle::default();
        let start = Instant::now();
        assert_eq!(throttle.admit_at("a", start), Some(0));
        assert_eq!(throttle.admit_at("a", start + Duration::from_secs(1)), None);
        assert_eq!(throttle.admit_at("a", start + Duration::from_secs(2)), None);
        assert_eq!(throttle.admit_at("b", start), Some(0));
        assert_eq!(
            throttle.admit_at("a", start + REPEAT_SUMMARY_INTERVAL),
            Some(2)
        );
        throttle.reset("a");
        assert_eq!(
            throttle.admit_at("a", start + REPEAT_SUMMARY_INTERVAL),
            Some(0)
        );
    }
}
