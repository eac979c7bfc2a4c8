//! Broker throttling, from librdkafka's statistics: the throttle time each broker reported in
//! its answers to one client (produce and fetch quotas, request-rate quotas; on Confluent
//! Cloud, a cluster at its limits), per statistics interval.

use std::collections::HashMap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rdkafka::Statistics;

use super::client::Role;
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

/// A coordinator's broker id, from a client's statistics: librdkafka lists the group's
/// (`GroupCoordinator`) and the transactions' (`TxnCoordinator`) as logical brokers without an
/// id, connected to the same address as a real one.
pub(crate) fn logical_coordinator(statistics: &Statistics, name: &str) -> Option<i32> {
    let by_name: HashMap<&str, i32> = statistics
        .brokers
        .values()
        .filter(|broker| broker.nodeid >= 0)
        .map(|broker| (broker.nodename.as_str(), broker.nodeid))
        .collect();
    statistics
        .brokers
        .values()
        .find(|broker| broker.name == name && !broker.nodename.is_empty())
        .and_then(|coordinator| by_name.get(coordinator.nodename.as_str()).copied())
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

    fn statistics(brokers: &str) -> Statistics {
        let json = format!(
            r#"{{"name":"c","client_id":"c","type":"consumer","ts":1,"time":1,"age":1,"replyq":0,
            "msg_cnt":0,"msg_size":0,"msg_max":0,"msg_size_max":0,"simple_cnt":0,
            "metadata_cache_cnt":0,"brokers":{{{brokers}}},"topics":{{}},"tx":0,"tx_bytes":0,
            "rx":0,"rx_bytes":0,"txmsgs":0,"txmsg_bytes":0,"rxmsgs":0,"rxmsg_bytes":0}}"#
        );
        serde_json::from_str(&json).unwrap()
    }

    fn broker(name: &str, id: i32, nodename: &str, throttle_max: i64) -> String {
        let window = format!(
            r#"{{"min":0,"max":{throttle_max},"avg":0,"sum":{},"stddev":0,"p50":0,"p75":0,"p90":0,"p95":0,"p99":{},"p99_99":0,"outofrange":0,"hdrsize":0,"cnt":{}}}"#,
            throttle_max * 2,
            throttle_max / 2,
            if throttle_max > 0 { 2 } else { 0 }
        );
        format!(
            r#""{name}":{{"name":"{name}","nodeid":{id},"nodename":"{nodename}","source":"learned","state":"UP","stateage":1,
            "outbuf_cnt":0,"outbuf_msg_cnt":0,"waitresp_cnt":0,"waitresp_msg_cnt":0,"tx":0,"txbytes":0,
            "txerrs":0,"txretries":0,"txidle":0,"req_timeouts":0,"rx":0,"rxbytes":0,"rxerrs":0,"rxcorriderrs":0,"rxidle":0,
            "rxpartial":0,"zbuf_grow":0,"buf_grow":0,"wakeups":0,"req":{{}},"throttle":{window},"toppars":{{}}}}"#
        )
    }

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

    #[test]
    fn the_coordinator_is_the_broker_at_the_logical_brokers_address() {
        let report = statistics(&format!(
            "{},{},{}",
            broker("a:1/1", 1, "a:1", 0),
            broker("b:2/2", 2, "b:2", 0),
            broker("GroupCoordinator", -1, "b:2", 0)
        ));
        assert_eq!(logical_coordinator(&report, "GroupCoordinator"), Some(2));
        let unknown = statistics(&format!(
            "{},{}",
            broker("a:1/1", 1, "a:1", 0),
            broker("GroupCoordinator", -1, "", 0)
        ));
        assert_eq!(logical_coordinator(&unknown, "GroupCoordinator"), None);
    }
}
