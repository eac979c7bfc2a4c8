//! What a metadata request returns, and the pure rules that turn it, with the previous view,
//! into the next [`ClusterSnapshot`] and the list of what changed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::cluster::{Broker, ClusterSnapshot, Partition, CONTROLLER_STABLE_REFRESHES};
use crate::kafka::handle::Requests;
use crate::recorder::metadata::change::Change;

/// What one metadata request returned, before comparison with the previous view.
#[derive(Debug, Clone, Default)]
pub(crate) struct MetadataResponse {
    pub(crate) cluster_id: Option<String>,
    pub(crate) controller_id: Option<i32>,
    pub(crate) brokers: Vec<(i32, String, u16)>,
    pub(crate) partitions: Vec<Partition>,
    pub(crate) topic_error: Option<RDKafkaErrorCode>,
}

/// Requests metadata for `topic` (and the brokers) with `client`. Blocking: run it on a
/// blocking thread.
pub(crate) fn fetch_metadata(
    client: &dyn Requests,
    topic: &str,
    timeout: Duration,
) -> Result<MetadataResponse, KafkaError> {
    let metadata = client.fetch_metadata(Some(topic), timeout)?;
    let brokers = metadata
        .brokers()
        .iter()
        .map(|broker| {
            let port = u16::try_from(broker.port()).unwrap_or_default();
            (broker.id(), broker.host().to_string(), port)
        })
        .collect();
    let mut partitions = Vec::new();
    let mut topic_error = None;
    for found in metadata
        .topics()
        .iter()
        .filter(|found| found.name() == topic)
    {
        if let Some(error) = found.error() {
            topic_error = Some(RDKafkaErrorCode::from(error));
        }
        for partition in found.partitions() {
            let leader = partition.leader();
            partitions.push(Partition {
                id: partition.id(),
                replicas: partition.replicas().to_vec(),
                leader: (leader >= 0).then_some(leader),
            });
        }
    }
    // Both answer from the metadata just fetched (librdkafka caches them).
    let cluster_id = client.fetch_cluster_id(Duration::from_millis(100));
    // SAFETY: the handle is valid for the client's lifetime; the call only reads its cache.
    let controller = unsafe { rdkafka::bindings::rd_kafka_controllerid(client.native_ptr(), 100) };
    Ok(MetadataResponse {
        cluster_id,
        controller_id: (controller >= 0).then_some(controller),
        brokers,
        partitions,
        topic_error,
    })
}

/// Builds the next view from the previous one and a response, listing what changed.
/// Pure, so the change rules are tested without a broker.
pub(crate) fn next_snapshot(
    previous: &ClusterSnapshot,
    response: MetadataResponse,
    racks: &BTreeMap<i32, String>,
    now: Instant,
    missing_retention: Duration,
) -> (ClusterSnapshot, Vec<Change>) {
    let mut changes = Vec::new();
    if let (Some(from), Some(to)) = (&previous.cluster_id, &response.cluster_id) {
        if from != to {
            changes.push(Change::ClusterIdChanged {
                from: from.clone(),
                to: to.clone(),
            });
        }
    }
    // Controller moves are not counted: KRaft clusters (Confluent Cloud among them) answer
    // Metadata with a random live broker as "controller", so it changes at every refresh.
    // The id is taken for the active controller only once it has held still long enough.
    let named_controller = response.controller_id;
    let controller_streak = match named_controller {
        Some(_) if named_controller == previous.named_controller => {
            previous.controller_streak.saturating_add(1)
        }
        Some(_) => 1,
        None => 0,
    };
    let brokers = next_brokers(
        previous,
        response.brokers,
        racks,
        now,
        missing_retention,
        &mut changes,
    );
    let partitions = next_partitions(previous, response.partitions, &mut changes);
    let listed = brokers
        .values()
        .filter(|broker| broker.missing_since.is_none())
        .count();
    let controller_id = named_controller.filter(|id| {
        controller_streak >= CONTROLLER_STABLE_REFRESHES
            && listed >= 2
            && brokers
                .get(id)
                .is_some_and(|broker| broker.missing_since.is_none())
    });
    let snapshot = ClusterSnapshot {
        cluster_id: response.cluster_id.or_else(|| previous.cluster_id.clone()),
        controller_id,
        named_controller,
        controller_streak,
        brokers,
        partitions,
        topic_error: response.topic_error,
        refreshed_at: Some(now),
    };
    (snapshot, changes)
}

