//! Kafka clients: the settings each role gets, and the context that routes librdkafka's logs
//! and errors into `tracing` and the cluster's status.
//!
//! Defaults favour honest, fast measurements and quick recovery; the user's properties from the
//! INI file are applied over them.

use std::collections::BTreeMap;
use std::sync::Arc;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use super::stats::StatsInbox;
use crate::config::{is_secret, sasl_mechanism, Config, DEFAULT_GROUP_ID, MASK};
use crate::logging::LogThrottle;

/// Which client a configuration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The heartbeat producer.
    Producer,
    /// The end-to-end consumer.
    Consumer,
    /// The cluster scan: its requests, and (as the lag probe) the oldest unconsumed record of
    /// lagging partitions, for lag in seconds.
    Scan,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
            Role::Scan => "scan",
        }
    }
}

/// Who decided a client property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decided {
    /// The configuration file or the environment.
    User,
    /// cc-heartbeat's default, which the user may override.
    Default,
    /// cc-heartbeat, whatever the user says (a measurement or the probe's safety needs it).
    Forced,
}

/// cc-heartbeat's defaults for `role`, which the user's properties override.
fn default_properties(config: &Config, role: Role) -> BTreeMap<String, String> {
    let admin = &config.admin;
    let mut properties: BTreeMap<String, String> = BTreeMap::new();
    let mut set = |key: &str, value: String| {
        properties.insert(key.to_string(), value);
    };
    set("client.id", format!("cc-heartbeat-{}", role.as_str()));
    // A monitor should notice a broker's return quickly (librdkafka's backoff grows to 10 s by
    // default), without hammering a cluster that limits connection rates during an outage.
    set("reconnect.backoff.ms", "100".to_string());
    set("reconnect.backoff.max.ms", "3000".to_string());
    // Only the topic task creates the heartbeat topic, with the right settings: a produce or
    // metadata request must never auto-create it with broker defaults.
    set("allow.auto.create.topics", "false".to_string());
    // After a topic-level refusal (an authorization failure) librdkafka refuses every send
    // locally until its next metadata refresh of the topic: 5 minutes by default. A monitor
    // should see the fix within seconds; the request is small (only the heartbeat topic).
    set("topic.metadata.refresh.interval.ms", "10000".to_string());
    set("socket.keepalive.enable", "true".to_string());
    // Nagle's algorithm may hold a small request back: latency a monitor would measure as the
    // cluster's.
    set("socket.nagle.disable", "true".to_string());
    match role {
        Role::Producer => {
            set("acks", "all".to_string());
            // Batching delay would be measured as latency.
            set("linger.ms", "0".to_string());
            set("enable.idempotence", "false".to_string());
            // A broker's refusal is retried a few times (backing off 0.1, 0.2, 0.4 s), then
            // reported as what it is (not_enough_replicas, say) within a second, rather than
            // retried until message.timeout.ms and reported as timed_out. Waiting for a leader
            // or a connection, and a leader change, cost no retry; a request in flight when
            // its connection drops costs one: a crashed broker's partitions still wait for
            // their new leader.
            set("retries", "3".to_string());
            // Bounded memory whatever happens: at most this much waits to be sent (beyond it a
            // heartbeat fails as queue_full rather than memory growing).
            set("queue.buffering.max.messages", "100000".to_string());
            set("queue.buffering.max.kbytes", "32768".to_string());
            // The client's own view of each broker (connection state, round-trip time).
            set("statistics.interval.ms", "15000".to_string());
            // Below the lost deadline, so a heartbeat is failed or lost, never both.
            let timeout = (admin.lost_after / 2).min(std::time::Duration::from_secs(10));
            set("message.timeout.ms", timeout.as_millis().max(1).to_string());
        }
        Role::Consumer => {
            set("group.id", DEFAULT_GROUP_ID.to_string());
            set("enable.auto.commit", "false".to_string());
            set("enable.auto.offset.store", "false".to_string());
            set("auto.offset.reset", "latest".to_string());
            set("enable.partition.eof", "false".to_string());
            // A broker answers a fetch as soon as a heartbeat arrives, so a long wait costs no
            // latency; a short one only wakes every broker connection more often when idle.
            set("fetch.wait.max.ms", "500".to_string());
            // Bounded prefetch, even if someone floods the heartbeat topic.
            set("queued.max.messages.kbytes", "4096".to_string());
            set("fetch.error.backoff.ms", "100".to_string());
            // Throttling by each broker, and which one coordinates the group.
            set("statistics.interval.ms", "15000".to_string());
        }
        Role::Scan => {
            // Assigns partitions, never joins the group, never commits: sharing the heartbeat
            // consumer's group.id (which ACLs may require) disturbs nobody.
            set("group.id", DEFAULT_GROUP_ID.to_string());
            set("fetch.wait.max.ms", "100".to_string());
            // Only the first record of each partition is wanted: small fetches, small prefetch.
            set("max.partition.fetch.bytes", "65536".to_string());
            set("fetch.max.bytes", "1048576".to_string());
            set("queued.max.messages.kbytes", "2048".to_string());
            set("fetch.error.backoff.ms", "100".to_string());
        }
    }
    properties
}

