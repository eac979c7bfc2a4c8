//! The check's report as text: a section per step, `ok` or `FAIL` first on each line, and the
//! failures last, each with what to fix.

use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

use super::fixes::target_name;
use super::report::{ClusterReport, OAuthReport, PipelineReport, Report};
use crate::clock::unix_seconds;
use crate::recorder::observed::Connection;

impl Report {
    /// The report as a person reads it.
    pub fn text(&self) -> String {
        text(self)
    }
}

fn text(report: &Report) -> String {
    let mut out = String::new();
    for cluster in &report.clusters {
        cluster_text(&mut out, cluster);
        out.push('\n');
    }
    let verdict = if report.healthy { "HEALTHY" } else { "FAILED" };
    let _ = writeln!(
        out,
        "result: {verdict} ({} cluster{} in {:.1}s)",
        report.clusters.len(),
        if report.clusters.len() == 1 { "" } else { "s" },
        report.seconds
    );
    out
}

fn mark(ok: bool) -> &'static str {
    if ok {
        "ok  "
    } else {
        "FAIL"
    }
}

fn milliseconds(seconds: f64) -> String {
    format!("{:.1} ms", seconds * 1000.0)
}

/// Unix seconds as a UTC date and time.
pub(super) fn utc(unix: f64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs_f64(unix.max(0.0));
    humantime::format_rfc3339_seconds(time).to_string()
}

fn cluster_text(out: &mut String, cluster: &ClusterReport) {
    let authentication = &cluster.authentication;
    let who = match (&authentication.mechanism, &authentication.user) {
        (Some(mechanism), Some(user)) => format!(", {mechanism} as `{user}`"),
        (Some(mechanism), None) => format!(", {mechanism}"),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "cluster `{}`: {} ({}{who})",
        cluster.cluster, cluster.bootstrap_servers, authentication.security_protocol
    );
    let _ = writeln!(out, "\nconnections");
    if cluster.connections.is_empty() {
        let _ = writeln!(out, "  FAIL  none checked");
    }
    for connection in &cluster.connections {
        connection_text(out, connection);
    }
    let metadata = &cluster.metadata;
    let _ = write!(out, "\nmetadata\n  {}  ", mark(metadata.ok));
    if metadata.ok {
        let _ = writeln!(
            out,
            "answered{}: cluster id {}, {}{} brokers",
            metadata
                .seconds
                .map(|seconds| format!(" in {}", milliseconds(seconds)))
                .unwrap_or_default(),
            metadata.cluster_id.as_deref().unwrap_or("unknown"),
            // On KRaft the id is any broker the cluster picks, or none of them (the mock
            // says 0 of brokers 1 to 3): named only when it is one of the brokers.
            metadata
                .controller_id
                .filter(|id| metadata.brokers.iter().any(|broker| broker.id == *id))
                .map_or(String::new(), |id| format!("controller broker {id}, ")),
            metadata.brokers.len()
        );
        for broker in &metadata.brokers {
            let _ = writeln!(
                out,
                "        broker {}  {}  rack {}",
                broker.id,
                broker.address,
                broker.rack.as_deref().unwrap_or("-")
            );
        }
    } else {
        let _ = writeln!(
            out,
            "no answer: {}",
            metadata.error.as_deref().unwrap_or("none yet")
        );
    }
    signin_text(out, authentication.oauth.as_ref());
    let sasl = authentication.mechanism.is_some();
    let _ = match (&authentication.error, authentication.ok) {
        (Some(error), _) => writeln!(out, "  FAIL  authentication: {error}"),
        (None, Some(true)) if sasl => writeln!(out, "  ok    authentication"),
        (None, Some(_)) => writeln!(
            out,
            "  ok    no authentication ({})",
            authentication.security_protocol
        ),
        (None, None) => writeln!(out, "  ?     authentication: not reached"),
    };
    topic_text(out, cluster);
    round_trip_text(out, cluster);
    pipeline_text(out, cluster.pipeline.as_ref());
    if cluster.permissions.is_empty() {
        let _ = writeln!(
            out,
            "\npermissions\n  ?     not tried: the cluster did not answer"
        );
    } else {
        let _ = writeln!(out, "\npermissions (refused, or not refused so far)");
        for right in &cluster.permissions {
            let _ = writeln!(
                out,
                "  {}  {} on {}",
                mark(right.ok),
                right.operation,
                right.resource
            );
        }
    }
    for warning in &cluster.warnings {
        let _ = writeln!(out, "\nwarning: {warning}");
    }
    if let Some(limit) = cluster.timed_out_after_seconds {
        let _ = writeln!(
            out,
            "\nthe check ran out of time after {limit:.0}s (--timeout) before every step answered"
        );
    }
    if cluster.failures.is_empty() {
        let _ = writeln!(
            out,
            "\ncluster `{}`: healthy ({:.1}s)",
            cluster.cluster, cluster.seconds
        );
    } else {
        let _ = writeln!(
            out,
            "\ncluster `{}`: {} problem{}",
            cluster.cluster,
            cluster.failures.len(),
            if cluster.failures.len() == 1 { "" } else { "s" }
        );
        for failure in &cluster.failures {
            let _ = writeln!(
                out,
                "  - [{}] {}\n    fix: {}",
                failure.step, failure.problem, failure.fix
            );
        }
    }
}

