//! What goes into the bundle besides the check: version and build, the effective
//! configuration, a metadata snapshot, and what a running exporter serves.

use std::sync::{Arc, Weak};
use std::time::Duration;

use rdkafka::consumer::BaseConsumer;
use serde::Serialize;

use crate::check::ClusterReport;
use crate::config::Config;
use crate::kafka::client::{client_config, render_client_settings, Role};
use crate::kafka::handle::AnyClient;
use crate::tasks::oauth::sign_in_once;

/// The version and build of this binary, and of the librdkafka in it.
#[derive(Debug, Serialize)]
pub(super) struct VersionInfo {
    cc_heartbeat: &'static str,
    target_os: &'static str,
    target_arch: &'static str,
    debug_build: bool,
    librdkafka: String,
    /// librdkafka's `builtin.features` (SASL mechanisms, SSL, compression codecs).
    librdkafka_features: String,
}

pub(super) fn version_info() -> VersionInfo {
    let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
    let features = rdkafka::ClientConfig::new()
        .create_native_config()
        .ok()
        .and_then(|native| native.get("builtin.features").ok())
        .unwrap_or_default();
    VersionInfo {
        cc_heartbeat: env!("CARGO_PKG_VERSION"),
        target_os: std::env::consts::OS,
        target_arch: std::env::consts::ARCH,
        debug_build: cfg!(debug_assertions),
        librdkafka,
        librdkafka_features: features,
    }
}

/// Every cluster's effective configuration and client settings, secrets masked.
pub(super) fn configuration(configs: &[Config]) -> String {
    let mut out = String::from(
        "# The effective configuration (defaults and environment applied), secrets masked.\n",
    );
    for config in configs {
        out.push_str(&config.render_masked());
        out.push('\n');
        out.push_str(&render_client_settings(config));
        out.push('\n');
    }
    out
}

/// The cluster as metadata describes it: brokers and racks, topic and partition counts, the
/// heartbeat topic's layout.
#[derive(Debug, Serialize)]
pub(super) struct MetadataSnapshot {
    cluster: String,
    cluster_id: Option<String>,
    controller_id: Option<i32>,
    brokers: serde_json::Value,
    topics: Option<usize>,
    /// Of those, Kafka's own (`__consumer_offsets`, `__transaction_state`, …).
    internal_topics: Option<usize>,
    partitions: Option<usize>,
    /// Why the topics could not be counted, when they could not.
    topics_error: Option<String>,
    heartbeat_topic: serde_json::Value,
    /// Every topic's name (for redaction only; not written).
    #[serde(skip)]
    pub(super) topic_names: Vec<String>,
}

/// The metadata snapshot of the cluster `report` checked, with every topic counted.
pub(super) async fn metadata(
    config: &Config,
    report: &ClusterReport,
    timeout: Duration,
) -> MetadataSnapshot {
    let counted = count_topics(config.clone(), timeout).await;
    let (topics, internal, partitions, names, error) = match counted {
        Ok((names, partitions)) => {
            let internal = names.iter().filter(|name| name.starts_with("__")).count();
            (
                Some(names.len()),
                Some(internal),
                Some(partitions),
                names,
                None,
            )
        }
        Err(error) => (None, None, None, Vec::new(), Some(error)),
    };
    MetadataSnapshot {
        cluster: config.name.clone(),
        cluster_id: report.metadata.cluster_id.clone(),
        controller_id: report.metadata.controller_id,
        brokers: serde_json::to_value(&report.metadata.brokers).unwrap_or_default(),
        topics,
        internal_topics: internal,
        partitions,
        topics_error: error,
        heartbeat_topic: serde_json::to_value(&report.topic).unwrap_or_default(),
        topic_names: names,
    }
}

/// Every topic's name and the partitions of all, from one metadata request.
async fn count_topics(config: Config, timeout: Duration) -> Result<(Vec<String>, usize), String> {
    let consumer: Arc<BaseConsumer> = Arc::new(
        client_config(&config, Role::Scan)
            .create()
            .map_err(|error| error.to_string())?,
    );
    if let Some(settings) = &config.oauth {
        let client: Weak<dyn AnyClient> = Arc::downgrade(&consumer) as _;
        if let Err(error) = sign_in_once(settings, client).await {
            // Destroying a client waits for its threads: not on this one.
            let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
            return Err(error);
        }
    }
    let counted = tokio::task::spawn_blocking(move || {
        let metadata =
            rdkafka::consumer::Consumer::fetch_metadata(consumer.as_ref(), None, timeout)
                .map_err(|error| error.to_string())?;
        let names: Vec<String> = metadata
            .topics()
            .iter()
            .map(|topic| topic.name().to_string())
            .collect();
        let partitions = metadata
            .topics()
            .iter()
            .map(|topic| topic.partitions().len())
            .sum();
        Ok((names, partitions))
    });
    counted.await.map_err(|error| error.to_string())?
}

/// `path` of a running exporter at `from` (`http://host:port`).
pub(super) async fn fetch(from: &str, path: &str) -> Result<String, String> {
    let url = format!("{}{path}", from.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|error| error.to_string())?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|error| format!("{url}: {error}"))?;
    // `/ready` answers 503 when not ready: its body is what is wanted either way.
    response
        .text()
        .await
        .map_err(|error| format!("{url}: {error}"))
}
