//! A change between two metadata views: the `kind` label of
//! `heartbeat_metadata_changes_total`, and what the log says of it.

use crate::cluster::Broker;

/// A change between two metadata views, as counted in `heartbeat_metadata_changes_total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    ClusterIdChanged {
        from: String,
        to: String,
    },
    BrokerAdded(Broker),
    BrokerRemoved(Broker),
    BrokerReturned(Broker),
    BrokerAddressChanged {
        from: Broker,
        to: Broker,
    },
    BrokerForgotten(Broker),
    PartitionsAdded {
        from: usize,
        to: usize,
    },
    LeaderChanged {
        partition: i32,
        from: Option<i32>,
        to: Option<i32>,
    },
}

impl Change {
    /// Every `kind` label value, so each series exists (at zero) from the start.
    pub(crate) const KINDS: [&'static str; 8] = [
        "cluster_id_changed",
        "broker_added",
        "broker_removed",
        "broker_returned",
        "broker_address_changed",
        "broker_forgotten",
        "partitions_added",
        "leader_changed",
    ];

    /// Whether the change is something going wrong (said as a warning), rather than the
    /// cluster doing its job or coming back (said as information).
    pub(crate) fn is_trouble(&self) -> bool {
        matches!(
            self,
            Change::ClusterIdChanged { .. }
                | Change::BrokerRemoved(_)
                | Change::BrokerAddressChanged { .. }
        )
    }

    /// The `kind` label.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Change::ClusterIdChanged { .. } => "cluster_id_changed",
            Change::BrokerAdded(_) => "broker_added",
            Change::BrokerRemoved(_) => "broker_removed",
            Change::BrokerReturned(_) => "broker_returned",
            Change::BrokerAddressChanged { .. } => "broker_address_changed",
            Change::BrokerForgotten(_) => "broker_forgotten",
            Change::PartitionsAdded { .. } => "partitions_added",
            Change::LeaderChanged { .. } => "leader_changed",
        }
    }
}

pub(crate) fn describe_leader(leader: Option<i32>) -> String {
    leader.map_or_else(|| "none".to_string(), |id| id.to_string())
}

pub(crate) fn describe_broker(broker: &Broker) -> String {
    match &broker.rack {
        Some(rack) => format!("broker {} at {} (rack {rack})", broker.id, broker.address()),
        None => format!("broker {} at {}", broker.id, broker.address()),
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::ClusterIdChanged { from, to } => {
                write!(f, "cluster id changed from {from} to {to}")
            }
            Change::BrokerAdded(broker) => write!(f, "{} added", describe_broker(broker)),
            Change::BrokerRemoved(broker) => {
                write!(f, "{} is missing from metadata", describe_broker(broker))
            }
            Change::BrokerReturned(broker) => write!(f, "{} is back", describe_broker(broker)),
            Change::BrokerAddressChanged { from, to } => write!(
                f,
                "broker {} moved from {} to {}",
                to.id,
                describe_broker(from),
                describe_broker(to)
            ),
            Change::BrokerForgotten(broker) => write!(
                f,
                "{} has been missing longer than the retention; its series are removed",
                describe_broker(broker)
            ),
            Change::PartitionsAdded { from, to } => {
                write!(f, "heartbeat topic partitions grew from {from} to {to}")
            }
            Change::LeaderChanged {
                partition,
                from,
                to,
            } => write!(
                f,
                "leader of partition {partition} changed from {} to {}",
                describe_leader(*from),
                describe_leader(*to)
            ),
        }
    }
}
