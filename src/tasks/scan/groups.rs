//! The consumer groups as the cluster lists them (ListGroups and DescribeGroups).

use std::time::Duration;

use rdkafka::error::KafkaError;

use crate::kafka::handle::AnyClient;

/// A consumer group as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GroupSummary {
    pub(super) name: String,
    /// As the coordinator reports it: Stable, Empty, PreparingRebalance, Dead, …
    pub(super) state: String,
    /// `None` when not known (the listing failed).
    pub(super) members: Option<usize>,
}

/// The state of a group the cluster could not be asked about (the listing failed or is not
/// served): named groups, and those listed before, are still reported, as this.
pub(super) const UNKNOWN_STATE: &str = "Unknown";

/// Lists the consumer groups and their state. Blocking.
pub(super) fn fetch_groups(
    client: &dyn AnyClient,
    timeout: Duration,
) -> Result<Vec<GroupSummary>, KafkaError> {
    let groups = client.requests().fetch_group_list(None, timeout)?;
    Ok(groups
        .groups()
        .iter()
        .map(|group| GroupSummary {
            name: group.name().to_string(),
            state: group.state().to_string(),
            members: Some(group.members().len()),
        })
        .collect())
}