/// What cc-heartbeat sets for `role` whatever the user says.
fn forced_properties(role: Role) -> &'static [(&'static str, &'static str)] {
    match role {
        // A batching delay would be measured as acknowledgement latency: never allowed.
        Role::Producer => &[("linger.ms", "0")],
        // The probe must never move a group's offsets; the record at a committed offset that
        // retention deleted is replaced by the oldest left (which is then the oldest unconsumed
        // one); reaching the end tells that only control records were left; and it reads up
        // to the high watermark the lag is measured against, open transactions included, or
        // it would wait on them.
        Role::Scan => &[
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "true"),
            ("isolation.level", "read_uncommitted"),
        ],
        Role::Consumer => &[],
    }
}

/// Every librdkafka property `role`'s client gets, and who decided it: cc-heartbeat's
/// defaults, the user's properties over them, then what cc-heartbeat forces.
pub fn client_properties(config: &Config, role: Role) -> BTreeMap<String, (String, Decided)> {
    let mut properties: BTreeMap<String, (String, Decided)> = default_properties(config, role)
        .into_iter()
        .map(|(key, value)| (key, (value, Decided::Default)))
        .collect();
    for (key, value) in user_properties(config, role) {
        properties.insert(key, (value, Decided::User));
    }
    for (key, value) in forced_properties(role) {
        properties.insert(key.to_string(), (value.to_string(), Decided::Forced));
    }
    properties
}

/// The librdkafka configuration of `role`'s client (see [`client_properties`]).
pub fn client_config(config: &Config, role: Role) -> ClientConfig {
    let mut client_config = ClientConfig::new();
    for (key, (value, _)) in client_properties(config, role) {
        client_config.set(key, value);
    }
    client_config.set_log_level(RDKafkaLogLevel::Info);
    client_config
}

/// The effective client settings of `config` as INI, one section per client, secrets masked
/// and each setting cc-heartbeat made marked: what `--check-config` shows beside the file.
pub fn render_client_settings(config: &Config) -> String {
    let mut out = String::from(
        "# What each client gets: your properties over cc-heartbeat's defaults, and what it forces.\n",
    );
    for role in [Role::Producer, Role::Consumer, Role::Scan] {
        out.push_str(&format!("# [{} client]\n", role.as_str()));
        for (key, (value, decided)) in client_properties(config, role) {
            let value = if is_secret(&key) {
                MASK.to_string()
            } else {
                value.replace('\n', "\n#     ")
            };
            let mark = match decided {
                Decided::User => "",
                Decided::Default => "    (cc-heartbeat's default)",
                Decided::Forced => "    (forced by cc-heartbeat)",
            };
            out.push_str(&format!("#   {key} = {value}{mark}\n"));
        }
    }
    out
}

