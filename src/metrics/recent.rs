//! The recent window of each latency series, as a ring of per-interval slots.
//!
//! The window (`latency.window.seconds`) is cut into [`SLOTS`] intervals on a fixed grid; a
//! new interval's slot pushes out the oldest, so the quantiles cover between eleven and twelve
//! twelfths of the window, never samples older than it. A slot keeps its samples exactly while
//! they are few ([`EXACT_PER_SLOT`]: at one beat a second per series, reached only by windows
//! over 25 minutes or a leader of over 25 partitions at broker granularity) and folds them into
//! an HdrHistogram (3 significant digits, 0.1 %) beyond. So memory per series is bounded
//! whatever the beat rate and the window (at most [`SLOTS`] histograms), a window of minutes
//! or hours costs no more than one of seconds, and while no slot has folded the quantiles are
//! those of the samples themselves (interpolated between ranks); once one has, they are the
//! histogram's (nearest rank, the value within 0.1 %). The sum and count are always exact.
//!
//! Before, each series kept its last 2048 samples: at a high rate that silently shortened the
//! window, so the longest window was refused in the configuration.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::summary::{SummaryFamily, SummaryLabels, Window};
use crate::sync::lock;

/// The quantiles exported.
pub(crate) const QUANTILES: [(f64, &str); 3] = [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99")];

/// Intervals the window is cut into.
pub(crate) const SLOTS: u64 = 12;

/// Samples a slot keeps exactly before folding them into a histogram (1 KiB of them).
pub(crate) const EXACT_PER_SLOT: usize = 128;

/// Precision of the histograms: 3 significant digits, values within 0.1 %.
const SIGNIFICANT_DIGITS: u8 = 3;

/// The samples of one interval.
#[derive(Debug)]
enum Samples {
    /// Latencies in seconds, while there are at most [`EXACT_PER_SLOT`].
    Exact(Vec<f64>),
    /// Latencies in microseconds.
    Folded(Box<Histogram<u32>>),
}

/// One interval of one series.
#[derive(Debug)]
struct Slot {
    /// The interval's place on the grid.
    index: u64,
    samples: Samples,
    sum: f64,
    count: u64,
}

/// The recent samples of every series labelled `L`.
#[derive(Debug)]
pub(crate) struct RecentLatencies<L> {
    origin: Instant,
    interval: Duration,
    /// An empty histogram of the range latencies fall in, cloned when a slot folds; `None`
    /// only if the range could not make one (then a full slot drops its oldest sample).
    empty: Option<Histogram<u32>>,
    series: Mutex<HashMap<L, VecDeque<Slot>>>,
}

/// Microseconds of `seconds`, at least one (the histograms' lowest value).
fn micros(seconds: f64) -> u64 {
    (seconds * 1e6).round().max(1.0) as u64
}

impl<L: SummaryLabels + Hash> RecentLatencies<L> {
    /// Quantiles over the last `window`; latencies beyond `highest` count as `highest` in a
    /// folded slot (the exact ones keep their value).
    pub(crate) fn new(window: Duration, highest: Duration) -> Self {
        let highest = micros(highest.as_secs_f64()).max(1_000);
        RecentLatencies {
            origin: Instant::now(),
            interval: (window / SLOTS as u32).max(Duration::from_millis(1)),
            empty: Histogram::new_with_bounds(1, highest, SIGNIFICANT_DIGITS).ok(),
            series: Mutex::new(HashMap::new()),
        }
    }

    /// The grid interval `at` falls in.
    fn index(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.origin).as_nanos() / self.interval.as_nanos()) as u64
    }

    /// Records one latency, in seconds.
    pub(crate) fn record(&self, labels: &L, seconds: f64, now: Instant) {
        let index = self.index(now);
        let mut series = self.lock();
        let slots = series.entry(labels.clone()).or_default();
        // A sample stamped a little before the newest slot (recorded by another thread) goes
        // into that slot rather than reopening an older one.
        if slots.back().is_none_or(|slot| slot.index < index) {
            slots.push_back(Slot {
                index,
                samples: Samples::Exact(Vec::new()),
                sum: 0.0,
                count: 0,
            });
        }
        while slots.len() as u64 > SLOTS {
            slots.pop_front();
        }
        if let Some(slot) = slots.back_mut() {
            self.add(slot, seconds);
        }
    }

    fn add(&self, slot: &mut Slot, seconds: f64) {
        slot.sum += seconds;
        slot.count += 1;
        match &mut slot.samples {
            Samples::Exact(values) if values.len() < EXACT_PER_SLOT => values.push(seconds),
            Samples::Exact(values) => match &self.empty {
                Some(empty) => {
                    let mut folded = Box::new(empty.clone());
                    for value in values.iter().chain([&seconds]) {
                        folded.saturating_record(micros(*value));
                    }
                    slot.samples = Samples::Folded(folded);
                }
                None => {
                    values.remove(0);
                    values.push(seconds);
                }
            },
            Samples::Folded(histogram) => histogram.saturating_record(micros(seconds)),
        }
    }

    /// Drops the intervals that left the window and sets `family` to the quantiles, sum and
    /// count of what is left; a series with no recent sample is removed rather than left at a
    /// stale value.
    pub(crate) fn publish(&self, family: &SummaryFamily<L>, now: Instant) {
        let oldest = (self.index(now) + 1).saturating_sub(SLOTS);
        let mut series = self.lock();
        series.retain(|labels, slots| {
            while slots.front().is_some_and(|slot| slot.index < oldest) {
                slots.pop_front();
            }
            match self.window(slots) {
                Some(window) => family.set(labels.clone(), window),
                None => family.remove(labels),
            }
            !slots.is_empty()
        });
        // A summary without samples here (cleared with the series' shape) goes too.
        family.retain(|labels| series.contains_key(labels));
    }

    /// The quantiles, sum and count of `slots`: exact while every slot is, else from one
    /// histogram of them all.
    fn window(&self, slots: &VecDeque<Slot>) -> Option<Window> {
        let count: u64 = slots.iter().map(|slot| slot.count).sum();
        if count == 0 {
            return None;
        }
        let sum = slots.iter().map(|slot| slot.sum).sum();
        let folded = slots
            .iter()
            .any(|slot| matches!(slot.samples, Samples::Folded(_)));
        let quantiles = match (&self.empty, folded) {
            (Some(empty), true) => {
                let mut all = empty.clone();
                for slot in slots {
                    match &slot.samples {
                        Samples::Exact(values) => values
                            .iter()
                            .for_each(|value| all.saturating_record(micros(*value))),
                        // Same bounds, so adding cannot fail.
                        Samples::Folded(histogram) => {
                            let _ = all.add(histogram.as_ref());
                        }
                    }
                }
                QUANTILES
                    .iter()
                    .map(|(quantile, label)| {
                        let value = all.median_equivalent(all.value_at_quantile(*quantile));
                        (*label, value as f64 / 1e6)
                    })
                    .collect()
            }
            _ => {
                let mut values: Vec<f64> = slots
                    .iter()
                    .flat_map(|slot| match &slot.samples {
                        Samples::Exact(values) => values.as_slice(),
                        Samples::Folded(_) => &[],
                    })
                    .copied()
                    .collect();
                values.sort_by(f64::total_cmp);
                QUANTILES
                    .iter()
                    .filter_map(|(quantile, label)| {
                        quantile_of_sorted(&values, *quantile).map(|value| (*label, value))
                    })
                    .collect()
            }
        };
        Some(Window {
            quantiles,
            sum,
            count,
        })
    }

    /// Forgets every series (the series' labels changed shape).
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<L, VecDeque<Slot>>> {
        lock(&self.series)
    }
}

