//! The exporter against a real Apache Kafka cluster (three KRaft nodes, SASL_SSL, ACLs), used
//! exactly as against Confluent Cloud: the real binary, its `/metrics`, `/ready` and log.
//! These scenarios do not disturb the brokers; those that do are in `kafka_faults.rs`.

mod support;

use std::time::Duration;

use rdkafka::admin::{AdminOptions, ResourceSpecifier};
use support::kafka::{commit, grant, produce, revoke, Exporter, KafkaCluster, PLAIN_USERS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_confluent_cloud_path_creates_the_topic_and_beats_every_partition() {
    let cluster = KafkaCluster::shared();
    let topic = "cc-path-heartbeat";
    let (user, password) = PLAIN_USERS[0];
    let acls = grant(cluster, user, topic);
    let mut exporter = Exporter::as_user(cluster, "PLAIN", (user, password), topic, "");
    let brokers = cluster.node_ids();
    let metrics = exporter
        .wait_for(
            "heartbeats on every partition",
            Duration::from_secs(60),
            |m| {
                m.sum("heartbeat_topic_partitions", &[]) == brokers.len() as f64
                    && (0..brokers.len()).all(|p| {
                        m.sum(
                            "heartbeat_messages_consumed_total",
                            &[("partition", &p.to_string())],
                        ) >= 3.0
                    })
            },
        )
        .await;
    assert_eq!(metrics.sum("heartbeat_up", &[]), 1.0);
    for id in &brokers {
        let id_label = id.to_string();
        assert!(
            metrics.has(
                "heartbeat_broker_info",
                &[("broker", &id_label), ("rack", cluster.rack(*id))]
            ),
            "broker {id} with rack {}\n{}",
            cluster.rack(*id),
            metrics.text
        );
        assert_eq!(
            metrics.sum("heartbeat_broker_up", &[("broker", &id_label)]),
            1.0
        );
    }
    assert_eq!(metrics.sum("heartbeat_topic_ok", &[]), 1.0);
    for family in [
        "heartbeat_produce_failures_total",
        "heartbeat_messages_lost_total",
        "heartbeat_connection_failures_total",
        "heartbeat_metadata_refresh_failures_total",
    ] {
        assert_eq!(metrics.sum(family, &[]), 0.0, "{family}\n{}", metrics.text);
    }
    // Over TLS the connection check has a TLS phase, and sees the certificate's expiry.
    assert!(metrics.has(
        "heartbeat_connection_phase_seconds_count",
        &[("phase", "tls")]
    ));
    assert!(metrics.sum("heartbeat_broker_certificate_expiry_timestamp_seconds", &[]) > 0.0);
    let (status, body) = exporter.ready().await;
    assert_eq!(status, 200, "{body}");
    assert!(exporter.process.logged("created the heartbeat topic"));
    // KRaft names a random live broker as controller in each Metadata answer: over a dozen
    // refreshes (one a second) it is not taken for the active controller, and its hops count
    // as no change.
    let consumed = metrics.sum("heartbeat_messages_consumed_total", &[]);
    let metrics = exporter
        .wait_for("a dozen more refreshes", Duration::from_secs(30), |m| {
            m.sum("heartbeat_messages_consumed_total", &[]) >= consumed + 24.0 * 3.0
        })
        .await;
    assert_eq!(metrics.sum("heartbeat_controller_id", &[]), -1.0);
    for kind in ["broker_added", "broker_removed", "leader_changed"] {
        assert_eq!(
            metrics.sum("heartbeat_metadata_changes_total", &[("kind", kind)]),
            0.0,
            "{kind}"
        );
    }

    // As the broker itself reports it: one partition per broker, each on 3 replicas (one per
    // rack), 24-hour retention.
    let leaders = cluster.leaders(topic);
    assert_eq!(leaders.len(), brokers.len());
    let admin = cluster.admin();
    let described = admin
        .describe_configs(
            [&ResourceSpecifier::Topic(topic)],
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    let resource = described.into_iter().next().unwrap().unwrap();
    let retention = resource
        .get("retention.ms")
        .and_then(|entry| entry.value.clone());
    assert_eq!(retention.as_deref(), Some("86400000"));
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    for partition in metadata.topics()[0].partitions() {
        assert_eq!(
            partition.replicas().len(),
            3,
            "partition {}",
            partition.id()
        );
    }

    drop(exporter);
    cluster.delete_topic(topic).await;
    revoke(cluster, user, &acls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_named_with_mechanism_and_user_never_the_secret() {
    let cluster = KafkaCluster::shared();
    let (user, _) = PLAIN_USERS[0];
    let wrong = "not-the-heartbeat-password";
    let mut exporter = Exporter::as_user(cluster, "PLAIN", (user, wrong), "auth-heartbeat", "");
    let metrics = exporter
        .wait_for("metadata refused", Duration::from_secs(30), |m| {
            m.sum("heartbeat_metadata_refresh_failures_total", &[]) >= 1.0
        })
        .await;
    assert_eq!(metrics.sum("heartbeat_up", &[]), 0.0);
    let (status, body) = exporter.ready().await;
    assert_eq!(status, 503, "{body}");
    for named in [
        "SASL authentication",
        "sasl.mechanisms=PLAIN",
        "sasl.username=heartbeat",
    ] {
        assert!(body.contains(named), "/ready does not name {named}: {body}");
    }
    assert!(!body.contains(wrong), "/ready shows the password: {body}");
    let log = exporter.process.log();
    assert!(
        log.contains("authentication failed (sasl.mechanisms=PLAIN, sasl.username=heartbeat)"),
        "{log}"
    );
    assert!(!log.contains(wrong), "the log shows the password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scram_user_created_after_the_start_is_picked_up_without_a_restart() {
    let cluster = KafkaCluster::shared();
    let (user, password) = ("late-scram-user", "late-scram-secret");
    let topic = "scram-heartbeat";
    let exporter = Exporter::as_user(cluster, "SCRAM-SHA-512", (user, password), topic, "");
    exporter
        .wait_for("SCRAM refused", Duration::from_secs(30), |m| {
            m.sum("heartbeat_metadata_refresh_failures_total", &[]) >= 1.0
        })
        .await;
    let (status, body) = exporter.ready().await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("sasl.mechanisms=SCRAM-SHA-512, sasl.username=late-scram-user"),
        "{body}"
    );
    cluster.scram_user(user, password);
    let acls = grant(cluster, user, topic);
    let metrics = exporter
        .wait_for(
            "heartbeats once the user exists",
            Duration::from_secs(60),
            |m| m.sum("heartbeat_messages_consumed_total", &[]) >= 3.0,
        )
        .await;
    assert_eq!(metrics.sum("heartbeat_up", &[]), 1.0);
    let (status, body) = exporter.ready().await;
    assert_eq!(status, 200, "{body}");
    drop(exporter);
    cluster.delete_topic(topic).await;
    revoke(cluster, user, &acls);
    cluster.delete_scram_user(user);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_with_the_readme_acls_works_and_a_missing_right_is_named() {
    let cluster = KafkaCluster::shared();
    let (user, password) = PLAIN_USERS[1];
    let principal = format!("User:{user}");
    let (topic, orders) = ("sa-heartbeat", "sa-orders");
    let groups = ["sa-orders-service", "sa-billing"];
    cluster.create_topic(topic, 3, 3).await;
    cluster.create_topic(orders, 1, 3).await;
    produce(cluster, orders, 5);
    commit(cluster, groups[0], orders, 2);
    commit(cluster, groups[1], orders, 1);
    // Exactly what docs/confluent-cloud.md lists for heartbeat.topic.manage=false, and for lag.
    let acls: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["Describe", "Write", "Read"], vec!["--topic", topic]),
        (vec!["Read"], vec!["--group", "cc-heartbeat"]),
        (vec!["Describe"], vec!["--group", groups[0]]),
        (vec!["Describe"], vec!["--group", groups[1]]),
        (vec!["Describe", "Read"], vec!["--topic", orders]),
    ];
    for (operations, resource) in &acls {
        cluster.allow(&principal, operations, resource);
    }
    let mut exporter = Exporter::as_user(
        cluster,
        "PLAIN",
        (user, password),
        topic,
        "heartbeat.topic.manage = false\nconsumer.group.allow = ^sa-\n\
         check.consumer.group.period.seconds = 1\ncheck.consumer.group.timeout.seconds = 5",
    );
    let lag = |group: &'static str| [("group", group), ("topic", orders), ("partition", "0")];
    let metrics = exporter
        .wait_for(
            "heartbeats and both groups' lag",
            Duration::from_secs(60),
            |m| {
                (0..3).all(|p| {
                    m.sum(
                        "heartbeat_messages_consumed_total",
                        &[("partition", &p.to_string())],
                    ) >= 2.0
                }) && m.sum("heartbeat_consumer_group_lag", &lag(groups[0])) == 3.0
                    && m.sum("heartbeat_consumer_group_lag", &lag(groups[1])) == 4.0
                    && m.has("heartbeat_consumer_group_lag_seconds", &lag(groups[1]))
            },
        )
        .await;
    assert_eq!(
        metrics.sum("heartbeat_cluster_scan_failures_total", &[]),
        0.0,
        "{}",
        metrics.text
    );
    assert_eq!(metrics.sum("heartbeat_produce_failures_total", &[]), 0.0);
    assert_eq!(metrics.sum("heartbeat_consumer_groups", &[]), 2.0);
    let (status, body) = exporter.ready().await;
    assert_eq!(status, 200, "{body}");

    // Without WRITE on the topic: counted as an authorization failure, and /ready says which
    // right is missing.
    cluster.disallow(&principal, &["Write"], &["--topic", topic]);
    exporter
        .wait_for("produce refused", Duration::from_secs(30), |m| {
            m.sum(
                "heartbeat_produce_failures_total",
                &[("reason", "authorization_failed")],
            ) >= 1.0
        })
        .await;
    let body = exporter
        .wait_for_ready("said not ready", Duration::from_secs(30), |status, _| {
            status == 503
        })
        .await;
    assert!(
        body.contains("WRITE") && body.contains(topic),
        "/ready does not name the missing right: {body}"
    );

    // Without DESCRIBE on a group: it is simply not listed.
    cluster.disallow(&principal, &["Describe"], &["--group", groups[1]]);
    let metrics = exporter
        .wait_for("one group fewer", Duration::from_secs(30), |m| {
            m.sum("heartbeat_consumer_groups", &[]) == 1.0
        })
        .await;
    assert!(!metrics.has("heartbeat_consumer_group_state", &[("group", groups[1])]));
    assert!(metrics.has("heartbeat_consumer_group_state", &[("group", groups[0])]));
    assert!(exporter.process.logged("heartbeat not delivered"));

    drop(exporter);
    cluster.allow(&principal, &["Write"], &["--topic", topic]);
    cluster.allow(&principal, &["Describe"], &["--group", groups[1]]);
    for (operations, resource) in &acls {
        cluster.disallow(&principal, operations, resource);
    }
    cluster.delete_topic(topic).await;
    cluster.delete_topic(orders).await;
    let options = rdkafka::admin::AdminOptions::new();
    let _ = cluster.admin().delete_groups(&groups, &options).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_an_admin_adds_are_beaten_at_once_without_false_failures() {
    let cluster = KafkaCluster::shared();
    let topic = "grown-heartbeat";
    let (user, password) = PLAIN_USERS[0];
    let acls = grant(cluster, user, topic);
    // The clients refresh metadata by themselves only every minute here: the new partitions
    // must be found by asking when the exporter's metadata shows them, not by waiting.
    let client = cluster.client_properties("PLAIN", user, password)
        + "topic.metadata.refresh.interval.ms = 60000\n";
    let exporter = Exporter::start(&support::kafka::exporter_ini(&client, topic, ""));
    exporter
        .wait_for("heartbeats", Duration::from_secs(60), |m| {
            m.sum("heartbeat_messages_consumed_total", &[]) >= 6.0
        })
        .await;
    cluster.add_partitions(topic, 5).await;

    let grown = std::time::Instant::now();
    let metrics = exporter
        .wait_for(
            "heartbeats on the new partitions",
            Duration::from_secs(70),
            |m| {
                m.sum("heartbeat_topic_partitions", &[]) == 5.0
                    && ["3", "4"].iter().all(|partition| {
                        m.sum(
                            "heartbeat_messages_consumed_total",
                            &[("partition", partition)],
                        ) >= 2.0
                    })
            },
        )
        .await;
    eprintln!(
        "new partitions beaten {:.1}s after they were added",
        grown.elapsed().as_secs_f64()
    );
    assert!(
        grown.elapsed() < Duration::from_secs(20),
        "new partitions waited for the clients' own metadata refresh"
    );
    for partition in ["3", "4"] {
        assert_eq!(
            metrics.sum("heartbeat_partition_monitored", &[("partition", partition)]),
            1.0
        );
    }

    assert_eq!(
        metrics.sum(
            "heartbeat_metadata_changes_total",
            &[("kind", "partitions_added")]
        ),
        1.0
    );
    assert_eq!(
        metrics.sum("heartbeat_produce_failures_total", &[]),
        0.0,
        "{}",
        metrics.text
    );
    assert_eq!(metrics.sum("heartbeat_messages_lost_total", &[]), 0.0);
    drop(exporter);
    cluster.delete_topic(topic).await;
    revoke(cluster, user, &acls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_deleted_under_the_exporter_is_recreated_or_reported() {
    let cluster = KafkaCluster::shared();
    let (user, password) = PLAIN_USERS[0];
    for (topic, manage) in [
        ("deleted-managed-heartbeat", true),
        ("deleted-heartbeat", false),
    ] {
        let acls = grant(cluster, user, topic);
        if !manage {
            cluster.create_topic(topic, 3, 3).await;
        }
        let exporter = Exporter::as_user(
            cluster,
            "PLAIN",
            (user, password),
            topic,
            &format!("heartbeat.topic.manage = {manage}"),
        );
        let before = exporter
            .wait_for("heartbeats", Duration::from_secs(60), |m| {
                m.sum("heartbeat_messages_consumed_total", &[]) >= 6.0
            })
            .await;
        cluster.delete_topic(topic).await;
        if manage {
            let consumed = before.sum("heartbeat_messages_consumed_total", &[]);
            let metrics = exporter
                .wait_for(
                    "heartbeats through the recreated topic",
                    Duration::from_secs(60),
                    |m| {
                        m.sum("heartbeat_topic_partitions", &[]) == 3.0
                            && m.sum("heartbeat_messages_consumed_total", &[]) >= consumed + 6.0
                    },
                )
                .await;
            assert_eq!(metrics.sum("heartbeat_up", &[]), 1.0);
            exporter
                .wait_for_ready("ready again", Duration::from_secs(30), |status, _| {
                    status == 200
                })
                .await;
        } else {
            let body = exporter
                .wait_for_ready(
                    "said the topic is gone",
                    Duration::from_secs(30),
                    |status, body| status == 503 && body.contains("does not exist"),
                )
                .await;
            assert!(body.contains(topic), "{body}");
        }
        drop(exporter);
        cluster.delete_topic(topic).await;
        revoke(cluster, user, &acls);
    }
}

fn now_millis() -> i64 {
    cc_heartbeat::clock::unix_millis()
}

/// Writes one record per timestamp to partition 0 of `topic`, one request each.
fn produce_at(cluster: &KafkaCluster, topic: &str, timestamps: &[i64]) {
    support::produce_timestamped(cluster.admin_config(), topic, 0, "order", timestamps);
}

/// Writes `count` records to partition 0 of `topic` in one committed transaction: the log
/// then ends with a commit marker, a control record no consumer sees.
fn produce_in_a_transaction(cluster: &KafkaCluster, topic: &str, count: usize) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> = cluster
        .admin_config()
        .set("transactional.id", "lag-test-transactions")
        .create()
        .unwrap();
    let timeout = Duration::from_secs(30);
    producer.init_transactions(timeout).unwrap();
    producer.begin_transaction().unwrap();
    for _ in 0..count {
        producer
            .send(
                BaseRecord::<(), str>::to(topic)
                    .partition(0)
                    .payload("order"),
            )
            .map_err(|(error, _)| error)
            .unwrap();
    }
    producer.commit_transaction(timeout).unwrap();
}

/// `seconds`, read from a scrape taken by `read_at` (ms), is the age of a record written at
/// `written` (ms), as seen by a scan at most `scan_age` before.
fn assert_age(seconds: f64, written: i64, read_at: i64, scan_age: Duration) {
    let newest = (read_at - written) as f64 / 1000.0;
    let oldest = newest - scan_age.as_secs_f64();
    assert!(
        seconds <= newest + 0.01 && seconds >= oldest,
        "{seconds} s is not the age of a record written at {written} (between {oldest} and {newest})"
    );
}

/// Grants (or with `allow` false, takes back) `principal` the documented rights for lag on
/// the groups and topics whose names start with `prefix`: DESCRIBE on the groups, DESCRIBE and
/// READ on their topics.
fn lag_rights(cluster: &KafkaCluster, principal: &str, prefix: &str, allow: bool) {
    let prefixed = ["--resource-pattern-type", "prefixed"];
    for (operations, resource) in [
        (&["Describe"][..], "--group"),
        (&["Describe", "Read"][..], "--topic"),
    ] {
        let resource = [&prefixed[..], &[resource, prefix]].concat();
        if allow {
            cluster.allow(principal, operations, &resource);
        } else {
            cluster.disallow(principal, operations, &resource);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_of_real_groups_in_messages_and_exact_seconds() {
    let cluster = KafkaCluster::shared();
    let (user, password) = PLAIN_USERS[2];
    let principal = format!("User:{user}");
    let heartbeat_topic = "lag-heartbeat";
    let acls = grant(cluster, user, heartbeat_topic);
    // The groups and topics to report, by prefix.
    lag_rights(cluster, &principal, "lag-", true);
    let (create_time, append_time, transactional) = ("lag-orders", "lag-appended", "lag-tx");
    cluster.create_topic(create_time, 1, 3).await;
    cluster
        .create_topic_with(
            append_time,
            1,
            3,
            &[("message.timestamp.type", "LogAppendTime")],
        )
        .await;
    cluster.create_topic(transactional, 1, 3).await;
    let start = now_millis() - 120_000;
    let written: Vec<i64> = (0..4).map(|i| start + i * 10_000).collect();
    produce_at(cluster, create_time, &written);
    let appended_from = now_millis();
    // An hour-old timestamp, replaced by the broker's own at append.
    produce_at(
        cluster,
        append_time,
        &[start - 3_600_000, start - 3_600_000],
    );
    produce_in_a_transaction(cluster, transactional, 3);
    commit(cluster, "lag-idle", create_time, 1);
    commit(cluster, "lag-idle", append_time, 0);
    commit(cluster, "lag-transactional", transactional, 3);
    commit(cluster, "lag-doomed", create_time, 2);
    // A member that consumes and commits: its group is Stable and catches up.
    let member = Member::join(
        cluster,
        "lag-active",
        create_time,
        &[
            ("enable.auto.commit", "true"),
            ("auto.commit.interval.ms", "200"),
        ],
    );

    let exporter = Exporter::as_user(
        cluster,
        "PLAIN",
        (user, password),
        heartbeat_topic,
        "consumer.group.allow = ^lag-\ncheck.consumer.group.period.seconds = 1\n\
         check.consumer.group.timeout.seconds = 5",
    );
    let partition = |group: &'static str, topic: &'static str| {
        [("group", group), ("topic", topic), ("partition", "0")]
    };
    let metrics = exporter
        .wait_for("every group's lag", Duration::from_secs(60), |m| {
            m.sum(
                "heartbeat_consumer_group_state",
                &[("group", "lag-active"), ("state", "Stable")],
            ) == 1.0
                && m.sum(
                    "heartbeat_consumer_group_lag",
                    &partition("lag-active", create_time),
                ) == 0.0
                && m.has(
                    "heartbeat_consumer_group_lag_seconds",
                    &partition("lag-idle", create_time),
                )
                && m.has(
                    "heartbeat_consumer_group_lag_seconds",
                    &partition("lag-idle", append_time),
                )
                && m.has(
                    "heartbeat_consumer_group_lag_seconds",
                    &partition("lag-transactional", transactional),
                )
        })
        .await;
    let read_at = now_millis();
    let scan_age = Duration::from_secs(3);
    let value = |name: &str, labels: &[(&str, &str)]| metrics.sum(name, labels);
    assert_eq!(
        value(
            "heartbeat_consumer_group_members",
            &[("group", "lag-active")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "heartbeat_consumer_group_state",
            &[("group", "lag-idle"), ("state", "Empty")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "heartbeat_consumer_group_lag",
            &partition("lag-idle", create_time)
        ),
        3.0
    );
    assert_age(
        value(
            "heartbeat_consumer_group_lag_seconds",
            &partition("lag-idle", create_time),
        ),
        written[1],
        read_at,
        scan_age,
    );
    // LogAppendTime: the age is the broker's append time, not the producer's timestamp.
    assert_age(
        value(
            "heartbeat_consumer_group_lag_seconds",
            &partition("lag-idle", append_time),
        ),
        appended_from,
        read_at,
        Duration::from_secs((read_at - appended_from) as u64 / 1000 + 3),
    );
    // Only the commit marker is left after the transaction's records: 1 behind, 0 seconds.
    assert_eq!(
        value(
            "heartbeat_consumer_group_lag",
            &partition("lag-transactional", transactional)
        ),
        1.0
    );
    assert_eq!(
        value(
            "heartbeat_consumer_group_lag_seconds",
            &partition("lag-transactional", transactional)
        ),
        0.0
    );
    assert_eq!(
        value(
            "heartbeat_consumer_group_lag_seconds",
            &partition("lag-active", create_time)
        ),
        0.0
    );
    assert!(metrics.has("heartbeat_consumer_group_state", &[("group", "lag-doomed")]));
    assert_eq!(
        value("heartbeat_cluster_scan_failures_total", &[]),
        0.0,
        "{}",
        metrics.text
    );

    let options = rdkafka::admin::AdminOptions::new();
    let deleted = cluster
        .admin()
        .delete_groups(&["lag-doomed"], &options)
        .await
        .unwrap();
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    // Its state goes with the listing, its lag with the same scan's lag part.
    exporter
        .wait_for(
            "the deleted group's series gone",
            Duration::from_secs(30),
            |m| {
                [
                    "heartbeat_consumer_group_state",
                    "heartbeat_consumer_group_lag",
                    "heartbeat_consumer_group_lag_seconds",
                    "heartbeat_consumer_group_committed_offset",
                    "heartbeat_consumer_group_total_lag",
                    "heartbeat_consumer_group_max_lag",
                ]
                .iter()
                .all(|family| !m.has(family, &[("group", "lag-doomed")]))
            },
        )
        .await;

    member.leave();
    drop(exporter);
    let _ = cluster
        .admin()
        .delete_groups(&["lag-idle", "lag-transactional", "lag-active"], &options)
        .await;
    for topic in [create_time, append_time, transactional, heartbeat_topic] {
        cluster.delete_topic(topic).await;
    }
    lag_rights(cluster, &principal, "lag-", false);
    revoke(cluster, user, &acls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_latency_and_time_to_the_first_round_trip_are_reported() {
    let cluster = KafkaCluster::shared();
    let topic = "latency-heartbeat";
    let (user, password) = PLAIN_USERS[0];
    cluster.create_topic(topic, 3, 3).await;
    let acls = grant(cluster, user, topic);
    let started = std::time::Instant::now();
    let exporter = Exporter::as_user(cluster, "PLAIN", (user, password), topic, "");
    exporter
        .wait_for("the first round trip", Duration::from_secs(30), |m| {
            m.sum("heartbeat_messages_consumed_total", &[]) >= 1.0
        })
        .await;
    let first = started.elapsed();
    let metrics = exporter
        .wait_for("a minute's worth of beats", Duration::from_secs(60), |m| {
            m.sum("heartbeat_messages_consumed_total", &[]) >= 90.0
        })
        .await;
    // The worst partition's exact quantiles over the window.
    let worst = |family: &str, quantile: &str| {
        metrics
            .select(family, &[("quantile", quantile)])
            .map(|sample| sample.value)
            .fold(0.0, f64::max)
    };
    let figures = [
        (
            "end_to_end p50",
            worst("heartbeat_end_to_end_latency_recent_seconds", "0.5"),
        ),
        (
            "end_to_end p99",
            worst("heartbeat_end_to_end_latency_recent_seconds", "0.99"),
        ),
        (
            "produce p50",
            worst("heartbeat_produce_latency_recent_seconds", "0.5"),
        ),
        (
            "produce p99",
            worst("heartbeat_produce_latency_recent_seconds", "0.99"),
        ),
    ];
    eprintln!(
        "real Kafka on loopback: first round trip {:.2}s after the start; {}",
        first.as_secs_f64(),
        figures
            .iter()
            .map(|(name, seconds)| format!("{name} {:.2} ms", seconds * 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // Loose bounds: the figures themselves are for docs/real-kafka.md, not a timed test.
    assert!(first < Duration::from_secs(30));
    for (name, seconds) in figures {
        assert!(seconds > 0.0 && seconds < 5.0, "{name} {seconds}");
    }
    drop(exporter);
    cluster.delete_topic(topic).await;
    revoke(cluster, user, &acls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_cluster_sets_and_removes_client_quotas() {
    let cluster = KafkaCluster::shared();
    let user = PLAIN_USERS[2].0;
    cluster.user_quota(
        user,
        "producer_byte_rate=1048576,consumer_byte_rate=2097152",
    );
    let described = cluster.describe_user(user);
    assert!(
        described.contains("producer_byte_rate=1048576.0")
            && described.contains("consumer_byte_rate=2097152.0"),
        "{described}"
    );
    cluster.remove_user_quota(user, "producer_byte_rate,consumer_byte_rate");
    assert!(!cluster.describe_user(user).contains("byte_rate"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_alert_fires_for_an_account_with_exactly_the_documented_acls() {
    use std::time::Instant;
    use support::prometheus::{api, eventually, Prometheus};
    let cluster = KafkaCluster::shared();
    let (user, password) = ("alerts", "alerts-secret-5b2e");
    let (topic, orders, group, own_group) = (
        "alerts-heartbeat",
        "alerts-orders",
        "alerts-orders-service",
        "alerts-probe",
    );
    cluster.create_topic(orders, 1, 3).await;
    produce(cluster, orders, 5);
    // An application group that has read everything: nothing to alert on.
    commit(cluster, group, orders, 5);
    cluster.scram_user(user, password);
    let principal = format!("User:{user}");
    // docs/confluent-cloud.md, ACLs, for what runs by default: the heartbeat topic (managed),
    // the exporter's group (its commit probe), and one application group's lag, lag in
    // seconds and retention margin. Nothing more.
    let acls: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["Describe", "Write", "Read", "Create", "Alter"],
            vec!["--topic", topic],
        ),
        (vec!["Read"], vec!["--group", own_group]),
        (vec!["Describe"], vec!["--group", group]),
        (
            vec!["Describe", "Read", "DescribeConfigs"],
            vec!["--topic", orders],
        ),
    ];
    for (operations, resource) in &acls {
        cluster.allow(&principal, operations, resource);
    }
    let ini = support::kafka::exporter_ini(
        &cluster.client_properties("SCRAM-SHA-512", user, password),
        topic,
        "check.consumer.group.period.seconds = 1\ncheck.consumer.group.timeout.seconds = 5\n\
         probe.commit.period.seconds = 1",
    )
    .replace(
        "[admin]",
        &format!("[consumer]\ngroup.id = {own_group}\n[admin]"),
    );
    let exporter = Exporter::start(&ini);
    exporter
        .wait_for(
            "heartbeats, commits and the group's retention margin",
            Duration::from_secs(90),
            |m| {
                m.sum("heartbeat_messages_consumed_total", &[]) >= 6.0
                    && m.sum("heartbeat_offset_commits_total", &[]) >= 2.0
                    && m.has(
                        "heartbeat_consumer_group_retention_margin_seconds",
                        &[("group", group), ("topic", orders)],
                    )
            },
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::with_shipped_rules(dir.path(), &exporter.address.to_string());
    eventually(
        "every alerting rule evaluated without error",
        Duration::from_secs(30),
        async || {
            let data = api(&prometheus, "/api/v1/rules", &[("type", "alert")])
                .await
                .ok_or("no answer")?;
            let rules: Vec<&serde_json::Value> = data["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|group| group["rules"].as_array().into_iter().flatten())
                .collect();
            let evaluated = !rules.is_empty()
                && rules.iter().all(|rule| {
                    rule["health"] == "ok" && rule["lastEvaluation"] != "0001-01-01T00:00:00Z"
                });
            if evaluated {
                Ok(())
            } else {
                Err(format!("{data}"))
            }
        },
    )
    .await;
    // Before the first scrape `CcHeartbeatExporterAbsent` is rightly pending, and until a
    // rate has two scrapes `KafkaHeartbeatsNotFlowing` (no rate of heartbeats read back):
    // once the target has been up for five scrapes no alert may be, and none may come in
    // twenty evaluations a second apart.
    eventually(
        "the target up and no alert pending",
        Duration::from_secs(30),
        async || {
            let up = api(
                &prometheus,
                "/api/v1/query",
                &[(
                    "query",
                    concat!(
                        "min_over_time(up{job=\"cc-heartbeat\"}[1m])",
                        " * count_over_time(up{job=\"cc-heartbeat\"}[1m]) >= 5"
                    ),
                )],
            )
            .await
            .ok_or("no answer")?;
            let alerts = api(&prometheus, "/api/v1/alerts", &[])
                .await
                .ok_or("no answer")?;
            let up = up["result"]
                .as_array()
                .is_some_and(|result| !result.is_empty());
            if up && alerts["alerts"].as_array().is_some_and(Vec::is_empty) {
                Ok(())
            } else {
                Err(format!("up: {up}, {alerts:#}"))
            }
        },
    )
    .await;
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(20) {
        let data = api(&prometheus, "/api/v1/alerts", &[]).await.unwrap();
        let alerts = data["alerts"].as_array().cloned().unwrap_or_default();
        assert!(
            alerts.is_empty(),
            "alerts with exactly the documented ACLs: {alerts:#?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let metrics = exporter
        .wait_for("a last scrape", Duration::from_secs(5), |_| true)
        .await;
    let refused: Vec<&support::Sample> = metrics
        .select("heartbeat_permission_ok", &[])
        .filter(|sample| sample.value == 0.0)
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
    // The exporter's own group is not reported as an application's.
    assert!(!metrics.has("heartbeat_consumer_group_state", &[("group", own_group)]));
    drop(exporter);
    for (operations, resource) in &acls {
        cluster.disallow(&principal, operations, resource);
    }
    cluster.delete_topic(topic).await;
    cluster.delete_topic(orders).await;
    cluster.delete_scram_user(user);
}

/// A member of a consumer group, consuming on a thread of its own until it leaves.
struct Member {
    polling: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Member {
    /// Joins `group` subscribed to `topic`, reading from the earliest offset, with `settings`
    /// (its protocol, its commits).
    fn join(cluster: &KafkaCluster, group: &str, topic: &str, settings: &[(&str, &str)]) -> Self {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let mut config = cluster.admin_config();
        config
            .set("group.id", group)
            .set("auto.offset.reset", "earliest");
        for (key, value) in settings {
            config.set(*key, *value);
        }
        let consumer: BaseConsumer = config.create().unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let polling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let keep = polling.clone();
        // Joining happens while polling.
        let thread = std::thread::spawn(move || {
            while keep.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = consumer.poll(Duration::from_millis(100));
            }
        });
        Member { polling, thread }
    }

    /// Stops polling and closes the consumer, which leaves the group.
    fn leave(self) {
        self.polling
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_groups_on_either_protocol_are_reported_as_the_cluster_sees_them() {
    let cluster = KafkaCluster::shared();
    let (user, password) = PLAIN_USERS[2];
    let principal = format!("User:{user}");
    let heartbeat_topic = "protocol-heartbeat";
    let acls = grant(cluster, user, heartbeat_topic);
    // Exactly the documented rights for lag, by prefix, and for the retention margins.
    lag_rights(cluster, &principal, "protocol-", true);
    let topics = [
        "--resource-pattern-type",
        "prefixed",
        "--topic",
        "protocol-",
    ];
    cluster.allow(&principal, &["DescribeConfigs"], &topics);
    let topic = "protocol-orders";
    cluster.create_topic(topic, 1, 3).await;
    produce(cluster, topic, 5);
    // The same committed offset for both groups: 3 behind the end.
    let (classic, consumer) = ("protocol-classic", "protocol-consumer");
    for group in [classic, consumer] {
        commit(cluster, group, topic, 2);
    }
    // A share group (KIP-932, on by default in Kafka 4.4) on the same topic: librdkafka can
    // neither list nor describe it, so it must not be reported at all (rather than as a Dead
    // consumer group).
    let share = "protocol-share";
    cluster.tool(
        "ConfigCommand",
        &[
            "--alter",
            "--add-config",
            "share.auto.offset.reset=earliest",
            "--entity-type",
            "groups",
            "--entity-name",
            share,
        ],
    );
    cluster.tool(
        "consumer.ConsoleShareConsumer",
        &[
            "--topic",
            topic,
            "--group",
            share,
            "--max-messages",
            "1",
            "--timeout-ms",
            "60000",
        ],
    );
    let listed = cluster.tool("consumer.group.ShareGroupCommand", &["--list"]);
    assert!(listed.contains(share), "{listed}");
    let without_commits = ("enable.auto.commit", "false");
    let classic_member = Member::join(
        cluster,
        classic,
        topic,
        &[("group.protocol", "classic"), without_commits],
    );
    let consumer_member = Member::join(
        cluster,
        consumer,
        topic,
        &[("group.protocol", "consumer"), without_commits],
    );

    let exporter = Exporter::as_user(
        cluster,
        "PLAIN",
        (user, password),
        heartbeat_topic,
        "consumer.group.allow = ^protocol-\ncheck.consumer.group.period.seconds = 1\n\
         check.consumer.group.timeout.seconds = 5",
    );
    let state = |group: &'static str, state: &'static str, protocol: &'static str| {
        [("group", group), ("state", state), ("protocol", protocol)]
    };
    let lag = |group: &'static str| [("group", group), ("topic", topic), ("partition", "0")];
    let metrics = exporter
        .wait_for(
            "both groups Stable with one member",
            Duration::from_secs(60),
            |m| {
                m.sum(
                    "heartbeat_consumer_group_state",
                    &state(classic, "Stable", "classic"),
                ) == 1.0
                    && m.sum(
                        "heartbeat_consumer_group_state",
                        &state(consumer, "Stable", "consumer"),
                    ) == 1.0
                    && [classic, consumer].iter().all(|group| {
                        m.has(
                            "heartbeat_consumer_group_retention_margin_seconds",
                            &[("group", group), ("topic", topic)],
                        )
                    })
            },
        )
        .await;
    for group in [classic, consumer] {
        let only_group = [("group", group)];
        assert_eq!(
            metrics.sum("heartbeat_consumer_group_members", &only_group),
            1.0,
            "{group}: {}",
            metrics.text
        );
        // One state series per group, whatever its protocol.
        assert_eq!(
            metrics.sum("heartbeat_consumer_group_state", &only_group),
            1.0,
            "{group}: {}",
            metrics.text
        );
        assert_eq!(
            metrics.sum("heartbeat_consumer_group_lag", &lag(group)),
            3.0
        );
        assert_eq!(
            metrics.sum("heartbeat_consumer_group_committed_offset", &lag(group)),
            2.0
        );
        assert_eq!(
            metrics.sum("heartbeat_consumer_group_total_lag", &only_group),
            3.0
        );
        assert!(metrics.has("heartbeat_consumer_group_lag_seconds", &lag(group)));
        assert!(metrics.has(
            "heartbeat_consumer_group_last_commit_age_seconds",
            &only_group
        ));
    }
    assert!(
        !metrics.text.contains(&format!("group=\"{share}\"")),
        "{}",
        metrics.text
    );
    // No series of the protocol anywhere but the state's: a group moving to the consumer
    // protocol keeps its lag history.
    assert!(
        !metrics.text.lines().any(|line| line.contains("protocol=")
            && !line.starts_with("heartbeat_consumer_group_state")),
        "{}",
        metrics.text
    );
    assert_eq!(
        metrics.sum(
            "heartbeat_cluster_scan_failures_total",
            &[("kind", "groups")]
        ),
        0.0,
        "{}",
        metrics.text
    );

    // The new-protocol member leaves: the group is Empty, still on its protocol, with its lag.
    consumer_member.leave();
    let metrics = exporter
        .wait_for("the group Empty", Duration::from_secs(60), |m| {
            m.sum(
                "heartbeat_consumer_group_state",
                &state(consumer, "Empty", "consumer"),
            ) == 1.0
        })
        .await;
    assert_eq!(
        metrics
            .select("heartbeat_consumer_group_members", &[("group", consumer)])
            .map(|sample| sample.value)
            .collect::<Vec<_>>(),
        [0.0]
    );
    assert_eq!(
        metrics.sum("heartbeat_consumer_group_lag", &lag(consumer)),
        3.0
    );
    assert!(!metrics.has(
        "heartbeat_consumer_group_state",
        &[("group", consumer), ("state", "Dead")]
    ));

    // Deleted: every series of it goes.
    let options = AdminOptions::new();
    let deleted = cluster
        .admin()
        .delete_groups(&[consumer], &options)
        .await
        .unwrap();
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    exporter
        .wait_for(
            "the deleted group's series gone",
            Duration::from_secs(30),
            |m| {
                m.text
                    .lines()
                    .filter(|line| !line.starts_with('#'))
                    .all(|line| !line.contains(&format!("group=\"{consumer}\"")))
            },
        )
        .await;

    classic_member.leave();
    drop(exporter);
    let _ = cluster.admin().delete_groups(&[classic], &options).await;
    cluster.tool(
        "consumer.group.ShareGroupCommand",
        &["--delete", "--group", share],
    );
    for topic in [topic, heartbeat_topic] {
        cluster.delete_topic(topic).await;
    }
    lag_rights(cluster, &principal, "protocol-", false);
    cluster.disallow(&principal, &["DescribeConfigs"], &topics);
    revoke(cluster, user, &acls);
}

/// `text`'s lines that contain `needle`.
fn lines_with(text: &str, needle: &str) -> usize {
    text.lines().filter(|line| line.contains(needle)).count()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// OAuth sign-in as Confluent Cloud's identity pools do it, on the real brokers validating the
/// tokens against the test's identity provider (30-second tokens, no clock skew allowed): a
/// wrong client secret refused and named, the rotated secret file picked up, tokens refreshed
/// for three lifetimes with nothing lost, a token the brokers refuse counted, the provider
/// stopped past a token's life reported and recovered from without a restart, and the secret
/// and the tokens in nothing the exporter writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_tokens_are_refreshed_observed_refused_and_recovered_without_a_restart() {
    let cluster = KafkaCluster::shared();
    let provider = &cluster.identity_provider;
    let topic = "oauth-heartbeat";
    // The token's subject, so the brokers' principal: User:oauth-heartbeat.
    let client = "oauth-heartbeat";
    let (secret, wrong) = ("oauth-secret-7f3a9c", "not-the-secret-2b8e41");
    provider.add_client(client, secret);
    provider.set_lifetime(Duration::from_secs(30));
    let acls = grant(cluster, client, topic);
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("oauth-client-secret");
    std::fs::write(&secret_file, format!("{wrong}\n")).unwrap();
    let host = provider
        .token_url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let ini = support::kafka::exporter_ini(
        &format!(
            "bootstrap.servers = {bootstrap}\n\
             security.protocol = SASL_SSL\n\
             ssl.ca.location = {ca}\n\
             sasl.mechanisms = OAUTHBEARER\n\
             sasl.oauthbearer.method = oidc\n\
             sasl.oauthbearer.token.endpoint.url = {url}\n\
             sasl.oauthbearer.client.id = {client}\n\
             sasl.oauthbearer.client.secret.file = {file}\n\
             sasl.oauthbearer.scope = kafka\n\
             sasl.oauthbearer.extensions = logicalCluster=lkc-test01,identityPoolId=pool-Test01\n\
             https.ca.location = {ca}\n",
            bootstrap = cluster.bootstrap(),
            ca = cluster.ca_file.display(),
            url = provider.token_url,
            file = secret_file.display(),
        ),
        topic,
        "heartbeat.topic.manage = true\n",
    );
    let config = support::write_config(dir.path(), &ini);
    let mut exporter = Exporter::start(&ini);

    // A wrong secret: refused, with its reason, the host named, said once however often
    // retried.
    exporter
        .wait_for("the wrong secret refused", Duration::from_secs(30), |m| {
            m.sum(
                "heartbeat_oauth_token_requests_total",
                &[("outcome", "refused")],
            ) >= 3.0
        })
        .await;
    let body = exporter
        .wait_for_ready(
            "not ready, the refusal named",
            Duration::from_secs(10),
            |status, body| status == 503 && body.contains("no valid OAuth token"),
        )
        .await;
    assert!(
        body.contains(&format!(
            "the token endpoint at {host} refused client `{client}`"
        )) && body.contains("invalid_client"),
        "{body}"
    );
    let log = exporter.process.log();
    assert_eq!(lines_with(&log, "cannot get an OAuth token"), 1, "{log}");

    // The secret file rotated: picked up without a restart, heartbeats on every partition,
    // the Confluent Cloud extensions sent with every sign-in.
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let partitions = cluster.node_ids().len();
    let metrics = exporter
        .wait_for_every_partition(partitions, Duration::from_secs(60))
        .await;
    assert!(exporter.process.logged("OAuth settings reloaded"));
    assert!(exporter
        .process
        .logged(&format!("the token endpoint at {host} answers again")));
    let signed_in = |id: i32| {
        cluster
            .log(id)
            .lines()
            .filter(|line| {
                line.contains(&format!("SASL extensions from principal={client}:"))
                    && line.contains("logicalCluster=lkc-test01")
                    && line.contains("identityPoolId=pool-Test01")
            })
            .count()
    };
    let sign_ins: usize = cluster.node_ids().into_iter().map(signed_in).sum();
    assert!(
        sign_ins >= partitions,
        "every broker signed the exporter in with its extensions"
    );
    assert_eq!(metrics.sum("heartbeat_up", &[]), 1.0);

    // Three lifetimes of 30-second tokens: each refreshed before it expires and used (the
    // brokers end a session when its token expires), nothing lost, no failure counted.
    let before = metrics;
    let ok_before = before.sum("heartbeat_oauth_token_requests_total", &[("outcome", "ok")]);
    let failures = |m: &support::Metrics| {
        m.sum("heartbeat_oauth_token_requests_total", &[])
            - m.sum("heartbeat_oauth_token_requests_total", &[("outcome", "ok")])
    };
    let started = std::time::Instant::now();
    let after = exporter
        .wait_for("three token lifetimes", Duration::from_secs(150), |m| {
            m.sum("heartbeat_oauth_token_requests_total", &[("outcome", "ok")]) >= ok_before + 4.0
                && started.elapsed() >= Duration::from_secs(90)
        })
        .await;
    for family in [
        "heartbeat_messages_lost_total",
        "heartbeat_produce_failures_total",
        "heartbeat_oauth_token_rejections_total",
    ] {
        assert_eq!(
            after.sum(family, &[]),
            before.sum(family, &[]),
            "{family}\n{}",
            after.text
        );
    }
    assert_eq!(failures(&after), failures(&before), "{}", after.text);
    for p in 0..partitions {
        let p = p.to_string();
        let consumed =
            |m: &support::Metrics| m.sum("heartbeat_messages_consumed_total", &[("partition", &p)]);
        assert!(
            consumed(&after) >= consumed(&before) + 150.0,
            "partition {p}"
        );
    }
    let expiry = after.sum("heartbeat_oauth_token_expiry_timestamp_seconds", &[]);
    let refreshed = after.sum("heartbeat_oauth_token_last_refresh_timestamp_seconds", &[]);
    assert!(
        (expiry - refreshed - 30.0).abs() < 2.0,
        "{expiry} {refreshed}"
    );
    assert!(after.sum("heartbeat_oauth_token_request_latency_seconds_count", &[]) >= 5.0);
    let resigned: usize = cluster.node_ids().into_iter().map(signed_in).sum();
    assert!(
        resigned >= sign_ins + partitions,
        "sessions signed in again with newer tokens"
    );
    let (status, _) = exporter.ready().await;
    assert_eq!(status, 200);

    // Tokens for another audience: the brokers refuse them, counted as invalid.
    provider.set_audience("another-audience");
    exporter
        .wait_for(
            "a token refused by the brokers",
            Duration::from_secs(90),
            |m| {
                m.sum(
                    "heartbeat_oauth_token_rejections_total",
                    &[("reason", "invalid")],
                ) >= 1.0
            },
        )
        .await;
    assert!(exporter
        .process
        .logged("the brokers refuse the OAuth token"));
    provider.set_audience(support::oauth::AUDIENCE);
    let ok =
        |m: &support::Metrics| m.sum("heartbeat_oauth_token_requests_total", &[("outcome", "ok")]);
    let now = ok(&support::Metrics::parse(
        &support::get(exporter.address, "/metrics").await.1,
    ));
    exporter
        .wait_for(
            "a token for the brokers' audience",
            Duration::from_secs(40),
            |m| ok(m) >= now + 1.0,
        )
        .await;
    exporter
        .wait_for_ready(
            "ready with a good token",
            Duration::from_secs(60),
            |status, _| status == 200,
        )
        .await;

    // The token endpoint stopped past a token's life: reported (the request failing, the
    // token expired, the brokers refusing it), /ready naming the endpoint.
    provider.stop_token_endpoint();
    let stopped = exporter
        .wait_for(
            "the token expired, unrefreshed",
            Duration::from_secs(60),
            |m| {
                m.sum(
                    "heartbeat_oauth_token_requests_total",
                    &[("outcome", "unreachable")],
                ) >= 1.0
                    && m.sum("heartbeat_oauth_token_expiry_timestamp_seconds", &[]) < unix_now()
            },
        )
        .await;
    assert!(stopped.sum("heartbeat_oauth_token_expiry_timestamp_seconds", &[]) > 0.0);
    let body = exporter
        .wait_for_ready(
            "not ready, no valid token",
            Duration::from_secs(30),
            |status, body| status == 503 && body.contains("no valid OAuth token"),
        )
        .await;
    assert!(
        body.contains(&format!("the token endpoint at {host} did not answer")),
        "{body}"
    );
    let log = exporter.process.log();
    assert_eq!(
        lines_with(&log, "cannot refresh the OAuth token"),
        1,
        "{log}"
    );
    assert!(log.contains("expires in"), "{log}");
    exporter
        .wait_for("the expired token refused", Duration::from_secs(30), |m| {
            m.sum(
                "heartbeat_oauth_token_rejections_total",
                &[("reason", "expired")],
            ) >= 1.0
        })
        .await;

    // The endpoint back: a token and heartbeats within 30 s, no restart.
    provider.start_token_endpoint();
    let back = std::time::Instant::now();
    let consumed = |m: &support::Metrics| m.sum("heartbeat_messages_consumed_total", &[]);
    let now = consumed(&support::Metrics::parse(
        &support::get(exporter.address, "/metrics").await.1,
    ));
    exporter
        .wait_for("heartbeats again", Duration::from_secs(30), |m| {
            consumed(m) >= now + 2.0 * partitions as f64
        })
        .await;
    eprintln!(
        "recovered {:.1} s after the token endpoint came back",
        back.elapsed().as_secs_f64()
    );
    exporter
        .wait_for_ready("ready again", Duration::from_secs(30), |status, _| {
            status == 200
        })
        .await;

    // `check` signs in too, and says so; the bundle's own client as well (its metadata
    // snapshot counts the topics).
    let output = support::binary()
        .args([
            "--config",
            config.to_str().unwrap(),
            "check",
            "--timeout",
            "60",
        ])
        .output()
        .unwrap();
    let checked = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{checked}");
    assert!(
        checked.contains(&format!("ok    sign-in: token from {host} for `{client}`")),
        "{checked}"
    );
    let output = support::binary()
        .args(["--config", config.to_str().unwrap(), "bundle", "--output"])
        .arg(dir.path())
        .args(["--from", &format!("http://{}", exporter.address)])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bundle = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let mut unpacked = String::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(&bundle).unwrap(),
    ));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        std::io::Read::read_to_string(&mut entry, &mut unpacked).unwrap();
    }
    assert!(
        unpacked.contains("\"topics\": "),
        "the bundle counted the topics"
    );
    assert!(!unpacked.contains("\"topics\": null"), "{unpacked}");

    // Neither secret nor any token in anything the exporter wrote.
    let mut written = vec![checked, unpacked];
    for path in ["/metrics", "/ready", "/api/status", "/debug/events"] {
        written.push(support::get(exporter.address, path).await.1);
    }
    let output = support::binary()
        .args(["--config", config.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    written.push(String::from_utf8_lossy(&output.stdout).to_string());
    written.push(exporter.process.log());
    let tokens = provider.tokens();
    assert!(tokens.len() >= 6);
    for text in &written {
        for secret in [secret, wrong] {
            assert!(!text.contains(secret), "the client secret in:\n{text}");
        }
        for token in &tokens {
            // The signature alone would be enough to replay nothing, but neither part is said.
            let signature = token.rsplit('.').next().unwrap();
            assert!(!text.contains(signature), "a token in:\n{text}");
        }
    }
    support::contract::assert_pinned(
        &support::get(exporter.address, "/metrics").await.1,
        &[
            "heartbeat_oauth_token_requests",
            "heartbeat_oauth_token_request_latency_seconds",
            "heartbeat_oauth_token_rejections",
            "heartbeat_oauth_token_expiry_timestamp_seconds",
            "heartbeat_oauth_token_last_refresh_timestamp_seconds",
        ],
    );

    drop(exporter);
    cluster.delete_topic(topic).await;
    revoke(cluster, client, &acls);
}
