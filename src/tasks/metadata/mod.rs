//! The metadata task: refreshes what the cluster says about itself (id, controller, brokers,
//! the heartbeat topic's partitions and leaders), publishes it for the other tasks, and counts
//! and logs every change. A broker that vanishes is kept, marked missing, until
//! `broker.missing.retention.seconds` have passed, so a dead broker never silently disappears.
//!
//! - [`snapshot`]: the request, and the pure rules from one view to the next;
//! - [`racks`]: broker racks from DescribeCluster.
//!
//! What a refresh found goes to the recorder (`crate::recorder::metadata`), which counts and
//! logs every change and publishes the view.

mod racks;
mod snapshot;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use self::racks::Racks;
use self::snapshot::{fetch_metadata, next_snapshot, MetadataResponse};
use crate::config::Config;
use crate::kafka::handle::AnyClient;
use crate::recorder::metadata::change::Change;
use crate::recorder::metadata::{
    MetadataAnswered, MetadataDelayed, MetadataFailed, MetadataRefreshed,
};
use crate::recorder::Recorder;
use crate::sync::lock;

/// Why a metadata refresh failed.
#[derive(Debug, thiserror::Error)]
enum MetadataError {
    #[error("metadata request failed: {0}")]
    Request(#[from] KafkaError),
    #[error("metadata request task failed: {0}")]
    Task(String),
}

impl MetadataError {
    /// Whether the connection the request went on broke (rather than the request running out
    /// of time or being refused).
    fn connection_broke(&self) -> bool {
        matches!(
            self,
            MetadataError::Request(KafkaError::MetadataFetch(
                RDKafkaErrorCode::BrokerTransportFailure
            ))
        )
    }

    /// Whether the request failed for the connection it went on only: it ran out of time
    /// (a throttled connection, a broker that froze with it) or its connection broke (a
    /// broker that died with it), rather than being refused by the cluster.
    fn connection_only(&self) -> bool {
        matches!(
            self,
            MetadataError::Request(KafkaError::MetadataFetch(
                RDKafkaErrorCode::OperationTimedOut
                    | RDKafkaErrorCode::RequestTimedOut
                    | RDKafkaErrorCode::BrokerTransportFailure
            ))
        )
    }
}

/// The pause before a request that failed on a broken connection is asked again: librdkafka
/// has marked that broker down by then, and goes to another.
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// What the metadata task needs of the configuration.
struct Settings {
    /// `heartbeat.topic`, whose partitions are asked for.
    topic: String,
    /// `check.metadata.period.seconds`.
    period: Duration,
    /// `check.metadata.timeout.seconds`, for each request.
    timeout: Duration,
    /// `broker.missing.retention.seconds`.
    retention: Duration,
}

/// The metadata task of one cluster.
pub(crate) struct MetadataRefresher {
    settings: Settings,
    recorder: Arc<Recorder>,
    /// Refreshes asked for between periods (the topic was created, racks were found).
    refresh_now: Arc<Notify>,
    /// Told when another cluster answers at the bootstrap servers (its id changed).
    cluster_changed: Arc<Notify>,
    /// The heartbeat producer's client, which the topic task shares.
    client: Arc<dyn AnyClient>,
    /// A second client asked at the same time (the end-to-end consumer's): a request that
    /// waits behind one client's throttled connection, or went to a broker that died with it,
    /// does not hold the answer the other client gets.
    second: Option<Arc<dyn AnyClient>>,
    /// When the refresh before this one started.
    previous_start: std::sync::Mutex<Option<Instant>>,
    racks: Racks,
}

impl MetadataRefresher {
    /// `signals`: refreshes asked for, and where a change of cluster is told.
    pub(crate) fn new(
        (config, recorder): (&Config, &Arc<Recorder>),
        signals: (&Arc<Notify>, &Arc<Notify>),
        client: Arc<dyn AnyClient>,
        second: Option<Arc<dyn AnyClient>>,
    ) -> Self {
        let admin = &config.admin;
        MetadataRefresher {
            settings: Settings {
                topic: admin.heartbeat_topic.clone(),
                period: admin.check_metadata_period,
                timeout: admin.check_metadata_timeout,
                retention: admin.broker_missing_retention,
            },
            recorder: recorder.clone(),
            refresh_now: signals.0.clone(),
            cluster_changed: signals.1.clone(),
            client,
            second,
            previous_start: std::sync::Mutex::default(),
            racks: Racks::new(),
        }
    }

