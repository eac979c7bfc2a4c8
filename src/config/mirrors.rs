//! Replication pipelines between the configured clusters: a cluster whose `[admin]` sets
//! `mirror.of` is a replica of the one it names, whose heartbeats it reads where the pipeline
//! (MirrorMaker 2, Cluster Linking) writes them. Each must name another configured cluster,
//! and no circle: a chain is measured from its first cluster, which mirrors none.

use std::time::Duration;

use super::raw::{cluster_section, ConfigError, Entry, Origin, RawConfig};

/// What one cluster's configuration says of pipelines.
pub(super) struct Node {
    pub(super) name: String,
    /// `mirror.of`.
    pub(super) of: Option<String>,
    /// The topic its source's heartbeats are read from here, once its source is known.
    pub(super) topic: Option<String>,
    /// The first cluster of its chain, whose heartbeats it reads, once that is known: its
    /// source, or, when the source is a replica too, the source's first cluster.
    pub(super) first: Option<String>,
    pub(super) lost_after: Duration,
}

/// What one cluster's configuration says of pipelines, as written.
pub(super) struct Link<'a> {
    pub(super) name: &'a str,
    /// `mirror.of`, `mirror.topic`, `heartbeat.topic`, `mirror.lost.after.seconds`.
    pub(super) of: Option<&'a str>,
    pub(super) topic: Option<&'a str>,
    pub(super) heartbeat_topic: &'a str,
    pub(super) lost_after: Duration,
}

/// The link `name` names as its source, among `links`.
fn source_of<'a, 'b>(links: &'b [Link<'a>], link: &Link<'_>) -> Option<&'b Link<'a>> {
    let source = link.of?;
    links.iter().find(|other| other.name == source)
}

/// The topic replica `name` reads the heartbeats it is measured by from: `mirror.topic`, else
/// the name they have on its source, kept as Cluster Linking keeps it: the source's heartbeat
/// topic, or, when the source is itself a replica (a chain), the topic the source reads them
/// from. `None` for a cluster that mirrors none, or whose chain leaves `links` or runs in a
/// circle.
pub(super) fn topic(links: &[Link<'_>], name: &str) -> Option<String> {
    let mut replica = links.iter().find(|link| link.name == name)?;
    replica.of?;
    for _ in 0..links.len() {
        if let Some(topic) = replica.topic {
            return Some(topic.to_string());
        }
        let source = source_of(links, replica)?;
        if source.of.is_none() {
            return Some(source.heartbeat_topic.to_string());
        }
        replica = source;
    }
    None
}

/// The first cluster of replica `name`'s chain, the one that mirrors none: the heartbeats a
/// replica reads are that cluster's, measured from their sending there. `None` for a cluster
/// that mirrors none, or whose chain leaves `links` or runs in a circle.
pub(super) fn first<'a>(links: &[Link<'a>], name: &str) -> Option<&'a str> {
    let link = links.iter().find(|link| link.name == name)?;
    let mut cluster = source_of(links, link)?;
    for _ in 0..links.len() {
        match cluster.of {
            None => return Some(cluster.name),
            Some(_) => cluster = source_of(links, cluster)?,
        }
    }
    None
}

/// What each of `links` says of pipelines, its chain resolved.
pub(super) fn nodes(links: &[Link<'_>]) -> Vec<Node> {
    links
        .iter()
        .map(|link| Node {
            name: link.name.to_string(),
            of: link.of.map(str::to_string),
            topic: topic(links, link.name).or_else(|| link.topic.map(str::to_string)),
            first: first(links, link.name).map(str::to_string),
            lost_after: link.lost_after,
        })
        .collect()
}

/// Refuses a `mirror.of` naming the cluster itself, a cluster not configured, or closing a
/// circle, naming where it was set.
/// `default`: the name of the one cluster of a file without `[cluster:…]` sections.
pub(super) fn check(raw: &RawConfig, nodes: &[Node], default: &str) -> Result<(), ConfigError> {
    let names: Vec<&str> = nodes.iter().map(|node| node.name.as_str()).collect();
    for config in nodes {
        let Some(source) = &config.of else {
            continue;
        };
        let problem = if *source == config.name {
            Some(format!("names `{source}`, this cluster itself"))
        } else if !names.contains(&source.as_str()) {
            Some(format!(
                "names `{source}`, which is not a configured cluster (configured: {})",
                names.join(", ")
            ))
        } else {
            circle(nodes, config).map(|circle| {
                format!(
                    "closes a circle of mirrors ({}): a chain needs a first cluster that \
                     mirrors none",
                    circle.join(" -> ")
                )
            })
        };
        if let Some(message) = problem {
            let entry = entry(raw, &config.name, default);
            return Err(ConfigError::Key {
                origin: entry.map_or(Origin::Default, |entry| entry.origin.clone()),
                section: entry.map_or_else(|| "admin".to_string(), |entry| entry.section.clone()),
                key: "mirror.of".to_string(),
                message,
            });
        }
    }
    Ok(())
}

/// The circle `config`'s chain of sources runs into, if it runs into one.
fn circle(nodes: &[Node], node: &Node) -> Option<Vec<String>> {
    let mut chain = vec![node.name.clone()];
    let mut current = node;
    while let Some(source) = &current.of {
        if chain.contains(source) {
            chain.push(source.clone());
            return Some(chain);
        }
        chain.push(source.clone());
        current = nodes.iter().find(|other| &other.name == source)?;
    }
    None
}

/// Where cluster `name`'s `mirror.of` was set: its own `[admin]` section, else the one all
/// clusters share.
fn entry<'a>(raw: &'a RawConfig, name: &str, default: &str) -> Option<&'a Entry> {
    let own = (name != default)
        .then(|| raw.sections.get(&cluster_section(name, "admin")))
        .flatten()
        .and_then(|keys| keys.get("mirror.of"));
    own.or_else(|| raw.sections.get("admin")?.get("mirror.of"))
}

/// Each pipeline among `nodes`: `pipeline primary -> dr: …`.
pub(super) fn describe(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .filter_map(|node| {
            let source = node.of.as_ref()?;
            let topic = node
                .topic
                .clone()
                .unwrap_or_else(|| "(the source's heartbeat topic)".to_string());
            let first = node.first.as_deref().unwrap_or(source);
            let through = if first == source {
                String::new()
            } else {
                format!(" (through {source}, measured from {first}'s send)")
            };
            Some(format!(
                "pipeline {source} -> {}: the heartbeats of {first} read from topic `{topic}` \
                 on {}{through}, lost after {} s",
                node.name,
                node.name,
                node.lost_after.as_secs_f64()
            ))
        })
        .collect()
}

/// Warnings for replicas whose source, or the first cluster of whose chain, this instance
/// does not monitor (another shard, or `--cluster` chose the replica alone): nothing of
/// theirs can be measured.
pub(super) fn unmonitored_sources(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .filter_map(|node| {
            let source = node.of.as_ref()?;
            if !nodes.iter().any(|other| &other.name == source) {
                Some(format!(
                    "cluster {} mirrors {source}, which this instance does not monitor (another \
                     shard, or --cluster): the pipeline is not measured; monitor both in one \
                     instance",
                    node.name
                ))
            } else if node.first.is_none() {
                Some(format!(
                    "cluster {} mirrors {source}, a replica whose chain starts at a cluster this \
                     instance does not monitor: the pipeline is not measured; monitor the whole \
                     chain in one instance",
                    node.name
                ))
            } else {
                None
            }
        })
        .collect()
}
