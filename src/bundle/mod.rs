//! `cc-heartbeat bundle`: one file to attach to a support ticket,
//! `cc-heartbeat-bundle-<cluster>-<UTC timestamp>.tar.gz`, holding what each file is
//! (`manifest.json`), version and build, the effective configuration with every secret masked,
//! a `check` report, a metadata snapshot, and, from a running exporter (`--from`), its
//! `/metrics`, `/ready` and last warnings and errors. With `--redact`, host names, addresses,
//! topic and group names and the cluster id are replaced by stable short hashes everywhere.
//! No message content is ever read.
//!
//! - `contents`: version, configuration, metadata, and what a running exporter serves;
//! - `redact`: the names hidden, and their hashes.

mod contents;
mod redact;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::json;

use self::redact::{Kind, Redactor};
use crate::check::Report;
use crate::config::{Config, MASK};
use crate::logging;

/// How the bundle is made.
#[derive(Debug, Clone)]
pub struct Options {
    /// A running exporter to read `/metrics`, `/ready` and `/debug/events` from.
    pub from: Option<String>,
    pub redact: bool,
    /// The directory the bundle is written to.
    pub output: PathBuf,
    /// The check's timeout.
    pub timeout: Duration,
}

/// Why the bundle could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot write the bundle {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The bundle written, and what could not go into it.
#[derive(Debug)]
pub struct Written {
    pub path: PathBuf,
    /// Parts left out, with why (a running exporter that did not answer).
    pub missing: Vec<String>,
}

/// One file of the bundle.
struct Part {
    name: &'static str,
    what: &'static str,
    text: String,
}

