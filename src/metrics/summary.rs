//! Windowed quantiles exported as what the exposition formats call them: summaries, each series
//! with its `quantile` samples and the `_sum` and `_count` of the same window.
//!
//! prometheus-client has no summary type, so these families are written as OpenMetrics text
//! after the registry's, with the same `heartbeat_` prefix and `cluster` label. Before, they
//! were gauges with a `quantile` label, which `promtool check metrics` rightly flags.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use crate::sync::lock;

/// One series' window: its quantiles (label, value), the sum and the count of its samples.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Window {
    pub(crate) quantiles: Vec<(&'static str, f64)>,
    pub(crate) sum: f64,
    pub(crate) count: u64,
}

/// A label set of a summary series, as (name, value) pairs in order.
pub(crate) trait SummaryLabels: Clone + Ord + Send + 'static {
    fn pairs(&self) -> Vec<(&'static str, &str)>;
}

/// A family of windowed summaries; cloning shares the series.
#[derive(Clone, Debug)]
pub(crate) struct SummaryFamily<L> {
    series: Arc<Mutex<BTreeMap<L, Window>>>,
}

impl<L> Default for SummaryFamily<L> {
    fn default() -> Self {
        SummaryFamily {
            series: Arc::default(),
        }
    }
}

/// Escapes a label value as the text formats require.
fn escaped(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Window {
    /// The window as a summary must show it: quantiles in increasing order, each at most the
    /// next one up, so none exceeds the max (quantile 1). A source whose quantiles come from
    /// histogram buckets (librdkafka's p99 is a bucket's bound) can report a p99 above the max
    /// it saw; such a value is lowered to the next quantile up, which is the truer bound. A
    /// quantile that is not a number is dropped.
    fn ordered(mut self) -> Window {
        self.quantiles.retain(|(quantile, value)| {
            quantile
                .parse::<f64>()
                .is_ok_and(|q| (0.0..=1.0).contains(&q))
                && !value.is_nan()
        });
        self.quantiles.sort_by(|(a, _), (b, _)| {
            let position = |quantile: &str| quantile.parse::<f64>().unwrap_or(f64::NAN);
            position(a).total_cmp(&position(b))
        });
        let mut bound = f64::INFINITY;
        for (_, value) in self.quantiles.iter_mut().rev() {
            *value = value.min(bound);
            bound = *value;
        }
        self
    }
}

impl<L: SummaryLabels> SummaryFamily<L> {
    pub(crate) fn set(&self, labels: L, window: Window) {
        lock(&self.series).insert(labels, window.ordered());
    }

    pub(crate) fn remove(&self, labels: &L) {
        lock(&self.series).remove(labels);
    }

    /// Keeps only the series `keep` accepts.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&L) -> bool) {
        lock(&self.series).retain(|labels, _| keep(labels));
    }

    #[cfg(test)]
    pub(crate) fn get(&self, labels: &L) -> Option<Window> {
        lock(&self.series).get(labels).cloned()
    }

    /// Appends the family as OpenMetrics text: `heartbeat_<name>_seconds`, every series
    /// labelled `cluster` (unless empty, in unit tests). A family without series is still
    /// described.
    pub(crate) fn encode(&self, out: &mut String, name: &str, help: &str, cluster: &str) {
        let family = format!("heartbeat_{name}_seconds");
        let _ = writeln!(out, "# HELP {family} {help}.");
        let _ = writeln!(out, "# TYPE {family} summary");
        let _ = writeln!(out, "# UNIT {family} seconds");
        for (labels, window) in lock(&self.series).iter() {
            let mut pairs = labels.pairs();
            if !cluster.is_empty() {
                pairs.insert(0, ("cluster", cluster));
            }
            let set: Vec<String> = pairs
                .iter()
                .map(|(key, value)| format!("{key}=\"{}\"", escaped(value)))
                .collect();
            let set = set.join(",");
            for (quantile, value) in &window.quantiles {
                let _ = writeln!(out, "{family}{{{set},quantile=\"{quantile}\"}} {value}");
            }
            let _ = writeln!(out, "{family}_sum{{{set}}} {}", window.sum);
            let _ = writeln!(out, "{family}_count{{{set}}} {}", window.count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
    struct Broker(String);

    impl SummaryLabels for Broker {
        fn pairs(&self) -> Vec<(&'static str, &str)> {
            vec![("broker", self.0.as_str())]
        }
    }

    proptest::proptest! {
        /// Whatever a source reports, the quantiles written are in order, each at most the
        /// next one up and so at most the max; none is invented or lost but a bad one.
        #[test]
        fn quantiles_written_are_ordered_and_bounded_by_the_max(
            values in proptest::collection::vec(0.0f64..1e6, 1..6),
            order in proptest::collection::vec(proptest::num::usize::ANY, 1..6),
        ) {
            const QUANTILES: [&str; 6] = ["0.5", "0.9", "0.99", "0.999", "0.25", "1"];
            let quantiles: Vec<(&'static str, f64)> = values
                .iter()
                .zip(&order)
                .map(|(value, index)| (QUANTILES[index % QUANTILES.len()], *value))
                .collect();
            // One value per quantile, as a source gives.
            let mut seen = std::collections::BTreeSet::new();
            let quantiles: Vec<(&'static str, f64)> =
                quantiles.into_iter().filter(|(q, _)| seen.insert(*q)).collect();
            let family = SummaryFamily::default();
            family.set(Broker("1".into()), Window { quantiles: quantiles.clone(), sum: 1.0, count: 1 });
            let written = family.get(&Broker("1".into())).unwrap().quantiles;
            proptest::prop_assert_eq!(written.len(), quantiles.len());
            for pair in written.windows(2) {
                let (low, high) = (pair[0], pair[1]);
                proptest::prop_assert!(low.0.parse::<f64>().unwrap() < high.0.parse::<f64>().unwrap());
                proptest::prop_assert!(low.1 <= high.1, "{:?}", written);
            }
            if let Some((_, max)) = quantiles.iter().find(|(q, _)| *q == "1") {
                proptest::prop_assert!(written.iter().all(|(_, value)| value <= max));
                proptest::prop_assert_eq!(written.last().map(|(_, v)| *v), Some(*max));
            }
        }
    }

    #[test]
    fn a_p99_above_the_max_is_lowered_to_the_max() {
        // As librdkafka reported it under a quota: p99 39.679 s, max 39.639 s.
        let family = SummaryFamily::default();
        family.set(
            Broker("1".into()),
            Window {
                quantiles: vec![("0.99", 39.679), ("1", 39.639)],
                sum: 79.0,
                count: 2,
            },
        );
        let written = family.get(&Broker("1".into())).unwrap();
        assert_eq!(written.quantiles, vec![("0.99", 39.639), ("1", 39.639)]);
    }

    #[test]
    fn a_summary_has_its_quantiles_sum_and_count_under_one_described_family() {
        let family = SummaryFamily::default();
        family.set(
            Broker("1".into()),
            Window {
                quantiles: vec![("0.5", 0.001), ("0.99", 0.5)],
                sum: 2.5,
                count: 10,
            },
        );
        let mut out = String::new();
        family.encode(&mut out, "rtt", "Round trips", "a\"b");
        assert_eq!(
            out,
            "# HELP heartbeat_rtt_seconds Round trips.\n\
             # TYPE heartbeat_rtt_seconds summary\n\
             # UNIT heartbeat_rtt_seconds seconds\n\
             heartbeat_rtt_seconds{cluster=\"a\\\"b\",broker=\"1\",quantile=\"0.5\"} 0.001\n\
             heartbeat_rtt_seconds{cluster=\"a\\\"b\",broker=\"1\",quantile=\"0.99\"} 0.5\n\
             heartbeat_rtt_seconds_sum{cluster=\"a\\\"b\",broker=\"1\"} 2.5\n\
             heartbeat_rtt_seconds_count{cluster=\"a\\\"b\",broker=\"1\"} 10\n"
        );
    }
}
