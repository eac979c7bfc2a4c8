//! librdkafka plumbing the tasks share.
//!
//! - [`client`]: the settings each client role gets, and the context that routes librdkafka's
//!   logs and errors into `tracing` and the cluster's status;
//! - [`native_admin`]: admin calls librdkafka has and rust-rdkafka does not wrap;
//! - `stats`: a client's own view of each broker, from librdkafka's statistics, with its series.

pub mod client;
pub mod native_admin;
pub(crate) mod stats;

/// A partition of a topic, by topic name and partition number.
pub(crate) type TopicPartition = (String, i32);
