//! The report of one cluster, gathered from what its tasks observed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::fixes;
use super::report::{
    Authentication, BrokerReport, ClusterReport, Failure, MetadataReport, OAuthReport,
    PipelineReport, RoundTripReport, TopicReport,
};
use crate::config::{sasl_mechanism, Config};
use crate::recorder::observed::{Connection, PartitionView};
use crate::recorder::status::SignInFacts;
use crate::shared::ClusterShared;

/// A cluster whose clients could not even be created.
pub(super) fn not_started(config: &Config, error: &str) -> ClusterReport {
    ClusterReport {
        cluster: config.name.clone(),
        healthy: false,
        seconds: 0.0,
        timed_out_after_seconds: None,
        bootstrap_servers: bootstrap_servers(config),
        connections: Vec::new(),
        authentication: authentication(config, false, None),
        metadata: MetadataReport {
            ok: false,
            seconds: None,
            cluster_id: None,
            controller_id: None,
            brokers: Vec::new(),
            error: None,
        },
        topic: TopicReport {
            name: config.admin.heartbeat_topic.clone(),
            exists: None,
            partitions: 0,
            replication_factor: None,
            leaders: BTreeMap::new(),
            brokers_without_leadership: Vec::new(),
            problem: None,
            warning: None,
        },
        round_trips: Vec::new(),
        permissions: Vec::new(),
        pipeline: None,
        failures: vec![Failure {
            step: "check",
            problem: format!("the clients could not be created: {error}"),
            fix: "fix the configuration key the error names".to_string(),
        }],
        warnings: Vec::new(),
    }
}

/// The report of what `shared`'s tasks observed; `timed_out`: the check's timeout, when it
/// ran out; `manages_topic`: the configuration's `heartbeat.topic.manage`.
pub(super) fn build(
    shared: &ClusterShared,
    manages_topic: bool,
    connections: Vec<Connection>,
    timed_out: Option<Duration>,
    took: Duration,
) -> ClusterReport {
    let config = &shared.config;
    let snapshot = shared.snapshot();
    let facts = shared.recorder.facts();
    let answered = snapshot.refreshed_at.is_some();
    let metadata = MetadataReport {
        ok: answered,
        seconds: shared
            .recorder
            .observed()
            .metadata()
            .map(|answer| answer.seconds),
        cluster_id: snapshot.cluster_id.clone(),
        controller_id: snapshot.controller_id,
        brokers: snapshot
            .listed_brokers()
            .map(|broker| BrokerReport {
                id: broker.id,
                address: broker.address(),
                rack: broker.rack.clone(),
            })
            .collect(),
        error: (!answered).then(|| {
            facts
                .metadata_error
                .clone()
                .or_else(|| facts.client_error.clone())
                .unwrap_or_else(|| "no answer during the check".to_string())
        }),
    };
    let leaders: BTreeMap<i32, Option<i32>> = snapshot
        .partitions
        .values()
        .map(|partition| (partition.id, partition.leader))
        .collect();
    let topic = TopicReport {
        name: config.admin.heartbeat_topic.clone(),
        exists: answered.then(|| !snapshot.topic_missing()),
        partitions: snapshot.partitions.len(),
        replication_factor: snapshot
            .partitions
            .values()
            .map(|partition| partition.replicas.len())
            .min(),
        brokers_without_leadership: snapshot
            .listed_brokers()
            .map(|broker| broker.id)
            .filter(|id| !leaders.values().any(|leader| *leader == Some(*id)))
            .collect(),
        leaders,
        problem: facts.topic_problem.clone(),
        warning: facts.topic_warning.clone(),
    };
    let observed: BTreeMap<i32, PartitionView> = shared
        .recorder
        .observed()
        .partitions(Instant::now())
        .into_iter()
        .map(|view| (view.partition, view))
        .collect();
    let round_trips = snapshot
        .partitions
        .values()
        .map(|partition| {
            let view = observed.get(&partition.id);
            let ok = view.is_some_and(|view| view.consumed > 0);
            RoundTripReport {
                partition: partition.id,
                leader: partition.leader,
                ok,
                round_trip_seconds: view.and_then(|view| view.last_round_trip_seconds),
                acknowledged_seconds: view.and_then(|view| view.last_acknowledged_seconds),
                error: (!ok).then(|| {
                    view.and_then(|view| view.last_failure.clone()).map_or_else(
                        || "no heartbeat came back during the check".to_string(),
                        |failure| failure.what,
                    )
                }),
            }
        })
        .collect();
    let mut authentication = authentication(config, answered, facts.authentication_error.clone());
    authentication.oauth = facts.signin.as_ref().map(oauth_report);
    let client_error = facts.client_error.clone();
    drop(facts);
    let mut report = ClusterReport {
        cluster: config.name.clone(),
        healthy: false,
        seconds: took.as_secs_f64(),
        timed_out_after_seconds: timed_out.map(|limit| limit.as_secs_f64()),
        bootstrap_servers: bootstrap_servers(config),
        connections,
        authentication,
        metadata,
        topic,
        round_trips,
        // Before the cluster answered, no right was tried.
        permissions: if answered {
            shared.recorder.permissions().states()
        } else {
            Vec::new()
        },
        failures: Vec::new(),
        warnings: Vec::new(),
        pipeline: pipeline_report(shared),
    };
    report.failures = fixes::failures(&report, manages_topic, client_error.as_deref());
    report.warnings = fixes::warnings(&report);
    report.healthy = report.failures.is_empty();
    report
}

