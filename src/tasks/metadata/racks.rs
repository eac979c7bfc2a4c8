//! Broker racks, from DescribeCluster, looked up beside the metadata refresh (never delaying
//! it): the Metadata API librdkafka exposes has no rack, and some clusters do not serve
//! DescribeCluster.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::kafka::client::is_authorization_failure;
use crate::kafka::handle::AnyClient;
use crate::kafka::native_admin::describe_cluster;
use crate::recorder::permissions::{Allowed, Operation, Refused, Resource, Right};
use crate::recorder::Recorder;
use crate::sync::lock;

/// How often racks are asked again while the cluster answers DescribeCluster (and sooner when
/// brokers change), and how long to wait before asking a cluster that did not answer.
const RACKS_REFRESH: Duration = Duration::from_secs(3600);
const RACKS_RETRY: Duration = Duration::from_secs(600);

#[derive(Debug)]
struct RackLookup {
    racks: BTreeMap<i32, String>,
    next_due: Instant,
    in_flight: bool,
}

/// The racks known so far, and when to ask again.
#[derive(Debug, Clone)]
pub(super) struct Racks(Arc<Mutex<RackLookup>>);

impl Racks {
    pub(super) fn new() -> Self {
        Racks(Arc::new(Mutex::new(RackLookup {
            racks: BTreeMap::new(),
            next_due: Instant::now(),
            in_flight: false,
        })))
    }

    /// The rack of each broker whose rack is known.
    pub(super) fn known(&self) -> BTreeMap<i32, String> {
        lock(&self.0).racks.clone()
    }

    /// Starts a DescribeCluster lookup on a blocking thread when one is due (at once when
    /// `brokers_changed`), bounded by `timeout`; when it finds other racks than known, it asks
    /// for a metadata refresh (`refresh_now`), which applies them.
    pub(super) fn look_up(
        &self,
        client: &Arc<dyn AnyClient>,
        (recorder, refresh_now): (&Arc<Recorder>, &Arc<Notify>),
        timeout: Duration,
        brokers_changed: bool,
    ) {
        let now = Instant::now();
        {
            let mut lookup = lock(&self.0);
            if brokers_changed {
                lookup.next_due = now;
            }
            if lookup.in_flight || now < lookup.next_due {
                return;
            }
            lookup.in_flight = true;
        }
        let client = client.clone();
        let racks = self.0.clone();
        let (recorder, refresh_now) = (recorder.clone(), refresh_now.clone());
        tokio::task::spawn_blocking(move || {
            let result = describe_cluster(client.requests(), timeout);
            let describe = Right::new(Operation::Describe, Resource::Cluster);
            match &result {
                Ok(_) => recorder.record(Allowed(describe)),
                Err(error) if is_authorization_failure(error.code()) => recorder.record(
                    Refused::new(describe, "the brokers' racks cannot be read", error),
                ),
                Err(_) => {}
            }
            let mut lookup = lock(&racks);
            lookup.in_flight = false;
            match result {
                Ok(description) => {
                    let found: BTreeMap<i32, String> = description
                        .nodes
                        .into_iter()
                        .filter_map(|node| node.rack.map(|rack| (node.id, rack)))
                        .collect();
                    lookup.next_due = Instant::now() + RACKS_REFRESH;
                    if found != lookup.racks {
                        lookup.racks = found;
                        refresh_now.notify_one();
                    }
                }
                Err(error) => {
                    lookup.next_due = Instant::now() + RACKS_RETRY;
                    tracing::debug!("broker racks unknown (DescribeCluster): {error}");
                }
            }
        });
    }
}
