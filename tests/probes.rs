//! The probes beyond produce and fetch: the group coordinator's commits, the transaction
//! coordinator, throttling, the account's rights, and the groups' commit age and retention
//! margin. Faults only the mock can inject (a coordinator refusing, a fenced producer) on
//! librdkafka's mock cluster; quotas, ACLs and topic configs on the real Kafka cluster.

mod support;

use std::time::Duration;

use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use support::contract::assert_pinned;
use support::kafka::{commit, exporter_ini, produce, Exporter, KafkaCluster};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_and_transactions_survive_a_refused_commit_and_a_fencing() {
    let _serial = serial().await;
    let mock = mock_cluster(3, "probe-beats", 3);
    let admin = "probe.commit.period.seconds = 1\nprobe.transactions = true\n\
                 probe.transactions.period.seconds = 1";
    let config = test_config(&mock.bootstrap_servers(), "probe-beats", admin);
    // A second instance sharing the group (and the cluster): simple commits disturb nobody.
    let neighbour = test_config(
        &mock.bootstrap_servers(),
        "probe-beats",
        "probe.commit.period.seconds = 1",
    );
    let running = Running::start(config).await;
    let other = Running::start(neighbour).await;
    let committed =
        |m: &Metrics| m.sum("heartbeat_transactions_total", &[("outcome", "committed")]);
    let metrics = running
        .wait_for("commits and transactions", Duration::from_secs(60), |m| {
            m.sum("heartbeat_offset_commits_total", &[]) >= 3.0
                && committed(m) >= 3.0
                && m.sum("heartbeat_transactional_messages_consumed_total", &[]) >= 3.0
        })
        .await;
    assert_eq!(
        metrics.sum("heartbeat_offset_commit_failures_total", &[]),
        0.0
    );
    assert!(metrics.has(
        "heartbeat_transaction_latency_seconds_count",
        &[("operation", "init")]
    ));
    let neighbours = other
        .wait_for("the neighbour's commits", Duration::from_secs(30), |m| {
            m.sum("heartbeat_offset_commits_total", &[]) >= 3.0
        })
        .await;
    assert_eq!(
        neighbours.sum("heartbeat_offset_commit_failures_total", &[]),
        0.0
    );

    // The coordinator refuses a commit for lack of READ on the group: counted, and the right
    // is back with the next commit. (librdkafka retries a coordinator that is not available
    // itself: that costs the commit time, which the latency shows, not a failure.)
    assert!(other.stop().await);
    let denied = vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED; 2];
    mock.request_errors(RDKafkaApiKey::OffsetCommit, &denied);
    let right = [("operation", "READ"), ("resource", "group:cc-heartbeat")];
    running
        .wait_for("a refused commit", Duration::from_secs(30), |m| {
            m.sum(
                "heartbeat_offset_commit_failures_total",
                &[("reason", "authorization_failed")],
            ) >= 1.0
        })
        .await;
    let before = running
        .metrics()
        .await
        .sum("heartbeat_offset_commits_total", &[]);
    running
        .wait_for(
            "commits again, the right back",
            Duration::from_secs(30),
            |m| {
                m.sum("heartbeat_offset_commits_total", &[]) > before
                    && m.sum("heartbeat_permission_ok", &right) == 1.0
            },
        )
        .await;

    // Another producer took the transactional id: fenced, counted, and a new producer commits.
    mock.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED],
    );
    let fenced = running
        .wait_for("fenced", Duration::from_secs(60), |m| {
            m.sum("heartbeat_transactions_total", &[("outcome", "fenced")]) >= 1.0
        })
        .await;
    running
        .wait_for("committing again", Duration::from_secs(60), |m| {
            committed(m) >= committed(&fenced) + 2.0
        })
        .await;
    assert!(running.stop().await);
}

