//! Configuration: the INI file of the original Python tool, environment overrides, validation.
//!
//! Sections: `[default]` (librdkafka properties for every client), `[producer]` and `[consumer]`
//! (librdkafka properties merged over `[default]`), and `[admin]` (this program's own settings,
//! see [`AdminSettings`]). Every key can be overridden by an environment variable named
//! `CC_HEARTBEAT__<SECTION>__<KEY>`, upper-case, with the key's dots written as `_`
//! (`CC_HEARTBEAT__DEFAULT__SASL_PASSWORD` sets `[default] sasl.password`).
//!
//! Every error names where the bad value came from (file, section and key, or the variable),
//! and never echoes a secret.

mod ini;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::ClientConfig;

pub use ini::LiteralIni;

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "CC_HEARTBEAT__";

/// What replaces a secret wherever configuration is shown.
pub const MASK: &str = "********";

const LIBRDKAFKA_SECTIONS: [&str; 3] = ["default", "producer", "consumer"];

/// Where a configuration value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    Environment(String),
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Environment(variable) => write!(f, "environment variable {variable}"),
            Origin::Default => write!(f, "built-in default"),
        }
    }
}

/// A configuration problem a user can fix; the message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
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

/// Name of the one cluster of a file without `[cluster:…]` sections.
pub const DEFAULT_CLUSTER: &str = "default";

/// `[admin]` keys that apply to the whole process, not to one cluster.
const PROCESS_WIDE_KEYS: [&str; 4] = [
    "log.level",
    "log.format",
    "metrics.listener.host",
    "metrics.listener.port",
];

/// `Some((cluster, kind))` for a known section name: `(None, "admin")` for `[admin]`,
/// `(Some("prod"), "default")` for `[cluster:prod]`, `(Some("prod"), "admin")` for
/// `[cluster:prod:admin]`.
fn parse_section_name(section: &str) -> Option<(Option<String>, String)> {
    let known = |kind: &str| kind == "admin" || LIBRDKAFKA_SECTIONS.contains(&kind);
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
fn cluster_section(name: &str, kind: &str) -> String {
    if kind == "default" {
        format!("cluster:{name}")
    } else {
        format!("cluster:{name}:{kind}")
    }
}

/// One configured value and where it came from.
#[derive(Clone, PartialEq, Eq)]
struct Entry {
    value: String,
    origin: Origin,
    /// The section it was written in (`admin`, `cluster:prod:admin`, …), for error messages.
    section: String,
}

/// Raw sections after files and environment are merged, before validation.
#[derive(Default, Clone)]
struct RawConfig {
    sections: BTreeMap<String, BTreeMap<String, Entry>>,
}

impl RawConfig {
    fn set(&mut self, section: &str, key: &str, value: String, origin: Origin) {
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

    fn section(&self, section: &str) -> BTreeMap<String, Entry> {
        self.sections.get(section).cloned().unwrap_or_default()
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The `[admin]` section: this program's own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminSettings {
    /// `log.level`: trace, debug, info, warning, error (Python's names are accepted too).
    pub log_level: String,
    /// `log.format`: text or json.
    pub log_format: LogFormat,
    /// `heartbeat.topic`: the topic heartbeats go through.
    pub heartbeat_topic: String,
    /// `heartbeat.topic.manage`: create the topic and add partitions (true) or only check (false).
    pub heartbeat_topic_manage: bool,
    /// `heartbeat.lost.after.seconds`: a heartbeat not consumed within this time is lost.
    pub lost_after: Duration,
    /// `latency.window.seconds`: the window of the exact latency quantile gauges.
    pub latency_window: Duration,
    /// `check.topic.period.seconds`: how often the topic's existence and size are checked.
    pub check_topic_period: Duration,
    /// `check.topic.timeout.seconds`: how long creating the topic or its partitions may take.
    pub check_topic_timeout: Duration,
    /// `check.metadata.period.seconds`: how often cluster metadata is refreshed.
    pub check_metadata_period: Duration,
    /// `check.metadata.timeout.seconds`: how long one metadata request may take.
    pub check_metadata_timeout: Duration,
    /// `check.connectivity.period.seconds`: how often every broker is connection-checked.
    pub check_connectivity_period: Duration,
    /// `check.connectivity.timeout.seconds`: how long one broker's connection check may take.
    pub check_connectivity_timeout: Duration,
    /// `check.consumer.group.period.seconds`: period of the cluster scan (topics, groups).
    pub check_consumer_group_period: Duration,
    /// `consumer.group.allow`: only groups whose name matches are reported (empty: all).
    pub consumer_group_allow: Option<Pattern>,
    /// `consumer.group.deny`: groups whose name matches are not reported (empty: none).
    pub consumer_group_deny: Option<Pattern>,
    /// `consumer.group.names`: groups always scanned, listed by the cluster or not.
    pub consumer_group_names: Vec<String>,
    /// `consumer.group.topic.allow`: only lag on matching topics is reported (empty: all).
    pub consumer_group_topic_allow: Option<Pattern>,
    /// `consumer.group.topic.deny`: lag on matching topics is not reported (empty: none).
    pub consumer_group_topic_deny: Option<Pattern>,
    /// `consumer.group.lag.seconds`: whether lag in seconds is read (it reads records).
    pub consumer_group_lag_seconds: bool,
    /// `consumer.group.lag.granularity`: per-partition series, or per-group ones only.
    pub consumer_group_lag_granularity: LagGranularity,
    /// `check.consumer.group.timeout.seconds`: how long each request of the scan may take.
    pub check_consumer_group_timeout: Duration,
    /// `produce.period.seconds`: how often one heartbeat goes to every partition.
    pub produce_period: Duration,
    /// `broker.missing.retention.seconds`: how long a vanished broker is still reported.
    pub broker_missing_retention: Duration,
    /// `metrics.listener.host`: address the HTTP server binds.
    pub metrics_listener_host: String,
    /// `metrics.listener.port`: port the HTTP server binds (0 picks a free one).
    pub metrics_listener_port: u16,
}

/// One `[admin]` key: its name, default and meaning, for parsing, `--check-config` and docs.
struct AdminKey {
    name: &'static str,
    default: &'static str,
}

const ADMIN_KEYS: &[AdminKey] = &[
    AdminKey {
        name: "log.level",
        default: "info",
    },
    AdminKey {
        name: "log.format",
        default: "text",
    },
    AdminKey {
        name: "heartbeat.topic",
        default: "cc-heartbeat",
    },
    AdminKey {
        name: "heartbeat.topic.manage",
        default: "true",
    },
    AdminKey {
        name: "heartbeat.lost.after.seconds",
        default: "20",
    },
    AdminKey {
        name: "latency.window.seconds",
        default: "60",
    },
    AdminKey {
        name: "check.topic.period.seconds",
        default: "300",
    },
    AdminKey {
        name: "check.topic.timeout.seconds",
        default: "30",
    },
    AdminKey {
        name: "check.metadata.period.seconds",
        default: "10",
    },
    AdminKey {
        name: "check.metadata.timeout.seconds",
        default: "5",
    },
    AdminKey {
        name: "check.connectivity.period.seconds",
        default: "10",
    },
    AdminKey {
        name: "check.connectivity.timeout.seconds",
        default: "5",
    },
    AdminKey {
        name: "check.consumer.group.period.seconds",
        default: "60",
    },
    AdminKey {
        name: "consumer.group.allow",
        default: "",
    },
    AdminKey {
        name: "consumer.group.deny",
        default: "",
    },
    AdminKey {
        name: "consumer.group.names",
        default: "",
    },
    AdminKey {
        name: "consumer.group.topic.allow",
        default: "",
    },
    AdminKey {
        name: "consumer.group.topic.deny",
        default: "",
    },
    AdminKey {
        name: "consumer.group.lag.seconds",
        default: "true",
    },
    AdminKey {
        name: "consumer.group.lag.granularity",
        default: "partition",
    },
    AdminKey {
        name: "check.consumer.group.timeout.seconds",
        default: "30",
    },
    AdminKey {
        name: "produce.period.seconds",
        default: "1",
    },
    AdminKey {
        name: "broker.missing.retention.seconds",
        default: "3600",
    },
    AdminKey {
        name: "metrics.listener.host",
        default: "0.0.0.0",
    },
    AdminKey {
        name: "metrics.listener.port",
        default: "8080",
    },
];

/// The validated configuration of one cluster.
#[derive(Clone)]
pub struct Config {
    /// The cluster's configured name (`default` for a file without `[cluster:…]` sections),
    /// the `cluster` label of its series.
    pub name: String,
    /// The `[admin]` settings.
    pub admin: AdminSettings,
    /// Things worth a warning at start that are not errors (never quoting a value).
    pub warnings: Vec<String>,
    default: BTreeMap<String, Entry>,
    producer: BTreeMap<String, Entry>,
    consumer: BTreeMap<String, Entry>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render_masked())
    }
}

/// Whether a librdkafka property holds a secret that must never be shown.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || key.contains("passphrase")
        || key.ends_with(".pem")
        || key == "sasl.oauthbearer.config"
        || key == "ssl.keystore.location"
}

