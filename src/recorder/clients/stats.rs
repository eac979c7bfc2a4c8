//! The producer client's own view of each broker, recorded from librdkafka's statistics
//! (`statistics.interval.ms`): connection state, connects, disconnects, request timeouts and
//! round-trip time quantiles. The producer's round-trip time is used, not the consumer's,
//! whose fetch requests long-poll and so inflate it.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rdkafka::Statistics;

use crate::metrics::labels::BrokerLabels;
use crate::metrics::summary::{SummaryFamily, Window};
use crate::metrics::Families;
use crate::sync::lock;

/// Labels of `heartbeat_client_broker_state`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BrokerStateLabels {
    broker: String,
    state: String,
}

/// The metric families fed from statistics.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClientBrokerMetrics {
    state: Family<BrokerStateLabels, Gauge>,
    connects: Family<BrokerLabels, Counter>,
    disconnects: Family<BrokerLabels, Counter>,
    request_timeouts: Family<BrokerLabels, Counter>,
    rtt: SummaryFamily<BrokerLabels>,
}

/// What the last statistics said of one broker, to turn totals into increments.
#[derive(Debug, Default, Clone)]
struct Seen {
    state: String,
    connects: u64,
    disconnects: u64,
    request_timeouts: u64,
}

/// Turns successive statistics into metrics.
#[derive(Debug, Default)]
pub(crate) struct ClientStatsRecorder {
    seen: Mutex<HashMap<i32, Seen>>,
}

impl ClientBrokerMetrics {
    /// librdkafka's broker states (`rd_kafka_broker_state_names`).
    const STATES: [&'static str; 10] = [
        "INIT",
        "DOWN",
        "TRY_CONNECT",
        "CONNECT",
        "SSL_HANDSHAKE",
        "AUTH_LEGACY",
        "UP",
        "UPDATE",
        "APIVERSION_QUERY",
        "AUTH_HANDSHAKE",
    ];

    /// Removes every series of `broker`.
    pub(crate) fn forget(&self, broker: &str) {
        for state in Self::STATES {
            self.state.remove(&BrokerStateLabels {
                broker: broker.to_string(),
                state: state.to_string(),
            });
        }
        let labels = BrokerLabels {
            broker: broker.to_string(),
        };
        self.connects.remove(&labels);
        self.disconnects.remove(&labels);
        self.request_timeouts.remove(&labels);
        self.rtt.remove(&labels);
    }
}

impl ClientStatsRecorder {
    /// Forgets what was seen of `broker` (metadata forgot it).
    pub(crate) fn forget(&self, broker: i32) {
        lock(&self.seen).remove(&broker);
    }

