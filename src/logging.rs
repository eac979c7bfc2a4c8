//! Log set-up (`tracing`, human or JSON) and the throttle that keeps repeated errors from
//! flooding the log.
//!
//! - `events`: the last warnings and errors, kept for `/debug/events` and the support bundle.

mod events;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use self::events::{mask_secrets, recent_events, LoggedEvent, EVENTS_KEPT};

use crate::config::LogFormat;
use crate::sync::lock;

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `level`. Warnings and
/// errors are also kept in the ring of [`recent_events`], whatever the level.
pub fn init(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true);
    let output = match format {
        LogFormat::Text => output.boxed(),
        LogFormat::Json => output.json().flatten_event(true).boxed(),
    };
    // A second initialisation (tests, embedding) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(output.with_filter(filter))
        .with(events::layer())
        .try_init();
}

/// How often a repeated message is logged again, with the count of what was held back.
pub(crate) const REPEAT_SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// Decides which of many identical log messages to write: the first, then one summary per
/// [`REPEAT_SUMMARY_INTERVAL`] saying how many were held back. It also remembers when a spell
/// of them began, so its end can be told with how long it lasted.
#[derive(Debug, Default)]
pub(crate) struct LogThrottle {
    seen: Mutex<HashMap<String, Seen>>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    /// The spell's first occurrence.
    since: Instant,
    /// When the message was last written.
    written: Instant,
    held_back: u64,
    /// Everything the spell counted (see [`LogThrottle::admit_counting`]).
    counted: u64,
}

/// A spell of one message, ended by [`LogThrottle::reset`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Spell {
    /// From its first occurrence until it ended.
    pub lasted: Duration,
    /// What it counted: occurrences, or the sum given to [`LogThrottle::admit_counting`].
    pub counted: u64,
}

impl Spell {
    /// Its duration for a log line, e.g. `12.0s`.
    pub(crate) fn seconds(&self) -> String {
        format!("{:.1}s", self.lasted.as_secs_f64())
    }
}

/// Cap on distinct keys remembered; beyond it the memory is cleared (bounded, never grows).
const MAX_KEYS: usize = 1024;

impl LogThrottle {
    /// `Some(held_back)` when a message with this key should be written now, where
    /// `held_back` is how many were suppressed since the last one (`None` when none were, so a
    /// `held_back` field is left out of the line); `None` to stay quiet.
    pub(crate) fn admit(&self, key: &str) -> Option<Option<u64>> {
        self.admit_at(key, 1, Instant::now())
    }

    /// As [`Self::admit`], for an occurrence that stands for `count` things (heartbeats lost in
    /// one second), which the spell adds up.
    pub(crate) fn admit_counting(&self, key: &str, count: u64) -> Option<Option<u64>> {
        self.admit_at(key, count, Instant::now())
    }

    fn admit_at(&self, key: &str, count: u64, now: Instant) -> Option<Option<u64>> {
        let mut seen = lock(&self.seen);
        if seen.len() >= MAX_KEYS && !seen.contains_key(key) {
            seen.clear();
        }
        match seen.get_mut(key) {
            Some(entry) => {
                entry.counted = entry.counted.saturating_add(count);
                if now.saturating_duration_since(entry.written) < REPEAT_SUMMARY_INTERVAL {
                    entry.held_back += 1;
                    return None;
                }
                let held_back = std::mem::take(&mut entry.held_back);
                entry.written = now;
                Some((held_back > 0).then_some(held_back))
            }
            None => {
                let entry = Seen {
                    since: now,
                    written: now,
                    held_back: 0,
                    counted: count,
                };
                seen.insert(key.to_string(), entry);
                Some(None)
            }
        }
    }

    /// Forgets a key, so the next occurrence is logged at once (a state changed back); returns
    /// the spell that ended, if one was under way, for the line that says so.
    pub(crate) fn reset(&self, key: &str) -> Option<Spell> {
        self.reset_at(key, Instant::now())
    }

    fn reset_at(&self, key: &str, now: Instant) -> Option<Spell> {
        let entry = lock(&self.seen).remove(key)?;
        Some(Spell {
            lasted: now.saturating_duration_since(entry.since),
            counted: entry.counted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_summarised() {
        let throttle = LogThrottle::default();
        let start = Instant::now();
        assert_eq!(throttle.admit_at("a", 1, start), Some(None));
        assert_eq!(
            throttle.admit_at("a", 1, start + Duration::from_secs(1)),
            None
        );
        assert_eq!(
            throttle.admit_at("a", 1, start + Duration::from_secs(2)),
            None
        );
        assert_eq!(throttle.admit_at("b", 1, start), Some(None));
        assert_eq!(
            throttle.admit_at("a", 1, start + REPEAT_SUMMARY_INTERVAL),
            Some(Some(2))
        );
        let spell = throttle.reset_at("a", start + REPEAT_SUMMARY_INTERVAL);
        assert_eq!(
            spell,
            Some(Spell {
                lasted: REPEAT_SUMMARY_INTERVAL,
                counted: 4
            })
        );
        assert_eq!(throttle.reset("a"), None, "a spell ends once");
        assert_eq!(
            throttle.admit_at("a", 1, start + REPEAT_SUMMARY_INTERVAL),
            Some(None)
        );
    }

    #[test]
    fn a_spell_adds_up_what_it_counted() {
        let throttle = LogThrottle::default();
        let start = Instant::now();
        assert_eq!(throttle.admit_at("lost", 3, start), Some(None));
        assert_eq!(
            throttle.admit_at("lost", 2, start + Duration::from_secs(1)),
            None
        );
        let spell = throttle.reset_at("lost", start + Duration::from_secs(5));
        assert_eq!(spell.map(|spell| spell.counted), Some(5));
        assert_eq!(spell.map(|spell| spell.seconds()).as_deref(), Some("5.0s"));
    }
}