/// The brokers of the next view: those listed, and those missing within the retention.
fn next_brokers(
    previous: &ClusterSnapshot,
    listed: Vec<(i32, String, u16)>,
    racks: &BTreeMap<i32, String>,
    now: Instant,
    missing_retention: Duration,
    changes: &mut Vec<Change>,
) -> BTreeMap<i32, Broker> {
    let first = previous.refreshed_at.is_none();
    let mut brokers = BTreeMap::new();
    for (id, host, port) in listed {
        let rack = racks.get(&id).cloned();
        let broker = Broker {
            id,
            host,
            port,
            rack,
            missing_since: None,
        };
        match previous.brokers.get(&id) {
            None if !first => changes.push(Change::BrokerAdded(broker.clone())),
            None => {}
            Some(old) if old.host != broker.host || old.port != broker.port => {
                changes.push(Change::BrokerAddressChanged {
                    from: old.clone(),
                    to: broker.clone(),
                })
            }
            Some(old) if old.missing_since.is_some() => {
                changes.push(Change::BrokerReturned(broker.clone()))
            }
            Some(_) => {}
        }
        brokers.insert(id, broker);
    }
    for (id, old) in &previous.brokers {
        if brokers.contains_key(id) {
            continue;
        }
        match old.missing_since {
            None => {
                let mut missing = old.clone();
                missing.missing_since = Some(now);
                changes.push(Change::BrokerRemoved(old.clone()));
                brokers.insert(*id, missing);
            }
            Some(since) if now.saturating_duration_since(since) >= missing_retention => {
                changes.push(Change::BrokerForgotten(old.clone()));
            }
            Some(_) => {
                brokers.insert(*id, old.clone());
            }
        }
    }
    brokers
}

