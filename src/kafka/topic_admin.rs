//! CreateTopics and CreatePartitions on any client handle: rust-rdkafka has them only on its
//! `AdminClient`, a client (and a thread per broker) of its own.
//!
//! Blocking, like [`super::native_admin`]: run them on a blocking thread.

use std::ffi::CString;
use std::os::raw::c_char;
use std::time::Duration;

use rdkafka::bindings as native;

use super::handle::Requests;
use super::native_admin::{admin_request, copy_string, native_slice, NativeAdminError};

struct NewTopic(*mut native::rd_kafka_NewTopic_t);
impl Drop for NewTopic {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_NewTopic_new and destroyed once, here.
        unsafe { native::rd_kafka_NewTopic_destroy(self.0) }
    }
}

struct NewPartitions(*mut native::rd_kafka_NewPartitions_t);
impl Drop for NewPartitions {
    fn drop(&mut self) {
        // SAFETY: created by rd_kafka_NewPartitions_new and destroyed once, here.
        unsafe { native::rd_kafka_NewPartitions_destroy(self.0) }
    }
}

fn c_string(operation: &'static str, text: &str) -> Result<CString, NativeAdminError> {
    CString::new(text).map_err(|_| NativeAdminError::Missing {
        operation,
        what: "name without NUL",
    })
}

/// A request librdkafka refused to build, with its reason.
fn refused(operation: &'static str, error_text: &[c_char]) -> NativeAdminError {
    // SAFETY: librdkafka NUL-terminates the reason within the buffer it was given.
    let message = unsafe { copy_string(error_text.as_ptr()) }.unwrap_or_default();
    NativeAdminError::Failed {
        operation,
        code: rdkafka::types::RDKafkaErrorCode::InvalidRequest,
        message,
    }
}

/// `result`, or the error saying librdkafka returned none.
fn present<T>(operation: &'static str, result: *const T) -> Result<*const T, NativeAdminError> {
    if result.is_null() {
        Err(NativeAdminError::Missing {
            operation,
            what: "result",
        })
    } else {
        Ok(result)
    }
}

/// The first error among a result's topics, if any.
///
/// # Safety
/// `results` must point to `count` topic results alive for this call.
unsafe fn topic_errors(
    operation: &'static str,
    results: *const *const native::rd_kafka_topic_result_t,
    count: usize,
) -> Result<(), NativeAdminError> {
    for result in native_slice(results, count) {
        if result.is_null() {
            continue;
        }
        let code = native::rd_kafka_topic_result_error(*result);
        if code != native::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(NativeAdminError::Failed {
                operation,
                code: code.into(),
                message: copy_string(native::rd_kafka_topic_result_error_string(*result))
                    .unwrap_or_default(),
            });
        }
    }
    Ok(())
}

/// Creates `topic` with `partitions`, `replication_factor` and the topic `configs`; waits up
/// to `timeout` for the controller. An existing topic fails with `TopicAlreadyExists`.
pub fn create_topic(
    client: &(impl Requests + ?Sized),
    topic: &str,
    partitions: i32,
    replication_factor: i32,
    configs: &[(&str, &str)],
    timeout: Duration,
) -> Result<(), NativeAdminError> {
    const OPERATION: &str = "CreateTopics";
    let name = c_string(OPERATION, topic)?;
    let configs: Vec<(CString, CString)> = configs
        .iter()
        .map(|(key, value)| Ok((c_string(OPERATION, key)?, c_string(OPERATION, value)?)))
        .collect::<Result<_, NativeAdminError>>()?;
    let mut error_text = [0 as c_char; 512];
    // SAFETY: every pointer passed is valid for the call; the new topic is owned by a guard.
    let new_topic = unsafe {
        let new_topic = NewTopic(native::rd_kafka_NewTopic_new(
            name.as_ptr(),
            partitions,
            replication_factor,
            error_text.as_mut_ptr(),
            error_text.len(),
        ));
        if new_topic.0.is_null() {
            return Err(refused(OPERATION, &error_text));
        }
        for (key, value) in &configs {
            native::rd_kafka_NewTopic_set_config(new_topic.0, key.as_ptr(), value.as_ptr());
        }
        new_topic
    };
    let event = admin_request(
        client,
        OPERATION,
        native::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATETOPICS,
        timeout,
        // SAFETY: arguments come from admin_request, valid for the call; librdkafka copies
        // the new topic.
        |handle, options, queue| unsafe {
            let mut topics = [new_topic.0];
            native::rd_kafka_CreateTopics(handle, topics.as_mut_ptr(), 1, options, queue)
        },
    )?;
    // SAFETY: the result and its topics live as long as `event`.
    unsafe {
        let result = native::rd_kafka_event_CreateTopics_result(event.0);
        let mut count = 0usize;
        let topics = present(OPERATION, result)
            .map(|result| native::rd_kafka_CreateTopics_result_topics(result, &mut count))?;
        topic_errors(OPERATION, topics, count)
    }
}

/// Grows `topic` to `total` partitions, the new ones on the replicas `assignment` names (one
/// row per new partition); waits up to `timeout` for the controller.
pub fn create_partitions(
    client: &(impl Requests + ?Sized),
    topic: &str,
    total: usize,
    assignment: &[Vec<i32>],
    timeout: Duration,
) -> Result<(), NativeAdminError> {
    const OPERATION: &str = "CreatePartitions";
    let name = c_string(OPERATION, topic)?;
    let mut error_text = [0 as c_char; 512];
    // SAFETY: every pointer passed is valid for the call; the request is owned by a guard.
    let new_partitions = unsafe {
        let new_partitions = NewPartitions(native::rd_kafka_NewPartitions_new(
            name.as_ptr(),
            total,
            error_text.as_mut_ptr(),
            error_text.len(),
        ));
        if new_partitions.0.is_null() {
            return Err(refused(OPERATION, &error_text));
        }
        for (index, replicas) in assignment.iter().enumerate() {
            let mut replicas = replicas.clone();
            let code = native::rd_kafka_NewPartitions_set_replica_assignment(
                new_partitions.0,
                index as i32,
                replicas.as_mut_ptr(),
                replicas.len(),
                error_text.as_mut_ptr(),
                error_text.len(),
            );
            if code != native::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                return Err(refused(OPERATION, &error_text));
            }
        }
        new_partitions
    };
    let event = admin_request(
        client,
        OPERATION,
        native::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATEPARTITIONS,
        timeout,
        // SAFETY: arguments come from admin_request, valid for the call; librdkafka copies
        // the request.
        |handle, options, queue| unsafe {
            let mut requests = [new_partitions.0];
            native::rd_kafka_CreatePartitions(handle, requests.as_mut_ptr(), 1, options, queue)
        },
    )?;
    // SAFETY: the result and its topics live as long as `event`.
    unsafe {
        let result = native::rd_kafka_event_CreatePartitions_result(event.0);
        let mut count = 0usize;
        let topics = present(OPERATION, result)
            .map(|result| native::rd_kafka_CreatePartitions_result_topics(result, &mut count))?;
        topic_errors(OPERATION, topics, count)
    }
}
