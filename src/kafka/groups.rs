//! Consumer groups as the cluster lists and describes them, on either protocol: librdkafka's
//! ListConsumerGroups (ListGroups, which names each group's type and state) and
//! DescribeConsumerGroups (ConsumerGroupDescribe for a group on the consumer protocol of
//! KIP-848, DescribeGroups for a classic one).
//!
//! rust-rdkafka wraps only the classic listing (`fetch_group_list`: ListGroups and
//! DescribeGroups), to which a group on the new protocol looks Dead with no members.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::os::raw::c_char;
use std::time::{Duration, Instant};

use rdkafka::bindings as native;
use rdkafka::types::RDKafkaErrorCode;

use super::handle::Requests;
use super::native_admin::{admin_request, copy_string, native_slice, NativeAdminError};

/// The protocol a group's members speak, as the cluster names its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupProtocol {
    /// JoinGroup and SyncGroup, or no members at all (a group that only commits).
    Classic,
    /// The consumer group protocol of KIP-848 (`group.protocol=consumer`).
    Consumer,
    /// Not named: a broker before Kafka 3.7 names no type, and librdkafka names none but
    /// these two (a share or streams group is of a type it does not know).
    Unknown,
}

impl GroupProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupProtocol::Classic => "classic",
            GroupProtocol::Consumer => "consumer",
            GroupProtocol::Unknown => "unknown",
        }
    }

    fn of(kind: native::rd_kafka_consumer_group_type_t) -> Self {
        use native::rd_kafka_consumer_group_type_t as Type;
        match kind {
            Type::RD_KAFKA_CONSUMER_GROUP_TYPE_CLASSIC => GroupProtocol::Classic,
            Type::RD_KAFKA_CONSUMER_GROUP_TYPE_CONSUMER => GroupProtocol::Consumer,
            _ => GroupProtocol::Unknown,
        }
    }
}

/// A group as ListConsumerGroups lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub name: String,
    pub protocol: GroupProtocol,
    /// librdkafka's name for the state the broker gave, `None` for one it does not know.
    pub state: Option<String>,
}

/// A group as DescribeConsumerGroups describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedGroup {
    pub protocol: GroupProtocol,
    /// librdkafka's name for the state the broker gave, `None` for one it does not know.
    pub state: Option<String>,
    pub members: usize,
    /// Members whose partitions are not yet their target assignment (only the consumer
    /// protocol gives targets): the definition of a reconciling member in KIP-848.
    pub reconciling_members: usize,
}

/// librdkafka's name for `state`; `None` for "Unknown", which it gives to every state name it
/// does not know (librdkafka 2.12 knows the classic protocol's and Empty, Stable and Dead).
fn state_name(state: native::rd_kafka_consumer_group_state_t) -> Option<String> {
    // SAFETY: librdkafka returns a static string, or null for a code out of range.
    let name = unsafe { copy_string(native::rd_kafka_consumer_group_state_name(state)) }?;
    (name != "Unknown").then_some(name)
}

/// An error librdkafka owns, copied out.
///
/// # Safety
/// `error` must be non-null and alive for this call.
unsafe fn copy_error(
    error: *const native::rd_kafka_error_t,
    operation: &'static str,
) -> NativeAdminError {
    NativeAdminError::Failed {
        operation,
        code: RDKafkaErrorCode::from(native::rd_kafka_error_code(error)),
        message: copy_string(native::rd_kafka_error_string(error)).unwrap_or_default(),
    }
}

/// Every group the cluster lists to this client, of any type, with its state. Blocking. A
/// broker that did not answer fails the whole listing: the groups it coordinates would
/// otherwise look deleted.
pub fn list_groups(
    client: &(impl Requests + ?Sized),
    timeout: Duration,
) -> Result<Vec<ListedGroup>, NativeAdminError> {
    const OPERATION: &str = "ListConsumerGroups";
    let event = admin_request(
        client,
        OPERATION,
        native::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPS,
        timeout,
        // SAFETY: arguments come from admin_request, valid for the call.
        |handle, options, queue| unsafe {
            native::rd_kafka_ListConsumerGroups(handle, options, queue)
        },
    )?;
    // SAFETY: the result and everything reached from it live as long as `event`; all of it is
    // copied out.
    unsafe {
        let result = native::rd_kafka_event_ListConsumerGroups_result(event.0);
        if result.is_null() {
            return Err(NativeAdminError::Missing {
                operation: OPERATION,
                what: "result",
            });
        }
        let mut count = 0usize;
        let errors = native::rd_kafka_ListConsumerGroups_result_errors(result, &mut count);
        if let Some(error) = native_slice(errors, count)
            .iter()
            .find(|error| !error.is_null())
        {
            return Err(copy_error(*error, OPERATION));
        }
        let mut count = 0usize;
        let listed = native::rd_kafka_ListConsumerGroups_result_valid(result, &mut count);
        Ok(native_slice(listed, count)
            .iter()
            .filter(|group| !group.is_null())
            .filter_map(|group| {
                Some(ListedGroup {
                    name: copy_string(native::rd_kafka_ConsumerGroupListing_group_id(*group))?,
                    protocol: GroupProtocol::of(native::rd_kafka_ConsumerGroupListing_type(*group)),
                    state: state_name(native::rd_kafka_ConsumerGroupListing_state(*group)),
                })
            })
            .collect())
    }
}

/// Groups described in one call: librdkafka sends one request per group, all at once.
const GROUPS_PER_CALL: usize = 100;

