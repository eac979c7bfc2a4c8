//! The cluster scan: a slow, separate look at the whole cluster, every
//! `check.consumer.group.period.seconds` (60 s by default): how many topics and partitions it
//! has, and how many partitions are under-replicated or offline.
//!
//! It also lists the consumer groups (ListGroups and DescribeGroups, within
//! `consumer.group.allow`/`consumer.group.deny`, plus `consumer.group.names`): how many, in
//! which state, with how many members, and their lag. Idle and empty groups keep their series,
//! so a stuck consumer stays visible; a deleted group's series go. A value one part of a scan
//! could not read is not reported (rather than a stale one that could hide a growing lag) and
//! the failure is counted by kind.
//!
//! It has its own client and its own task, and makes its requests on blocking threads, so a
//! large cluster's slow answer never delays a heartbeat. That one client both makes the
//! scan's requests and, as the lag probe, reads records: a client costs a thread per broker.
//!
//! - [`overview`]: topics and partitions, and the unhealthy ones;
//! - [`groups`]: the consumer groups as listed;
//! - [`lag`]: lag in messages and in seconds;
//! - [`probe`]: reads the records lag in seconds is measured from;
//! - [`metrics`]: this task's series.

mod groups;
mod lag;
mod metrics;
mod overview;
mod probe;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use self::groups::{fetch_groups, GroupSummary, UNKNOWN_STATE};
use self::lag::{scan_lag, LagScan};
use self::metrics::{ScanMetrics, ScanPart};
use self::overview::fetch_overview;
use self::probe::LagProbe;
use crate::cluster::ClusterShared;
use crate::config::{AdminSettings, LagGranularity, Pattern};
use crate::kafka::client::{client_config, ClientLog, Role};
use crate::kafka::handle::AnyClient;
use crate::kafka::TopicPartition;
use crate::logging::LogThrottle;
use crate::sync::lock;

/// Whether group `name` is reported, by `consumer.group.allow`/`deny`.
fn group_wanted(admin: &AdminSettings, name: &str) -> bool {
    Pattern::admits(
        &admin.consumer_group_allow,
        &admin.consumer_group_deny,
        name,
    )
}

/// Whether lag on `topic` is reported, by `consumer.group.topic.allow`/`deny`.
fn topic_wanted(admin: &AdminSettings, topic: &str) -> bool {
    Pattern::admits(
        &admin.consumer_group_topic_allow,
        &admin.consumer_group_topic_deny,
        topic,
    )
}

