//! The `[admin]` section: cc-heartbeat's own settings, each key declared once below (field,
//! name, default, how it is parsed and shown, and what it means), so parsing, `--check-config`
//! and the documentation checks cannot drift apart.

use std::collections::BTreeMap;
use std::time::Duration;

use super::kinds::{
    Choice, ClusterName, Expression, Flag, Host, Kind, LogLevel, Names, Optional, Pattern, Port,
    Seconds, Text, TopicName, Whole,
};
use super::raw::{ConfigError, Entry, Origin};

/// Declares [`AdminSettings`], its table of keys and its parsing and rendering from one list:
/// `field: Type = "key", "default", kind;` where `kind` is a [`Kind`] parsing and showing the
/// value (its doc comment documents the field); `, process_wide` after the kind marks a key
/// that applies to the whole process, which a cluster's own `[admin]` may not set.
macro_rules! admin_settings {
    (@process_wide) => { false };
    (@process_wide process_wide) => { true };
    ($(
        $(#[doc = $doc:literal])+
        $field:ident: $type:ty = $name:literal, $default:literal, $kind:expr $(, $scope:ident)?;
    )+) => {
        /// The `[admin]` section: this program's own settings.
        #[derive(Debug, Clone, PartialEq)]
        pub struct AdminSettings {
            $( $(#[doc = $doc])+ pub $field: $type, )+
        }

        /// Every `[admin]` key with its default, in the order `--check-config` shows them.
        pub(super) const ADMIN_KEYS: &[AdminKey] = &[
            $(
                AdminKey {
                    name: $name,
                    default: $default,
                    process_wide: admin_settings!(@process_wide $($scope)?),
                },
            )+
        ];

        impl AdminSettings {
            fn read(reader: &AdminReader<'_>) -> Result<AdminSettings, ConfigError> {
                Ok(AdminSettings {
                    $( $field: reader.read($name, &$kind)?, )+
                })
            }

            /// Key/value pairs as they would be written in `[admin]`.
            pub fn render(&self) -> Vec<(&'static str, String)> {
                vec![ $( ($name, Kind::render(&$kind, &self.$field)), )+ ]
            }
        }
    };
}

admin_settings! {
    /// `log.level`: trace, debug, info, warning, error (Python's names are accepted too).
    log_level: String = "log.level", "info", LogLevel, process_wide;
    /// `log.format`: text or json.
    log_format: LogFormat = "log.format", "text", Choice {
        options: &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        ignore_case: true,
    }, process_wide;
    /// `heartbeat.topic`: the topic heartbeats go through.
    heartbeat_topic: String = "heartbeat.topic", "cc-heartbeat", TopicName;
    /// `heartbeat.topic.manage`: create the topic and add partitions (true) or only check (false).
    heartbeat_topic_manage: bool = "heartbeat.topic.manage", "true", Flag;
    /// `heartbeat.lost.after.seconds`: a heartbeat not consumed within this time is lost.
    lost_after: Duration = "heartbeat.lost.after.seconds", "20", Seconds(1.0, 3600.0);
    /// `latency.window.seconds`: the window of the exact latency quantile gauges.
    latency_window: Duration = "latency.window.seconds", "60", Seconds(1.0, 86_400.0);
    /// `check.topic.period.seconds`: how often the topic's existence and size are checked.
    check_topic_period: Duration = "check.topic.period.seconds", "300", Seconds(1.0, 86_400.0);
    /// `check.topic.timeout.seconds`: how long creating the topic or its partitions may take.
    check_topic_timeout: Duration = "check.topic.timeout.seconds", "30", Seconds(0.1, 600.0);
    /// `check.metadata.period.seconds`: how often cluster metadata is refreshed.
    check_metadata_period: Duration =
        "check.metadata.period.seconds", "10", Seconds(0.1, 3600.0);
    /// `check.metadata.timeout.seconds`: how long one metadata request may take.
    check_metadata_timeout: Duration =
        "check.metadata.timeout.seconds", "5", Seconds(0.1, 600.0);
    /// `check.connectivity.period.seconds`: how often every broker is connection-checked.
    check_connectivity_period: Duration =
        "check.connectivity.period.seconds", "10", Seconds(0.1, 3600.0);
    /// `check.connectivity.timeout.seconds`: how long one broker's connection check may take.
    check_connectivity_timeout: Duration =
        "check.connectivity.timeout.seconds", "5", Seconds(0.1, 600.0);
    /// `check.consumer.group.period.seconds`: period of the cluster scan (topics, groups).
    check_consumer_group_period: Duration =
        "check.consumer.group.period.seconds", "60", Seconds(1.0, 86_400.0);
    /// `consumer.group.allow`: only groups whose name matches are reported (empty: all).
    consumer_group_allow: Option<Pattern> = "consumer.group.allow", "", Expression;
    /// `consumer.group.deny`: groups whose name matches are not reported (empty: none).
    consumer_group_deny: Option<Pattern> = "consumer.group.deny", "", Expression;
    /// `consumer.group.names`: groups always scanned, listed by the cluster or not.
    consumer_group_names: Vec<String> = "consumer.group.names", "", Names;
    /// `consumer.group.topic.allow`: only lag on matching topics is reported (empty: all).
    consumer_group_topic_allow: Option<Pattern> = "consumer.group.topic.allow", "", Expression;
    /// `consumer.group.topic.deny`: lag on matching topics is not reported (empty: none).
    consumer_group_topic_deny: Option<Pattern> = "consumer.group.topic.deny", "", Expression;
    /// `consumer.group.lag.seconds`: whether lag in seconds is read (it reads records).
    consumer_group_lag_seconds: bool = "consumer.group.lag.seconds", "true", Flag;
    /// `consumer.group.lag.granularity`: per-partition series, per-group ones only, or (`auto`,
    /// `None`) per partition when `consumer.group.allow` bounds the groups, else per group.
    consumer_group_lag_granularity: Option<LagGranularity> =
        "consumer.group.lag.granularity", "auto", Choice {
            options: &[
                ("auto", None),
                ("partition", Some(LagGranularity::Partition)),
                ("group", Some(LagGranularity::Group)),
            ],
            ignore_case: false,
        };
    /// `heartbeat.latency.granularity`: latency series per partition and leader, per leader
    /// only, or (`auto`, `None`) per partition while the topic has at most
    /// [`LATENCY_PARTITIONS_AUTO`] partitions.
    latency_granularity: Option<LatencyGranularity> =
        "heartbeat.latency.granularity", "auto", Choice {
            options: &[
                ("auto", None),
                ("partition", Some(LatencyGranularity::Partition)),
                ("broker", Some(LatencyGranularity::Broker)),
            ],
            ignore_case: false,
        };
    /// `consumer.group.max.series`: the most lag series a scan reports; beyond, they are
    /// dropped and counted.
    consumer_group_max_series: usize = "consumer.group.max.series", "20000", Whole(0, 10_000_000);
    /// `check.consumer.group.timeout.seconds`: how long each request of the scan may take.
    check_consumer_group_timeout: Duration =
        "check.consumer.group.timeout.seconds", "30", Seconds(0.1, 600.0);
    /// `probe.commit.period.seconds`: how often the end-to-end consumer commits its positions
    /// to its group, timing the group coordinator (0: never).
    probe_commit_period: Duration = "probe.commit.period.seconds", "10", Seconds(0.0, 86_400.0);
    /// `probe.transactions`: whether a transactional producer probes the transaction
    /// coordinator (it needs rights on its transactional id).
    probe_transactions: bool = "probe.transactions", "false", Flag;
    /// `probe.transactions.period.seconds`: how often one transaction is begun and committed.
    probe_transactions_period: Duration =
        "probe.transactions.period.seconds", "10", Seconds(1.0, 86_400.0);
    /// `probe.transactional.id`: the probe's transactional id (empty: `cc-heartbeat-<cluster>`).
    probe_transactional_id: String = "probe.transactional.id", "", Text;
    /// `check.schema.registry.period.seconds`: how often the `[schema_registry]` is probed.
    check_schema_registry_period: Duration =
        "check.schema.registry.period.seconds", "30", Seconds(1.0, 86_400.0);
    /// `check.schema.registry.timeout.seconds`: how long each request to the registry may take.
    check_schema_registry_timeout: Duration =
        "check.schema.registry.timeout.seconds", "10", Seconds(0.1, 600.0);
    /// `schema.registry.probe.write`: register the probe schema (true) or only read (false).
    schema_registry_probe_write: bool = "schema.registry.probe.write", "true", Flag;
    /// `produce.period.seconds`: how often one heartbeat goes to every partition.
    produce_period: Duration = "produce.period.seconds", "1", Seconds(0.01, 3600.0);
    /// `mirror.of`: the configured cluster this one is a replica of (MirrorMaker 2, Cluster
    /// Linking): the source's heartbeats are read where the pipeline delivers them (empty:
    /// none).
    mirror_of: Option<String> = "mirror.of", "", Optional(ClusterName);
    /// `mirror.topic`: the source's heartbeat topic as the pipeline names it here (empty: the
    /// source's name, as Cluster Linking and IdentityReplicationPolicy keep it; MirrorMaker 2's
    /// default policy writes `<source alias>.<topic>`).
    mirror_topic: Option<String> = "mirror.topic", "", Optional(TopicName);
    /// `mirror.lost.after.seconds`: a source heartbeat not read here within this time is lost
    /// in replication.
    mirror_lost_after: Duration = "mirror.lost.after.seconds", "120", Seconds(1.0, 86_400.0);
    /// `broker.missing.retention.seconds`: how long a vanished broker is still reported.
    broker_missing_retention: Duration =
        "broker.missing.retention.seconds", "3600", Seconds(0.0, 30.0 * 86_400.0);
    /// `metrics.listener.host`: address the HTTP server binds.
    metrics_listener_host: String = "metrics.listener.host", "0.0.0.0", Host, process_wide;
    /// `metrics.listener.port`: port the HTTP server binds (0 picks a free one).
    metrics_listener_port: u16 = "metrics.listener.port", "8080", Port, process_wide;
}

/// Heartbeats each partition keeps in flight at most; beyond it the oldest is counted lost,
/// so the lost deadline must be reached first.
pub const MAX_IN_FLIGHT_PER_PARTITION: usize = 1024;

/// One `[admin]` key: its name and default, and whether it applies to the whole process.
pub(super) struct AdminKey {
    pub(super) name: &'static str,
    pub(super) default: &'static str,
    pub(super) process_wide: bool,
}

/// Whether `[admin]` key `name` applies to the whole process, not to one cluster.
pub(super) fn is_process_wide(name: &str) -> bool {
    ADMIN_KEYS
        .iter()
        .any(|key| key.process_wide && key.name == name)
}

impl AdminSettings {
    /// Every key at its default.
    pub fn defaults() -> AdminSettings {
        let reader = AdminReader {
            section: &BTreeMap::new(),
        };
        AdminSettings::read(&reader).expect("the declared defaults parse")
    }

    /// How finely lag is reported: as configured, or with `auto` per partition only when
    /// `consumer.group.allow` bounds the groups (thousands of ad hoc groups, each with its
    /// partitions, would otherwise make too many series).
    pub fn lag_granularity(&self) -> LagGranularity {
        match self.consumer_group_lag_granularity {
            Some(granularity) => granularity,
            None if self.consumer_group_allow.is_some() => LagGranularity::Partition,
            None => LagGranularity::Group,
        }
    }

    /// Parses a merged `[admin]` section: unknown keys, bad values and inconsistent pairs are
    /// errors naming the key and where it was set.
    pub(super) fn parse(section: &BTreeMap<String, Entry>) -> Result<AdminSettings, ConfigError> {
        for (key, entry) in section {
            if !ADMIN_KEYS.iter().any(|known| known.name == key) {
                let known: Vec<&str> = ADMIN_KEYS.iter().map(|known| known.name).collect();
                let nearest = known
                    .iter()
                    .map(|name| (strsim::jaro_winkler(key, name), *name))
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .filter(|(similarity, _)| *similarity >= 0.85)
                    .map(|(_, name)| format!("did you mean `{name}`? "))
                    .unwrap_or_default();
                return Err(ConfigError::Key {
                    origin: entry.origin.clone(),
                    section: entry.section.clone(),
                    key: key.clone(),
                    message: format!("unknown key ({nearest}known keys: {})", known.join(", ")),
                });
            }
        }
        let reader = AdminReader { section };
        let settings = AdminSettings::read(&reader)?;
        if settings.produce_period >= settings.lost_after {
            return Err(reader.error(
                "heartbeat.lost.after.seconds",
                "must be longer than produce.period.seconds".to_string(),
            ));
        }
        // Each partition holds at most so many heartbeats in flight: a deadline beyond them
        // would be cut short without a word.
        let beats = |span: Duration| span.as_secs_f64() / settings.produce_period.as_secs_f64();
        let period = settings.produce_period.as_secs_f64();
        if beats(settings.lost_after) > MAX_IN_FLIGHT_PER_PARTITION as f64 {
            return Err(reader.error(
                "heartbeat.lost.after.seconds",
                format!(
                    "must be at most {MAX_IN_FLIGHT_PER_PARTITION} produce periods ({} s with \
                     produce.period.seconds = {period}): each partition keeps at most \
                     {MAX_IN_FLIGHT_PER_PARTITION} heartbeats in flight and would count the \
                     oldest lost before its deadline",
                    MAX_IN_FLIGHT_PER_PARTITION as f64 * period
                ),
            ));
        }
        Ok(settings)
    }
}

/// A check period beyond which the shipped alerts (`prometheus/rules/alerts.yml`) would see
/// a failure later than they are written to fire: the key, the longest period that keeps
/// them on time, and what would be late.
struct PeriodLimit {
    key: &'static str,
    limit: Duration,
    late: &'static str,
}

/// The periods the shipped alerts rely on, with the alert that waits least for each.
const PERIOD_LIMITS: [PeriodLimit; 6] = [
    PeriodLimit {
        key: "check.metadata.period.seconds",
        limit: Duration::from_secs(120),
        late: "a cluster or broker that stops answering metadata (KafkaClusterUnreachable and \
               KafkaBrokerMissing fire after 2m)",
    },
    PeriodLimit {
        key: "check.connectivity.period.seconds",
        limit: Duration::from_secs(120),
        late: "a broker that stops accepting connections (KafkaBrokerUnreachable fires after 2m)",
    },
    PeriodLimit {
        key: "check.consumer.group.period.seconds",
        limit: Duration::from_secs(300),
        late: "offline partitions and consumer-group lag (KafkaOfflinePartitions fires after \
               5m, KafkaConsumerGroupLagHigh looks at the last 5m)",
    },
    PeriodLimit {
        key: "check.topic.period.seconds",
        limit: Duration::from_secs(900),
        late: "a heartbeat topic that is deleted or too small (KafkaHeartbeatTopicNotOk fires \
               after 15m)",
    },
    PeriodLimit {
        key: "probe.transactions.period.seconds",
        limit: Duration::from_secs(300),
        late: "a failing transaction coordinator (KafkaTransactionsFailing fires after 5m)",
    },
    PeriodLimit {
        key: "check.schema.registry.period.seconds",
        limit: Duration::from_secs(300),
        late: "a Schema Registry that stops answering (SchemaRegistryDown fires after 5m)",
    },
];

impl AdminSettings {
    /// What is worth a warning at start without being an error: check periods so long that
    /// the shipped alerts would fire late (hour-long periods, carried over from a config of
    /// the original tool, are the usual cause). Each names its key.
    pub(super) fn warnings(&self, section: &BTreeMap<String, Entry>) -> Vec<String> {
        let period_of = |key: &str| match key {
            "check.metadata.period.seconds" => Some(self.check_metadata_period),
            "check.connectivity.period.seconds" => Some(self.check_connectivity_period),
            "check.consumer.group.period.seconds" => Some(self.check_consumer_group_period),
            "check.topic.period.seconds" => Some(self.check_topic_period),
            "probe.transactions.period.seconds" => self
                .probe_transactions
                .then_some(self.probe_transactions_period),
            "check.schema.registry.period.seconds" => Some(self.check_schema_registry_period),
            _ => None,
        };
        PERIOD_LIMITS
            .iter()
            .filter_map(|limit| {
                let period = period_of(limit.key)?;
                let default = ADMIN_KEYS.iter().find(|key| key.name == limit.key)?.default;
                let written_in = section
                    .get(limit.key)
                    .map_or("admin", |entry| entry.section.as_str());
                (period > limit.limit).then(|| {
                    format!(
                        "[{written_in}] {} = {}: {} would show up to {} s late, later than the shipped \
                         alerts allow for; each check costs one request, so the default ({} s) \
                         or at most {} s is advised",
                        limit.key,
                        period.as_secs_f64(),
                        limit.late,
                        period.as_secs_f64(),
                        default,
                        limit.limit.as_secs()
                    )
                })
            })
            .collect()
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

/// The most partitions for which `heartbeat.latency.granularity = auto` keeps latency per
/// partition: about 6 KB of `/metrics` per partition and latency (histogram buckets and
/// quantiles), so a 1000-partition topic would scrape at 7.5 MB.
pub const LATENCY_PARTITIONS_AUTO: usize = 100;

/// How finely latency (histograms and recent quantiles) is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyGranularity {
    /// Per partition and leader.
    Partition,
    /// Per leader only; the per-partition counters stay.
    Broker,
}

impl LatencyGranularity {
    /// Whether latency series name the partition, with `configured` (`None`: auto) and a
    /// heartbeat topic of `partitions`.
    pub fn by_partition(configured: Option<Self>, partitions: usize) -> bool {
        match configured {
            Some(granularity) => granularity == LatencyGranularity::Partition,
            None => partitions <= LATENCY_PARTITIONS_AUTO,
        }
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

/// Reads the keys of one merged `[admin]` section, defaults filling the gaps.
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

    fn read<T>(&self, key: &str, kind: &impl Kind<T>) -> Result<T, ConfigError> {
        let (value, _) = self.raw(key);
        kind.parse(value.trim())
            .map_err(|message| self.error(key, message))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn load(text: &str, environment: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::for_test(text, environment)
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
    fn example_file_and_docs_name_exactly_the_declared_admin_keys() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let declared: std::collections::BTreeSet<&str> =
            ADMIN_KEYS.iter().map(|key| key.name).collect();

        let example = std::fs::read_to_string(root.join("config.example.ini")).unwrap();
        let sections = crate::config::ini::parse(&example).unwrap();
        let in_example: std::collections::BTreeSet<&str> = sections
            .iter()
            .filter(|(section, _)| section == "admin")
            .flat_map(|(_, keys)| keys.iter().map(|(key, _)| key.as_str()))
            .collect();
        assert_eq!(in_example, declared, "config.example.ini [admin]");

        // docs/configuration.md's bullet that lists them: "- `[admin]`: … `key`, `key` …" up to the
        // next bullet or blank line.
        let readme = std::fs::read_to_string(root.join("docs/configuration.md")).unwrap();
        let start = readme
            .find("- `[admin]`:")
            .expect("docs/configuration.md lists the [admin] keys");
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
        assert_eq!(in_readme, declared, "docs/configuration.md's [admin] list");
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
        assert_eq!(config.admin.lag_granularity(), LagGranularity::Group);
        assert!(!config.admin.consumer_group_lag_seconds);
        assert!(config.admin.consumer_group_topic_deny.is_none());
        let defaults = load("", &[]).unwrap();
        assert_eq!(defaults.admin.lag_granularity(), LagGranularity::Group);
        let allowed = load("[admin]\nconsumer.group.allow = ^orders\n", &[]).unwrap();
        assert_eq!(allowed.admin.lag_granularity(), LagGranularity::Partition);
        assert!(defaults.admin.consumer_group_names.is_empty());

        for (text, expected) in [
            (
                "consumer.group.names = a, b, a",
                "consumer.group.names: names `a` twice",
            ),
            (
                "consumer.group.lag.granularity = topic",
                "consumer.group.lag.granularity: must be auto, partition or group",
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
    fn a_deadline_or_window_beyond_the_caps_is_refused() {
        let error = load(
            "[admin]\nproduce.period.seconds = 0.01\nheartbeat.lost.after.seconds = 20\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("[admin] heartbeat.lost.after.seconds: must be at most 1024"),
            "{error}"
        );
        assert!(load(
            "[admin]\nproduce.period.seconds = 0.1\nlatency.window.seconds = 3600\n",
            &[]
        )
        .is_ok());
    }

    #[test]
    fn hour_long_check_periods_are_warned_of_naming_the_key_and_the_late_alert() {
        assert!(load("", &[]).unwrap().warnings.is_empty());
        let config = load(
            "[admin]\ncheck.metadata.period.seconds = 3600\ncheck.connectivity.period.seconds = 3600\n\
             check.topic.period.seconds = 3600\ncheck.consumer.group.period.seconds = 3600\n",
            &[],
        )
        .unwrap();
        let warnings = config.warnings.join("\n");
        for (key, alert) in [
            ("check.metadata.period.seconds", "KafkaClusterUnreachable"),
            (
                "check.connectivity.period.seconds",
                "KafkaBrokerUnreachable",
            ),
            (
                "check.consumer.group.period.seconds",
                "KafkaOfflinePartitions",
            ),
            ("check.topic.period.seconds", "KafkaHeartbeatTopicNotOk"),
        ] {
            assert!(
                warnings.contains(&format!("[admin] {key} = 3600: ")) && warnings.contains(alert),
                "{key}: {warnings}"
            );
        }
        // A transaction probe that does not run is not warned of.
        let off = load("[admin]\nprobe.transactions.period.seconds = 3600\n", &[]).unwrap();
        assert!(off.warnings.is_empty(), "{:?}", off.warnings);
    }

    #[test]
    fn the_alerts_the_period_warnings_name_are_the_shipped_ones() {
        let rules = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("prometheus/rules/alerts.yml"),
        )
        .unwrap();
        for limit in &PERIOD_LIMITS {
            let named: Vec<&str> = limit
                .late
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|word| word.starts_with("Kafka") || word.starts_with("SchemaRegistry"))
                .collect();
            assert!(!named.is_empty(), "{}", limit.key);
            for alert in named {
                assert!(
                    rules.contains(&format!("- alert: {alert}\n")),
                    "{alert} is not a shipped alert"
                );
            }
            assert!(ADMIN_KEYS.iter().any(|key| key.name == limit.key));
        }
    }

    #[test]
    fn an_unknown_key_names_the_nearest_known_one() {
        let error = load("[admin]\nproduce.periods = 1\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("unknown key (did you mean `produce.period.seconds`?"),
            "{error}"
        );
        let error = load("[admin]\nsomething.else = 1\n", &[])
            .unwrap_err()
            .to_string();
        assert!(!error.contains("did you mean"), "{error}");
    }
}
