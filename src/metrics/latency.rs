//! Latency types: histograms with buckets cut at a deadline, and quantiles over a recent window
//! exported as summaries beside them.
//!
//! Each series names the partition and its leader, or (`heartbeat.latency.granularity =
//! broker`) the leader only, which keeps a topic of a thousand partitions' `/metrics` small.
//!
//! Histogram buckets are the right thing to aggregate and alert on, but a quantile interpolated
//! inside a bucket can be tens of percent off. The summaries keep the last
//! `latency.window.seconds` of samples ([`super::recent`]: exactly at the usual rates, within
//! 0.1 % beyond) and compute quantiles when `/metrics` is encoded, so "p50 of the last minute"
//! is that.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};

use super::recent::RecentLatencies;
use super::summary::{SummaryFamily, SummaryLabels};
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::histogram::Histogram;

/// Latency bucket bounds in seconds (about 1 ms up); cut at each histogram's deadline.
const LATENCY_BUCKETS: [f64; 21] = [
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75,
    1.0, 1.5, 2.5, 5.0, 10.0, 20.0,
];

/// Buckets from 1 ms to `deadline` (inclusive), the last one being the deadline itself.
pub(crate) fn buckets_up_to(deadline: Duration) -> Vec<f64> {
    let deadline = deadline.as_secs_f64();
    let mut buckets: Vec<f64> = LATENCY_BUCKETS
        .iter()
        .copied()
        .filter(|bound| *bound < deadline)
        .collect();
    buckets.push(deadline);
    buckets
}

/// Builds histograms with fixed buckets inside a [`Family`].
#[derive(Clone, Debug)]
pub(crate) struct Buckets(Arc<[f64]>);

impl Buckets {
    /// Buckets from 1 ms up to `deadline`.
    pub(crate) fn up_to(deadline: Duration) -> Self {
        Buckets(buckets_up_to(deadline).into())
    }
}

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// A family of histograms with the same buckets.
pub(crate) type HistogramFamily<L> = Family<L, Histogram, Buckets>;

/// Labels of a latency series: a partition and its leader, or the leader only.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct LatencyLabels {
    pub(crate) partition: Option<String>,
    pub(crate) leader: String,
}

impl LatencyLabels {
    pub(crate) fn new(partition: Option<i32>, leader: i32) -> Self {
        LatencyLabels {
            partition: partition.map(|partition| partition.to_string()),
            leader: leader.to_string(),
        }
    }
}

impl EncodeLabelSet for LatencyLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        // Without a partition the label is left out, not written empty.
        if let Some(partition) = &self.partition {
            ("partition", partition.as_str()).encode(encoder.encode_label())?;
        }
        ("leader", self.leader.as_str()).encode(encoder.encode_label())
    }
}

impl SummaryLabels for LatencyLabels {
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        let mut pairs = Vec::with_capacity(2);
        if let Some(partition) = &self.partition {
            pairs.push(("partition", partition.as_str()));
        }
        pairs.push(("leader", self.leader.as_str()));
        pairs
    }
}

/// A latency per partition (or broker) and leader: a histogram to aggregate and alert on, and
/// exact quantiles of the recent window.
#[derive(Clone, Debug)]
pub(crate) struct Latency {
    pub(crate) histogram: HistogramFamily<LatencyLabels>,
    pub(crate) recent: QuantileFamily,
    samples: Arc<RecentLatencies<LatencyLabels>>,
    /// Whether new observations name their partition (the granularity, for the topic's
    /// current size).
    by_partition: Arc<AtomicBool>,
}

impl Latency {
    /// Histograms with buckets up to `deadline`; quantiles over the last `window`.
    pub(crate) fn new(deadline: Duration, window: Duration) -> Self {
        Latency {
            histogram: Family::new_with_constructor(Buckets::up_to(deadline)),
            recent: QuantileFamily::default(),
            samples: Arc::new(RecentLatencies::new(window, deadline)),
            by_partition: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Whether the series of later observations name their partition; returns whether that
    /// changed.
    pub(crate) fn set_by_partition(&self, by_partition: bool) -> bool {
        self.by_partition.swap(by_partition, Ordering::Relaxed) != by_partition
    }

    /// Forgets every series: histograms, recent samples and their summaries.
    pub(crate) fn clear(&self) {
        self.histogram.clear();
        self.samples.clear();
        self.recent.retain(|_| false);
    }

    /// The series `partition` led by `leader` is recorded in.
    pub(crate) fn labels(&self, partition: i32, leader: i32) -> LatencyLabels {
        let by_partition = self.by_partition.load(Ordering::Relaxed);
        LatencyLabels::new(by_partition.then_some(partition), leader)
    }

    /// Records one latency of `partition` led by `leader`.
    pub(crate) fn observe(&self, partition: i32, leader: i32, latency: Duration, now: Instant) {
        let labels = self.labels(partition, leader);
        let seconds = latency.as_secs_f64();
        self.histogram.get_or_create(&labels).observe(seconds);
        self.samples.record(&labels, seconds, now);
    }

    /// Brings the quantile gauges up to date with the window ending `now`.
    pub(crate) fn publish(&self, now: Instant) {
        self.samples.publish(&self.recent, now);
    }
}

/// Summaries of the recent window.
pub(crate) type QuantileFamily = SummaryFamily<LatencyLabels>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_end_at_the_deadline() {
        assert_eq!(buckets_up_to(Duration::from_secs(20)).last(), Some(&20.0));
        assert_eq!(buckets_up_to(Duration::from_secs(20)).first(), Some(&0.001));
        let short = buckets_up_to(Duration::from_secs(5));
        assert_eq!(short.last(), Some(&5.0));
        assert_eq!(short.iter().filter(|b| **b == 5.0).count(), 1);
    }
}
