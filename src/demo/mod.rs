//! Demo mode: an embedded three-broker cluster (librdkafka's mock cluster, on real loopback
//! TCP ports) with the heartbeat topic already created, so the exporter runs with no Kafka at
//! hand, and an HTTP control to break it: take a broker down and up, slow it down.
//!
//! A small workload runs on it so the consumer-group panels have something to show: orders
//! written to `demo-orders`, a group that falls behind and catches up in turn, and a group
//! that stopped long ago. The transaction probe runs (the mock serves transactions), and a
//! small Schema Registry in the process is probed, so that every panel moves but the
//! retention margin's (the mock does not serve DescribeConfigs).
//!
//! - `registry`: the demo's in-memory Schema Registry.

mod registry;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;

use self::registry::DemoRegistry;
use crate::config::{AdminSettings, Config, Pattern, SchemaRegistrySettings};
use crate::http::Extension;

/// Brokers in the embedded cluster.
const DEMO_BROKERS: i32 = 3;

/// The embedded cluster; it lives as long as this value. It is owned through a client of its
/// own (librdkafka's `test.mock.num.brokers`), which can be shared between threads, so the
/// HTTP control can reach it.
pub struct DemoCluster {
    owner: BaseProducer<Quiet>,
    workload: Option<Workload>,
    registry: DemoRegistry,
}

/// The demo workload's topic.
const DEMO_TOPIC: &str = "demo-orders";
/// A group that falls behind and catches up in turn.
const DEMO_GROUP: &str = "demo-orders-service";
/// A group that committed once, long ago, and stopped.
const DEMO_STUCK_GROUP: &str = "demo-orders-archiver";

/// The context of the demo's own clients (the embedded cluster's owner and the workload): they
/// are not monitored, so their connection noise (a broker taken down on purpose) stays out of
/// the log, where the monitored clients report it. Only librdkafka's gravest lines pass.
pub struct Quiet;

impl ClientContext for Quiet {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        if matches!(
            level,
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical
        ) {
            tracing::error!(target: "librdkafka", client = "demo", facility, "{message}");
        } else {
            tracing::trace!(target: "librdkafka", client = "demo", facility, "{message}");
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::trace!(target: "librdkafka", client = "demo", "{error}: {reason}");
    }
}

impl ConsumerContext for Quiet {}

impl ProducerContext for Quiet {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

impl DemoCluster {
    /// Starts the brokers, creates `topic` with one partition per broker, replicated on all,
    /// and starts the workload and the Schema Registry (on the current tokio runtime).
    pub fn start(topic: &str) -> Result<Self, DemoError> {
        let owner: BaseProducer<Quiet> = rdkafka::ClientConfig::new()
            .set("test.mock.num.brokers", DEMO_BROKERS.to_string())
            .create_with_context(Quiet)?;
        let mut cluster = DemoCluster {
            owner,
            workload: None,
            registry: DemoRegistry::start().map_err(DemoError::Registry)?,
        };
        cluster.with_mock(|mock| {
            mock.create_topic(topic, DEMO_BROKERS, DEMO_BROKERS)?;
            // One heartbeat partition led by each broker, as on a balanced cluster (the mock
            // would give them all to one): every broker is proven.
            for partition in 0..DEMO_BROKERS {
                mock.partition_leader(topic, partition, Some(partition + 1))?;
            }
            mock.create_topic(DEMO_TOPIC, DEMO_BROKERS, DEMO_BROKERS)
        })?;
        cluster.workload = Some(Workload::start(&cluster.bootstrap_servers()?)?);
        Ok(cluster)
    }

    /// `config` pointed at this cluster: its clients at the brokers, the probes on (the
    /// transaction probe, the Schema Registry's), the workload's groups scanned.
    pub fn configure(&self, config: Config) -> Result<Config, DemoError> {
        let mut config = config.for_demo(&self.bootstrap_servers()?);
        Self::scan_settings(&mut config.admin);
        config.admin.probe_transactions = true;
        config.schema_registry = Some(SchemaRegistrySettings::plain(&self.registry.url()));
        Ok(config)
    }

