//! The metrics contract: every metric family's name, type, unit, label names and help text, as
//! the Grafana dashboard, the Prometheus rules and users' own alerts rely on them. They are read
//! from a real exporter serving real HTTP, in a run where every family has a series: a broker
//! (tansu) reached over TLS (stunnel in front of it), with a consumer group behind on a topic.
//!
//! The expected list is `tests/contract/metric-families.tsv`; after a deliberate change, rerun
//! with `UPDATE_CONTRACT=1` to rewrite it, and review the difference.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use support::tls::{free_port, Authority, Kind, Stunnel};
use support::*;

/// Families this run cannot give a series: throttling happens only under a quota, tansu tells
/// no topic's `retention.ms`, and the Schema Registry configured here does not answer (so its
/// other families have their series at zero). A summary family is described without series
/// (its name, type and help are checked here, not its labels); the others are not exported
/// at all before they have one. The tests that show them check their series: on a real Kafka
/// cluster (`tests/probes.rs`) and a real Schema Registry (`tests/schema_registry.rs`).
const NOT_SHOWN_HERE: [&str; 3] = [
    "heartbeat_client_broker_throttle_seconds",
    "heartbeat_consumer_group_retention_margin_seconds",
    "heartbeat_schema_registry_request_latency_seconds",
];

const TOPIC: &str = "cc-heartbeat";
const LAGGING_TOPIC: &str = "orders";
const LAGGING_GROUP: &str = "orders-service";

/// One family as exported.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Family {
    kind: String,
    unit: String,
    help: String,
    labels: BTreeSet<String>,
    samples: usize,
}

/// The families of an OpenMetrics exposition, by name, with the label names of their samples.
fn families(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        let descriptor = |prefix: &str| {
            line.strip_prefix(prefix).map(|rest| {
                let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
                (name.to_string(), value.to_string())
            })
        };
        if let Some((name, help)) = descriptor("# HELP ") {
            families.entry(name).or_default().help = help;
        } else if let Some((name, kind)) = descriptor("# TYPE ") {
            families.entry(name).or_default().kind = kind;
        } else if let Some((name, unit)) = descriptor("# UNIT ") {
            families.entry(name).or_default().unit = unit;
        }
    }
    let parsed = Metrics::parse(text);
    for sample in &parsed.samples {
        // The family whose name the sample's is, or is followed by a type's suffix.
        let family = families
            .keys()
            .filter(|family| {
                let Some(suffix) = sample.name.strip_prefix(family.as_str()) else {
                    return false;
                };
                [
                    "", "_total", "_bucket", "_sum", "_count", "_created", "_info",
                ]
                .contains(&suffix)
            })
            .max_by_key(|family| family.len())
            .cloned()
            .unwrap_or_else(|| panic!("sample {} belongs to no family", sample.name));
        let family = families.get_mut(&family).unwrap();
        family.samples += 1;
        family.labels.extend(
            sample
                .labels
                .keys()
                .filter(|label| !(family.kind == "histogram" && *label == "le"))
                .cloned(),
        );
    }
    families
}

/// The contract's text: one line per family, tab-separated.
fn render(families: &BTreeMap<String, Family>) -> String {
    let mut out = String::from("# name\ttype\tunit\tlabels\thelp\n");
    for (name, family) in families {
        let unit = if family.unit.is_empty() {
            "-"
        } else {
            &family.unit
        };
        let labels: Vec<&str> = family.labels.iter().map(String::as_str).collect();
        out.push_str(&format!(
            "{name}\t{}\t{unit}\t{}\t{}\n",
            family.kind,
            labels.join(","),
            family.help
        ));
    }
    out
}

fn contract_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contract/metric-families.tsv")
}

/// librdkafka properties of a client reaching the broker over TLS.
fn tls_client(bootstrap: &str, ca_file: &Path) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("security.protocol", "SSL")
        .set("ssl.ca.location", ca_file.display().to_string());
    config
}