/// The user's librdkafka properties for `role`: the section it reads over `[default]`.
fn user_properties(config: &Config, role: Role) -> BTreeMap<String, String> {
    match role {
        Role::Producer => config.producer_properties(),
        Role::Consumer | Role::Scan => config.consumer_properties(),
    }
}

/// Who a client authenticates as, to name in an authentication failure: the SASL mechanism
/// and user name (never the password); `None` without SASL.
fn sasl_identity(properties: &BTreeMap<String, String>) -> Option<String> {
    let mechanism = sasl_mechanism(properties)?;
    Some(match properties.get("sasl.username") {
        Some(user) => format!("sasl.mechanisms={mechanism}, sasl.username={user}"),
        None => format!("sasl.mechanisms={mechanism}"),
    })
}

/// An error librdkafka reported on one of a cluster's clients.
#[derive(Debug, Clone)]
pub struct ClientError {
    pub role: Role,
    /// Said for a person: which credentials, when authentication failed.
    pub reason: String,
    /// "All brokers are down", which follows the specific failure (TLS, SASL) that caused it.
    pub all_brokers_down: bool,
    /// The brokers refused the client's credentials.
    pub authentication: bool,
}

/// Where a client's errors go beside the log: the record of its cluster.
pub trait ClientReports: Send + Sync {
    fn client_error(&self, error: ClientError);
}

/// Reports that go nowhere: for a client outside any cluster's record (a test's).
#[derive(Debug, Default)]
pub struct Unreported;

impl ClientReports for Unreported {
    fn client_error(&self, _error: ClientError) {}
}

/// Routes one client's librdkafka logs and errors to `tracing` and the cluster's record,
/// with repeated messages summarised.
pub struct ClientLog {
    cluster: String,
    role: Role,
    reports: Arc<dyn ClientReports>,
    throttle: LogThrottle,
    /// The SASL mechanism and user, named when authentication fails.
    identity: Option<String>,
    /// Where statistics go, for a client that requests them.
    stats: Option<Arc<StatsInbox>>,
    /// Whether the client signs in with the exporter's OAuth tokens.
    oauth: bool,
}

impl ClientLog {
    pub fn new(cluster: &str, role: Role, reports: Arc<dyn ClientReports>) -> Self {
        ClientLog {
            cluster: cluster.to_string(),
            role,
            reports,
            throttle: LogThrottle::default(),
            identity: None,
            stats: None,
            oauth: false,
        }
    }

    /// The same context, handing the client's statistics reports to `inbox`.
    pub(crate) fn with_stats(self, inbox: Arc<StatsInbox>) -> Self {
        ClientLog {
            stats: Some(inbox),
            ..self
        }
    }

    /// The context of `role`'s client of the cluster `config` configures: its errors name the
    /// cluster, and an authentication failure names the SASL mechanism and user it was for.
    pub fn for_cluster(config: &Config, role: Role, reports: Arc<dyn ClientReports>) -> Self {
        ClientLog {
            identity: sasl_identity(&user_properties(config, role)),
            oauth: config.oauth.is_some(),
            ..ClientLog::new(&config.name, role, reports)
        }
    }
}

/// The throttle key of a librdkafka message: the same message with other numbers (ports,
/// durations, counts) is the same message.
fn throttle_key(message: &str) -> String {
    let mut key = String::with_capacity(message.len());
    let mut in_number = false;
    for character in message.chars() {
        if character.is_ascii_digit() {
            if !in_number {
                key.push('#');
            }
            in_number = true;
        } else {
            key.push(character);
            in_number = false;
        }
    }
    key
}

/// Whether `code` is a connection failure: the exporter's own connection checks and metadata
/// refreshes say it once per spell, with the broker and the cause, so each client need not.
pub(crate) fn is_transport_failure(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::Resolve
        )
    )
}