/// One round through the replica's pipeline.
fn pipeline_text(out: &mut String, pipeline: Option<&PipelineReport>) {
    let Some(pipeline) = pipeline else {
        return;
    };
    let _ = writeln!(out, "\npipeline from {}", pipeline.source);
    let _ = match (&pipeline.error, pipeline.last_replicated_age_seconds) {
        (Some(error), _) => writeln!(out, "  FAIL  {error}"),
        (None, age) => writeln!(
            out,
            "  ok    {} heartbeats of {} read from topic `{}`{}",
            pipeline.replicated,
            pipeline.source,
            pipeline.topic,
            age.map(|age| format!(", the newest {} after its send", milliseconds(age)))
                .unwrap_or_default()
        ),
    };
}

/// The sign-in through the identity provider (OAuth).
fn signin_text(out: &mut String, oauth: Option<&OAuthReport>) {
    let Some(oauth) = oauth else {
        return;
    };
    let took = oauth
        .request_seconds
        .map(|seconds| format!(" in {}", milliseconds(seconds)))
        .unwrap_or_default();
    let _ = match (&oauth.error, oauth.ok) {
        (Some(error), _) => writeln!(out, "  FAIL  sign-in: {error}"),
        (None, Some(true)) => writeln!(
            out,
            "  ok    sign-in: token from {} for `{}`{took}{}",
            oauth.token_endpoint,
            oauth.client_id,
            oauth
                .token_expires_at
                .map(|at| format!(", valid until {}", utc(at)))
                .unwrap_or_default()
        ),
        (None, _) => writeln!(
            out,
            "  ?     sign-in: no answer from {}",
            oauth.token_endpoint
        ),
    };
}

fn connection_text(out: &mut String, connection: &Connection) {
    let phases: Vec<String> = connection
        .phases
        .iter()
        .map(|(phase, seconds)| format!("{phase} {}", milliseconds(*seconds)))
        .collect();
    let _ = write!(
        out,
        "  {}  {:<18} {}",
        mark(connection.ok),
        target_name(connection),
        connection.address
    );
    match &connection.failure {
        None => {
            let _ = writeln!(out, "  {}", phases.join(", "));
        }
        Some(failure) => {
            let _ = writeln!(
                out,
                "  {} {}: {}",
                failure.phase, failure.reason, failure.detail
            );
        }
    }
    if let Some(certificate) = &connection.certificate {
        let expiry = certificate.expires_at.map_or("unknown".to_string(), |at| {
            format!(
                "{} (in {:.0} days)",
                utc(at),
                (at - unix_seconds()) / 86_400.0
            )
        });
        let _ = writeln!(
            out,
            "        certificate: subject {}; issuer {}; expires {expiry}",
            certificate.subject, certificate.issuer
        );
    }
}

fn topic_text(out: &mut String, cluster: &ClusterReport) {
    let topic = &cluster.topic;
    let _ = write!(out, "\nheartbeat topic `{}`\n  ", topic.name);
    match topic.exists {
        None => {
            let _ = writeln!(out, "FAIL  not known: the cluster did not answer");
        }
        Some(false) => {
            let _ = writeln!(out, "FAIL  does not exist");
        }
        Some(true) => {
            let leaders: Vec<String> = topic
                .leaders
                .iter()
                .map(|(partition, leader)| {
                    format!(
                        "{partition}→{}",
                        leader.map_or("none".to_string(), |id| id.to_string())
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "{}  {} partitions, replication factor {}, leaders {}",
                mark(topic.problem.is_none()),
                topic.partitions,
                topic
                    .replication_factor
                    .map_or("unknown".to_string(), |factor| factor.to_string()),
                leaders.join(" ")
            );
        }
    }
}

fn round_trip_text(out: &mut String, cluster: &ClusterReport) {
    if cluster.round_trips.is_empty() {
        return;
    }
    let made = cluster.round_trips.iter().filter(|trip| trip.ok).count();
    let _ = writeln!(
        out,
        "\nround trip (produce, then read back)\n  {}  {made} of {} partitions",
        mark(made == cluster.round_trips.len()),
        cluster.round_trips.len()
    );
    for trip in &cluster.round_trips {
        let leader = trip
            .leader
            .map_or("none".to_string(), |leader| leader.to_string());
        let detail = match (trip.round_trip_seconds, &trip.error) {
            (Some(seconds), _) => format!(
                "round trip {}{}",
                milliseconds(seconds),
                trip.acknowledged_seconds
                    .map(|ack| format!(" (acknowledged in {})", milliseconds(ack)))
                    .unwrap_or_default()
            ),
            (None, Some(error)) => error.clone(),
            (None, None) => "no heartbeat came back".to_string(),
        };
        let _ = writeln!(
            out,
            "  {}  partition {:<4} leader {:<4} {detail}",
            mark(trip.ok),
            trip.partition,
            leader
        );
    }
}