/// DescribeConsumerGroups for each of `groups`, in their order, each failing or succeeding on
/// its own. No call starts after `deadline` (those groups fail as not sent), so thousands of
/// groups on a slow cluster cost the deadline plus one timeout. Blocking.
pub fn describe_groups(
    client: &(impl Requests + ?Sized),
    groups: &[String],
    timeout: Duration,
    deadline: Instant,
) -> Vec<Result<DescribedGroup, NativeAdminError>> {
    const OPERATION: &str = "DescribeConsumerGroups";
    let mut answers = Vec::with_capacity(groups.len());
    for chunk in groups.chunks(GROUPS_PER_CALL) {
        if Instant::now() >= deadline {
            answers.extend(chunk.iter().map(|_| {
                Err(NativeAdminError::NotSent {
                    operation: OPERATION,
                })
            }));
            continue;
        }
        match describe_chunk(client, chunk, timeout) {
            Ok(described) => answers.extend(described),
            Err(error) => answers.extend(chunk.iter().map(|_| Err(error.clone()))),
        }
    }
    answers
}

fn describe_chunk(
    client: &(impl Requests + ?Sized),
    groups: &[String],
    timeout: Duration,
) -> Result<Vec<Result<DescribedGroup, NativeAdminError>>, NativeAdminError> {
    const OPERATION: &str = "DescribeConsumerGroups";
    // librdkafka refuses duplicates; the caller's names are distinct, this keeps it so.
    let distinct: BTreeSet<&str> = groups.iter().map(String::as_str).collect();
    if distinct.len() != groups.len() {
        return Err(NativeAdminError::Missing {
            operation: OPERATION,
            what: "distinct group names",
        });
    }
    let names: Vec<CString> = groups
        .iter()
        .map(|group| CString::new(group.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|_| NativeAdminError::Missing {
            operation: OPERATION,
            what: "group names without NUL",
        })?;
    let mut pointers: Vec<*const c_char> = names.iter().map(|name| name.as_ptr()).collect();
    let event = admin_request(
        client,
        OPERATION,
        native::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS,
        timeout,
        // SAFETY: arguments come from admin_request, valid for the call; librdkafka copies the
        // names, which outlive the call anyway.
        |handle, options, queue| unsafe {
            native::rd_kafka_DescribeConsumerGroups(
                handle,
                pointers.as_mut_ptr(),
                pointers.len(),
                options,
                queue,
            )
        },
    )?;
    // SAFETY: the result and everything reached from it live as long as `event`; all of it is
    // copied out.
    unsafe {
        let result = native::rd_kafka_event_DescribeConsumerGroups_result(event.0);
        if result.is_null() {
            return Err(NativeAdminError::Missing {
                operation: OPERATION,
                what: "result",
            });
        }
        let mut count = 0usize;
        let described = native::rd_kafka_DescribeConsumerGroups_result_groups(result, &mut count);
        let mut answers: Vec<Option<Result<DescribedGroup, NativeAdminError>>> =
            groups.iter().map(|_| None).collect();
        for description in native_slice(described, count) {
            if description.is_null() {
                continue;
            }
            let Some(name) = copy_string(native::rd_kafka_ConsumerGroupDescription_group_id(
                *description,
            )) else {
                continue;
            };
            let Some(index) = groups.iter().position(|group| *group == name) else {
                continue;
            };
            let error = native::rd_kafka_ConsumerGroupDescription_error(*description);
            answers[index] = Some(if error.is_null() {
                Ok(copy_description(*description))
            } else {
                Err(copy_error(error, OPERATION))
            });
        }
        Ok(answers
            .into_iter()
            .map(|answer| {
                answer.unwrap_or(Err(NativeAdminError::Missing {
                    operation: OPERATION,
                    what: "answer",
                }))
            })
            .collect())
    }
}

/// Copies what is reported of a group description.
///
/// # Safety
/// `description` must be non-null and alive for this call.
unsafe fn copy_description(
    description: *const native::rd_kafka_ConsumerGroupDescription_t,
) -> DescribedGroup {
    let members = native::rd_kafka_ConsumerGroupDescription_member_count(description);
    let reconciling_members = (0..members)
        .map(|index| native::rd_kafka_ConsumerGroupDescription_member(description, index))
        .filter(|member| !member.is_null())
        .filter(|member| {
            let target = native::rd_kafka_MemberDescription_target_assignment(*member);
            // Only the consumer protocol gives a target; a classic member has none.
            !target.is_null()
                && partitions_of(native::rd_kafka_MemberDescription_assignment(*member))
                    != partitions_of(target)
        })
        .count();
    DescribedGroup {
        protocol: GroupProtocol::of(native::rd_kafka_ConsumerGroupDescription_type(description)),
        state: state_name(native::rd_kafka_ConsumerGroupDescription_state(description)),
        members,
        reconciling_members,
    }
}

/// The partitions of a member's assignment, as a set (the order is the broker's).
///
/// # Safety
/// `assignment` must be null or alive for this call.
unsafe fn partitions_of(
    assignment: *const native::rd_kafka_MemberAssignment_t,
) -> BTreeSet<(String, i32)> {
    if assignment.is_null() {
        return BTreeSet::new();
    }
    let list = native::rd_kafka_MemberAssignment_partitions(assignment);
    if list.is_null() {
        return BTreeSet::new();
    }
    let list = &*list;
    native_slice(list.elems, usize::try_from(list.cnt).unwrap_or(0))
        .iter()
        .map(|partition| {
            (
                copy_string(partition.topic).unwrap_or_default(),
                partition.partition,
            )
        })
        .collect()
}
