//! What to change for each failure the check finds: the key to set, the ACL to add, the host
//! that does not resolve. One line each, for the person on call.

use super::report::{ClusterReport, Failure, OAuthReport};
use crate::clock::unix_seconds;
use crate::recorder::observed::Connection;

/// Certificates expiring sooner than this are a warning.
const EXPIRY_WARNING_DAYS: f64 = 14.0;

/// Every failure in `report`, most basic first: a later step's failure that follows from an
/// earlier one (no metadata without a connection) is not repeated.
/// `manages_topic`: the configuration's `heartbeat.topic.manage` (the check itself never
/// creates the topic).
pub(super) fn failures(
    report: &ClusterReport,
    manages_topic: bool,
    client_error: Option<&str>,
) -> Vec<Failure> {
    let mut failures: Vec<Failure> = report
        .connections
        .iter()
        .filter(|connection| !connection.ok)
        .map(connection_failure)
        .collect();
    let oauth = report.authentication.oauth.as_ref();
    if let Some((oauth, error)) = oauth.and_then(|oauth| Some((oauth, oauth.error.as_ref()?))) {
        // Without a token no client signs in: what follows says nothing more.
        failures.push(Failure {
            step: "sign-in",
            problem: error.clone(),
            fix: signin_fix(oauth, error),
        });
        return failures;
    }
    if let Some(error) = &report.authentication.error {
        failures.push(Failure {
            step: "authentication",
            problem: error.clone(),
            fix: authentication_fix(report),
        });
    } else if !report.metadata.ok {
        let problem = report
            .metadata
            .error
            .clone()
            .or_else(|| client_error.map(str::to_string))
            .unwrap_or_else(|| "the cluster did not answer a metadata request".to_string());
        // Connections that fail say why already; an answerless cluster they reach is another
        // matter (the wrong protocol, a proxy).
        if failures.is_empty() {
            failures.push(Failure {
                step: "metadata",
                problem,
                fix: "the brokers accept connections but do not answer as Kafka: check \
                      security.protocol ([default]) against the listener, and that the port is \
                      Kafka's"
                    .to_string(),
            });
        }
        return failures;
    }
    let topic = &report.topic;
    if topic.exists == Some(false) {
        let fix = if manages_topic {
            format!(
                "the exporter creates it at start (heartbeat.topic.manage is true; it needs \
                 CREATE on topic `{}`), or create it yourself",
                topic.name
            )
        } else {
            "create it, or set heartbeat.topic.manage = true ([admin]) for the exporter to"
                .to_string()
        };
        failures.push(Failure {
            step: "topic",
            problem: format!("heartbeat topic `{}` does not exist", topic.name),
            fix,
        });
        return failures;
    }
    if let Some(problem) = &topic.problem {
        failures.push(Failure {
            step: "topic",
            problem: problem.clone(),
            fix: "see the problem: it names what to change".to_string(),
        });
    }
    let mut refused = false;
    for right in report.permissions.iter().filter(|right| !right.ok) {
        refused = true;
        failures.push(Failure {
            step: "permission",
            problem: right
                .cause
                .clone()
                .unwrap_or_else(|| format!("{} on {} refused", right.operation, right.resource)),
            fix: acl_fix(report, &pascal_case(right.operation), &right.resource),
        });
    }
    failures.extend(pipeline_failure(report));
    for trip in report.round_trips.iter().filter(|trip| !trip.ok) {
        // A refused right already explains every missing round trip.
        if refused {
            break;
        }
        let leader = trip
            .leader
            .map_or("no leader".to_string(), |leader| format!("leader {leader}"));
        failures.push(Failure {
            step: "round_trip",
            problem: format!(
                "partition {} ({leader}): {}",
                trip.partition,
                trip.error.as_deref().unwrap_or("no heartbeat came back")
            ),
            fix: match trip.leader {
                None => "the partition has no leader: its replicas' brokers are down or out \
                         of sync; see the brokers' logs"
                    .to_string(),
                Some(leader) => format!(
                    "broker {leader} leads it: see that broker's connection above, its log, and \
                     its disk and request queues"
                ),
            },
        });
    }
    failures
}

