//! librdkafka plumbing the tasks share.
//!
//! - [`client`]: the settings each client role gets, and the context that routes librdkafka's
//!   logs and errors into `tracing` and the cluster's record;
//! - `commits`: a consumer's offset commits, their results waited for with a limit;
//! - `events`: the thread serving a producer's events, woken by librdkafka rather than a timer;
//! - `credentials`: SASL credentials changed on running clients;
//! - [`configs`]: DescribeConfigs of topics (their time retention) on any client handle;
//! - [`groups`]: consumer groups listed and described on either protocol (ListConsumerGroups,
//!   DescribeConsumerGroups);
//! - [`handle`]: any client, for the metadata and admin requests every handle serves;
//! - [`native_admin`]: admin calls librdkafka has and rust-rdkafka does not wrap;
//! - `oauth`: OAuth tokens handed to a cluster's running clients, with SASL extensions;
//! - `positions`: the log end offsets a reader starting at the end starts from;
//! - [`topic_admin`]: CreateTopics and CreatePartitions on any client handle;
//! - `stats`: librdkafka's statistics handed off its thread, and a coordinator read in them.

pub mod client;
pub(crate) mod commits;
pub mod configs;
pub(crate) mod credentials;
pub(crate) mod events;
pub mod groups;
pub mod handle;
pub mod native_admin;
pub(crate) mod oauth;
pub(crate) mod positions;
pub(crate) mod stats;
pub mod topic_admin;

/// A partition of a topic, by topic name and partition number.
pub(crate) type TopicPartition = (String, i32);

/// The broker that answered for `message`: the leader that acknowledged (or refused) a produced
/// record, or the broker a consumed one was fetched from; `None` when librdkafka cannot say.
/// This is the truth at that moment, where metadata may be a refresh behind.
pub(crate) fn answering_broker(message: &rdkafka::message::BorrowedMessage<'_>) -> Option<i32> {
    // SAFETY: the pointer is valid while `message` is borrowed, and the call only reads it.
    let id = unsafe { rdkafka::bindings::rd_kafka_message_broker_id(message.ptr()) };
    (id >= 0).then_some(id)
}