/// Checks the clusters of `configs`, gathers the rest, and writes the bundle.
pub async fn write(configs: Vec<Config>, options: &Options) -> Result<Written, BundleError> {
    let created = SystemTime::now();
    let stamp = humantime::format_rfc3339_seconds(created)
        .to_string()
        .replace(['-', ':'], "");
    let cluster = match configs.as_slice() {
        [one] => one.name.clone(),
        _ => "all".to_string(),
    };
    let base = format!("cc-heartbeat-bundle-{cluster}-{stamp}");
    let report: Report = crate::check::run(configs.clone(), options.timeout).await;
    let mut snapshots = Vec::new();
    for (config, cluster) in configs.iter().zip(&report.clusters) {
        snapshots.push(contents::metadata(config, cluster, options.timeout).await);
    }
    let mut parts = vec![
        Part {
            name: "version.json",
            what: "cc-heartbeat's version and build, librdkafka's version and built-in features",
            text: pretty(&contents::version_info()),
        },
        Part {
            name: "config.ini",
            what: "the effective configuration and every client's settings, secrets masked",
            text: contents::configuration(&configs),
        },
        Part {
            name: "check.txt",
            what: "`cc-heartbeat check`: every check once, with what to fix",
            text: report.text(),
        },
        Part {
            name: "check.json",
            what: "the same check as JSON (its shape is in docs/oncall.md)",
            text: pretty(&report),
        },
        Part {
            name: "metadata.json",
            what: "brokers and racks, topic and partition counts, the heartbeat topic's layout",
            text: pretty(&snapshots),
        },
        Part {
            name: "events.json",
            what: "the warnings and errors the check logged",
            text: pretty(&json!({ "events": logging::recent_events() })),
        },
    ];
    let mut missing = Vec::new();
    if let Some(from) = &options.from {
        for (name, path, what) in [
            (
                "exporter-metrics.txt",
                "/metrics",
                "the running exporter's /metrics",
            ),
            (
                "exporter-ready.json",
                "/ready",
                "the running exporter's /ready",
            ),
            (
                "exporter-events.json",
                "/debug/events",
                "the running exporter's last warnings and errors, secrets masked",
            ),
        ] {
            match contents::fetch(from, path).await {
                Ok(text) => parts.push(Part { name, what, text }),
                Err(error) => missing.push(format!("{name}: {error}")),
            }
        }
    }
    let own = Config::own_names();
    let mut redactor = options
        .redact
        .then(|| Redactor::keeping(own.iter().map(String::as_str)));
    if let Some(redactor) = &mut redactor {
        collect_names(redactor, &configs, &report, &snapshots, &parts);
    }
    let secrets: Vec<String> = configs.iter().flat_map(Config::secret_values).collect();
    // Secrets first: a secret that holds a hidden name must not come out as its hash.
    let finish = |text: &str| {
        let text = mask(text, &secrets);
        redactor
            .as_ref()
            .map_or_else(|| text.clone(), |redactor| redactor.apply(&text))
    };
    let mut files: Vec<(String, String)> = parts
        .iter()
        .map(|part| (part.name.to_string(), finish(&part.text)))
        .collect();
    let manifest = json!({
        "version": 1,
        "created_at": humantime::format_rfc3339_seconds(created).to_string(),
        "cluster": cluster,
        "redacted": options.redact,
        "secrets": "masked as ********",
        "files": parts.iter().map(|part| json!({ "name": part.name, "what": part.what })).collect::<Vec<_>>(),
        "missing": missing.iter().map(|missing| finish(missing)).collect::<Vec<_>>(),
    });
    files.insert(0, ("manifest.json".to_string(), pretty(&manifest)));
    let path = options.output.join(format!("{base}.tar.gz"));
    archive(&path, &base, &files).map_err(|source| BundleError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(Written { path, missing })
}

/// Every name `--redact` hides: hosts and addresses (bootstrap servers, brokers, certificate
/// names), topics, groups and cluster ids, from the configuration, the check, metadata and
/// the running exporter's series.
fn collect_names(
    redactor: &mut Redactor,
    configs: &[Config],
    report: &Report,
    snapshots: &[contents::MetadataSnapshot],
    parts: &[Part],
) {
    for config in configs {
        for server in config
            .admin_properties()
            .get("bootstrap.servers")
            .map(String::as_str)
            .unwrap_or_default()
            .split(',')
        {
            let server = server.trim();
            let server = server.split_once("://").map_or(server, |(_, rest)| rest);
            redactor.hide(Kind::Host, host_of(server));
        }
        if let Some(registry) = &config.schema_registry {
            if let Some(host) = url::Url::parse(&registry.url)
                .ok()
                .and_then(|url| url.host_str().map(str::to_string))
            {
                redactor.hide(Kind::Host, &host);
            }
        }
        redactor.hide(Kind::Topic, &config.admin.heartbeat_topic);
        redactor.hide(Kind::Group, &config.consumer_group_id());
        for properties in [config.producer_properties(), config.consumer_properties()] {
            if let Some(user) = properties.get("sasl.username") {
                redactor.hide(Kind::User, user);
            }
        }
        for group in &config.admin.consumer_group_names {
            redactor.hide(Kind::Group, group);
        }
    }
    for cluster in &report.clusters {
        for connection in &cluster.connections {
            redactor.hide(Kind::Host, host_of(&connection.address));
            if let Some(certificate) = &connection.certificate {
                for names in [&certificate.subject, &certificate.issuer] {
                    for part in names.split(", ") {
                        if let Some((_, value)) = part.split_once('=') {
                            redactor.hide(Kind::Name, value);
                        }
                    }
                }
            }
        }
        for broker in &cluster.metadata.brokers {
            redactor.hide(Kind::Host, host_of(&broker.address));
        }
        if let Some(id) = &cluster.metadata.cluster_id {
            redactor.hide(Kind::Cluster, id);
        }
    }
    for snapshot in snapshots {
        for topic in &snapshot.topic_names {
            redactor.hide(Kind::Topic, topic);
        }
    }
    for part in parts {
        if part.name.ends_with("metrics.txt") {
            redactor.hide_label_values(Kind::Group, &part.text, "group");
            redactor.hide_label_values(Kind::Topic, &part.text, "topic");
            redactor.hide_label_values(Kind::Cluster, &part.text, "cluster_id");
            redactor.hide_label_values(Kind::Host, &part.text, "host");
        }
    }
}

/// The host of `host:port` (IPv6 brackets dropped).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            host
        } else {
            address
        }
    });
    host.trim_matches(['[', ']'])
}

/// `text` with every secret value replaced by the mask: nothing the configuration holds as a
/// secret leaves in the bundle, whatever a part quotes.
fn mask(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_string();
    for secret in secrets.iter().filter(|secret| !secret.is_empty()) {
        // As written, and as JSON or Rust's Debug would escape it.
        let escaped = serde_json::to_string(secret).unwrap_or_default();
        let escaped = escaped.trim_matches('"');
        for form in [secret.as_str(), escaped] {
            if !form.is_empty() {
                text = text.replace(form, MASK);
            }
        }
    }
    text
}

/// Writes `files` as `<base>/<name>` into a gzipped tar at `path`.
fn archive(path: &Path, base: &str, files: &[(String, String)]) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let encoder = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut builder = tar::Builder::new(encoder);
    let modified = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    for (name, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(modified);
        header.set_cksum();
        builder.append_data(&mut header, format!("{base}/{name}"), text.as_bytes())?;
    }
    builder.into_inner()?.finish()?.sync_all()
}

/// Pretty JSON of whatever serialises.
fn pretty<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}
