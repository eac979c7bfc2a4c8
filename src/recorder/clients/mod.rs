//! What the clients said of themselves, recorded: their errors (readiness causes, the
//! authentication failures), and from their statistics each broker as the producer sees it and
//! how much each broker throttles each client.
//!
//! - `stats`: the producer client's own view of each broker;
//! - `throttle`: how much each broker throttles each client.

mod stats;
mod throttle;

use std::sync::Arc;
use std::time::Instant;

use rdkafka::Statistics;

use self::stats::{ClientBrokerMetrics, ClientStatsRecorder};
use self::throttle::ThrottleMetrics;
use crate::cluster::ClusterSnapshot;
use crate::kafka::client::{ClientError, Role};
use crate::metrics::Families;
use crate::recorder::stores::Stores;

/// One statistics report of `role`'s client.
#[derive(Debug)]
pub(crate) struct ClientStatistics {
    pub(crate) role: Role,
    pub(crate) statistics: Statistics,
}

/// A new metadata view: the brokers it lists get their series, those it forgot lose them.
#[derive(Debug)]
pub(crate) struct ClientBrokersFollowed {
    pub(crate) previous: Arc<ClusterSnapshot>,
    pub(crate) snapshot: Arc<ClusterSnapshot>,
}

/// The clients' part of the record.
#[derive(Default)]
pub(super) struct Clients {
    brokers: Arc<ClientBrokerMetrics>,
    stats: ClientStatsRecorder,
    throttle: Arc<ThrottleMetrics>,
}

impl Clients {
    /// The throttling families, and the producer's view of each broker.
    pub(super) fn families(&self) -> [Arc<dyn Families>; 2] {
        [self.throttle.clone(), self.brokers.clone()]
    }

    /// The producer's report feeds its view of each broker (the consumer's long-polling
    /// fetches would inflate the round-trip times); both feed the throttling, of which the
    /// last seen, with its time, stays in the cluster's status: a quiet report after it does
    /// not undo that the connection was held back just now.
    pub(super) fn statistics(&self, stores: &Stores<'_>, report: ClientStatistics) {
        let ClientStatistics { role, statistics } = report;
        if role == Role::Producer {
            self.stats.record(&statistics, &self.brokers);
        }
        let Some(what) = self.throttle.record(role, &statistics) else {
            return;
        };
        let mut status = stores.status.lock();
        let slot = match role {
            Role::Consumer => &mut status.consumer_throttled,
            _ => &mut status.producer_throttled,
        };
        *slot = Some((what, Instant::now()));
    }

    pub(super) fn followed(&self, _stores: &Stores<'_>, followed: ClientBrokersFollowed) {
        let ClientBrokersFollowed { previous, snapshot } = followed;
        for id in snapshot.brokers.keys() {
            self.throttle.init_broker(*id);
        }
        for id in previous.brokers.keys() {
            if !snapshot.brokers.contains_key(id) {
                self.brokers.forget(&id.to_string());
                self.stats.forget(*id);
                self.throttle.forget(*id);
            }
        }
    }

    /// An error librdkafka reported on a client: the latest is a readiness cause while the
    /// cluster does not answer.
    pub(super) fn error(&self, stores: &Stores<'_>, error: ClientError) {
        let mut facts = stores.status.lock();
        // "All brokers are down" follows the specific failure (TLS, SASL) that caused it;
        // keep the specific one.
        if !error.all_brokers_down || facts.client_error.is_none() {
            facts.client_error = Some(format!("{} client: {}", error.role.as_str(), error.reason));
        }
        if error.authentication {
            facts.authentication_error = Some(error.reason);
            facts.authentication_failures += 1;
        }
    }
}