impl Config {
    /// Loads the single cluster of `path` (the first, if it declares several).
    pub fn load(
        path: &Path,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        Ok(Self::load_clusters(path, environment)?.remove(0))
    }

    /// Loads `path`, applies `CC_HEARTBEAT__*` variables from `environment`, validates, and
    /// returns every cluster it declares (one when it has no `[cluster:…]` sections).
    pub fn load_clusters(
        path: &Path,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Vec<Config>, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::clusters_from_ini(&text, path, environment)
    }

    /// Like [`Config::load_clusters`], for a file that may be absent (demo mode, health check):
    /// absent means defaults.
    pub fn load_clusters_optional(
        path: &Path,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Vec<Config>, ConfigError> {
        if path.exists() {
            Self::load_clusters(path, environment)
        } else {
            Self::clusters_from_ini("", path, environment)
        }
    }

    /// Parses INI text as if read from `path`; the first cluster it declares.
    pub fn from_ini(
        text: &str,
        path: &Path,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        Ok(Self::clusters_from_ini(text, path, environment)?.remove(0))
    }

    /// Parses INI text as if read from `path`: every cluster it declares.
    ///
    /// Without `[cluster:NAME…]` sections the file is one cluster, named `default`. With them,
    /// each NAME is a cluster: `[cluster:NAME]` holds its librdkafka properties (as `[default]`
    /// does), `[cluster:NAME:producer]`, `[cluster:NAME:consumer]` and `[cluster:NAME:admin]`
    /// the rest, each over the top-level section of the same kind, which every cluster inherits.
    pub fn clusters_from_ini(
        text: &str,
        path: &Path,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Vec<Config>, ConfigError> {
        let sections = ini::load(text).map_err(|error| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: error.to_string(),
        })?;
        let mut raw = RawConfig::default();
        let file = Origin::File(path.to_path_buf());
        for (section, keys) in sections {
            for (key, value) in keys {
                raw.set(&section, &key, value, file.clone());
            }
            raw.sections.entry(section).or_default();
        }
        apply_environment(&mut raw, environment)?;
        let mut names: Vec<String> = Vec::new();
        for (section, keys) in &raw.sections {
            let origin = || {
                keys.values()
                    .next()
                    .map(|entry| entry.origin.clone())
                    .unwrap_or_else(|| file.clone())
            };
            match parse_section_name(section) {
                Some((None, _)) => {}
                Some((Some(name), _)) => {
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
                None => {
                    return Err(ConfigError::UnknownSection {
                        origin: origin(),
                        section: section.clone(),
                    })
                }
            }
        }
        if names.is_empty() {
            return Ok(vec![Self::validate(&raw, DEFAULT_CLUSTER)?]);
        }
        names
            .iter()
            .map(|name| {
                let mut merged = RawConfig::default();
                for kind in ["default", "producer", "consumer", "admin"] {
                    let mut entries = raw.section(kind);
                    let own = raw.section(&cluster_section(name, kind));
                    if kind == "admin" {
                        if let Some((key, entry)) = own
                            .iter()
                            .find(|(key, _)| PROCESS_WIDE_KEYS.contains(&key.as_str()))
                        {
                            return Err(ConfigError::Key {
                                origin: entry.origin.clone(),
                                section: entry.section.clone(),
                                key: key.clone(),
                                message: "applies to the whole process: set it in [admin]"
                                    .to_string(),
                            });
                        }
                    }
                    entries.extend(own);
                    merged.sections.insert(kind.to_string(), entries);
                }
                Self::validate(&merged, name)
            })
            .collect()
    }

    fn validate(raw: &RawConfig, name: &str) -> Result<Config, ConfigError> {
        let admin = parse_admin(&raw.section("admin"))?;
        let mut warnings = Vec::new();
        for keys in raw.sections.values() {
            for (key, entry) in keys {
                if matches!(entry.origin, Origin::File(_)) && entry.value.contains("%%") {
                    warnings.push(format!(
                        "[{}] {key} contains `%%`, which Python's ConfigParser read as `%`; \
                         values here are taken literally, so write a single `%` if that was meant",
                        entry.section
                    ));
                }
            }
        }
        let config = Config {
            name: name.to_string(),
            admin,
            warnings,
            default: raw.section("default"),
            producer: raw.section("producer"),
            consumer: raw.section("consumer"),
        };
        config.validate_client_properties()?;
        Ok(config)
    }

    /// How the section of `kind` (default, producer, consumer, admin) is written for this
    /// cluster.
    fn section_name(&self, kind: &str) -> String {
        if self.name == DEFAULT_CLUSTER {
            kind.to_string()
        } else {
            cluster_section(&self.name, kind)
        }
    }

    /// The user's librdkafka properties for the producer: `[default]` merged with `[producer]`.
    pub fn producer_properties(&self) -> BTreeMap<String, String> {
        merge(&self.default, &self.producer)
    }

    /// The user's librdkafka properties for the consumer: `[default]` merged with `[consumer]`.
    pub fn consumer_properties(&self) -> BTreeMap<String, String> {
        merge(&self.default, &self.consumer)
    }

    /// The user's librdkafka properties for admin and metadata requests: `[default]` only.
    pub fn admin_properties(&self) -> BTreeMap<String, String> {
        merge(&self.default, &BTreeMap::new())
    }

    /// The same configuration under another cluster name.
    pub fn named(mut self, name: &str) -> Config {
        self.name = name.to_string();
        self
    }

    /// The configuration for demo mode: the `[admin]` settings kept, every client pointed at
    /// the embedded cluster with none of the file's connection or security properties.
    pub fn for_demo(mut self, bootstrap_servers: &str) -> Config {
        self.default.clear();
        self.producer.clear();
        self.consumer.clear();
        self.set_default_property("bootstrap.servers", bootstrap_servers);
        // The mock cluster answers an empty fetch only after fetch.wait.max.ms, even when data
        // arrives meanwhile; keep that wait short so it does not dominate end-to-end latency.
        self.set_consumer_property("fetch.wait.max.ms", "5");
        self
    }

    /// Sets a property in `[consumer]`, as if configured.
    pub fn set_consumer_property(&mut self, key: &str, value: &str) {
        self.consumer.insert(
            key.to_string(),
            Entry {
                value: value.to_string(),
                origin: Origin::Default,
                section: "consumer".to_string(),
            },
        );
    }

    /// Sets a property in `[default]`, as if configured.
    pub fn set_default_property(&mut self, key: &str, value: &str) {
        self.default.insert(
            key.to_string(),
            Entry {
                value: value.to_string(),
                origin: Origin::Default,
                section: "default".to_string(),
            },
        );
    }

    /// The effective configuration as INI, every secret replaced by [`MASK`].
    pub fn render_masked(&self) -> String {
        let mut out = String::new();
        if self.name != DEFAULT_CLUSTER {
            out.push_str(&format!(
                "# cluster {}: its sections with what it inherits\n",
                self.name
            ));
        }
        for (name, keys) in [
            ("default", &self.default),
            ("producer", &self.producer),
            ("consumer", &self.consumer),
        ] {
            out.push_str(&format!("[{}]\n", self.section_name(name)));
            for (key, entry) in keys {
                let value = if is_secret(key) {
                    MASK.to_string()
                } else {
                    // Continuation lines stay indented, so no value can pose as another key.
                    entry.value.replace('\n', "\n    ")
                };
                out.push_str(&format!("{key} = {value}\n"));
            }
            out.push('\n');
        }
        out.push_str(&format!("[{}]\n", self.section_name("admin")));
        for (key, value) in self.admin.render() {
            out.push_str(&format!("{key} = {value}\n"));
        }
        out
    }

    /// Checks every librdkafka property with librdkafka itself, and SASL credentials.
    fn validate_client_properties(&self) -> Result<(), ConfigError> {
        for (own, own_name) in [(&self.producer, "producer"), (&self.consumer, "consumer")] {
            let merged = merge(&self.default, own);
            let section_of = |key: &str| -> (String, Origin) {
                match own.get(key).or_else(|| self.default.get(key)) {
                    Some(entry) => (entry.section.clone(), entry.origin.clone()),
                    None => (self.section_name("default"), Origin::Default),
                }
            };
            let mut client_config = ClientConfig::new();
            for (key, value) in &merged {
                client_config.set(key, value);
            }
            if let Err(error) = client_config.create_native_config() {
                let (key, message) = match error {
                    KafkaError::ClientConfig(_, description, key, value) => {
                        let description = if is_secret(&key) && !value.is_empty() {
                            description.replace(&value, MASK)
                        } else {
                            description
                        };
                        (key, description)
                    }
                    other => (String::new(), other.to_string()),
                };
                let (section, origin) = section_of(&key);
                return Err(ConfigError::Key {
                    origin,
                    section,
                    key,
                    message,
                });
            }
            check_sasl_credentials(&merged).map_err(|(key, message)| {
                // A missing key is reported where the setting that requires it was made.
                let (section, origin) = if merged.contains_key(&key) {
                    section_of(&key)
                } else {
                    section_of("security.protocol")
                };
                ConfigError::Key {
                    origin,
                    section,
                    key,
                    message,
                }
            })?;
            let timeout_key = ["message.timeout.ms", "delivery.timeout.ms"]
                .into_iter()
                .find(|key| merged.contains_key(*key));
            if let (Some(timeout_key), Some(entry)) =
                (timeout_key, timeout_key.and_then(|key| merged.get(key)))
            {
                if own_name == "producer" {
                    let (section, origin) = section_of(timeout_key);
                    let timeout: u64 = entry.parse().unwrap_or(0);
                    if timeout == 0 || Duration::from_millis(timeout) >= self.admin.lost_after {
                        return Err(ConfigError::Key {
                            origin,
                            section,
                            key: timeout_key.to_string(),
                            message: format!(
                                "must be between 1 and {} (below [admin] heartbeat.lost.after.seconds), \
                                 so that a heartbeat is counted either failed or lost, never both",
                                self.admin.lost_after.as_millis() - 1
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

fn merge(
    base: &BTreeMap<String, Entry>,
    over: &BTreeMap<String, Entry>,
) -> BTreeMap<String, String> {
    base.iter()
        .chain(over.iter())
        .map(|(key, entry)| (key.clone(), entry.value.clone()))
        .collect()
}

/// SASL mechanisms that need a user name and a password.
const PASSWORD_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

fn check_sasl_credentials(properties: &BTreeMap<String, String>) -> Result<(), (String, String)> {
    let protocol = properties
        .get("security.protocol")
        .map(|value| value.to_ascii_uppercase())
        .unwrap_or_default();
    if !protocol.starts_with("SASL") {
        return Ok(());
    }
    let mechanism = properties
        .get("sasl.mechanisms")
        .or_else(|| properties.get("sasl.mechanism"))
        .map(|value| value.to_ascii_uppercase())
        .unwrap_or_else(|| "GSSAPI".to_string());
    if !PASSWORD_MECHANISMS.contains(&mechanism.as_str()) {
        return Ok(());
    }
    for key in ["sasl.username", "sasl.password"] {
        if properties.get(key).is_none_or(|value| value.is_empty()) {
            return Err((
                key.to_string(),
                format!(
                    "required with security.protocol={protocol} and sasl.mechanisms={mechanism}"
                ),
            ));
        }
    }
    Ok(())
}

/// Applies `CC_HEARTBEAT__<SECTION>__<KEY>` variables over the file's values.
fn apply_environment(
    raw: &mut RawConfig,
    environment: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
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
                (cluster_section(&cluster["cluster_".len()..], section), key)
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

fn parse_admin(section: &BTreeMap<String, Entry>) -> Result<AdminSettings, ConfigError> {
    for (key, entry) in section {
        if !ADMIN_KEYS.iter().any(|known| known.name == key) {
            let known: Vec<&str> = ADMIN_KEYS.iter().map(|known| known.name).collect();
            return Err(ConfigError::Key {
                origin: entry.origin.clone(),
                section: entry.section.clone(),
                key: key.clone(),
                message: format!("unknown key (known keys: {})", known.join(", ")),
            });
        }
    }
    let reader = AdminReader { section };
    let settings = AdminSettings {
        log_level: reader.log_level()?,
        log_format: reader.parse("log.format", |value| {
            match value.to_ascii_lowercase().as_str() {
                "text" => Ok(LogFormat::Text),
                "json" => Ok(LogFormat::Json),
                _ => Err("must be text or json".to_string()),
            }
        })?,
        heartbeat_topic: reader.parse("heartbeat.topic", parse_topic_name)?,
        heartbeat_topic_manage: reader.parse("heartbeat.topic.manage", parse_bool)?,
        lost_after: reader.seconds("heartbeat.lost.after.seconds", 1.0, 3600.0)?,
        latency_window: reader.seconds("latency.window.seconds", 1.0, 86_400.0)?,
        check_topic_period: reader.seconds("check.topic.period.seconds", 1.0, 86_400.0)?,
        check_topic_timeout: reader.seconds("check.topic.timeout.seconds", 0.1, 600.0)?,
        check_metadata_period: reader.seconds("check.metadata.period.seconds", 0.1, 3600.0)?,
        check_metadata_timeout: reader.seconds("check.metadata.timeout.seconds", 0.1, 600.0)?,
        check_connectivity_period: reader.seconds(
            "check.connectivity.period.seconds",
            0.1,
            3600.0,
        )?,
        check_connectivity_timeout: reader.seconds(
            "check.connectivity.timeout.seconds",
            0.1,
            600.0,
        )?,
        check_consumer_group_period: reader.seconds(
            "check.consumer.group.period.seconds",
            1.0,
            86_400.0,
        )?,
        consumer_group_allow: reader.parse("consumer.group.allow", parse_regex)?,
        consumer_group_deny: reader.parse("consumer.group.deny", parse_regex)?,
        consumer_group_names: reader.parse("consumer.group.names", parse_names)?,
        consumer_group_topic_allow: reader.parse("consumer.group.topic.allow", parse_regex)?,
        consumer_group_topic_deny: reader.parse("consumer.group.topic.deny", parse_regex)?,
        consumer_group_lag_seconds: reader.parse("consumer.group.lag.seconds", parse_bool)?,
        consumer_group_lag_granularity: reader.parse(
            "consumer.group.lag.granularity",
            |value| match value {
                "partition" => Ok(LagGranularity::Partition),
                "group" => Ok(LagGranularity::Group),
                _ => Err("must be partition or group".to_string()),
            },
        )?,
        check_consumer_group_timeout: reader.seconds(
            "check.consumer.group.timeout.seconds",
            0.1,
            600.0,
        )?,
        produce_period: reader.seconds("produce.period.seconds", 0.01, 3600.0)?,
        broker_missing_retention: reader.seconds(
            "broker.missing.retention.seconds",
            0.0,
            30.0 * 86_400.0,
        )?,
        metrics_listener_host: reader.parse("metrics.listener.host", |value| {
            if value.is_empty() {
                Err("must not be empty".to_string())
            } else {
                Ok(value.to_string())
            }
        })?,
        metrics_listener_port: reader.parse("metrics.listener.port", |value| {
            value
                .parse::<u16>()
                .map_err(|_| "must be a port number from 0 to 65535".to_string())
        })?,
    };
    if settings.produce_period >= settings.lost_after {
        return Err(reader.error(
            "heartbeat.lost.after.seconds",
            "must be longer than produce.period.seconds".to_string(),
        ));
    }
    Ok(settings)
}

struct AdminReader<'a> {
    section: &'a BTreeMap<String, Entry>,
}

impl AdminReader<'_> {
    fn raw(&self, key: &str) -> (&str, Origin) {
        match self.section.get(key) {
            // An empty value means the default, as `int(value or default)` did in the Python tool.
            Some(entry) if !entry.value.trim().is_empty() => {
                (entry.value.as_str(), entry.origin.clone())
            }
            _ => (
                ADMIN_KEYS
                    .iter()
                    .find(|known| known.name == key)
                    .map(|known| known.default)
                    .unwrap_or_default(),
                Origin::Default,
            ),
        }
    }

    fn error(&self, key: &str, message: String) -> ConfigError {
        ConfigError::Key {
            origin: self.raw(key).1,
            section: self
                .section
                .get(key)
                .map_or_else(|| "admin".to_string(), |entry| entry.section.clone()),
            key: key.to_string(),
            message,
        }
    }

    fn parse<T>(
        &self,
        key: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let (value, _) = self.raw(key);
        parse(value.trim()).map_err(|message| self.error(key, message))
    }

    fn seconds(&self, key: &str, min: f64, max: f64) -> Result<Duration, ConfigError> {
        self.parse(key, |value| {
            let seconds: f64 = value
                .parse()
                .map_err(|_| format!("`{value}` is not a number of seconds"))?;
            if !seconds.is_finite() || seconds < min || seconds > max {
                return Err(format!(
                    "must be between {min} and {max} seconds, got {value}"
                ));
            }
            Ok(Duration::from_secs_f64(seconds))
        })
    }

    fn log_level(&self) -> Result<String, ConfigError> {
        self.parse("log.level", |value| {
            let level = match value.to_ascii_lowercase().as_str() {
                "trace" => "trace",
                "debug" => "debug",
                "info" | "notice" => "info",
                "warn" | "warning" => "warn",
                "error" | "critical" | "fatal" => "error",
                _ => return Err("must be one of trace, debug, info, warning, error".to_string()),
            };
            Ok(level.to_string())
        })
    }
}

/// How finely consumer-group lag is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LagGranularity {
    /// Per group, topic and partition (committed offset, lag, lag in seconds), and per group.
    Partition,
    /// Per group only (total and max lag, max lag in seconds): a few series per group.
    Group,
}

/// The text of an optional expression setting, empty when unset.
fn pattern_text(pattern: &Option<Pattern>) -> String {
    pattern
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// A regular expression setting, compared by its text.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

fn parse_regex(value: &str) -> Result<Option<Pattern>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    regex::Regex::new(value)
        .map(|regex| Some(Pattern(regex)))
        .map_err(|error| format!("not a valid regular expression: {error}"))
}

/// A comma-separated list; blanks around names are ignored.
fn parse_names(value: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect();
    let mut unique = std::collections::BTreeSet::new();
    match names.iter().find(|name| !unique.insert(name.as_str())) {
        Some(twice) => Err(format!("names `{twice}` twice")),
        None => Ok(names),
    }
}

fn parse_bool(value: &str) -> Result<bool, String> {
    // The values Python's configparser.getboolean accepts.
    match value.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Ok(true),
        "0" | "no" | "false" | "off" => Ok(false),
        _ => Err(format!(
            "`{value}` is not a boolean (true/false, yes/no, on/off, 1/0)"
        )),
    }
}

fn parse_topic_name(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value.len() <= 249
        && value != "."
        && value != ".."
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(value.to_string())
    } else {
        Err(format!(
            "`{value}` is not a valid Kafka topic name (1-249 characters of a-z, A-Z, 0-9, '.', '_', '-')"
        ))
    }
}

impl AdminSettings {
    /// Key/value pairs as they would be written in `[admin]`.
    pub fn render(&self) -> Vec<(&'static str, String)> {
        let seconds = |duration: &Duration| format!("{}", duration.as_secs_f64());
        vec![
            ("log.level", self.log_level.clone()),
            (
                "log.format",
                match self.log_format {
                    LogFormat::Text => "text".to_string(),
                    LogFormat::Json => "json".to_string(),
                },
            ),
            ("heartbeat.topic", self.heartbeat_topic.clone()),
            (
                "heartbeat.topic.manage",
                self.heartbeat_topic_manage.to_string(),
            ),
            ("heartbeat.lost.after.seconds", seconds(&self.lost_after)),
            ("latency.window.seconds", seconds(&self.latency_window)),
            (
                "check.topic.period.seconds",
                seconds(&self.check_topic_period),
            ),
            (
                "check.topic.timeout.seconds",
                seconds(&self.check_topic_timeout),
            ),
            (
                "check.metadata.period.seconds",
                seconds(&self.check_metadata_period),
            ),
            (
                "check.metadata.timeout.seconds",
                seconds(&self.check_metadata_timeout),
            ),
            (
                "check.connectivity.period.seconds",
                seconds(&self.check_connectivity_period),
            ),
            (
                "check.connectivity.timeout.seconds",
                seconds(&self.check_connectivity_timeout),
            ),
            (
                "check.consumer.group.period.seconds",
                seconds(&self.check_consumer_group_period),
            ),
            (
                "consumer.group.allow",
                pattern_text(&self.consumer_group_allow),
            ),
            (
                "consumer.group.deny",
                pattern_text(&self.consumer_group_deny),
            ),
            ("consumer.group.names", self.consumer_group_names.join(",")),
            (
                "consumer.group.topic.allow",
                pattern_text(&self.consumer_group_topic_allow),
            ),
            (
                "consumer.group.topic.deny",
                pattern_text(&self.consumer_group_topic_deny),
            ),
            (
                "consumer.group.lag.seconds",
                self.consumer_group_lag_seconds.to_string(),
            ),
            (
                "consumer.group.lag.granularity",
                match self.consumer_group_lag_granularity {
                    LagGranularity::Partition => "partition",
                    LagGranularity::Group => "group",
                }
                .to_string(),
            ),
            (
                "check.consumer.group.timeout.seconds",
                seconds(&self.check_consumer_group_timeout),
            ),
            ("produce.period.seconds", seconds(&self.produce_period)),
            (
                "broker.missing.retention.seconds",
                seconds(&self.broker_missing_retention),
            ),
            ("metrics.listener.host", self.metrics_listener_host.clone()),
            (
                "metrics.listener.port",
                self.metrics_listener_port.to_string(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, environment: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let environment = environment
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()));
        Config::from_ini(text, Path::new("test.ini"), environment)
    }

    #[test]
    fn defaults_apply_to_an_empty_file() {
        let config = load("", &[]).unwrap();
        assert_eq!(config.admin.heartbeat_topic, "cc-heartbeat");
        assert_eq!(config.admin.produce_period, Duration::from_secs(1));
        assert_eq!(config.admin.check_metadata_period, Duration::from_secs(10));
        assert_eq!(config.admin.lost_after, Duration::from_secs(20));
        assert_eq!(config.admin.metrics_listener_port, 8080);
        assert!(config.admin.heartbeat_topic_manage);
    }

    #[test]
    fn python_tool_file_is_accepted() {
        let text =
            "[default]\nbootstrap.servers=pkc-1.example.com:9092\nsecurity.protocol=SASL_SSL\n\
            sasl.mechanisms=PLAIN\nsasl.username=KEY\nsasl.password=p\"a'ss\\word\n\n\
            [producer]\nacks=all\n\n[consumer]\nauto.offset.reset=latest\n\n\
            [admin]\nlog.level=INFO\nheartbeat.topic=hb\ncheck.topic.period.seconds=60\n\
            check.metadata.period.seconds=30\ncheck.connectivity.period.seconds=15\n\
            check.consumer.group.period.seconds=60\nproduce.period.seconds=2\n\
            metrics.listener.host=127.0.0.1\nmetrics.listener.port=9100\n";
        let config = load(text, &[]).unwrap();
        assert_eq!(
            config.producer_properties()["sasl.password"],
            "p\"a'ss\\word"
        );
        assert_eq!(config.producer_properties()["acks"], "all");
        assert!(!config.consumer_properties().contains_key("acks"));
        assert_eq!(config.admin.log_level, "info");
        assert_eq!(config.admin.produce_period, Duration::from_secs(2));
        assert_eq!(config.admin.metrics_listener_port, 9100);
    }

    #[test]
    fn environment_overrides_file() {
        let text = "[default]\nbootstrap.servers=a:9092\n[admin]\nheartbeat.topic=from-file\n";
        let config = load(
            text,
            &[
                ("CC_HEARTBEAT__ADMIN__HEARTBEAT_TOPIC", "from-env"),
                ("CC_HEARTBEAT__DEFAULT__BOOTSTRAP_SERVERS", "b:9092"),
                ("UNRELATED", "x"),
            ],
        )
        .unwrap();
        assert_eq!(config.admin.heartbeat_topic, "from-env");
        assert_eq!(config.admin_properties()["bootstrap.servers"], "b:9092");
    }

    #[test]
    fn errors_name_file_section_and_key() {
        let error = load("[admin]\nproduce.period.seconds=fast\n", &[]).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("test.ini"), "{message}");
        assert!(
            message.contains("[admin] produce.period.seconds"),
            "{message}"
        );

        let error = load("[admin]\nno.such.key=1\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("[admin] no.such.key: unknown key"),
            "{error}"
        );

        let error = load("[default]\nno.such.property=1\n", &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("[default] no.such.property"), "{error}");

        let error = load("[producer]\nacks=sometimes\n", &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("[producer] acks"), "{error}");

        let error = load("[admin]\nmetrics.listener.port=70000\n", &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("metrics.listener.port"), "{error}");

        let error = load("[kafka]\nx=1\n", &[]).unwrap_err().to_string();
        assert!(error.contains("unknown section [kafka]"), "{error}");

        let error = load("", &[("CC_HEARTBEAT__ADMIN__PRODUCE_PERIOD_SECONDS", "-1")])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("CC_HEARTBEAT__ADMIN__PRODUCE_PERIOD_SECONDS")
                && error.contains("produce.period.seconds"),
            "{error}"
        );
    }

    #[test]
    fn sasl_without_password_is_rejected() {
        let text =
            "[default]\nsecurity.protocol=SASL_SSL\nsasl.mechanisms=PLAIN\nsasl.username=u\n";
        let error = load(text, &[]).unwrap_err().to_string();
        assert!(
            error.contains("[default] sasl.password: required"),
            "{error}"
        );
    }

    #[test]
    fn message_timeout_must_be_below_the_lost_deadline() {
        let error = load("[producer]\nmessage.timeout.ms=60000\n", &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("[producer] message.timeout.ms"), "{error}");
    }

    #[test]
    fn secrets_are_masked() {
        let text =
            "[default]\nsasl.username=u\nsasl.password=hunter2secret\nssl.key.password=k3y\n";
        let config = load(text, &[]).unwrap();
        let rendered = config.render_masked();
        assert!(
            !rendered.contains("hunter2secret") && !rendered.contains("k3y"),
            "{rendered}"
        );
        assert!(rendered.contains("sasl.password = ********"));
        assert!(!format!("{config:?}").contains("hunter2secret"));
    }

    #[test]
    fn example_file_is_valid_and_documents_every_admin_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.ini");
        let config = Config::load(&path, std::iter::empty()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        for key in ADMIN_KEYS {
            let line = format!("{} = {}", key.name, key.default);
            let line = line.trim_end();
            assert!(text.contains(line), "config.example.ini lacks `{line}`");
        }
        assert_eq!(config.admin, load("", &[]).unwrap().admin);
    }

    #[test]
    fn example_file_and_readme_name_exactly_the_declared_admin_keys() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let declared: std::collections::BTreeSet<&str> =
            ADMIN_KEYS.iter().map(|key| key.name).collect();

        let example = std::fs::read_to_string(root.join("config.example.ini")).unwrap();
        let sections = super::ini::parse(&example).unwrap();
        let in_example: std::collections::BTreeSet<&str> = sections
            .iter()
            .filter(|(section, _)| section == "admin")
            .flat_map(|(_, keys)| keys.iter().map(|(key, _)| key.as_str()))
            .collect();
        assert_eq!(in_example, declared, "config.example.ini [admin]");

        // The README's bullet that lists them: "- `[admin]`: … `key`, `key` …" up to the
        // next bullet or blank line.
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let start = readme
            .find("- `[admin]`:")
            .expect("README lists the [admin] keys");
        let bullet: String = readme[start..]
            .lines()
            .enumerate()
            .take_while(|(index, line)| {
                *index == 0 || !(line.trim().is_empty() || line.starts_with("- "))
            })
            .map(|(_, line)| line)
            .collect::<Vec<_>>()
            .join(" ");
        let in_readme: std::collections::BTreeSet<&str> = bullet
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|token| *token != "[admin]")
            .collect();
        assert_eq!(in_readme, declared, "README's [admin] list");
    }

    #[test]
    fn blank_admin_values_mean_the_default() {
        let config = load("[admin]\ncheck.consumer.group.period.seconds =\n", &[]).unwrap();
        assert_eq!(
            config.admin.check_consumer_group_period,
            Duration::from_secs(60)
        );
    }

    #[test]
    fn delivery_timeout_alias_is_checked_too() {
        let error = load("[producer]\ndelivery.timeout.ms=30000\n", &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("[producer] delivery.timeout.ms"), "{error}");
    }

    #[test]
    fn python_escaped_percent_is_warned_about() {
        let config = load("[default]\nsasl.password = a%%b\n", &[]).unwrap();
        assert_eq!(config.producer_properties()["sasl.password"], "a%%b");
        assert_eq!(config.warnings.len(), 1);
        assert!(!config.warnings[0].contains("a%%b"));
    }

    #[test]
    fn multi_line_values_cannot_pose_as_keys_when_shown() {
        let config = load("[default]\nclient.rack = a\n  sasl.password = x\n", &[]).unwrap();
        let rendered = config.render_masked();
        assert!(
            rendered.contains("client.rack = a\n    sasl.password = x"),
            "{rendered}"
        );
        let reparsed = super::ini::parse(&rendered).unwrap();
        assert!(reparsed[0].1.iter().all(|(key, _)| key != "sasl.password"));
    }

    #[test]
    fn secrets_in_the_environment_are_masked() {
        let config = load(
            "",
            &[("CC_HEARTBEAT__DEFAULT__SASL_PASSWORD", "from-env-secret")],
        )
        .unwrap();
        assert!(!config.render_masked().contains("from-env-secret"));
        assert_eq!(
            config.admin_properties()["sasl.password"],
            "from-env-secret"
        );
    }

    #[test]
    fn empty_environment_variables_are_unset() {
        let config = load(
            "[default]\nsecurity.protocol = SSL\n",
            &[("CC_HEARTBEAT__DEFAULT__SECURITY_PROTOCOL", "")],
        )
        .unwrap();
        assert_eq!(config.admin_properties()["security.protocol"], "SSL");
    }

    fn clusters(text: &str, environment: &[(&str, &str)]) -> Result<Vec<Config>, ConfigError> {
        let environment = environment
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()));
        Config::clusters_from_ini(text, Path::new("test.ini"), environment)
    }

    const TWO_CLUSTERS: &str = "[default]\nsecurity.protocol = SASL_SSL\nsasl.mechanisms = PLAIN\n\
        sasl.username = shared\nsasl.password = shared-secret\n\
        [admin]\nproduce.period.seconds = 2\nmetrics.listener.port = 9100\n\
        [cluster:east]\nbootstrap.servers = east:9092\n\
        [cluster:west]\nbootstrap.servers = west:9092\nsasl.username = west-key\n\
        [cluster:west:admin]\nheartbeat.topic = west-heartbeat\n\
        [cluster:west:producer]\nacks = 1\n";

    #[test]
    fn clusters_inherit_the_top_level_and_override_it() {
        let configs = clusters(TWO_CLUSTERS, &[]).unwrap();
        let names: Vec<&str> = configs.iter().map(|config| config.name.as_str()).collect();
        assert_eq!(names, vec!["east", "west"]);
        let (east, west) = (&configs[0], &configs[1]);
        assert_eq!(east.admin_properties()["bootstrap.servers"], "east:9092");
        assert_eq!(east.admin_properties()["sasl.username"], "shared");
        assert_eq!(west.admin_properties()["sasl.username"], "west-key");
        assert_eq!(west.admin_properties()["sasl.password"], "shared-secret");
        assert_eq!(east.admin.heartbeat_topic, "cc-heartbeat");
        assert_eq!(west.admin.heartbeat_topic, "west-heartbeat");
        assert_eq!(
            west.admin.produce_period,
            Duration::from_secs(2),
            "inherited [admin]"
        );
        assert_eq!(west.producer_properties()["acks"], "1");
        assert!(!east.producer_properties().contains_key("acks"));
        assert!(west.render_masked().contains("[cluster:west:admin]"));
        assert!(!west.render_masked().contains("shared-secret"));
    }

    #[test]
    fn lag_settings_are_parsed_and_bad_ones_named() {
        let config = load(
            "[admin]\nconsumer.group.names = billing, orders-service ,\n\
             consumer.group.topic.allow = ^orders\nconsumer.group.lag.granularity = group\n\
             consumer.group.lag.seconds = off\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            config.admin.consumer_group_names,
            ["billing", "orders-service"]
        );
        assert_eq!(
            config.admin.consumer_group_lag_granularity,
            LagGranularity::Group
        );
        assert!(!config.admin.consumer_group_lag_seconds);
        assert!(config.admin.consumer_group_topic_deny.is_none());
        let defaults = load("", &[]).unwrap();
        assert_eq!(
            defaults.admin.consumer_group_lag_granularity,
            LagGranularity::Partition
        );
        assert!(defaults.admin.consumer_group_names.is_empty());

        for (text, expected) in [
            (
                "consumer.group.names = a, b, a",
                "consumer.group.names: names `a` twice",
            ),
            (
                "consumer.group.lag.granularity = topic",
                "consumer.group.lag.granularity: must be partition or group",
            ),
            (
                "consumer.group.topic.deny = (",
                "consumer.group.topic.deny: not a valid regular expression",
            ),
        ] {
            let error = load(&format!("[admin]\n{text}\n"), &[])
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn a_file_without_cluster_sections_is_one_cluster_named_default() {
        let configs = clusters("[default]\nbootstrap.servers = a:9092\n", &[]).unwrap();
        assert_eq!(configs.len(), 1);
        assert_eq!(configs[0].name, DEFAULT_CLUSTER);
    }

    #[test]
    fn environment_overrides_work_per_cluster() {
        let configs = clusters(
            TWO_CLUSTERS,
            &[
                (
                    "CC_HEARTBEAT__CLUSTER_EAST__DEFAULT__SASL_PASSWORD",
                    "east-secret",
                ),
                (
                    "CC_HEARTBEAT__CLUSTER_WEST__ADMIN__HEARTBEAT_TOPIC",
                    "from-env",
                ),
            ],
        )
        .unwrap();
        assert_eq!(
            configs[0].admin_properties()["sasl.password"],
            "east-secret"
        );
        assert_eq!(
            configs[1].admin_properties()["sasl.password"],
            "shared-secret"
        );
        assert_eq!(configs[1].admin.heartbeat_topic, "from-env");
    }

    #[test]
    fn errors_name_the_cluster_section_and_key() {
        let text = format!("{TWO_CLUSTERS}[cluster:east:admin]\nproduce.period.seconds = soon\n");
        let error = clusters(&text, &[]).unwrap_err().to_string();
        assert!(
            error.contains("[cluster:east:admin] produce.period.seconds"),
            "{error}"
        );

        let text = format!("{TWO_CLUSTERS}[cluster:east:admin]\nmetrics.listener.port = 1\n");
        let error = clusters(&text, &[]).unwrap_err().to_string();
        assert!(
            error.contains(
                "[cluster:east:admin] metrics.listener.port: applies to the whole process"
            ),
            "{error}"
        );

        let text = format!("{TWO_CLUSTERS}[cluster:east]\nacks = sometimes\n");
        let error = clusters(
            &text.replace("[cluster:east]\nbootstrap.servers = east:9092\n", ""),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("[cluster:east] acks"), "{error}");

        let error = clusters("[cluster:East]\nbootstrap.servers = a:1\n", &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown section [cluster:East]"), "{error}");
        let error = clusters("[cluster:a:default]\nx = 1\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("unknown section [cluster:a:default]"),
            "{error}"
        );
    }
}
