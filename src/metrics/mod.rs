//! The metrics of one monitored cluster, and their encoding.
//!
//! Each component declares its own families beside its code (a `metrics.rs` in its folder) and
//! adds them to its cluster's [`ClusterMetrics`] when it is created; this module knows no
//! component. `/metrics` encodes from memory: the `cluster` label (the configured name) is
//! added to every series at encoding time, and the id the cluster reports is on one series of
//! its own, `heartbeat_cluster_info{cluster_id}`, so no series is renamed when the id becomes
//! known (which would reset alert timers and split recording rules).
//! [`merge_families`] joins several clusters into one exposition.
//!
//! - [`labels`]: label sets several components share;
//! - [`latency`]: histograms cut at a deadline, and quantiles over a recent window;
//! - [`recent`]: that window, a ring of per-interval slots, exact or HdrHistograms;
//! - [`summary`]: windowed quantiles as summaries, which prometheus-client cannot encode;
//! - [`text_format`]: the Prometheus text format 0.0.4, rewritten from OpenMetrics, and the
//!   negotiation between the two.

pub(crate) mod labels;
pub(crate) mod latency;
pub(crate) mod recent;
pub(crate) mod summary;
pub mod text_format;

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::sync::lock;

/// A component's metric families. Families are handles around shared atomics: registering
/// clones of them into a scrape's registry exports the live values.
pub(crate) trait Families: Send + Sync {
    /// Registers every family into `registry` (under the `heartbeat` prefix).
    fn register(&self, registry: &mut Registry);

    /// Brings values computed at scrape time up to date (windowed quantiles); most
    /// components have none.
    fn refresh(&self, _now: Instant) {}

    /// Appends the summary families (as OpenMetrics text, every series labelled `cluster`),
    /// after every registered family; most components have none.
    fn encode_summaries(&self, _out: &mut String, _cluster: &str) {}
}

/// Labels of `heartbeat_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    /// Not `instance`: Prometheus gives that name to the scrape target.
    instance_id: String,
}

/// Labels of `heartbeat_cluster_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterIdLabels {
    cluster_id: String,
}

/// Every metric family of one monitored cluster: its identity, and what each of its
/// components added, registered once (when the set is built) under the `heartbeat` prefix and
/// the configured `cluster` label. A scrape encodes them, nothing is registered again.
pub(crate) struct ClusterMetrics {
    components: Vec<Arc<dyn Families>>,
    registry: Registry,
    /// `heartbeat_cluster_info{cluster_id}`: the id as last encoded, and its series.
    cluster_id: Mutex<String>,
    cluster_info: Family<ClusterIdLabels, Gauge>,
    /// The last exposition's length, to size the next.
    size: AtomicUsize,
}

/// The families of a cluster's metric set, in the order they are exported, until it is built.
pub(crate) struct ClusterMetricsBuilder {
    instance_id: String,
    components: Vec<Arc<dyn Families>>,
}

impl ClusterMetricsBuilder {
    /// Exports a component's families, after those added before.
    pub(crate) fn add(&mut self, families: Arc<dyn Families>) {
        self.components.push(families);
    }

    /// Exports a component's families, if it has any.
    pub(crate) fn add_some(&mut self, families: Option<Arc<dyn Families>>) {
        if let Some(families) = families {
            self.add(families);
        }
    }

    /// Registers every family once, every series labelled with the configured `cluster`.
    pub(crate) fn build(self, cluster: &str) -> ClusterMetrics {
        let labels = [(Cow::Borrowed("cluster"), Cow::Owned(cluster.to_string()))];
        let mut registry = Registry::with_prefix_and_labels("heartbeat", labels.into_iter());
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
                instance_id: self.instance_id,
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1; labelled with the version and this running instance's id (written into every heartbeat)",
            build_info,
        );
        let cluster_info = Family::<ClusterIdLabels, Gauge>::default();
        registry.register(
            "cluster_info",
            "Always 1; labelled with the id the cluster reports (unknown before it answered): join on cluster for it",
            cluster_info.clone(),
        );
        for component in &self.components {
            component.register(&mut registry);
        }
        ClusterMetrics {
            components: self.components,
            registry,
            cluster_id: Mutex::new(String::new()),
            cluster_info,
            size: AtomicUsize::new(64 * 1024),
        }
    }
}

