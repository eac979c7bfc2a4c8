//! A consumer's offset commits whose result is waited for with a limit.
//!
//! librdkafka's synchronous commit waits without limit for the group's coordinator: while the
//! cluster is away it holds a thread, and the consumer, which then cannot close. Its
//! asynchronous commit reports its result only to a callback set in the configuration, which
//! rust-rdkafka does not set, so the result is lost. Here each commit's result is posted to a
//! queue of its own (librdkafka's `rd_kafka_commit_queue`) and read from there, as long or as
//! briefly as the caller likes. A commit still pending when the consumer closes ends with it.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::bindings as native;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::TopicPartitionList;

use super::client::ClientLog;

/// A queue the results of one consumer's commits arrive on.
pub(crate) struct CommitQueue {
    queue: *mut native::rd_kafka_queue_t,
    /// Held so that the queue goes before the consumer does.
    consumer: Arc<StreamConsumer<ClientLog>>,
}

// SAFETY: librdkafka's queues may be used from any thread.
unsafe impl Send for CommitQueue {}
unsafe impl Sync for CommitQueue {}

impl CommitQueue {
    pub(crate) fn new(consumer: Arc<StreamConsumer<ClientLog>>) -> Self {
        // SAFETY: the handle is valid while `consumer` is, which this value holds.
        let queue = unsafe { native::rd_kafka_queue_new(consumer.client().native_ptr()) };
        CommitQueue { queue, consumer }
    }

    /// Starts a commit of `offsets` to the consumer's group; its result comes from
    /// [`CommitQueue::result`].
    pub(crate) fn commit(&self, offsets: &TopicPartitionList) -> KafkaResult<()> {
        // SAFETY: the handle, the list and the queue are valid for the call; librdkafka copies
        // the list. Without a callback, the result is posted to the queue as an event.
        let error = unsafe {
            native::rd_kafka_commit_queue(
                self.consumer.client().native_ptr(),
                offsets.ptr(),
                self.queue,
                None,
                std::ptr::null_mut(),
            )
        };
        result_of(error)
    }

    /// The result of the oldest commit not read yet, waiting for it at most `limit` (which
    /// blocks); `None` if none came within it.
    pub(crate) fn result(&self, limit: Duration) -> Option<KafkaResult<()>> {
        let milliseconds = i32::try_from(limit.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: the queue is valid until dropped; the event is ours until destroyed.
        unsafe {
            let event = native::rd_kafka_queue_poll(self.queue, milliseconds);
            if event.is_null() {
                return None;
            }
            let error = native::rd_kafka_event_error(event);
            native::rd_kafka_event_destroy(event);
            Some(result_of(error))
        }
    }
}

impl Drop for CommitQueue {
    fn drop(&mut self) {
        // SAFETY: the reference is ours, and the consumer is still alive (dropped after this).
        // A commit still pending posts its result nowhere.
        unsafe { native::rd_kafka_queue_destroy(self.queue) }
    }
}

fn result_of(error: RDKafkaRespErr) -> KafkaResult<()> {
    if error == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(KafkaError::ConsumerCommit(error.into()))
    }
}