/// Whether `code` is a refusal for lack of a right (an ACL).
pub(crate) fn is_authorization_failure(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(
        code,
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
        )
    )
}

impl ClientContext for ClientLog {
    // librdkafka's own log lines are detail (each client tells of each connection it loses):
    // at debug level. What needs saying comes through `error` below, or from the tasks.
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let Some(held_back) = self.throttle.admit(&throttle_key(message)) else {
            return;
        };
        let client = self.role.as_str();
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!(target: "librdkafka", cluster = %self.cluster, client, facility, held_back, "{message}")
            }
            _ => {
                tracing::debug!(target: "librdkafka", cluster = %self.cluster, client, facility, held_back, "{message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        // Which credentials were refused is what the person on call needs first.
        let reason = match (&self.identity, code) {
            (Some(identity), Some(RDKafkaErrorCode::Authentication)) => {
                format!("authentication failed ({identity}): {reason}")
            }
            _ => reason.to_string(),
        };
        let text = format!("{error}: {reason}");
        self.reports.client_error(ClientError {
            role: self.role,
            reason: reason.clone(),
            all_brokers_down: matches!(code, Some(RDKafkaErrorCode::AllBrokersDown)),
            authentication: code == Some(RDKafkaErrorCode::Authentication),
        });
        let Some(held_back) = self.throttle.admit(&throttle_key(&text)) else {
            return;
        };
        let client = self.role.as_str();
        // A refused OAuth token is said once by the sign-in task, which knows whether it had
        // expired and which identity provider issued it.
        let said_by_signin = self.oauth && code == Some(RDKafkaErrorCode::Authentication);
        if is_transport_failure(code) || said_by_signin {
            tracing::debug!(target: "librdkafka", cluster = %self.cluster, client, held_back, "{text}");
        } else {
            tracing::error!(target: "librdkafka", cluster = %self.cluster, client, held_back, "{text}");
        }
    }

    // Statistics go to the task that asked for them; others are dropped rather than logged.
    fn stats_raw(&self, statistics: &[u8]) {
        if let Some(inbox) = &self.stats {
            inbox.put(statistics);
        }
    }
}

impl ConsumerContext for ClientLog {}

// Delivery reports of producers that need none (the transaction probe's: its commit says
// whether the message made it).
impl ProducerContext for ClientLog {
    type DeliveryOpaque = ();

    fn delivery(&self, _result: &DeliveryResult<'_>, _opaque: ()) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_differing_only_in_numbers_are_one_message() {
        let first = "Connect to ipv4#127.0.0.1:40211 failed: Connection refused (after 0ms in state CONNECT)";
        let second = "Connect to ipv4#127.0.0.1:40211 failed: Connection refused (after 12ms in state CONNECT, 4 identical error(s) suppressed)";
        let third = "Connect to ipv4#127.0.0.1:40211 failed: Connection refused (after 3ms in state CONNECT)";
        assert_eq!(throttle_key(first), throttle_key(third));
        assert_ne!(throttle_key(first), throttle_key(second));
        assert_eq!(throttle_key("a 10 b 200"), "a # b #");
    }

    #[test]
    fn user_properties_override_defaults() {
        let config = Config::for_test("[producer]\nlinger.ms = 5\nacks = 1\n", &[]).unwrap();
        let producer = client_config(&config, Role::Producer);
        assert_eq!(producer.get("acks"), Some("1"), "the user's choice");
        assert_eq!(
            producer.get("linger.ms"),
            Some("0"),
            "never a batching delay"
        );
        assert_eq!(producer.get("enable.idempotence"), Some("false"));
        assert_eq!(producer.get("allow.auto.create.topics"), Some("false"));
        let consumer = client_config(&config, Role::Consumer);
        assert_eq!(
            consumer.get("acks"),
            None,
            "[producer] stays with the producer"
        );
        assert_eq!(consumer.get("enable.auto.commit"), Some("false"));
    }
}
