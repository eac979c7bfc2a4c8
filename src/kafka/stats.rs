//! librdkafka's statistics (`statistics.interval.ms`), handed off librdkafka's thread, and
//! what the tasks read in them themselves (a coordinator's broker); the recorder turns the
//! rest into series (`crate::recorder::clients`).

use std::collections::HashMap;
use std::sync::Mutex;

use rdkafka::Statistics;
use tokio::sync::Notify;

use crate::sync::lock;

/// The latest statistics report of a client, handed from librdkafka's thread to a task that
/// parses it off that thread; an older report not parsed yet is replaced (only the latest
/// counts).
#[derive(Debug, Default)]
pub(crate) struct StatsInbox {
    report: Mutex<Option<Vec<u8>>>,
    arrived: Notify,
}

impl StatsInbox {
    /// Keeps `report` (librdkafka's JSON) and wakes the task waiting for it.
    pub(crate) fn put(&self, report: &[u8]) {
        *lock(&self.report) = Some(report.to_vec());
        self.arrived.notify_one();
    }

    /// Waits for a report to arrive.
    pub(crate) async fn arrived(&self) {
        self.arrived.notified().await;
    }

    /// The report waiting, parsed; `None` if there is none or it is unreadable. Blocking
    /// (large clusters' reports are megabytes).
    pub(crate) fn take(&self) -> Option<Statistics> {
        let report = lock(&self.report).take()?;
        serde_json::from_slice::<Statistics>(&report)
            .inspect_err(|error| tracing::debug!("unreadable client statistics: {error}"))
            .ok()
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

/// Statistics reports made up for tests.
#[cfg(test)]
pub(crate) mod test_statistics {
    use rdkafka::Statistics;

    pub(crate) fn statistics(brokers: &str) -> Statistics {
        let json = format!(
            r#"{{"name":"c","client_id":"c","type":"consumer","ts":1,"time":1,"age":1,"replyq":0,
            "msg_cnt":0,"msg_size":0,"msg_max":0,"msg_size_max":0,"simple_cnt":0,
            "metadata_cache_cnt":0,"brokers":{{{brokers}}},"topics":{{}},"tx":0,"tx_bytes":0,
            "rx":0,"rx_bytes":0,"txmsgs":0,"txmsg_bytes":0,"rxmsgs":0,"rxmsg_bytes":0}}"#
        );
        serde_json::from_str(&json).unwrap()
    }

    pub(crate) fn broker(name: &str, id: i32, nodename: &str, throttle_max: i64) -> String {
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
}

#[cfg(test)]
mod tests {
    use super::test_statistics::{broker, statistics};
    use super::*;

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