/// An exporter as SCRAM user `user` (created here), its heartbeat topic `topic`, with `[admin]`
/// lines `admin` and client statistics every second.
fn scram_exporter(cluster: &KafkaCluster, user: &str, topic: &str, admin: &str) -> Exporter {
    let password = format!("{user}-password");
    cluster.scram_user(user, &password);
    let ini = exporter_ini(
        &cluster.client_properties("SCRAM-SHA-512", user, &password),
        topic,
        admin,
    )
    .replace(
        "[admin]",
        "[consumer]\nstatistics.interval.ms = 1000\n[admin]",
    );
    Exporter::start(&ini)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_quota_shows_as_throttling_per_broker_and_client_and_never_as_unreachable() {
    let cluster = KafkaCluster::shared();
    let (user, topic) = ("throttled", "throttled-beats");
    cluster.create_topic(topic, 3, 3).await;
    let principal = format!("User:{user}");
    cluster.allow(
        &principal,
        &["Describe", "Write", "Read"],
        &["--topic", topic],
    );
    cluster.allow(&principal, &["Read"], &["--group", "cc-heartbeat"]);
    // A few hundred bytes a second of heartbeats, over a quota of 64 bytes a second.
    cluster.user_quota(user, "producer_byte_rate=64,consumer_byte_rate=64");
    let mut exporter = scram_exporter(cluster, user, topic, "heartbeat.topic.manage = false");
    let throttled = |m: &Metrics, client: &str| {
        m.sum(
            "heartbeat_client_throttled_windows_total",
            &[("client", client)],
        )
    };
    // Throttled is not unreachable: while the brokers answer (slowly), the cluster stays up,
    // every scrape of the way, and the log never says it cannot be reached. Watched until the
    // broker holds the producer longer than a metadata request may take (3 s), then for ten
    // metadata refreshes more.
    let watched = std::time::Instant::now();
    let (mut held_long, mut refreshes, mut last_refresh) = (None, 0, 0.0);
    let metrics = loop {
        let metrics = Metrics::parse(&get(exporter.address, "/metrics").await.1);
        let refreshed = metrics.sum("heartbeat_metadata_last_refresh_timestamp_seconds", &[]);
        assert!(
            metrics.sum("heartbeat_up", &[]) == 1.0 || refreshed == 0.0,
            "heartbeat_up 0 while throttled:\n{}",
            exporter.process.log()
        );
        // A window without throttling takes the quantiles away until the next: the last
        // scrape that had the producer's is kept.
        if metrics
            .select(
                "heartbeat_client_broker_throttle_seconds",
                &[("client", "producer"), ("quantile", "1")],
            )
            .any(|sample| sample.value > 4.0)
        {
            held_long = Some(metrics.clone());
        }
        if held_long.is_some() && refreshed > last_refresh {
            refreshes += 1;
        }
        last_refresh = refreshed;
        if refreshes >= 10 && throttled(&metrics, "consumer") >= 1.0 {
            break held_long.expect("held long");
        }
        assert!(
            watched.elapsed() < Duration::from_secs(150),
            "held long: {}, refreshes since: {refreshes}\n{}",
            held_long.is_some(),
            exporter.process.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        !exporter.process.logged("cannot reach the cluster"),
        "{}",
        exporter.process.log()
    );
    // A refresh the throttle held too long is counted and said as throttling.
    if metrics.sum("heartbeat_metadata_refresh_failures_total", &[]) > 0.0 {
        assert!(
            exporter
                .process
                .logged("the cluster is up; throttled: broker"),
            "{}",
            exporter.process.log()
        );
    }
    let throttle_max = metrics
        .select(
            "heartbeat_client_broker_throttle_seconds",
            &[("quantile", "1")],
        )
        .map(|sample| sample.value)
        .fold(0.0, f64::max);
    assert!(throttle_max > 0.0, "{}", metrics.text);
    assert!(metrics.has(
        "heartbeat_client_broker_throttle_seconds",
        &[("client", "producer"), ("quantile", "0.99")]
    ));
    // Only a quota gives it a series: the contract's line for it is checked here.
    assert_pinned(&metrics.text, &["heartbeat_client_broker_throttle_seconds"]);

    // Without the quota the throttling stops: its quantiles go, the windows stop counting.
    cluster.remove_user_quota(user, "producer_byte_rate,consumer_byte_rate");
    exporter
        .wait_for("no longer throttled", Duration::from_secs(90), |m| {
            !m.has("heartbeat_client_broker_throttle_seconds", &[])
        })
        .await;
    drop(exporter);
    cluster.disallow(
        &principal,
        &["Describe", "Write", "Read"],
        &["--topic", topic],
    );
    cluster.disallow(&principal, &["Read"], &["--group", "cc-heartbeat"]);
    cluster.delete_topic(topic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_missing_right_is_named_and_comes_back_and_groups_show_age_and_margin() {
    let cluster = KafkaCluster::shared();
    let (user, topic, orders, group) =
        ("rights", "rights-beats", "rights-orders", "rights-billing");
    let transactional_id = "cc-heartbeat-rights";
    cluster.create_topic(topic, 3, 3).await;
    cluster.create_topic(orders, 1, 3).await;
    produce(cluster, orders, 5);
    commit(cluster, group, orders, 2);
    let principal = format!("User:{user}");
    // What docs/confluent-cloud.md lists for these checks, and no right on the cluster.
    let acls: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["Describe", "Write", "Read"], vec!["--topic", topic]),
        (vec!["Read"], vec!["--group", "cc-heartbeat"]),
        (vec!["Describe"], vec!["--group", group]),
        (
            vec!["Describe", "Read", "DescribeConfigs"],
            vec!["--topic", orders],
        ),
        (
            vec!["Write", "Describe"],
            vec!["--transactional-id", transactional_id],
        ),
    ];
    for (operations, resource) in &acls {
        cluster.allow(&principal, operations, resource);
    }
    let exporter = scram_exporter(
        cluster,
        user,
        topic,
        &format!(
            "heartbeat.topic.manage = false\nconsumer.group.names = {group}\n\
             consumer.group.allow = ^rights-\ncheck.consumer.group.period.seconds = 1\n\
             check.consumer.group.timeout.seconds = 5\nprobe.commit.period.seconds = 1\n\
             probe.transactions = true\nprobe.transactions.period.seconds = 1\n\
             probe.transactional.id = {transactional_id}"
        ),
    );
    let right = |m: &Metrics, operation: &str, resource: &str| {
        m.sum(
            "heartbeat_permission_ok",
            &[("operation", operation), ("resource", resource)],
        )
    };
    let metrics = exporter
        .wait_for("every probe working", Duration::from_secs(90), |m| {
            m.sum("heartbeat_offset_commits_total", &[]) >= 2.0
                && m.sum("heartbeat_transactions_total", &[("outcome", "committed")]) >= 2.0
                && m.sum("heartbeat_transactional_messages_consumed_total", &[]) >= 1.0
                && m.has(
                    "heartbeat_consumer_group_retention_margin_seconds",
                    &[("group", group), ("topic", orders)],
                )
                && m.has(
                    "heartbeat_consumer_group_last_commit_age_seconds",
                    &[("group", group)],
                )
        })
        .await;
    let refused: Vec<&Sample> = metrics
        .select("heartbeat_permission_ok", &[])
        .filter(|sample| sample.value == 0.0)
        .collect();
    assert!(
        refused.is_empty(),
        "refused with the documented ACLs: {refused:?}"
    );
    // Nothing needs DESCRIBE on the cluster on Apache Kafka: none was granted, none refused.
    assert_eq!(right(&metrics, "DESCRIBE", "cluster"), 1.0);
    // The margin: the topic's retention (the broker default, 7 days) less the oldest unread
    // record's age (seconds old).
    let margin = metrics.sum(
        "heartbeat_consumer_group_retention_margin_seconds",
        &[("group", group), ("topic", orders)],
    );
    assert!(
        (7.0 * 86_400.0 - 600.0..=7.0 * 86_400.0).contains(&margin),
        "margin {margin}"
    );
    // Only a topic's retention.ms (DescribeConfigs) gives it a series: the contract's line
    // for it is checked here.
    assert_pinned(
        &metrics.text,
        &["heartbeat_consumer_group_retention_margin_seconds"],
    );
    let (status, body) = exporter.ready().await;
    assert_eq!(status, 200, "{body}");

    // Each right in turn: removed, it is 0 and named on /ready; granted again, it is back.
    let turns: [(&str, &[&str], &str, &str, &str); 7] = [
        (
            "Write",
            &["--topic", topic],
            "WRITE",
            "topic:rights-beats",
            "WRITE on topic `rights-beats`",
        ),
        (
            "Read",
            &["--topic", topic],
            "READ",
            "topic:rights-beats",
            "READ on topic `rights-beats`",
        ),
        (
            "Read",
            &["--group", "cc-heartbeat"],
            "READ",
            "group:cc-heartbeat",
            "READ on the consumer group `cc-heartbeat`",
        ),
        (
            "Describe",
            &["--group", group],
            "DESCRIBE",
            "group:*",
            "rights-billing",
        ),
        (
            "DescribeConfigs",
            &["--topic", orders],
            "DESCRIBE_CONFIGS",
            "topic:*",
            "rights-orders",
        ),
        (
            "Read",
            &["--topic", orders],
            "READ",
            "topic:*",
            "lag in seconds",
        ),
        (
            "Write",
            &["--transactional-id", transactional_id],
            "WRITE",
            "transactional_id:cc-heartbeat-rights",
            "transactional id `cc-heartbeat-rights`",
        ),
    ];
    for (acl, resource, operation, label, named) in turns {
        cluster.disallow(&principal, &[acl], resource);
        if label == "topic:*" && operation == "READ" {
            // The probe reads a record once per committed offset: move the group on so it
            // reads again.
            commit(cluster, group, orders, 3);
        }
        exporter
            .wait_for(
                &format!("{operation} {label} refused"),
                Duration::from_secs(60),
                |m| right(m, operation, label) == 0.0,
            )
            .await;
        // The scan's rights (lag and margins of other groups) are not readiness causes.
        if !label.ends_with(":*") {
            let body = exporter
                .wait_for_ready(
                    &format!("/ready naming {named}"),
                    Duration::from_secs(30),
                    |status, body| status == 503 && body.contains(named),
                )
                .await;
            assert!(body.contains(operation), "{body}");
        }
        cluster.allow(&principal, &[acl], resource);
        exporter
            .wait_for(
                &format!("{operation} {label} back"),
                Duration::from_secs(60),
                |m| right(m, operation, label) == 1.0,
            )
            .await;
    }
    exporter
        .wait_for_ready("ready again", Duration::from_secs(60), |status, _| {
            status == 200
        })
        .await;

    drop(exporter);
    for (operations, resource) in &acls {
        cluster.disallow(&principal, operations, resource);
    }
    cluster.delete_topic(topic).await;
    cluster.delete_topic(orders).await;
    let options = rdkafka::admin::AdminOptions::new();
    let _ = cluster.admin().delete_groups(&[group], &options).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_a_transactional_id_fence_each_other_and_go_on() {
    let cluster = KafkaCluster::shared();
    let (user, topic, id) = ("fencing", "fencing-beats", "cc-heartbeat-shared");
    cluster.create_topic(topic, 3, 3).await;
    let principal = format!("User:{user}");
    let acls: [(&[&str], &[&str]); 3] = [
        (&["Describe", "Write", "Read"], &["--topic", topic]),
        (&["Read"], &["--group", "cc-heartbeat"]),
        (&["Write"], &["--transactional-id", id]),
    ];
    for (operations, resource) in acls {
        cluster.allow(&principal, operations, resource);
    }
    let admin = format!(
        "heartbeat.topic.manage = false\nprobe.transactions = true\n\
         probe.transactions.period.seconds = 1\nprobe.transactional.id = {id}"
    );
    let first = scram_exporter(cluster, user, topic, &admin);
    let second = scram_exporter(cluster, user, topic, &admin);
    let outcome =
        |m: &Metrics, outcome: &str| m.sum("heartbeat_transactions_total", &[("outcome", outcome)]);
    // Each new producer's init fences the other's: both count it, and both commit between.
    for exporter in [&first, &second] {
        exporter
            .wait_for("fenced, and committing", Duration::from_secs(90), |m| {
                outcome(m, "fenced") >= 1.0 && outcome(m, "committed") >= 1.0
            })
            .await;
    }
    // Fencing is the neighbour's doing, not a missing right.
    let metrics = first
        .wait_for("still serving", Duration::from_secs(5), |_| true)
        .await;
    let write = [
        ("operation", "WRITE"),
        ("resource", "transactional_id:cc-heartbeat-shared"),
    ];
    assert_eq!(metrics.sum("heartbeat_permission_ok", &write), 1.0);
    drop((first, second));
    for (operations, resource) in acls {
        cluster.disallow(&principal, operations, resource);
    }
    cluster.delete_topic(topic).await;
}
