//! The cluster scan: a slow, separate look at the whole cluster, every
//! `check.consumer.group.period.seconds` (60 s by default): how many topics and partitions it
//! has, how many partitions are under-replicated or offline, and, with every topic's
//! `min.insync.replicas`, how many refuse writes or would after one more broker loss.
//!
//! It also lists the consumer groups on either protocol (ListConsumerGroups and
//! DescribeConsumerGroups, within
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
//! - [`min_isr`]: partitions under and at their topic's min ISR;
//! - [`groups`]: the consumer groups as listed and described, on either protocol;
//! - [`lag`]: lag in messages and in seconds;
//! - [`probe`]: reads the records lag in seconds is measured from;
//!
//! What a scan found goes to the recorder (`crate::recorder::scan`), which owns its series,
//! how each group's commits move, and the log's spells of each part's failures.

mod groups;
mod lag;
mod min_isr;
mod overview;
mod probe;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use self::groups::fetch_groups;
use self::lag::scan_lag;
use self::min_isr::min_isr;
use self::overview::{fetch_overview, TopicsHealth};
use self::probe::LagProbe;
use crate::config::Config;
use crate::config::{AdminSettings, Pattern};
use crate::kafka::client::{client_config, is_authorization_failure, ClientLog, Role};
use crate::kafka::configs::{describe_topic_configs, Retention, TopicConfig};
use crate::kafka::groups::GroupProtocol;
use crate::kafka::handle::AnyClient;
use crate::kafka::native_admin::NativeAdminError;
use crate::kafka::TopicPartition;
use crate::recorder::permissions::{Allowed, Refused};
use crate::recorder::permissions::{Operation, Resource, Right};
use crate::recorder::scan::found::{GroupSummary, LagScan, UNKNOWN_STATE};
use crate::recorder::scan::metrics::ScanPart;
use crate::recorder::scan::{
    GroupsListed, LagScanned, MinIsrCounted, ScanFinished, ScanPartFailed, ScanPartSucceeded,
    TopicsCounted,
};
use crate::recorder::Recorder;
use crate::sync::lock;

/// Whether group `name` is reported: by `consumer.group.allow`/`deny`, and never the
/// exporter's own group (`own`), unless `consumer.group.names` names it. Its consumer is
/// assigned, not subscribed, and commits only to time the coordinator: its "lag" is the
/// exporter's own reading position, already measured end to end, and reporting it would ask
/// for rights an application's monitoring does not need (DescribeConfigs on the heartbeat
/// topic, for its retention margin).
fn group_wanted(admin: &AdminSettings, own: &str, name: &str) -> bool {
    if name == own && !admin.consumer_group_names.iter().any(|named| named == name) {
        return false;
    }
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
    /// The `[admin]` settings (which groups and topics, periods, timeouts, granularity).
    admin: Arc<AdminSettings>,
    /// The exporter's own consumer group, left out unless named.
    own_group: String,
    recorder: Arc<Recorder>,
    client: Arc<dyn AnyClient>,
    /// Reads the records lag in seconds needs; `None` with `consumer.group.lag.seconds` off.
    probe: Option<Arc<Mutex<LagProbe>>>,
    /// Whether the cluster's not listing groups was said.
    told_unlisted: AtomicBool,
    /// Partitions of the topics lag is reported on, from the last metadata that came (`None`
    /// before any came).
    topic_partitions: Mutex<Option<Vec<TopicPartition>>>,
    /// The time retention of the groups' topics, as last read.
    retention: Mutex<BTreeMap<String, Retention>>,
    /// Whether the cluster's not describing configs was said.
    told_no_configs: AtomicBool,
    /// Each topic's `min.insync.replicas`, as last read.
    min_isr: Mutex<BTreeMap<String, usize>>,
    /// Whether topics whose min ISR cannot be read were said.
    told_min_isr_refused: AtomicBool,
}

/// What DescribeConfigs answered for the groups' topics.
type Described = Result<BTreeMap<String, Result<TopicConfig, NativeAdminError>>, NativeAdminError>;

impl ClusterScan {
    /// The scan's client, for credentials changed at run time.
    pub(crate) fn client(&self) -> Arc<dyn AnyClient> {
        self.client.clone()
    }

    pub(crate) fn new(config: &Config, recorder: &Arc<Recorder>) -> Result<Self, ScanError> {
        let client: Arc<BaseConsumer<ClientLog>> =
            Arc::new(client_config(config, Role::Scan).create_with_context(
                ClientLog::for_cluster(config, Role::Scan, recorder.clone()),
            )?);
        let probe = config
            .admin
            .consumer_group_lag_seconds
            .then(|| Arc::new(Mutex::new(LagProbe::new(client.clone()))));
        Ok(ClusterScan {
            admin: Arc::new(config.admin.clone()),
            own_group: config.consumer_group_id(),
            recorder: recorder.clone(),
            client,
            probe,
            told_unlisted: AtomicBool::new(false),
            topic_partitions: Mutex::default(),
            retention: Mutex::default(),
            told_no_configs: AtomicBool::new(false),
            min_isr: Mutex::default(),
            told_min_isr_refused: AtomicBool::new(false),
        })
    }

