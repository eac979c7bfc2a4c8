//! The last warnings and errors, kept in a bounded ring for `/debug/events` and the support
//! bundle: the person on call sees what the exporter said without the container's log at hand.
//! Secret values the configuration holds are masked as they are recorded.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::clock::unix_seconds;
use crate::config::MASK;
use crate::sync::lock;

/// Events kept, the oldest dropped first.
pub const EVENTS_KEPT: usize = 500;

/// Secret values shorter than this are not masked (they would mask ordinary words).
const SHORTEST_MASKED: usize = 4;

/// One warning or error as logged.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LoggedEvent {
    /// Unix seconds.
    pub at: f64,
    pub level: String,
    pub target: String,
    /// The spans it was logged in (`cluster{name=prod}`).
    pub context: String,
    pub message: String,
    /// The other fields, `key=value` separated by spaces.
    pub fields: String,
}

#[derive(Debug, Default)]
struct Ring {
    events: VecDeque<LoggedEvent>,
    secrets: Vec<String>,
}

fn ring() -> &'static Mutex<Ring> {
    static RING: OnceLock<Mutex<Ring>> = OnceLock::new();
    RING.get_or_init(Mutex::default)
}

/// Masks `secrets` in every event recorded from now on (and in those kept).
pub fn mask_secrets(secrets: impl IntoIterator<Item = String>) {
    let mut ring = lock(ring());
    for secret in secrets {
        if secret.len() >= SHORTEST_MASKED && !ring.secrets.contains(&secret) {
            ring.secrets.push(secret);
        }
    }
    // Longest first, so a secret containing another is masked whole.
    ring.secrets
        .sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    let secrets = ring.secrets.clone();
    for event in ring.events.iter_mut() {
        mask(event, &secrets);
    }
}

/// The events kept, oldest first.
pub fn recent_events() -> Vec<LoggedEvent> {
    lock(ring()).events.iter().cloned().collect()
}

fn mask(event: &mut LoggedEvent, secrets: &[String]) {
    for secret in secrets {
        for text in [&mut event.message, &mut event.fields, &mut event.context] {
            if text.contains(secret.as_str()) {
                *text = text.replace(secret.as_str(), MASK);
            }
        }
    }
}

/// The fields of an event or span, as text.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            if !self.rest.is_empty() {
                self.rest.push(' ');
            }
            let _ = write!(self.rest, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            if !self.rest.is_empty() {
                self.rest.push(' ');
            }
            let _ = write!(self.rest, "{}={value}", field.name());
        }
    }
}

/// A span's fields, kept in its extensions for the events inside it.
struct SpanFields(String);

/// The layer that records events into the ring.
pub struct EventRing;

/// [`EventRing`], taking warnings and errors whatever the log level, in their spans down to
/// INFO (the cluster's): nothing below INFO is enabled for it, so it costs no debug or trace
/// call site anything.
pub(super) fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
{
    EventRing.with_filter(tracing_subscriber::filter::LevelFilter::INFO)
}

impl<S> Layer<S> for EventRing
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let mut fields = Fields::default();
        attributes.record(&mut fields);
        if let Some(span) = context.span(id) {
            span.extensions_mut().insert(SpanFields(fields.rest));
        }
    }

    fn on_event(&self, event: &Event<'_>, context: Context<'_, S>) {
        if *event.metadata().level() > tracing::Level::WARN {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut spans = Vec::new();
        if let Some(scope) = context.event_scope(event) {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let own = extensions
                    .get::<SpanFields>()
                    .map_or("", |fields| fields.0.as_str());
                spans.push(format!("{}{{{own}}}", span.name()));
            }
        }
        let metadata = event.metadata();
        let mut recorded = LoggedEvent {
            at: unix_seconds(),
            level: metadata.level().to_string(),
            target: metadata.target().to_string(),
            context: spans.join(":"),
            message: fields.message,
            fields: fields.rest,
        };
        let mut ring = lock(ring());
        mask(&mut recorded, &ring.secrets);
        if ring.events.len() >= EVENTS_KEPT {
            ring.events.pop_front();
        }
        ring.events.push_back(recorded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn warnings_are_kept_with_their_cluster_and_secrets_masked_and_the_ring_is_bounded() {
        let subscriber = tracing_subscriber::registry()
            .with(EventRing.with_filter(tracing_subscriber::filter::LevelFilter::WARN));
        mask_secrets(["hunter2-secret".to_string(), "ab".to_string()]);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("cluster", name = "prod");
            let _entered = span.enter();
            tracing::info!("not kept");
            tracing::warn!(broker = 2, "password hunter2-secret refused");
            let first = recent_events().pop().unwrap();
            assert_eq!(first.message, format!("password {MASK} refused"));
            assert_eq!(first.fields, "broker=2");
            assert_eq!(first.level, "WARN");
            for index in 0..EVENTS_KEPT {
                tracing::error!(index, "filler");
            }
            tracing::warn!("the last");
        });
        let events = recent_events();
        assert_eq!(events.len(), EVENTS_KEPT);
        assert_eq!(events.last().unwrap().message, "the last");
        // (The span an event was logged in is its context: tested through the running
        // exporter's `/debug/events`, as unit tests share a process-wide level hint.)
        assert!(events.iter().all(|event| event.level != "INFO"));
        // Secrets named later are masked in what was kept too.
        mask_secrets(["filler".to_string()]);
        assert!(recent_events()
            .iter()
            .all(|event| !event.message.contains("filler")));
    }
}
