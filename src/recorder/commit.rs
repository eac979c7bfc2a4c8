//! What the group coordinator probe found, recorded: each commit's time or why it failed, by
//! coordinator, and the log's spell of failures.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};

use crate::config::Config;
use crate::logging::LogThrottle;
use crate::metrics::latency::{Buckets, HistogramFamily};
use crate::metrics::Families;
use crate::recorder::stores::Stores;
use crate::sync::lock;

/// Why a commit failed; the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitFailure {
    /// No answer within the commit period.
    TimedOut,
    /// No coordinator for the group, or the one asked is loading or no longer it.
    CoordinatorUnavailable,
    /// The account may not read the group (an ACL).
    AuthorizationFailed,
    /// The group has members (an application joined it with this group id), so commits
    /// without a generation are refused.
    GroupInUse,
    /// The connection to the coordinator failed.
    Connection,
    /// Anything else.
    Other,
}

impl CommitFailure {
    const ALL: [CommitFailure; 6] = [
        CommitFailure::TimedOut,
        CommitFailure::CoordinatorUnavailable,
        CommitFailure::AuthorizationFailed,
        CommitFailure::GroupInUse,
        CommitFailure::Connection,
        CommitFailure::Other,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CommitFailure::TimedOut => "timed_out",
            CommitFailure::CoordinatorUnavailable => "coordinator_unavailable",
            CommitFailure::AuthorizationFailed => "authorization_failed",
            CommitFailure::GroupInUse => "group_in_use",
            CommitFailure::Connection => "connection",
            CommitFailure::Other => "other",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CoordinatorLabels {
    coordinator: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CoordinatorReasonLabels {
    coordinator: String,
    reason: &'static str,
}

/// The `coordinator` label value before the statistics named one.
pub(crate) const UNKNOWN_COORDINATOR: &str = "unknown";

/// The commit probe's series.
#[derive(Debug)]
pub(super) struct CommitMetrics {
    latency: HistogramFamily<CoordinatorLabels>,
    commits: Counter,
    failures: Family<CoordinatorReasonLabels, Counter>,
    /// Since when each former coordinator (by label) has not been the group's: its series go
    /// once that is longer ago than the retention, so coordinators moving (a broker restarted)
    /// add no series forever.
    retired: Mutex<BTreeMap<String, Instant>>,
}

impl CommitMetrics {
    /// Latency buckets up to `deadline`; the unknown coordinator's failures at zero.
    fn new(deadline: Duration) -> Self {
        let metrics = CommitMetrics {
            latency: Family::new_with_constructor(Buckets::up_to(deadline)),
            commits: Counter::default(),
            failures: Family::default(),
            retired: Mutex::default(),
        };
        metrics.init_coordinator(UNKNOWN_COORDINATOR);
        metrics
    }

    /// The group's coordinator moved from `old` to `new` (labels) at `now`, or stayed (equal):
    /// `new`'s counters exist, and the series of a coordinator that has not been it for
    /// `retention` go.
    fn follow_coordinator(&self, old: &str, new: &str, now: Instant, retention: Duration) {
        let mut retired = lock(&self.retired);
        if old != new {
            self.init_coordinator(new);
            retired.insert(old.to_string(), now);
        }
        retired.remove(new);
        retired.retain(|coordinator, since| {
            let expired = now.saturating_duration_since(*since) >= retention;
            if expired {
                self.latency.remove(&CoordinatorLabels {
                    coordinator: coordinator.clone(),
                });
                for reason in CommitFailure::ALL {
                    self.failures.remove(&CoordinatorReasonLabels {
                        coordinator: coordinator.clone(),
                        reason: reason.as_str(),
                    });
                }
            }
            !expired
        });
    }

    /// Creates `coordinator`'s failure counters at zero, every reason. Idempotent.
    fn init_coordinator(&self, coordinator: &str) {
        for reason in CommitFailure::ALL {
            drop(self.failures.get_or_create(&CoordinatorReasonLabels {
                coordinator: coordinator.to_string(),
                reason: reason.as_str(),
            }));
        }
    }
}

impl Families for CommitMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "offset_commit_latency",
            "Time to commit the end-to-end consumer's positions to its group, finding the coordinator when needed, by coordinator",
            Unit::Seconds,
            self.latency.clone(),
        );
        registry.register(
            "offset_commits",
            "Commits of the end-to-end consumer's positions the group coordinator accepted",
            self.commits.clone(),
        );
        registry.register(
            "offset_commit_failures",
            "Commits that failed, by coordinator and reason",
            self.failures.clone(),
        );
    }
}