impl ClusterMetrics {
    /// The metrics of a cluster monitored by running instance `instance_id`, to be built.
    pub(crate) fn builder(instance_id: &str) -> ClusterMetricsBuilder {
        ClusterMetricsBuilder {
            instance_id: instance_id.to_string(),
            components: Vec::new(),
        }
    }

    /// Appends the OpenMetrics text of these metrics, every series labelled with the
    /// configured `cluster` name, and `heartbeat_cluster_info` with the `cluster_id`, without
    /// the final `# EOF`.
    pub(crate) fn encode(
        &self,
        out: &mut String,
        cluster: &str,
        cluster_id: &str,
    ) -> std::fmt::Result {
        {
            let mut current = lock(&self.cluster_id);
            if *current != cluster_id {
                // The id a cluster reports changes only when it is first known: one series.
                self.cluster_info.clear();
                self.cluster_info
                    .get_or_create(&ClusterIdLabels {
                        cluster_id: cluster_id.to_string(),
                    })
                    .set(1);
                *current = cluster_id.to_string();
            }
        }
        // Room for the last exposition and some growth, and for what the caller appends: a
        // large buffer that overflows is copied whole.
        let last = self.size.load(Ordering::Relaxed);
        out.reserve(last + last / 8);
        let start = out.len();
        let now = Instant::now();
        for component in &self.components {
            component.refresh(now);
        }
        prometheus_client::encoding::text::encode_registry(out, &self.registry)?;
        for component in &self.components {
            component.encode_summaries(out, cluster);
        }
        self.size.store(out.len() - start, Ordering::Relaxed);
        Ok(())
    }
}

/// Joins the expositions of several clusters into one: each metric family's `# HELP`,
/// `# TYPE` and `# UNIT` lines once, followed by the samples of every cluster, in first-seen
/// family order (OpenMetrics allows a family only once).
///
/// A step over text, because prometheus-client cannot join them itself: it writes a
/// descriptor for every registration (one registry per cluster, or a sub-registry per
/// cluster, both describe each family once per cluster), and its encoder cannot nest a
/// family's labels inside a `cluster` label set it did not register with (`encode_family`
/// takes one label set). Joining without text would take families shared by all clusters,
/// every label set carrying `cluster`, so one generation's fresh start could not drop its own
/// series. With one cluster (the usual deployment) nothing is joined.
pub fn merge_families(expositions: &[String]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut families: std::collections::HashMap<String, (String, String)> = Default::default();
    for exposition in expositions {
        let mut current: Option<String> = None;
        // Line by line, each kept byte for byte (`lines()` would also drop a `\r`).
        for line in exposition.split_inclusive('\n') {
            let line = line.strip_suffix('\n').unwrap_or(line);
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default().to_string();
                let entry = families.entry(name.clone()).or_insert_with(|| {
                    order.push(name.clone());
                    (String::new(), String::new())
                });
                // The descriptor is taken from the first cluster only.
                if entry.0.is_empty() {
                    entry.0.push_str(line);
                    entry.0.push('\n');
                    current = Some(name);
                } else {
                    current = Some(format!("{name}\u{0}samples"));
                }
                continue;
            }
            let Some(name) = current.as_deref() else {
                continue;
            };
            let (name, descriptor_open) = match name.strip_suffix("\u{0}samples") {
                Some(name) => (name, false),
                None => (name, true),
            };
            let Some(entry) = families.get_mut(name) else {
                continue;
            };
            if line.starts_with("# ") {
                if descriptor_open {
                    entry.0.push_str(line);
                    entry.0.push('\n');
                }
            } else {
                entry.1.push_str(line);
                entry.1.push('\n');
            }
        }
    }
    let mut out = String::new();
    for name in order {
        if let Some((descriptor, samples)) = families.get(&name) {
            out.push_str(descriptor);
            out.push_str(samples);
        }
    }
    out
}

/// The OpenMetrics text of one component's families alone: for its unit tests.
#[cfg(test)]
pub(crate) fn encode_alone(families: &dyn Families) -> String {
    let mut registry = Registry::with_prefix("heartbeat");
    families.refresh(Instant::now());
    families.register(&mut registry);
    let mut out = String::new();
    prometheus_client::encoding::text::encode_registry(&mut out, &registry)
        .expect("encoding to a string");
    families.encode_summaries(&mut out, "");
    out
}

