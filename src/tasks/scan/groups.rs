//! The consumer groups as the cluster lists and describes them, on either protocol: the
//! classic one (JoinGroup, SyncGroup) and the consumer protocol of KIP-848
//! (`group.protocol=consumer`, Kafka 4's default for new consumers), each with its state as the
//! broker names it and its members.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::kafka::groups::{
    describe_groups, list_groups, DescribedGroup, GroupProtocol, ListedGroup,
};
use crate::kafka::handle::AnyClient;
use crate::kafka::native_admin::NativeAdminError;
use rdkafka::types::RDKafkaErrorCode;

use crate::recorder::scan::found::{GroupSummary, UNKNOWN_STATE};

/// What one listing found.
#[derive(Debug, Default)]
pub(super) struct GroupListing {
    pub(super) groups: Vec<GroupSummary>,
    /// Groups listed but not described (each reported with its listed state and no member
    /// count), and the first reason.
    pub(super) undescribed: usize,
    pub(super) first_failure: Option<String>,
}

/// The state to report for a group, from librdkafka's names for what the listing and the
/// description said (`None` where librdkafka does not know the broker's name).
///
/// librdkafka 2.12 knows the classic protocol's states and Empty, Stable and Dead; the
/// consumer protocol's Assigning and Reconciling (and any state a later broker adds) come as
/// "unknown". A group on the consumer protocol that is neither Empty nor Stable is rebalancing:
/// reconciling while some member's partitions are not yet its target assignment (KIP-848's own
/// definition), otherwise assigning (the coordinator has yet to compute the new target). This is
/// a best effort: members still reconciling toward an older target while the coordinator
/// computes a new one read as Reconciling, and a state a later broker adds to that protocol
/// would read as one of these two (either way a rebalance, which is what alerts and dashboards
/// need). Any other state
/// librdkafka cannot name is the listing's, if it named one, else Unknown: never guessed.
pub(super) fn reported_state(listed: Option<&str>, described: Option<&DescribedGroup>) -> String {
    if let Some(state) = described.and_then(|group| group.state.as_deref()) {
        return state.to_string();
    }
    match described {
        Some(group) if group.protocol == GroupProtocol::Consumer && group.members > 0 => {
            if group.reconciling_members > 0 {
                "Reconciling".to_string()
            } else {
                "Assigning".to_string()
            }
        }
        _ => listed.unwrap_or(UNKNOWN_STATE).to_string(),
    }
}

