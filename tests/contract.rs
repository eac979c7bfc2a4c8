//! The metrics contract: every metric family's name, type, unit, label names and help text, as
//! the Grafana dashboard, the Prometheus rules and users' own alerts rely on them. They are read
//! from a real exporter serving real HTTP, in a run where every family has a series: a broker
//! (tansu) reached over TLS (stunnel in front of it), with a consumer group behind on a topic.
//!
//! The expected list is `tests/contract/metric-families.tsv`; after a deliberate change, rerun
//! with `UPDATE_CONTRACT=1` to rewrite it, and review the difference.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use support::contract::{contract_file, contract_lines, families, render};
use support::tls::{free_port, Authority, Kind, Stunnel};
use support::*;

/// Families this run cannot give a series, each checked in full by the test that gives it
/// one ([`support::contract::assert_pinned`]): a replica's mirror reader needs a second
/// cluster and a pipeline (`tests/mirror.rs`); OAuth sign-in needs an identity provider the
/// brokers trust (the real Kafka cluster's, `tests/kafka.rs`); throttling happens only under a quota and tansu
/// tells no topic's `retention.ms` (both on a real Kafka cluster, `tests/probes.rs`), nor any
/// `min.insync.replicas`, and no partition here is short of replicas (a stopped node on the
/// real cluster, `tests/kafka_faults.rs`); the
/// Schema Registry configured here does not answer (the demo's does, `tests/cli.rs`). A
/// summary family is described without series, so its name, type, unit and help are checked
/// here too; the others are not exported at all before they have one.
const PINNED_ELSEWHERE: [(&str, &str); 17] = [
    (
        "heartbeat_mirror_latency_recent_seconds",
        "a_pipeline_is_measured_end_to_end_stalls_and_duplicates_told_apart",
    ),
    (
        "heartbeat_mirror_latency_seconds",
        "a_pipeline_is_measured_end_to_end_stalls_and_duplicates_told_apart",
    ),
    (
        "heartbeat_mirror_messages",
        "a_pipeline_is_measured_end_to_end_stalls_and_duplicates_told_apart",
    ),
    (
        "heartbeat_mirror_last_replicated_age_seconds",
        "a_pipeline_is_measured_end_to_end_stalls_and_duplicates_told_apart",
    ),
    (
        "heartbeat_mirror_messages_skipped",
        "a_pipeline_is_measured_end_to_end_stalls_and_duplicates_told_apart",
    ),
    (
        "heartbeat_mirror_dropped",
        "a_pipeline_is_measured_end_to_end_stalls_and_duplicates_told_apart",
    ),
    (
        "heartbeat_mirror_partition_difference",
        "a_pipeline_is_measured_end_to_end_stalls_and_duplicates_told_apart",
    ),
    (
        "heartbeat_oauth_token_requests",
        "oauth_tokens_are_refreshed_observed_refused_and_recovered_without_a_restart",
    ),
    (
        "heartbeat_oauth_token_request_latency_seconds",
        "oauth_tokens_are_refreshed_observed_refused_and_recovered_without_a_restart",
    ),
    (
        "heartbeat_oauth_token_rejections",
        "oauth_tokens_are_refreshed_observed_refused_and_recovered_without_a_restart",
    ),
    (
        "heartbeat_oauth_token_expiry_timestamp_seconds",
        "oauth_tokens_are_refreshed_observed_refused_and_recovered_without_a_restart",
    ),
    (
        "heartbeat_oauth_token_last_refresh_timestamp_seconds",
        "oauth_tokens_are_refreshed_observed_refused_and_recovered_without_a_restart",
    ),
    (
        "heartbeat_cluster_topic_partitions_under_min_isr",
        "partitions_under_and_at_their_min_isr_are_counted_and_refusals_named",
    ),
    (
        "heartbeat_cluster_topic_partitions_at_min_isr",
        "partitions_under_and_at_their_min_isr_are_counted_and_refusals_named",
    ),
    (
        "heartbeat_client_broker_throttle_seconds",
        "a_client_quota_shows_as_throttling_per_broker_and_client_and_never_as_unreachable",
    ),
    (
        "heartbeat_consumer_group_retention_margin_seconds",
        "each_missing_right_is_named_and_comes_back_and_groups_show_age_and_margin",
    ),
    (
        "heartbeat_schema_registry_request_latency_seconds",
        "demo_mode_moves_every_panel_the_mock_can_serve",
    ),
];

fn pinned_elsewhere(name: &str) -> bool {
    PINNED_ELSEWHERE.iter().any(|(pinned, _)| *pinned == name)
}

