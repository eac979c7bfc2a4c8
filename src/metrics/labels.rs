//! Label sets shared by several components' families. A label set only one family uses is
//! declared beside that family, in its component's `metrics.rs`.

use prometheus_client::encoding::EncodeLabelSet;

use super::summary::SummaryLabels;

/// Labels of a per-broker series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub(crate) struct BrokerLabels {
    pub(crate) broker: String,
}

impl SummaryLabels for BrokerLabels {
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        vec![("broker", self.broker.as_str())]
    }
}

impl BrokerLabels {
    /// The series of broker `broker` (an id, or a name such as `bootstrap-0`).
    pub(crate) fn new(broker: impl ToString) -> Self {
        BrokerLabels {
            broker: broker.to_string(),
        }
    }
}

/// Labels of a per-partition series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PartitionLabels {
    pub(crate) partition: String,
}

impl PartitionLabels {
    pub(crate) fn new(partition: i32) -> Self {
        PartitionLabels {
            partition: partition.to_string(),
        }
    }
}

/// Labels of a per-partition series that also names the partition's leader at the time.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PartitionLeaderLabels {
    pub(crate) partition: String,
    pub(crate) leader: String,
}

impl PartitionLeaderLabels {
    pub(crate) fn new(partition: i32, leader: i32) -> Self {
        PartitionLeaderLabels {
            partition: partition.to_string(),
            leader: leader.to_string(),
        }
    }
}

/// Labels of a series broken down by kind only.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabels {
    pub(crate) kind: String,
}

impl KindLabels {
    pub(crate) fn new(kind: &str) -> Self {
        KindLabels {
            kind: kind.to_string(),
        }
    }
}
