//! The mirror reader of a replica (`mirror.of`): reads the source cluster's heartbeats where
//! the replication pipeline (MirrorMaker 2, Cluster Linking) writes them on this cluster, and
//! matches each to what the source's producer sent, told through the source's feed: the
//! pipeline's end-to-end latency, what it lost, duplicated or delivered late, and the age of
//! the newest heartbeat it delivered (the recovery point).
//!
//! Partitions are assigned directly (no consumer group), each at its log end offset; only the
//! source's heartbeats sent after that are expected, so nothing replicated before the reader
//! was in place is counted lost. Both tools keep the source partition, and the heartbeat
//! names its own, so matching never depends on where the pipeline put it. Memory is bounded as
//! the end-to-end consumer's: what the feed holds for a reader behind, and what the tracker
//! holds per partition, each with what is dropped counted. What it finds goes to the
//! recorder (`crate::recorder::mirror`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::cluster::Beat;
use crate::cluster::Source;
use crate::config::Config;
use crate::kafka::client::{client_config, ClientLog, Role};
use crate::kafka::handle::AnyClient;
use crate::kafka::positions::end_offsets;
use crate::logging::LogThrottle;
use crate::message::{decode, Decoded};
use crate::recorder::mirror::metrics::{Outcome, Skipped};
use crate::recorder::mirror::{
    MirrorCounted, MirrorDropped, MirrorExpired, MirrorPartitionDifference, MirrorPositioned,
    MirrorReplicated, MirrorSkipped,
};
use crate::recorder::Recorder;
use crate::sync::lock;
use crate::tracker::{MessageTracker, Observation};

/// What the reader knows of the pipeline.
struct MirrorState {
    /// The source's instance read now, with its tracker, and the one before it (the source's
    /// tasks started afresh), until what it sent is resolved.
    current: Option<(Arc<str>, MessageTracker)>,
    previous: Option<(Arc<str>, MessageTracker)>,
    /// When each mirror partition's end offset was read: only heartbeats sent after it are
    /// expected there.
    positioned: BTreeMap<i32, Instant>,
    /// The send time of the newest source heartbeat read here, and how many were.
    newest_sent: Option<Instant>,
    replicated: u64,
    /// The source partitions heartbeats were sent to, and when last.
    source_partitions: BTreeMap<i32, Instant>,
    /// Why the mirror topic cannot be read, while it cannot.
    problem: Option<String>,
}

impl MirrorState {
    /// The tracker of `instance`; a new instance becomes the current one.
    fn tracker(&mut self, instance: &Arc<str>, lost_after: Duration) -> &mut MessageTracker {
        let is = |slot: &Option<(Arc<str>, MessageTracker)>| {
            slot.as_ref().is_some_and(|(known, _)| known == instance)
        };
        if !is(&self.current) && !is(&self.previous) {
            self.previous = self.current.take();
            self.current = Some((instance.clone(), MessageTracker::new(lost_after)));
        }
        if is(&self.current) {
            &mut self.current.as_mut().expect("current").1
        } else {
            &mut self.previous.as_mut().expect("previous").1
        }
    }

    /// The tracker of `instance`, if it is the source's.
    fn known(&mut self, instance: &str) -> Option<&mut MessageTracker> {
        [&mut self.current, &mut self.previous]
            .into_iter()
            .flatten()
            .find(|(known, _)| &**known == instance)
            .map(|(_, tracker)| tracker)
    }
}

/// The mirror reader task of one replica.
pub(crate) struct MirrorReader {
    recorder: Arc<Recorder>,
    /// This replica's name.
    cluster: String,
    /// The source: its name, its chain's feed, and its heartbeat topic's name here.
    source: Source,
    /// `mirror.lost.after.seconds`.
    lost_after: Duration,
    /// `check.metadata.period.seconds` and `check.metadata.timeout.seconds`: how often the
    /// mirror topic's partitions are looked at, and for how long.
    metadata: (Duration, Duration),
    consumer: Arc<StreamConsumer<ClientLog>>,
    state: Mutex<MirrorState>,
    started: Instant,
    throttle: LogThrottle,
}

impl MirrorReader {
    /// The reader of `source`'s heartbeats on the replica `config` configures (`None` for a
    /// cluster that mirrors none, or whose source this instance does not monitor).
    pub(crate) fn new(
        config: &Config,
        recorder: &Arc<Recorder>,
        source: Option<&Source>,
    ) -> Result<Option<Self>, KafkaError> {
        let Some(source) = source else {
            return Ok(None);
        };
        let mut client = client_config(config, Role::Consumer);
        client.set("client.id", "cc-heartbeat-mirror");
        let consumer: Arc<StreamConsumer<ClientLog>> = Arc::new(client.create_with_context(
            ClientLog::for_cluster(config, Role::Consumer, recorder.clone()),
        )?);
        let admin = &config.admin;
        Ok(Some(MirrorReader {
            recorder: recorder.clone(),
            cluster: config.name.clone(),
            source: source.clone(),
            lost_after: admin.mirror_lost_after,
            metadata: (admin.check_metadata_period, admin.check_metadata_timeout),
            consumer,
            state: Mutex::new(MirrorState {
                current: None,
                previous: None,
                positioned: BTreeMap::new(),
                newest_sent: None,
                replicated: 0,
                source_partitions: BTreeMap::new(),
                problem: None,
            }),
            started: Instant::now(),
            throttle: LogThrottle::default(),
        }))
    }