const TOPIC: &str = "cc-heartbeat";
const LAGGING_TOPIC: &str = "orders";
const LAGGING_GROUP: &str = "orders-service";

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
    let expected_lines = contract_lines();
    let expected_families: Vec<&String> = expected_lines
        .keys()
        .filter(|name| !pinned_elsewhere(name))
        .collect();
    let running = Running::start(config).await;
    let scrape = running
        .wait_for(
            "a series in every family",
            Duration::from_secs(60),
            |metrics| {
                let found = families(&metrics.text);
                found
                    .iter()
                    .all(|(name, family)| family.samples > 0 || pinned_elsewhere(name))
                    && expected_families
                        .iter()
                        .all(|name| found.get(*name).is_some_and(|family| family.samples > 0))
                    && metrics.sum("heartbeat_messages_consumed_total", &[]) >= 3.0
            },
        )
        .await;
    let found = families(&scrape.text);
    let path = contract_file();
    if std::env::var_os("UPDATE_CONTRACT").is_some() {
        // The families pinned elsewhere keep their lines: this run cannot see their labels.
        let mut updated: BTreeMap<String, String> = found
            .iter()
            .filter(|(name, _)| !pinned_elsewhere(name))
            .map(|(name, family)| {
                let rendered = render(&BTreeMap::from([(name.clone(), family.clone())]));
                (
                    name.clone(),
                    rendered.lines().nth(1).unwrap_or_default().to_string(),
                )
            })
            .collect();
        for (name, line) in &expected_lines {
            if pinned_elsewhere(name) {
                updated.insert(name.clone(), line.clone());
            }
        }
        let mut text = String::from("# name\ttype\tunit\tlabels\thelp\n");
        for line in updated.values() {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
    }
    let expected_lines = contract_lines();
    let mut differences = Vec::new();
    for (name, family) in &found {
        let rendered = render(&BTreeMap::from([(name.clone(), family.clone())]));
        let line = rendered.lines().nth(1).unwrap_or_default();
        match expected_lines.get(name) {
            None => differences.push(format!("exported, not in the contract:\n  {line}")),
            // Described without series: all but its labels can be checked here.
            Some(expected) if pinned_elsewhere(name) => {
                let without_labels = |line: &str| {
                    let mut fields: Vec<String> = line.split('\t').map(str::to_string).collect();
                    if fields.len() > 3 {
                        fields[3].clear();
                    }
                    fields.join("\t")
                };
                if without_labels(expected) != without_labels(line) {
                    differences.push(format!("differs:\n  {expected}\n  {line}"));
                }
            }
            Some(expected) if expected != line => {
                differences.push(format!(
                    "differs:\n  expected {expected}\n  exported {line}"
                ));
            }
            Some(_) => {}
        }
    }
    for (name, line) in &expected_lines {
        if !found.contains_key(name) && !pinned_elsewhere(name) {
            differences.push(format!("in the contract, not exported:\n  {line}"));
        }
    }
    assert!(
        differences.is_empty(),
        "the metric families differ from {}\n(rerun with UPDATE_CONTRACT=1 after a deliberate change)\n{}",
        path.display(),
        differences.join("\n"),
    );
    assert!(running.stop().await);
}

/// Every family the metrics page documents is in the contract, and every family in the
/// contract is documented, with the same type; every family pinned elsewhere is pinned by a
/// test that exists.
#[test]
fn the_documented_families_are_exactly_the_contracts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let page = std::fs::read_to_string(root.join("docs/metrics.md")).unwrap();
    // The table's rows: | `name` | type | labels | meaning |
    let documented: BTreeMap<String, String> = page
        .lines()
        .filter_map(|line| {
            let mut cells = line.strip_prefix("| `")?.split(" | ");
            let name = cells.next()?.strip_suffix('`')?;
            let kind = cells.next()?.trim();
            // A counter is documented by its sample's name, the family's with `_total`.
            let name = match kind {
                "counter" => name.strip_suffix("_total")?,
                _ => name,
            };
            Some((name.to_string(), kind.to_string()))
        })
        .collect();
    let contract: BTreeMap<String, String> = contract_lines()
        .into_iter()
        .map(|(name, line)| {
            let kind = line.split('\t').nth(1).unwrap_or_default().to_string();
            (name, kind)
        })
        .collect();
    let documented_names: BTreeSet<&String> = documented.keys().collect();
    let contract_names: BTreeSet<&String> = contract.keys().collect();
    assert_eq!(
        documented_names, contract_names,
        "docs/metrics.md's table and tests/contract/metric-families.tsv name other families"
    );
    for (name, kind) in &contract {
        assert_eq!(
            documented.get(name),
            Some(kind),
            "{name}: docs/metrics.md gives another type than the contract"
        );
    }
    for (name, test) in PINNED_ELSEWHERE {
        assert!(contract.contains_key(name), "{name} is not in the contract");
        let tests = [
            "tests/probes.rs",
            "tests/cli.rs",
            "tests/kafka_faults.rs",
            "tests/kafka.rs",
            "tests/mirror.rs",
        ]
        .map(|file| std::fs::read_to_string(root.join(file)).unwrap())
        .join("\n");
        assert!(
            tests.contains(&format!("fn {test}()")) && tests.contains(&format!("\"{name}\"")),
            "{name} is to be pinned by {test}, which does not exist or does not name it"
        );
    }
}