    /// Scans every `check.consumer.group.period.seconds` until cancelled.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        let mut interval = tokio::time::interval(self.admin.check_consumer_group_period);
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
        self.recorder.record(ScanFinished {
            took: start.elapsed(),
        });
    }

    async fn scan_topics(&self) {
        let client = self.client.clone();
        let admin = self.admin.clone();
        let timeout = admin.check_consumer_group_timeout;
        let result = tokio::task::spawn_blocking(move || {
            fetch_overview(client.as_ref(), timeout, &|topic| {
                topic_wanted(&admin, topic)
            })
        })
        .await;
        match result {
            Ok(Ok((overview, partitions, health))) => {
                self.recorder.record(TopicsCounted(overview));
                *lock(&self.topic_partitions) = Some(partitions);
                self.succeeded(ScanPart::Topics);
                self.scan_min_isr(health).await;
            }
            Ok(Err(error)) => self.failed(ScanPart::Topics, &error.to_string()),
            Err(error) => self.failed(ScanPart::Topics, &error.to_string()),
        }
    }

    /// Reads every topic's `min.insync.replicas` (again at every scan: an admin may change it)
    /// and counts the partitions under and at it. Apart from the overview, which a slow
    /// DescribeConfigs (its broker just crashed) must not hold back.
    async fn scan_min_isr(&self, health: TopicsHealth) {
        let configs = if self.configs_describable() {
            let client = self.client.clone();
            let timeout = self.admin.check_consumer_group_timeout;
            let names: Vec<String> = health.keys().cloned().collect();
            match tokio::task::spawn_blocking(move || {
                describe_topic_configs(client.requests(), &names, timeout)
            })
            .await
            {
                Ok(configs) => Some(configs),
                Err(error) => {
                    self.failed(ScanPart::MinIsr, &error.to_string());
                    return;
                }
            }
        } else {
            None
        };
        self.report_min_isr(&health, configs);
    }

    /// Whether topic configs can be asked for: librdkafka sends DescribeConfigs to the
    /// controller, and a cluster that names none of its brokers as controller (librdkafka's
    /// mock) would only make it wait out its timeout.
    fn configs_describable(&self) -> bool {
        let snapshot = self.recorder.snapshot();
        snapshot
            .named_controller
            .is_some_and(|id| snapshot.brokers.contains_key(&id))
    }

    /// Counts partitions under and at their topic's min ISR, with `min.insync.replicas` as
    /// just read (or, where this read failed, as last read). A topic whose configs the account
    /// may not read is not counted, and counted as unknown: the right is not among those the
    /// exporter needs, so its absence fires no alert.
    fn report_min_isr(&self, health: &TopicsHealth, configs: Option<Described>) {
        let mut known = lock(&self.min_isr);
        match configs {
            // Said once by the retention margins' part.
            None => {}
            Some(Ok(topics)) => {
                let (mut refused, mut failed) = (0usize, None);
                for (topic, answer) in topics {
                    match answer {
                        Ok(config) => match config.min_insync_replicas {
                            Some(minimum) => {
                                known.insert(topic, minimum);
                            }
                            None => {
                                known.remove(&topic);
                            }
                        },
                        Err(error) if is_authorization_failure(error.code()) => {
                            known.remove(&topic);
                            refused += 1;
                        }
                        Err(error) => {
                            failed.get_or_insert(format!("{topic}: {error}"));
                        }
                    }
                }
                match failed {
                    Some(first) => self.failed(ScanPart::MinIsr, &first),
                    None => self.succeeded(ScanPart::MinIsr),
                }
                if refused > 0 && !self.told_min_isr_refused.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        refused,
                        "min.insync.replicas of {refused} topics cannot be read (the account lacks DESCRIBE_CONFIGS on them): their partitions are not counted under or at min ISR (heartbeat_cluster_min_isr_unknown_topics)"
                    );
                }
            }
            Some(Err(error)) if error.code() == Some(RDKafkaErrorCode::UnsupportedFeature) => {}
            Some(Err(error)) => self.failed(ScanPart::MinIsr, &error.to_string()),
        }
        // A deleted topic's minimum goes with it.
        known.retain(|topic, _| health.contains_key(topic));
        let count = min_isr(
            health
                .iter()
                .map(|(topic, partitions)| (topic.as_str(), partitions.as_slice())),
            &known,
        );
        self.recorder.record(MinIsrCounted(count));
    }

    /// Lists the groups and reports their state; returns the groups whose lag to scan: those
    /// listed (or, when listing failed, last listed) and those named in the configuration.
    async fn scan_groups(&self) -> Vec<String> {
        let client = self.client.clone();
        let (admin, own) = (self.admin.clone(), self.own_group.clone());
        let timeout = admin.check_consumer_group_timeout;
        // Descriptions take one request per group: half the period for them, the rest for lag.
        let describe_budget = admin.check_consumer_group_period / 2;
        let result = tokio::task::spawn_blocking(move || {
            fetch_groups(client.as_ref(), timeout, describe_budget, &|name| {
                group_wanted(&admin, &own, name)
            })
        })
        .await;
        match result {
            Ok(Ok(listing)) => {
                let (count, undescribed) = (listing.groups.len(), listing.undescribed);
                self.recorder.record(GroupsListed(listing.groups));
                match &listing.first_failure {
                    None => self.succeeded(ScanPart::Groups),
                    Some(first) => self.failed(
                        ScanPart::Groups,
                        &format!(
                            "{} of {} consumer groups could not be described (reported as listed, with no member count); first: {first}",
                            undescribed,
                            count
                        ),
                    ),
                }
            }
            Ok(Err(error)) => {
                // Some brokers do not list groups (librdkafka's mock cluster among them): a
                // property of the broker, not a failing scan; named groups are still scanned.
                if error.code() == Some(RDKafkaErrorCode::UnsupportedFeature) {
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
        self.listed_and_named().into_keys().collect()
    }

    /// The groups reported at the last listing, with their protocol, and those named in the
    /// configuration (of a protocol not known unless listed).
    fn listed_and_named(&self) -> BTreeMap<String, GroupProtocol> {
        let mut names = self.recorder.listed_groups();
        for name in &self.admin.consumer_group_names {
            names.entry(name.clone()).or_insert(GroupProtocol::Unknown);
        }
        names
    }

    /// Without a listing, the groups listed before and the named ones are in an unknown state,
    /// with an unknown number of members, each of the protocol it was last listed with; their
    /// lag is still read.
    fn record_unknown_groups(&self) {
        let groups: Vec<GroupSummary> = self
            .listed_and_named()
            .into_iter()
            .map(|(name, protocol)| GroupSummary {
                name,
                state: UNKNOWN_STATE.to_string(),
                protocol,
                members: None,
            })
            .collect();
        self.recorder.record(GroupsListed(groups));
    }

    async fn scan_lag(&self, groups: Vec<String>) {
        let client = self.client.clone();
        let probe = self.probe.clone();
        let admin = self.admin.clone();
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
        let describable = self.configs_describable();
        let result = tokio::task::spawn_blocking(move || {
            let mut probe = probe.as_ref().map(|probe| lock(probe));
            let scan = scan_lag(
                client.requests(),
                probe.as_deref_mut(),
                &groups,
                partitions.as_deref(),
                &|topic| topic_wanted(&admin, topic),
                admin.check_consumer_group_timeout,
                // A scan ends within about its period, so scans never pile up.
                admin.check_consumer_group_period,
            );
            // Once per topic per scan, for the retention margins.
            let topics: BTreeSet<String> = scan
                .groups
                .values()
                .flatten()
                .flat_map(|lag| lag.partitions.keys().map(|(topic, _)| topic.clone()))
                .collect();
            let topics: Vec<String> = topics.into_iter().collect();
            let described = describable.then(|| {
                describe_topic_configs(
                    client.requests(),
                    &topics,
                    admin.check_consumer_group_timeout,
                )
            });
            (scan, described)
        })
        .await;
        match result {
            Ok((scan, described)) => {
                let retention = self.read_retention(described);
                self.recorder.record(LagScanned {
                    scan: &scan,
                    retention: &retention,
                });
                self.report_lag(&scan);
            }
            Err(error) => self.failed(ScanPart::Offsets, &error.to_string()),
        }
    }

    /// The retention of the groups' topics, for their retention margins: as read (or, where
    /// it could not be read this time, as last read), held while it is recorded.
    fn read_retention(
        &self,
        described: Option<Described>,
    ) -> MutexGuard<'_, BTreeMap<String, Retention>> {
        let mut retention = lock(&self.retention);
        let describe_configs = Right::new(Operation::DescribeConfigs, Resource::ReportedTopics);
        match described {
            None => {
                if !self.told_no_configs.swap(true, Ordering::Relaxed) {
                    tracing::info!("the cluster names no controller among its brokers, which topic configs are asked of: no retention margins");
                }
            }
            Some(Ok(topics)) => {
                let (mut refused, mut failed) = (None, None);
                for (topic, answer) in topics {
                    match answer {
                        Ok(found) => {
                            retention.insert(topic, found.retention);
                        }
                        Err(error) if is_authorization_failure(error.code()) => {
                            retention.remove(&topic);
                            refused.get_or_insert((topic, error));
                        }
                        Err(error) => {
                            failed.get_or_insert(format!("{topic}: {error}"));
                        }
                    }
                }
                // Once per scan, however many topics failed.
                match failed {
                    Some(first) => self.failed(ScanPart::Configs, &first),
                    None => self.succeeded(ScanPart::Configs),
                }
                match refused {
                    Some((topic, error)) => self.recorder.record(Refused::new(
                        describe_configs,
                        &format!("the retention of topic `{topic}` cannot be read, so no retention margin"),
                        &error,
                    )),
                    None => self.recorder.record(Allowed(describe_configs)),
                }
            }
            // Some brokers do not describe configs (librdkafka's mock cluster among them): a
            // property of the cluster, said once; no margins.
            Some(Err(error)) if error.code() == Some(RDKafkaErrorCode::UnsupportedFeature) => {
                if !self.told_no_configs.swap(true, Ordering::Relaxed) {
                    tracing::info!("the cluster does not describe topic configs ({error}): no retention margins");
                }
            }
            Some(Err(error)) => self.failed(ScanPart::Configs, &error.to_string()),
        }
        retention
    }

    /// Counts and logs what a lag scan could not read.
    fn report_lag(&self, scan: &LagScan) {
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
        self.record_rights(scan);
    }

    /// What the scan's requests said of its rights: DESCRIBE on the groups (their committed
    /// offsets), DESCRIBE on their topics (log end offsets), READ on them (lag in seconds).
    fn record_rights(&self, scan: &LagScan) {
        let recorder = &self.recorder;
        let refused_group = scan.groups.iter().find_map(|(group, answer)| {
            answer
                .as_ref()
                .err()
                .filter(|error| is_authorization_failure(error.code()))
                .map(|error| (group, error))
        });
        let describe_groups = Right::new(Operation::Describe, Resource::ReportedGroups);
        match refused_group {
            Some((group, error)) => recorder.record(Refused::new(
                describe_groups,
                &format!("the lag of consumer group `{group}` cannot be read"),
                error,
            )),
            None => recorder.record(Allowed(describe_groups)),
        }
        let describe_topics = Right::new(Operation::Describe, Resource::ReportedTopics);
        match &scan.end_offsets_error {
            Some(error) if is_authorization_failure(error.code()) => recorder.record(Refused::new(
                describe_topics,
                "the log end offsets of the groups' topics cannot be read",
                error,
            )),
            Some(_) => {}
            None => recorder.record(Allowed(describe_topics)),
        }
        if let Some(round) = &scan.probe {
            let read_topics = Right::new(Operation::Read, Resource::ReportedTopics);
            match &round.error {
                Some(error) if is_authorization_failure(error.rdkafka_error_code()) => {
                    recorder.record(Refused::new(
                        read_topics,
                        "lag in seconds cannot be read (consumer.group.lag.seconds = false turns it off)",
                        error,
                    ))
                }
                Some(_) => {}
                None => recorder.record(Allowed(read_topics)),
            }
        }
    }

    fn succeeded(&self, part: ScanPart) {
        self.recorder.record(ScanPartSucceeded(part));
    }

    fn failed(&self, part: ScanPart, error: &str) {
        self.recorder.record(ScanPartFailed {
            part,
            error: error.to_string(),
        });
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
        let own = config.consumer_group_id();
        assert!(group_wanted(&config.admin, &own, "orders-service"));
        assert!(!group_wanted(&config.admin, &own, "orders-service-test"));
        assert!(!group_wanted(&config.admin, &own, "billing"));
        let everything = crate::config::Config::for_test("", &[]).unwrap();
        assert!(group_wanted(&everything.admin, &own, "anything"));
    }

    #[test]
    fn the_exporters_own_group_is_left_out_unless_named() {
        let config =
            crate::config::Config::for_test("[consumer]\ngroup.id = probe\n", &[]).unwrap();
        let own = config.consumer_group_id();
        assert!(!group_wanted(&config.admin, &own, "probe"));
        assert!(group_wanted(&config.admin, &own, "cc-heartbeat"));
        let named =
            crate::config::Config::for_test("[admin]\nconsumer.group.names = cc-heartbeat\n", &[])
                .unwrap();
        assert!(group_wanted(
            &named.admin,
            &named.consumer_group_id(),
            "cc-heartbeat"
        ));
    }
}
