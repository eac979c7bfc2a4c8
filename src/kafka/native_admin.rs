//! Admin calls librdkafka has and rust-rdkafka does not wrap, behind safe signatures.
//!
//! Each call is blocking (it waits on its own result queue, bounded by a timeout): run it on a
//! blocking thread. Every native object is owned by a guard that frees it on every path.

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_void};
use std::time::Duration;

use rdkafka::bindings as native;
use rdkafka::types::RDKafkaErrorCode;

use super::handle::Requests;

/// Why a native admin call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NativeAdminError {
    #[error("{operation} failed: {message} ({code})")]
    Failed {
        operation: &'static str,
        code: RDKafkaErrorCode,
        message: String,
    },
    #[error("{operation} got no answer within {timeout:?}")]
    TimedOut {
        operation: &'static str,
        timeout: Duration,
    },
    #[error("{operation} was not sent: the time allowed for all of them was spent")]
    NotSent { operation: &'static str },
    #[error("{operation}: librdkafka returned no {what}")]
    Missing {
        operation: &'static str,
        what: &'static str,
    },
}

/// A broker as DescribeCluster reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: i32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
}

/// The answer to DescribeCluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    pub cluster_id: Option<String>,
    pub controller_id: Option<i32>,
    pub nodes: Vec<Node>,
}

struct Queue(*mut native::rd_kafka_queue_t);
impl Drop for Queue {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_queue_new and destroyed once, here.
        unsafe { native::rd_kafka_queue_destroy(self.0) }
    }
}

struct Options(*mut native::rd_kafka_AdminOptions_t);
impl Drop for Options {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_AdminOptions_new and destroyed once, here.
        unsafe { native::rd_kafka_AdminOptions_destroy(self.0) }
    }
}

pub(super) struct Event(pub(super) *mut native::rd_kafka_event_t);
impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: returned by rd_kafka_queue_poll and destroyed once, here; everything read
        // from it has been copied out before.
        unsafe { native::rd_kafka_event_destroy(self.0) }
    }
}

/// Copies a C string owned by librdkafka; `None` for null.
///
/// # Safety
/// `pointer` must be null or point to a NUL-terminated string alive for this call.
pub(super) unsafe fn copy_string(pointer: *const c_char) -> Option<String> {
    if pointer.is_null() {
        None
    } else {
        Some(CStr::from_ptr(pointer).to_string_lossy().into_owned())
    }
}

/// The `count` elements at `pointer`, none when it is null.
///
/// # Safety
/// `pointer` must be null or point to `count` elements alive for `'a`.
pub(super) unsafe fn native_slice<'a, T>(pointer: *const T, count: usize) -> &'a [T] {
    if pointer.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(pointer, count)
    }
}

/// Copies a node owned by librdkafka.
///
/// # Safety
/// `node` must be non-null and alive for this call.
unsafe fn copy_node(node: *const native::rd_kafka_Node_t) -> Node {
    Node {
        id: native::rd_kafka_Node_id(node),
        host: copy_string(native::rd_kafka_Node_host(node)).unwrap_or_default(),
        port: native::rd_kafka_Node_port(node),
        rack: copy_string(native::rd_kafka_Node_rack(node)).filter(|rack| !rack.is_empty()),
    }
}

/// Converts a timeout to librdkafka's milliseconds, at least 1.
fn millis(timeout: Duration) -> i32 {
    i32::try_from(timeout.as_millis())
        .unwrap_or(i32::MAX)
        .max(1)
}

/// Admin options for `api` with a request timeout and an opaque tag that comes back on the
/// result event, to tell apart several requests answered on one queue.
///
/// # Safety
/// `handle` must be a valid client handle.
unsafe fn new_options(
    handle: *mut native::rd_kafka_t,
    operation: &'static str,
    api: native::rd_kafka_admin_op_t,
    timeout: Duration,
    tag: usize,
) -> Result<Options, NativeAdminError> {
    let options = Options(native::rd_kafka_AdminOptions_new(handle, api));
    if options.0.is_null() {
        return Err(NativeAdminError::Missing {
            operation,
            what: "admin options",
        });
    }
    let mut error_text = [0 as c_char; 256];
    native::rd_kafka_AdminOptions_set_request_timeout(
        options.0,
        millis(timeout),
        error_text.as_mut_ptr(),
        error_text.len(),
    );
    // Topic changes also wait (up to the timeout) until the controller has made them.
    if matches!(
        api,
        native::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATETOPICS
            | native::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATEPARTITIONS
    ) {
        native::rd_kafka_AdminOptions_set_operation_timeout(
            options.0,
            millis(timeout),
            error_text.as_mut_ptr(),
            error_text.len(),
        );
    }
    // The tag is an index, never dereferenced.
    native::rd_kafka_AdminOptions_set_opaque(options.0, tag as *mut c_void);
    Ok(options)
}