/// A replica's pipeline that delivered none of its source's heartbeats during the check.
fn pipeline_failure(report: &ClusterReport) -> Option<Failure> {
    let pipeline = report.pipeline.as_ref().filter(|pipeline| !pipeline.ok)?;
    Some(Failure {
        step: "pipeline",
        problem: pipeline.error.clone().unwrap_or_default(),
        fix: format!(
            "check the replication from {} to {} (MirrorMaker 2's workers and log, or the \
             cluster link), and mirror.topic ([cluster:{}:admin])",
            pipeline.source, report.cluster, report.cluster
        ),
    })
}

/// What is worth knowing without being a failure: brokers no heartbeat proves, certificates
/// about to expire, the topic's warnings.
pub(super) fn warnings(report: &ClusterReport) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(warning) = &report.topic.warning {
        warnings.push(warning.clone());
    }
    if !report.topic.brokers_without_leadership.is_empty() && report.topic.partitions > 0 {
        warnings.push(format!(
            "brokers {:?} lead no partition of `{}`: heartbeats do not prove them; give the \
             topic a partition per broker",
            report.topic.brokers_without_leadership, report.topic.name
        ));
    }
    let now = unix_seconds();
    for connection in &report.connections {
        let Some(expires_at) = connection
            .certificate
            .as_ref()
            .and_then(|certificate| certificate.expires_at)
        else {
            continue;
        };
        let days = (expires_at - now) / 86_400.0;
        if (0.0..EXPIRY_WARNING_DAYS).contains(&days) {
            warnings.push(format!(
                "the certificate of {} ({}) expires in {days:.1} days",
                target_name(connection),
                connection.address
            ));
        }
    }
    warnings
}

/// `broker 3` or `bootstrap server 1`.
pub(super) fn target_name(connection: &Connection) -> String {
    match connection.broker_id {
        Some(id) => format!("broker {id}"),
        None => match connection.target.strip_prefix("bootstrap-") {
            Some(index) => format!("bootstrap server {index}"),
            None => connection.target.clone(),
        },
    }
}

fn connection_failure(connection: &Connection) -> Failure {
    let (phase, reason, detail) = connection
        .failure
        .as_ref()
        .map_or(("tcp", "other", String::new()), |failure| {
            (failure.phase, failure.reason, failure.detail.clone())
        });
    let host = connection
        .address
        .rsplit_once(':')
        .map_or(connection.address.as_str(), |(host, _)| host);
    let bootstrap = connection.broker_id.is_none();
    let whose = if bootstrap {
        "bootstrap.servers ([default])".to_string()
    } else {
        format!(
            "the address broker {} advertises (its advertised.listeners)",
            connection.broker_id.unwrap_or_default()
        )
    };
    let fix = match (phase, reason) {
        (_, "name_resolution") => format!(
            "`{host}` does not resolve from here: check the name in {whose}, and this machine's \
             DNS (getent hosts {host}); a private cluster needs its private DNS zone"
        ),
        ("tcp", "refused") => format!(
            "nothing listens on {}: check the port in {whose}, and that the broker runs",
            connection.address
        ),
        ("tcp", "unreachable") => format!(
            "no route to {}: check this machine's network, VPN or peering to the cluster",
            connection.address
        ),
        ("tcp", "timeout") | ("dns", "timeout") => format!(
            "{} does not answer: a firewall, security group or proxy drops the traffic, or \
             the host is down",
            connection.address
        ),
        ("tls", "certificate_untrusted") => format!(
            "the certificate{} is not trusted: set ssl.ca.location ([default]) to the CA that \
             issued it",
            issued_by(connection)
        ),
        ("tls", "certificate_expired") => format!(
            "the certificate of {} has expired: renew it on the broker",
            connection.address
        ),
        ("tls", "name_mismatch") => format!(
            "the certificate{} is not for `{host}`: connect by a name it holds (or, only for \
             tests, ssl.endpoint.identification.algorithm = none)",
            subject(connection)
        ),
        ("tls", _) => format!(
            "the TLS handshake with {} failed: check security.protocol ([default]; SSL or \
             SASL_SSL only where the listener speaks TLS) and the client certificate settings",
            connection.address
        ),
        _ => format!("check {whose} and the network to {}", connection.address),
    };
    Failure {
        step: "connection",
        problem: format!(
            "{} ({}): {phase} {reason}: {detail}",
            target_name(connection),
            connection.address
        ),
        fix,
    }
}