/// Lists the consumer groups `wanted` accepts and describes them. Blocking; the descriptions
/// of groups on the consumer protocol start within `describe_budget` of the listing. A group
/// deleted between the listing and its description is left out; one whose description failed
/// is reported as listed, with no member count.
///
/// Classic groups are described as before, all of a broker's in one DescribeGroups (rust-rdkafka's
/// group list), and only groups the listing names as on the consumer protocol with
/// ConsumerGroupDescribe, one request each: librdkafka's DescribeConsumerGroups would try
/// ConsumerGroupDescribe first for every group, doubling the requests for the classic ones (and
/// a broker that answers it wrongly for a classic group would be believed).
///
/// librdkafka's ListConsumerGroups lists only groups whose protocol type is "consumer" or none;
/// the classic listing also has the classic groups of other protocol types (Kafka Connect's
/// workers, "connect"), reported as before. Share groups (KIP-932) and streams groups
/// (KIP-1071) are in neither (the classic description calls them Dead), and librdkafka has no
/// call to describe them.
pub(super) fn fetch_groups(
    client: &dyn AnyClient,
    timeout: Duration,
    describe_budget: Duration,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<GroupListing, NativeAdminError> {
    let mut listed: Vec<_> = list_groups(client.requests(), timeout)?
        .into_iter()
        .filter(|group| wanted(&group.name))
        .collect();
    // Two brokers may both list a group whose coordinator is moving: once is enough.
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    listed.dedup_by(|a, b| a.name == b.name);
    let listed_names: BTreeSet<String> = listed.iter().map(|group| group.name.clone()).collect();
    let (consumer, classic): (Vec<_>, Vec<_>) = listed
        .into_iter()
        .partition(|group| group.protocol == GroupProtocol::Consumer);
    let mut listing = GroupListing::default();
    let failed = |listing: &mut GroupListing, group: ListedGroup, error: String| {
        listing.undescribed += 1;
        listing
            .first_failure
            .get_or_insert_with(|| format!("{}: {error}", group.name));
        listing.groups.push(GroupSummary {
            state: reported_state(group.state.as_deref(), None),
            protocol: group.protocol,
            members: None,
            name: group.name,
        });
    };

    match client.requests().fetch_group_list(None, timeout) {
        Ok(described) => {
            let by_name: BTreeMap<&str, (&str, usize)> = described
                .groups()
                .iter()
                .map(|group| (group.name(), (group.state(), group.members().len())))
                .collect();
            for group in classic {
                match by_name.get(group.name.as_str()).copied() {
                    // Gone since the listing: its series go, as a deleted group's.
                    Some(("Dead", _)) => {}
                    Some((state, members)) => listing.groups.push(GroupSummary {
                        state: state.to_string(),
                        // A broker before Kafka 3.7 names no type: every group is classic.
                        protocol: GroupProtocol::Classic,
                        members: Some(members),
                        name: group.name,
                    }),
                    // Listed by a broker the classic listing did not hear from this time (its
                    // coordinator moving, say): not taken for deleted.
                    None => failed(
                        &mut listing,
                        group,
                        "not in the classic listing".to_string(),
                    ),
                }
            }
            for group in described.groups() {
                let other_type = !matches!(group.protocol_type(), "consumer" | "");
                if other_type
                    && group.state() != "Dead"
                    && !listed_names.contains(group.name())
                    && wanted(group.name())
                {
                    listing.groups.push(GroupSummary {
                        name: group.name().to_string(),
                        state: group.state().to_string(),
                        protocol: GroupProtocol::Classic,
                        members: Some(group.members().len()),
                    });
                }
            }
        }
        Err(error) => {
            for group in classic {
                failed(&mut listing, group, error.to_string());
            }
        }
    }

    let deadline = Instant::now() + describe_budget;
    let names: Vec<String> = consumer.iter().map(|group| group.name.clone()).collect();
    let described = describe_groups(client.requests(), &names, timeout, deadline);
    for (group, description) in consumer.into_iter().zip(described) {
        match description {
            // librdkafka describes a group that is gone (deleted since the listing) with the
            // classic DescribeGroups, which calls it Dead: its series go, as a deleted group's.
            Ok(description) if description.state.as_deref() == Some("Dead") => {}
            Ok(description) => listing.groups.push(GroupSummary {
                state: reported_state(group.state.as_deref(), Some(&description)),
                // Migrated back to the classic protocol since the listing, say.
                protocol: match description.protocol {
                    GroupProtocol::Unknown => group.protocol,
                    known => known,
                },
                members: Some(description.members),
                name: group.name,
            }),
            Err(error) if error.code() == Some(RDKafkaErrorCode::GroupIdNotFound) => {}
            Err(error) => failed(&mut listing, group, error.to_string()),
        }
    }
    listing.groups.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(
        protocol: GroupProtocol,
        state: Option<&str>,
        members: usize,
        reconciling_members: usize,
    ) -> DescribedGroup {
        DescribedGroup {
            protocol,
            state: state.map(str::to_string),
            members,
            reconciling_members,
        }
    }

    #[test]
    fn states_librdkafka_names_are_kept_as_named() {
        for state in [
            "Stable",
            "Empty",
            "Dead",
            "PreparingRebalance",
            "CompletingRebalance",
        ] {
            for protocol in [GroupProtocol::Classic, GroupProtocol::Consumer] {
                let group = described(protocol, Some(state), 1, 0);
                assert_eq!(reported_state(Some("Stable"), Some(&group)), state);
            }
        }
        // Without a description, the listing's.
        assert_eq!(reported_state(Some("Empty"), None), "Empty");
    }

    #[test]
    fn a_rebalancing_consumer_protocol_group_is_assigning_or_reconciling() {
        let reconciling = described(GroupProtocol::Consumer, None, 3, 1);
        assert_eq!(reported_state(None, Some(&reconciling)), "Reconciling");
        let assigning = described(GroupProtocol::Consumer, None, 3, 0);
        assert_eq!(reported_state(None, Some(&assigning)), "Assigning");
    }

    #[test]
    fn a_state_nobody_can_name_stays_unknown() {
        // A classic group in a state a later broker adds.
        let classic = described(GroupProtocol::Classic, None, 2, 0);
        assert_eq!(reported_state(None, Some(&classic)), UNKNOWN_STATE);
        // A consumer-protocol group with no members would be Empty, which librdkafka names:
        // an unnamed state here is a new one.
        let memberless = described(GroupProtocol::Consumer, None, 0, 0);
        assert_eq!(reported_state(None, Some(&memberless)), UNKNOWN_STATE);
        assert_eq!(reported_state(None, None), UNKNOWN_STATE);
        let unknown_type = described(GroupProtocol::Unknown, None, 1, 0);
        assert_eq!(reported_state(None, Some(&unknown_type)), UNKNOWN_STATE);
        // The listing named it where the description could not.
        assert_eq!(reported_state(Some("Empty"), Some(&classic)), "Empty");
    }
}