/// The `quantile` of sorted `values`, interpolating linearly between the closest ranks.
pub(crate) fn quantile_of_sorted(values: &[f64], quantile: f64) -> Option<f64> {
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

    const WINDOW: Duration = Duration::from_secs(12);

    #[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
    struct Series(String);

    impl SummaryLabels for Series {
        fn pairs(&self) -> Vec<(&'static str, &str)> {
            vec![("series", self.0.as_str())]
        }
    }

    fn recent() -> (RecentLatencies<Series>, SummaryFamily<Series>, Series) {
        (
            RecentLatencies::new(WINDOW, Duration::from_secs(20)),
            SummaryFamily::default(),
            Series("0".into()),
        )
    }

    fn quantile(window: &Window, label: &str) -> f64 {
        window
            .quantiles
            .iter()
            .find(|(name, _)| *name == label)
            .map(|(_, value)| *value)
            .unwrap()
    }

    #[test]
    fn quantiles_interpolate_between_ranks() {
        assert_eq!(quantile_of_sorted(&[], 0.5), None);
        assert_eq!(quantile_of_sorted(&[3.0], 0.99), Some(3.0));
        assert_eq!(quantile_of_sorted(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.5));
        assert_eq!(quantile_of_sorted(&[1.0, 2.0, 3.0], 1.0), Some(3.0));
    }

    #[test]
    fn intervals_leave_the_window_whole_and_an_empty_window_removes_the_series() {
        let (recent, family, labels) = recent();
        let start = recent.origin;
        // One-second intervals: 0 s leaves when the interval at 12 s starts.
        recent.record(&labels, 1.0, start);
        recent.record(&labels, 0.010, start + Duration::from_millis(9_500));
        recent.record(&labels, 0.020, start + Duration::from_millis(11_900));
        recent.publish(&family, start + Duration::from_millis(11_990));
        assert_eq!(family.get(&labels).unwrap().count, 3);
        recent.publish(&family, start + Duration::from_millis(12_010));
        let window = family.get(&labels).unwrap();
        assert_eq!(window.count, 2);
        assert!((window.sum - 0.030).abs() < 1e-9);
        assert!((quantile(&window, "0.5") - 0.015).abs() < 1e-9);
        recent.publish(&family, start + Duration::from_secs(30));
        assert!(
            family.get(&labels).is_none(),
            "no stale value once the window is empty"
        );
        assert!(recent.lock().is_empty());
    }

    #[test]
    fn at_a_beat_a_second_the_quantiles_are_the_samples_own() {
        let (recent, family, labels) = recent();
        let start = recent.origin;
        for beat in 0..12u32 {
            let latency = f64::from(beat + 1) / 1000.0;
            recent.record(&labels, latency, start + Duration::from_secs(beat.into()));
        }
        recent.publish(&family, start + Duration::from_millis(11_500));
        let window = family.get(&labels).unwrap();
        assert_eq!(window.count, 12);
        // Ranks 0..=11: p50 between the 6th and 7th sample, p99 near the largest.
        assert!((quantile(&window, "0.5") - 0.0065).abs() < 1e-12);
        assert!((quantile(&window, "0.99") - 0.01189).abs() < 1e-9);
    }

    #[test]
    fn many_samples_fold_into_bounded_histograms_with_three_digits() {
        let (recent, family, labels) = recent();
        let start = recent.origin;
        // 100,000 samples in one interval: 1 ms to 100 ms, evenly.
        let samples = 100_000u32;
        for i in 0..samples {
            let latency = 0.001 + 0.099 * f64::from(i) / f64::from(samples - 1);
            recent.record(&labels, latency, start);
        }
        {
            let series = recent.lock();
            let slots = &series[&labels];
            assert_eq!(slots.len(), 1);
            assert!(matches!(slots[0].samples, Samples::Folded(_)));
        }
        recent.publish(&family, start + Duration::from_millis(500));
        let window = family.get(&labels).unwrap();
        assert_eq!(window.count, u64::from(samples));
        assert!((window.sum - 0.0505 * f64::from(samples)).abs() < 1e-6 * f64::from(samples));
        for (label, expected) in [("0.5", 0.0505), ("0.9", 0.0901), ("0.99", 0.09901)] {
            let value = quantile(&window, label);
            assert!(
                (value - expected).abs() / expected < 0.002,
                "p{label}: {value} against {expected}"
            );
        }
    }

    #[test]
    fn a_folded_interval_and_exact_ones_make_one_window() {
        let (recent, family, labels) = recent();
        let start = recent.origin;
        for _ in 0..=EXACT_PER_SLOT {
            recent.record(&labels, 0.002, start);
        }
        for _ in 0..EXACT_PER_SLOT {
            recent.record(&labels, 0.004, start + Duration::from_secs(1));
        }
        recent.publish(&family, start + Duration::from_secs(2));
        let window = family.get(&labels).unwrap();
        assert_eq!(window.count, 2 * EXACT_PER_SLOT as u64 + 1);
        assert!((quantile(&window, "0.5") - 0.002).abs() < 0.002 * 0.001);
        assert!((quantile(&window, "0.9") - 0.004).abs() < 0.004 * 0.001);
    }

    #[test]
    fn a_series_never_holds_more_than_its_slots() {
        let (recent, _, labels) = recent();
        let start = recent.origin;
        for tick in 0..1_000u64 {
            recent.record(&labels, 0.001, start + Duration::from_millis(tick * 100));
        }
        assert_eq!(recent.lock()[&labels].len() as u64, SLOTS);
    }
}