/// Why the scan's clients could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot create the cluster scan's client: {0}")]
pub struct ScanError(#[from] KafkaError);

/// The cluster scan task of one cluster.
pub(crate) struct ClusterScan {
    shared: Arc<ClusterShared>,
    client: Arc<dyn AnyClient>,
    /// Reads the records lag in seconds needs; `None` with `consumer.group.lag.seconds` off.
    probe: Option<Arc<Mutex<LagProbe>>>,
    metrics: Arc<ScanMetrics>,
    throttle: LogThrottle,
    /// Whether the cluster's not listing groups was said.
    told_unlisted: AtomicBool,
    /// Partitions of the topics lag is reported on, from the last metadata that came (`None`
    /// before any came).
    topic_partitions: Mutex<Option<Vec<TopicPartition>>>,
}

impl ClusterScan {
    pub(crate) fn new(shared: &Arc<ClusterShared>) -> Result<Self, ScanError> {
        let client: Arc<BaseConsumer<ClientLog>> = Arc::new(
            client_config(&shared.config, Role::Scan).create_with_context(
                ClientLog::for_cluster(&shared.config, Role::Scan, shared.status.clone()),
            )?,
        );
        let probe = shared
            .config
            .admin
            .consumer_group_lag_seconds
            .then(|| Arc::new(Mutex::new(LagProbe::new(client.clone()))));
        let metrics = Arc::new(ScanMetrics::new(probe.is_some()));
        shared.metrics.add(metrics.clone());
        Ok(ClusterScan {
            shared: shared.clone(),
            client,
            probe,
            metrics,
            throttle: LogThrottle::default(),
            told_unlisted: AtomicBool::new(false),
            topic_partitions: Mutex::default(),
        })
    }

    /// Scans every `check.consumer.group.period.seconds` until cancelled.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        let mut interval =
            tokio::time::interval(self.shared.config.admin.check_consumer_group_period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = interval.tick() => {}
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.scan() => {}
            }
        }
        let (client, probe) = (self.client, self.probe);
        let _ = tokio::task::spawn_blocking(move || drop((client, probe))).await;
    }

    async fn scan(&self) {
        let start = Instant::now();
        self.scan_topics().await;
        let groups = self.scan_groups().await;
        self.scan_lag(groups).await;
        self.metrics.record_duration(start.elapsed());
    }

    async fn scan_topics(&self) {
        let client = self.client.clone();
        let admin = self.shared.config.admin.clone();
        let timeout = admin.check_consumer_group_timeout;
        let result = tokio::task::spawn_blocking(move || {
            fetch_overview(client.as_ref(), timeout, &|topic| {
                topic_wanted(&admin, topic)
            })
        })
        .await;
        match result {
            Ok(Ok((overview, partitions))) => {
                self.metrics.record_overview(&overview);
                *lock(&self.topic_partitions) = Some(partitions);
                self.succeeded(ScanPart::Topics);
            }
            Ok(Err(error)) => self.failed(ScanPart::Topics, &error.to_string()),
            Err(error) => self.failed(ScanPart::Topics, &error.to_string()),
        }
    }

    /// Lists the groups and reports their state; returns the groups whose lag to scan: those
    /// listed (or, when listing failed, last listed) and those named in the configuration.
    async fn scan_groups(&self) -> Vec<String> {
        let client = self.client.clone();
        let timeout = self.shared.config.admin.check_consumer_group_timeout;
        let result =
            tokio::task::spawn_blocking(move || fetch_groups(client.as_ref(), timeout)).await;
        let admin = &self.shared.config.admin;
        match result {
            Ok(Ok(groups)) => {
                let groups: Vec<GroupSummary> = groups
                    .into_iter()
                    .filter(|group| group_wanted(admin, &group.name))
                    .collect();
                self.metrics.record_groups(&groups);
                self.succeeded(ScanPart::Groups);
            }
            Ok(Err(error)) => {
                // Some brokers do not list groups (librdkafka's mock cluster among them): a
                // property of the broker, not a failing scan; named groups are still scanned.
                let unsupported =
                    error.rdkafka_error_code() == Some(RDKafkaErrorCode::UnsupportedFeature);
                if unsupported {
                    // A property of the cluster: said once, not every scan.
                    if !self.told_unlisted.swap(true, Ordering::Relaxed) {
                        tracing::info!("the cluster does not list consumer groups ({error}): only consumer.group.names are scanned, in state {UNKNOWN_STATE}");
                    }
                } else {
                    self.failed(ScanPart::Groups, &error.to_string());
                }
                self.record_unknown_groups();
            }
            Err(error) => {
                self.failed(ScanPart::Groups, &error.to_string());
                self.record_unknown_groups();
            }
        }
        self.listed_and_named().into_iter().collect()
    }

    /// The groups reported at the last listing and those named in the configuration.
    fn listed_and_named(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self.metrics.listed_groups().into_iter().collect();
        names.extend(
            self.shared
                .config
                .admin
                .consumer_group_names
                .iter()
                .cloned(),
        );
        names
    }

    /// Without a listing, the groups listed before and the named ones are in an unknown state,
    /// with an unknown number of members; their lag is still read.
    fn record_unknown_groups(&self) {
        let groups: Vec<GroupSummary> = self
            .listed_and_named()
            .into_iter()
            .map(|name| GroupSummary {
                name,
                state: UNKNOWN_STATE.to_string(),
                members: None,
            })
            .collect();
        self.metrics.record_groups(&groups);
    }

    async fn scan_lag(&self, groups: Vec<String>) {
        let client = self.client.clone();
        let probe = self.probe.clone();
        let admin = self.shared.config.admin.clone();
        // Real brokers answer "every committed partition"; naming the partitions (only when
        // topics are restricted) keeps answers small, and is what librdkafka's mock serves.
        let partitions = if admin.consumer_group_topic_allow.is_some() {
            match lock(&self.topic_partitions).clone() {
                Some(partitions) => Some(partitions),
                // Which partitions to ask about is not known yet (the topics' failure is
                // counted): reporting every group with no lag would be wrong.
                None => return,
            }
        } else {
            None
        };
        let result = tokio::task::spawn_blocking(move || {
            let mut probe = probe.as_ref().map(|probe| lock(probe));
            scan_lag(
                client.requests(),
                probe.as_deref_mut(),
                &groups,
                partitions.as_deref(),
                &|topic| topic_wanted(&admin, topic),
                admin.check_consumer_group_timeout,
                // A scan ends within about its period, so scans never pile up.
                admin.check_consumer_group_period,
            )
        })
        .await;
        match result {
            Ok(scan) => self.report_lag(&scan),
            Err(error) => self.failed(ScanPart::Offsets, &error.to_string()),
        }
    }

    /// Records a lag scan's series, and counts and logs what it could not read.
    fn report_lag(&self, scan: &LagScan) {
        let admin = &self.shared.config.admin;
        let per_partition = admin.lag_granularity() == LagGranularity::Partition;
        let dropped = self.metrics.record_lag(
            scan,
            per_partition,
            self.probe.is_some(),
            admin.consumer_group_max_series,
        );
        if dropped == 0 {
            self.throttle.reset("series");
        } else if let Some(held_back) = self.throttle.admit("series") {
            tracing::warn!(
                held_back,
                dropped,
                "lag series not reported: consumer.group.max.series ({}) reached; narrow \
                 consumer.group.allow, or set consumer.group.lag.granularity = group",
                admin.consumer_group_max_series
            );
        }
        let failures: Vec<String> = scan
            .groups
            .iter()
            .filter_map(|(group, answer)| {
                answer
                    .as_ref()
                    .err()
                    .map(|error| format!("{group}: {error}"))
            })
            .collect();
        match failures.first() {
            None => self.succeeded(ScanPart::Offsets),
            Some(first) => {
                let summary = format!(
                    "committed offsets of {} of {} groups could not be read; first: {first}",
                    failures.len(),
                    scan.groups.len(),
                );
                self.failed(ScanPart::Offsets, &summary);
            }
        }
        match &scan.end_offsets_error {
            Some(error) => self.failed(ScanPart::EndOffsets, &error.to_string()),
            None => self.succeeded(ScanPart::EndOffsets),
        }
        if let Some(round) = &scan.probe {
            match &round.error {
                Some(error) => self.failed(ScanPart::LagSeconds, &error.to_string()),
                None => self.succeeded(ScanPart::LagSeconds),
            }
        }
    }

    fn succeeded(&self, part: ScanPart) {
        let part = part.as_str();
        if let Some(spell) = self.throttle.reset(part) {
            tracing::info!(
                failed = spell.counted,
                "cluster scan of {part} succeeds again, {} after the first failure ({} failed)",
                spell.seconds(),
                spell.counted
            );
        }
    }

    fn failed(&self, part: ScanPart, error: &str) {
        self.metrics.count_failure(part);
        let part = part.as_str();
        if let Some(held_back) = self.throttle.admit(part) {
            tracing::warn!(held_back, "cluster scan of {part} failed: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_bounded_by_allow_and_deny() {
        let config = crate::config::Config::for_test(
            "[admin]\nconsumer.group.allow = ^orders\nconsumer.group.deny = -test$\n",
            &[],
        )
        .unwrap();
        assert!(group_wanted(&config.admin, "orders-service"));
        assert!(!group_wanted(&config.admin, "orders-service-test"));
        assert!(!group_wanted(&config.admin, "billing"));
        let everything = crate::config::Config::for_test("", &[]).unwrap();
        assert!(group_wanted(&everything.admin, "anything"));
    }
}
