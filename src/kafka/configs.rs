//! DescribeConfigs of topics, on any client handle: what the cluster says of each topic's
//! time retention (`retention.ms`, and whether `cleanup.policy` deletes at all) and of its
//! `min.insync.replicas`. Only those keys are asked for; the broker answers each with the
//! topic's own value or, where the topic sets none, the cluster's default.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::time::Duration;

use rdkafka::bindings as native;
use rdkafka::types::RDKafkaErrorCode;

use super::handle::Requests;
use super::native_admin::{admin_request, copy_string, native_slice, NativeAdminError};

/// A topic's time retention: how long its records are kept before deletion may remove them;
/// `None` when time never deletes them (`retention.ms = -1`, or compaction only).
pub type Retention = Option<Duration>;

/// What the cluster says of one topic's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicConfig {
    pub retention: Retention,
    /// In-sync replicas an `acks=all` write needs; `None` when not given.
    pub min_insync_replicas: Option<usize>,
}

/// The keys asked for.
const KEYS: [&str; 3] = ["retention.ms", "cleanup.policy", "min.insync.replicas"];

/// Topics described in one request at most (the request is small either way; this bounds
/// the answer).
const TOPICS_PER_REQUEST: usize = 100;

/// Each topic's configuration, or why the cluster would not tell it. Blocking; one request
/// per hundred topics, each bounded by `timeout`.
pub fn describe_topic_configs(
    client: &(impl Requests + ?Sized),
    topics: &[String],
    timeout: Duration,
) -> Result<BTreeMap<String, Result<TopicConfig, NativeAdminError>>, NativeAdminError> {
    let mut found = BTreeMap::new();
    for chunk in topics.chunks(TOPICS_PER_REQUEST) {
        found.extend(describe_chunk(client, chunk, timeout)?);
    }
    Ok(found)
}

/// The resources of a DescribeConfigs request, freed on every path.
struct Resources(Vec<*mut native::rd_kafka_ConfigResource_t>);

impl Drop for Resources {
    fn drop(&mut self) {
        // SAFETY: each pointer came from rd_kafka_ConfigResource_new and is freed once, here.
        unsafe { native::rd_kafka_ConfigResource_destroy_array(self.0.as_mut_ptr(), self.0.len()) }
    }
}

fn describe_chunk(
    client: &(impl Requests + ?Sized),
    topics: &[String],
    timeout: Duration,
) -> Result<BTreeMap<String, Result<TopicConfig, NativeAdminError>>, NativeAdminError> {
    const OPERATION: &str = "DescribeConfigs";
    let mut resources = Resources(Vec::with_capacity(topics.len()));
    for topic in topics {
        let name = CString::new(topic.as_str()).map_err(|_| NativeAdminError::Missing {
            operation: OPERATION,
            what: "a topic name without NUL",
        })?;
        // SAFETY: the name is a valid C string, copied by librdkafka.
        let resource = unsafe {
            native::rd_kafka_ConfigResource_new(
                native::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
                name.as_ptr(),
            )
        };
        if resource.is_null() {
            return Err(NativeAdminError::Missing {
                operation: OPERATION,
                what: "config resource",
            });
        }
        resources.0.push(resource);
        for key in KEYS {
            let key = CString::new(key).expect("no NUL in a config key");
            // SAFETY: the resource is valid and the strings are copied; the value is ignored
            // by DescribeConfigs but must not be null.
            unsafe {
                native::rd_kafka_ConfigResource_set_config(resource, key.as_ptr(), c"".as_ptr())
            };
        }
    }
    let event = admin_request(
        client,
        OPERATION,
        native::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS,
        timeout,
        // SAFETY: arguments come from admin_request, valid for the call; librdkafka copies the
        // resources, which outlive the call anyway.
        |handle, options, queue| unsafe {
            native::rd_kafka_DescribeConfigs(
                handle,
                resources.0.as_mut_ptr(),
                resources.0.len(),
                options,
                queue,
            )
        },
    )?;
    // SAFETY: the result and everything reached from it live as long as `event`; all of it is
    // copied out.
    unsafe {
        let result = native::rd_kafka_event_DescribeConfigs_result(event.0);
        if result.is_null() {
            return Err(NativeAdminError::Missing {
                operation: OPERATION,
                what: "result",
            });
        }
        let mut count = 0usize;
        let described = native::rd_kafka_DescribeConfigs_result_resources(result, &mut count);
        let mut found = BTreeMap::new();
        for resource in native_slice(described, count) {
            if resource.is_null() {
                continue;
            }
            let Some(topic) = copy_string(native::rd_kafka_ConfigResource_name(*resource)) else {
                continue;
            };
            let code = native::rd_kafka_ConfigResource_error(*resource);
            if code != native::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                let message = copy_string(native::rd_kafka_ConfigResource_error_string(*resource))
                    .unwrap_or_default();
                found.insert(
                    topic,
                    Err(NativeAdminError::Failed {
                        operation: OPERATION,
                        code: RDKafkaErrorCode::from(code),
                        message,
                    }),
                );
                continue;
            }
            let mut entries = 0usize;
            let configs = native::rd_kafka_ConfigResource_configs(*resource, &mut entries);
            let mut values: BTreeMap<String, String> = BTreeMap::new();
            for entry in native_slice(configs, entries) {
                if entry.is_null() {
                    continue;
                }
                if let (Some(name), Some(value)) = (
                    copy_string(native::rd_kafka_ConfigEntry_name(*entry)),
                    copy_string(native::rd_kafka_ConfigEntry_value(*entry)),
                ) {
                    values.insert(name, value);
                }
            }
            found.insert(
                topic,
                Ok(TopicConfig {
                    retention: retention_of(&values),
                    min_insync_replicas: values
                        .get("min.insync.replicas")
                        .and_then(|value| value.trim().parse().ok()),
                }),
            );
        }
        Ok(found)
    }
}

/// The time retention that `retention.ms` and `cleanup.policy` give.
fn retention_of(values: &BTreeMap<String, String>) -> Retention {
    let deletes = values
        .get("cleanup.policy")
        .is_none_or(|policy| policy.split(',').any(|part| part.trim() == "delete"));
    let millis: i64 = values.get("retention.ms")?.trim().parse().ok()?;
    (deletes && millis > 0).then(|| Duration::from_millis(millis as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_time_based_deletion_is_a_retention() {
        let of = |pairs: &[(&str, &str)]| {
            retention_of(
                &pairs
                    .iter()
                    .map(|(key, value)| (key.to_string(), value.to_string()))
                    .collect(),
            )
        };
        let day = Some(Duration::from_secs(86_400));
        assert_eq!(
            of(&[("retention.ms", "86400000"), ("cleanup.policy", "delete")]),
            day
        );
        assert_eq!(
            of(&[
                ("retention.ms", "86400000"),
                ("cleanup.policy", "compact,delete")
            ]),
            day
        );
        assert_eq!(
            of(&[("retention.ms", "86400000"), ("cleanup.policy", "compact")]),
            None
        );
        assert_eq!(
            of(&[("retention.ms", "-1"), ("cleanup.policy", "delete")]),
            None
        );
        assert_eq!(of(&[("cleanup.policy", "delete")]), None);
    }
}
