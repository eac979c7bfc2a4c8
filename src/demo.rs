//! Demo mode: an embedded three-broker cluster (librdkafka's mock cluster, on real loopback
//! TCP ports) with the heartbeat topic already created, so the exporter runs with no Kafka at
//! hand.

use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

/// Brokers in the embedded cluster.
pub const DEMO_BROKERS: i32 = 3;

/// The embedded cluster; it lives as long as this value.
pub struct DemoCluster {
    mock: MockCluster<'static, DefaultProducerContext>,
}

impl DemoCluster {
    /// Starts the brokers and creates `topic` with one partition per broker, replicated on all.
    pub fn start(topic: &str) -> Result<Self, KafkaError> {
        let mock = MockCluster::new(DEMO_BROKERS)?;
        mock.create_topic(topic, DEMO_BROKERS, DEMO_BROKERS)?;
        Ok(DemoCluster { mock })
    }

    /// `bootstrap.servers` for the embedded cluster.
    pub fn bootstrap_servers(&self) -> String {
        self.mock.bootstrap_servers()
    }

    /// The mock cluster, for fault injection.
    pub fn mock(&self) -> &MockCluster<'static, DefaultProducerContext> {
        &self.mock
    }
}