fn bootstrap_servers(config: &Config) -> String {
    config
        .admin_properties()
        .remove("bootstrap.servers")
        .unwrap_or_default()
}

/// One round through the replica's pipeline, as its mirror reader saw it.
fn pipeline_report(shared: &ClusterShared) -> Option<PipelineReport> {
    let mirror = shared.recorder.facts().mirror.clone()?;
    let ok = mirror.replicated > 0 && mirror.problem.is_none();
    let error = mirror.problem.clone().or_else(|| {
        (mirror.replicated == 0).then(|| {
            format!(
                "no heartbeat of {} arrived through topic `{}` during the check",
                mirror.source, mirror.topic
            )
        })
    });
    Some(PipelineReport {
        ok,
        replicated: mirror.replicated,
        last_replicated_age_seconds: (mirror.replicated > 0)
            .then_some(mirror.last_replicated_age_seconds),
        error,
        source: mirror.source,
        topic: mirror.topic,
    })
}

/// The sign-in through the identity provider, as the sign-in task saw it.
fn oauth_report(signin: &SignInFacts) -> OAuthReport {
    OAuthReport {
        token_endpoint: signin.endpoint.clone(),
        client_id: signin.client_id.clone(),
        ok: match (&signin.failing, signin.refreshed_at) {
            (None, None) => None,
            (failing, _) => Some(failing.is_none()),
        },
        request_seconds: signin.last_request_seconds,
        token_expires_at: signin.expires_at,
        error: signin.failing.clone(),
    }
}

/// Who the clients authenticate as, from the configuration; never the password.
fn authentication(config: &Config, answered: bool, error: Option<String>) -> Authentication {
    let properties = config.admin_properties();
    let security_protocol = properties
        .get("security.protocol")
        .map_or("PLAINTEXT".to_string(), |protocol| {
            protocol.to_ascii_uppercase()
        });
    let mechanism = sasl_mechanism(&properties);
    let sasl = mechanism.is_some();
    Authentication {
        security_protocol,
        mechanism,
        user: sasl
            .then(|| properties.get("sasl.username").cloned())
            .flatten(),
        ok: match (&error, answered) {
            (Some(_), _) => Some(false),
            (None, true) => Some(true),
            (None, false) => None,
        },
        error,
        oauth: None,
    }
}
