//! Any of a cluster's clients, for the requests that do not care which client makes them.
//!
//! librdkafka serves metadata and admin requests on every client handle, and each handle costs
//! a thread per broker: at a hundred brokers, a client kept only for such requests was a
//! hundred threads. So the metadata and topic tasks make theirs on the heartbeat producer's
//! handle, and the scan on its lag probe's (isolated from the heartbeat, as a slow scan must
//! not queue behind beats nor beats behind it).

use std::time::Duration;

use rdkafka::bindings as native;
use rdkafka::client::{Client, ClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::groups::GroupList;
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};

/// The requests a task makes on whatever client it was given. Blocking: call them on a
/// blocking thread.
pub trait Requests {
    /// librdkafka's handle, valid while `self` is.
    fn native_ptr(&self) -> *mut native::rd_kafka_t;
    fn fetch_metadata(&self, topic: Option<&str>, timeout: Duration) -> KafkaResult<Metadata>;
    fn fetch_cluster_id(&self, timeout: Duration) -> Option<String>;
    fn fetch_group_list(&self, group: Option<&str>, timeout: Duration) -> KafkaResult<GroupList>;
}

impl<C: ClientContext> Requests for Client<C> {
    fn native_ptr(&self) -> *mut native::rd_kafka_t {
        Client::native_ptr(self)
    }

    fn fetch_metadata(&self, topic: Option<&str>, timeout: Duration) -> KafkaResult<Metadata> {
        Client::fetch_metadata(self, topic, timeout)
    }

    fn fetch_cluster_id(&self, timeout: Duration) -> Option<String> {
        Client::fetch_cluster_id(self, timeout)
    }

    fn fetch_group_list(&self, group: Option<&str>, timeout: Duration) -> KafkaResult<GroupList> {
        Client::fetch_group_list(self, group, timeout)
    }
}

/// A client of any role, shared by the tasks that only make [`Requests`] on it.
pub trait AnyClient: Send + Sync {
    fn requests(&self) -> &dyn Requests;
}

impl<C: ProducerContext + 'static> AnyClient for BaseProducer<C> {
    fn requests(&self) -> &dyn Requests {
        self.client()
    }
}

impl<C: ConsumerContext + 'static> AnyClient for BaseConsumer<C> {
    fn requests(&self) -> &dyn Requests {
        self.client()
    }
}

impl<C: ConsumerContext + 'static> AnyClient for StreamConsumer<C> {
    fn requests(&self) -> &dyn Requests {
        self.client()
    }
}
