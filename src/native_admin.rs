//! Admin calls librdkafka has and rust-rdkafka does not wrap, behind safe signatures.
//!
//! Each call is blocking (it waits on its own result queue, bounded by a timeout): run it on a
//! blocking thread. Every native object is owned by a guard that frees it on every path.

use std::ffi::CStr;
use std::os::raw::c_char;
use std::time::Duration;

use rdkafka::bindings as native;
use rdkafka::client::{Client, ClientContext};
use rdkafka::types::RDKafkaErrorCode;

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

struct Event(*mut native::rd_kafka_event_t);
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
unsafe fn copy_string(pointer: *const c_char) -> Option<String> {
    if pointer.is_null() {
        None
    } else {
        Some(CStr::from_ptr(pointer).to_string_lossy().into_owned())
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

/// Sends `request` with admin options for `operation` and waits for its result event.
fn admin_request<C: ClientContext>(
    client: &Client<C>,
    operation: &'static str,
    api: native::rd_kafka_admin_op_t,
    timeout: Duration,
    request: impl FnOnce(
        *mut native::rd_kafka_t,
        *const native::rd_kafka_AdminOptions_t,
        *mut native::rd_kafka_queue_t,
    ),
) -> Result<Event, NativeAdminError> {
    let timeout_ms = i32::try_from(timeout.as_millis())
        .unwrap_or(i32::MAX)
        .max(1);
    let handle = client.native_ptr();
    // SAFETY: the handle is valid while `client` is borrowed; each object is owned by a guard.
    unsafe {
        let queue = Queue(native::rd_kafka_queue_new(handle));
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
            timeout_ms,
            error_text.as_mut_ptr(),
            error_text.len(),
        );
        request(handle, options.0, queue.0);
        // librdkafka answers within the request timeout; the margin covers its own scheduling.
        let event = native::rd_kafka_queue_poll(queue.0, timeout_ms.saturating_add(1000));
        if event.is_null() {
            return Err(NativeAdminError::TimedOut { operation, timeout });
        }
        let event = Event(event);
        let code = native::rd_kafka_event_error(event.0);
        if code != native::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            let message =
                copy_string(native::rd_kafka_event_error_string(event.0)).unwrap_or_default();
            return Err(NativeAdminError::Failed {
                operation,
                code: code.into(),
                message,
            });
        }
        Ok(event)
    }
}

/// DescribeCluster: the cluster id, the controller and every broker with its rack.
pub fn describe_cluster<C: ClientContext>(
    client: &Client<C>,
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
        let nodes = if nodes.is_null() {
            Vec::new()
        } else {
            std::slice::from_raw_parts(nodes, count)
                .iter()
                .filter(|node| !node.is_null())
                .map(|node| copy_node(*node))
                .collect()
        };
        let controller = native::rd_kafka_DescribeCluster_result_controller(result);
        let controller_id = (!controller.is_null()).then(|| native::rd_kafka_Node_id(controller));
        Ok(ClusterDescription {
            cluster_id: copy_string(native::rd_kafka_DescribeCluster_result_cluster_id(result)),
            controller_id: controller_id.filter(|id| *id >= 0),
            nodes,
        })
    }
}