    /// Records one statistics report.
    pub(crate) fn record(&self, statistics: &Statistics, metrics: &ClientBrokerMetrics) {
        let mut seen = lock(&self.seen);
        // A broker that left metadata leaves librdkafka's statistics too, and comes back with
        // its totals restarted: its state is no longer known, and the connection it lost
        // while gone is counted here, where librdkafka's report never shows it.
        let reported: Vec<i32> = statistics
            .brokers
            .values()
            .map(|broker| broker.nodeid)
            .collect();
        for (id, last) in seen.iter_mut() {
            if reported.contains(id) || last.state.is_empty() {
                continue;
            }
            let labels = BrokerLabels::new(id);
            metrics.state.remove(&BrokerStateLabels {
                broker: labels.broker.clone(),
                state: last.state.clone(),
            });
            metrics.rtt.remove(&labels);
            if last.state == "UP" {
                metrics.disconnects.get_or_create(&labels).inc();
            }
            *last = Seen::default();
        }
        // Bootstrap (-1) and internal entries are not brokers of the cluster.
        for broker in statistics
            .brokers
            .values()
            .filter(|broker| broker.nodeid >= 0)
        {
            let id = broker.nodeid.to_string();
            let labels = BrokerLabels { broker: id.clone() };
            let last = seen.entry(broker.nodeid).or_default();
            if last.state != broker.state {
                metrics.state.remove(&BrokerStateLabels {
                    broker: id.clone(),
                    state: last.state.clone(),
                });
                last.state = broker.state.clone();
            }
            metrics
                .state
                .get_or_create(&BrokerStateLabels {
                    broker: id.clone(),
                    state: broker.state.clone(),
                })
                .set(1);
            let connects = broker.connects.unwrap_or_default().max(0) as u64;
            let disconnects = broker.disconnects.unwrap_or_default().max(0) as u64;
            add_increase(&metrics.connects, &labels, &mut last.connects, connects);
            add_increase(
                &metrics.disconnects,
                &labels,
                &mut last.disconnects,
                disconnects,
            );
            add_increase(
                &metrics.request_timeouts,
                &labels,
                &mut last.request_timeouts,
                broker.req_timeouts,
            );
            // An empty window (no request answered in the interval) removes the series
            // rather than leaving the last healthy value standing.
            let labels = BrokerLabels::new(&id);
            match broker.rtt.as_ref().filter(|window| window.cnt > 0) {
                Some(window) => metrics.rtt.set(
                    labels,
                    Window {
                        quantiles: vec![
                            ("0.5", window.p50 as f64 / 1e6),
                            ("0.99", window.p99 as f64 / 1e6),
                        ],
                        sum: window.sum as f64 / 1e6,
                        count: window.cnt.max(0) as u64,
                    },
                ),
                None => metrics.rtt.remove(&labels),
            }
        }
    }
}

impl Families for ClientBrokerMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "client_broker_state",
            "1 for the producer client's current connection state of each broker (librdkafka: INIT, DOWN, CONNECT, AUTH, APIVERSION_QUERY, AUTH_HANDSHAKE, UP, UPDATE)",
            self.state.clone(),
        );
        registry.register(
            "client_broker_connects",
            "Connections the producer client opened to each broker",
            self.connects.clone(),
        );
        registry.register(
            "client_broker_disconnects",
            "Connections to each broker the producer client lost",
            self.disconnects.clone(),
        );
        registry.register(
            "client_broker_request_timeouts",
            "Requests of the producer client to each broker that timed out",
            self.request_timeouts.clone(),
        );
    }

    fn encode_summaries(&self, out: &mut String, cluster: &str) {
        self.rtt.encode(
            out,
            "client_broker_rtt",
            "Producer request round-trip time per broker over the last statistics interval: quantiles, sum and count of that window",
            cluster,
        );
    }
}