fn issued_by(connection: &Connection) -> String {
    connection
        .certificate
        .as_ref()
        .map(|certificate| format!(" (issued by {})", certificate.issuer))
        .unwrap_or_default()
}

fn subject(connection: &Connection) -> String {
    connection
        .certificate
        .as_ref()
        .map(|certificate| format!(" ({})", certificate.subject))
        .unwrap_or_default()
}

/// What to do when no token comes from the identity provider.
fn signin_fix(oauth: &OAuthReport, error: &str) -> String {
    let host = &oauth.token_endpoint;
    if error.contains("refused client") {
        format!(
            "the identity provider at {host} refused client `{}`: check \
             sasl.oauthbearer.client.id and sasl.oauthbearer.client.secret (or its file) \
             ([default]), and sasl.oauthbearer.scope",
            oauth.client_id
        )
    } else if error.contains("certificate") || error.contains("TLS") || error.contains("SSL") {
        format!(
            "the token endpoint's certificate is not trusted: set https.ca.location ([default]) \
             to the CA that signed {host}'s certificate"
        )
    } else {
        format!(
            "reach the token endpoint from here: check sasl.oauthbearer.token.endpoint.url \
             ([default]), that {host} resolves and is reachable (proxy, firewall), and the \
             identity provider's status"
        )
    }
}

fn authentication_fix(report: &ClusterReport) -> String {
    let authentication = &report.authentication;
    if let Some(oauth) = &authentication.oauth {
        return format!(
            "the brokers refused the token from {}: check that they expect its issuer, \
             audience and scope (their log says which), and on Confluent Cloud \
             sasl.oauthbearer.extensions (logicalCluster and identityPoolId)",
            oauth.token_endpoint
        );
    }
    let who = match (&authentication.mechanism, &authentication.user) {
        (Some(mechanism), Some(user)) => format!("{mechanism} user `{user}`"),
        (Some(mechanism), None) => format!("{mechanism} (no sasl.username)"),
        _ => "the client".to_string(),
    };
    format!(
        "the cluster refused {who}: check sasl.username and sasl.password ([default]; on \
         Confluent Cloud, the API key and secret, and that the key belongs to this cluster) \
         and sasl.mechanisms"
    )
}

/// `IDEMPOTENT_WRITE` as kafka-acls names it: `IdempotentWrite`.
fn pascal_case(operation: &str) -> String {
    operation
        .split('_')
        .map(|word| {
            let lower = word.to_ascii_lowercase();
            let mut characters = lower.chars();
            characters.next().map_or(String::new(), |first| {
                first.to_ascii_uppercase().to_string() + characters.as_str()
            })
        })
        .collect()
}

/// The ACL to add for a refused right, for the configured user.
fn acl_fix(report: &ClusterReport, operation: &str, resource: &str) -> String {
    let principal = report
        .authentication
        .user
        .as_deref()
        .map_or("User:<the exporter's user>".to_string(), |user| {
            format!("User:{user}")
        });
    let target = match resource.split_once(':') {
        Some(("topic", "*")) => "--topic '*' (or the topics of the groups reported)".to_string(),
        Some(("group", "*")) => "--group '*' (or the groups reported)".to_string(),
        Some(("topic", name)) => format!("--topic {name}"),
        Some(("group", name)) => format!("--group {name}"),
        Some(("transactional_id", name)) => format!("--transactional-id {name}"),
        _ => "--cluster".to_string(),
    };
    format!("add the ACL: kafka-acls --add --allow-principal {principal} --operation {operation} {target}")
}
