//! The facts readiness is decided from, beside the metrics: written by the recorder as the
//! tasks report, read by `/ready`, the status page and the one-shot check.

use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use crate::cluster::ClusterSnapshot;
use crate::sync::lock;

/// Why a cluster is not ready before it first answered, nothing having failed.
pub(crate) const NOT_REACHED_YET: &str = "cluster not reached yet: no answer yet";

/// Why a cluster is not ready while its first heartbeats are on their way.
pub(crate) const NO_ROUND_TRIP_YET: &str = "no heartbeat has made the round trip yet";

/// Facts readiness is decided from, updated by the recorder from what the tasks observe.
#[derive(Debug, Clone, Default)]
pub struct StatusFacts {
    /// When a heartbeat last made the full round trip.
    pub last_round_trip: Option<Instant>,
    /// When a broker last acknowledged a heartbeat.
    pub last_acknowledged: Option<Instant>,
    /// The throttling the producer's statistics last showed, said for a person, and when.
    pub producer_throttled: Option<(String, Instant)>,
    /// The throttling the consumer's statistics last showed, said for a person, and when.
    pub consumer_throttled: Option<(String, Instant)>,
    /// The last metadata error, while refreshes fail.
    pub metadata_error: Option<String>,
    /// What is wrong with the heartbeat topic so that heartbeats cannot run, if anything.
    pub topic_problem: Option<String>,
    /// What is not right with the heartbeat topic without stopping heartbeats.
    pub topic_warning: Option<String>,
    /// The last error librdkafka reported for this cluster (e.g. authentication).
    pub client_error: Option<String>,
    /// The last authentication failure, until metadata is answered again.
    pub authentication_error: Option<String>,
    /// What the connection checks found, while every checked broker fails.
    pub connection_problem: Option<String>,
    /// Why the Schema Registry refuses the exporter (its credentials), while it does.
    pub schema_registry_refused: Option<String>,
    /// Authentication failures the clients reported since start (each sign-in refused).
    pub authentication_failures: u64,
    /// Signing in through an identity provider, when the clients use OAuth.
    pub signin: Option<SignInFacts>,
    /// The replication pipeline this cluster is the replica of, as its mirror reader sees it
    /// (never a readiness cause: the replica itself may be fine).
    pub mirror: Option<MirrorFacts>,
}

/// What a replica's mirror reader knows of its pipeline.
#[derive(Debug, Clone, Default)]
pub struct MirrorFacts {
    pub source: String,
    pub topic: String,
    /// Age of the newest source heartbeat read here, since its send.
    pub last_replicated_age_seconds: f64,
    /// Source heartbeats read here since the reader started.
    pub replicated: u64,
    /// Why the mirror topic cannot be read, while it cannot.
    pub problem: Option<String>,
}

/// What the sign-in task knows of signing in with OAuth.
#[derive(Debug, Clone, Default)]
pub struct SignInFacts {
    /// The token endpoint's host (never its path).
    pub endpoint: String,
    pub client_id: String,
    /// Unix time the clients' token expires.
    pub expires_at: Option<f64>,
    /// Unix time the last token was obtained.
    pub refreshed_at: Option<f64>,
    /// How long the last token request took.
    pub last_request_seconds: Option<f64>,
    /// Why token requests fail, while they do.
    pub failing: Option<String>,
    /// Why the clients cannot sign in, while they cannot: no valid token, or the brokers
    /// refuse it.
    pub problem: Option<String>,
}

/// Shared, lock-protected [`StatusFacts`]; every lock is held for a few field writes only.
#[derive(Debug, Default)]
pub struct Status(std::sync::Mutex<StatusFacts>);

impl Status {
    /// Locks the facts, recovering them if a panicking thread held the lock.
    pub(super) fn lock(&self) -> MutexGuard<'_, StatusFacts> {
        lock(&self.0)
    }
}

/// How readiness is judged: how old metadata may be, how long a round trip may be missing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadinessSettings {
    /// Metadata older than this is stale.
    pub(crate) stale_after: Duration,
    /// A round trip older than this is missing (`lost.after.seconds`).
    pub(crate) round_trip_window: Duration,
}

/// Ok when metadata is fresh and heartbeats make the round trip; else the reason why not.
/// `refused`: the readiness causes of refused rights.
pub(crate) fn readiness(
    settings: ReadinessSettings,
    snapshot: &ClusterSnapshot,
    facts: &StatusFacts,
    mut refused: Vec<String>,
    now: Instant,
) -> Result<(), String> {
    let stale_after = settings.stale_after;
    // Why the cluster does not answer: every cause known, most specific first.
    let causes = || {
        let causes: Vec<&str> = [
            facts
                .signin
                .as_ref()
                .and_then(|signin| signin.problem.as_deref()),
            facts.connection_problem.as_deref(),
            facts.client_error.as_deref(),
            facts.metadata_error.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        if causes.is_empty() {
            "no answer yet".to_string()
        } else {
            causes.join("; ")
        }
    };
    match snapshot.refreshed_at {
        None => return Err(format!("cluster not reached yet: {}", causes())),
        Some(at) if now.saturating_duration_since(at) > stale_after => {
            return Err(format!(
                "metadata is stale ({}s old): {}",
                now.saturating_duration_since(at).as_secs(),
                causes()
            ));
        }
        Some(_) => {}
    }
    if let Some(problem) = &facts.topic_problem {
        return Err(problem.clone());
    }
    // A refusal is said at once, with the right that is missing, not only once round
    // trips have been missing for a while.
    refused.extend(facts.schema_registry_refused.clone());
    if !refused.is_empty() {
        return Err(refused.join("; "));
    }
    let round_trip_window = settings.round_trip_window;
    match facts.last_round_trip {
        Some(at) if now.saturating_duration_since(at) <= round_trip_window => Ok(()),
        Some(at) => Err(format!(
            "no heartbeat made the round trip in the last {}s (last {}s ago)",
            round_trip_window.as_secs(),
            now.saturating_duration_since(at).as_secs()
        )),
        None => Err(NO_ROUND_TRIP_YET.to_string()),
    }
}