    /// Refreshes every `check.metadata.period.seconds`, or at once when asked to, until cancelled.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        let mut interval = tokio::time::interval(self.settings.period);
        // A refresh that overran is not worth catching up on: the next one sees the same cluster.
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = interval.tick() => {}
                _ = self.refresh_now.notified() => {}
            }
            // A blocking request cannot be interrupted; cancellation is checked around it.
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.refresh() => {}
            }
        }
        // The last holder of a client destroys it, which blocks: not on a worker.
        let clients = (self.client, self.second);
        let _ = tokio::task::spawn_blocking(move || drop(clients)).await;
    }

    /// One refresh: request, compare, publish, record.
    async fn refresh(&self) {
        let started = Instant::now();
        let since = lock(&self.previous_start)
            .replace(started)
            .unwrap_or(started);
        let limit = self.settings.timeout;
        let mut result = self.request(limit).await;
        // A broken connection (a broker that died with the request, or stopped) fails the
        // request at once: asked again, librdkafka goes to another broker. So while the time
        // a request may take lasts.
        while let Err(error) = &result {
            let left = limit.saturating_sub(started.elapsed() + RETRY_PAUSE);
            if !error.connection_broke() || left.is_zero() {
                break;
            }
            tracing::debug!("metadata request failed on a broken connection, asked again: {error}");
            tokio::time::sleep(RETRY_PAUSE).await;
            result = self.request(left).await;
        }
        match result {
            Ok(response) => {
                self.recorder.record(MetadataAnswered {
                    took: started.elapsed(),
                });
                self.apply(response);
            }
            // A throttled connection holds every request behind the throttle time, which can
            // be longer than a metadata request may take, and its first statistics may come
            // later. So the cluster down is said one refresh later than a refused request
            // would say it.
            Err(error) if error.connection_only() && self.recorder.answered_since(since) => {
                self.recorder.record(MetadataDelayed {
                    error: error.to_string(),
                });
            }
            Err(error) => self.recorder.record(MetadataFailed {
                error: error.to_string(),
            }),
        }
    }

    /// Asks every client at once, each for at most `timeout`: the first answer wins; the last
    /// failure when none answers.
    async fn request(
        &self,
        timeout: std::time::Duration,
    ) -> Result<MetadataResponse, MetadataError> {
        let topic = self.settings.topic.clone();
        let asks = [Some(&self.client), self.second.as_ref()]
            .into_iter()
            .flatten()
            .map(|client| {
                let (client, topic) = (client.clone(), topic.clone());
                Box::pin(async move {
                    tokio::task::spawn_blocking(move || {
                        fetch_metadata(client.requests(), &topic, timeout)
                    })
                    .await
                    .map_err(|error| MetadataError::Task(error.to_string()))
                    .and_then(|result| result.map_err(MetadataError::from))
                })
            });
        // A request still waiting is left to end by its own timeout.
        futures::future::select_ok(asks)
            .await
            .map(|(response, _waiting)| response)
    }

    fn apply(&self, response: MetadataResponse) {
        let now = Instant::now();
        let retention = self.settings.retention;
        let previous = self.recorder.snapshot();
        let racks = self.racks.known();
        let (snapshot, changes) = next_snapshot(&previous, response, &racks, now, retention);
        let brokers_changed = changes.iter().any(|change| {
            matches!(
                change,
                Change::BrokerAdded(_)
                    | Change::BrokerReturned(_)
                    | Change::BrokerAddressChanged { .. }
            )
        });
        let id_changed = changes
            .iter()
            .any(|change| matches!(change, Change::ClusterIdChanged { .. }));
        self.recorder.record(MetadataRefreshed {
            previous,
            snapshot,
            changes,
        });
        self.racks.look_up(
            &self.client,
            (&self.recorder, &self.refresh_now),
            self.settings.timeout,
            brokers_changed,
        );
        if id_changed {
            // Another cluster answers at these addresses: what was measured so far was of the
            // old one. The cluster's tasks start afresh, their series from zero.
            self.cluster_changed.notify_one();
        }
    }
}
