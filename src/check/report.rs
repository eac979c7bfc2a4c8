//! The check's report, as printed and as `--json` writes it. The JSON shape is documented in
//! docs/oncall.md ("cc-heartbeat check"): fields are only ever added, never renamed or removed;
//! `version` changes if that promise is ever broken.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::recorder::observed::Connection;
use crate::recorder::permissions::RightState;

/// `check`'s exit code for a healthy cluster.
pub const EXIT_HEALTHY: u8 = 0;
/// `check`'s exit code when something failed.
pub const EXIT_FAILED: u8 = 1;
/// `check`'s exit code for a configuration the clients cannot be made from.
pub const EXIT_CONFIGURATION: u8 = 2;

/// The JSON document's version.
pub const REPORT_VERSION: u32 = 1;

/// Every cluster checked.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub(crate) version: u32,
    pub(crate) cc_heartbeat_version: &'static str,
    /// True when every cluster is healthy.
    pub(crate) healthy: bool,
    pub(crate) seconds: f64,
    pub(crate) clusters: Vec<ClusterReport>,
}

impl Report {
    pub(super) fn new(clusters: Vec<ClusterReport>, took: Duration) -> Self {
        Report {
            version: REPORT_VERSION,
            cc_heartbeat_version: env!("CARGO_PKG_VERSION"),
            healthy: clusters.iter().all(|cluster| cluster.healthy),
            seconds: took.as_secs_f64(),
            clusters,
        }
    }

    /// `check`'s exit code: healthy, something failed, or a configuration the clients could
    /// not be made from.
    pub fn exit_code(&self) -> u8 {
        let unusable = self.clusters.iter().any(|cluster| {
            cluster
                .failures
                .iter()
                .any(|failure| failure.step == "configuration")
        });
        if unusable {
            EXIT_CONFIGURATION
        } else if self.healthy {
            EXIT_HEALTHY
        } else {
            EXIT_FAILED
        }
    }
}

/// Who the client authenticates as (never the secret).
#[derive(Debug, Clone, Serialize)]
pub struct Authentication {
    pub(crate) security_protocol: String,
    /// SASL mechanism, with SASL.
    pub(crate) mechanism: Option<String>,
    pub(crate) user: Option<String>,
    /// Whether the cluster accepted the client (it answers only an authenticated one); `null`
    /// when the check did not get that far.
    pub(crate) ok: Option<bool>,
    pub(crate) error: Option<String>,
    /// Signing in through the identity provider, with OAuth (`sasl.oauthbearer.method=oidc`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) oauth: Option<OAuthReport>,
}

/// Getting a token from the identity provider's token endpoint (never the token or the
/// secret).
#[derive(Debug, Clone, Serialize)]
pub struct OAuthReport {
    /// The token endpoint's host.
    pub(crate) token_endpoint: String,
    pub(crate) client_id: String,
    /// Whether a token was obtained; `null` when no answer came in time.
    pub(crate) ok: Option<bool>,
    /// How long the last token request took.
    pub(crate) request_seconds: Option<f64>,
    /// When the token obtained expires (Unix time).
    pub(crate) token_expires_at: Option<f64>,
    pub(crate) error: Option<String>,
}

/// A broker in the metadata answer.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerReport {
    pub(crate) id: i32,
    pub(crate) address: String,
    pub(crate) rack: Option<String>,
}

/// The metadata answer.
#[derive(Debug, Clone, Serialize)]
pub struct MetadataReport {
    pub(crate) ok: bool,
    pub(crate) seconds: Option<f64>,
    pub(crate) cluster_id: Option<String>,
    pub(crate) controller_id: Option<i32>,
    pub(crate) brokers: Vec<BrokerReport>,
    pub(crate) error: Option<String>,
}

/// The heartbeat topic.
#[derive(Debug, Clone, Serialize)]
pub struct TopicReport {
    pub(crate) name: String,
    /// `None` while metadata has not said.
    pub(crate) exists: Option<bool>,
    pub(crate) partitions: usize,
    /// The smallest replica count of its partitions.
    pub(crate) replication_factor: Option<usize>,
    /// Leader of each partition (`null`: leaderless).
    pub(crate) leaders: BTreeMap<i32, Option<i32>>,
    /// Listed brokers that lead no partition (heartbeats do not prove them).
    pub(crate) brokers_without_leadership: Vec<i32>,
    pub(crate) problem: Option<String>,
    pub(crate) warning: Option<String>,
}

/// One partition's round trip.
#[derive(Debug, Clone, Serialize)]
pub struct RoundTripReport {
    pub(crate) partition: i32,
    pub(crate) leader: Option<i32>,
    pub(crate) ok: bool,
    /// Produce to read back, of the last heartbeat that came back.
    pub(crate) round_trip_seconds: Option<f64>,
    /// Produce to acknowledgement, of the last acknowledged heartbeat.
    pub(crate) acknowledged_seconds: Option<f64>,
    pub(crate) error: Option<String>,
}

/// A failure, and what to change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    /// `connection`, `authentication`, `metadata`, `topic`, `round_trip`, `permission` or
    /// `configuration` (the clients could not be made).
    pub(crate) step: &'static str,
    pub(crate) problem: String,
    pub(crate) fix: String,
}

/// One cluster checked.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    pub(crate) cluster: String,
    pub(crate) healthy: bool,
    pub(crate) seconds: f64,
    /// Set when the check ran out of time before every step answered.
    pub(crate) timed_out_after_seconds: Option<f64>,
    pub(crate) bootstrap_servers: String,
    /// Each bootstrap server and broker: DNS, TCP, TLS, timed.
    pub(crate) connections: Vec<Connection>,
    pub(crate) authentication: Authentication,
    pub(crate) metadata: MetadataReport,
    pub(crate) topic: TopicReport,
    pub(crate) round_trips: Vec<RoundTripReport>,
    /// Every right the exporter needs, as the cluster answered (empty when it did not answer).
    pub(crate) permissions: Vec<RightState>,
    pub(crate) failures: Vec<Failure>,
    /// Not failures, worth knowing.
    pub(crate) warnings: Vec<String>,
    /// On a replica (`mirror.of`): one round through the replication pipeline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pipeline: Option<PipelineReport>,
}

/// One round through a replication pipeline: the source's heartbeats read on the replica.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineReport {
    pub(crate) source: String,
    pub(crate) topic: String,
    /// Whether a heartbeat the source sent during the check arrived here.
    pub(crate) ok: bool,
    /// Source heartbeats read here during the check.
    pub(crate) replicated: u64,
    /// Age of the newest of them, since its send.
    pub(crate) last_replicated_age_seconds: Option<f64>,
    pub(crate) error: Option<String>,
}
