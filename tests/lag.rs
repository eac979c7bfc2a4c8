//! Consumer-group lag against a real broker (librdkafka's mock cluster serves committed
//! offsets and watermarks; listing groups is tested on tansu in `topic.rs`): lag in messages
//! and in seconds must match what the test produced and committed.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cc_heartbeat::kafka::client::{client_config, ClientLog, Role, Unreported};
use cc_heartbeat::kafka::native_admin::{list_end_offsets, list_group_offsets, NativeAdminError};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use support::{commit_offsets, mock_cluster, produce_at_partition, test_config, Running};

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `seconds` is the age of the record written at `written` as seen between `from` and `to`
/// (all milliseconds since the epoch).
fn assert_age(seconds: f64, written: i64, from: i64, to: i64) {
    let (low, high) = (
        (from - written) as f64 / 1000.0,
        (to - written) as f64 / 1000.0,
    );
    assert!(
        seconds >= low && seconds <= high,
        "{seconds} not within {low}..{high}"
    );
}

fn labels<'a>(group: &'a str, topic: &'a str, partition: &'a str) -> [(&'a str, &'a str); 3] {
    [("group", group), ("topic", topic), ("partition", partition)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_in_messages_and_seconds_matches_what_was_produced_and_committed() {
    let _serial = support::serial().await;
    let mock = mock_cluster(3, "orders", 3);
    mock.create_topic("audit", 1, 1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    let start = now_millis() - 100_000;
    // orders-0: 10 records a second apart; billing committed 4 (6 behind, oldest unconsumed
    // written at start + 4 s). orders-1: 3 records, billing consumed all. orders-2: billing
    // never committed. audit (not allowed): committed, never reported.
    let timestamps: Vec<i64> = (0..10).map(|i| start + i * 1000).collect();
    produce_at_partition(&bootstrap, "orders", 0, &timestamps);
    produce_at_partition(&bootstrap, "orders", 1, &[start, start, start]);
    produce_at_partition(&bootstrap, "audit", 0, &[start]);
    commit_offsets(&bootstrap, "billing", "orders", &[(0, 4), (1, 3)]);
    commit_offsets(&bootstrap, "billing", "audit", &[(0, 0)]);
    // A committed offset past the end: lag clamped to zero and counted as a race.
    commit_offsets(&bootstrap, "ahead", "orders", &[(1, 7)]);
    // Another group on the same partition, further on: read in the same pass as billing.
    commit_offsets(&bootstrap, "fast", "orders", &[(0, 7)]);

    let before = now_millis();
    let running = Running::start(test_config(
        &bootstrap,
        "cc-heartbeat",
        "check.consumer.group.period.seconds = 1\n\
         check.consumer.group.timeout.seconds = 5\n\
         consumer.group.names = billing, ahead, fast, ghost\n\
         consumer.group.topic.allow = ^orders$\n\
         consumer.group.lag.granularity = partition",
    ))
    .await;
    let m = running
        .wait_for("billing's lag", Duration::from_secs(20), |m| {
            m.has(
                "heartbeat_consumer_group_lag_seconds",
                &labels("billing", "orders", "0"),
            )
        })
        .await;
    let after = now_millis();
    let value = |name: &str, filter: &[(&str, &str)]| m.sum(name, filter);
    assert_eq!(
        value(
            "heartbeat_consumer_group_committed_offset",
            &labels("billing", "orders", "0")
        ),
        4.0
    );
    assert_eq!(
        value(
            "heartbeat_consumer_group_committed_offset",
            &labels("billing", "orders", "1")
        ),
        3.0
    );
    assert_eq!(
        value(
            "heartbeat_partition_log_end_offset",
            &[("topic", "orders"), ("partition", "0")]
        ),
        10.0
    );
    assert_eq!(
        value(
            "heartbeat_partition_log_end_offset",
            &[("topic", "orders"), ("partition", "1")]
        ),
        3.0
    );
    assert_eq!(
        value(
            "heartbeat_consumer_group_lag",
            &labels("billing", "orders", "0")
        ),
        6.0
    );
    assert_eq!(
        value(
            "heartbeat_consumer_group_lag",
            &labels("billing", "orders", "1")
        ),
        0.0
    );
    assert!(
        !m.has(
            "heartbeat_consumer_group_lag",
            &labels("billing", "orders", "2")
        ),
        "never committed"
    );
    assert!(
        !m.has("heartbeat_consumer_group_lag", &[("topic", "audit")]),
        "topic not allowed"
    );
    assert_eq!(
        value(
            "heartbeat_consumer_group_total_lag",
            &[("group", "billing")]
        ),
        6.0
    );
    assert_eq!(
        value("heartbeat_consumer_group_max_lag", &[("group", "billing")]),
        6.0
    );
    // Exact: the age of the record at offset 4, between the scan's start and now.
    let seconds = value(
        "heartbeat_consumer_group_lag_seconds",
        &labels("billing", "orders", "0"),
    );
    assert_age(seconds, start + 4 * 1000, before, after);
    assert_eq!(
        value(
            "heartbeat_consumer_group_lag_seconds",
            &labels("billing", "orders", "1")
        ),
        0.0
    );
    let fast = value(
        "heartbeat_consumer_group_lag_seconds",
        &labels("fast", "orders", "0"),
    );
    assert_age(fast, start + 7 * 1000, before, after);
    assert_eq!(
        value(
            "heartbeat_consumer_group_max_lag_seconds",
            &[("group", "billing")]
        ),
        seconds
    );
    assert_eq!(
        value(
            "heartbeat_consumer_group_lag",
            &labels("ahead", "orders", "1")
        ),
        0.0
    );
    assert!(value("heartbeat_consumer_group_offset_races_total", &[]) >= 1.0);
    // The mock cannot list groups: the named ones are reported in an unknown state.
    assert_eq!(
        value(
            "heartbeat_consumer_group_state",
            &[("group", "billing"), ("state", "Unknown")]
        ),
        1.0
    );
    assert!(!m.has("heartbeat_consumer_group_members", &[("group", "billing")]));
    assert_eq!(value("heartbeat_consumer_groups", &[]), 4.0);
    // A group with no offsets: zero lag, reported, no failure.
    assert_eq!(
        value("heartbeat_consumer_group_total_lag", &[("group", "ghost")]),
        0.0
    );
    assert_eq!(
        value(
            "heartbeat_cluster_scan_failures_total",
            &[("kind", "offsets")]
        ),
        0.0
    );
    assert_eq!(
        value(
            "heartbeat_cluster_scan_failures_total",
            &[("kind", "end_offsets")]
        ),
        0.0
    );
    assert!(
        value(
            "heartbeat_consumer_group_lag_probes_total",
            &[("kind", "read")]
        ) >= 1.0
    );

    // The next scans answer from the cache while the offset stays; lag seconds keep growing.
    let m = running
        .wait_for("a cached lookup", Duration::from_secs(20), |m| {
            m.sum(
                "heartbeat_consumer_group_lag_probes_total",
                &[("kind", "cached")],
            ) >= 1.0
        })
        .await;
    assert_eq!(
        m.sum(
            "heartbeat_consumer_group_lag_probes_total",
            &[("kind", "read")]
        ),
        2.0
    );
    assert!(
        m.sum(
            "heartbeat_consumer_group_lag_seconds",
            &labels("billing", "orders", "0")
        ) >= seconds
    );

    // The consumer moves on: the lag follows, and the new oldest record is read.
    commit_offsets(&bootstrap, "billing", "orders", &[(0, 9)]);
    let moved = now_millis();
    let m = running
        .wait_for("billing's new lag", Duration::from_secs(20), |m| {
            m.sum(
                "heartbeat_consumer_group_lag",
                &labels("billing", "orders", "0"),
            ) == 1.0
        })
        .await;
    let seconds = m.sum(
        "heartbeat_consumer_group_lag_seconds",
        &labels("billing", "orders", "0"),
    );
    // The scan that read the new offset may have started up to 1.5 s before `moved`.
    assert_age(seconds, start + 9 * 1000, moved - 1500, now_millis());
    // Caught up: zero in both.
    commit_offsets(&bootstrap, "billing", "orders", &[(0, 10)]);
    let m = running
        .wait_for("billing caught up", Duration::from_secs(20), |m| {
            m.sum(
                "heartbeat_consumer_group_total_lag",
                &[("group", "billing")],
            ) == 0.0
        })
        .await;
    assert_eq!(
        m.sum(
            "heartbeat_consumer_group_max_lag_seconds",
            &[("group", "billing")]
        ),
        0.0
    );
    assert!(running.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_without_seconds_reads_no_records() {
    let _serial = support::serial().await;
    let mock = mock_cluster(1, "orders", 1);
    let bootstrap = mock.bootstrap_servers();
    produce_at_partition(&bootstrap, "orders", 0, &[now_millis(), now_millis()]);
    commit_offsets(&bootstrap, "billing", "orders", &[(0, 1)]);
    let running = Running::start(test_config(
        &bootstrap,
        "cc-heartbeat",
        "check.consumer.group.period.seconds = 1\n\
         consumer.group.names = billing\n\
         consumer.group.topic.allow = ^orders$\n\
         consumer.group.lag.seconds = false\n\
         consumer.group.lag.granularity = partition",
    ))
    .await;
    let m = running
        .wait_for("billing's lag", Duration::from_secs(20), |m| {
            m.has(
                "heartbeat_consumer_group_lag",
                &labels("billing", "orders", "0"),
            )
        })
        .await;
    assert_eq!(
        m.sum(
            "heartbeat_consumer_group_lag",
            &labels("billing", "orders", "0")
        ),
        1.0
    );
    assert!(!m.has("heartbeat_consumer_group_lag_seconds", &[]));
    assert!(!m.has("heartbeat_consumer_group_lag_probes_total", &[]));
    assert!(running.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_granularity_reports_only_each_groups_own_series() {
    let _serial = support::serial().await;
    let mock = mock_cluster(1, "orders", 2);
    let bootstrap = mock.bootstrap_servers();
    let written = now_millis() - 30_000;
    produce_at_partition(&bootstrap, "orders", 0, &[written, written, written]);
    produce_at_partition(&bootstrap, "orders", 1, &[written]);
    commit_offsets(&bootstrap, "billing", "orders", &[(0, 1), (1, 0)]);
    let running = Running::start(test_config(
        &bootstrap,
        "cc-heartbeat",
        "check.consumer.group.period.seconds = 1\n\
         consumer.group.names = billing\n\
         consumer.group.topic.allow = ^orders$\n\
         consumer.group.lag.granularity = group",
    ))
    .await;
    let group = &[("group", "billing")];
    let m = running
        .wait_for("billing's lag", Duration::from_secs(20), |m| {
            m.has("heartbeat_consumer_group_max_lag_seconds", group)
        })
        .await;
    assert_eq!(m.sum("heartbeat_consumer_group_total_lag", group), 3.0);
    assert_eq!(m.sum("heartbeat_consumer_group_max_lag", group), 2.0);
    let seconds = m.sum("heartbeat_consumer_group_max_lag_seconds", group);
    assert!((30.0..60.0).contains(&seconds), "{seconds}");
    for name in [
        "heartbeat_consumer_group_committed_offset",
        "heartbeat_consumer_group_lag",
        "heartbeat_consumer_group_lag_seconds",
    ] {
        assert!(!m.has(name, &[]), "{name} reported per partition");
    }
    assert!(running.stop().await);
}

#[test]
fn an_unreachable_cluster_fails_each_request_within_its_timeout() {
    let port = support::tls::free_port();
    let config = test_config(&format!("127.0.0.1:{port}"), "cc-heartbeat", "");
    // The scan's client, which makes these requests.
    let admin: BaseConsumer<ClientLog> = client_config(&config, Role::Scan)
        .create_with_context(ClientLog::new("t", Role::Scan, Arc::new(Unreported)))
        .unwrap();
    let groups: Vec<String> = (0..40).map(|i| format!("group-{i}")).collect();
    let start = Instant::now();
    let answers = list_group_offsets(
        admin.client(),
        &groups,
        None,
        16,
        Duration::from_secs(1),
        start + Duration::from_secs(60),
    );
    assert_eq!(answers.len(), 40);
    assert!(answers.iter().all(Result::is_err), "{answers:?}");
    let error = list_end_offsets(
        admin.client(),
        &[("orders".to_string(), 0)],
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert!(error.to_string().contains("ListOffsets"), "{error}");
    // 40 groups 16 at a time: three rounds of at most a timeout and its margin each.
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    // Past the deadline nothing more is sent: the first round only, then every other group
    // fails as not sent, at once.
    let start = Instant::now();
    let answers = list_group_offsets(
        admin.client(),
        &groups,
        None,
        16,
        Duration::from_secs(1),
        start + Duration::from_millis(100),
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    let not_sent = answers
        .iter()
        .filter(|answer| matches!(answer, Err(NativeAdminError::NotSent { .. })))
        .count();
    assert_eq!(not_sent, 40 - 16, "{answers:?}");
}

#[test]
fn end_offsets_are_read_in_one_batch() {
    let mock = mock_cluster(3, "orders", 6);
    let bootstrap = mock.bootstrap_servers();
    for partition in 0..6 {
        produce_at_partition(
            &bootstrap,
            "orders",
            partition,
            &vec![now_millis(); partition as usize],
        );
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let mut partitions: Vec<(String, i32)> = (0..6).map(|p| ("orders".to_string(), p)).collect();
    partitions.push(("orders".to_string(), 0)); // duplicates are fine
    partitions.push(("missing".to_string(), 0));
    let ends = list_end_offsets(admin.inner(), &partitions, Duration::from_secs(10)).unwrap();
    for partition in 0..6 {
        let end = ends
            .iter()
            .find(|e| e.topic == "orders" && e.partition == partition)
            .unwrap();
        assert_eq!(end.offset, Some(i64::from(partition)), "{end:?}");
    }
    let missing = ends.iter().find(|e| e.topic == "missing").unwrap();
    assert!(
        missing.offset.is_none() && missing.error.is_some(),
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_groups_keep_their_lag_when_idle_and_lose_their_series_when_deleted() {
    use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
    let _serial = support::serial().await;
    let tansu = support::Tansu::start();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &tansu.bootstrap)
        .create()
        .unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    admin
        .create_topics(
            &[NewTopic::new("orders", 1, TopicReplication::Fixed(1))],
            &options,
        )
        .await
        .unwrap();
    let start = now_millis() - 60_000;
    // One record per request: tansu's high watermark is wrong after a batch of several.
    produce_at_partition(
        &tansu.bootstrap,
        "orders",
        0,
        &(0..5).map(|i| start + i * 1000).collect::<Vec<_>>(),
    );
    commit_offsets(&tansu.bootstrap, "orders-service", "orders", &[(0, 2)]);
    // A member that reads and never commits: the group is Stable and 3 behind.
    let member: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &tansu.bootstrap)
        .set("group.id", "orders-service")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    member.subscribe(&["orders"]).unwrap();
    // A group consumer.group.deny hides.
    let hidden: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &tansu.bootstrap)
        .set("group.id", "orders-service-test")
        .create()
        .unwrap();
    hidden.subscribe(&["orders"]).unwrap();
    let polling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let keep = polling.clone();
    // Joining happens while polling.
    let poller = std::thread::spawn(move || {
        while keep.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = member.poll(Duration::from_millis(100));
            let _ = hidden.poll(Duration::from_millis(100));
        }
        // Closing leaves the group: it becomes Empty.
        drop(member);
        drop(hidden);
    });
    // No names and no topic restriction: groups come from the listing, and the brokers answer
    // every committed partition.
    let running = Running::start(test_config(
        &tansu.bootstrap,
        "cc-heartbeat",
        "check.consumer.group.period.seconds = 1\ncheck.consumer.group.timeout.seconds = 5\n\
         consumer.group.deny = -test$\nconsumer.group.lag.granularity = partition",
    ))
    .await;
    let group = &[("group", "orders-service")];
    let m = running
        .wait_for(
            "the stable group's lag",
            // Joining a group on tansu takes a rebalance delay of several seconds.
            Duration::from_secs(60),
            |m| {
                m.sum(
                    "heartbeat_consumer_group_state",
                    &[("group", "orders-service"), ("state", "Stable")],
                ) == 1.0
                    && m.has(
                        "heartbeat_consumer_group_lag_seconds",
                        &labels("orders-service", "orders", "0"),
                    )
            },
        )
        .await;
    assert_eq!(m.sum("heartbeat_consumer_group_members", group), 1.0);
    assert!(
        !m.has(
            "heartbeat_consumer_group_state",
            &[("group", "orders-service-test")]
        ),
        "denied"
    );
    assert!(m.sum("heartbeat_consumer_groups", &[]) >= 1.0);
    assert!(m.sum("heartbeat_consumer_groups_by_state", &[("kind", "Stable")]) >= 1.0);
    assert_eq!(
        m.sum(
            "heartbeat_cluster_scan_failures_total",
            &[("kind", "groups")]
        ),
        0.0
    );
    assert_eq!(
        m.sum(
            "heartbeat_consumer_group_lag",
            &labels("orders-service", "orders", "0")
        ),
        3.0
    );
    assert_eq!(m.sum("heartbeat_consumer_group_total_lag", group), 3.0);
    let seconds = m.sum(
        "heartbeat_consumer_group_lag_seconds",
        &labels("orders-service", "orders", "0"),
    );
    let expected = (now_millis() - (start + 2000)) as f64 / 1000.0;
    assert!(
        seconds <= expected && seconds >= expected - 15.0,
        "{seconds} vs {expected}"
    );

    polling.store(false, std::sync::atomic::Ordering::Relaxed);
    poller.join().unwrap();
    let m = running
        .wait_for(
            "the idle group, still 3 behind",
            Duration::from_secs(60),
            |m| {
                m.sum(
                    "heartbeat_consumer_group_state",
                    &[("group", "orders-service"), ("state", "Empty")],
                ) == 1.0
            },
        )
        .await;
    assert!(!m.has(
        "heartbeat_consumer_group_state",
        &[("group", "orders-service"), ("state", "Stable")]
    ));
    assert_eq!(m.sum("heartbeat_consumer_group_members", group), 0.0);
    assert_eq!(m.sum("heartbeat_consumer_group_total_lag", group), 3.0);
    assert!(m.sum("heartbeat_consumer_group_max_lag_seconds", group) >= seconds);

    let deleted = admin
        .delete_groups(&["orders-service"], &options)
        .await
        .unwrap();
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    let m = running
        .wait_for(
            "the deleted group's series gone",
            Duration::from_secs(30),
            |m| !m.has("heartbeat_consumer_group_state", group),
        )
        .await;
    for name in [
        "heartbeat_consumer_group_members",
        "heartbeat_consumer_group_lag",
        "heartbeat_consumer_group_lag_seconds",
        "heartbeat_consumer_group_committed_offset",
        "heartbeat_consumer_group_total_lag",
        "heartbeat_consumer_group_max_lag",
        "heartbeat_consumer_group_max_lag_seconds",
    ] {
        assert!(!m.has(name, group), "{name} still reported");
    }
    assert!(running.stop().await);
}
