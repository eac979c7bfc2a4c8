//! Broker throttling, from librdkafka's statistics: the throttle time each broker reported in
//! its answers to one client (produce and fetch quotas, request-rate quotas; on Confluent
//! Cloud, a cluster at its limits), per statistics interval.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rdkafka::Statistics;

use crate::kafka::client::Role;
use crate::metrics::summary::{SummaryFamily, SummaryLabels, Window};
use crate::metrics::Families;

/// Labels of the throttle series: a broker, and the client it throttled.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct ThrottleLabels {
    broker: String,
    client: &'static str,
}

impl SummaryLabels for ThrottleLabels {
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        vec![("broker", self.broker.as_str()), ("client", self.client)]
    }
}

/// The clients whose throttling is reported.
const CLIENTS: [Role; 2] = [Role::Producer, Role::Consumer];

/// How much each broker throttled each client, per statistics interval.
#[derive(Debug, Default)]
pub(crate) struct ThrottleMetrics {
    /// p99 and max throttle time of the last interval in which the broker throttled.
    throttle: SummaryFamily<ThrottleLabels>,
    /// Statistics intervals in which the broker throttled the client.
    throttled_windows: Family<ThrottleLabels, Counter>,
}

impl ThrottleMetrics {
    /// Creates `broker`'s counters at zero for every client. Idempotent.
    pub(crate) fn init_broker(&self, broker: i32) {
        for role in CLIENTS {
            drop(self.throttled_windows.get_or_create(&labels(broker, role)));
        }
    }

    /// Removes every series of `broker` (metadata forgot it).
    pub(crate) fn forget(&self, broker: i32) {
        for role in CLIENTS {
            let labels = labels(broker, role);
            self.throttled_windows.remove(&labels);
            self.throttle.remove(&labels);
        }
    }

    /// Records one statistics report of `role`'s client; returns what throttling it shows,
    /// for a person (`broker 2 throttles the producer by up to 39.6 s`), if any.
    pub(crate) fn record(&self, role: Role, statistics: &Statistics) -> Option<String> {
        let mut throttled = Vec::new();
        for broker in statistics
            .brokers
            .values()
            .filter(|broker| broker.nodeid >= 0)
        {
            self.init_broker(broker.nodeid);
            let labels = labels(broker.nodeid, role);
            // librdkafka reports throttle times in milliseconds, over the interval; a broker
            // that throttled nothing reports an empty window (or zeros after throttling).
            match broker.throttle.as_ref().filter(|window| window.max > 0) {
                Some(window) => {
                    throttled.push(format!(
                        "broker {} throttles the {} by up to {:.1} s",
                        broker.nodeid,
                        role.as_str(),
                        window.max as f64 / 1e3
                    ));
                    self.throttled_windows.get_or_create(&labels).inc();
                    self.throttle.set(
                        labels,
                        Window {
                            quantiles: vec![
                                ("0.99", window.p99 as f64 / 1e3),
                                ("1", window.max as f64 / 1e3),
                            ],
                            sum: window.sum as f64 / 1e3,
                            count: window.cnt.max(0) as u64,
                        },
                    );
                }
                None => self.throttle.remove(&labels),
            }
        }
        (!throttled.is_empty()).then(|| throttled.join(", "))
    }
}

fn labels(broker: i32, role: Role) -> ThrottleLabels {
    ThrottleLabels {
        broker: broker.to_string(),
        client: role.as_str(),
    }
}

impl Families for ThrottleMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "client_throttled_windows",
            "Statistics intervals in which the broker throttled the client (a quota, or on Confluent Cloud the cluster's limits)",
            self.throttled_windows.clone(),
        );
    }

    fn encode_summaries(&self, out: &mut String, cluster: &str) {
        self.throttle.encode(
            out,
            "client_broker_throttle",
            "Throttle time the broker asked of the client in the last statistics interval in which it throttled: p99 and max (quantile 1), with the sum and count of that interval's throttled answers",
            cluster,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::stats::test_statistics::{broker, statistics};

    #[test]
    fn a_throttling_broker_counts_a_window_and_a_quiet_one_clears_its_quantiles() {
        let metrics = ThrottleMetrics::default();
        metrics.init_broker(2);
        let report = statistics(&format!(
            "{},{}",
            broker("a:1/1", 1, "a:1", 0),
            broker("b:2/2", 2, "b:2", 800)
        ));
        metrics.record(Role::Consumer, &report);
        let throttled = labels(2, Role::Consumer);
        assert_eq!(metrics.throttled_windows.get_or_create(&throttled).get(), 1);
        assert_eq!(
            metrics
                .throttled_windows
                .get_or_create(&labels(2, Role::Producer))
                .get(),
            0,
            "another client's series stays at zero"
        );
        assert_eq!(
            metrics
                .throttled_windows
                .get_or_create(&labels(1, Role::Consumer))
                .get(),
            0
        );
        let window = metrics.throttle.get(&throttled).unwrap();
        assert_eq!(window.quantiles, vec![("0.99", 0.4), ("1", 0.8)]);
        assert!(metrics.throttle.get(&labels(1, Role::Consumer)).is_none());
        metrics.record(Role::Consumer, &statistics(&broker("b:2/2", 2, "b:2", 0)));
        assert!(metrics.throttle.get(&throttled).is_none());
        assert_eq!(metrics.throttled_windows.get_or_create(&throttled).get(), 1);
        metrics.forget(2);
        assert!(metrics.throttle.get(&throttled).is_none());
    }
}
