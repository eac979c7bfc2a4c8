//! What the topic task found of the heartbeat topic, recorded: its one series, and what stops
//! heartbeats (a readiness cause) or is worth saying, each logged once per change.

use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::Families;
use crate::recorder::stores::Stores;

/// Whether the heartbeat topic is as it should be (at least one partition per broker).
#[derive(Debug)]
pub(crate) struct TopicJudged {
    pub(crate) fine: bool,
}

/// A check of the heartbeat topic decided: what stops heartbeats, and what is worth saying
/// without being fatal (each `None` when nothing).
#[derive(Debug)]
pub(crate) struct TopicChecked {
    pub(crate) problem: Option<String>,
    pub(crate) warning: Option<String>,
}

/// The topic task's one series.
#[derive(Debug, Default)]
struct TopicMetrics {
    topic_ok: Gauge,
}

impl Families for TopicMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "topic_ok",
            "1 when the heartbeat topic exists with at least one partition per broker",
            self.topic_ok.clone(),
        );
    }
}

/// The heartbeat topic's part of the record.
#[derive(Default)]
pub(super) struct Topic {
    metrics: Arc<TopicMetrics>,
}

impl Topic {
    pub(super) fn families(&self) -> Arc<dyn Families> {
        self.metrics.clone()
    }

    pub(super) fn judged(&self, _stores: &Stores<'_>, judged: TopicJudged) {
        self.metrics.topic_ok.set(i64::from(judged.fine));
    }

    pub(super) fn checked(&self, stores: &Stores<'_>, checked: TopicChecked) {
        let TopicChecked { problem, warning } = checked;
        let mut facts = stores.status.lock();
        // Said once per change of state, not at every check.
        if problem.is_some() && facts.topic_problem != problem {
            tracing::error!("{}", problem.as_deref().unwrap_or_default());
        }
        if warning.is_some() && facts.topic_warning != warning {
            tracing::warn!("{}", warning.as_deref().unwrap_or_default());
        }
        facts.topic_problem = problem;
        facts.topic_warning = warning;
    }
}
