//! The rights the exporter needs on one cluster, stated from what the cluster answered: each
//! right is 1 until an operation that needs it is refused for lack of it, and 1 again once
//! that operation succeeds. `heartbeat_permission_ok{operation, resource}` shows them, and a
//! refused right is a readiness cause naming the right and the resource, with what it stops.
//!
//! Kafka implies some rights by others (READ, WRITE and ALTER imply DESCRIBE), so a right a
//! cluster grants through another is never reported missing: only refusals count.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::config::Config;
use crate::metrics::Families;
use crate::sync::lock;

/// An ACL operation, named as Kafka's ACL tools name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Operation {
    Describe,
    DescribeConfigs,
    Read,
    Write,
    Create,
    Alter,
    IdempotentWrite,
}

impl Operation {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Operation::Describe => "DESCRIBE",
            Operation::DescribeConfigs => "DESCRIBE_CONFIGS",
            Operation::Read => "READ",
            Operation::Write => "WRITE",
            Operation::Create => "CREATE",
            Operation::Alter => "ALTER",
            Operation::IdempotentWrite => "IDEMPOTENT_WRITE",
        }
    }
}

/// What a right is on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Resource {
    Cluster,
    Topic(String),
    Group(String),
    TransactionalId(String),
    /// The consumer groups the scan reports (whichever is refused, the log names it).
    ReportedGroups,
    /// The topics those groups commit on.
    ReportedTopics,
}

impl Resource {
    /// The `resource` label value: `kind:name`, `*` for the scan's groups and topics.
    fn label(&self) -> String {
        match self {
            Resource::Cluster => "cluster".to_string(),
            Resource::Topic(name) => format!("topic:{name}"),
            Resource::Group(name) => format!("group:{name}"),
            Resource::TransactionalId(name) => format!("transactional_id:{name}"),
            Resource::ReportedGroups => "group:*".to_string(),
            Resource::ReportedTopics => "topic:*".to_string(),
        }
    }

    /// The resource in a sentence.
    fn describe(&self) -> String {
        match self {
            Resource::Cluster => "the cluster".to_string(),
            Resource::Topic(name) => format!("topic `{name}`"),
            Resource::Group(name) => format!("the consumer group `{name}`"),
            Resource::TransactionalId(name) => format!("the transactional id `{name}`"),
            Resource::ReportedGroups => "the consumer groups it reports".to_string(),
            Resource::ReportedTopics => "the topics of the groups it reports".to_string(),
        }
    }
}

/// One right: an operation on a resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Right {
    pub(crate) operation: Operation,
    pub(crate) resource: Resource,
}

impl Right {
    pub(crate) fn new(operation: Operation, resource: Resource) -> Self {
        Right {
            operation,
            resource,
        }
    }

