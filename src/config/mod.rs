//! Configuration: the INI file of the original Python tool, environment overrides, validation.
//!
//! Sections: `[default]` (librdkafka properties for every client), `[producer]` and `[consumer]`
//! (librdkafka properties merged over `[default]`), `[admin]` (this program's own settings,
//! see [`AdminSettings`]), and the optional `[schema_registry]` (see
//! [`SchemaRegistrySettings`]). Every key can be overridden by an environment variable named
//! `CC_HEARTBEAT__<SECTION>__<KEY>`, upper-case, with the key's dots written as `_`
//! (`CC_HEARTBEAT__DEFAULT__SASL_PASSWORD` sets `[default] sasl.password`).
//!
//! Every error names where the bad value came from (file, section and key, or the variable),
//! and never echoes a secret.
//!
//! - `ini`: the literal INI reader;
//! - `raw`: values with their origin, section names, environment overrides;
//! - `admin`: the `[admin]` keys, each declared once;
//! - `kinds`: how each kind of `[admin]` value is parsed and shown;
//! - `properties`: librdkafka properties: merging, secrets, SASL credentials;
//! - `mirrors`: replication pipelines between the configured clusters (`mirror.of`), checked;
//! - `oauth`: signing in with OAuth (OIDC client credentials): librdkafka's keys, read by the
//!   exporter, which fetches the tokens;
//! - `schema_registry`: the optional `[schema_registry]` section;
//! - `secret_files`: `sasl.username.file` and `sasl.password.file`, read into the keys they
//!   stand for;
//! - `shard`: which of the `[cluster:…]` sections an instance of several monitors.

mod admin;
mod ini;
mod kinds;
mod mirrors;
mod oauth;
mod properties;
mod raw;
mod schema_registry;
mod secret_files;
mod shard;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::ClientConfig;

pub use self::admin::{
    AdminSettings, LagGranularity, LatencyGranularity, LogFormat, LATENCY_PARTITIONS_AUTO,
    MAX_IN_FLIGHT_PER_PARTITION,
};
pub use self::kinds::Pattern;
pub use self::oauth::OAuthSettings;
pub use self::properties::{is_secret, sasl_mechanism, MASK};
pub use self::raw::{ConfigError, Origin, ENV_PREFIX};
pub use self::schema_registry::SchemaRegistrySettings;
pub use self::shard::{shard_of, Shard, ShardError};

use self::admin::is_process_wide;
use self::oauth::is_oauth_key;
use self::properties::{check_sasl_credentials, merge};
use self::raw::{apply_environment, cluster_section, parse_section_name, Entry, RawConfig};

/// The consumers' group when `[consumer] group.id` does not set one.
pub const DEFAULT_GROUP_ID: &str = "cc-heartbeat";

/// Name of the one cluster of a file without `[cluster:…]` sections.
pub const DEFAULT_CLUSTER: &str = "default";

/// A setting given as a command-line option, which goes over the file and the environment:
/// `--log-level debug` is `[admin] log.level = debug`, validated and shown as the key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLineSetting {
    /// The option, for messages: `--log-level`.
    pub option: &'static str,
    pub section: &'static str,
    pub key: &'static str,
    pub value: String,
}

/// The validated configuration of one cluster.
#[derive(Clone)]
pub struct Config {
    /// The cluster's configured name (`default` for a file without `[cluster:…]` sections),
    /// the `cluster` label of its series.
    pub name: String,
    /// The `[admin]` settings.
    pub admin: AdminSettings,
    /// The `[schema_registry]` to probe, if one is configured.
    pub schema_registry: Option<SchemaRegistrySettings>,
    /// How the clients sign in through an identity provider, when they use OAuth.
    pub oauth: Option<OAuthSettings>,
    /// Things worth a warning at start that are not errors (never quoting a value).
    pub warnings: Vec<String>,
    /// The files credentials were read from (`sasl.password.file`, …), watched for rotation.
    pub secret_files: Vec<PathBuf>,
    default: BTreeMap<String, Entry>,
    producer: BTreeMap<String, Entry>,
    consumer: BTreeMap<String, Entry>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render_masked())
    }
}