    /// The reader's client, for credentials and tokens given at run time.
    pub(crate) fn client(&self) -> Arc<dyn AnyClient> {
        self.consumer.clone()
    }

    pub(crate) async fn run(self, cancel: CancellationToken) {
        let feed = self.source.feed.subscribe();
        tracing::info!(
            source = %self.source.name,
            topic = %self.source.topic,
            "reading the heartbeats of {} replicated to topic `{}`",
            self.source.name,
            self.source.topic
        );
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = self.follow(feed) => {}
            _ = self.receive() => {}
            _ = self.position() => {}
            _ = self.expire() => {}
        }
        let MirrorReader { consumer, .. } = self;
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    }

    /// Takes what the source's producer sent (and gave up on) as expected here.
    async fn follow(&self, mut feed: tokio::sync::broadcast::Receiver<Beat>) {
        let lost_after = self.lost_after;
        loop {
            match feed.recv().await {
                Ok(Beat::Sent {
                    instance,
                    partition,
                    sequence,
                    sent,
                }) => {
                    let mut state = lock(&self.state);
                    state.source_partitions.insert(partition, Instant::now());
                    let expected = state
                        .positioned
                        .get(&partition)
                        .is_some_and(|positioned| sent >= *positioned);
                    if !expected {
                        continue;
                    }
                    let evicted = state
                        .tracker(&instance, lost_after)
                        .expect(partition, sequence, sent);
                    drop(state);
                    if let Some(evicted) = evicted {
                        self.recorder.record(MirrorDropped::Evicted {
                            partition: evicted.partition,
                        });
                    }
                }
                Ok(Beat::Failed {
                    instance,
                    partition,
                    sequence,
                }) => {
                    if let Some(tracker) = lock(&self.state).known(&instance) {
                        tracker.fail(partition, sequence, Instant::now());
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    self.recorder.record(MirrorDropped::Missed(missed));
                }
                Err(RecvError::Closed) => return std::future::pending().await,
            }
        }
    }

    fn skipped(&self, kind: Skipped) {
        self.recorder.record(MirrorSkipped(kind));
    }

    fn counted(&self, partition: i32, outcome: Outcome) {
        self.recorder.record(MirrorCounted { partition, outcome });
    }

    /// Reads the mirror topic and matches each heartbeat.
    async fn receive(&self) {
        loop {
            let message = match self.consumer.recv().await {
                Ok(message) => message,
                Err(error) => {
                    if let Some(held_back) = self.throttle.admit(&error.to_string()) {
                        tracing::debug!(held_back, "reading the mirror topic failed: {error}");
                    }
                    continue;
                }
            };
            let now = Instant::now();
            let heartbeat = match decode(message.payload()) {
                Decoded::Heartbeat(heartbeat) if !heartbeat.transactional => heartbeat,
                Decoded::Heartbeat(_) => {
                    self.skipped(Skipped::OtherInstance);
                    continue;
                }
                _ => {
                    self.skipped(Skipped::Foreign);
                    continue;
                }
            };
            let observation = lock(&self.state)
                .known(&heartbeat.instance)
                .map(|tracker| tracker.observe(heartbeat.partition, heartbeat.sequence, now));
            let partition = heartbeat.partition;
            match observation {
                None => self.skipped(Skipped::OtherInstance),
                Some(Observation::Unknown) => self.skipped(Skipped::BeforeStart),
                Some(Observation::Duplicate) => self.counted(partition, Outcome::Duplicated),
                Some(Observation::Late) => self.counted(partition, Outcome::Late),
                Some(Observation::Consumed { latency, .. }) => {
                    self.recorder
                        .record(MirrorReplicated { partition, latency });
                    let sent = now.checked_sub(latency).unwrap_or(now);
                    let mut state = lock(&self.state);
                    state.replicated += 1;
                    state.newest_sent =
                        Some(state.newest_sent.map_or(sent, |newest| newest.max(sent)));
                }
            }
        }
    }

    /// Follows the mirror topic's partitions (each metadata period), positioning new ones at
    /// their end; says once when the topic cannot be read, and when its partitions differ
    /// from the source's.
    async fn position(&self) {
        let mut interval = tokio::time::interval(self.metadata.0);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut said_difference = 0;
        loop {
            interval.tick().await;
            let partitions = match self.mirror_partitions().await {
                Ok(partitions) => partitions,
                Err(problem) => {
                    self.set_problem(Some(problem));
                    continue;
                }
            };
            self.set_problem(None);
            let new: Vec<i32> = {
                let state = lock(&self.state);
                partitions
                    .iter()
                    .copied()
                    .filter(|partition| !state.positioned.contains_key(partition))
                    .collect()
            };
            if !new.is_empty() {
                self.assign_at_end(&new).await;
            }
            let difference = self.partition_difference(partitions.len());
            self.recorder.record(MirrorPartitionDifference(difference));
            if difference != said_difference {
                said_difference = difference;
                if difference != 0 {
                    tracing::warn!(
                        source = %self.source.name,
                        "topic `{}` has {} partitions here, {} fewer than {}'s heartbeat topic: \
                         the heartbeats of the partitions it lacks are not matched",
                        self.source.topic,
                        partitions.len(),
                        difference,
                        self.source.name
                    );
                }
            }
        }
    }

    /// The mirror topic's partitions, or why it cannot be read.
    async fn mirror_partitions(&self) -> Result<Vec<i32>, String> {
        let consumer = self.consumer.clone();
        let topic = self.source.topic.clone();
        let timeout = self.metadata.1;
        let answer =
            tokio::task::spawn_blocking(move || consumer.fetch_metadata(Some(&topic), timeout))
                .await
                .map_err(|error| error.to_string())?;
        let metadata = answer
            .map_err(|error| format!("no metadata of topic `{}`: {error}", self.source.topic))?;
        let Some(topic) = metadata
            .topics()
            .iter()
            .find(|topic| topic.name() == self.source.topic)
        else {
            return Err(self.missing_topic());
        };
        if topic.error().is_some() || topic.partitions().is_empty() {
            return Err(self.missing_topic());
        }
        Ok(topic
            .partitions()
            .iter()
            .map(|partition| partition.id())
            .collect())
    }

    fn missing_topic(&self) -> String {
        format!(
            "the mirror topic `{}` does not exist on {} (or may not be described): check \
             mirror.topic ([cluster:{}:admin]); MirrorMaker 2's default replication policy names \
             it `<source alias>.<topic>`, Cluster Linking and IdentityReplicationPolicy keep the \
             source's name",
            self.source.topic, self.cluster, self.cluster
        )
    }

    fn set_problem(&self, problem: Option<String>) {
        let mut state = lock(&self.state);
        if state.problem == problem {
            return;
        }
        match &problem {
            Some(problem) => tracing::warn!(source = %self.source.name, "{problem}"),
            None if state.problem.is_some() => {
                tracing::info!(source = %self.source.name, "the mirror topic `{}` is read again", self.source.topic)
            }
            None => {}
        }
        state.problem = problem;
    }

    /// The source partitions heartbeats went to within the last minute, less those here.
    fn partition_difference(&self, here: usize) -> i64 {
        let state = lock(&self.state);
        let recent = state
            .source_partitions
            .values()
            .filter(|at| at.elapsed() < Duration::from_secs(60))
            .count();
        if recent == 0 {
            0
        } else {
            recent as i64 - here as i64
        }
    }

    /// Assigns `partitions` at their log end offsets, each expected from just before.
    async fn assign_at_end(&self, partitions: &[i32]) {
        let positioned_at = Instant::now();
        let consumer = self.consumer.clone();
        let topic = self.source.topic.clone();
        let timeout = self.metadata.1;
        let all = partitions.to_vec();
        let assigned = tokio::task::spawn_blocking(move || {
            let ends = end_offsets(&consumer, &topic, &all, timeout)?;
            let mut assignment = TopicPartitionList::new();
            let mut positioned = Vec::new();
            for (partition, end) in ends {
                if let Ok(offset) = end {
                    assignment.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
                    positioned.push(partition);
                }
            }
            if !positioned.is_empty() {
                consumer.incremental_assign(&assignment)?;
            }
            Ok::<_, KafkaError>(positioned)
        })
        .await;
        match assigned {
            Ok(Ok(positioned)) => {
                let mut state = lock(&self.state);
                for partition in &positioned {
                    state.positioned.insert(*partition, positioned_at);
                    self.recorder.record(MirrorPositioned {
                        partition: *partition,
                    });
                }
                if !positioned.is_empty() {
                    tracing::info!(source = %self.source.name, partitions = ?positioned, "reading mirror partitions from their end");
                }
            }
            Ok(Err(error)) => {
                if let Some(held_back) = self.throttle.admit("position") {
                    tracing::warn!(
                        held_back,
                        "cannot position on the mirror topic (retrying): {error}"
                    );
                }
            }
            Err(error) => tracing::warn!("cannot position on the mirror topic: {error}"),
        }
    }

    /// Each second: heartbeats past `mirror.lost.after.seconds` are lost; the age of the
    /// newest replicated one, and what the status page and `check` show.
    async fn expire(&self) {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            interval.tick().await;
            let now = Instant::now();
            let (lost, age, problem, replicated) = {
                let mut guard = lock(&self.state);
                let state = &mut *guard;
                let mut lost = Vec::new();
                for (_, tracker) in [&mut state.current, &mut state.previous]
                    .into_iter()
                    .flatten()
                {
                    lost.extend(tracker.expire(now));
                }
                let age = now.saturating_duration_since(state.newest_sent.unwrap_or(self.started));
                (lost, age, state.problem.clone(), state.replicated)
            };
            self.recorder.record(MirrorExpired {
                lost: lost.iter().map(|message| message.partition).collect(),
                age,
                replicated,
                problem,
            });
        }
    }
}