/// Adds to `counter` what a librdkafka total grew by since `last` (all of it if the total
/// restarted, as with a new client).
fn add_increase(
    counter: &Family<BrokerLabels, Counter>,
    labels: &BrokerLabels,
    last: &mut u64,
    total: u64,
) {
    let increase = if total >= *last { total - *last } else { total };
    counter.get_or_create(labels).inc_by(increase);
    *last = total;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statistics(json: &str) -> Statistics {
        serde_json::from_str(json).unwrap()
    }

    fn report(state: &str, connects: i64, rtt_p50: i64) -> String {
        let broker = format!(
            r#""localhost:9092/1": {{"name":"localhost:9092/1","nodeid":1,"nodename":"localhost:9092","source":"learned","state":"{state}","stateage":1,"outbuf_cnt":0,"outbuf_msg_cnt":0,"waitresp_cnt":0,"waitresp_msg_cnt":0,"tx":1,"txbytes":1,"txerrs":0,"txretries":0,"txidle":0,"req_timeouts":2,"rx":1,"rxbytes":1,"rxerrs":0,"rxcorriderrs":0,"rxpartial":0,"rxidle":0,"req":{{}},"zbuf_grow":0,"buf_grow":0,"connects":{connects},"disconnects":0,"rtt":{{"min":1,"max":1,"avg":1,"sum":1,"cnt":3,"stddev":0,"hdrsize":0,"p50":{rtt_p50},"p75":1,"p90":1,"p95":1,"p99":9000,"p99_99":1,"outofrange":0}},"toppars":{{}}}}"#
        );
        let bootstrap = r#""b:9092/bootstrap": {"name":"b:9092/bootstrap","nodeid":-1,"nodename":"b:9092","source":"configured","state":"INIT","stateage":1,"outbuf_cnt":0,"outbuf_msg_cnt":0,"waitresp_cnt":0,"waitresp_msg_cnt":0,"tx":0,"txbytes":0,"txerrs":0,"txretries":0,"txidle":0,"req_timeouts":0,"rx":0,"rxbytes":0,"rxerrs":0,"rxcorriderrs":0,"rxpartial":0,"rxidle":0,"req":{},"zbuf_grow":0,"buf_grow":0,"toppars":{}}"#;
        format!(
            r#"{{"name":"p","client_id":"c","type":"producer","ts":1,"time":1,"age":1,"replyq":0,"msg_cnt":0,"msg_size":0,"msg_max":0,"msg_size_max":0,"simple_cnt":0,"metadata_cache_cnt":0,"tx":0,"tx_bytes":0,"rx":0,"rx_bytes":0,"txmsgs":0,"txmsg_bytes":0,"rxmsgs":0,"rxmsg_bytes":0,"brokers":{{{broker},{bootstrap}}},"topics":{{}}}}"#
        )
    }

    #[test]
    fn totals_become_counters_and_states_switch() {
        let recorder = ClientStatsRecorder::default();
        let metrics = ClientBrokerMetrics::default();
        recorder.record(&statistics(&report("UP", 2, 1500)), &metrics);
        recorder.record(&statistics(&report("DOWN", 5, 1500)), &metrics);
        let labels = BrokerLabels { broker: "1".into() };
        assert_eq!(metrics.connects.get_or_create(&labels).get(), 5);
        assert_eq!(metrics.request_timeouts.get_or_create(&labels).get(), 2);
        let up = BrokerStateLabels {
            broker: "1".into(),
            state: "UP".into(),
        };
        let down = BrokerStateLabels {
            broker: "1".into(),
            state: "DOWN".into(),
        };
        assert!(
            metrics.state.get(&up).is_none(),
            "only the current state is exported"
        );
        assert_eq!(metrics.state.get_or_create(&down).get(), 1);
        let rtt = metrics.rtt.get(&BrokerLabels::new(1)).unwrap();
        assert!((rtt.quantiles[0].1 - 0.0015).abs() < 1e-12);
        assert_eq!(rtt.count, 3);
        assert!(metrics
            .connects
            .get(&BrokerLabels {
                broker: "-1".into()
            })
            .is_none());
        // A new client starts its totals again: they are added, never subtracted.
        recorder.record(&statistics(&report("UP", 1, 1500)), &metrics);
        assert_eq!(metrics.connects.get_or_create(&labels).get(), 6);
    }

    #[test]
    fn a_broker_gone_from_the_statistics_is_not_shown_up_and_its_loss_counts() {
        let recorder = ClientStatsRecorder::default();
        let metrics = ClientBrokerMetrics::default();
        recorder.record(&statistics(&report("UP", 1, 1500)), &metrics);
        // Broker 1 left the statistics (it left metadata): only the bootstrap entry is left.
        let gone = report("UP", 1, 1500).replace("\"nodeid\":1", "\"nodeid\":-1");
        recorder.record(&statistics(&gone), &metrics);
        let labels = BrokerLabels { broker: "1".into() };
        let up = BrokerStateLabels {
            broker: "1".into(),
            state: "UP".into(),
        };
        assert!(metrics.state.get(&up).is_none(), "not shown UP while gone");
        assert_eq!(metrics.disconnects.get_or_create(&labels).get(), 1);
        // Back, its totals restarted at one connect: the reconnect counts.
        recorder.record(&statistics(&report("UP", 1, 1500)), &metrics);
        assert_eq!(metrics.connects.get_or_create(&labels).get(), 2);
        assert_eq!(metrics.state.get_or_create(&up).get(), 1);
    }
}