    /// The scan settings that show the workload's groups: the mock cannot list groups, so they
    /// are named, and lag is read on the workload's topic (named partitions, which the mock
    /// serves), every 10 seconds.
    pub fn scan_settings(admin: &mut AdminSettings) {
        admin.consumer_group_names = vec![DEMO_GROUP.to_string(), DEMO_STUCK_GROUP.to_string()];
        // Bounded to the demo's groups, so lag is shown per partition.
        admin.consumer_group_allow = regex::Regex::new("^demo-").ok().map(Pattern);
        admin.consumer_group_topic_allow = regex::Regex::new("^demo-").ok().map(Pattern);
        admin.check_consumer_group_period = Duration::from_secs(10);
    }

    fn with_mock<T>(
        &self,
        action: impl FnOnce(&rdkafka::mocking::MockCluster<'_, Quiet>) -> Result<T, KafkaError>,
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

    /// Takes the demo's Schema Registry down (503 to every request) or brings it back up.
    pub fn set_registry_up(&self, up: bool) {
        self.registry.set_up(up);
    }
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the embedded cluster: {0}")]
    Kafka(#[from] KafkaError),
    #[error("the demo's Schema Registry cannot listen on loopback: {0}")]
    Registry(std::io::Error),
}

/// Starts `count` embedded clusters, each with the configuration that monitors it: the
/// `[admin]` settings of `template`, its heartbeat topic, and the scan settings that show the
/// workload (named `demo_1`, `demo_2`, … when there are several).
pub fn start_clusters(
    template: &Config,
    count: u8,
) -> Result<(Vec<Arc<DemoCluster>>, Vec<Config>), DemoError> {
    let mut clusters = Vec::new();
    let mut configs = Vec::new();
    for index in 1..=count {
        let cluster = DemoCluster::start(&template.admin.heartbeat_topic)?;
        let bootstrap = cluster.bootstrap_servers()?;
        let config = cluster.configure(template.clone())?;
        let config = if count > 1 {
            config.named(&format!("demo_{index}"))
        } else {
            config
        };
        tracing::info!(
            bootstrap,
            cluster = config.name,
            "demo mode: embedded 3-broker cluster started"
        );
        clusters.push(Arc::new(cluster));
        configs.push(config);
    }
    tracing::info!(
        "break the (first) demo cluster with POST /demo/brokers/{{1..3}}/down, /up or \
         /delay?ms=N, and its Schema Registry with POST /demo/schema-registry/down or /up"
    );
    Ok((clusters, configs))
}

impl Drop for DemoCluster {
    fn drop(&mut self) {
        // The workload's clients go before the brokers they talk to.
        self.workload.take();
    }
}

/// Orders written to [`DEMO_TOPIC`] (five a second per partition) and two groups' commits.
struct Workload {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// How long the demo group takes to fall behind before it catches up again.
const DEMO_LAG_CYCLE: Duration = Duration::from_secs(120);

impl Workload {
    fn start(bootstrap: &str) -> Result<Self, KafkaError> {
        let client = |group: Option<&str>| {
            let mut config = rdkafka::ClientConfig::new();
            config
                .set("bootstrap.servers", bootstrap)
                .set("linger.ms", "0")
                .set("enable.auto.commit", "false");
            if let Some(group) = group {
                config.set("group.id", group);
            }
            config
        };
        let producer: BaseProducer<Quiet> = client(None).create_with_context(Quiet)?;
        let group: BaseConsumer<Quiet> = client(Some(DEMO_GROUP)).create_with_context(Quiet)?;
        let stuck: BaseConsumer<Quiet> =
            client(Some(DEMO_STUCK_GROUP)).create_with_context(Quiet)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("demo-workload".to_string())
            .spawn(move || run_workload(&producer, &group, &stuck, &stopping))
            .map_err(|_| KafkaError::MockCluster(rdkafka::types::RDKafkaErrorCode::Fail))?;
        Ok(Workload {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Errors are ignored: a broker taken down from the control only pauses the workload.
fn run_workload(
    producer: &BaseProducer<Quiet>,
    group: &BaseConsumer<Quiet>,
    stuck: &BaseConsumer<Quiet>,
    stop: &AtomicBool,
) {
    let start = Instant::now();
    let mut written = [0i64; DEMO_BROKERS as usize];
    let mut stuck_committed = false;
    let mut last_commit = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        for (partition, count) in (0..DEMO_BROKERS).zip(written.iter_mut()) {
            let record = BaseRecord::<(), str>::to(DEMO_TOPIC)
                .partition(partition)
                .payload("order");
            if producer.send(record).is_ok() {
                *count += 1;
            }
        }
        producer.poll(Duration::ZERO);
        if last_commit.elapsed() >= Duration::from_secs(2)
            && producer.flush(Duration::from_secs(1)).is_ok()
        {
            last_commit = Instant::now();
            // Behind by up to 150 records per partition, then caught up: a sawtooth.
            let phase = start.elapsed().as_secs_f64() % DEMO_LAG_CYCLE.as_secs_f64();
            let behind = (phase / DEMO_LAG_CYCLE.as_secs_f64() * 150.0) as i64;
            let _ = commit(group, &written.map(|end| (end - behind).max(0)));
            if !stuck_committed {
                stuck_committed = commit(stuck, &[0; DEMO_BROKERS as usize]).is_ok();
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn commit(consumer: &BaseConsumer<Quiet>, offsets: &[i64]) -> Result<(), KafkaError> {
    let mut list = TopicPartitionList::new();
    for (partition, offset) in (0..).zip(offsets) {
        list.add_partition_offset(DEMO_TOPIC, partition, Offset::Offset(*offset))?;
    }
    consumer.commit(&list, CommitMode::Sync)
}

/// `POST /demo/brokers/{id}/down`, `/up`, `/delay?ms=N`: break the embedded cluster and watch
/// the metrics react. Only served in demo mode.
pub fn control(cluster: Arc<DemoCluster>) -> Extension {
    let routes = Router::new()
        .route("/demo/brokers/{id}/down", post(broker_down))
        .route("/demo/brokers/{id}/up", post(broker_up))
        .route("/demo/brokers/{id}/delay", post(broker_delay))
        .route("/demo/schema-registry/{action}", post(registry_control))
        .with_state(cluster);
    Extension {
        routes,
        landing: format!(
            "<h2>Demo mode</h2><p>Monitoring an embedded {DEMO_BROKERS}-broker cluster (no Kafka \
             needed). Break it and watch the metrics react:</p><pre>\
             curl -X POST http://HOST/demo/brokers/2/down\n\
             curl -X POST http://HOST/demo/brokers/2/up\n\
             curl -X POST 'http://HOST/demo/brokers/2/delay?ms=200'\n\
             curl -X POST http://HOST/demo/schema-registry/down</pre>"
        ),
    }
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

/// Runs `action` on the embedded cluster on a blocking thread (the mock's calls wait on its
/// own thread), and answers `done` when it worked.
async fn answer(
    cluster: Arc<DemoCluster>,
    action: impl FnOnce(&DemoCluster) -> Result<(), KafkaError> + Send + 'static,
    done: String,
) -> Response {
    match tokio::task::spawn_blocking(move || action(&cluster)).await {
        Ok(Ok(())) => (StatusCode::OK, done).into_response(),
        Ok(Err(error)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")).into_response(),
    }
}

async fn broker_down(State(cluster): State<Arc<DemoCluster>>, Path(id): Path<i32>) -> Response {
    if let Some(response) = unknown_broker(id) {
        return response;
    }
    answer(
        cluster,
        move |cluster| cluster.set_broker_up(id, false),
        format!("broker {id} is down\n"),
    )
    .await
}

async fn broker_up(State(cluster): State<Arc<DemoCluster>>, Path(id): Path<i32>) -> Response {
    if let Some(response) = unknown_broker(id) {
        return response;
    }
    answer(
        cluster,
        move |cluster| cluster.set_broker_up(id, true),
        format!("broker {id} is up\n"),
    )
    .await
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
    let ms = delay.ms;
    answer(
        cluster,
        move |cluster| cluster.set_broker_delay(id, Duration::from_millis(ms)),
        format!("broker {id} answers {ms} ms late\n"),
    )
    .await
}

/// `POST /demo/schema-registry/down` or `/up`.
async fn registry_control(
    State(cluster): State<Arc<DemoCluster>>,
    Path(action): Path<String>,
) -> Response {
    let up = match action.as_str() {
        "up" => true,
        "down" => false,
        _ => {
            return (
                StatusCode::NOT_FOUND,
                "POST /demo/schema-registry/down or /up\n",
            )
                .into_response()
        }
    };
    cluster.set_registry_up(up);
    (
        StatusCode::OK,
        format!(
            "the demo's Schema Registry is {}\n",
            if up { "up" } else { "down" }
        ),
    )
        .into_response()
}