/// The statistics named the group's coordinator: broker `to` (each report does), after `from`
/// (-1: not known).
#[derive(Debug)]
pub(crate) struct CoordinatorNamed {
    pub(crate) from: i32,
    pub(crate) to: i32,
}

/// A commit to the group coordinator `coordinator` (-1: not known yet) was answered after
/// `took`, or failed.
#[derive(Debug)]
pub(crate) struct CommitAnswered {
    pub(crate) coordinator: i32,
    pub(crate) took: Duration,
    /// Why it failed, and the client's error.
    pub(crate) failure: Option<(CommitFailure, String)>,
}

/// The group coordinator probe's part of the record.
pub(super) struct Commit {
    metrics: Arc<CommitMetrics>,
    throttle: LogThrottle,
    retention: Duration,
    /// Whether the probe runs (`probe.commit.period.seconds` not 0).
    runs: bool,
}

impl Commit {
    pub(super) fn new(config: &Config) -> Self {
        let period = config.admin.probe_commit_period;
        Commit {
            metrics: Arc::new(CommitMetrics::new(period.max(Duration::from_secs(1)))),
            throttle: LogThrottle::default(),
            retention: config.admin.broker_missing_retention,
            runs: !period.is_zero(),
        }
    }

    /// Its families, when the probe runs.
    pub(super) fn families(&self) -> Option<Arc<dyn Families>> {
        self.runs.then(|| self.metrics.clone() as Arc<dyn Families>)
    }

    pub(super) fn coordinator_named(&self, _stores: &Stores<'_>, named: CoordinatorNamed) {
        self.metrics.follow_coordinator(
            &coordinator_label(named.from),
            &named.to.to_string(),
            Instant::now(),
            self.retention,
        );
    }

    pub(super) fn answered(&self, _stores: &Stores<'_>, answered: CommitAnswered) {
        let coordinator = coordinator_label(answered.coordinator);
        match answered.failure {
            None => {
                self.metrics
                    .latency
                    .get_or_create(&CoordinatorLabels { coordinator })
                    .observe(answered.took.as_secs_f64());
                self.metrics.commits.inc();
                if let Some(spell) = self.throttle.reset("commit") {
                    tracing::info!(
                        failed = spell.counted,
                        "offset commits to the group coordinator succeed again, {} after the first failure ({} failed)",
                        spell.seconds(),
                        spell.counted
                    );
                }
            }
            Some((reason, error)) => {
                self.metrics
                    .failures
                    .get_or_create(&CoordinatorReasonLabels {
                        coordinator: coordinator.clone(),
                        reason: reason.as_str(),
                    })
                    .inc();
                if let Some(held_back) = self.throttle.admit("commit") {
                    tracing::warn!(
                        coordinator,
                        reason = reason.as_str(),
                        held_back,
                        "committing offsets to the group coordinator failed: {error}"
                    );
                }
            }
        }
    }
}

/// The `coordinator` label of broker `id` (-1: not known yet).
fn coordinator_label(id: i32) -> String {
    if id >= 0 {
        id.to_string()
    } else {
        UNKNOWN_COORDINATOR.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_former_coordinators_series_go_after_the_retention() {
        let metrics = CommitMetrics::new(Duration::from_secs(10));
        let series = |metrics: &CommitMetrics| {
            let mut registry = Registry::default();
            metrics.register(&mut registry);
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            text
        };
        let (start, retention) = (Instant::now(), Duration::from_secs(60));
        metrics.follow_coordinator("unknown", "1", start, retention);
        metrics.follow_coordinator("1", "2", start + retention / 2, retention);
        let text = series(&metrics);
        assert!(
            text.contains("coordinator=\"unknown\""),
            "kept within the retention"
        );
        assert!(text.contains("coordinator=\"1\""));
        metrics.follow_coordinator("2", "2", start + retention, retention);
        let text = series(&metrics);
        assert!(!text.contains("coordinator=\"unknown\""), "{text}");
        assert!(text.contains("coordinator=\"1\""), "1 retired later");
        // Back within the retention: kept, and not retired any more.
        metrics.follow_coordinator("2", "1", start + retention, retention);
        metrics.follow_coordinator("1", "1", start + retention * 3, retention);
        let text = series(&metrics);
        assert!(text.contains("coordinator=\"1\""));
        assert!(!text.contains("coordinator=\"2\""), "{text}");
    }
}