/// Writes a few records to `topic` (one request each: tansu's high watermark is wrong after a
/// batch of several), an hour old, and commits `group` behind them without joining it.
async fn lagging_group(bootstrap: &str, ca_file: &Path) {
    let admin: AdminClient<DefaultClientContext> = tls_client(bootstrap, ca_file).create().unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    admin
        .create_topics(
            &[NewTopic::new(LAGGING_TOPIC, 1, TopicReplication::Fixed(1))],
            &options,
        )
        .await
        .unwrap();
    let producer: ThreadedProducer<DefaultProducerContext> = tls_client(bootstrap, ca_file)
        .set("linger.ms", "0")
        .create()
        .unwrap();
    let an_hour_ago = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 3_600_000;
    for index in 0..4 {
        producer
            .send(
                BaseRecord::<(), str>::to(LAGGING_TOPIC)
                    .partition(0)
                    .payload("order")
                    .timestamp(an_hour_ago + index),
            )
            .map_err(|(error, _)| error)
            .unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
    }
    let consumer: BaseConsumer = tls_client(bootstrap, ca_file)
        .set("group.id", LAGGING_GROUP)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(LAGGING_TOPIC, 0, Offset::Offset(1))
        .unwrap();
    consumer.commit(&offsets, CommitMode::Sync).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_family_keeps_its_name_type_labels_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::new(dir.path());
    let certificate = authority.issue(Kind::Valid);
    let (plain_port, tls_port) = (free_port(), free_port());
    let tansu = Tansu::start_advertising(plain_port, tls_port);
    let _stunnel = Stunnel::start(dir.path(), &certificate.pem, tls_port, plain_port);
    lagging_group(&tansu.bootstrap, &authority.ca_file).await;

    let text = test_ini(
        &tansu.bootstrap,
        TOPIC,
        "check.consumer.group.period.seconds = 1\ncheck.consumer.group.timeout.seconds = 5\n\
         consumer.group.allow = ^orders\nprobe.commit.period.seconds = 1\n\
         probe.transactions = true\nprobe.transactions.period.seconds = 1",
    )
    .replace(
        "[producer]",
        &format!(
            "security.protocol = SSL\nssl.ca.location = {}\n[producer]",
            authority.ca_file.display()
        ),
    );
    let text = format!("{text}[schema_registry]\nurl = http://127.0.0.1:9\n");
    let config = cc_heartbeat::config::Config::from_ini(
        &text,
        Path::new("contract.ini"),
        std::iter::empty(),
    )
    .unwrap();
    // Families only some moments have a series of (a commit's latency once one is made) are
    // not exported before: wait for every family the contract names, too.
    let expected = std::fs::read_to_string(contract_file()).unwrap_or_default();
    let expected_families: Vec<String> = expected
        .lines()
        .skip(1)
        .filter_map(|line| line.split('\t').next().map(str::to_string))
        .filter(|name| !NOT_SHOWN_HERE.contains(&name.as_str()))
        .collect();
    let running = Running::start(config).await;
    let scrape = running
        .wait_for(
            "a series in every family",
            Duration::from_secs(60),
            |metrics| {
                let found = families(&metrics.text);
                found.iter().all(|(name, family)| {
                    family.samples > 0 || NOT_SHOWN_HERE.contains(&name.as_str())
                }) && expected_families
                    .iter()
                    .all(|name| found.get(name).is_some_and(|family| family.samples > 0))
                    && metrics.sum("heartbeat_messages_consumed_total", &[]) >= 3.0
            },
        )
        .await;
    let actual = render(&families(&scrape.text));
    let path = contract_file();
    if std::env::var_os("UPDATE_CONTRACT").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    let expected_lines: BTreeSet<&str> = expected.lines().collect();
    let actual_lines: BTreeSet<&str> = actual.lines().collect();
    let missing: Vec<&&str> = expected_lines.difference(&actual_lines).collect();
    let unexpected: Vec<&&str> = actual_lines.difference(&expected_lines).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "the metric families differ from {}\n(rerun with UPDATE_CONTRACT=1 after a deliberate change)\n\
         expected, not exported:\n{}\nexported, not expected:\n{}",
        path.display(),
        missing.iter().map(|line| format!("  {line}")).collect::<Vec<_>>().join("\n"),
        unexpected.iter().map(|line| format!("  {line}")).collect::<Vec<_>>().join("\n"),
    );
    assert!(running.stop().await);
}