#[cfg(test)]
mod tests {
    use super::labels::PartitionLabels;
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    /// A component with one counter per partition.
    #[derive(Default)]
    struct Produced(Family<PartitionLabels, Counter>);

    impl Families for Produced {
        fn register(&self, registry: &mut Registry) {
            registry.register(
                "messages_produced",
                "Heartbeats acknowledged by the partition leader",
                self.0.clone(),
            );
        }
    }

    fn cluster_with(cluster: &str, count: u64) -> ClusterMetrics {
        let mut metrics = ClusterMetrics::builder("i");
        let produced = Arc::new(Produced::default());
        produced
            .0
            .get_or_create(&PartitionLabels::new(0))
            .inc_by(count);
        metrics.add(produced);
        metrics.build(cluster)
    }

    #[test]
    fn every_series_carries_the_cluster_and_one_the_id() {
        let mut out = String::new();
        cluster_with("prod", 1)
            .encode(&mut out, "prod", "abc")
            .unwrap();
        for line in out.lines().filter(|line| !line.starts_with('#')) {
            assert!(line.contains("cluster=\"prod\""), "{line}");
        }
        assert_eq!(out.matches("cluster_id=").count(), 1, "{out}");
        assert!(out.contains("heartbeat_cluster_info{cluster=\"prod\",cluster_id=\"abc\"} 1"));
        assert!(out.contains("heartbeat_messages_produced_total{"));
        assert!(out.contains("heartbeat_build_info{"));
        assert!(!out.contains("# EOF"));
    }

    /// Registered once: a scrape after the cluster's id became known shows the new id alone,
    /// and the live values, with no family registered again.
    #[test]
    fn a_scrape_encodes_the_registered_families_as_they_are_now() {
        let mut builder = ClusterMetrics::builder("i");
        let produced = Arc::new(Produced::default());
        builder.add(produced.clone());
        let metrics = builder.build("prod");
        let mut first = String::new();
        metrics.encode(&mut first, "prod", "unknown").unwrap();
        produced.0.get_or_create(&PartitionLabels::new(0)).inc();
        let mut second = String::new();
        metrics.encode(&mut second, "prod", "abc").unwrap();
        assert!(first.contains("cluster_id=\"unknown\""), "{first}");
        assert_eq!(
            second.matches("heartbeat_cluster_info{").count(),
            1,
            "{second}"
        );
        assert!(second.contains("cluster_id=\"abc\""), "{second}");
        assert!(
            second
                .contains("heartbeat_messages_produced_total{cluster=\"prod\",partition=\"0\"} 1"),
            "{second}"
        );
        assert_eq!(
            second
                .matches("# TYPE heartbeat_messages_produced counter")
                .count(),
            1
        );
    }

    #[test]
    fn clusters_share_each_family_once() {
        let mut one = String::new();
        let mut two = String::new();
        cluster_with("east", 1)
            .encode(&mut one, "east", "id1")
            .unwrap();
        cluster_with("west", 2)
            .encode(&mut two, "west", "id2")
            .unwrap();
        let merged = merge_families(&[one, two]);
        assert_eq!(
            merged
                .matches("# TYPE heartbeat_messages_produced counter")
                .count(),
            1
        );
        assert!(
            merged
                .contains("heartbeat_messages_produced_total{cluster=\"east\",partition=\"0\"} 1"),
            "{merged}"
        );
        assert!(
            merged
                .contains("heartbeat_messages_produced_total{cluster=\"west\",partition=\"0\"} 2"),
            "{merged}"
        );
        let help = merged.find("# HELP heartbeat_messages_produced ").unwrap();
        let east = merged.find("cluster=\"east\",partition").unwrap();
        let west = merged.find("cluster=\"west\",partition").unwrap();
        assert!(
            help < east && east < west,
            "descriptor first, then both clusters' samples"
        );
    }

    /// Found by fuzzing (fuzz/fuzz_targets/openmetrics_merge.rs): a sample line ending in a
    /// carriage return came out changed.
    #[test]
    fn samples_are_kept_byte_for_byte() {
        let one = "# HELP a A.\na 1\r\n\r\n".to_string();
        let two = "# HELP a A.\na 2\n".to_string();
        assert_eq!(merge_families(&[one, two]), "# HELP a A.\na 1\r\n\r\na 2\n");
    }
}
