//! Configuration as read, before validation: every value with where it came from (the file's
//! section and key, or the environment variable), section names, and environment overrides.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "CC_HEARTBEAT__";

/// The sections of librdkafka properties, as opposed to `[admin]`.
pub(super) const LIBRDKAFKA_SECTIONS: [&str; 3] = ["default", "producer", "consumer"];

/// Where a configuration value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    Environment(String),
    /// A command-line option (`--log-level`).
    CommandLine(&'static str),
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Environment(variable) => write!(f, "environment variable {variable}"),
            Origin::CommandLine(option) => write!(f, "command-line option {option}"),
            Origin::Default => write!(f, "built-in default"),
        }
    }
}

/// A configuration problem a user can fix; the message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "configuration file {path} does not exist: copy config.example.ini to {path} and set \
         bootstrap.servers and the credentials in it, pass --config PATH, or run against the \
         embedded demo cluster with --demo"
    )]
    Missing { path: PathBuf },
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{origin}: unknown section [{section}] (expected one of: default, producer, consumer, admin, or cluster:NAME, cluster:NAME:producer, cluster:NAME:consumer, cluster:NAME:admin with NAME of a-z, 0-9, _; names are lower-case)")]
    UnknownSection { origin: Origin, section: String },
    #[error("{origin}: [{section}] {key}: {message}")]
    Key {
        origin: Origin,
        section: String,
        key: String,
        message: String,
    },
}

/// `Some((cluster, kind))` for a known section name: `(None, "admin")` for `[admin]`,
/// `(Some("prod"), "default")` for `[cluster:prod]`, `(Some("prod"), "admin")` for
/// `[cluster:prod:admin]`.
pub(super) fn parse_section_name(section: &str) -> Option<(Option<String>, String)> {
    let known = |kind: &str| {
        kind == "admin" || kind == "schema_registry" || LIBRDKAFKA_SECTIONS.contains(&kind)
    };
    let Some(rest) = section.strip_prefix("cluster:") else {
        return known(section).then(|| (None, section.to_string()));
    };
    let (name, kind) = rest.split_once(':').unwrap_or((rest, "default"));
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    // A cluster's librdkafka section is spelled `cluster:NAME`, never `cluster:NAME:default`.
    let spelled_default = rest.contains(':') && kind == "default";
    (valid_name && known(kind) && !spelled_default)
        .then(|| (Some(name.to_string()), kind.to_string()))
}

/// The section of `kind` for cluster `name`: `cluster:NAME` or `cluster:NAME:KIND`.
pub(super) fn cluster_section(name: &str, kind: &str) -> String {
    if kind == "default" {
        format!("cluster:{name}")
    } else {
        format!("cluster:{name}:{kind}")
    }
}

/// One configured value and where it came from.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) value: String,
    pub(super) origin: Origin,
    /// The section it was written in (`admin`, `cluster:prod:admin`, …), for error messages.
    pub(super) section: String,
}

/// Raw sections after files and environment are merged, before validation.
#[derive(Default, Clone)]
pub(super) struct RawConfig {
    pub(super) sections: BTreeMap<String, BTreeMap<String, Entry>>,
}

impl RawConfig {
    pub(super) fn set(&mut self, section: &str, key: &str, value: String, origin: Origin) {
        self.sections
            .entry(section.to_string())
            .or_default()
            .insert(
                key.to_string(),
                Entry {
                    value,
                    origin,
                    section: section.to_string(),
                },
            );
    }

    pub(super) fn section(&self, section: &str) -> BTreeMap<String, Entry> {
        self.sections.get(section).cloned().unwrap_or_default()
    }
}

/// Applies `CC_HEARTBEAT__<SECTION>__<KEY>` variables over the file's values.
pub(super) fn apply_environment(
    raw: &mut RawConfig,
    environment: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    // Per-cluster variables apply to the clusters the file declares (to `default` when it
    // declares none): a mistyped name must not start monitoring a cluster nobody configured.
    let declared: Vec<String> = raw
        .sections
        .keys()
        .filter_map(|section| parse_section_name(section).and_then(|(name, _)| name))
        .fold(Vec::new(), |mut names, name| {
            if !names.contains(&name) {
                names.push(name);
            }
            names
        });
    for (variable, value) in environment {
        let Some(rest) = variable.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        // An empty variable is an unset one (compose files pass optional settings through).
        if value.is_empty() {
            continue;
        }
        let origin = Origin::Environment(variable.clone());
        let parts: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        let (section, key) = match parts.as_slice() {
            [section, key] => (section.clone(), key),
            [cluster, section, key] if cluster.starts_with("cluster_") => {
                let name = &cluster["cluster_".len()..];
                let known = if declared.is_empty() {
                    name == "default"
                } else {
                    declared.iter().any(|declared| declared == name)
                };
                if !known {
                    let declared = if declared.is_empty() {
                        "none: the only cluster is `default`".to_string()
                    } else {
                        declared.join(", ")
                    };
                    return Err(ConfigError::Key {
                        origin,
                        section: cluster_section(name, section),
                        key: key.replace('_', "."),
                        message: format!(
                            "the file declares no cluster `{name}` ([cluster:{name}] sections); \
                             per-cluster variables apply to declared clusters only (declared: \
                             {declared})"
                        ),
                    });
                }
                (cluster_section(name, section), key)
            }
            _ => {
                return Err(ConfigError::Key {
                    origin,
                    section: String::new(),
                    key: String::new(),
                    message: format!(
                        "expected {ENV_PREFIX}<SECTION>__<KEY> or {ENV_PREFIX}CLUSTER_<NAME>__<SECTION>__<KEY>, \
                         e.g. {ENV_PREFIX}DEFAULT__SASL_PASSWORD"
                    ),
                })
            }
        };
        let key = key.replace('_', ".");
        if parse_section_name(&section).is_none() {
            return Err(ConfigError::UnknownSection { origin, section });
        }
        raw.set(&section, &key, value, origin);
    }
    Ok(())
}