impl Config {
    /// Loads the single cluster of `path` (the first, if it declares several).
    pub fn load(
        path: &Path,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        Ok(Self::load_clusters(path, environment, &[])?.remove(0))
    }

    /// The clusters of `configs` that `shard` monitors.
    pub fn in_shard(configs: Vec<Config>, shard: Shard) -> Vec<Config> {
        configs
            .into_iter()
            .filter(|config| shard.owns(&config.name))
            .collect()
    }

    /// Loads `path`, applies `CC_HEARTBEAT__*` variables from `environment`, validates, and
    /// returns every cluster it declares (one when it has no `[cluster:…]` sections).
    /// `command_line` settings (`--log-level`) go over both.
    pub fn load_clusters(
        path: &Path,
        environment: impl IntoIterator<Item = (String, String)>,
        command_line: &[CommandLineSetting],
    ) -> Result<Vec<Config>, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ConfigError::Missing {
                    path: path.to_path_buf(),
                }
            } else {
                ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        let configs = Self::parse(&text, path, environment, command_line)?;
        for config in &configs {
            config.require_bootstrap_servers(path)?;
        }
        Ok(configs)
    }

    /// Like [`Config::load_clusters`], for a file that may be absent (demo mode, health check):
    /// absent means defaults, and no cluster needs `bootstrap.servers` (the demo brings its
    /// own, the health check asks the local exporter).
    pub fn load_clusters_optional(
        path: &Path,
        environment: impl IntoIterator<Item = (String, String)>,
        command_line: &[CommandLineSetting],
    ) -> Result<Vec<Config>, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path, environment, command_line),
            Err(source) if source.kind() == std::io::ErrorKind::NotFound => {
                Self::parse("", path, environment, command_line)
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
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
        Self::parse(text, path, environment, &[])
    }

    /// [`Config::clusters_from_ini`] with settings from the command line over the rest.
    fn parse(
        text: &str,
        path: &Path,
        environment: impl IntoIterator<Item = (String, String)>,
        command_line: &[CommandLineSetting],
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
        for setting in command_line {
            raw.set(
                setting.section,
                setting.key,
                setting.value.clone(),
                Origin::CommandLine(setting.option),
            );
        }
        let secret_files = secret_files::resolve(&mut raw)?;
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
            let configs = vec![Self::validate(&raw, DEFAULT_CLUSTER, &secret_files)?];
            mirrors::check(
                &raw,
                &mirrors::nodes(&Self::links(&configs)),
                DEFAULT_CLUSTER,
            )?;
            return Ok(configs);
        }
        let configs = names
            .iter()
            .map(|name| {
                let mut merged = RawConfig::default();
                for kind in [
                    "default",
                    "producer",
                    "consumer",
                    "admin",
                    "schema_registry",
                ] {
                    let mut entries = raw.section(kind);
                    let own = raw.section(&cluster_section(name, kind));
                    if kind == "admin" {
                        if let Some((key, entry)) = own.iter().find(|(key, _)| is_process_wide(key))
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
                Self::validate(&merged, name, &secret_files)
            })
            .collect::<Result<Vec<_>, _>>()?;
        mirrors::check(
            &raw,
            &mirrors::nodes(&Self::links(&configs)),
            DEFAULT_CLUSTER,
        )?;
        Ok(configs)
    }

    fn validate(
        raw: &RawConfig,
        name: &str,
        secret_files: &[PathBuf],
    ) -> Result<Config, ConfigError> {
        let admin_section = raw.section("admin");
        let admin = AdminSettings::parse(&admin_section)?;
        let schema_registry = SchemaRegistrySettings::parse(&raw.section("schema_registry"))?;
        let mut warnings = admin.warnings(&admin_section);
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
        let (producer, default) = (raw.section("producer"), raw.section("default"));
        let oauth = OAuthSettings::parse(
            &default,
            [
                ("producer", &producer),
                ("consumer", &raw.section("consumer")),
            ],
            &mut warnings,
        )?;
        if let Some(linger) = producer
            .get("linger.ms")
            .or_else(|| default.get("linger.ms"))
            .filter(|linger| linger.value.trim() != "0")
        {
            warnings.push(format!(
                "[{}] linger.ms is ignored by the heartbeat producer: heartbeats are sent \
                 without batching delay",
                linger.section
            ));
        }
        let config = Config {
            name: name.to_string(),
            admin,
            schema_registry,
            oauth,
            warnings,
            secret_files: secret_files.to_vec(),
            default: raw.section("default"),
            producer: raw.section("producer"),
            consumer: raw.section("consumer"),
        };
        config.validate_client_properties()?;
        Ok(config)
    }

    /// Refuses a cluster that names no broker to reach: without `bootstrap.servers` in its
    /// `[default]` (or `[cluster:NAME]`), every client would fail with a transport error that
    /// says nothing of the missing key. Set only in `[producer]` or `[consumer]`, it would
    /// reach only that client: the metadata, scan and check clients read `[default]`.
    fn require_bootstrap_servers(&self, path: &Path) -> Result<(), ConfigError> {
        if self
            .default
            .get("bootstrap.servers")
            .is_some_and(|entry| !entry.value.trim().is_empty())
        {
            return Ok(());
        }
        let elsewhere: Vec<String> = [(&self.producer, "producer"), (&self.consumer, "consumer")]
            .into_iter()
            .filter(|(keys, _)| keys.contains_key("bootstrap.servers"))
            .map(|(_, kind)| format!("[{}]", self.section_name(kind)))
            .collect();
        let message = if elsewhere.is_empty() {
            "required: the brokers to reach, as host:port[,host:port…] (on Confluent Cloud \
             the cluster's bootstrap server, pkc-….confluent.cloud:9092); or run the embedded \
             demo cluster with --demo"
                .to_string()
        } else {
            format!(
                "required here: it is set in {} only, but every client (metadata, connection \
                 checks, the scan, `check`) reads [{}]; move it there",
                elsewhere.join(" and "),
                self.section_name("default")
            )
        };
        let origin = self.default.get("bootstrap.servers").map_or_else(
            || Origin::File(path.to_path_buf()),
            |entry| entry.origin.clone(),
        );
        Err(ConfigError::Key {
            origin,
            section: self.section_name("default"),
            key: "bootstrap.servers".to_string(),
            message,
        })
    }

    /// Every warning a start with `configs` gives, once each (a section every cluster
    /// inherits warns once): what the log says at start and `--check-config` prints. Each
    /// names the section it is about.
    pub fn start_warnings(configs: &[Config]) -> Vec<String> {
        let mut warnings: Vec<String> = Vec::new();
        for warning in configs.iter().flat_map(|config| &config.warnings) {
            if !warnings.contains(warning) {
                warnings.push(warning.clone());
            }
        }
        warnings.extend(mirrors::unmonitored_sources(&mirrors::nodes(&Self::links(
            configs,
        ))));
        warnings
    }

    /// The replication pipelines among `configs`, one line each, for `--check-config`.
    pub fn pipelines(configs: &[Config]) -> Vec<String> {
        mirrors::describe(&mirrors::nodes(&Self::links(configs)))
    }

    /// What each of `configs` says of pipelines.
    fn links(configs: &[Config]) -> Vec<mirrors::Link<'_>> {
        configs
            .iter()
            .map(|config| mirrors::Link {
                name: &config.name,
                of: config.admin.mirror_of.as_deref(),
                topic: config.admin.mirror_topic.as_deref(),
                heartbeat_topic: &config.admin.heartbeat_topic,
                lost_after: config.admin.mirror_lost_after,
            })
            .collect()
    }

    /// The topic this replica reads the heartbeats it is measured by from (see
    /// [`mirrors::topic`]); `None` for a cluster that mirrors none.
    pub fn mirror_topic(&self, configs: &[Config]) -> Option<String> {
        mirrors::topic(&Self::links(configs), &self.name)
    }

    /// The first cluster of this replica's chain, whose heartbeats it reads (see
    /// [`mirrors::first`]); `None` for a cluster that mirrors none.
    pub fn first_source<'a>(&self, configs: &'a [Config]) -> Option<&'a Config> {
        let first = mirrors::first(&Self::links(configs), &self.name)?;
        configs.iter().find(|config| config.name == first)
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

    /// Where librdkafka property `key` of this cluster's `[default]` was set (section and file,
    /// or the variable), when it was.
    pub fn where_set(&self, key: &str) -> Option<String> {
        self.default
            .get(key)
            .map(|entry| format!("[{}] {key} in {}", entry.section, entry.origin))
    }

    /// The user's librdkafka properties for the producer: `[default]` merged with `[producer]`.
    pub fn producer_properties(&self) -> BTreeMap<String, String> {
        client_properties(&self.default, &self.producer)
    }

    /// The user's librdkafka properties for the consumer: `[default]` merged with `[consumer]`.
    pub fn consumer_properties(&self) -> BTreeMap<String, String> {
        client_properties(&self.default, &self.consumer)
    }

    /// The end-to-end consumer's group: `[consumer] group.id`, else `cc-heartbeat`.
    pub fn consumer_group_id(&self) -> String {
        self.consumer_properties()
            .remove("group.id")
            .unwrap_or_else(|| DEFAULT_GROUP_ID.to_string())
    }

    /// The transaction probe's transactional id: `probe.transactional.id`, else
    /// `cc-heartbeat-<cluster>`.
    pub fn transactional_id(&self) -> String {
        match self.admin.probe_transactional_id.as_str() {
            "" => format!("cc-heartbeat-{}", self.name),
            id => id.to_string(),
        }
    }

    /// The names cc-heartbeat gives by default (its heartbeat topic, its consumers' group):
    /// the product's, not the user's, so a redacted bundle keeps them.
    pub fn own_names() -> Vec<String> {
        let defaults = AdminSettings::defaults();
        let mut names = vec![DEFAULT_GROUP_ID.to_string()];
        if !names.contains(&defaults.heartbeat_topic) {
            names.push(defaults.heartbeat_topic);
        }
        names
    }

    /// The user's librdkafka properties for admin and metadata requests: `[default]` only.
    pub fn admin_properties(&self) -> BTreeMap<String, String> {
        client_properties(&self.default, &BTreeMap::new())
    }

    /// The same configuration under another cluster name.
    pub fn named(mut self, name: &str) -> Config {
        self.name = name.to_string();
        self
    }

    /// The configuration for demo mode: the `[admin]` settings kept, every client pointed at
    /// the embedded cluster with none of the file's connection or security properties.
    pub fn for_demo(mut self, bootstrap_servers: &str) -> Config {
        self.oauth = None;
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

    /// The values of every secret this configuration holds (passwords, keys, the Schema
    /// Registry's user info and its password part), for masking wherever text is kept.
    pub fn secret_values(&self) -> Vec<String> {
        let mut secrets: Vec<String> = [&self.default, &self.producer, &self.consumer]
            .into_iter()
            .flat_map(|keys| keys.iter())
            .filter(|(key, entry)| is_secret(key) && !entry.value.is_empty())
            .map(|(_, entry)| entry.value.clone())
            .collect();
        if let Some(user_info) = self
            .schema_registry
            .as_ref()
            .and_then(|registry| registry.user_info.clone())
        {
            if let Some((_, password)) = user_info.split_once(':') {
                secrets.push(password.to_string());
            }
            secrets.push(user_info);
        }
        secrets
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
            let value = value.replace('\n', "\n    ");
            out.push_str(&format!("{key} = {value}\n"));
        }
        if let Some(registry) = &self.schema_registry {
            out.push_str(&format!("\n[{}]\n", self.section_name("schema_registry")));
            for (key, value) in registry.render_masked() {
                out.push_str(&format!("{key} = {value}\n"));
            }
        }
        out
    }

    /// Checks every librdkafka property with librdkafka itself, and SASL credentials.
    fn validate_client_properties(&self) -> Result<(), ConfigError> {
        for (own, own_name) in [(&self.producer, "producer"), (&self.consumer, "consumer")] {
            let merged = client_properties(&self.default, own);
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

/// The librdkafka properties of a client: `over` merged over `base`, without OAuth's keys
/// (the exporter's own: librdkafka, built without libcurl, would refuse them).
fn client_properties(
    base: &BTreeMap<String, Entry>,
    over: &BTreeMap<String, Entry>,
) -> BTreeMap<String, String> {
    let mut merged = merge(base, over);
    merged.retain(|key, _| !is_oauth_key(key));
    merged
}

#[cfg(test)]
mod tests;