/// Waits up to `wait` for the next result on `queue`; `None` when none came.
///
/// # Safety
/// `queue` must be a valid queue.
unsafe fn next_event(queue: &Queue, wait: Duration) -> Option<Event> {
    let event = native::rd_kafka_queue_poll(queue.0, millis(wait));
    (!event.is_null()).then(|| Event(event))
}

/// The event's request-level error, if any.
///
/// # Safety
/// `event` must be a valid result event.
unsafe fn event_error(event: &Event, operation: &'static str) -> Result<(), NativeAdminError> {
    let code = native::rd_kafka_event_error(event.0);
    if code == native::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Ok(());
    }
    let message = copy_string(native::rd_kafka_event_error_string(event.0)).unwrap_or_default();
    Err(NativeAdminError::Failed {
        operation,
        code: code.into(),
        message,
    })
}

impl NativeAdminError {
    /// The broker's error code, if the broker answered with one.
    pub fn code(&self) -> Option<RDKafkaErrorCode> {
        match self {
            NativeAdminError::Failed { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// librdkafka answers within the request timeout; the margin covers its own scheduling.
const ANSWER_MARGIN: Duration = Duration::from_secs(1);

/// Sends `request` with admin options for `operation` and waits for its result event.
pub(super) fn admin_request(
    client: &(impl Requests + ?Sized),
    operation: &'static str,
    api: native::rd_kafka_admin_op_t,
    timeout: Duration,
    request: impl FnOnce(
        *mut native::rd_kafka_t,
        *const native::rd_kafka_AdminOptions_t,
        *mut native::rd_kafka_queue_t,
    ),
) -> Result<Event, NativeAdminError> {
    let handle = client.native_ptr();
    // SAFETY: the handle is valid while `client` is borrowed; each object is owned by a guard.
    unsafe {
        let queue = Queue(native::rd_kafka_queue_new(handle));
        let options = new_options(handle, operation, api, timeout, 0)?;
        request(handle, options.0, queue.0);
        let event = next_event(&queue, timeout + ANSWER_MARGIN)
            .ok_or(NativeAdminError::TimedOut { operation, timeout })?;
        event_error(&event, operation)?;
        Ok(event)
    }
}

/// DescribeCluster: the cluster id, the controller and every broker with its rack.
pub fn describe_cluster(
    client: &(impl Requests + ?Sized),
    timeout: Duration,
) -> Result<ClusterDescription, NativeAdminError> {
    const OPERATION: &str = "DescribeCluster";
    let event = admin_request(
        client,
        OPERATION,
        native::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECLUSTER,
        timeout,
        // SAFETY: arguments come from admin_request, valid for the call.
        |handle, options, queue| unsafe {
            native::rd_kafka_DescribeCluster(handle, options, queue)
        },
    )?;
    // SAFETY: the result and everything reached from it live as long as `event`, which
    // outlives this block; all of it is copied out.
    unsafe {
        let result = native::rd_kafka_event_DescribeCluster_result(event.0);
        if result.is_null() {
            return Err(NativeAdminError::Missing {
                operation: OPERATION,
                what: "result",
            });
        }
        let mut count = 0usize;
        let nodes = native::rd_kafka_DescribeCluster_result_nodes(result, &mut count);
        let nodes = native_slice(nodes, count)
            .iter()
            .filter(|node| !node.is_null())
            .map(|node| copy_node(*node))
            .collect();
        let controller = native::rd_kafka_DescribeCluster_result_controller(result);
        let controller_id = (!controller.is_null()).then(|| native::rd_kafka_Node_id(controller));
        Ok(ClusterDescription {
            cluster_id: copy_string(native::rd_kafka_DescribeCluster_result_cluster_id(result)),
            controller_id: controller_id.filter(|id| *id >= 0),
            nodes,
        })
    }
}

/// One partition's offset as a listing returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffset {
    pub topic: String,
    pub partition: i32,
    /// `None` when the partition has none (no committed offset) or failed.
    pub offset: Option<i64>,
    /// This partition's own error, when it failed alone.
    pub error: Option<RDKafkaErrorCode>,
}

struct PartitionList(*mut native::rd_kafka_topic_partition_list_t);
impl Drop for PartitionList {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_topic_partition_list_new and destroyed once, here.
        unsafe { native::rd_kafka_topic_partition_list_destroy(self.0) }
    }
}

/// Copies a partition owned by librdkafka. Negative offsets (librdkafka's "none") become `None`.
///
/// # Safety
/// `partition` must be non-null and alive for this call.
unsafe fn copy_partition(partition: *const native::rd_kafka_topic_partition_t) -> PartitionOffset {
    let partition = &*partition;
    let error = (partition.err != native::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR)
        .then(|| partition.err.into());
    PartitionOffset {
        topic: copy_string(partition.topic).unwrap_or_default(),
        partition: partition.partition,
        offset: (error.is_none() && partition.offset >= 0).then_some(partition.offset),
        error,
    }
}

/// ListConsumerGroupOffsets for each of `groups`: every partition each has committed, or with
/// `partitions`, those of them it has committed.
///
/// librdkafka takes one group per request, so up to `in_flight` requests are outstanding at a
/// time on one queue, each tagged with its group's index. No request is sent after `deadline`
/// (those groups fail as not sent), so thousands of groups on an unresponsive coordinator cost
/// the deadline plus one timeout, not one timeout per group. The answers come in `groups`'
/// order; each group fails or succeeds on its own.
pub fn list_group_offsets(
    client: &(impl Requests + ?Sized),
    groups: &[String],
    partitions: Option<&[(String, i32)]>,
    in_flight: usize,
    timeout: Duration,
    deadline: std::time::Instant,
) -> Vec<Result<Vec<PartitionOffset>, NativeAdminError>> {
    const OPERATION: &str = "ListConsumerGroupOffsets";
    let api = native::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS;
    let mut answers: Vec<Option<Result<Vec<PartitionOffset>, NativeAdminError>>> =
        groups.iter().map(|_| None).collect();
    // librdkafka refuses an empty list: no partitions named, none committed.
    if partitions.is_some_and(<[_]>::is_empty) {
        return groups.iter().map(|_| Ok(Vec::new())).collect();
    }
    let partitions = match partitions.map(|partitions| partition_list(OPERATION, partitions, None))
    {
        None => None,
        Some(Ok(list)) => Some(list),
        Some(Err(error)) => return groups.iter().map(|_| Err(error.clone())).collect(),
    };
    let handle = client.native_ptr();
    // SAFETY: the handle is valid while `client` is borrowed; each object is owned by a guard
    // and everything read from an event is copied out before the event is dropped.
    unsafe {
        let partitions = partitions
            .as_ref()
            .map_or(std::ptr::null(), |list| list.0.cast_const());
        let queue = Queue(native::rd_kafka_queue_new(handle));
        let mut next = 0;
        let mut outstanding = 0;
        while next < groups.len() || outstanding > 0 {
            while next < groups.len() && outstanding < in_flight.max(1) {
                let index = next;
                next += 1;
                if std::time::Instant::now() >= deadline {
                    answers[index] = Some(Err(NativeAdminError::NotSent {
                        operation: OPERATION,
                    }));
                    continue;
                }
                let Ok(name) = CString::new(groups[index].as_str()) else {
                    answers[index] = Some(Err(NativeAdminError::Missing {
                        operation: OPERATION,
                        what: "valid group name",
                    }));
                    continue;
                };
                let options = match new_options(handle, OPERATION, api, timeout, index) {
                    Ok(options) => options,
                    Err(error) => {
                        answers[index] = Some(Err(error));
                        continue;
                    }
                };
                let mut request = [native::rd_kafka_ListConsumerGroupOffsets_new(
                    name.as_ptr(),
                    partitions,
                )];
                // librdkafka copies the request and the options.
                native::rd_kafka_ListConsumerGroupOffsets(
                    handle,
                    request.as_mut_ptr(),
                    1,
                    options.0,
                    queue.0,
                );
                native::rd_kafka_ListConsumerGroupOffsets_destroy_array(request.as_mut_ptr(), 1);
                outstanding += 1;
            }
            if outstanding == 0 {
                break;
            }
            let Some(event) = next_event(&queue, timeout + ANSWER_MARGIN) else {
                // librdkafka times every request out itself; this only guards against a
                // result that never comes.
                for answer in answers.iter_mut().take(next).filter(|a| a.is_none()) {
                    *answer = Some(Err(NativeAdminError::TimedOut {
                        operation: OPERATION,
                        timeout,
                    }));
                }
                outstanding = 0;
                continue;
            };
            let index = native::rd_kafka_event_opaque(event.0) as usize;
            let Some(answer) = answers.get_mut(index).filter(|a| a.is_none()) else {
                continue;
            };
            outstanding -= 1;
            *answer = Some(group_offsets(&event, OPERATION));
        }
    }
    answers
        .into_iter()
        .map(|answer| {
            answer.unwrap_or(Err(NativeAdminError::Missing {
                operation: OPERATION,
                what: "answer",
            }))
        })
        .collect()
}

/// The partitions of the one group a ListConsumerGroupOffsets result holds.
///
/// # Safety
/// `event` must be a ListConsumerGroupOffsets result event.
unsafe fn group_offsets(
    event: &Event,
    operation: &'static str,
) -> Result<Vec<PartitionOffset>, NativeAdminError> {
    event_error(event, operation)?;
    let result = native::rd_kafka_event_ListConsumerGroupOffsets_result(event.0);
    if result.is_null() {
        return Err(NativeAdminError::Missing {
            operation,
            what: "result",
        });
    }
    let mut count = 0usize;
    let groups = native::rd_kafka_ListConsumerGroupOffsets_result_groups(result, &mut count);
    if groups.is_null() || count == 0 || (*groups).is_null() {
        return Err(NativeAdminError::Missing {
            operation,
            what: "group result",
        });
    }
    let group = *groups;
    let error = native::rd_kafka_group_result_error(group);
    if !error.is_null() {
        return Err(NativeAdminError::Failed {
            operation,
            code: native::rd_kafka_error_code(error).into(),
            message: copy_string(native::rd_kafka_error_string(error)).unwrap_or_default(),
        });
    }
    let partitions = native::rd_kafka_group_result_partitions(group);
    if partitions.is_null() {
        return Ok(Vec::new());
    }
    let partitions = &*partitions;
    // Named partitions come back whether committed or not: copy only the committed ones (and
    // failures), so thousands of groups times every partition of the topics never turn into
    // strings.
    Ok(
        native_slice(partitions.elems, partitions.cnt.max(0) as usize)
            .iter()
            .filter(|partition| {
                partition.offset >= 0
                    || partition.err != native::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            })
            .map(|partition| copy_partition(partition))
            .collect(),
    )
}

/// A native partition list of `partitions` without duplicates (librdkafka refuses them), each
/// with `offset` when given.
fn partition_list(
    operation: &'static str,
    partitions: &[(String, i32)],
    offset: Option<i64>,
) -> Result<PartitionList, NativeAdminError> {
    let unique: std::collections::BTreeSet<&(String, i32)> = partitions.iter().collect();
    let mut names = Vec::with_capacity(unique.len());
    for (topic, partition) in unique {
        let name = CString::new(topic.as_str()).map_err(|_| NativeAdminError::Missing {
            operation,
            what: "valid topic name",
        })?;
        names.push((name, *partition));
    }
    // SAFETY: the list is owned by a guard; librdkafka copies each name.
    unsafe {
        let list = PartitionList(native::rd_kafka_topic_partition_list_new(
            names.len().try_into().unwrap_or(i32::MAX),
        ));
        for (name, partition) in &names {
            let element =
                native::rd_kafka_topic_partition_list_add(list.0, name.as_ptr(), *partition);
            if let Some(offset) = offset {
                (*element).offset = offset;
            }
        }
        Ok(list)
    }
}

/// ListOffsets at the latest offset (the high watermark, what read_uncommitted consumers see)
/// for every partition, in one request that librdkafka splits by leader.
pub fn list_end_offsets(
    client: &(impl Requests + ?Sized),
    partitions: &[(String, i32)],
    timeout: Duration,
) -> Result<Vec<PartitionOffset>, NativeAdminError> {
    const OPERATION: &str = "ListOffsets";
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    let latest = native::rd_kafka_OffsetSpec_t::RD_KAFKA_OFFSET_SPEC_LATEST as i64;
    let list = partition_list(OPERATION, partitions, Some(latest))?;
    let event = admin_request(
        client,
        OPERATION,
        native::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTOFFSETS,
        timeout,
        // SAFETY: arguments come from admin_request, valid for the call; the list outlives it.
        |handle, options, queue| unsafe {
            native::rd_kafka_ListOffsets(handle, list.0, options, queue)
        },
    )?;
    // SAFETY: the result and everything reached from it live as long as `event`; all of it is
    // copied out.
    unsafe {
        let result = native::rd_kafka_event_ListOffsets_result(event.0);
        if result.is_null() {
            return Err(NativeAdminError::Missing {
                operation: OPERATION,
                what: "result",
            });
        }
        let mut count = 0usize;
        let infos = native::rd_kafka_ListOffsets_result_infos(result, &mut count);
        Ok(native_slice(infos, count)
            .iter()
            .filter(|info| !info.is_null())
            .map(|info| native::rd_kafka_ListOffsetsResultInfo_topic_partition(*info))
            .filter(|partition| !partition.is_null())
            .map(|partition| copy_partition(partition))
            .collect())
    }
}
