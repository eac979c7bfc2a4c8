//! Demo mode: an embedded three-broker cluster (librdkafka's mock cluster, on real loopback
//! TCP ports) with the heartbeat topic already created, so the exporter runs with no Kafka at
//! hand, and an HTTP control to break it: take a broker down and up, slow it down.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};
use serde::Deserialize;

/// Brokers in the embedded cluster.
pub const DEMO_BROKERS: i32 = 3;

/// The embedded cluster; it lives as long as this value. It is owned through a client of its
/// own (librdkafka's `test.mock.num.brokers`), which can be shared between threads, so the
/// HTTP control can reach it.
pub struct DemoCluster {
    owner: BaseProducer,
}

impl DemoCluster {
    /// Starts the brokers and creates `topic` with one partition per broker, replicated on all.
    pub fn start(topic: &str) -> Result<Self, KafkaError> {
        let owner: BaseProducer = rdkafka::ClientConfig::new()
            .set("test.mock.num.brokers", DEMO_BROKERS.to_string())
            .create()?;
        let cluster = DemoCluster { owner };
        cluster.with_mock(|mock| mock.create_topic(topic, DEMO_BROKERS, DEMO_BROKERS))?;
        Ok(cluster)
    }

    fn with_mock<T>(
        &self,
        action: impl FnOnce(
            &rdkafka::mocking::MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
        ) -> Result<T, KafkaError>,
    ) -> Result<T, KafkaError> {
        let mock = self
            .owner
            .client()
            .mock_cluster()
            .ok_or(KafkaError::MockCluster(
                rdkafka::types::RDKafkaErrorCode::Fail,
            ))?;
        action(&mock)
    }

    /// `bootstrap.servers` for the embedded cluster.
    pub fn bootstrap_servers(&self) -> Result<String, KafkaError> {
        self.with_mock(|mock| Ok(mock.bootstrap_servers()))
    }

    /// Takes broker `id` down (its port refuses connections) or brings it back up.
    pub fn set_broker_up(&self, id: i32, up: bool) -> Result<(), KafkaError> {
        self.with_mock(|mock| {
            if up {
                mock.broker_up(id)
            } else {
                mock.broker_down(id)
            }
        })
    }

    /// Delays every response of broker `id` by `delay`.
    pub fn set_broker_delay(&self, id: i32, delay: Duration) -> Result<(), KafkaError> {
        self.with_mock(|mock| mock.broker_round_trip_time(id, delay))
    }
}

/// `POST /demo/brokers/{id}/down`, `/up`, `/delay?ms=N`: break the embedded cluster and watch
/// the metrics react. Only served in demo mode.
pub fn control_router(cluster: Arc<DemoCluster>) -> Router {
    Router::new()
        .route("/demo/brokers/{id}/down", post(broker_down))
        .route("/demo/brokers/{id}/up", post(broker_up))
        .route("/demo/brokers/{id}/delay", post(broker_delay))
        .with_state(cluster)
}

/// The answer for an id that is not a broker of the embedded cluster, if it is not.
fn unknown_broker(id: i32) -> Option<Response> {
    (!(1..=DEMO_BROKERS).contains(&id)).then(|| {
        (
            StatusCode::NOT_FOUND,
            format!(
                "no broker {id}: brokers are 1 to {DEMO_BROKERS}
"
            ),
        )
            .into_response()
    })
}

fn answer(result: Result<(), KafkaError>, done: String) -> Response {
    match result {
        Ok(()) => (StatusCode::OK, done).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")).into_response(),
    }
}

async fn broker_down(State(cluster): State<Arc<DemoCluster>>, Path(id): Path<i32>) -> Response {
    if let Some(response) = unknown_broker(id) {
        return response;
    }
    answer(
        cluster.set_broker_up(id, false),
        format!("broker {id} is down\n"),
    )
}

async fn broker_up(State(cluster): State<Arc<DemoCluster>>, Path(id): Path<i32>) -> Response {
    if let Some(response) = unknown_broker(id) {
        return response;
    }
    answer(
        cluster.set_broker_up(id, true),
        format!("broker {id} is up\n"),
    )
}

/// The query of `/delay`.
#[derive(Debug, Deserialize)]
struct Delay {
    ms: u64,
}

async fn broker_delay(
    State(cluster): State<Arc<DemoCluster>>,
    Path(id): Path<i32>,
    Query(delay): Query<Delay>,
) -> Response {
    if let Some(response) = unknown_broker(id) {
        return response;
    }
    if delay.ms > 60_000 {
        return (StatusCode::BAD_REQUEST, "ms must be at most 60000\n").into_response();
    }
    answer(
        cluster.set_broker_delay(id, Duration::from_millis(delay.ms)),
        format!("broker {id} answers {} ms late\n", delay.ms),
    )
}
