//! Exact latency quantiles over a recent window, exported as gauges beside the histograms.
//!
//! Histogram buckets are the right thing to aggregate and alert on, but a quantile interpolated
//! inside a bucket can be tens of percent off. These gauges keep the samples of the last
//! `latency.window.seconds` (at most [`MAX_SAMPLES`] per series) and compute quantiles from
//! them when `/metrics` is encoded, so "p50 of the last minute" is exact.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::PartitionLeaderLabels;

/// Samples kept per series, whatever the window and beat rate.
pub const MAX_SAMPLES: usize = 2048;

/// The quantiles exported.
pub const QUANTILES: [(f64, &str); 3] = [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99")];

/// Labels of a windowed quantile gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuantileLabels {
    pub partition: String,
    pub leader: String,
    pub quantile: String,
}

/// Gauge family of windowed quantiles.
pub type QuantileFamily = Family<QuantileLabels, Gauge<f64, AtomicU64>>;

/// Recent samples per (partition, leader).
#[derive(Debug)]
pub struct RecentLatencies {
    window: Duration,
    samples: Mutex<HashMap<PartitionLeaderLabels, VecDeque<(Instant, f64)>>>,
}

impl RecentLatencies {
    pub fn new(window: Duration) -> Self {
        RecentLatencies {
            window,
            samples: Mutex::new(HashMap::new()),
        }
    }

    /// Records one latency, in seconds.
    pub fn record(&self, labels: &PartitionLeaderLabels, seconds: f64, now: Instant) {
        let mut samples = self.lock();
        let series = samples.entry(labels.clone()).or_default();
        if series.len() >= MAX_SAMPLES {
            series.pop_front();
        }
        series.push_back((now, seconds));
    }

    /// Drops samples older than the window and sets `family` to the quantiles of what is left;
    /// a series with no recent sample is removed rather than left at a stale value.
    pub fn publish(&self, family: &QuantileFamily, now: Instant) {
        let mut samples = self.lock();
        samples.retain(|labels, series| {
            while series
                .front()
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) > self.window)
            {
                series.pop_front();
            }
            let mut values: Vec<f64> = series.iter().map(|(_, value)| *value).collect();
            values.sort_by(f64::total_cmp);
            for (quantile, label) in QUANTILES {
                let gauge_labels = QuantileLabels {
                    partition: labels.partition.clone(),
                    leader: labels.leader.clone(),
                    quantile: label.to_string(),
                };
                match quantile_of_sorted(&values, quantile) {
                    Some(value) => {
                        family.get_or_create(&gauge_labels).set(value);
                    }
                    None => {
                        family.remove(&gauge_labels);
                    }
                }
            }
            !series.is_empty()
        });
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<PartitionLeaderLabels, VecDeque<(Instant, f64)>>> {
        self.samples
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The `quantile` of sorted `values`, interpolating linearly between the closest ranks.
pub fn quantile_of_sorted(values: &[f64], quantile: f64) -> Option<f64> {
    let last = values.len().checked_sub(1)?;
    let rank = quantile.clamp(0.0, 1.0) * last as f64;
    let below = rank.floor() as usize;
    let above = rank.ceil() as usize;
    let fraction = rank - below as f64;
    Some(values[below] + (values[above] - values[below]) * fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_between_ranks() {
        assert_eq!(quantile_of_sorted(&[], 0.5), None);
        assert_eq!(quantile_of_sorted(&[3.0], 0.99), Some(3.0));
        assert_eq!(quantile_of_sorted(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.5));
        assert_eq!(quantile_of_sorted(&[1.0, 2.0, 3.0], 1.0), Some(3.0));
    }

    #[test]
    fn old_samples_leave_the_window() {
        let recent = RecentLatencies::new(Duration::from_secs(10));
        let family = QuantileFamily::default();
        let labels = PartitionLeaderLabels::new(0, 1);
        let start = Instant::now();
        recent.record(&labels, 1.0, start);
        recent.record(&labels, 0.010, start + Duration::from_secs(9));
        recent.record(&labels, 0.020, start + Duration::from_secs(10));
        recent.publish(&family, start + Duration::from_secs(11));
        let median = QuantileLabels {
            partition: "0".into(),
            leader: "1".into(),
            quantile: "0.5".into(),
        };
        assert!((family.get_or_create(&median).get() - 0.015).abs() < 1e-9);
        recent.publish(&family, start + Duration::from_secs(30));
        assert!(
            family.get(&median).is_none(),
            "no stale value once the window is empty"
        );
    }

    #[test]
    fn samples_per_series_are_capped() {
        let recent = RecentLatencies::new(Duration::from_secs(3600));
        let labels = PartitionLeaderLabels::new(0, 1);
        let now = Instant::now();
        for _ in 0..(MAX_SAMPLES * 2) {
            recent.record(&labels, 0.001, now);
        }
        assert_eq!(recent.lock()[&labels].len(), MAX_SAMPLES);
    }
}