/// The heartbeat topic's partitions of the next view; growth and leader moves are changes.
fn next_partitions(
    previous: &ClusterSnapshot,
    listed: Vec<Partition>,
    changes: &mut Vec<Change>,
) -> BTreeMap<i32, Partition> {
    let partitions: BTreeMap<i32, Partition> = listed
        .into_iter()
        .map(|partition| (partition.id, partition))
        .collect();
    if !previous.partitions.is_empty() && partitions.len() > previous.partitions.len() {
        changes.push(Change::PartitionsAdded {
            from: previous.partitions.len(),
            to: partitions.len(),
        });
    }
    for (id, partition) in &partitions {
        if let Some(old) = previous.partitions.get(id) {
            if old.leader != partition.leader {
                changes.push(Change::LeaderChanged {
                    partition: *id,
                    from: old.leader,
                    to: partition.leader,
                });
            }
        }
    }
    partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(brokers: &[(i32, &str)], leaders: &[Option<i32>]) -> MetadataResponse {
        MetadataResponse {
            cluster_id: Some("c1".to_string()),
            controller_id: Some(1),
            brokers: brokers
                .iter()
                .map(|(id, host)| (*id, host.to_string(), 9092))
                .collect(),
            partitions: leaders
                .iter()
                .enumerate()
                .map(|(id, leader)| Partition {
                    id: id as i32,
                    replicas: vec![1],
                    leader: *leader,
                })
                .collect(),
            topic_error: None,
        }
    }

    #[test]
    fn a_controller_is_known_only_once_it_held_still_and_a_random_one_never() {
        let brokers = [(1, "a"), (2, "b"), (3, "c")];
        let refresh = |previous: &ClusterSnapshot, controller: i32| {
            let mut answer = response(&brokers, &[Some(1)]);
            answer.controller_id = Some(controller);
            next_snapshot(
                previous,
                answer,
                &BTreeMap::new(),
                Instant::now(),
                Duration::from_secs(60),
            )
        };
        // A ZooKeeper-based cluster names its active controller, every time.
        let mut view = ClusterSnapshot::default();
        for count in 1..=CONTROLLER_STABLE_REFRESHES {
            let (next, changes) = refresh(&view, 2);
            assert!(changes
                .iter()
                .all(|change| change.kind() != "leader_changed"));
            view = next;
            let expected = (count >= CONTROLLER_STABLE_REFRESHES).then_some(2);
            assert_eq!(view.controller_id, expected, "after {count} refreshes");
        }
        // A move restarts the count: unknown until the new one has held still too.
        let (view, _) = refresh(&view, 3);
        assert_eq!(view.controller_id, None);
        assert_eq!(view.named_controller, Some(3));
        // KRaft names a random live broker each time: never taken, never a change.
        let mut view = ClusterSnapshot::default();
        for count in 0..200 {
            let (next, changes) = refresh(&view, [1, 2, 3, 2, 1][count % 5]);
            assert!(changes.is_empty() || count == 0, "{changes:?}");
            view = next;
            assert_eq!(view.controller_id, None);
        }
        // One broker alone cannot tell the two apart: unknown.
        let mut view = ClusterSnapshot::default();
        for _ in 0..=CONTROLLER_STABLE_REFRESHES {
            let mut answer = response(&[(1, "a")], &[Some(1)]);
            answer.controller_id = Some(1);
            view = next_snapshot(
                &view,
                answer,
                &BTreeMap::new(),
                Instant::now(),
                Duration::from_secs(60),
            )
            .0;
        }
        assert_eq!(view.controller_id, None);
    }

    fn kinds(changes: &[Change]) -> Vec<&'static str> {
        changes.iter().map(Change::kind).collect()
    }

    #[test]
    fn first_view_has_no_changes() {
        let now = Instant::now();
        let (snapshot, changes) = next_snapshot(
            &ClusterSnapshot::default(),
            response(&[(1, "a"), (2, "b")], &[Some(1), Some(2)]),
            &BTreeMap::new(),
            now,
            Duration::from_secs(3600),
        );
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(snapshot.listed_brokers().count(), 2);
        assert_eq!(snapshot.leader_of(1), 2);
        assert_eq!(snapshot.cluster_id_label(), "c1");
    }

    #[test]
    fn vanished_broker_is_missing_until_retention_ends() {
        let retention = Duration::from_secs(60);
        let start = Instant::now();
        let (first, _) = next_snapshot(
            &ClusterSnapshot::default(),
            response(&[(1, "a"), (2, "b")], &[Some(1), Some(2)]),
            &BTreeMap::new(),
            start,
            retention,
        );
        let (second, changes) = next_snapshot(
            &first,
            response(&[(1, "a")], &[Some(1), Some(1)]),
            &BTreeMap::new(),
            start,
            retention,
        );
        assert_eq!(kinds(&changes), vec!["broker_removed", "leader_changed"]);
        assert!(second.brokers[&2].missing_since.is_some());
        assert_eq!(second.listed_brokers().count(), 1);

        let (third, changes) = next_snapshot(
            &second,
            response(&[(1, "a")], &[Some(1), Some(1)]),
            &BTreeMap::new(),
            start + Duration::from_secs(30),
            retention,
        );
        assert!(changes.is_empty());
        assert!(
            third.brokers.contains_key(&2),
            "still reported within the retention"
        );

        let (fourth, changes) = next_snapshot(
            &third,
            response(&[(1, "a")], &[Some(1), Some(1)]),
            &BTreeMap::new(),
            start + retention,
            retention,
        );
        assert_eq!(kinds(&changes), vec!["broker_forgotten"]);
        assert!(!fourth.brokers.contains_key(&2));
    }

    #[test]
    fn returning_moved_and_added_brokers_are_changes() {
        let retention = Duration::from_secs(60);
        let now = Instant::now();
        let (first, _) = next_snapshot(
            &ClusterSnapshot::default(),
            response(&[(1, "a"), (2, "b")], &[Some(1)]),
            &BTreeMap::new(),
            now,
            retention,
        );
        let (second, _) = next_snapshot(
            &first,
            response(&[(1, "a")], &[Some(1)]),
            &BTreeMap::new(),
            now,
            retention,
        );
        let (_, changes) = next_snapshot(
            &second,
            response(&[(1, "moved"), (2, "b"), (3, "c")], &[Some(1), Some(3)]),
            &BTreeMap::new(),
            now,
            retention,
        );
        assert_eq!(
            kinds(&changes),
            vec![
                "broker_address_changed",
                "broker_returned",
                "broker_added",
                "partitions_added"
            ]
        );
    }

    #[test]
    fn racks_come_from_the_lookup() {
        let racks = BTreeMap::from([(1, "eu-west-1a".to_string())]);
        let (snapshot, changes) = next_snapshot(
            &ClusterSnapshot::default(),
            response(&[(1, "a"), (2, "b")], &[Some(1)]),
            &racks,
            Instant::now(),
            Duration::from_secs(60),
        );
        assert!(changes.is_empty());
        assert_eq!(snapshot.brokers[&1].rack.as_deref(), Some("eu-west-1a"));
        assert_eq!(snapshot.brokers[&2].rack, None);
    }
}