    /// `WRITE on topic `x``.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} on {}",
            self.operation.as_str(),
            self.resource.describe()
        )
    }

    fn labels(&self) -> PermissionLabels {
        PermissionLabels {
            operation: self.operation.as_str(),
            resource: self.resource.label(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PermissionLabels {
    operation: &'static str,
    resource: String,
}

/// An operation that needs this right succeeded.
#[derive(Debug)]
pub(crate) struct Allowed(pub(crate) Right);

/// An operation was refused for lack of `right`.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) right: Right,
    /// What the refusal stops, for the log and `/ready`.
    pub(crate) stops: String,
    /// The cluster's answer.
    pub(crate) error: String,
}

impl Refused {
    pub(crate) fn new(right: Right, stops: &str, error: &dyn std::fmt::Display) -> Self {
        Refused {
            right,
            stops: stops.to_string(),
            error: error.to_string(),
        }
    }
}

/// The rights of one cluster's account, as the cluster answered.
#[derive(Debug, Default)]
pub(crate) struct Permissions {
    ok: Family<PermissionLabels, Gauge>,
    /// Refused rights, with the readiness cause each is.
    refused: Mutex<BTreeMap<Right, String>>,
    /// Whether anything is refused: the hot paths that grant on success check only this.
    any_refused: AtomicBool,
    /// The rights the configuration needs, in the order of docs/confluent-cloud.md's ACL list.
    needed: Vec<Right>,
}

/// One right as the cluster answered, for a person to read.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct RightState {
    pub(crate) operation: &'static str,
    /// `kind:name`, as the `resource` label.
    pub(crate) resource: String,
    /// False once refused, until an operation needing it succeeds.
    pub(crate) ok: bool,
    /// What the refusal stops, and the right to grant.
    pub(crate) cause: Option<String>,
}

impl Permissions {
    /// Every right `config` needs, each 1 until refused.
    pub(super) fn new(config: &Config) -> Self {
        let permissions = Permissions {
            needed: needed(config),
            ..Permissions::default()
        };
        for right in &permissions.needed {
            permissions.ok.get_or_create(&right.labels()).set(1);
        }
        permissions
    }

    /// Every right needed, with what the cluster answered of it.
    pub(crate) fn states(&self) -> Vec<RightState> {
        let refused = lock(&self.refused);
        self.needed
            .iter()
            .map(|right| RightState {
                operation: right.operation.as_str(),
                resource: right.resource.label(),
                ok: !refused.contains_key(right),
                cause: refused.get(right).cloned(),
            })
            .collect()
    }

    /// `right` was refused (`error`); `stops` says what that stops, for the log and `/ready`.
    pub(super) fn refuse(&self, right: Right, stops: &str, error: &dyn std::fmt::Display) {
        let cause = format!("{stops}: the account needs {} ({error})", right.describe());
        let mut refused = lock(&self.refused);
        // Under the lock, so a concurrent `allow` cannot leave the gauge at 1 for a cause.
        self.ok.get_or_create(&right.labels()).set(0);
        if !refused.contains_key(&right) {
            tracing::warn!(
                operation = right.operation.as_str(),
                resource = right.resource.label(),
                "{cause}"
            );
        }
        refused.insert(right, cause);
        self.any_refused.store(true, Ordering::Release);
    }

    /// An operation that needs `right` succeeded.
    pub(super) fn allow(&self, right: &Right) {
        if !self.any_refused.load(Ordering::Acquire) {
            return;
        }
        let mut refused = lock(&self.refused);
        if refused.remove(right).is_some() {
            self.ok.get_or_create(&right.labels()).set(1);
            tracing::info!(
                operation = right.operation.as_str(),
                resource = right.resource.label(),
                "the account has {} again",
                right.describe()
            );
        }
        self.any_refused
            .store(!refused.is_empty(), Ordering::Release);
    }

    /// The readiness causes of the refused rights, in a stable order.
    pub(crate) fn causes(&self) -> Vec<String> {
        if !self.any_refused.load(Ordering::Acquire) {
            return Vec::new();
        }
        // The scan's rights are for lag and margins of other groups: missing, they are said
        // (here as 0, and in the log), but the exporter is still ready.
        lock(&self.refused)
            .iter()
            .filter(|(right, _)| {
                !matches!(
                    right.resource,
                    Resource::ReportedGroups | Resource::ReportedTopics
                )
            })
            .map(|(_, cause)| cause.clone())
            .collect()
    }
}

/// The rights the exporter configured by `config` needs (the ACL list of docs/confluent-cloud.md).
fn needed(config: &Config) -> Vec<Right> {
    let admin = &config.admin;
    let topic = Resource::Topic(admin.heartbeat_topic.clone());
    let mut rights = vec![
        Right::new(Operation::Describe, Resource::Cluster),
        Right::new(Operation::Describe, topic.clone()),
        Right::new(Operation::Read, topic.clone()),
        Right::new(Operation::Write, topic.clone()),
        Right::new(Operation::Read, Resource::Group(config.consumer_group_id())),
        Right::new(Operation::Describe, Resource::ReportedGroups),
        Right::new(Operation::Describe, Resource::ReportedTopics),
        Right::new(Operation::DescribeConfigs, Resource::ReportedTopics),
    ];
    if admin.heartbeat_topic_manage {
        rights.push(Right::new(Operation::Create, topic.clone()));
        rights.push(Right::new(Operation::Alter, topic));
    }
    if admin.consumer_group_lag_seconds {
        rights.push(Right::new(Operation::Read, Resource::ReportedTopics));
    }
    if admin.probe_transactions {
        let id = Resource::TransactionalId(config.transactional_id());
        rights.push(Right::new(Operation::Describe, id.clone()));
        rights.push(Right::new(Operation::Write, id));
        rights.push(Right::new(Operation::IdempotentWrite, Resource::Cluster));
    }
    rights
}

impl Families for Permissions {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "permission_ok",
            "1 for each right the exporter needs, 0 once the cluster refused an operation for lack of it (until that operation succeeds again)",
            self.ok.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_right_is_zero_and_a_cause_until_allowed_again() {
        let config = Config::for_test("[admin]\nheartbeat.topic = beats\n", &[]).unwrap();
        let permissions = Permissions::new(&config);
        let write = Right::new(Operation::Write, Resource::Topic("beats".into()));
        let labels = write.labels();
        assert_eq!(permissions.ok.get_or_create(&labels).get(), 1);
        assert!(permissions.causes().is_empty());
        permissions.refuse(write.clone(), "heartbeats are refused", &"denied");
        assert_eq!(permissions.ok.get_or_create(&labels).get(), 0);
        assert_eq!(
            permissions.causes(),
            ["heartbeats are refused: the account needs WRITE on topic `beats` (denied)"]
        );
        permissions.allow(&Right::new(
            Operation::Read,
            Resource::Topic("beats".into()),
        ));
        assert_eq!(
            permissions.causes().len(),
            1,
            "another right does not clear it"
        );
        permissions.allow(&write);
        assert_eq!(permissions.ok.get_or_create(&labels).get(), 1);
        assert!(permissions.causes().is_empty());
    }

    #[test]
    fn the_rights_follow_the_configuration() {
        let labels = |ini: &str| -> Vec<String> {
            let config = Config::for_test(ini, &[]).unwrap();
            needed(&config)
                .iter()
                .map(|right| format!("{} {}", right.operation.as_str(), right.resource.label()))
                .collect()
        };
        let managed = labels("[admin]\nheartbeat.topic = beats\n");
        assert!(managed.contains(&"CREATE topic:beats".to_string()));
        assert!(managed.contains(&"READ group:cc-heartbeat".to_string()));
        assert!(!managed
            .iter()
            .any(|label| label.contains("transactional_id")));
        let checked = labels(
            "[consumer]\ngroup.id = mine\n[admin]\nheartbeat.topic.manage = false\n\
             consumer.group.lag.seconds = false\nprobe.transactions = true\n",
        );
        assert!(!checked.iter().any(|label| label.starts_with("CREATE")));
        assert!(checked.contains(&"READ group:mine".to_string()));
        assert!(!checked.contains(&"READ topic:*".to_string()));
        assert!(checked.contains(&"WRITE transactional_id:cc-heartbeat-default".to_string()));
    }
}
