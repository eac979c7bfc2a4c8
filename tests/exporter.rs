//! The exporter against a real Kafka-protocol broker (librdkafka's mock cluster over TCP),
//! read through real HTTP.

mod support;

use std::time::Duration;

use cc_heartbeat::HeartbeatMessage;
use support::*;

const TOPIC: &str = "cc-heartbeat";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_metric_families_present_with_sane_values() {
    let mock = mock_cluster(3, TOPIC, 3);
    let running = Running::start(test_config(&mock.bootstrap_servers(), TOPIC, "")).await;
    let metrics = running
        .wait_for(
            "every partition measured end to end",
            Duration::from_secs(20),
            |m| {
                (0..3).all(|p| {
                    m.sum(
                        "heartbeat_messages_consumed_total",
                        &[("partition", &p.to_string())],
                    ) >= 3.0
                }) && m.sum("heartbeat_connection_checks_total", &[]) >= 3.0
            },
        )
        .await;

    let (status, text, content_type) = get(running.address, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    assert!(text.ends_with("# EOF\n"));

    // Every series names its cluster; the id is on one series of its own, so no series is
    // renamed when it becomes known.
    let info: Vec<&Sample> = metrics.select("heartbeat_cluster_info", &[]).collect();
    assert_eq!(info.len(), 1, "{}", metrics.text);
    let cluster_id = &info[0].labels["cluster_id"];
    assert!(cluster_id.starts_with("mockCluster"), "{cluster_id}");
    for sample in &metrics.samples {
        assert_eq!(
            sample.labels.get("cluster").map(String::as_str),
            Some("default"),
            "{sample:?}"
        );
        if sample.name != "heartbeat_cluster_info" {
            assert!(!sample.labels.contains_key("cluster_id"), "{sample:?}");
        }
    }
    for family in [
        "heartbeat_build_info",
        "heartbeat_up",
        "heartbeat_brokers",
        "heartbeat_controller_id",
        "heartbeat_broker_info",
        "heartbeat_broker_up",
        "heartbeat_broker_missing",
        "heartbeat_connection_checks_total",
        "heartbeat_connection_failures_total",
        "heartbeat_connection_seconds_count",
        "heartbeat_messages_produced_total",
        "heartbeat_produce_failures_total",
        "heartbeat_produce_latency_seconds_count",
        "heartbeat_messages_consumed_total",
        "heartbeat_end_to_end_latency_seconds_count",
        "heartbeat_messages_lost_total",
        "heartbeat_messages_duplicated_total",
        "heartbeat_messages_skipped_total",
        "heartbeat_messages_in_flight",
        "heartbeat_metadata_changes_total",
        "heartbeat_metadata_last_refresh_timestamp_seconds",
        "heartbeat_topic_ok",
        "heartbeat_metadata_refresh_failures_total",
        "heartbeat_topic_partitions",
        "heartbeat_partition_leader",
    ] {
        assert!(
            metrics.has(family, &[]),
            "missing {family}\n{}",
            metrics.text
        );
    }
    assert_eq!(metrics.sum("heartbeat_up", &[]), 1.0);
    assert_eq!(metrics.sum("heartbeat_brokers", &[]), 3.0);
    assert_eq!(metrics.select("heartbeat_broker_info", &[]).count(), 3);
    assert_eq!(metrics.sum("heartbeat_broker_up", &[]), 3.0);
    assert_eq!(metrics.sum("heartbeat_broker_missing", &[]), 0.0);
    assert_eq!(metrics.sum("heartbeat_topic_partitions", &[]), 3.0);
    assert_eq!(metrics.sum("heartbeat_connection_failures_total", &[]), 0.0);
    assert_eq!(metrics.sum("heartbeat_produce_failures_total", &[]), 0.0);
    assert_eq!(metrics.sum("heartbeat_messages_lost_total", &[]), 0.0);
    assert_eq!(metrics.sum("heartbeat_messages_duplicated_total", &[]), 0.0);
    assert_eq!(metrics.sum("heartbeat_messages_skipped_total", &[]), 0.0);
    assert_eq!(
        metrics
            .select("heartbeat_messages_skipped_total", &[])
            .count(),
        9,
        "every kind at zero"
    );
    assert_eq!(
        metrics.sum("heartbeat_metadata_refresh_failures_total", &[]),
        0.0
    );
    assert_eq!(metrics.sum("heartbeat_topic_ok", &[]), 1.0);
    // Each partition's latency is labelled with its leader (partition p is led by p % 3 + 1).
    for partition in 0..3 {
        let leader = (partition % 3 + 1).to_string();
        let labels = [("partition", partition.to_string()), ("leader", leader)];
        let filter: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let count = metrics.sum("heartbeat_end_to_end_latency_seconds_count", &filter);
        let sum = metrics.sum("heartbeat_end_to_end_latency_seconds_sum", &filter);
        assert!(count >= 3.0, "partition {partition}\n{}", metrics.text);
        // On loopback a round trip takes milliseconds; a second means something waits.
        assert!(sum / count < 0.5, "mean e2e latency {}", sum / count);
        assert!(metrics.sum("heartbeat_produce_latency_seconds_count", &filter) >= 3.0);
    }
    // The producer client's own view of each broker.
    let stats = running
        .wait_for("client statistics", Duration::from_secs(10), |m| {
            m.select("heartbeat_client_broker_state", &[("state", "UP")])
                .count()
                == 3
        })
        .await;
    for broker in ["1", "2", "3"] {
        assert!(
            stats.sum(
                "heartbeat_client_broker_connects_total",
                &[("broker", broker)]
            ) >= 1.0
        );
        let rtt = stats.sum(
            "heartbeat_client_broker_rtt_seconds",
            &[("broker", broker), ("quantile", "0.5")],
        );
        assert!(rtt > 0.0 && rtt < 0.1, "broker {broker} rtt {rtt}");
    }
    let connect_mean = metrics.sum("heartbeat_connection_seconds_sum", &[])
        / metrics.sum("heartbeat_connection_seconds_count", &[]);
    assert!(connect_mean > 0.0 && connect_mean < 0.5, "{connect_mean}");

    let (status, body, _) = get(running.address, "/ready").await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = get(running.address, "/healthz").await;
    assert_eq!(status, 200);
    let (status, body, _) = get(running.address, "/").await;
    assert_eq!(status, 200);
    assert!(body.contains("/metrics") && body.contains("/ready"));

    // A scrape reads memory only: two scrapes in a row never reset a counter.
    let before = running
        .metrics()
        .await
        .sum("heartbeat_messages_produced_total", &[]);
    let after = running
        .metrics()
        .await
        .sum("heartbeat_messages_produced_total", &[]);
    assert!(after >= before && before > 0.0);
    assert!(running.stop().await, "tasks stop on cancellation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_counts_failures_for_its_partitions_only_and_recovers() {
    let mock = mock_cluster(3, TOPIC, 3);
    let running = Running::start(test_config(&mock.bootstrap_servers(), TOPIC, "")).await;
    let healthy = running.wait_for_heartbeats(9.0).await;
    let p99 = |m: &Metrics, partition: &str| {
        m.sum(
            "heartbeat_produce_latency_recent_seconds",
            &[("partition", partition), ("quantile", "0.99")],
        )
    };

    // Broker 2 leads partition 1.
    mock.broker_down(2).unwrap();
    let down = running
        .wait_for(
            "broker 2 refused, missing, and its partition failing",
            Duration::from_secs(20),
            |m| {
                m.sum(
                    "heartbeat_connection_failures_total",
                    &[("broker", "2"), ("reason", "refused")],
                ) >= 2.0
                    && m.sum("heartbeat_broker_missing", &[("broker", "2")]) == 1.0
                    && m.sum(
                        "heartbeat_produce_failures_total",
                        &[("partition", "1"), ("reason", "timed_out")],
                    ) >= 2.0
            },
        )
        .await;
    assert_eq!(down.sum("heartbeat_broker_up", &[("broker", "2")]), 0.0);
    assert_eq!(down.sum("heartbeat_brokers", &[]), 2.0);
    assert!(
        down.has("heartbeat_broker_info", &[("broker", "2")]),
        "a missing broker is still reported"
    );
    for healthy in ["1", "3"] {
        assert_eq!(
            down.sum(
                "heartbeat_connection_failures_total",
                &[("broker", healthy)]
            ),
            0.0
        );
        assert_eq!(
            down.sum("heartbeat_broker_up", &[("broker", healthy)]),
            1.0,
            "{}",
            down.text
        );
    }
    for healthy in ["0", "2"] {
        assert_eq!(
            down.sum(
                "heartbeat_produce_failures_total",
                &[("partition", healthy)]
            ),
            0.0
        );
    }
    assert_eq!(
        down.sum("heartbeat_produce_failures_total", &[("leader", "2")]),
        down.sum("heartbeat_produce_failures_total", &[]),
        "every failure is labelled with the down broker as leader"
    );
    assert!(
        down.sum(
            "heartbeat_metadata_changes_total",
            &[("kind", "broker_removed")]
        ) >= 1.0
    );
    // The healthy partitions keep making the round trip.
    let consumed =
        |m: &Metrics, p: &str| m.sum("heartbeat_messages_consumed_total", &[("partition", p)]);
    let (before_0, before_2) = (consumed(&down, "0"), consumed(&down, "2"));
    let later = running
        .wait_for(
            "healthy partitions still measured",
            Duration::from_secs(10),
            |m| consumed(m, "0") >= before_0 + 3.0 && consumed(m, "2") >= before_2 + 3.0,
        )
        .await;
    // As fast as before (relative: this machine may be busy).
    for partition in ["0", "2"] {
        let (now, before) = (p99(&later, partition), p99(&healthy, partition));
        assert!(
            now > 0.0 && now <= (3.0 * before).max(0.05),
            "partition {partition} p99 {now} while broker 2 is down, {before} before"
        );
    }
    let (status, _, _) = get(running.address, "/ready").await;
    assert_eq!(status, 200, "one broker down is not a cluster down");
    // The client's own view of broker 2 says it is not up, and counts the connection lost.
    let client_view = running
        .wait_for(
            "the client's view of broker 2",
            Duration::from_secs(10),
            |m| {
                !m.has(
                    "heartbeat_client_broker_state",
                    &[("broker", "2"), ("state", "UP")],
                ) && m.sum(
                    "heartbeat_client_broker_disconnects_total",
                    &[("broker", "2")],
                ) >= 1.0
            },
        )
        .await;
    let connects_before =
        client_view.sum("heartbeat_client_broker_connects_total", &[("broker", "2")]);

    mock.broker_up(2).unwrap();
    let before_1 = consumed(&later, "1");
    let recovered = running
        .wait_for(
            "partition 1 measured again after broker 2 returns",
            // The documented bound: reconnect backoff (0.5 s in tests) + metadata period.
            Duration::from_secs(13),
            |m| {
                consumed(m, "1") >= before_1 + 3.0
                    && m.sum("heartbeat_broker_missing", &[("broker", "2")]) == 0.0
                    && m.sum("heartbeat_broker_up", &[("broker", "2")]) == 1.0
            },
        )
        .await;
    assert!(
        recovered.sum(
            "heartbeat_metadata_changes_total",
            &[("kind", "broker_returned")]
        ) >= 1.0
    );
    running
        .wait_for(
            "the client reconnected to broker 2, and says so",
            Duration::from_secs(10),
            |m| {
                m.sum(
                    "heartbeat_client_broker_state",
                    &[("broker", "2"), ("state", "UP")],
                ) == 1.0
                    && m.sum("heartbeat_client_broker_connects_total", &[("broker", "2")])
                        > connects_before
            },
        )
        .await;
    assert!(running.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_round_trip_time_shows_in_that_brokers_partitions() {
    let mock = mock_cluster(3, TOPIC, 3);
    let running = Running::start(test_config(&mock.bootstrap_servers(), TOPIC, "")).await;
    running.wait_for_heartbeats(9.0).await;
    let delay = Duration::from_millis(300);
    // Broker 1 leads partition 0.
    mock.broker_round_trip_time(1, delay).unwrap();
    let before = running.metrics().await;
    let after = running
        .wait_for("several slow samples", Duration::from_secs(20), |m| {
            m.sum(
                "heartbeat_produce_latency_seconds_count",
                &[("partition", "0")],
            ) >= before.sum(
                "heartbeat_produce_latency_seconds_count",
                &[("partition", "0")],
            ) + 5.0
        })
        .await;
    let mean = |name: &str, partition: &str| {
        let filter = [("partition", partition)];
        let count = after.sum(&format!("{name}_count"), &filter)
            - before.sum(&format!("{name}_count"), &filter);
        let sum = after.sum(&format!("{name}_sum"), &filter)
            - before.sum(&format!("{name}_sum"), &filter);
        sum / count
    };
    let slow = mean("heartbeat_produce_latency_seconds", "0");
    assert!(
        slow >= delay.as_secs_f64() * 0.9,
        "slow partition produce mean {slow}"
    );
    assert!(
        slow < delay.as_secs_f64() * 3.0,
        "slow partition produce mean {slow}"
    );
    let slow_e2e = mean("heartbeat_end_to_end_latency_seconds", "0");
    assert!(
        slow_e2e >= delay.as_secs_f64() * 0.9,
        "slow partition e2e mean {slow_e2e}"
    );
    for fast in ["1", "2"] {
        let produce = mean("heartbeat_produce_latency_seconds", fast);
        assert!(
            produce < delay.as_secs_f64() / 3.0,
            "partition {fast} produce mean {produce}"
        );
    }
    assert!(running.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_foreign_messages_are_counted_not_fatal() {
    let mock = mock_cluster(1, TOPIC, 1);
    let bootstrap = mock.bootstrap_servers();
    let running = Running::start(test_config(&bootstrap, TOPIC, "")).await;
    running.wait_for_heartbeats(2.0).await;
    let now_us = cc_heartbeat::clock::unix_micros();
    let other_instance = HeartbeatMessage::new("someone-else", 0, 7, now_us + 1_000_000).encode();
    let earlier_run = HeartbeatMessage::new("earlier-run", 0, 7, now_us - 3_600_000_000).encode();
    let payloads: Vec<Option<Vec<u8>>> = [
        Some(&b"\x00\xff\xfe binary garbage"[..]),
        Some(b"not json"),
        None,
        Some(b""),
        Some(br#"{"order": 1, "items": []}"#),
        Some(br#"[1, 2, 3]"#),
        Some(br#"{"timestamp": 1700000000.25}"#),
        Some(&other_instance),
        Some(&earlier_run),
        Some(br#"{"cc_heartbeat": 1, "instance": 5}"#),
    ]
    .into_iter()
    .map(|payload| payload.map(<[u8]>::to_vec))
    .collect();
    tokio::task::spawn_blocking(move || produce_raw(&bootstrap, TOPIC, 0, &payloads))
        .await
        .unwrap();
    let skipped =
        |m: &Metrics, kind: &str| m.sum("heartbeat_messages_skipped_total", &[("kind", kind)]);
    let metrics = running
        .wait_for(
            "every foreign record counted",
            Duration::from_secs(15),
            |m| m.sum("heartbeat_messages_skipped_total", &[]) >= 10.0,
        )
        .await;
    assert_eq!(skipped(&metrics, "undecodable"), 2.0, "{}", metrics.text);
    assert_eq!(skipped(&metrics, "empty"), 2.0);
    assert_eq!(skipped(&metrics, "other_json"), 3.0);
    assert_eq!(skipped(&metrics, "legacy"), 1.0);
    assert_eq!(skipped(&metrics, "other_instance"), 1.0);
    assert_eq!(skipped(&metrics, "stale"), 1.0);
    assert_eq!(metrics.sum("heartbeat_messages_duplicated_total", &[]), 0.0);
    // Still measuring its own heartbeats afterwards.
    let consumed = metrics.sum("heartbeat_messages_consumed_total", &[]);
    running
        .wait_for("still measuring", Duration::from_secs(10), |m| {
            m.sum("heartbeat_messages_consumed_total", &[]) >= consumed + 3.0
        })
        .await;
    assert!(running.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_topic_without_management_is_reported_then_picked_up() {
    let mock = mock_cluster(1, TOPIC, 0);
    let running = Running::start(test_config(
        &mock.bootstrap_servers(),
        "not-yet-there",
        "heartbeat.topic.manage = false",
    ))
    .await;
    running
        .wait_for(
            "connectivity checked while the topic is missing",
            Duration::from_secs(15),
            |m| {
                m.sum("heartbeat_connection_checks_total", &[]) >= 2.0
                    && m.sum("heartbeat_up", &[]) == 1.0
            },
        )
        .await;
    let (status, body, _) = get(running.address, "/ready").await;
    assert_eq!(status, 503);
    assert!(
        body.contains("not-yet-there") && body.contains("heartbeat.topic.manage"),
        "{body}"
    );
    assert_eq!(running.metrics().await.sum("heartbeat_topic_ok", &[]), 0.0);

    mock.create_topic("not-yet-there", 1, 1).unwrap();
    running
        .wait_for(
            "heartbeats start without a restart",
            Duration::from_secs(20),
            |m| m.sum("heartbeat_messages_consumed_total", &[]) >= 2.0,
        )
        .await;
    let (status, body, _) = get(running.address, "/ready").await;
    assert_eq!(status, 200, "{body}");
    assert!(running.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_broker_series_go_only_after_the_retention() {
    let mock = mock_cluster(2, TOPIC, 2);
    let running = Running::start(test_config(
        &mock.bootstrap_servers(),
        TOPIC,
        "broker.missing.retention.seconds = 3",
    ))
    .await;
    running
        .wait_for("both brokers checked", Duration::from_secs(20), |m| {
            m.sum("heartbeat_connection_checks_total", &[("broker", "2")]) >= 1.0
        })
        .await;
    mock.broker_down(2).unwrap();
    running
        .wait_for("broker 2 reported missing", Duration::from_secs(10), |m| {
            m.sum("heartbeat_broker_missing", &[("broker", "2")]) == 1.0
        })
        .await;
    let forgotten = running
        .wait_for(
            "broker 2's series removed after the retention",
            Duration::from_secs(15),
            |m| !m.has("heartbeat_broker_info", &[("broker", "2")]),
        )
        .await;
    for family in [
        "heartbeat_broker_up",
        "heartbeat_broker_missing",
        "heartbeat_connection_checks_total",
        "heartbeat_connection_failures_total",
    ] {
        assert!(
            !forgotten.has(family, &[("broker", "2")]),
            "{family} still has broker 2"
        );
    }
    assert!(forgotten.has("heartbeat_broker_info", &[("broker", "1")]));
    assert_eq!(
        forgotten.sum(
            "heartbeat_metadata_changes_total",
            &[("kind", "broker_forgotten")]
        ),
        1.0
    );
    assert!(running.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_are_followed_and_counted() {
    let mock = mock_cluster(2, TOPIC, 2);
    let running = Running::start(test_config(&mock.bootstrap_servers(), TOPIC, "")).await;
    running
        .wait_for(
            "partition 0 measured under leader 1",
            Duration::from_secs(20),
            |m| {
                m.sum(
                    "heartbeat_end_to_end_latency_seconds_count",
                    &[("partition", "0"), ("leader", "1")],
                ) >= 2.0
            },
        )
        .await;
    mock.partition_leader(TOPIC, 0, Some(2)).unwrap();
    // Followed within a metadata period (0.5 s here) plus a beat and a round trip; the limit
    // leaves room for a busy machine.
    let moved = running
        .wait_for(
            "partition 0 measured under leader 2, and metadata following",
            Duration::from_secs(10),
            |m| {
                // Delivery reports name the new leader at once; the metadata task follows
                // at its next refresh.
                m.sum(
                    "heartbeat_end_to_end_latency_seconds_count",
                    &[("partition", "0"), ("leader", "2")],
                ) >= 2.0
                    && m.sum("heartbeat_partition_leader", &[("partition", "0")]) == 2.0
            },
        )
        .await;
    assert_eq!(
        moved.sum(
            "heartbeat_metadata_changes_total",
            &[("kind", "leader_changed")]
        ),
        1.0
    );
    // Anything the move lost is counted once the lost deadline (4 s) has passed on the
    // exporter's own clock: 25 beats of 0.2 s later.
    let beats = |m: &Metrics| m.sum("heartbeat_beat_delay_seconds_count", &[]);
    let moved = running
        .wait_for(
            "the lost deadline passed since the move",
            Duration::from_secs(30),
            |m| beats(m) >= beats(&moved) + 25.0,
        )
        .await;
    assert_eq!(
        moved.sum("heartbeat_messages_lost_total", &[]),
        0.0,
        "{}",
        moved.text
    );
    assert!(running.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_down_at_start_holds_up_no_other_partition() {
    let mock = mock_cluster(3, TOPIC, 3);
    // Broker 2 leads partition 1 and is down before the exporter starts.
    mock.broker_down(2).unwrap();
    let running = Running::start(test_config(&mock.bootstrap_servers(), TOPIC, "")).await;
    let consumed =
        |m: &Metrics, p: &str| m.sum("heartbeat_messages_consumed_total", &[("partition", p)]);
    let metrics = running
        .wait_for(
            "the other partitions measured",
            Duration::from_secs(20),
            |m| consumed(m, "0") >= 3.0 && consumed(m, "2") >= 3.0,
        )
        .await;
    assert_eq!(consumed(&metrics, "1"), 0.0);
    // Not measured, and said so: the partition is accounted for, not silently left out.
    let monitored =
        |m: &Metrics, p: &str| m.sum("heartbeat_partition_monitored", &[("partition", p)]);
    assert_eq!(monitored(&metrics, "1"), 0.0, "{}", metrics.text);
    assert_eq!(monitored(&metrics, "0"), 1.0);
    assert_eq!(monitored(&metrics, "2"), 1.0);
    mock.broker_up(2).unwrap();
    let metrics = running
        .wait_for(
            "partition 1 measured once its leader is back",
            Duration::from_secs(30),
            |m| consumed(m, "1") >= 3.0,
        )
        .await;
    assert_eq!(monitored(&metrics, "1"), 1.0);
    assert!(running.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_heartbeats_are_lost_once_then_late_never_failed() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let mock = mock_cluster(1, TOPIC, 1);
    let running = Running::start(test_config(&mock.bootstrap_servers(), TOPIC, "")).await;
    running.wait_for_heartbeats(3.0).await;
    // Fetches fail while produces succeed: heartbeats are written but not read back in time.
    let errors = vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 2000];
    mock.request_errors(RDKafkaApiKey::Fetch, &errors);
    let lost = running
        .wait_for("heartbeats counted lost", Duration::from_secs(20), |m| {
            m.sum("heartbeat_messages_lost_total", &[]) >= 3.0
        })
        .await;
    assert_eq!(
        lost.sum("heartbeat_produce_failures_total", &[]),
        0.0,
        "{}",
        lost.text
    );
    let (status, body, _) = get(running.address, "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("round trip"), "{body}");

    mock.clear_request_errors(RDKafkaApiKey::Fetch);
    running
        .wait_for(
            "reading again; the lost ones arrive late",
            Duration::from_secs(30),
            |m| {
                m.sum("heartbeat_messages_consumed_total", &[])
                    >= lost.sum("heartbeat_messages_consumed_total", &[]) + 3.0
                    && m.sum("heartbeat_messages_skipped_total", &[("kind", "late")]) >= 1.0
            },
        )
        .await;
    // Every acknowledged heartbeat ends exactly one way: consumed or lost. Those sent while
    // reading was refused and not yet due are still on their way when reading resumes, so
    // wait for the backlog to drain (a few may be in flight at any scrape), never for more.
    let ended = |m: &Metrics| {
        m.sum("heartbeat_messages_consumed_total", &[])
            + m.sum("heartbeat_messages_lost_total", &[])
    };
    let recovered = running
        .wait_for(
            "every heartbeat consumed or lost, bar the last few",
            Duration::from_secs(30),
            |m| m.sum("heartbeat_messages_produced_total", &[]) - ended(m) <= 3.0,
        )
        .await;
    let produced = recovered.sum("heartbeat_messages_produced_total", &[]);
    assert!(
        produced >= ended(&recovered),
        "produced {produced}, consumed or lost {}\n{}",
        ended(&recovered),
        recovered.text
    );
    assert_eq!(
        recovered.sum("heartbeat_messages_skipped_total", &[("kind", "late")]),
        recovered.sum("heartbeat_messages_lost_total", &[]),
        "every lost heartbeat arrived late, none measured"
    );
    assert_eq!(
        recovered.sum("heartbeat_messages_duplicated_total", &[]),
        0.0
    );
    assert!(running.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_scan_counts_topics_partitions_and_offline_ones() {
    let mock = mock_cluster(3, TOPIC, 3);
    mock.create_topic("orders", 4, 3).unwrap();
    let running = Running::start(test_config(
        &mock.bootstrap_servers(),
        TOPIC,
        "check.consumer.group.period.seconds = 1",
    ))
    .await;
    let scanned = running
        .wait_for("a cluster scan", Duration::from_secs(15), |m| {
            m.sum("heartbeat_cluster_partitions", &[]) == 7.0
        })
        .await;
    assert_eq!(scanned.sum("heartbeat_cluster_topics", &[]), 2.0);
    assert_eq!(
        scanned.sum("heartbeat_cluster_offline_partitions", &[]),
        0.0
    );
    assert_eq!(
        scanned.sum(
            "heartbeat_cluster_scan_failures_total",
            &[("kind", "topics")]
        ),
        0.0
    );
    // Nobody produces to it, so taking its leader away is safe on the mock.
    mock.partition_leader("orders", 1, None).unwrap();
    running
        .wait_for(
            "the leaderless partition counted",
            Duration::from_secs(15),
            |m| m.sum("heartbeat_cluster_offline_partitions", &[]) == 1.0,
        )
        .await;
    running
        .wait_for_heartbeats(
            running
                .metrics()
                .await
                .sum("heartbeat_messages_consumed_total", &[])
                + 3.0,
        )
        .await;
    assert!(running.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn its_own_heartbeats_written_again_are_duplicates_misplaced_or_unknown() {
    let mock = mock_cluster(2, TOPIC, 2);
    let bootstrap = mock.bootstrap_servers();
    let running = Running::start(test_config(&bootstrap, TOPIC, "")).await;
    let metrics = running
        .wait_for(
            "heartbeat 0 of partition 0 read",
            Duration::from_secs(20),
            |m| m.sum("heartbeat_messages_consumed_total", &[("partition", "0")]) >= 2.0,
        )
        .await;
    let instance = metrics
        .select("heartbeat_build_info", &[])
        .next()
        .unwrap()
        .labels["instance_id"]
        .clone();
    let now_us = cc_heartbeat::clock::unix_micros();
    // Partition 0's first heartbeat again; it written to partition 1; a sequence never sent.
    let again = HeartbeatMessage::new(&instance, 0, 0, now_us).encode();
    let never_sent = HeartbeatMessage::new(&instance, 0, 1 << 40, now_us).encode();
    tokio::task::spawn_blocking(move || {
        produce_raw(
            &bootstrap,
            TOPIC,
            0,
            &[Some(again.clone()), Some(never_sent)],
        );
        produce_raw(&bootstrap, TOPIC, 1, &[Some(again)]);
    })
    .await
    .unwrap();
    let skipped =
        |m: &Metrics, kind: &str| m.sum("heartbeat_messages_skipped_total", &[("kind", kind)]);
    let metrics = running
        .wait_for("all three told apart", Duration::from_secs(15), |m| {
            m.sum("heartbeat_messages_duplicated_total", &[("partition", "0")]) == 1.0
                && skipped(m, "misplaced") == 1.0
                && skipped(m, "unknown_sequence") == 1.0
        })
        .await;
    assert_eq!(
        metrics.sum("heartbeat_messages_duplicated_total", &[]),
        1.0,
        "{}",
        metrics.text
    );
    assert_eq!(metrics.sum("heartbeat_messages_lost_total", &[]), 0.0);
    assert!(running.stop().await);
}
